"""Reference ceilings for the SQNR columns: the error of one rounding alone, in float.

They tell how much of a quantized model's error any n-bit engine must pay on a given model:
rounding only the weights (per output channel, symmetric max-abs), or only the output logits
(signed, calibrated range). An engine that rounds both cannot beat either.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx_session import run_session


def round_symmetric(values: np.ndarray, reach: np.ndarray | float, bits: int) -> np.ndarray:
    """Round to the signed n-bit grid whose largest code is at ``reach``; clip beyond it."""
    levels = 2 ** (bits - 1) - 1
    step = np.where(np.asarray(reach) > 0, np.asarray(reach) / levels, 1.0)
    return np.clip(np.round(values / step), -levels, levels) * step


def weights_rounded(model: onnx.ModelProto, bits: int) -> onnx.ModelProto:
    """A copy of ``model`` whose weight matrices and kernels (initializers of rank >= 2) are
    rounded to ``bits`` bits per output channel (axis 0); biases and activations stay float."""
    rounded = onnx.ModelProto()
    rounded.CopyFrom(model)
    for initializer in rounded.graph.initializer:
        weights = numpy_helper.to_array(initializer)
        if weights.ndim < 2:
            continue
        reach = np.abs(weights).reshape(len(weights), -1).max(axis=1)
        reach = reach.reshape(-1, *([1] * (weights.ndim - 1)))
        values = round_symmetric(weights, reach, bits).astype(np.float32)
        initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
    return rounded


def weights_only_logits(model: onnx.ModelProto, feeds: dict[str, np.ndarray], bits: int):
    """The logits of the model with only its weights rounded, run in onnxruntime."""
    return run_session(weights_rounded(model, bits).SerializeToString(), feeds)
