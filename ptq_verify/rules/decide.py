"""classify(): run the checker under a time budget, then re-validate its verdict independently.

The checker's search may be wrong; its certificates may not. Before a verdict leaves this
module it is checked again by code that shares nothing with the search but the operator:

- a proof is re-checked from the certificate alone (``recheck.recheck_certificate``: the
  identity rebuilt from the rule, every sign case simplified to zero again);
- a refutation's point is re-evaluated in certified ball arithmetic (``certified``), which
  cannot turn an unknown sign into a known one;
- a claimed rule is spot-checked numerically at fresh points, with one scale per input tensor
  keyed by the tensor's position (never by its name), at adaptive precision.

A verdict that fails any of these becomes ``undecided`` with the reason. A checker that runs
out of its time budget (30 s by default) is stopped and answers ``undecided`` too; such
verdicts are neither cached in memory nor stored on disk, so a later call with a larger budget
tries again.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from numbers import Real

import mpmath

from ..catalog.grammar import format_expression
from ..catalog.operator import Operator
from ..errors import UserError
from .certificate import Proof, Verdict
from .checker import Checker, mp_fraction
from .held import TIMEOUT_REASON, held
from .lattice import Rule, RuleKind
from .recheck import recheck_certificate

DEFAULT_TIMEOUT = 30.0
"""Seconds one operator may take, search and re-validation together."""
MAX_TIMEOUT = 1e6
"""The longest time budget, in seconds (11.6 days): the alarm that enforces it (setitimer)
overflowed at 1e10 s on Linux with a 64-bit time_t, and earlier where time_t is 32 bits."""

_DPS = 30
_SPOT_SCALES = (Fraction(2), Fraction(3), Fraction(7, 5), Fraction(1, 1000))
_SPOT_POINTS = 8


class TimeBudgetExceeded(BaseException):
    """Raised by the alarm; a BaseException so that sympy's ``except Exception`` lets it by."""


def check_timeout(timeout: object, caller: str) -> None:
    """A UserError unless ``timeout`` is None or a number of seconds above 0 and at most
    :data:`MAX_TIMEOUT`: a str had raised a TypeError from setitimer, 0 ran with no bound,
    and 1e300 or inf (a hostile-input hunt, from Python: the command line bounds it) an
    OverflowError from the alarm."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, Real)
                                or not 0 < timeout <= MAX_TIMEOUT):
        raise UserError(f"{caller}: timeout {timeout!r}: a number of seconds above 0 and at "
                        f"most {MAX_TIMEOUT:g}, or None for no bound")


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Interrupt the body after ``seconds`` (SIGALRM; main thread of a Unix process only).

    The alarm repeats every second after the deadline in case a library swallowed the first.
    Elsewhere (other threads, no SIGALRM) the body runs without a budget.
    """
    usable = (
        seconds
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise TimeBudgetExceeded

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def classify(op: Operator, timeout: float | None = DEFAULT_TIMEOUT) -> Verdict:
    """The scaling rule of ``op`` with its certificate, re-validated (cached per operator).

    ``timeout`` bounds the whole call in seconds (None: no bound); past it the verdict is
    ``undecided`` with the reason. A str in ``op``'s place (an expression) had raised a
    TypeError from the weak-reference cache, ``timeout="5"`` one from setitimer, and
    ``timeout=0`` ran with no bound at all: each is a UserError now.
    """
    if not isinstance(op, Operator):
        raise UserError(f"classify: takes an Operator, not {type(op).__name__}"
                        + (f": Operator('Mine', 'x', {op!r}) declares that expression"
                           if isinstance(op, str) else ""))
    check_timeout(timeout, "classify")
    verdict = held.get(op)
    if verdict is not None:
        return verdict
    ran_out = _ran_out.get(op)
    if ran_out is not None and timeout is not None and timeout <= ran_out[0]:
        return ran_out[1]
    try:
        with time_budget(timeout), mpmath.workdps(_DPS):
            verdict = validated(op, Checker(op).verdict())
    except TimeBudgetExceeded:
        verdict = _undecided(op, f"{TIMEOUT_REASON} ({timeout:g} s; `ptq-verify classify "
                                 "--timeout` decides it with more, and stores the verdict "
                                 "quantize and audit read)")
        _ran_out[op] = (timeout, verdict)
        return verdict
    except RecursionError:
        return _undecided(op, "the expression is too deeply nested for the checker")
    held[op] = verdict
    return verdict


# Time-outs, kept for this process only (the next may have more time or a faster machine),
# so that one declaration the checker cannot decide costs its budget once: quantize asks for
# a node's verdict at each planning pass, and a trial's custom node took 10 x 30 s.
_ran_out: weakref.WeakKeyDictionary[Operator, tuple[float, Verdict]] = (
    weakref.WeakKeyDictionary())


def timed_out(verdict: Verdict) -> bool:
    return verdict.rule.kind is RuleKind.UNDECIDED and verdict.reason.startswith(TIMEOUT_REASON)


def _undecided(op: Operator, reason: str) -> Verdict:
    return Verdict(
        operator=op.name,
        rule=Rule(RuleKind.UNDECIDED),
        certificate=None,
        domain=tuple(format_expression(c) for c in op.domain),
        reason=reason,
        onnx_type=op.onnx_type,
        expression=format_expression(op.expr),
    )


def validated(op: Operator, verdict: Verdict) -> Verdict:
    """``verdict`` if it survives the independent checks, else ``undecided`` saying why."""
    if verdict.certificate is None:
        return verdict
    problems = recheck_certificate(op, verdict.to_json())
    if isinstance(verdict.certificate, Proof):
        problems += spot_check(op, verdict.rule)
        problems += [p for rule, _ in verdict.alternatives for p in spot_check(op, rule)]
    if not problems:
        return verdict
    return _undecided(
        op, "the checker's answer failed its independent re-check: " + "; ".join(problems)
    )


def spot_check(op: Operator, rule: Rule) -> list[str]:
    """Problems seen evaluating ``rule`` at fresh points, one scale per tensor position.

    Scales are assigned by the rule's scale groups over tensor positions, far apart between
    groups (a rule that needs a shared scale fails visibly), never by tensor names.
    """
    with mpmath.workdps(_DPS):
        return _spot_check(op, rule)


def _spot_check(op: Operator, rule: Rule) -> list[str]:
    checker = Checker(op)
    checker.rng = random.Random(f"spot-check:{op.expr}:{op.inputs}")  # not the search's points
    groups = rule.scale_groups(len(op.inputs))
    for point in checker.points(params=None, count=_SPOT_POINTS):
        mp_point = {n: mp_fraction(v) for n, v in point.items()}
        base = checker.value(mp_point)
        for s in _SPOT_SCALES:
            sides = checker.rule_sides(mp_point, base, groups, mp_fraction(s))
            if sides is None:
                continue
            lhs, rhs, scales = sides
            if abs(lhs - rhs) > mpmath.mpf(10) ** (8 - _DPS) * (abs(lhs) + abs(rhs)) + (
                mpmath.mpf(10) ** -_DPS
            ):
                where = ", ".join(f"{n} = {v}" for n, v in point.items())
                shown = ", ".join(mpmath.nstr(x, 6) for x in scales)
                return [f"{rule.describe()} fails numerically at {where}, group scales {shown}"]
    return []


def classify_all(
    operators: Sequence[Operator],
    jobs: int | None = None,
    store=None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> list[Verdict]:
    """Classify many operators, in parallel worker processes when that pays off.

    Workers are forked, so they see the very operator objects (catalog or user-declared);
    verdicts come back as plain data and fill this process's cache. ``store`` (a
    ``store.VerdictStore``) supplies verdicts proved by an earlier process and keeps new ones
    (never time-outs).
    """
    check_timeout(timeout, "classify_all")
    if store is not None:
        for op in operators:
            if op not in held and (known := store.get(op)) is not None:
                held[op] = known
    pending = [op for op in operators if op not in held]
    found: dict[int, Verdict] = {}
    jobs = min(jobs or os.cpu_count() or 1, len(pending))
    if jobs > 1 and len(pending) >= 8 and "fork" in multiprocessing.get_all_start_methods():
        global _forked
        _forked = (pending, timeout)
        try:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                verdicts = _collected(pool.imap(_classify_forked, range(len(pending)),
                                                chunksize=1), len(pending), timeout)
        finally:
            _forked = ([], None)
        for op, verdict in zip(pending, verdicts):
            if verdict is not None:
                found[id(op)] = verdict
                if not timed_out(verdict):
                    held[op] = verdict
    verdicts = [found.get(id(op)) or classify(op, timeout) for op in operators]
    if store is not None and pending:
        new = {id(op) for op in pending}
        for op, verdict in zip(operators, verdicts):
            if id(op) in new and not timed_out(verdict):
                store.put(op, verdict)
        store.save()
    return verdicts


_forked: tuple[Sequence[Operator], float | None] = ([], None)
WORKER_GRACE = 10.0
"""Seconds a worker's verdict may come beyond twice the operators' timeout (:func:`_collected`)."""


def _collected(results, count: int, timeout: float | None) -> list[Verdict | None]:
    """The workers' ``count`` verdicts in order (``Pool.imap``'s ``results``), each awaited
    at most twice ``timeout`` plus WORKER_GRACE after the one before it: a task starts no
    later than the one before it ends, and its classification is bounded by ``timeout``.
    Those a worker never gives back are None, left to the parent. Why: a worker forked while
    another thread of this process held a lock, and waiting on it in C, never answers, and
    ``Pool.map`` waited for it for ever (``timeout`` None: no bound, as asked). A full-suite
    run hung once, at 94%, where nothing told which wait; this was one without a bound."""
    found: list[Verdict | None] = []
    wait = None if timeout is None else 2 * timeout + WORKER_GRACE
    try:
        for _ in range(count):
            found.append(results.next(wait))
    except multiprocessing.TimeoutError:
        pass
    return found + [None] * (count - len(found))


def _classify_forked(index: int) -> Verdict | None:
    """The verdict, or None where classifying failed: the parent classifies that operator
    again itself and so raises the error as it is (a worker's exception goes back pickled,
    and one holding a sympy object may not pickle: the pool's own error had hidden it)."""
    operators, timeout = _forked
    try:
        return classify(operators[index], timeout)
    except Exception:  # noqa: BLE001 - raised again, in the parent
        return None
