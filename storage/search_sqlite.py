"""SQLite full-text search: FTS5 with BM25, ranked inside FTS5 first, then only the top hits are joined to
their chunk rows and given snippets.

BM25 cost grows with the number of matching chunks (about a microsecond each). Queries matching up to
`RANK_EXACTLY_UP_TO` chunks are ranked as they are. Beyond that, terms are looked at one by one: a term
found in at least half of all chunks has BM25 weight zero (FTS5 floors its IDF to 1e-6), so it cannot
change the order. "any" queries then rank only their selective terms (chunks matched only by zero-weight
terms follow in document order); queries with no selective term come back in document order, score 0.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from megalodoc.storage.fts_query import fts5_query

RANK_EXACTLY_UP_TO = 20_000
SNIPPET_ELLIPSIS = "…"

_FILTER_JOIN = "JOIN chunks AS c ON c.id = chunks_fts.rowid"


def _scoped(select_from: str, document_id: int | None) -> tuple[str, str]:
    """(FROM clause, extra WHERE) restricting matches to one document when asked."""
    if document_id is None:
        return select_from, ""
    return f"{select_from} {_FILTER_JOIN}", "AND c.document_id = :document_id"


def _count(session: Session, expression: str, cap: int | None = None) -> int:
    inner = "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :query"
    if cap is not None:
        inner += f" LIMIT {int(cap)}"
    return session.execute(text(f"SELECT count(*) FROM ({inner})"), {"query": expression}).scalar_one()


def _ranked(session: Session, expression: str, document_id: int | None, limit: int) -> list[tuple[int, float]]:
    source, where = _scoped("chunks_fts", document_id)
    sql = (
        f"SELECT chunks_fts.rowid, -bm25(chunks_fts) FROM {source} WHERE chunks_fts MATCH :query {where} "
        "ORDER BY bm25(chunks_fts), chunks_fts.rowid LIMIT :limit"
    )
    params = {"query": expression, "limit": limit, "document_id": document_id}
    return [(row[0], float(row[1])) for row in session.execute(text(sql), params)]


def _in_order(
    session: Session, expression: str, document_id: int | None, limit: int, skip: set[int]
) -> list[tuple[int, float]]:
    source, where = _scoped("chunks_fts", document_id)
    sql = (
        f"SELECT chunks_fts.rowid FROM {source} WHERE chunks_fts MATCH :query {where} "
        "ORDER BY chunks_fts.rowid LIMIT :limit"
    )
    params = {"query": expression, "limit": limit + len(skip), "document_id": document_id}
    rows = [row[0] for row in session.execute(text(sql), params) if row[0] not in skip]
    return [(rowid, 0.0) for rowid in rows[:limit]]


def top_chunks(
    session: Session, terms: list[tuple[str, ...]], match: str, document_id: int | None, limit: int
) -> list[tuple[int, float]]:
    """(chunk id, score) of the best `limit` matches, best first (see the module docstring)."""
    expression = fts5_query(terms, match)
    if _count(session, expression, cap=RANK_EXACTLY_UP_TO + 1) <= RANK_EXACTLY_UP_TO:
        return _ranked(session, expression, document_id, limit)
    total = session.execute(text("SELECT count(*) FROM chunks")).scalar_one()
    selective = [term for term in terms if 2 * _count(session, fts5_query([term])) < total]
    if not selective:
        return _in_order(session, expression, document_id, limit, set())
    if match == "all":
        return _ranked(session, expression, document_id, limit)  # at most the rarest term's matches
    hits = _ranked(session, fts5_query(selective, "any"), document_id, limit)
    if len(hits) < limit:
        hits += _in_order(session, expression, document_id, limit - len(hits), {rowid for rowid, _ in hits})
    return hits


def hit_rows(
    session: Session,
    terms: list[tuple[str, ...]],
    match: str,
    top: list[tuple[int, float]],
    marks: tuple[str, str],
    tokens: int,
) -> list:
    """Chunk columns and an FTS5 snippet (matches between `marks`) for each (chunk id, score), in order."""
    expression = fts5_query(terms, match)
    sql = text(
        "SELECT c.id, c.document_id, c.token_start, c.token_end, c.text, "
        "snippet(chunks_fts, 0, :open, :close, :ellipsis, :tokens) AS snippet "
        f"FROM chunks_fts {_FILTER_JOIN} WHERE chunks_fts MATCH :query AND chunks_fts.rowid = :rowid"
    )
    rows = []
    for rowid, score in top:
        params = {
            "query": expression,
            "rowid": rowid,
            "open": marks[0],
            "close": marks[1],
            "ellipsis": SNIPPET_ELLIPSIS,
            "tokens": tokens,
        }
        row = session.execute(sql, params).one()
        rows.append((*row[:5], score, row[5]))
    return rows
