"""The whole model on a GPU with the Triton kernels against the same model with the PyTorch twins:
one-shot, streamed and decoded (one token per call) logits, the carried state, and the gradients of a
training step. This is the check to pass before dispatch.TRITON_IS_CUDA_DEFAULT may become True."""

from __future__ import annotations

import pytest
import torch

from megalodoc.model import Megalodon, MegalodonConfig

from tolerances import TRITON_VS_TWIN_REL_RMS, rel_rms

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


DECODE_FROM, DECODE_TO = 1260, 1300  # chunk 256: positions 236-255 of one chunk, then 0-19 of the next


def _model() -> Megalodon:
    torch.manual_seed(0)
    cfg = MegalodonConfig.preset("megalodoc-6m", chunk_size=256)
    return Megalodon(cfg).cuda().eval()


def _run(model: Megalodon, ids: torch.Tensor, backend: str, monkeypatch) -> dict[str, torch.Tensor]:
    monkeypatch.setenv("MEGALODOC_BACKEND", backend)
    with torch.no_grad():
        logits, state = model(ids)
        streamed, s = [], None
        for start in range(0, ids.shape[1], 300):  # splits inside and across chunks
            out, s = model(ids[:, start : start + 300], s)
            streamed.append(out)
        # decoding as Generation runs: the prompt's state and then one token per call, all under
        # inference_mode, across the chunk end at 1,280
        with torch.inference_mode():
            decoded, s = [], model(ids[:, :DECODE_FROM], compute_logits=False)[1]
            for t in range(DECODE_FROM, DECODE_TO):
                out, s = model(ids[:, t : t + 1], s)
                decoded.append(out)
    model.zero_grad(set_to_none=True)
    loss_logits, _ = model(ids[:, :1024])
    torch.nn.functional.cross_entropy(loss_logits[0, :-1], ids[0, 1:1024]).backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()
             if "cema" in name or "timenorm" in name}
    return {"logits": logits, "streamed": torch.cat(streamed, 1), "decoded": torch.cat(decoded, 1),
            "ema": state.layers[-1].ema, "final_var": state.final_norm.var, **grads}


def test_triton_backend_matches_twins_in_the_model(monkeypatch) -> None:
    model = _model()
    ids = torch.randint(0, model.config.vocab_size, (2, 1500), device="cuda")
    twin = _run(model, ids, "torch", monkeypatch)
    fast = _run(model, ids, "triton", monkeypatch)
    for name, want in twin.items():
        got = fast[name]
        assert rel_rms(got, want) <= TRITON_VS_TWIN_REL_RMS, f"{name}: rel RMS {rel_rms(got, want):.2e}"
    assert rel_rms(fast["streamed"], fast["logits"]) <= 1e-4, "triton: streamed != one-shot"
    for name, run in (("triton", fast), ("twins", twin)):
        one_shot = run["logits"][:, DECODE_FROM:DECODE_TO]
        assert rel_rms(run["decoded"], one_shot) <= 1e-4, f"{name}: decoded token by token != one-shot"
