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


# A window's elements all lie in one channel (ONNX pools over the spatial axes alone), so each
# pool is declared not to mix channels: a witness of several elements is taken to otherwise.
OPERATORS = (
    Operator("MaxPool", _WINDOW, "max(x0, x1, x2, x3)", kernel=_max4, onnx_type="MaxPool",
             onnx_kernel=pooling.max_pool, mixes_channels=False,
             doc="Maximum over each window (2x2 in the witness)."),
    Operator("AveragePool", _WINDOW, "(x0 + x1 + x2 + x3)/4", kernel=_mean4,
             onnx_type="AveragePool", onnx_kernel=pooling.average_pool, mixes_channels=False,
             doc="Mean over each window; padded cells are zeros when they count."),
    Operator(
        "LpPool", _WINDOW, "sqrt(x0**2 + x1**2 + x2**2 + x3**2)",
        kernel=lambda x0, x1, x2, x3: np.sqrt(x0**2 + x1**2 + x2**2 + x3**2),
        onnx_type="LpPool", onnx_kernel=pooling.lp_pool, onnx_match={"p": 2},
        mixes_channels=False,
        doc="Euclidean norm of each window (ONNX LpPool with p = 2).",
    ),
    Operator("GlobalAveragePool", _WINDOW, "(x0 + x1 + x2 + x3)/4", kernel=_mean4,
             onnx_type="GlobalAveragePool", onnx_kernel=pooling.global_average_pool,
             mixes_channels=False,
             doc="Mean over all spatial positions of a channel."),
    Operator("GlobalMaxPool", _WINDOW, "max(x0, x1, x2, x3)", kernel=_max4,
             onnx_type="GlobalMaxPool", onnx_kernel=pooling.global_max_pool,
             mixes_channels=False,
             doc="Maximum over all spatial positions of a channel."),
)
