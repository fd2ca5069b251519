"""The model's opinion of a passage: how likely the question is right after reading it.

For a candidate chunk [start, end) the state after the passage is restored the way every reader
restores a state (the latest stored snapshot at or before `end`, then the stored token ids from there
re-read), then a short separator and the question are read and the log-probabilities of the question's
tokens summed. Every candidate is scored with the same question tokens, so the sums compare directly.

Candidates are scored one at a time (batch 1): each sits at another position, and a state's norm
statistics must agree with its single position, so states of different positions cannot share a batch.
Reading only the question after a stored state keeps each candidate at a few milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from megalodoc.ingest.library import restore_state as restore_document_state
from megalodoc.model import Megalodon, ModelBundle, ModelState
from megalodoc.storage import Store

logger = logging.getLogger(__name__)

# Read between the passage and the question: a paragraph break then a label, so the question starts
# the way a question after a passage starts in running text.
QUESTION_PREFIX = "\n\nQuestion: "


def restore_state(store: Store, loaded: ModelBundle, document_id: int, position: int) -> ModelState:
    """The state after `position` tokens of the document, restored as every reader restores one
    (`megalodoc.ingest.library.restore_state`). The stored snapshot is never modified."""
    return restore_document_state(store, loaded, store.get_document(document_id), position)


def question_ids(loaded: ModelBundle, question: str) -> tuple[list[int], int]:
    """(ids to read, how many leading ids are the prefix and not scored)."""
    tokenizer = loaded.require_tokenizer()
    prefix = tokenizer.encode(QUESTION_PREFIX)
    body = tokenizer.encode(question.strip())
    return prefix + body, len(prefix)


def question_log_likelihood(model: Megalodon, state: ModelState, ids: Sequence[int], scored_from: int) -> float:
    """Sum of log p(ids[i] | state, ids[:i]) for i >= scored_from (scored_from >= 1)."""
    if not 1 <= scored_from < len(ids):
        raise ValueError(f"need 1 <= scored_from < len(ids), got scored_from={scored_from}, {len(ids)} ids")
    with torch.no_grad():
        logits, _ = model(torch.tensor([list(ids)], dtype=torch.int64), state)  # (1, L, V)
    log_probs = torch.log_softmax(logits[0, :-1].double(), dim=-1)  # (L-1, V): predictions of ids[1:]
    targets = torch.tensor(ids[1:], dtype=torch.int64)  # (L-1,)
    picked = log_probs.gather(1, targets[:, None])[:, 0]  # (L-1,)
    return float(picked[scored_from - 1 :].sum())


def model_scores(
    store: Store, loaded: ModelBundle, document_id: int, passage_ends: Sequence[int], question: str
) -> list[float]:
    """Log-likelihood of `question` after each passage (given by its end position), in order."""
    ids, scored_from = question_ids(loaded, question)
    scores = []
    for end in passage_ends:
        state = restore_state(store, loaded, document_id, end)
        scores.append(question_log_likelihood(loaded.model, state, ids, scored_from))
    return scores
