"""Smoothing and calibration in one float pass over the data where the statistics allow.

Smoothing needs each candidate activation's channel ranges over the whole calibration set
and its values on a sample; calibration needs every activation's statistics, of the graph
as smoothing leaves it. Run one after the other, they are two float passes (all-MiniLM-L6-v2:
about 4.5 s each, most of the peer's whole run). But smoothing changes one tensor per
smoothed activation, X' = X diag(1/s) (and the tensors from its source to it, where carriers
stand between: a LayerNorm in parts' gamma product, divided alike, and the copies between it
and its consumers: a Reshape before a Gemm), and nothing else the
float graph computes: its
consumers' outputs are X' (s W) = X W. So one pass over the graph before smoothing
gathers all of it: the candidates' values and per-position extremes (``calibrate(keep=...)``),
from which X' follows (``TensorStats.divided``), and each consumer's input statistics,
H' = D^-1 H D^-1 and mean' = mean / s with D = diag(s), where its input rows are X's own
(a MatMul's or a Gemm's: the channel axis last, H one row and column per channel).

Where that does not hold (a clipping method that reads histograms, which cannot be divided;
a channel axis that is not the last; statistics that the pass could not keep), smoothing runs
its own pass first and calibration follows, as before. The smoothed graph is checked on data
either way (smoothing's float check)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from ..catalog.operator import Operator
from ..graph import Graph, OperatorTable
from .calibrate import Calibration, LayerGathering, calibrate, needs_histogram, weight_references
from .quantize import weight_layers
from .rounding import LayerStats, WeightTarget
from .smooth import SmoothedTensor, candidates_of, smooth


def smoothed_and_calibrated(graph: Graph, data: Mapping[str, np.ndarray] | np.ndarray,
                            bits: int,
                            table: OperatorTable | Mapping[str, Operator] | None = None, *,
                            smoothing: bool = True, method: str = "auto",
                            percent: float = 99.99, per_channel: bool = True,
                            rounding: bool = True, progress: bool = False,
                            ready: Callable[[], object] | None = None
                            ) -> tuple[list[SmoothedTensor], Calibration]:
    """Smooth ``graph`` in place (unless not ``smoothing``) and calibrate it with ``method``
    at ``bits``, gathering the weight layers' input statistics when ``rounding`` (what the
    quantize command does between equalization and quantizing); what was smoothed, and the
    calibration of the graph as it now is. ``ready``: called once, after the work on the
    graph alone (finding the candidates and weight layers: all-MiniLM-L6-v2 0.17 s) and before
    the first float run, for the caller's own onnxruntime work to end there (the command
    line's run of the user's model, whose session beside this one's would raise the peak by
    the model's size)."""
    table = OperatorTable.of(table)

    def calibrated(layers: Mapping[str, WeightTarget] | None, **keep) -> Calibration:
        return calibrate(graph, data, method, bits=bits, percent=percent, operators=table,
                         progress=progress, weight_layers=layers, **keep)

    def layers_now() -> dict[str, WeightTarget] | None:
        """The weight layers of the graph as it is now."""
        return weight_layers(graph, table, per_channel=per_channel) if rounding else None

    candidates = candidates_of(graph, table) if smoothing else []
    layers = layers_now()
    if ready is not None:
        ready()
    if not candidates:
        return [], calibrated(layers)
    if needs_histogram(method, bits) or not all(
            _channels_last(graph, tensor, axis) for c in candidates for tensor, axis in (
                (c.tensor, c.axis), *((copy.outputs[0], out) for copy, out in c.copies))):
        smoothed = smooth(graph, data, bits, table, progress=progress,
                          per_channel=per_channel, candidates=candidates)
        return smoothed, calibrated(layers_now() if smoothed else layers)
    # the pass's onnxruntime session goes before the search (its memory arena held the
    # batches' activations: all-MiniLM-L6-v2's peak 1.37 -> 1.11 GB); quantize makes its own
    # where it needs one
    calibration = replace(calibrated(layers, keep=[
        name for candidate in candidates
        for name in (*candidate.carried, *candidate.joined_inputs, candidate.tensor,
                     *(copy.outputs[0] for copy, _ in candidate.copies))]),
        runner=None)
    smoothed = smooth(graph, data, bits, table, progress=progress, per_channel=per_channel,
                      candidates=candidates, calibration=calibration)
    calibration = replace(calibration, kept=None)  # (all-MiniLM-L6-v2: 100 MB) read; let go
    if not smoothed:
        return [], calibration
    derived = after_smoothing(calibration, smoothed)
    if derived is None:
        return smoothed, calibrated(layers_now())
    # (the derived statistics are of the smoothed graph: its weights are the ones they fit)
    return smoothed, replace(derived, weights=weight_references(graph))


def after_smoothing(calibration: Calibration, smoothed: list[SmoothedTensor]
                    ) -> Calibration | None:
    """``calibration`` (of a graph before ``smoothed``) made the calibration of the graph
    after it; None where it cannot be (see the module's docstring)."""
    stats = dict(calibration.stats)
    layers = None if calibration.layers is None else dict(calibration.layers.stats)
    for item in smoothed:
        # the tensors the factor divides, a joining source's inputs (a Concat's), each by
        # its slice of the factor, and the copies between the tensor and its consumers,
        # along the axis each carries the channels to
        parts = [(tensor, divided, item.scale, item.axis)
                 for tensor, divided in (*item.carried, (item.tensor, item.output))]
        parts += [(tensor, divided, item.scale[first:end], item.axis)
                  for tensor, divided, first, end in item.joined]
        parts += [(tensor, tensor, item.scale, axis) for tensor, axis in item.copied]
        for tensor, divided, scale, axis in parts:
            before = calibration.stats.get(tensor)
            if (before is None or tensor in calibration.saturated
                    or tensor in calibration.non_finite):
                return None
            after = before.divided(scale, axis)
            if after is None:
                return None
            stats[divided] = after
        inverse = 1.0 / np.asarray(item.scale, dtype=np.float64)
        for consumer in item.consumers if layers is not None else ():
            found = layers.get(consumer)
            if found is None:
                continue
            if found.hessian.shape != (inverse.size,) * 2 or found.mean.shape != inverse.shape:
                return None
            layers[consumer] = LayerStats(found.hessian * np.outer(inverse, inverse),
                                          found.mean * inverse)
    # (the calibration's onnxruntime session, if any, ran the graph before smoothing)
    # (its weights are the smoothed graph's, which this does not see: the caller who has the
    # graph records them, as smoothed_and_calibrated does; None: not checked by quantize)
    return replace(calibration, stats=stats, runner=None, weights=None,
                   layers=None if layers is None else LayerGathering(
                       calibration.layers.targets, layers))


def _channels_last(graph: Graph, tensor: str, axis: int) -> bool:
    """Whether ``axis`` is the last of ``tensor`` (of known rank 2 or more)."""
    shape = graph.shape_of(tensor)
    return shape is not None and len(shape) >= 2 and axis % len(shape) == len(shape) - 1
