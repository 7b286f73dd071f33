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

import itertools
import multiprocessing
import os
import random
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import mpmath
import numpy as np
import sympy

from ..catalog.grammar import format_expression
from ..catalog.operator import Operator
from .certificate import Counterexample, Proof, ProofCase, Verdict
from .lattice import Rule, RuleKind
from .rewrite import zero_residual

CHECKER_VERSION = "1"

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
_DPS = 30

_cache: weakref.WeakKeyDictionary[Operator, Verdict] = weakref.WeakKeyDictionary()


def classify(op: Operator) -> Verdict:
    """The scaling rule of ``op`` with its certificate (cached per operator object)."""
    verdict = _cache.get(op)
    if verdict is None:
        with mpmath.workdps(_DPS):
            verdict = _Checker(op).verdict()
        _cache[op] = verdict
    return verdict


def classify_all(
    operators: Sequence[Operator], jobs: int | None = None, store=None
) -> list[Verdict]:
    """Classify many operators, in parallel worker processes when that pays off.

    Workers are forked, so they see the very operator objects (catalog or user-declared);
    verdicts come back as plain data and fill this process's cache. ``store`` (a
    ``store.VerdictStore``) supplies verdicts proved by an earlier process and keeps new ones.
    """
    if store is not None:
        for op in operators:
            if op not in _cache and (known := store.get(op)) is not None:
                _cache[op] = known
    pending = [op for op in operators if op not in _cache]
    jobs = min(jobs or os.cpu_count() or 1, len(pending))
    if jobs > 1 and len(pending) >= 8 and "fork" in multiprocessing.get_all_start_methods():
        global _forked_operators
        _forked_operators = pending
        try:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                verdicts = pool.map(_classify_forked, range(len(pending)), chunksize=1)
        finally:
            _forked_operators = []
        for op, verdict in zip(pending, verdicts):
            _cache[op] = verdict
    verdicts = [classify(op) for op in operators]
    if store is not None and pending:
        for op in pending:
            store.put(op, _cache[op])
        store.save()
    return verdicts


_forked_operators: Sequence[Operator] = []


def _classify_forked(index: int) -> Verdict:
    return classify(_forked_operators[index])


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

    def rule(self, n_inputs: int) -> Rule:
        """The rule this candidate is, for an operator with ``n_inputs`` input tensors."""
        return Rule.classify(self.degree, self.input_degrees, self.param_exponents, n_inputs)


def exact_sides(
    op: Operator, point: dict[str, Fraction], s: Fraction, degree: int
) -> tuple[sympy.Expr, sympy.Expr]:
    """Exact f(s x; p) and s^degree f(x; p) at a rational point (inputs scaled, not params)."""
    values = {op.symbols[n]: _rational(v) for n, v in point.items()}
    moved = {
        sym: v * _rational(s) if str(sym) in op.element_names else v for sym, v in values.items()
    }
    return op.expr.xreplace(moved), _rational(s) ** degree * op.expr.xreplace(values)


def scaled_identity(op: Operator, candidate: Candidate) -> tuple[sympy.Expr, sympy.Expr]:
    """``(f(s x; s^k p), s^d f(x; p))`` for a candidate rule, with positive scale symbols."""
    swap: dict[sympy.Symbol, sympy.Expr] = {}
    factor = sympy.S.One
    for position, tensor in enumerate(op.inputs):
        s = scale_symbol(tensor.name if candidate.input_degrees else None)
        for element in tensor.elements:
            swap[op.symbols[element]] = s * op.symbols[element]
        if candidate.input_degrees:
            factor *= s ** _rational(candidate.input_degrees[position])
    s = scale_symbol()
    for param, k in candidate.param_exponents.items():
        swap[op.symbols[param]] = s ** _rational(k) * op.symbols[param]
    if not candidate.input_degrees:
        factor = s ** _rational(candidate.degree)
    return op.expr.xreplace(swap), factor * op.expr


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
        if condition.xreplace(substitution) == sympy.false:
            return condition
    return None


def _rational(q: Fraction) -> sympy.Rational:
    return sympy.Rational(q.numerator, q.denominator)


class _Checker:
    def __init__(self, op: Operator) -> None:
        self.op = op
        self.rng = random.Random(f"ptq-verify:{op.name}:{op.expr}")
        self.tensor_elements = [[op.symbols[e] for e in t.elements] for t in op.inputs]
        self.param_symbols = [op.symbols[p] for p in op.params]

    # -- numerics ----------------------------------------------------------------------

    @cached_property
    def numeric(self):
        args = [op_symbol for group in self.tensor_elements for op_symbol in group]
        # nint rounds half to even, like RoundHalfEven (the grammar's round)
        functions = {"RoundHalfEven": mpmath.nint}
        return sympy.lambdify(
            [*args, *self.param_symbols], self.op.expr, modules=[functions, "mpmath"]
        )

    def value(self, point: dict[str, mpmath.mpf]) -> mpmath.mpf | None:
        try:
            result = self.numeric(*[point[e] for e in (*self.op.element_names, *self.op.params)])
            result = mpmath.mpmathify(result)
        except (ZeroDivisionError, ValueError, TypeError, OverflowError, NameError):
            return None  # a function mpmath lacks: nothing numeric is claimed
        if not isinstance(result, mpmath.mpf) or not mpmath.isfinite(result):
            return None
        return result

    @cached_property
    def domain_tests(self):
        """Each domain condition as a fast numeric test (exact checks come later)."""
        names = [self.op.symbols[n] for n in (*self.op.element_names, *self.op.params)]
        return [sympy.lambdify(names, c, modules="mpmath") for c in self.op.domain]

    def in_domain(self, point: dict[str, Fraction]) -> bool:
        values = [_mpq(point[n]) for n in (*self.op.element_names, *self.op.params)]
        try:
            return all(bool(test(*values)) for test in self.domain_tests)
        except (TypeError, ValueError, ZeroDivisionError, NameError):
            return False

    def in_domain_exactly(self, point: dict[str, Fraction]) -> bool:
        subs = {self.op.symbols[n]: _rational(v) for n, v in point.items()}
        return all(c.xreplace(subs) == sympy.true for c in self.op.domain)

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
                        for p, v in self.op.params.items()
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

    def scaled(self, point: dict, scales: dict[str, mpmath.mpf], exps: dict) -> dict:
        """The point with each tensor scaled and each parameter rescaled by s^k."""
        out = dict(point)
        for tensor in self.op.inputs:
            for e in tensor.elements:
                out[e] = point[e] * scales[tensor.name]
        common = scales.get(None, mpmath.mpf(1))
        for p, k in exps.items():
            out[p] = point[p] * mpmath.power(common, _mpq(k))
        return out

    def euler_rows(self, points: list[dict]) -> list[tuple[mpmath.mpf, list, list]]:
        """Per usable point: f, d f/dt along each tensor's scaling, and along each parameter's."""
        return [row for point in points if (row := self._euler_row(point)) is not None]

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

    def _log_derivative(self, point: dict, names) -> mpmath.mpf | None:
        def along(t):
            moved = dict(point)
            for n in names:
                moved[n] = point[n] * mpmath.exp(t)
            value = self.value(moved)
            if value is None:
                raise ValueError("out of domain")
            return value

        try:
            return mpmath.diff(along, 0)
        except (ValueError, ZeroDivisionError):
            return None

    # -- candidates ----------------------------------------------------------------------

    def candidates(self) -> Iterator[Candidate]:
        """Candidate rules, best first, each screened numerically only when it is reached."""
        points = self.points(params=None)
        for candidate in self._ranked_candidates(points):
            if self._holds_numerically(candidate, points):
                yield candidate

    def _ranked_candidates(self, points: list[dict]) -> list[Candidate]:
        rows = self.euler_rows(points)
        if len(rows) < 2:
            return []
        found: list[Candidate] = []
        if len(self.op.inputs) > 1:
            separable = self._separable_candidate(rows)
            if separable is not None:
                found.append(separable)
        # Parameters f does not vary with almost anywhere (thresholds: Shrink's lambd) are
        # invisible to Euler's identity; the natural guess is that they scale like the output.
        invisible = [
            p
            for position, p in enumerate(self.op.params)
            if all(abs(g_p[position]) <= abs(f) * mpmath.mpf(10) ** -20 for f, _, g_p in rows)
        ]
        visible = [p for p in self.op.params if p not in invisible]
        for size in range(len(visible) + 1):
            for support in itertools.combinations(visible, size):
                for candidate in self._joint_candidates(rows, support):
                    variants = [candidate]
                    if invisible and candidate.degree != 0:
                        exponents = dict(candidate.param_exponents)
                        exponents.update({p: candidate.degree for p in invisible})
                        variants.append(Candidate(candidate.degree, None, exponents))
                    found += [v for v in variants if v not in found]
        # fewest rescaled parameters first, degree 1 first on a tie (stable: separable first)
        found.sort(key=lambda c: (len(c.param_exponents), c.degree != 1))
        return found

    def _separable_candidate(self, rows) -> Candidate | None:
        degrees = []
        for position in range(len(self.op.inputs)):
            ratios = [g[position] / f for f, g, _ in rows if abs(f) > mpmath.mpf(10) ** -20]
            if not ratios:
                return None
            degree = _small_rational(ratios[0])
            if degree is None or any(_small_rational(r) != degree for r in ratios):
                return None
            degrees.append(degree)
        return Candidate(sum(degrees, Fraction(0)), tuple(degrees), {})

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
                rhs.append(_mpq(fixed_degree))
            solution = _float_least_squares(system, rhs)
            if solution is None:
                continue
            rounded = [_small_rational(v) for v in solution]
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
        for point in points:
            mp_point = _mp(point)
            base = self.value(mp_point)
            for s_value in _SCALES[:2]:  # 2 and 3: logarithms with an irrational ratio
                s = mpmath.mpf(s_value.numerator) / s_value.denominator
                scales = {None: s}
                if candidate.input_degrees:
                    # far-apart scales per tensor, so that a shared-scale rule shows its failure
                    factor = mpmath.mpf(1)
                    for position, tensor in enumerate(self.op.inputs):
                        own = s * mpmath.mpf(5) ** position
                        scales[tensor.name] = own
                        factor *= mpmath.power(own, _mpq(candidate.input_degrees[position]))
                else:
                    factor = mpmath.power(s, _mpq(candidate.degree))
                    scales.update({tensor.name: s for tensor in self.op.inputs})
                moved = self.value(self.scaled(mp_point, scales, candidate.param_exponents))
                if moved is None or base is None:
                    return False
                if abs(moved - factor * base) > mpmath.mpf(10) ** (4 - _DPS) * (
                    1 + abs(moved) + abs(factor * base)
                ):
                    return False
        return True

    # -- proofs --------------------------------------------------------------------------

    def prove(self, candidate: Candidate) -> Proof | None:
        """A proof of the candidate identity: direct, else by sign cases; cheap steps first."""
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
            case_residual = residual.xreplace(substitution)
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
        for _ in range(3):
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
        points = [p for p in self.points(params, count=12) if self.in_domain_exactly(p)]
        for s_value in _SCALES:
            # the clearest counterexample first: largest relative gap, numerically
            for first in sorted(points, key=lambda p: -self._relative_gap(p, s_value)):
                lhs, rhs = exact_sides(self.op, first, s_value, 1)
                difference = certified_nonzero(lhs - rhs)
                if difference is None:
                    continue
                no_degree = self._no_degree(first, points, s_value)
                if no_degree is None:
                    continue
                no_rescale = None
                if self.op.params:
                    no_rescale = self._no_rescale(points)
                    if no_rescale is None:
                        return None
                return Counterexample(
                    point={n: str(v) for n, v in first.items()},
                    scale=str(s_value),
                    lhs=format_expression(lhs),
                    rhs=format_expression(rhs),
                    difference=difference,
                    no_degree=no_degree,
                    no_rescale=no_rescale,
                )
        return None

    def _relative_gap(self, point: dict, s: Fraction) -> mpmath.mpf:
        """|f(s x) - s f(x)| / (|f(s x)| + |s f(x)| + 1), numerically (0 if not evaluable)."""
        mp_point, scale = _mp(point), _mpq(s)
        moved = {n: v * scale if n in self.op.element_names else v for n, v in mp_point.items()}
        lhs, base = self.value(moved), self.value(mp_point)
        if lhs is None or base is None:
            return mpmath.mpf(0)
        return abs(lhs - scale * base) / (abs(lhs) + abs(scale * base) + 1)

    def _no_degree(self, first: dict, points: list[dict], s: Fraction) -> dict | None:
        """Exact evidence that f(s x) = c f(x) fails for every constant c at this s."""
        moved_1, base_1 = exact_sides(self.op, first, s, 0)
        if certified_nonzero(base_1) is None:
            if certified_nonzero(moved_1) is not None:
                return {
                    "reason": "f(x) = 0 but f(s*x) != 0, so f(s*x) = s^d f(x) fails for every d",
                    "point": {n: str(v) for n, v in first.items()},
                    "f_x": format_expression(base_1),
                    "f_sx": format_expression(moved_1),
                }
            return None
        for second in points:
            if second is first:
                continue
            moved_2, base_2 = exact_sides(self.op, second, s, 0)
            if certified_nonzero(base_2) is None:
                continue
            cross = moved_1 * base_2 - moved_2 * base_1
            difference = certified_nonzero(cross)
            if difference is not None:
                return {
                    "reason": "f(s*x)/f(x) differs between two points, so no degree d works",
                    "point": {n: str(v) for n, v in second.items()},
                    "f_x": format_expression(base_2),
                    "f_sx": format_expression(moved_2),
                    "cross_difference": difference,
                }
        return None

    def _no_rescale(self, points: list[dict]) -> dict | None:
        """Euler's identity with every parameter free has no solution (d, k) at these points."""
        usable = [(p, row) for p in points if (row := self._euler_row(p)) is not None]
        used = [p for p, _ in usable]
        residual, size = _euler_inconsistency(self.op, [row for _, row in usable])
        if residual is None or residual < mpmath.mpf(10) ** -8 * size:
            return None
        return {
            "reason": "Euler's identity sum x df/dx + sum k_p p df/dp = d f (necessary for any "
            "rule) has no solution (d, k) at these points",
            "points": [{n: str(v) for n, v in p.items()} for p in used],
            "least_squares_residual": mpmath.nstr(residual, 10),
            "relative_to": mpmath.nstr(size, 10),
        }

    # -- verdict -------------------------------------------------------------------------

    def verdict(self) -> Verdict:
        op = self.op
        common = {
            "operator": op.name,
            "domain": tuple(format_expression(c) for c in op.domain),
            "output_nonnegative": (nonnegative := bool(op.expr.is_nonnegative)),
            "preserves_nonnegative": nonnegative or _preserves_nonnegative(op),
            "onnx_type": op.onnx_type,
            "expression": format_expression(op.expr),
        }
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
            return Verdict(rule=Rule(RuleKind.UNDECIDED), certificate=None, reason=reason, **common)
        return Verdict(
            rule=Rule(RuleKind.UNDECIDED),
            certificate=None,
            reason="no rule was found and no certified counterexample either",
            **common,
        )


def _preserves_nonnegative(op: Operator) -> bool:
    """Whether sympy proves f >= 0 once every input element is known to be >= 0."""
    swap = {op.symbols[e]: sympy.Symbol(e, nonnegative=True) for e in op.element_names}
    return bool(op.expr.xreplace(swap).is_nonnegative)


def euler_residual(op: Operator, points: list[dict]):
    """Least-squares residual of Euler's identity with d and every k free, and its scale.

    ``(None, None)`` when there are too few usable points to say anything.
    """
    return _euler_inconsistency(op, _Checker(op).euler_rows(points))


def _euler_inconsistency(op: Operator, rows: list) -> tuple:
    if len(rows) <= len(op.params) + 1:
        return None, None
    matrix = [[f, *[-g for g in g_p]] for f, _, g_p in rows]
    target = [sum(g_t) for _, g_t, _ in rows]
    solution = _least_squares(matrix, target, require_consistent=False)
    if solution is None:
        return None, None
    return _residual_norm(matrix, target, solution), mpmath.norm(mpmath.matrix(target)) + 1


def _mp(point: dict) -> dict:
    return {n: mpmath.mpf(v.numerator) / v.denominator for n, v in point.items()}


def _mpq(q: Fraction) -> mpmath.mpf:
    return mpmath.mpf(q.numerator) / q.denominator


def _small_rational(value) -> Fraction | None:
    """The rational with a small denominator that ``value`` is numerically, if any."""
    as_float = float(value)
    if not abs(as_float) < 1e6:
        return None
    q = Fraction(as_float).limit_denominator(24)
    if abs(float(q) - as_float) > 1e-9 * max(1.0, abs(as_float)):
        return None
    return q


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


def certified_nonzero(value: sympy.Expr) -> str | None:
    """``value`` to 20 digits when it is certainly non-zero, else None."""
    if value.is_Rational:
        return None if value == 0 else format(sympy.Float(value, 20))
    try:
        approx = value.evalf(30, strict=True)
    except (sympy.core.evalf.PrecisionExhausted, TypeError, ValueError, ZeroDivisionError):
        return None
    if not approx.is_Number or approx.is_zero or approx in (sympy.nan, sympy.zoo):
        return None
    if not approx.is_finite:
        return None
    return format(sympy.Float(approx, 20))
