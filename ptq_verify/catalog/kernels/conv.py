"""Conv and ConvTranspose by im2col and one matrix product per group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .attributes import integers, text
from .precision import at_least_single
from .windows import geometry, windows


def conv(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Conv (any number of spatial axes): X (N, C, *in), W (M, C/group, *k), optional B."""
    x, w = np.asarray(inputs[0]), at_least_single(inputs[1])
    bias = inputs[2] if len(inputs) > 2 else None
    group = int(attrs.get("group", 1))
    geo = geometry(attrs, x.shape[2:], tuple(w.shape[2:]))
    cols = windows(at_least_single(x), geo)  # (N, C, *out, *k)
    n, channels = x.shape[:2]
    rank = len(geo.kernel)
    out_shape = cols.shape[2 : 2 + rank]
    per_group = channels // group
    # (N, G, C/G, *out, *k) -> (N, G, *out, C/G, *k) -> (N, G, P, C/G * K)
    cols = cols.reshape(n, group, per_group, *cols.shape[2:])
    order = (0, 1, *range(3, 3 + rank), 2, *range(3 + rank, 3 + 2 * rank))
    cols = cols.transpose(order).reshape(n, group, int(np.prod(out_shape)), -1)
    filters = w.reshape(group, w.shape[0] // group, -1)  # (G, M/G, C/G * K)
    y = np.matmul(cols, filters.transpose(0, 2, 1))  # (N, G, P, M/G)
    y = y.transpose(0, 1, 3, 2).reshape(n, w.shape[0], *out_shape)
    if bias is not None:
        y = y + np.asarray(bias).reshape(1, -1, *([1] * rank))
    return y.astype(x.dtype, copy=False)


def conv_transpose(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX ConvTranspose as a stride-1 Conv of the zero-stuffed input with the flipped kernel.

    Supports group, strides, dilations, pads and output_padding; ``output_shape`` and
    ``auto_pad`` other than NOTSET/VALID raise NotImplementedError.
    """
    x, w = np.asarray(inputs[0]), np.asarray(inputs[1])
    bias = inputs[2] if len(inputs) > 2 else None
    if "output_shape" in attrs or text(attrs, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise NotImplementedError("ConvTranspose: output_shape and SAME auto_pad are not supported")
    rank = x.ndim - 2
    kernel = tuple(integers(attrs, "kernel_shape") or w.shape[2:])
    strides = integers(attrs, "strides") or [1] * rank
    dilations = integers(attrs, "dilations") or [1] * rank
    pads = [0] * (2 * rank) if text(attrs, "auto_pad", "NOTSET") == "VALID" else (
        integers(attrs, "pads") or [0] * (2 * rank)
    )
    extra = integers(attrs, "output_padding") or [0] * rank
    group = int(attrs.get("group", 1))
    stuffed_shape = [(size - 1) * s + 1 for size, s in zip(x.shape[2:], strides)]
    stuffed = np.zeros((*x.shape[:2], *stuffed_shape), dtype=x.dtype)
    stuffed[(slice(None), slice(None), *(slice(None, None, s) for s in strides))] = x
    begin = [(k - 1) * d - p for k, d, p in zip(kernel, dilations, pads[:rank])]
    end = [(k - 1) * d - p + e for k, d, p, e in zip(kernel, dilations, pads[rank:], extra)]
    stuffed = np.pad(
        stuffed, [(0, 0), (0, 0)] + [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    )
    crop = tuple(
        slice(max(0, -b), size - max(0, -e))
        for b, e, size in zip(begin, end, stuffed.shape[2:])
    )
    stuffed = stuffed[(slice(None), slice(None), *crop)]
    channels, per_group_out = w.shape[0], w.shape[1]
    flipped = np.flip(w, axis=tuple(range(2, 2 + rank)))
    flipped = flipped.reshape(group, channels // group, per_group_out, *kernel)
    flipped = flipped.swapaxes(1, 2).reshape(group * per_group_out, channels // group, *kernel)
    inner = {"dilations": dilations, "group": group, "kernel_shape": list(kernel)}
    return conv([stuffed, flipped, bias], inner)
