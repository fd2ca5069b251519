"""Evidence for a question: the document's passages, before the reading point, most likely to answer it.

    hits = rank_evidence(store, loaded, document_id, "How do I decode DER?", before=50_000, k=5)
    hits[0].where, hits[0].text, hits[0].score

Methods (measured by `bench/evidence.py`; the table is in the README):
- "fts": full-text search (BM25 over stemmed words, any question word may match) over the chunks that
  end at or before `before`.
- "model": the same candidate pool, ordered by the model alone: the log-likelihood of the question
  after reading each passage (`evidence_model.py`).
- "combined": reciprocal-rank fusion of the two orders.
- "expanded": full-text search again with the question widened by words of the best first hits
  (pseudo-relevance feedback, `query_expansion.py`), fused with the first search by reciprocal rank.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from megalodoc.app.reader.evidence_model import model_scores
from megalodoc.app.reader.query_expansion import feedback_terms
from megalodoc.model import ModelBundle
from megalodoc.storage import ChunkHit, LocationRecord, Store, describe_locations

logger = logging.getLogger(__name__)

METHODS = ("fts", "expanded", "model", "combined")
# The best measured (bench/evidence.py, table in the README): as good as "fts" on literal questions,
# one paraphrased question better out of 25; the shipped model's rerank ranks worse than either.
DEFAULT_METHOD = "expanded"
# Candidates the model reranks: enough that the right passage is usually among them, few enough that
# scoring them all (a few ms each) stays well inside an interactive answer.
CANDIDATE_POOL = 30
# Reciprocal-rank fusion constant (Cormack et al. 2009): damps the weight of the very first ranks.
RRF_K = 60
# Full-text search fetches this many hits at first and doubles while too many lie past `before`.
_FIRST_FETCH = 64
_MAX_FETCH = 8192
# Words that carry the asking, not the topic; dropped from the full-text query when others remain.
QUESTION_WORDS = frozenset(
    "how what why which who whom whose when where does do did can could should would may might must shall "
    "i me my we our you your is are was were be been being get gets got there here about any some".split()
)


@dataclass(frozen=True)
class EvidenceHit:
    """A passage offered as evidence: chunk id, token range [start, end), its text, where it lies, the
    ranking score (higher is better; comparable only within one call and method) and the method."""

    chunk_id: int
    start: int
    end: int
    text: str
    locations: tuple[LocationRecord, ...]
    score: float
    method: str

    @property
    def where(self) -> str:
        """Display string of the passage's location: "page 12", "json/decoder.py:40-88"."""
        return describe_locations(list(self.locations))


def search_query(question: str) -> str:
    """The question's topic words as a full-text query (question words dropped when others remain)."""
    words = question.replace('"', " ").split()
    kept = [w for w in words if w.strip("?,.!:;()").lower() not in QUESTION_WORDS]
    return " ".join(kept or words)


def fts_candidates(store: Store, document_id: int, query: str, before: int | None, limit: int) -> list[ChunkHit]:
    """The best `limit` full-text hits of the document among chunks ending at or before `before`."""
    fetch = _FIRST_FETCH
    while True:
        hits = store.search(query, document_id=document_id, limit=max(fetch, limit), match="any")
        kept = [hit for hit in hits if before is None or hit.end <= before]
        if len(kept) >= limit or len(hits) < max(fetch, limit) or fetch >= _MAX_FETCH:
            return kept[:limit]
        fetch *= 2


def reciprocal_rank_fusion(*orders: list[int]) -> dict[int, float]:
    """Score per item: the sum over orders of 1 / (RRF_K + rank), rank counting from 1."""
    fused: dict[int, float] = {}
    for order in orders:
        for rank, item in enumerate(order, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank)
    return fused


def rank_evidence(
    store: Store,
    loaded: ModelBundle,
    document_id: int,
    question: str,
    *,
    before: int | None,
    k: int = 5,
    method: str = "default",
    pool: int = CANDIDATE_POOL,
) -> list[EvidenceHit]:
    """The `k` best passages of the document for `question` among the chunks that end at or before
    `before` (None: the whole document), best first. `method`: "fts", "model", "combined" or "default"."""
    chosen = DEFAULT_METHOD if method == "default" else method
    if chosen not in METHODS:
        raise ValueError(f"unknown evidence method {method!r}; expected one of default, {', '.join(METHODS)}")
    if not question.strip():
        raise ValueError("the question is empty")
    if k < 1 or pool < 1:
        raise ValueError(f"need k >= 1 and pool >= 1, got k={k}, pool={pool}")
    if before is not None and before < 0:
        raise ValueError(f"before={before} must be >= 0")
    query = search_query(question)
    candidates = fts_candidates(store, document_id, query, before, max(pool, k))
    if chosen == "fts" or not candidates:
        return [_hit(c, c.score, chosen) for c in candidates[:k]]
    if chosen == "expanded":
        return _expanded(store, document_id, question, query, candidates, before, k, pool)
    likelihoods = model_scores(store, loaded, document_id, [c.end for c in candidates], question)
    by_model = sorted(range(len(candidates)), key=lambda i: (-likelihoods[i], i))
    if chosen == "model":
        return [_hit(candidates[i], likelihoods[i], chosen) for i in by_model[:k]]
    fused = reciprocal_rank_fusion(list(range(len(candidates))), by_model)
    order = sorted(fused, key=lambda i: (-fused[i], i))
    return [_hit(candidates[i], fused[i], chosen) for i in order[:k]]


def _expanded(
    store: Store,
    document_id: int,
    question: str,
    query: str,
    first: list[ChunkHit],
    before: int | None,
    k: int,
    pool: int,
) -> list[EvidenceHit]:
    texts = [c.text for c in first]
    terms = feedback_terms(question, texts, [c.score for c in first], texts)
    second = fts_candidates(store, document_id, f"{query} {' '.join(terms)}", before, max(pool, k)) if terms else []
    by_id = {c.chunk_id: c for c in [*second, *first]}
    fused = reciprocal_rank_fusion([c.chunk_id for c in first], [c.chunk_id for c in second])
    order = sorted(fused, key=lambda i: -fused[i])  # stable: ties keep the first search's order
    # The first search's best passage stays first: a question in the document's own words is answered
    # there (hit@1 of "fts" on the literal questions is kept); the expansion only reorders the rest.
    # It takes the best fused score, so that scores still fall with rank.
    order.remove(first[0].chunk_id)
    order.insert(0, first[0].chunk_id)
    fused[first[0].chunk_id] = max(fused.values())
    return [_hit(by_id[i], fused[i], "expanded") for i in order[:k]]


def _hit(candidate: ChunkHit, score: float, method: str) -> EvidenceHit:
    return EvidenceHit(
        chunk_id=candidate.chunk_id,
        start=candidate.start,
        end=candidate.end,
        text=candidate.text,
        locations=candidate.locations,
        score=float(score),
        method=method,
    )
