"""Bias absorption (Nagel et al. 2019, "Data-Free Quantization", section 4.2), exact, driven by
proofs (proofs/shift.md).

After equalization a channel of layer 1's output may sit far from 0 on all data: its range
[m_c, M_c] with m_c > 0 spends codes on [0, m_c] that are never used. Moving the constant c_c
out of layer 1 (its bias b1 -> b1 - c) and into layer 2 (b2 -> b2 + W2 c) shifts the channel to
[0, M_c - c_c] and computes the same function, provided

- every link of the equalization group passes the shift: the checker's shift rule
  (:func:`~ptq_verify.rules.shift_verdict.passes_per_channel_shift`:
  f(x - c; p - a c) = f(x; p) - c,
  proved, on an operator declared not to mix channels), its parameters shifted per channel as
  the rule says (a Clip's bounds lo - c_c, hi - c_c, held per channel once equalization split
  it into Max and Min), and a probe of the node's own kernel agreeing;
- layer 1 shifts its output by its parameters alone (the rule with the inputs held: a Conv's or
  Gemm's bias, ``shift_rule(op, through_inputs=False)``), given a zero bias when its optional
  bias slot is empty;
- layer 2 is proved affine in its input (:func:`~ptq_verify.rules.shift.proved_affine`), so
  g(x - c) = g(x) - L(c), and L(c), its response to the constant input c minus its response to
  0 on its own kernel, is one constant per output channel: a 1x1 convolution or a Gemm, not a
  convolution whose zero padding does not shift at the borders. Layer 2's bias takes +L(c).

c_c is the least value of channel c, over the whole calibration set, of every tensor the group's
layers 2 read, where it is above 0 (else 0): the shifted channel's calibrated range then starts
at 0. The change is exact for every input; only the quantizer's range differs: the shifted
tensors are held unsigned on their calibrated range (as any calibrated range, values outside it
saturate), where the unshifted ones were proved non-negative. No operator type is named. At the
end the float graph runs before and after on the calibration sample: outputs that differ beyond
float rounding undo every change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..catalog.operator import Operator
from ..graph import Graph, Node, OperatorTable, activation_tensors, slot_binding
from ..rules import Rule, stored_proved_affine, stored_shift_rule
from ..rules.shift_verdict import passes_per_channel_shift
from .equalize import (
    CHANNEL_AXIS,
    Group,
    broadcasts,
    groups_of,
    per_channel_update,
    split_links,
)
from .float_run import calibration_feeds, kept_if_same, run_float, streamed
from .probe import along, close, example_inputs, example_shape, run_kernel
from .rules import check_overrides
from .split import rejoin

_TOLERANCE = 1e-6  # relative spread of a layer 2's response that still counts as constant


@dataclass(frozen=True)
class _Move:
    """A constant input of ``node`` (``slot``; empty: a zero bias to add) that moves by
    ``coefficient`` times the per-channel amount."""

    node: Node
    slot: int
    coefficient: float


@dataclass(frozen=True)
class Absorbable:
    """An equalization group the rules let take a per-channel shift: layers 1's biases
    (``firsts``), the links' constants (``links``), layers 2's biases (``seconds``), and the
    group tensors that layers 2 read (``read``)."""

    firsts: tuple[_Move, ...]
    links: tuple[_Move, ...]
    seconds: tuple[_Move, ...]
    read: tuple[str, ...]
    tensors: tuple[str, ...]
    ndim: int

    def describe(self) -> str:
        def names(moves):
            return " + ".join(dict.fromkeys(m.node.name for m in moves))

        via = f" via {names(self.links)}" if self.links else ""
        return f"{names(self.firsts)} -> {names(self.seconds)}{via}"


@dataclass(frozen=True)
class AbsorbedGroup:
    """Layer 1's output channels were shifted down by ``shift`` (>= 0) and layers 2's biases
    took it."""

    group: Absorbable
    shift: np.ndarray

    def describe(self) -> str:
        moved = self.shift > 0
        return (f"{self.group.describe()}: {int(moved.sum())} of {self.shift.size} channels "
                f"shifted, by up to {float(self.shift.max()):.3g}")


def absorbable(graph: Graph, table: OperatorTable | Mapping[str, Operator] | None = None,
               overrides: Mapping[str, Rule] | None = None,
               groups: list[Group] | None = None) -> list[Absorbable]:
    """Every equalization group (of ``groups``, else as the graph stands) whose links pass a
    shift and whose layers take it (no data needed: ``ptq-verify audit`` lists them)."""
    table = OperatorTable.of(table)
    active = activation_tensors(graph, table)
    moves: dict[str, _Move | None] = {}  # a layer of two groups is probed once

    def bias_move(node: Node) -> _Move | None:
        if node.name not in moves:
            moves[node.name] = _bias_move(graph, table, node, active)
        return moves[node.name]

    return [found for group in (groups_of(graph, table, overrides) if groups is None
                                else groups)
            if (found := _absorbable(graph, table, group, active, bias_move)) is not None]


def absorb(graph: Graph, data: Mapping[str, np.ndarray] | np.ndarray,
           table: OperatorTable | Mapping[str, Operator] | None = None,
           overrides: Mapping[str, Rule] | None = None, progress: bool = False,
           groups: list[Group] | None = None) -> list[AbsorbedGroup]:
    """Absorb every shift the rules allow and the calibration data calls for, in place, after
    equalization and before calibration; return what moved (empty: the graph is unchanged).
    ``groups``: the equalization groups as the graph stands, where equalization just found
    them (:func:`.equalize.equalized`); None: searched here.

    A Clip in a group is split into Max and Min steps first (as equalization does), so its
    bounds can take one shift per channel, whether or not equalization kept that group's
    factors. Every split whose bounds end with one value in every channel (nothing moved
    through it, and equalization kept no factor there) is then undone
    (:func:`.split.rejoin`)."""
    table = OperatorTable.of(table)
    check_overrides(overrides, table)
    before = dict(graph.initializers), list(graph.nodes), dict(graph.value_info)
    if groups is None:
        groups = groups_of(graph, table, overrides, allow_split=True)
    groups = split_links(graph, table, groups, overrides)
    done = _absorb(graph, data, table, overrides, progress, groups)
    if not done:
        graph.initializers, graph.nodes, graph.value_info = before
    rejoin(graph)
    return done


def _absorb(graph: Graph, data, table: OperatorTable, overrides, progress: bool,
            groups: list[Group]) -> list[AbsorbedGroup]:
    candidates = absorbable(graph, table, overrides, groups)
    if not candidates:
        return []
    every, feeds = calibration_feeds(data, graph)
    least = _least(graph, table, every, [t for c in candidates for t in c.read], progress)
    if least is None:
        return []
    shifts = [np.maximum(np.min([least[t] for t in c.read], axis=0), 0.0) for c in candidates]
    if not any(np.any(shift > 0) for shift in shifts):
        return []

    def change() -> list[AbsorbedGroup]:
        return [AbsorbedGroup(candidate, shift) for candidate, shift in zip(candidates, shifts)
                if np.any(shift > 0) and _apply(graph, table, candidate, shift)]

    reference = run_float(graph, table, feeds, graph.output_names)
    return kept_if_same(graph, table, feeds, reference, change)


def shifted_tensors(done: list[AbsorbedGroup]) -> list[str]:
    """The activations whose channels now start at 0 on the calibration data (for
    ``quantize(calibrated_unsigned=...)``)."""
    return [tensor for item in done for tensor in item.group.tensors]


# -- which nodes take the shift ---------------------------------------------------------------

def _absorbable(graph: Graph, table: OperatorTable, group: Group, active: set[str],
                bias_move: Callable[[Node], _Move | None]) -> Absorbable | None:
    tensor = next(iter(group.tensors))
    shape = example_shape(graph, tensor)
    if shape is None:
        return None
    channels, ndim = shape[CHANNEL_AXIS], len(shape)
    firsts = [bias_move(layer.node) for layer in group.firsts.values()]
    seconds = [bias_move(layer.node) for layer in group.seconds.values()]
    if None in firsts or None in seconds:
        return None
    if not all(_constant_response(graph, table, layer.node, active,
                                  np.random.default_rng(5).uniform(0.5, 2.0, channels))
               is not None and _affine(graph, table, layer.node, active)
               for layer in group.seconds.values()):
        return None
    links = []
    for link in group.links.values():
        moves = _link_moves(graph, table, link.node, active, channels, ndim)
        if moves is None:
            return None
        links.extend(moves)
    read = [t for t in group.tensors
            if any(t in layer.node.inputs for layer in group.seconds.values())]
    return Absorbable(tuple(firsts), tuple(links), tuple(seconds), tuple(sorted(read)),
                      tuple(sorted(group.tensors)), ndim)


def _bias_move(graph: Graph, table: OperatorTable, node: Node, active: set[str]
               ) -> _Move | None:
    """The one constant slot that shifts the node's output channels by its proved rule with
    the inputs held (f(x; p - a c) = f(x; p) - c), held (or to be held) one value per output
    channel, owned by the node, and a probe of the kernel agreeing."""
    op = table.find(node, graph)
    if op is None or len(node.outputs) != 1:
        return None
    rule = stored_shift_rule(op, through_inputs=False)
    if not rule.holds or any(rule.param_shifts.get(p, 0) for p in op.onnx_attrs.values()):
        return None
    slots = []
    for slot, binding in enumerate(op.onnx_inputs):
        coefficients = rule.moves(op, binding)
        if coefficients - {0}:
            if len(coefficients) != 1:
                return None
            slots.append((slot, float(coefficients.pop())))
    if len(slots) != 1:
        return None
    (slot, coefficient), = slots
    examples = example_inputs(graph, node, active)
    base = None if examples is None else run_kernel(op, node, examples, {})
    if base is None or base.ndim <= CHANNEL_AXIS:
        return None
    channels = base.shape[CHANNEL_AXIS]
    name = node.inputs[slot] if slot < len(node.inputs) else ""
    if name and (name not in graph.initializers or graph.initializers[name].shape != (channels,)
                 or len(graph.consumers().get(name, [])) != 1):
        return None
    examples = examples + [None] * (slot + 1 - len(examples))
    bias = np.asarray(graph.initializers[name] if name else np.zeros(channels), np.float64)
    if not name:  # (a held bias is the examples' own already: base ran on it)
        examples[slot] = bias
        base = run_kernel(op, node, examples, {})
    amount = np.random.default_rng(6).uniform(-2.0, 2.0, channels)
    moved = run_kernel(op, node, examples, {slot: bias - coefficient * amount})
    if base is None or moved is None or not close(moved, base - along(amount, CHANNEL_AXIS,
                                                                         base.ndim)):
        return None
    return _Move(node, slot, coefficient)


def _affine(graph: Graph, table: OperatorTable, node: Node, active: set[str]) -> bool:
    """Whether the node's witness is proved affine in the tensor its activation input binds."""
    op = table.find(node, graph)
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    return op is not None and len(slots) == 1 and stored_proved_affine(
        op, slot_binding(op, slots[0]) or "")


def _constant_response(graph: Graph, table: OperatorTable, node: Node, active: set[str],
                       shift: np.ndarray) -> np.ndarray | None:
    """L(c) per output channel: the node's output at its activation input held at c_c in every
    element of channel c, minus its output at 0, when that is one value per output channel
    (None otherwise: a zero-padded convolution's borders do not see the shift)."""
    op = table.find(node, graph)
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    examples = example_inputs(graph, node, active)
    if op is None or len(slots) != 1 or examples is None:
        return None
    x = np.asarray(examples[slots[0]])
    if x.ndim <= CHANNEL_AXIS or x.shape[CHANNEL_AXIS] != shift.size:
        return None
    constant = np.broadcast_to(along(shift, CHANNEL_AXIS, x.ndim), x.shape)
    at_shift = run_kernel(op, node, examples, {slots[0]: constant})
    at_zero = run_kernel(op, node, examples, {slots[0]: np.zeros(x.shape)})
    if at_shift is None or at_zero is None or at_shift.ndim <= CHANNEL_AXIS:
        return None
    response = np.moveaxis(at_shift - at_zero, CHANNEL_AXIS, 0)
    response = response.reshape(response.shape[0], -1)
    if not response.size:
        return None
    per_channel = response[:, 0]
    spread = np.abs(response - per_channel[:, None]).max()
    if spread > _TOLERANCE * (np.abs(response).max() + 1e-30):
        return None
    return per_channel


def _link_moves(graph: Graph, table: OperatorTable, node: Node, active: set[str],
                channels: int, ndim: int) -> list[_Move] | None:
    """The link's constants that shift with the activation (a constant tensor input: all of
    it; a parameter: by its coefficient in the proved rule), each held per channel or as one
    value and owned by the node; None when the rule or a probe of the kernel says no."""
    op = table.find(node, graph)
    rule = None if op is None else passes_per_channel_shift(op)
    if rule is None or not rule.holds:
        return None
    if any(rule.param_shifts.get(p, 0) for p in op.onnx_attrs.values()):
        return None
    tensors = {t.name for t in op.inputs}
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    moves = []
    for slot, name in enumerate(node.inputs):
        binding = slot_binding(op, slot)
        if slot in slots or not name or binding is None:
            continue
        coefficients = rule.moves(op, binding)
        if binding not in tensors and coefficients == {0}:
            continue
        if len(coefficients) != 1 or not broadcasts(graph.initializers.get(name), channels,
                                                    ndim):
            return None
        if len(graph.consumers().get(name, [])) != 1:
            return None
        moves.append(_Move(node, slot, float(coefficients.pop())))
    examples = example_inputs(graph, node, active)
    if examples is None:
        return None
    amount = np.random.default_rng(8).uniform(-2.0, 2.0, channels)
    changes = {}
    for slot in slots:
        value = np.asarray(examples[slot], np.float64)
        if value.ndim != ndim or value.shape[CHANNEL_AXIS] != channels:
            return None
        changes[slot] = value - along(amount, CHANNEL_AXIS, ndim)
    for move in moves:
        changes[move.slot] = per_channel_update(examples[move.slot], move.coefficient * amount,
                                                ndim, np.subtract)
    base, moved = run_kernel(op, node, examples, {}), run_kernel(op, node, examples, changes)
    if base is None or moved is None or base.ndim != ndim or not close(
            moved, base - along(amount, CHANNEL_AXIS, ndim)):
        return None
    return moves


# -- data and the change ----------------------------------------------------------------------

def _least(graph: Graph, table: OperatorTable, feeds, tensors: list[str], progress: bool
           ) -> dict[str, np.ndarray] | None:
    """Each tensor's least value per channel over every calibration sample, batch by batch."""
    names = list(dict.fromkeys(tensors))
    least: dict[str, np.ndarray] = {}
    for _, values in streamed(graph, table, feeds, names, "bias absorption", progress):
        if values is None:
            return None
        for name in names:
            low = _channel_least(np.asarray(values[name]))
            least[name] = low if name not in least else np.minimum(least[name], low)
    return least


def _channel_least(x: np.ndarray) -> np.ndarray:
    """The least value of each channel of the batch ``x`` (channels on CHANNEL_AXIS), in
    float64: over the batch first, then over the rest, in ``x``'s own type (a minimum is
    exact in any type; a float64 copy of each batch, moved to channels first and copied
    again, had taken 1.1 s of EfficientNet-Lite1's 6.1 s of bias absorption)."""
    channels = np.moveaxis(np.minimum.reduce(x, axis=0), CHANNEL_AXIS - 1, 0)
    return channels.reshape(len(channels), -1).min(axis=1).astype(np.float64)


def _apply(graph: Graph, table: OperatorTable, candidate: Absorbable, shift: np.ndarray
           ) -> bool:
    """Shift the group's channels down by ``shift``; False (nothing changed) when a layer 2's
    response to the actual shift is not one value per output channel."""
    active = activation_tensors(graph, table)
    responses = [_constant_response(graph, table, move.node, active, shift)
                 for move in candidate.seconds]
    if any(r is None for r in responses):
        return False
    for move in candidate.firsts:
        _move_bias(graph, move, -move.coefficient * shift)
    for move, response in zip(candidate.seconds, responses):
        _move_bias(graph, move, move.coefficient * response)
    inits = graph.initializers
    for move in candidate.links:
        name = move.node.inputs[move.slot]
        value = inits[name]
        inits[name] = per_channel_update(value, move.coefficient * shift, candidate.ndim,
                                         np.subtract).astype(value.dtype)
    return True


def _move_bias(graph: Graph, move: _Move, amount: np.ndarray) -> None:
    """Add ``amount`` (one per output channel) to the node's bias, made (zeros) if absent."""
    node = move.node
    name = node.inputs[move.slot] if move.slot < len(node.inputs) else ""
    if not name:
        weight = next(graph.initializers[n] for n in node.inputs if n in graph.initializers)
        name = f"{node.name}:bias"
        graph.initializers[name] = np.zeros(amount.size, weight.dtype)
        node.inputs.extend([""] * (move.slot + 1 - len(node.inputs)))
        node.inputs[move.slot] = name
    value = graph.initializers[name]
    graph.initializers[name] = (value + amount).astype(value.dtype)
