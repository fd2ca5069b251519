"""Reading positions: token positions, pages, file lines, fractions; bad ones name the document."""

from __future__ import annotations

import pytest

from megalodoc.app.reader import PositionError


def test_positions_of_a_pdf(service, pdf):
    doc = service.ingest(pdf)
    end = doc.committed_position
    page3 = service.store.position_of_page(doc.id, 3)
    assert 0 < page3 < end
    for text in ("p. 3", "p.3", "page 3", "P 3", " pp. 3 "):
        assert service.resolve_position(doc, text) == page3
    assert service.resolve_position(doc, None) == end
    assert service.resolve_position(doc, 17) == service.resolve_position(doc, "17") == 17
    assert service.resolve_position(doc, 0.5) == service.resolve_position(doc, "50%") == round(end / 2)
    assert service.resolve_position(doc, "0.25") == round(end / 4)
    assert service.resolve_position(doc, 1.0) == end and service.resolve_position(doc, 0) == 0
    assert service.where(doc, page3) == "page 3"
    for bad, why in [("p. 9", "no page 9"), (end + 1, "outside"), (-1, "outside"), (1.5, "between 0 and 1"),
                     ("150%", "between 0 and 1"), ("soon", "cannot read position"), (True, "not a token position"),
                     ("p. 0", "no page 0")]:
        with pytest.raises(PositionError, match=f"atlas.pdf \\(id {doc.id}\\): .*{why}"):
            service.resolve_position(doc, bad)


def test_positions_of_a_repository(service, repo):
    doc = service.ingest(repo)
    line = service.resolve_position(doc, "proj/pkg/shapes.py:5")
    assert service.resolve_position(doc, "pkg/shapes.py:5") == line
    location = service.store.locate(doc.id, line)
    assert location.path == "proj/pkg/shapes.py" and location.line_start <= 5 <= location.line_end
    with pytest.raises(PositionError, match="no line 500 of file 'pkg/shapes.py'"):
        service.resolve_position(doc, "pkg/shapes.py:500")
    with pytest.raises(PositionError, match="no line 1 of file 'nope.py'"):
        service.resolve_position(doc, "nope.py:1")
