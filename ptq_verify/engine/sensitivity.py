"""Mixed precision by float fallback: which activations cost the model most as n-bit codes.

Some activations cannot be held at n bits without a large loss at the outputs, however their
range is chosen: on EfficientNet-Lite the network input and the stem's ReLU6 output, which
block 0's depthwise convolution differences with gains near 10, carry most of the 8-bit error
(docs/benchmarks-real.md). Deployments keep such tensors in higher precision; the engine keeps
them in float (the nodes of their float regions, engine/float_region.py, run in float; the QDQ
and integer formats already carry float nodes), since onnxruntime's integer kernels take 8-bit
codes only.

The ranking rounds each candidate alone to the codes quantize gives it (x -> clip(round(x s),
lo, hi) / s, with its scales and code range), every other tensor in float, and runs the
graph on a calibration sample: the lowest SQNR of the model's float outputs against the float
model's is the tensor's cost. One session (an If per candidate) and one run per candidate;
the costs of several tensors are not additive, but the few that dominate stand out alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
from onnx import helper, numpy_helper
from tqdm import tqdm

from ..errors import UserError
from ..graph import Graph, Node, OperatorTable, TensorInfo
from ..graph.onnx_io import node_proto
from ..graph.ort_runner import ort_runner
from .calibrate import Calibration
from .float_region import FloatRegions
from .float_run import run_float, run_in_batches, sample_count
from .metrics import sqnr_db
from .plan import plan_model
from .quantize import quantize
from .quantized import Code

# Calibration samples the ranking runs on. The costs that matter stand far apart (all-MiniLM-
# L6-v2: 9-11 dB for the costliest activation, 24 dB for the next, 30+ for most), and 8
# samples choose what 32 do where it matters (the same first 7 tensors on all-MiniLM-L6-v2, the
# same first 3 float regions on EfficientNet-Lite1, the later ones in another order) in a
# quarter of the runs' time (MiniLM: 61 s for the whole choice, against 176 s with 32 texts).
RANK_SAMPLES = 8


@dataclass(frozen=True)
class Sensitivity:
    """The output SQNR (dB, the worst float output) with only ``tensor`` held as codes."""

    tensor: str
    sqnr: float

    def describe(self) -> str:
        return f"{self.tensor} ({self.sqnr:.1f} dB alone)"


def costliest(graph: Graph, calibration: Calibration, bits: int, count: int,
              table: OperatorTable | None = None, per_channel: bool = True,
              progress: bool = False, kept: Iterable[str] = (),
              wide_sums: bool = True, symmetric: bool = False) -> list[Sensitivity]:
    """The ``count`` activations to keep in float besides ``kept``: the costliest at
    ``bits`` bits (:func:`rank_activations`), skipping one that an earlier one's (or a kept
    one's) float region (:mod:`.float_region`) already keeps exact (a ReLU6 output that the
    convolution before it rounds at the same range)."""
    table = table or OperatorTable()
    # the codes quantize gives every activation (weights rounded to nearest: the activation
    # codes do not depend on how the weights round)
    model = quantize(graph, calibration, bits, per_channel=per_channel, operators=table,
                     weight_rounding="nearest", bias_correction=False, wide_sums=wide_sums,
                     symmetric=symmetric)
    regions = FloatRegions(graph, table, plan_model(graph, table), set(calibration.stats))
    chosen: list[Sensitivity] = []
    covered = {tensor for name in kept for tensor in regions.of(name)[1]}
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
    # in graph order: the statistics' order follows a set's, which varies between processes,
    # and equal costs keep this order in the ranking
    return [name for name in [*graph.input_names, *graph.producers()]
            if name in calibration.stats and name in codes and name not in outputs
            and name not in calibration.saturated]


def rank_activations(graph: Graph, calibration: Calibration, codes: Mapping[str, Code],
                     table: OperatorTable | None = None, progress: bool = False
                     ) -> list[Sensitivity]:
    """Every candidate activation with its cost as the ``codes`` quantize gave it (its
    scales, per channel where it has them, and its code range), costliest (lowest SQNR)
    first. Needs the calibration's sample and a graph that runs here (onnxruntime or the
    catalog's kernels)."""
    table = table or OperatorTable()
    if not calibration.sample:
        raise UserError(f"{graph.source}: mixed precision needs calibration samples")
    count = sample_count(graph, RANK_SAMPLES)
    feeds = {name: array[:count] for name, array in calibration.sample.items()}
    outputs = [info.name for info in graph.outputs if info.is_float]
    names = candidates(graph, calibration, codes)
    gated = _gated(graph, names, codes)
    runner = ort_runner(gated, outputs)

    def run(rounded: str | None) -> dict[str, np.ndarray] | None:
        if runner is None:  # a graph onnxruntime cannot load: a copy per candidate
            copy = graph if rounded is None else _rounded(graph, rounded, codes[rounded])
            return run_float(copy, table, feeds, outputs)
        gates = {_gate(name): np.array(name == rounded) for name in names}
        return run_in_batches(lambda batch: runner.run({**batch, **gates}), feeds, graph,
                              outputs)

    reference = run(None)
    if reference is None:
        raise UserError(f"{graph.source}: the float model does not run on the calibration "
                        "sample here; mixed precision cannot rank its activations")
    ranked = []
    for name in tqdm(names, desc="ranking activations", unit="tensor", file=sys.stderr,
                     disable=not progress, leave=False):
        rounded = run(name)
        if rounded is not None:
            sqnr = min(sqnr_db(reference[out], rounded[out]) for out in outputs)
            ranked.append(Sensitivity(name, sqnr))
    return sorted(ranked, key=lambda item: item.sqnr)


def _gate(tensor: str) -> str:
    return f"{tensor}~rounded/gate"


def _gated(graph: Graph, tensors: list[str], codes: Mapping[str, Code]) -> Graph:
    """One graph for every run of the ranking: the readers of each of ``tensors`` read
    If(gate, its codes and back, itself), a boolean input per tensor. If computes only the
    branch taken: Where(gate, ...) computed every rounding on every run (6x the float model
    on EfficientNet-Lite), and a session per candidate costs a copy of the weights each
    (~1 s on all-MiniLM-L6-v2, whose runs take 0.05 s)."""
    after: dict[str, list[Node]] = {}
    producers = graph.producers()
    for tensor in tensors:
        steps, constants, stem = _rounding(graph, tensor, codes[tensor])
        elem = helper.np_dtype_to_tensor_dtype(graph.dtype_of(tensor) or np.dtype(np.float32))
        then_branch = helper.make_graph(
            [node_proto(node) for node in steps], f"{stem}/then", [],
            [helper.make_tensor_value_info(stem, elem, None)],
            [numpy_helper.from_array(value, name) for name, value in constants.items()])
        else_branch = helper.make_graph(
            [helper.make_node("Identity", [tensor], [f"{stem}/kept"], name=f"{stem}/kept")],
            f"{stem}/else", [], [helper.make_tensor_value_info(f"{stem}/kept", elem, None)])
        maker = producers.get(tensor)
        after.setdefault("" if maker is None else maker.name, []).append(
            Node(f"{stem}/If", "If", [_gate(tensor)], [f"{stem}/taken"],
                 {"then_branch": then_branch, "else_branch": else_branch}))
    renamed = {tensor: f"{tensor}~rounded/taken" for tensor in tensors}
    nodes = list(after.get("", []))
    for node in graph.nodes:
        nodes.append(replace(node, inputs=[renamed.get(i, i) for i in node.inputs]))
        nodes.extend(after.get(node.name, []))
    gates = [TensorInfo(_gate(tensor), (), np.dtype(bool)) for tensor in tensors]
    return replace(graph, nodes=nodes, inputs=[*graph.inputs, *gates])


def _rounded(graph: Graph, tensor: str, code: Code) -> Graph:
    """A copy of ``graph`` whose readers of ``tensor`` read it as ``code`` holds it."""
    steps, constants, rounded = _rounding(graph, tensor, code)
    nodes = [replace(node, inputs=[rounded if i == tensor else i for i in node.inputs])
             for node in graph.nodes]
    made_at = next((k + 1 for k, node in enumerate(graph.nodes) if tensor in node.outputs), 0)
    nodes[made_at:made_at] = steps
    return replace(graph, nodes=nodes, initializers={**graph.initializers, **constants})


def _rounding(graph: Graph, tensor: str, code: Code
              ) -> tuple[list[Node], dict[str, np.ndarray], str]:
    """The nodes taking ``tensor`` to its codes and back (x -> clip(round(x s), lo, hi) / s,
    in the tensor's own float type), their constants, and the tensor they make."""
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
    return steps, constants, stem
