"""`--format integer`: the plan with integer arithmetic between the model's inputs and outputs.

Activation codes are int8 (uint8 for unsigned codes above 127; int32 for codes over a lopsided
range, [-12, 243], which fit neither), accumulators int32, and every step of the plan is
lowered to integer ops:

- requantization ``clip(round(acc * M))``: M (a float32) is exactly m * 2^-s with m a 24-bit
  integer, so it is ``(acc * m + 2^(s-1)) >> s`` (int64 Mul and Add, uint64 BitShift after an
  offset that makes it non-negative, halves to even as the simulation rounds), then Clip and
  Cast: a fixed-point multiplier and shift, per channel where the scale is;
- products with integer weights: ConvInteger and MatMulInteger on the 8-bit codes (codes
  over a lopsided range lifted into uint8, their least code at 0, with that zero point), the
  int32 bias added after (:data:`PRODUCTS`, the only place that knows ONNX signatures);
- nodes that map integers to integers by their declaration (selections such as Relu, MaxPool,
  Reshape, Concat; integer polynomials such as Add, Mul) run on the integer tensors, where
  onnxruntime has a kernel for them (asked once per node: a one-node session);
- compensated element-wise unary nodes: a table of output codes indexed by input codes
  (:mod:`.tables`);
- a mean of codes whose requantization multiplies it back to their sum
  (``ScaleStep.divided_by``: a GlobalAveragePool, a ReduceMean over fixed axes): that sum,
  a ReduceSum on int32 (:data:`SUMS`).

What remains runs as the simulation runs it, in float32 on integer-valued tensors, and is
listed with its reason in the model's ``float_nodes`` metadata: compensated nodes that are not
unary (Softmax), nodes onnxruntime has no integer kernel for, a mean over axes the graph
leaves free, nodes with real-valued parameters. Float ops at the boundary (quantizing the
inputs, dequantizing the outputs) are not listed: they are the model's interface.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto

from ...graph import Node
from ...graph.onnx_io import node_proto
from ...graph.operators import slot_binding
from ...graph.provenance import quantized_doc
from ...rules import stored_shift_rule
from ..probe import example_inputs, run_kernel
from ..rules import (
    is_copy,
    is_elementwise_unary,
    is_integer_polynomial,
    is_lattice_selection,
    is_monotone_selection,
    selects_by_position,
)
from ..steps import STATIC_LIMIT, NodeStep, ScaleStep, is_one
from .emitter import Emitter, runs_on
from .tables import unary_table

INT8, UINT8, INT32, INT64, UINT64, FLOAT = (
    TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT64,
    TensorProto.FLOAT)
WEIGHT_ZERO = 128  # a MatMulInteger's weights: uint8 codes + 128 (see _matmul_plus)
OFFSET = np.int64(1) << 62  # |acc * m| < 2^55 (acc < 2^31, m < 2^24): offset sums stay < 2^63
_NUMPY = {INT8: np.int8, UINT8: np.uint8, INT32: np.int32, INT64: np.int64}
_RANGE = {INT8: (-128, 127), UINT8: (0, 255)}
def emit_integer(model) -> onnx.ModelProto:
    """The plan of ``model`` (a QuantizedModel) with integer-only arithmetic inside."""
    return _IntegerLowering(model).run()


class _IntegerLowering:
    def __init__(self, model) -> None:
        self.model = model
        # why the engine runs a node in float (mixed precision, a saturating mask, no rule),
        # listed after why the format cannot run it on integers
        # ("; " separates the entries of float_nodes, so it stays out of each reason)
        self._compensated_why = {r.name: r.why.replace("; ", ", ")
                                 for r in model.records if r.why}
        self.out = Emitter(model.names_in_use())
        self.codes = model.step_codes()
        self.type: dict[str, int] = {}  # plan tensor -> element type of its emitted tensor
        self.name: dict[str, str] = {}  # plan tensor -> emitted tensor
        self.dequantizing = {s.dst: s for s in model.steps if isinstance(s, ScaleStep)
                             and s.low is None and s.scale is None and not s.round}
        self.quantizing = {s.src: s for s in model.steps
                           if isinstance(s, ScaleStep) and s.low is not None}
        self.skip: set[str] = set()
        # plan tensor -> how many steps (and model outputs) read it
        self._readers = Counter(n for s in model.steps for n in (
            s.node.inputs if isinstance(s, NodeStep) else [s.src]) if n)
        self._readers.update(model.output_names)
        # plan tensor -> its codes lifted into uint8 and their zero point (a lopsided range),
        # made once for all the products and selections that read it
        self._lifted: dict[str, tuple[str, str]] = {}
        self.float_nodes: list[tuple[str, str]] = []
        self.inputs = {info.name for info in model.graph.inputs if info.is_float}
        # shape, index and mask tensors (no activation): the non-float inputs and what the
        # plan's static nodes compute; emitted as the float model has them
        self.static_nodes = {r.name for r in model.records if r.kind == "static"}
        self.static = {info.name for info in model.graph.inputs if not info.is_float}
        self.opset = max(model.graph.opsets.get("", 13), 13)

    def run(self) -> onnx.ModelProto:
        model = self.model
        outputs = set(model.output_names)
        for info in model.graph.inputs:
            if info.is_float:
                self.type[info.name] = FLOAT
        for step in model.steps:
            if isinstance(step, NodeStep):
                self._node(step)
            elif step.dst in self.skip:
                continue
            elif step.dst in outputs:
                self.out.rename(self._as_float(step.src, step.factor), step.dst)
            else:
                self._scale(step)
        doc = quantized_doc(model.bits, "integer", model.integer_outputs)
        result = self.out.model(model.graph, model.output_types(),
                                doc, min_opset=13, casts=model.output_casts(),
                                source_nodes=model.source_node_names())
        entry = result.metadata_props.add()
        entry.key = "float_nodes"
        entry.value = "; ".join(f"{name}: {why}" for name, why in self.float_nodes)
        return result

    # -- tensors -----------------------------------------------------------------------------

    def _get(self, name: str) -> str:
        if name in self.name:
            return self.name[name]
        if name in self.model.constants and name not in self.out.initializers:
            value = np.asarray(self.model.constants[name])
            self.out.initializer(name, value)
            self.type[name] = onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
        return name

    def _type(self, name: str) -> int:
        return self.type.get(name, FLOAT)

    def _set(self, plan: str, emitted: str, kind: int) -> None:
        self.name[plan], self.type[plan] = emitted, kind

    def _container(self, plan: str) -> int:
        """The type that holds the codes of ``plan`` as they are: int8 or uint8 where they fit
        one, else int32 (a wide sum, or codes over a lopsided range such as [-11, 244])."""
        code = self.codes.get(plan)
        for kind in (INT8, UINT8):
            if code is not None and _RANGE[kind][0] <= code.low and code.high <= _RANGE[kind][1]:
                return kind
        return INT32

    def _cast(self, plan: str, kind: int) -> str:
        name = self._get(plan)
        if self._type(plan) == kind:
            return name
        return self.out.add("Cast", [name], f"{name}:cast", to=kind)

    def _narrow(self, plan: str) -> tuple[str, str | None] | None:
        """The codes of ``plan`` in an 8-bit container and the container's zero point (a
        constant of its type; None: 0), or None if they span more than 256 values: int8 or
        uint8 as they are where they fit one, else (a lopsided range) uint8 with the least
        code at 0, which ConvInteger and MatMulInteger take back off exactly."""
        if not self._narrowable(plan):
            return None
        code, kind = self.codes[plan], self._container(plan)
        if kind != INT32:
            return self._cast(plan, kind), None
        if plan not in self._lifted:
            zero = -int(code.low)
            name = self._cast(plan, INT32)
            name = self.out.add("Add", [name, self.out.constant(
                "zero", np.array(zero, np.int32))], f"{name}:lifted")
            self._lifted[plan] = (self.out.add("Cast", [name], f"{name}:cast", to=UINT8),
                                  self.out.constant("zero", np.array(zero, np.uint8)))
        return self._lifted[plan]

    def _narrowable(self, plan: str) -> bool:
        """Whether :meth:`_narrow` holds the codes of ``plan`` in 8 bits (it emits nodes)."""
        code = self.codes.get(plan)
        return self._type(plan) != FLOAT and code is not None and code.high - code.low <= 255

    def _as_float(self, plan: str, factor: np.ndarray) -> str:
        """The real value: codes (integers) times ``factor``, in float32."""
        name = self._cast(plan, FLOAT)
        return name if is_one(factor) else self.out.multiply(name, factor)

    # -- scaling steps -----------------------------------------------------------------------

    def _scale(self, step: ScaleStep) -> None:
        kind = self._container(step.dst)
        if not step.round:  # dequantize (into a compensated node), rescale a static tensor
            self._set(step.dst, self._as_float(step.src, step.factor), FLOAT)
        elif self._type(step.src) == FLOAT:  # the model's input, or a float node's output
            name = self._get(step.src)
            if step.pre_round:
                name = self.out.round(name)
            name = self.out.add("Cast", [name], f"{name}:double", to=TensorProto.DOUBLE)
            if step.divided_by != 1:  # a mean's codes back to their sum (steps.ScaleStep)
                count = self.out.constant("count", np.asarray(step.divided_by, np.float64))
                name = self.out.round(self.out.add("Mul", [name, count], f"{name}:sum"))
            factor = self.out.constant("factor", np.asarray(step.factor, np.float64))
            name = self.out.round(self.out.add("Mul", [name, factor], f"{name}:mul"))
            if step.low is not None:
                name = self.out.clip(name, np.float64(step.low), np.float64(step.high))
            elif kind == INT32:  # an aligned static operand: a mask may lie beyond int32
                name = self.out.clip(name, np.float64(-STATIC_LIMIT), np.float64(STATIC_LIMIT))
            self._set(step.dst, self.out.add("Cast", [name], f"{name}:int", to=kind), kind)
        else:
            self._set(step.dst, self._requantize(step, kind), kind)

    def _requantize(self, step: ScaleStep, kind: int) -> str:
        """clip(round(acc * M)) in integers: M = m * 2^-s exactly (M is a float32)."""
        factor = np.asarray(step.factor, np.float64)
        mantissa, exponent = np.frexp(factor)
        multiplier = np.round(mantissa * 2.0**24).astype(np.int64)
        shift = 24 - exponent.astype(np.int64)
        wide = self._cast(step.src, INT64)
        if np.all(factor == 1):  # the same codes (after a Div by a divisor held as code 1)
            name = wide
        elif np.all(factor == np.round(factor)):  # an integer factor: no rounding
            name = self.out.add("Mul", [wide, self.out.constant(
                "m", factor.astype(np.int64))], f"{wide}:mul")
        else:
            name = self._shift(wide, multiplier << np.maximum(-shift, 0), np.maximum(shift, 0))
        low, high = _RANGE.get(kind, (None, None))
        if step.low is not None:
            low, high = step.low, step.high
        if low is not None:
            name = self.out.clip(name, np.int64(low), np.int64(high))
        return self.out.add("Cast", [name], f"{name}:cast", to=kind)

    def _shift(self, wide: str, multiplier: np.ndarray, shift: np.ndarray) -> str:
        """round(wide * multiplier / 2^shift), halves to even, in int64 and uint64: the
        product plus an offset of 2^62 is non-negative, so a right shift floors it."""
        out = self.out
        product = out.add("Mul", [wide, out.constant("m", multiplier)], f"{wide}:mul")
        lifted = (np.int64(1) << (shift - 1)) + OFFSET  # + half a step, + the offset
        unsigned = out.add("Cast", [out.add("Add", [product, out.constant("lift", lifted)],
                                            f"{wide}:lift")], f"{wide}:u", to=UINT64)
        bits = out.constant("s", shift.astype(np.uint64))
        floor = out.add("BitShift", [unsigned, bits], f"{wide}:floor", direction="RIGHT")
        back = out.add("BitShift", [floor, bits], f"{wide}:back", direction="LEFT")
        tie = out.add("Cast", [out.add("Equal", [back, unsigned], f"{wide}:tie")],
                      f"{wide}:tie", to=UINT64)  # exactly half way: the floor is the rounding
        odd = out.add("Mod", [floor, out.constant("two", np.uint64(2))], f"{wide}:odd")
        even = out.add("Sub", [floor, out.add("Mul", [tie, odd], f"{wide}:down")],
                       f"{wide}:even")  # 2^62 >> shift is even: parity is the result's
        signed = out.add("Cast", [even], f"{wide}:signed", to=INT64)
        return out.add("Sub", [signed, out.constant("unlift", OFFSET >> shift)], f"{wide}:q")

    # -- nodes -------------------------------------------------------------------------------

    def _node(self, step: NodeStep) -> None:
        source = step.source or step.node
        if source.name in self.static_nodes:
            return self._static(step)
        if self._reads_only_shapes(step):
            return self._static(step, self._shape_reader_inputs(step))
        dequantized = [self.dequantizing[n] for n in step.node.inputs if n in self.dequantizing]
        if dequantized:
            quantize = self.quantizing.get(step.node.outputs[0])
            table, why = unary_table(step, dequantized[0].src, dequantized[0], quantize,
                                     self.codes.get(dequantized[0].src), self.model.constants)
            if table is not None and self._narrowable(table.source):
                return self._lookup(table)
            return self._float(step, "compensated: " + (why or "input codes not 8-bit"))
        lowering = PRODUCTS.get((source.domain or "", source.op_type))
        if any(n in step.params for n in step.node.inputs) and lowering and lowering(self, step):
            return None
        summing = SUMS.get((source.domain or "", source.op_type))
        if summing is not None and self._sum_read(step) and summing(self, step):
            return None
        why = self._not_integer(step)
        if why:
            table = self._table_on_codes(step)
            return self._lookup(table) if table is not None else self._float(step, why)
        active = [n for n in step.node.inputs if n and self._active(n)]
        kinds = {self._type(n) for n in active}
        kind = kinds.pop() if len(kinds) == 1 else INT32
        if not active:  # a table of codes selected by static indices (an embedding)
            kind = self._container(step.node.outputs[0])
        if not (is_lattice_selection(step.op) or selects_by_position(step.op)) or (
                kind not in _RANGE or not self._constants_fit(step, kind)):
            kind = INT32  # sums and products of codes leave the 8-bit range, and so may a
            # constant (a Min bound above the calibrated range): int32, never a wrapped cast
        inputs = self._integer_inputs(step, kind)
        if kind != INT32 and not self._runs(step, inputs, kind):
            kind = INT32  # e.g. no uint8 kernel: run on int32 and cast the codes back
            inputs = self._integer_inputs(step, kind)
        if not self._runs(step, inputs, kind):
            if self._as_clip(step, kind) or self._on_lifted(step):
                return None
            return self._float(step, "onnxruntime has no integer kernel for it")
        self._emit(step, inputs, kind)
        return None

    def _quantized_alone(self, step: NodeStep) -> tuple[str, ScaleStep] | None:
        """``step``'s one activation input and the quantization step that alone reads its one
        output; None where it has other activation inputs, outputs or readers."""
        active = [n for n in step.node.inputs if n and self._active(n)]
        outputs = [n for n in step.node.outputs if n]
        quantize = self.quantizing.get(outputs[0]) if len(outputs) == 1 else None
        if len(active) != 1 or quantize is None or self._readers[outputs[0]] != 1:
            return None
        return active[0], quantize

    def _sum_read(self, step: NodeStep) -> bool:
        """Whether ``step`` (a mean of its one input's codes) has its output read only by a
        requantization that multiplies the mean back to its sum (``ScaleStep.divided_by``),
        on integer codes: then the sum itself (:data:`SUMS`) is what that step reads."""
        found = self._quantized_alone(step)
        return (found is not None and found[1].divided_by > 1
                and self._type(found[0]) != FLOAT)

    def _table_on_codes(self, step: NodeStep):
        """The table of output codes for a node that computes in float on the 8-bit codes of
        one activation and whose output only its quantization reads (a HardSigmoid, rule
        proved with alpha rescaled: float32 on codes, then requantized), or None: the same
        table a compensated node takes, without the dequantization (its raw output is
        then never emitted, so another reader of it keeps the node in float)."""
        found = self._quantized_alone(step)
        if found is None or not self._narrowable(found[0]):
            return None
        active, quantize = found
        table, _ = unary_table(step, active, None, quantize, self.codes.get(active),
                               self.model.constants)
        return table

    def _as_clip(self, step: NodeStep, kind: int) -> bool:
        """Emit an element-wise monotone selection of one activation as the Clip it equals,
        clip(x, f(-inf), f(+inf)) (proofs/selections.md, Theorem 2), where onnxruntime has no
        integer kernel for the node itself: Relu takes integers from opset 14 only, and
        tf2onnx writes opset 13. False (nothing emitted) when the node is no such selection,
        its ends are not codes, or no integer Clip runs either."""
        node = step.node
        active = [n for n in node.inputs if n and self._active(n)]
        if (len(active) != 1 or len([o for o in node.outputs if o]) != 1
                or not is_elementwise_unary(step.op) or not is_monotone_selection(step.op)
                or any(n in self.static for n in node.inputs if n)):
            return False
        values = [None if not n else np.array([-np.inf, np.inf]) if n == active[0]
                  else step.constants.get(n, self.model.constants.get(n)) for n in node.inputs]
        ends = run_kernel(step.op, node, values, {})
        if ends is None or ends.size != 2:
            return False
        info = np.iinfo(_NUMPY[kind])
        low, high = np.clip(ends, info.min, info.max)
        if not (low == np.round(low) and high == np.round(high)):
            return False
        clip = Node(node.name, "Clip", ["x", "lo", "hi"], ["y"])
        if not runs_on(clip, [kind] * 3, self.opset):
            return False
        bounds = [self.out.constant(f"{node.outputs[0]}:{end}", np.asarray(value, _NUMPY[kind]))
                  for end, value in (("lo", low), ("hi", high))]
        self._emit(step, [self._cast(active[0], kind), *bounds], kind,
                   onnx.helper.make_node("Clip", [], [], name=node.name))
        return True

    def _on_lifted(self, step: NodeStep) -> bool:
        """Emit a monotone selection of one activation whose codes sit in int32 only because
        their range is lopsided ([-12, 243]: 256 values, which fit neither int8 nor uint8, and
        onnxruntime has no int32 MaxPool) on those codes lifted into uint8 (codes - low), and
        take the lift back off after it: the selection commutes with the lift where the
        checker proves the shift rule f(x + z) = f(x) + z with no parameter moving
        (proofs/shift.md). False (nothing emitted) otherwise, or where other inputs are
        not static (a constant bound may have to move with z)."""
        node = step.node
        active = [n for n in node.inputs if n and self._active(n)]
        outputs = [n for n in node.outputs if n]
        if (len(active) != 1 or len(outputs) != 1 or not is_monotone_selection(step.op)
                or self._container(active[0]) != INT32 or not self._narrowable(active[0])
                or any(n and n != active[0] and n not in self.static for n in node.inputs)
                or not self._runs(step, node.inputs, UINT8)):
            return False
        shift = stored_shift_rule(step.op)
        if not shift.holds or any(shift.param_shifts.values()):
            return False
        lifted, _ = self._narrow(active[0])
        selected = self.out.fresh(f"{outputs[0]}:lifted")
        self.out.nodes.append(node_proto(node, [lifted if n == active[0] else n
                                                for n in node.inputs], [selected]))
        codes = self.out.add("Cast", [selected], f"{selected}:int", to=INT32)
        low = self.out.constant("low", np.array(int(self.codes[active[0]].low), np.int32))
        self._set(outputs[0], self.out.add("Add", [codes, low], f"{selected}:codes"), INT32)
        if (narrow := self._container(outputs[0])) != INT32:  # codes the output narrows
            self._set(outputs[0], self._cast(outputs[0], narrow), narrow)
        return True

    def _reads_only_shapes(self, step: NodeStep) -> bool:
        """Whether the node makes no activation from its activations (Shape: an int64 shape
        the plan holds as no codes): it runs on the integer containers as on the codes."""
        info = self.model.graph.value_info
        outputs = [n for n in step.node.outputs if n]
        return not any(n in self.codes for n in outputs) and all(
            n in info and not info[n].is_float for n in outputs)

    def _shape_reader_inputs(self, step: NodeStep) -> list[str]:
        """A node that makes no activation from activations (Shape, IsNaN) reads their
        integer containers where onnxruntime takes them; else the codes cast to float (an
        exact cast; IsNaN takes float types only, and finite codes answer as finite values
        do)."""
        inputs = [self._get(n) if n else "" for n in step.node.inputs]
        types = [self._input_type(step, n) for n in step.node.inputs if n]
        output = self._static_type(step.node.outputs[0])
        if None in types or output is None or runs_on(step.node, types, self.opset, output):
            return inputs
        return [self._cast(n, FLOAT) if n and self._active(n) else i
                for n, i in zip(step.node.inputs, inputs)]

    def _static(self, step: NodeStep, inputs: list[str] | None = None) -> None:
        for name, value in step.constants.items():
            self.out.initializer(name, value)
        if inputs is None:
            inputs = [self._get(n) if n else "" for n in step.node.inputs]
        self.out.nodes.append(node_proto(step.node, inputs))
        self.static.update(n for n in step.node.outputs if n)

    def _integer_inputs(self, step: NodeStep, kind: int) -> list[str]:
        inputs = []
        for slot, name in enumerate(step.node.inputs):
            if not name:
                inputs.append("")
            elif self._active(name):
                inputs.append(self._cast(name, kind))
            elif name in self.static:
                inputs.append(name)
            else:
                value = np.asarray(step.constants.get(name, self.model.constants.get(name)))
                if step.op is not None and slot_binding(step.op, slot) is None:
                    # a static input no tensor or parameter of the declaration binds (a
                    # Resize's scales): layout, not a value on the codes' grid, so it keeps
                    # its type (cast to uint8, the Resize of every nearest upsampling had
                    # found no kernel and run in float, with the Conv after it)
                    inputs.append(self.out.constant(name, value))
                    continue
                if np.issubdtype(value.dtype, np.floating):  # integer-valued: at the codes' type
                    if kind == INT32:  # a mask constant at an accumulator's scale
                        value = np.clip(value, -STATIC_LIMIT, STATIC_LIMIT)
                    value = value.astype(_NUMPY[kind])
                inputs.append(self.out.constant(f"{name}:int", value))
        return inputs

    def _constants_fit(self, step: NodeStep, kind: int) -> bool:
        """Whether every constant input of ``step`` is held exactly by ``kind``'s codes."""
        low, high = _RANGE[kind]
        for name in step.node.inputs:
            if name and not self._active(name) and name not in self.static:
                value = np.asarray(step.constants.get(name, self.model.constants.get(name)))
                if value.size and (value.min() < low or value.max() > high):
                    return False
        return True

    def _runs(self, step: NodeStep, inputs: list[str], kind: int) -> bool:
        types = [kind if self._active(n) else self._static_type(n) if n in self.static
                 else onnx.helper.np_dtype_to_tensor_dtype(self.out.initializers[i].dtype)
                 for n, i in zip(step.node.inputs, inputs) if n]
        return None not in types and runs_on(step.node, types, self.opset)

    def _input_type(self, step: NodeStep, name: str) -> int | None:
        """The element type ``step`` reads input ``name`` in: an activation's container, a
        constant's own type (a comparison's bound on the codes' grid: float32), a static
        tensor's type in the float model."""
        if self._active(name):
            return self._type(name)
        value = step.constants.get(name, self.model.constants.get(name))
        if value is not None:
            return onnx.helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
        return self._static_type(name)

    def _static_type(self, name: str) -> int | None:
        graph = self.model.graph
        info = graph.value_info.get(name) or next(
            (i for i in graph.inputs if i.name == name), None)
        return None if info is None else onnx.helper.np_dtype_to_tensor_dtype(info.dtype)

    def _active(self, name: str) -> bool:
        """Whether plan tensor ``name`` is an activation (not a parameter or static)."""
        return name in self.name or name in self.inputs

    def _not_integer(self, step: NodeStep) -> str:
        """Why the node cannot map these integers to integers ("" if it can): it must be an
        integer polynomial (or a selection) by its declaration, on integer activations and
        integer-valued constants. A node kept in float at the user's request has no
        declaration to tell (skl2onnx's ArrayFeatureExtractor of a comparison's mask, kept so
        with --float-op: an internal error where it read no activation)."""
        if step.op is None:
            return "kept in float at your request: no declaration describes it"
        floats = [n for n in step.node.inputs if n and self._active(n)
                  and self._type(n) == FLOAT]
        if floats:
            return f"its input {floats[0]!r} is float"
        if not (is_integer_polynomial(step.op, set(step.op.params), self._units(step))
                or self._selects_integers(step)):
            return "its declaration does not map integers to integers"
        for name in step.node.inputs:
            if not name or self._active(name) or name in self.static:
                continue
            value = step.constants.get(name, self.model.constants.get(name))
            if value is None or not np.array_equal(value, np.round(value)):
                return "real-valued parameters"
        if any(isinstance(v, float) for v in step.node.attrs.values()) and not is_copy(step.op):
            # (a copy's output elements are its input's, whatever its attributes: torch's
            # nearest upsampling writes Resize with cubic_coeff_a=-0.75, which had left every
            # nearest Resize of a UNet, a VAE decoder, and the Conv reading it, in float)
            return "real-valued attributes"
        return ""

    def _selects_integers(self, step: NodeStep) -> bool:
        """Whether ``step`` selects input elements and its chosen parameters by position
        (:func:`.rules.selects_by_position`: constant Pad, whose pad value the plan holds
        as a code, 0 for a zero padding) and its output on integer codes, at the graph's
        shapes with this node's constants, is integers: then it maps integers to integers.
        (A constant Pad had stayed float, 'its declaration does not map integers to
        integers': EfficientNet-Lite1's raw export left 22 in float.)"""
        source = step.source or step.node
        if not selects_by_position(step.op) or len(source.inputs) != len(step.node.inputs):
            return False
        active = {name for name, planned in zip(source.inputs, step.node.inputs)
                  if planned and self._active(planned)}
        examples = example_inputs(self.model.graph, source, active)
        if examples is None:
            return False
        rng = np.random.default_rng(0)
        changes = {}
        for slot, (name, planned) in enumerate(zip(source.inputs, step.node.inputs)):
            if name in active:
                changes[slot] = rng.integers(-127, 128, np.shape(examples[slot]))
            elif planned in step.constants or planned in self.model.constants:
                changes[slot] = step.constants.get(planned, self.model.constants.get(planned))
        out = run_kernel(step.op, source, examples, changes)
        return out is not None and bool(out.size) and bool(np.all(out == np.round(out)))

    def _units(self, step: NodeStep) -> frozenset[str]:
        """The tensor inputs of ``step``'s declaration bound to a constant whose codes are
        all 1 (a divisor the plan holds at its own value's scale)."""
        units = set()
        for slot, name in enumerate(step.node.inputs):
            value = (None if not name or self._active(name) or name in self.static
                     else step.constants.get(name, self.model.constants.get(name)))
            if value is not None and np.size(value) and np.all(np.asarray(value) == 1):
                units.add(slot_binding(step.op, slot))
        return frozenset(units - {None})

    def _emit(self, step: NodeStep, inputs: list[str], kind: int,
              proto: onnx.NodeProto | None = None) -> None:
        """The node on ``inputs`` (as ``proto``'s op type, attributes and name, if given)."""
        if proto is None:
            proto = node_proto(step.node, inputs)
        else:
            proto.input[:], proto.output[:] = inputs, step.node.outputs
        self.out.nodes.append(proto)
        for name in step.node.outputs:
            if name:
                self._set(name, name, kind)
                narrow = self._container(name)
                if kind == INT32 and narrow != INT32:  # codes: back to their 8-bit container
                    self._set(name, self.out.add("Cast", [name], f"{name}:codes", to=narrow),
                              narrow)

    def _float(self, step: NodeStep, why: str) -> None:
        """The node as the simulation runs it: float32 on integer-valued tensors."""
        inputs = [self._cast(n, FLOAT) if n and self._active(n) else
                  (n if n in step.constants else self._get(n)) for n in step.node.inputs]
        for name, value in step.constants.items():
            self.out.initializer(name, value)
        self._emit(step, inputs, FLOAT)
        name = (step.source or step.node).name
        reason = self._compensated_why.get(name)
        self.float_nodes.append((name, f"{why} ({reason})" if reason else why))

    def _lookup(self, table) -> None:
        code = self.codes[table.output.dst]
        kind = self._container(table.output.dst)
        index = self._cast(table.source, INT32)
        shift = self.out.constant("offset", table.offsets().astype(np.int32))
        index = self.out.add("Add", [index, shift], f"{index}:row")
        values = self.out.constant(f"{code.name}:table", table.values.astype(_NUMPY[kind]))
        self._set(code.name, self.out.add("Gather", [values, index], f"{code.name}:lookup"),
                  kind)
        self.skip.add(table.output.dst)


# -- products: how ONNX writes a product with integer operands -------------------------------

def _conv(lowering: _IntegerLowering, step: NodeStep) -> bool:
    x, w, *rest = step.node.inputs
    if w not in step.params or (narrow := lowering._narrow(x)) is None:
        return False
    out = lowering.out
    weight = out.constant(f"{w}:int8", step.constants[w].astype(np.int8))
    codes, zero = narrow
    name = out.add("ConvInteger", [codes, weight] + ([zero] if zero else []),
                   f"{step.node.name}:int", **step.node.attrs)
    if rest and rest[0]:
        bias = step.constants[rest[0]].astype(np.int32)
        bias = out.constant(f"{rest[0]}:int32", bias.reshape(-1, *[1] * (_rank(step) - 2)))
        name = out.add("Add", [name, bias], f"{name}:bias")
    lowering.out.rename(name, step.node.outputs[0])
    lowering._set(step.node.outputs[0], step.node.outputs[0], INT32)
    return True


def _rank(step: NodeStep) -> int:
    return np.ndim(step.constants[step.node.inputs[1]])


def _gemm(lowering: _IntegerLowering, step: NodeStep) -> bool:
    a, b, *rest = step.node.inputs
    attrs = step.node.attrs
    if (b not in step.params or not lowering._narrowable(a) or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
        return False
    matrix = step.constants[b].T if attrs.get("transB", 0) else step.constants[b]
    return _matmul_plus(lowering, step, a, matrix, rest[0] if rest else "")


def _matmul(lowering: _IntegerLowering, step: NodeStep) -> bool:
    a, b = step.node.inputs
    if b not in step.params or not lowering._narrowable(a):
        return False
    return _matmul_plus(lowering, step, a, step.constants[b], "")


def _matmul_plus(lowering, step: NodeStep, a: str, matrix: np.ndarray, bias: str) -> bool:
    """MatMulInteger with the weights as uint8 at zero point 128: onnxruntime (1.32) on an
    x86 CPU without VNNI saturates uint8 x int8 products in pairs at 16 bits
    (255 * 127 * 2 > 32767); its uint8 x uint8 and int8 x uint8 kernels are exact there
    (measured with one-node MatMulInteger models on an AMD EPYC with AVX2; docs/engine.md)."""
    out = lowering.out
    weight = out.constant(f"{step.node.name}:w", (matrix + WEIGHT_ZERO).astype(np.uint8))
    zero = out.constant(f"{step.node.name}:w_zero", np.array(WEIGHT_ZERO, np.uint8))
    codes, a_zero = lowering._narrow(a)
    if a_zero is None:
        a_zero = out.constant(f"{step.node.name}:a_zero",
                              np.array(0, _NUMPY[lowering._container(a)]))
    name = out.add("MatMulInteger", [codes, weight, a_zero, zero], f"{step.node.name}:int")
    if bias:
        name = out.add("Add", [name, out.constant(
            f"{bias}:int32", step.constants[bias].astype(np.int32))], f"{name}:bias")
    out.rename(name, step.node.outputs[0])
    lowering._set(step.node.outputs[0], step.node.outputs[0], INT32)
    return True


PRODUCTS = {("", "Conv"): _conv, ("", "Gemm"): _gemm, ("", "MatMul"): _matmul}


# -- sums: how ONNX writes the integer sum behind a mean -------------------------------------

def _reduced_sum(lowering: _IntegerLowering, step: NodeStep, axes: list[int] | None,
                 keepdims: int, noop: int = 0) -> bool:
    """ReduceSum of the node's input codes in int32 over ``axes`` (None: every axis), the
    node's output; False (nothing emitted) where onnxruntime has no such kernel."""
    out = lowering.out
    reduce = Node(step.node.name, "ReduceSum", ["x"] if axes is None else ["x", "axes"], ["y"],
                  {"keepdims": keepdims, "noop_with_empty_axes": noop})
    if not runs_on(reduce, [INT32] if axes is None else [INT32, INT64], lowering.opset):
        return False
    inputs = [lowering._cast(step.node.inputs[0], INT32)]
    if axes is not None:
        inputs.append(out.constant(f"{step.node.name}:axes", np.array(axes, np.int64)))
    name = out.add("ReduceSum", inputs, f"{step.node.name}:sum", keepdims=keepdims,
                   noop_with_empty_axes=noop)
    out.rename(name, step.node.outputs[0])
    lowering._set(step.node.outputs[0], step.node.outputs[0], INT32)
    return True


def _global_sum(lowering: _IntegerLowering, step: NodeStep) -> bool:
    source = step.source or step.node  # (the plan renames tensors; the graph knows the source's)
    rank = len(lowering.model.graph.shape_of(source.inputs[0]) or ())
    return rank > 2 and _reduced_sum(lowering, step, list(range(2, rank)), keepdims=1)


def _mean_sum(lowering: _IntegerLowering, step: NodeStep) -> bool:
    attrs = step.node.attrs
    inputs = step.node.inputs
    axes = list(attrs["axes"]) if "axes" in attrs else (
        inputs[1] if len(inputs) > 1 and inputs[1] else None)
    if isinstance(axes, str):  # (opset 18: an input, static by the plan)
        value = step.constants.get(axes, lowering.model.constants.get(axes))
        if value is None:
            return False
        axes = [int(a) for a in np.asarray(value).reshape(-1)]
    return _reduced_sum(lowering, step, axes, int(attrs.get("keepdims", 1)),
                        int(attrs.get("noop_with_empty_axes", 0)))


SUMS = {("", "GlobalAveragePool"): _global_sum, ("", "ReduceMean"): _mean_sum}
"""A mean's op type -> the ReduceSum of its codes, where the requantization after it multiplies
the mean back to that sum (``ScaleStep.divided_by``): the only place that knows which ONNX op
is which sum, as :data:`PRODUCTS` for products."""
