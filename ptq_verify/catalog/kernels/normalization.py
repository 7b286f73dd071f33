"""Softmax family and the normalisations (Layer, Batch, Instance, RMS, Lp, LRN)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
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


def group_normalization(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX GroupNormalization: per sample over each group of ``num_groups`` consecutive
    channels and the spatial axes, then a gain and bias per channel (opset 21) or per group
    (opset 18, where they have ``num_groups`` elements; the sizes tell the two apart)."""
    x = np.asarray(inputs[0])
    groups = int(attrs["num_groups"]) if "num_groups" in attrs else 0
    channels = x.shape[1] if x.ndim > 1 else 0
    if groups <= 0 or channels % groups:
        raise ValueError(f"GroupNormalization: num_groups {groups} does not divide the "
                         f"{channels} channels")
    eps = float(attrs.get("epsilon", 1e-5))
    grouped = x.reshape(x.shape[0], groups, -1)
    centred = grouped - grouped.mean(axis=-1, keepdims=True)
    y = (centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + eps)).reshape(x.shape)
    affine = []
    for value in inputs[1:3]:
        value = np.asarray(value).reshape(-1)
        if value.size == groups:
            value = np.repeat(value, channels // groups)
        if value.size != channels:
            raise ValueError(f"GroupNormalization: a gain or bias of {value.size} elements for "
                             f"{channels} channels in {groups} groups")
        affine.append(_per_channel(value, x.ndim))
    return (y * affine[0] + affine[1]).astype(x.dtype, copy=False)


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


def lrn(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX LRN (local response normalization across channels, axis 1): x divided by
    (bias + alpha/size * the sum of x^2 over the ``size`` channels around it)^beta, the window
    floor((size - 1)/2) channels before and ceil((size - 1)/2) after, cut at the ends. The
    zoo's AlexNet, CaffeNet, GoogLeNet and Inception-v1 (opsets 3 to 9) hold it."""
    x = np.asarray(inputs[0])
    size = int(attrs["size"])
    alpha = float(attrs.get("alpha", 0.0001))
    beta = float(attrs.get("beta", 0.75))
    bias = float(attrs.get("bias", 1.0))
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    square = x.astype(np.float64) ** 2
    channels = x.shape[1]
    total = np.zeros_like(square)
    for c in range(channels):
        total[:, c] = square[:, max(0, c - before):min(channels, c + after + 1)].sum(axis=1)
    return (x / (bias + alpha / size * total) ** beta).astype(x.dtype, copy=False)


def attention(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Attention (opset 23) without a key/value cache: softmax(Q K^T * scale + mask) V per
    head. Q, K, V are (batch, heads, length, size), or (batch, length, heads * size) with the
    ``q_num_heads`` / ``kv_num_heads`` attributes (the output then takes Q's form); key and
    value heads repeat over the query heads they serve (grouped queries). ``scale`` defaults
    to 1/sqrt(size) (a ``softcap`` is not computed: no declaration takes one); the optional
    mask is boolean (false: not attended) or added; ``is_causal`` hides the keys
    after each query's position; a query that sees no key gives 0."""
    q, k, v = (np.asarray(x) for x in inputs[:3])
    mask = inputs[3] if len(inputs) > 3 else None
    flat = q.ndim == 3
    if flat:
        q = _heads(q, int(attrs["q_num_heads"]))
        k = _heads(k, int(attrs["kv_num_heads"]))
        v = _heads(v, int(attrs["kv_num_heads"]))
    groups = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
    scale = float(attrs.get("scale", 0.0)) or attention_scale([q.shape], {})
    scores = (q.astype(np.float64) @ np.swapaxes(k, -1, -2).astype(np.float64)) * scale
    if mask is not None:
        mask = np.asarray(mask)
        # an added mask in the scores' own type, as onnxruntime adds it; its lowest value
        # hides the key, as false does in a boolean mask
        hidden = mask if mask.dtype == np.bool_ else mask > np.finfo(q.dtype).min
        added = 0.0 if mask.dtype == np.bool_ else mask.astype(q.dtype)
        scores = np.where(hidden, (scores.astype(q.dtype) + added).astype(np.float64), _HIDDEN)
    if int(attrs.get("is_causal", 0)):  # upper-left aligned: query i sees keys 0 .. i
        queries, keys = scores.shape[-2:]
        hidden = np.arange(keys)[None, :] > np.arange(queries)[:, None]
        scores = np.where(hidden, _HIDDEN, scores)
    seen = np.isfinite(scores.max(axis=-1, keepdims=True))  # a query that sees a key
    weights = softmax([np.where(seen, scores, 0.0)], {}) * seen
    out = weights @ v.astype(np.float64)
    if flat:
        out = np.swapaxes(out, 1, 2).reshape(out.shape[0], out.shape[2], -1)
    return out.astype(q.dtype)


def attention_scale(shapes: Sequence[tuple | None], attrs: Mapping[str, Any]) -> float | None:
    """ONNX Attention's ``scale`` where the node leaves it out (the schema gives no default):
    1/sqrt of Q's head size, rounded to float32 as onnxruntime computes it and as a written
    attribute holds it. The head size is Q's last axis (4-D), or its width over
    ``q_num_heads`` (3-D); None where the shape does not tell it (unknown, a symbolic
    dimension), so that the engine never rescales a value it guessed."""
    q = shapes[0] if shapes else None
    if q is None or len(q) not in (3, 4) or not isinstance(q[-1], numbers.Integral):
        return None
    size = int(q[-1])
    if len(q) == 3:
        heads = attrs.get("q_num_heads")
        if not isinstance(heads, numbers.Integral) or heads <= 0 or size % heads:
            return None
        size //= int(heads)
    return float(np.float32(1.0 / np.sqrt(size))) if size > 0 else None


# a hidden key's score; a query that sees no key (every key hidden by a boolean mask or by
# causality) gets 0, as onnxruntime computes it, not the NaN of a softmax over no element
_HIDDEN = -np.inf


def _heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(batch, length, heads * size) -> (batch, heads, length, size)."""
    batch, length, width = x.shape
    return np.swapaxes(x.reshape(batch, length, heads, width // heads), 1, 2)
