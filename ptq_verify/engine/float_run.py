"""The float graph on a calibration sample, batch by batch, for the steps that compare a
changed graph with the original on data (smoothing's strengths and check, mixed precision's
ranking): onnxruntime when it loads the graph, else the catalog's numpy kernels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..graph import Graph, OperatorTable, run_graph
from ..graph.ort_runner import ort_runner
from .data import Feeds, batches, fixed_batch

SAMPLES = 32  # calibration samples a comparison on data runs on


def sample_count(graph: Graph, samples: int = SAMPLES) -> int:
    """``samples``, made whole batches for a model that fixes its batch size."""
    fixed = fixed_batch(graph)
    return samples if not fixed else max(1, samples // fixed) * fixed


def float_runner(graph: Graph, table: OperatorTable, want: list[str]
                 ) -> Callable[[Feeds], dict[str, np.ndarray] | None]:
    """A function of feeds giving the float graph's ``want`` tensors, or None when the graph
    cannot run here (one onnxruntime session for every call, else the numpy kernels)."""
    session = ort_runner(graph, want)

    def run(feeds: Feeds) -> dict[str, np.ndarray] | None:
        out = session.run(feeds) if session is not None else None
        if out is not None:
            return out
        try:
            return run_graph(graph, feeds, table, want=want)
        except Exception:  # noqa: BLE001 - a graph that cannot run here gives None
            return None

    return run


def run_float(graph: Graph, table: OperatorTable, feeds: Feeds, want: list[str]
              ) -> dict[str, np.ndarray] | None:
    """The float graph's ``want`` tensors on ``feeds``, batch by batch (a model that fixes
    its batch size runs on nothing else); None when the graph cannot run here."""
    return run_in_batches(float_runner(graph, table, want), feeds, graph, want)


def run_in_batches(run: Callable[[Feeds], dict[str, np.ndarray] | None], feeds: Feeds,
                   graph: Graph, want: list[str]) -> dict[str, np.ndarray] | None:
    """``run`` on ``feeds`` batch by batch (``graph``'s fixed batch size, else SAMPLES), its
    ``want`` tensors joined; None as soon as a batch gives None."""
    parts = []
    for batch in batches(feeds, graph, SAMPLES):
        values = run(batch)
        if values is None:
            return None
        parts.append(values)
    return joined(parts, want)


def joined(parts: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """Batches' tensors joined along the batch axis."""
    if len(parts) == 1:  # one batch: outputs as they are (a 0-d output has no batch axis)
        return parts[0]
    return {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in names}
