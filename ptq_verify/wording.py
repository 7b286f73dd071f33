"""Pieces of the one-line messages and notes every layer writes."""

from __future__ import annotations

from collections.abc import Sequence


def first_few(names: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names`` and how many more (a line stays readable whatever the
    model's or the file's size, and still says how many there are)."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")
