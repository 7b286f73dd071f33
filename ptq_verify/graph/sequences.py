"""ONNX sequences that only split a tensor and take pieces of it back, rewritten as Slices.

torch's legacy exporter writes a split whose sizes it cannot fix at export time
(``torch.tensor_split`` over a free axis) as ``SplitToSequence`` (a list of tensors, an ONNX
sequence) followed by ``SequenceAt`` of a constant position (transformers 5's Mamba: ten such
pairs, their sizes computed from the sequence length). No declaration describes a list of
tensors, so the model was refused. But when every reader of the sequence takes one piece at a
constant position, each reader is the Slice of the split tensor that piece is: from the sum of
the sizes before it, as long as its own size (computed in the graph where the sizes are, by
static nodes the engine runs exactly). Any other use of the sequence (its length, a position
computed at run time, a Concat of it back) leaves the graph as it is, and the refusal stands.
"""

from __future__ import annotations

import numpy as np

from .model import Graph, Node

_END = np.iinfo(np.int64).max  # a Slice's end past any axis


def split_sequences(graph: Graph) -> bool:
    """Rewrite, in place, every SplitToSequence whose readers are all SequenceAt of a
    constant position: each reader becomes the Slice (and, where the pieces drop their axis,
    the Squeeze) of its piece, and the SplitToSequence goes; whether anything changed."""
    if graph.opsets.get("", 0) < 13:  # Squeeze's axes and ReduceSum's became inputs
        return False
    consumers = graph.consumers()
    pieces: dict[str, list[Node]] = {}  # SequenceAt name -> the nodes that make its piece
    splits: set[str] = set()
    for node in graph.nodes:
        if node.op_type != "SplitToSequence" or not node.in_onnx_domain:
            continue
        readers = consumers.get(node.outputs[0], [])
        made = [_piece(graph, node, reader) for reader in readers]
        if not readers or node.outputs[0] in graph.output_names or None in made:
            continue
        splits.add(node.name)
        pieces.update((reader.name, nodes) for reader, nodes in zip(readers, made))
    if not splits:
        return False
    graph.nodes[:] = [new for node in graph.nodes if node.name not in splits
                      for new in pieces.get(node.name, [node])]
    return True


def _piece(graph: Graph, split: Node, reader: Node) -> list[Node] | None:
    """The nodes that compute ``reader``'s piece of ``split``'s sequence, or None where the
    reader is not a SequenceAt of a constant position the rewrite can place."""
    if (reader.op_type != "SequenceAt" or not reader.in_onnx_domain
            or len(reader.inputs) < 2 or reader.inputs[1] not in graph.initializers):
        return None
    position = np.asarray(graph.initializers[reader.inputs[1]])
    if position.size != 1:
        return None
    position = int(position.reshape(()))
    axis = int(split.attrs.get("axis", 0))
    sizes = split.inputs[1] if len(split.inputs) > 1 and split.inputs[1] else None
    name, out = reader.name, reader.outputs[0]
    x = split.inputs[0]
    if sizes is None:  # pieces of one, their axis dropped unless keepdims
        end = position + 1 if position != -1 else _END
        keep = int(split.attrs.get("keepdims", 1))
        sliced = out if keep else f"{out}:kept"
        nodes = [_slice(graph, name, x, position, end, axis, sliced)]
        if not keep:  # (the Slice's axes are the Squeeze's)
            nodes.append(Node(f"{name}:squeeze", "Squeeze", [sliced, nodes[0].inputs[3]],
                              [out]))
        return nodes
    if sizes in graph.initializers:
        values = np.asarray(graph.initializers[sizes]).astype(np.int64)
        if values.ndim == 0:  # one size for every piece, the last one shorter
            if position < 0:
                return None  # counted from an end that depends on the axis's length
            return [_slice(graph, name, x, position * int(values),
                           (position + 1) * int(values), axis, out)]
        if not -values.size <= position < values.size:
            return None
        position %= values.size
        start = int(values[:position].sum())
        return [_slice(graph, name, x, start, start + int(values[position]), axis, out)]
    shape = graph.shape_of(sizes)
    if shape is None or len(shape) != 1:
        return None
    if position < 0:  # counted from the end: needs the number of sizes
        if not isinstance(shape[0], int) or position < -shape[0]:
            return None
        position %= shape[0]
    # sizes computed in the graph: start = sum(sizes[:position]), end = start + sizes[position]
    zero = _constant(graph, f"{name}:zero", np.array([0], np.int64))  # a start, an axis
    here = _constant(graph, f"{name}:position", np.array([position], np.int64))
    after = _constant(graph, f"{name}:after", np.array([position + 1], np.int64))
    axes = _constant(graph, f"{name}:axes", np.array([axis], np.int64))
    before, own = f"{out}:before", f"{out}:own"
    start, stop = f"{out}:start", f"{out}:stop"
    return [Node(f"{name}:before", "Slice", [sizes, zero, here, zero], [before]),
            Node(f"{name}:start", "ReduceSum", [before], [start], {"keepdims": 1}),
            Node(f"{name}:own", "Slice", [sizes, here, after, zero], [own]),
            Node(f"{name}:stop", "Add", [start, own], [stop]),
            Node(name, "Slice", [x, start, stop, axes], [out])]


def _slice(graph: Graph, name: str, x: str, start: int, end: int, axis: int, out: str) -> Node:
    """Slice of ``x`` from ``start`` to ``end`` along ``axis``, its bounds as constants."""
    bounds = [_constant(graph, f"{name}:{what}", np.array([value], np.int64))
              for what, value in (("start", start), ("end", end), ("axes", axis))]
    return Node(name, "Slice", [x, *bounds], [out])


def _constant(graph: Graph, name: str, value: np.ndarray) -> str:
    graph.initializers[name] = value
    return name
