"""Weightless functions of one activation that its scale does not change: run in float.

A normalization exported as its parts (an RMSNorm: Pow, ReduceMean, Add epsilon, Sqrt, Div,
Mul; a LayerNorm before opset 17: ReduceMean, Sub, Pow, ...) is a chain of nodes that each
have a scaling rule, so each would run on codes and round its output again: x^2 at 8 bits,
its mean, the root, its reciprocal, every one a new rounding of a value whose range the
input's scale sets. Composed, the rules say the chain's output does not depend on that scale
(degree 0 in it: x / sqrt(mean(x^2) + eps) with eps -> s^2 eps). Such a chain is one function
of its input, the one a LayerNormalization node computes, and runs in float as that node
does (``_Builder._compensates_channels``): on its input as it is, so an input that is a sum
(a residual Add) is held wide into it, as all-MiniLM-L6-v2's sums are into its
LayerNormalization nodes. On the tests' tiny Llama (torch's legacy export) that is 32.2 ->
36.0 dB of held-out output SQNR, and a LayerNorm in parts quantizes as the fused node does
(docs/engine.md, "Normalizations in parts").

The region is found from the rules alone: from an activation ``x``, through readers whose
every activation input is ``x`` or in the region, none a weight layer, each with a rule whose
output's exponent of ``x``'s scale follows from its inputs' (pass-through, homogeneous,
aligned sums of equal exponents, scale-invariant); it ends at tensors of exponent 0, and
every tensor of another exponent is read in the region only. A reader that combines ``x``
with another activation (the next residual Add) or a weight layer reading ``x`` takes ``x``
as it would otherwise, and is not part of it.
"""

from __future__ import annotations

from fractions import Fraction

from ..graph import Graph, Node, OperatorTable, slot_binding
from ..rules import RuleKind
from .plan import Action, NodeAction
from .rules import holds_weights, is_elementwise

INVARIANT_REASON = "a function of one activation that its scale does not change, in parts"
"""Why such a region's nodes run in float, as the summary and the audit say it."""

MAX_REGION_NODES = 32
"""Largest region (in nodes): a decomposed LayerNorm has 9, an RMSNorm 6-8. A bound keeps the
search short on every activation and a region a normalization, not a network."""


def invariant_regions(graph: Graph, table: OperatorTable, plans: list[NodeAction],
                      active: set[str]) -> dict[str, str]:
    """Node -> the activation whose scale-invariant region (module docstring) it belongs to,
    for every region of two nodes or more (a single scale-invariant node is a
    LayerNormalization, which runs in float on a wide or per-channel input already)."""
    search = _Search(graph, table, {plan.name: plan for plan in plans}, active)
    found: dict[str, str] = {}
    sources = [info.name for info in graph.float_inputs() if info.name in active]
    sources += [out for node in graph.nodes for out in node.outputs if out in active]
    for tensor in sources:
        region = search.region(tensor)
        if region is not None and len(region) > 1:
            for name in region:
                found.setdefault(name, tensor)
    return found


class _Search:
    def __init__(self, graph: Graph, table: OperatorTable, plans: dict[str, NodeAction],
                 active: set[str]) -> None:
        self.graph, self.table, self.plans, self.active = graph, table, plans, active
        self.consumers = graph.consumers()

    def region(self, source: str) -> set[str] | None:
        """The nodes of ``source``'s region, or None where its readers form none."""
        exponents = {source: Fraction(1)}
        nodes: set[str] = set()
        changed = True
        while changed:  # grow until every region tensor's readers are settled
            changed = False
            for tensor, exponent in list(exponents.items()):
                if exponent == 0 and tensor != source:
                    continue  # a region output: its readers take it as any activation
                for reader in self.consumers.get(tensor, []):
                    if reader.name in nodes:
                        continue
                    outputs = self._exponents(reader, exponents)
                    if outputs is None:
                        continue
                    nodes.add(reader.name)
                    exponents.update(outputs)
                    changed = True
                    if len(nodes) > MAX_REGION_NODES:
                        return None
        if not nodes:
            return None
        for tensor, exponent in exponents.items():
            if exponent != 0 and tensor != source and any(
                    reader.name not in nodes for reader in self.consumers.get(tensor, [])):
                return None  # read outside at a scale that follows the source's
            if tensor in self.graph.output_names and exponent != 0:
                return None
        tail = [tensor for tensor, exponent in exponents.items() if exponent == 0]
        while tail:  # the normalization's affine part: x * gamma + beta, one rounding after it
            tensor = tail.pop()  # (after each of its copies, where smoothing made some)
            readers = self.consumers.get(tensor, [])
            if (readers and tensor not in self.graph.output_names
                    and all(r.name not in nodes and self._affine(r, tensor) for r in readers)):
                for reader in readers:
                    nodes.add(reader.name)
                    tail += [out for out in reader.outputs if out in self.active]
        return nodes

    def _affine(self, node: Node, tensor: str) -> bool:
        """Whether ``node`` computes element by element on ``tensor`` and constants alone, by a
        scaling rule (a Cast, a Mul by gamma, an Add of beta)."""
        plan, op = self.plans[node.name], self.table.find(node, self.graph)
        return (plan.action in (Action.SCALE, Action.ALIGN) and op is not None
                and is_elementwise(op)
                and [node.inputs[slot] for slot in plan.activation_slots] == [tensor]
                and all(not name or name == tensor or name in self.graph.initializers
                        for name in node.inputs))

    def _exponents(self, node: Node, known: dict[str, Fraction]) -> dict[str, Fraction] | None:
        """The exponent of the source's scale in each activation output of ``node``, when all
        its activation inputs are in the region and its rule gives one; None otherwise."""
        plan = self.plans[node.name]
        rule, op = plan.rule, self.table.find(node, self.graph)
        if plan.action is not Action.SCALE and plan.action is not Action.ALIGN:
            return None
        if rule is None or op is None or rule.partition is not None:
            return None
        slots = plan.activation_slots
        if not slots or any(node.inputs[slot] not in known for slot in slots):
            return None
        if holds_weights(self.graph, node, op, rule):
            return None  # a weight layer: the integer work a quantized model is for
        tensors = [t.name for t in op.inputs]
        inputs: dict[str, Fraction] = {}
        for slot, name in enumerate(node.inputs):
            binding = slot_binding(op, slot)
            if name and binding in tensors:
                inputs[binding] = known.get(name, Fraction(0))  # a constant: exponent 0
        exponent = _output_exponent(rule, [inputs.get(t, Fraction(0)) for t in tensors],
                                    [known[node.inputs[slot]] for slot in slots])
        outputs = {out: exponent for out in node.outputs if out in self.active}
        return outputs if exponent is not None and outputs else None


def _output_exponent(rule, inputs: list[Fraction], activations: list[Fraction]
                     ) -> Fraction | None:
    """The output's exponent from the exponents of the tensor inputs (``inputs``, in the
    declaration's order) and of the activations among them."""
    kind = rule.kind
    if kind is RuleKind.SCALE_INVARIANT:
        return Fraction(0)
    if kind in (RuleKind.PASS_THROUGH, RuleKind.PARAM_RESCALE):
        return activations[0] if len(set(activations)) == 1 else None
    if kind is RuleKind.ALIGNED:
        if len(set(activations)) != 1:
            return None
        return Fraction(rule.degree if rule.degree is not None else 1) * activations[0]
    if kind is RuleKind.HOMOGENEOUS:
        degrees = rule.input_degrees or (rule.degree,) * len(inputs)
        return sum((Fraction(d) * e for d, e in zip(degrees, inputs)), Fraction(0))
    return None
