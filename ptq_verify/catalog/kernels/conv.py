"""Conv and ConvTranspose: im2col and one matrix product per group, with two shortcuts (a 1 x 1
convolution is one product, a depthwise one a sum over its taps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .attributes import integers, text
from .precision import at_least_single
from .windows import geometry, windows

_CACHED_VALUES = 1 << 16  # a depthwise block's sums (256 KB of float32): within a core's L2


def conv(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Conv (any number of spatial axes): X (N, C, *in), W (M, C/group, *k), optional B."""
    x, w = np.asarray(inputs[0]), at_least_single(inputs[1])
    xs = at_least_single(x)  # what the products take; the output is in x's own type
    if np.issubdtype(xs.dtype, np.floating) and np.issubdtype(w.dtype, np.floating):
        # ONNX gives X and W one type: the products run in the input's (float64 weights on
        # float32 activations, an engine's rescaled copy, would double the work)
        w = w.astype(xs.dtype, copy=False)
    bias = inputs[2] if len(inputs) > 2 else None
    group = int(attrs.get("group", 1))
    geo = geometry(attrs, x.shape[2:], tuple(w.shape[2:]))
    n, channels = x.shape[:2]
    rank = len(geo.kernel)
    if group == 1 and _pointwise(geo):
        y = np.matmul(w.reshape(w.shape[0], channels), xs.reshape(n, channels, -1))
        return _biased(y.reshape(n, w.shape[0], *x.shape[2:]), bias, rank, x.dtype)
    cols = windows(xs, geo)  # (N, C, *out, *k)
    if group == channels == w.shape[0]:
        return _biased(_depthwise(cols, w, rank), bias, rank, x.dtype)
    out_shape = cols.shape[2 : 2 + rank]
    per_group = channels // group
    # (N, G, C/G, *out, *k) -> (N, G, *out, C/G, *k) -> (N, G, P, C/G * K)
    cols = cols.reshape(n, group, per_group, *cols.shape[2:])
    order = (0, 1, *range(3, 3 + rank), 2, *range(3 + rank, 3 + 2 * rank))
    cols = cols.transpose(order).reshape(n, group, int(np.prod(out_shape)), -1)
    filters = w.reshape(group, w.shape[0] // group, -1)  # (G, M/G, C/G * K)
    y = np.matmul(cols, filters.transpose(0, 2, 1))  # (N, G, P, M/G)
    y = y.transpose(0, 1, 3, 2).reshape(n, w.shape[0], *out_shape)
    return _biased(y, bias, rank, x.dtype)


def _pointwise(geo) -> bool:
    """Whether each output pixel reads its own input pixel alone (1 x 1, stride 1, no pads):
    the convolution is then one matrix product, with no window copy of the input."""
    return (all(k == 1 for k in geo.kernel) and all(s == 1 for s in geo.strides)
            and not any(geo.pads_begin) and not any(geo.pads_end) and not any(geo.ceil_end))


def _depthwise(cols: np.ndarray, w: np.ndarray, rank: int) -> np.ndarray:
    """A depthwise convolution (one input channel, one filter each) as a sum over the kernel's
    taps of the windows' views times the tap's weights: the im2col path copies every window
    into a matrix first, and a product per channel of K columns makes that copy most of its
    time (EfficientNet-Lite1's equalization measure: 3x faster). The channels go in blocks
    whose sums stay in the cache while the taps pass over them (1.3-1.8x on its maps)."""
    taps = w.reshape(w.shape[0], -1)
    spatial = (1,) * rank
    y = np.empty(cols.shape[: 2 + rank], dtype=np.result_type(cols, taps))
    block = max(1, _CACHED_VALUES // max(1, y[:, :1].size))
    for start in range(0, y.shape[1], block):
        part = cols[:, start:start + block]
        total = y[:, start:start + block]
        total.fill(0)
        term = np.empty_like(total)
        for index, tap in enumerate(np.ndindex(*cols.shape[2 + rank:])):
            np.multiply(part[(Ellipsis, *tap)],
                        taps[start:start + block, index].reshape(-1, *spatial), out=term)
            total += term
    return y


def _biased(y: np.ndarray, bias, rank: int, dtype) -> np.ndarray:
    if bias is not None:
        y = y + np.asarray(bias).reshape(1, -1, *([1] * rank))
    return y.astype(dtype, copy=False)


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
