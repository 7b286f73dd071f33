"""Progress bars: tqdm on stderr, cleared when done, and shown only on a terminal.

Redirected to a file or a pipe, a bar's carriage returns would turn a failing run's one-line
error into several lines for whatever reads that stream with universal newlines (Python's
``subprocess`` with ``text=True``), so a bar asked for is shown only where stderr is a
terminal (tqdm's ``disable=None``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, *, desc: str, unit: str, progress: bool,
                 total: int | None = None) -> tqdm:
    """A bar named ``desc`` counting ``unit``s over ``iterable`` (or to ``total``), shown when
    ``progress`` and stderr is a terminal."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=None if progress else True, leave=False)
