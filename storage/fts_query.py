"""User search text -> safe full-text queries. Arbitrary input (quotes, operators, punctuation, FTS5
keywords like NEAR or AND) never becomes query syntax: only words and "quoted phrases" survive."""

from __future__ import annotations

import re

# A double-quoted phrase, or a run of word characters (letters, digits, underscore; any script).
_TERM = re.compile(r'"([^"]*)"|(\w+)')
_WORD = re.compile(r"\w+")
MATCH_MODES = ("all", "any")


def parse_terms(query: str) -> list[tuple[str, ...]]:
    """Terms of `query`: each a tuple of words; more than one word is a phrase. Lower-cased, deduplicated."""
    terms: list[tuple[str, ...]] = []
    for match in _TERM.finditer(query):
        phrase, word = match.groups()
        words = tuple(w.lower() for w in _WORD.findall(phrase)) if phrase is not None else (word.lower(),)
        if words and words not in terms:
            terms.append(words)
    return terms


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
