"""The Reduce* family and ArgMax / ArgMin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..operator import OnnxKernel
from .attributes import axes_from, normalised_axes


def _reduce(combine: Callable[..., np.ndarray]) -> OnnxKernel:
    """An ONNX reduction: axes from input 1 or the attribute, keepdims, noop_with_empty_axes."""

    def kernel(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
        x = np.asarray(inputs[0])
        axes = axes_from(inputs, 1, attrs)
        if not axes:  # all axes, or none: then only the element-wise part (|x| for L1) acts
            axes = [] if int(attrs.get("noop_with_empty_axes", 0)) else list(range(x.ndim))
        keepdims = bool(int(attrs.get("keepdims", 1)))
        y = combine(x, axis=normalised_axes(axes, x.ndim), keepdims=keepdims)
        return np.asarray(y).astype(x.dtype, copy=False)

    return kernel


def _log_sum_exp(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    y = np.log(np.exp(x - top).sum(axis=axis, keepdims=True)) + top
    return y if keepdims else np.squeeze(y, axis=axis)


reduce_mean = _reduce(np.mean)
reduce_sum = _reduce(np.sum)
reduce_max = _reduce(np.max)
reduce_min = _reduce(np.min)
reduce_prod = _reduce(np.prod)
reduce_l1 = _reduce(lambda x, **kw: np.abs(x).sum(**kw))
reduce_l2 = _reduce(lambda x, **kw: np.sqrt((x * x).sum(**kw)))
reduce_sum_square = _reduce(lambda x, **kw: (x * x).sum(**kw))
reduce_log_sum = _reduce(lambda x, **kw: np.log(x.sum(**kw)))
reduce_log_sum_exp = _reduce(_log_sum_exp)


def _arg(pick: Callable[..., np.ndarray]) -> OnnxKernel:
    """ArgMax / ArgMin: int64 indices along ``axis``; ties go to the first index unless
    ``select_last_index=1``."""

    def kernel(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
        x = np.asarray(inputs[0])
        axis = int(attrs.get("axis", 0))
        axis = axis + x.ndim if axis < 0 else axis
        if int(attrs.get("select_last_index", 0)):
            flipped = pick(np.flip(x, axis=axis), axis=axis)
            index = x.shape[axis] - 1 - flipped
        else:
            index = pick(x, axis=axis)
        if int(attrs.get("keepdims", 1)):
            index = np.expand_dims(index, axis)
        return index.astype(np.int64)

    return kernel


arg_max = _arg(np.argmax)
arg_min = _arg(np.argmin)


def top_k(inputs: list, attrs: Mapping[str, Any]) -> list[np.ndarray]:
    """ONNX TopK (opset 10 on: ``k`` an input): the k largest (``largest`` 1) or smallest
    elements along ``axis`` and their int64 indices, sorted, equal values in the order of their
    indices (a stable sort, as the operator's definition breaks ties)."""
    x = np.asarray(inputs[0])
    k = int(np.asarray(inputs[1]).reshape(-1)[0])
    axis = int(attrs.get("axis", -1))
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= k <= x.shape[axis]:
        raise ValueError(f"k = {k} is not within the axis's {x.shape[axis]} elements")
    keys = -x if int(attrs.get("largest", 1)) else x
    if np.issubdtype(x.dtype, np.unsignedinteger):  # (a negated unsigned key wraps around)
        keys = -x.astype(np.int64) if int(attrs.get("largest", 1)) else x
    order = np.argsort(keys, axis=axis, kind="stable")
    index = np.take(order, np.arange(k), axis=axis)
    return [np.take_along_axis(x, index, axis=axis), index.astype(np.int64)]
