"""One loaded model: the module, its tokenizer, its fingerprint, the compute dtype and the device.

    bundle = load_bundle()                                   # the shipped default model, fp32 on CPU
    bundle = load_bundle("models/mine", dtype=torch.bfloat16, device="cuda")
    bundle = load_bundle(my_megalodon, tokenizer="tok.model")  # an in-memory model

Everything that reads, restores or generates takes a `ModelBundle`, so a service holds one object. The
fingerprint identifies the model, not how it is held: for a folder it is the hash of the files the
model was built from (see `megalodoc.model.fingerprint`), so `load_bundle(folder, dtype=bf16)` and
`load_bundle(folder)` share it, and states stored by one restore in the other (see
`megalodoc.model.state_codec` for the dtype policy).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from megalodoc.model.checkpoint import CheckpointError, load_folder
from megalodoc.model.fingerprint import folder_fingerprint, weights_fingerprint
from megalodoc.model.megalodon import Megalodon
from megalodoc.model.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

IN_MEMORY = "in-memory"


@dataclass(frozen=True)
class ModelBundle:
    """A model in eval mode with what belongs to it. `source` is the folder it was loaded from (a Hub
    repo's local snapshot folder included) or "in-memory"; `tokenizer` is None for a model without one
    (it then works on token ids only)."""

    model: Megalodon
    tokenizer: Tokenizer | None
    fingerprint: str
    dtype: torch.dtype
    device: torch.device
    source: str

    @property
    def chunk_size(self) -> int:
        return self.model.config.chunk_size

    def require_tokenizer(self) -> Tokenizer:
        """The tokenizer, or a CheckpointError naming the model's folder when it has none."""
        if self.tokenizer is None:
            raise CheckpointError(f"{self.source}: the model has no tokenizer.model; reading text needs the "
                                  "model's own tokenizer")
        return self.tokenizer


def load_bundle(
    model: str | os.PathLike | Megalodon | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    tokenizer: Tokenizer | str | os.PathLike | None = None,
) -> ModelBundle:
    """Load `model` (a folder, a Hub repo id, None for the shipped default, or an in-memory Megalodon)
    in eval mode with `dtype` on `device`.

    A folder's tokenizer is the one it ships (`tokenizer` must then be None); an in-memory model takes
    its tokenizer from `tokenizer` (a Tokenizer or a .model path) or has none. The fingerprint is
    computed once here, before the cast to `dtype`: from the folder's files, or for an in-memory model
    from its weights as handed in, cast to fp32 (the module is not copied: the bundle holds the same
    module, moved to `dtype`/`device`).
    """
    device = torch.device(device)
    if isinstance(model, Megalodon):
        tok = tokenizer if isinstance(tokenizer, Tokenizer) or tokenizer is None else Tokenizer.from_file(tokenizer)
        fingerprint = weights_fingerprint(model, None if tok is None else tok.model_bytes())
        module, source = model, IN_MEMORY
    else:
        if tokenizer is not None:
            raise ValueError("tokenizer= is for in-memory models; a model folder brings its own tokenizer.model")
        loaded = load_folder(model)
        tok = None if loaded.tokenizer_file is None else Tokenizer.from_file(loaded.tokenizer_file)
        fingerprint = folder_fingerprint(loaded.folder, loaded.files)
        module, source = loaded.model, str(loaded.folder)
    if tok is not None and tok.vocab_size > module.config.vocab_size:
        raise CheckpointError(f"{tok.source}: tokenizer has {tok.vocab_size} pieces but the model in {source} "
                              f"only {module.config.vocab_size} embeddings")
    module = module.to(device=device, dtype=dtype).eval()
    logger.info("loaded model %s (%s on %s, fingerprint %s)", source, dtype, device, fingerprint[:16])
    return ModelBundle(module, tok, fingerprint, dtype, device, source)

