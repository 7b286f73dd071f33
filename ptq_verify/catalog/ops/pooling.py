"""Pooling, witnessed by one output element over a window of four input elements."""

from __future__ import annotations

import numpy as np

from ..kernels import pooling
from ..operator import Operator

_WINDOW = "x0 x1 x2 x3"


def _mean4(x0, x1, x2, x3):
    return (x0 + x1 + x2 + x3) / 4


def _max4(x0, x1, x2, x3):
    return np.maximum(np.maximum(x0, x1), np.maximum(x2, x3))


OPERATORS = (
    Operator("MaxPool", _WINDOW, "max(x0, x1, x2, x3)", kernel=_max4, onnx_type="MaxPool",
             onnx_kernel=pooling.max_pool, doc="Maximum over each window (2x2 in the witness)."),
    Operator("AveragePool", _WINDOW, "(x0 + x1 + x2 + x3)/4", kernel=_mean4,
             onnx_type="AveragePool", onnx_kernel=pooling.average_pool,
             doc="Mean over each window; padded cells are zeros when they count."),
    Operator(
        "LpPool", _WINDOW, "sqrt(x0**2 + x1**2 + x2**2 + x3**2)",
        kernel=lambda x0, x1, x2, x3: np.sqrt(x0**2 + x1**2 + x2**2 + x3**2),
        onnx_type="LpPool", onnx_kernel=pooling.lp_pool, onnx_match={"p": 2},
        doc="Euclidean norm of each window (ONNX LpPool with p = 2).",
    ),
    Operator("GlobalAveragePool", _WINDOW, "(x0 + x1 + x2 + x3)/4", kernel=_mean4,
             onnx_type="GlobalAveragePool", onnx_kernel=pooling.global_average_pool,
             doc="Mean over all spatial positions of a channel."),
    Operator("GlobalMaxPool", _WINDOW, "max(x0, x1, x2, x3)", kernel=_max4,
             onnx_type="GlobalMaxPool", onnx_kernel=pooling.global_max_pool,
             doc="Maximum over all spatial positions of a channel."),
)
