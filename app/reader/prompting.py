"""The prompt format of a model: how evidence passages and a question are laid out before the answer.

A model folder's config.json may hold a "prompt_format" object with any of the keys of `PromptFormat`;
missing keys keep the plain default, which suits a base model that continues text: the passages, then
"Question: ...", then "Answer:". A stronger (instruction-tuned) checkpoint brings its own format there, so
no code changes. Unknown keys or wrong types are refused with the file named.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_KEY = "prompt_format"


class PromptFormatError(ValueError):
    """A "prompt_format" entry that cannot be used; the message names the file."""


@dataclass(frozen=True)
class PromptFormat:
    """passage: one evidence passage, with {where} (e.g. "page 3") and {text}; question: the text after the
    passages, with {passages} (all passages joined) and {question}; stop: strings that end the answer;
    max_passages: how many of the best passages the prompt holds."""

    passage: str = "From {where}:\n{text}\n\n"
    question: str = "\n\n{passages}Question: {question}\nAnswer:"
    stop: tuple[str, ...] = field(default=("\n\n", "\nQuestion:"))
    max_passages: int = 2

    def render(self, passages: Sequence[tuple[str, str]], question: str) -> str:
        """The prompt text for (where, text) passages and the question."""
        joined = "".join(self.passage.format(where=where, text=text) for where, text in passages)
        return self.question.format(passages=joined, question=question)

    def cut_at_stop(self, text: str) -> tuple[str, bool]:
        """(text up to the first stop string, whether one was found). Leading whitespace of the answer
        does not count as a stop (a model often starts its answer on a new line)."""
        lead = len(text) - len(text.lstrip())
        cut = min((i for i in (text.find(stop, lead) for stop in self.stop if stop) if i >= 0), default=-1)
        return (text, False) if cut < 0 else (text[:cut], True)


def prompt_format_from(config: Mapping[str, Any], source: str) -> PromptFormat:
    """The format described by config.json's "prompt_format" (the default when absent)."""
    raw = config.get(CONFIG_KEY)
    if raw is None:
        return PromptFormat()
    if not isinstance(raw, Mapping):
        raise PromptFormatError(f"{source}: \"{CONFIG_KEY}\" must be an object, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(PromptFormat)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PromptFormatError(f"{source}: unknown \"{CONFIG_KEY}\" keys {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = dict(raw)
    problems = []
    for key in ("passage", "question"):
        if key in values and not isinstance(values[key], str):
            problems.append(f"{key} must be a string")
    if "stop" in values:
        if not (isinstance(values["stop"], list) and all(isinstance(s, str) for s in values["stop"])):
            problems.append("stop must be a list of strings")
        else:
            values["stop"] = tuple(values["stop"])
    if "max_passages" in values and not (isinstance(values["max_passages"], int) and values["max_passages"] >= 0):
        problems.append("max_passages must be an integer >= 0")
    if problems:
        raise PromptFormatError(f"{source}: bad \"{CONFIG_KEY}\": " + "; ".join(problems))
    result = PromptFormat(**values)
    try:
        result.render([("page 1", "text")], "question?")
    except (KeyError, IndexError, ValueError) as exc:
        raise PromptFormatError(f"{source}: \"{CONFIG_KEY}\" template does not format ({exc!r})") from exc
    return result


def load_prompt_format(model_folder: str | Path | None) -> PromptFormat:
    """The format kept in `model_folder`/config.json; the default for a model without a folder."""
    if model_folder is None:
        return PromptFormat()
    path = Path(model_folder) / "config.json"
    if not path.is_file():
        return PromptFormat()
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PromptFormatError(f"{path}: cannot read the model config ({exc})") from exc
    return prompt_format_from(config, str(path))
