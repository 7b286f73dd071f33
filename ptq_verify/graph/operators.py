"""Find the declared operator that runs a node: extra operators first, then the catalog.

The engine never names operator types: a node is run and classified through the
:class:`~ptq_verify.catalog.operator.Operator` found here, so an operator declared by a user
(``operators={"MySwish": Operator(...)}``) flows through with no engine change.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..catalog.operator import Operator
from ..errors import UserError
from .model import Graph, Node


class OperatorTable:
    """Node -> Operator lookup. ``extra`` maps an ONNX op type to an operator (any domain)."""

    def __init__(self, extra: Mapping[str, Operator] | None = None) -> None:
        self.extra = dict(extra or {})

    def find(self, node: Node, graph: Graph | None = None) -> Operator | None:
        """The node's operator; the graph's constants select among declarations of one type
        (Pow's exponent, Clip's bounds)."""
        if node.op_type in self.extra:
            return self.extra[node.op_type]
        if node.domain not in ("", "ai.onnx"):
            return None
        from ..catalog import operator_for_onnx_type

        constants = {}
        if graph is not None:
            constants = {slot: graph.initializers[name] for slot, name in enumerate(node.inputs)
                         if name in graph.initializers}
        return operator_for_onnx_type(node.op_type, node.attrs, constants, arity=len(node.inputs))

    def require(self, node: Node, graph: Graph | None = None) -> Operator:
        """The node's operator, or a UserError naming the node and its op type."""
        op = self.find(node, graph)
        if op is None:
            where = f"{graph.source}: " if graph is not None else ""
            domain = f" in domain {node.domain!r}" if node.domain not in ("", "ai.onnx") else ""
            raise UserError(
                f"{where}{node.label}: no declared operator for op type {node.op_type!r}{domain}; "
                "declare it in a TOML file given with --operators (docs/catalog.md) or remove "
                "the node"
            )
        return op


def slot_binding(op: Operator, slot: int) -> str | None:
    """What ONNX input ``slot`` carries: a tensor name, parameter names, or None (static).

    Variadic inputs (Concat, Sum, Max) repeat the binding of the last declared slot.
    """
    bindings = op.onnx_inputs
    if not bindings:
        return None
    return bindings[slot] if slot < len(bindings) else bindings[-1]


def tensor_names(op: Operator) -> set[str]:
    return {t.name for t in op.inputs}
