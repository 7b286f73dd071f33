"""The nodes that must run in float for one activation to reach its readers unrounded.

Running the readers of a tensor in float is not enough: a node that only passes its one
activation on (a Clip, a Pad, a Reshape, a Sigmoid: no weights, one activation input) would
round it again where it makes codes, at the same range, and a node upstream that passes its
input on carries that input's rounding. So the region grows from the tensor up and down
through such nodes and stops at nodes that combine values (weight layers, sums of several
activations): those run in float on codes of their other side. On EfficientNet-Lite, keeping
the stem's output exact puts the stem convolution, its ReLU6, block 0's padding and its
depthwise convolution in float; the stem's own input and the depthwise output stay codes.
"""

from __future__ import annotations

from ..graph import Graph, Node, OperatorTable
from .plan import Action, NodeAction
from .rules import holds_weights


class FloatRegions:
    """``of(tensor)``: (nodes, tensors) of the region that keeps ``tensor`` exact."""

    def __init__(self, graph: Graph, table: OperatorTable, plans: list[NodeAction],
                 active: set[str]) -> None:
        self.graph, self.table, self.active = graph, table, active
        self.plans = {plan.name: plan for plan in plans}
        self.producers, self.consumers = graph.producers(), graph.consumers()

    def of(self, tensor: str) -> tuple[set[str], set[str]]:
        nodes: set[str] = set()
        tensors, stack = {tensor}, [tensor]
        while stack:
            for node in self.touching(stack.pop()):
                if node.name in nodes:
                    continue
                nodes.add(node.name)
                if self._passes_on(node):
                    for linked in (*self._activations(node.inputs),
                                   *self._activations(node.outputs)):
                        if linked not in tensors:
                            tensors.add(linked)
                            stack.append(linked)
        return nodes, tensors

    def touching(self, tensor: str) -> list[Node]:
        """The nodes that make or read ``tensor``, but static ones."""
        maker = self.producers.get(tensor)
        return [node for node in (*([maker] if maker else []), *self.consumers.get(tensor, []))
                if self.plans[node.name].action is not Action.STATIC]

    def _activations(self, names: list[str]) -> list[str]:
        return [name for name in dict.fromkeys(names) if name in self.active]

    def _passes_on(self, node: Node) -> bool:
        """One activation input and no weights (:func:`.rules.holds_weights`): its output
        carries that input's rounding, moved or scaled, and rounding it again at its range
        would undo keeping the input exact."""
        plan = self.plans[node.name]
        if len(self._activations(node.inputs)) != 1:
            return False
        op = self.table.find(node, self.graph)
        if plan.rule is None or op is None:
            return True
        return not holds_weights(self.graph, node, op, plan.rule)
