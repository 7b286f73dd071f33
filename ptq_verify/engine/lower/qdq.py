"""`--format qdq`: the plan in the ecosystem's convention, for deployment toolchains.

Every tensor of the QDQ graph holds a *real* value: an activation held as codes q at scale S is
``DequantizeLinear(q, 1/S)``; the source graph's own nodes run between DequantizeLinear and
QuantizeLinear, with their original parameters, except the plan's integer parameters: n-bit
weights (per channel where the engine chose it) and 32-bit biases at the accumulator scale,
stored as integers behind a DequantizeLinear. onnxruntime fuses DQ -> Conv/Gemm/MatMul/Add ->
Q into its integer kernels (QLinearConv, QGemm, QLinearAdd, MatMulIntegerToFloat...).

At 8 bits every code range is an 8-bit container's (signed [-128, 127], unsigned [0, 255], or
256 codes over a range lopsided around 0, [-11, 244], held with the zero point that fits).
A narrower range (n < 8 bits) is enforced by an integer Clip between QuantizeLinear and
DequantizeLinear; onnxruntime (1.32) still fuses such groups with uint8 activations (under
s8s8 it runs a Conv fed by such a Clip in float, on the dequantized codes: exact). A code
range wider than 8 bits stays a float tensor: on the codes' grid (a Concat of signed and
unsigned codes at one scale), or finer (a discontinuous node's 16-bit input, engine.md).

Encodings (how codes sit in 8-bit containers; the codes are the same):
- ``u8u8`` (default): activations and weights uint8, signed codes with zero point 128.
  onnxruntime's u8u8 x86 kernels widen to 16 bits before multiplying, so they are exact on
  every x86 CPU; its u8s8 kernels saturate on CPUs without VNNI (:mod:`.kernel_probe`
  measures it), and a file is written on one machine and run on others.
- ``u8s8``: activations uint8 (signed codes with zero point 128), weights int8: the form
  onnxruntime's x86 integer kernels take natively, exact where the CPU has VNNI. int8
  activations are converted to uint8 by onnxruntime only where one QuantizeLinear feeds one
  DequantizeLinear; uint8 ones fuse everywhere (measured: docs/benchmarks.md).
- ``s8s8``: activations and weights int8; an unsigned 8-bit activation (0..255) is stored
  with zero point -128. What onnxruntime's quantize_static writes by default; a tensor read
  by two ops (a residual's skip) then leaves its consumers in float, and without VNNI it runs
  through the saturating u8s8 kernels.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
from onnx import helper

from ...errors import UserError
from ...graph.onnx_io import node_proto
from ...graph.provenance import quantized_doc
from ...rules import stored_shift_rule
from ..probe import along
from ..rules import is_lattice_selection, is_monotone_selection, jumps
from ..steps import IntegerParam, NodeStep, ScaleStep
from .emitter import Emitter, newest_schema, qdq_runs_at, runs_on

ENCODINGS = ("u8s8", "s8s8", "u8u8")
DEFAULT_ENCODING = "u8u8"
MAX_BITS = 8  # the containers are 8-bit
PER_CHANNEL_OPSET = 13  # DequantizeLinear with an axis
FUSED_WRONG = "fused_wrong"
"""The qdq model's metadata key naming (a JSON list) the AveragePools that onnxruntime's
default session computes wrong in it (:func:`_pads_to_write`)."""


def emit_qdq(model, encoding: str = DEFAULT_ENCODING) -> onnx.ModelProto:
    """The plan of ``model`` (a QuantizedModel) as a QDQ ONNX model."""
    check_qdq(model.bits, encoding)
    return _QdqLowering(model, encoding).run()


def _file_opset(graph) -> int | None:
    """The qdq file's opset: the source's, unless onnxruntime has no QuantizeLinear and
    DequantizeLinear of that opset (1.32 runs a model of opset 28 whose nodes are older, but
    has neither of opset 28: the file had been an internal error, exit 3); then the lowest at
    which every source node keeps its schema (:func:`newest_schema`), refused in one line
    when that one lacks them too."""
    source = graph.opsets.get("", 11)
    if qdq_runs_at(source):
        return None
    lowered = max(newest_schema(graph), 11)
    if lowered < source and qdq_runs_at(lowered):
        return lowered
    import onnxruntime as ort  # (its version, in the refusal)

    newest = [f"node {n.name!r} ({n.op_type}) is of version {lowered}" for n in graph.nodes
              if n.in_onnx_domain and onnx.defs.get_schema(
                  n.op_type, max_inclusive_version=source, domain="").since_version == lowered]
    raise UserError(
        f"{graph.source}: opset {source}: onnxruntime {ort.__version__} has no QuantizeLinear "
        f"or DequantizeLinear of opset {lowered}, which the qdq format writes, and "
        f"{newest[0] if newest else 'no older opset keeps every node'}: re-export the model "
        "at an older opset, or write --format integer or simulation")


def check_qdq(bits: int, encoding: str, format: str = "qdq") -> None:
    if encoding not in ENCODINGS:
        raise UserError(f"QDQ encoding {encoding!r}: choose one of {', '.join(ENCODINGS)}")
    if bits > MAX_BITS:
        raise UserError(f"format {format} holds codes in 8-bit containers: {bits} bits is "
                        f"more than {MAX_BITS}; use format simulation")


class _QdqLowering:
    def __init__(self, model, encoding: str) -> None:
        self.model = model
        self.unsigned_codes = encoding.startswith("u8")  # activations
        self.unsigned_weights = encoding == "u8u8"
        self.out = Emitter(model.names_in_use())
        self.codes = model.step_codes()
        self.real: dict[str, str] = {}  # plan tensor -> QDQ tensor holding its real value
        # DequantizeLinear output -> its inputs
        self.stored: dict[str, list[str]] = {}
        self.consumed: set[str] = set()
        self.per_channel = False
        # AveragePools written as they are that onnxruntime's fused kernel computes wrong
        # (:func:`_pads_to_write`): the model's metadata names them, for the run's summary
        self.fused_wrong: list[str] = []
        # outputs of nodes onnxruntime's fused integer kernels cannot take (:func:`_fuses`)
        self.unfused: set[str] = set()
        # plan tensors a node whose declaration jumps reads (a comparison): their rounding
        # decides which side of a threshold they fall on, so it is written even where no
        # 8-bit container holds the codes (:meth:`_realigned`)
        self.jump_inputs = {name for step in model.steps if isinstance(step, NodeStep)
                            and step.op is not None and jumps(step.op)
                            for name in step.node.inputs if name}

    def run(self) -> onnx.ModelProto:
        model = self.model
        outputs = set(model.output_names)
        for step in model.steps:
            if isinstance(step, NodeStep):
                self._node(step)
            elif step.dst in outputs:
                self._output(step)
            elif step.low is not None:
                self.real[step.dst] = self._quantized(self._real(step.src), self.codes[step.dst])
            elif step.scale is not None and step.src in self.codes:  # codes aligned
                self.real[step.dst] = self._realigned(step)
            else:  # the same real value, dequantized or rescaled
                self.real[step.dst] = self._real(step.src)
        opset = PER_CHANNEL_OPSET if self.per_channel else 0
        if self.per_channel and model.graph.opsets.get("", opset) < opset:
            raise UserError(f"{model.graph.source}: per-channel scales in QDQ need opset >= "
                            f"{opset}; the model has {model.graph.opsets['']}: use --per-tensor")
        doc = quantized_doc(model.bits, "qdq", model.integer_outputs)
        result = self.out.model(model.graph, model.output_types(),
                                doc, min_opset=max(opset, 11), casts=model.output_casts(),
                                opset=_file_opset(model.graph),
                                source_nodes=model.source_node_names())
        if self.fused_wrong:
            entry = result.metadata_props.add()
            entry.key = FUSED_WRONG
            entry.value = json.dumps(self.fused_wrong)
        return result

    # -- tensors ---------------------------------------------------------------------------

    def _real(self, name: str) -> str:
        """The QDQ tensor holding the real value of plan tensor ``name``: a float input of
        another width (a float16 export) is cast to float32 first, the only type
        QuantizeLinear takes below opset 19 and the type of every DequantizeLinear output;
        the source's own float constants of another width (a float16 GELU's 0.5) are
        float32 in the plan already (quantize's ``consts``), since the values they meet are."""
        if name in self.real:
            return self.real[name]
        narrow = {t.name for t in self.model.graph.inputs
                  if t.is_float and np.dtype(t.dtype) != np.float32}
        if name in narrow:
            self.real[name] = self.out.add("Cast", [name], f"{name}:float",
                                           to=onnx.TensorProto.FLOAT)
            return self.real[name]
        if name in self.model.constants and name not in self.out.initializers:
            self.out.initializer(name, self.model.constants[name])
        return name

    def _container(self, low: float, high: float) -> tuple[type, int]:
        """(dtype, zero point) of the 8-bit container for codes in [low, high] (at most 255
        apart): the encoding's type with its usual zero point (0, or 128 for signed codes in
        uint8, -128 for unsigned ones in int8) where the codes fit it, else the one that puts
        ``low`` at the container's least value (an aligned sum's codes at 4 bits can be
        lopsided around 0: [-132, 116] in a new-user trial's RegNet)."""
        if self.unsigned_codes:
            dtype, usual = np.uint8, (0 if low >= 0 else 128)
        else:
            dtype, usual = np.int8, (-128 if high > 127 else 0)
        info = np.iinfo(dtype)
        if info.min <= low + usual and high + usual <= info.max:
            return dtype, usual
        return dtype, int(info.min - low)

    def _quantized(self, real: str, code) -> str:
        """QuantizeLinear -> (integer Clip to the code range) -> DequantizeLinear; where the
        node computing ``real`` is one onnxruntime's fused integer kernel cannot take
        (:func:`_fuses`), between the Muls of per-channel codes, which keep onnxruntime from
        fusing the node with its DequantizeLinear and QuantizeLinear."""
        if code.high - code.low > 255:  # a Concat of signed and unsigned codes, an aligned sum
            return real  # (on the grid, or finer: a 16-bit hold); no 8-bit container holds it
        dtype, zero = self._container(code.low, code.high)
        if real in self.unfused and not np.ndim(code.scale):
            code = replace(code, scale=np.asarray([code.scale], np.float64))
        if np.ndim(code.scale):
            # One scale per channel: Mul by the channels' scales, QuantizeLinear and
            # DequantizeLinear of scale 1, Mul by their inverses. Not a per-axis
            # QuantizeLinear/DequantizeLinear: onnxruntime (1.32) fuses DQ -> op -> Q into
            # its QLinear kernels whatever the axes, and they fail at run time on a per-axis
            # activation scale (a MobileNetV3 convolution whose HardSwish reads per-channel
            # codes, the GlobalAveragePool of its squeeze-excite). The Muls end the groups;
            # the codes are the same, and the nodes around them run in float.
            real = self.out.multiply(real, np.asarray(code.scale, np.float32))
        scale, point = self._grid(real, code, dtype, zero)
        stored = self.out.add("QuantizeLinear", [real, scale, point], f"{real}:q")
        info = np.iinfo(dtype)
        low, high = int(code.low) + zero, int(code.high) + zero
        if low > info.min or high < info.max:
            stored = self.out.clip(stored, np.array(low, dtype), np.array(high, dtype))
        return self._dequantized(real, stored, scale, point, code)

    def _realigned(self, step: ScaleStep) -> str:
        """The real value of codes brought to an aligned node's scale by ``step``. Where a
        node whose declaration jumps reads them (a comparison), the aligned codes span more
        than an 8-bit container and the step rounds them coarser (a 16-bit hold of a
        comparison's input, brought to the scale of the 8-bit thresholds it is compared
        with), the rounding is written in float ops, Mul -> Round -> Clip -> Mul -> Round ->
        Mul, the plan's arithmetic: left as the real value, an input equal to a threshold
        compared above it (hummingbird's trees: 30.8 dB held out, against 64.4 dB in the
        integer format). A sum's wide input (a MatMul's 32-bit accumulator aligned to its
        residual Add) stays the real value: continuous, it only gains by it, and the six
        float ops a tensor would slow the deployed file (all-MiniLM-L6-v2: 18 more nodes)."""
        code, real = self.codes[step.src], self._real(step.src)
        aligned = _aligned(code, step)
        if (aligned.high - aligned.low <= 255 or np.ndim(code.scale) or np.ndim(step.factor)
                or float(step.factor) >= 1 or step.dst not in self.jump_inputs):
            return self._quantized(real, aligned)
        codes = self.out.round(self.out.multiply(real, np.asarray(code.scale)))
        codes = self.out.clip(codes, np.float32(code.low), np.float32(code.high))
        codes = self.out.round(self.out.multiply(codes, np.asarray(step.factor)))
        return self.out.multiply(codes, aligned.dequantizing())

    def _grid(self, hint: str, code, dtype, zero: int) -> tuple[str, str]:
        """The scale and zero-point constants of ``code`` in its 8-bit container: scale 1
        for per-channel codes, whose scales are the Muls around them (:meth:`_quantized`)."""
        inverse = np.float32(1) if np.ndim(code.scale) else code.dequantizing()
        return (self.out.constant(f"{hint}:scale", inverse),
                self.out.constant(f"{hint}:zero", np.array(zero, dtype)))

    def _dequantized(self, hint: str, stored: str, scale: str, point: str, code) -> str:
        """The real value of the codes ``stored`` on :meth:`_grid`'s constants: per tensor, a
        DequantizeLinear each consumer may take a copy of (:meth:`_consumed`); per channel,
        one real value (a Mul after the scale-1 DequantizeLinear), no group to fuse."""
        dequantized = self.out.add("DequantizeLinear", [stored, scale, point], f"{hint}:dq")
        if np.ndim(code.scale):
            return self.out.multiply(dequantized, code.dequantizing())
        self.stored[dequantized] = [stored, scale, point]
        return dequantized

    def _consumed(self, real: str) -> str:
        """``real`` for one more consumer: each consumer of codes gets its own
        DequantizeLinear of the one QuantizeLinear, as quantize_static writes them
        (onnxruntime fuses a DQ -> op -> Q group only where the DQ feeds that op alone)."""
        if real not in self.stored or real not in self.consumed:
            self.consumed.add(real)
            return real
        return self.out.add("DequantizeLinear", self.stored[real], f"{real}:dq")

    def _param(self, name: str, values: np.ndarray, param: IntegerParam,
               first: bool = False, per_axis: bool = True) -> str:
        """An integer parameter stored as integers behind a DequantizeLinear. Per-channel
        weights in the node's first input (a MatMul(W, x)) stay int8 at zero point 0 whatever
        the encoding: onnxruntime (1.32) fuses uint8 ones with per-channel zero points into a
        MatMulIntegerToFloat that then fails at run time ("input a zero point must be a
        scalar"; a Mamba and a DETR export), while int8 ones run, exact. A per-tensor one
        (one zero point, a scalar) takes the encoding's type as any weight: held int8 beside
        uint8 codes, the 0.5 of a dynamo export's GELU, Mul(0.5, x), kept onnxruntime from
        fusing the Mul into a QLinearMul (both inputs must be of one type). Per-channel scales
        the node's fused kernel cannot take per axis (``per_axis`` False:
        :func:`_takes_per_axis`) are a Mul after a DequantizeLinear of scale 1, as activations'
        are (:meth:`_quantized`): the same real weights, no fused group."""
        scale = np.asarray(1.0 / np.asarray(param.scale, np.float64), np.float32)
        attrs = {}
        if scale.ndim and not per_axis and param.kind == "weight":
            stored = self.out.constant(f"{name}:stored", values.astype(np.int8))
            one = self.out.constant(f"{name}:scale", np.float32(1))
            zero = self.out.constant(f"{name}:zero", np.array(0, np.int8))
            real = self.out.add("DequantizeLinear", [stored, one, zero], f"{name}:dq")
            return self.out.multiply(real, along(scale, param.axis, values.ndim))
        if scale.ndim:
            scale, attrs = scale.reshape(-1), {"axis": param.axis}
            self.per_channel = True
        if param.kind == "bias":
            dtype, zero = np.int32, 0
        elif param.kind == "codes":  # a table of activation codes (an embedding)
            dtype, zero = self._container(values.min(), values.max())
        else:
            dtype, zero = ((np.uint8, 128) if self.unsigned_weights
                           and not (first and scale.ndim) else (np.int8, 0))
        stored = self.out.constant(f"{name}:stored", (values + zero).astype(dtype))
        inputs = [stored, self.out.constant(f"{name}:scale", scale)]
        # A bias's zero point 0 is the default; onnxruntime's Gemm fusion (1.32) wants the
        # weights' zero point written out.
        if zero or param.kind != "bias":
            inputs.append(self.out.constant(f"{name}:zero", np.full(scale.shape, zero, dtype)))
        return self.out.add("DequantizeLinear", inputs, f"{name}:dq", **attrs)

    # -- steps -----------------------------------------------------------------------------

    def _node(self, step: NodeStep) -> None:
        if self._select_codes(step):
            return
        source = step.source or step.node
        pads = _pads_to_write(source)
        if pads is None and _fused_wrong(source):
            self.fused_wrong.append(source.name)
        inputs = []
        for slot, name in enumerate(step.node.inputs):
            if not name:
                inputs.append("")
            elif slot == 0 and pads is not None:
                inputs.append(self._zero_padded(self._real(name), pads))
            elif name in step.params:
                inputs.append(self._param(name, step.constants[name], step.params[name],
                                          first=slot == 0,
                                          per_axis=_takes_per_axis(source, step.constants[name])))
            elif name in step.constants:  # rescaled for the code domain: the original here
                inputs.append(self._real(source.inputs[slot]))
            else:
                inputs.append(self._consumed(self._real(name)))
        if not _fuses(source):
            self.unfused.update(step.node.outputs)
        proto = node_proto(source, inputs, list(step.node.outputs))
        self.out.nodes.append(_fused_right(_unpadded(proto) if pads is not None else proto))
        for name in step.node.outputs:
            if name in self.codes:  # codes passed on by a selection (Relu, MaxPool, Reshape)
                self.real[name] = self._quantized(name, self.codes[name])

    def _zero_padded(self, real: str, pads: list[int]) -> str:
        """``real`` padded with zeros by a Pad node (``pads`` its ONNX input): of the stored
        codes, by their zero point, then dequantized (0 exactly: onnxruntime fuses the
        DequantizeLinear -> AveragePool -> QuantizeLinear after it), or of the real value
        where no codes are stored (a float tensor)."""
        pads_input = self.out.constant(f"{real}:pads", np.array(pads, np.int64))
        if real not in self.stored:
            zero = self.out.constant(f"{real}:pad_value", np.zeros((), np.float32))
            return self.out.add("Pad", [real, pads_input, zero], f"{real}:pad")
        stored, scale, point = self.stored[real]
        padded = self.out.add("Pad", [stored, pads_input, point], f"{stored}:pad")
        return self.out.add("DequantizeLinear", [padded, scale, point], f"{real}:pad:dq")

    def _select_codes(self, step: NodeStep) -> bool:
        """A selection (by its declaration) that passes codes on, run on the stored 8-bit
        codes themselves with one DequantizeLinear after it, instead of on dequantized values
        between a DequantizeLinear and a QuantizeLinear: the same values, without the float
        round trip. It matters where onnxruntime fuses no such group: an embedding's Gather
        from a table of codes (the whole table was dequantized at every run: 24 of the 34 ms
        of a one-text all-MiniLM-L6-v2 run) and the Pad before each depthwise convolution
        of EfficientNet-Lite. The node must be a monotone selection by its declaration (each
        output element an input element, a parameter or a number: the integer kernel then
        computes what the float one does). Codes stored with a zero point z (signed codes
        under u8s8) pass only where the checker proves the shift rule (proofs/shift.md:
        f(x + z; p + a z) = f(x; p) + z), each constant moved as it says (Pad's value by z;
        Relu, refuted, stays on dequantized values). False, and the usual form, where any of
        that does not hold or onnxruntime has no kernel of the node for these types (a
        one-node probe)."""
        outputs = [name for name in step.node.outputs if name]
        if len(outputs) != 1 or not is_monotone_selection(step.op):
            return False
        # codes the plan materialises at the output, or else the codes it passes on (a Pad
        # before a convolution): its inputs' codes, which all must share one scale
        held = [self.codes[name] for name in step.node.inputs if name in self.codes]
        code = self.codes.get(outputs[0]) or (held[0] if held else None)
        if code is None or code.high - code.low > 255 or (np.ndim(code.scale) and held):
            return False  # per-channel codes only from a table (an embedding's columns)
        dtype, zero = self._container(code.low, code.high)
        shift = stored_shift_rule(step.op) if zero else None
        if shift is not None and not shift.holds:
            return False
        source = step.source or step.node
        if any(attr in source.attrs for attr in step.op.onnx_attrs):
            return False  # a parameter held in an attribute (Pad's value before opset 11)
        # every slot the declaration binds, written or not: an optional input a node leaves
        # off the end (a dynamo export's two-input Pad) takes its default, which does not
        # move with z
        slots = max(len(step.node.inputs), len(step.op.onnx_inputs))
        inputs = [self._stored_codes(step, slot, code, dtype, zero,
                                     shift.param_shifts if shift else {})
                  for slot in range(slots)]
        if None in inputs:
            return False
        while inputs and not inputs[-1][0]:  # absent trailing optional inputs
            inputs.pop()
        types = [kind for _, kind in inputs]
        opset = self.model.graph.opsets.get("", 11)
        if None in types or not runs_on(step.node, types, opset):
            return False  # a type the probe cannot name, an absent input between others
        selected = self.out.fresh(f"{outputs[0]}:stored")
        self.out.nodes.append(node_proto(source, [name for name, _ in inputs], [selected]))
        scale, point = self._grid(outputs[0], code, dtype, zero)
        self.real[outputs[0]] = self._dequantized(outputs[0], selected, scale, point, code)
        return True

    def _stored_codes(self, step: NodeStep, slot: int, code, dtype, zero: int,
                      param_shifts) -> tuple[str, int | None] | None:
        """(name, ONNX element type) of input ``slot`` of a selection run on stored codes
        (:meth:`_select_codes`): a table of codes or a code-domain constant stored as the
        output's container holds its codes, the QuantizeLinear output of an activation held
        at the output's very scale and container, a static input the declaration binds to
        no element or parameter (indices, pads, a shape, Resize's scales) as it is, ("",
        None) for an absent optional input (its declared default, 0, written as a code where
        the shift rule moves it: Pad's constant_value); None when the input is none of these,
        or holds codes beyond the output's range (which the output's QuantizeLinear would
        have clipped)."""
        name = step.node.inputs[slot] if slot < len(step.node.inputs) else ""
        container = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
        bound = step.op.onnx_inputs[slot].split() if slot < len(step.op.onnx_inputs) and (
            step.op.onnx_inputs[slot]) else []
        if not name:  # an absent optional input: left out where its default does not move
            if not zero or not any(param_shifts.get(item) for item in bound):
                return "", None
            default = step.op.onnx_input_defaults.get(slot)
            if default != 0:  # unknown, or a value the rule would rescale: not written
                return None
            values = np.zeros((), np.float64)  # written: 0 in codes too, then moved by z
        elif name in step.constants:  # a table of codes, or a constant rescaled to codes
            # in float32 where the codes are (as exact: a code within an 8- or 16-bit
            # container's range, shifted by its zero point, is a float32 integer; a float64
            # copy of all-MiniLM-L6-v2's word table and its rounding took 0.2-0.5 s)
            values = np.asarray(step.constants[name])
            if values.dtype != np.float32:
                values = values.astype(np.float64)
        if not name or name in step.constants:
            # the shift rule moves an element (a table's code) by z, a parameter p by a_p z
            moves = {param_shifts.get(item, 0) if item in step.op.params else 1
                     for item in bound} if name not in step.params else {1}
            if len(moves) != 1:
                return None
            # clipping is a lattice homomorphism: clip(f(x, c)) = f(x, clip(c)) for x within
            # the codes (proofs/selections.md, Lemma 3), which the QuantizeLinear after the
            # float form would clip (a Min by a per-channel bound above them)
            clip = code.low <= 0 <= code.high and is_lattice_selection(step.op)
            stored = _stored_integers(values, code.low, code.high, clip,
                                      float(moves.pop()) * zero, dtype)
            if stored is None:
                return None
            hint = name or f"{step.node.outputs[0]}:{slot}"
            return self.out.constant(f"{hint}:stored", stored), container
        if name in self.codes:
            held = self.codes[name]
            stored = self.stored.get(self.real.get(name, ""))
            if (stored is None or np.ndim(held.scale) or float(held.scale) != float(code.scale)
                    or self._container(held.low, held.high) != (dtype, zero)
                    or held.low < code.low or held.high > code.high):
                return None
            return stored[0], container
        known = self.model.graph.dtype_of(name)
        if known is None and name in self.model.constants:
            known = self.model.constants[name].dtype
        if slot >= len(step.op.onnx_inputs) or bound or known is None:
            return None  # values the node may select, not held as codes here
        return self._real(name), helper.np_dtype_to_tensor_dtype(np.dtype(known))

    def _output(self, step: ScaleStep) -> None:
        real = self._real(step.src)
        if self.model.integer_outputs and step.src in self.codes:  # codes, as floats
            code = self.codes[step.src]
            real = self.out.round(self.out.multiply(real, np.array(code.scale, np.float32)))
            real = self.out.clip(real, np.float32(code.low), np.float32(code.high))
        self.out.rename(real, step.dst)


_CHUNK = 1 << 16
"""Values :func:`_stored_integers` takes at a time."""


def _stored_integers(values: np.ndarray, low: int, high: int, clip: bool, shift: float,
                     dtype) -> np.ndarray | None:
    """``values`` (integers held in float: a table's codes) clipped to the codes [low, high]
    where ``clip``, moved by ``shift`` and stored as ``dtype``; None where one is no integer,
    lies outside the codes (the QuantizeLinear after the float form would clip it), or ends
    outside ``dtype``'s range (or ``values`` is empty). A chunk at a time: on
    all-MiniLM-L6-v2's word table (30522 x 384) the whole-array rounding, clip and shift
    copies took 45-150 ms, chunks 15 ms."""
    if not values.size:
        return None
    info = np.iinfo(dtype)
    stored = np.empty(values.shape, dtype)
    flat, out = values.reshape(-1), stored.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        part = flat[start:start + _CHUNK]
        if not np.array_equal(part, np.round(part)):
            return None
        if clip:
            part = np.clip(part, low, high)
        if not (low <= part.min() and part.max() <= high):
            return None
        if shift:  # (integers shifted by an integer stay integers: no check)
            part = part + shift
            if shift != round(shift) and not np.array_equal(part, np.round(part)):
                return None
        if not (info.min <= part.min() and part.max() <= info.max):
            return None
        out[start:start + _CHUNK] = part
    return stored


def _pads_to_write(node) -> list[int] | None:
    """The ONNX ``pads`` input of a Pad by zeros to write before an AveragePool that
    onnxruntime's fused kernel would compute wrong (:func:`_fused_wrong`), the AveragePool
    then written without pads and with ``count_include_pad=0`` (:func:`_unpadded`); None
    where the node is written as it is. The two are the same function in onnxruntime's float
    kernel, windows and divisors alike, and its fused kernel computes the second right (a
    new-user trial's AvgPool2d(3, 2, padding=1, ceil_mode=True): 28.8 dB in a default session
    before, 46.5 with graph optimizations off; now 46.5 in both, as the simulation). The output
    is as long only where no window can start in the end padding (``pads_end + stride <= the
    dilated kernel`` on every axis): onnxruntime drops such a window, which the explicit Pad
    would make part of the input (tests/test_formats.py tries both forms over sizes, kernels,
    strides and pads). Otherwise (AvgPool2d(3, 3, padding=1, ceil_mode=True)) None, and the
    model's metadata names the node (``FUSED_WRONG``)."""
    if not _fused_wrong(node):
        return None
    pads, kernel, strides = _pooling(node)
    rank = len(kernel)
    if any(end + stride > k for end, stride, k in zip(pads[rank:], strides, kernel)):
        return None
    return [0, 0, *pads[:rank], 0, 0, *pads[rank:]]


def _fuses(node) -> bool:
    """Whether onnxruntime (1.32) can fuse ``node`` between a DequantizeLinear and a
    QuantizeLinear into its integer kernel: not an AveragePool dilated by ``dilations`` (opset
    19), which QLinearAveragePool lacks; fused anyway, the file did not load (exit 3, a hunt
    for attribute forms). Its output's codes are then written as per-channel codes are, the
    Muls around their QuantizeLinear keeping the group apart (:meth:`_QdqLowering._quantized`);
    dilations all 1, which the fused kernel cannot take either, are dropped instead
    (:func:`_fused_right`)."""
    if node.op_type != "AveragePool" or not node.in_onnx_domain:
        return True
    return all(int(d) == 1 for d in node.attrs.get("dilations", []))


def _takes_per_axis(node, weight: np.ndarray) -> bool:
    """Whether onnxruntime's fused kernel of ``node`` takes its weight ``weight`` with one scale
    and zero point per channel, as a per-axis DequantizeLinear gives them. Its
    MatMulIntegerToFloat and QLinearMatMul (1.32) take per-column ones for a matrix only: a
    MatMul by a constant of rank 3 or more (a batch of matrices, (H, D, E)) with a per-axis
    DequantizeLinear before it was fused, then failed at run time ("IsBQuantParamSupported
    ... was false": exit 3 before the file was written, a hunt for attribute forms)."""
    return not (node.op_type == "MatMul" and node.in_onnx_domain and np.ndim(weight) > 2)


def _pooling(node) -> tuple[list[int], list[int], list[int]]:
    """An AveragePool's pads, dilated kernel and strides, with their defaults."""
    attrs = node.attrs
    kernel = [int(k) for k in attrs["kernel_shape"]]
    rank = len(kernel)
    dilations = [int(d) for d in attrs.get("dilations", [1] * rank)]
    return ([int(p) for p in attrs.get("pads", [0] * 2 * rank)],
            [(k - 1) * d + 1 for k, d in zip(kernel, dilations)],
            [int(s) for s in attrs.get("strides", [1] * rank)])


def _fused_wrong(node) -> bool:
    """Whether onnxruntime's fused QLinearAveragePool may compute ``node`` wrong as it stands:
    an AveragePool with ``ceil_mode=1`` and ``count_include_pad=1`` whose last window can run
    past the padding it has by ``pads`` (where the end padding is shorter than the dilated
    kernel less 1; onnxruntime drops a window that starts in the end padding). The fused
    kernel divides such a window by the whole kernel, the float one by the cells within the
    padded input. Without pads :func:`_fused_right` writes the node right; ``auto_pad``
    SAME_* pads so that no window runs past."""
    if node.op_type != "AveragePool" or not node.in_onnx_domain:
        return False
    attrs = node.attrs
    if (int(attrs.get("ceil_mode", 0)) != 1 or int(attrs.get("count_include_pad", 0)) != 1
            or not any(int(p) for p in attrs.get("pads", []))):
        return False
    pads, kernel, _ = _pooling(node)
    return any(end + 1 < k for end, k in zip(pads[len(kernel):], kernel))


def _unpadded(proto: onnx.NodeProto) -> onnx.NodeProto:
    """An AveragePool of :func:`_pads_to_write`'s form, its input padded by a Pad already:
    without pads, dividing by the cells within that input."""
    kept = [a for a in proto.attribute if a.name not in ("pads", "count_include_pad")]
    del proto.attribute[:]
    proto.attribute.extend(kept)
    proto.attribute.append(helper.make_attribute("count_include_pad", 0))
    return proto


def _fused_right(proto: onnx.NodeProto) -> onnx.NodeProto:
    """``proto`` spelt so that onnxruntime's fused integer kernel computes what its float kernel
    does. onnxruntime (1.32) fuses DequantizeLinear -> AveragePool -> QuantizeLinear into
    QLinearAveragePool, which divides a window that ``ceil_mode`` lets run past the input by
    the whole kernel under ``count_include_pad=1``, where its float kernel (as torch's
    AvgPool2d) divides by the cells within the input: a Hugging Face EfficientNet's pooler
    (its kernel is the hidden size, on a 1 x 1 map) came out near 0, 0 dB, in a default
    session (a new-user trial). With no pads the two settings of ``count_include_pad`` are
    the same function (no pad cell exists to count), and the fused kernel computes
    ``count_include_pad=0`` right; the test compares the float kernels of both on windows
    that run past the input (tests/test_formats.py). A node with pads comes here unpadded
    where :func:`_pads_to_write` could write its pads as a Pad node."""
    if proto.op_type != "AveragePool" or proto.domain not in ("", "ai.onnx"):
        return proto
    attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
    if all(int(d) == 1 for d in attrs.get("dilations", [2])):  # the default, written out
        kept = [a for a in proto.attribute if a.name != "dilations"]
        del proto.attribute[:]
        proto.attribute.extend(kept)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (attrs.get("ceil_mode", 0) != 1 or attrs.get("count_include_pad", 0) != 1
            or any(attrs.get("pads", [])) or auto_pad not in (b"NOTSET", b"VALID")):
        return proto
    for attribute in proto.attribute:
        if attribute.name == "count_include_pad":
            attribute.i = 0
    return proto


def _aligned(code, step: ScaleStep):
    """The codes of ``code`` brought to ``step.scale``: their range scales with them."""
    factor = float(np.max(step.factor))  # per channel: the widest range
    return type(code)(step.dst, step.scale, np.round(code.low * factor),
                      np.round(code.high * factor))
