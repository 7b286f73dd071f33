"""The suite can fail: each deliberately broken declaration or claim below must be caught by
``check_operator`` with a readable message naming the property, the point and both sides."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
from depth import examples

from ptq_verify.catalog import CATALOG, Operator
from ptq_verify.rules import Counterexample, Rule, RuleKind, Verdict, classify
from ptq_verify.testing import check_counterexample, check_operator, check_rewrites, check_rule

RARE = examples(300)
"""Examples for mutations that only a region of the inputs exposes (x or s*x above 1e6): about one
example in ten lands there, so 30 examples miss it a few times in a hundred runs; 300 do not
(and cost nothing more once the failure is found, which stops the search)."""


def _failure(run) -> str:
    with pytest.raises(AssertionError) as caught:
        run()
    return str(caught.value)


def test_leaky_relu_with_the_wrong_negative_slope_is_caught():
    wrong = Operator(
        "LeakyRelu", "x", "where(x >= 0, x, alpha*x)", params={"alpha": "0.01"},
        kernel=lambda x, alpha: np.where(x >= 0, x, 0.1 * x),
    )
    message = _failure(lambda: check_operator(wrong))
    assert "check_operator(LeakyRelu): (a) the kernel disagrees with the symbolic form" in message
    point = message.split("point", 1)[1].split("\n", 1)[0]
    assert "x = -" in point  # only negative inputs expose the slope
    assert "kernel" in message and "symbolic" in message and "tolerance" in message


def test_a_wrongly_claimed_rule_is_caught():
    sigmoid = CATALOG["Sigmoid"]
    claimed = Verdict("Sigmoid", Rule(RuleKind.PASS_THROUGH, Fraction(1)), certificate=None)
    message = _failure(lambda: check_operator(sigmoid, verdict=claimed, rewrites=False))
    assert "(b) the rule pass_through does not hold for the kernel" in message
    assert "the symbolic form violates the rule here too: the rule is wrong" in message
    assert "scale" in message and "s = " in message


def test_a_kernel_that_breaks_only_for_large_values_is_caught():
    saturating = Operator("Relu", "x", "max(x, 0)", kernel=lambda x: np.clip(x, 0, 1e6))
    message = _failure(lambda: check_operator(saturating, rewrites=False, max_examples=RARE))
    assert "check_operator(Relu)" in message
    assert "1000000.0" in message  # the saturated kernel value is shown next to the exact one


def test_the_rule_property_alone_catches_a_kernel_that_breaks_for_large_scales():
    """Without property (a), (b) still sees it: s * x crosses 1e6 while x need not."""
    saturating = Operator("Relu", "x", "max(x, 0)", kernel=lambda x: np.clip(x, 0, 1e6))
    pass_through = Rule(RuleKind.PASS_THROUGH, Fraction(1))
    message = _failure(lambda: check_rule(saturating, pass_through, max_examples=RARE))
    # one common scale or per-channel scales: either of (b)'s scale draws may find it first
    assert "(b) the rule pass_through does not hold for the kernel (" in message
    assert "1000000.0" in message
    assert "value is wrong" in message


def test_a_counterexample_that_is_wrong_for_the_expression_is_caught():
    relu = CATALOG["Relu"]
    bogus = Counterexample(point={"x": "3/2"}, scale="2", lhs="3", rhs="2", difference="1")
    message = _failure(lambda: check_counterexample(relu, bogus))
    assert "(c) the counterexample is wrong for the symbolic form" in message
    assert "x = 3/2" in message and "exact f(s*x) - s*f(x)" in message


def test_tampered_no_degree_evidence_is_caught():
    sigmoid = CATALOG["Sigmoid"]
    certificate = classify(sigmoid).certificate
    evidence = dict(certificate.no_degree)
    evidence["cross_difference"] = "-" + evidence["cross_difference"].lstrip("-")
    if evidence == certificate.no_degree:
        evidence["cross_difference"] = evidence["cross_difference"][1:]
    tampered = dataclasses.replace(certificate, no_degree=evidence)
    message = _failure(lambda: check_counterexample(sigmoid, tampered))
    assert "(c) the certificate's no-degree evidence is wrong for the symbolic form" in message
    assert "exact f(s*x1) f(x2) - f(s*x2) f(x1)" in message


def test_a_claimed_verdict_that_rewrites_contradict_is_caught():
    relu = CATALOG["Relu"]
    claimed = Verdict("Relu", Rule(RuleKind.HOMOGENEOUS, Fraction(2)), certificate=None)
    message = _failure(lambda: check_rewrites(relu, claimed))
    assert "(d) the checker contradicts an equivalent form" in message
    assert "homogeneous 2" in message and "pass_through" in message
