"""Node rewrites that keep a model's meaning across the opset-13 boundary.

The engine works at opset 13 and up (:data:`ptq_verify.graph.onnx_io.LEAST_OPSET`): the
catalog's kernels have opset 13's semantics, the integer format writes opset 13, and an older
model goes through onnx's version converter first. Softmax, LogSoftmax and Hardmax changed
at opset 13: before it they ran over the input flattened to 2-D from ``axis`` on (``axis`` 1
by default), from 13 along ``axis`` alone (-1 by default). onnx's converter (1.23) adapts
Softmax and LogSoftmax but only renumbers Hardmax, and a model it cannot convert unchanged
stays at its opset: a Hardmax-11 over axis 2 of a (N, 4, 8, 8) tensor, or a Softmax-12 in a
model whose output is NaN on the converter check's random input (a Sqrt of the input), was
calibrated on the opset-13 kernel and written by the integer format at opset 13, another
function (-3.8 and -13.8 dB, exit 0; a hunt for attribute forms). :func:`before_conversion`
spells each such node in a form both opsets read alike, for a model the converter does not
take as it is (:func:`ptq_verify.graph.onnx_io.upgraded`): converted or not, it then computes
its own function.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

FLATTENED_BEFORE_13 = ("Softmax", "LogSoftmax", "Hardmax")
"""Op types of ONNX's domain that flatten their input to 2-D from ``axis`` on before opset
13 and run along ``axis`` alone from it."""


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """The rank of each tensor ONNX's shape inference knows (none where it fails)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - no ranks: every such node is spelt out
        return {}
    ranks = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            ranks[value.name] = len(tensor.shape.dim)
    ranks.update({t.name: len(t.dims) for t in inferred.graph.initializer})
    return ranks


def before_conversion(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` (opset < 13 in ONNX's domain) with each :data:`FLATTENED_BEFORE_13` node of
    its main graph that runs over more than its last axis written as Flatten(axis) -> the
    node over axis 1 -> Reshape to the input's shape: the same function at the model's opset,
    and at 13 whether the converter adapts the node or renumbers it. A node over the last
    axis (most exports: torch writes a Transpose around one over another axis) computes the
    same at both opsets and stays; the model itself where no node needs it. With it, the
    nodes spelt, in words (its name, or the op type and output of a node the file leaves
    unnamed), for the account of the loading (:func:`ptq_verify.graph.onnx_io.upgraded`)."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    candidates = [n for n in model.graph.node
                  if n.op_type in FLATTENED_BEFORE_13 and n.domain in ("", "ai.onnx")]
    if version >= 13 or not candidates:
        return model, []
    ranks = _ranks(model)

    def axis_of(node: onnx.NodeProto) -> int | None:
        """The node's axis where it must be spelt out (None: it need not, or cannot be)."""
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        rank = ranks.get(node.input[0])
        if rank is not None:
            if axis < 0:
                axis += rank
            return None if axis == rank - 1 else axis
        return axis if axis >= 0 or version >= 11 else None  # (Flatten's axis >= 0 before 11)

    if all(axis_of(n) is None for n in candidates):
        return model, []
    model = onnx.ModelProto.FromString(model.SerializeToString())
    taken = _tensor_names(model)
    node_names = {n.name for n in model.graph.node}
    nodes, spelt = [], []
    for node in model.graph.node:
        axis = (axis_of(node) if node.op_type in FLATTENED_BEFORE_13
                and node.domain in ("", "ai.onnx") else None)
        if axis is None:
            nodes.append(node)
            continue
        source, result = node.input[0], node.output[0]
        spelt.append(repr(node.name) if node.name else f"the {node.op_type} of {result!r}")
        flat, flat_out, shape = (_fresh(f"{result}:{role}", taken)
                                 for role in ("flat", "2d", "shape"))
        rewritten = helper.make_node(node.op_type, [flat], [flat_out], name=node.name, axis=1)
        rewritten.attribute.extend(a for a in node.attribute if a.name != "axis")
        # the new nodes unnamed, as the node itself, where it has no name
        flatten, shaped, reshape = ((_fresh(f"{node.name}:{role}", node_names) if node.name
                                     else "") for role in ("flatten", "shape", "reshape"))
        nodes += [helper.make_node("Flatten", [source], [flat], name=flatten, axis=axis),
                  rewritten,
                  helper.make_node("Shape", [source], [shape], name=shaped),
                  helper.make_node("Reshape", [flat_out, shape], [result], name=reshape)]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, spelt


def without_image_scalers(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with each ImageScaler of its main graph (an experimental op of opsets 1 to 9,
    removed at 10: ``y = scale * x + bias[c]`` over an (N, C, H, W) image) written as a Mul by
    ``scale`` and an Add of ``bias`` as a (1, C, 1, 1) tensor, both from Constant nodes (which
    every opset and IR version reads, where an IR-3 file needs each initializer listed as a
    graph input). onnx's version converter has no schema for ImageScaler and failed, so the
    zoo's tiny-yolov2 (opsets 7 and 8) stayed at its opset and its first node was refused as
    an undeclared op type with the advice to declare it, which its per-channel bias list
    cannot be (a new-user trial). With it, the nodes spelt, in words, for the account of the
    loading (:func:`ptq_verify.graph.onnx_io.upgraded`); the model itself where it holds none."""
    if not any(n.op_type == "ImageScaler" and n.domain in ("", "ai.onnx")
               for n in model.graph.node):
        return model, []
    model = onnx.ModelProto.FromString(model.SerializeToString())
    taken = _tensor_names(model) | {n.name for n in model.graph.node}

    def fresh(base: str) -> str:
        return _fresh(base, taken)

    nodes, spelt = [], []
    for node in model.graph.node:
        if node.op_type != "ImageScaler" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        scale = np.array(attrs.get("scale", 1.0), np.float32)
        bias = np.array(attrs.get("bias", [0.0]), np.float32).reshape(1, -1, 1, 1)
        result = node.output[0]
        spelt.append(repr(node.name) if node.name else f"the ImageScaler of {result!r}")
        base = node.name or result
        scale_name, bias_name, scaled = (fresh(f"{base}:scale"), fresh(f"{base}:bias"),
                                         fresh(f"{base}:scaled"))
        nodes += [helper.make_node("Constant", [], [scale_name], name=fresh(f"{base}:scale"),
                                   value=numpy_helper.from_array(scale, scale_name)),
                  helper.make_node("Constant", [], [bias_name], name=fresh(f"{base}:bias"),
                                   value=numpy_helper.from_array(bias, bias_name)),
                  helper.make_node("Mul", [node.input[0], scale_name], [scaled],
                                   name=fresh(f"{base}:mul")),
                  helper.make_node("Add", [scaled, bias_name], [result],
                                   name=fresh(f"{base}:add"))]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, spelt


def _tensor_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor name the main graph uses: its nodes' inputs and outputs, its initializers
    and its inputs (what a new name must not be)."""
    taken = {name for n in model.graph.node for name in [*n.input, *n.output]}
    return taken | {t.name for t in model.graph.initializer} | {v.name for v in model.graph.input}


def _fresh(base: str, names: set[str]) -> str:
    """``base``, or ``base_k`` with the least k that ``names`` does not hold; added to it."""
    name, k = base, 0
    while name in names:
        k += 1
        name = f"{base}_{k}"
    names.add(name)
    return name
