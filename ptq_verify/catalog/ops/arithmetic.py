"""Element-wise operators of several input tensors, each tensor with its own scale.

ONNX Max, Min, Sum and Mean are variadic: the witness shows two or three inputs, an ONNX node
may have any number; every input plays the same role, so the rule found for the witness holds
for all of them.
"""

from __future__ import annotations

import numpy as np

from ..kernels import elementwise
from ..operator import Operator

OPERATORS = (
    Operator("Add", "a, b", "a + b", kernel=lambda a, b: np.add(a, b), onnx_type="Add",
             doc="a + b, broadcast."),
    Operator("Sub", "a, b", "a - b", kernel=lambda a, b: np.subtract(a, b), onnx_type="Sub",
             doc="a - b, broadcast."),
    Operator("Mul", "a, b", "a*b", kernel=lambda a, b: np.multiply(a, b), onnx_type="Mul",
             doc="a * b, broadcast; the output scale is the product of the input scales."),
    Operator("Div", "a, b", "a/b", kernel=lambda a, b: np.divide(a, b), onnx_type="Div",
             onnx_kernel=elementwise.divide,
             doc="a / b for b != 0 (integer tensors divide truncating toward zero in ONNX)."),
    Operator("Mod", "a, b", "a - b*floor(a/b)", kernel=lambda a, b: np.mod(a, b),
             onnx_type="Mod", onnx_kernel=elementwise.modulo, onnx_match={"fmod": 0},
             doc="a mod b with the divisor's sign (ONNX Mod, fmod = 0: integers; Swin's "
                 "window padding, relative positions)."),
    Operator("FMod", "a, b", "a - b*sign(a/b)*floor(abs(a/b))", kernel=lambda a, b: np.fmod(a, b),
             onnx_type="Mod", onnx_kernel=elementwise.modulo, onnx_match={"fmod": 1},
             doc="a mod b with the dividend's sign, C's fmod (ONNX Mod, fmod = 1: floats)."),
    Operator("Max", "a, b", "max(a, b)", kernel=lambda a, b: np.maximum(a, b), onnx_type="Max",
             onnx_kernel=elementwise.variadic_max, onnx_variadic=True,
             doc="Element-wise maximum (variadic)."),
    Operator("Min", "a, b", "min(a, b)", kernel=lambda a, b: np.minimum(a, b), onnx_type="Min",
             onnx_kernel=elementwise.variadic_min, onnx_variadic=True,
             doc="Element-wise minimum (variadic)."),
    Operator("Sum", "a, b, c", "a + b + c", kernel=lambda a, b, c: a + b + c, onnx_type="Sum",
             onnx_kernel=elementwise.variadic_sum, onnx_variadic=True,
             doc="Element-wise sum (variadic)."),
    Operator("Mean", "a, b, c", "(a + b + c)/3", kernel=lambda a, b, c: (a + b + c) / 3,
             onnx_type="Mean", onnx_kernel=elementwise.variadic_mean, onnx_variadic=True,
             doc="Element-wise mean (variadic)."),
)
