"""Comparisons of two tensors, as in attention masks: boolean outputs, witnessed as 1 or 0.

Compared tensors must share one scale for the comparison to survive scaling, and the output
(a truth value) does not scale at all.
"""

from __future__ import annotations

import numpy as np

from ..kernels.elementwise import comparison
from ..operator import Operator


def _compare(name: str, relation: str, compare, doc: str) -> Operator:
    return Operator(
        name, "a, b", f"where(a {relation} b, 1, 0)",
        kernel=lambda a, b: np.where(compare(a, b), 1.0, 0.0), onnx_type=name,
        onnx_kernel=comparison(compare), doc=doc,
    )


OPERATORS = (
    _compare("Equal", "==", np.equal, "a == b, a boolean tensor."),
    _compare("Less", "<", np.less, "a < b, a boolean tensor."),
    _compare("LessOrEqual", "<=", np.less_equal, "a <= b, a boolean tensor."),
    _compare("Greater", ">", np.greater, "a > b, a boolean tensor."),
    _compare("GreaterOrEqual", ">=", np.greater_equal, "a >= b, a boolean tensor."),
)
