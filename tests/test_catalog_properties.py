"""Every catalog operator passes ``check_operator`` (properties (a)-(c), and (d) as its own test);
multi-input operators under independent and shared scales. Operators are discovered from the
catalog: a new one is covered untouched."""

from __future__ import annotations

import pytest
from expected import has_rule, independent_scales

from ptq_verify.catalog import CATALOG
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

