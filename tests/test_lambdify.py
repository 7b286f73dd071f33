"""numpy kernels agree with the sympy expression they come from, point by point, and behave as
tensor code must (broadcasting, float64, strict keyword names, silent nan out of domain)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy
from depth import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from ptq_verify.catalog.grammar import parse_expression
from ptq_verify.catalog.lambdify import numpy_kernel

NAMES = ("x", "y", "alpha")
SPECIAL = [-2.5, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.5]

FUNCTIONS = [
    "x + y - 2*alpha", "x*y/(alpha + 3)", "x**2 - y**3", "(x**2 + 1)**(1/3)", "2**x",
    "exp(x)", "log(x**2 + 1)", "sqrt(abs(x))", "1/sqrt(x**2 + 1)", "abs(x)", "sign(x)",
    "sin(x) + cos(y)", "tan(x/2)", "asin(x/4) + acos(y/4) + atan(x)", "sinh(x) + cosh(y)",
    "tanh(x)", "asinh(x) + acosh(abs(y) + 1) + atanh(x/4)", "erf(x)", "sigmoid(x)",
    "softplus(x)", "x/2*(1 + erf(x/sqrt(2)))", "max(x, y)", "min(x, y, alpha)",
    "floor(x) + ceil(y)", "round(x)", "round(x/3 + y)", "heaviside(x)", "heaviside(x, 1/2)",
    "heaviside(x, alpha)", "clip(x, -1, alpha)", "where(x > 0, x, alpha*x)",
    "where(x >= 0, 1, 0)", "where(x < y, x, y)", "where(x <= 1, x, 1)", "where(x == 0, 1, x)",
    "where(x != y, x - y, 7)", "where(x > 0 and y > 0, 1, where(x < -1 or not y < 1, 2, 3))",
    "1.0507009873554804934193349852946*where(x > 0, x, 1.6732632423543772*(exp(x) - 1))",
    "pi*x + exp(1)", "7",
]


def exact_value(expr: sympy.Expr, point: dict[str, float]) -> float:
    """The sympy value at a float point, in exact arithmetic (floats enter as their exact
    rational value, as numpy sees them)."""
    values = {sympy.Symbol(n, real=True): sympy.Rational(v) for n, v in point.items()}
    return float(sympy.N(expr.xreplace(values), 30))


@pytest.mark.parametrize("text", FUNCTIONS)
def test_kernel_agrees_with_sympy(text):
    expr = parse_expression(text).expr
    kernel = numpy_kernel(expr, NAMES)
    rng = np.random.default_rng(len(text))
    xs = np.concatenate([SPECIAL, rng.uniform(-3, 3, 12)])
    ys = np.concatenate([SPECIAL[::-1], rng.uniform(-3, 3, 12)])
    alphas = np.concatenate([np.full(len(SPECIAL), 0.1), rng.uniform(-1, 1, 12)])
    got = kernel(x=xs, y=ys, alpha=alphas)
    assert got.dtype == np.float64 and got.shape == xs.shape
    for i in range(len(xs)):
        point = {"x": xs[i], "y": ys[i], "alpha": alphas[i]}
        assert got[i] == pytest.approx(exact_value(expr, point), rel=1e-12, abs=1e-12), point


def test_round_is_half_to_even_like_numpy_and_onnx():
    kernel = numpy_kernel(parse_expression("round(x)").expr, ["x"])
    values = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, 3.5000001])
    assert kernel(x=values).tolist() == [-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 2.0, 4.0]


def test_heaviside_value_at_zero_matches_the_grammar():
    at = {"heaviside(x)": 0.0, "heaviside(x, 1/2)": 0.5, "heaviside(x, 1)": 1.0}
    for text, value in at.items():
        expr = parse_expression(text).expr
        assert numpy_kernel(expr, ["x"])(x=0.0) == value
        assert float(expr.subs(sympy.Symbol("x", real=True), 0)) == value
    assert numpy_kernel(sympy.Heaviside(sympy.Symbol("x")), ["x"])(x=0.0) == 0.5


def test_max_and_min_broadcast_over_many_arguments():
    kernel = numpy_kernel(parse_expression("max(x, y, alpha, 0) - min(x, y)").expr, NAMES)
    x = np.arange(6.0).reshape(2, 3) - 3
    result = kernel(x=x, y=np.array([-1.0, 0.5, 4.0]), alpha=0.25)
    expected = np.maximum.reduce(np.broadcast_arrays(x, [-1.0, 0.5, 4.0], 0.25, 0.0))
    expected = expected - np.minimum(x, [-1.0, 0.5, 4.0])
    assert result.shape == (2, 3)
    np.testing.assert_array_equal(result, expected)


def test_constant_expressions_take_the_inputs_shape():
    kernel = numpy_kernel(parse_expression("0*x + 3").expr, ["x"])
    result = kernel(x=np.zeros((2, 4)))
    assert result.shape == (2, 4) and result.dtype == np.float64 and (result == 3).all()
    result[0, 0] = 1.0  # a real array, not a read-only broadcast view


def test_scalars_and_integer_arrays_become_float64():
    kernel = numpy_kernel(parse_expression("x/2").expr, ["x"])
    assert kernel(x=np.array([1, 3])).tolist() == [0.5, 1.5]
    scalar = kernel(x=3)
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar == 1.5


def test_exact_rational_constants_round_once_to_float64():
    kernel = numpy_kernel(parse_expression("0.1*x").expr, ["x"])
    assert kernel(x=1.0) == 0.1
    kernel = numpy_kernel(parse_expression("x/3").expr, ["x"])
    assert kernel(x=1.0) == 1.0 / 3.0


def test_out_of_domain_is_nan_without_warnings():
    points = np.array([-1.0, 0.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logs, roots, reciprocals = (
            numpy_kernel(parse_expression(text).expr, ["x"])(x=points)
            for text in ("log(x)", "sqrt(x)", "1/x")
        )
    assert np.isnan(logs[0]) and logs[1] == -np.inf and logs[2] == 0.0
    assert np.isnan(roots[0]) and roots.tolist()[1:] == [0.0, 1.0]
    assert reciprocals.tolist() == [-1.0, np.inf, 1.0]


def test_piecewise_without_a_true_case_is_nan_outside():
    x = sympy.Symbol("x", real=True)
    kernel = numpy_kernel(sympy.Piecewise((x, x > 0)), ["x"])
    assert np.isnan(kernel(x=-1.0)) and kernel(x=2.0) == 2.0


def test_names_are_checked():
    kernel = numpy_kernel(parse_expression("x*alpha").expr, ["x", "alpha", "unused"])
    with pytest.raises(TypeError, match="missing alpha, unused"):
        kernel(x=1.0)
    with pytest.raises(TypeError, match="unexpected beta"):
        kernel(x=1.0, alpha=1.0, unused=0.0, beta=2.0)
    assert kernel(x=2.0, alpha=3.0, unused=0.0) == 6.0
    with pytest.raises(ValueError, match="alpha not among the kernel's names"):
        numpy_kernel(parse_expression("x*alpha").expr, ["x"])


def test_unsupported_functions_are_refused_when_compiling():
    with pytest.raises(ValueError, match="no numpy kernel for gamma"):
        numpy_kernel(sympy.gamma(sympy.Symbol("x")), ["x"])


SMOOTH = [
    "sigmoid(alpha*x) - tanh(y)", "x**3/(1 + x**2)", "softplus(x - y)*exp(-alpha**2)",
    "erf(x)*cos(y) + sqrt(x**2 + y**2)",
]


@settings(max_examples=examples(60), deadline=None)
@given(
    st.sampled_from(SMOOTH),
    st.floats(-30, 30, allow_nan=False),
    st.floats(-30, 30, allow_nan=False),
    st.floats(-5, 5, allow_nan=False),
)
def test_kernel_agrees_with_sympy_at_random_points(text, x, y, alpha):
    expr = parse_expression(text).expr
    got = numpy_kernel(expr, NAMES)(x=x, y=y, alpha=alpha)
    point = {"x": x, "y": y, "alpha": alpha}
    assert float(got) == pytest.approx(exact_value(expr, point), rel=1e-9, abs=1e-12)
