"""The verdicts this process holds, by operator: proved here or read from the verdict store.

Apart from the checker (:mod:`.decide`) so that reading a stored verdict imports no sympy.
"""

from __future__ import annotations

import weakref

from ..catalog.operator import Operator
from .certificate import Verdict

TIMEOUT_REASON = "the time budget ran out"
"""How an undecided verdict that ran out of time begins its reason: not stored, decided
again by the next process."""

held: weakref.WeakKeyDictionary[Operator, Verdict] = weakref.WeakKeyDictionary()


def known(op: Operator) -> Verdict | None:
    """The verdict this process already holds for ``op``, if any."""
    return held.get(op)


def remember(op: Operator, verdict: Verdict) -> None:
    """Hold ``verdict`` (proved here, or read from the disk cache) as ``op``'s."""
    held[op] = verdict
