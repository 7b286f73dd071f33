"""The per-node plan: what the engine does with each node, read off the checker's rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import Any

import onnx

from ..catalog.operator import Operator, attribute_default, schema_attribute_defaults
from ..graph import (
    Graph,
    Node,
    OperatorTable,
    TensorInfo,
    activation_tensors,
    require_graph,
    slot_binding,
)
from ..graph.declared_kernels import schema_lacks
from ..graph.onnx_io import inferred_shapes, trusted_shape
from ..rules import Rule, RuleKind, Verdict
from .rules import carried_params, check_overrides, effective_rule, input_params, weight_layout


class Action(str, Enum):
    STATIC = "static"
    SCALE = "scale"
    ALIGN = "align"
    COMPENSATE = "compensate"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass
class NodeAction:
    """One node's plan: its rule (None for an op type nobody declared) and the action."""

    name: str
    op_type: str
    operator: str | None
    verdict: Verdict | None
    rule: Rule | None
    action: Action
    text: str
    reason: str = ""
    activation_slots: tuple[int, ...] = field(default=(), repr=False)
    # attributes the node leaves out whose values the declaration computed from the shapes
    # of its inputs (``onnx_defaults``: Attention's scale): quantize writes them, rescaled
    computed: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def compensated(self) -> bool:
        return self.action is Action.COMPENSATE

    def to_json(self) -> dict:
        return {
            "node": self.name,
            "op_type": self.op_type,
            "operator": self.operator,
            "rule": None if self.rule is None else self.rule.describe(),
            "action": self.action.value,
            "text": self.text,
            "reason": self.reason,
        }


def plan_model(
    graph: Graph,
    operators: Mapping[str, Operator] | OperatorTable | None = None,
    override_rules: Mapping[str, Rule] | None = None,
) -> list[NodeAction]:
    """The action for every node of ``graph``. Never raises on unknown op types: they are
    reported with action ``unknown`` (quantize refuses them)."""
    require_graph(graph, "plan_model")
    table = OperatorTable.of(operators)
    check_overrides(override_rules, table)
    active = activation_tensors(graph, table)
    inferred = cache(lambda: inferred_shapes(graph) or {})  # (only where a node needs it)
    plans = []
    for node in graph.nodes:
        op, unfit = table.lookup(node, graph)
        if table.kept_in_float(node, graph):
            plans.append(_kept_node(node, active))
            continue
        if table.on_integers_only(node, graph):
            plans.append(NodeAction(node.name, node.op_type, None, None, None, Action.STATIC,
                                    "static: run as exported", INTEGERS_REASON))
            continue
        plans.append(plan_node(graph, node, op, active, override_rules, inferred)
                     if unfit is None else _unfit_node(node, *unfit, active))
    return plans


KEPT_REASON = "kept in float at your request: no declaration describes it"
INTEGERS_REASON = ("integers only: no declaration needed, since no scale reaches its inputs "
                   "and outputs")


def _kept_node(node: Node, active: set[str]) -> NodeAction:
    """A node the user keeps in float (``--float-op``): compensated, its inputs dequantized
    and its outputs requantized, with no rule and no verdict, since nothing declares it (a
    recurrent layer): the engine claims nothing about it, it only runs it as onnxruntime
    does."""
    slots = tuple(i for i, name in enumerate(node.inputs) if name in active)
    return NodeAction(node.name, node.op_type, None, None, None, Action.COMPENSATE,
                      "compensate: run in float (--float-op)", KEPT_REASON, slots)


def _unfit_node(node: Node, op: Operator, why: str, active: set[str]) -> NodeAction:
    """A node its op type's declaration does not describe (an input or output too many):
    unknown, as a node nobody declared, with the declaration named and what does not fit."""
    slots = tuple(i for i, name in enumerate(node.inputs) if name in active)
    return NodeAction(node.name, node.op_type, op.name, None, None, Action.UNKNOWN,
                      "its declaration does not fit the node: cannot be quantized",
                      f"the node {why}", slots)


def plan_node(graph: Graph, node: Node, op: Operator | None, active: set[str],
              overrides: Mapping[str, Rule] | None,
              inferred: Callable[[], Mapping[str, TensorInfo]]) -> NodeAction:
    """``inferred``: the shapes ONNX inference finds from the graph's inputs and nodes
    (:func:`~ptq_verify.graph.onnx_io.inferred_shapes`), computed where first asked for."""
    slots = tuple(i for i, name in enumerate(node.inputs) if name in active)
    if op is None:
        from ..catalog import declared_forms

        forms = declared_forms(node.op_type) if node.in_onnx_domain else ""
        if forms:  # (an opset-23 Attention with a softcap: "not in the catalog" was false)
            return NodeAction(node.name, node.op_type, None, None, None, Action.UNKNOWN,
                              "no declaration of this form: cannot be quantized",
                              f"op type {node.op_type!r} is declared only in other forms "
                              f"({forms})", slots)
        return NodeAction(node.name, node.op_type, None, None, None, Action.UNKNOWN,
                          "no declared operator: cannot be quantized",
                          f"op type {node.op_type!r} is not in the catalog", slots)
    verdict, rule = effective_rule(op, overrides)

    computed: dict[str, Any] = {}

    def make(action: Action, text: str, reason: str = "") -> NodeAction:
        return NodeAction(node.name, node.op_type, op.name, verdict, rule, action,
                          text + _positions(node, op, overrides), reason, slots, computed)

    if not slots and not any(out in active for out in node.outputs):
        return make(Action.STATIC, "static: computed exactly in float",
                    "no input depends on a float model input")
    if not rule.kind.has_rule:
        why = "no scaling rule exists" if rule.kind is RuleKind.NEEDS_COMPENSATION else (
            "the checker could not decide a rule")
        return make(Action.COMPENSATE, "compensate: run in float on the original range", why)
    tensors = {t.name for t in op.inputs}
    for slot in slots:
        binding = slot_binding(op, slot)
        if binding not in tensors:
            role = (f"parameter input {slot} ({binding})" if binding is not None else
                    f"input {slot}, which the declaration holds static (a shape, axes, indices, "
                    "a type)")
            return make(Action.COMPENSATE, "compensate: run in float on the original range",
                        f"an activation feeds {role}")
    carried = carried_params(op)
    uncarried = sorted(p for p, k in rule.param_exponents.items() if k and p not in carried)
    if uncarried:  # the node has nowhere to rescale it: the rule cannot be applied
        return make(Action.COMPENSATE, "compensate: run in float on the original range",
                    f"the rule rescales {', '.join(uncarried)}, which no input or attribute "
                    "of the node carries")
    integral = sorted(attr for attr, param in op.onnx_attrs.items()
                      if rule.param_exponents.get(param)
                      and node.attr_type(attr) == onnx.AttributeProto.INT)
    if integral:  # (a rescaled value written into an int attribute: an internal error)
        return make(Action.COMPENSATE, "compensate: run in float on the original range",
                    f"the rule rescales attribute {', '.join(integral)}, which the node holds "
                    "as an integer, and a rescaled value is no integer")
    computed.update(_computed_attributes(graph, node, op, rule, inferred))
    if unknown := _unknown_attributes(node, op, rule, computed):
        return make(Action.COMPENSATE, "compensate: run in float on the original range",
                    f"the rule rescales attribute {', '.join(unknown)}, which the node leaves "
                    "to its kernel, and the graph's shapes do not tell its value "
                    + _why_untold(op.onnx_type, unknown))
    independent = rule.input_degrees is not None and len(rule.input_degrees) > 1
    if independent and rule.param_exponents:
        return make(Action.COMPENSATE, "compensate: run in float on the original range",
                    "parameters rescale with inputs of independent scales")
    params = _param_text(op, rule)
    if rule.kind is RuleKind.ALIGNED:
        return make(Action.ALIGN, "align inputs to one scale" + params)
    if rule.kind is RuleKind.SCALE_INVARIANT:
        return make(Action.SCALE, "reset the scale to 1" + params)
    if rule.kind is RuleKind.HOMOGENEOUS:
        return make(Action.SCALE, f"output scale s^{rule.degree_text()}" + params)
    layout = weight_layout(op, rule)
    weights = ""
    if layout:
        # the declaration's names (its rule and docs/ops use them) and the model's tensors
        # that hold them, which a reader of the model knows (a newcomer's trial: "w0, w1"
        # alone named nothing in the file)
        held = [repr(name) for slot, name in enumerate(node.inputs)
                if name and set((slot_binding(op, slot) or "").split()) & layout.weights]
        weights = (f"; integer weights {', '.join(sorted(layout.weights))}"
                   + (f" ({', '.join(held)})" if held else ""))
    return make(Action.SCALE, "pass the scale through" + params + weights)


def _positions(node: Node, op: Operator, overrides) -> str:
    """The outputs of positions the node writes beside its values (TopK's indices: the
    declaration's ``index_outputs``), with the rule their own declaration proves: no scale
    reaches them, and the action said for the node is its values'."""
    from ..catalog import CATALOG

    return "".join(
        f"; output {slot} {node.outputs[slot]!r}: positions, by {name}'s witness "
        f"({effective_rule(CATALOG[name], overrides)[1].describe()}): no scale"
        for slot, name in sorted(op.index_outputs.items())
        if slot < len(node.outputs) and node.outputs[slot])


def _absent_attributes(node: Node, op: Operator, rule: Rule) -> list[str]:
    """The attributes the rule rescales that the node leaves out and whose value the ONNX
    schema of its op type does not give (the kernel computes it: Attention's scale, from the
    head size). An op type outside ONNX's and onnxruntime's schemas has its declaration as
    its schema: none."""
    absent = [attr for attr, param in op.onnx_attrs.items()
              if rule.param_exponents.get(param) and attr not in node.attrs]
    if not absent or not op.onnx_type or schema_attribute_defaults(op.onnx_type) is None:
        return []
    inputs = input_params(op)
    return sorted(attr for attr in absent if op.onnx_attrs[attr] not in inputs
                  and attribute_default(op.onnx_type, attr) is None)


def _computed_attributes(graph: Graph, node: Node, op: Operator, rule: Rule,
                         inferred: Callable[[], Mapping[str, TensorInfo]]) -> dict[str, Any]:
    """Each of :func:`_absent_attributes` whose value the declaration computes from the
    shapes of the node's inputs (``onnx_defaults``), where those shapes are known. Only the
    shapes onnxruntime holds the model to count (a graph input's, a constant's, or inferred
    from them through the nodes): a wrong head size a file states for Q had written a wrong
    scale (21 dB against 38 on a hand-made Attention)."""
    wanted = [attr for attr in _absent_attributes(node, op, rule) if attr in op.onnx_defaults]
    if not wanted:
        return {}
    shapes = [trusted_shape(graph, name, inferred()) if name else None for name in node.inputs]
    values = {attr: op.computed_default(attr, node.attrs, shapes) for attr in wanted}
    return {attr: value for attr, value in values.items() if value is not None}


def _unknown_attributes(node: Node, op: Operator, rule: Rule,
                        computed: Mapping[str, Any]) -> list[str]:
    """The attributes the rule rescales whose value the node does not tell (neither its
    own, nor the schema's default, nor ``computed`` from its shapes): the declaration's
    sample value is not the node's, so no rescaled value can be written."""
    return [attr for attr in _absent_attributes(node, op, rule) if attr not in computed]


def _why_untold(op_type: str, attributes: list[str]) -> str:
    """Why the node's kernel keeps those attributes' values to itself: ONNX's op type has no
    such attribute (a HardSwish declared with a slope 'a', a newcomer trial, had been told
    of Attention's scale), or has one with no default."""
    import onnx.defs

    foreign = [a for a in attributes if schema_lacks(op_type, a)]
    if foreign:
        named = f"ONNX's {op_type}" if onnx.defs.has(op_type) else f"onnxruntime's {op_type}"
        return (f"({named} has no attribute {', '.join(map(repr, foreign))}: "
                "its kernel computes with a constant of its own)")
    return ("(no default in the ONNX schema: Attention's scale is 1/sqrt of the head size, "
            "unknown where Q's last axis is symbolic)")


def _param_text(op: Operator, rule: Rule) -> str:
    if not rule.param_exponents:
        return ""
    return "; rescale parameters " + rule.describe().split(" ", 1)[-1]
