"""What the engine reads off an operator's declaration and its proved rule.

Every decision the engine makes about a node comes from here, from the checker's verdict and
the symbolic form; there is no list of operator types anywhere in the engine.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING

from ..catalog.operator import Operator, deferred_parsing
from ..errors import UserError
from ..graph import Graph, Node, OperatorTable, slot_binding
from ..rules import Rule, RuleKind, Verdict, stored_classify, stored_structure

if TYPE_CHECKING:
    from .plan import NodeAction


def check_overrides(overrides: object, table: OperatorTable) -> None:
    """A UserError unless ``overrides`` is None or a dict of declared operator name ->
    :class:`Rule`: a library user's ``{"HardSwish": "pass_through"}`` had failed as an
    AttributeError at the first node of that operator, a list as a TypeError, and a misspelt
    name had forced nothing, with no word said (the ablation then measured the unforced
    model)."""
    if overrides is None:
        return
    example = "{'Sigmoid': Rule(RuleKind.PASS_THROUGH, Fraction(1))}"
    if not isinstance(overrides, Mapping):
        raise UserError(f"override_rules: a dict of operator name -> Rule ({example}), not "
                        f"{type(overrides).__name__}")
    from ..catalog import CATALOG

    names = {*CATALOG, *(op.name for op in table.extra.values())}
    for name, rule in overrides.items():
        if not isinstance(name, str) or name not in names:
            close = difflib.get_close_matches(str(name), sorted(names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"override_rules: {name!r} is no declared operator's name{hint} "
                            "(keys are operator names, as `ptq-verify classify` lists them)")
        if not isinstance(rule, Rule):
            raise UserError(f"override_rules: {name!r}: {type(rule).__name__} {rule!r} is no "
                            f"Rule ({example})")


def effective_rule(op: Operator, overrides: Mapping[str, Rule] | None) -> tuple[Verdict, Rule]:
    """The checker's verdict, and the rule the engine applies (an override forces one)."""
    verdict = stored_classify(op)
    if overrides and op.name in overrides:
        return verdict, overrides[op.name]
    return verdict, verdict.rule


def divisor_inputs(graph: Graph, table: OperatorTable, plans: Sequence[NodeAction]
                   ) -> set[str]:
    """The tensors a node reads in a slot its rule gives a negative degree (a divisor: x in
    1/x, the variance under a LayerNorm's root): the ones whose least |x| on the calibration
    data quantize reads (near-zero divisors are kept in float). ``plans``: ``plan_model``'s,
    one per node of ``graph``, whose rules quantize applies; a divisor only an override rule
    of quantize's makes reads the bound 0 of a range straddling 0, and is kept in float."""
    found: set[str] = set()
    for plan, node in zip(plans, graph.nodes):
        op = table.find(node, graph) if plan.rule is not None else None
        if op is None:
            continue
        degrees = tensor_degrees(op, plan.rule)
        found.update(name for slot, name in enumerate(node.inputs)
                     if name and (degree := degrees.get(slot_binding(op, slot))) is not None
                     and degree < 0)
    return found


def tensor_degrees(op: Operator, rule: Rule) -> dict[str, Fraction]:
    """Each input tensor of ``op``'s declaration (by name) -> its degree under ``rule``: its
    own where the tensors scale apart (``input_degrees``), else the common degree."""
    tensors = [t.name for t in op.inputs]
    return dict(zip(tensors, rule.input_degrees or [rule.degree] * len(tensors)))


def is_lattice_selection(op: Operator | None) -> bool:
    """Whether each output element is one of the input elements or 0, chosen by max/min or
    by a condition on parameters alone (a static position, as in Concat or Where).

    Such an operator (Relu, MaxPool, Reshape, Concat, Max) maps integer codes to codes in the
    same range, so it runs on codes with no requantization; and since max/min compositions and
    static choices commute with clipping below at 0 (t -> max(t, 0) preserves max, min and 0),
    its input may be quantized unsigned when its output is proved non-negative. None (no
    declaration: a node kept in float at the user's request) is no selection.
    """
    return op is not None and stored_structure(op).lattice


def is_monotone_selection(op: Operator | None) -> bool:
    """Whether each output element is an input element, a parameter or a number, chosen by
    max/min or by a condition on parameters alone: Clip (``min(hi, max(lo, x))``) and constant
    Pad (``where(k > 0, x, v)``) besides every :func:`is_lattice_selection`.

    Such a function is non-decreasing in every input element, so its least output is its value
    at the least inputs (proofs/selections.md, Theorem 1); and one of a single element is
    ``clip(x, f(-inf), f(+inf))`` (Theorem 2), so clipping its input to that interval first
    changes nothing.
    """
    return op is not None and stored_structure(op).monotone


def selects_by_position(op: Operator | None) -> bool:
    """Whether each output element is an input element or a parameter the witness outputs as
    it is (:func:`chosen_params`), chosen by a condition on parameters alone: every parameter
    is such a chosen one or a position that only the witness knows (constant Pad's
    ``where(k > 0, x, v)``). With integer values of the chosen parameters, integer codes in
    give integers out."""
    if op is None or not is_monotone_selection(op) or not chosen_params(op):
        return False
    params = set(op.params)
    return params <= chosen_params(op) | (params - carried_params(op))


def is_copy(op: Operator | None) -> bool:
    """Whether each output element is an element of the one input, the witness being that
    element itself (Transpose, Flatten, Gather, Slice, Identity; not Relu's max(x, 0), a
    lattice selection with no polynomial form, nor TopK's choice among several elements):
    where the node's other inputs are constants, which element goes where is fixed by them
    alone, whatever the values."""
    if op is None or len(op.inputs) != 1 or len(op.inputs[0].elements) != 1:
        return False
    form = stored_structure(op)
    return form.lattice and form.integer_coefficients and form.names == {op.inputs[0].elements[0]}


def reads_no_elements(op: Operator | None) -> bool:
    """Whether the declared witness holds no input element: the output does not depend on
    the input's values (Shape, whose witness is a dimension n), only on its layout. None (a
    node kept in float at the user's request: nothing is known of its form) reads them."""
    if op is None:
        return False
    names = stored_structure(op).names
    return not any(element in names for tensor in op.inputs for element in tensor.elements)


def chosen_params(op: Operator) -> frozenset[str]:
    """The parameters the declared witness outputs as they are where a condition on
    parameters alone (a static position) picks them, whatever the input elements are: the
    pad constant v of constant Pad, ``where(k > 0, x, v)``. Where such a parameter is rescaled
    with the input (v -> s*v), the node is a selection with a static value
    (proofs/saturation.md, Corollary 15.3): a value far beyond the input's reach saturates."""
    return stored_structure(op).chosen_params


def is_elementwise_unary(op: Operator | None) -> bool:
    """Whether each output element is a function of one input element alone, by the
    declaration: one tensor input whose witness has one element, no channel mixing. Such an
    operator on n-bit codes is a table of 2^n output codes. None (a node kept in float at
    the user's request, ``--float-op``: no declaration) is not: nothing is known of its
    form, as of the selections' (:func:`is_lattice_selection`)."""
    return op is not None and len(op.inputs) == 1 and is_elementwise(op)


def passes_codes_on(op: Operator | None, rule: Rule | None) -> bool:
    """Whether a node of ``op`` under ``rule`` is an element-wise selection with no
    parameter (a Cast to float32 before an RMSNorm, a Relu): on codes, its output is its
    input's codes, unchanged, so its input is rounded once, at its output's grid."""
    return (op is not None and rule is not None and is_lattice_selection(op)
            and is_elementwise_unary(op) and not any(rule.param_exponents.values()))


def is_elementwise(op: Operator) -> bool:
    """Whether each output element is a function of one element of each tensor input (Max,
    Add; not MaxPool or a MatMul), by the declaration."""
    return all(len(t.elements) == 1 for t in op.inputs) and not op.mixes_channels


def jumps(op: Operator) -> bool:
    """Whether the declared function may be discontinuous in its input elements: a step
    function of the grammar (sign, floor, ceil, round) applied to them, or a Piecewise whose
    branches differ where an element-dependent condition turns (Sign, Round, ThresholdedRelu,
    the comparisons, ArgMax; not Relu, LeakyRelu or Elu, whose branches meet). Rounding its
    input can move it across a jump: its output then changes by the jump, not by the rounding.
    Undecidable boundaries count as jumps. An output of positions (TopK's indices:
    ``index_outputs``) jumps as its own declaration does (ArgMax's): a near tie that rounding
    breaks the other way picks another position."""
    if stored_structure(op).jumps:
        return True
    from ..catalog import CATALOG

    return any(jumps(CATALOG[name]) for name in op.index_outputs.values())


def is_element_sum(op: Operator | None) -> bool:
    """Whether each output element is a sum of input elements with constant coefficients
    >= 0 and nothing else, by the declaration (ReduceSum's ``x0 + x1 + x2``; a selection's
    ``x0``): on integer codes it gives integers, and its largest output over inputs within
    [-r, r] is r times its output on ones (:func:`.probe.ones_gain`). The declared witness
    stands for any number of elements; the kernel's shape sets how many. A stored fact of
    the form (:class:`..rules.structure.Structure`): a run whose verdicts are stored imports
    no sympy."""
    return op is not None and stored_structure(op).element_sum


def sum_coefficients(op: Operator) -> tuple[float, ...] | None:
    """(c_1, ..., c_n) when the declaration makes each output element the sum c_1 t_1 + ...
    + c_n t_n of one element of each tensor input, with constant coefficients and nothing
    else (Add: 1, 1; Sub: 1, -1), broadcast element-wise; else None. A constant on one such
    input moves the output by c_i times itself wherever another input is read: it is that
    input's bias."""
    return stored_structure(op).sum_coefficients


def input_params(op: Operator) -> set[str]:
    """The parameters a node of ``op`` holds in its ONNX inputs (a Gemm's weights and bias,
    a Clip's bounds); those in attributes are ``op.onnx_attrs``' values."""
    return {p for b in op.onnx_inputs if b for p in b.split()}


def carried_params(op: Operator) -> set[str]:
    """The parameters a node of ``op`` holds, in an ONNX input or attribute: those the engine
    can set on the node (rescale, make integer); the others exist in the witness only."""
    return input_params(op) | set(op.onnx_attrs.values())


def is_integer_polynomial(op: Operator, real_params: set[str],
                          units: frozenset[str] = frozenset()) -> bool:
    """Whether integer inputs and integer parameters give an integer output: the witness is a
    polynomial with integer coefficients (no parameter in ``real_params`` kept as a float, and
    no parameter that only the witness knows, such as a resize's blend weight: no ONNX input or
    attribute carries it, so the engine cannot make it an integer), or becomes one where the
    tensor inputs named in ``units``, constants whose codes are all 1, are set to 1 (a Div by
    a constant held as code 1)."""
    if is_lattice_selection(op):
        return True
    floats = set(real_params) | (set(op.params) - carried_params(op))
    form = stored_structure(op)
    return not floats & form.names and (form.integer_coefficients
                                        or bool(units & form.unit_inputs))


@dataclass(frozen=True)
class WeightLayout:
    """Parameters the output is jointly linear in: quantized as integers with their own
    scale ``S_w`` (``weights``, rule exponent 0) and biases folded in at the accumulator scale
    (``biases``, rule exponent k: b -> S_x^k * S_w * b)."""

    weights: frozenset[str]
    biases: frozenset[str]


def tensor_weight_slot(graph: Graph, node: Node, op: Operator, rule: Rule) -> int | None:
    """The slot of a constant on a tensor input that the rule proves the output of degree 1
    in (a MatMul's weight matrix): a weight, though declared as a tensor."""
    tensors = [t.name for t in op.inputs]
    degrees = rule.input_degrees
    if degrees is None or len(degrees) != len(tensors):
        return None
    slots = [s for s, name in enumerate(node.inputs)
             if name in graph.initializers and (b := slot_binding(op, s)) in tensors
             and degrees[tensors.index(b)] == 1]
    return slots[0] if len(slots) == 1 and len(node.inputs) > 1 else None


def holds_weights(graph: Graph, node: Node, op: Operator, rule: Rule) -> bool:
    """Whether ``node`` is a weight layer: parameters the rules prove its output linear in
    (a Conv's, :func:`weight_layout`), or a constant tensor input of degree 1 in a product
    that mixes channels (a MatMul's matrix, :func:`tensor_weight_slot`). A constant added to
    an activation (a bias Add, an aligned sum) or multiplied into it element by element (the
    0.5 of a legacy GELU export, a norm's gamma) is none."""
    return weight_layout(op, rule) is not None or (
        op.mixes_channels and tensor_weight_slot(graph, node, op, rule) is not None)


def weight_layout(op: Operator, rule: Rule) -> WeightLayout | None:
    """Which parameters are weights, proved by the checker on a derived operator whose input
    tensor is the weights and biases together: f(x; c*W, c*b) = c*f(x; W, b)."""
    return _weight_layout(op, rule.kind, tuple(sorted(rule.param_exponents.items())))


@cache
def _weight_layout(op: Operator, kind: RuleKind, exponents: tuple) -> WeightLayout | None:
    exponent = dict(exponents)
    slot_params = [p for b in op.onnx_inputs if b for p in b.split() if p in op.params]
    weights = [p for p in slot_params if exponent.get(p, 0) == 0]
    biases = [p for p in slot_params if exponent.get(p, 0) != 0]
    if not weights or not kind.has_rule:
        return None
    params = {e: 1 for e in op.element_names}
    params.update({p: v for p, v in op.params.items() if p not in weights and p not in biases})
    try:
        expr, domain = op.declared
        with deferred_parsing():  # parsed only if its verdict is not stored
            derived = Operator(f"{op.name}[weights]", [" ".join(weights + biases)], expr,
                               params=params, domain=domain)
        verdict = stored_classify(derived)
    except Exception:  # noqa: BLE001 - no proof, no integer weights: the node keeps floats
        return None
    if verdict.rule.kind is not RuleKind.PASS_THROUGH:
        return None
    return WeightLayout(frozenset(weights), frozenset(biases))
