"""Locator and TextPiece records."""

from __future__ import annotations

import pytest

from megalodoc.ingest.sources import Locator


def test_constructors_str_and_dict_round_trip():
    cases = {
        Locator.for_page(3): "page 3",
        Locator.for_lines("json/decoder.py", 10, 20): "json/decoder.py:10-20",
        Locator.for_lines("a.py", 5, 5): "a.py:5",
        Locator.for_offsets(0, 4096, 1, 80): "chars 0-4096 (lines 1-80)",
        Locator.for_offsets(7, 9): "chars 7-9",
    }
    for locator, text in cases.items():
        assert str(locator) == text
        assert Locator.from_dict(locator.to_dict()) == locator
    assert Locator.for_page(2).to_dict() == {"kind": "page", "page": 2}


@pytest.mark.parametrize("make", [
    lambda: Locator.for_page(0),
    lambda: Locator.for_lines("", 1, 2),
    lambda: Locator.for_lines("a.py", 3, 2),
    lambda: Locator.for_offsets(5, 4),
    lambda: Locator("chapter"),  # type: ignore[arg-type]
])
def test_invalid_locators_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_locators_are_frozen_and_hashable():
    locator = Locator.for_page(1)
    with pytest.raises(AttributeError):
        locator.page = 2  # type: ignore[misc]
    assert len({Locator.for_page(1), Locator.for_page(1)}) == 1
