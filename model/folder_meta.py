"""What a model folder's config.json says, checked before any other file is opened or anything is built.

    meta = parse_folder_meta(json.loads(text), folder / "config.json")
    meta.config, meta.weights, meta.tokenizer

Every entry is checked for its type; the file names it holds must be plain names of files inside the
folder (no path separator, no "..", not absolute), so a folder from elsewhere (a download, a Hub repo)
cannot name files elsewhere. A name that is a symbolic link inside the folder is still followed: the
Hub's snapshot folders are made of such links.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from megalodoc.model.config import MegalodonConfig

FORMAT_NAME = "megalodoc"
FORMAT_VERSION = 1
# What save_model writes, plus what the project's own folders add: the shipped default model records its
# "fingerprint", and the reader takes an optional "prompt_format" from the folder.
KNOWN_ENTRIES = ("format", "format_version", "config", "weights", "tokenizer", "fingerprint", "prompt_format")
_JSON_KINDS = {list: "a list", type(None): "null", str: "a string", int: "a number", float: "a number",
               bool: "true or false"}


class CheckpointError(ValueError):
    """A model folder is unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class FolderMeta:
    """A checked config.json: the architecture, the weight files in reading order, the tokenizer file."""

    config: MegalodonConfig
    weights: tuple[str, ...]
    tokenizer: str | None


def parse_folder_meta(meta: object, path: Path) -> FolderMeta:
    """Check the parsed config.json at `path`; raise CheckpointError naming the file and the entry."""

    def refuse(problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: {problem}")

    if not isinstance(meta, dict):
        raise refuse(f"must hold a JSON object, not {_JSON_KINDS.get(type(meta), type(meta).__name__)}")
    if meta.get("format") != FORMAT_NAME:
        raise refuse(f'not a megalodoc model (no "format": "{FORMAT_NAME}") and no reference checkpoint '
                     "(consolidated.pth) beside it")
    unknown = sorted(set(meta) - set(KNOWN_ENTRIES))
    if unknown:
        raise refuse(f"unknown entry {unknown[0]!r} (this megalodoc reads {', '.join(KNOWN_ENTRIES)})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise refuse(f"format_version must be an integer, not {_short(version)}")
    if version > FORMAT_VERSION:
        raise refuse(f"format version {version} is newer than this megalodoc supports ({FORMAT_VERSION}); "
                     "upgrade megalodoc")
    weights = meta.get("weights")
    if not isinstance(weights, list) or not weights or not all(isinstance(name, str) for name in weights):
        raise refuse(f"weights must be a list of file names, not {_short(weights)}")
    for name in weights:
        _check_name("weights", name, refuse)
    if len(set(weights)) != len(weights):
        raise refuse("weights names a file more than once")
    tokenizer = meta.get("tokenizer")
    if tokenizer is not None:
        if not isinstance(tokenizer, str):
            raise refuse(f"tokenizer must be a file name or null, not {_short(tokenizer)}")
        _check_name("tokenizer", tokenizer, refuse)
    if not isinstance(meta.get("fingerprint", ""), str):
        raise refuse(f"fingerprint must be a string, not {_short(meta['fingerprint'])}")
    return FolderMeta(_config(meta.get("config"), refuse), tuple(weights), tokenizer)


def _config(raw: object, refuse: Callable[[str], CheckpointError]) -> MegalodonConfig:
    """Every field is required: save_model writes them all, and a default would hide a wrong size."""
    if not isinstance(raw, dict):
        raise refuse(f"config must be a JSON object, not {_short(raw)}")
    missing = [f.name for f in dataclasses.fields(MegalodonConfig) if f.name not in raw]
    if missing:
        raise refuse(f"config is missing {', '.join(missing)}")
    try:
        return MegalodonConfig.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise refuse(f"invalid model config ({exc})") from exc


def _check_name(entry: str, name: str, refuse: Callable[[str], CheckpointError]) -> None:
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise refuse(f"{entry} {_short(name)} is not a plain file name in the model folder")


def _short(value: object) -> str:
    return reprlib.repr(value)
