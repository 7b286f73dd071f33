"""Activation smoothing (SmoothQuant, Xiao et al. 2023), driven by proofs.

An activation X whose channels have very different ranges (a transformer's outlier channels)
wastes most levels of one per-tensor scale. When X feeds only linear layers with constant
weights, X W = (X diag(1/s)) (diag(s) W): the factor 1/s_c goes into X, by rescaling the
parameters of the node that makes X, and s_c into the rows of W. With s_c = max|X_c|^alpha /
max|W_c|^(1 - alpha) the activation's channels come closer together, the weights' rows apart
(per-channel weight scales absorb most of that).

No operator type is named (proofs/smoothing.md):

- the *source* node must be proved jointly linear in the constant inputs that carry the factor:
  the parameters :func:`~.rules.weight_layout` finds (LayerNorm's gamma and beta, a Gemm's
  weight and bias) or a constant tensor input of degree 1 in the checker's rule (the constant
  of a Mul); a probe of the node itself finds the axis of each that maps to the activation's
  channel axis (a value held once for the tensor, as Mul's 0.5, becomes one per channel);
- each *consumer* must be proved linear in a constant weight input (a declared weight, or a
  constant tensor input of degree 1: MatMul's matrix), and a probe finds the weight axis that
  scales like the activation's channel axis; it may read the activation through a copy that
  only consumers read (the Reshape onnx-simplifier writes before a Gemm), whose probe finds
  the axis it carries the activation's channels to.

When the activation also feeds other nodes (a post-LN transformer's LayerNorm output is both
the next block's input and its residual), the source is duplicated: the copy, with the factor,
feeds the linear consumers; the original keeps the others. The strength alpha is chosen per
activation on the calibration sample from a grid, by the output error of the consumers with
n-bit activations (per tensor) and weights (per output channel), each channel's range taken
over the whole calibration set; no smoothing is kept where it does not lower that error.
At the end the float graph runs before and after on the calibration sample: outputs that
differ beyond float rounding undo everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
from threadpoolctl import threadpool_limits

from ..catalog.operator import Operator
from ..graph import Graph, Node, OperatorTable, activation_tensors, slot_binding
from ..progress import progress_bar
from ..rules import Rule, RuleKind
from .calibrate import Calibration, channel_peaks, halves_peaks
from .data import Feeds, samples_in
from .float_run import calibration_feeds, joined, kept_if_same, streamed
from .invariant_regions import invariant_regions
from .metrics import fake_quantized, squared_norms, sum_of_squares
from .parallel import mapped
from .plan import plan_model
from .probe import (
    along,
    close,
    divided_along,
    example_inputs,
    paired_weight_axis,
    run_kernel,
)
from .quantize import CHANNEL_GAIN
from .rules import (
    check_overrides,
    effective_rule,
    is_copy,
    is_elementwise,
    is_lattice_selection,
    passes_codes_on,
    weight_layout,
)

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Migration strengths tried per activation (SmoothQuant's default is 0.5). Measured on
all-MiniLM-L6-v2 (docs/benchmarks-real.md): the consumers' error picks 0.8-0.9 for every
LayerNorm and GELU output once the channel ranges come from the whole calibration set
(embedding cosine 0.9797 -> 0.9897 against a grid ending at 0.5, which leaves the GELU outputs
unsmoothed: at 0.5 their weight rows, not their outliers, set the scales). Ranges from the
32-sample choice alone had made 0.9 harmful (0.934)."""
_ROWS = 512
"""Activation rows (positions) of the sample the choice of alpha uses at most, drawn at random.
Was 4096, then 1024 (at 1024 all-MiniLM-L6-v2's file, EfficientNet-Lite1's and those of 12 of
13 torch test models were byte-identical, the causal LM's 42.4 -> 42.5 dB, the zoo's wav2vec2
dynamo export 18.9 -> 18.8 dB). At 512 (and at 256) MiniLM picks the same strengths and its
file is byte-identical, as are EfficientNet-Lite1's, the digits models' and 12 of 13 torch
test models'; the causal LM's moves 42.51 -> 42.37 dB, within what the draw of rows moves it.
MiniLM's search 1.0 -> 0.73 s of its 5.8."""
# Every strength is first measured on _SCREEN_ROWS of those rows, and the _FINALISTS best on
# all of them: the products over all rows were most of smoothing's time (all-MiniLM-L6-v2: 9
# of 16 s, 8 full products per activation; then 3 and 8 quarter ones). One finalist since the
# check on held-out ranges (_choose) took one more: all-MiniLM-L6-v2's and the 43 torch test
# exports' files were the same with two, and the search 2.4 -> 2.1 core-seconds.
_SCREEN_ROWS = 256
_FINALISTS = 1
_SCALE_LIMIT = 1e4
_AXIS_CHOICES = 16  # pairings of a source's constants with the channel axis tried at most
_CARRIERS = 3
"""Carriers between a source and the smoothed activation at most: a LayerNorm in parts has
one (the Add of beta after the Mul by gamma), a norm followed by a Cast (OLMo) one."""


@dataclass(frozen=True)
class Absorber:
    """A node and the constant inputs (slot, axis) whose slices along ``axis`` scale the
    activation's channels: at a source they carry 1/s_c, at a consumer s_c."""

    node: Node
    slots: tuple[tuple[int, int], ...]
    channel_wise: bool = False  # a source whose output channels are its activation input's,
    # each times a constant: that input, an activation, is rounded before the factor applies
    joins: tuple[tuple[int, int, int], ...] = ()  # a joining source (:func:`_joined_source`):
    # (activation slot, first, end) of the output channels each activation input makes
    product: str = ""  # there, the ONNX type of a declared product of two tensors (Mul)


@dataclass(frozen=True)
class SmoothedTensor:
    """The channels of ``tensor`` (made by ``source``) were divided by ``scale`` for the
    ``consumers``, whose weights took it; ``duplicated``: through a copy of the source."""

    tensor: str
    source: str
    consumers: tuple[str, ...]
    alpha: float
    duplicated: bool
    scale: np.ndarray
    axis: int  # the channel axis of ``tensor`` that ``scale`` runs along
    output: str  # the divided tensor the consumers read (``tensor`` or its copy)
    carried: tuple[tuple[str, str], ...] = ()  # (tensor, divided tensor) before ``tensor``
    carriers: tuple[str, ...] = ()  # the nodes from ``source`` to ``tensor``
    # a joining source's inputs: (input, its divided copy, first, end of its output channels)
    joined: tuple[tuple[str, str, int, int], ...] = ()
    copied: tuple[tuple[str, int], ...] = ()  # (a copy's output after ``output``, its axis)

    def describe(self) -> str:
        copy = " (source duplicated)" if self.duplicated else ""
        through = "".join(f" .. {name}" for name in self.carriers)
        inputs = f" (its {len(self.joined)} inputs divided)" if self.joined else ""
        return (f"{self.source}{through}{inputs} -> {' + '.join(self.consumers)} alpha "
                f"{self.alpha:g}, channel ratio {self.scale.max() / self.scale.min():.3g}{copy}")


@dataclass(frozen=True)
class Candidate:
    """An activation the rules allow to carry a per-channel factor from ``source`` into the
    weights of ``consumers`` (through a copy of the source when ``duplicate``)."""

    tensor: str
    axis: int  # the activation's channel axis
    source: Absorber
    consumers: tuple[Absorber, ...]
    duplicate: bool
    chain: tuple[Absorber, ...] = ()  # carriers from the source's output to ``tensor``
    # the factor applies to codes of the source's activation input: a channel-wise source (a
    # norm's gamma) on codes, not the end of a normalization in parts, which runs in float
    # (a copy of it as well)
    rounded_before: bool = False
    copies: tuple[tuple[Node, int], ...] = ()  # (copy between tensor and consumers, the
    # axis of its output that the channels go to)
    # the carried tensors quantize holds at codes of their own range before a carrier that
    # runs on their values (a Gemm's output before a LeakyRelu; not before a Relu, which
    # passes codes on, nor in a normalization in parts, which runs in float)
    rounded_carried: tuple[str, ...] = ()

    @property
    def makers(self) -> tuple[Absorber, ...]:
        """The source and the carriers after it, in graph order: what divides the channels."""
        return (self.source, *self.chain)

    @property
    def carried(self) -> tuple[str, ...]:
        """The tensors before ``tensor`` that the factor divides too (the source's output and
        every carrier's but the last)."""
        return tuple(maker.node.outputs[0] for maker in self.makers[:-1])

    @property
    def joined_inputs(self) -> tuple[str, ...]:
        """A joining source's activation inputs, each divided by its slice of the factor."""
        return tuple(self.source.node.inputs[slot] for slot, _, _ in self.source.joins)

    def describe(self) -> str:
        copy = " (source duplicated)" if self.duplicate else ""
        through = "".join(f" .. {carrier.node.name}" for carrier in self.chain)
        inputs = " (its inputs divided)" if self.source.joins else ""
        copies = "".join(f" (through {node.name})" for node, _ in self.copies)
        return (f"{self.source.node.name}{through}{inputs} -> "
                f"{' + '.join(c.node.name for c in self.consumers)}{copies}{copy}")


# one BLAS thread, as in quantize's build: the probes' products are small, and on a busy
# machine BLAS threads wait on each other (measured on MiniLM at load ~3: smoothing 9.7-11 s
# with two threads, 7.4 s with one; the alpha search's products, _ROWS rows, gain nothing then)
@threadpool_limits.wrap(limits=1, user_api="blas")
def smooth(graph: Graph, data: Mapping[str, np.ndarray] | np.ndarray, bits: int = 8,
           table: OperatorTable | Mapping[str, Operator] | None = None,
           overrides: Mapping[str, Rule] | None = None,
           alphas: tuple[float, ...] = ALPHAS, progress: bool = False,
           per_channel: bool = True, candidates: list[Candidate] | None = None,
           calibration: Calibration | None = None) -> list[SmoothedTensor]:
    """Smooth every activation the rules allow and where it helps, in place; return what
    was smoothed (empty: the graph is unchanged). ``progress``: bars on stderr over the
    pass that measures the channels' ranges and over the strength search; ``per_channel``:
    the quantizer may hold activations with per-channel codes (``quantize(per_channel=...)``);
    ``candidates``: :func:`candidates_of` the graph, when the caller has them.
    ``calibration``: a calibration of this graph that kept the candidates
    (``calibrate(keep=...)``), which then stands for smoothing's own pass over the data
    (engine/smoothed_calibration.py)."""
    table = OperatorTable.of(table)
    check_overrides(overrides, table)
    if candidates is None:
        candidates = candidates_of(graph, table, overrides)
    if not candidates:
        return []
    every, feeds = calibration_feeds(data, graph)
    observed = None if calibration is None else _observed_by(calibration, candidates)
    if observed is None:
        observed = _observe(graph, table, every, candidates, samples_in(feeds, graph),
                            progress)
    if observed is None:
        return []
    values, reach, held_out = observed

    def choice(candidate: Candidate) -> tuple[float, np.ndarray] | None:
        x, held, check_on = values[candidate.tensor], held_out.get(candidate.tensor), None
        if held is None:  # no samples beyond the sample: its later half stands for them
            check_on, held = _split_sample(x, candidate.axis) or (None, None)
        found = _choose(graph, candidate, x, reach[candidate.tensor], bits, alphas,
                        rounded_before=candidate.rounded_before, per_channel=per_channel,
                        held_out=held, check_on=check_on, carried=_carried_sample(
                            graph, table, candidate, values, reach,
                            held_out if check_on is None else None))
        bar.update(1)
        return found

    # a bar over the strength search too (all-MiniLM-L6-v2: 4 s, with no float pass before
    # it when the calibration pass stood for smoothing's own)
    with progress_bar(total=len(candidates), desc="smoothing", unit="activation",
                      progress=progress) as bar:
        choices = mapped(choice, candidates, sum(np.asarray(values[c.tensor]).nbytes
                                                 for c in candidates))
    chosen, taken = [], set()  # a node takes part in one smoothing at most
    for candidate, choice in zip(candidates, choices):
        names = {m.node.name for m in (*candidate.makers, *candidate.consumers)}
        names |= {copy.name for copy, _ in candidate.copies}
        if choice is not None and not names & taken:
            chosen.append((candidate, *choice))
            taken |= names
    if not chosen:
        return []
    reference = {name: values[name] for name in graph.output_names}
    return kept_if_same(graph, table, feeds, reference, lambda: [
        apply(graph, candidate, scale, alpha) for candidate, alpha, scale in chosen])




def _normalizations_in_parts(graph: Graph, table: OperatorTable,
                             overrides: Mapping[str, Rule] | None, active: set[str]) -> set[str]:
    """The nodes quantize runs in float as normalizations in parts (engine/invariant_regions.py,
    from the rules alone, as the candidates are)."""
    return set(invariant_regions(graph, table, plan_model(graph, table, overrides), active))


@threadpool_limits.wrap(limits=1, user_api="blas")  # tiny probes: as weight_layers
def candidates_of(graph: Graph, table: OperatorTable,
                  overrides: Mapping[str, Rule] | None = None) -> list[Candidate]:
    """Every activation whose source and consumers the rules allow to carry a per-channel
    factor (no data needed: ``ptq-verify audit`` lists them)."""
    active = activation_tensors(graph, table)
    consumers, outputs = graph.consumers(), set(graph.output_names)
    producers = graph.producers()
    in_float = _normalizations_in_parts(graph, table, overrides, active)
    found = []
    for node in graph.nodes:
        if len(node.outputs) != 1 or node.outputs[0] not in active or node.outputs[0] in outputs:
            continue
        tensor = node.outputs[0]
        users = [u for u in consumers.get(tensor, []) if any(o in active for o in u.outputs)]
        taken = [(u, found_) for u in users if (found_ := _linear_reader(
            graph, table, u, tensor, active, overrides, consumers)) is not None]
        axes = {axis for _, (axis, _, _) in taken}
        if not taken or len(axes) != 1:
            continue
        axis = axes.pop()
        source = _source(graph, table, node, tensor, axis, active, overrides)
        chain: tuple[Absorber, ...] = ()
        if source is None:
            carried = _carried_source(graph, table, node, tensor, axis, active, overrides,
                                      producers, consumers, in_float)
            if carried is not None:
                source, chain = carried
            else:
                source = _joined_source(graph, table, node, tensor, axis, active)
            if source is None:
                continue
        absorbers = tuple(a for _, (_, readers, _) in taken for a in readers)
        copies = tuple((u, copied) for u, (_, _, copied) in taken if copied is not None)
        duplicate = len(taken) != len(consumers.get(tensor, []))
        if not _owned(graph, absorbers) or (
                duplicate and any(_has_matrix(graph, maker) for maker in (source, *chain))):
            continue
        found.append(Candidate(tensor, axis, source, absorbers, duplicate, chain,
                               bool(source.joins) or (source.channel_wise
                                                      and source.node.name not in in_float),
                               copies, _rounded_carried(graph, table, overrides,
                                                        (source, *chain), in_float)))
    return found


def _rounded_carried(graph: Graph, table: OperatorTable, overrides: Mapping[str, Rule] | None,
                     makers: tuple[Absorber, ...], in_float: set[str]) -> tuple[str, ...]:
    """The outputs of ``makers`` but the last that quantize rounds to codes of their own
    range before the next maker, a carrier, runs on their values: neither runs in float (a
    normalization in parts) and the carrier does not pass codes on (a Relu does: its input
    is rounded at its output's grid, which the search models already)."""
    rounded = []
    for maker, carrier in zip(makers, makers[1:]):
        op = table.find(carrier.node, graph)
        if (maker.node.name not in in_float and carrier.node.name not in in_float
                and not passes_codes_on(op, effective_rule(op, overrides)[1])):
            rounded.append(maker.node.outputs[0])
    return tuple(rounded)


def apply(graph: Graph, candidate: Candidate, scale: np.ndarray, alpha: float
          ) -> SmoothedTensor:
    """Divide the activation's channels by ``scale`` at its source (or a copy of it) and
    multiply the consumers' weight slices by it."""
    inits = graph.initializers
    rank = _rank(graph, candidate.tensor)
    renamed: dict[str, str] = {}  # a maker's output -> its copy's (when duplicated)
    joined: tuple[tuple[str, str, int, int], ...] = ()
    for maker in candidate.makers:
        node = target = maker.node
        if candidate.duplicate:
            output = node.outputs[0]
            target = Node(f"{node.name}~smooth", node.op_type,
                          [renamed.get(name, name) for name in node.inputs],
                          [f"{output}~smooth"], dict(node.attrs), node.domain,
                          dict(node.attr_types))
            graph.nodes.insert(graph.nodes.index(node) + 1, target)
            renamed[output] = target.outputs[0]
            if output in graph.value_info:
                graph.value_info[target.outputs[0]] = graph.value_info[output]
        for slot, axis in maker.slots:
            name = node.inputs[slot]
            value = _per_channel(inits[name], scale.size, candidate.axis, rank)
            fresh = f"{name}~smooth~{target.name}"
            inits[fresh] = divided_along(value, scale, axis)
            target.inputs[slot] = fresh
        joined += tuple(_divide_input(graph, target, maker.product, slot, scale[first:end],
                                      candidate.axis, rank) + (first, end)
                        for slot, first, end in maker.joins)
    output = renamed.get(candidate.tensor, candidate.tensor)
    for consumer in candidate.consumers:
        node = consumer.node
        for slot, axis in consumer.slots:
            name = node.inputs[slot]
            value = inits[name]
            fresh = f"{name}~smooth"
            inits[fresh] = (value * along(scale, axis, value.ndim)).astype(value.dtype)
            node.inputs[slot] = fresh
        node.inputs = [output if i == candidate.tensor else i for i in node.inputs]
    for copy, _ in candidate.copies:  # (its consumers read its output, divided now)
        copy.inputs = [output if i == candidate.tensor else i for i in copy.inputs]
    used = {name for node in graph.nodes for name in node.inputs}
    graph.initializers = {k: v for k, v in inits.items() if k in used}
    return SmoothedTensor(candidate.tensor, candidate.source.node.name,
                          tuple(c.node.name for c in candidate.consumers), alpha,
                          candidate.duplicate, scale, candidate.axis, output,
                          tuple((name, renamed.get(name, name)) for name in candidate.carried),
                          tuple(carrier.node.name for carrier in candidate.chain), joined,
                          tuple((copy.outputs[0], axis) for copy, axis in candidate.copies))


def _divide_input(graph: Graph, node: Node, product: str, slot: int, scale: np.ndarray,
                  axis: int, rank: int) -> tuple[str, str]:
    """(input, its divided copy): a ``product`` node of input ``slot`` of ``node`` and
    1/``scale`` along ``axis``, made before ``node``, which reads it instead."""
    name = node.inputs[slot]
    divided, constant = f"{name}~smooth~{node.name}~{slot}", f"{node.name}~smooth~{slot}"
    graph.initializers[constant] = along(1.0 / scale, axis, rank).astype(np.float32)
    graph.nodes.insert(graph.nodes.index(node), Node(f"{node.name}~smooth~{slot}",
                                                     product, [name, constant], [divided]))
    if name in graph.value_info:
        graph.value_info[divided] = replace(graph.value_info[name], name=divided)
    node.inputs[slot] = divided
    return name, divided


# -- which nodes carry the factor ------------------------------------------------------------

def _constant_slots(graph: Graph, op, node: Node, rule: Rule, active: set[str]) -> list[int]:
    """Constant inputs the node's output is proved jointly linear in (degree 1)."""
    layout = weight_layout(op, rule)
    if layout is not None:
        params = layout.weights | layout.biases
        slots = [s for s, name in enumerate(node.inputs)
                 if name and (b := slot_binding(op, s)) is not None and set(b.split()) <= params]
        if slots and all(node.inputs[s] in graph.initializers for s in slots):
            return slots
        return []
    tensors = [t.name for t in op.inputs]
    degrees = rule.input_degrees
    if degrees is None or len(degrees) != len(tensors):
        return []
    slots = [s for s, name in enumerate(node.inputs)
             if name in graph.initializers and (b := slot_binding(op, s)) in tensors
             and degrees[tensors.index(b)] == 1]
    rest = [s for s, name in enumerate(node.inputs) if name in active]
    return slots if len(slots) == 1 and rest else []


def _consumer(graph: Graph, table: OperatorTable, node: Node, tensor: str, active: set[str],
              overrides) -> tuple[int, Absorber] | None:
    """(the activation's channel axis, the node as a consumer) when the node is proved linear
    in one constant weight whose slices along some axis scale like the activation's
    channels (a probe), and ``tensor`` is its only activation input."""
    op = table.find(node, graph)
    if op is None or len(node.outputs) != 1:
        return None
    _, rule = effective_rule(op, overrides)
    if not rule.kind.has_rule:
        return None
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    if [node.inputs[s] for s in slots] != [tensor]:
        return None
    layout = weight_layout(op, rule)
    if layout is not None:
        weights = [s for s, name in enumerate(node.inputs)
                   if name in graph.initializers and (b := slot_binding(op, s)) is not None
                   and set(b.split()) <= layout.weights]
    else:
        weights = _constant_slots(graph, op, node, rule, active)
    examples = example_inputs(graph, node, active)
    if len(weights) != 1 or examples is None:
        return None
    axes = _input_axes(op, node, examples, slots[0], weights[0])
    return None if axes is None else (axes[0], Absorber(node, ((weights[0], axes[1]),)))


def _linear_reader(graph: Graph, table: OperatorTable, node: Node, tensor: str,
                   active: set[str], overrides, consumers: Mapping[str, list[Node]]
                   ) -> tuple[int, tuple[Absorber, ...], int | None] | None:
    """(the activation's channel axis, the consumers, None) when ``node`` is a consumer of
    ``tensor`` (:func:`_consumer`); (that axis, the consumers, the axis of the copy's output
    the channels go to) when it is a copy of ``tensor`` that only consumers with a weight
    matrix read, all along one channel axis, to which a probe shows the copy carries the
    activation's channels along some axis of its own (onnx-simplifier writes a
    transformer's MatMul and bias Add as Reshape -> Gemm -> Reshape: the Reshape before the
    Gemm had stopped smoothing there, all-MiniLM-L6-v2 so simplified 0.986 -> 0.995 mean
    cosine with it)."""
    found = _consumer(graph, table, node, tensor, active, overrides)
    if found is not None:
        return found[0], (found[1],), None
    op = table.find(node, graph)
    if op is None or not is_copy(op) or len(node.outputs) != 1:
        return None
    out = node.outputs[0]
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    readers = consumers.get(out, [])
    if [node.inputs[s] for s in slots] != [tensor] or out in graph.output_names or not readers:
        return None
    linear = [_consumer(graph, table, reader, out, active, overrides) for reader in readers]
    if any(found is None for found in linear) or len({axis for axis, _ in linear}) != 1:
        return None
    if any(np.ndim(graph.initializers[absorber.node.inputs[slot]]) != 2
           for _, absorber in linear for slot, _ in absorber.slots):
        # only weight matrices there, whose products the search's error model (each
        # position's channels times the weight's slices) is: ConvNeXt's downsampling
        # LayerNorm -> Transpose -> 2x2 Conv, smoothed, cost the zoo's export 1 dB held out
        return None
    axis = _copied_axis(graph, op, node, active, slots[0], linear[0][0])
    return None if axis is None else (axis, tuple(absorber for _, absorber in linear),
                                      linear[0][0])


def _copied_axis(graph: Graph, op, node: Node, active: set[str], slot: int, out_axis: int
                 ) -> int | None:
    """The axis of the copy's input (slot ``slot``) whose slices, scaled by factors, scale
    its output's slices along ``out_axis`` alike (a Reshape of (batch, tokens, channels) to
    (batch x tokens, channels): the last axis to the last); None when none does."""
    examples = example_inputs(graph, node, active)
    base = None if examples is None else run_kernel(op, node, examples, {})
    if base is None or out_axis >= base.ndim:
        return None
    x = np.asarray(examples[slot], dtype=np.float64)
    factors = np.random.default_rng(4).uniform(0.5, 2.0, base.shape[out_axis])
    expected = base * along(factors, out_axis, base.ndim)
    for axis in range(x.ndim):
        if x.shape[axis] != factors.size:
            continue
        moved = run_kernel(op, node, examples, {slot: x * along(factors, axis, x.ndim)})
        if moved is not None and close(moved, expected):
            return axis
    return None


def _input_axes(op, node: Node, examples: list, slot: int, weight_slot: int
                ) -> tuple[int, int] | None:
    """(activation axis, weight axis) such that scaling the weight's slices along the second
    by f_c computes what scaling the activation along the first by f_c does."""
    shape = np.shape(examples[slot])
    rng = np.random.default_rng(2)
    for x_axis in range(1, len(shape)):
        if shape[x_axis] < 2:
            continue
        factors = rng.uniform(0.5, 2.0, shape[x_axis])
        axis = paired_weight_axis(op, node, examples, slot, weight_slot, x_axis, factors)
        if axis is not None:
            return x_axis, axis
    return None


def _source(graph: Graph, table: OperatorTable, node: Node, tensor: str, axis: int,
            active: set[str], overrides) -> Absorber | None:
    """The node as a source: its output proved jointly linear in constant inputs whose
    slices (after making a single value one per channel) scale its output's channels along
    ``axis``, as a probe of the node confirms."""
    op = table.find(node, graph)
    if op is None:
        return None
    _, rule = effective_rule(op, overrides)
    if not rule.kind.has_rule:
        return None
    slots = _constant_slots(graph, op, node, rule, active)
    rank = _rank(graph, tensor)
    examples = example_inputs(graph, node, active)
    if not slots or rank is None or examples is None:
        return None
    probed = _probe(op, node, examples, slots, axis, rank)
    if probed is None:
        return None
    pairing, base, factors = probed
    return Absorber(node, pairing, _channel_wise(op, node, examples, active, base, axis,
                                                 factors))


def _carried_source(graph: Graph, table: OperatorTable, node: Node, tensor: str, axis: int,
                    active: set[str], overrides, producers: Mapping[str, Node],
                    consumers: Mapping[str, list[Node]], in_float: set[str]
                    ) -> tuple[Absorber, tuple[Absorber, ...]] | None:
    """(source, carriers) when ``node`` is a carrier (:func:`_carrier`) of its one activation
    input, which it alone reads and which a source makes, or a carrier of one, and so on
    (proofs/smoothing.md, S1'): a LayerNorm in parts ends in a Mul by gamma, a source, and an
    Add of beta, a carrier; OLMo's LayerNormalization is followed by a Cast.

    A carrier's constants that take the factor (beta, a clip bound) become one value per
    channel; where the carrier runs on codes each is rounded to the activation's grid, which
    the strength search does not model (ReLU6's bound 6, a code, is not once divided).
    Measured on EfficientNet-Lite1: 8 depthwise convolutions took factors through their
    ReLU6, and the logits' SQNR on the calibration sample fell from 16.0 to 15.6 dB. So only
    a carrier ``in_float`` (a normalization in parts' affine tail) takes constants; any other
    carries the factor through none (a Cast)."""
    chain: list[Absorber] = []
    for _ in range(_CARRIERS):
        found = _carrier(graph, table, node, tensor, axis, active, overrides)
        if found is None or (found[1].slots and node.name not in in_float):
            return None
        tensor, carrier = found
        chain.insert(0, carrier)
        maker = producers.get(tensor)
        if (maker is None or len(maker.outputs) != 1 or tensor in graph.output_names
                or len(consumers.get(tensor, [])) != 1):
            return None
        source = _source(graph, table, maker, tensor, axis, active, overrides)
        if source is not None:
            return source, tuple(chain)
        node = maker
    return None


def _carrier(graph: Graph, table: OperatorTable, node: Node, tensor: str, axis: int,
             active: set[str], overrides) -> tuple[str, Absorber] | None:
    """(its activation input, the node as a carrier) when ``node`` computes ``tensor``
    element by element from one activation input and constants, and is proved jointly
    homogeneous of degree 1 in that input and the constants that carry the factor: all of
    them under the aligned-sum rule (an Add of beta), none under a rule of degree 1 in the
    input (a Cast, a Relu, a Mul by a constant); a probe of the node confirms that dividing the
    input's channels along ``axis``, and those constants' slices, divides ``tensor``'s."""
    op = table.find(node, graph)
    if op is None or len(node.outputs) != 1 or not is_elementwise(op):
        return None
    _, rule = effective_rule(op, overrides)
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    constants = [s for s, name in enumerate(node.inputs) if name in graph.initializers]
    if len(slots) != 1 or len(slots) + len(constants) != sum(map(bool, node.inputs)):
        return None
    carried = _carried_slots(op, rule, slots[0], constants)
    rank = _rank(graph, tensor)
    examples = example_inputs(graph, node, active)
    if (carried is None or rank is None or examples is None
            or _rank(graph, node.inputs[slots[0]]) != rank):
        return None
    probed = _probe(op, node, examples, carried, axis, rank, divided=slots[0])
    return None if probed is None else (node.inputs[slots[0]], Absorber(node, probed[0]))


def _joined_source(graph: Graph, table: OperatorTable, node: Node, tensor: str, axis: int,
                   active: set[str]) -> Absorber | None:
    """The node as a joining source: a selection (each output element one of its inputs'),
    with two activation inputs or more, each of which makes a run of its output's channels
    along ``axis`` on its own (a Concat along the channels), as a probe of the node confirms:
    scaling one input's channels by random factors scales those output channels alike and
    leaves the rest. No constant of it takes the factor: a product by a constant, made for
    each input (a declared operator whose kernel computes the product of its two tensors), divides
    that input's channels, so each input is rounded to its own codes first and the factor
    applies after (the strength search models that: ``rounded_before``). Why: a selection
    joining inputs of very different ranges puts them on its coarsest input's scale, and
    smoothing stopped there; a DLRM's top MLP read a Concat of its dense features (max 0.8)
    and pairwise dot products (max about 60) at one scale, its dense features all code 0."""
    op = table.find(node, graph)
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    rank = _rank(graph, tensor)
    if (not is_lattice_selection(op) or len(node.outputs) != 1 or len(slots) < 2
            or rank is None or axis % rank == 0
            or any(graph.dtype_of(node.inputs[s]) != np.float32 for s in slots)):
        return None
    axis %= rank
    # the runs are read off the probe's shapes: each input's channels, and the output's, of a
    # length the graph fixes (a dynamic one, a sequence's, would differ on the data)
    lengths = [(graph.shape_of(name) or ())[axis:axis + 1] for name in (
        tensor, *(node.inputs[s] for s in slots))]
    if not all(len(n) == 1 and isinstance(n[0], int) for n in lengths):
        return None
    examples = example_inputs(graph, node, active)
    base = None if examples is None else run_kernel(op, node, examples, {})
    if base is None or base.ndim != rank or base.shape[axis] != lengths[0][0]:
        return None
    rows = np.moveaxis(base, axis, 0).reshape(base.shape[axis], -1)
    covered = np.zeros(base.shape[axis], dtype=bool)
    joins = []
    rng = np.random.default_rng(4)
    for slot in slots:
        x = np.asarray(examples[slot], dtype=np.float64)
        if x.ndim != rank:
            return None
        factors = rng.uniform(0.25, 4.0, x.shape[axis])
        moved = run_kernel(op, node, examples, {slot: x * along(factors, axis, rank)})
        if moved is None or moved.shape != base.shape:
            return None
        changed = np.flatnonzero(~np.all(np.isclose(
            np.moveaxis(moved, axis, 0).reshape(rows.shape), rows, rtol=1e-6, atol=0), axis=1))
        if not changed.size:  # an input no output channel reads here
            return None
        first, end = int(changed[0]), int(changed[0]) + x.shape[axis]
        if not np.array_equal(changed, np.arange(first, end)) or covered[first:end].any():
            return None
        full = np.ones(base.shape[axis])
        full[first:end] = factors
        if not close(moved, base * along(full, axis, rank)):
            return None
        covered[first:end] = True
        joins.append((slot, first, end))
    product = product_operator(table) if covered.all() else None
    return None if product is None else Absorber(node, (), joins=tuple(joins), product=product)


def product_operator(table: OperatorTable) -> str | None:
    """The ONNX type of a declared operator of two input tensors and no parameters whose
    kernel computes their product, broadcasting (the catalog's Mul), found by running the
    kernels, not by reading the witnesses (sympy: a run whose verdicts are stored imports
    none); the quantizer then takes the node it makes by its declaration, as any other."""
    from ..catalog import CATALOG

    rng = np.random.default_rng(7)
    a, b = rng.uniform(0.5, 2.0, (3, 4)), rng.uniform(0.5, 2.0, (1, 4))
    for op in (*table.extra.values(), *CATALOG.values()):
        if (not op.onnx_type or op.params or op.onnx_match or op.mixes_channels
                or len(op.inputs) != 2 or len(op.onnx_inputs) != 2):
            continue
        got = run_kernel(op, Node("product", op.onnx_type, ["a", "b"], ["y"]), [a, b], {})
        if got is not None and got.shape == a.shape and np.array_equal(got, a * b):
            return op.onnx_type
    return None


def _carried_slots(op, rule: Rule, slot: int, constants: list[int]) -> list[int] | None:
    """The constant inputs that take the factor at a carrier with its activation on ``slot``,
    by the rule: all under the aligned-sum rule of degree 1 (x + beta: (x + beta) / s = x / s
    + beta / s); none when the output has degree 1 in the activation (pass-through, or
    homogeneous with that input's degree 1); None for any other rule."""
    kind = rule.kind
    if kind is RuleKind.ALIGNED:
        return constants if rule.degree in (None, 1) else None
    if kind is RuleKind.PASS_THROUGH:
        return []
    if kind is RuleKind.HOMOGENEOUS and rule.input_degrees is not None:
        tensors = [t.name for t in op.inputs]
        binding = slot_binding(op, slot)
        if binding in tensors and rule.input_degrees[tensors.index(binding)] == 1:
            return []
    return None


def _probe(op, node: Node, examples: list, slots: list[int], axis: int, rank: int,
           divided: int | None = None
           ) -> tuple[tuple[tuple[int, int], ...], np.ndarray, np.ndarray] | None:
    """((slot, axis) for each constant in ``slots``, the node's output on ``examples``, the
    probe's factors) for the first pairing of the constants' axes with the output's channel
    axis ``axis`` (of the first _AXIS_CHOICES) under which dividing their slices by random
    factors, and the activation input ``divided`` along ``axis``, divides the output's
    channels alike; None when none does or the node cannot run."""
    base = run_kernel(op, node, examples, {})
    if base is None or base.ndim != rank or axis >= rank:
        return None
    channels = base.shape[axis]
    factors = np.random.default_rng(3).uniform(0.25, 4.0, channels)
    inputs = {}
    if divided is not None:
        x = np.asarray(examples[divided], dtype=np.float64)
        if x.shape[axis] != channels:
            return None
        inputs[divided] = x / along(factors, axis, rank)
    values, options = {}, []
    for slot in slots:
        value = _per_channel(np.asarray(examples[slot]), channels, axis, rank)
        aligned = value.ndim - (rank - axis)  # broadcasting pairs the trailing axes
        axes = [a for a in range(value.ndim) if value.shape[a] == channels]
        axes.sort(key=lambda a: a != aligned)  # a Conv's or Gemm's weight: another axis
        if not axes:
            return None
        values[slot] = value
        options.append(axes)
    expected = base / along(factors, axis, base.ndim)
    for choice in itertools.islice(itertools.product(*options), _AXIS_CHOICES):
        changes = {slot: values[slot] / along(factors, a, values[slot].ndim)
                   for slot, a in zip(slots, choice)}
        moved = run_kernel(op, node, examples, {**inputs, **changes})
        if moved is not None and close(moved, expected):
            return tuple(zip(slots, choice)), base, factors
    return None


def _channel_wise(op, node: Node, examples: list, active: set[str], base: np.ndarray,
                  axis: int, factors: np.ndarray) -> bool:
    """Whether the source's output channels are its activation input's channels, each scaled
    on its own (a Mul by a constant): scaling that input's channels along ``axis`` scales the
    output's alike."""
    for slot, name in enumerate(node.inputs):
        value = examples[slot]
        if name not in active or value is None or np.ndim(value) != base.ndim:
            continue
        if np.shape(value)[axis] != base.shape[axis]:
            continue
        scaled = np.asarray(value, dtype=np.float64) * along(factors, axis, base.ndim)
        moved = run_kernel(op, node, examples, {slot: scaled})
        if moved is not None and close(moved, base * along(factors, axis, base.ndim)):
            return True
    return False


def _has_matrix(graph: Graph, source: Absorber) -> bool:
    """Whether the source absorbs the factor into a weight matrix (a Conv's, a Gemm's): a copy
    of such a node would double its multiply-adds, so it is never duplicated (a LayerNorm's
    gamma and beta, a GELU's 0.5 cost next to nothing to copy)."""
    return any(np.ndim(graph.initializers[source.node.inputs[slot]]) >= 2
               for slot, _ in source.slots)


def _per_channel(value: np.ndarray, channels: int, axis: int, rank: int) -> np.ndarray:
    """A constant as one value per channel (shape (channels, 1, ...) aligned with ``axis`` of
    a ``rank``-axis activation); unchanged when it already is."""
    value = np.asarray(value)
    if value.size != 1 or channels == 1:
        return value
    return np.full((channels,) + (1,) * (rank - axis - 1), value.reshape(()), value.dtype)


def _owned(graph: Graph, absorbers: tuple[Absorber, ...]) -> bool:
    """Every consumer weight feeds that consumer only (a shared weight would change another
    node too)."""
    consumers = graph.consumers()
    return all(len(consumers.get(a.node.inputs[slot], [])) == 1
               for a in absorbers for slot, _ in a.slots)


# -- choosing the strength -------------------------------------------------------------------

def _observe(graph: Graph, table: OperatorTable, feeds: Feeds, candidates: list[Candidate],
             sample: int, progress: bool = False
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]
                        ] | None:
    """One float pass over the whole calibration set, batch by batch: the graph's outputs and
    the candidate activations on its first ``sample`` samples (where each strength's error is
    measured and the smoothed graph is checked), and per candidate the largest |value| of
    each channel over every sample, and over each half of the positions of the samples after
    the first ``sample`` (held out: :func:`_choose`). Why every sample for the ranges: at
    strengths near 1 the scale follows a channel's range almost linearly, and a channel quiet
    on the sample but not on the rest of the data would, divided by a tiny scale, set the
    smoothed tensor's range (measured on all-MiniLM-L6-v2: a GELU output's range 2.9 from all
    128 calibration texts, 28 from scales of the first 32). None when the graph cannot run."""
    names = list(dict.fromkeys([*graph.output_names,
                                *(t for c in candidates for t in _observed_tensors(c))]))
    kept: list[dict[str, np.ndarray]] = []
    reach: dict[str, np.ndarray] = {}
    held_out: dict[str, np.ndarray] = {}
    seen = 0
    for count, values in streamed(graph, table, feeds, names, "smoothing", progress):
        if values is None:
            return None
        if seen < sample:
            kept.append(values)
        for candidate in candidates:
            for tensor in _observed_tensors(candidate):
                value = np.asarray(values[tensor])
                parts = [(reach, channel_peaks(np.moveaxis(value, candidate.axis, -1)))]
                if candidate.axis % value.ndim and seen + count > sample:  # (along no batch)
                    parts.append((held_out, halves_peaks(
                        np.moveaxis(value[max(0, sample - seen):], candidate.axis, -1))))
                for peaks, peak in parts:
                    old = peaks.get(tensor)
                    peaks[tensor] = peak if old is None else np.maximum(old, peak)
        seen += count
    return joined(graph, kept, names), reach, held_out


def _observed_tensors(candidate: Candidate) -> tuple[str, ...]:
    """The tensors whose values on the sample and channel ranges the search reads: the
    activation and the carried tensors rounded before it."""
    return (candidate.tensor, *candidate.rounded_carried)


def _observed_by(calibration: Calibration, candidates: list[Candidate]
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                            dict[str, np.ndarray]] | None:
    """What :func:`_observe` gives, from a calibration pass that kept the candidates: the
    outputs and candidates on its first samples, each candidate channel's largest |x| (its
    channel peaks), and those after its first samples; None when it lacks any of them."""
    if calibration.reference is None or calibration.kept is None:
        return None
    reach = {}
    for candidate in candidates:
        for tensor in _observed_tensors(candidate):
            stats = calibration.stats.get(tensor)
            peaks = None if stats is None or not stats.channel_peaks else \
                stats.channel_peaks.get(candidate.axis % stats.rank if stats.rank
                                        else candidate.axis)
            if peaks is None or tensor not in calibration.kept:
                return None
            reach[tensor] = peaks
    return {**calibration.reference, **calibration.kept}, reach, calibration.held_out_peaks


def _choose(graph: Graph, candidate: Candidate, x: np.ndarray, x_range: np.ndarray, bits: int,
            alphas: tuple[float, ...], rounded_before: bool = False, per_channel: bool = True,
            held_out: np.ndarray | None = None, check_on: np.ndarray | None = None,
            carried: _CarriedSample | None = None) -> tuple[float, np.ndarray] | None:
    """(alpha, per-channel scale) with the least consumer output error on the sample, or None
    when no alpha beats leaving the activation as it is; ``x_range``: each channel's largest
    |value| on the whole calibration set, which sets the scales and the activation's range;
    ``rounded_before``: the activation is rounded to its unsmoothed codes before the factor
    applies (a channel-wise source), and again after it. ``carried``: where quantize
    rounds carried tensors before the activation (:attr:`Candidate.rounded_carried`), their
    sample, ranges and carriers: the activation is then computed from the first one's rows,
    each rounded on the way (:class:`_Recoded`); with ``rounded_before`` the first is the
    source's output, whose rows are first rounded to the codes of the source's input, seen
    at that output (not at the activation, which carriers stand between: a Gemm -> Mul by
    0.5 -> LeakyRelu -> Gemm model with outlier channels in the first Gemm, rounded at the
    LeakyRelu's range and not again before it, was left unsmoothed at 26.0 dB held out, 34.3
    smoothed). ``held_out``: each channel's largest
    |value| on the calibration samples after the sample, none of the rows the error is measured
    on, at the earlier and at the later half of their positions (``halves_peaks``; one row:
    ranges alone). The strength chosen must then also beat leaving the activation as it is with
    its scales and ranges taken from those samples alone, on one half of the positions at least
    (calibrated without the sample, measured on it), or nothing is smoothed: a strength that
    only fits the sample's own extremes is not taken (``held_out`` None: no check;
    ``check_on``: the values the check measures on, where not ``x``: the sample's earlier half,
    where its later half gave ``held_out``, :func:`_split_sample`). Measured in a new-user
    trial on small random-weight decoders calibrated on 64 samples of 4 tokens: strength 0.9,
    chosen on the whole set's ranges, 2.5-3.5 dB below no smoothing on held-out data.
    Choosing among the strengths on the held-out ranges instead took weaker ones on
    all-MiniLM-L6-v2 (0.9951 / 0.9896 mean / min cosine against 0.9960 / 0.9905), and, with
    the activation's range from them too, favoured smoothing where the sample's loudest channel
    passed the held-out range (a test model with --per-tensor lost 0.3 dB on its test
    data)."""
    matrices = []
    for consumer in candidate.consumers:
        (slot, axis), = consumer.slots
        weight = np.asarray(graph.initializers[consumer.node.inputs[slot]], dtype=np.float32)
        matrices.append(np.moveaxis(weight, axis, 0).reshape(weight.shape[axis], -1))
    w_range = np.max([np.abs(m).max(axis=1) for m in matrices], axis=0)
    levels = 2 ** (bits - 1) - 1
    x_range = np.asarray(x_range, dtype=np.float32)

    def measured(values: np.ndarray, first: np.ndarray | None
                 ) -> tuple[np.ndarray | _Recoded, list[np.ndarray], list[float]]:
        """(the rows of ``values`` the errors are taken on, rounded where the source rounds
        them first, or how they come from the first rounded carried tensor's values
        ``first``; the consumers' exact outputs on them; their energies)."""
        rows: np.ndarray | _Recoded = _rows(values, candidate.axis)
        exact = [rows @ m for m in matrices]
        recoded = None
        if carried is not None:
            recoded = _Recoded(_rows(first, candidate.axis), carried.reaches, carried.carriers,
                               per_channel)
            if rounded_before:  # the source's input, at its codes, before the factor
                recoded = replace(recoded, rows=fake_quantized(recoded.rows, _first_reach(
                    candidate, carried.reaches[0], per_channel), levels))
        if (recoded is not None
                and recoded.divided(np.ones(x_range.size, np.float32), levels) is not None):
            rows = recoded
        elif rounded_before:
            rows = fake_quantized(rows, _first_reach(candidate, x_range, per_channel), levels)
        return rows, exact, _energies(exact)

    rows, exact, energies = measured(x, None if carried is None else carried.sample)
    scales = {alpha: _scale(x_range, w_range, alpha) for alpha in alphas}
    ranked = list(scales)  # the order the full errors are taken in
    count = len(exact[0])  # the rows
    if count >= 2 * _SCREEN_ROWS and len(scales) > _FINALISTS:
        # every strength on a quarter or less of the rows, the best few on all of them
        part = np.sort(np.random.default_rng(6).choice(count, _SCREEN_ROWS, replace=False))
        screened = [r[part] for r in exact]
        screen_energies = _energies(screened)
        errors: dict[float, float] = {}
        for alpha in reversed(scales):  # the strongest first: the usual choice (ALPHAS)
            # an error past the _FINALISTS-th least so far stops: that strength is out
            limit = sorted(errors.values())[_FINALISTS - 1] if len(errors) >= _FINALISTS \
                else np.inf
            errors[alpha] = _error(rows[part], x_range, matrices, screened, screen_energies,
                                   scales[alpha], levels, per_channel, limit=limit)
        ranked = sorted(scales, key=errors.__getitem__)[:_FINALISTS]  # ties: the weakest
    # the screen's best first, so that the others, leaving the activation as it is last,
    # can stop once they pass the least error so far (an error that stops is above it, so the
    # choice, the first of the least errors in the order below, is the same)
    full: dict[float | None, float] = {}
    for alpha in [*ranked, None]:
        scale = np.ones(x_range.size) if alpha is None else scales[alpha]
        full[alpha] = _error(rows, x_range, matrices, exact, energies, scale, levels,
                             per_channel, limit=min(full.values(), default=np.inf))
    best, best_error = None, full[None]
    for alpha in (alpha for alpha in alphas if alpha in ranked):
        if full[alpha] < best_error:
            best, best_error = (alpha, scales[alpha]), full[alpha]
    if best is None or held_out is None:
        return best
    if check_on is not None:
        rows, exact, energies = measured(check_on, None if carried is None else carried.check_on)
    for index, half in enumerate(np.atleast_2d(np.asarray(held_out, dtype=np.float32))):
        if isinstance(rows, _Recoded):  # (a row, a half of the positions, passing is enough)
            rows = replace(rows, reaches=carried.held_out(index))
        smoothed = _error(rows, half, matrices, exact, energies,
                          _scale(half, w_range, best[0]), levels, per_channel)
        as_it_is = _error(rows, half, matrices, exact, energies, np.ones(x_range.size),
                          levels, per_channel, limit=smoothed)
        if smoothed < as_it_is:
            return best
    return None


_Carriers = tuple[tuple[Callable[[np.ndarray], np.ndarray | None], bool], ...]
"""Carriers each as a function of rows, with whether quantize rounds its input."""


@dataclass(frozen=True)
class _Recoded:
    """The activation as quantize computes it where carried tensors before it are rounded
    to codes of their own range (:attr:`Candidate.rounded_carried`: a Gemm's output before
    a LeakyRelu): the first such tensor's ``rows`` (the activation's positions), each rounded
    tensor's channel ranges (``reaches``), and the carriers from the first on, each on rows,
    with whether its input is rounded. Why: modelling only the activation's own rounding,
    the search had smoothed a Gemm -> LeakyRelu -> Gemm model where the first Gemm's
    smoothed output, rounded before the LeakyRelu, had a range led by its negative side
    (-4.89..0.79 against -2.64..2.08), 6.5 dB below no smoothing held out."""

    rows: np.ndarray
    reaches: tuple[np.ndarray, ...]
    carriers: _Carriers
    per_channel: bool

    def __getitem__(self, index) -> _Recoded:
        return replace(self, rows=self.rows[index])

    def divided(self, scale: np.ndarray, levels: int) -> np.ndarray | None:
        """The activation's rows with its channels divided by ``scale`` (> 0): the carriers
        are proved homogeneous of degree 1 in their input, so dividing the first tensor
        divides each after it, and each rounded one's range, alike. None where a carrier
        cannot run on rows."""
        x: np.ndarray | None = self.rows / scale
        reaches = iter(self.reaches)
        for carry, rounded in self.carriers:
            if rounded:
                x = fake_quantized(x, _held_reach(next(reaches) / scale, self.per_channel),
                                   levels)
            x = carry(x)
            if x is None:
                return None
        return x


@dataclass(frozen=True)
class _CarriedSample:
    """The rounded carried tensors (:attr:`Candidate.rounded_carried`) as the search reads
    them: the first one's values on the sample, and on the part of it the held-out check
    measures on where that is not all of it (``check_on``); each one's channel ranges on the
    whole calibration set (``reaches``) and after the sample (``held``, per tensor: rows of
    ``halves_peaks``); the carriers from the first on (:func:`_carriers_on_rows`)."""

    sample: np.ndarray
    check_on: np.ndarray | None
    reaches: tuple[np.ndarray, ...]
    held: tuple[np.ndarray, ...] | None
    carriers: _Carriers

    def held_out(self, index: int) -> tuple[np.ndarray, ...]:
        """Each tensor's ranges on row ``index`` of its held-out ranges (the reaches where
        it has none)."""
        if self.held is None:
            return self.reaches
        return tuple(np.atleast_2d(np.asarray(h, dtype=np.float32))[index] for h in self.held)


def _carried_sample(graph: Graph, table: OperatorTable, candidate: Candidate,
                    values: Mapping[str, np.ndarray], reach: Mapping[str, np.ndarray],
                    held_out: Mapping[str, np.ndarray] | None) -> _CarriedSample | None:
    """The candidate's rounded carried tensors for the search, from the observed ``values``
    (on the sample), ``reach`` and ``held_out`` ranges (None: the sample's later half stands
    for the samples after it, :func:`_split_sample`); None where none is rounded, the
    carriers cannot run on rows, or a channel-wise source (``Candidate.rounded_before``) has
    its output rounded at the grid of a carrier that passes codes on (a Relu), not at codes
    of its own."""
    carriers = _carriers_on_rows(graph, table, candidate)
    if carriers is None:
        return None
    tensors = candidate.rounded_carried
    if candidate.rounded_before and tensors[0] != candidate.source.node.outputs[0]:
        return None
    reaches = tuple(np.asarray(reach[t], dtype=np.float32) for t in tensors)
    first = values[tensors[0]]
    if held_out is not None:
        held = [held_out.get(t) for t in tensors]
        return _CarriedSample(first, None, reaches,
                              None if any(h is None for h in held) else tuple(held), carriers)
    split = [_split_sample(values[t], candidate.axis) for t in tensors]
    if any(part is None for part in split):
        return None
    return _CarriedSample(first, split[0][0], reaches, tuple(part[1] for part in split),
                          carriers)


def _carriers_on_rows(graph: Graph, table: OperatorTable, candidate: Candidate
                      ) -> _Carriers | None:
    """The candidate's carriers from its first rounded carried tensor on, each as a function
    of rows (positions x channels, float32) and with whether quantize rounds its input
    (:class:`_Recoded`); None when no carried tensor is rounded or a carrier reads an input
    that is no constant."""
    carried = candidate.carried
    if not candidate.rounded_carried:
        return None
    first = carried.index(candidate.rounded_carried[0])
    rank = _rank(graph, candidate.tensor)
    found = []
    for tensor, carrier in zip(carried[first:], candidate.chain[first:]):
        node = carrier.node
        op = table.find(node, graph)
        carry = None if op is None or rank is None else _on_rows(
            graph, op, node, node.inputs.index(tensor), candidate.axis, rank)
        if carry is None:
            return None
        found.append((carry, tensor in candidate.rounded_carried))
    return tuple(found)


def _on_rows(graph: Graph, op: Operator, node: Node, slot: int, axis: int, rank: int
             ) -> Callable[[np.ndarray], np.ndarray | None] | None:
    """``node``'s kernel as a function of rows of its input ``slot`` (positions x channels,
    the channels along ``axis`` of its rank-``rank`` input), its other inputs the graph's
    constants, which gives None where it cannot run on rows (a constant that broadcasts
    along more than the channel axis); None when an input is no constant."""
    inputs = [None if s == slot or not name else graph.initializers.get(name)
              for s, name in enumerate(node.inputs)]
    if any(value is None and s != slot and name for s, (value, name) in
           enumerate(zip(inputs, node.inputs))):
        return None

    def carry(rows: np.ndarray) -> np.ndarray | None:
        count, channels = rows.shape
        shaped = np.moveaxis(rows.reshape(count, *[1] * (rank - 2), channels), -1, axis)
        out = run_kernel(op, node, inputs, {slot: shaped})
        if out is None or out.shape != shaped.shape:
            return None
        return np.moveaxis(out, axis, -1).reshape(count, channels).astype(rows.dtype)
    return carry


def _rows(x: np.ndarray, axis: int) -> np.ndarray:
    """The activation's rows (positions) with its channels along the last axis, in float32
    (the errors compared differ by orders of magnitude more than its rounding), _ROWS of them
    at most, drawn at random."""
    rows = np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1)
    rows = rows.reshape(-1, rows.shape[-1])
    if len(rows) > _ROWS:
        rows = rows[np.random.default_rng(5).choice(len(rows), _ROWS, replace=False)]
    return rows


def _split_sample(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the calibration set holds no samples beyond the sample ``x`` (its samples along
    axis 0, its channels along ``axis``): its earlier half of samples, to measure on, and the
    held-out ranges (``halves_peaks``) of its later half, which stands for the samples beyond;
    None where ``x`` holds fewer than two samples or its channels lie along the samples' axis.
    Why: the check on held-out ranges had been skipped there, and a new-user trial's DPT and
    GLPN depth models calibrated on 16 photos took strengths fitted to their extremes, 5.4
    and 5.5 dB below no smoothing on 16 held-out photos (calibrated on 64, the check refused
    them)."""
    x = np.asarray(x)
    if x.ndim < 2 or not axis % x.ndim or len(x) < 2:
        return None
    middle = len(x) // 2
    return x[:middle], halves_peaks(np.moveaxis(x[middle:], axis, -1))


def _energies(outputs: list[np.ndarray]) -> list[float]:
    """Each exact consumer output's sum of squares, the denominator of its relative error:
    the same for every strength (at least 1e-30: an output of zeros)."""
    return [max(energy, 1e-30) for energy in squared_norms(outputs)]


def _scale(x_range: np.ndarray, w_range: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-channel factor at strength ``alpha``, normalised to a geometric mean
    of 1 and bounded to [1/_SCALE_LIMIT, _SCALE_LIMIT] (1 for a channel without range)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = x_range**alpha / w_range ** (1 - alpha)
    scale = np.where((x_range > 0) & (w_range > 0) & np.isfinite(scale), scale, 1.0)
    return np.clip(scale / np.exp(np.mean(np.log(scale))), 1 / _SCALE_LIMIT, _SCALE_LIMIT)


def _first_reach(candidate: Candidate, x_range: np.ndarray, per_channel: bool
                 ) -> np.ndarray | float:
    """The range(s) the activation is rounded to before the factor applies: a channel-wise
    source's input's (:func:`_rounded_reach`), or each of a joining source's inputs' own, on
    its run of channels (each input is held at its own scale before the join)."""
    if not candidate.source.joins:
        return _held_reach(x_range, per_channel)
    reach = np.empty_like(x_range)
    for _, first, end in candidate.source.joins:
        reach[first:end] = _held_reach(x_range[first:end], per_channel)
    return reach


def _held_reach(x_range: np.ndarray, per_channel: bool) -> np.ndarray | float:
    """The range(s) quantize holds a tensor at whose channels' ranges are ``x_range``:
    :func:`_rounded_reach` where it may hold per-channel codes, else one for the tensor."""
    return _rounded_reach(x_range) if per_channel else x_range.max()


def _rounded_reach(x_range: np.ndarray) -> np.ndarray | float:
    """The range(s) a channel-wise source's activation input is rounded to, seen at the
    source's output: one per channel where its channels' ranges differ enough for the engine
    to hold per-channel codes (CHANNEL_GAIN; then a factor at the source still helps: the
    source's output is requantized to one scale for the weight layer), else one for the
    tensor (then it cannot: the channels were already rounded to one scale). Measured: an
    exported exact-GELU MLP lost 12 dB to a factor after one scale; all-MiniLM-L6-v2's GELU
    outputs, whose outlier channels get per-channel codes, gain from it."""
    peaks = np.where(x_range > 0, x_range, x_range.max())
    gain = peaks.max() ** 2 / max(float(np.mean(peaks**2)), 1e-30)
    return x_range if gain >= CHANNEL_GAIN else x_range.max()


def _error(rows: np.ndarray | _Recoded, x_range: np.ndarray, matrices: list, exact: list,
           energies: list[float], scale: np.ndarray, levels: int, per_channel: bool = True,
           limit: float = np.inf) -> float:
    """Relative squared output error of the consumers with the activation (``rows``, or how they
    come from rounded carried tensors) divided by ``scale`` (n-bit codes, one scale for its
    calibrated range ``x_range / scale``) and the weights multiplied by it (n-bit codes, one
    max-abs scale per output column, or per matrix when not ``per_channel``: --per-tensor);
    ``energies``: each exact output's sum of squares. The rows go _BLOCK at a time, and the
    error stops at inf as soon as the part summed passes ``limit`` (every term is a square: the
    rest can only add to it); the sums add the same terms in the same order either way."""
    scale = scale.astype(np.float32)
    divided = rows / scale if isinstance(rows, np.ndarray) else rows.divided(scale, levels)
    x = fake_quantized(divided, (x_range / scale).max(), levels)
    weights = []
    for matrix in matrices:
        w = matrix * scale[:, None]
        reach = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
        weights.append(fake_quantized(w, reach, levels))
    sums, total = [0.0] * len(weights), 0.0
    for start in range(0, len(x), _BLOCK):
        block = x[start:start + _BLOCK]
        sums = [sum_of_squares(block @ w, reference[start:start + _BLOCK], done,
                               _SUMMED_ROWS * w.shape[1])
                for w, reference, done in zip(weights, exact, sums)]
        total = 0.0
        for part, energy in zip(sums, energies):
            total += part / energy
        if total > limit:
            return np.inf
    return total


_BLOCK = 256  # rows of a product at a time in _error, a multiple of _SUMMED_ROWS
_SUMMED_ROWS = 64  # rows of a product squared and summed at a time (metrics.sum_of_squares)


# -- helpers ---------------------------------------------------------------------------------

def _rank(graph: Graph, tensor: str) -> int | None:
    shape = graph.shape_of(tensor)
    return None if shape is None else len(shape)

