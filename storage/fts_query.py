"""User search text -> safe full-text queries. Arbitrary input (quotes, operators, punctuation, FTS5
keywords like NEAR or AND) never becomes query syntax: only words and "quoted phrases" survive."""

from __future__ import annotations

import re

# A double-quoted phrase, or a run of word characters (letters, digits, underscore; any script).
_TERM = re.compile(r'"([^"]*)"|(\w+)')
_WORD = re.compile(r"\w+")
MATCH_MODES = ("all", "any")
# English function words, dropped from queries that have other terms (PostgreSQL's english configuration
# drops them too): they occur in nearly every chunk, so they neither narrow nor rank anything.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his i if in into is it its of on or she so "
    "that the their them then there these they this to was we were what when where which who will with "
    "you".split()
)


def parse_terms(query: str) -> list[tuple[str, ...]]:
    """Terms of `query`: each a tuple of words; more than one word is a phrase. Lower-cased, deduplicated;
    single stopwords are dropped unless nothing else is left."""
    terms: list[tuple[str, ...]] = []
    for match in _TERM.finditer(query):
        phrase, word = match.groups()
        words = tuple(w.lower() for w in _WORD.findall(phrase)) if phrase is not None else (word.lower(),)
        if words and words not in terms:
            terms.append(words)
    content = [t for t in terms if len(t) > 1 or t[0] not in STOPWORDS]
    return content or terms


def _check_mode(match: str) -> str:
    if match not in MATCH_MODES:
        raise ValueError(f"unknown match mode {match!r}; expected one of {', '.join(MATCH_MODES)}")
    return match


def fts5_query(terms: list[tuple[str, ...]], match: str = "all") -> str:
    """An SQLite FTS5 MATCH expression: every term a quoted string (FTS5 reads it as a phrase)."""
    quoted = ['"' + " ".join(words) + '"' for words in terms]
    return (" OR " if _check_mode(match) == "any" else " ").join(quoted)


def websearch_query(terms: list[tuple[str, ...]], match: str = "all") -> str:
    """Text for PostgreSQL's websearch_to_tsquery (which itself never raises a syntax error)."""
    parts = ['"' + " ".join(words) + '"' if len(words) > 1 else words[0] for words in terms]
    return (" or " if _check_mode(match) == "any" else " ").join(parts)
