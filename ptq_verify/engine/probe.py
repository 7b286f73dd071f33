"""Numeric probes of a node's layout, for choices that do not change what is computed.

Which weight axis feeds which output axis decides per-channel scales and BatchNorm-style
folding. A probe runs the node's own kernel on a random input twice, once with the weights
scaled along one axis, and accepts an axis pairing only when the output scales along an axis
exactly as predicted. A failed probe only means falling back to per-tensor scales.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache

import numpy as np

from ..catalog.operator import Operator
from ..graph import Graph, Node
from ..graph.onnx_io import inferred_shapes
from ..graph.static import MAX_FOLDED_ELEMENTS


def example_shape(graph: Graph, name: str) -> tuple[int, ...] | None:
    """A concrete shape for tensor ``name``: batch 1, symbolic dims 2; None when unknown, and
    when it holds more than MAX_FOLDED_ELEMENTS elements (the bound of constant folding): a
    4 KB model may declare an input of (batch, 10**15), and the probes that draw random
    values of this shape had asked numpy for 56.8 PiB (exit 3). Such a tensor is probed as
    one of unknown shape is: not at all, the layers it feeds keeping per-tensor scales."""
    shape = graph.shape_of(name)
    if shape is None:
        return None
    fitted = graph.example_shapes.get(name)
    if fitted is not None and len(fitted) == len(shape) and not _static(shape):
        shape = fitted
    concrete = tuple(
        (1 if axis == 0 else 2) if not isinstance(d, int) or d <= 0 else d
        for axis, d in enumerate(shape)
    )
    return concrete if math.prod(concrete) <= MAX_FOLDED_ELEMENTS else None


def _static(shape: tuple) -> bool:
    return all(isinstance(d, int) and d > 0 for d in shape)


def fit_examples_to_data(graph: Graph, feeds: Mapping[str, np.ndarray]) -> None:
    """Give the probes (:func:`example_shape`) the shape each tensor takes for one sample of
    ``feeds``, where its stated shape has a free dimension, by ONNX shape inference from the
    inputs at the data's lengths (the batch axis at 1 where the model leaves it free).

    Why: a free dimension is probed at 2, on which a convolution whose padding is a Pad node
    before it (the 'same' padding of TF ports: EfficientNet-Lite's 3x3 depthwise convolutions)
    or a patch embedding (a 16x16 kernel) cannot run, and a probe that cannot run finds no
    equalization link: EfficientNet-Lite1 exported with dynamic height and width lost every
    group and bias absorption the same export at a fixed 240 gets (3.6 against 16.2 dB, a
    new-user trial). Only the probes read these shapes; the written file keeps the free axes.
    A tensor inference leaves unknown keeps the stated shape."""
    inputs = []
    for info in graph.inputs:
        value = feeds.get(info.name)
        if info.shape is None or value is None or np.ndim(value) != len(info.shape) \
                or 0 in np.shape(value)[1:]:
            inputs.append(info)
            continue
        first = info.shape[0] if isinstance(info.shape[0], int) and info.shape[0] > 0 else 1
        inputs.append(replace(info, shape=(first, *np.shape(value)[1:])))
    found = inferred_shapes(replace(graph, inputs=inputs)) or {}
    graph.example_shapes = {
        **{info.name: info.shape for info in inputs if info.shape and _static(info.shape)},
        **{name: info.shape for name, info in found.items()
           if info.shape is not None and _static(info.shape)}}


def example_inputs(graph: Graph, node: Node, active: set[str], seed: int = 0) -> list | None:
    """Random float32 values for the node's activation inputs (fresh arrays, drawn in their
    order from one generator seeded with ``seed``), the graph's constants for the others;
    None when a shape is unknown, or a constant holds no numbers (a Gemm's weight stored as
    strings, which onnxruntime refuses to load, had made audit's probes fail: exit 3)."""
    inputs: list = []
    drawn: list[int] = []  # the slots that take random values
    shapes = []
    for name in node.inputs:
        if not name:
            inputs.append(None)
        elif name in graph.initializers:
            if np.asarray(graph.initializers[name]).dtype.kind not in "biufc":
                return None
            inputs.append(graph.initializers[name])
        elif name in active:
            shape = example_shape(graph, name)
            if shape is None:
                return None
            drawn.append(len(inputs))
            inputs.append(None)
            shapes.append(shape)
        else:
            return None
    for slot, values in zip(drawn, _normal_draws(tuple(shapes), seed)):
        inputs[slot] = values.copy()
    return inputs


@lru_cache(maxsize=64)
def _normal_draws(shapes: tuple[tuple[int, ...], ...], seed: int) -> tuple[np.ndarray, ...]:
    """Standard normal float32 arrays of ``shapes``, drawn in order from one generator seeded
    with ``seed``; kept (read-only), as the probes ask for the same shapes again and again: a
    transformer's layers share them, and quantize probes the nodes equalization, smoothing and
    weight_layers probed (all-MiniLM-L6-v2: 518 calls, 0.4 s drawing the same numbers)."""
    rng = np.random.default_rng(seed)
    draws = tuple(rng.standard_normal(shape).astype(np.float32) for shape in shapes)
    for values in draws:
        values.flags.writeable = False
    return draws


def channel_axes(op: Operator, node: Node, inputs: list, slot: int,
                 cleared: tuple[int, ...] = ()) -> tuple[int, int] | None:
    """(weight axis, output axis) such that scaling the weight in ``slot`` along the first
    scales the output along the second; ``cleared`` slots (biases) are set absent. None when
    no axis pairs up, or the probe has no output element to tell (a Slice whose ends, computed
    from the input's shape, are the probe's zeros)."""
    # the inputs in at least float32, converted once (the runs below take them again): the
    # probe only pairs axes, and float32's rounding is far inside its tolerance, while a
    # float64 copy of all-MiniLM-L6-v2's 30522 x 384 embedding, and of that times the
    # factors, was most of the table's probe (0.2 s)
    base = _cast([None if i in cleared else v for i, v in enumerate(inputs)], np.float32)
    weight = np.asarray(base[slot])
    weight = weight.astype(np.promote_types(np.float32, weight.dtype), copy=False)
    try:
        y0 = np.asarray(_first(op.run_onnx(base, node.kernel_attrs)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - a probe that cannot run proves nothing
        return None
    if not y0.size:
        return None
    rng = np.random.default_rng(1)
    for axis in range(weight.ndim):
        size = weight.shape[axis]
        if size < 2:
            continue
        factors = rng.uniform(0.5, 2.0, size)
        if size not in y0.shape:  # no output axis it could scale: no kernel run
            continue
        scaled = list(base)
        scaled[slot] = weight * along(factors.astype(weight.dtype), axis, weight.ndim)
        try:
            y1 = np.asarray(_first(op.run_onnx(scaled, node.kernel_attrs)), dtype=np.float64)
        except Exception:  # noqa: BLE001
            return None
        if y1.shape != y0.shape:
            continue
        for out_axis in range(y0.ndim):
            if y0.shape[out_axis] != size:
                continue
            expected = y0 * along(factors, out_axis, y0.ndim)
            if np.allclose(y1, expected, rtol=1e-4, atol=1e-5 * (np.abs(y0).max() + 1e-30)):
                return axis, out_axis
    return None


_PROBED: dict[tuple, tuple[tuple[weakref.ref, ...], tuple[int, int] | None]] = {}
""":func:`example_channel_axes`'s results, each with weak references to what it read."""
_PROBED_LOCK = threading.Lock()  # (probes run on the engine's threads too)

MAX_PROBED = 4096
"""Results kept at most (each a few references; the oldest half goes beyond it)."""


def example_channel_axes(graph: Graph, node: Node, op: Operator, active: set[str], slot: int,
                         cleared: tuple[int, ...] = ()) -> tuple[int, int] | None:
    """:func:`channel_axes` of the node on :func:`example_inputs`, None where those cannot be
    drawn; the result of an earlier call on the very same node, operator and constant arrays
    (objects, not equal values: every step that changes a weight writes a new array) and the
    same example shapes is taken again, as the probe would compute it again (its draws and
    factors come from fixed seeds). Why: each step that needs a layer's channels probes it
    (equalization, the weight layers before calibration and after smoothing, the build):
    ResNet-50 made 262 probes, 3.4 s, most of them of unchanged layers."""
    if op is None:  # (no declaration: the probe cannot run, and nothing is kept)
        return _example_channel_axes(graph, node, op, active, slot, cleared)
    key: list = [id(node), id(op), slot, tuple(cleared)]
    held: list = [node, op]
    for name in node.inputs:
        if not name:
            key.append(None)
        elif name in graph.initializers:
            value = graph.initializers[name]
            if not isinstance(value, np.ndarray):  # (no weak reference to it: not kept)
                return _example_channel_axes(graph, node, op, active, slot, cleared)
            key.append(("constant", id(value)))
            held.append(value)
        elif name in active:
            key.append(("drawn", example_shape(graph, name)))
        else:
            return None  # (example_inputs has none for it)
    with _PROBED_LOCK:
        known = _PROBED.get(tuple(key))
    if known is not None and all(ref() is item for ref, item in zip(known[0], held)):
        return known[1]
    axes = _example_channel_axes(graph, node, op, active, slot, cleared)
    with _PROBED_LOCK:
        if len(_PROBED) >= MAX_PROBED:
            for stale in list(_PROBED)[:MAX_PROBED // 2]:
                del _PROBED[stale]
        _PROBED[tuple(key)] = (tuple(weakref.ref(item) for item in held), axes)
    return axes


def _example_channel_axes(graph: Graph, node: Node, op: Operator, active: set[str],
                          slot: int, cleared: tuple[int, ...]) -> tuple[int, int] | None:
    examples = example_inputs(graph, node, active)
    return None if examples is None else channel_axes(op, node, examples, slot, cleared)


def run_kernel(op: Operator, node: Node, examples: list, changes: dict) -> np.ndarray | None:
    """The node's kernel on ``examples`` with the slots in ``changes`` replaced, in float64;
    None when it cannot run (a probe that cannot run proves nothing)."""
    values = _cast([changes.get(i, v) for i, v in enumerate(examples)])
    try:
        return np.asarray(_first(op.run_onnx(values, node.kernel_attrs)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - any kernel failure means no probe
        return None


def paired_weight_axis(op: Operator, node: Node, examples: list, slot: int, weight_slot: int,
                       axis: int, factors: np.ndarray) -> int | None:
    """The axis of the weight in ``weight_slot`` whose slices, multiplied by ``factors``, change
    the node's output as multiplying the slices of its activation input (``slot``) along
    ``axis`` by them does: the weight axis a layer's input channels run along (equalization's
    layers 2, smoothing's consumers: each had a copy of this probe, with a tolerance of its
    own); None when no axis does, or the node cannot run there. In float64, the outputs
    compared by :func:`close`."""
    examples = _cast(examples)
    x, weight = examples[slot], examples[weight_slot]
    if factors.size not in np.shape(weight):  # no weight axis to pair it with: no kernel run
        return None
    scaled = run_kernel(op, node, examples, {slot: x * along(factors, axis, x.ndim)})
    if scaled is None:
        return None
    for candidate in range(weight.ndim):
        if weight.shape[candidate] != factors.size:
            continue
        moved = run_kernel(op, node, examples,
                           {weight_slot: weight * along(factors, candidate, weight.ndim)})
        if moved is not None and close(moved, scaled):
            return candidate
    return None


def ones_gain(graph: Graph, node: Node, op: Operator, active: set[str]) -> float | None:
    """The largest output of ``node`` on its one activation input set to ones, its other
    inputs the graph's constants: for a sum of input elements with coefficients >= 0
    (:func:`.rules.is_element_sum`, a ReduceSum) the factor by which its output may exceed
    its input in magnitude. Run at the input's example shape and again with every free
    dimension grown, and None unless both agree: a sum over a free axis (the batch, a
    sequence) has no bound at run time. None too when the kernel cannot run."""
    probe = _two_sizes(graph, node, active)
    if probe is None:
        return None
    slot, examples, sizes = probe
    gains = set()
    for dims in sizes:
        out = run_kernel(op, node, examples, {slot: np.ones(dims)})
        if out is None or not out.size or not np.all(np.isfinite(out)):
            return None
        gains.add(float(np.abs(out).max()))
    return gains.pop() if len(gains) == 1 else None


MEAN_PROBE_OUTPUTS = 64
"""Output elements :func:`mean_count` checks at each size at least (drawing again where the
output is smaller): an output whose N times is not a sum of whole codes (1.5 times a pair's
sum) still lands on an integer for half the draws."""


def mean_count(graph: Graph, node: Node, op: Operator, active: set[str]) -> int | None:
    """The count N by which ``node``'s output times N is, on integer inputs, the sum of the
    input elements each output element reads, each input element read by one output element,
    N the ratio of its one activation input's elements to its output's (a mean of N
    elements: a GlobalAveragePool, a ReduceMean over fixed axes). Run on integer codes at the
    input's example shape and again with every free dimension grown; None unless N is the same
    both times and the output times N is integers whose total is the input's (a mean over a
    free axis, a sequence's, has no N that holds at run time; an average pool whose padded
    windows count fewer cells divides by several, and one of kernel 2 and stride 3 reads a
    third of its input twice over: N 3, the windows 2). A declaration's sum has coefficients
    >= 0 (:func:`.rules.is_element_sum`), so outputs times N that are integers on random
    codes, with the input's total, are sums of whole codes. None too when the kernel cannot
    run."""
    probe = _two_sizes(graph, node, active)
    if probe is None:
        return None
    slot, examples, sizes = probe
    rng = np.random.default_rng(0)
    counts = set()
    for dims in sizes:
        checked = 0
        while checked < MEAN_PROBE_OUTPUTS:
            codes = rng.integers(-127, 128, dims).astype(np.float64)
            out = run_kernel(op, node, examples, {slot: codes})
            if out is None or not out.size or codes.size % out.size:
                return None
            count = codes.size // out.size
            counts.add(count)
            summed = out * count
            if not (np.allclose(summed, np.round(summed), rtol=0, atol=1e-6)
                    and abs(float(np.round(summed).sum()) - float(codes.sum())) < 0.5):
                return None
            checked += out.size
    return counts.pop() if len(counts) == 1 and min(counts) >= 2 else None


def _two_sizes(graph: Graph, node: Node, active: set[str]
               ) -> tuple[int, list, set[tuple[int, ...]]] | None:
    """``node``'s one activation slot, its example inputs, and two shapes for that input:
    the example's and the same with every dimension the graph leaves free grown (each the
    same where none is free); None without one activation input, examples or a stated
    rank, or where the grown input would be too large."""
    slots = [slot for slot, name in enumerate(node.inputs) if name in active]
    examples = example_inputs(graph, node, active)
    if len(slots) != 1 or examples is None:
        return None
    shape = np.shape(examples[slots[0]])
    stated = graph.shape_of(node.inputs[slots[0]]) or ()
    grown = tuple(d if isinstance(s, int) and s > 0 else 2 * d + 1
                  for d, s in zip(shape, stated))
    if len(grown) != len(shape) or math.prod(grown) > MAX_FOLDED_ELEMENTS:
        return None
    return slots[0], examples, {shape, grown}


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a probe's output ``a`` is ``b`` up to float rounding: the same shape, at least
    one element (an empty output tells nothing; a model whose input declares a dimension of 0
    had stopped audit with numpy's error about the maximum of an empty array, a fuzz run),
    and every element within 1e-6 relative or 1e-9 of b's largest magnitude plus 1."""
    return a.shape == b.shape and a.size > 0 and bool(
        np.allclose(a, b, rtol=1e-6, atol=1e-9 * (np.abs(b).max() + 1)))


def _first(result):
    return result[0] if isinstance(result, (list, tuple)) else result


def _cast(values: list, least: type = np.float64) -> list:
    """The float values in float64, or with ``least`` float32, those narrower (float16) in it
    and the others as they are; the rest unchanged."""
    return [None if v is None else np.asarray(v, np.promote_types(least, np.asarray(v).dtype))
            if np.issubdtype(np.asarray(v).dtype, np.floating) else v for v in values]


def along(values, axis: int, ndim: int) -> np.ndarray:
    """``values`` (one per channel) shaped to broadcast along ``axis`` of an ``ndim``-axis
    array."""
    values = np.asarray(values)
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def divided_along(value: np.ndarray, factors, axis: int) -> np.ndarray:
    """``value`` with its channels along ``axis`` divided by ``factors``, in ``value``'s own
    type (the factors are float64; a weight or activation keeps the graph's type)."""
    value = np.asarray(value)
    return (value / along(factors, axis, value.ndim)).astype(value.dtype, copy=False)
