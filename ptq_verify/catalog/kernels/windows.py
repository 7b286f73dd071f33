"""Sliding windows over the spatial axes: the im2col step shared by convolution and pooling.

The windows are numpy views (no Python loop over pixels); the caller reduces or multiplies them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .attributes import integers, text


@dataclass(frozen=True)
class WindowGeometry:
    """Kernel extent, strides, dilations and padding per spatial axis."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    ceil_end: tuple[int, ...] = ()  # cells past pads_end that ceil_mode's last windows reach

    @property
    def extent(self) -> tuple[int, ...]:
        """Span of one dilated kernel window."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))


def geometry(
    attrs: Mapping[str, Any], spatial: tuple[int, ...], kernel: tuple[int, ...] | None = None
) -> WindowGeometry:
    """The window geometry of a Conv or pooling node on inputs of spatial shape ``spatial``.

    Honours ``kernel_shape``, ``strides``, ``dilations``, ``pads`` and ``auto_pad``
    (NOTSET, VALID, SAME_UPPER, SAME_LOWER) and ``ceil_mode``: the output takes one more window
    where one would start before the end of the input and its left padding, reaching past the
    right padding (``ceil_end`` cells, which hold no value: see :func:`windows`).
    """
    rank = len(spatial)
    kernel = tuple(integers(attrs, "kernel_shape") or kernel or ())
    if len(kernel) != rank:
        raise ValueError(f"kernel_shape {list(kernel)} does not match {rank} spatial axes")
    strides = tuple(integers(attrs, "strides") or [1] * rank)
    dilations = tuple(integers(attrs, "dilations") or [1] * rank)
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    auto_pad = text(attrs, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, stride, span in zip(spatial, strides, extent):
            out = -(-size // stride)
            total = max(0, (out - 1) * stride + span - size)
            small, large = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
    elif auto_pad == "VALID":
        begin, end = [0] * rank, [0] * rank
    elif auto_pad == "NOTSET":
        pads = integers(attrs, "pads") or [0] * (2 * rank)
        begin, end = pads[:rank], pads[rank:]
    else:
        raise ValueError(f"unknown auto_pad {auto_pad!r}")
    ceil_end = [0] * rank
    if int(attrs.get("ceil_mode", 0)):
        for axis, (size, stride, span, b, e) in enumerate(
                zip(spatial, strides, extent, begin, end)):
            room = size + b + e - span
            last = math.ceil(room / stride) * stride  # start of the last window
            if last >= size + b:  # it would start in the right padding: dropped
                last -= stride
            ceil_end[axis] = max(0, last - room)
    return WindowGeometry(kernel, strides, dilations, tuple(begin), tuple(end), tuple(ceil_end))


def windows(x: np.ndarray, geo: WindowGeometry, pad_value: float = 0.0,
            ceil_value: float | None = None) -> np.ndarray:
    """Every window of ``x`` (N, C, *spatial): shape (N, C, *out, *kernel), a strided view.
    Padding cells hold ``pad_value``, the cells past them that ceil_mode reaches
    ``ceil_value`` (by default ``pad_value``; an average's count of padding cells gives 0)."""
    rank = len(geo.kernel)
    widths = [(0, 0), (0, 0)] + list(zip(geo.pads_begin, geo.pads_end))
    if any(b < 0 or e < 0 for b, e in widths):
        raise NotImplementedError("negative pads are not supported")
    padded = np.pad(x, widths, constant_values=pad_value) if any(sum(w) for w in widths) else x
    if any(geo.ceil_end):
        beyond = [(0, 0), (0, 0)] + [(0, c) for c in geo.ceil_end]
        padded = np.pad(padded, beyond,
                        constant_values=pad_value if ceil_value is None else ceil_value)
    axes = tuple(range(2, 2 + rank))
    view = np.lib.stride_tricks.sliding_window_view(padded, geo.extent, axis=axes)
    outer = (slice(None), slice(None), *(slice(None, None, s) for s in geo.strides))
    inner = tuple(slice(None, None, d) for d in geo.dilations)
    return view[outer + inner]
