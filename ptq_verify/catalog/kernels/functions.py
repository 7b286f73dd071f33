"""numpy versions of the grammar's special functions, stable over the whole float range.

The declarations' witness kernels are built from these so that each agrees with its symbolic
form to float rounding without overflow warnings (e.g. sigmoid of -1000).
"""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), evaluated on the side where exp cannot overflow."""
    e = np.exp(-np.abs(x))
    return np.where(np.asarray(x) >= 0, 1 / (1 + e), e / (1 + e))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x))."""
    return np.logaddexp(0.0, x)


# up to this many values erf goes through math.erf one by one (4096 in 0.4 ms) rather than
# importing scipy.special (0.2-0.3 s, which on all-MiniLM-L6-v2 was the whole cost of the
# ill-conditioning screen's GELU: engine/conditioning.py runs 4096 points)
ELEMENTWISE_ERF = 1 << 16


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, in scipy's types (float32 stays float32, anything else is float64).
    Few values: math.erf on each, the same double-precision function (on float32 values the
    same results; on float64 within 3 ulp of scipy's); more: scipy's, imported on first use."""
    values = np.asarray(x)
    if values.size > ELEMENTWISE_ERF:
        from scipy.special import erf as scipy_erf

        return scipy_erf(values)
    out = np.float32 if values.dtype == np.float32 else np.float64
    return np.vectorize(math.erf, otypes=[out])(values)


def gelu(x: np.ndarray) -> np.ndarray:
    """x/2 * (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(max(x, lo), hi): ONNX's order, so hi wins when lo > hi."""
    return np.minimum(np.maximum(x, lo), hi)
