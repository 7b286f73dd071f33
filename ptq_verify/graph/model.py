"""The project's own graph: nodes over named tensors, initializers kept as numpy arrays.

Why not work on ``onnx.ModelProto`` directly: the engine rewrites graphs (folding, inserting
scaling steps) and asks per tensor whether it is an activation, which is simpler on plain
Python objects. :mod:`ptq_verify.graph.onnx_io` converts both ways.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import AttributeProto

from ..catalog.kernels.shape import NODE_OUTPUTS
from ..errors import UserError


def holds_integers(dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds integers or booleans (indices, shapes, token ids, masks): the
    values a scale never reaches, where any other type may carry real values."""
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, shape (ints, or str/None for symbolic dims), dtype."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: np.dtype

    @property
    def is_float(self) -> bool:
        return np.issubdtype(self.dtype, np.floating)


@dataclass
class Node:
    """One operator application. ``inputs`` uses "" for an absent optional input."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""
    # onnx.AttributeProto.AttributeType per attribute read from a file: an empty list
    # (a Constant's ``value_ints=[]``) does not say its type by itself.
    attr_types: dict[str, int] = field(default_factory=dict)

    @property
    def in_onnx_domain(self) -> bool:
        """Whether the op type is ONNX's own (onnxruntime's kernels), not a custom domain's."""
        return self.domain in ("", "ai.onnx")

    def attr_type(self, name: str) -> int | None:
        """The onnx.AttributeProto type of attribute ``name``: as the file states it, or, on a
        node built by hand (no stated types), INT or FLOAT for a number; None otherwise."""
        if name in self.attr_types:
            return self.attr_types[name]
        value = self.attrs.get(name)
        if isinstance(value, numbers.Integral):
            return AttributeProto.INT
        return AttributeProto.FLOAT if isinstance(value, numbers.Real) else None

    @property
    def qualified_type(self) -> str:
        """The op type as tables show it: ``domain:op_type`` for a custom domain's node (a
        contrib op, com.microsoft's Attention, is not the ONNX op of the same name)."""
        return self.op_type if self.in_onnx_domain else f"{self.domain}:{self.op_type}"

    @property
    def kernel_attrs(self) -> dict[str, Any]:
        """The attributes the catalog's ONNX kernel reads: the node's own, and how many outputs
        it has (:data:`~ptq_verify.catalog.kernels.shape.NODE_OUTPUTS`), on which ONNX lets a
        function depend (torch's legacy export of ``F.glu`` and ``chunk``: a Split with no
        sizes at opsets 13 to 17 makes one equal part per output)."""
        return {**self.attrs, NODE_OUTPUTS: len(self.outputs)}

    @property
    def label(self) -> str:
        """How messages name the node: ``node 'conv1' (Conv)``."""
        return f"node {self.name!r} ({self.op_type})"


@dataclass
class Graph:
    """A topologically ordered graph with its initializers and inferred tensor types."""

    nodes: list[Node]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    initializers: dict[str, np.ndarray]
    value_info: dict[str, TensorInfo] = field(default_factory=dict)
    opsets: dict[str, int] = field(default_factory=dict)
    name: str = "graph"
    source: str = "model"
    # what engine passes replaced and may put back (engine.split's records)
    undo: list[Any] = field(default_factory=list)
    # how the file was brought to the engine's opset, in one line ("" where it was not:
    # onnx_io.upgraded)
    loaded: str = ""
    # concrete shapes the numeric probes draw for tensors whose stated shape has a free
    # dimension: those the tensor takes at the calibration data's lengths (engine.probe.
    # fit_examples_to_data), not written to any file
    example_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def producers(self) -> dict[str, Node]:
        """Tensor name -> the node computing it."""
        return {out: node for node in self.nodes for out in node.outputs if out}

    def consumers(self) -> dict[str, list[Node]]:
        """Tensor name -> the nodes reading it (in order, once per node)."""
        table: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.inputs):
                if name:
                    table.setdefault(name, []).append(node)
        return table

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dtype_of(self, name: str) -> np.dtype | None:
        """The tensor's element type when known (initializer, graph input, inferred)."""
        if name in self.initializers:
            return self.initializers[name].dtype
        for info in (*self.inputs, *self.outputs):
            if info.name == name:
                return info.dtype
        info = self.value_info.get(name)
        return None if info is None else info.dtype

    def shape_of(self, name: str) -> tuple | None:
        if name in self.initializers:
            return self.initializers[name].shape
        for info in (*self.inputs, *self.outputs):
            if info.name == name:
                return info.shape
        info = self.value_info.get(name)
        return None if info is None else info.shape

    def float_inputs(self) -> list[TensorInfo]:
        return [t for t in self.inputs if t.is_float]

    def remove_unused(self, keep: Iterable[str] = ()) -> None:
        """Drop nodes none of whose outputs is used, and unused initializers."""
        wanted = set(self.output_names) | set(keep)
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(out in wanted for out in node.outputs):
                kept.append(node)
                wanted.update(i for i in node.inputs if i)
                wanted.update(subgraph_reads(node))  # an If's branch reads outer tensors
        self.nodes = kept[::-1]
        self.initializers = {k: v for k, v in self.initializers.items() if k in wanted}


def subgraphs(value: Any) -> list:
    """The ONNX graphs an attribute value holds (an If's branch, a Loop's body), at any depth
    of nesting; [] for any other value."""
    import onnx

    found = []
    for graph in ([value] if isinstance(value, onnx.GraphProto) else value
                  if isinstance(value, list) else []):
        if isinstance(graph, onnx.GraphProto):
            found.append(graph)
            for proto in graph.node:
                for attr in proto.attribute:
                    found += subgraphs(onnx.helper.get_attribute_value(attr))
    return found


def subgraph_reads(node: Node) -> set[str]:
    """The tensor names the node's subgraphs read or write (a branch may read any tensor of
    the scopes around it by name, not through the node's inputs)."""
    graphs = [graph for value in node.attrs.values() for graph in subgraphs(value)]
    return {name for graph in graphs for proto in graph.node
            for name in (*proto.input, *proto.output) if name} | {
        out.name for graph in graphs for out in graph.output}


def require_graph(graph: object, caller: str) -> None:
    """A UserError unless ``graph`` is a :class:`Graph`, naming what was given and the call
    that makes one: a library user passed calibrate, quantize or plan_model the model's path
    (or its onnx.ModelProto), which failed deep inside as an AttributeError."""
    if not isinstance(graph, Graph):
        raise UserError(f"{caller}: takes the Graph that load_model(path) returns, not "
                        f"{type(graph).__name__}: graph = load_model(path) first")

