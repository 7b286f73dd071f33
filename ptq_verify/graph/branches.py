"""An ONNX If whose condition is a constant of the model, replaced by the branch it takes.

torch's legacy exporter writes Python's ``if`` on a tensor's size as an If node (VitDet's
relative positions: ``if rel_pos.shape[0] != max_rel_dist: interpolate``), its condition
computed from shapes alone. Where the model's input shapes fix those shapes, constant folding
(:mod:`.static`) computes the condition, and the If runs the same branch on every input: it
is that branch, as onnxruntime's constant folding and onnx's optimizer
(``eliminate_if_with_const_cond``) make it. No declaration describes a subgraph, so such a
model had been refused by name. The branch's nodes are taken into the graph in the If's place
(their own tensor names made unique where the graph holds them already), its initializers
become the graph's, and its outputs become the If's. An If whose condition depends on the
model's data is left as it is, and refused by name.
"""

from __future__ import annotations

import numpy as np
import onnx

from .model import Graph, Node, subgraph_reads, subgraphs
from .onnx_io import _array, nodes_of


def resolve_branches(graph: Graph) -> bool:
    """Replace, in place, every If of a constant condition by the nodes of its taken branch;
    whether anything changed (the caller folds again: the branch may compute constants)."""
    used = _names(graph)
    node_names = {node.name for node in graph.nodes}
    taken: dict[str, list[Node]] = {}
    for node in graph.nodes:
        branch = _taken_branch(graph, node)
        if branch is not None:
            taken[node.name] = _inlined(graph, node, branch, used, node_names)
    if not taken:
        return False
    graph.nodes[:] = [new for node in graph.nodes for new in taken.get(node.name, [node])]
    return True


def _taken_branch(graph: Graph, node: Node) -> onnx.GraphProto | None:
    """The branch an If of a one-element boolean constant condition runs; None for any other
    node."""
    if node.op_type != "If" or not node.in_onnx_domain or len(node.inputs) != 1:
        return None
    condition = graph.initializers.get(node.inputs[0])
    # ONNX's If takes a bool: onnxruntime refuses a model whose condition is an int, a float
    # or a string (b"false" is truthy in Python), so no branch is said to be taken there
    if condition is None or np.size(condition) != 1 or np.asarray(condition).dtype != np.bool_:
        return None
    branch = node.attrs.get("then_branch" if bool(np.asarray(condition).reshape(()))
                            else "else_branch")
    if not isinstance(branch, onnx.GraphProto) or len(branch.output) != len(node.outputs):
        return None
    return branch


def _inlined(graph: Graph, node: Node, branch: onnx.GraphProto, used: set[str],
             node_names: set[str]) -> list[Node]:
    """The nodes that compute ``node``'s outputs as ``branch`` does, in the graph's scope
    (``used``, ``node_names``: the names taken there, updated); its initializers are added to
    the graph's."""
    local = [t.name for t in branch.initializer] + [
        out for proto in branch.node for out in proto.output if out]
    rename = {name: _fresh(name, used) for name in local if name in used}
    used.update(rename.values(), local)
    made = {out for proto in branch.node for out in proto.output if out}
    results = [out.name for out in branch.output]
    copies = []  # (branch tensor, If output) pairs an Identity passes on
    for result, output in zip(results, node.outputs):
        if output and result in made and results.count(result) == 1:
            rename[result] = output  # its producer writes the If's output itself
        elif output:
            copies.append((result, output))
    for tensor in branch.initializer:
        graph.initializers[rename.get(tensor.name, tensor.name)] = _array(tensor)
    nodes = nodes_of(branch.node, node_names, f" in {node.name}")
    for new in nodes:
        new.inputs = [rename.get(name, name) for name in new.inputs]
        new.outputs = [rename.get(name, name) for name in new.outputs]
        for key, value in list(new.attrs.items()):
            new.attrs[key] = _renamed_subgraphs(value, rename)
    for result, output in copies:
        name = _fresh(f"{node.name}/{output}", node_names)
        node_names.add(name)
        nodes.append(Node(name, "Identity", [rename.get(result, result)], [output]))
    return nodes


def _renamed_subgraphs(value, rename: dict[str, str]):
    """``value`` with the names a nested subgraph reads from the branch renamed as the branch's
    own tensors are (a copy); any other attribute value as it is."""
    if not rename or not subgraphs(value):
        return value
    graphs = [value] if isinstance(value, onnx.GraphProto) else list(value)
    copies = []
    for graph in graphs:
        copy = onnx.GraphProto()
        copy.CopyFrom(graph)
        for inner in subgraphs(copy):  # (the copy itself first)
            for proto in inner.node:
                proto.input[:] = [rename.get(name, name) for name in proto.input]
            for out in inner.output:
                out.name = rename.get(out.name, out.name)
        copies.append(copy)
    return copies[0] if isinstance(value, onnx.GraphProto) else copies


def _names(graph: Graph) -> set[str]:
    """Every tensor name the graph holds or reads (subgraphs' included)."""
    names = set(graph.initializers) | set(graph.input_names) | set(graph.output_names)
    names |= set(graph.value_info)
    for node in graph.nodes:
        names.update(node.inputs, node.outputs, subgraph_reads(node))
    return names


def _fresh(name: str, taken: set[str]) -> str:
    """``name``, suffixed until no name in ``taken`` is it."""
    fresh, count = name, 0
    while fresh in taken:
        count += 1
        fresh = f"{name}_{count}"
    return fresh


def condition_hint(graph: Graph, node: Node) -> str:
    """What the condition of an If that stays is computed from, with the change to the file
    that makes it a constant, so that loading takes the branch (:func:`resolve_branches`);
    "" for any other node. A new-user trial's silero-vad exports were refused with 'export
    the model without it' alone, a model shipped in a wheel, with no exporter at hand: one
    If tests the value of its ``sr`` input (a sample rate its 16 kHz use fixes), the others
    the shapes of tensors computed from an input whose window length the file leaves free."""
    if node.op_type != "If" or not node.in_onnx_domain or len(node.inputs) != 1:
        return ""
    values, shapes = _condition_inputs(graph, node.inputs[0])
    values = [name for name in values if not _free_axes(graph, name)]  # (one value each)
    if values:
        return (f"; its condition is computed from the value of input(s) "
                f"{', '.join(map(repr, values))}: where the model is used with one value there "
                "(a sample rate), make that input a constant of the file (an initializer of "
                "that value, the input removed) and loading takes the branch it runs "
                "(docs/engine.md)")
    free = "; ".join(f"{name!r}: {axes}" for name in shapes if (axes := _free_axes(graph, name)))
    if free:
        return (f"; its condition is computed from the shape of input(s) whose axes the file "
                f"leaves free ({free}): fix in the file those it depends on (their dim_value: "
                "the length the model is used at) and loading takes the branch it runs "
                "(docs/engine.md)")
    return ""


def _condition_inputs(graph: Graph, condition: str) -> tuple[list[str], list[str]]:
    """The graph inputs ``condition`` reads the values of, and those it reads only the shapes
    of (through a Shape), each in graph order."""
    producers = graph.producers()
    values: set[str] = set()
    shapes: set[str] = set()
    pending, seen = [(condition, False)], set()
    while pending:
        tensor, through_shape = pending.pop()
        if (tensor, through_shape) in seen or not tensor:
            continue
        seen.add((tensor, through_shape))
        if tensor in graph.input_names:
            (shapes if through_shape else values).add(tensor)
            continue
        producer = producers.get(tensor)
        if producer is None:
            continue
        reads_shape = producer.in_onnx_domain and producer.op_type == "Shape"
        pending.extend((name, through_shape or reads_shape) for name in producer.inputs)
    order = graph.input_names
    return ([n for n in order if n in values], [n for n in order if n in shapes])


def _free_axes(graph: Graph, name: str) -> str:
    """The axes of graph input ``name`` the file leaves free, as 'axis 1 (sequence)'."""
    shape = graph.shape_of(name) or ()
    return ", ".join(f"axis {axis} ({dim})" if isinstance(dim, str) else f"axis {axis}"
                     for axis, dim in enumerate(shape) if not isinstance(dim, int) or dim <= 0)
