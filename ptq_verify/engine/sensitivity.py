"""Mixed precision by float fallback: which activations cost the model most as n-bit codes.

Some activations cannot be held at n bits without a large loss at the outputs, however their
range is chosen: on EfficientNet-Lite the network input and the stem's ReLU6 output, which
block 0's depthwise convolution differences with gains near 10, carry most of the 8-bit error
(docs/benchmarks-real.md). Deployments keep such tensors in higher precision; the engine keeps
them in float (their producer and readers run in float; the QDQ and integer formats already
carry float nodes), since the integer kernels onnxruntime runs take 8-bit codes only.

The ranking rounds each candidate alone to the codes quantize gives it (x -> clip(round(x s),
lo, hi) / s, with its scales and code range), every other tensor in float, and runs the
graph on a calibration sample: the lowest SQNR of the model's float outputs against the float
model's is the tensor's cost. One run per candidate; the costs of several tensors are not
additive, but the few that dominate stand out alone.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from ..errors import UserError
from ..graph import Graph, Node, OperatorTable
from .calibrate import Calibration
from .float_region import FloatRegions
from .float_run import run_float, sample_count
from .metrics import sqnr_db
from .plan import plan_model
from .quantize import quantize
from .quantized import Code


@dataclass(frozen=True)
class Sensitivity:
    """The output SQNR (dB, the worst float output) with only ``tensor`` held as codes."""

    tensor: str
    sqnr: float

    def describe(self) -> str:
        return f"{self.tensor} ({self.sqnr:.1f} dB alone)"


def costliest(graph: Graph, calibration: Calibration, bits: int, count: int,
              table: OperatorTable | None = None, per_channel: bool = True,
              progress: bool = False) -> list[Sensitivity]:
    """The ``count`` activations to keep in float: the costliest at ``bits`` bits
    (:func:`rank_activations`), skipping one that an earlier one's float region
    (:mod:`.float_region`) already keeps exact (a ReLU6 output that the convolution before it
    rounds at the same range)."""
    table = table or OperatorTable()
    # the codes quantize gives every activation (weights rounded to nearest: the activation
    # codes do not depend on how the weights round)
    model = quantize(graph, calibration, bits, per_channel=per_channel, operators=table,
                     weight_rounding="nearest", bias_correction=False)
    regions = FloatRegions(graph, table, plan_model(graph, table), set(calibration.stats))
    chosen, covered = [], set()
    for item in rank_activations(graph, calibration, model.codes, table, progress):
        if len(chosen) == count:
            break
        if item.tensor not in covered:
            chosen.append(item)
            covered |= regions.of(item.tensor)[1]
    return chosen


def candidates(graph: Graph, calibration: Calibration, codes: Mapping[str, Code]
               ) -> list[str]:
    """The activations held as codes, but the model's outputs and the sums a static operand
    saturates (a mask, whose codes engine/saturation.py decides)."""
    outputs = set(graph.output_names)
    return [name for name in calibration.stats
            if name in codes and name not in outputs and name not in calibration.saturated]


def rank_activations(graph: Graph, calibration: Calibration, codes: Mapping[str, Code],
                     table: OperatorTable | None = None, progress: bool = False
                     ) -> list[Sensitivity]:
    """Every candidate activation with its cost as the ``codes`` quantize gave it (its
    scales, per channel where it has them, and its code range), costliest (lowest SQNR)
    first. Needs the calibration's sample and a graph that runs here (onnxruntime or the
    catalog's kernels). A graph (and session) per candidate: one graph with every candidate
    behind a Where gate ran 6x slower than the float model on EfficientNet-Lite, since every
    rounding is computed on every run."""
    table = table or OperatorTable()
    if not calibration.sample:
        raise UserError(f"{graph.source}: mixed precision needs calibration samples")
    count = sample_count(graph)
    feeds = {name: array[:count] for name, array in calibration.sample.items()}
    outputs = [info.name for info in graph.outputs if info.is_float]
    reference = run_float(graph, table, feeds, outputs)
    if reference is None:
        raise UserError(f"{graph.source}: the float model does not run on the calibration "
                        "sample here; mixed precision cannot rank its activations")
    ranked = []
    for name in tqdm(candidates(graph, calibration, codes), desc="ranking activations",
                     unit="tensor", file=sys.stderr, disable=not progress, leave=False):
        rounded = run_float(_rounded(graph, name, codes[name]), table, feeds, outputs)
        if rounded is not None:
            sqnr = min(sqnr_db(reference[out], rounded[out]) for out in outputs)
            ranked.append(Sensitivity(name, sqnr))
    return sorted(ranked, key=lambda item: item.sqnr)


def _rounded(graph: Graph, tensor: str, code: Code) -> Graph:
    """A copy of ``graph`` whose readers of ``tensor`` read it as ``code`` holds it."""
    dtype = graph.dtype_of(tensor) or np.dtype(np.float32)
    stem = f"{tensor}~rounded"
    c = [f"{stem}/{key}" for key in ("scale", "step", "low", "high")]
    scale = np.asarray(code.scale, dtype=np.float64)
    constants = {name: np.asarray(value, dtype=dtype)
                 for name, value in zip(c, (scale, 1.0 / scale, code.low, code.high))}
    steps = [Node(f"{out}/{op}", op, ins, [out]) for op, ins, out in (
        ("Mul", [tensor, c[0]], f"{stem}/x"), ("Round", [f"{stem}/x"], f"{stem}/r"),
        ("Max", [f"{stem}/r", c[2]], f"{stem}/lo"), ("Min", [f"{stem}/lo", c[3]], f"{stem}/hi"),
        ("Mul", [f"{stem}/hi", c[1]], stem))]
    nodes = [replace(node, inputs=[stem if i == tensor else i for i in node.inputs])
             for node in graph.nodes]
    made_at = next((k + 1 for k, node in enumerate(graph.nodes) if tensor in node.outputs), 0)
    nodes[made_at:made_at] = steps
    return replace(graph, nodes=nodes, initializers={**graph.initializers, **constants})
