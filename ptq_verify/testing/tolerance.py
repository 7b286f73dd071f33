"""Exact values of a symbolic form and a bound on the error of evaluating it in float64.

A kernel is compared with its symbolic form at float64 points. The two cannot agree exactly:
each float64 operation rounds. Rather than guess a tolerance, this module walks the expression
tree once, at 60 significant digits, and carries for every subexpression a pair

    (value, error) with |float64 evaluation - value| <= error,

using the standard model of floating point arithmetic (docs/testing.md, "The tolerance rule"):

- an input (element or parameter) carries ``LEAF_ROUNDINGS * (u * |v| + UNDERFLOW)``: the
  point may be the float64 product ``s * x`` or ``s**k * p``, each rounded, and a kernel may
  round its inputs' combinations differently from the tree (a stable Softmax computes
  exp(x0 - max)): it is accepted when it is exact at inputs perturbed by that much;
- a sum of n terms adds ``(n - 1) * u * sum |terms|`` to the terms' errors (true for any order
  of summation); a product of n factors is unrepresentable when ``prod max(1, |v_i|)``, a bound
  on its partial products in any order, overflows, and so is a sum when ``sum |terms|`` does;
- a product propagates its factors' errors exactly, ``prod(|v_i| + e_i) - prod |v_i|``, plus
  one rounding per multiplication (an underflow in a partial product is amplified by at most
  ``prod max(1, |v_i|)`` of the factors multiplied after it);
- a library function (exp, log, tanh, erf, pow, ...) propagates ``|f'| * e`` (the largest of
  |f'| at a - e, a, a + e; a point where a - e or a + e leaves the function's domain is
  unrepresentable) plus ``FUNCTION_ULPS`` units in the last place;
- max, min and abs are 1-Lipschitz: the error of the worst argument;
- a step (sign, Heaviside, floor, a Piecewise condition) may jump when a rounding error can
  move its argument across the discontinuity: then the bound allows the jump.

Every rounding in the subnormal range adds at most ``UNDERFLOW`` in absolute terms. A point where
an intermediate comes within ``OVERFLOW_HEADROOM`` of float64's largest value, or where an error
bound is infinite (a pole inside the rounding interval), raises :class:`Unrepresentable`:
float64 can say nothing there, and the property tests skip it. ``u = 2**-53`` is the unit
roundoff of float64.

The 60-digit reference is exact for the purpose: its own error is 1e-44 times the magnitudes
that the float64 bound scales by 2.2e-16.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any

import mpmath
import sympy

from ptq_verify.catalog.grammar import RoundHalfEven

UNIT_ROUNDOFF = 2.0**-53
"""u: the relative error of one correctly rounded float64 operation."""
UNDERFLOW = 2.0**-1074
"""The absolute error one operation can make in the subnormal range (the smallest subnormal)."""
LEAF_ROUNDINGS = 2
"""Roundings an input may carry: a scaled input ``s * x`` or parameter ``s**k * p``."""
FUNCTION_ULPS = 4
"""numpy's transcendental functions are within 4 ulp (its SIMD builds document that bound)."""
KERNEL_MARGIN = 2
"""A kernel may order its operations differently from the expression tree (x/y as one division
where the tree has a product with y**-1, a fused or reordered form): it is held to twice the
bound of the tree's own float64 evaluation."""
DIGITS = 60
"""Significant digits of the reference evaluation."""
OVERFLOW_HEADROOM = 2**10
"""Values above float64's maximum / 2**10 count as overflowing: a kernel may sum the same terms
in another order than the tree (ONNX ReduceMean sums, then divides; sympy writes x0/3 + x1/3),
and any order of up to 1024 terms stays finite below that."""
FLOAT_LIMIT = mpmath.mpf(float.fromhex("0x1.fffffffffffffp+1023")) / OVERFLOW_HEADROOM

_ROUNDINGS = "<input roundings>"  # the evaluation's own entry in the point (not a symbol name)
_u = mpmath.mpf(UNIT_ROUNDOFF)
_eta = mpmath.mpf(UNDERFLOW)
_ulp = 2 * _u  # one ulp is at most 2u relative to the value


class Unrepresentable(ArithmeticError):
    """float64 cannot evaluate the expression at this point (overflow, or a pole within
    rounding error of an argument): there is nothing to compare."""


class Undefined(ArithmeticError):
    """The expression has no real value at this point (outside its domain)."""


@dataclass(frozen=True)
class Bounded:
    """An exact value and a bound on the error of its float64 evaluation."""

    value: Any  # mpmath.mpf
    error: Any  # mpmath.mpf


Env = Mapping[str, Any]
Evaluator = Callable[[dict], Bounded]


def to_mpf(value: Any) -> Any:
    """A float, int, Fraction or exact rational text as an mpmath number (exact for floats)."""
    if isinstance(value, str):
        value = Fraction(value)
    if isinstance(value, Fraction):
        return mpmath.mpf(value.numerator) / value.denominator
    return mpmath.mpf(float(value)) if not isinstance(value, int) else mpmath.mpf(value)


class BoundedForm:
    """A sympy expression compiled for repeated (value, float64 error bound) evaluation."""

    def __init__(self, expr: sympy.Basic) -> None:
        self.expr = expr
        with mpmath.workdps(DIGITS):
            self._evaluate = _compile(expr)

    def __call__(self, env: Env, input_roundings: int = LEAF_ROUNDINGS) -> Bounded:
        """Evaluate at a point: each free symbol's name -> float, int, Fraction or mpf.

        ``input_roundings``: how many roundings the inputs carry; 0 when the kernel gets the
        very float64 values the reference does.
        """
        with mpmath.workdps(DIGITS):
            point = {name: to_mpf(v) for name, v in env.items()}
            point[_ROUNDINGS] = input_roundings
            return self._evaluate(point)


def holds(condition: sympy.Basic, env: Env) -> bool:
    """Whether a relation (e.g. a domain condition ``x > 0``) holds exactly at a point."""
    with mpmath.workdps(DIGITS):
        point = {name: to_mpf(v) for name, v in env.items()}
        point[_ROUNDINGS] = 0
        try:
            return _compiled_condition(condition)(point)[0]
        except (Undefined, Unrepresentable):
            return False


# -- compilation ------------------------------------------------------------------------------


def _checked(value: Any, error: Any) -> Bounded:
    if not isinstance(value, mpmath.mpf):
        if isinstance(value, mpmath.mpc):
            if value.imag != 0:
                raise Undefined("the value is not real")
            value = value.real
        else:
            value = mpmath.mpf(value)
    if not mpmath.isfinite(value):
        raise Undefined("the value is not finite")
    if abs(value) > FLOAT_LIMIT:
        raise Unrepresentable(f"an intermediate value {mpmath.nstr(value, 5)} overflows float64")
    if not mpmath.isfinite(error):
        raise Unrepresentable("a rounding error can reach a pole here")
    return Bounded(value, error)


def _compile(node: sympy.Basic) -> Evaluator:
    if node.is_Symbol:
        name = str(node)

        def leaf(env: dict) -> Bounded:
            value = env[name]
            return _checked(value, env[_ROUNDINGS] * (_u * abs(value) + _eta))

        return leaf
    if node.is_Number or node.is_NumberSymbol:
        value = to_mpf(Fraction(int(node.p), int(node.q))) if node.is_Rational else node.evalf(
            DIGITS
        )
        value = mpmath.mpf(value)
        exact = node.is_Integer and abs(node) < 2**53
        constant = Bounded(value, mpmath.mpf(0) if exact else _u * abs(value))
        return lambda env: constant
    if isinstance(node, sympy.Add):
        return _compile_add([_compile(a) for a in node.args])
    if isinstance(node, sympy.Mul):
        return _compile_mul([_compile(a) for a in node.args])
    if isinstance(node, sympy.Pow) and node.exp.is_Number:
        return _compile_power(_compile(node.base), node.exp)
    if isinstance(node, (sympy.Max, sympy.Min)):
        return _compile_extremum([_compile(a) for a in node.args], isinstance(node, sympy.Max))
    if isinstance(node, sympy.Abs):
        inner = _compile(node.args[0])
        return lambda env: _abs(inner(env))
    if isinstance(node, sympy.Piecewise):
        return _compile_piecewise(node)
    if isinstance(node, (sympy.sign, sympy.Heaviside, sympy.floor, sympy.ceiling, RoundHalfEven)):
        return _compile_step(node)
    if isinstance(node, sympy.Pow) or isinstance(node, sympy.Function):
        return _compile_function(node)
    raise NotImplementedError(
        f"ptq_verify.testing cannot evaluate {type(node).__name__} nodes ({node})"
    )


def _abs(a: Bounded) -> Bounded:
    return Bounded(abs(a.value), a.error)


def _compile_add(terms: list[Evaluator]) -> Evaluator:
    rounding = (len(terms) - 1) * _u

    def add(env: dict) -> Bounded:
        parts = [t(env) for t in terms]
        value = mpmath.fsum(p.value for p in parts)
        magnitude = mpmath.fsum(abs(p.value) for p in parts)
        if magnitude > FLOAT_LIMIT:
            raise Unrepresentable("a partial sum can overflow float64")
        return _checked(value, mpmath.fsum(p.error for p in parts) + rounding * magnitude)

    return add


def _compile_mul(factors: list[Evaluator]) -> Evaluator:
    roundings = len(factors) - 1

    def mul(env: dict) -> Bounded:
        parts = [f(env) for f in factors]
        value = mpmath.fprod(p.value for p in parts)
        widened = mpmath.fprod(abs(p.value) + p.error for p in parts)
        propagated = widened - abs(value)
        # A partial product (in the kernel's order, whatever it is) is at most this large: it may
        # overflow even when the whole product does not (1e8 * 4e300 * 0), and an underflow in
        # it is multiplied by the factors still to come.
        largest_partial = mpmath.fprod(max(abs(p.value), 1) for p in parts)
        if largest_partial > FLOAT_LIMIT:
            raise Unrepresentable("a partial product can overflow float64")
        amplified = _eta * largest_partial
        return _checked(value, propagated + roundings * (_u * abs(value) + amplified))

    return mul


def _compile_power(base: Evaluator, exponent: sympy.Number) -> Evaluator:
    p = to_mpf(Fraction(int(exponent.p), int(exponent.q))) if exponent.is_Rational else (
        mpmath.mpf(exponent.evalf(DIGITS))
    )
    integral = exponent.is_Integer

    def power(env: dict) -> Bounded:
        b = base(env)
        if b.value < 0 and not integral:
            raise Undefined("a negative number to a fractional power")
        if b.value == 0 and p < 0:
            raise Undefined("division by zero")
        value = b.value**p if integral else abs(b.value) ** p
        magnitude = abs(b.value)
        if b.error >= magnitude and p < 0:
            raise Unrepresentable("a rounding error can reach a pole here")
        low = max(magnitude - b.error, mpmath.mpf(0))
        propagated = max(abs((magnitude + b.error) ** p - magnitude**p), abs(low**p - magnitude**p))
        return _checked(value, propagated + FUNCTION_ULPS * _ulp * abs(value) + _eta)

    return power


def _compile_extremum(args: list[Evaluator], is_max: bool) -> Evaluator:
    pick = max if is_max else min

    def extremum(env: dict) -> Bounded:
        parts = [a(env) for a in args]
        return Bounded(pick(p.value for p in parts), max(p.error for p in parts))

    return extremum


@cache
def _mpmath_function(func: type, nargs: int) -> tuple[Callable, tuple[Callable, ...]]:
    """The mpmath value and partial derivatives of a sympy function class, lambdified once."""
    dummies = sympy.symbols(f"a0:{nargs}", real=True)
    applied = sympy.Pow(*dummies) if func is sympy.Pow else func(*dummies)
    value = sympy.lambdify(dummies, applied, "mpmath")
    partials = tuple(sympy.lambdify(dummies, applied.diff(d), "mpmath") for d in dummies)
    return value, partials


def _compile_function(node: sympy.Basic) -> Evaluator:
    args = [_compile(a) for a in node.args]
    value_of, partials = _mpmath_function(node.func, len(node.args))

    def function(env: dict) -> Bounded:
        parts = [a(env) for a in args]
        values = [p.value for p in parts]
        try:
            value = value_of(*values)
        except (ValueError, ZeroDivisionError) as err:
            raise Undefined(str(err)) from None
        propagated = mpmath.mpf(0)
        for i, (part, partial) in enumerate(zip(parts, partials)):
            if part.error == 0:
                continue
            slopes = []
            for shift in (-part.error, 0, part.error):
                shifted = list(values)
                shifted[i] = values[i] + shift
                try:
                    if shift:
                        _checked(value_of(*shifted), mpmath.mpf(0))
                    slopes.append(abs(_real(partial(*shifted))))
                except (ValueError, ZeroDivisionError, ArithmeticError):
                    raise Unrepresentable("a rounding error can leave the domain here") from None
            propagated += max(slopes) * part.error
        value = _real(value)
        return _checked(value, propagated + FUNCTION_ULPS * _ulp * abs(value) + _eta)

    return function


def _real(value: Any) -> Any:
    if isinstance(value, mpmath.mpc):
        if value.imag != 0:
            raise Undefined("the value is not real")
        return value.real
    if not isinstance(value, mpmath.mpf):
        return mpmath.mpf(value)
    return value


def _compile_step(node: sympy.Basic) -> Evaluator:
    """sign, Heaviside, floor, ceiling, round: exact away from their jumps, any value across one."""
    arg = _compile(node.args[0])
    if isinstance(node, sympy.Heaviside):
        at_zero = to_mpf(Fraction(str(node.args[1]))) if len(node.args) > 1 else mpmath.mpf(0.5)

        def step_value(a: Any) -> Any:
            return mpmath.mpf(0) if a < 0 else mpmath.mpf(1) if a > 0 else at_zero

        def distance(a: Any) -> Any:
            return abs(a)

        jump = mpmath.mpf(1)
    elif isinstance(node, sympy.sign):

        def step_value(a: Any) -> Any:
            return mpmath.mpf(mpmath.sign(a))

        def distance(a: Any) -> Any:
            return abs(a)

        jump = mpmath.mpf(2)
    elif isinstance(node, RoundHalfEven):

        def step_value(a: Any) -> Any:
            return mpmath.nint(a)  # mpmath rounds half to even, as numpy and ONNX do

        def distance(a: Any) -> Any:
            return abs(a - mpmath.floor(a) - mpmath.mpf(0.5))

        jump = mpmath.mpf(1)
    else:
        rounding = mpmath.floor if isinstance(node, sympy.floor) else mpmath.ceil

        def step_value(a: Any) -> Any:
            return rounding(a)

        def distance(a: Any) -> Any:
            return abs(a - mpmath.nint(a))

        jump = mpmath.mpf(1)

    def step(env: dict) -> Bounded:
        a = arg(env)
        near = a.error > 0 and distance(a.value) <= a.error
        return Bounded(step_value(a.value), jump if near else mpmath.mpf(0))

    return step


@cache
def _compiled_condition(condition: sympy.Basic) -> Callable[[dict], tuple[bool, bool]]:
    with mpmath.workdps(DIGITS):
        return _compile_condition(condition)


def _compile_condition(node: sympy.Basic) -> Callable[[dict], tuple[bool, bool]]:
    """A condition -> (truth, near): near when a rounding error could flip a comparison."""
    if node is sympy.true or node is sympy.false:
        truth = bool(node)
        return lambda env: (truth, False)
    if isinstance(node, sympy.core.relational.Relational):
        difference = _compile(node.lhs - node.rhs)
        compare = {
            "<": lambda d: d < 0,
            "<=": lambda d: d <= 0,
            ">": lambda d: d > 0,
            ">=": lambda d: d >= 0,
            "==": lambda d: d == 0,
            "!=": lambda d: d != 0,
        }[node.rel_op]

        def relation(env: dict) -> tuple[bool, bool]:
            d = difference(env)
            return compare(d.value), d.error > 0 and abs(d.value) <= d.error

        return relation
    if isinstance(node, (sympy.And, sympy.Or)):
        parts = [_compile_condition(a) for a in node.args]
        combine = all if isinstance(node, sympy.And) else any

        def logical(env: dict) -> tuple[bool, bool]:
            results = [p(env) for p in parts]
            return combine(r[0] for r in results), any(r[1] for r in results)

        return logical
    if isinstance(node, sympy.Not):
        inner = _compile_condition(node.args[0])

        def negation(env: dict) -> tuple[bool, bool]:
            truth, near = inner(env)
            return not truth, near

        return negation
    raise NotImplementedError(f"ptq_verify.testing cannot evaluate the condition {node}")


def _compile_piecewise(node: sympy.Piecewise) -> Evaluator:
    branches = [(_compile(expr), _compile_condition(cond)) for expr, cond in node.args]

    def piecewise(env: dict) -> Bounded:
        near, index = False, None
        for position, (_, condition) in enumerate(branches):
            truth, close = condition(env)
            near = near or close
            if truth:
                index = position
                break
        if index is None:
            raise Undefined("no Piecewise branch applies")
        chosen = branches[index][0](env)
        if not near:
            return chosen
        # A rounding error could select another branch: allow its value too.
        error = chosen.error
        for other, _ in branches[:index] + branches[index + 1 :]:
            try:
                alternative = other(env)
            except (Undefined, Unrepresentable):
                continue
            error = max(error, abs(alternative.value - chosen.value) + alternative.error)
        return Bounded(chosen.value, error)

    return piecewise

