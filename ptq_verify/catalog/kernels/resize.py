"""ONNX Resize in ``nearest``, ``linear`` and ``cubic`` modes, one axis at a time (all three
are separable).

Each resized axis maps output index i to a coordinate in the input by the node's
``coordinate_transformation_mode``; nearest mode takes the input element that coordinate rounds
to (by ``nearest_mode``), linear mode blends the two neighbours, the coordinate clamped to the
input as the specification's edge padding does, and cubic mode blends four neighbours with
Keys' cubic weights (``cubic_coeff_a``), neighbours beyond the edge repeating it or, with
``exclude_outside``, weighing nothing. ``tf_crop_and_resize``, ``antialias`` and a
``keep_aspect_ratio_policy`` other than ``stretch`` are not implemented (NotImplementedError
names them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .attributes import integers, normalised_axes, text

_ROUNDING = {
    "round_prefer_floor": lambda c: np.ceil(c - 0.5),
    "round_prefer_ceil": lambda c: np.floor(c + 0.5),
    "floor": np.floor,
    "ceil": np.ceil,
}


def resize(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Resize (opset 10: X, scales; opset 11+: X, roi, scales, sizes)."""
    x = np.asarray(inputs[0])
    mode = text(attrs, "mode", "nearest")
    transform = text(attrs, "coordinate_transformation_mode", "half_pixel")
    unsupported = [
        f"{name}={value!r}" for name, value, default in (
            ("mode", mode, ("nearest", "linear", "cubic")),
            ("coordinate_transformation_mode", transform,
             ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
              "tf_half_pixel_for_nn")),
            ("antialias", int(attrs.get("antialias", 0)), (0,)),
            ("keep_aspect_ratio_policy", text(attrs, "keep_aspect_ratio_policy", "stretch"),
             ("stretch",)),
        ) if value not in default
    ]
    if unsupported:
        raise NotImplementedError(f"Resize: {', '.join(unsupported)} is not supported")
    scales_in = inputs[1] if len(inputs) == 2 else (inputs[2] if len(inputs) > 2 else None)
    sizes_in = inputs[3] if len(inputs) > 3 else None
    axes = normalised_axes(integers(attrs, "axes") or range(x.ndim), x.ndim)
    if sizes_in is not None and np.size(sizes_in):
        sizes = [int(v) for v in np.asarray(sizes_in).reshape(-1)]
        scales = [size / x.shape[a] for size, a in zip(sizes, axes)]
    else:
        scales = [float(v) for v in np.asarray(scales_in).reshape(-1)]
        sizes = [int(np.floor(x.shape[a] * scale)) for scale, a in zip(scales, axes)]
    rounding = _ROUNDING[text(attrs, "nearest_mode", "round_prefer_floor")]
    out = x
    for axis, size, scale in zip(axes, sizes, scales):
        if size == x.shape[axis] and scale == 1.0:
            continue
        coordinate = _source_coordinates(transform, x.shape[axis], size, scale)
        if mode == "nearest":
            index = np.clip(rounding(coordinate), 0, x.shape[axis] - 1).astype(np.int64)
            out = np.take(out, index, axis=axis)
        elif mode == "linear":
            out = _linear(out, axis, np.clip(coordinate, 0, x.shape[axis] - 1))
        else:
            out = _cubic(out, axis, coordinate, float(attrs.get("cubic_coeff_a", -0.75)),
                         bool(int(attrs.get("exclude_outside", 0))))
    return out.astype(x.dtype, copy=False)


def _source_coordinates(transform: str, length: int, size: int, scale: float) -> np.ndarray:
    """Where each output index of one axis falls in the input (the specification's formulas)."""
    i = np.arange(size, dtype=np.float64)
    if transform == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if transform == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if size > 1 else np.zeros(size)
    if transform == "tf_half_pixel_for_nn":  # tf.image.resize(method="nearest") by tf2onnx
        return (i + 0.5) / scale
    if transform == "align_corners":
        return i * (length - 1) / (size - 1) if size > 1 else np.zeros(size)
    return i / scale  # asymmetric


def _linear(x: np.ndarray, axis: int, coordinate: np.ndarray) -> np.ndarray:
    low = np.floor(coordinate).astype(np.int64)
    high = np.minimum(low + 1, x.shape[axis] - 1)
    weight = (coordinate - low).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    below, above = np.take(x, low, axis=axis), np.take(x, high, axis=axis)
    return below * (1 - weight) + above * weight


def _cubic(x: np.ndarray, axis: int, coordinate: np.ndarray, a: float,
           exclude_outside: bool) -> np.ndarray:
    """Four neighbours floor(c) - 1 .. floor(c) + 2 of each coordinate c, weighed by Keys'
    kernel with coefficient ``a`` at their distances to c."""
    length = x.shape[axis]
    base = np.floor(coordinate).astype(np.int64)
    out = 0.0
    taps = [base + k for k in (-1, 0, 1, 2)]
    weights = [_keys(np.abs(coordinate - tap), a) for tap in taps]
    if exclude_outside:
        weights = [np.where((tap >= 0) & (tap < length), w, 0.0) for tap, w in zip(taps, weights)]
        total = sum(weights)
        weights = [w / total for w in weights]
    shape = [-1 if k == axis else 1 for k in range(x.ndim)]
    for tap, weight in zip(taps, weights):
        out = out + np.take(x, np.clip(tap, 0, length - 1), axis=axis) * weight.reshape(shape)
    return out


def _keys(distance: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel at ``distance`` (>= 0)."""
    d = distance
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))
