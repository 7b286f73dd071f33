"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"), driven by proofs.

Two nodes with integer weights (proved linear in them, :func:`~.rules.weight_layout`) joined by
a chain of nodes that each pass a per-channel scale (the checker's per-channel rule,
proofs/per-channel.md) compute the same function when layer 1's output channel c is divided by
s_c and layer 2's input channel c multiplied by s_c, the chain's parameters rescaled per
channel as their rule says (p_c -> s_c^-k p_c). With s_c = sqrt(r1_c * r2_c) / r2_c (r: the
largest |weight| of channel c in each layer) both layers get the same per-channel range, so one
weight scale per tensor wastes fewer levels on the small channels.

Branches that meet again are one group: where a link has several activation inputs (an aligned
join, the skip Add of a residual), every one of them must carry the same factor, so the group
grows up to each input's producer and down to every reader of every tensor it holds, until it
ends in layers 1 (whose output channels take 1/s_c) and layers 2 (whose input channels take
s_c) on all sides; r1 and r2 are then the largest over each side.

No operator type is named: a link is accepted when its declaration has a proved per-channel
rule of degree 1, a probe of the node itself confirms that scaling its inputs' channels scales
its output's channels alike (axis 1, the node's attributes as they are), and every parameter it
must rescale is held per channel in the model already or can be (a Clip is split, .split).
Anything else (a graph input or output, an operator that mixes channels) ends nothing: the
whole group is left as it is. At the end the graph is run before and after on random inputs
(calibration samples when given: a model with integer inputs has no random ones); if the
outputs differ beyond float rounding, every change is undone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from ..catalog.operator import Operator
from ..graph import Graph, Node, OperatorTable, activation_tensors, run_graph, slot_binding
from ..graph.ort_runner import NodeSessions
from ..graph.static import MAX_FOLDED_ELEMENTS
from ..progress import progress_bar
from ..rules import Rule
from ..rules.per_channel import per_channel_rule
from .data import fixed_batch, take
from .float_run import calibration_feeds, run_float, sample_count
from .fold import CHANNEL_AXIS, _carries
from .group_error import GroupRun
from .metrics import squared_norms
from .probe import (
    along,
    divided_along,
    example_channel_axes,
    example_inputs,
    example_shape,
    paired_weight_axis,
    run_kernel,
)
from .rules import check_overrides, effective_rule, weight_layout
from .split import can_split, split

ITERATIONS = 8
"""Passes over all pairs; Nagel et al. iterate until the scales settle (a few passes)."""
STRENGTHS = (0.0, 0.5, 1.0)
"""Powers of a group's factors tried on data: none, half way (in the log of the factors), whole."""
KEEP = 0.95
"""A group is changed only when that cuts its measured error by 5% or more: the measure runs on
a sample, and a change that buys less is not worth making a model differ from its export."""
STRENGTH_SAMPLES = 8  # calibration samples the strengths are measured on
_SCALE_LIMIT = 1e4  # one pass never moves a channel by more than this factor either way
_TOLERANCE = 1e-4  # relative output change that counts as float rounding
RANDOM_BATCH = 4  # samples of the before/after check where the model leaves the batch free




@dataclass(frozen=True)
class _Weights:
    node: Node
    weight: str  # initializer name
    axis: int  # the weight axis of the channel in question
    bias: str | None = None  # initializer of a bias along the output channels
    out_axis: int | None = None  # the weight axis of its output channels, where a probe finds it
    bias_slots: tuple[int, ...] = ()  # its inputs that carry biases, by the weight layout


@dataclass(frozen=True)
class _Link:
    node: Node
    rescaled: tuple[tuple[str, float], ...]  # (initializer, exponent k) held per channel
    ndim: int  # the rank of its activation
    sources: tuple[str, ...] = ()  # its activation inputs (several at a join)
    split: bool = False  # its bounds are scalars: split into binary steps first (.split)


@dataclass(frozen=True)
class EqualizedGroup:
    """The output channels of the layers ``firsts`` (several where branches meet at a join)
    were divided by ``scale`` and the input channels of the layers ``seconds`` (several where
    a tensor fans out) multiplied by it, through the nodes ``through``."""

    firsts: tuple[str, ...]
    seconds: tuple[str, ...]
    through: tuple[str, ...]
    scale: np.ndarray
    strength: float = 1.0  # the power of the full factors it took (equalize with data)

    def describe(self) -> str:
        via = f" via {', '.join(self.through)}" if self.through else ""
        strength = f" strength {self.strength:g}" if self.strength != 1 else ""
        return f"{' + '.join(self.firsts)} -> {' + '.join(self.seconds)}{via}{strength}"


@dataclass
class Group:
    """Layers 1, links and layers 2 that take one factor per channel together."""

    firsts: dict[str, _Weights] = field(default_factory=dict)
    links: dict[str, _Link] = field(default_factory=dict)
    seconds: dict[str, _Weights] = field(default_factory=dict)
    tensors: set[str] = field(default_factory=set)


def equalize(graph: Graph, table: OperatorTable | Mapping[str, Operator] | None = None,
             overrides: Mapping[str, Rule] | None = None,
             iterations: int = ITERATIONS, data: Mapping[str, np.ndarray] | None = None,
             bits: int = 8, per_channel: bool = True, progress: bool = False
             ) -> list[EqualizedGroup]:
    """Equalize every group the rules allow, in place; return the groups equalized (empty:
    unchanged). :func:`equalized` says more."""
    return equalized(graph, table, overrides, iterations, data, bits, per_channel,
                     progress)[0]


def equalized(graph: Graph, table: OperatorTable | Mapping[str, Operator] | None = None,
              overrides: Mapping[str, Rule] | None = None,
              iterations: int = ITERATIONS, data: Mapping[str, np.ndarray] | None = None,
              bits: int = 8, per_channel: bool = True, progress: bool = False
              ) -> tuple[list[EqualizedGroup], list[Group] | None]:
    """Equalize every group the rules allow, in place; return the groups equalized (empty:
    unchanged) and the groups as the graph then stands, for bias absorption (``absorb(...,
    groups=...)``), or None where no search ran.

    The groups returned are those of the search (:func:`groups_of` with ``allow_split``)
    where the graph is left unchanged, and those of the graph with their links split where
    it is changed; absorb's own search would find the same on the graph it then meets
    (tests/test_absorb.py checks it on the real exports): each layer and link of a search is
    probed on the catalog's kernels: ResNet-50's second search took 1 s (4-7 s under load).

    Each group's ``scale`` is the product over all passes, s_c. Without ``data`` every group
    takes it whole (Nagel et al.); with calibration data, each takes s_c^alpha with the
    strength alpha of STRENGTHS whose ``bits``-bit codes (weights per channel, or per tensor
    when not ``per_channel``) cost its layers 2's outputs least on a sample of it
    (:mod:`.group_error`), and 0, no change, unless another costs under KEEP times as much;
    ``progress``: a bar on stderr over the groups measured."""
    table = OperatorTable.of(table)
    check_overrides(overrides, table)
    measured = feeds = None
    if data is None:
        feeds = _random_feeds(graph)
    else:  # real samples check the float function too: integer inputs have no random ones
        sample = calibration_feeds(data, graph)[1]
        feeds, measured = (take(sample, graph, 0, count)
                           for count in (fixed_batch(graph) or RANDOM_BATCH,
                                         sample_count(graph, STRENGTH_SAMPLES)))
    if feeds is None:
        return [], None
    found = _groups(graph, table, overrides, allow_split=True, progress=progress)
    if not found:
        return [], found
    before = dict(graph.initializers), list(graph.nodes), dict(graph.value_info)
    reference = _outputs(graph, table, feeds)
    groups = split_links(graph, table, found, overrides)
    split_weights = dict(graph.initializers)
    totals = [np.ones(_channels(graph, next(iter(group.tensors)))) for group in groups]
    for _ in range(iterations):
        for index, group in enumerate(groups):
            scale = _scales(graph, group)
            _apply(graph, group, scale)
            totals[index] = totals[index] * scale
    strengths = [1.0] * len(groups)
    if measured is not None and groups:
        graph.initializers = split_weights
        strengths = _strengths(graph, table, groups, totals, measured, bits, per_channel,
                               progress)
    if not any(strengths) or not _same(reference, _outputs(graph, table, feeds)):
        graph.initializers, graph.nodes, graph.value_info = before
        return [], found
    order = {node.name: index for index, node in enumerate(graph.nodes)}

    def named(nodes) -> tuple[str, ...]:
        return tuple(sorted(nodes, key=lambda name: order.get(name, len(order))))

    return [EqualizedGroup(named(group.firsts), named(group.seconds), named(group.links),
                           total ** strength, strength)
            for group, total, strength in zip(groups, totals, strengths) if strength], groups


# one BLAS thread: the group errors' sums (metrics.sum_of_squares) are BLAS dot products,
# whose second thread, spinning after each, slowed the onnxruntime runs between them
# (ResNet-50: the group runs 4.6 -> 6.9 s with two)
@threadpool_limits.wrap(limits=1, user_api="blas")
def _strengths(graph: Graph, table: OperatorTable, groups: list[Group], totals: list,
               sample: Mapping[str, np.ndarray], bits: int, per_channel: bool,
               progress: bool) -> list[float]:
    """Each group's strength (:func:`equalize`) on the calibration ``sample``, chosen group by
    group in graph order and applied before the next is measured (a layer 2 of one group may
    be a layer 1 of the next); all 0 when the float graph cannot run here."""
    active = activation_tensors(graph, table)
    runs = [_group_run(graph, table, group, active) for group in groups]
    externals = [run.external(graph) for run in runs]
    want = list(dict.fromkeys(name for names in externals for name in names))
    values = run_float(graph, table, sample, [name for name in want if name not in sample])
    if values is None:
        return [0.0] * len(groups)
    values = {**values, **sample}
    divided: dict[str, np.ndarray] = {}  # a group tensor's values, over those of the float run
    chosen = []
    for group, total, run, external in progress_bar(
            list(zip(groups, totals, runs, externals)), desc="equalizing", unit="group",
            progress=progress):
        inputs = {name: divided_along(values[name], divided[name], CHANNEL_AXIS)
                  if name in divided else values[name] for name in external}
        sessions = NodeSessions(graph)  # (a group's, for each strength it tries)
        reference = run.outputs_of(graph, table, inputs, sessions=sessions)
        reference_energies = squared_norms(reference)
        errors = {}
        for strength in STRENGTHS:
            saved = {name: graph.initializers[name] for name in _rescaled(group)}
            _apply(graph, group, total ** strength)
            errors[strength] = run.error(graph, table, inputs, reference, reference_energies,
                                         bits, per_channel, sessions)
            graph.initializers.update(saved)
        best = min(STRENGTHS, key=lambda strength: errors[strength])
        best = best if errors[best] < KEEP * errors[0.0] else 0.0
        _apply(graph, group, total ** best)
        for tensor in group.tensors:
            divided[tensor] = total ** best
        chosen.append(best)
    return chosen


def _group_run(graph: Graph, table: OperatorTable, group: Group, active: set[str]
               ) -> GroupRun:
    names = {*group.firsts, *group.links, *group.seconds}
    return GroupRun(
        nodes=tuple(node for node in graph.nodes if node.name in names),
        weights={layer.weight: _output_axis(graph, table, layer, active)
                 for layer in (*group.firsts.values(), *group.seconds.values())},
        read=frozenset(name for layer in group.seconds.values() for name in layer.node.inputs
                       if name in group.tensors),
        outputs=tuple(layer.node.outputs[0] for layer in group.seconds.values()))


def _rescaled(group: Group) -> set[str]:
    """The initializers :func:`_apply` changes (a link still to split gets its own copies of
    its bounds: the dynamo exporter shares one pair of Clip bounds among all its ReLU6)."""
    names = {name for layer in group.firsts.values() for name in (layer.weight, layer.bias)}
    names |= {layer.weight for layer in group.seconds.values()}
    names |= {name for link in group.links.values() if not link.split
              for name, _ in link.rescaled}
    return names - {None}


def groups_of(graph: Graph, table: OperatorTable, overrides: Mapping[str, Rule] | None = None,
              allow_split: bool = False) -> list[Group]:
    """The groups as the graph stands (a Clip link not split yet ends its group), or, with
    ``allow_split``, as they stand once :func:`split_links` splits them: bias absorption
    (:mod:`.absorb`) moves its shifts through them."""
    return _groups(graph, table, overrides, allow_split=allow_split)


def split_links(graph: Graph, table: OperatorTable, groups: list[Group],
                overrides: Mapping[str, Rule] | None = None) -> list[Group]:
    """Split, in place, every link of ``groups`` (found with ``allow_split``) whose bounds
    must be held per channel (a Clip: .split); return the groups as the graph then stands."""
    to_split = [link.node for group in groups for link in group.links.values() if link.split]
    for node in to_split:
        split(graph, table, node, table.require(node, graph))
    return _groups(graph, table, overrides, allow_split=False) if to_split else groups


def _groups(graph: Graph, table: OperatorTable, overrides, allow_split: bool,
            progress: bool = False) -> list[Group]:
    """Every group that starts at a layer 1's output and closes (:func:`_group`), each once;
    ``progress``: a bar over the nodes searched (each layer is probed with the catalog's
    kernels: ResNet-50's search took 1.6 s of its run, before any other bar showed)."""
    active = activation_tensors(graph, table)
    producers, consumers = graph.producers(), graph.consumers()
    known_layers: dict[tuple[str, str | None], _Weights | None] = {}
    known_links: dict[str, _Link | None] = {}

    def layer(node: Node, source: str | None = None) -> _Weights | None:
        """The node as a layer 1 (``source`` None) or as a layer 2 reading ``source``; each
        node is probed once, though several groups' searches meet it."""
        key = (node.name, source)
        if key not in known_layers:
            known_layers[key] = _weights(graph, table, node, active, overrides,
                                         output_side=source is None, source=source)
        return known_layers[key]

    def link(node: Node) -> _Link | None:
        if node.name not in known_links:
            known_links[node.name] = _link(graph, table, node, active, overrides, allow_split)
        return known_links[node.name]

    groups: list[Group] = []
    taken: set[str] = set()
    for node in progress_bar(graph.nodes, desc="equalization groups", unit="node",
                             progress=progress):
        if not node.outputs or node.outputs[0] in taken:
            continue
        first = layer(node)
        if first is None:
            continue
        group = _group(graph, first, layer, link, producers, consumers)
        if group is not None and group.seconds and _own(graph, group):
            taken |= group.tensors
            groups.append(group)
    return groups


def _group(graph: Graph, first: _Weights, layer, link, producers, consumers) -> Group | None:
    """The group of ``first``'s output: each tensor in it must be made by a layer 1 or a
    link whose activation inputs all join the group, and be read only by layers 2 (through
    their activation input) or links whose output joins it; None when any node around it is
    neither, or a node would be both a layer 1 and a layer 2 of it. ``layer`` and ``link``
    give a node's role (:func:`_weights`, :func:`_link`)."""
    group = Group(firsts={first.node.name: first})
    pending = [first.node.outputs[0]]
    channels = _channels(graph, pending[0])
    if channels is None:
        return None

    def include(tensor: str) -> bool:
        if tensor not in group.tensors:
            if _channels(graph, tensor) != channels:
                return False
            group.tensors.add(tensor)
            pending.append(tensor)
        return True

    def as_link(node: Node) -> bool:
        if node.name not in group.links:
            found = link(node)
            if found is None:
                return False
            group.links[node.name] = found
            if not all(include(name) for name in (*found.sources, node.outputs[0])):
                return False
        return True

    group.tensors.add(pending[0])
    while pending:
        tensor = pending.pop()
        maker = producers.get(tensor)
        if maker is None or tensor in graph.output_names:
            return None
        if maker.name not in group.firsts and maker.name not in group.links:
            made_by = layer(maker)
            if made_by is not None:
                group.firsts[maker.name] = made_by
            elif not as_link(maker):
                return None
        for reader in consumers.get(tensor, []):
            if reader.name in group.seconds or reader.name in group.links:
                continue
            read_by = layer(reader, tensor)
            if read_by is not None:
                group.seconds[reader.name] = read_by
            elif not as_link(reader):
                return None
    if group.firsts.keys() & group.seconds.keys():
        return None
    return group


def _channels(graph: Graph, tensor: str) -> int | None:
    shape = example_shape(graph, tensor)
    return shape[CHANNEL_AXIS] if shape is not None and len(shape) > CHANNEL_AXIS else None


def _own(graph: Graph, group: Group) -> bool:
    """Whether every initializer the group rescales feeds one node only (a weight shared by
    two nodes would change the other one too). A layer may belong to two groups (a depthwise
    convolution between two convolutions): each pass rescales from the current weights."""
    consumers = graph.consumers()
    return all(len(consumers.get(name, [])) == 1 for name in _rescaled(group))


def _weights(graph: Graph, table: OperatorTable, node: Node, active: set[str], overrides,
             output_side: bool, source: str | None = None) -> _Weights | None:
    """The node's weight initializer and the weight axis of its output channels (layer 1) or
    of the channels of its activation input ``source`` (layer 2), by probes."""
    op = table.find(node, graph)
    if op is None or len(node.outputs) != 1:
        return None
    _, rule = effective_rule(op, overrides)
    layout = weight_layout(op, rule)
    if layout is None:
        return None
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    weight_slots = [s for s in range(len(node.inputs)) if _carries(op, s, layout.weights)]
    bias_slots = [s for s in range(len(node.inputs)) if _carries(op, s, layout.biases)]
    if len(slots) != 1 or len(weight_slots) != 1 or len(bias_slots) > 1:
        return None
    weight_slot = weight_slots[0]
    if node.inputs[weight_slot] not in graph.initializers:
        return None
    if output_side:
        axes = example_channel_axes(graph, node, op, active, weight_slot, tuple(bias_slots))
        if axes is None or axes[1] != CHANNEL_AXIS:
            return None
        bias = node.inputs[bias_slots[0]] if bias_slots and bias_slots[0] < len(
            node.inputs) else None
        if bias and (bias not in graph.initializers or graph.initializers[bias].shape != (
                graph.initializers[node.inputs[weight_slot]].shape[axes[0]],)):
            return None
        return _Weights(node, node.inputs[weight_slot], axes[0], bias or None, axes[0])
    if node.inputs[slots[0]] != source:
        return None
    examples = example_inputs(graph, node, active)
    axis = None if examples is None else _input_channel_axis(op, node, examples, slots[0],
                                                             weight_slot)
    return None if axis is None else _Weights(node, node.inputs[weight_slot], axis,
                                              bias_slots=tuple(bias_slots))


def _output_axis(graph: Graph, table: OperatorTable, layer: _Weights, active: set[str]
                 ) -> int | None:
    """The weight axis of a layer's output channels (a layer 1's own ``axis``; for a layer
    2 a probe, made only for the groups whose strength is measured), None where not found."""
    if layer.out_axis is not None:
        return layer.out_axis
    found = example_channel_axes(graph, layer.node, table.find(layer.node, graph), active,
                                 layer.node.inputs.index(layer.weight), layer.bias_slots)
    return found[0] if found is not None else None


def _input_channel_axis(op, node: Node, examples: list, slot: int, weight_slot: int
                        ) -> int | None:
    """The weight axis w such that scaling the weights along w by f_c equals scaling the
    input's channel axis by f_c (the output unchanged otherwise)."""
    shape = np.shape(examples[slot])
    if len(shape) <= CHANNEL_AXIS or shape[CHANNEL_AXIS] < 2:
        return None
    factors = np.random.default_rng(2).uniform(0.5, 2.0, shape[CHANNEL_AXIS])
    return paired_weight_axis(op, node, examples, slot, weight_slot, CHANNEL_AXIS, factors)


def _link(graph: Graph, table: OperatorTable, node: Node, active: set[str], overrides,
          allow_split: bool) -> _Link | None:
    """``node`` as a link: activation inputs that all take the factor (one, or several at a
    join), a proved per-channel rule of degree 1, parameters held per channel (or a node
    :mod:`.split` can turn into steps whose bounds are tensors), constant tensor inputs (which
    scale like the activation under the common-scale rule), and a probe of the node agreeing."""
    op = table.find(node, graph)
    if op is None or len(node.outputs) != 1:
        return None
    verdict, rule = effective_rule(op, overrides)
    per_channel = per_channel_rule(op, verdict, rule)
    if not per_channel.holds or per_channel.degree != 1:
        return None
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    if not slots:
        return None
    shape = example_shape(graph, node.inputs[slots[0]])
    if shape is None or len(shape) <= CHANNEL_AXIS:
        return None
    channels, tensors = shape[CHANNEL_AXIS], {t.name for t in op.inputs}
    rescaled, needs_split = [], False
    for slot, name in enumerate(node.inputs):
        binding = slot_binding(op, slot)
        if slot in slots or not name or binding is None:
            continue
        if binding in tensors:
            exponent, held = 1, broadcasts(graph.initializers.get(name), channels, len(shape))
        else:
            exponents = {per_channel.param_exponents.get(p, 0) for p in binding.split()}
            if exponents == {0}:
                continue
            if len(exponents) != 1 or name not in graph.initializers:
                return None
            exponent = exponents.pop()
            held = _per_channel(graph.initializers[name], channels, len(shape))
            needs_split |= not held
            held = held or (allow_split and can_split(graph, table, node, op))
        if not held:
            return None
        rescaled.append((name, float(exponent)))
    if any(per_channel.param_exponents.get(p, 0) for p in op.onnx_attrs.values()):
        return None  # an attribute is one value for the tensor
    sources = tuple(dict.fromkeys(node.inputs[slot] for slot in slots))
    link = _Link(node, tuple(rescaled), len(shape), sources, needs_split)
    if needs_split:
        return link  # probed once split
    examples = example_inputs(graph, node, active)
    return link if examples is not None and _probe(op, node, examples, slots, link) else None


def broadcasts(value: np.ndarray | None, channels: int, ndim: int) -> bool:
    """Whether a constant tensor input can be held per channel: it already is, or it is one
    value broadcast to every element."""
    return value is not None and (_per_channel(value, channels, ndim) or value.size == 1)


def _per_channel(value: np.ndarray, channels: int, ndim: int) -> bool:
    """Whether ``value`` broadcast against an ``ndim``-axis activation holds one entry per
    channel (axis 1) and is constant along every other axis."""
    if value.ndim > ndim or value.ndim < ndim - CHANNEL_AXIS:
        return False
    full = (1,) * (ndim - value.ndim) + value.shape
    return full[CHANNEL_AXIS] == channels and all(
        d == 1 for a, d in enumerate(full) if a != CHANNEL_AXIS)


def _probe(op, node: Node, examples: list, slots: list[int], link: _Link) -> bool:
    """Scaling the channels of every activation input by f_c (and the parameters by f_c^k)
    scales the output's channels by f_c, on the node's own kernel."""
    x = np.asarray(examples[slots[0]], dtype=np.float64)
    factors = np.random.default_rng(3).uniform(0.25, 4.0, x.shape[CHANNEL_AXIS])
    base = run_kernel(op, node, examples, {})
    changes = {}
    for slot in slots:
        value = np.asarray(examples[slot], dtype=np.float64)
        if value.ndim != x.ndim or value.shape[CHANNEL_AXIS] != factors.size:
            return False
        changes[slot] = value * along(factors, CHANNEL_AXIS, value.ndim)
    for name, k in link.rescaled:
        position = node.inputs.index(name)
        changes[position] = _rescale(examples[position], factors ** k, x.ndim)
    moved = run_kernel(op, node, examples, changes)
    if base is None or moved is None or base.shape != moved.shape or base.ndim != x.ndim \
            or not base.size:
        return False
    expected = base * along(factors, CHANNEL_AXIS, base.ndim)
    return bool(np.allclose(moved, expected, rtol=1e-6, atol=1e-9 * (np.abs(base).max() + 1)))


def _scales(graph: Graph, group: Group) -> np.ndarray:
    """s_c = sqrt(r1_c r2_c) / r2_c, r1 and r2 the largest over the layers on each side."""
    r1 = np.max([_channel_range(graph.initializers[f.weight], f.axis)
                 for f in group.firsts.values()], axis=0)
    r2 = np.max([_channel_range(graph.initializers[s.weight], s.axis)
                 for s in group.seconds.values()], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(r1 * r2) / r2
    scale = np.where((r1 > 0) & (r2 > 0) & np.isfinite(scale), scale, 1.0)
    return np.clip(scale, 1 / _SCALE_LIMIT, _SCALE_LIMIT)


def _channel_range(weight: np.ndarray, axis: int) -> np.ndarray:
    others = tuple(a for a in range(weight.ndim) if a != axis)
    return np.abs(weight).max(axis=others).astype(np.float64)


def _apply(graph: Graph, group: Group, scale: np.ndarray) -> None:
    inits = graph.initializers
    for first in group.firsts.values():
        inits[first.weight] = divided_along(inits[first.weight], scale, first.axis)
        if first.bias:
            inits[first.bias] = (inits[first.bias] / scale).astype(inits[first.bias].dtype)
    for link in group.links.values():
        for name, k in link.rescaled:
            value = inits[name]
            inits[name] = _rescale(value, scale ** -k, link.ndim).astype(value.dtype)
    for second in group.seconds.values():
        w2 = inits[second.weight]
        inits[second.weight] = (w2 * along(scale, second.axis, w2.ndim)).astype(w2.dtype)


def _rescale(value, factors: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel parameter (see :func:`_per_channel`) times per-channel ``factors``."""
    return per_channel_update(value, factors, ndim, np.multiply)


def per_channel_update(value, amounts: np.ndarray, ndim: int, combine) -> np.ndarray:
    """``combine(value, amounts)`` channel by channel for a parameter held per channel of an
    ``ndim``-axis activation (:func:`_per_channel`), in the parameter's own shape; one value for
    the tensor becomes one per channel first."""
    value = np.asarray(value)
    if not _per_channel(value, amounts.size, ndim):
        value = np.full((amounts.size,) + (1,) * (ndim - CHANNEL_AXIS - 1), value.reshape(()),
                        value.dtype)
    full = (1,) * (ndim - value.ndim) + value.shape
    return combine(value.reshape(full), along(amounts, CHANNEL_AXIS, ndim)).reshape(value.shape)


def unprobed_without_data(graph: Graph) -> str | None:
    """Why :func:`equalize` without data cannot probe ``graph`` (it then finds no group), or
    None: random draws stand only for float inputs of known shapes, and ids or masks are not
    (``audit`` says so rather than that no pair exists; quantize probes on its data). The
    input's type is named, not assumed: a conditional generator's int64 class id and a
    decoder's bool padding mask had both been called 'token ids' (a new-user trial)."""
    floats = {info.name for info in graph.float_inputs()}
    if others := [info for info in graph.inputs if info.name not in floats]:
        return (f"input {others[0].name!r} is {others[0].dtype}, not float (ids, a mask), and "
                "random draws do not stand for it; quantize finds the pairs on the calibration "
                "data")
    if unknown := [name for name in floats if example_shape(graph, name) is None]:
        return (f"input {unknown[0]!r} has no known shape to draw random inputs of; quantize "
                "finds the pairs on the calibration data")
    return None


def _random_feeds(graph: Graph) -> dict[str, np.ndarray] | None:
    """Random inputs of RANDOM_BATCH samples, or of the batch size an input fixes (an export
    without dynamic axes bakes it into its Reshape constants); None when a shape is unknown."""
    rng = np.random.default_rng(4)
    feeds = {}
    for info in graph.float_inputs():
        shape = example_shape(graph, info.name)
        if shape is None:
            return None
        batch = graph.shape_of(info.name)[:1]
        if shape and not (isinstance(batch[0], int) and batch[0] > 0):
            shape = (RANDOM_BATCH,) + shape[1:]
        if math.prod(shape) > MAX_FOLDED_ELEMENTS:  # the probes' bound, over the batch
            return None
        feeds[info.name] = rng.uniform(-1, 1, shape).astype(info.dtype)
    return feeds if len(feeds) == len(graph.inputs) else None


def _outputs(graph: Graph, table: OperatorTable, feeds: Mapping[str, np.ndarray]
             ) -> dict[str, np.ndarray]:
    """The float graph's outputs that its nodes compute (an input or a constant listed as an
    output is no equalization's), on ``feeds``, before and after equalizing: in onnxruntime
    where it runs the graph (ResNet-50 on 4 images: 0.7 s, session included, against the
    numpy kernels' 4.3 s), else in the kernels, which name a node that cannot run."""
    made = graph.producers()
    want = [name for name in graph.output_names if name in made]
    values = run_float(graph, table, dict(feeds), want)
    return values if values is not None else run_graph(graph, feeds, table, want=want)


def _same(before: dict, after: dict) -> bool:
    return all(np.allclose(after[k], v, rtol=_TOLERANCE,
                           atol=_TOLERANCE * (np.abs(v).max(initial=0.0) + 1e-30))
               for k, v in before.items())
