"""A model state as bytes, with the metadata that says which model, layout and compute dtype made it.

    data = state_to_bytes(state, bundle)             # safetensors bytes of ModelState.to_flat()
    state = state_from_bytes(data, bundle, "snapshot 12 of book.pdf at token 4096")

This is the one place where states become bytes and back; storage keeps the bytes without looking
inside (it does not import the model). The metadata records the state schema version, the model
fingerprint, the chunk size, the position, and the compute dtype, device type and chunks per model call
of the computation that produced the state. A load refuses a different schema version, fingerprint or chunk size with an
`IncompatibleStateError` that names the state.

Dtype and device policy. State tensors are kept at full precision whatever the compute dtype (CEMA
hidden state complex64, norm statistics fp32, keys/values as computed), so any state can be fed to
any compute dtype of the same model. Continuation is exact (bit-identical on CPU to an uninterrupted
run) only when the compute dtype, device type and chunks per call match those recorded in the state. A
state made with another dtype, device type or call size (e.g. "float32/cpu", stored by a release that
read one chunk per call) is still accepted, because the model is the same (the fingerprint does
not depend on dtype or device): the continuation is then as close to an uninterrupted run as the two
dtypes are to each other, and a warning is logged once per (fingerprint, stored dtype/device, used
dtype/device) in a process. Refusing would make a bf16 GPU service re-read every document that a CPU
ingested in fp32.
"""

from __future__ import annotations

import logging
import threading

import torch

from megalodoc.model.boundary import CALL_CHUNKS
from megalodoc.model.bundle import ModelBundle
from megalodoc.model.state import STATE_SCHEMA_VERSION, LayerState, ModelState, NormState, StateMismatchError
from megalodoc.model.tensor_codec import decode_state, encode_state

logger = logging.getLogger(__name__)

_warned: set[tuple[str, str, str]] = set()  # (fingerprint, made with, used with): warn once per process
_warned_lock = threading.Lock()


class IncompatibleStateError(StateMismatchError):
    """Stored state bytes that cannot be used with this model; the message names the state."""


def compute_label(dtype: torch.dtype, device: torch.device | str) -> str:
    """e.g. "float32/cpu/calls4", "bfloat16/cuda/calls4": what a state records about the computation that
    made it (dtype, device type, and chunks per model call; see `megalodoc.model.boundary`)."""
    return f"{str(dtype).removeprefix('torch.')}/{torch.device(device).type}/calls{CALL_CHUNKS}"


def state_to_bytes(state: ModelState, bundle: ModelBundle) -> bytes:
    """Serialize `state`, made by `bundle`, for the store (tensors are copied to the CPU)."""
    metadata = {
        "schema_version": str(STATE_SCHEMA_VERSION),
        "model_fingerprint": bundle.fingerprint,
        "chunk_size": str(bundle.chunk_size),
        "position": str(state.position),
        "compute": compute_label(bundle.dtype, bundle.device),
    }
    return encode_state(state.to_flat(), metadata)


def state_from_bytes(data: bytes, bundle: ModelBundle, what: str) -> ModelState:
    """Rebuild a state for `bundle` on its device; `what` names the state in errors and warnings
    (e.g. "snapshot 12 of book.pdf at token 4096"). Raises IncompatibleStateError."""
    try:
        tensors, metadata = decode_state(data)
    except (ValueError, TypeError) as exc:  # a foreign or damaged payload
        raise IncompatibleStateError(f"{what}: unreadable state ({exc})") from exc
    version = metadata.get("schema_version")
    if version != str(STATE_SCHEMA_VERSION):
        raise IncompatibleStateError(
            f"{what}: state schema version {version} is not this megalodoc's ({STATE_SCHEMA_VERSION})"
        )
    if metadata.get("model_fingerprint") != bundle.fingerprint:
        raise IncompatibleStateError(
            f"{what}: state was made by another model (fingerprint {str(metadata.get('model_fingerprint'))[:16]}... "
            f"!= {bundle.fingerprint[:16]}... of {bundle.source})"
        )
    if metadata.get("chunk_size") != str(bundle.chunk_size):
        raise IncompatibleStateError(
            f"{what}: state chunk size {metadata.get('chunk_size')} != model chunk size {bundle.chunk_size}"
        )
    try:
        state = ModelState.from_flat(tensors, bundle.model.config)
    except StateMismatchError as exc:
        raise IncompatibleStateError(f"{what}: {exc}") from exc
    _note_compute_change(metadata.get("compute", "unknown"), bundle, what)
    return fit_state(state, bundle)


def fit_state(state: ModelState, bundle: ModelBundle) -> ModelState:
    """The state on the bundle's device, with the unfinished chunk's keys and values in its compute dtype
    (they are activations); the CEMA state and the norm statistics keep their full precision. Returns
    `state` itself when nothing has to change (always the case for a state restored where it was made)."""
    def fit(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return t.to(device=bundle.device, dtype=dtype or t.dtype)

    keys_dtype = bundle.dtype if bundle.dtype.is_floating_point else None
    unchanged = all(
        t.device == bundle.device for layer in state.layers for t in (layer.ema, layer.keys, *layer.norm.as_tuple())
    ) and all(layer.keys.dtype == keys_dtype and layer.values.dtype == keys_dtype for layer in state.layers)
    if unchanged:
        return state
    layers = tuple(
        LayerState(fit(layer.ema), NormState(*(fit(t) for t in layer.norm.as_tuple())),
                   fit(layer.keys, keys_dtype), fit(layer.values, keys_dtype))
        for layer in state.layers
    )
    return ModelState(layers, NormState(*(fit(t) for t in state.final_norm.as_tuple())), state.position)


def _note_compute_change(made_with: str, bundle: ModelBundle, what: str) -> None:
    used_with = compute_label(bundle.dtype, bundle.device)
    if made_with == used_with:
        return
    key = (bundle.fingerprint, made_with, used_with)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning("%s: state was computed with %s and continues with %s; the continuation is close to, "
                   "not bit-identical with, an uninterrupted %s run (warned once per process)",
                   what, made_with, used_with, used_with)
