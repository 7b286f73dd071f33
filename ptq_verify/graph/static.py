"""Which tensors are activations, and folding of what is computed from constants alone.

A float tensor is an *activation* when it depends on a float graph input through an input slot
that the operator's declaration does not mark static, or when a node reads a float *table* (a
constant of more than one element) through such a slot while another of its inputs depends on
a graph input: token ids (int64, static) picking rows of an embedding table (Gather) give
activations, the table being the node's weight. Everything else (shapes, indices, token ids,
masks, and what is computed from them alone) is *static*: the quantized model computes it
exactly in float, as the source model does. A scalar constant selected by a static condition
(an attention mask ``Where(cond, 0, -3.4e38)``) stays static: its output takes only the
constant's values, which the float model holds exactly. Tensors that depend on no graph input
at all are *constants* and are folded into initializers at load time.
"""

from __future__ import annotations

import numpy as np

from .executor import run_node
from .model import Graph
from .operators import OperatorTable, slot_binding


def fold_constants(graph: Graph, table: OperatorTable) -> int:
    """Evaluate every node whose inputs are all constants; return how many were folded.

    Nodes with no declared operator are evaluated with onnx's reference evaluator, since a
    constant subgraph needs exact values, not a scaling rule.
    """
    folded = 0
    kept = []
    for node in graph.nodes:
        constant = all(not name or name in graph.initializers for name in node.inputs)
        if not constant or any(out in graph.output_names for out in node.outputs):
            kept.append(node)
            continue
        inputs = [graph.initializers[name] if name else None for name in node.inputs]
        if table.find(node, graph) is not None:
            outputs = run_node(node, table, inputs, graph)
        else:
            outputs = _reference_run(graph, node, inputs)
            if outputs is None:
                kept.append(node)
                continue
        for name, value in zip(node.outputs, outputs):
            if name:
                graph.initializers[name] = np.asarray(value)
        folded += 1
    graph.nodes = kept
    graph.remove_unused()
    return folded


def _reference_run(graph: Graph, node, inputs) -> list | None:
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    from .onnx_io import node_proto

    names = [f"in{i}" if name else "" for i, name in enumerate(node.inputs)]
    proto = node_proto(node, names)
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names, inputs) if n]
    outs = [helper.make_tensor_value_info(o, 0, None) for o in node.outputs if o]
    model = helper.make_model(
        helper.make_graph([proto], "fold", [], outs, inits),
        opset_imports=[helper.make_opsetid(d, v) for d, v in graph.opsets.items()],
    )
    try:
        return list(ReferenceEvaluator(model).run(None, {}))
    except Exception:  # noqa: BLE001 - an op the reference cannot fold stays a node
        return None


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
        for name in node.outputs:
            dtype = graph.dtype_of(name)
            if name and (dtype is None or np.issubdtype(dtype, np.floating)):
                active.add(name)
    return active


def _is_table(graph: Graph, name: str) -> bool:
    """A float constant of more than one element (an embedding table, a weight)."""
    value = graph.initializers.get(name)
    return value is not None and value.size > 1 and np.issubdtype(value.dtype, np.floating)


def table_slots(graph: Graph, op, node) -> tuple[int, ...]:
    """The slots through which ``node`` reads a float table as a tensor input."""
    return tuple(slot for slot, name in enumerate(node.inputs)
                 if _is_table(graph, name) and slot_binding(op, slot) is not None)
