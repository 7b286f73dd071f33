"""Gemm, MatMul and Einsum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .precision import at_least_single


def matmul(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX MatMul: numpy.matmul semantics, batched and broadcast."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    y = np.matmul(at_least_single(a), at_least_single(b))
    return y.astype(np.result_type(a, b), copy=False)


def gemm(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Gemm: alpha * A' @ B' + beta * C, with transA / transB and an optional C."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    dtype = a.dtype
    a, b = at_least_single(a), at_least_single(b)
    if int(attrs.get("transA", 0)):
        a = a.T
    if int(attrs.get("transB", 0)):
        b = b.T
    y = float(attrs.get("alpha", 1.0)) * np.matmul(a, b)
    c = inputs[2] if len(inputs) > 2 else None
    if c is not None:
        y = y + float(attrs.get("beta", 1.0)) * np.asarray(c)
    return y.astype(dtype, copy=False)


def einsum(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Einsum: numpy's einsum on the equation (ONNX allows spaces in it; numpy does not)."""
    equation = attrs["equation"]
    if isinstance(equation, bytes):
        equation = equation.decode()
    return np.einsum(equation.replace(" ", ""), *inputs)
