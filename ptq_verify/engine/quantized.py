"""The quantized model: the plan (per tensor its codes, per node its step and integer
parameters), its exact simulation, and its lowering to ONNX in each output format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..graph import Graph
from .data import check_feeds, run_batched
from .steps import NodeStep, ScaleStep, Step


@dataclass(frozen=True)
class Code:
    """An activation held as integer codes: ``codes = round(x * scale)`` in [low, high]."""

    name: str
    scale: float | np.ndarray  # an array: one scale per channel, shaped to broadcast
    low: float
    high: float
    # False: the tensor was 0 on all calibration data, so no data set its scale (1); where
    # codes meet in a selection (Concat), the inputs the data ranged set the common scale
    ranged: bool = True
    # True: a layer's integer accumulator or an integer sum, held as it is (not rounded to n
    # bits) because only element-wise sums and float nodes read it; [low, high] bounds its
    # integers
    wide: bool = False

    @property
    def unsigned(self) -> bool:
        return self.low >= 0

    def dequantizing(self) -> np.ndarray:
        """The float32 factor 1/scale that turns the codes back into values. Rounded to
        float32 it may lie above 1/scale, and where the codes reach the float32 maximum (an
        additive mask at finfo(float32).min: 127 codes of 2.68e36 each) the extreme code
        times it would overflow to inf, which the float model never held: there the factor
        is the next float32 below, so that every code stays finite."""
        factor = np.asarray(1.0 / np.asarray(self.scale, np.float64)).astype(np.float32)
        reach = np.float32(max(abs(self.low), abs(self.high)))
        with np.errstate(over="ignore"):
            overflows = ~np.isfinite(reach * factor)
        return np.where(overflows, np.nextafter(factor, np.float32(0)), factor).astype(
            np.float32)


@dataclass
class NodeRecord:
    """One line of the summary: what happened to a node."""

    name: str
    op_type: str
    rule: str
    action: str
    scale: str
    note: str = ""
    why: str = ""  # why a compensated node runs in float

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @property
    def kind(self) -> str:
        """``integer`` (runs on codes), ``compensated`` (float on the original range) or
        ``static`` (shape, index and mask arithmetic: no activation, computed in float)."""
        head = self.action.split(":", 1)[0]
        return {"static": "static", "compensate": "compensated"}.get(head, "integer")


@dataclass
class QuantizedModel:
    """An n-bit model as a plan: ``run`` simulates it, ``to_onnx`` lowers it to ONNX.

    The plan is ``steps`` (the arithmetic in order: scaling steps and nodes with their
    integer parameters), ``codes`` (per activation tensor its scale and code range, hence its
    signedness) and ``records`` (per node its rule and action). Every output format is an
    emitter over these; none of them decides anything.

    ``output_scales``: per graph output, the scale of the integers it is read from (its n-bit
    codes, or the exact integer accumulator of the node producing it): output = integers /
    scale, with a scalar or a per-channel array. One unit there is one step of the output.
    ``run`` and the written files give that output (a float), not the integers, unless the
    model was quantized with ``integer_outputs=True``.
    """

    graph: Graph
    steps: list[Step]
    constants: dict[str, np.ndarray]
    codes: dict[str, Code]
    records: list[NodeRecord]
    bits: int
    integer_outputs: bool = False
    notes: list[str] = field(default_factory=list)
    output_scales: dict[str, np.ndarray | float] = field(default_factory=dict)
    # the codes of selections made again at 16 bits for a discontinuous node (a TopK's
    # values, a GatherElements of the input for a comparison), by their names in the steps:
    # ``codes`` holds each tensor's n-bit codes only, and qdq had written such a selection's
    # alignment to the comparison's scale as no rounding at all (:meth:`step_codes`)
    held: dict[str, Code] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return self.graph.output_names

    def names_in_use(self) -> set[str]:
        """Every tensor and node name the plan holds (the graph's inputs, outputs, constants
        and nodes, the steps' tensors), which a format's own names must avoid
        (:class:`.lower.emitter.Emitter`): a model's tensors may be named anything, and an
        input named ``x:int~1``, the name the integer format gave input ``x``'s codes, had
        made it write two tensors of one name (onnxruntime refused the file: exit 3); a node
        written is named after its output's first name (:meth:`.lower.emitter.Emitter.rename`),
        which must be no source node's either."""
        names = {*self.graph.input_names, *self.graph.output_names, *self.constants,
                 *self.graph.initializers, *(node.name for node in self.graph.nodes)}
        for step in self.steps:
            if isinstance(step, ScaleStep):
                names.update((step.src, step.dst))
            else:
                names.update((*step.node.inputs, *step.node.outputs, *step.constants,
                              step.node.name))
        names.discard("")
        return names

    def step_codes(self) -> dict[str, Code]:
        """Every plan tensor held as codes, by its name in the steps: the tensors' codes and
        those made for one node only (inputs of a discontinuous node held at 16 bits, by a
        scaling step or by a selection made again: ``held``)."""
        codes = {code.name: code for code in self.codes.values()}
        codes.update((code.name, code) for code in self.held.values())
        for step in self.steps:
            if (isinstance(step, ScaleStep) and step.low is not None
                    and step.scale is not None and step.dst not in codes):
                scale = step.scale if np.ndim(step.scale) else float(step.scale)
                codes[step.dst] = Code(step.dst, scale, step.low, step.high)
        return codes

    def source_node_names(self) -> set[str]:
        """The names the formats write the source's nodes under: the graph's, and those of
        copies run again on finer codes (a selection a jump reads at 16 bits), which take
        fresh names. A copy of a float64 section's Cast to double had kept its double output,
        which met float32 codes (skl2onnx's float64 SVC: 'Less bound to different types')."""
        return ({node.name for node in self.graph.nodes}
                | {step.source.name for step in self.steps
                   if isinstance(step, NodeStep) and step.source is not None}) - {""}

    def output_types(self) -> list[tuple[str, tuple | None, np.dtype]]:
        """(name, shape, element type) per graph output: the source's own type (a
        comparison's bool, an ArgMax's int64, a float16 export's float16: the file replaces
        the source), but float32 for integer codes (``integer_outputs``) and for an output
        the engine scaled in a float32 source."""
        casts = self.output_casts()
        return [(t.name, t.shape, casts.get(t.name, np.float32)
                 if t.name in self.output_scales else t.dtype) for t in self.graph.outputs]

    def output_casts(self) -> dict[str, np.dtype]:
        """The outputs whose source type is another float than float32 (a float16 export),
        with that type: every emitter computes them in float32 (the only type QuantizeLinear
        and DequantizeLinear share below opset 19; what a node writes as float16, a static
        output's shape arithmetic included, is widened: emitter._widen_narrow_floats) and
        casts them last. Integer codes (``integer_outputs``) are not cast."""
        return {t.name: np.dtype(t.dtype) for t in self.graph.outputs
                if t.is_float and np.dtype(t.dtype) != np.float32
                and not (self.integer_outputs and t.name in self.output_scales)}

    def run_batch(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = dict(self.constants)
        env.update(feeds)
        for step in self.steps:
            step.simulate(env)
        return {name: env[name] for name in self.output_names}

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray,
            batch_size: int = 256) -> dict[str, np.ndarray]:
        """Simulate the quantized model on ``inputs`` (batch first); outputs by name, in
        float as the written file gives them, or, quantized with ``integer_outputs=True``, the
        n-bit codes (value = code / ``output_scales[name]``)."""
        feeds = check_feeds(inputs, self.graph, "inputs", calibrating=False)
        return run_batched(self.run_batch, feeds, self.graph, batch_size)

    def counts(self) -> dict[str, int]:
        """Nodes per :attr:`NodeRecord.kind`."""
        kinds = [record.kind for record in self.records]
        return {kind: kinds.count(kind) for kind in ("integer", "compensated", "static")}

    def to_onnx(self, format: str = "simulation", encoding: str = "u8u8") -> onnx.ModelProto:
        """The quantized model as ONNX in ``format`` (see :data:`.lower.FORMATS`), with the
        source model's inputs and outputs; ``encoding`` (qdq only: ``"u8u8"``, ``"u8s8"``,
        ``"s8s8"``) is how qdq holds codes in 8-bit containers.

        The default format is ``"simulation"`` (any width, the reference), where the command
        line's ``--format`` defaults to ``"qdq"``: pass ``format="qdq"`` for its file. The
        options are named here, not taken as ``**options``, so that a misspelt one is refused
        by this method's name and ``help()`` lists them."""
        from .lower import lower

        return lower(self, format, encoding)
