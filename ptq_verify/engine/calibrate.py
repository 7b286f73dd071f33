"""Calibration: run the float graph over the calibration set and record each activation's
statistics; a clipping method turns them into a range."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..graph import Graph, OperatorTable, activation_tensors, run_graph
from ..graph.ort_runner import ort_runner
from .data import batches, check_feeds
from .saturation import kept_positions, masked_sums, static_part
from .stats import TensorStats

METHODS = ("auto", "maxabs", "percentile", "mse")
# "auto" clips MSE-optimally where a tensor's range has fewer steps than this (4-bit tensors),
# and keeps the max-abs range elsewhere. Measured on the digits benchmark: MSE clipping gains
# 0.5-3 dB on every model at 4 bits but loses up to 0.7 dB at 6 and 8 bits on some, where
# test values pass the calibrated range more often than its estimate expects.
AUTO_MSE_LEVELS = 16
# Calibration samples kept as they are, for what needs the data and not only ranges
# (output-aware weight rounding and bias correction in quantize).
SAMPLE_LIMIT = 256


@dataclass
class Calibration:
    """Statistics per activation tensor and the clipping method that reads them."""

    stats: dict[str, TensorStats]
    method: str = "auto"
    percent: float = 99.99
    samples: int = 0
    sample: dict[str, np.ndarray] = field(default_factory=dict)  # first SAMPLE_LIMIT inputs
    # sums where a static operand saturated some positions (engine/saturation.py), and the
    # largest finite |value| at those positions, for the readers that take codes of them
    saturated: set[str] = field(default_factory=set)
    dropped_reach: dict[str, float] = field(default_factory=dict)

    def clip(self, tensor: str, levels: int) -> float:
        """The clipping range (|x| <= range) of ``tensor`` for ``levels`` positive codes."""
        stats = self.stats[tensor]
        if self.method == "auto":
            return stats.mse_clip(levels) if levels < AUTO_MSE_LEVELS else stats.max_abs
        if self.method == "percentile":
            return stats.percentile(self.percent)
        if self.method == "mse":
            return stats.mse_clip(levels)
        return stats.max_abs


def calibrate(
    graph: Graph,
    data: Mapping[str, np.ndarray] | np.ndarray,
    method: str = "auto",
    *,
    percent: float = 99.99,
    batch_size: int = 64,
    operators: OperatorTable | None = None,
    progress: bool = True,
    runtime: str = "onnxruntime",
) -> Calibration:
    """Run ``data`` (one array per graph input, batch first) through ``graph`` in float and
    record a :class:`TensorStats` for every activation tensor. ``runtime="numpy"`` runs the
    catalog's kernels instead of onnxruntime (also the fallback for graphs onnxruntime
    cannot load). Memory: one batch's wanted tensors at a time; statistics are streamed."""
    if method not in METHODS:
        raise UserError(f"calibration method {method!r}: choose one of {', '.join(METHODS)}")
    if not 0 < percent <= 100:
        raise UserError(f"percentile {percent}: must be in (0, 100]")
    table = operators or OperatorTable()
    for node in graph.nodes:
        table.require(node, graph)
    feeds = check_feeds(data, graph, "calibration data")
    active = activation_tensors(graph, table)
    stats = {name: TensorStats() for name in active}
    sums = masked_sums(graph, table, active)
    wanted = {name for masked in sums.values() for name in masked.static}
    carriers = {name for masked in sums.values() for name in masked.carried}
    held: dict[str, np.ndarray] = {}  # this batch's static operands of those sums
    pending: dict[str, np.ndarray] = {}  # this batch's masked sums, taken in graph order
    saturated: set[str] = set()
    dropped_reach: dict[str, float] = {}

    def observe(name: str, value: np.ndarray) -> None:
        if name in wanted:
            held[name] = value
        if name in sums:
            pending[name] = value
        elif name in stats:
            record(name, value)

    def record(name: str, value: np.ndarray) -> None:
        if not np.all(np.isfinite(value)):  # (Clip to [+inf, -inf], exp overflow, ...)
            raise UserError(f"{graph.source}: tensor {name!r} takes infinite or NaN "
                            "values on the calibration data")
        stats[name].update(value)

    def settle_masked_sums() -> None:
        """Positions where a static operand saturates a sum set no range; the values there
        travel on to the sums that read this one (engine/saturation.py)."""
        carried: dict[str, np.ndarray] = {}
        for name in sums:  # graph order: a carrier is settled before its readers
            if name not in pending:
                continue
            value = pending.pop(name)
            kept = kept_positions(value, static_part(sums[name], held, graph, value, carried))
            if not kept.all():
                saturated.add(name)
                if name in carriers:
                    carried[name] = np.where(kept, 0, value)
                dropped = np.abs(value[~kept])
                finite = dropped[np.isfinite(dropped)]
                if finite.size:
                    dropped_reach[name] = max(dropped_reach.get(name, 0.0), float(finite.max()))
                value = value[kept]
            record(name, value)

    total = next(iter(feeds.values())).shape[0]
    # the float runs go through onnxruntime (tensors observed as extra outputs), or through
    # the catalog's kernels when onnxruntime cannot load the graph
    runner = ort_runner(graph, (stats.keys() | wanted) - set(graph.input_names)) if (
        runtime == "onnxruntime") else None
    bar = tqdm(total=total, desc="calibrating", unit="sample", file=sys.stderr,
               disable=not progress, leave=False)
    with bar:
        for batch in batches(feeds, graph, batch_size):
            for name, value in batch.items():
                observe(name, value)
            computed = None if runner is None else runner.run(batch)
            if computed is None:
                runner = None
                run_graph(graph, batch, table, observe=observe)
            else:
                for name, value in computed.items():
                    observe(name, value)
            settle_masked_sums()
            held.clear()
            bar.update(next(iter(batch.values())).shape[0])
    sample = {name: array[:SAMPLE_LIMIT] for name, array in feeds.items()}
    return Calibration(stats, method, percent, total, sample, saturated, dropped_reach)

