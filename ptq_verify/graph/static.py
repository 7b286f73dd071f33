"""Which tensors are activations, and folding of what is computed from constants alone.

A float tensor is an *activation* when it depends on a float graph input through an input slot
that the operator's declaration does not mark static, or when a node reads a float *table* (a
constant of more than one value) through such a slot while another of its inputs depends on
a graph input: token ids (int64, static) picking rows of an embedding table (Gather) give
activations, the table being the node's weight. Everything else (shapes, indices, token ids,
masks, and what is computed from them alone) is *static*: the quantized model computes it
exactly in float, as the source model does. A scalar constant, or a constant whose elements are
all equal, selected by a static condition (an attention mask ``Where(cond, 0, -3.4e38)``,
``zeros_like(pad).masked_fill(pad, -inf)``) stays static: its output takes only the
constant's values, which the float model holds exactly. Tensors that depend on no graph input
at all are *constants* and are folded into initializers at load time.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from .executor import run_node
from .model import Graph, subgraph_reads
from .onnx_io import infer_shapes_again, inferred_shapes, trusted_shape
from .operators import OperatorTable, slot_binding

MAX_FOLDED_ELEMENTS = 2**27
"""Largest constant (in elements, all outputs of one node) that folding computes: 134 million,
0.5 GB in float32, above the largest weight tables of real exports (GPT-2's token embedding
has 39 million)."""


def fold_constants(graph: Graph, table: OperatorTable) -> int:
    """Evaluate every node whose inputs are all constants; return how many were folded.

    Nodes with no declared operator are evaluated with onnx's reference evaluator, since a
    constant subgraph needs exact values, not a scaling rule. Static dimensions read by
    Shape nodes are constants too (:func:`_static_dims`), except where what they make would
    be a graph output: the model's outputs all come from its inputs, as it was exported.
    """
    before = dict(graph.initializers)
    barred: set[str] = set()
    shapes = {node.outputs[0]: node for node in graph.nodes
              if node.op_type == "Shape" and node.in_onnx_domain and node.outputs}
    trusted = (inferred_shapes(graph) or {}) if shapes else {}  # (the same for every pass)
    while True:
        try:
            return _fold(graph, table, barred, shapes, trusted)
        except _DimsReachOutput as reach:  # fold again without those dimensions
            graph.initializers = dict(before)
            barred |= reach.dims


class _DimsReachOutput(Exception):
    def __init__(self, dims: frozenset[str]) -> None:
        super().__init__()
        self.dims = dims


def _fold(graph: Graph, table: OperatorTable, barred: set[str], shapes: dict,
          trusted: dict) -> int:
    """One pass of :func:`fold_constants`, not folding the static dimensions ``barred``
    (``shapes``, ``trusted``: :func:`_static_dims`'s)."""
    folded = 0
    kept = []
    dims_in: dict[str, frozenset[str]] = {}  # a folded tensor -> the static dims it reads
    # an If's branch reads the graph's tensors by name, not through its inputs: an If of a
    # constant condition whose branch reads an activation is no constant (it had been said to
    # be one, and the model refused, where the If wrote a graph output)
    outer = set(graph.input_names).union(*(node.outputs for node in graph.nodes))
    for node in graph.nodes:
        reads = subgraph_reads(node) & outer
        constant = all(not name or name in graph.initializers for name in (*node.inputs, *reads))
        output = next((out for out in node.outputs if out in graph.output_names), None)
        dims = frozenset().union(*(dims_in.get(name, ()) for name in node.inputs))
        if constant and output is not None:
            if dims:
                raise _DimsReachOutput(dims)
            raise UserError(f"{graph.source}: graph output {output!r} ({node.label}) depends on "
                            "no model input, a constant; quantizing rewrites every output from "
                            "the inputs (drop it from the outputs)")
        if not constant:
            known = (None if output is not None or node.outputs[0] in barred
                     else _static_dims(graph, node, shapes, trusted))
            typed = None if known is not None or output is not None else _type_only(
                graph, table, node)
            if typed is not None:
                graph.initializers.update(typed)
                folded += 1
            elif known is None:
                kept.append(node)
            else:
                graph.initializers[node.outputs[0]] = known
                dims_in[node.outputs[0]] = frozenset({node.outputs[0]})
                folded += 1
            continue
        inputs = [graph.initializers[name] if name else None for name in node.inputs]
        _check_folded_size(graph, node, _inferred_size(graph, node, inputs))
        if table.find(node, graph) is not None:
            outputs = run_node(node, table, inputs, graph)
        else:
            outputs = _constant_value(node) or _reference_run(graph, node, inputs)
            if outputs is None:
                kept.append(node)
                continue
        values = [np.asarray(value) for value in outputs]
        _check_folded_size(graph, node, sum(v.size for v in values))
        for name, value in zip(node.outputs, values):
            if name:
                graph.initializers[name] = value
                if dims:
                    dims_in[name] = dims
        folded += 1
    graph.nodes = kept
    graph.remove_unused()
    if folded:
        infer_shapes_again(graph)
    return folded


def _static_dims(graph: Graph, node, shapes: dict, trusted: dict) -> np.ndarray | None:
    """The value of a Shape node, or of a Gather or Slice of constant positions reading one,
    when every dimension it gives is static in ``trusted``, or of a Size reading one (the
    rank, static where the dimensions are free: torch's legacy export of an LSTM fed a state
    that may lack its batch axis writes ``If(Size(Shape(h)) != 2, Unsqueeze)``, silero-vad's),
    ``trusted`` being the shapes inference finds from the graph's inputs and nodes
    (:func:`.onnx_io.inferred_shapes`: not those the file states for other tensors, which
    onnxruntime does not hold a model to); None otherwise.
    Such a value is a constant of the model, not of its data: torch's legacy export of
    nn.MultiheadAttention cuts its packed in_proj_weight at bounds computed from the embedding
    width's Shape, and folded, the three slices are weights (per-channel scales, output-aware
    rounding) where they had been a table selected at run time."""
    source = node if node.op_type == "Shape" else shapes.get(node.inputs[0] if node.inputs
                                                             else "")
    if source is None or not node.in_onnx_domain:
        return None
    name = source.inputs[0]
    dims = trusted_shape(graph, name, trusted)
    if dims is None:
        return None
    positions = np.arange(len(dims))[slice(source.attrs.get("start"), source.attrs.get("end"))]
    if node.op_type == "Size" and node is not source:
        return np.asarray(positions.size, np.int64)  # the rank: known where dimensions are free
    try:
        if node.op_type == "Gather" and node.attrs.get("axis", 0) == 0:
            positions = positions[np.asarray(graph.initializers[node.inputs[1]], np.int64)]
        elif node.op_type == "Slice" and len(node.inputs) >= 3:
            bounds = [np.asarray(graph.initializers[bound], np.int64).reshape(-1)
                      if bound else None for bound in node.inputs[1:5]]
            axes, steps = (bounds[2:] + [None, None])[:2]
            if (axes is not None and axes.tolist() not in ([0], [-1])) or (
                    steps is not None and steps.tolist() == [0]):
                return None
            step = None if steps is None else int(steps[0])
            positions = positions[int(bounds[0][0]):int(bounds[1][0]):step]
        elif node is not source:
            return None
    except (KeyError, IndexError, ValueError, TypeError):  # a position computed at run time
        return None
    values = [dims[i] for i in positions.reshape(-1)]
    if not all(isinstance(d, int) and d >= 0 for d in values):
        return None
    return np.asarray(values, np.int64).reshape(positions.shape)


class _ElementType:
    """A tensor whose element type alone is known: any read of its values or shape raises,
    so a kernel that completes with it in a slot read nothing but the type there."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __getattr__(self, name: str):
        raise TypeError(f"a value-free tensor has no {name}")

    def __array__(self, *args, **kwargs):
        raise TypeError("a value-free tensor has no values")

    def __len__(self) -> int:
        raise TypeError("a value-free tensor has no length")

    def __iter__(self):
        raise TypeError("a value-free tensor has no elements")

    def __getitem__(self, key):
        raise TypeError("a value-free tensor has no elements")


def _type_only(graph: Graph, table: OperatorTable, node) -> dict[str, np.ndarray] | None:
    """The outputs of a node whose inputs are constants but for some its declaration holds
    static (not tensor inputs), when its kernel runs reading only those inputs' element types,
    which the graph fixes: a constant, folded as one; None otherwise.
    The dynamo exporter writes ``torch.clamp(x, lo, hi)`` with Parameter bounds as
    ``Max(x, CastLike(lo, x))``: left in the graph, the CastLike dequantized ``x`` to read its
    type, and ``x``, read in float, kept its own scale where the Max would have aligned it
    (1.5-1.7 dB lost on digits models against their legacy exports)."""
    op = table.find(node, graph)
    if op is None or subgraph_reads(node):
        return None
    inputs: list = []
    for slot, name in enumerate(node.inputs):
        if not name or name in graph.initializers:
            inputs.append(graph.initializers[name] if name else None)
            continue
        dtype = graph.dtype_of(name)
        if slot_binding(op, slot) is not None or dtype is None:
            return None
        inputs.append(_ElementType(np.dtype(dtype)))
    try:
        with np.errstate(all="ignore"):
            result = op.run_onnx(inputs, node.kernel_attrs)
    except Exception:  # noqa: BLE001 - any failure: it reads more than the type, or cannot
        return None  # run here; either way the node is no constant
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    values = [np.asarray(value) for value in results]
    if len(values) != len(node.outputs) or any(v.dtype == object for v in values):
        return None
    _check_folded_size(graph, node, sum(v.size for v in values))
    return {name: value for name, value in zip(node.outputs, values) if name}


def _inferred_size(graph: Graph, node, inputs: list) -> int | None:
    """The number of elements of the node's outputs by ONNX shape inference (None if
    unknown), known before anything is computed, so a 200-byte model cannot make folding
    allocate gigabytes (an Expand to (12500, 12500, 8)). Where the model's inference left an
    output shape open, it is inferred again from the node alone, with its constant inputs
    (small ones: the inputs are serialised for it)."""
    shapes = [graph.value_info[n].shape if n in graph.value_info else None
              for n in node.outputs if n]
    if any(not _static(shape) for shape in shapes) and sum(
        np.size(v) for v in inputs if v is not None
    ) <= _REINFER_ELEMENTS:
        shapes = _node_output_shapes(graph, node, inputs) or shapes
    if any(not _static(shape) for shape in shapes):
        return None
    return sum(math.prod(shape) for shape in shapes)


_REINFER_ELEMENTS = 1 << 16


def _static(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d >= 0 for d in shape)


def _node_output_shapes(graph: Graph, node, inputs: list) -> list | None:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(
            _one_node_model(graph, node, inputs), strict_mode=False, data_prop=True
        )
    except Exception:  # noqa: BLE001 - inference is a help, never a requirement
        return None
    shapes = {}
    for value in (*inferred.graph.value_info, *inferred.graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim
            )
    return [shapes.get(n) for n in node.outputs if n]


def _check_folded_size(graph: Graph, node, elements: int | None) -> None:
    if elements is not None and elements > MAX_FOLDED_ELEMENTS:
        raise UserError(
            f"{graph.source}: {node.label} computes a constant of {elements} elements, more "
            f"than the {MAX_FOLDED_ELEMENTS} that constant folding may materialise"
        )


_CONSTANT_TYPES = {"value_float": np.float32, "value_floats": np.float32,
                   "value_int": np.int64, "value_ints": np.int64}
"""The element type of a Constant's value in each of its plain number forms."""


def _constant_value(node) -> list[np.ndarray] | None:
    """A Constant node's output as onnx's reference evaluator gives it, read from its one
    attribute: ``value`` (numbers or booleans; a ``sparse_value`` is one already, since
    loading), ``value_float(s)`` as float32, ``value_int(s)`` as int64; None for any other
    node or form (strings, float8 and other types numpy lacks), which the reference
    evaluator folds. Why: a torch export writes a Constant node per literal
    (all-MiniLM-L6-v2: 147), and the reference evaluator, a model of its own per node, took
    0.09 s of quantize's run on them, and 0.05 s more to import."""
    if node.op_type != "Constant" or not node.in_onnx_domain or len(node.attrs) != 1:
        return None
    (key, value), = node.attrs.items()
    if key == "value" and isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return [np.array(value)]  # (a copy: the attribute is the node's, as before)
    if key in _CONSTANT_TYPES:
        return [np.array(value, dtype=_CONSTANT_TYPES[key])]
    return None


def _reference_run(graph: Graph, node, inputs) -> list | None:
    from onnx.reference import ReferenceEvaluator

    try:
        return list(ReferenceEvaluator(_one_node_model(graph, node, inputs)).run(None, {}))
    except Exception:  # noqa: BLE001 - an op the reference cannot fold stays a node
        return None


def _one_node_model(graph: Graph, node, inputs):
    """A model of the node alone, its constant inputs as initializers."""
    from onnx import helper, numpy_helper

    from .onnx_io import node_proto

    names = [f"in{i}" if name else "" for i, name in enumerate(node.inputs)]
    proto = node_proto(node, names)
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names, inputs) if n]
    outs = [helper.make_tensor_value_info(o, 0, None) for o in node.outputs if o]
    return helper.make_model(
        helper.make_graph([proto], "fold", [], outs, inits),
        opset_imports=[helper.make_opsetid(d, v) for d, v in graph.opsets.items()],
    )


def activation_tensors(graph: Graph, table: OperatorTable) -> set[str]:
    """The names of the activation tensors (see the module docstring)."""
    active = {t.name for t in graph.float_inputs()}
    dependent = set(graph.input_names)  # tensors that depend on some graph input
    for node in graph.nodes:
        if not any(name in dependent for name in node.inputs):
            continue
        dependent.update(node.outputs)
        op = table.find(node, graph)
        fed = False
        for slot, name in enumerate(node.inputs):
            if name in active and (op is None or slot_binding(op, slot) is not None):
                fed = True
        if not fed and op is not None and not any(name in active for name in node.inputs):
            fed = any(_is_table(graph, name) and slot_binding(op, slot) is not None
                      for slot, name in enumerate(node.inputs))
        if not fed:
            continue
        positions = op.index_outputs if op is not None else {}  # (TopK's indices)
        for slot, name in enumerate(node.outputs):
            dtype = graph.dtype_of(name)
            if name and slot not in positions and (
                    dtype is None or np.issubdtype(dtype, np.floating)):
                active.add(name)
    return active


def _is_table(graph: Graph, name: str) -> bool:
    """A float constant of more than one value (an embedding table, a weight). A constant
    whose elements are all equal is a scalar broadcast (``zeros_like``, ``full_like``):
    choosing among such constants by a static condition, as ``Where(mask == 0, finfo.min,
    zeros)`` does, gives a static tensor (an additive attention mask), not an activation."""
    value = graph.initializers.get(name)
    if value is None or value.size <= 1 or not np.issubdtype(value.dtype, np.floating):
        return False
    # two elements that differ from the first answer for a real table without reading it
    # whole (all-MiniLM-L6-v2's 30522 x 384 embedding, compared at each of the 12 times the
    # activations are worked out: 0.1 s); only a constant they do not tell apart is read
    first = value.flat[0]
    if value.flat[-1] != first or value.flat[value.size // 2] != first:
        return True
    return not bool(np.all(value == first))


def table_slots(graph: Graph, op, node) -> tuple[int, ...]:
    """The slots through which ``node`` reads a float table as a tensor input."""
    return tuple(slot for slot, name in enumerate(node.inputs)
                 if _is_table(graph, name) and slot_binding(op, slot) is not None)
