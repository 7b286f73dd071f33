"""Progress bars: tqdm on stderr, cleared when done, and shown only on a terminal.

Redirected to a file or a pipe, a bar's carriage returns would turn a failing run's one-line
error into several lines for whatever reads that stream with universal newlines (Python's
``subprocess`` with ``text=True``), so a bar asked for is shown only where stderr is a
terminal (what tqdm's ``disable=None`` decides).

Where no bar is shown, none is made: a disabled tqdm still builds its class lock, which
imports ``multiprocessing`` and opens a semaphore, and tqdm itself is imported only for a bar
that shows (the digits CNN's quantize, on a pipe: 9-12 ms of its 0.4 s).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


def progress_bar(iterable: Iterable | None = None, *, desc: str, unit: str, progress: bool,
                 total: int | None = None) -> tqdm | Unshown:
    """A bar named ``desc`` counting ``unit``s over ``iterable`` (or to ``total``), shown when
    ``progress`` and stderr is a terminal; otherwise an :class:`Unshown` one."""
    stream = sys.stderr
    if not progress or (hasattr(stream, "isatty") and not stream.isatty()):
        return Unshown(iterable)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, leave=False)


class Unshown:
    """A bar that is not shown: it iterates over its iterable, and its updates count
    nothing (what a disabled tqdm does, as :func:`progress_bar`'s callers use it)."""

    def __init__(self, iterable: Iterable | None) -> None:
        self._iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self._iterable if self._iterable is not None else ())

    def __enter__(self) -> Unshown:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: float = 1) -> None:
        """Counts nothing: no bar is shown."""
