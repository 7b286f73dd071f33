"""Softmax family and normalisations, witnessed by one output element over three elements.

Statistics, gains, biases and epsilons are parameters: the checker decides which of them must be
rescaled (e.g. LayerNorm is degree 0 with eps -> s^2 eps, BatchNorm degree 1 with its mean and
bias rescaled).
"""

from __future__ import annotations

import numpy as np

from ..kernels import normalization
from ..operator import Operator

_THREE = "x0 x1 x2"
_MEAN = "((x0 + x1 + x2)/3)"
_VARIANCE = f"(((x0 - {_MEAN})**2 + (x1 - {_MEAN})**2 + (x2 - {_MEAN})**2)/3)"
_MEAN_SQUARE = "((x0**2 + x1**2 + x2**2)/3)"
_AFFINE = {"eps": "0.00001", "g": "1.5", "b": "0.25"}


def _standardised(x0, x1, x2, eps):
    m = (x0 + x1 + x2) / 3
    v = ((x0 - m) ** 2 + (x1 - m) ** 2 + (x2 - m) ** 2) / 3
    return (x0 - m) / np.sqrt(v + eps)


def _softmax_first(x0, x1, x2):
    top = np.maximum(np.maximum(x0, x1), x2)
    e0, e1, e2 = np.exp(x0 - top), np.exp(x1 - top), np.exp(x2 - top)
    return e0 / (e0 + e1 + e2)


def _log_softmax_first(x0, x1, x2):
    top = np.maximum(np.maximum(x0, x1), x2)
    return x0 - top - np.log(np.exp(x0 - top) + np.exp(x1 - top) + np.exp(x2 - top))


def _standardising(name: str, onnx_kernel, mixes_channels: bool, doc: str) -> Operator:
    """LayerNormalization, InstanceNormalization and GroupNormalization: standardise, then
    scale g and shift b."""
    return Operator(
        name, _THREE, f"(x0 - {_MEAN})/sqrt({_VARIANCE} + eps)*g + b", params=_AFFINE,
        kernel=lambda x0, x1, x2, eps, g, b: _standardised(x0, x1, x2, eps) * g + b,
        onnx_type=name, onnx_inputs=("x", "g", "b"), onnx_attrs={"epsilon": "eps"},
        onnx_kernel=onnx_kernel, mixes_channels=mixes_channels, doc=doc,
    )


def _attention_first(q, k0, k1, v0, v1, c):
    top = np.maximum(c * q * k0, c * q * k1)
    e0, e1 = np.exp(c * q * k0 - top), np.exp(c * q * k1 - top)
    return (e0 * v0 + e1 * v1) / (e0 + e1)


OPERATORS = (
    Operator(
        "Attention", "q, k0 k1, v0 v1",
        "(exp(c*q*k0)*v0 + exp(c*q*k1)*v1)/(exp(c*q*k0) + exp(c*q*k1))", params={"c": "1/4"},
        kernel=_attention_first, onnx_type="Attention", onnx_inputs=("q", "k", "v", None),
        onnx_attrs={"scale": "c"}, onnx_defaults={"scale": normalization.attention_scale},
        onnx_kernel=normalization.attention, onnx_match={"softcap": 0.0}, mixes_channels=True,
        doc="ONNX Attention (opset 23) without a key/value cache or a softcap: per head, "
        "softmax(Q K^T * scale + mask) V. Witness: a query of one element over two keys and "
        "their values, the scale c (the node's `scale` attribute; absent, 1/sqrt of the head "
        "size, read off Q's shape in the graph: where that is unknown such a node runs in "
        "float); the mask (boolean, or added) and causality only hide keys, so they are "
        "static.",
    ),
    Operator(
        "Softmax", _THREE, "exp(x0)/(exp(x0) + exp(x1) + exp(x2))", kernel=_softmax_first,
        onnx_type="Softmax", onnx_kernel=normalization.softmax, mixes_channels=True,
        doc="exp(x_i) / sum_j exp(x_j) along one axis; witness: the first of three elements.",
    ),
    Operator(
        "LogSoftmax", _THREE, "x0 - log(exp(x0) + exp(x1) + exp(x2))",
        kernel=_log_softmax_first, onnx_type="LogSoftmax",
        onnx_kernel=normalization.log_softmax, mixes_channels=True,
        doc="x_i - log(sum_j exp(x_j)) along one axis.",
    ),
    Operator(
        "Hardmax", _THREE, "where(x0 >= x1, where(x0 >= x2, 1, 0), 0)",
        kernel=lambda x0, x1, x2: np.where((x0 >= x1) & (x0 >= x2), 1.0, 0.0),
        onnx_type="Hardmax", onnx_kernel=normalization.hardmax, mixes_channels=True,
        doc="One-hot of the first maximum along one axis; witness: the first element's output.",
    ),
    _standardising(
        "LayerNormalization", normalization.layer_normalization, True,
        "(x - mean)/sqrt(var + eps)*g + b over the normalised axes (biased variance).",
    ),
    _standardising(
        "InstanceNormalization", normalization.instance_normalization, False,
        "LayerNorm's formula per sample and channel over the spatial positions.",
    ),
    _standardising(
        "GroupNormalization", normalization.group_normalization, True,
        "LayerNorm's formula per sample over each group of channels and the spatial positions, "
        "gain and bias per channel (opset 21) or per group (opset 18).",
    ),
    Operator(
        "BatchNormalization", "x", "(x - mean)/sqrt(var + eps)*gamma + beta",
        params={"mean": "0.5", "var": "2", "eps": "0.00001", "gamma": "1.5", "beta": "0.25"},
        kernel=lambda x, mean, var, eps, gamma, beta: (x - mean) / np.sqrt(var + eps) * gamma
        + beta,
        onnx_type="BatchNormalization",
        onnx_inputs=("x", "gamma", "beta", "mean", "var"), onnx_attrs={"epsilon": "eps"},
        onnx_kernel=normalization.batch_normalization,
        doc="Inference-mode BatchNorm: per-channel affine map from stored statistics.",
    ),
    Operator(
        "RMSNorm", _THREE, f"x0/sqrt({_MEAN_SQUARE} + eps)*g",
        params={"eps": "0.00001", "g": "1.5"},
        kernel=lambda x0, x1, x2, eps, g: x0 / np.sqrt((x0**2 + x1**2 + x2**2) / 3 + eps) * g,
        onnx_type="RMSNormalization", onnx_inputs=("x", "g"), onnx_attrs={"epsilon": "eps"},
        onnx_kernel=normalization.rms_normalization, mixes_channels=True,
        doc="x / sqrt(mean(x^2) + eps) * g (ONNX RMSNormalization, opset 23).",
    ),
    Operator(
        "LpNormalization", _THREE, "x0/sqrt(x0**2 + x1**2 + x2**2)",
        kernel=lambda x0, x1, x2: x0 / np.sqrt(x0**2 + x1**2 + x2**2),
        onnx_type="LpNormalization", onnx_kernel=normalization.lp_normalization,
        onnx_match={"p": 2}, mixes_channels=True,
        doc="x divided by its Euclidean norm along one axis (ONNX LpNormalization, p = 2).",
    ),
    Operator(
        "LRN", _THREE, "x0/(bias + alpha/3*(x0**2 + x1**2 + x2**2))**beta",
        params={"alpha": "1/4", "beta": "3/4", "bias": "1"},
        kernel=lambda x0, x1, x2, alpha, beta, bias: x0 / np.power(np.float64(bias) + alpha / 3
                                                                    * (x0**2 + x1**2 + x2**2),
                                                                    beta),  # NaN, not complex
        onnx_type="LRN", onnx_kernel=normalization.lrn, mixes_channels=True,
        onnx_attrs={"alpha": "alpha", "beta": "beta", "bias": "bias"},
        doc="Local response normalization across channels (ONNX LRN; the zoo's AlexNet, "
        "GoogLeNet, CaffeNet and Inception-v1 at opsets 3 to 9): x over (bias + alpha/size "
        "times the sum of squares over a window of channels)^beta; witnessed by a window of "
        "three.",
    ),
    Operator(
        "L1Normalization", _THREE, "x0/(abs(x0) + abs(x1) + abs(x2))",
        kernel=lambda x0, x1, x2: x0 / (np.abs(x0) + np.abs(x1) + np.abs(x2)),
        onnx_type="LpNormalization", onnx_kernel=normalization.lp_normalization,
        onnx_match={"p": 1}, mixes_channels=True,
        doc="x divided by its L1 norm along one axis (ONNX LpNormalization, p = 1).",
    ),
)
