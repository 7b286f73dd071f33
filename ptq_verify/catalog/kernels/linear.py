"""Gemm, MatMul and Einsum."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .precision import at_least_single


def matmul(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX MatMul: numpy.matmul semantics, batched and broadcast."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    y = np.matmul(at_least_single(a), at_least_single(b))
    return y.astype(np.result_type(a, b), copy=False)


def gemm(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Gemm: alpha * A' @ B' + beta * C, with transA / transB and an optional C."""
    a, b = np.asarray(inputs[0]), np.asarray(inputs[1])
    dtype = a.dtype
    a, b = at_least_single(a), at_least_single(b)
    if int(attrs.get("transA", 0)):
        a = a.T
    if int(attrs.get("transB", 0)):
        b = b.T
    y = float(attrs.get("alpha", 1.0)) * np.matmul(a, b)
    c = inputs[2] if len(inputs) > 2 else None
    if c is not None:
        y = y + float(attrs.get("beta", 1.0)) * np.asarray(c)
    return y.astype(dtype, copy=False)


def einsum(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Einsum: numpy's einsum on the equation (ONNX allows spaces in it; numpy does not)."""
    equation = attrs["equation"]
    if isinstance(equation, bytes):
        equation = equation.decode()
    return np.einsum(equation.replace(" ", ""), *inputs)


def dft(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX DFT: the discrete Fourier transform along ``axis`` (an attribute up to opset 19,
    input 2 from opset 20; default 1, or -2 as an input) of a signal whose last axis holds its
    real part (length 1) or real and imaginary parts (length 2), zero-padded or cut to
    ``dft_length`` (input 1), inverse (``inverse``: numpy's 1/N normalisation, as ONNX's) and
    one-sided (``onesided``: the first N//2 + 1 frequencies); the output's last axis holds the
    real and imaginary parts."""
    x = np.asarray(inputs[0])
    signal = x[..., 0] + 1j * x[..., 1] if x.shape[-1] == 2 else x[..., 0].astype(np.complex128)
    given = inputs[2] if len(inputs) > 2 else None
    if given is not None:
        axis = int(np.asarray(given).reshape(-1)[0])
    elif "axis" in attrs:
        axis = int(attrs["axis"])
    elif x.ndim == 3:  # the defaults, 1 (opsets 17-19) and -2 (20 on), name the same axis
        axis = 1
    else:
        raise ValueError("a DFT without an axis: its default is 1 up to opset 19 and -2 from "
                         "opset 20, other axes of this signal")
    axis = axis + x.ndim if axis < 0 else axis  # of x; the signal lacks x's last axis
    length = inputs[1] if len(inputs) > 1 else None
    size = int(np.asarray(length).reshape(-1)[0]) if length is not None else signal.shape[axis]
    transform = np.fft.ifft if int(attrs.get("inverse", 0)) else np.fft.fft
    out = transform(signal, n=size, axis=axis)
    if int(attrs.get("onesided", 0)):
        out = np.take(out, np.arange(size // 2 + 1), axis=axis)
    return np.stack([out.real, out.imag], -1).astype(at_least_single(x).dtype)


def rotary_embedding(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX RotaryEmbedding (opset 23): each pair of a head's first ``rotary_embedding_dim``
    elements (its two halves, or neighbours when ``interleaved``) turned by the angle whose
    cos and sin the caches hold, read at ``position_ids`` when given (else the caches are
    already (batch, length, dim / 2)); the rest of the head as it is. The input is (batch,
    heads, length, size), or (batch, length, heads * size) with ``num_heads``."""
    x, cos, sin = (np.asarray(v) for v in inputs[:3])
    positions = inputs[3] if len(inputs) > 3 else None
    flat = x.ndim == 3
    heads = (x.reshape(*x.shape[:2], int(attrs["num_heads"]), -1) if flat
             else np.swapaxes(x, 1, 2))  # (batch, length, heads, size)
    if positions is not None:
        cos, sin = cos[np.asarray(positions)], sin[np.asarray(positions)]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    dim = int(attrs.get("rotary_embedding_dim", 0)) or heads.shape[-1]
    turned = heads[..., :dim]
    interleaved = int(attrs.get("interleaved", 0))
    first, second = ((turned[..., 0::2], turned[..., 1::2]) if interleaved
                     else (turned[..., :dim // 2], turned[..., dim // 2:]))
    real, imaginary = cos * first - sin * second, sin * first + cos * second
    turned = (np.stack([real, imaginary], axis=-1).reshape(turned.shape) if interleaved
              else np.concatenate([real, imaginary], axis=-1))
    y = np.concatenate([turned, heads[..., dim:]], axis=-1)
    y = y.reshape(x.shape) if flat else np.swapaxes(y, 1, 2)
    return y.astype(x.dtype, copy=False)
