"""The public testing module: strategies aim where scaling rules break, the float64 error bound
covers real float64 evaluations, and a user's three-line test works."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from ptq_verify.catalog import CATALOG, Operator
from ptq_verify.testing import (
    BoundedForm,
    Unrepresentable,
    channel_scales,
    check_operator,
    equivalent_forms,
    operator_inputs,
    operator_test,
    parameter_values,
    scales,
)
from ptq_verify.testing.tolerance import KERNEL_MARGIN

x, y = sympy.symbols("x y", real=True)


def test_a_users_three_line_test():
    check_operator(Operator("Mine", "x", "max(x, 0.2*x)"))


test_leaky_relu_as_a_generated_test = operator_test(CATALOG["LeakyRelu"])


def test_operator_test_names_the_test_after_the_operator():
    assert test_leaky_relu_as_a_generated_test.__name__ == "test_LeakyRelu"


@given(scales())
def test_scales_are_positive_finite_and_never_one(s):
    assert math.isfinite(s) and s > 0 and s != 1


def test_scales_reach_far_from_one_and_close_to_it():
    from hypothesis import find

    assert find(scales(), lambda s: s > 1e20) > 1e20
    assert find(scales(), lambda s: s < 1e-20) < 1e-20
    near = find(scales(), lambda s: 0 < abs(s - 1) < 1e-12)
    assert abs(near - 1) < 1e-12
    # a scale that is not a power of two (3 and 2 have logs with an irrational ratio)
    assert math.log2(find(scales(), lambda s: not math.log2(s).is_integer())) % 1 != 0


@given(channel_scales(5))
def test_channel_scales_are_positive_vectors(vector):
    assert vector.shape == (5,) and np.all(vector > 0)


@given(operator_inputs(CATALOG["Log"]))
def test_inputs_respect_the_domain(values):
    assert np.all(values["x"] > 0)


@given(operator_inputs(CATALOG["Div"]))
def test_inputs_of_a_multi_input_operator_share_one_shape(values):
    assert set(values) == {"a", "b"}
    assert np.shape(values["a"]) == np.shape(values["b"])
    assert np.all(values["b"] != 0)


@given(parameter_values(CATALOG["Selu"]))
def test_parameters_stay_near_their_samples_and_keep_their_sign(params):
    for name, value in params.items():
        sample = float(CATALOG["Selu"].params[name])
        assert value * sample > 0 and sample / 8 <= abs(value) <= 8 * sample


FORMS = [
    1 / (1 + sympy.exp(-x)),
    x * sympy.erf(x / sympy.sqrt(2)) / 2 + x / 2,
    sympy.log(1 + sympy.exp(x)),
    sympy.Max(x, x / 5) - sympy.Rational(1, 3) * y,
    (x - y) ** 2 / (1 + x**2),
    sympy.sqrt(x**2 + y**2 + sympy.Rational(1, 10)),
    sympy.tanh(x) * y,
]


@pytest.mark.parametrize("expr", FORMS, ids=str)
def test_the_error_bound_covers_a_plain_float64_evaluation(expr):
    """Soundness of the tolerance: numpy evaluating the same tree stays within the bound."""
    evaluate = sympy.lambdify((x, y), expr, "numpy")
    form = BoundedForm(expr)

    @given(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3))
    def within_bound(a, b):
        try:
            bounded = form({"x": a, "y": b}, input_roundings=0)
        except Unrepresentable:
            return
        with np.errstate(all="ignore"):
            got = float(evaluate(np.float64(a), np.float64(b)))
        assert abs(got - bounded.value) <= bounded.error

    within_bound()


def test_the_error_bound_is_tight_where_the_function_is_well_conditioned():
    bounded = BoundedForm(1 / (1 + sympy.exp(-x)))({"x": 0.5}, input_roundings=0)
    assert bounded.error <= 64 * 2.0**-53 * abs(bounded.value)


def test_a_backward_stable_kernel_is_accepted():
    """Softmax shifted by the maximum rounds the arguments of exp (32 u here), more than the 4
    ulp of evaluating the tree; the bound lets inputs carry two roundings for that reason."""
    x0, x1, x2 = sympy.symbols("x0 x1 x2", real=True)
    form = BoundedForm(sympy.exp(x0) / (sympy.exp(x0) + sympy.exp(x1) + sympy.exp(x2)))
    point = np.array([1.4948474833192833, 0.0, 66.0])
    shifted = np.exp(point - point.max())
    stable = float(shifted[0] / shifted.sum())
    bounded = form(dict(zip(("x0", "x1", "x2"), point)))
    assert abs(stable - bounded.value) <= KERNEL_MARGIN * bounded.error
    tight = form(dict(zip(("x0", "x1", "x2"), point)), input_roundings=0)
    assert abs(stable - tight.value) > KERNEL_MARGIN * tight.error  # the point is a real test


def test_overflowing_intermediates_are_unrepresentable():
    with pytest.raises(Unrepresentable):
        BoundedForm(sympy.exp(x) / (1 + sympy.exp(x)))({"x": 800.0})


def test_a_pole_within_rounding_error_is_unrepresentable():
    with pytest.raises(Unrepresentable):
        BoundedForm(1 / (x - sympy.Rational(1, 10)))({"x": 0.1})


def test_a_step_may_jump_only_within_rounding_error_of_its_edge():
    step = BoundedForm(sympy.Heaviside(x - sympy.Rational(1, 5)))
    assert step({"x": 0.2}).error == 1
    assert step({"x": 0.3}).error == 0


def test_the_reference_is_exact_to_sixty_digits():
    bounded = BoundedForm(x / 3)({"x": 1.0})
    with mpmath.workdps(60):
        assert abs(bounded.value - mpmath.mpf(1) / 3) < mpmath.mpf(10) ** -58


def test_rewrites_are_equivalent_and_new():
    op = CATALOG["Relu"]
    forms = equivalent_forms(op)
    assert forms and all(form != op.expr for _, form in forms)
    for _, form in forms:
        for value in (-2, 0, sympy.Rational(3, 7)):
            assert form.subs(op.symbols["x"], value) == op.expr.subs(op.symbols["x"], value)


@pytest.mark.parametrize("call", ["check_operator", "check_rewrites", "check_rule"])
def test_a_claim_that_is_no_verdict_or_rule_is_a_type_error_naming_the_call(call):
    """A library user's trial: check_operator(op, verdict="pass_through") and
    check_rule(op, "pass_through") failed as AttributeErrors from inside the properties."""
    from ptq_verify.testing import check_rewrites, check_rule

    op = Operator("Twice", "x", "2*x")
    run = {"check_operator": lambda: check_operator(op, verdict="pass_through"),
           "check_rewrites": lambda: check_rewrites(op, "pass_through"),
           "check_rule": lambda: check_rule(op, "pass_through")}[call]
    with pytest.raises(TypeError, match=f"^{call}: (verdict|rule) must be a (Verdict|Rule)"):
        run()
