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


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (scipy's, imported on first use to keep the catalog import fast)."""
    from scipy.special import erf as scipy_erf

    return scipy_erf(x)


def gelu(x: np.ndarray) -> np.ndarray:
    """x/2 * (1 + erf(x / sqrt(2)))."""
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def clip(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(max(x, lo), hi): ONNX's order, so hi wins when lo > hi."""
    return np.minimum(np.maximum(x, lo), hi)
