"""Model folders: config.json + safetensors weights (shards of at most 16 MiB) + optional tokenizer.

    save_model(model, folder, tokenizer="tokenizer.model")
    model = load_model(folder)            # also a Hugging Face Hub repo id, or a reference checkpoint folder
    model = load_model()                  # the default model shipped with megalodoc

`load_model` gives the bare module (weights only). Ingest, generation and the app take a
`ModelBundle` (model + tokenizer + fingerprint + dtype + device) from `megalodoc.model.load_bundle`,
which uses `load_folder` below to learn which files the model was built from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from megalodoc.model.config import MegalodonConfig
from megalodoc.model.folder_meta import FORMAT_NAME, FORMAT_VERSION, CheckpointError, parse_folder_meta
from megalodoc.model.megalodon import Megalodon
from megalodoc.model.tokenizer import Tokenizer, TokenizerError
from megalodoc.model.weight_check import check_weight_headers, weight_problems

# Shards stay under 16 MiB so every file fits comfortably in a git repository and in one upload.
SHARD_BYTES = 16 * 1024 * 1024
TOKENIZER_FILE = "tokenizer.model"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _shards(tensors: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Greedy split in name order; a single tensor larger than a shard gets a shard of its own."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    return shards


def save_model(
    model: Megalodon, folder: str | os.PathLike, *, tokenizer: str | os.PathLike | None = None
) -> Path:
    """Write config.json, the weights and (if given) the tokenizer into `folder`; returns the folder.

    The tokenizer is checked first (it must load and fit the model's vocabulary: CheckpointError). Every
    file is then written in full under a temporary name, and only when all are written are they renamed
    into place, config.json last: a failure while writing (a full disk, an unreadable tokenizer) removes
    the temporary files and leaves a model already in the folder as it was. Weight files of a model
    saved there before that the new config.json does not name (more shards than now) are removed after
    it is in place. All files get the mode a new file gets (0666 less the umask)."""
    folder = Path(folder)
    if tokenizer is not None:
        _check_tokenizer(Path(tokenizer), model.config)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder; a model is saved into a folder")
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    shards = _shards(tensors)
    names = [SINGLE_FILE] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))
    ]
    replaced = _weight_files_listed(folder)  # the model being replaced, if any: its shards may be fewer
    copy_tokenizer = tokenizer is not None and Path(tokenizer).resolve() != (folder / TOKENIZER_FILE).resolve()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "weights": names,
        "tokenizer": None if tokenizer is None else TOKENIZER_FILE,
    }
    staged: list[Path] = []  # final paths whose content waits under name + ".tmp"; config.json last

    def stage(name: str) -> Path:
        staged.insert(len(staged) - 1 if staged else 0, folder / name)
        return folder / (name + ".tmp")

    try:
        _write_json(stage("config.json"), meta)  # opened normally, so it has the mode a new file gets
        mode = stat.S_IMODE(os.stat(folder / "config.json.tmp").st_mode)
        for name, shard in zip(names, shards, strict=True):
            save_file(shard, str(stage(name)), metadata={"format": "pt"})
            os.chmod(folder / (name + ".tmp"), mode)  # save_file creates its file with mode 0600
        if len(shards) > 1:
            weight_map = {k: name for name, shard in zip(names, shards, strict=True) for k in shard}
            _write_json(stage(INDEX_FILE), {"weight_map": weight_map})
        if copy_tokenizer:
            shutil.copyfile(tokenizer, stage(TOKENIZER_FILE))
    except BaseException:
        for path in staged:
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        raise
    for path in staged:
        os.replace(path.with_name(path.name + ".tmp"), path)
    for name in sorted(replaced - {p.name for p in staged}):  # a previous model's shards no config names now
        (folder / name).unlink(missing_ok=True)
    return folder


def _weight_files_listed(folder: Path) -> set[str]:
    """The weight files (and shard index) a megalodoc config.json in `folder` names; empty when there is
    none or it cannot be read (then nothing is removed after a save)."""
    try:
        meta = parse_folder_meta(json.loads((folder / "config.json").read_text()), folder / "config.json")
    except (OSError, ValueError, CheckpointError):  # no model there, or not one this megalodoc reads
        return set()
    names = set(meta.weights)
    return names | {INDEX_FILE} if len(names) > 1 else names


def _check_tokenizer(path: Path, config: MegalodonConfig) -> None:
    """A tokenizer saved with a model must load and have no more pieces than the model has embeddings."""
    try:
        pieces = Tokenizer.from_file(path).vocab_size
    except TokenizerError as exc:
        raise CheckpointError(str(exc)) from exc
    if pieces > config.vocab_size:
        raise CheckpointError(f"{path}: the tokenizer has {pieces} pieces but the model only "
                              f"{config.vocab_size} embeddings (vocab_size)")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_config(folder: str | os.PathLike) -> dict:
    """The parsed config.json of a model folder, with errors that name the file."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: no config.json in the model folder")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc


def _load_tensors(folder: Path, files: list[str]) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: weight file listed in config.json is missing")
        try:
            tensors.update(load_file(str(path)))
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from exc
    return tensors


def load_state_dict_strict(model: Megalodon, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy tensors into the model, refusing missing, unexpected or mis-shaped entries by name."""
    problems = weight_problems({k: tuple(v.shape) for k, v in model.state_dict().items()},
                               {k: tuple(v.shape) for k, v in tensors.items()})
    if problems:
        raise CheckpointError(f"{source}: weights do not match the config: " + "; ".join(problems))
    model.load_state_dict(tensors, strict=True)


@dataclass(frozen=True)
class LoadedFolder:
    """A model built from a folder, with the files it was built from (relative names, in reading order:
    config first, then weights, then the tokenizer) and the tokenizer file, if the folder has one."""

    model: Megalodon
    folder: Path
    files: tuple[str, ...]
    tokenizer_file: Path | None


def _load_local(folder: Path) -> LoadedFolder:
    from megalodoc.model import upstream  # local import: upstream imports this module

    if upstream.is_upstream_folder(folder):
        tokenizer = folder / TOKENIZER_FILE
        has_tokenizer = tokenizer.is_file()
        files = (upstream.CONFIG_FILE, upstream.WEIGHTS_FILE) + ((TOKENIZER_FILE,) if has_tokenizer else ())
        return LoadedFolder(upstream.load_upstream(folder), folder, files, tokenizer if has_tokenizer else None)
    # Everything config.json says is checked, and the weight headers against it, before a module is built.
    meta = parse_folder_meta(read_config(folder), folder / "config.json")
    tokenizer = None if meta.tokenizer is None else folder / meta.tokenizer
    if tokenizer is not None and not tokenizer.is_file():
        raise CheckpointError(f"{tokenizer}: tokenizer named in config.json is missing")
    check_weight_headers(folder, meta.weights, meta.config)
    model = Megalodon(meta.config)
    load_state_dict_strict(model, _load_tensors(folder, list(meta.weights)), str(folder))
    files = ("config.json", *meta.weights) + (() if meta.tokenizer is None else (meta.tokenizer,))
    return LoadedFolder(model, folder, files, tokenizer)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo_id))
    except Exception as exc:  # offline, unknown repo, network: all mean "could not fetch"
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        why = "the Hugging Face Hub is offline (HF_HUB_OFFLINE is set)" if offline else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(
            f"no local folder {repo_id!r} exists, and could not fetch model {repo_id!r} from the Hugging Face "
            f"Hub ({why}); "
            "download the folder elsewhere and pass its local path instead"
        ) from exc


def resolve_model_folder(path_or_repo_id: str | os.PathLike | None = None) -> Path:
    """The local folder of a model: the shipped default (None), a local folder, or a Hub repo id
    (fetched through the Hub cache; offline, only what is cached)."""
    if path_or_repo_id is None:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise CheckpointError(
                f"no default model is installed at {DEFAULT_MODEL_DIR}; pass a model folder explicitly"
            )
        return DEFAULT_MODEL_DIR
    if isinstance(path_or_repo_id, str) and not path_or_repo_id.strip():
        raise CheckpointError("the model path is empty: name a model folder or a Hub repo id (owner/name), "
                              "or leave it out for the shipped default model")
    path = Path(path_or_repo_id)
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{path}: a model is a folder (config.json + weights), not a file")
        return path
    if isinstance(path_or_repo_id, str) and _REPO_ID.match(path_or_repo_id):
        return _download(path_or_repo_id)
    raise CheckpointError(f"{path}: no such model folder (and not a Hub repo id of the form owner/name)")


def load_folder(path_or_repo_id: str | os.PathLike | None = None) -> LoadedFolder:
    """The fp32 CPU model of a folder / Hub repo id / the default (None), with the files it came from."""
    return _load_local(resolve_model_folder(path_or_repo_id))


def load_model(
    path_or_repo_id: str | os.PathLike | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> Megalodon:
    """Load a model in eval mode from a local folder (ours or a reference checkpoint), a Hub repo id,
    or (None) the default model shipped with megalodoc. Weights only: `load_bundle` adds the tokenizer
    and the fingerprint."""
    model = load_folder(path_or_repo_id).model.to(device=device)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.eval()
