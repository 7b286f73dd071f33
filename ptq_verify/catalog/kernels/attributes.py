"""Reading ONNX attributes and static inputs the same way in every kernel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def text(attrs: Mapping[str, Any], name: str, default: str) -> str:
    """A string attribute; onnx hands them over as bytes."""
    value = attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def integers(attrs: Mapping[str, Any], name: str) -> list[int] | None:
    """A list-of-ints attribute, or None when absent."""
    value = attrs.get(name)
    return None if value is None else [int(v) for v in value]


def axes_from(inputs: Sequence[Any], slot: int, attrs: Mapping[str, Any]) -> list[int] | None:
    """Axes given as an input (newer opsets) or as the ``axes`` attribute (older ones)."""
    if len(inputs) > slot and inputs[slot] is not None:
        return [int(a) for a in np.asarray(inputs[slot]).reshape(-1)]
    return integers(attrs, "axes")


def normalised_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    """Negative axes counted from the end, as ONNX allows."""
    return tuple(a + rank if a < 0 else a for a in axes)
