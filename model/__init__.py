"""Megalodon language model: config, layers, typed streaming state, checkpoints, generation.

    from megalodoc.model import load_bundle, Generation
    bundle = load_bundle()                    # model + tokenizer + fingerprint + dtype + device, as one unit
    from megalodoc.model import MegalodonConfig, Megalodon, ModelState, load_model, save_model
"""

from megalodoc.model.bundle import ModelBundle, load_bundle
from megalodoc.model.checkpoint import CheckpointError, load_model, save_model
from megalodoc.model.config import PRESETS, MegalodonConfig
from megalodoc.model.generate import Generation, GenerationUsedError, SamplingSettings, generate
from megalodoc.model.megalodon import Megalodon
from megalodoc.model.state import STATE_SCHEMA_VERSION, LayerState, ModelState, NormState, StateMismatchError
from megalodoc.model.state_codec import IncompatibleStateError, state_from_bytes, state_to_bytes

__all__ = [
    "PRESETS",
    "CheckpointError",
    "Generation",
    "GenerationUsedError",
    "IncompatibleStateError",
    "ModelBundle",
    "SamplingSettings",
    "generate",
    "load_bundle",
    "load_model",
    "save_model",
    "state_from_bytes",
    "state_to_bytes",
    "STATE_SCHEMA_VERSION",
    "LayerState",
    "Megalodon",
    "MegalodonConfig",
    "ModelState",
    "NormState",
    "StateMismatchError",
]
