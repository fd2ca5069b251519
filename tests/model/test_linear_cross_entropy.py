"""The blockwise head and cross-entropy (model/train/linear_cross_entropy.py) against its twin, the plain
F.cross_entropy(F.linear(h, W), targets): loss and gradients, in every block layout; and the training
loss that uses it against the plain one, over a whole model's gradients."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import megalodoc.model.train.linear_cross_entropy as lce
from megalodoc.model import Megalodon, MegalodonConfig
from megalodoc.model.train.distributed import DistInfo
from megalodoc.model.train.linear_cross_entropy import linear_cross_entropy, plain_linear_cross_entropy
from megalodoc.model.train.token_data import TokenFile, gather_windows
from megalodoc.model.train.trainer import LanguageModelLoss, evaluate

from tolerances import FLOAT64_EXACT, TWIN_VS_NAIVE_FP32, assert_close


class MatrixProducts(TorchDispatchMode):
    """Counts the matrix products run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (the protocol)
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_, torch.ops.aten.bmm):
            self.count += 1
        return func(*args, **(kwargs or {}))


class LogitShapes(TorchDispatchMode):
    """Records the rows of every matrix product whose output has `vocab` columns (the head's logits)."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.rows: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (the protocol)
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm) \
                and out.shape[-1] == self.vocab:
            self.rows.append(out.numel() // self.vocab)
        return out


def inputs(M: int, D: int, V: int, dtype: torch.dtype, seed: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h (M, D) and weight (V, D) needing gradients, targets (M,)."""
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(M, D, generator=g, dtype=torch.float64) * 2).to(dtype).requires_grad_()
    w = torch.randn(V, D, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    targets = torch.randint(0, V, (M,), generator=g)
    return h, w, targets


def loss_and_grads(fn, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor,  # noqa: ANN001
                   scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fn's loss and the gradients of h and w after backward from scale * loss."""
    h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    loss = fn(h, w, targets)
    (loss * scale).backward()
    return loss.detach(), h.grad, w.grad


# rows: 1 per block, a block that leaves a short last one, exactly two blocks, one block bigger than M
@pytest.mark.parametrize("rows", [1, 8, 19, 64])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_loss_and_gradients_equal_the_plain_expression(rows, dtype):
    h, w, targets = inputs(38, 12, 50, dtype)
    got = loss_and_grads(lambda *a: linear_cross_entropy(*a, rows=rows), h, w, targets, scale=3.0)
    want = loss_and_grads(plain_linear_cross_entropy, h, w, targets, scale=3.0)  # an upstream gradient of 3
    tol = FLOAT64_EXACT if dtype == torch.float64 else TWIN_VS_NAIVE_FP32
    for name, g, e in zip(("loss", "grad h", "grad W"), got, want, strict=True):
        assert_close(g, e, tol, f"rows={rows} {dtype} {name}", rtol=tol)


def test_only_the_gradients_asked_for_are_computed():
    h, w, targets = inputs(10, 4, 7, torch.float64)
    frozen = w.detach()
    with MatrixProducts() as products:
        loss = linear_cross_entropy(h, frozen, targets, rows=3)
    assert products.count == 4 * 2  # per block: the logits and the gradient of h only
    loss.backward()
    assert h.grad is not None
    assert_close(h.grad, torch.autograd.grad(plain_linear_cross_entropy(h, frozen, targets), h)[0],
                 FLOAT64_EXACT, "grad h with a frozen head")
    with torch.no_grad(), MatrixProducts() as products:  # the loss alone: one product per block of 3 rows
        assert_close(linear_cross_entropy(h, w, targets, rows=3), plain_linear_cross_entropy(h, w, targets),
                     FLOAT64_EXACT, "loss without gradients")
    assert products.count == 4 + 1  # four blocks, and the plain expression's one
    with MatrixProducts() as products:
        linear_cross_entropy(h, w, targets, rows=3)
    assert products.count == 4 * 3  # with gradients: the logits, then the gradients of h and of W per block


@pytest.mark.parametrize(("dtype", "rows"), [(torch.float32, 512), (torch.float64, 256)], ids=str)
def test_the_default_block_holds_16_mib_of_logits(dtype, rows):
    """At the shipped vocabulary, 16 MiB blocks: 512 fp32 rows, 256 fp64 rows (counted as products)."""
    h, w, targets = inputs(2 * rows + 1, 3, 8192, dtype)
    with torch.no_grad(), MatrixProducts() as products:
        got = linear_cross_entropy(h, w, targets)
    assert products.count == 3  # two full blocks and one row
    tol = FLOAT64_EXACT if dtype == torch.float64 else TWIN_VS_NAIVE_FP32
    assert_close(got, plain_linear_cross_entropy(h, w, targets), tol, f"{dtype} default rows", rtol=tol)


def test_bad_inputs_are_named():
    h, w, targets = inputs(5, 3, 4, torch.float64)
    with pytest.raises(ValueError, match="rows must be at least 1"):
        linear_cross_entropy(h, w, targets, rows=0)
    with pytest.raises(ValueError, match=r"targets are torch.int64\(4,\), expected int64 \(5,\)"):
        linear_cross_entropy(h, w, targets[:4])
    with pytest.raises(ValueError, match="targets are torch.int32"):
        linear_cross_entropy(h, w, targets.int())
    with pytest.raises(ValueError, match=r"must be \(M, D\) and \(V, D\)"):
        linear_cross_entropy(h[None], w, targets)
    with pytest.raises(ValueError, match="h is torch.float32 and weight torch.float64"):
        linear_cross_entropy(h.float(), w, targets)
    with pytest.raises((IndexError, RuntimeError)):  # a target outside the vocabulary
        linear_cross_entropy(h, w, torch.tensor([0, 1, 2, 3, 4]), rows=2)
    with torch.no_grad():  # no rows: the mean of nothing, as the plain expression
        assert torch.isnan(linear_cross_entropy(h[:0], w, targets[:0]))


def test_a_backward_after_an_in_place_change_of_the_head_is_refused():
    h, w, targets = inputs(6, 3, 5, torch.float64)
    loss = linear_cross_entropy(h, w, targets, rows=4)
    with torch.no_grad():
        w.mul_(2.0)
    with pytest.raises(RuntimeError, match="weight was modified in place after the forward"):
        loss.backward()


@pytest.mark.parametrize("share_emb", [True, False], ids=["tied head", "own head"])
def test_the_training_loss_gives_the_plain_loss_and_gradients(share_emb):
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny", share_emb=share_emb)).double().eval()
    plain = copy.deepcopy(model)
    ids = torch.randint(0, model.config.vocab_size, (2, 41), generator=torch.Generator().manual_seed(1))
    x, targets = ids[:, :-1], ids[:, 1:]
    loss = LanguageModelLoss(model)(x, targets)  # takes the blockwise loss (gradients on, no autocast)
    assert type(loss.grad_fn).__name__ == "LinearCrossEntropyBackward"
    loss.backward()
    logits, _ = plain(x)
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    want.backward()
    assert_close(loss.detach(), want.detach(), FLOAT64_EXACT, "loss")
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        assert_close(p.grad, q.grad, FLOAT64_EXACT, f"grad {name}", rtol=1e-9)


def test_the_training_loss_keeps_the_plain_expression_under_autocast_and_for_bf16():
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = LanguageModelLoss(model)(ids[:, :-1], ids[:, 1:])
    in_bf16 = LanguageModelLoss(model.bfloat16())(ids[:, :-1], ids[:, 1:])
    for loss in (under_autocast, in_bf16):
        assert type(loss.grad_fn).__name__ != "LinearCrossEntropyBackward" and torch.isfinite(loss)


def test_without_gradients_the_training_loss_runs_in_blocks(monkeypatch):
    """Validation (no_grad) takes the blockwise loss too: no (B*L, V) logits, the plain loss's value."""
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).double().eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 41), generator=torch.Generator().manual_seed(3))
    x, targets = ids[:, :-1], ids[:, 1:]
    V = model.config.vocab_size
    rows = 16  # 80 rows of logits in blocks of 16
    monkeypatch.setattr(lce, "ROW_BLOCK_BYTES", rows * V * 8)
    with torch.no_grad(), LogitShapes(V) as shapes:
        loss = LanguageModelLoss(model)(x, targets)
    assert shapes.rows == [rows] * 5
    with torch.no_grad():
        logits, _ = model(x)
    want = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    assert_close(loss, want, FLOAT64_EXACT, "validation loss")


def test_validation_gives_the_plain_mean_loss(tmp_path, monkeypatch):
    """trainer.evaluate over a token file: the mean next-token loss of its windows, computed in blocks."""
    torch.manual_seed(0)
    model = Megalodon(MegalodonConfig.preset("tiny")).double()
    monkeypatch.setattr(lce, "ROW_BLOCK_BYTES", 20 * model.config.vocab_size * 8)  # blocks of 20 rows
    tokens = np.random.default_rng(4).integers(0, model.config.vocab_size, 200).astype(np.uint16)
    data = TokenFile(tmp_path / "val.bin", tokens, {"tokens": 200, "bytes": 800})
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    model.train()
    with LogitShapes(model.config.vocab_size) as shapes:
        got = evaluate(model, data, window=33, sequences=5, micro=2, info=info)
    assert shapes.rows == [20, 20, 20, 6] * 2 + [20, 13]  # micro-batches of 2, 2 and 1 windows of 33
    assert model.training  # put back as it was
    starts = np.linspace(0, len(data) - 34, 5).astype(np.int64)
    ids, targets = gather_windows(data.tokens, starts, 33)
    with torch.no_grad():
        logits, _ = model.eval()(ids)
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).item()
    assert got == pytest.approx(want, rel=1e-12)
