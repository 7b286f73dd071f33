"""Softmax family and the normalisations (Layer, Batch, Instance, RMS, Lp)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def softmax(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Softmax (opset 13): normalised along ``axis`` alone (default -1)."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", -1))
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX LogSoftmax (opset 13), computed stably as shifted x minus log-sum-exp."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", -1))
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def hardmax(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Hardmax (opset 13): one-hot of the first maximum along ``axis``."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", -1))
    first = np.expand_dims(np.argmax(x, axis=axis), axis)
    out = np.zeros_like(x)
    np.put_along_axis(out, first, 1, axis=axis)
    return out


def _trailing_axes(x: np.ndarray, axis: int) -> tuple[int, ...]:
    start = axis + x.ndim if axis < 0 else axis
    return tuple(range(start, x.ndim))


def layer_normalization(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX LayerNormalization: over the axes from ``axis`` on, biased variance (Y only)."""
    x = np.asarray(inputs[0])
    axes = _trailing_axes(x, int(attrs.get("axis", -1)))
    eps = float(attrs.get("epsilon", 1e-5))
    centred = x - x.mean(axis=axes, keepdims=True)
    y = centred / np.sqrt((centred**2).mean(axis=axes, keepdims=True) + eps)
    y = y * np.asarray(inputs[1])
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + np.asarray(inputs[2])
    return y.astype(x.dtype, copy=False)


def rms_normalization(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX RMSNormalization: x / sqrt(mean(x^2) + eps) * scale over the axes from ``axis``."""
    x = np.asarray(inputs[0])
    axes = _trailing_axes(x, int(attrs.get("axis", -1)))
    eps = float(attrs.get("epsilon", 1e-5))
    y = x / np.sqrt((x**2).mean(axis=axes, keepdims=True) + eps) * np.asarray(inputs[1])
    return y.astype(x.dtype, copy=False)


def _per_channel(v: Any, rank: int) -> np.ndarray:
    return np.asarray(v).reshape(1, -1, *([1] * (rank - 2)))


def batch_normalization(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX BatchNormalization in inference mode: X, scale, B, mean, var per channel (axis 1)."""
    if int(attrs.get("training_mode", 0)):
        raise NotImplementedError("BatchNormalization: training_mode=1 is not supported")
    x = np.asarray(inputs[0])
    scale, bias, mean, var = (_per_channel(v, x.ndim) for v in inputs[1:5])
    eps = float(attrs.get("epsilon", 1e-5))
    return ((x - mean) / np.sqrt(var + eps) * scale + bias).astype(x.dtype, copy=False)


def instance_normalization(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX InstanceNormalization: per sample and channel over the spatial axes."""
    x = np.asarray(inputs[0])
    axes = tuple(range(2, x.ndim))
    eps = float(attrs.get("epsilon", 1e-5))
    centred = x - x.mean(axis=axes, keepdims=True)
    y = centred / np.sqrt((centred**2).mean(axis=axes, keepdims=True) + eps)
    y = y * _per_channel(inputs[1], x.ndim) + _per_channel(inputs[2], x.ndim)
    return y.astype(x.dtype, copy=False)


def lp_normalization(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX LpNormalization: x divided by its p-norm (p = 1 or 2) along ``axis``; 0 where the
    norm is 0."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", -1))
    p = int(attrs.get("p", 2))
    if p not in (1, 2):
        raise ValueError(f"LpNormalization: p must be 1 or 2, not {p}")
    norm = np.abs(x).sum(axis=axis, keepdims=True) if p == 1 else np.sqrt(
        (x**2).sum(axis=axis, keepdims=True)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(norm == 0, 0, x / norm)  # a zero vector stays zero (ONNX)
    return y.astype(x.dtype, copy=False)
