"""Every catalog operator passes ``check_operator`` (properties (a)-(c), and (d) as its own test);
multi-input operators under independent and shared scales. Operators are discovered from the
catalog: a new one is covered untouched."""

from __future__ import annotations

import numpy as np
import pytest
from expected import has_rule, independent_scales

from ptq_verify.catalog import CATALOG
from ptq_verify.engine.rules import is_shift_selection
from ptq_verify.rules import classify
from ptq_verify.testing import check_operator, check_rewrites, check_rule, rules_of

MULTI_INPUT = sorted(name for name, op in CATALOG.items() if len(op.inputs) > 1)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_catalog_operator(name):
    """Properties (a)-(c): kernel, rules, counterexample."""
    check_operator(CATALOG[name], rewrites=False)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_catalog_verdict_is_stable_under_rewrites(name):
    """Property (d), apart so that a checker weakness shows as its own failure."""
    check_rewrites(CATALOG[name])


@pytest.mark.parametrize("name", MULTI_INPUT)
def test_multi_input_operator_under_independent_scales(name):
    """Mul, Div, MatMul (one degree per input in the hand-written table) have proved rules
    that hold under independent input scales; the aligned operators must have none."""
    op = CATALOG[name]
    per_input = [
        rule for rule in rules_of(classify(op))
        if rule.input_degrees is not None and not rule.param_exponents
    ]
    assert bool(per_input) == independent_scales(name), name
    for rule in per_input:
        check_rule(op, rule, independent=True)


@pytest.mark.parametrize("name", MULTI_INPUT)
def test_multi_input_operator_under_a_shared_scale(name):
    op = CATALOG[name]
    rules = rules_of(classify(op))
    assert bool(rules) == has_rule(name), name
    for rule in rules:
        check_rule(op, rule, independent=False)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_a_shift_selection_commutes_with_adding_a_number(name):
    """``is_shift_selection`` lets the qdq export run an operator on codes stored with a zero
    point z: it must hold only where f(x + z) = f(x) + z for every input element (checked on
    random elements, parameters at several values), and fail on Relu and constant Pad."""
    op = CATALOG[name]
    if not is_shift_selection(op):
        return
    rng = np.random.default_rng(0)
    for _ in range(20):
        elements = {e: rng.normal(size=8) * 3 for e in op.element_names}
        params = {p: rng.choice([-1.0, 0.5, 2.0]) for p in op.params}
        for z in (128.0, -3.5):
            shifted = {e: v + z for e, v in elements.items()}
            np.testing.assert_allclose(op.evaluate(**shifted, **params),
                                       op.evaluate(**elements, **params) + z, atol=1e-9)


def test_shift_selections_exclude_numbers_and_parameters():
    assert is_shift_selection(CATALOG["MaxPool"]) and is_shift_selection(CATALOG["Concat"])
    assert not is_shift_selection(CATALOG["Relu"]) and not is_shift_selection(CATALOG["Pad"])
