"""`--format simulation`: the plan's exact arithmetic as ONNX, the reference the other
formats are tested against.

The source graph's own nodes run in float32 on integer-valued tensors with integer-valued
weights, and each requantization is ``Round -> Cast(double) -> Mul(M) -> Round -> Cast(float)
-> Clip``: the exact product rounded once (the first Round, an identity on exact integer sums,
keeps onnxruntime from fusing M into the Conv/MatMul weights).
The simulation runs the same steps with the same float32 constants, so a default
onnxruntime session reproduces it to the last code. It is as large as the float model and
runs no integer kernel: it is a reference, not a deployment format.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...graph.provenance import quantized_doc
from ..steps import NodeStep, ScaleStep, is_one
from .emitter import Emitter


def emit_simulation(model) -> onnx.ModelProto:
    """The plan of ``model`` (a QuantizedModel) as float32 ONNX on integer-valued tensors."""
    out = Emitter(model.names_in_use())
    for step in model.steps:
        if isinstance(step, ScaleStep):
            _scale_step(out, step)
        else:
            _node_step(out, step)
    used = {name for node in out.nodes for name in node.input}
    for name, value in model.constants.items():
        if name in used and name not in out.initializers:
            out.initializer(name, value)
    outputs = model.output_types()
    return out.model(model.graph, outputs,
                     quantized_doc(model.bits, "simulation", model.integer_outputs),
                     casts=model.output_casts(), source_nodes=model.source_node_names())


def _scale_step(out: Emitter, step: ScaleStep) -> None:
    name = step.src
    if step.divided_by != 1:  # a mean's codes back to their sum (exact: steps.ScaleStep)
        name = _rounded_product(out, name, step.divided_by)
    if step.pre_round:
        name = out.round(name)
    if step.round:
        name = _rounded_product(out, name, step.factor)
    elif not is_one(step.factor):
        name = out.multiply(name, step.factor)
    if step.low is not None:
        name = out.clip(name, np.float32(step.low), np.float32(step.high))
    if step.limit is not None:
        name = out.clip(name, np.float32(-step.limit), np.float32(step.limit))
    out.rename(name, step.dst)


def _rounded_product(out: Emitter, name: str, factor) -> str:
    """round(name * factor), the product exact in double and rounded once, as the simulation
    computes it; back in float32."""
    wide = out.add("Cast", [name], f"{name}:double", to=onnx.TensorProto.DOUBLE)
    factor = out.constant(f"{name}:factor", np.asarray(factor, np.float64))
    name = out.round(out.add("Mul", [wide, factor], f"{name}:mul"))
    return out.add("Cast", [name], f"{name}:float", to=onnx.TensorProto.FLOAT)


def _node_step(out: Emitter, step: NodeStep) -> None:
    for name, value in step.constants.items():
        out.initializer(name, value)
    out.node(step.node)
