"""A model state as stored bytes, with the metadata that says which model and layout it belongs to.

The bytes are the storage codec's safetensors form of `ModelState.to_flat()`; the metadata records the
state schema version, the model fingerprint and the chunk size, and every load checks all three.
"""

from __future__ import annotations

from megalodoc.model import STATE_SCHEMA_VERSION, Megalodon, ModelState, StateMismatchError
from megalodoc.storage import decode_state, encode_state


class IncompatibleSnapshotError(ValueError):
    """Stored state bytes that cannot be used with this model; the message names the snapshot."""


def state_to_bytes(state: ModelState, model_fingerprint: str, chunk_size: int) -> bytes:
    """Serialize `state` for the store."""
    metadata = {
        "schema_version": str(STATE_SCHEMA_VERSION),
        "model_fingerprint": model_fingerprint,
        "chunk_size": str(chunk_size),
        "position": str(state.position),
    }
    return encode_state(state.to_flat(), metadata)


def state_from_bytes(data: bytes, model: Megalodon, model_fingerprint: str, what: str) -> ModelState:
    """Rebuild a state for `model`; `what` names the snapshot in errors (e.g. "snapshot 12 of book.pdf")."""
    try:
        tensors, metadata = decode_state(data)
    except Exception as exc:  # a foreign or damaged payload
        raise IncompatibleSnapshotError(f"{what}: unreadable state ({exc})") from exc
    version = metadata.get("schema_version")
    if version != str(STATE_SCHEMA_VERSION):
        raise IncompatibleSnapshotError(
            f"{what}: state schema version {version} is not this megalodoc's ({STATE_SCHEMA_VERSION})"
        )
    if metadata.get("model_fingerprint") != model_fingerprint:
        raise IncompatibleSnapshotError(f"{what}: state was made by another model (fingerprint differs)")
    if metadata.get("chunk_size") != str(model.config.chunk_size):
        raise IncompatibleSnapshotError(
            f"{what}: state chunk size {metadata.get('chunk_size')} != model chunk size {model.config.chunk_size}"
        )
    try:
        return ModelState.from_flat(tensors, model.config)
    except StateMismatchError as exc:
        raise IncompatibleSnapshotError(f"{what}: {exc}") from exc
