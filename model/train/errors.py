"""Errors in what `megalodoc train` is given: a config, a tokenizer, a corpus, a token file, a checkpoint or
settings that cannot be used. Each message names the input and the cause; the command prints it without a
traceback. Other exceptions are bugs and keep theirs."""

from __future__ import annotations


class TrainingInputError(ValueError):
    """A training input is unusable (a ValueError, as these checks raised before)."""


class MissingTrainingInput(TrainingInputError, FileNotFoundError):
    """A training input does not exist (also a FileNotFoundError, as these checks raised before)."""
