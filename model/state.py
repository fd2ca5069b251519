"""The typed recurrent state of a Megalodon model, and its flat named-tensor form.

At a chunk boundary a layer's state is only its CEMA hidden state and its timestep-norm statistics; in
the middle of a chunk it also holds the rotated keys and values of the unfinished chunk. The model's
state adds the final norm's statistics and the number of tokens consumed. Every dataclass is frozen and
the model never mutates a state it was handed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from megalodoc.model.config import MegalodonConfig

# Bumped whenever the flat layout or the meaning of a field changes.
STATE_SCHEMA_VERSION = 1


class StateMismatchError(ValueError):
    """A state does not fit the model it is used with; the message says what differs."""


@dataclass(frozen=True)
class NormState:
    """Timestep-norm statistics: count (B,) int64, mean and population variance (B, G) fp32."""

    count: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.count, self.mean, self.var


@dataclass(frozen=True)
class LayerState:
    """One block: CEMA hidden (B, D, N) complex64, norm statistics, keys (B, n, H, d_z) and values
    (B, n, H, d_v) of the unfinished chunk (n = tokens already in it, 0 at a chunk boundary)."""

    ema: torch.Tensor
    norm: NormState
    keys: torch.Tensor
    values: torch.Tensor


@dataclass(frozen=True)
class ModelState:
    """The whole model's streaming state after `position` tokens."""

    layers: tuple[LayerState, ...]
    final_norm: NormState
    position: int

    @property
    def batch_size(self) -> int:
        return int(self.final_norm.count.shape[0])

    @property
    def at_chunk_boundary(self) -> bool:
        return all(layer.keys.shape[1] == 0 for layer in self.layers)

    def nbytes(self) -> int:
        """Bytes held by the state's tensors."""
        return sum(t.numel() * t.element_size() for t in self.to_flat().values())

    def with_normal_tensors(self) -> ModelState:
        """This state, or a copy of it where any tensor made under torch.inference_mode (ingest and
        generation make states there) is cloned into a normal tensor: autograd refuses to save inference
        tensors for a backward, so a call with gradients needs the copy."""
        tensors = [t for layer in self.layers for t in (layer.ema, layer.keys, layer.values, *layer.norm.as_tuple())]
        if not any(t.is_inference() for t in tensors + list(self.final_norm.as_tuple())):
            return self

        def normal(t: torch.Tensor) -> torch.Tensor:
            return t.clone() if t.is_inference() else t

        def norm(n: NormState) -> NormState:
            return NormState(normal(n.count), normal(n.mean), normal(n.var))

        layers = tuple(LayerState(normal(layer.ema), norm(layer.norm), normal(layer.keys), normal(layer.values))
                       for layer in self.layers)
        return ModelState(layers, norm(self.final_norm), self.position)

    # ---- flat form ----
    def to_flat(self) -> dict[str, torch.Tensor]:
        """Named tensors, complex stored as (..., 2) real pairs; `from_flat` inverts it bit-exactly.

        No copies are made where they are not needed (the codec only reads them): most of the tensors
        share memory with the state, so editing one in place edits the state. Clone before editing."""
        flat: dict[str, torch.Tensor] = {"position": torch.tensor(self.position, dtype=torch.int64)}
        for i, layer in enumerate(self.layers):
            flat[f"layers.{i}.ema"] = torch.view_as_real(layer.ema).contiguous()
            flat[f"layers.{i}.keys"] = _own(layer.keys)
            flat[f"layers.{i}.values"] = _own(layer.values)
            _put_norm(flat, f"layers.{i}.norm", layer.norm)
        _put_norm(flat, "final_norm", self.final_norm)
        return flat

    @classmethod
    def from_flat(cls, flat: Mapping[str, torch.Tensor], config: MegalodonConfig | None = None) -> ModelState:
        """Rebuild a state from `to_flat` output. Always checked: every entry is there, `position` is an int64
        scalar, each ema is float32 or float64 real pairs (..., 2). With a config, also `validate`: every
        shape and dtype against it, the norm counts against the position, the norm means and variances
        finite and the variances not negative (the ema values and the keys and values are not read)."""
        if "position" not in flat:
            raise StateMismatchError("flat state has no 'position' entry")
        position = flat["position"]
        if position.dtype != torch.int64 or position.dim() != 0:
            raise StateMismatchError(f"position is {position.dtype}{tuple(position.shape)}, expected an int64 scalar")
        num_layers = 0
        while f"layers.{num_layers}.ema" in flat:
            num_layers += 1
        layers = []
        for i in range(num_layers):
            prefix = f"layers.{i}"
            layers.append(
                LayerState(
                    ema=_complex(_need(flat, f"{prefix}.ema"), f"{prefix}.ema"),
                    norm=_get_norm(flat, f"{prefix}.norm"),
                    keys=_need(flat, f"{prefix}.keys"),
                    values=_need(flat, f"{prefix}.values"),
                )
            )
        state = cls(tuple(layers), _get_norm(flat, "final_norm"), int(position.item()))
        if config is not None:
            state.validate(config)
        return state

    # ---- checks ----
    def validate(self, config: MegalodonConfig, batch_size: int | None = None, *, check_values: bool = True) -> None:
        """Raise StateMismatchError naming every field that does not fit `config` (and the batch).
        check_values=False checks only shapes and dtypes, which reads no tensor data (no device sync):
        the model does that on every call; where a state enters from outside (`from_flat`, restore) the
        norm counts are also checked against the position and the norm means and variances for values no
        model call makes (not finite, a negative variance)."""
        B = self.batch_size if batch_size is None else batch_size
        c = config
        problems = []
        if len(self.layers) != c.num_layers:
            problems.append(f"state has {len(self.layers)} layers, model has {c.num_layers}")
        n = self.position % c.chunk_size
        expect = {
            "ema": ((B, c.model_dim, c.cema_ndim), True),
            "keys": ((B, n, c.num_heads, c.head_dim), False),
            "values": ((B, n, c.num_heads, c.value_head_dim), False),
        }
        for i, layer in enumerate(self.layers[: c.num_layers]):
            for name, (shape, is_complex) in expect.items():
                t = getattr(layer, name)
                if tuple(t.shape) != shape:
                    problems.append(f"layers.{i}.{name} has shape {tuple(t.shape)}, expected {shape}")
                if t.is_complex() != is_complex:
                    kind = "complex" if is_complex else "real"
                    problems.append(f"layers.{i}.{name} has dtype {t.dtype}, expected a {kind} dtype")
            problems += _norm_problems(layer.norm, f"layers.{i}.norm", B, c.norm_num_groups, self.position,
                                       check_values)
        problems += _norm_problems(self.final_norm, "final_norm", B, c.norm_num_groups, self.position, check_values)
        if check_values:
            norms = {f"layers.{i}.norm": layer.norm for i, layer in enumerate(self.layers)}
            problems += _statistic_problems({**norms, "final_norm": self.final_norm})
        if self.position < 0:
            problems.append(f"position {self.position} is negative")
        if problems:
            raise StateMismatchError("state does not match the model: " + "; ".join(problems))


def _own(t: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor with storage of its own (the cache is a view of a chunk-sized buffer)."""
    return t.clone() if t._base is not None else t.contiguous()


def _put_norm(flat: dict[str, torch.Tensor], prefix: str, norm: NormState) -> None:
    flat[f"{prefix}.count"] = norm.count.contiguous()
    flat[f"{prefix}.mean"] = norm.mean.contiguous()
    flat[f"{prefix}.var"] = norm.var.contiguous()


def _complex(pairs: torch.Tensor, key: str) -> torch.Tensor:
    """(..., 2) float32/float64 real pairs -> (...) complex64/complex128."""
    if pairs.dtype not in (torch.float32, torch.float64) or pairs.dim() == 0 or pairs.shape[-1] != 2:
        raise StateMismatchError(f"{key} is {pairs.dtype}{tuple(pairs.shape)}, "
                                 "expected float32 (or float64) real pairs (..., 2)")
    return torch.view_as_complex(pairs.contiguous())


def _get_norm(flat: Mapping[str, torch.Tensor], prefix: str) -> NormState:
    return NormState(_need(flat, f"{prefix}.count"), _need(flat, f"{prefix}.mean"), _need(flat, f"{prefix}.var"))


def _need(flat: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in flat:
        raise StateMismatchError(f"flat state is missing {key!r}")
    return flat[key]


def _norm_problems(
    norm: NormState, prefix: str, B: int, G: int, position: int, check_values: bool = True
) -> list[str]:
    problems = []
    if tuple(norm.count.shape) != (B,) or norm.count.dtype != torch.int64:
        problems.append(f"{prefix}.count is {norm.count.dtype}{tuple(norm.count.shape)}, expected int64({B},)")
    elif check_values and bool((norm.count != position).any()):
        problems.append(f"{prefix}.count {norm.count.tolist()} disagrees with position {position}")
    for name in ("mean", "var"):
        t = getattr(norm, name)
        if tuple(t.shape) != (B, G) or t.dtype not in (torch.float32, torch.float64):
            problems.append(f"{prefix}.{name} is {t.dtype}{tuple(t.shape)}, expected float32({B}, {G})")
    return problems


def _statistic_problems(norms: dict[str, NormState]) -> list[str]:
    """Means and variances that no model call makes (not finite, negative variance), by name. One check
    over all of them at once (a restore pays it), and a search by name only when it fails."""
    means = [n.mean.reshape(-1) for n in norms.values() if n.mean.is_floating_point()]
    variances = [n.var.reshape(-1) for n in norms.values() if n.var.is_floating_point()]
    if not means and not variances:  # wrong dtypes, reported by _norm_problems
        return []
    values = torch.cat(means + variances)  # (every mean, then every variance)
    first_variance = sum(t.numel() for t in means)
    if bool(torch.isfinite(values).all() & (values[first_variance:] >= 0).all()):
        return []
    problems = []
    for prefix, norm in norms.items():
        for name in ("mean", "var"):
            t = getattr(norm, name)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                problems.append(f"{prefix}.{name} holds a value that is not finite")
        if norm.var.is_floating_point() and bool((norm.var < 0).any()):
            problems.append(f"{prefix}.var holds a negative variance")
    return problems
