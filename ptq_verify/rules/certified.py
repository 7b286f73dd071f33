"""Certified numerics: ball arithmetic (Arb, through python-flint) over sympy expressions.

A refutation claims that two exact numbers differ. sympy's ``evalf`` cannot back that claim:
``sign(z).evalf(strict=True)`` answers 1 for a z that is exactly 0 when sympy cannot see it
(``asin(x/sqrt(1+x**2)) - atan(x)``), and fixed 30-digit mpmath loses every digit of
``cosh(x)**2 - sinh(x)**2`` at x near 100. Arb computes a ball (midpoint and radius) that is
guaranteed to contain the true value, so a ball that excludes 0 *proves* the value non-zero,
and a ball that keeps containing 0 as precision grows proves nothing: the caller must then say
``undecided``. Branches (max, heaviside, where, comparisons) are taken only when the ball
decides them; otherwise evaluation stops with :class:`Uncertain`.

The same compiled evaluator serves the checker's numeric search, where it adapts precision
until the value is known to the working precision (no silent cancellation), and it reads
symbols by identity, never by generated code, so no parameter name can collide with anything.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager

import mpmath
import sympy
from flint import arb, ctx, fmpq, fmpz

from ..catalog import grammar
from ..catalog.grammar import RoundHalfEven

MAX_PRECISION_BITS = 4096
"""Highest precision tried before a value is declared unknown."""


class Uncertain(ArithmeticError):
    """The ball does not decide a branch, a sign or a domain at this precision."""


class Unsupported(ValueError):
    """The expression holds a function the certified evaluator does not know."""


Env = Mapping[sympy.Symbol, arb]
Enclosure = Callable[[Env], arb]


@contextmanager
def precision(bits: int):
    saved = ctx.prec
    ctx.prec = bits
    try:
        yield
    finally:
        ctx.prec = saved


def sign_of(ball: arb) -> int:
    """-1, 0 or 1 when the ball decides it; :class:`Uncertain` otherwise."""
    if ball > 0:
        return 1
    if ball < 0:
        return -1
    if ball.is_exact() and ball.is_zero():
        return 0
    raise Uncertain


def _finite(ball: arb) -> arb:
    if not ball.is_finite():
        raise Uncertain
    return ball


def _rational(value: sympy.Rational) -> Callable[[Env], arb]:
    q = fmpq(int(value.p), int(value.q))
    if value.q == 1:
        return lambda env: arb(fmpz(int(value.p)))
    return lambda env: arb(q)


def _log(u: arb) -> arb:
    if not u > 0:
        raise Uncertain
    return u.log()


def _sqrt(u: arb) -> arb:
    if u.is_exact() and u.is_zero():
        return u
    if not u >= 0:
        raise Uncertain
    return u.sqrt()


def _power(base: Enclosure, exponent: sympy.Expr) -> Enclosure:
    if exponent.is_Integer:
        n = int(exponent)
        if abs(n) > 10**6:
            raise Unsupported("an integer power above 10^6")
        return lambda env: _finite(base(env) ** n)
    exponent_of = compile_enclosure(exponent)

    def real_power(env: Env) -> arb:
        b = base(env)
        if b > 0:
            return _finite(b ** exponent_of(env))
        if b.is_exact() and b.is_zero() and exponent_of(env) > 0:
            return b
        raise Uncertain  # a negative base: not a real power in sympy's reading

    return real_power


def _heaviside(u: arb, at_zero: Enclosure, env: Env) -> arb:
    sign = sign_of(u)
    return arb(1) if sign > 0 else arb(0) if sign < 0 else at_zero(env)


def _round_half_even(u: arb) -> arb:
    low = (u + fmpq(1, 2)).floor()  # round half up: differs from half-even only at ties
    if not (low.is_exact() and _finite(low).is_integer()):
        raise Uncertain
    tie = u - low + fmpq(1, 2)
    if tie.is_exact() and tie.is_zero():  # u = k + 1/2 exactly: go to the even one
        n = int(low.unique_fmpz())
        return arb(n if n % 2 == 0 else n - 1)
    if tie.contains(0):
        raise Uncertain
    return low


_UNARY: dict[type, Callable[[arb], arb]] = {
    sympy.exp: lambda u: u.exp(),
    sympy.log: _log,
    sympy.sin: lambda u: u.sin(),
    sympy.cos: lambda u: u.cos(),
    sympy.tan: lambda u: u.tan(),
    sympy.asin: lambda u: u.asin(),
    sympy.acos: lambda u: u.acos(),
    sympy.atan: lambda u: u.atan(),
    sympy.sinh: lambda u: u.sinh(),
    sympy.cosh: lambda u: u.cosh(),
    sympy.tanh: lambda u: u.tanh(),
    sympy.asinh: lambda u: u.asinh(),
    sympy.acosh: lambda u: u.acosh(),
    sympy.atanh: lambda u: u.atanh(),
    sympy.erf: lambda u: u.erf(),
    sympy.Abs: abs,
    sympy.sign: lambda u: arb(sign_of(u)),
    sympy.floor: lambda u: u.floor(),
    sympy.ceiling: lambda u: u.ceil(),
    grammar.floor: lambda u: u.floor(),
    grammar.ceiling: lambda u: u.ceil(),
    RoundHalfEven: _round_half_even,
}


def compile_enclosure(expr: sympy.Basic) -> Enclosure:
    """A function of symbol values (balls) -> a ball enclosing ``expr``'s value.

    Raises :class:`Unsupported` for an expression outside what it knows; the compiled
    function raises :class:`Uncertain` when the balls do not decide a branch.
    """
    e = expr
    if e.is_Rational:
        return _rational(e)
    if e.is_Float:
        return _rational(sympy.Rational(e))
    if e.is_Symbol:
        return lambda env: env[e]
    if e is sympy.pi:
        return lambda env: arb.pi()
    if e is sympy.E:
        return lambda env: arb.const_e()
    if e is sympy.true or e is sympy.false:
        truth = bool(e)
        return lambda env: truth  # type: ignore[return-value]
    if isinstance(e, (sympy.Add, sympy.Mul)):
        parts = [compile_enclosure(a) for a in e.args]
        combine = operator.add if isinstance(e, sympy.Add) else operator.mul
        return lambda env: _finite(_fold(combine, parts, env))
    if isinstance(e, sympy.Pow):
        return _power(compile_enclosure(e.base), e.exp)
    if type(e) in _UNARY and len(e.args) == 1:
        apply, inner = _UNARY[type(e)], compile_enclosure(e.args[0])
        return lambda env: _finite(apply(inner(env)))
    if isinstance(e, sympy.Heaviside):
        inner = compile_enclosure(e.args[0])
        at_zero = compile_enclosure(e.args[1] if len(e.args) > 1 else sympy.S.Half)
        return lambda env: _heaviside(inner(env), at_zero, env)
    if isinstance(e, (sympy.Max, sympy.Min)):
        parts = [compile_enclosure(a) for a in e.args]
        pick = arb.max if isinstance(e, sympy.Max) else arb.min
        return lambda env: _fold(pick, parts, env)
    if isinstance(e, sympy.Piecewise):
        branches = [(compile_enclosure(v), compile_condition(c)) for v, c in e.args]
        return lambda env: _piecewise(branches, env)
    raise Unsupported(f"no certified evaluation for {type(e).__name__}")


def compile_condition(cond: sympy.Basic) -> Callable[[Env], bool]:
    """A condition's truth at the balls, or :class:`Uncertain`."""
    if cond is sympy.true or cond is sympy.false:
        truth = bool(cond)
        return lambda env: truth
    if isinstance(cond, sympy.core.relational.Relational):
        difference = compile_enclosure(cond.lhs - cond.rhs)
        test = _RELATIONS[type(cond)]
        return lambda env: test(sign_of(difference(env)))
    if isinstance(cond, (sympy.And, sympy.Or)):
        parts = [compile_condition(a) for a in cond.args]
        combine = all if isinstance(cond, sympy.And) else any
        return lambda env: combine([p(env) for p in parts])
    if isinstance(cond, sympy.Not):
        inner = compile_condition(cond.args[0])
        return lambda env: not inner(env)
    raise Unsupported(f"no certified evaluation for the condition {type(cond).__name__}")


_RELATIONS: dict[type, Callable[[int], bool]] = {
    sympy.StrictLessThan: lambda sign: sign < 0,
    sympy.LessThan: lambda sign: sign <= 0,
    sympy.StrictGreaterThan: lambda sign: sign > 0,
    sympy.GreaterThan: lambda sign: sign >= 0,
    sympy.Equality: lambda sign: sign == 0,
    sympy.Unequality: lambda sign: sign != 0,
}


def _fold(combine: Callable[[arb, arb], arb], parts: Sequence[Enclosure], env: Env) -> arb:
    """parts[0] combined with each further part in turn (sum, product, max, min)."""
    result = parts[0](env)
    for part in parts[1:]:
        result = combine(result, part(env))
    return result


def _piecewise(branches, env: Env) -> arb:
    for value, condition in branches:
        if condition(env):
            return value(env)
    raise Uncertain  # no branch holds: undefined there


def _ladder(start: int):
    bits = max(start, 64)
    while bits <= MAX_PRECISION_BITS:
        yield bits
        bits *= 2


def certified_ball(expr: sympy.Expr, accuracy_bits: int = 64) -> arb | None:
    """A ball around the number ``expr`` (no free symbols) that decides its sign.

    Precision doubles until the ball excludes 0 with ``accuracy_bits`` of relative accuracy,
    or is exactly 0; None when no precision up to :data:`MAX_PRECISION_BITS` gets there
    (an unknown sign stays unknown) or the expression cannot be evaluated.
    """
    if expr.free_symbols:
        return None
    try:
        compiled = compile_enclosure(expr)
    except (Unsupported, RecursionError):
        return None
    for bits in _ladder(2 * accuracy_bits):
        with precision(bits):
            try:
                ball = compiled({})
            except (Uncertain, ZeroDivisionError, ValueError, OverflowError):
                continue
            if ball.is_exact() and ball.is_zero():
                return ball
            if not ball.contains(0) and ball.rel_accuracy_bits() >= accuracy_bits:
                return ball
    return None


def certified_nonzero(value: sympy.Expr) -> str | None:
    """``value`` to 20 significant digits when it is certainly non-zero, else None."""
    if value.is_Rational:
        if value == 0:
            return None
        with precision(128):
            return _decimal(arb(fmpq(int(value.p), int(value.q))))
    ball = certified_ball(value)
    if ball is None or (ball.is_exact() and ball.is_zero()):
        return None
    return _decimal(ball)


def _decimal(ball: arb) -> str:
    """The ball's midpoint to 20 significant digits."""
    with mpmath.workprec(128):
        return mpmath.nstr(_to_mpf(ball), 20, strip_zeros=False)


def _to_mpf(ball: arb) -> mpmath.mpf:
    man, exp = ball.mid().man_exp()
    return mpmath.mpf((int(man), int(exp)))


def _ball(value: mpmath.mpf) -> arb:
    """The exact ball of a binary number."""
    value = mpmath.mpf(value)
    if not mpmath.isfinite(value):
        raise Uncertain
    sign, man, exp, _ = value._mpf_  # man_exp drops the sign
    return arb(fmpz(-int(man) if sign else int(man))) * arb(2) ** int(exp)


class NumericFunction:
    """f at mpmath points, to the current mpmath working precision, or None when unknown.

    A value is returned only when its ball has as many correct bits as mpmath's working
    precision asks for (or is known to be within 2^-prec of 0): cancellation raises the
    precision instead of returning noise.
    """

    def __init__(self, expr: sympy.Expr, symbols: Sequence[sympy.Symbol]) -> None:
        self.symbols = tuple(symbols)
        try:
            self.compiled: Enclosure | None = compile_enclosure(expr)
        except (Unsupported, RecursionError):
            self.compiled = None

    def __call__(self, values: Sequence[mpmath.mpf]) -> mpmath.mpf | None:
        if self.compiled is None:
            return None
        target = mpmath.mp.prec
        for bits in _ladder(target + 32):
            with precision(bits):
                try:
                    env = {s: _ball(v) for s, v in zip(self.symbols, values)}
                    ball = self.compiled(env)
                except (Uncertain, ZeroDivisionError, ValueError, OverflowError):
                    if bits >= 4 * target:
                        return None
                    continue
                if ball.rel_accuracy_bits() >= target or (
                    ball.rad() < arb(2) ** (-2 * target)
                    and abs(ball.mid()) < arb(2) ** (-target)
                ):
                    return _to_mpf(ball)
        return None


def certified_zero(value: sympy.Expr) -> bool:
    """Whether the number ``value`` is certainly exactly 0 (exact arithmetic says so)."""
    if value.is_Rational:
        return value == 0
    ball = certified_ball(value)
    return ball is not None and ball.is_exact() and ball.is_zero()


# -- sympy's own comparison of two numbers ------------------------------------------------------


def certified_difference(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
    """``a - b`` as a number whose sign is certain (ball arithmetic), else None: what
    sympy's comparisons of two numbers (``is_ge``, ``is_eq``, so ``a > b``, ``Eq(a, b)``,
    Max/Min) read in place of the difference evaluated to 2 digits.

    sympy's ``_n2`` returned ``(a - b).evalf(2)``, which comes out as an exact-looking 0 for
    ``log(1 + exp(-100))``: ``log(1 + exp(-100)) > 0`` is False there. The parser never asks
    sympy to compare numbers (grammar.relation), but every later rebuild does: ``expand``
    cancels ``(x + 1)**2 - x**2 - 2*x - 1 + log(1 + exp(-100)) > 0`` down to such a
    comparison and folded it to false, so ``where(x == 0 and <that>, 1, x)``, which is 1 at
    x = 0, was proved pass_through, and its shift rule proved. Returning None leaves the
    comparison to the assumptions, which do not guess (it then stays unevaluated). The
    grammar installs it in sympy (grammar._compared_numbers)."""
    if not (a.is_comparable and b.is_comparable):
        return None
    difference = a - b
    if difference.is_Number:  # exact (Rational, sympy's own Float), an infinity, or nan
        return difference if difference.is_comparable else None  # oo - oo: nan, no sign
    ball = certified_ball(difference)
    if ball is None:
        return None
    if ball.is_exact() and ball.is_zero():
        return sympy.S.Zero
    return sympy.Float(_decimal(ball))
