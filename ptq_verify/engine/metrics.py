"""Output fidelity: SQNR of a quantized output against the float one."""

from __future__ import annotations

import numpy as np


def sqnr_db(reference: np.ndarray, quantized: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB, after the least-squares positive scale
    alignment of ``quantized`` to ``reference`` (a global gain is not counted as error)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    out = np.asarray(quantized, dtype=np.float64).ravel()
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: {np.shape(reference)} vs {np.shape(quantized)}")
    denom = float(out @ out)
    gain = max(float(ref @ out) / denom, 0.0) if denom > 0 else 0.0
    noise = float(np.sum((ref - gain * out) ** 2))
    signal = float(ref @ ref)
    if noise == 0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


def relative_error(reference: np.ndarray, quantized: np.ndarray) -> float:
    """||q - f|| / ||f||, without any alignment."""
    ref = np.asarray(reference, dtype=np.float64)
    diff = np.asarray(quantized, dtype=np.float64) - ref
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))


def fake_quantized(values: np.ndarray, reach, levels: int) -> np.ndarray:
    """``values`` rounded to ``levels`` steps of ``reach / levels`` each side, as floats
    (``reach`` one value, or one per slice broadcast against ``values``; in place on a fresh
    array: smoothing's strength search runs this on every sample row)."""
    step = np.where(np.asarray(reach) > 0, np.asarray(reach) / levels, 1.0).astype(values.dtype)
    out = np.divide(values, step)
    np.round(out, out=out)
    np.clip(out, -levels, levels, out=out)
    out *= step
    return out


SQUARES_CHUNK = 1 << 16  # elements a pass of sum_of_squares: its float64 buffer stays in cache


def sum_of_squares(values: np.ndarray, minus: np.ndarray | None = None, total: float = 0.0,
                   chunk: int = SQUARES_CHUNK) -> float:
    """``total`` plus the sum of (values - minus)^2 (of values^2 without ``minus``, of the
    same shape): each difference in ``values``' float type, written over ``values`` (which
    the caller gives up; untouched without ``minus``), squared and summed in float64,
    ``chunk`` elements at a time through one buffer. Only the order of the float64 additions
    differs from one sum over the whole array, whose float64 copies of a large output took
    longer than the product itself (smoothing's 4096 x 1536 products); equalization's group
    errors on ResNet-50, three float64 arrays of each output before, went 4.4-4.7 s -> 3.9-4.4
    s (the group runs included)."""
    flat = values.reshape(-1)
    other = None if minus is None else minus.reshape(-1)
    buffer = np.empty(min(chunk, flat.size))
    for start in range(0, flat.size, chunk):
        part = flat[start:start + chunk]
        if other is not None:
            np.subtract(part, other[start:start + chunk], out=part)
        piece = buffer[:len(part)]
        np.copyto(piece, part)
        total += float(np.dot(piece, piece))
    return total


def squared_norms(outputs: list[np.ndarray]) -> list[float]:
    """Each output's sum of squares (:func:`sum_of_squares`): the denominators of relative
    errors that a search measures again and again against the same float outputs."""
    return [sum_of_squares(np.asarray(output)) for output in outputs]
