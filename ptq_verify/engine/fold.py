"""Folding a per-channel affine node (BatchNormalization, a per-channel Mul/Add by constants)
into the linear node before it, read off the declarations and probes, not off op types.

A node is folded when: its only activation input comes from a node with integer weights
(proved by :func:`~ptq_verify.engine.rules.weight_layout`) that feeds nothing else; the node's
rule (or a proved alternative) carries the scale (degree 1); its expression is proved affine
in that input (:func:`~ptq_verify.rules.shift.proved_affine`: f(x + y) - f(x) - f(y) + f(0) =
0); and a probe of its kernel reads y = a_c * x + b_c off it, (a_c, b_c) constant along every
axis but the channel axis 1, which the producer's weights map to. The probe alone is not
enough: it sees a few random values, on which a Clip with wide bounds is the identity and a
ThresholdedRelu with a high threshold is 0 (a new-user trial had both folded away).
Otherwise the node stays and is quantized by its rule (never silently dropped).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..catalog.operator import Operator
from ..graph import Graph, Node, OperatorTable, activation_tensors, slot_binding
from ..rules import Rule, stored_proved_affine
from .probe import channel_axes, example_inputs
from .rules import effective_rule, weight_layout

CHANNEL_AXIS = 1


def fold_affine_channels(graph: Graph, table: OperatorTable,
                         overrides: Mapping[str, Rule] | None = None) -> list[str]:
    """Fold what can be folded; return the names of the folded nodes."""
    folded = []
    # a node that is not folded leaves the graph as it was: the activations, producers and
    # consumers are found again only after a fold (once per candidate made this quadratic:
    # 1.6 s of MiniLM's load; a chain of 4000 Relus, 2.8 s of its 3.7 s audit)
    active = activation_tensors(graph, table)
    links = graph.producers(), graph.consumers()
    for node in list(graph.nodes):
        if _fold_one(graph, table, node, overrides, active, links):
            folded.append(node.name)
            active = activation_tensors(graph, table)
            links = graph.producers(), graph.consumers()
    return folded


def _fold_one(graph: Graph, table: OperatorTable, node: Node, overrides,
              active: set[str], links: tuple[dict, dict]) -> bool:
    op = table.find(node, graph)
    if op is None or op.mixes_channels or len(node.outputs) != 1:
        return False
    slots = [s for s, name in enumerate(node.inputs) if name in active]
    others = [name for s, name in enumerate(node.inputs) if name and s not in slots]
    if len(slots) != 1 or any(name not in graph.initializers for name in others):
        return False
    verdict, rule = effective_rule(op, overrides)
    degrees = {r.degree for r, _ in verdict.alternatives} | {rule.degree}
    if not rule.kind.has_rule or 1 not in degrees or rule.input_degrees:
        return False
    source = node.inputs[slots[0]]
    producers, consumers = links
    prev = producers.get(source)
    if prev is None or len(consumers.get(source, [])) != 1 or source in graph.output_names:
        return False
    prev_op = table.find(prev, graph)
    if prev_op is None:
        return False
    _, prev_rule = effective_rule(prev_op, overrides)
    layout = weight_layout(prev_op, prev_rule)
    if layout is None or len(prev.outputs) != 1:
        return False
    weight_slots = [s for s, n in enumerate(prev.inputs) if _carries(prev_op, s, layout.weights)]
    bias_slots = [s for s in range(len(prev_op.onnx_inputs))
                  if _carries(prev_op, s, layout.biases)]
    if len(weight_slots) != 1 or len(bias_slots) != 1:
        return False
    weight_slot, bias_slot = weight_slots[0], bias_slots[0]
    if prev.inputs[weight_slot] not in graph.initializers:
        return False
    affine = _affine_per_channel(graph, op, node, active, slots[0])
    examples = example_inputs(graph, prev, active)
    if affine is None or examples is None:
        return False
    # the probe saw a few random values; Clip(x, -20, 20) or Shrink(lambd=5) is affine on
    # those and not on the activations: folding rests on the proof (tried after the cheap
    # probe, which turns most nodes away: a proof attempt imports sympy)
    tensor = slot_binding(op, slots[0])
    if not tensor or not stored_proved_affine(op, tensor):
        return False
    axes = channel_axes(prev_op, prev, examples, weight_slot, (bias_slot,))
    if axes is None or axes[1] != CHANNEL_AXIS:
        return False
    scale, shift = affine
    weight = graph.initializers[prev.inputs[weight_slot]]
    if weight.shape[axes[0]] != scale.size:
        return False
    bias_name = prev.inputs[bias_slot] if bias_slot < len(prev.inputs) else ""
    bias = graph.initializers.get(bias_name) if bias_name else np.zeros(scale.size, weight.dtype)
    if bias is None or bias.shape != (scale.size,):
        return False
    shape = [1] * weight.ndim
    shape[axes[0]] = -1
    new_weight = f"{prev.inputs[weight_slot]}:folded:{node.name}"
    new_bias = f"{bias_name or prev.name + ':bias'}:folded:{node.name}"
    graph.initializers[new_weight] = (weight * scale.reshape(shape)).astype(weight.dtype)
    graph.initializers[new_bias] = (bias * scale + shift).astype(weight.dtype)
    inputs = list(prev.inputs) + [""] * (bias_slot + 1 - len(prev.inputs))
    inputs[weight_slot], inputs[bias_slot] = new_weight, new_bias
    prev.inputs = inputs
    prev.outputs = [node.outputs[0]]
    graph.nodes.remove(node)
    graph.remove_unused()
    return True


def _carries(op: Operator, slot: int, params: frozenset[str]) -> bool:
    binding = slot_binding(op, slot)
    return bool(binding) and set(binding.split()) <= params and binding not in {
        t.name for t in op.inputs}


def _affine_per_channel(graph: Graph, op: Operator, node: Node, active: set[str],
                        slot: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, b) with node(x) = a_c * x + b_c along axis 1, or None if the probe disagrees."""
    examples = example_inputs(graph, node, active)
    if examples is None or examples[slot].ndim < 2:
        return None

    def run(x: np.ndarray) -> np.ndarray:
        values = list(examples)
        values[slot] = x
        result = op.run_onnx(values, node.kernel_attrs)
        return np.asarray(result[0] if isinstance(result, (list, tuple)) else result,
                          dtype=np.float64)

    x = np.asarray(examples[slot], dtype=np.float64)
    try:
        zero, one, y = run(np.zeros_like(x)), run(np.ones_like(x)), run(x)
    except Exception:  # noqa: BLE001 - no probe, no fold
        return None
    if y.shape != x.shape:
        return None
    reduce = tuple(a for a in range(x.ndim) if a != CHANNEL_AXIS)
    shift = zero.mean(axis=reduce, keepdims=True)
    scale = one.mean(axis=reduce, keepdims=True) - shift
    tolerance = 1e-5 * (np.abs(y).max() + 1.0)
    if not np.allclose(y, scale * x + shift, rtol=1e-5, atol=tolerance):
        return None
    return scale.reshape(-1), shift.reshape(-1)
