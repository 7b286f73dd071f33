"""The written model checked where it will run: onnxruntime must load it and compute finite
outputs on the calibration data the float model computes finite ones on. A range near the
float32 maximum passes calibration (every float activation finite) yet can overflow once the
quantized arithmetic multiplies it by a scale or adds a rounding step; a file that computes inf
on the very data it was calibrated on is refused, not written with a note."""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..graph import Graph
from ..graph.ort_runner import ort_session
from .data import Feeds, batches
from .float_run import SAMPLES, sample_count


class UnloadableOutput(RuntimeError):
    """ptq-verify made a model onnxruntime refuses: a bug, not the user's input."""


def check_quantized(model: bytes, graph: Graph, sample: Feeds, target: str,
                    peaks: dict[str, float]) -> None:
    """Refuse the serialised quantized ``model`` (of float ``graph``) when onnxruntime cannot
    load it (:class:`UnloadableOutput`) or when a float output of it is inf or NaN on the first
    calibration samples of ``sample`` (UserError naming the output, the sample and the float
    model's peak there, from ``peaks``)."""
    session, refusal = ort_session(model)
    if session is None:
        raise UnloadableOutput(f"onnxruntime cannot load the quantized model ({refusal}); "
                               f"nothing written to {target}")
    count = sample_count(graph)
    names = [o.name for o in session.get_outputs()]
    done = 0
    for batch in batches({k: v[:count] for k, v in sample.items()}, graph, SAMPLES):
        for name, value in zip(names, session.run(names, batch)):
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
