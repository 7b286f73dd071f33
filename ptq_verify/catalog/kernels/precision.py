"""The precision the products of a half-precision model are computed in."""

from __future__ import annotations

import numpy as np


def at_least_single(value) -> np.ndarray:
    """``value`` as an array of float32 at least (float16 -> float32, an exact cast; numpy
    does not count ml_dtypes' bfloat16 as floating, so it passes as it is). numpy has no fast
    matrix product in float16: a float16 SqueezeNet's probes and checks, run through these
    kernels, took minutes a layer; onnxruntime's CPU kernels also accumulate float16 products
    in float32. The kernels return the input's own type."""
    array = np.asarray(value)
    if np.issubdtype(array.dtype, np.floating) and array.dtype.itemsize < 4:
        return array.astype(np.float32)
    return array
