"""A model's identity: one sha256 that does not depend on the compute dtype, the device or the load time.

Two ways to get one:

- ``folder_fingerprint(folder, files)``: a model loaded from a folder (ours, a reference checkpoint, or a
  Hub snapshot) is identified by the bytes of the files it was built from: config.json, the weight
  files and tokenizer.model. The files are streamed through sha256 once per load (the page cache
  usually holds them already, because the loader has just read them), so casting the loaded weights to
  bf16 or moving them to a GPU keeps the fingerprint, and no weight is hashed in memory.
  Results are remembered per (path, size, mtime, inode) for the life of the process, so loading the
  same folder again costs a few ``stat`` calls. Files are hashed in parallel threads (sha256 releases
  the GIL). A file of a Hugging Face Hub snapshot is a link to ``blobs/<sha256 of its content>`` (for
  files stored with Git LFS, which weights are): that name is taken as its digest without reading it,
  so a Hub model costs no hashing at all, and gives the same fingerprint as a plain copy of its files.
- ``weights_fingerprint(model, tokenizer_bytes)``: a model that exists only in memory (built in code, or
  trained and not yet saved) is identified by its config's architecture fingerprint and its weights
  cast to fp32, in sorted state-dict order (name, shape, fp32 bytes), plus the tokenizer's bytes. Weights
  held in bf16 give the fingerprint of their fp32 widening, which differs from that of the fp32 model
  they were rounded from: an in-memory fingerprint identifies the values, not their origin.

The two schemes never give the same value for different content and are tagged so that they cannot
collide; a folder's fingerprint is not the in-memory fingerprint of the model loaded from it.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

FOLDER_SCHEME = b"megalodoc-fingerprint/folder-1\0"
WEIGHTS_SCHEME = b"megalodoc-fingerprint/weights-1\0"

_file_digests: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) -> sha256 hex
_file_digests_lock = threading.Lock()
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")
HASH_THREADS = 4  # files hashed at once; reading, not hashing, is the limit beyond a few


def hub_blob_digest(path: Path) -> str | None:
    """The sha256 that a Hub cache link names (``.../blobs/<64 hex>``), or None for any other file."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    if target.parent.name == "blobs" and _SHA256_NAME.fullmatch(target.name):
        return target.name
    return None


def file_sha256(path: Path) -> str:
    """sha256 hex of a file's bytes, streamed; remembered while the file's size, mtime and inode stay."""
    named = hub_blob_digest(path)
    if named is not None:
        return named
    info = path.stat()
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns, info.st_ino)
    with _file_digests_lock:
        known = _file_digests.get(key)
    if known is not None:
        return known
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    with _file_digests_lock:
        _file_digests[key] = digest
    return digest


def folder_fingerprint(folder: str | os.PathLike, files: Sequence[str]) -> str:
    """sha256 over the names and contents of `files` (paths relative to `folder`), in the given order.
    The loader passes exactly the files it reads, in a fixed order (config first, then the weights as
    config.json lists them, then the tokenizer)."""
    folder = Path(folder)
    with ThreadPoolExecutor(max_workers=max(1, min(HASH_THREADS, len(files)))) as pool:
        digests = list(pool.map(file_sha256, [folder / name for name in files]))
    h = hashlib.sha256(FOLDER_SCHEME)
    for name, digest in zip(files, digests, strict=True):
        h.update(f"{name}\0{digest}\0".encode())
    return h.hexdigest()


def weights_fingerprint(model: torch.nn.Module, tokenizer_bytes: bytes | None = None) -> str:
    """sha256 over the architecture, every weight cast to fp32 (sorted by name) and the tokenizer bytes."""
    config = getattr(model, "config", None)
    h = hashlib.sha256(WEIGHTS_SCHEME)
    if config is not None:
        h.update(config.fingerprint().encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()  # (*S,) fp32 whatever it was
        h.update(f"{name}|{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(b"tokenizer\0" + hashlib.sha256(tokenizer_bytes).digest() if tokenizer_bytes is not None else b"none")
    return h.hexdigest()
