"""MaxPool, AveragePool, LpPool and the global pools over sliding windows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .windows import geometry, windows


def _window_axes(x: np.ndarray) -> tuple[int, ...]:
    rank = x.ndim - 2
    return tuple(range(2 + rank, 2 + 2 * rank))


def max_pool(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX MaxPool (output Y only; the Indices output is not produced)."""
    x = np.asarray(inputs[0])
    if int(attrs.get("storage_order", 0)):
        raise NotImplementedError("MaxPool: storage_order=1 is not supported")
    cols = windows(x, geometry(attrs, x.shape[2:]), pad_value=-np.inf)
    return cols.max(axis=_window_axes(x)).astype(x.dtype, copy=False)


def average_pool(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX AveragePool; padded cells count only with ``count_include_pad=1``, and the cells
    past the padding that a ceil_mode window reaches never do."""
    x = np.asarray(inputs[0])
    geo = geometry(attrs, x.shape[2:])
    axes = _window_axes(x)
    total = windows(x, geo).sum(axis=axes)
    ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    padding = 1.0 if int(attrs.get("count_include_pad", 0)) else 0.0
    count = windows(ones, geo, pad_value=padding, ceil_value=0.0).sum(axis=axes)
    return (total / count).astype(x.dtype, copy=False)


def lp_pool(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX LpPool: the p-norm of each window (p defaults to 2)."""
    x = np.asarray(inputs[0])
    p = float(attrs.get("p", 2))
    cols = windows(np.abs(x), geometry(attrs, x.shape[2:]))
    return (np.sum(cols**p, axis=_window_axes(x)) ** (1.0 / p)).astype(x.dtype, copy=False)


def global_average_pool(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX GlobalAveragePool: the mean over every spatial axis, kept as size 1."""
    x = np.asarray(inputs[0])
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


def global_max_pool(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX GlobalMaxPool: the maximum over every spatial axis, kept as size 1."""
    x = np.asarray(inputs[0])
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)
