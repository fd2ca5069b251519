"""Token generation from any state: greedy, temperature, top-k, top-p, seed, stop tokens, max tokens.

    gen = Generation(model, prompt_ids, state=snapshot_state, settings=SamplingSettings(top_p=0.9))
    for token in gen:          # tokens are yielded as they are produced
        ...
    gen.state                  # the state after the prompt and every yielded token
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from megalodoc.model.megalodon import Megalodon
from megalodoc.model.state import ModelState


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
        if self.max_new_tokens < 0:
            problems.append(f"max_new_tokens={self.max_new_tokens} must be >= 0")
        if self.temperature < 0:
            problems.append(f"temperature={self.temperature} must be >= 0")
        if self.top_k < 0:
            problems.append(f"top_k={self.top_k} must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p={self.top_p} must be in (0, 1]")
        if problems:
            raise ValueError("invalid SamplingSettings: " + "; ".join(problems))

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


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
    filtered = filter_logits(logits.float() / settings.temperature, settings.top_k, settings.top_p)
    probs = torch.softmax(filtered, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class Generation:
    """An iterator over generated token ids for one sequence (batch 1)."""

    def __init__(
        self,
        model: Megalodon,
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
        self.model = model
        self.settings = settings or SamplingSettings()
        self.prompt = ids
        self.state = state
        self.tokens: list[int] = []
        self.stopped_by: str | None = None  # "stop_token" or "max_new_tokens" once finished
        self._generator = torch.Generator(device="cpu")
        if self.settings.seed is not None:
            self._generator.manual_seed(self.settings.seed)
        else:
            self._generator.seed()

    def __iter__(self) -> Iterator[int]:
        device = self.model.embed.weight.device
        s = self.settings
        with torch.no_grad():
            logits, self.state = self.model(self.prompt.to(device)[None], self.state)
            while len(self.tokens) < s.max_new_tokens:
                token = pick_token(logits[0, -1].cpu(), s, self._generator)
                self.tokens.append(token)
                yield token
                last = token in s.stop_tokens or len(self.tokens) >= s.max_new_tokens
                ids = torch.tensor([[token]], dtype=torch.int64, device=device)
                logits, self.state = self.model(ids, self.state, compute_logits=not last)
                if token in s.stop_tokens:
                    self.stopped_by = "stop_token"
                    return
            self.stopped_by = "max_new_tokens"


def generate(
    model: Megalodon,
    prompt: Sequence[int] | torch.Tensor,
    state: ModelState | None = None,
    **settings: object,
) -> Iterator[int]:
    """Shorthand: iterate over the tokens of `Generation(model, prompt, state, SamplingSettings(**settings))`."""
    return iter(Generation(model, prompt, state, SamplingSettings(**settings)))  # type: ignore[arg-type]
