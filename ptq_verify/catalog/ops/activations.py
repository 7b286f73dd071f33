"""Activation functions: element-wise, one input tensor ``x``.

Slopes, thresholds and bounds that ONNX exposes as attributes or inputs are *parameters* (their
sample values are the ONNX defaults, so the witness kernel runs ONNX semantics); numbers fixed
by the operator's definition (Softplus's 1, Gelu's 1/2 and sqrt(2)) are constants.
"""

from __future__ import annotations

import numpy as np

from ..kernels import elementwise
from ..kernels.functions import clip, gelu, gelu_tanh, sigmoid, softplus
from ..operator import Operator


def _celu(x, alpha):
    with np.errstate(over="ignore"):  # exp overflows only where min() discards it
        return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(x / alpha))


OPERATORS = (
    Operator("Identity", "x", "x", kernel=lambda x: x, onnx_type="Identity",
             doc="y = x."),
    Operator("Relu", "x", "max(x, 0)", kernel=lambda x: np.maximum(x, 0), onnx_type="Relu",
             doc="y = max(x, 0)."),
    Operator(
        "LeakyRelu", "x", "where(x >= 0, x, alpha*x)", params={"alpha": "0.01"},
        kernel=lambda x, alpha: np.where(x >= 0, x, alpha * x), onnx_type="LeakyRelu",
        onnx_attrs={"alpha": "alpha"},
        doc="Two slopes: x for x >= 0, alpha*x below; alpha is the ONNX attribute.",
    ),
    Operator(
        "PRelu", "x", "where(x >= 0, x, slope*x)", params={"slope": "0.25"},
        kernel=lambda x, slope: np.where(x >= 0, x, slope * x), onnx_type="PRelu",
        onnx_inputs=("x", "slope"),
        doc="LeakyRelu with a learned slope tensor (ONNX input 1, broadcast to x).",
    ),
    Operator(
        "Elu", "x", "where(x > 0, x, alpha*(exp(x) - 1))", params={"alpha": 1},
        kernel=lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
        onnx_type="Elu", onnx_attrs={"alpha": "alpha"},
        doc="x for x > 0, alpha*(exp(x) - 1) below.",
    ),
    Operator(
        "Selu", "x", "where(x > 0, gamma*x, gamma*(alpha*exp(x) - alpha))",
        params={"alpha": "1.67326319217681884765625", "gamma": "1.05070102214813232421875"},
        kernel=lambda x, alpha, gamma: np.where(
            x > 0, gamma * x, gamma * alpha * np.expm1(np.minimum(x, 0))
        ),
        onnx_type="Selu", onnx_attrs={"alpha": "alpha", "gamma": "gamma"},
        doc="Scaled Elu; alpha and gamma are ONNX attributes (defaults as sample values).",
    ),
    Operator(
        "Celu", "x", "max(x, 0) + min(0, alpha*(exp(x/alpha) - 1))", params={"alpha": 1},
        kernel=_celu,
        onnx_type="Celu", onnx_attrs={"alpha": "alpha"},
        doc="Continuously differentiable Elu: max(0, x) + min(0, alpha*(exp(x/alpha) - 1)).",
    ),
    Operator("Sigmoid", "x", "sigmoid(x)", kernel=sigmoid, onnx_type="Sigmoid",
             doc="1 / (1 + exp(-x))."),
    Operator(
        "HardSigmoid", "x", "max(0, min(1, alpha*x + beta))",
        params={"alpha": "0.2", "beta": "0.5"},
        kernel=lambda x, alpha, beta: clip(alpha * x + beta, 0, 1), onnx_type="HardSigmoid",
        onnx_attrs={"alpha": "alpha", "beta": "beta"},
        doc="max(0, min(1, alpha*x + beta)). alpha and beta are parameters (ONNX attributes), "
        "not constants: alpha -> alpha/s makes it scale-invariant, so the engine can absorb "
        "the scale into alpha instead of inserting a compensation node.",
    ),
    Operator(
        "HardSwish", "x", "x*max(0, min(1, x/6 + 0.5))",
        kernel=lambda x: x * clip(x / 6 + 0.5, 0, 1), onnx_type="HardSwish",
        doc="x * HardSigmoid(x) with ONNX's fixed alpha = 1/6, beta = 1/2 (constants: "
        "HardSwish has no attributes).",
    ),
    Operator("Tanh", "x", "tanh(x)", kernel=lambda x: np.tanh(x), onnx_type="Tanh", doc="tanh(x)."),
    Operator("Softplus", "x", "softplus(x)", kernel=softplus, onnx_type="Softplus",
             doc="log(1 + exp(x))."),
    Operator("Softsign", "x", "x/(1 + abs(x))", kernel=lambda x: x / (1 + np.abs(x)),
             onnx_type="Softsign", doc="x / (1 + |x|)."),
    Operator(
        "Gelu", "x", "x/2*(1 + erf(x/sqrt(2)))", kernel=gelu, onnx_type="Gelu",
        onnx_kernel=elementwise.gelu_any, onnx_match={"approximate": "none"},
        doc="Exact GELU, x * Phi(x) with the normal CDF via erf (ONNX Gelu, approximate='none').",
    ),
    Operator(
        "GeluTanh", "x", "x/2*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x**3)))", kernel=gelu_tanh,
        onnx_type="Gelu", onnx_kernel=elementwise.gelu_any, onnx_match={"approximate": "tanh"},
        doc="GELU's tanh approximation (ONNX Gelu with approximate='tanh').",
    ),
    Operator(
        "Silu", "x", "x*sigmoid(x)", kernel=lambda x: x * sigmoid(x),
        doc="x * sigmoid(x), a.k.a. Swish-1. ONNX expresses it as Mul(x, Sigmoid(x)), or as "
        "Swish (declared separately with its alpha).",
    ),
    Operator(
        "Swish", "x", "x*sigmoid(alpha*x)", params={"alpha": 1},
        kernel=lambda x, alpha: x * sigmoid(alpha * x), onnx_type="Swish",
        onnx_attrs={"alpha": "alpha"},
        doc="x * sigmoid(alpha*x); alpha is the ONNX attribute (opset 24).",
    ),
    Operator("Mish", "x", "x*tanh(softplus(x))", kernel=lambda x: x * np.tanh(softplus(x)),
             onnx_type="Mish", doc="x * tanh(log(1 + exp(x)))."),
    Operator(
        "ThresholdedRelu", "x", "where(x > alpha, x, 0)", params={"alpha": 1},
        kernel=lambda x, alpha: np.where(x > alpha, x, 0.0), onnx_type="ThresholdedRelu",
        onnx_attrs={"alpha": "alpha"}, doc="x where x > alpha, else 0.",
    ),
    Operator(
        "Shrink", "x", "where(x < -lambd, x + bias, where(x > lambd, x - bias, 0))",
        params={"lambd": "0.5", "bias": 0},
        kernel=lambda x, lambd, bias: np.where(
            x < -lambd, x + bias, np.where(x > lambd, x - bias, 0.0)
        ),
        onnx_type="Shrink", onnx_attrs={"lambd": "lambd", "bias": "bias"},
        doc="Soft/hard shrinkage: x + bias below -lambd, x - bias above lambd, 0 between.",
    ),
    Operator(
        "Clip", "x", "clip(x, lo, hi)", params={"lo": -1, "hi": 1}, kernel=clip,
        onnx_type="Clip", onnx_inputs=("x", "lo", "hi"), onnx_kernel=elementwise.clip,
        doc="min(max(x, lo), hi); the bounds are parameters (ONNX inputs 1 and 2).",
    ),
    Operator(
        "Relu6", "x", "clip(x, lo, hi)", params={"lo": 0, "hi": 6}, kernel=clip,
        onnx_type="Clip", onnx_inputs=("x", "lo", "hi"), onnx_kernel=elementwise.clip,
        onnx_match={1: 0, 2: 6},
        doc="Clip(x, 0, 6) with the bounds declared as parameters lo = 0, hi = 6 rather than "
        "constants: scaling x by s needs the bounds scaled to 0 and 6s (param_rescale), "
        "which is what a PTQ engine does with a Clip node. Bound to ONNX Clip nodes whose "
        "bounds are the constants 0 and 6.",
    ),
)
