"""Read a built training corpus: `CORPUS/manifest.json` and the text files it lists under
`CORPUS/{train,heldout}/{books,tech,code}/NAME.txt`.

The corpus is written by `megalodoc.ingest.corpus` (with the product's own source readers, so the model
trains on the text it will later read); training only reads it here and tokenizes it into token files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from megalodoc.model.train.errors import MissingTrainingInput

SLICES = ("books", "tech", "code")


def read_manifest(corpus_dir: Path) -> dict:
    """The manifest of a built corpus, with a clear error when the folder is not one."""
    path = corpus_dir / "manifest.json"
    if not path.is_file():
        raise MissingTrainingInput(f"{corpus_dir}: no manifest.json; build it with "
                                   f"`megalodoc corpus build {corpus_dir}`")
    return json.loads(path.read_text())


def split_files(corpus_dir: Path, split: str, slices: Iterable[str] = SLICES) -> list[Path]:
    """The text files of one split (`train` or `heldout`), in manifest order."""
    wanted = set(slices)
    return [corpus_dir / e["path"] for e in read_manifest(corpus_dir)["works"]
            if e["split"] == split and e["slice"] in wanted]


def read_work_text(path: Path) -> str:
    """A corpus file's exact text (no newline translation)."""
    return Path(path).read_bytes().decode("utf-8")
