"""Comparisons of two tensors, as in attention masks: boolean outputs, witnessed as 1 or 0,
and the boolean connectives that combine masks (Not, And, Or, Xor).

Compared tensors must share one scale for the comparison to survive scaling, and the output
(a truth value) does not scale at all. A connective reads its inputs as truth values
(non-zero is true), witnessed by ``where(a > 0, ...)``: masks are 0 or 1.
"""

from __future__ import annotations

import numpy as np

from ..kernels.elementwise import comparison, logical
from ..operator import Operator


def _compare(name: str, relation: str, compare, doc: str) -> Operator:
    return Operator(
        name, "a, b", f"where(a {relation} b, 1, 0)",
        kernel=lambda a, b: np.where(compare(a, b), 1.0, 0.0), onnx_type=name,
        onnx_kernel=comparison(compare), doc=doc,
    )


def _connective(name: str, inputs: str, expr: str, combine, doc: str) -> Operator:
    return Operator(name, inputs, expr, onnx_type=name, onnx_kernel=logical(combine), doc=doc)


def _never_on_reals(name: str, test, doc: str) -> Operator:
    """IsNaN, IsInf: false for every real number, so the witness is 0 (a proved rule of 0
    holds for every scale); the ONNX kernel still answers for the float values it meets."""
    return Operator(name, "x", "0", kernel=lambda x: np.zeros(np.shape(x)), onnx_type=name,
                    onnx_kernel=lambda inputs, attrs: test(np.asarray(inputs[0]), attrs),
                    doc=doc)


def _is_inf(x: np.ndarray, attrs) -> np.ndarray:
    positive = int(attrs.get("detect_positive", 1))
    negative = int(attrs.get("detect_negative", 1))
    return (np.isposinf(x) & bool(positive)) | (np.isneginf(x) & bool(negative))


OPERATORS = (
    _never_on_reals("IsNaN", lambda x, attrs: np.isnan(x),
                    "x is NaN: false for every real x (transformers' default attention "
                    "writes Where(IsNaN(softmax), 0, softmax) for rows masked entirely)."),
    _never_on_reals("IsInf", _is_inf, "x is +-inf: false for every real x."),
    _compare("Equal", "==", np.equal, "a == b, a boolean tensor."),
    _compare("Less", "<", np.less, "a < b, a boolean tensor."),
    _compare("LessOrEqual", "<=", np.less_equal, "a <= b, a boolean tensor."),
    _compare("Greater", ">", np.greater, "a > b, a boolean tensor."),
    _compare("GreaterOrEqual", ">=", np.greater_equal, "a >= b, a boolean tensor."),
    _connective("Not", "x", "where(x > 0, 0, 1)", np.logical_not, "Boolean negation of a mask."),
    _connective("And", "a, b", "where(a > 0, where(b > 0, 1, 0), 0)", np.logical_and,
                "Both masks true."),
    _connective("Or", "a, b", "where(a > 0, 1, where(b > 0, 1, 0))", np.logical_or,
                "Either mask true."),
    _connective("Xor", "a, b", "where(a > 0, where(b > 0, 0, 1), where(b > 0, 1, 0))",
                np.logical_xor, "Exactly one mask true."),
)
