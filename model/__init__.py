"""Megalodon language model: config, layers, typed streaming state, checkpoints, generation.

    from megalodoc.model import MegalodonConfig, Megalodon, ModelState, load_model, save_model
"""

from megalodoc.model.checkpoint import CheckpointError, load_model, model_fingerprint, save_model
from megalodoc.model.config import PRESETS, MegalodonConfig
from megalodoc.model.generate import Generation, SamplingSettings, generate
from megalodoc.model.megalodon import Megalodon
from megalodoc.model.state import STATE_SCHEMA_VERSION, LayerState, ModelState, NormState, StateMismatchError

__all__ = [
    "PRESETS",
    "CheckpointError",
    "Generation",
    "SamplingSettings",
    "generate",
    "load_model",
    "model_fingerprint",
    "save_model",
    "STATE_SCHEMA_VERSION",
    "LayerState",
    "Megalodon",
    "MegalodonConfig",
    "ModelState",
    "NormState",
    "StateMismatchError",
]
