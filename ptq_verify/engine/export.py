"""Writing the quantized model as ONNX.

The export form is plain float32 arithmetic on integer-valued tensors: the source graph's own
nodes run on codes with integer-valued weights, and each scaling step is written as the few
ONNX ops named below. No QuantizeLinear/QLinear* nodes: on CPUs without VNNI onnxruntime's
fused u8s8 kernels can saturate 16-bit intermediate sums, which the float form cannot.
These are the op types the *export writes*; the engine's decisions never look at op types.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..graph import Graph, Node

_MULTIPLY, _ROUND, _CLIP, _IDENTITY = "Mul", "Round", "Clip", "Identity"
MIN_OPSET = 11  # Round and Clip with min/max inputs


class Emitter:
    """Collects nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._counts: Counter[str] = Counter()

    def fresh(self, hint: str) -> str:
        self._counts[hint] += 1
        return f"{hint}~{self._counts[hint]}"

    def initializer(self, name: str, value: np.ndarray) -> str:
        self.initializers[name] = np.asarray(value)
        return name

    def _add(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out],
                                           name=out, **attrs))
        return out

    def multiply(self, name: str, factor: np.ndarray) -> str:
        const = self.initializer(self.fresh(f"{name}:factor"), factor.astype(np.float32))
        return self._add(_MULTIPLY, [name, const], f"{name}:mul")

    def round(self, name: str) -> str:
        return self._add(_ROUND, [name], f"{name}:round")

    def clip(self, name: str, low: float, high: float) -> str:
        lo = self.initializer(self.fresh(f"{name}:lo"), np.array(low, dtype=np.float32))
        hi = self.initializer(self.fresh(f"{name}:hi"), np.array(high, dtype=np.float32))
        return self._add(_CLIP, [name, lo, hi], f"{name}:clip")

    def rename(self, name: str, dst: str) -> None:
        """Make ``dst`` the name of what ``name`` holds (the last emitted node's output)."""
        if self.nodes and name in self.nodes[-1].output:
            last = self.nodes[-1]
            last.output[list(last.output).index(name)] = dst
        else:
            self.nodes.append(helper.make_node(_IDENTITY, [name], [dst],
                                               name=self.fresh(f"{dst}:copy")))

    def node(self, node: Node) -> None:
        self.nodes.append(helper.make_node(
            node.op_type, node.inputs, node.outputs, name=node.name,
            domain=node.domain or None, **node.attrs))

    def model(self, graph: Graph, outputs: list[tuple[str, tuple | None, np.dtype]],
              doc: str = "") -> onnx.ModelProto:
        """The ONNX model with the source graph's inputs and the given outputs (name, shape,
        element type)."""
        from .. import graph as graph_module

        inputs = [graph_module.onnx_io._value_info(t) for t in graph.inputs]
        outs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(
                    np.dtype(dtype)), None if shape is None else list(shape))
                for name, shape, dtype in outputs]
        inits = [numpy_helper.from_array(v, k) for k, v in self.initializers.items()]
        proto = helper.make_graph(self.nodes, graph.name, inputs, outs, inits)
        opsets = dict(graph.opsets)
        opsets[""] = max(opsets.get("", MIN_OPSET), MIN_OPSET)
        model = helper.make_model(
            proto, producer_name="ptq-verify",
            opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        )
        model.ir_version = min(model.ir_version, 8)
        model.doc_string = doc
        return model
