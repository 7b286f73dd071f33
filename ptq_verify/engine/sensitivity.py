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

A tensor's cost alone is not what keeping it in float gains the quantized model: its float
region ends at nodes whose outputs are rounded again, where the model had held them wider (a
new-user trial's decoder: its last LayerNorm, 49.0 dB alone, kept in float made its LM head
run in float and round the logits to 8 bits before the bias, where the integer head had passed
its accumulator on: 42.4 -> 38.4 dB). So each candidate, costliest first, is kept only where
the whole quantized model (weights rounded to nearest, run in onnxruntime on the ranking's
samples) then does better than without it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
from onnx import helper, numpy_helper

from ..catalog.operator import Operator
from ..errors import UserError
from ..graph import Graph, Node, OperatorTable, TensorInfo
from ..graph.onnx_io import node_proto
from ..graph.ort_runner import ort_runner, ort_session
from ..progress import progress_bar
from .calibrate import Calibration
from .data import take
from .float_region import FloatRegions
from .float_run import run_float, run_in_batches, sample_count
from .lower import check_format
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
# Candidates tried past the number asked for, when some do not help the whole model
EXTRA_TRIES = 4


@dataclass(frozen=True)
class Sensitivity:
    """The output SQNR (dB, the worst float output) with only ``tensor`` held as codes, and
    ``whole``: the quantized model's, with it (and those chosen before it) kept in float
    (None where the quantized model could not be run here)."""

    tensor: str
    sqnr: float
    whole: float | None = None

    def describe(self) -> str:
        """Both figures said for what they are: "(24.4 dB alone, the model 19.7 dB with it)"
        read to a new-user trial as two measures of one thing."""
        model = ("" if self.whole is None else
                 f"; the quantized model {self.whole:.1f} dB with it in float")
        return f"{self.tensor} (alone on codes {self.sqnr:.1f} dB{model})"


def costliest(graph: Graph, calibration: Calibration, bits: int, count: int,
              table: OperatorTable | Mapping[str, Operator] | None = None, per_channel: bool = True,
              progress: bool = False, kept: Iterable[str] = (),
              wide_sums: bool = True, symmetric: bool = False,
              among: Collection[str] | None = None, min_gain: float = 0.0
              ) -> list[Sensitivity]:
    """The ``count`` activations to keep in float besides ``kept``: the costliest at
    ``bits`` bits (:func:`rank_activations`; only those ``among``, where given), skipping
    one that an earlier one's (or a kept one's) float region (:mod:`.float_region`) already
    keeps exact (a ReLU6 output that the convolution before it rounds at the same range),
    and one that does not raise the whole quantized model's output SQNR by more than
    ``min_gain`` dB."""
    table = OperatorTable.of(table)
    kept = list(kept)

    def quantized(floats: list[str]):
        # weights rounded to nearest: the activation codes do not depend on how they round
        return quantize(graph, calibration, bits, per_channel=per_channel, operators=table,
                        weight_rounding="nearest", bias_correction=False, wide_sums=wide_sums,
                        symmetric=symmetric, float_tensors=floats)

    model = quantized([])  # the codes quantize gives every activation
    regions = FloatRegions(graph, table, plan_model(graph, table), set(calibration.stats))
    chosen: list[Sensitivity] = []
    covered = {tensor for name in kept for tensor in regions.of(name)[1]}
    whole = _WholeModel(graph, calibration, table, quantized)
    best = whole.sqnr(kept) if kept else whole.measured(model)
    tried = 0
    for item in rank_activations(graph, calibration, model.codes, table, progress, among):
        if len(chosen) == count or tried == count + EXTRA_TRIES:
            break
        if item.tensor in covered:
            continue
        tried += 1
        trial = whole.sqnr([*kept, *(c.tensor for c in chosen), item.tensor])
        if best is not None and trial is not None and trial <= best + min_gain:
            continue  # the model as a whole does no better with it in float
        chosen.append(replace(item, whole=trial))
        best = trial
        covered |= regions.of(item.tensor)[1]
    return chosen


class _WholeModel:
    """The quantized model's worst float-output SQNR on the ranking's samples with a set of
    activations kept in float, run in onnxruntime (its qdq file; above 8 bits, its simulation)."""

    def __init__(self, graph: Graph, calibration: Calibration, table: OperatorTable,
                 quantized) -> None:
        self.graph, self.quantized = graph, quantized
        self.feeds, self.outputs = _ranking_sample(graph, calibration)
        self.reference = run_float(graph, table, self.feeds, self.outputs)

    def sqnr(self, floats: list[str]) -> float | None:
        """None where it cannot be measured here (no float reference, a quantized file
        onnxruntime does not run: the user's own kernels); -inf where those tensors in float
        leave no node on integers."""
        if self.reference is None or not self.outputs:
            return None
        try:
            model = self.quantized(floats)
        except UserError:
            return -np.inf
        return self.measured(model)

    def measured(self, model) -> float | None:
        """:meth:`sqnr` of a model quantized already."""
        if self.reference is None or not self.outputs:
            return None
        try:  # the qdq file, what a user deploys; above 8 bits it holds no codes, and the
            # simulation (codes on a float grid) stands for it (a new-user check: --bits 12
            # --keep-float was refused, saying to use the format simulation it used)
            check_format("qdq", model.bits)
            form = "qdq"
        except UserError:
            form = "simulation"
        session, _ = ort_session(model.to_onnx(form).SerializeToString())
        if session is None:
            return None
        try:
            got = run_in_batches(lambda batch: dict(zip(self.outputs, session.run(
                self.outputs, batch))), self.feeds, self.graph, self.outputs)
        except Exception:  # noqa: BLE001 - a run onnxruntime refuses is not measured
            return None
        return min(sqnr_db(self.reference[name], got[name]) for name in self.outputs)


def candidates(graph: Graph, calibration: Calibration, codes: Mapping[str, Code],
               among: Collection[str] | None = None) -> list[str]:
    """The activations held as codes (those ``among``, where given), but the model's outputs
    and the sums a static operand saturates (a mask, whose codes engine/saturation.py
    decides)."""
    outputs = set(graph.output_names)
    # in graph order: the statistics' order follows a set's, which varies between processes,
    # and equal costs keep this order in the ranking
    return [name for name in [*graph.input_names, *graph.producers()]
            if name in calibration.stats and name in codes and name not in outputs
            and name not in calibration.saturated and (among is None or name in among)]


def rank_activations(graph: Graph, calibration: Calibration, codes: Mapping[str, Code],
                     table: OperatorTable | Mapping[str, Operator] | None = None,
                     progress: bool = False, among: Collection[str] | None = None
                     ) -> list[Sensitivity]:
    """Every candidate activation with its cost as the ``codes`` quantize gave it (its
    scales, per channel where it has them, and its code range), costliest (lowest SQNR)
    first. Needs the calibration's sample and a graph that runs here (onnxruntime or the
    catalog's kernels)."""
    table = OperatorTable.of(table)
    if not calibration.sample:
        raise UserError(f"{graph.source}: mixed precision needs calibration samples")
    feeds, outputs = _ranking_sample(graph, calibration)
    names = candidates(graph, calibration, codes, among)
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
    for name in progress_bar(names, desc="ranking activations", unit="tensor",
                             progress=progress):
        rounded = run(name)
        if rounded is not None:
            sqnr = min(sqnr_db(reference[out], rounded[out]) for out in outputs)
            ranked.append(Sensitivity(name, sqnr))
    return sorted(ranked, key=lambda item: item.sqnr)


def _ranking_sample(graph: Graph, calibration: Calibration
                    ) -> tuple[dict[str, np.ndarray], list[str]]:
    """The calibration samples the ranking and the whole-model check run on (RANK_SAMPLES,
    whole batches of a fixed batch size), and the float outputs they compare."""
    count = sample_count(graph, RANK_SAMPLES)
    return (take(calibration.sample, graph, 0, count),
            [info.name for info in graph.outputs if info.is_float])


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
    in the tensor's own float type), their constants, and the tensor they make. Codes held
    wide are not clipped: the file holds such a sum exactly in 32 bits, and [lo, hi] only
    bounds its integers, without the static operands a sum may add (a YOLOv8 head's anchor
    grid: its box sum, clipped at +-9.4 where it reaches 41.5, had ranked at 2.7 dB alone,
    where the written file gives 26 dB, a new-user trial)."""
    dtype = graph.dtype_of(tensor) or np.dtype(np.float32)
    stem = f"{tensor}~rounded"
    c = [f"{stem}/{key}" for key in ("scale", "step", "low", "high")]
    scale = np.asarray(code.scale, dtype=np.float64)
    constants = {name: np.asarray(value, dtype=dtype)
                 for name, value in zip(c, (scale, 1.0 / scale, code.low, code.high))}
    clip = [] if code.wide else [("Max", [f"{stem}/r", c[2]], f"{stem}/lo"),
                                 ("Min", [f"{stem}/lo", c[3]], f"{stem}/hi")]
    steps = [Node(f"{out}/{op}", op, ins, [out]) for op, ins, out in (
        ("Mul", [tensor, c[0]], f"{stem}/x"), ("Round", [f"{stem}/x"], f"{stem}/r"), *clip,
        ("Mul", [f"{stem}/hi" if clip else f"{stem}/r", c[1]], stem))]
    if code.wide:
        del constants[c[2]], constants[c[3]]
    return steps, constants, stem
