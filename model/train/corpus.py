"""Read a built training corpus: `CORPUS/manifest.json` and the text files it lists under
`CORPUS/{train,heldout}/{books,tech,code}/NAME.txt`.

The corpus is written by `megalodoc.ingest.corpus` (with the product's own source readers, so the model
trains on the text it will later read); training only reads it here and tokenizes it into token files.
A manifest is checked as it is read, and a work it lists must be a file inside the corpus folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from megalodoc.model.train.errors import MissingTrainingInput, TrainingInputError

SLICES = ("books", "tech", "code")


def read_manifest(corpus_dir: Path) -> dict:
    """The manifest of a built corpus, with a clear error when the folder is not one."""
    path = corpus_dir / "manifest.json"
    if not path.is_file():
        raise MissingTrainingInput(f"{corpus_dir}: no manifest.json; build it with "
                                   f"`megalodoc corpus build {corpus_dir}`")
    try:
        manifest = json.loads(path.read_bytes())
    except ValueError as e:  # not JSON, or not UTF-8
        raise TrainingInputError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("works"), list):
        raise TrainingInputError(f"{path}: not a corpus manifest (a JSON object with a list of works)")
    if not isinstance(manifest.get("corpus_sha256"), str):
        raise TrainingInputError(f"{path}: no corpus_sha256; rebuild the corpus with `megalodoc corpus build`")
    for i, entry in enumerate(manifest["works"]):
        if not (isinstance(entry, dict) and isinstance(entry.get("split"), str)
                and isinstance(entry.get("slice"), str)):
            raise TrainingInputError(f"{path}: works[{i}] needs a split and a slice")
    return manifest


def _work_path(corpus_dir: Path, entry: dict) -> Path:
    """The file of a manifest entry: a path relative to the corpus folder that stays inside it."""
    manifest = corpus_dir / "manifest.json"
    rel = entry.get("path")
    if not isinstance(rel, str) or not rel:
        raise TrainingInputError(f"{manifest}: a {entry['split']} work has no path")
    path = corpus_dir / rel
    if not path.resolve().is_relative_to(corpus_dir.resolve()):
        raise TrainingInputError(f"{manifest}: the path {rel!r} leaves the corpus folder")
    if not path.is_file():
        raise MissingTrainingInput(f"{manifest}: lists {rel}, which is not a file")
    return path


def split_files(corpus_dir: Path, split: str, slices: Iterable[str] = SLICES) -> list[Path]:
    """The text files of one split (`train` or `heldout`), in manifest order."""
    wanted = set(slices)
    return [_work_path(corpus_dir, e) for e in read_manifest(corpus_dir)["works"]
            if e["split"] == split and e["slice"] in wanted]


def read_work_text(path: Path) -> str:
    """A corpus file's exact text (no newline translation)."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise TrainingInputError(f"{path}: not UTF-8 text ({e})") from e
