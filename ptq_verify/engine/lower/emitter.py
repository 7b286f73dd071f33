"""Writing ONNX: the node and initializer collector every output format uses.

These are the op types the *emitters write*; the engine's decisions never look at op types.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from ...graph import Graph, Node
from ...graph.model import subgraphs
from ...graph.onnx_io import node_proto

MIN_OPSET = 11  # Round and Clip with min/max inputs


class Emitter:
    """Collects nodes and initializers with unique names."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        """``reserved``: names :meth:`fresh` never gives (the plan's tensors and nodes:
        ``QuantizedModel.names_in_use``)."""
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._counts: Counter[str] = Counter()
        self._taken: set[str] = set(reserved)
        self._by_value: dict[tuple, str] = {}  # one initializer per distinct constant

    def fresh(self, hint: str) -> str:
        """A new name from ``hint``: its tensor and its last step (``x:scale`` from
        ``x:q:clip:scale``), so that names stay short along chains of steps."""
        parts = hint.split(":")
        short = parts[0] if len(parts) == 1 else f"{parts[0]}:{parts[-1]}"
        while True:  # (past a reserved name, or one an unlike hint gave: 'a~1' from 'a')
            self._counts[short] += 1
            name = f"{short}~{self._counts[short]}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def initializer(self, name: str, value: np.ndarray) -> str:
        self.initializers[name] = np.asarray(value)
        return name

    def constant(self, hint: str, value: np.ndarray) -> str:
        """An initializer holding ``value``: shared with an equal constant made before."""
        value = np.asarray(value)
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._by_value:
            self._by_value[key] = self.initializer(self.fresh(hint), value)
        return self._by_value[key]

    def add(self, op_type: str, inputs: list[str], hint: str, domain: str | None = None,
            **attrs) -> str:
        """One node with one output, named after ``hint``; returns the output."""
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def multiply(self, name: str, factor: np.ndarray) -> str:
        const = self.constant(f"{name}:factor", factor.astype(np.float32))
        return self.add("Mul", [name, const], f"{name}:mul")

    def round(self, name: str) -> str:
        return self.add("Round", [name], f"{name}:round")

    def clip(self, name: str, low, high) -> str:
        """Clip to [low, high], bounds of the tensor's own type (numpy scalars)."""
        lo = self.constant(f"{name}:lo", np.asarray(low))
        hi = self.constant(f"{name}:hi", np.asarray(high))
        return self.add("Clip", [name, lo, hi], f"{name}:clip")

    def rename(self, name: str, dst: str) -> None:
        """Make ``dst`` the name of what ``name`` holds (the last emitted node's output). A
        node the emitter made keeps ``name``, its descriptive output name, as its own: the
        integer format's MatMulInteger for a Gemm without a bias Add after it had been named
        after the accumulator it writes (``logits:acc~q14``), not its layer (``gemm2:int~1``)."""
        if self.nodes and name in self.nodes[-1].output:
            last = self.nodes[-1]
            if not last.name:
                last.name = name
            last.output[list(last.output).index(name)] = dst
        else:
            self.nodes.append(helper.make_node("Identity", [name], [dst]))

    def _cast_last(self, name: str, dtype: np.dtype) -> None:
        """Give output ``name`` as ``dtype``: its producer writes a new name, cast to it."""
        wide = self.fresh(f"{name}:float")
        for node in self.nodes:
            node.input[:] = [wide if i == name else i for i in node.input]
            node.output[:] = [wide if o == name else o for o in node.output]
        self.nodes.append(helper.make_node("Cast", [wide], [name],
                                           to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype))))

    def node(self, node: Node) -> None:
        self.nodes.append(node_proto(node))

    def _prune(self, outputs: set[str]) -> None:
        """Drop nodes nothing reads (e.g. a dequantization a look-up table made useless)."""
        while True:
            read = outputs | {name for node in self.nodes for name in node.input}
            kept = [n for n in self.nodes if any(o in read for o in n.output if o)]
            if len(kept) == len(self.nodes):
                return
            self.nodes = kept

    def model(self, graph: Graph, outputs: list[tuple[str, tuple | None, np.dtype]],
              doc: str = "", min_opset: int = MIN_OPSET,
              casts: Mapping[str, np.dtype] | None = None,
              opset: int | None = None, *,
              source_nodes: Collection[str]) -> onnx.ModelProto:
        """The ONNX model with the source graph's inputs and the given outputs (name, shape,
        element type); ``casts``: outputs computed in float32 that the model gives in another
        type (a float16 export's), cast last; ``opset``: the file's ONNX opset in place of
        the source's (:func:`newest_schema` says how low it may go); ``source_nodes``: the
        names of the nodes written for the source's (:func:`_widen_narrow_floats`)."""
        from ...graph import onnx_io

        for name, dtype in (casts or {}).items():
            self._cast_last(name, dtype)
        inputs = [onnx_io._value_info(t) for t in graph.inputs]
        outs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(
                    np.dtype(dtype)), None if shape is None else list(shape))
                for name, shape, dtype in outputs]
        self._prune({output[0] for output in outputs})
        _name_nodes(self.nodes)
        names = _short_names(self.nodes, {t.name for t in graph.inputs}
                             | {output[0] for output in outputs})
        for node in self.nodes:
            node.input[:] = [names.get(name, name) for name in node.input]
            node.output[:] = [names.get(name, name) for name in node.output]
        used = {name for node in self.nodes for name in node.input}
        inits = [numpy_helper.from_array(v, names.get(k, k)) for k, v in
                 self.initializers.items() if names.get(k, k) in used]
        proto = helper.make_graph(self.nodes, graph.name, inputs, outs, inits)
        opsets = dict(graph.opsets)
        opsets[""] = max(opsets.get("", min_opset) if opset is None else opset, min_opset)
        model = helper.make_model(
            proto, producer_name="ptq-verify",
            opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        )
        model.ir_version = min(model.ir_version, 8)
        model.doc_string = doc
        _widen_narrow_floats(model, set(source_nodes))
        return model


def newest_schema(graph: Graph) -> int:
    """The newest schema version the ONNX-domain nodes of ``graph`` (and of its subgraphs)
    resolve to at its opset: a file of any opset from this one to the graph's runs each of
    them by the same schema, since none of theirs changed in between. A file may need a lower
    opset than its source's: onnxruntime 1.32 runs a model of opset 28 whose nodes are older,
    but has no QuantizeLinear of opset 28 for the qdq format to write."""
    source = graph.opsets.get("", MIN_OPSET)
    inner = [proto for node in graph.nodes for value in node.attrs.values()
             for sub in subgraphs(value) for proto in sub.node]  # (at every depth)
    return max((onnx.defs.get_schema(node.op_type, max_inclusive_version=source,
                                     domain="").since_version
                for node in (*graph.nodes, *inner) if (node.domain or "") in ("", "ai.onnx")),
               default=1)


_NARROW_FLOATS = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def _widen_narrow_floats(model: onnx.ModelProto, source_nodes: set[str]) -> None:
    """Cast to float32, in place, what a node of ``model`` writes as float16 or bfloat16 by
    an attribute (``Cast(to=FLOAT16)``, a constant of such a value, a ``dtype``), but its
    outputs: what a float16 export computes from its inputs' shapes or constants (``Shape ->
    Cast(to=FLOAT16) -> Sqrt``, the scale of a fixed-shape attention) meets float32 values in
    the written file, where every activation is dequantized to float32 and every constant is
    stored as float32 (onnxruntime refused such a Mul). Every other node then computes in
    float32 from float32 inputs, as the simulation does (it keeps each node's output as
    float32): the same values, rounded to the narrow type where the node writes it.
    What a node of the source (named in ``source_nodes``) writes as float64 is cast so too
    (torch's ``x.double()``: a float64 activation met QuantizeLinear, which takes no double,
    and float32 codes in the simulation format), while the plan holds its float64 constants
    as float32 already (quantize's ``consts``: a static ``Shape -> Cast(to=DOUBLE) -> Sqrt ->
    Div`` of a float64 1 then computes in float32 throughout); the formats' own float64
    steps (an exact requantization product, its factor and bounds) are not the source's and
    keep their width."""
    def writes(node: onnx.NodeProto, kinds: set[int]) -> bool:
        return any(a.name in ("to", "dtype") and a.type == onnx.AttributeProto.INT
                   and a.i in kinds
                   or a.type == onnx.AttributeProto.TENSOR and a.t.data_type in kinds
                   for a in node.attribute)

    narrow, wide = set(_NARROW_FLOATS), {*_NARROW_FLOATS, onnx.TensorProto.DOUBLE}
    interface = {o.name for o in model.graph.output}
    nodes = []
    for node in model.graph.node:
        nodes.append(node)
        if not writes(node, wide if node.name in source_nodes else narrow):
            continue
        for index, name in enumerate(node.output):
            if name and name not in interface:
                node.output[index] = f"{name}:narrow"
                nodes.append(helper.make_node("Cast", [f"{name}:narrow"], [name],
                                              name=f"{node.name}:widen~{index}",
                                              to=onnx.TensorProto.FLOAT))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _name_nodes(nodes: list[onnx.NodeProto]) -> None:
    """Name every unnamed node, in place, after its output's descriptive name (``conv1:int~1``,
    the integer format's ConvInteger for ``conv1``) before :func:`_short_names` shortens the
    tensors'; one already taken (a converter's node named after the output that a format's
    last step now writes) gets a suffix. onnxruntime's errors and profiles and viewers such as
    Netron name a node by it: the integer format's nodes had none, so nothing in its file said
    which layer a kernel computes. The source's nodes have names of their own already
    (:func:`..graph.onnx_io.nodes_of`)."""
    taken = {node.name for node in nodes if node.name}
    for node in nodes:
        if node.name:
            continue
        stem = next((output for output in node.output if output), node.op_type)
        name, count = stem, 1
        while name in taken:
            count += 1
            name = f"{stem}~{count}"
        taken.add(name)
        node.name = name


def _short_names(nodes: list[onnx.NodeProto], interface: set[str]) -> dict[str, str]:
    """A short name for every tensor but the model's inputs and outputs, in order of first use.
    The descriptive names (``conv1:q~1``) weigh as much as the int8 weights of a small model;
    every node keeps a descriptive name (:func:`_name_nodes`), so a tensor is still found by the
    node reading it."""
    names: dict[str, str] = {}
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in nodes for a in node.attribute):
        return names  # a subgraph may read outer tensors by name: keep every name
    for node in nodes:
        for name in (*node.input, *node.output):
            if name and name not in interface and name not in names:
                short = f"_{len(names):x}"
                while short in interface:
                    short += "_"
                names[name] = short
    return names


# -- what onnxruntime runs on integer containers ------------------------------------------------

_PROBED: dict[tuple, bool] = {}


def runs_on(node, types: list[int], opset: int, output: int | None = None) -> bool:
    """Whether onnxruntime builds a one-node model of ``node`` on inputs of ``types`` (the
    output of type ``output``, by default the first input's): asked once per op type,
    attributes and types."""
    output = types[0] if output is None else output
    key = (node.domain or "", node.op_type, tuple(types), repr(sorted(node.attrs.items())),
           opset, output)
    if key not in _PROBED:
        names = [f"x{i}" for i in range(len(types))]
        graph = helper.make_graph(
            [node_proto(node, names, ["y"])], "probe",
            [helper.make_tensor_value_info(n, t, None) for n, t in zip(names, types)],
            [helper.make_tensor_value_info("y", output, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            ort.InferenceSession(model.SerializeToString(), options)
            _PROBED[key] = True
        except Exception:  # noqa: BLE001 - any refusal means: no kernel for these types
            _PROBED[key] = False
    return _PROBED[key]


def qdq_runs_at(opset: int) -> bool:
    """Whether onnxruntime builds QuantizeLinear and DequantizeLinear on uint8 codes at
    ``opset`` (1.32 has neither at opset 28)."""
    float32, uint8 = onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8
    quantize = Node("q", "QuantizeLinear", ["x", "s", "z"], ["y"])
    dequantize = Node("d", "DequantizeLinear", ["x", "s", "z"], ["y"])
    return (runs_on(quantize, [float32, float32, uint8], opset, output=uint8)
            and runs_on(dequantize, [uint8, float32, uint8], opset, output=float32))
