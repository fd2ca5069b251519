"""Full-text search over chunk text: FTS5 with BM25 on SQLite (`search_sqlite.py`); on PostgreSQL the
stored english tsvector `chunks.search_vector` (GIN index) ranked by ts_rank_cd; a plain LIKE scan
elsewhere. Hits carry their locations."""

from __future__ import annotations

from sqlalchemy import and_, select, text
from sqlalchemy.orm import Session

from megalodoc.storage.convert import require_int
from megalodoc.storage.fts_query import parse_terms, websearch_query
from megalodoc.storage.locations import overlapping_locations
from megalodoc.storage.models import ChunkRow
from megalodoc.storage.records import ChunkHit
from megalodoc.storage.row_ids import guard_ids
from megalodoc.storage.search_sqlite import hit_rows, top_chunks
from megalodoc.storage.unit import UnitOfWork

HIGHLIGHT = ("**", "**")  # Markdown bold around matched words in snippets
SNIPPET_TOKENS = 24

_POSTGRES_SEARCH = """
WITH q AS (SELECT websearch_to_tsquery('english', :query) AS query),
hits AS (
    SELECT c.id, c.document_id, c.token_start, c.token_end, c.text,
           ts_rank_cd(c.search_vector, q.query) AS score
    FROM chunks AS c, q
    WHERE c.search_vector @@ q.query {document_filter}
    ORDER BY score DESC, c.id
    LIMIT :limit
)
SELECT hits.*, ts_headline('english', hits.text, q.query, :headline_options) AS snippet
FROM hits, q
ORDER BY hits.score DESC, hits.id
"""


class SearchMixin:
    _uow: UnitOfWork

    def search(self, query: str, document_id: int | None = None, limit: int = 10, match: str = "all") -> list[ChunkHit]:
        """Chunks matching `query` (words and "quoted phrases"; match "all" terms or "any" term), best first,
        each with a highlighted snippet and its locations. Any text is safe: it never raises a syntax error;
        a query without words returns []."""
        if not isinstance(query, str):
            raise TypeError(f"search query must be str, got {type(query).__name__}")
        require_int("limit", limit, minimum=1)
        terms = parse_terms(query)
        if not terms:
            return []

        def work(session: Session) -> list[ChunkHit]:
            dialect = session.get_bind().dialect.name
            if dialect == "sqlite":
                top = top_chunks(session, terms, match, document_id, limit)
                rows = hit_rows(session, terms, match, top, HIGHLIGHT, SNIPPET_TOKENS)
            elif dialect == "postgresql":
                rows = _postgres(session, websearch_query(terms, match), document_id, limit)
            else:
                rows = _like(session, terms, match, document_id, limit)
            return [
                ChunkHit(
                    chunk_id=chunk_id,
                    document_id=owner,
                    start=start,
                    end=end,
                    text=chunk_text,
                    score=float(score),
                    snippet=snippet,
                    locations=tuple(overlapping_locations(session, owner, start, end)),
                )
                for chunk_id, owner, start, end, chunk_text, score, snippet in rows
            ]

        return self._uow.read(guard_ids(work, [], document_id))


def _postgres(session: Session, web_query: str, document_id: int | None, limit: int) -> list:
    params = {
        "query": web_query,
        "limit": limit,
        "headline_options": f"StartSel={HIGHLIGHT[0]}, StopSel={HIGHLIGHT[1]}, MaxWords={SNIPPET_TOKENS}, "
        f"MinWords={SNIPPET_TOKENS // 2}",
    }
    document_filter = ""
    if document_id is not None:
        document_filter, params["document_id"] = "AND c.document_id = :document_id", document_id
    return session.execute(text(_POSTGRES_SEARCH.format(document_filter=document_filter)), params).all()


def _like(session: Session, terms: list[tuple[str, ...]], match: str, document_id: int | None, limit: int) -> list:
    """Fallback for databases without a supported full-text index: substring match, unranked."""
    from sqlalchemy import literal, or_

    clauses = [ChunkRow.text.ilike("%" + " ".join(words) + "%", escape="\\") for words in terms]
    condition = or_(*clauses) if match == "any" else and_(*clauses)
    query = select(
        ChunkRow.id,
        ChunkRow.document_id,
        ChunkRow.token_start,
        ChunkRow.token_end,
        ChunkRow.text,
        literal(0.0).label("score"),
        ChunkRow.text.label("snippet"),
    ).where(condition)
    if document_id is not None:
        query = query.where(ChunkRow.document_id == document_id)
    return session.execute(query.order_by(ChunkRow.id).limit(limit)).all()
