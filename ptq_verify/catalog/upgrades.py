"""Node rewrites that keep a model's meaning where onnx's version converter does not.

The engine works at opset 13 and up (:data:`ptq_verify.graph.onnx_io.LEAST_OPSET`): an older
model goes through onnx's version converter, which adapts each op type whose meaning changed.
Hardmax changed at opset 13 as Softmax and LogSoftmax did (before it, the one-hot ran over
the input flattened to 2-D from ``axis`` on, ``axis`` 1 by default; from 13, along ``axis``
alone, -1 by default), but onnx's converter (1.23) has no adapter for it and only renumbers
the opset: a Hardmax over axis 2 of a (N, 4, 8, 8) tensor changed function, the converted
model was kept at its old opset, calibrated on the catalog's opset-13 kernel and written by
the integer format at opset 13 (-4 dB, a hunt for attribute forms). :func:`before_conversion`
spells each such node as its older opset computes it, in a form both opsets read alike.
"""

from __future__ import annotations

import onnx
from onnx import helper

FLATTENED_BEFORE_13 = ("Hardmax",)
"""Op types of ONNX's domain that flatten their input to 2-D from ``axis`` on before opset 13
and for which onnx's converter has no adapter (it has Softmax's and LogSoftmax's)."""


def before_conversion(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (opset < 13 in ONNX's domain) with each :data:`FLATTENED_BEFORE_13` node of
    its main graph written as Flatten(axis) -> the node over axis 1 -> Reshape to the input's
    shape: the same function at the model's opset, and at 13 once the converter renumbers
    it. The model itself where it has none."""
    if not any(n.op_type in FLATTENED_BEFORE_13 and n.domain in ("", "ai.onnx")
               for n in model.graph.node):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    taken = {name for n in model.graph.node for name in [*n.input, *n.output]}
    taken |= {t.name for t in model.graph.initializer} | {v.name for v in model.graph.input}
    node_names = {n.name for n in model.graph.node}

    def fresh(base: str, names: set[str] = taken) -> str:
        name, k = base, 0
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.add(name)
        return name

    nodes = []
    for node in model.graph.node:
        if node.op_type not in FLATTENED_BEFORE_13 or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        source, result = node.input[0], node.output[0]
        flat, hard, shape = (fresh(f"{result}:flat"), fresh(f"{result}:2d"),
                             fresh(f"{result}:shape"))
        kept = [a for a in node.attribute if a.name != "axis"]
        rewritten = helper.make_node(node.op_type, [flat], [hard], name=node.name, axis=1)
        rewritten.attribute.extend(kept)
        # the new nodes unnamed, as the node itself, where it has no name
        flatten, shaped, reshape = ((fresh(f"{node.name}:{role}", node_names) if node.name
                                     else "") for role in ("flatten", "shape", "reshape"))
        nodes += [helper.make_node("Flatten", [source], [flat], name=flatten, axis=axis),
                  rewritten,
                  helper.make_node("Shape", [source], [shape], name=shaped),
                  helper.make_node("Reshape", [hard, shape], [result], name=reshape)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
