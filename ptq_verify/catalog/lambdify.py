"""numpy kernels from sympy expressions: the float implementation of a declared operator.

An operator declared only by its symbolic form still has to run on tensors (calibration, the
float executor, the property tests). This module turns the sympy tree into a vectorised numpy
function once, by composing one small closure per node; nothing is generated as source text
and nothing is executed but numpy calls.

The numpy meaning of each node matches the sympy one: ``Max``/``Min`` are element-wise and
n-ary, ``Heaviside(u, h0)`` takes the value ``h0`` at 0 (the grammar writes ``heaviside(u)``
for ``h0 = 0``), ``round`` ties to even like ``numpy.round`` and ONNX Round, ``Piecewise``
picks the first true condition. Out-of-domain points (``log`` of a negative number) give nan
or inf without warnings, as the float operator would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.special
import sympy

from .grammar import RoundHalfEven

_Node = Callable[[dict[str, np.ndarray]], Any]
"""A compiled sub-expression: the named input arrays -> its value."""

_UNARY: dict[type, Callable[[Any], Any]] = {
    sympy.exp: np.exp,
    sympy.log: np.log,
    sympy.sin: np.sin,
    sympy.cos: np.cos,
    sympy.tan: np.tan,
    sympy.asin: np.arcsin,
    sympy.acos: np.arccos,
    sympy.atan: np.arctan,
    sympy.sinh: np.sinh,
    sympy.cosh: np.cosh,
    sympy.tanh: np.tanh,
    sympy.asinh: np.arcsinh,
    sympy.acosh: np.arccosh,
    sympy.atanh: np.arctanh,
    sympy.erf: scipy.special.erf,
    sympy.Abs: np.abs,
    sympy.sign: np.sign,
    sympy.floor: np.floor,
    sympy.ceiling: np.ceil,
    RoundHalfEven: np.round,
    sympy.Not: np.logical_not,
}

_FOLDED: dict[type, Callable[[Any, Any], Any]] = {
    sympy.Add: np.add,
    sympy.Mul: np.multiply,
    sympy.Max: np.maximum,
    sympy.Min: np.minimum,
    sympy.And: np.logical_and,
    sympy.Or: np.logical_or,
}

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    sympy.StrictLessThan: np.less,
    sympy.LessThan: np.less_equal,
    sympy.StrictGreaterThan: np.greater,
    sympy.GreaterThan: np.greater_equal,
    sympy.Equality: np.equal,
    sympy.Unequality: np.not_equal,
    sympy.Heaviside: np.heaviside,
}


def numpy_kernel(expr: sympy.Basic, names: Sequence[str]) -> Callable[..., np.ndarray]:
    """A vectorised float64 numpy function computing ``expr``.

    Args:
        expr: the sympy expression; its symbols are matched to arguments by name.
        names: the keyword arguments the kernel takes (every one required), a superset of the
            expression's symbol names.

    Returns:
        ``kernel(**values)``: each name -> an array or a number; the result is a float64 array
        of the inputs' broadcast shape.

    Raises:
        ValueError: ``expr`` uses a symbol not in ``names`` or a function with no numpy form.
    """
    names = tuple(names)
    unknown = sorted({s.name for s in expr.free_symbols} - set(names))
    if unknown:
        raise ValueError(f"{expr}: {', '.join(unknown)} not among the kernel's names")
    evaluate = _compile(expr)

    def kernel(**values: Any) -> np.ndarray:
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        if missing or extra:
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing)}")
            if extra:
                problems.append(f"unexpected {', '.join(extra)}")
            raise TypeError(f"kernel of {expr}: {'; '.join(problems)}")
        arrays = {n: np.asarray(values[n], dtype=np.float64) for n in names}
        with np.errstate(all="ignore"):
            result = np.asarray(evaluate(arrays), dtype=np.float64)
        shape = np.broadcast_shapes(result.shape, *(a.shape for a in arrays.values()))
        return result if result.shape == shape else np.broadcast_to(result, shape).copy()

    kernel.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names]
    )
    kernel.__doc__ = f"numpy kernel of {expr}"
    return kernel


def _compile(e: sympy.Basic) -> _Node:
    """One closure per node of the sympy tree."""
    if e is sympy.true or e is sympy.false:
        truth = bool(e)
        return lambda env: truth
    if isinstance(e, sympy.Symbol):
        name = e.name
        return lambda env: env[name]
    if not e.free_symbols and e.is_number and (constant := _constant(e)) is not None:
        return lambda env: constant
    if isinstance(e, sympy.Pow):
        return _compile_power(e)
    if isinstance(e, sympy.Piecewise):
        return _compile_piecewise(e)
    args = [_compile(a) for a in e.args]
    for kinds, make in ((_UNARY, _unary), (_FOLDED, _folded), (_BINARY, _binary)):
        for kind, function in kinds.items():
            if isinstance(e, kind):
                return make(function, args)
    raise ValueError(f"no numpy kernel for {type(e).__name__} in {e}")


def _constant(e: sympy.Basic) -> float | None:
    """``e`` as a float, or None where sympy cannot give one: a rounding the grammar leaves
    unevaluated (``round(cos(1e-60) - 1/2)``), which is then computed as its tree says."""
    try:
        return float(e)
    except TypeError:
        return None


def _unary(function: Callable[[Any], Any], args: list[_Node]) -> _Node:
    (arg,) = args
    return lambda env: function(arg(env))


def _folded(function: Callable[[Any, Any], Any], args: list[_Node]) -> _Node:
    first, *rest = args

    def fold(env: dict[str, np.ndarray]) -> Any:
        value = first(env)
        for arg in rest:
            value = function(value, arg(env))
        return value

    return fold


def _binary(function: Callable[[Any, Any], Any], args: list[_Node]) -> _Node:
    left, right = args
    return lambda env: function(left(env), right(env))


def _compile_power(e: sympy.Pow) -> _Node:
    base = _compile(e.base)
    if e.exp == sympy.S.Half:
        return lambda env: np.sqrt(base(env))
    if e.exp == -1:
        return lambda env: np.reciprocal(np.asarray(base(env), dtype=np.float64))
    if e.exp.is_Integer:
        power = int(e.exp)
        return lambda env: np.power(np.asarray(base(env), dtype=np.float64), power)
    exponent = _compile(e.exp)
    return lambda env: np.power(np.asarray(base(env), dtype=np.float64), exponent(env))


def _compile_piecewise(e: sympy.Piecewise) -> _Node:
    """The first case whose condition holds; nan where none does (as sympy's Piecewise)."""
    cases = [(_compile(value), _compile(condition)) for value, condition in e.args]

    def select(env: dict[str, np.ndarray]) -> Any:
        result: Any = np.nan
        for value, condition in reversed(cases):
            result = np.where(condition(env), value(env), result)
        return result

    return select
