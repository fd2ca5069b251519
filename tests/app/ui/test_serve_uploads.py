"""Uploads to a real `megalodoc serve` started in the folder that holds its data folder (the default
./megalodoc-data): a file whose name starts with a dot is read under its name without the dot, beside
the others. Gradio refused the whole upload before (a bare "Error" on the page, nothing read), as it
refuses dotfiles under the server's working folder."""

from __future__ import annotations

from pathlib import Path

from app_support import serving
from gradio_client import Client, handle_file


def test_a_dot_named_file_is_read_beside_the_others(tiny_model_dir: Path, tmp_path: Path) -> None:
    dotted = tmp_path / "files" / ".notes.md"
    plain = tmp_path / "files" / "plain-notes.txt"
    dotted.parent.mkdir()
    dotted.write_text("# Notes\n\nThe ferry leaves the harbour at seven and returns at noon.\n")
    plain.write_text("A second text about lighthouses, tides and the keepers who watch them.\n")
    with serving(tiny_model_dir, tmp_path) as (server, url, _, log):
        client = Client(url, verbose=False)
        progress, summary, documents, _ = client.predict([handle_file(str(dotted)), handle_file(str(plain))],
                                                         False, api_name="/upload")
        assert [row[:2] for row in progress["data"]] == [["notes.md", "complete"], ["plain-notes.txt", "complete"]]
        assert sorted(row[1] for row in documents["data"]) == ["notes.md", "plain-notes.txt"]
        server.terminate()
        assert server.wait(60) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
