"""The catalog verdicts the classify issue lists, and counterexamples that reproduce in kernels."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ptq_verify.catalog import CATALOG
from ptq_verify.rules import RuleKind, classify

EXPECTED = {
    **dict.fromkeys(
        [
            "Relu",
            "LeakyRelu",
            "PRelu",
            "Abs",
            "Neg",
            "MaxPool",
            "AveragePool",
            "Identity",
            "Reshape",
        ],
        (RuleKind.PASS_THROUGH, 1, {}),
    ),
    "Gemm": (RuleKind.PARAM_RESCALE, 1, {"b": 1}),
    "Conv": (RuleKind.PARAM_RESCALE, 1, {"b": 1}),
    "Clip": (RuleKind.PARAM_RESCALE, 1, {"lo": 1, "hi": 1}),
    "Relu6": (RuleKind.PARAM_RESCALE, 1, {"lo": 1, "hi": 1}),
    "Pad": (RuleKind.PARAM_RESCALE, 1, {"v": 1}),
    **dict.fromkeys(["Add", "Sub", "Max", "Min", "Concat"], (RuleKind.ALIGNED, 1, {})),
    "Mul": (RuleKind.HOMOGENEOUS, [1, 1], {}),
    "Div": (RuleKind.HOMOGENEOUS, [1, -1], {}),
    "Sqrt": (RuleKind.HOMOGENEOUS, 0.5, {}),
    "LayerNormalization": (RuleKind.SCALE_INVARIANT, 0, {"eps": 2}),
    "Sign": (RuleKind.SCALE_INVARIANT, 0, {}),
    "HardSigmoid": (RuleKind.SCALE_INVARIANT, 0, {"alpha": -1}),
}
COMPENSATED = ["Sigmoid", "Tanh", "Gelu", "Silu", "Softmax", "Exp", "Elu", "Softplus"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rule(name):
    kind, degree, exponents = EXPECTED[name]
    data = classify(CATALOG[name]).to_json()
    assert (data["rule"], data["degree"], data["param_exponents"]) == (
        kind.value,
        degree,
        exponents,
    )


@pytest.mark.parametrize("name", COMPENSATED)
def test_counterexample_reproduces_in_the_kernel(name):
    op = CATALOG[name]
    verdict = classify(op)
    assert verdict.rule.kind is RuleKind.NEEDS_COMPENSATION
    cx = verdict.certificate
    s = float(Fraction(cx.scale))
    point = {n: float(Fraction(v)) for n, v in cx.point.items()}
    moved = {n: v * s if n in op.element_names else v for n, v in point.items()}
    lhs, rhs = op.evaluate(**moved), s * op.evaluate(**point)
    assert abs(lhs - rhs) > 1e-6 * max(1.0, abs(lhs), abs(rhs))
    assert np.isclose(lhs - rhs, float(cx.difference), rtol=1e-6)
