"""Split a node whose witness is a chain of max/min with parameters (Clip, ReLU6) into binary
max/min nodes whose bounds are constant *tensor* inputs.

Why: cross-layer equalization rescales such a node's bounds per channel (hi_c -> hi / s_c,
proofs/per-channel.md), but ONNX keeps Clip's bounds scalar (onnxruntime refuses per-channel
ones), while a binary Max/Min broadcasts its inputs. The split is read off the witness
(``min(hi, max(lo, x))`` is max with lo, then min with hi) and the catalog's declarations (the
operators whose witness is ``max(a, b)`` / ``min(a, b)`` of their two tensors); no operator type
is named. The split computes the same function exactly; a bound the node leaves absent is no
step at all.

Each split is recorded on the graph (``Graph.undo``) and :func:`rejoin` puts the node back
where its bounds kept one value in every channel (a group that took no factor and no shift):
onnxruntime fuses a Clip into the convolution before it, not a Max/Min pair, which cost the
default EfficientNet-Lite1 file 0.8 ms a crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..catalog.operator import Operator
from ..graph import Graph, Node, OperatorTable, TensorInfo
from ..rules import stored_structure


def binary_operator(kind: str, table: OperatorTable) -> Operator | None:
    """A declared ONNX operator whose witness is ``kind`` (``"max"`` or ``"min"``) of its two
    input tensors."""
    from ..catalog import CATALOG

    for op in (*table.extra.values(), *CATALOG.values()):
        if (op.onnx_type and not op.params and not op.onnx_match and not op.mixes_channels
                and len(op.inputs) == 2 and op.element_names == tuple(t.name for t in op.inputs)
                and op.onnx_inputs == op.element_names
                and stored_structure(op).binary == kind):
            return op
    return None


def can_split(graph: Graph, table: OperatorTable, node: Node, op: Operator) -> bool:
    return _plan(graph, table, node, op) is not None


@dataclass(frozen=True)
class Split:
    """A node :func:`split` replaced: the node, its bound initializers as they were, and the
    steps that replaced it, each with the original bound its own (input 1) was copied from."""

    node: Node
    bounds: dict[str, np.ndarray]
    steps: tuple[tuple[Node, str], ...]  # (step, the original bound)


def split(graph: Graph, table: OperatorTable, node: Node, op: Operator) -> list[Node] | None:
    """Replace ``node`` by its binary steps in ``graph`` (in place, recorded in
    ``graph.undo``); return them."""
    plan = _plan(graph, table, node, op)
    if plan is None:
        return None
    source = next(name for name in node.inputs if name not in graph.initializers)
    info = graph.value_info.get(node.outputs[0]) or graph.value_info.get(source)
    nodes, current = [], source
    for index, (binary, bound) in enumerate(plan):
        constant = f"{node.name}:{index}:bound"
        graph.initializers[constant] = np.array(graph.initializers[bound], copy=True)
        last = index == len(plan) - 1
        output = node.outputs[0] if last else f"{node.name}:{index}"
        if not last and info is not None:
            graph.value_info[output] = TensorInfo(output, info.shape, info.dtype)
        nodes.append(Node(f"{node.name}:{binary.name.lower()}", binary.onnx_type,
                          [current, constant], [output]))
        current = output
    position = graph.nodes.index(node)
    graph.nodes[position:position + 1] = nodes
    graph.undo.append(Split(node, {bound: graph.initializers[bound] for _, bound in plan},
                            tuple((step, bound) for step, (_, bound) in zip(nodes, plan))))
    graph.remove_unused()
    return nodes


def rejoin(graph: Graph) -> int:
    """Put back, in place, every node :func:`split` replaced whose steps are still in
    ``graph``, in a row, each bound still holding its original value in every element (it
    took no factor and no shift per channel): the same function, as one node. Return how many
    were put back."""
    done = 0
    for record in list(graph.undo):
        steps = [step for step, _ in record.steps]
        first = next((i for i, node in enumerate(graph.nodes) if node is steps[0]), None)
        if first is None:
            graph.undo.remove(record)  # undone already (a pass put the graph back)
            continue
        window = graph.nodes[first:first + len(steps)]
        if len(window) != len(steps) or any(a is not b for a, b in zip(window, steps)):
            continue
        if not all(np.all(graph.initializers[step.inputs[1]] == record.bounds[original])
                   for step, original in record.steps):
            continue
        if any(name in graph.initializers and not np.array_equal(
                graph.initializers[name], value) for name, value in record.bounds.items()):
            continue  # the original bound's name now holds something else
        graph.nodes[first:first + len(steps)] = [record.node]
        for name, value in record.bounds.items():
            graph.initializers.setdefault(name, value)
        for step in steps[:-1]:
            graph.value_info.pop(step.outputs[0], None)
        graph.undo.remove(record)
        done += 1
    if done:
        graph.remove_unused()
    return done


def _plan(graph: Graph, table: OperatorTable, node: Node, op: Operator):
    """[(binary operator, bound initializer)] for ``node``, or None when it cannot split."""
    steps = stored_structure(op).selection_steps
    if steps is None or len(node.outputs) != 1:
        return None
    plan = []
    for kind, param in steps:
        binary = binary_operator(kind, table)
        if binary is None or param not in op.onnx_inputs:
            return None
        slot = op.onnx_inputs.index(param)
        name = node.inputs[slot] if slot < len(node.inputs) else ""
        if not name:
            continue  # an absent bound: no step
        if name not in graph.initializers:
            return None
        plan.append((binary, name))
    return plan or None
