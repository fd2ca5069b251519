"""Query expansion from the document's own vocabulary: pseudo-relevance feedback in the style of RM3
(Lavrenko and Croft 2001; Abdul-Jaleel et al. 2004).

A reader asks in their own words; the document answers in its own. The first full-text search finds
passages that share some of the reader's words; the words those passages use most, weighted by how
well each passage matched, are the document's words for the topic. Words found in most of the
candidate passages say nothing about the topic and are left out, as are words of the question itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from megalodoc.storage.fts_query import STOPWORDS

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
# Feedback passages: the best few first-pass hits (RM3 papers use 3-10 documents; chunks are short,
# and past the third hit a paraphrased question mostly pulls in passages about something else).
FEEDBACK_PASSAGES = 3
# Expansion words added to the query (RM3 papers use 10-20).
EXPANSION_TERMS = 10
# A word found in more than this share of the candidate passages is too common to name a topic.
MAX_POOL_SHARE = 0.3
MIN_WORD_LENGTH = 3


def words(text: str) -> list[str]:
    """Lower-cased words of at least MIN_WORD_LENGTH characters (identifier parts kept whole)."""
    return [w.lower() for w in _WORD.findall(text) if len(w) >= MIN_WORD_LENGTH]


def feedback_terms(
    question: str,
    passages: Sequence[str],
    scores: Sequence[float],
    pool: Sequence[str],
    *,
    feedback: int = FEEDBACK_PASSAGES,
    terms: int = EXPANSION_TERMS,
) -> list[str]:
    """Up to `terms` words of the best `feedback` passages (texts with their first-pass scores, best
    first) that best describe them: weight of a word = sum over passages of its frequency in the
    passage times the passage's share of the score mass. `pool` (all candidate passage texts) gives
    each word's spread; words in more than MAX_POOL_SHARE of the pool, stopwords and the question's
    own words are skipped."""
    asked = set(words(question))
    top = list(zip(passages, scores, strict=True))[:feedback]
    if not top:
        return []
    low = min(score for _, score in top)
    mass = [score - low + 1e-6 for _, score in top]  # first-pass scores as relevance weights
    total = sum(mass)
    spread = Counter(w for text in pool for w in set(words(text)))
    limit = max(1, int(MAX_POOL_SHARE * len(pool)))
    weights: Counter[str] = Counter()
    for (text, _), weight in zip(top, mass, strict=True):
        counts = Counter(words(text))
        length = sum(counts.values()) or 1
        for word, count in counts.items():
            if word in asked or word in STOPWORDS or spread[word] > limit:
                continue
            weights[word] += (count / length) * (weight / total)
    return [word for word, _ in weights.most_common(terms)]
