"""Long-context evaluation (carried vs reset state) on a real tiny model folder, real text and the real tokenizer.

The expected numbers are recomputed here independently with plain torch: one forward call over the whole
document (carried) and one call per chunk from a fresh state (reset), cross-entropy over the same scored
tokens (every position p with p mod C != 0).
"""

from __future__ import annotations

import json
import math
import sysconfig
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from megalodoc.app.cli import main as cli_main
from megalodoc.ingest.eval_report import format_table, write_json, write_plot
from megalodoc.ingest.evaluate import (
    BUCKET_EDGES,
    BUCKET_LABELS,
    bucket_index,
    chunk_offset_edges,
    chunk_offset_labels,
    document_losses,
    evaluate_paths,
    token_byte_lengths,
)
from megalodoc.ingest.pipeline import IngestError
from megalodoc.ingest.sources import IngestCaps
from megalodoc.model import Megalodon, MegalodonConfig, load_model, save_model

from tolerances import STREAM_VS_ONESHOT_LOGITS, assert_close

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# 12 does not divide 128, 512 or 2048, so tokens exactly at the bucket edges are scored.
CHUNK = 12
DOC_TOKENS = 3000  # reaches the 2K-8K bucket
REL = 1e-4  # streamed vs one-shot logits tolerance (fp32), applied to summed losses


def save_tiny_model(folder: Path, tokenizer_file: Path | None, vocab_size: int) -> Path:
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", vocab_size=vocab_size, chunk_size=CHUNK))
    return save_model(model, folder, tokenizer=tokenizer_file)


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("eval-model")
    (folder / "tok.model").write_bytes(tokenizer.model_bytes())
    return save_tiny_model(folder / "model", folder / "tok.model", tokenizer.vocab_size)


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("eval-doc") / "textwrap.txt"
    path.write_text((STDLIB / "textwrap.py").read_text(encoding="utf-8"), encoding="utf-8")
    return path


def scored_positions(n: int) -> torch.Tensor:
    positions = torch.arange(n)
    return positions[positions % CHUNK != 0]


@torch.no_grad()
def one_call_losses(model, ids: list[int]) -> torch.Tensor:
    """Nats of every scored token from a single forward over the whole sequence."""
    tokens = torch.tensor([ids])
    logits, _ = model(tokens)  # (1, T, V)
    p = scored_positions(len(ids))
    return F.cross_entropy(logits[0, p - 1].double(), tokens[0, p], reduction="none")


@torch.no_grad()
def per_chunk_losses(model, ids: list[int]) -> torch.Tensor:
    """Nats of every scored token with each chunk read alone from a fresh state."""
    parts = []
    for start in range(0, len(ids), CHUNK):
        chunk = torch.tensor([ids[start : start + CHUNK]])
        if chunk.shape[1] < 2:
            continue
        logits, _ = model(chunk)  # (1, n, V)
        parts.append(F.cross_entropy(logits[0, :-1].double(), chunk[0, 1:], reduction="none"))
    return torch.cat(parts)


def bucket_sums(positions: torch.Tensor, values: torch.Tensor) -> list[float]:
    sums = [0.0] * len(BUCKET_LABELS)
    edges = (*BUCKET_EDGES, math.inf)
    for p, v in zip(positions.tolist(), values.tolist(), strict=True):
        index = next(i for i in range(len(BUCKET_LABELS)) if edges[i] <= p < edges[i + 1])
        sums[index] += v
    return sums


def assert_rel(actual: float, expected: float, what: str) -> None:
    assert abs(actual - expected) <= REL * abs(expected), f"{what}: {actual!r} vs {expected!r}"


@pytest.fixture(scope="module")
def reference(model_dir, document, tokenizer):
    ids = tokenizer.encode(document.read_text(encoding="utf-8"))[:DOC_TOKENS]
    model = load_model(model_dir)
    p = scored_positions(len(ids))
    nbytes = token_byte_lengths(tokenizer)[torch.tensor(ids)[p]].double()
    return {"ids": ids, "positions": p, "bytes": nbytes, "carried": one_call_losses(model, ids),
            "reset": per_chunk_losses(model, ids)}


@pytest.mark.parametrize("chunks_per_call", [7, None])
def test_both_modes_match_independent_forwards(model_dir, document, reference, chunks_per_call):
    report = evaluate_paths([document], model_dir, max_tokens=DOC_TOKENS, chunks_per_call=chunks_per_call)
    assert not report.errors
    (doc,) = report.documents
    assert doc.tokens_read == DOC_TOKENS and doc.truncated
    p = reference["positions"]
    assert doc.totals.tokens == p.numel()
    assert doc.totals.bytes == int(reference["bytes"].sum())
    for mode in ("carried", "reset"):
        nats = reference[mode]
        assert_rel(getattr(doc.totals, f"nats_{mode}"), float(nats.sum()), f"{mode} nats")
        expected_bpb = float(nats.sum()) / math.log(2) / float(reference["bytes"].sum())
        assert_rel(getattr(doc.totals, f"bits_per_byte_{mode}"), expected_bpb, f"{mode} bits/byte")
        for label, got, want_nats, want_bytes in zip(
            BUCKET_LABELS, doc.buckets, bucket_sums(p, nats), bucket_sums(p, reference["bytes"]), strict=True
        ):
            assert got.bytes == int(want_bytes), label
            assert_rel(getattr(got, f"nats_{mode}"), want_nats, f"{mode} nats in bucket {label}")
    carried, reset = doc.totals.bits_per_byte_carried, doc.totals.bits_per_byte_reset
    assert 0 < carried < 20 and 0 < reset < 20


@pytest.mark.parametrize("chunks_per_call", [1, 5])
def test_per_token_losses_match_and_the_modes_differ(model_dir, tokenizer, reference, chunks_per_call):
    model = load_model(model_dir)
    losses = document_losses(model, reference["ids"], token_byte_lengths(tokenizer), chunks_per_call=chunks_per_call)
    assert torch.equal(losses.positions, reference["positions"])
    assert_close(losses.carried, reference["carried"], STREAM_VS_ONESHOT_LOGITS, "carried nats per token")
    assert_close(losses.reset, reference["reset"], STREAM_VS_ONESHOT_LOGITS, "reset nats per token")
    # the carried state changes this model's predictions, so a mode mix-up cannot pass the checks above
    assert (reference["carried"] - reference["reset"]).abs().mean() > 100 * STREAM_VS_ONESHOT_LOGITS


def test_carried_equals_reset_within_one_chunk(model_dir, tmp_path, tokenizer):
    text = "import os\nos.sep\n"
    ids = tokenizer.encode(text)
    assert 2 <= len(ids) <= CHUNK
    path = tmp_path / "short.txt"
    path.write_text(text)
    (doc,) = evaluate_paths([path], model_dir).documents
    assert doc.totals.tokens == len(ids) - 1
    assert doc.totals.nats_carried == doc.totals.nats_reset
    assert doc.totals.bits_per_byte_carried == doc.totals.bits_per_byte_reset > 0
    assert doc.totals.bytes == len(text.encode()) - len(tokenizer.decode(ids[:1]).encode())


def test_bucket_index_edges():
    positions = torch.tensor([0, 127, 128, 511, 512, 2047, 2048, 8191, 8192, 32767, 32768, 10**7])
    assert bucket_index(positions).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_bucket_counts_sum_to_total_and_follow_the_edges(model_dir, document, reference):
    report = evaluate_paths([document, document], model_dir, max_tokens=DOC_TOKENS)
    doc = report.documents[0]
    p = reference["positions"]
    expected = [sum(1 for q in p.tolist() if lo <= q < hi)
                for lo, hi in zip(BUCKET_EDGES, (*BUCKET_EDGES[1:], math.inf), strict=True)]
    assert [b.tokens for b in doc.buckets] == expected
    # position 128 is scored (128 mod 12 != 0) and counts in 128-512, not 0-128
    assert expected[0] == 128 - len(range(0, 128, CHUNK)) and expected[1] == 384 - len(range(132, 512, CHUNK))
    assert sum(b.tokens for b in doc.buckets) == doc.totals.tokens
    assert sum(b.bytes for b in doc.buckets) == doc.totals.bytes
    # pooled over two copies: counts double, bits per byte unchanged
    assert report.totals.tokens == 2 * doc.totals.tokens
    assert [b.tokens for b in report.buckets] == [2 * t for t in expected]
    assert report.bits_per_byte_carried == pytest.approx(doc.totals.bits_per_byte_carried, rel=1e-12)


def test_chunk_offset_edges_and_labels():
    assert chunk_offset_edges(128) == (1, 2, 4, 8, 16, 32, 64)
    assert chunk_offset_labels(128) == ("1", "2-3", "4-7", "8-15", "16-31", "32-63", "64-127")
    assert chunk_offset_edges(CHUNK) == (1, 2, 4, 8) and chunk_offset_labels(CHUNK)[-1] == "8-11"
    assert chunk_offset_edges(2) == (1,) and chunk_offset_labels(2) == ("1",)


def test_chunk_offset_totals_match_the_reference(model_dir, document, reference):
    report = evaluate_paths([document], model_dir, max_tokens=DOC_TOKENS)
    (doc,) = report.documents
    offsets = reference["positions"] % CHUNK
    edges = (*chunk_offset_edges(CHUNK), CHUNK)
    assert len(doc.chunk_offsets) == len(edges) - 1
    for i, got in enumerate(doc.chunk_offsets):
        chosen = (offsets >= edges[i]) & (offsets < edges[i + 1])
        assert got.tokens == int(chosen.sum()) > 0
        assert got.bytes == int(reference["bytes"][chosen].sum())
        for mode in ("carried", "reset"):
            assert_rel(getattr(got, f"nats_{mode}"), float(reference[mode][chosen].sum()), f"{mode}, offsets {i}")
    assert sum(b.tokens for b in doc.chunk_offsets) == doc.totals.tokens
    pooled = report.to_dict()["chunk_offsets"]
    assert [b["offsets"] for b in pooled] == list(chunk_offset_labels(CHUNK))
    assert [(b["start"], b["end"]) for b in pooled] == [(1, 2), (2, 4), (4, 8), (8, 12)]
    assert pooled[0]["tokens"] == doc.chunk_offsets[0].tokens
    assert "by offset of the token inside its chunk" in format_table(report)


def test_byte_lengths_add_up_to_the_text(tokenizer):
    text = (STDLIB / "textwrap.py").read_text()[:3000] + "Tabs\tand  spaces, déjà vu, ﬁ, 日本語, 🙂\r\n"
    lengths = token_byte_lengths(tokenizer)
    assert int(lengths[tokenizer.encode(text)].sum()) == len(text.encode("utf-8"))
    assert lengths[tokenizer.bos_id] == 0 and lengths[tokenizer.pad_id] == 0


def test_max_tokens_on_a_short_document_is_not_truncation(model_dir, tmp_path, tokenizer):
    path = tmp_path / "short.txt"
    path.write_text("def f(x):\n    return x + 1\n" * 3)
    (doc,) = evaluate_paths([path], model_dir, max_tokens=10_000).documents
    assert not doc.truncated and doc.tokens_read == len(tokenizer.encode(path.read_text()))


def test_repository_and_pdf_are_read_like_ingest(model_dir, json_repo, pdfkit):
    pdf = pdfkit.draw("book.pdf", pdfkit.book_pages(3))
    report = evaluate_paths([json_repo, pdf], model_dir, max_tokens=400)
    assert [d.kind for d in report.documents] == ["repo", "pdf"]
    for doc in report.documents:
        assert doc.totals.bits_per_byte_carried > 0 and math.isfinite(doc.totals.bits_per_byte_reset)


def test_json_table_and_png(model_dir, document, tmp_path):
    report = evaluate_paths([document], model_dir, max_tokens=600)
    data = json.loads(write_json(report, tmp_path / "r.json").read_text())
    for key in ("bits_per_byte_carried", "bits_per_byte_reset", "buckets", "documents", "model", "errors"):
        assert key in data
    assert data["bits_per_byte_carried"] == report.bits_per_byte_carried
    assert [b["bucket"] for b in data["buckets"]] == list(BUCKET_LABELS)
    first = data["documents"][0]["buckets"][0]
    assert set(first) >= {"tokens", "bytes", "bits_per_byte_carried", "bits_per_byte_reset"}
    assert data["documents"][0]["buckets"][-1]["tokens"] == 0 and data["documents"][0]["buckets"][-1][
        "bits_per_byte_carried"] is None
    png = write_plot(report, tmp_path / "r.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    table = format_table(report)
    assert "0-128" in table and "512-2K" in table and "8K-32K" not in table


def test_cli_writes_json_and_plot_and_reports_a_missing_path(model_dir, document, tmp_path, capsys):
    missing = tmp_path / "nowhere.pdf"
    out, plot = tmp_path / "eval.json", tmp_path / "eval.png"
    code = cli_main(["eval", str(document), str(missing), "--model", str(model_dir), "--json", str(out),
                     "--plot", str(plot), "--max-tokens", "300", "--quiet", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1  # one path failed; the other was still evaluated
    assert str(missing) in captured.err and "no such file" in captured.err
    assert "textwrap.txt" in captured.out and "carried" in captured.out
    data = json.loads(out.read_text())
    assert len(data["documents"]) == 1 and data["errors"][0]["path"] == str(missing)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reads_under_the_ingest_caps_and_its_options_change_them(model_dir, document, capsys):
    size = document.stat().st_size
    assert size > 1024
    args = ["eval", str(document), "--model", str(model_dir), "--max-tokens", "300", "--quiet", "--device", "cpu"]
    assert cli_main([*args, "--max-bytes", "1K"]) == 1
    err = capsys.readouterr().err
    assert f"{document}: the file holds {size:,} bytes, over the cap of 1,024 (--max-bytes)" in err
    assert cli_main([*args, "--max-bytes", "1K", "--no-caps"]) == 0
    assert cli_main([*args, "--max-bytes", "0"]) == 0
    assert "textwrap.txt" in capsys.readouterr().out


def test_evaluation_reads_with_no_token_cap_unless_given_one(model_dir, document):
    # max_tokens truncates; a token cap (from the caps) refuses what is longer
    (doc,) = evaluate_paths([document], model_dir).documents
    assert doc.tokens_read > 200 and not doc.truncated
    report = evaluate_paths([document], model_dir, caps=IngestCaps(max_tokens=200))
    assert not report.documents
    ((path, message),) = report.errors
    assert path == str(document) and "token cap (200 tokens, --max-tokens)" in message


def test_cli_missing_path_only(model_dir, tmp_path, capsys):
    missing = tmp_path / "gone.txt"
    assert cli_main(["eval", str(missing), "--model", str(model_dir), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{missing}: no such file" in err


def test_model_without_tokenizer_is_refused_naming_the_folder(tmp_path, document, tokenizer, capsys):
    folder = save_tiny_model(tmp_path / "bare", None, tokenizer.vocab_size)
    with pytest.raises(IngestError, match="tokenizer"):
        evaluate_paths([document], folder)
    assert cli_main(["eval", str(document), "--model", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "tokenizer" in err


def test_bad_arguments(model_dir, document, capsys):
    assert cli_main(["eval", str(document), "--model", str(model_dir), "--max-tokens", "1"]) == 2
    assert "--max-tokens" in capsys.readouterr().err
    with pytest.raises(ValueError, match="chunks_per_call"):
        evaluate_paths([document], model_dir, chunks_per_call=0)


def test_cli_progress_to_a_log_is_plain_lines(model_dir, document, capsys):
    assert cli_main(["eval", str(document), "--model", str(model_dir), "--max-tokens", "300", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert lines[-1] == f"{document.name}: 300 tokens, done"  # --max-tokens 300
    assert all(line.startswith(f"{document.name}: ") and line.split(": ")[1][0].isdigit() for line in lines)
