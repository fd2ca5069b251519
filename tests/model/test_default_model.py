"""The default model shipped in the repository loads with no argument and is usable as shipped."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch

from megalodoc.model import MegalodonConfig, load_bundle
from megalodoc.model.checkpoint import DEFAULT_MODEL_DIR, SHARD_BYTES


def test_default_model_loads_with_its_tokenizer():
    bundle = load_bundle()
    model, tokenizer = bundle.model, bundle.require_tokenizer()
    assert model.config == MegalodonConfig.preset("megalodoc-6m")
    assert tokenizer.vocab_size == model.config.vocab_size
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (
        model.config.pad_id, model.config.unk_id, model.config.bos_id, model.config.eos_id)
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_default_model_files_fit_the_repository_limits():
    files = [p for p in DEFAULT_MODEL_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 40 * 1024 * 1024
    assert all(p.stat().st_size <= SHARD_BYTES for p in files if p.suffix == ".safetensors")


def test_default_model_predicts_better_than_chance():
    bundle = load_bundle()
    model, tokenizer = bundle.model, bundle.require_tokenizer()
    ids = tokenizer.encode((Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()[:3000])
    x = torch.tensor([[model.config.bos_id, *ids]])
    with torch.no_grad():
        logits, _ = model(x[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0], x[0, 1:]).item()
    assert loss < 0.6 * torch.log(torch.tensor(float(model.config.vocab_size))).item()


def test_default_model_uses_the_state_carried_across_chunks():
    """On held-out code (asyncio is never trained on), the first tokens of each chunk are predicted
    clearly better when the state read from the previous chunks is carried in than from a fresh state."""
    from megalodoc.ingest.evaluate import document_losses, token_byte_lengths

    bundle = load_bundle()
    model, tokenizer = bundle.model, bundle.require_tokenizer()
    C = model.config.chunk_size
    text = (Path(sysconfig.get_paths()["stdlib"]) / "asyncio" / "base_events.py").read_text()
    ids = tokenizer.encode(text)[: 12 * C]
    losses = document_losses(model, ids, token_byte_lengths(tokenizer))
    early = (losses.positions % C < 8) & (losses.positions >= C)  # offsets 1..7 of chunks 1..11
    carried, reset = float(losses.carried[early].sum()), float(losses.reset[early].sum())
    assert carried < 0.95 * reset, (carried, reset)
    assert float(losses.carried.sum()) < float(losses.reset.sum())
