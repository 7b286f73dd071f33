"""ONNX kernels of element-wise operators whose semantics go beyond their witness kernel:
variadic inputs, optional inputs, integer tensors and attribute-selected forms."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from .attributes import text
from .functions import gelu, gelu_tanh


def _present(inputs: list) -> list[np.ndarray]:
    return [np.asarray(i) for i in inputs if i is not None]


def variadic_max(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Max over any number of broadcast inputs."""
    return functools.reduce(np.maximum, _present(inputs))


def variadic_min(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Min over any number of broadcast inputs."""
    return functools.reduce(np.minimum, _present(inputs))


def variadic_sum(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Sum over any number of broadcast inputs."""
    return functools.reduce(np.add, _present(inputs))


def variadic_mean(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Mean over any number of broadcast inputs."""
    arrays = _present(inputs)
    total = variadic_sum(arrays, attrs)
    return (total / len(arrays)).astype(total.dtype, copy=False)


def divide(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Div: true division on floats, truncation toward zero on integers (shape math)."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    if np.issubdtype(a.dtype, np.integer):
        quotient = np.abs(a) // np.abs(b)
        return np.where((a < 0) ^ (b < 0), -quotient, quotient).astype(a.dtype)
    return np.divide(a, b)


def modulo(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Mod: the remainder with the divisor's sign (fmod = 0, Python's %), or with the
    dividend's (fmod = 1, C's fmod, required for floats)."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    return (np.fmod if int(attrs.get("fmod", 0)) else np.mod)(a, b)


def power(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Pow with whatever exponent input the node has; the output keeps X's type."""
    x = np.asarray(inputs[0])
    return np.power(x, np.asarray(inputs[1])).astype(x.dtype, copy=False)


def clip(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Clip: optional min and max inputs (or the attributes of opset < 11)."""
    x = np.asarray(inputs[0])
    bounds = []
    for slot, attr, unbounded in ((1, "min", -np.inf), (2, "max", np.inf)):
        given = inputs[slot] if len(inputs) > slot else None
        bounds.append(attrs.get(attr, unbounded) if given is None else np.asarray(given))
    return np.minimum(np.maximum(x, bounds[0]), bounds[1]).astype(x.dtype, copy=False)


def gelu_any(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Gelu: the erf form, or the tanh form with ``approximate='tanh'``."""
    x = np.asarray(inputs[0])
    form = gelu_tanh if text(attrs, "approximate", "none") == "tanh" else gelu
    return form(x).astype(x.dtype, copy=False)


def comparison(compare: Any) -> Any:
    """An ONNX comparison (Equal, Less, ...): a boolean tensor, broadcast."""

    def kernel(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
        return compare(np.asarray(inputs[0]), np.asarray(inputs[1]))

    return kernel


def logical(combine: Any) -> Any:
    """An ONNX boolean operator (Not, And, Or, Xor) on truth values, broadcast."""

    def kernel(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
        return combine(*(np.asarray(i, dtype=bool) for i in inputs if i is not None))

    return kernel
