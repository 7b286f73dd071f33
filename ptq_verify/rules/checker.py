"""Decide an operator's scaling rule and back it with a certificate.

The search and the proof are kept apart. The search is numeric and may be wrong: Euler's
identity for homogeneous functions (proofs/euler.md),

    sum_i x_i df/dx_i + sum_p k_p p df/dp = d f,

is linear in the degree d and the parameter exponents k, so a few points give candidates by
least squares. Only a symbolic proof turns a candidate into a verdict: the residual
f(s x; s^k p) - s^d f(x; p), rewritten with s > 0 and simplified, must be zero, directly or in
every cell of a sign split of the elements (proofs/sign-split.md). A refutation is an exact
counterexample plus exact evidence that no degree works (two points with different ratios
f(s x)/f(x), proofs/refutation.md) and, when there are parameters, that no rescaling of them
rescues a rule (Euler's identity, a necessary condition, has no solution at some points).
Anything else is ``undecided``: a verdict is never a guess.
"""

from __future__ import annotations

import importlib
import itertools
import random
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import mpmath
import numpy as np
import sympy
from sympy.calculus.util import continuous_domain
from sympy.core.function import Application

from ..catalog.grammar import format_expression, substitute
from ..catalog.operator import Operator
from .certificate import Counterexample, Proof, ProofCase, Verdict
from .certified import NumericFunction, certified_ball, certified_nonzero, certified_zero, sign_of
from .lattice import Partition, Rule, RuleKind
from .rewrite import rewrite_positive, zero_residual

_PIECEWISE_ATOMS = (
    sympy.Max,
    sympy.Min,
    sympy.Abs,
    sympy.sign,
    sympy.Heaviside,
    sympy.Piecewise,
    sympy.floor,
    sympy.ceiling,
)
_SCALES = (Fraction(2), Fraction(3), Fraction(1, 2), Fraction(7, 5))
_MAX_SPLIT_ELEMENTS = 5
_MAX_ALTERNATIVES = 3
_POINTS = 14
_EULER_POINTS = 12
_DPS = 30
_SAMPLES = 12  # generic points where a residual is tried before the costly simplify

def scale_symbol(tensor: str | None = None) -> sympy.Symbol:
    """``s`` (one common scale) or ``s_<tensor>`` (that tensor's own scale); positive."""
    return sympy.Symbol("s" if tensor is None else f"s_{tensor}", positive=True)


def sign_symbol(element: str) -> sympy.Symbol:
    """The positive variable ``t_<x>`` of a sign split: x = t_x or x = -t_x."""
    return sympy.Symbol(f"t_{element}", positive=True)


@dataclass(frozen=True)
class Candidate:
    degree: Fraction
    input_degrees: tuple[Fraction, ...] | None
    param_exponents: dict[str, Fraction]
    partition: Partition | None = None

    def rule(self, n_inputs: int) -> Rule:
        """The rule this candidate is, for an operator with ``n_inputs`` input tensors."""
        return Rule.classify(
            self.degree, self.input_degrees, self.param_exponents, n_inputs, self.partition
        )


def group_scale_symbols(op: Operator, groups: tuple[int, ...]) -> list[sympy.Symbol]:
    """One positive symbol per scale group: ``s`` for a single group, else ``s_<first tensor>``."""
    count = max(groups, default=0) + 1
    if count == 1:
        return [scale_symbol()]
    return [scale_symbol(op.inputs[groups.index(g)].name) for g in range(count)]


def exact_sides(
    op: Operator, point: dict[str, Fraction], s: Fraction, degree: int
) -> tuple[sympy.Expr, sympy.Expr]:
    """Exact f(s x; p) and s^degree f(x; p) at a rational point (inputs scaled, not params);
    :class:`InexactPoint` unless both x and s x are shown inside the domain (f(s x) of a
    simplified expression is a number where the declared f is undefined: with ``0*log(1 -
    x**2)`` in f, x = -0.783 is inside, 2x is not)."""
    values = {op.symbols[n]: _rational(v) for n, v in point.items()}
    moved = {
        sym: v * _rational(s) if str(sym) in op.element_names else v for sym, v in values.items()
    }
    try:
        for at in (values, moved):
            if any(substitute(condition, at) is not sympy.true for condition in op.domain):
                raise InexactPoint("the point or the scaled point is not shown inside the domain")
        # rebuilt as the parser builds: sympy's own comparison of numbers reads 2 digits
        return (substitute(op.expr, moved),
                _rational(s) ** degree * substitute(op.expr, values))
    except (ValueError, TypeError, ArithmeticError, RecursionError) as err:
        # sympy evaluates while it substitutes: Max of numbers it cannot compare raises
        raise InexactPoint(f"sympy cannot evaluate f exactly there: {err}") from None


class InexactPoint(ValueError):
    """sympy could not build the exact value of f at a point; the point proves nothing."""


class UnwritableValue(ValueError):
    """An exact value the grammar cannot write into a certificate (an integer past Python's
    4300-digit ``str`` limit); the point is skipped, as one that proves nothing."""


def written_value(value: sympy.Expr) -> str:
    """``format_expression(value)``, or :class:`UnwritableValue` where the grammar cannot
    write it: ``max(1e1000*x, 0)**5`` at x = 3 is 3**5*10**5000, and the ValueError from
    ``str`` of that integer had escaped the refutation (classify's library call raised it)
    and the shift rule's (an internal error after a proved scaling rule)."""
    try:
        return format_expression(value)
    except ValueError as err:
        raise UnwritableValue(str(err)) from None


def scaled_identity(op: Operator, candidate: Candidate) -> tuple[sympy.Expr, sympy.Expr]:
    """``(f(s x; s^k p), s^d f(x; p))`` for a candidate rule, with positive scale symbols.

    One scale per scale group of the rule (see ``Rule.scale_groups``): ``s`` when all inputs
    share it, ``s_<tensor>`` per group otherwise; parameters take products of group scales.
    """
    swap, factor = _scaling(op, candidate)
    return op.expr.xreplace(swap), factor * op.expr


def _scaling(op: Operator, candidate: Candidate) -> tuple[dict[sympy.Symbol, sympy.Expr],
                                                           sympy.Expr]:
    """The candidate's substitution (each input element and parameter times its scales) and
    the factor it claims for the output."""
    groups = candidate.rule(len(op.inputs)).scale_groups(len(op.inputs))
    scales = group_scale_symbols(op, groups.groups)
    swap: dict[sympy.Symbol, sympy.Expr] = {}
    for tensor, group in zip(op.inputs, groups.groups):
        for element in tensor.elements:
            swap[op.symbols[element]] = scales[group] * op.symbols[element]
    for param, ks in groups.param_exponents.items():
        swap[op.symbols[param]] = _monomial(scales, ks) * op.symbols[param]
    return swap, _monomial(scales, groups.degrees)


def domain_left_by_scaling(op: Operator, candidate: Candidate) -> sympy.Basic | None:
    """The first domain condition that the candidate's scaling is not shown to keep, if any.

    The identity f(s x) = s^d f(x) is claimed for every x of the domain and every s > 0, so
    the scaled point must be in the domain exactly when x is (the domain is a cone for the
    scaling: proofs/two-slope.md). ``x > 0`` is kept; ``x - 1 > 0`` and ``log(x) != 0`` are
    not (x = 2 is in the first, 2/4 is not). Shown, for each relation of a condition (through
    And, Or, Not): the scaling multiplies the difference of its sides by a positive
    expression in the scales alone. Anything not shown counts as left: the proof is then not
    given, and the verdict stays undecided."""
    swap, _ = _scaling(op, candidate)
    scales = {s for value in swap.values() for s in value.free_symbols} - set(swap)
    for condition in op.domain:
        if not _kept_by(condition, swap, scales):
            return condition
    return None


def _kept_by(condition: sympy.Basic, swap: dict, scales: set) -> bool:
    if condition in (sympy.true, sympy.false):
        return True
    if isinstance(condition, (sympy.And, sympy.Or, sympy.Not)):
        return all(_kept_by(part, swap, scales) for part in condition.args)
    if not isinstance(condition, sympy.core.relational.Relational):
        return False
    gap = condition.lhs - condition.rhs
    if gap == 0:
        return True
    try:
        ratio = sympy.cancel(_scaled_gap(gap, swap) / gap)
    except (ValueError, TypeError, ArithmeticError, RecursionError,
            sympy.PolynomialError):
        ratio = None
    if ratio is not None and ratio.free_symbols <= scales and ratio.is_positive is True:
        return True
    return _fails_at_most_at_zero(condition)


# nonzero rationals from 1e-6 to 1e6 of both signs, where a relation whose gap has no zero
# but 0 must hold (certified) before it is taken to hold on both half-lines
_GUARD_POINTS = tuple(sign * value for sign in (1, -1) for value in (
    sympy.Rational(1, 10**6), sympy.Rational(1, 1000), sympy.Rational(1, 7), sympy.Rational(1, 2),
    sympy.Integer(1), sympy.Rational(3, 2), sympy.Rational(27, 10), sympy.Integer(10),
    sympy.Rational(314, 3), sympy.Integer(1000), sympy.Integer(10**6)))
_HALF_LINE = sympy.Interval.open(0, sympy.oo)
# the only functions a gap may hold where solveset's "no zero" is taken: it answered so for
# abs inside a function (cosh(abs(x)) - 3), for erf(x) - 99/100 and for atan(x) - erf(1),
# each of which has a zero
_SOLVED = (sympy.exp, sympy.log)
_SIGN_HOLDS = {">": lambda sign: sign > 0, ">=": lambda sign: sign >= 0,
               "<": lambda sign: sign < 0, "<=": lambda sign: sign <= 0,
               "!=": lambda sign: sign != 0}


# solveset solves a polynomial in a generator other than its variable (exp(t), log(t), 2**t)
# through sympy.roots and, where roots finds fewer roots than the degree, keeps those it found
# and drops the rest (sympy 1.14's _solve_as_poly sets a ConditionSet, then overwrites it with
# the found roots' inverses): an EmptySet for 32**t - 5*2**t + 1, whose quintic in 2**t has
# no radicals, though it is 0 at t = 0.52. Every roots call solveset makes is counted where
# _fails_at_most_at_zero asks, and an answer built on a short one is not taken.
_SOLVESET = importlib.import_module("sympy.solvers.solveset")
_SHORT_ROOTS: ContextVar[list | None] = ContextVar("_SHORT_ROOTS", default=None)


def _counted_roots(f, *gens, **flags):
    """sympy.roots as solveset calls it, noting, while a count is open, a polynomial whose
    roots it does not all find (multiplicities summed against the degree)."""
    found = _sympy_roots(f, *gens, **flags)
    short = _SHORT_ROOTS.get()
    if short is not None:
        try:
            complete = isinstance(found, dict) and sum(found.values()) == sympy.Poly(
                f, *gens).degree()
        except (sympy.PolynomialError, ValueError, TypeError):
            complete = False
        if not complete:
            short.append(f)
    return found


def _install_counted_roots():
    """solveset's roots, counted (:func:`_counted_roots`); refused loudly where a sympy
    release solves otherwise (no module-level ``roots`` in sympy.solvers.solveset)."""
    original = getattr(_SOLVESET, "roots", None)
    if not callable(original):
        raise ImportError("sympy.solvers.solveset.roots is gone: ptq-verify cannot tell "
                          "where solveset drops roots with this sympy")
    _SOLVESET.roots = _counted_roots
    return original


_sympy_roots = _install_counted_roots()


def _on_whole_roots(solve, *args) -> sympy.Set | None:
    """``solve(*args)`` (solveset, or continuous_domain, which finds a quotient's poles with
    solveset), or None where it built its answer on roots sympy.roots did not all find
    (:data:`_SHORT_ROOTS`)."""
    short: list = []
    token = _SHORT_ROOTS.set(short)
    try:
        answer = solve(*args)
    finally:
        _SHORT_ROOTS.reset(token)
    return None if short else answer


def _fails_at_most_at_zero(relation: sympy.Basic) -> bool:
    """Whether ``relation``, in one variable, fails at no real point but 0, which every
    scaling keeps in place: the points where it holds are then a cone, whatever the
    scaling (``x + sqrt(x**2 + 1) > 0``, ``x/sqrt(x**2 + 1) >= -1``: nowhere; ``exp(x) - 1
    != 0``: at 0 alone), which the ratio of the scaled gap to the gap cannot show (asinh
    written as a log had stayed undecided on its domain alone).

    Shown on each open half-line apart, with the variable written as t or -t for a positive t
    (so that abs(t) is t): there the gap g (lhs - rhs) must hold no function but exp and log
    (powers, roots and quotients are not functions) and sympy's solveset must find no zero of
    it. An unequal relation then fails at most at
    0; an inequality needs g real and continuous on the half-line besides, where g then keeps
    one sign: the one it has (certified) at 11 spread points of each. solveset is not asked
    over all the reals, where it answered "no zero" for ``cosh(abs(x)) - 3`` (0 at
    +-acosh(3)), nor of other functions (``erf(x) - 99/100``, ``atan(x) - erf(1)``: "no
    zero" too), nor asked the inequality itself: it solves a periodic one on one period
    (``1 - cos(x) > 0`` failing "at 0" alone, not at 2*pi) and drops the zeros it leaves
    unsolved beside those it solves (``x**2*(2**x - x**2)**2 > 0`` failing "at 0" alone, not
    at 2 and 4), and all three had been proved. A condition of several variables, or one not
    so shown, counts as not kept. Nor is a gap whose numerator is of degree 5 or more in one
    of its parts (t, exp(t), log(t), a root): solveset solves such a polynomial by
    sympy.roots, which finds no root of most of them, and answered "no zero" for
    ``exp(5*t) - 5*exp(t) + 1`` (0 at log of 0.2 and of 1.44) and for
    ``log(t)**5 - 5*log(t) + 1``. That bound reads the degree in each generator sympy.Poly
    sees, and ``32**t - 5*2**t + 1`` is of degree 1 in 32**t and in 2**t there, while solveset
    solves it as the quintic in 2**t it is: no answer built on roots that sympy.roots did not
    all find is taken either (:func:`_on_whole_roots`)."""
    symbols = relation.free_symbols
    if len(symbols) != 1 or not isinstance(relation, sympy.core.relational.Relational):
        return False
    holds = _SIGN_HOLDS.get(relation.rel_op)
    if holds is None:
        return False
    variable = symbols.pop()
    gap = relation.lhs - relation.rhs
    t = sympy.Dummy("t", positive=True)
    for side in (1, -1):
        half = gap.xreplace({variable: side * t})
        if t not in half.free_symbols:
            # constant on this half-line (min(t/(1 + t), 0) is 0): the guard points read its
            # sign (sympy.Poly of a number raised GeneratorsNeeded out of classify)
            continue
        if any(not isinstance(call, _SOLVED) for call in half.atoms(Application)):
            return False
        try:
            numerator = sympy.numer(sympy.together(half))
            if numerator.has(t) and max(sympy.Poly(numerator).degree_list()) > 4:
                return False
            zeros = _on_whole_roots(sympy.solveset, sympy.Eq(half, 0), t, _HALF_LINE)
            if zeros is None or zeros.is_empty is not True:
                return False
            if relation.rel_op != "!=" and not _real_and_continuous(half, t):
                return False
        except (ValueError, TypeError, ArithmeticError, RecursionError, NotImplementedError,
                AttributeError, sympy.PolynomialError):
            return False
    return all(_certified_sign_holds(gap.xreplace({variable: point}), holds)
               for point in _GUARD_POINTS)


def _real_and_continuous(half: sympy.Expr, t: sympy.Symbol) -> bool:
    """Whether ``half`` is real and continuous for every t > 0, by sympy's continuous_domain
    (which counts where a log, an even root or an asin is real), save that it reads an odd
    root of a negative number as real where sympy's own value of it is complex: such a power
    counts only on a base sympy shows is non-negative. Nor where it found the poles on roots
    sympy.roots did not all find: 1/p(2**t) > 0, p of degree 5 in 2**t, was "continuous"
    across the pole where p turns negative."""
    if any(power.exp.is_Rational and not power.exp.is_integer and power.exp.q % 2
           and power.base.is_nonnegative is not True for power in half.atoms(sympy.Pow)):
        return False
    domain = _on_whole_roots(continuous_domain, half, t, _HALF_LINE)
    return domain is not None and _HALF_LINE.is_subset(domain) is True


def _certified_sign_holds(value: sympy.Expr, holds) -> bool:
    """Whether the number ``value``'s sign, certified (ball arithmetic), satisfies ``holds``."""
    ball = certified_ball(value)
    return ball is not None and holds(sign_of(ball))


def _scaled_gap(gap: sympy.Expr, swap: dict) -> sympy.Expr:
    """The gap of a domain relation at the scaled point, with positive scale factors pulled
    out of Max and Min (``rewrite_positive``, an identity for positive scales): cancel alone
    leaves ``max(s*eps, s*abs(x))/max(eps, abs(x))`` standing, so ScaleNorm's
    ``g*x0/max(norm(x), eps)``, with eps -> s*eps a cone, had stayed undecided."""
    return rewrite_positive(gap.xreplace(swap))


def _monomial(scales: list[sympy.Symbol], exponents) -> sympy.Expr:
    return sympy.Mul(*[s ** _rational(Fraction(k)) for s, k in zip(scales, exponents)])


def sign_cases(op: Operator) -> list[str]:
    """The elements a sign split must consider: those under a piecewise or partial function."""
    chosen: set[sympy.Symbol] = set()
    for atom in op.expr.atoms(*_PIECEWISE_ATOMS, sympy.log, sympy.Pow):
        if isinstance(atom, sympy.Pow):
            if not atom.exp.is_integer:
                chosen |= atom.base.free_symbols
        elif isinstance(atom, sympy.Piecewise):
            # branch values need no split; their own piecewise parts are atoms of their own
            for _, condition in atom.args:
                chosen |= condition.free_symbols
        else:
            chosen |= atom.free_symbols
    for condition in op.domain:
        chosen |= condition.free_symbols
    return [e for e in op.element_names if op.symbols[e] in chosen]


def case_substitution(op: Operator, signs: dict[str, str]) -> dict[sympy.Symbol, sympy.Expr]:
    value = {"positive": 1, "negative": -1}
    return {
        op.symbols[e]: (value[sign] * sign_symbol(e) if sign in value else sympy.S.Zero)
        for e, sign in signs.items()
    }


def excluded_by_domain(op: Operator, substitution: dict) -> sympy.Basic | None:
    """The first domain condition that is false in a sign case, if any."""
    for condition in op.domain:
        try:
            if substitute(condition, substitution) == sympy.false:
                return condition
        except ValueError:  # numbers that cannot be ordered: not shown false
            continue
    return None


def _rational(q: Fraction) -> sympy.Rational:
    return sympy.Rational(q.numerator, q.denominator)


class Checker:
    """One operator's search, proofs and refutation; :meth:`verdict` runs them all."""

    def __init__(self, op: Operator) -> None:
        self.op = op
        # seeded by the content alone: the same formula gets the same search under any name
        self.rng = random.Random(f"ptq-verify:{op.inputs}:{sorted(op.params.items())}:{op.expr}")
        self.tensor_elements = [[op.symbols[e] for e in t.elements] for t in op.inputs]
        self.param_symbols = [op.symbols[p] for p in op.params]
        self.denominators = exponent_denominators(op.expr)
        # set where refuting stopped short of a certificate: a certified counterexample at
        # the parameters' sample values, but no evidence that no rescaling of them gives a rule
        self.unrefuted: str | None = None
        self.left_domain: sympy.Basic | None = None  # a condition a candidate's scaling left

    def rational(self, value) -> Fraction | None:
        """A degree or exponent read off a numeric value (see :func:`_small_rational`)."""
        return _small_rational(value, self.denominators)

    # -- numerics ----------------------------------------------------------------------

    @cached_property
    def numeric(self) -> NumericFunction:
        names = (*self.op.element_names, *self.op.params)
        return NumericFunction(self.op.expr, [self.op.symbols[n] for n in names])

    def value(self, point: dict[str, mpmath.mpf]) -> mpmath.mpf | None:
        """f at the point to mpmath's working precision (adaptively), None where unknown."""
        return self.numeric([point[n] for n in (*self.op.element_names, *self.op.params)])

    @cached_property
    def domain_tests(self):
        """Each domain condition as a fast numeric test (exact checks come later)."""
        names = [self.op.symbols[n] for n in (*self.op.element_names, *self.op.params)]
        # dummified arguments: a parameter named like a generated name (e, mpf) shadows nothing
        return [
            sympy.lambdify(names, c, modules="mpmath", dummify=True) for c in self.op.domain
        ]

    def in_domain(self, point: dict[str, Fraction]) -> bool:
        values = [mp_fraction(point[n]) for n in (*self.op.element_names, *self.op.params)]
        try:
            return all(bool(test(*values)) for test in self.domain_tests)
        except (TypeError, ValueError, ZeroDivisionError, NameError):
            return False

    def in_domain_exactly(self, point: dict[str, Fraction]) -> bool:
        subs = {self.op.symbols[n]: _rational(v) for n, v in point.items()}
        try:
            return all(substitute(c, subs) == sympy.true for c in self.op.domain)
        except ValueError:  # numbers that cannot be ordered
            return False

    def random_point(
        self,
        params: dict[str, Fraction] | None,
        signs: tuple[int, ...] | None = None,
        param_sign: int = 0,
    ) -> dict[str, Fraction] | None:
        """A generic exact point inside the domain (parameters fixed or drawn too).

        ``signs`` (+1/-1 per element) is tried first; random signs after 20 misses, so that
        domains such as x > 0 are still met. Drawn parameters are near their sample values
        (``param_sign`` 0) or anywhere with that sign (+1/-1: selectors and bounds are seen on
        both sides), falling back to the sample values' neighbourhood after 20 misses.
        """
        for attempt in range(200):
            point = {e: self._generic_value(None) for e in self.op.element_names}
            if signs is not None and attempt < 20:
                point = {e: abs(v) * sign for (e, v), sign in zip(point.items(), signs)}
            if params is None:
                free = param_sign if attempt < 20 else 0
                point.update(
                    {
                        p: abs(self._generic_value(None)) * free if free else self._generic_value(v)
                        for p, v in sorted(self.op.params.items())
                    }
                )
            else:
                point.update(params)
            if self.in_domain(point):
                return point
        return None

    def _generic_value(self, sample: Fraction | None) -> Fraction:
        if sample is not None:
            if sample == 0:
                return Fraction(self.rng.randint(3, 40), self.rng.randint(41, 97))
            return sample * Fraction(self.rng.randint(83, 127), 101)
        # log-uniform over [1/100, 100]: points on both sides of every kink a parameter sets
        magnitude = Fraction(self.rng.randint(100, 999), 100) * Fraction(10) ** self.rng.randint(
            -2, 1
        )
        return magnitude if self.rng.random() < 0.5 else -magnitude

    def points(self, params: dict[str, Fraction] | None, count: int = _POINTS) -> list[dict]:
        """Generic points: all elements positive, all negative, then mixed signs."""
        n = len(self.op.element_names)
        patterns = [(1,) * n, (-1,) * n]
        found = []
        for index in range(count):
            signs = (
                patterns[index] if index < 2 else tuple(self.rng.choice((1, -1)) for _ in range(n))
            )
            point = self.random_point(params, signs, param_sign=(0, -1, 0, 1)[index % 4])
            if point is not None and self.value(_mp(point)) is not None:
                found.append(point)
        return found

    def scaled(
        self, point: dict, groups: Partition, scales: list[mpmath.mpf]
    ) -> tuple[dict, mpmath.mpf]:
        """The point moved by one scale per group (parameters by products of them), and the
        factor prod_g s_g^d_g the rule promises the output is multiplied by."""
        out = dict(point)
        for tensor, group in zip(self.op.inputs, groups.groups):
            for e in tensor.elements:
                out[e] = point[e] * scales[group]
        for p, ks in groups.param_exponents.items():
            out[p] = point[p] * _power_product(scales, ks)
        return out, _power_product(scales, groups.degrees)

    def settled_euler_rows(self, points: list[dict]) -> list[tuple[dict, tuple, tuple]]:
        """(point, row, the row at twice the digits) per point where both are known and agree
        (:func:`_rows_agree`); a row: f, d f/dt along each tensor's scaling, and along each
        parameter's.

        A row the doubled precision changes is rounding noise: x*(1 + tanh(u)) at u = -10^4,
        far below the precision 1 + tanh(u) is computed to, read f ~ 1e-50 and its
        derivatives 0, and each row divided by its own size made that noise a full row, alike
        at both precisions: x*(1 + tanh(c*(x + k*x**3))), whose rule is c, k -> s^-1 c,
        s^-2 k, had been refuted on it, its rule not found among the candidates."""
        rows = [(point, row) for point in points if (row := self._euler_row(point)) is not None]
        with mpmath.workdps(2 * mpmath.mp.dps):
            fine = [self._euler_row(point) for point, _ in rows]
        return [(point, row, fine_row) for (point, row), fine_row in zip(rows, fine)
                if fine_row is not None and _rows_agree(row, fine_row)]

    def _euler_row(self, point: dict) -> tuple[mpmath.mpf, list, list] | None:
        mp_point = _mp(point)
        f = self.value(mp_point)
        if f is None:
            return None
        tensor_terms = [self._log_derivative(mp_point, t.elements) for t in self.op.inputs]
        param_terms = [self._log_derivative(mp_point, (p,)) for p in self.op.params]
        if any(v is None for v in (*tensor_terms, *param_terms)):
            return None
        return f, tensor_terms, param_terms

    def _log_derivative(self, point: dict, names, direction: int = 0,
                        weights: dict | None = None) -> mpmath.mpf | None:
        """d/dt f at t = 0 with the named coordinates times e^t (e^(w t) with ``weights``):
        central difference, or one-sided (``direction`` +1 / -1)."""
        def along(t):
            moved = dict(point)
            for n in names:
                moved[n] = point[n] * mpmath.exp(t * (weights[n] if weights else 1))
            value = self.value(moved)
            if value is None:
                raise ValueError("out of domain")
            return value

        try:
            return mpmath.diff(along, 0, direction=direction)
        except (ValueError, ZeroDivisionError):
            return None

    def looks_differentiable(self, point: dict) -> bool:
        """Whether f shows no kink at the point: along each tensor's and each parameter's
        scaling the derivatives from the right and from the left agree, and the derivative
        from the right along a few combinations of them (all at once, and four fixed
        combinations with weights from -3 to 3) is that combination of theirs (a derivative
        is linear). A kink no combination tried crosses is not seen.

        Euler's identity holds only where f is differentiable (proofs/euler.md). At a kink,
        such as max(x, b, c, g) with the three parameters at one sample value, the central
        differences it would be read from are no derivatives, and a function with a rule
        appeared to have none. Numeric, like the rest of the Euler evidence."""
        mp_point = _mp(point)
        f = self.value(mp_point)
        if f is None:
            return False
        directions = [t.elements for t in self.op.inputs] + [(p,) for p in self.op.params]
        size = abs(f)
        rights = []
        for names in directions:
            right = self._log_derivative(mp_point, names, direction=1)
            left = self._log_derivative(mp_point, names, direction=-1)
            if right is None or left is None:
                return False
            rights.append((right, left))
            size += abs(right) + abs(left)
        tolerance = mpmath.mpf(10) ** (-mpmath.mp.dps // 3) * (1 + size)
        if any(abs(right - left) > tolerance for right, left in rights):
            return False
        names = [n for group in directions for n in group]
        draw = random.Random(len(directions))  # the same combinations at every point
        patterns = [[1] * len(directions)] + [
            [draw.choice((-3, -2, -1, 1, 2, 3)) for _ in directions] for _ in range(4)
        ]
        for pattern in patterns:
            weights = {n: pattern[i] for i, group in enumerate(directions) for n in group}
            combined = self._log_derivative(mp_point, names, direction=1, weights=weights)
            expected = sum((w * right for w, (right, _) in zip(pattern, rights)), mpmath.mpf(0))
            if combined is None or abs(combined - expected) > tolerance * (len(names) + 1):
                return False
        return True

    # -- candidates ----------------------------------------------------------------------

    def candidates(self) -> Iterator[Candidate]:
        """Candidate rules, best first, each screened numerically only when it is reached."""
        points = self.points(params=None)
        for candidate in self._ranked_candidates(points):
            if self._holds_numerically(candidate, points):
                yield candidate

    def _ranked_candidates(self, points: list[dict]) -> list[Candidate]:
        rows = [row for _, row, _ in self.settled_euler_rows(points)]
        if len(rows) < 2:
            return []
        found: list[Candidate] = []
        if len(self.op.inputs) > 1:
            separable = self._separable_candidate(rows)
            if separable is not None:
                found.append(separable)
            found += self._partition_candidates(rows)
        # Parameters f does not vary with almost anywhere (thresholds: Shrink's lambd) are
        # invisible to Euler's identity; the natural guess is that they scale like the output.
        # (parameters in name order, as the points draw them: a rule does not depend on the
        # order a declaration lists them in, which had chosen between two proved rules of a
        # ScaleNorm g*x0/max(norm, eps))
        column = {p: position for position, p in enumerate(self.op.params)}
        invisible = [
            p
            for p in sorted(column)
            if all(abs(g_p[column[p]]) <= abs(f) * mpmath.mpf(10) ** -20 for f, _, g_p in rows)
        ]
        visible = [p for p in sorted(column) if p not in invisible]
        for size in range(len(visible) + 1):
            for support in itertools.combinations(visible, size):
                for candidate in self._joint_candidates(rows, support):
                    variants = [candidate]
                    for extra in _subsets(invisible):
                        for guess in _invisible_guesses(candidate.degree, len(invisible)):
                            exponents = dict(candidate.param_exponents)
                            exponents.update({p: guess for p in extra})
                            variants.append(Candidate(candidate.degree, None, exponents))
                    found += [v for v in variants if v not in found]
        # fewest rescaled parameters first, degree 1 first on a tie (stable: separable first,
        # then partitions, finest first)
        found.sort(key=lambda c: (len(c.param_exponents), c.degree != 1))
        return found

    def _separable_candidate(self, rows) -> Candidate | None:
        degrees = []
        for position in range(len(self.op.inputs)):
            ratios = [g[position] / f for f, g, _ in rows if abs(f) > mpmath.mpf(10) ** -20]
            if not ratios:
                return None
            degree = self.rational(ratios[0])
            if degree is None or any(self.rational(r) != degree for r in ratios):
                return None
            degrees.append(degree)
        return Candidate(sum(degrees, Fraction(0)), tuple(degrees), {})

    def _partition_candidates(self, rows) -> list[Candidate]:
        """Rules with scale groups between one shared scale and one scale per tensor.

        Euler's identity splits by group: for each group G of tensors,
        sum_{T in G} x_T . grad_T f + sum_p k_pG p df/dp = d_G f, linear in (d_G, k_G), so each
        group's degree and parameter exponents come from its own least-squares solve. Finer
        partitions come first; one group per tensor is tried only with parameters (without
        them it is the separable candidate).
        """
        n = len(self.op.inputs)
        if n > _MAX_PARTITION_TENSORS:
            return []
        found = []
        for groups in _set_partitions(n):
            count = max(groups) + 1
            if count == 1 or (count == n and not self.op.params):
                continue
            solved = [self._group_solution(rows, groups, g) for g in range(count)]
            if any(s is None for s in solved):
                continue
            exponents = {
                p: tuple(k.get(p, Fraction(0)) for _, k in solved)
                for p in self.op.params
                if any(p in k for _, k in solved)
            }
            partition = Partition(groups, tuple(d for d, _ in solved), exponents)
            degree, shared = partition.shared()
            found.append(Candidate(degree, None, shared, partition))
        return found

    def _group_solution(self, rows, groups: tuple[int, ...], group: int):
        """(d_G, {p: k_pG}) for one group from Euler's identity, or None."""
        members = [t for t, g in enumerate(groups) if g == group]
        matrix = [[f, *[-g for g in g_p]] for f, _, g_p in rows]
        target = [sum(g_t[t] for t in members) for _, g_t, _ in rows]
        solution = _float_least_squares(matrix, target)
        if solution is None:
            return None
        rounded = [self.rational(v) for v in solution]
        if any(v is None for v in rounded):
            return None
        exponents = {p: k for p, k in zip(self.op.params, rounded[1:]) if k != 0}
        return rounded[0], exponents

    def _joint_candidates(self, rows, support: tuple[str, ...]) -> list[Candidate]:
        """Solve f*d - sum_p G_p k_p = sum_T G_T for (d, k_support) by least squares."""
        names = list(self.op.params)
        columns = [names.index(p) for p in support]
        matrix = [[f, *[-g_p[c] for c in columns]] for f, _, g_p in rows]
        target = [sum(g_t) for _, g_t, _ in rows]
        solutions = []
        for fixed_degree in (None, Fraction(1), Fraction(0)):
            system, rhs = [list(r) for r in matrix], list(target)
            if fixed_degree is not None:
                system.append([mpmath.mpf(1)] + [mpmath.mpf(0)] * len(columns))
                rhs.append(mp_fraction(fixed_degree))
            solution = _float_least_squares(system, rhs)
            if solution is None:
                continue
            rounded = [self.rational(v) for v in solution]
            if any(v is None for v in rounded):
                continue
            if any(rounded[i + 1] == 0 for i in range(len(columns))):
                continue
            candidate = Candidate(rounded[0], None, dict(zip(support, rounded[1:])))
            if candidate not in solutions:
                solutions.append(candidate)
            if fixed_degree is None and _full_rank(matrix):
                break
        return solutions

    def _holds_numerically(self, candidate: Candidate, points: list[dict]) -> bool:
        groups = candidate.rule(len(self.op.inputs)).scale_groups(len(self.op.inputs))
        for point in points:
            mp_point = _mp(point)
            base = self.value(mp_point)
            for s_value in _SCALES[:2]:  # 2 and 3: logarithms with an irrational ratio
                sides = self.rule_sides(mp_point, base, groups, mp_fraction(s_value))
                if sides is None:
                    return False
                lhs, rhs, _ = sides
                if abs(lhs - rhs) > mpmath.mpf(10) ** (4 - _DPS) * (1 + abs(lhs) + abs(rhs)):
                    return False
        return True

    def rule_sides(
        self, mp_point: dict, base: mpmath.mpf | None, groups: Partition, s: mpmath.mpf
    ) -> tuple[mpmath.mpf, mpmath.mpf, list[mpmath.mpf]] | None:
        """``(f(moved x; moved p), factor * f(x; p), group scales)`` for the rule ``groups``
        at scale ``s``, each group at s * 5^g (far apart, so that a rule needing a shared
        scale shows its failure); None where either side is unknown."""
        scales = [s * mpmath.mpf(5) ** g for g in range(len(groups.degrees))]
        moved_point, factor = self.scaled(mp_point, groups, scales)
        lhs = self.value(moved_point)
        if lhs is None or base is None:
            return None
        return lhs, factor * base, scales

    # -- proofs --------------------------------------------------------------------------

    def prove(self, candidate: Candidate) -> Proof | None:
        """A proof of the candidate identity: direct, else by sign cases; cheap steps first.
        None, too, when the scaling may leave the domain (:func:`domain_left_by_scaling`)."""
        left = domain_left_by_scaling(self.op, candidate)
        if left is not None:
            if self.left_domain is None:  # (not `or`: the truth of a sympy condition is
                self.left_domain = left  # undecidable, Ne(x - 1, 0), and raises)
            return None
        lhs, rhs = scaled_identity(self.op, candidate)
        residual = lhs - rhs
        split = sign_cases(self.op)
        direct = zero_residual(residual, thorough=False) == 0
        if not direct and (not split or len(split) > _MAX_SPLIT_ELEMENTS):
            direct = self._thorough_zero(residual)
        text = (format_expression(lhs), format_expression(rhs))
        if direct:
            return Proof(*text, "direct", (ProofCase({}, "0"),))
        if not split or len(split) > _MAX_SPLIT_ELEMENTS:
            return None
        cases = []
        for signs in itertools.product(("positive", "negative", "zero"), repeat=len(split)):
            assignment = dict(zip(split, signs))
            substitution = case_substitution(self.op, assignment)
            excluded = excluded_by_domain(self.op, substitution)
            if excluded is not None:
                cases.append(ProofCase(assignment, f"excluded: {format_expression(excluded)}"))
                continue
            try:  # the zero case leaves comparisons of numbers: decided as the parser does
                case_residual = substitute(residual, substitution)
            except ValueError:
                return None
            if zero_residual(case_residual, thorough=False) != 0:
                if not self._thorough_zero(case_residual):
                    return None
            cases.append(ProofCase(assignment, "0"))
        return Proof(*text, "sign_split", tuple(cases))

    def _thorough_zero(self, residual: sympy.Expr) -> bool:
        """Full simplification, skipped when a sample point already shows a non-zero value.

        The sample only saves time: it can make the checker give up on a proof, never accept
        one.
        """
        symbols = sorted(residual.free_symbols, key=str)
        scales = [x for x in symbols if str(x) == "s" or str(x).startswith("s_")]
        others = [x for x in symbols if x not in scales]
        samples = [  # ties between inputs under distinct scales, then generic points
            {
                **dict.fromkeys(others, sympy.Integer(tie)),
                **{x: sympy.Integer(tie + 1 + i) for i, x in enumerate(scales)},
            }
            for tie in (1, 2)
        ]
        for _ in range(_SAMPLES):
            values = {}
            for symbol in symbols:
                value = self._generic_value(None)
                values[symbol] = _rational(abs(value) if symbol.is_positive else value)
            samples.append(values)
        for values in samples:
            try:
                sample = complex(residual.xreplace(values).evalf(15))
            except (TypeError, ValueError, ZeroDivisionError):
                continue
            if sample.imag == 0 and abs(sample.real) > 1e-6 and np.isfinite(sample.real):
                return False
        return zero_residual(residual, thorough=True) == 0

    # -- refutation ----------------------------------------------------------------------

    def refute(self) -> Counterexample | None:
        for params in (dict(self.op.params), None):
            found = self._counterexample(params)
            if found is not None:
                return found
        return None

    def _counterexample(self, params: dict | None) -> Counterexample | None:
        generic = [p for p in self.points(params, count=12) if self.in_domain_exactly(p)]
        points = generic + (self.breakpoint_points(params) if params is not None else [])
        for s_value in _SCALES:
            # the clearest counterexample first: largest relative gap, numerically
            for first in sorted(points, key=lambda p: -self._relative_gap(p, s_value)):
                try:
                    lhs, rhs = exact_sides(self.op, first, s_value, 1)
                    difference = certified_nonzero(lhs - rhs)
                    if difference is None:
                        continue
                    no_degree = self._no_degree(first, points, s_value)
                    texts = written_value(lhs), written_value(rhs)
                except (InexactPoint, UnwritableValue, ArithmeticError):
                    # (sympy's exact powers overflow at a drawn point: (x**p)**q at p = 228/5
                    # raised an OverflowError out of classify, exit 2 for a short expression)
                    continue
                if no_degree is None:
                    continue
                no_rescale = None
                if self.op.params:
                    # generic points, parameters drawn too: Euler's identity needs f
                    # differentiable there, which a declaration's sample values need not be
                    no_rescale = self._no_rescale(euler_points(self.op))
                    if no_rescale is None:
                        self.unrefuted = (
                            f"f(s*x) != s^d*f(x) is certified at {_point_text(first)}, s = "
                            f"{s_value}, but not that no rescaling of "
                            f"{', '.join(self.op.params)} gives a rule (Euler's identity at "
                            "the sampled points was not conclusive)")
                        return None
                return Counterexample(
                    point={n: str(v) for n, v in first.items()},
                    scale=str(s_value),
                    lhs=texts[0],
                    rhs=texts[1],
                    difference=difference,
                    no_degree=no_degree,
                    no_rescale=no_rescale,
                )
        return None

    def breakpoint_points(self, params: dict[str, Fraction]) -> list[dict]:
        """Exact points at and around where f switches, at 0, and at its constants' sizes.

        A rule can fail only across a breakpoint (heaviside(x - 1) between x = 1/2 and 1) or
        beyond a constant (clip(x, -10^4, 10^4) past 10^4), where generic points seldom fall.
        Breakpoints are the zeros of the arguments of heaviside, sign, abs, floor, ceil,
        round, of the differences of max/min arguments, and of where's comparisons, solved
        for one element when that argument is linear in it.
        """
        op = self.op
        fixed = {op.symbols[p]: _rational(v) for p, v in params.items()}
        targets: list[tuple[str, Fraction]] = [(e, Fraction(0)) for e in op.element_names]
        for switch in _switch_arguments(op.expr):
            # the values put in lie anywhere: a switch may not be real there (sqrt(y) at
            # y < 0, or at a parameter's sample value outside a where() branch), and sympy's
            # Max of such a number raised out of the checker (min(max(x, sqrt(y)), 1) over
            # tensors x, y; where(t > 0, min(max(x, sqrt(t)), 1), x) at t = -1)
            try:
                switch = substitute(switch, fixed)
            except (ValueError, TypeError, ArithmeticError):
                continue
            for element in op.element_names:
                symbol = op.symbols[element]
                if symbol not in switch.free_symbols:
                    continue
                others = {
                    op.symbols[e]: _rational(self._generic_value(None))
                    for e in op.element_names
                    if e != element
                }
                try:
                    root = _linear_root(substitute(switch, others), symbol)
                except (ValueError, TypeError, ArithmeticError):
                    continue
                if root is not None:
                    targets.append((element, root))
        sizes = {abs(Fraction(int(r.p), int(r.q))) for r in op.expr.atoms(sympy.Rational)}
        targets += [(e, sign * c) for c in sizes - {0, 1} for e in op.element_names
                    for sign in (1, -1)]
        found: list[dict] = []
        for element, root in targets[:_MAX_BREAKPOINTS]:
            for factor in _AROUND if root else (Fraction(0),):
                point = {e: self._generic_value(None) for e in op.element_names}
                point[element] = root * factor
                point.update(params)
                if point not in found and self.in_domain_exactly(point):
                    found.append(point)
        return found

    def _relative_gap(self, point: dict, s: Fraction) -> mpmath.mpf:
        """|f(s x) - s f(x)| / (|f(s x)| + |s f(x)| + 1), numerically (0 if not evaluable)."""
        mp_point, scale = _mp(point), mp_fraction(s)
        moved = {n: v * scale if n in self.op.element_names else v for n, v in mp_point.items()}
        lhs, base = self.value(moved), self.value(mp_point)
        if lhs is None or base is None:
            return mpmath.mpf(0)
        return abs(lhs - scale * base) / (abs(lhs) + abs(scale * base) + 1)

    def _no_degree(self, first: dict, points: list[dict], s: Fraction) -> dict | None:
        """Exact evidence that f(s x) = c f(x) fails for every constant c at this s."""
        moved_1, base_1 = exact_sides(self.op, first, s, 0)
        if certified_nonzero(base_1) is None:
            if certified_zero(base_1) and certified_nonzero(moved_1) is not None:
                return {
                    "reason": "f(x) = 0 but f(s*x) != 0, so f(s*x) = s^d f(x) fails for every d",
                    "point": {n: str(v) for n, v in first.items()},
                    "f_x": written_value(base_1),
                    "f_sx": written_value(moved_1),
                }
            return None
        for second in points:
            if second is first:
                continue
            try:
                moved_2, base_2 = exact_sides(self.op, second, s, 0)
                if certified_nonzero(base_2) is None:
                    continue
                difference = certified_nonzero(moved_1 * base_2 - moved_2 * base_1)
            except (InexactPoint, ArithmeticError):
                continue
            if difference is not None:
                try:
                    texts = written_value(base_2), written_value(moved_2)
                except UnwritableValue:
                    continue
                return {
                    "reason": "f(s*x)/f(x) differs between two points, so no degree d works",
                    "point": {n: str(v) for n, v in second.items()},
                    "f_x": texts[0],
                    "f_sx": texts[1],
                    "cross_difference": difference,
                }
        return None

    def _no_rescale(self, points: list[dict]) -> dict | None:
        """Euler's identity with every parameter free has no solution (d, k) at these points."""
        residual, size, usable = stable_euler_residual(self.op, points)
        if residual is None:
            return None
        return {
            "reason": "Euler's identity sum x df/dx + sum k_p p df/dp = d f (necessary for any "
            "rule) has no solution (d, k) at these points",
            "points": [{n: str(v) for n, v in p.items()} for p in usable],
            "least_squares_residual": mpmath.nstr(residual, 10),
            "relative_to": mpmath.nstr(size, 10),
        }

    # -- verdict -------------------------------------------------------------------------

    def verdict(self) -> Verdict:
        op = self.op
        common = verdict_facts(op)
        candidates: list[Candidate] = []  # those that passed the numeric screen
        proved: list[tuple[Rule, Proof]] = []
        for candidate in self.candidates():
            candidates.append(candidate)
            proof = self.prove(candidate)
            if proof is not None:
                proved.append((candidate.rule(len(op.inputs)), proof))
                if len(proved) > _MAX_ALTERNATIVES:
                    break
        if proved:
            rule, proof = proved[0]
            return Verdict(rule=rule, certificate=proof, alternatives=tuple(proved[1:]), **common)
        # A candidate that passed the numeric screen may still be false (its points missed
        # where it fails): the refutation's evidence is exact, so it decides either way.
        counterexample = self.refute()
        if counterexample is not None:
            return Verdict(
                rule=Rule(RuleKind.NEEDS_COMPENSATION), certificate=counterexample, **common
            )
        if candidates:
            reason = "a rule holds numerically but was not proved: " + ", ".join(
                c.rule(len(op.inputs)).describe() for c in candidates[:3]
            )
            if self.left_domain is not None:
                reason += (f" (scaling may leave the domain: {format_expression(self.left_domain)}"
                           " is not shown to hold at s*x wherever it holds at x)")
            return Verdict(rule=Rule(RuleKind.UNDECIDED), certificate=None, reason=reason, **common)
        return Verdict(
            rule=Rule(RuleKind.UNDECIDED),
            certificate=None,
            reason="no rule was found and no certified counterexample either" + (
                f": {self.unrefuted}" if self.unrefuted else ""),
            **common,
        )


def euler_points(op: Operator) -> list[dict]:
    """The points at which a refutation reads Euler's identity (that no rescaling of the
    parameters gives a rule): generic inputs, and parameters drawn too, near their sample
    values and anywhere, by a generator of their own seeded by the declaration's content, so
    that the re-check draws the very same points and a certificate cannot choose them.

    Not the sample values: a declaration chooses them, and f may fail to be differentiable
    there at every x in a way no direction :meth:`Checker.looks_differentiable` tries shows
    (a degree-1 function of p/r**2 - 1 and q/r**3 - 1 with kinks only at 0, linear along the
    directions tried, at p = q = r = 1): the derivatives read there were no derivatives, and
    an operator with the rule p, q, r -> s**2 p, s**3 q, s r was refuted (the corpus's
    ``pa_euler_blind_kink``). At drawn parameters such a kink is met with probability 0."""
    checker = Checker(op)
    checker.rng = random.Random(
        f"ptq-verify euler points:{op.inputs}:{sorted(op.params.items())}:{op.expr}")
    return [p for p in checker.points(None, count=_EULER_POINTS)
            if checker.in_domain_exactly(p)]


def _point_text(point: dict) -> str:
    """``x = 1/2, a = 1``: a point as the certificates write it."""
    return ", ".join(f"{name} = {value}" for name, value in point.items())


def _invisible_guesses(degree: Fraction, invisible: int) -> list[Fraction]:
    """Exponents to try for parameters Euler's identity cannot see (thresholds): scaling like
    the output (``degree``), then, with at most two such parameters, like the input (``t`` in
    ``where(x > t, 1, 0)``, of degree 0) and inversely to it (``p`` in ``where(p*x > 1, x,
    0)``); both had stayed undecided. Each is proved or dropped like any candidate."""
    guesses = [degree] if degree != 0 else []
    if invisible <= 2:
        guesses += [k for k in (Fraction(1), Fraction(-1)) if k not in guesses]
    return guesses


def _subsets(names: list[str], most: int = 4) -> list[tuple[str, ...]]:
    """Non-empty subsets, smallest first; beyond ``most`` names only the whole set.

    Which invisible parameters must scale depends on which side of their thresholds the
    sample points fell, so each subset is a candidate and the fewest-rescaled one is proved.
    """
    if len(names) > most:
        return [tuple(names)] if names else []
    return [c for size in range(1, len(names) + 1) for c in itertools.combinations(names, size)]


_MAX_PARTITION_TENSORS = 4  # 15 set partitions of 4 tensors; more would be slow and rare
_MAX_BREAKPOINTS = 12


def _set_partitions(n: int) -> list[tuple[int, ...]]:
    """Every partition of n tensors into groups (restricted growth strings), finest first."""
    found: list[tuple[int, ...]] = []

    def grow(prefix: tuple[int, ...]) -> None:
        if len(prefix) == n:
            found.append(prefix)
            return
        for g in range(max(prefix, default=-1) + 2):
            grow((*prefix, g))

    grow(())
    return sorted(found, key=lambda groups: -max(groups, default=0))
# at a breakpoint b, just past it, and where the scales 2, 3 and 7/5 carry a point across it
_AROUND = (Fraction(1), Fraction(3, 4), Fraction(5, 4), Fraction(1, 2), Fraction(2, 3),
           Fraction(5, 7), Fraction(3, 2))


def _switch_arguments(expr: sympy.Expr) -> list[sympy.Expr]:
    """Expressions whose sign change switches a piece of ``expr`` (see breakpoint_points)."""
    found: list[sympy.Expr] = []
    unary = (sympy.Heaviside, sympy.sign, sympy.Abs, sympy.floor, sympy.ceiling)
    for atom in sympy.preorder_traversal(expr):
        if isinstance(atom, unary) or type(atom).__name__ == "RoundHalfEven":
            found.append(atom.args[0])
        elif isinstance(atom, (sympy.Max, sympy.Min)):
            found += [a - b for a, b in itertools.combinations(atom.args, 2)][:6]
        elif isinstance(atom, sympy.Piecewise):
            for _, condition in atom.args:
                found += [r.lhs - r.rhs for r in condition.atoms(sympy.core.relational.Relational)]
    return found[:24]


def _linear_root(expr: sympy.Expr, symbol: sympy.Symbol) -> Fraction | None:
    """The root of ``expr`` = 0 (rational, or a rational next to it) when it is a first-degree
    polynomial in ``symbol``, or a quotient whose numerator is one: min(10^4, 1/(2x)) (a run
    of benchmarks/fuzz_checker.py) switches at x = 1/20000, where(e x > 1, x, 0) at 1/e; no
    generic point falls there, and each had been left undecided after its screen passed on
    a false rule (homogeneous -1, pass_through)."""
    try:
        poly = sympy.Poly(expr, symbol)
    except (sympy.PolynomialError, sympy.GeneratorsNeeded, ValueError, TypeError):
        try:
            numerator, denominator = sympy.fraction(sympy.together(expr))
        except (ValueError, TypeError, ArithmeticError):
            return None
        if symbol not in denominator.free_symbols:
            return None
        return _linear_root(numerator, symbol)
    if poly.degree() != 1:
        return None
    slope, offset = poly.all_coeffs()
    root = -offset / slope
    if root.is_Rational:
        return Fraction(int(root.p), int(root.q))
    # an irrational root (x + 10^4 + cosh(1/2) > 1): a rational next to it, since the point
    # is only a candidate, whose counterexample is then certified exactly
    try:
        value = sympy.N(root, 30)
    except (ValueError, TypeError, ArithmeticError):
        return None
    if not (value.is_real and value.is_finite and value.is_Float):
        return None
    return Fraction(str(value)).limit_denominator(10**12)


def verdict_facts(op: Operator) -> dict:
    """What a verdict states of ``op``'s declaration beside its rule: its name, ONNX type and
    expression, the domain it holds on, and whether sympy proves the output >= 0
    (``output_nonnegative``) or >= 0 wherever every input element is (``preserves_nonnegative``).
    The re-check of a certificate holds a stored verdict to them (recheck.py)."""
    nonnegative = bool(op.expr.is_nonnegative)
    return {
        "operator": op.name,
        "domain": tuple(format_expression(c) for c in op.domain),
        "output_nonnegative": nonnegative,
        "preserves_nonnegative": nonnegative or _preserves_nonnegative(op),
        "onnx_type": op.onnx_type,
        "expression": format_expression(op.expr),
    }


def _preserves_nonnegative(op: Operator) -> bool:
    """Whether sympy proves f >= 0 once every input element is known to be >= 0; not where
    sympy cannot rebuild f so (``min(1, asin(y + 1e4))``: with y >= 0 the asin is known not
    real, and Min raised "not comparable" out of classify, a benchmarks/fuzz_checker.py run)."""
    swap = {op.symbols[e]: sympy.Symbol(e, nonnegative=True) for e in op.element_names}
    try:
        return bool(op.expr.xreplace(swap).is_nonnegative)
    except (ValueError, TypeError, ArithmeticError, RecursionError):
        return False


def stable_euler_residual(op: Operator, points: list[dict]):
    """``(residual, scale, used points)`` when Euler's identity is clearly unsolvable.

    Rows come from the points where f and its derivatives are known at the working precision
    and f shows no kink (:meth:`Checker.looks_differentiable`);
    the same points are evaluated again at twice as many digits, the rows the two disagree on
    are dropped, and the evidence counts only when both find a clear residual and agree on
    it, so cancellation cannot fake it.
    ``(None, None, [])`` otherwise.
    """
    checker = Checker(op)
    agreed = checker.settled_euler_rows([p for p in points if checker.looks_differentiable(p)])
    used = [p for p, _, _ in agreed]
    found = []
    for digits, rows in ((mpmath.mp.dps, [row for _, row, _ in agreed]),
                         (2 * mpmath.mp.dps, [fine_row for _, _, fine_row in agreed])):
        with mpmath.workdps(digits):
            residual, size = _euler_inconsistency(op, rows)
        if residual is None or residual < mpmath.mpf(10) ** -8 * size:
            return None, None, []
        found.append((residual, size))
    (first, size), (second, _) = found
    if abs(first - second) > mpmath.mpf(10) ** -3 * abs(second):
        return None, None, []
    return first, size, used


def _rows_agree(row: tuple, fine_row: tuple) -> bool:
    """Whether an Euler row read at the working precision is the one read at twice its
    digits, each value to 10^-6 of the finer row's size."""
    values = [row[0], *row[1], *row[2]]
    fine_values = [fine_row[0], *fine_row[1], *fine_row[2]]
    size = sum(abs(v) for v in fine_values)
    return all(abs(a - b) <= mpmath.mpf(10) ** -6 * size for a, b in zip(values, fine_values))


def _euler_inconsistency(op: Operator, rows: list) -> tuple:
    """(least-squares residual, scale) of Euler's identity over the rows, each row divided by
    its own size first: the identity is homogeneous in a row, so that keeps its solutions,
    and at drawn parameters the values of f differ by 10^40 between points (abs(x)**p, exp(x)
    + b), which left the small rows to rounding and the evidence unstable."""
    sizes = [abs(f) + sum(abs(g) for g in (*g_t, *g_p)) for f, g_t, g_p in rows]
    rows = [[v / size for v in (f, *g_t, *g_p)] for (f, g_t, g_p), size in zip(rows, sizes)
            if size]
    if len(rows) <= len(op.params) + 1:
        return None, None
    n_tensors = len(op.inputs)
    matrix = [[row[0], *[-g for g in row[1 + n_tensors:]]] for row in rows]
    target = [sum(row[1:1 + n_tensors]) for row in rows]
    solution = _least_squares(matrix, target, require_consistent=False)
    if solution is None:
        return None, None
    return _residual_norm(matrix, target, solution), mpmath.norm(mpmath.matrix(target)) + 1


def _power_product(scales: list[mpmath.mpf], exponents) -> mpmath.mpf:
    product = mpmath.mpf(1)
    for scale, k in zip(scales, exponents):
        product *= mpmath.power(scale, mp_fraction(Fraction(k)))
    return product


def _mp(point: dict) -> dict:
    return {n: mpmath.mpf(v.numerator) / v.denominator for n, v in point.items()}


def mp_fraction(q: Fraction) -> mpmath.mpf:
    return mpmath.mpf(q.numerator) / q.denominator


def _small_rational(value, denominators: tuple[int, ...] = ()) -> Fraction | None:
    """The rational with a small denominator that ``value`` is numerically, if any.

    Denominators up to 24 are tried, and those the expression's own exponents carry
    (``x**(1/29)`` has degree 1/29), with their small multiples.
    """
    as_float = float(value)
    if not abs(as_float) < 1e6:
        return None
    for q in (Fraction(as_float).limit_denominator(24), *(
        Fraction(round(as_float * d), d) for d in denominators
    )):
        if abs(float(q) - as_float) <= 1e-9 * max(1.0, abs(as_float)):
            return q
    return None


def exponent_denominators(expr: sympy.Expr) -> tuple[int, ...]:
    """Denominators above 24 of the rational exponents in ``expr``, times 1 to 6."""
    found = {
        int(p.exp.q) * k
        for p in expr.atoms(sympy.Pow)
        if p.exp.is_Rational and 24 < p.exp.q <= 10**6
        for k in range(1, 7)
    }
    return tuple(sorted(found))


def _least_squares(matrix, target, require_consistent: bool = True):
    """Minimum-norm least-squares solution via the SVD (robust to zero and repeated rows)."""
    rows = [(r, t) for r, t in zip(matrix, target) if any(v != 0 for v in r) or t != 0]
    if not rows or len(rows) < len(matrix[0]):
        return None
    a = mpmath.matrix([r for r, _ in rows])
    b = mpmath.matrix([t for _, t in rows])
    try:
        u, singular, v = mpmath.svd_r(a)
    except (ZeroDivisionError, ValueError):
        return None
    largest = max(abs(x) for x in singular)
    if largest == 0:
        return None
    projected = u.T * b
    coefficients = mpmath.matrix(
        [
            projected[i] / x if abs(x) > mpmath.mpf(10) ** -15 * largest else 0
            for i, x in enumerate(singular)
        ]
    )
    solution = v.T * coefficients
    if require_consistent:
        residual = mpmath.norm(a * solution - b)
        scale = mpmath.norm(b) + mpmath.norm(a) * mpmath.norm(solution) + 1
        if residual > mpmath.mpf(10) ** -12 * scale:
            return None
    return [solution[i] for i in range(a.cols)]


def _residual_norm(matrix, target, solution) -> mpmath.mpf:
    a = mpmath.matrix(matrix)
    return mpmath.norm(a * mpmath.matrix(solution) - mpmath.matrix(target))


def _full_rank(matrix) -> bool:
    """Whether the columns are independent (the least-squares solution is unique)."""
    a = np.array(matrix, dtype=float)
    if not np.all(np.isfinite(a)):  # LAPACK prints warnings on stdout for inf/nan input
        return False
    return a.shape[0] >= a.shape[1] and np.linalg.matrix_rank(a, tol=None) == a.shape[1]


def _float_least_squares(matrix, target) -> list[float] | None:
    """Least squares in float64 for the candidate search: fast, and only ever a candidate."""
    a = np.array(matrix, dtype=float)
    b = np.array(target, dtype=float)
    # each row scaled to unit size: same solutions, no overflow from points where f is huge
    size = np.maximum(np.abs(a).max(axis=1), np.abs(b))
    keep = np.isfinite(size) & (size > 0) & np.all(np.isfinite(a), axis=1)
    a, b = a[keep] / size[keep, None], b[keep] / size[keep]
    if a.shape[0] < a.shape[1]:
        return None
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = np.linalg.norm(a @ solution - b)
    scale = np.linalg.norm(b) + np.linalg.norm(a) * (np.linalg.norm(solution) + 1)
    if not residual <= 1e-9 * scale:
        return None
    return [float(v) for v in solution]
