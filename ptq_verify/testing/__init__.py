"""Property-test operator declarations: hypothesis strategies and ``check_operator``.

A user's own test file is three lines::

    from ptq_verify.testing import check_operator
    from ptq_verify.catalog import Operator

    def test_mine():
        check_operator(Operator("Mine", "x", "max(x, 0.2*x)"))

See docs/testing.md for the properties checked, the tolerance rule and the profiles.
"""

from .check import (
    check_counterexample,
    check_kernel,
    check_operator,
    check_rewrites,
    check_rule,
    operator_test,
    rules_of,
)
from .rewrites import equivalent_forms
from .strategies import (
    channel_scales,
    element_values,
    operator_inputs,
    operator_points,
    parameter_values,
    scales,
)
from .tolerance import Bounded, BoundedForm, Undefined, Unrepresentable

__all__ = [
    "Bounded",
    "BoundedForm",
    "Undefined",
    "Unrepresentable",
    "channel_scales",
    "check_counterexample",
    "check_kernel",
    "check_operator",
    "check_rewrites",
    "check_rule",
    "element_values",
    "equivalent_forms",
    "operator_inputs",
    "operator_points",
    "operator_test",
    "parameter_values",
    "rules_of",
    "scales",
]
