"""Shift rules: whether an additive constant passes through an operator (proofs/shift.md).

Cross-layer equalization's bias absorption (Nagel et al. 2019, section 4.2) moves a constant
``c`` out of one layer's output and into the next layer's bias. Between the two layers the
constant must *pass*: for the nodes on the way,

    f(x - c; p - a c) = f(x; p) - c      for every x, every p and every real c        (T)

with every input element (activation or constant tensor) shifted by ``c`` and each parameter
``p`` by ``a_p c``. The checker decides (T) like any rule: a numeric search proposes the
coefficients ``a`` (the derivative of (T) in ``c`` is linear in them), and only a symbolic
proof (the residual, rewritten with the translation identities max(u + c, v + c) = max(u, v) +
c and u + c > v + c <=> u > v, simplified to 0) makes a verdict; an operator without parameters
whose identity fails at an exact point is refuted by that point; anything else is undecided.
Clip(x - c, lo - c, hi - c) = Clip(x, lo, hi) - c is proved with a_lo = a_hi = 1; Relu (no
parameter to move) is refuted at x = 0, c = 1. A per-channel shift c_c passes through an
operator declared not to mix channels exactly when (T) holds (the per-channel theorem's
argument, proofs/shift.md).

The same search with the inputs held (``through_inputs=False``) finds the parameters that shift
the output alone: f(x; p - a c) = f(x; p) - c holds for a Conv's or Gemm's witness with a_b = 1
(the bias). :func:`proved_affine` proves a witness affine in one input tensor, which a layer
needs to take the shift into its bias.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from functools import cache

import numpy as np
import sympy
from sympy.core.relational import Relational

from ..catalog.grammar import ExpressionError, format_expression, substitute
from ..catalog.literals import float_or_inf
from ..catalog.operator import Operator
from .certified import certified_nonzero
from .checker import UnwritableValue, written_value
from .decide import DEFAULT_TIMEOUT, TIMEOUT_REASON, TimeBudgetExceeded, check_timeout, time_budget
from .rewrite import zero_residual
from .shift_verdict import (  # noqa: F401 - the rule's types, re-exported with it
    Shift,
    ShiftCounterexample,
    ShiftProof,
    passes_per_channel_shift,
    shift_name,
)

_POINTS = 24
_TRIES = 40
_SHIFTS = (Fraction(1), Fraction(-1), Fraction(2), Fraction(1, 2), Fraction(-3))
_VALUES = tuple(Fraction(n, d) for n in range(-4, 5) for d in (1, 2, 3))


@cache
def shift_rule(op: Operator, through_inputs: bool = True,
               timeout: float | None = None) -> Shift:
    """Decide (T) for ``op``; with ``through_inputs`` False the inputs are held and the
    parameters alone must shift the output by -c. Bounded like the scaling rule's checker
    (``timeout`` seconds, classify's --timeout; None: ``DEFAULT_TIMEOUT``): a user's
    declaration the engine meets in a model must not hold ``quantize`` or ``audit`` up; past
    the budget the rule is undecided."""
    check_timeout(timeout, "shift_rule")
    timeout = DEFAULT_TIMEOUT if timeout is None else timeout
    try:
        with time_budget(timeout):
            return _decided(op, through_inputs)
    except TimeBudgetExceeded:
        return Shift("undecided", through_inputs,
                     reason=f"{TIMEOUT_REASON} ({timeout:g} s)")
    except RecursionError:
        return Shift("undecided", through_inputs,
                     reason="the expression is too deeply nested for the checker")


def _decided(op: Operator, through_inputs: bool) -> Shift:
    if through_inputs and not op.element_names:
        return Shift("undecided", through_inputs, reason="no input to shift")
    if any(abs(float_or_inf(v)) == float("inf") for v in op.params.values()):
        return Shift("undecided", through_inputs, reason=(
            "a parameter's sample value is beyond float range, where the numeric search for "
            "a shift of the parameters cannot sample"))
    c, unproved = shift_symbol(op), False
    for shifts in _candidates(op, through_inputs):
        if not _holds_numerically(op, shifts, through_inputs):
            continue
        if op.domain:
            return Shift("undecided", through_inputs, reason=_ON_A_DOMAIN)
        lhs, rhs = shift_identity(op, shifts, through_inputs, c)
        if _is_zero(lhs - rhs, c):
            proof = ShiftProof(format_expression(lhs), format_expression(rhs), str(c))
            return Shift("proved", through_inputs, shifts, proof)
        unproved = True
    if not op.params and not unproved:
        found = _counterexample(op, through_inputs)
        if found is not None:
            return Shift("refuted", through_inputs, certificate=found,
                         reason="f(x - c) != f(x) - c at an exact point")
    return Shift("undecided", through_inputs, reason=(
        "it holds at sampled points but no proof was found" if unproved else
        "no shift of the parameters holds at sampled points" if op.params else
        "no exact counterexample found"))


_ON_A_DOMAIN = "declared on a domain: a shift may leave it"
"""Why a shift is not proved for an operator declared on a domain: (T) claims every x and c,
and x - c leaves x >= 0 (a residual of 0 says nothing where the declaration is undefined)."""


@cache
def proved_affine(op: Operator, tensor: str) -> bool:
    """Whether ``op``'s witness is proved affine in the elements of input ``tensor`` (the
    other inputs and the parameters held): f(x + y) - f(x) - f(y) + f(0) = 0 for all x, y."""
    elements = next((t.elements for t in op.inputs if t.name == tensor), None)
    if not elements:
        return False
    symbols = [op.symbols[e] for e in elements]
    if any(set(symbols) & condition.free_symbols for condition in op.domain):
        return False  # a domain on the other inputs and the parameters (BatchNormalization's
        # eps + var > 0) holds them where f is defined for every x: it is affine there
    others = [sympy.Dummy(f"y_{e}", real=True) for e in elements]

    def at(values):
        return op.expr.xreplace(dict(zip(symbols, values)))

    residual = (at([x + y for x, y in zip(symbols, others)]) - op.expr - at(others)
                + at([sympy.S.Zero] * len(symbols)))
    try:
        with time_budget(DEFAULT_TIMEOUT):  # as shift_rule: not proved past the budget
            return _is_zero(residual, None)
    except (TimeBudgetExceeded, RecursionError):
        return False


def shift_symbol(op: Operator) -> sympy.Symbol:
    """The shift's symbol: ``c``, or ``c_``, ``c__``... when the operator uses that name."""
    return sympy.Symbol(shift_name(op.symbols), real=True)


def shift_identity(op: Operator, shifts: Mapping[str, Fraction], through_inputs: bool,
                   c: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """``(f(x - c; p - a c), f(x; p) - c)``, the inputs held when not ``through_inputs``."""
    moved = {op.symbols[p]: op.symbols[p] - _rational(a) * c for p, a in shifts.items()}
    if through_inputs:
        moved.update({op.symbols[e]: op.symbols[e] - c for e in op.element_names})
    return op.expr.xreplace(moved), op.expr - c


def recheck_shift(op: Operator, stored: Mapping) -> list[str]:
    """Problems with a stored shift rule (``Shift.to_json``) for ``op``; empty when it holds.
    A proof's residual is simplified again, a counterexample's sides evaluated again; an
    undecided answer claims nothing."""
    status = stored.get("status")
    certificate = stored.get("certificate") or {}
    if status == "undecided":
        return []
    try:
        if status == "proved" and op.domain:
            return [f"shift: proved, but {_ON_A_DOMAIN}"]
        if status == "proved" and certificate.get("kind") == "proof":
            shifts = {p: Fraction(a) for p, a in stored.get("param_shifts", {}).items()}
            if set(shifts) - set(op.params):
                return [f"shift: unknown parameters {sorted(set(shifts) - set(op.params))}"]
            c = shift_symbol(op)
            lhs, rhs = shift_identity(op, shifts, True, c)
            if certificate.get("shift") != str(c) or (certificate.get("lhs"), certificate.get(
                    "rhs")) != (format_expression(lhs), format_expression(rhs)):
                return ["shift: the stated identity is not the declaration's"]
            return [] if _is_zero(lhs - rhs, c) else ["shift: the residual is not 0"]
        if status == "refuted" and certificate.get("kind") == "counterexample":
            if op.params:
                return ["shift: a point refutes only an operator without parameters"]
            point = {n: Fraction(v) for n, v in certificate["point"].items()}
            if set(point) != set(op.element_names):
                return ["shift: the point does not give every element"]
            sides = _exact_sides(op, point, Fraction(certificate["shift"]), True)
            if sides is None or certified_nonzero(sides[0] - sides[1]) is None:
                return ["shift: the counterexample's sides do not differ"]
            return []
    except (ExpressionError, KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        return [f"shift: malformed ({err})"]
    return [f"shift: status {status!r} with certificate kind {certificate.get('kind')!r}"]


# -- search ---------------------------------------------------------------------------------

def _candidates(op: Operator, through_inputs: bool):
    """Parameter shifts to try: none, then the least-squares solution of (T)'s derivative in
    c at random points (linear in a: alpha sum_i df/dx_i + sum_p a_p df/dp = 1)."""
    if through_inputs:
        yield {}
    if not op.params:
        return
    rng = np.random.default_rng(7)
    rows, target = [], []
    for _ in range(_POINTS):
        point = _random_point(op, rng)
        row = [_partial(op, point, [p]) for p in op.params]
        inputs = _partial(op, point, list(op.element_names)) if through_inputs else 0.0
        if np.all(np.isfinite(row)) and np.isfinite(inputs):
            rows.append(row)
            target.append(1.0 - inputs)
    if len(rows) < len(op.params):
        return
    solution, *_ = np.linalg.lstsq(np.array(rows), np.array(target), rcond=None)
    shifts = {}
    for p, a in zip(op.params, solution):
        exact = Fraction(float(a)).limit_denominator(12)
        if abs(float(exact) - a) > 1e-6:
            return
        if exact != 0:
            shifts[p] = exact
    if shifts:
        yield shifts


_MAX_REACH = 1e300  # of the elements' range: numpy draws over at most float range


def _random_point(op: Operator, rng) -> dict[str, float]:
    """Parameters near their sample values, elements over a range that reaches past every
    parameter (a Clip's x beyond hi as well as below lo)."""
    reach = min(3 + max((abs(float_or_inf(v)) for v in op.params.values()), default=0.0),
                _MAX_REACH)
    point = {e: float(rng.uniform(-reach, reach)) for e in op.element_names}
    point.update({p: float_or_inf(v) + float(rng.uniform(-2, 2)) for p, v in op.params.items()})
    return point


def _partial(op: Operator, point: dict[str, float], names: list[str], h: float = 1e-6) -> float:
    """d/dt f(point + t on every one of ``names``) at t = 0, by a central difference."""
    up = {k: v + h if k in names else v for k, v in point.items()}
    down = {k: v - h if k in names else v for k, v in point.items()}
    with np.errstate(all="ignore"):
        return float((op.evaluate(**up) - op.evaluate(**down)) / (2 * h))


def _holds_numerically(op: Operator, shifts: Mapping[str, Fraction], through_inputs: bool
                       ) -> bool:
    """Whether the shift holds at seeded random points in float; not when no point gave
    finite sides (``exp(1000)*x`` overflows everywhere: its exact counterexample is sought)."""
    rng = np.random.default_rng(11)
    compared = 0
    for _ in range(_POINTS):
        point = _random_point(op, rng)
        c = float(rng.uniform(-3, 3))
        moved = {k: v - float(shifts.get(k, 0)) * c if k in op.params else
                 v - c if through_inputs else v for k, v in point.items()}
        with np.errstate(all="ignore"):
            lhs, rhs = op.evaluate(**moved), op.evaluate(**point) - c
        if np.isfinite(lhs) and np.isfinite(rhs):
            if not np.isclose(lhs, rhs, rtol=1e-7, atol=1e-7):
                return False
            compared += 1
    return compared > 0


def _counterexample(op: Operator, through_inputs: bool) -> ShiftCounterexample | None:
    """An exact point where (T) with no parameter shift fails, its difference certified."""
    rng = np.random.default_rng(13)
    for attempt in range(_TRIES):
        point = {e: _VALUES[rng.integers(len(_VALUES))] for e in op.element_names}
        c = _SHIFTS[attempt % len(_SHIFTS)]
        sides = _exact_sides(op, point, c, through_inputs)
        if sides is None:
            continue
        difference = certified_nonzero(sides[0] - sides[1])
        if difference is None:
            continue
        try:
            texts = written_value(sides[0]), written_value(sides[1])
        except UnwritableValue:  # a side the grammar cannot write is no certificate
            continue
        return ShiftCounterexample({e: str(v) for e, v in point.items()}, str(c), *texts,
                                   difference)
    return None


def _exact_sides(op: Operator, point: Mapping[str, Fraction], c: Fraction,
                 through_inputs: bool) -> tuple[sympy.Expr, sympy.Expr] | None:
    """Exact f(x - c) and f(x) - c at a rational point inside the domain at both x and
    x - c; None elsewhere or where sympy cannot evaluate them."""
    at = {op.symbols[e]: _rational(v) for e, v in point.items()}
    moved = {s: v - _rational(c) if through_inputs else v for s, v in at.items()}
    try:
        for values in (at, moved):
            if any(substitute(condition, values) is not sympy.true for condition in op.domain):
                return None
        lhs, rhs = substitute(op.expr, moved), substitute(op.expr, at) - _rational(c)
    except (ValueError, TypeError, ArithmeticError, RecursionError):
        return None
    if lhs.free_symbols or rhs.free_symbols or lhs.has(sympy.nan, sympy.zoo):
        return None
    return lhs, rhs


# -- proof ----------------------------------------------------------------------------------

def _is_zero(residual: sympy.Expr, c: sympy.Symbol | None) -> bool:
    """Whether the residual simplifies to 0 once the translation rewrite has moved ``c`` out
    of every max/min whose arguments all hold it alike and out of every comparison."""
    try:
        translated = _translate(sympy.expand(residual), c)
        if translated == 0:
            return True
        return zero_residual(translated) == 0
    except (TypeError, ValueError, NotImplementedError, RecursionError):
        return False


def _translate(expr: sympy.Basic, c: sympy.Symbol | None) -> sympy.Basic:
    """Bottom-up: max(u + k c, v + k c) -> k c + max(u, v) (min alike); a comparison
    u REL v -> expand(u - v) REL 0; a Heaviside's or sign's argument expanded. Each step is an
    identity for every real c (proofs/shift.md, the translation rewrite)."""
    if not expr.args or expr.is_Atom:
        return expr
    args = tuple(_translate(a, c) for a in expr.args)
    if args != expr.args:
        expr = expr.func(*args)
    if isinstance(expr, (sympy.Max, sympy.Min)) and c is not None:
        coefficients = {_coefficient(a, c) for a in expr.args}
        if len(coefficients) == 1 and None not in coefficients and 0 not in coefficients:
            k = coefficients.pop()
            return k * c + expr.func(*[sympy.expand(a - k * c) for a in expr.args])
        return expr
    if isinstance(expr, Relational) and not isinstance(expr, (sympy.Eq, sympy.Ne)):
        return expr.func(sympy.expand(expr.lhs - expr.rhs), 0)
    if isinstance(expr, (sympy.Heaviside, sympy.sign)):
        return expr.func(sympy.expand(expr.args[0]), *expr.args[1:])
    return expr


def _coefficient(arg: sympy.Expr, c: sympy.Symbol) -> sympy.Expr | None:
    """k when ``arg`` is k c plus a term free of c, with k a number; None otherwise."""
    k = sympy.diff(arg, c)
    return k if k.is_number else None


def _rational(value: Fraction) -> sympy.Rational:
    return sympy.Rational(value.numerator, value.denominator)

