"""Token generation from any state: greedy, temperature, top-k, top-p, seed, stop tokens, max tokens.

    gen = Generation(bundle, prompt_ids, state=snapshot_state, settings=SamplingSettings(top_p=0.9))
    for token in gen:          # tokens are yielded as they are produced
        ...
    gen.final_state            # the state after the prompt and every generated token

A Generation is a single-use stream: it reads the prompt once and can be iterated once. Iterating it a
second time raises `GenerationUsedError` (a retry is a new Generation from the same starting state:
states are never mutated, so the one you passed in is still valid). Text: feed the tokens to
`megalodoc.model.tokenizer.IncrementalDecoder`, which never yields half a character.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from megalodoc.model.bundle import ModelBundle
from megalodoc.model.megalodon import Megalodon
from megalodoc.model.state import ModelState


class GenerationUsedError(RuntimeError):
    """A Generation was iterated a second time, or its final state was asked for before it finished."""


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick each next token. temperature 0 or greedy=True means argmax."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1.0: no nucleus filter
    greedy: bool = False
    seed: int | None = None
    stop_tokens: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        problems = []
        if not _whole(self.max_new_tokens) or self.max_new_tokens < 0:
            problems.append(f"max_new_tokens={self.max_new_tokens!r} must be a whole number >= 0")
        if not 0 <= self.temperature < float("inf"):  # also refuses NaN
            problems.append(f"temperature={self.temperature} must be >= 0 and finite")
        if not _whole(self.top_k) or self.top_k < 0:
            problems.append(f"top_k={self.top_k!r} must be a whole number >= 0")
        if self.seed is not None and not (_whole(self.seed) and 0 <= self.seed < 2**64):  # a torch.Generator seed
            problems.append(f"seed={self.seed!r} must be a whole number in [0, 2**64)")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p={self.top_p} must be in (0, 1]")
        if problems:
            raise ValueError("invalid SamplingSettings: " + "; ".join(problems))

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


def _whole(value: object) -> bool:
    """An int and not a bool (True would pass for 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """logits (V,) with everything outside the top-k / nucleus set to -inf (the best token always stays)."""
    out = logits.clone()
    if 0 < top_k < out.numel():
        kth = torch.topk(out, top_k).values[-1]
        out[out < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token once the mass strictly before it already reaches top_p
        drop = (torch.cumsum(probs, dim=-1) - probs) >= top_p
        out[order[drop]] = float("-inf")
    return out


def pick_token(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator) -> int:
    """One token id from last-position logits (V,)."""
    if settings.is_greedy:
        return int(torch.argmax(logits))
    # Scaled from the best logit down, in float64: logits / 1e-38 overflows fp32 to inf (softmax then gives
    # NaN) and a temperature below 1.4e-45 is 0 in fp32. The best token scales to 0, the rest to at most 0
    # (-inf far below it): a tiny temperature samples among the best tokens, as the limit says.
    shifted = logits.double() - logits.double().max()  # (V,)
    scaled = (shifted / settings.temperature).float()  # (V,), finite or -inf
    filtered = filter_logits(scaled, settings.top_k, settings.top_p)
    probs = torch.softmax(filtered, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class Generation:
    """A single-use iterator over generated token ids for one sequence (batch 1).

    `model` is a ModelBundle or a bare Megalodon. `state` is the state before the prompt (None: start of
    a text). While it runs, `state` is the state after the prompt and the tokens yielded so far (plus the
    last yielded token once it finished); `final_state` is that state once the generation has finished.
    """

    def __init__(
        self,
        model: ModelBundle | Megalodon,
        prompt: Sequence[int] | torch.Tensor,
        state: ModelState | None = None,
        settings: SamplingSettings | None = None,
    ) -> None:
        ids = torch.as_tensor(list(prompt) if not isinstance(prompt, torch.Tensor) else prompt, dtype=torch.int64)
        if ids.dim() != 1:
            raise ValueError(f"prompt must be a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
        if ids.numel() == 0:
            raise ValueError(
                "prompt is empty: generation needs at least one token to read next-token logits from "
                "(re-feed the last token before the state's position, or start with the BOS id)"
            )
        if state is not None and state.batch_size != 1:
            raise ValueError(f"generation runs one sequence; state has batch size {state.batch_size}")
        self.model = model.model if isinstance(model, ModelBundle) else model
        tokenizer = model.tokenizer if isinstance(model, ModelBundle) else None
        vocab = self.model.config.vocab_size
        # a tokenizer may have fewer pieces than the model has embeddings: only ids it can decode are picked
        self.pickable = vocab if tokenizer is None else min(vocab, tokenizer.vocab_size)
        self.settings = settings or SamplingSettings()
        self.prompt = ids
        self.initial_state = state
        self.state = state
        self.tokens: list[int] = []
        self.stopped_by: str | None = None  # "stop_token", "max_new_tokens" or "closed" once finished
        self._started = False
        # a weak reference: the running generator's frame holds self, so a strong one would make a cycle
        # that only the garbage collector frees, closing the generator (and running the model) whenever it
        # runs, at interpreter exit too, where PyTorch aborts the process
        self._iterator: weakref.ref[Generator[int, None, None]] | None = None
        self._generator = torch.Generator(device="cpu")
        if self.settings.seed is not None:
            self._generator.manual_seed(self.settings.seed)
        else:
            self._generator.seed()

    @property
    def finished(self) -> bool:
        return self.stopped_by is not None

    @property
    def final_state(self) -> ModelState:
        """The state after the prompt and every generated token; only once the generation has finished."""
        if self.stopped_by is None or self.state is None:
            raise GenerationUsedError("the generation has not finished: iterate it to the end first")
        return self.state

    def __iter__(self) -> Iterator[int]:
        if self._started:
            raise GenerationUsedError(
                "this Generation was already iterated (it is single-use: iterating again would feed the prompt "
                "a second time); start a new Generation from `initial_state` to retry"
            )
        self._started = True
        iterator = self._run()
        self._iterator = weakref.ref(iterator)
        return iterator

    # inference_mode per model call, never across a yield: the consumer's code keeps its grad mode. Faster
    # than no_grad (no version counters or view tracking: ~8% of a decoding step of the shipped model); the
    # states are inference tensors, as those ingest makes, and every later call reads them as inputs only
    @torch.inference_mode()
    def _feed(self, ids: torch.Tensor, **options: bool) -> torch.Tensor | None:
        """ids (L,) into the model after self.state; self.state moves past them. Returns the logits."""
        logits, self.state = self.model(ids.to(self.model.embed.weight.device)[None], self.state, **options)
        return logits

    def _run(self) -> Generator[int, None, None]:
        s = self.settings
        logits = self._feed(self.prompt, compute_logits=s.max_new_tokens > 0, last_logits_only=True)
        while len(self.tokens) < s.max_new_tokens:
            token = pick_token(logits[0, -1, : self.pickable].cpu(), s, self._generator)
            self.tokens.append(token)
            try:
                yield token
            except GeneratorExit:  # the consumer stopped early: the state still takes in this token
                # at interpreter exit nothing can read the state, and PyTorch aborts on a model call
                if not sys.is_finalizing():
                    self._feed(torch.tensor([token]), compute_logits=False)
                self.stopped_by = "closed"
                raise
            last = token in s.stop_tokens or len(self.tokens) >= s.max_new_tokens
            logits = self._feed(torch.tensor([token]), compute_logits=not last)
            if token in s.stop_tokens:
                self.stopped_by = "stop_token"
                return
        self.stopped_by = "max_new_tokens"

    def close(self) -> None:
        """Stop early (e.g. a stop button): `final_state` then covers the tokens yielded so far. Dropping
        the iterator stops it as well."""
        iterator = None if self._iterator is None else self._iterator()
        if iterator is not None:
            iterator.close()


def generate(
    model: ModelBundle | Megalodon,
    prompt: Sequence[int] | torch.Tensor,
    state: ModelState | None = None,
    **settings: object,
) -> Iterator[int]:
    """Shorthand: iterate over the tokens of `Generation(model, prompt, state, SamplingSettings(**settings))`."""
    return iter(Generation(model, prompt, state, SamplingSettings(**settings)))  # type: ignore[arg-type]
