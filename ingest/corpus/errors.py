"""Errors of a corpus build that are not bugs: a folder that is not a corpus, a download that failed.
Each message names the folder or the command and the cause; `megalodoc corpus` prints it without a
traceback. A recipe that no longer matches its sources raises RuntimeError, with its traceback."""

from __future__ import annotations


class CorpusFolderError(ValueError):
    """The output folder holds other files, or a corpus folder has nothing to train on."""


class FetchError(RuntimeError):
    """Downloading or unpacking a source package failed (no network, no apt package lists, ...)."""
