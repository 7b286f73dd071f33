"""Weightless functions of activations that their scales do not change: run in float.

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

A reader may take another activation ``y`` beside the region's tensors: ``y``'s scale is a
second, independent one, and each tensor's exponent is then one per source (x * y: 1 in
each). A cosine similarity written in parts (x.y / sqrt(|x|^2 |y|^2): Mul, ReduceSum, Sqrt,
Max with eps, Div) ends at exponent 0 in both, so it runs in float on their codes as a norm
does: rounding its dot product and norms to 8 bits each, in a chain whose cosines all lay in
0.97-1.0, had cost a Siamese network 48.9 dB where onnxruntime's quantize_static gave 55.4.
The readers of such a source that lead nowhere invariant (the same embeddings' Sub of a
``torch.cdist`` beside the cosine) are pruned from the region rather than refusing it.
"""

from __future__ import annotations

from fractions import Fraction

from ..catalog.operator import Operator
from ..graph import Graph, Node, OperatorTable, slot_binding
from ..rules import RuleKind
from .plan import Action, NodeAction
from .rules import holds_weights, is_elementwise

INVARIANT_REASON = "a function of activations that their scales do not change, in parts"
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
        # node name -> its declaration (the regions of every activation ask again for the
        # same nodes: all-MiniLM-L6-v2, about 1150 times a search for its 285 nodes)
        self._ops: dict[str, Operator | None] = {}

    def _op(self, node: Node) -> Operator | None:
        """``table.find`` of ``node``, once per node (the graph does not change here)."""
        if node.name not in self._ops:
            self._ops[node.name] = self.table.find(node, self.graph)
        return self._ops[node.name]

    def region(self, source: str) -> set[str] | None:
        """The nodes of ``source``'s region, or None where its readers form none."""
        exponents: dict[str, _Exponent] = {source: {source: Fraction(1)}}
        nodes: dict[str, Node] = {}
        strict = True
        # Grow until every region tensor's readers are settled: a reader that takes another
        # activation, one at a time, only once no reader of region tensors alone is left (a
        # cosine's Div reads its Max, which must be reached first, not taken as a source).
        while True:
            added = False
            for tensor, exponent in list(exponents.items()):
                if _zero(exponent) and tensor != source:
                    continue  # a region output: its readers take it as any activation
                for reader in self.consumers.get(tensor, []):
                    if reader.name in nodes:
                        continue
                    outputs = self._exponents(reader, exponents, strict)
                    if outputs is None:
                        continue
                    nodes[reader.name] = reader
                    for name in outputs.pop(_SOURCES):  # another activation: a source of
                        exponents[name] = {name: Fraction(1)}  # its own, readers tried too
                    exponents.update(outputs)
                    added = True
                    if len(nodes) > MAX_REGION_NODES:
                        return None
                    if not strict:
                        break
                if added and not strict:
                    break
            if not added and not strict:
                break
            strict = added or not strict
        self._prune(nodes, exponents)
        if not nodes or source in self.graph.output_names:
            return None
        tail = [tensor for tensor, exponent in exponents.items()
                if _zero(exponent) and tensor != source]
        while tail:  # the normalization's affine part: x * gamma + beta, one rounding after it
            tensor = tail.pop()  # (after each of its copies, where smoothing made some)
            readers = self.consumers.get(tensor, [])
            if (readers and tensor not in self.graph.output_names
                    and all(r.name not in nodes and self._affine(r, tensor) for r in readers)):
                for reader in readers:
                    nodes[reader.name] = reader
                    tail += [out for out in reader.outputs if out in self.active]
        return set(nodes)

    def _prune(self, nodes: dict[str, Node], exponents: dict[str, _Exponent]) -> None:
        """Drops from ``nodes`` each node with an output whose exponent is not 0 and that a
        node outside reads (or a graph output), with every region node after it: such an
        output follows its sources' scales, so the node is no part of a function they do not
        change (the Unsqueeze of a ``torch.cdist`` beside a cosine). A region of one source
        with no such node is left as it was."""
        dropped = True
        while dropped:
            dropped = False
            for node in list(nodes.values()):
                if any(out in exponents and not _zero(exponents[out]) and (
                        out in self.graph.output_names or any(
                            r.name not in nodes for r in self.consumers.get(out, [])))
                        for out in node.outputs):
                    self._drop(nodes, exponents, node)
                    dropped = True
                    break

    def _drop(self, nodes: dict[str, Node], exponents: dict[str, _Exponent],
              node: Node) -> None:
        """Removes ``node`` and every region node that reads its outputs, transitively."""
        pending = [node]
        while pending:
            current = pending.pop()
            if nodes.pop(current.name, None) is None:
                continue
            for out in current.outputs:
                exponents.pop(out, None)
                pending += [r for r in self.consumers.get(out, []) if r.name in nodes]

    def _affine(self, node: Node, tensor: str) -> bool:
        """Whether ``node`` computes element by element on ``tensor`` and constants alone, by a
        scaling rule (a Cast, a Mul by gamma, an Add of beta)."""
        plan, op = self.plans[node.name], self._op(node)
        return (plan.action in (Action.SCALE, Action.ALIGN) and op is not None
                and is_elementwise(op)
                and [node.inputs[slot] for slot in plan.activation_slots] == [tensor]
                and all(not name or name == tensor or name in self.graph.initializers
                        for name in node.inputs))

    def _exponents(self, node: Node, known: dict[str, _Exponent], strict: bool = True
                   ) -> dict[str, _Exponent] | None:
        """The exponents of the sources' scales in each activation output of ``node``, when its
        rule gives them from its inputs'; an activation input outside the region is a source
        of its own (its scale another, independent one), listed under ``_SOURCES``, unless
        ``strict``. None where the rule gives none, or ``strict`` and an input is unknown."""
        plan = self.plans[node.name]
        rule, op = plan.rule, self._op(node)
        if plan.action is not Action.SCALE and plan.action is not Action.ALIGN:
            return None
        if rule is None or op is None or rule.partition is not None:
            return None
        slots = plan.activation_slots
        if not slots or strict and any(node.inputs[slot] not in known for slot in slots):
            return None
        if holds_weights(self.graph, node, op, rule):
            return None  # a weight layer: the integer work a quantized model is for
        tensors = [t.name for t in op.inputs]
        seen = {name: known.get(name, {name: Fraction(1)})
                for name in (node.inputs[slot] for slot in slots)}
        inputs: dict[str, _Exponent] = {}
        for slot, name in enumerate(node.inputs):
            binding = slot_binding(op, slot)
            if name and binding in tensors:
                inputs[binding] = seen.get(name, {})  # a constant: exponent 0
        exponent = _output_exponent(rule, [inputs.get(t, {}) for t in tensors],
                                    [seen[node.inputs[slot]] for slot in slots])
        outputs = {out: exponent for out in node.outputs if out in self.active}
        if exponent is None or not outputs or any(out in known for out in outputs):
            return None  # (an output already taken as a source: its readers assumed it free)
        outputs[_SOURCES] = {name: Fraction(1) for name in seen if name not in known}
        return outputs


_Exponent = dict[str, Fraction]
"""The exponent of each source's scale in a tensor (a source absent: 0)."""

_SOURCES = ""
"""The key (no tensor's name) under which :meth:`_Search._exponents` gives the activations
outside the region that the node reads: sources of their own."""


def _zero(exponent: _Exponent) -> bool:
    return not any(exponent.values())


def _scaled(exponent: _Exponent, factor: Fraction) -> _Exponent:
    return {source: factor * e for source, e in exponent.items() if factor * e}


def _same(exponents: list[_Exponent]) -> bool:
    return all(_scaled(e, Fraction(1)) == _scaled(exponents[0], Fraction(1)) for e in exponents)


def _output_exponent(rule, inputs: list[_Exponent], activations: list[_Exponent]
                     ) -> _Exponent | None:
    """The output's exponents from those of the tensor inputs (``inputs``, in the
    declaration's order) and of the activations among them."""
    kind = rule.kind
    if kind is RuleKind.SCALE_INVARIANT:
        return {}
    if kind in (RuleKind.PASS_THROUGH, RuleKind.PARAM_RESCALE):
        return _scaled(activations[0], Fraction(1)) if _same(activations) else None
    if kind is RuleKind.ALIGNED:
        if not _same(activations):
            return None
        return _scaled(activations[0], Fraction(rule.degree if rule.degree is not None else 1))
    if kind is RuleKind.HOMOGENEOUS:
        degrees = rule.input_degrees or (rule.degree,) * len(inputs)
        total: _Exponent = {}
        for degree, exponent in zip(degrees, inputs):
            for source, e in _scaled(exponent, Fraction(degree)).items():
                total[source] = total.get(source, Fraction(0)) + e
        return _scaled(total, Fraction(1))
    return None
