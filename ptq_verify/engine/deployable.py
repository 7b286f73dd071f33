"""The written model checked where it will run: onnxruntime must load it and compute finite
outputs on the calibration data the float model computes finite ones on. A range near the
float32 maximum passes calibration (every float activation finite) yet can overflow once the
quantized arithmetic multiplies it by a scale or adds a rounding step; a file that computes inf
on the very data it was calibrated on is refused, not written with a note."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..graph import Graph, OperatorTable
from ..graph.ort_runner import ort_session
from .data import Feeds, batches
from .float_run import SAMPLES, first_samples, joined, run_float
from .metrics import relative_error


class UnloadableOutput(RuntimeError):
    """ptq-verify made a model onnxruntime refuses: a bug, not the user's input."""


def check_quantized(model: bytes, graph: Graph, sample: Feeds, target: str,
                    peaks: dict[str, float]) -> dict[str, np.ndarray]:
    """Refuse the serialised quantized ``model`` (of float ``graph``) when onnxruntime cannot
    load it (:class:`UnloadableOutput`) or when a float output of it is inf or NaN on the first
    calibration samples of ``sample`` (UserError naming the output, the sample and the float
    model's peak there, from ``peaks``). Returns its float outputs on those samples."""
    session, refusal = ort_session(model)
    if session is None:
        raise UnloadableOutput(f"onnxruntime cannot load the quantized model ({refusal}); "
                               f"nothing written to {target}")
    names = [o.name for o in session.get_outputs()]
    done, parts = 0, []
    for batch in batches(first_samples(sample, graph), graph, SAMPLES):
        parts.append(dict(zip(names, session.run(names, batch))))
        for name, value in parts[-1].items():
            value = np.asarray(value)
            if not np.issubdtype(value.dtype, np.floating) or np.isfinite(value).all():
                continue
            bad = ~np.isfinite(value.reshape(len(value), -1) if value.ndim else value[None])
            first = done + int(np.flatnonzero(bad.any(axis=1))[0])
            what = "NaN" if np.isnan(value).any() and not np.isinf(value).any() else "inf"
            peak = peaks.get(name)
            float_part = f" (at most {peak:.3g} in magnitude)" if peak is not None else ""
            raise UserError(
                f"{target}: the quantized model computes {what} at output {name!r} on "
                f"calibration sample {first}, where the float model's values are finite"
                f"{float_part}: its arithmetic overflows float32 on this data (ranges near "
                f"the float32 maximum, {np.finfo(np.float32).max:.3g}, do once rescaled or "
                "rounded); scale the model's inputs down; nothing written")
        done += len(next(iter(batch.values())))
    floats = [n for n in names if np.issubdtype(np.asarray(parts[0][n]).dtype, np.floating)]
    return joined(parts, floats) if floats else {}


def output_fidelity(graph: Graph, table: OperatorTable, sample: Feeds,
                    quantized: dict[str, np.ndarray]) -> dict[str, float]:
    """The SQNR in dB of each of the written model's float outputs (``quantized``, from
    :func:`check_quantized`) against the float graph's on the same calibration samples, where
    both are there; no gain is taken out, as a user measures it. A low figure says what
    calibration alone cannot: an output the codes cannot carry (rows that barely vary before
    a normalization; mixed precision keeps the costliest activations in float)."""
    names = list(quantized)
    reference = run_float(graph, table, first_samples(sample, graph), names) if names else None
    if reference is None:
        return {}
    fidelity = {}
    for name in names:
        ref = np.asarray(reference.get(name), dtype=np.float64)
        got = np.asarray(quantized[name], dtype=np.float64)
        if ref.shape == got.shape and np.any(ref):
            error = relative_error(ref, got)
            fidelity[name] = float("inf") if error == 0 else -20.0 * np.log10(error)
    return fidelity
