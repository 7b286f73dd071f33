"""Element-wise mathematical functions of one tensor ``x``.

ONNX Pow takes its exponent as a second input, usually a constant. A single declaration with the
exponent as a parameter has no fixed degree, so each common exponent is its own operator (Pow2,
Pow3, PowHalf, PowMinusHalf) bound to ONNX Pow nodes whose exponent input is that constant
(``onnx_match``); a Pow node with any other or a non-constant exponent has no declaration.
"""

from __future__ import annotations

import numpy as np

from ..kernels import elementwise
from ..kernels.functions import erf
from ..operator import Operator


def _pow(name: str, expr: str, exponent: float, kernel, doc: str) -> Operator:
    return Operator(
        name, "x", expr, kernel=kernel, onnx_type="Pow", onnx_inputs=("x", None),
        onnx_kernel=elementwise.power, onnx_match={1: exponent}, doc=doc,
    )


OPERATORS = (
    Operator("Abs", "x", "abs(x)", kernel=lambda x: np.abs(x), onnx_type="Abs", doc="|x|."),
    Operator("Neg", "x", "-x", kernel=lambda x: np.negative(x), onnx_type="Neg", doc="-x."),
    Operator("Sign", "x", "sign(x)", kernel=lambda x: np.sign(x), onnx_type="Sign",
             doc="-1, 0 or 1 by the sign of x."),
    Operator("Exp", "x", "exp(x)", kernel=lambda x: np.exp(x), onnx_type="Exp", doc="e^x."),
    Operator("Log", "x", "log(x)", kernel=lambda x: np.log(x), onnx_type="Log",
             doc="Natural logarithm, defined for x > 0."),
    Operator("Sqrt", "x", "sqrt(x)", kernel=lambda x: np.sqrt(x), onnx_type="Sqrt",
             doc="Square root, defined for x >= 0."),
    Operator("Reciprocal", "x", "1/x", kernel=lambda x: np.reciprocal(x), onnx_type="Reciprocal",
             doc="1/x, defined for x != 0."),
    _pow("Pow2", "x**2", 2, lambda x: x**2, "ONNX Pow with the constant exponent 2."),
    _pow("Pow3", "x**3", 3, lambda x: x**3, "ONNX Pow with the constant exponent 3."),
    _pow("PowHalf", "sqrt(x)", 0.5, lambda x: np.sqrt(x),
         "ONNX Pow with the constant exponent 0.5 (x >= 0)."),
    _pow("PowMinusHalf", "1/sqrt(x)", -0.5, lambda x: 1 / np.sqrt(x),
         "ONNX Pow with the constant exponent -0.5 (x > 0), an inverse square root."),
    Operator("Sin", "x", "sin(x)", kernel=lambda x: np.sin(x), onnx_type="Sin", doc="sin(x)."),
    Operator("Cos", "x", "cos(x)", kernel=lambda x: np.cos(x), onnx_type="Cos", doc="cos(x)."),
    Operator("Tan", "x", "sin(x)/cos(x)", kernel=lambda x: np.tan(x), onnx_type="Tan",
             doc="tan(x), defined where cos(x) != 0."),
    Operator("Sinh", "x", "(exp(x) - exp(-x))/2", kernel=lambda x: np.sinh(x), onnx_type="Sinh",
             doc="Hyperbolic sine."),
    Operator("Cosh", "x", "(exp(x) + exp(-x))/2", kernel=lambda x: np.cosh(x), onnx_type="Cosh",
             doc="Hyperbolic cosine."),
    Operator("Asin", "x", "asin(x)", kernel=lambda x: np.arcsin(x), onnx_type="Asin",
             doc="Inverse sine, defined for -1 <= x <= 1."),
    Operator("Acos", "x", "acos(x)", kernel=lambda x: np.arccos(x), onnx_type="Acos",
             doc="Inverse cosine, defined for -1 <= x <= 1 (torch.acos: angles from cosines)."),
    Operator("Acosh", "x", "acosh(x)", kernel=lambda x: np.arccosh(x), onnx_type="Acosh",
             doc="Inverse hyperbolic cosine, defined for x >= 1."),
    Operator("Atanh", "x", "atanh(x)", kernel=lambda x: np.arctanh(x), onnx_type="Atanh",
             doc="Inverse hyperbolic tangent, defined for -1 < x < 1 (undoing a tanh squash)."),
    Operator("Asinh", "x", "log(x + sqrt(x**2 + 1))", kernel=lambda x: np.arcsinh(x),
             onnx_type="Asinh",
             doc="Inverse hyperbolic sine."),
    Operator("Atan", "x", "atan(x)", kernel=lambda x: np.arctan(x), onnx_type="Atan",
             doc="Inverse tangent (torch.atan2 exports it beside Div and Where)."),
    Operator("Erf", "x", "erf(x)", kernel=erf, onnx_type="Erf", doc="The error function."),
    Operator("Floor", "x", "floor(x)", kernel=lambda x: np.floor(x), onnx_type="Floor",
             doc="Largest integer <= x."),
    Operator("Ceil", "x", "ceil(x)", kernel=lambda x: np.ceil(x), onnx_type="Ceil",
             doc="Smallest integer >= x."),
    Operator("Round", "x", "round(x)", kernel=lambda x: np.round(x), onnx_type="Round",
             doc="Nearest integer, ties to even (ONNX and numpy)."),
)
