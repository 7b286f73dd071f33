"""Static operands of a sum that lie beyond the representable range: a selection, not a range.

An aligned sum (an Add proved ``aligned``, not a selection) whose operands are activations
plus a *static* tensor (not an activation: an attention mask computed from the model's integer
inputs, or a constant) is quantized as ``clip(round((sum of codes + round(m * S)) * M))``.
Where the static operand m is so large that the exact sum lies beyond the output's calibrated
range whatever the activations are, clipping gives the end code there, in the float model's
order: the node *selects* the end code (proofs/saturation.md). Those positions carry no
information about the range, so they must not set it: an additive attention mask at
finfo(float32).min, -1e4 or -inf would otherwise make the range 10^38 wide and put every
real score on code 0.

The same holds for a node that selects a *parameter* at static positions and rescales it with
its input (``rules.chosen_params`` with a non-zero exponent in the proved rule: constant Pad's
``where(k > 0, x, v)``, v -> s*v): its codes there are round(scale * v), so a pad constant at
-1e4 or finfo.min, as "SAME" max pooling writes it before a MaxPool, saturates to the end code
and sets no range, read off the values and the rule as for a Where with a static operand.

Which positions saturate is read off the values, per calibration batch, with no knowledge of
what the tensor means: with A the largest |activation part| of the sum in the batch, a
position is kept when |m| <= A + R, R being the largest |sum| over the kept positions (a fixed
point, reached from the positions where |m| <= A, or where |m| is least). A dropped position
has |m| > A + R, so |sum| >= |m| - A > R: beyond the range the kept positions set, so clipped
to the end code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..graph import Graph, Node, OperatorTable, slot_binding
from ..graph.static import table_slots
from ..rules import RuleKind
from .rules import chosen_params, is_lattice_selection

FIXED_POINT_ROUNDS = 8


@dataclass(frozen=True)
class MaskedSum:
    """An aligned node (a sum, or a selection such as Where) with activation operands and
    static operands, or operands that carry saturated positions of an earlier such node (a
    boolean mask applied by ``Where(mask, bias, finfo.min)`` and then added to the scores)."""

    node: Node
    output: str
    static: tuple[str, ...]
    carried: tuple[str, ...] = ()
    selection: bool = False
    # a node selecting a rescaled parameter (constant Pad's v): its positions are left out
    # only where codes could not hold them beside the rest (calibrate, CHOSEN_BITS)
    chosen: bool = False
    # values of parameters the node selects at static positions, rescaled with its input
    # (constant Pad's v held in an attribute): static values like the tensors in ``static``
    constants: tuple[np.ndarray, ...] = ()


def masked_sums(graph: Graph, table: OperatorTable, active: set[str], plans: list
                ) -> dict[str, MaskedSum]:
    """Output tensor -> the aligned node computing it, for every one with a static operand or
    an operand carrying saturated positions, and every node selecting a non-zero parameter
    rescaled with its input at static positions (:func:`_chosen_values`), in graph order;
    ``plans``: ``plan_model``'s."""
    found: dict[str, MaskedSum] = {}
    for plan, node in zip(plans, graph.nodes):
        op = table.find(node, graph)
        if op is None or plan.rule is None:
            continue
        if plan.rule.kind is not RuleKind.ALIGNED:
            chosen = _chosen_values(graph, op, node, plan, active)
            if chosen is not None:
                found[node.outputs[0]] = chosen
            continue
        # without an activation operand, a float table read through a tensor slot (T5's
        # position bias, folded to a constant by a fixed-shape export, chosen by Where against
        # finfo.min) is what makes the output an activation (graph.static): its part, not a
        # static one; beside an activation, a constant (a bias) is a static operand
        tables = set() if plan.activation_slots else set(table_slots(graph, op, node))
        if not plan.activation_slots and not tables:
            continue
        tensors = {t.name for t in op.inputs}
        operands = [name for slot, name in enumerate(node.inputs)
                    if name and slot_binding(op, slot) in tensors and slot not in tables]
        static = tuple(name for name in operands if name not in active)
        carried = tuple(name for name in operands if name in found)
        if (static or carried) and node.outputs[0] in active:
            found[node.outputs[0]] = MaskedSum(node, node.outputs[0], static, carried,
                                               is_lattice_selection(op))
    return found


def _chosen_values(graph: Graph, op, node: Node, plan, active: set[str]) -> MaskedSum | None:
    """The node as a selection with static values when its witness outputs a parameter where
    a static condition picks it (``rules.chosen_params``: constant Pad's v) and its rule
    rescales that parameter with the input (v -> s*v), so that the value's codes are
    round(scale * v), as an activation's would be there (proofs/saturation.md, Corollary
    15.3 (c)); None otherwise, or where every such value is 0 (Pad's default: it saturates
    nothing, and the node stays as it was)."""
    params = {p for p in chosen_params(op) if plan.rule.param_exponents.get(p, 0)}
    if not params or not plan.activation_slots or node.outputs[0] not in active:
        return None
    static, constants = [], []
    for slot, name in enumerate(node.inputs):
        if name and slot_binding(op, slot) in params:
            if name in active:
                return None  # an activation: not a static value
            if name in graph.initializers:
                if np.any(np.asarray(graph.initializers[name]) != 0):
                    static.append(name)
            else:
                static.append(name)  # a static tensor, read on each batch
    for attr, param in op.onnx_attrs.items():
        if param in params and attr in node.attrs:
            value = np.asarray(node.attrs[attr], dtype=np.float64)
            if np.any(value != 0):
                constants.append(value)
    if not static and not constants:
        return None
    return MaskedSum(node, node.outputs[0], tuple(static), selection=True, chosen=True,
                     constants=tuple(constants))


def kept_positions(total: np.ndarray, static: np.ndarray,
                   bounds: tuple[float, float] | None = None) -> np.ndarray | None:
    """Boolean mask of the positions of ``total`` (= activation part + ``static``) that set
    the calibrated range; the others saturate (see the module docstring). None when every
    position counts (a bias: the common case, where a mask of all True cost as much to test
    as to build). ``static`` may be smaller than ``total`` (a mask broadcast over heads and
    queries): the work stays on its own shape where it can. ``bounds``: (min, max) of
    ``total`` where the caller has them (NaN where it holds NaN, as min and max give)."""
    total = np.asarray(total)
    static = np.asarray(static, dtype=total.dtype)
    magnitude = np.abs(static)
    peak = float(magnitude.max(initial=0.0))
    if total.size and bounds is None:
        bounds = float(total.min()), float(total.max())
    if total.size and np.isfinite(peak) and 2 * peak <= max(-bounds[0], bounds[1]):
        # the activation part reaches at least max|total| - peak >= peak: no static value
        # lies beyond it (a bias), every position counts; found without a temporary
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        activation = np.abs(np.where(np.isfinite(static), total - static, 0))
        reach = float(np.max(activation, initial=0.0))
        if peak <= reach:  # no static value beyond the activations' reach
            return None
        size = np.abs(total)
        kept = magnitude <= max(reach, float(magnitude.min(initial=np.inf)))
        for _ in range(FIXED_POINT_ROUNDS):
            inside = np.broadcast_to(kept, total.shape)
            bound = reach + float(np.max(size, where=inside, initial=0.0))
            grown = magnitude <= bound
            if np.array_equal(grown, kept):
                break
            kept = grown
    return None if kept.all() else np.broadcast_to(kept, total.shape)


def static_part(masked: MaskedSum, values: dict[str, np.ndarray], graph: Graph,
                total: np.ndarray, carried: dict[str, np.ndarray]) -> np.ndarray:
    """The static part of ``total``, the node's output on this batch: for a sum, the sum of
    its static operands (from this batch's values or the constants) and of the saturated
    positions its carrying operands hold (``carried``: their values there, 0 elsewhere); for a
    selection, ``total`` where it equals one of those (a position the node selected from a
    static value), 0 elsewhere. A static operand that does not broadcast to the output (a
    Concat's) contributes nothing; a carrying one that a selection places elsewhere in its
    output (a Concat of masked scores and a constant column, as attention sinks append one)
    contributes the positions holding one of its saturated values: a selection passes values
    on unchanged, and those lie beyond every value the kept positions hold."""
    shape = np.shape(total)
    saturated = [carried[name] for name in masked.carried if name in carried]
    placed = [] if not masked.selection else [
        np.unique(part[part != 0]) for part in saturated if not _broadcasts(np.shape(part), shape)]
    parts = [values[name] if name in values else graph.initializers[name]
             for name in masked.static]
    parts += saturated + list(masked.constants)
    parts = [np.asarray(p) for p in parts if _broadcasts(np.shape(p), shape)]
    if not parts and not any(part.size for part in placed):
        return np.zeros((), dtype=np.asarray(total).dtype)
    if masked.selection:
        chosen = np.zeros(shape, dtype=bool)
        for part in parts:
            chosen |= (total == part) & (part != 0)
        for part in placed:
            chosen |= np.isin(total, part)
        return np.where(chosen, total, 0)
    result = parts[0]
    for part in parts[1:]:
        result = np.add(result, part)
    return result


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def selectable_constants(graph: Graph, table: OperatorTable, tensor: str,
                         producers: Mapping[str, Node]) -> list[np.ndarray]:
    """The float constants a static ``tensor`` may take its values from through selections
    alone (:func:`is_lattice_selection`: Where, Expand, Reshape, Concat ...): the constants
    read by the selections' tensor slots, walking back from ``tensor`` (a selection's
    condition is a parameter, not walked). A tensor computed otherwise contributes none.

    An additive attention mask is ``Where(keep, 0, finfo.min)`` (or -inf) expanded to the
    scores' shape: which positions take finfo.min depends on the data, but that it may take
    it is read off the graph, where calibration data without padding never shows it.
    ``producers``: :meth:`Graph.producers`, taken once by the caller for all its tensors."""
    found: list[np.ndarray] = []
    pending, seen = [tensor], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph.initializers:
            value = np.asarray(graph.initializers[name])
            if np.issubdtype(value.dtype, np.floating) and value.size:
                found.append(value)
            continue
        node = producers.get(name)
        op = None if node is None else table.find(node, graph)
        if op is None or not is_lattice_selection(op):
            continue
        tensors = {t.name for t in op.inputs}
        pending += [name for slot, name in enumerate(node.inputs)
                    if name and slot_binding(op, slot) in tensors]
    return found


def unselected_saturation(sums: dict[str, MaskedSum], graph: Graph, table: OperatorTable,
                          reach: Mapping[str, float], bits: int | None,
                          observed: Mapping[str, float]) -> set[str]:
    """The masked sums whose static operands may select a value their codes cannot hold
    beside the calibrated range (infinite, or beyond 2^(n-1) - 1 times ``reach``, the sum's
    calibrated max |x|: the bound calibrate leaves such a position out by), although the
    calibration data never selected it. Held as codes, such a position would clip to the
    range's end at run time, and the Softmax after it would attend to a masked key: a KV-cache
    decoder calibrated on rows without padding (its decode step has no causal mask to add)
    lost 13-21 dB on padded rows with no word said. Counted as saturated, the sum runs in
    float where its readers do, mask intact, as when calibration had shown it.

    The values an operand may take: the constants selections carry into it
    (:func:`selectable_constants`), and those it held on the calibration data (``observed``:
    static tensor -> its largest |x| there, NaN or inf included) wherever the node did not
    select them. torch's legacy export of ``where(mask, scores, full_like(scores, -inf))``
    computes the -inf tensor with a ConstantOfShape from the scores' shape: no constant in
    the graph, -inf at every position on every batch, selected by none without padding (a
    two-layer attention block: 18.2 dB on 32 padded samples, 29.8 once counted; the dynamo
    export, whose -inf is a constant, was counted already)."""
    producers = graph.producers()
    found = set()
    for name, masked in sums.items():
        if masked.chosen or name not in reach:
            continue
        for operand in masked.static:
            peaks = [float(np.abs(c).max())
                     for c in selectable_constants(graph, table, operand, producers)]
            if operand in observed:
                peaks.append(observed[operand])
            if any(not np.isfinite(p) or beyond_codes(p, reach[name], bits) for p in peaks):
                found.add(name)
                break
    return found


def beyond_codes(peak: float, reach: float, bits: int | None) -> bool:
    """Whether a selected value of magnitude ``peak`` lies beyond what codes can hold beside
    the rest of a sum's values (``reach``, their largest |x|): past 2^(n-1) - 1 times it
    (n = ``bits``, 8 when not given), where quantize could not count it back
    (``_saturated_reach``). Calibration leaves such a value out of the range where the data
    select it, and counts a sum that may select one as saturated where they do not."""
    return peak > ((1 << ((bits or 8) - 1)) - 1) * reach
