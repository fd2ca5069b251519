"""Chunk-aligned streaming replayed from captured CUDA graphs.

An eager streaming call of the 200M model launches about 800 kernels; on a GPU host whose Python needs
~8 us per launch that costs ~25 ms per call whatever its length, several times the GPU's own work for a
2,048-token chunk. A captured graph replays the same kernels, in the same order on the same data, with
one launch, so its state equals the eager call's bit for bit (tests/model/test_cuda_graph_gpu.py).

    stream = GraphedStream(model)
    state = stream(ids, state)      # == model(ids, state, compute_logits=False)[1]

Graphs are used only where they are exact and safe: CUDA, gradients off, a state at a chunk boundary
(no unfinished chunk, so the state's shapes are fixed) and a call of a whole number of chunks. Anything
else, including the first call from no state, runs the model eagerly. One graph is kept per call shape;
a change to any parameter (training, loading weights) drops them all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from megalodoc.model.megalodon import Megalodon
from megalodoc.model.state import LayerState, ModelState, NormState

log = logging.getLogger(__name__)

_WARMUP_CALLS = 3  # eager calls on a side stream before capture (allocator pools, kernel compilation)


def _state_tensors(state: ModelState) -> list[torch.Tensor]:
    """Every tensor of a boundary state that a call reads or writes, in a fixed order."""
    tensors: list[torch.Tensor] = []
    for layer in state.layers:
        tensors += [layer.ema, layer.norm.count, layer.norm.mean, layer.norm.var]
    final = state.final_norm
    return tensors + [final.count, final.mean, final.var]


def _state_from(tensors: list[torch.Tensor], template: ModelState, position: int) -> ModelState:
    """A ModelState over `tensors` (as ordered by _state_tensors) with empty key/value caches."""
    layers = []
    for i, layer in enumerate(template.layers):
        ema, count, mean, var = tensors[4 * i : 4 * i + 4]
        layers.append(LayerState(ema=ema, norm=NormState(count, mean, var),
                                 keys=layer.keys.new_empty(layer.keys.shape),
                                 values=layer.values.new_empty(layer.values.shape)))
    count, mean, var = tensors[-3:]
    return ModelState(tuple(layers), NormState(count, mean, var), position)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    ids: torch.Tensor  # (B, L) static input
    inputs: list[torch.Tensor]  # static input state tensors
    outputs: list[torch.Tensor]  # the graph's output state tensors (overwritten by every replay)


class GraphedStream:
    """Streams a model through captured CUDA graphs where that is exact (see the module docstring)."""

    def __init__(self, model: Megalodon) -> None:
        self.model = model
        self._graphs: dict[tuple, _Captured] = {}
        self._pool = None
        self._versions: tuple[int, ...] | None = None

    def _parameter_versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.model.parameters())

    def eligible(self, ids: torch.Tensor, state: ModelState | None) -> bool:
        """Whether a call can replay a graph: CUDA ids, no gradients, a boundary state of the same batch
        size, a whole number of chunks."""
        C = self.model.config.chunk_size
        return (
            ids.is_cuda and not torch.is_grad_enabled() and state is not None and state.at_chunk_boundary
            and ids.dim() == 2 and ids.shape[1] > 0 and ids.shape[1] % C == 0
            and state.batch_size == ids.shape[0] and state.layers[0].ema.device == ids.device
        )

    def __call__(self, ids: torch.Tensor, state: ModelState | None) -> ModelState:
        """The state after `ids`, exactly as model(ids, state, compute_logits=False)[1]."""
        if not self.eligible(ids, state):
            return self.model(ids, state, compute_logits=False)[1]
        versions = self._parameter_versions()
        if versions != self._versions:
            self._graphs.clear()
            self._versions = versions
        key = (tuple(ids.shape), tuple((t.dtype, tuple(t.shape)) for t in _state_tensors(state)))
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._graphs[key] = self._capture(ids, state)
        captured.ids.copy_(ids)
        for static, given in zip(captured.inputs, _state_tensors(state), strict=True):
            static.copy_(given)
        captured.graph.replay()
        return _state_from([t.clone() for t in captured.outputs], state, state.position + ids.shape[1])

    def _capture(self, ids: torch.Tensor, state: ModelState) -> _Captured:
        log.info("capturing a CUDA graph for calls of shape %s", tuple(ids.shape))
        static_ids = ids.clone()
        inputs = [t.clone() for t in _state_tensors(state)]
        static_state = _state_from(inputs, state, state.position)
        side = torch.cuda.Stream(device=ids.device)
        side.wait_stream(torch.cuda.current_stream(ids.device))
        with torch.cuda.stream(side):
            for _ in range(_WARMUP_CALLS):
                self.model(static_ids, static_state, compute_logits=False)
        torch.cuda.current_stream(ids.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            _, out_state = self.model(static_ids, static_state, compute_logits=False)
        return _Captured(graph, static_ids, inputs, _state_tensors(out_state))
