"""Output-aware weight rounding: round a layer's weights to minimise the error of its output on
the calibration data, not of the weights themselves, and correct the bias by what is left.

A node proved linear in its weights computes y_c = X w_c (+ b_c) per output channel c, with X
the matrix of input patches (rows: sample and output position; columns: the weights of one
channel). X is found numerically, without knowing the operator: the node's own kernel runs
with a weight whose output channels are the unit vectors e_1..e_K, so channel k of that
output is column k of X; a check that X w_c reproduces the kernel's output with the real
weights guards it (a failed check means nearest rounding, never a wrong model).

From X the engine keeps H = X^T X and the column means m. Rounding then follows GPTQ/OPTQ
(Frantar et al., 2023): weights are rounded one column at a time, and each rounding error is
spread over the columns not yet rounded through the inverse of H, so that ||X (w_q - w)||^2
stays small. Bias correction (Nagel et al., 2019) then subtracts the remaining expected output
error m . (w_q - w) from each channel's bias. Both are deterministic.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..catalog.kernels.precision import at_least_single
from ..catalog.operator import Operator
from ..graph import Graph, Node, OperatorTable, run_graph
from ..graph.ort_runner import OrtRunner, ort_runner
from .data import batches

BATCH = 4  # samples per float run: the patches of one batch are held at once (16 held 6.4 GB
# at peak on EfficientNet-Lite1's 240 x 240 crops, 4 hold 2.3 GB; its logit SQNR moved by
# -0.1 dB, as a large feature map's H now comes from 8 crops, not 16, within MAX_ROWS)
DAMPING = 0.01  # of the mean diagonal of H, added to it (GPTQ's default)
# Bounds on the work per node (a larger layer keeps nearest rounding, a longer sample stops
# adding rows): H is MAX_COLUMNS^2 floats and rounding costs channels * MAX_COLUMNS^2.
MAX_COLUMNS = 1024
MAX_ROWS = 1 << 16
# A node whose channels read patches of their own is probed with K outputs per channel: at most
# MAX_CHANNEL_COLUMNS of them, and MAX_CHANNEL_ROWS rows (H per channel is only K x K).
MAX_CHANNEL_COLUMNS = 1 << 15
MAX_CHANNEL_ROWS = 1 << 13
# Columns rounded between two updates of the rest (GPTQ's lazy batch updates; GPTQ's own block
# is 128). Within a block each column's error is spread over the block's later columns one by
# one, a pass over (block - i) x channels numbers per column; past it, one matrix product. At
# 16 the per-column passes shrink 8-fold and all-MiniLM-L6-v2's 24 layers round in 0.42 s
# against 0.75 s, to the same codes (blocks of 8 to 128 all gave them).
OPTQ_BLOCK = 16
# The most columns of a node whose channels each have their own H that are rounded all
# channels at once (_optq_channels: no block updates, every column's error spread at once).
CHANNEL_OPTQ_COLUMNS = 128


@dataclass(frozen=True)
class WeightTarget:
    """Where a node's weights sit: input ``slot``, the weight axis running along the output
    channels, the output axis it feeds, and the bias slots (cleared while probing)."""

    slot: int
    weight_axis: int
    out_axis: int
    bias_slots: tuple[int, ...]


@dataclass
class LayerStats:
    """H = X^T X / rows and the column means of the input patches X of one node; per channel
    ((channels, K, K) and (channels, K)) when each channel reads patches of its own."""

    hessian: np.ndarray
    mean: np.ndarray


def weight_matrix(weight: np.ndarray, axis: int) -> np.ndarray:
    """The weights as rows per output channel: (channels, K)."""
    return np.moveaxis(np.asarray(weight, dtype=np.float64), axis, 0).reshape(
        weight.shape[axis], -1)


def from_matrix(matrix: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Inverse of :func:`weight_matrix`."""
    moved = (shape[axis], *(d for a, d in enumerate(shape) if a != axis))
    return np.moveaxis(matrix.reshape(moved), 0, axis)


def patches(op: Operator, node: Node, inputs: list, target: WeightTarget,
            check: bool = True) -> np.ndarray | None:
    """The input patches X (rows, K) of ``node`` on ``inputs``, or None when the node's
    output is not X times its weights (checked against the kernel unless ``check`` is
    False)."""
    weight = np.asarray(inputs[target.slot], dtype=np.float64)
    columns = weight.size // weight.shape[target.weight_axis]
    if columns > MAX_COLUMNS:
        return None
    other = tuple(d for a, d in enumerate(weight.shape) if a != target.weight_axis)
    basis = np.moveaxis(np.eye(columns).reshape(columns, *other), 0, target.weight_axis)
    probed = _cleared(inputs, target)
    probed[target.slot] = basis
    try:
        unit = np.asarray(_first(op.run_onnx(probed, node.kernel_attrs)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - a kernel that refuses the probe: nearest rounding
        return None
    if unit.ndim <= target.out_axis or unit.shape[target.out_axis] != columns:
        return None
    x = np.moveaxis(unit, target.out_axis, -1).reshape(-1, columns)
    return x if not check or reproduces(op, node, inputs, target, x) else None


def reproduces(op: Operator, node: Node, inputs: list, target: WeightTarget,
               x: np.ndarray) -> bool:
    """Whether X times the weights is the kernel's output with the real weights: X (rows, K)
    read by every output channel, or X_c (channels, rows, K) by channel c alone."""
    weight = np.asarray(inputs[target.slot], dtype=np.float64)
    try:
        real = np.asarray(_first(op.run_onnx(_cleared(inputs, target), node.kernel_attrs)),
                          dtype=np.float64)
    except Exception:  # noqa: BLE001
        return False
    if real.ndim <= target.out_axis:
        return False
    y = np.moveaxis(real, target.out_axis, -1).reshape(-1, real.shape[target.out_axis])
    matrix = weight_matrix(weight, target.weight_axis)
    predicted = x @ matrix.T if x.ndim == 2 else np.einsum("crk,ck->rc", x, matrix)
    return predicted.shape == y.shape and bool(np.allclose(
        predicted, y, rtol=1e-6, atol=1e-9 * (np.abs(y).max(initial=0.0) + 1e-30)))


def channel_patches(op: Operator, node: Node, inputs: list, target: WeightTarget,
                    check: bool = True) -> np.ndarray | None:
    """The input patches X_c (channels, rows, K) of a node whose output channel c is X_c w_c
    with patches of its own (a grouped or depthwise convolution), or None when the output is
    not that (checked against the kernel unless ``check`` is False). The probe replaces each
    output channel's weights by the K unit vectors, so the kernel computes K channels per
    original one, in the original's place (its group, for a grouped convolution)."""
    weight = np.asarray(inputs[target.slot], dtype=np.float64)
    channels = weight.shape[target.weight_axis]
    columns = weight.size // channels
    if channels * columns > MAX_CHANNEL_COLUMNS:
        return None
    other = tuple(d for a, d in enumerate(weight.shape) if a != target.weight_axis)
    basis = np.tile(np.eye(columns), (channels, 1)).reshape(channels * columns, *other)
    probed = _cleared(inputs, target)
    probed[target.slot] = np.moveaxis(basis, 0, target.weight_axis)
    try:
        unit = np.asarray(_first(op.run_onnx(probed, node.kernel_attrs)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - a kernel that refuses the probe: nearest rounding
        return None
    if unit.ndim <= target.out_axis or unit.shape[target.out_axis] != channels * columns:
        return None
    x = np.moveaxis(unit, target.out_axis, -1).reshape(-1, channels, columns)
    x = np.moveaxis(x, 1, 0)
    return x if not check or reproduces(op, node, inputs, target, x) else None


class ChannelPatchSource:
    """:func:`channel_patches` of one node a few samples at a time (their probe holds K
    outputs per channel), until MAX_CHANNEL_ROWS rows per batch.

    As :class:`PatchSource` does for shared patches, the probe runs on the activation
    input's element numbers once per chunk shape: where it shows that X_c is a selection of
    that input's elements (a depthwise convolution's windows, 0 at padding; the input itself
    for a product by one constant per channel) and the selection reproduces the kernel's
    output on the first chunk of that shape, every chunk of that shape is read by it, in
    float64 (the probe's values exactly): no kernel run per chunk. Measured on
    EfficientNet-Lite1, whose 16 depthwise convolutions were probed chunk by chunk: 34 of
    the 59 s its weight rounding's statistics took; on all-MiniLM-L6-v2, a smoothed GELU's
    per-channel 0.5 took 2.6 s in probes."""

    def __init__(self, op: Operator, node: Node, target: WeightTarget, graph: Graph,
                 probes: ProbeMemo | None = None) -> None:
        self.op, self.node, self.target = op, node, target
        self.probes = probes
        self.batched = [slot for slot, name in enumerate(node.inputs)
                        if name and name not in graph.initializers]
        # chunk shape -> the selection that reads it (_channel_shifts), or None: probed
        # chunk by chunk
        self._selections: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray] | None] = {}

    def __call__(self, inputs: list) -> np.ndarray | None:
        """X (channels, rows, K) of the batch ``inputs``, or None when the node's output is
        not that."""
        count = len(inputs[self.batched[0]]) if self.batched else 1
        parts, rows, start, step = [], 0, 0, 1
        while start < count and rows < MAX_CHANNEL_ROWS:
            x = self._chunk([v[start:start + step] if slot in self.batched else v
                             for slot, v in enumerate(inputs)])
            if x is None:
                return None
            parts.append(x)
            rows += x.shape[1]
            start += step
            # few rows per sample (a small feature map): probe several samples at once
            step = max(1, min(count - start,
                              MAX_CHANNEL_ROWS // (4 * max(1, x.shape[1] // step))))
        return np.concatenate(parts, axis=1)

    def _chunk(self, chunk: list) -> np.ndarray | None:
        key = tuple(np.shape(chunk[self.batched[0]])) if len(self.batched) == 1 else None
        if key is not None and key not in self._selections:
            self._selections[key] = None
            for shifts in (self.probes or ProbeMemo()).shifts(self.op, self.node, chunk,
                                                              self.target, self.batched[0]):
                x = _shifted_read(chunk[self.batched[0]], *shifts)
                if reproduces(self.op, self.node, chunk, self.target, x):
                    self._selections[key] = shifts
                    return x
        shifts = self._selections.get(key) if key is not None else None
        if shifts is not None:
            return _shifted_read(chunk[self.batched[0]], *shifts)
        return channel_patches(self.op, self.node, chunk, self.target)


def _shifted_read(value: np.ndarray, base: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """What select() reads by the selection ``base`` + ``offsets[c]`` for channel c
    (:func:`_channel_shifts`), in float64: element base + offsets[c] of the flat ``value``, 0
    where base is -1. Where the offsets step evenly (a depthwise convolution's channels, one
    map apart) it is read through a strided view of the values, one row per channel, with
    the index of one channel: building the (channels, rows, K) index had cost as much as the
    read itself (EfficientNet-Lite1: 3.8 and 4.3 s)."""
    flat = np.ascontiguousarray(value, dtype=np.float64).reshape(-1)
    step = int(offsets[1] - offsets[0]) if len(offsets) > 1 else 0
    if offsets[0] != 0 or step < 0 or not np.array_equal(
            offsets, step * np.arange(len(offsets), dtype=offsets.dtype)):
        return _gather(flat, np.where(base >= 0, base + 1 + offsets[:, None, None], 0))
    rows = np.lib.stride_tricks.as_strided(
        flat, shape=(len(offsets), flat.size - step * (len(offsets) - 1)),
        strides=(step * flat.itemsize, flat.itemsize), writeable=False)
    # every axis indexed by an array: the result is then C-ordered, as the gather's (with a
    # slice for the channels numpy lays it out channels last, and a product of X laid out
    # otherwise sums in another order: the codes would change; np.take copies the whole
    # strided view first)
    channels = np.arange(len(offsets)).reshape(-1, *(1,) * base.ndim)
    read = rows[channels, np.maximum(base, 0)[None]]
    padding = base < 0
    if padding.any():
        read[:, padding] = 0.0
    return read


def _channel_shifts(index: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(base, offsets) such that channel c's selection is base + offsets[c] where base reads
    an element and -1 (padding) elsewhere, or None when the channels' selections are not
    shifts of the first one. Why: a selection per channel is as large as the patches
    themselves (a 15 x 15 map's 672 channels of 5 x 5 windows: 30 MB a sample), and
    EfficientNet-Lite1 holds a dozen such nodes open at once (1.2 GB more at peak); a
    depthwise convolution's windows, and a per-channel factor's elements, are the same
    positions shifted by the channel's place."""
    base = index[0].copy()  # not a view: that would keep every channel's selection alive
    valid = base >= 0
    if not valid.any():
        return None
    first = int(np.flatnonzero(valid)[0])
    offsets = index.reshape(len(index), -1)[:, first] - base.reshape(-1)[first]
    shifted = np.where(valid, base + offsets[:, None, None], -1)
    return (base, offsets) if np.array_equal(shifted, index) else None


def selection(op: Operator, node: Node, inputs: list, target: WeightTarget, slot: int,
              probes: ProbeMemo | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(the flat element indices of input ``slot`` (-1: padding, read as 0) that
    :func:`patches` reads as X, found by running it on the input's element numbers; X read
    so, in the input's own type); None when X is not such a selection or, read so, does not
    reproduce the kernel's output on ``inputs`` (checked for every node: ``probes`` shares
    only the probe on the numbers)."""
    value = np.asarray(inputs[slot])
    for index in (probes or ProbeMemo()).indices(op, node, inputs, target, slot):
        x = select(value, index)
        if reproduces(op, node, inputs, target, x):
            return index, x
    return None


def _probed_index(probe: Callable[..., np.ndarray | None], op: Operator, node: Node,
                  inputs: list, target: WeightTarget, slot: int) -> np.ndarray | None:
    """The selection ``probe`` (:func:`patches` or :func:`channel_patches`) shows on input
    ``slot``'s element numbers, unchecked; None when what it reads is not elements of that
    input."""
    numbered = _numbered(inputs, slot)
    if numbered is None:
        return None
    numbers = probe(op, node, numbered, target, check=False)
    if numbers is None or not np.array_equal(numbers, np.round(numbers)) or (
            numbers.min(initial=0) < 0 or numbers.max(initial=0) > numbered[slot].size):
        return None
    return numbers.astype(np.int64) - 1


class ProbeMemo:
    """The probes on element numbers of one calibration (:func:`selection`,
    :class:`ChannelPatchSource`), shared by the nodes on which the probe is the same
    computation: the same operator and attributes, weights and input of the same shapes,
    the same values in the other slots. Its result depends on nothing else (the probe
    replaces the weights by unit vectors and the input by its element numbers), so a hit is
    what the probe would give; each node still checks that the selection reproduces its own
    output. Why: repeated blocks probe the same computation again (ResNet-50's bottlenecks,
    EfficientNet's depthwise convolutions of a stage, a transformer's query, key, value and
    output projections in every layer), K times a layer's own work each time; and the probe
    of a batch is first made on its first sample alone (:meth:`indices`), the batch's
    probe being the same work once per sample. A selection of shared patches is held weakly
    (one goes when the last node reading by it is done with it); a channel probe's is kept
    as its shifts (:func:`_channel_shifts`), a few numbers a row."""

    def __init__(self) -> None:
        self._selections: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._kept: dict[tuple, Any] = {}  # channel shifts, and the probes that found none
        self._lock = threading.Lock()

    def indices(self, op: Operator, node: Node, inputs: list, target: WeightTarget,
                slot: int) -> Iterator[np.ndarray]:
        """Candidate selections of :func:`patches` on ``inputs``, for the caller to check in
        turn: where the input holds several samples, the first sample's selection repeated
        for each (a node that treats its samples alike reads a batch's patches sample after
        sample: a probe of one sample's work), then the whole batch's probe."""
        if (cut := _first_sample(inputs, slot)) is not None:
            samples, first = cut
            repeated = self._found(
                ("repeated", samples, *_probe_key(patches, op, node, inputs, target, slot)),
                lambda: _repeated(_probed_index(patches, op, node, first, target, slot),
                                  samples, np.size(first[slot])), weak=True)
            if repeated is not None:
                yield repeated
        whole = self._found(_probe_key(patches, op, node, inputs, target, slot),
                            lambda: _probed_index(patches, op, node, inputs, target, slot),
                            weak=True)
        if whole is not None:
            yield whole

    def shifts(self, op: Operator, node: Node, inputs: list, target: WeightTarget,
               slot: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Candidate :func:`_channel_shifts` of :func:`channel_patches` on ``inputs``, for the
        caller to check in turn, as :meth:`indices` gives them: the first sample's repeated,
        then the whole chunk's."""
        if (cut := _first_sample(inputs, slot)) is not None:
            samples, first = cut
            one = self._found(_probe_key(channel_patches, op, node, first, target, slot),
                              lambda: _shifts_of(channel_patches, op, node, first, target, slot))
            if one is not None:
                yield _repeated(one[0], samples, np.size(first[slot])), one[1]
        whole = self._found(_probe_key(channel_patches, op, node, inputs, target, slot),
                            lambda: _shifts_of(channel_patches, op, node, inputs, target, slot))
        if whole is not None:
            yield whole

    def _found(self, key: tuple, probe: Callable[[], Any], weak: bool = False) -> Any:
        """``probe()``, from an earlier call of the same ``key`` where one was made (and,
        ``weak``, its result is still held elsewhere)."""
        with self._lock:
            known = self._kept.get(key, self._selections.get(key, self))
        if known is not self:
            return known
        found = probe()
        with self._lock:
            if found is None or not weak:
                self._kept[key] = found
            else:
                self._selections[key] = found
        return found


def _first_sample(inputs: list, slot: int) -> tuple[int, list] | None:
    """(how many samples input ``slot`` holds along its first axis, the inputs with that one
    cut to its first sample), where it holds more than one; else None."""
    samples = np.shape(inputs[slot])[:1]
    if not samples or samples[0] <= 1:
        return None
    return samples[0], [value[:1] if position == slot else value
                        for position, value in enumerate(inputs)]


def _shifts_of(probe: Callable[..., np.ndarray | None], op: Operator, node: Node,
               inputs: list, target: WeightTarget, slot: int
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_channel_shifts` of ``probe``'s :func:`_probed_index`."""
    index = _probed_index(probe, op, node, inputs, target, slot)
    return None if index is None else _channel_shifts(index)


def _repeated(index: np.ndarray | None, samples: int, size: int) -> np.ndarray | None:
    """A selection of one sample's ``size`` elements (-1: padding) as that of ``samples``
    such samples in a row: each sample's rows, in turn, reading its own elements."""
    if index is None:
        return None
    shifted = [np.where(index >= 0, index + sample * size, -1) for sample in range(samples)]
    return np.concatenate(shifted, axis=0)


def _probe_key(probe: Callable, op: Operator, node: Node, inputs: list, target: WeightTarget,
               slot: int) -> tuple:
    """What the probe on element numbers computes from: the probe, the operator (by
    identity), the node's attributes, the target, and per input slot its shape and type,
    where the probe replaces it (the numbered input, the weights) or clears it (a bias), else
    its values too."""
    def described(position: int, value: Any) -> tuple | None:
        if value is None or position in target.bias_slots:
            return None
        array = np.asarray(value)
        if position in (slot, target.slot):
            return array.dtype.str, array.shape
        return _frozen(array)

    return (probe.__name__, id(op), _frozen(node.kernel_attrs), target,
            tuple(described(position, value) for position, value in enumerate(inputs)))


def _frozen(value: Any) -> Any:
    """``value`` (an attribute, an array) as a hashable key that equals another's only where
    the values are the same; a value of another kind (a subgraph) as a key no other equals."""
    if isinstance(value, np.ndarray):
        return "array", value.dtype.str, value.shape, value.tobytes()
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, (str, bytes, int, float, bool, type(None), np.generic)):
        return type(value).__name__, value
    return object()


def _numbered(inputs: list, slot: int) -> list | None:
    """``inputs`` with the one in ``slot`` replaced by its element numbers 1..n (float64,
    exact), for a probe that shows which elements the kernel reads; None when that input is
    not float."""
    value = np.asarray(inputs[slot])
    if not np.issubdtype(value.dtype, np.floating) or value.size >= 2**52:
        return None
    numbered = list(inputs)
    numbered[slot] = np.arange(1, value.size + 1, dtype=np.float64).reshape(value.shape)
    return numbered


class PatchSource:
    """The input patches of one node, batch after batch.

    The kernel probe of :func:`patches` run on the activation input's element numbers
    1..n shows whether X is a selection of that input's elements (im2col for a Conv, the
    rows themselves for a MatMul; 0 where it reads padding). When it is, and the selection
    of the first batch of that shape reproduces the kernel's output with the real weights,
    every batch of that shape is read by the selection: the probe (K times the layer's own
    work) runs once per shape, not once per batch. Otherwise each batch is probed and
    checked."""

    def __init__(self, op: Operator, node: Node, target: WeightTarget,
                 active: Sequence[int], probes: ProbeMemo | None = None) -> None:
        self.op, self.node, self.target = op, node, target
        self.active = list(active)
        self.probes = probes
        self.selections: dict[tuple[int, ...], np.ndarray | None] = {}
        # per shape: the selection's flat indices shifted past select()'s leading 0, or None
        # where X is the input's own elements in order (a MatMul's rows: no gather at all)
        self._gathers: dict[tuple[int, ...], np.ndarray | None] = {}
        self._signatures: dict[tuple[int, ...], tuple] = {}  # per shape: see signature()

    def __call__(self, inputs: list) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(X, the selection that read it or None), or None when the node's output is not
        X times its weights."""
        key = None
        if len(self.active) == 1 and inputs[self.active[0]] is not None:
            key = tuple(np.shape(inputs[self.active[0]]))
            if key not in self.selections:
                found = selection(self.op, self.node, inputs, self.target, self.active[0],
                                  self.probes)
                self.selections[key] = None if found is None else found[0]
                if found is not None:  # X read by the check: the same as _read's
                    return found[1], found[0]
        index = self.selections.get(key) if key is not None else None
        if index is not None:
            return self._read(np.asarray(inputs[self.active[0]]), key, index), index
        x = patches(self.op, self.node, inputs, self.target)
        return None if x is None else (x, None)

    def signature(self, inputs: list) -> tuple:
        """The shape and bytes of the selection that reads ``inputs`` (taken once per shape:
        nodes reading one input by the same selection share its X^T X per batch)."""
        key = tuple(np.shape(inputs[self.active[0]]))
        if key not in self._signatures:
            index = self.selections[key]
            self._signatures[key] = index.shape, index.tobytes()
        return self._signatures[key]

    def _read(self, value: np.ndarray, key: tuple[int, ...], index: np.ndarray) -> np.ndarray:
        """:func:`select` with what it computes per call kept per shape."""
        if key not in self._gathers:
            identity = index.size == value.size and np.array_equal(
                index.reshape(-1), np.arange(value.size))
            self._gathers[key] = None if identity else index + 1
        gather = self._gathers[key]
        return value.reshape(index.shape) if gather is None else _gather(value, gather)

def select(value: np.ndarray, index: np.ndarray) -> np.ndarray:
    """X read from ``value`` by a selection: element ``index`` of the flat input, 0 at -1
    (in the input's own float type: the products of H then run at its precision, summed in
    float64 across batches)."""
    return _gather(np.asarray(value), index + 1)


def _gather(value: np.ndarray, shifted: np.ndarray) -> np.ndarray:
    """Elements ``shifted - 1`` of the flat ``value``, 0 at 0 (np.take: the same elements as
    indexing by ``shifted``, 15-20% faster on a 3 x 3 convolution's windows)."""
    return np.take(np.concatenate([np.zeros(1, dtype=value.dtype), value.reshape(-1)]), shifted)


class LayerInputs:
    """Each target node's H and column means, accumulated batch by batch from the float
    values of its inputs (memory stays at one batch, holding only the layer inputs). Nodes
    reading the same patches (the query, key and value projections of one input) share one
    H per batch, computed once. A node whose channels each read patches of their own
    (depthwise) gets one H per channel, from a few samples at a time. A node stops taking
    rows at MAX_ROWS (MAX_CHANNEL_ROWS per channel)."""

    def __init__(self, graph: Graph, table: OperatorTable,
                 targets: Mapping[str, WeightTarget]) -> None:
        self.graph, self.targets = graph, dict(targets)
        self.nodes = {node.name: node for node in graph.nodes if node.name in targets}
        # the tensors a batch must hold: the target nodes' inputs that are not constants
        self.wanted = {name for node in self.nodes.values() for name in node.inputs
                       if name and name not in graph.initializers}
        self._sums: dict[str, list] = {}
        self._failed: set[str] = set()
        self._own: set[str] = set()  # nodes whose channels have patches of their own
        probes = ProbeMemo()
        self._sources = {
            name: PatchSource(table.find(node, graph), node, targets[name],
                              [s for s, n in enumerate(node.inputs) if n in self.wanted],
                              probes)
            for name, node in self.nodes.items()}
        self._channel_sources = {
            name: ChannelPatchSource(source.op, self.nodes[name], targets[name], graph, probes)
            for name, source in self._sources.items()}

    def _open(self, name: str) -> bool:
        limit = MAX_CHANNEL_ROWS if name in self._own else MAX_ROWS
        return name not in self._failed and self._sums.get(name, (0, 0, 0))[2] < limit

    @property
    def full(self) -> bool:
        """Whether no node takes more rows (every one failed or reached its limit)."""
        return not any(self._open(name) for name in self.nodes)

    def add(self, values: Mapping[str, np.ndarray]) -> None:
        """One batch: ``values`` holds every tensor of :attr:`wanted` on it."""
        for task in self.tasks([values]):
            task()

    def tasks(self, batches: Sequence[Mapping[str, np.ndarray]]) -> list[Callable[[], None]]:
        """The work of adding ``batches`` (each holding every tensor of :attr:`wanted`), in
        order: one task per group of nodes whose patches come from the same activation (the
        only nodes that can share an X^T X), to run on threads at once (engine/parallel.py).
        Each node's sums take the same rows in the same order whatever the tasks' order, so
        the result does not depend on it. Why: the calibration pass had one task for all the
        layers, 25 of EfficientNet-Lite1's 29 core-seconds there, on one core (its whole run
        43.9 -> 30.3 s; two groups' patches are held at once: its peak 2.40 -> 2.71 GB)."""
        groups: dict[str, list[str]] = {}
        for name, node in self.nodes.items():
            if self._open(name):
                active = self._sources[name].active
                groups.setdefault(node.inputs[active[0]] if active else name, []).append(name)
        return [partial(self._add_batches, names, batches) for names in groups.values()]

    def _add_batches(self, names: list[str], batches: Sequence[Mapping[str, np.ndarray]]
                     ) -> None:
        """Add ``batches`` to the nodes ``names`` (one group of :meth:`tasks`)."""
        for values in batches:
            if not any(self._open(name) for name in names):
                break
            shared: dict[tuple, tuple] = {}  # (input, selection) -> this batch's X^T X, sum, rows
            for name in names:
                if self._open(name):
                    self._add_node(name, values, shared)
        for name in names:
            if not self._open(name):  # its selections (a large map's: 100 MB) go with it
                self._sources.pop(name, None)
                self._channel_sources.pop(name, None)

    def _add_node(self, name: str, values: Mapping[str, np.ndarray],
                  shared: dict[tuple, tuple]) -> None:
        """Add one batch's rows of node ``name``; ``shared``: the batch's X^T X so far, by
        the input and selection that read it."""
        node = self.nodes[name]
        inputs = [None if not n else self.graph.initializers.get(n, values.get(n))
                  for n in node.inputs]
        found = None if name in self._own else self._sources[name](inputs)
        if found is None:
            self._own.add(name)
            x = self._channel_sources[name](inputs)
            if x is None:
                self._failed.add(name)
                return
            x = at_least_single(x)
            self._add(name, np.swapaxes(x, 1, 2) @ x, x.sum(axis=1, dtype=np.float64),
                      x.shape[1])
            return
        x, index = found
        source = self._sources[name]
        key = None if index is None else (node.inputs[source.active[0]],
                                          source.signature(inputs))
        if key is None or key not in shared:
            part = (gram(x), x.sum(axis=0, dtype=np.float64), x.shape[0])
            if key is not None:
                shared[key] = part
        else:
            part = shared[key]
        self._add(name, *part)

    def _add(self, name: str, hessian: np.ndarray, total: np.ndarray, rows: int) -> None:
        """Add a batch's X^T X, column sums and row count to node ``name``'s; its sums are
        its own arrays (the first batch's copied: a part may be shared by nodes reading the
        same patches), added to in place (a new 1536 x 1536 float64 array each batch was
        most of all-MiniLM-L6-v2's layer gathering: 3.6 GB of fresh pages)."""
        known = self._sums.get(name)
        if known is None:
            self._sums[name] = [np.array(hessian), np.array(total), rows]
            return
        known[0], known[1] = _added(known[0], hessian), _added(known[1], total)
        known[2] += rows

    def stats(self) -> dict[str, LayerStats]:
        """H / rows and the column means of every node that took rows and never failed."""
        return {name: LayerStats(h / rows, total / rows)
                for name, (h, total, rows) in self._sums.items()
                if name not in self._failed and rows}


def layer_stats(graph: Graph, table: OperatorTable, sample: Mapping[str, np.ndarray],
                targets: Mapping[str, WeightTarget],
                runner: OrtRunner | None = None) -> dict[str, LayerStats]:
    """Run the float graph over ``sample`` in batches of BATCH (in onnxruntime: ``runner``,
    the calibration's session, when it outputs the layer inputs, else a session of its own;
    or the catalog's kernels when onnxruntime cannot load the graph) and gather each target
    node's :class:`LayerStats` (:class:`LayerInputs`). The calibration pass gathers them
    itself when told the targets (``calibrate(weight_layers=...)``): this is the run for a
    calibration made without them."""
    layers = LayerInputs(graph, table, targets)
    if not layers.nodes:
        return {}
    # the float inputs of the layers come from onnxruntime when it loads the graph
    fetched = layers.wanted - set(graph.input_names)
    if runner is None or not runner.serves(graph, fetched):
        runner = ort_runner(graph, fetched)
    for batch in batches(dict(sample), graph, BATCH):
        if layers.full:
            break
        values = None if runner is None else runner.run(batch, fetched)
        if values is None:
            runner = None
            values = run_graph(graph, batch, table, want=layers.wanted)
        values.update(batch)
        layers.add(values)
    return layers.stats()


def _added(sum_so_far: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``sum_so_far + part``, into ``sum_so_far`` where that holds the sum's type."""
    if np.result_type(sum_so_far, part) != sum_so_far.dtype:
        return sum_so_far + part
    sum_so_far += part
    return sum_so_far


def gram(x: np.ndarray) -> np.ndarray:
    """X^T X in float64, computed in ``x``'s own precision (float32 at least) on ``x`` scaled
    by a power of two (exact) to a peak near 1: a float32 product of inputs above about 1e19
    overflows to inf (calibration data near the float32 maximum), and OPTQ then rounds every
    weight to NaN."""
    x = at_least_single(x)
    peak = float(np.max(np.abs(x), initial=0.0))
    if not np.isfinite(peak) or peak == 0.0:
        return (x.T @ x).astype(np.float64)
    unit = np.ldexp(1.0, -np.frexp(peak)[1])
    scaled = x * x.dtype.type(unit) if np.issubdtype(x.dtype, np.floating) else x * unit
    product = (scaled.T @ scaled).astype(np.float64)
    product /= unit * unit  # in place: the product is its own (a 1536 x 1536 one is 19 MB)
    return product


def optq_round(weights: np.ndarray, scale: np.ndarray, levels: int,
               hessian: np.ndarray) -> np.ndarray:
    """Integer codes for ``weights`` (channels, K) at per-channel ``scale``, rounded column
    by column with each error spread over the remaining columns (GPTQ/OPTQ), in the order of
    decreasing H diagonal; clipped to [-levels, levels]. A hessian of shape (channels, K, K)
    gives each channel its own."""
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1) * np.ones((weights.shape[0], 1))
    if np.shape(weights)[1] == 1:
        # one column: its rounding error has no other column to go to, so OPTQ's codes are
        # the nearest ones (a per-channel factor, a smoothed GELU's 0.5: 1536 channels, each
        # its own 1 x 1 H, took 0.6 s of MiniLM's quantization one channel at a time)
        return np.clip(np.round(np.asarray(weights, dtype=np.float64) * scale), -levels, levels)
    if np.ndim(hessian) == 3:
        if np.shape(weights)[1] <= CHANNEL_OPTQ_COLUMNS:
            together = _optq_channels(weights, scale[:, 0], levels, hessian)
            if together is not None:
                return together
        return np.concatenate([optq_round(weights[c:c + 1], scale[c], levels, hessian[c])
                               for c in range(weights.shape[0])])
    h = np.array(hessian, dtype=np.float64)
    work = np.array(weights, dtype=np.float64)
    # An input never seen non-zero in calibration may be non-zero later: its weights are
    # rounded to nearest (H there is the identity, so no error flows to or from them).
    dead = np.diag(h) <= 0
    h[dead, :] = 0.0
    h[:, dead] = 0.0
    h[dead, dead] = 1.0
    order = np.argsort(-np.diag(h), kind="stable")
    h = h[np.ix_(order, order)]
    work = work[:, order]
    h += DAMPING * np.mean(np.diag(h)) * np.eye(h.shape[0])
    try:
        inverse = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H^-1
    except np.linalg.LinAlgError:
        return np.clip(np.round(weights * scale), -levels, levels)
    # column-major: one weight column (all channels) is one contiguous row of work_t, so the
    # per-column steps below run on contiguous memory (the products are the same numbers)
    work_t = np.ascontiguousarray(work.T)
    codes_t = np.empty_like(work_t)
    columns = work_t.shape[0]
    row_scale = scale[:, 0]
    # GPTQ's lazy batch updates: the errors of a block of columns reach the columns after it
    # in one matrix product (the same arithmetic, in fewer passes over the weights); the
    # per-column steps write into buffers of their own (a fresh array per step and column
    # was a third of the loop)
    spread = np.empty_like(work_t[:OPTQ_BLOCK])  # one column's error for the block's rest
    for start in range(0, columns, OPTQ_BLOCK):
        stop = min(start + OPTQ_BLOCK, columns)
        block = work_t[start:stop]
        errors = np.empty_like(block)
        for i in range(stop - start):
            q = codes_t[start + i]
            _clipped(np.round(np.multiply(block[i], row_scale, out=q), out=q), levels)
            error = np.divide(q, row_scale, out=errors[i])
            np.subtract(block[i], error, out=error)
            error /= inverse[start + i, start + i]
            block[i + 1:] -= np.multiply(inverse[start + i, start + i + 1:stop, None], error,
                                         out=spread[:stop - start - i - 1])
        if stop < columns:  # (rest, block) @ (block, channels): the rest's rows as they lie
            work_t[stop:] -= inverse[start:stop, stop:].T @ errors
    result = np.empty_like(work)
    result[:, order] = codes_t.T
    return result


def _clipped(codes: np.ndarray, levels: int) -> np.ndarray:
    """``np.clip(codes, -levels, levels)`` in place, without np.clip's Python-level checks
    (the same values; OPTQ clips one column per call, thousands of times a layer)."""
    np.maximum(codes, -levels, out=codes)
    return np.minimum(codes, levels, out=codes)


def _optq_channels(weights: np.ndarray, scale: np.ndarray, levels: int,
                   hessian: np.ndarray) -> np.ndarray | None:
    """:func:`optq_round` of each channel with its own H (channels, K, K), every channel at
    once: the same arithmetic on each channel's numbers as one channel at a time (K at most
    one block), vectorised across channels, where a depthwise convolution's 3 x 3 or 5 x 5
    windows had a Python loop per channel and column (EfficientNet-Lite1: 14 s). None when
    some H has no Cholesky factor (the caller then takes the channels one at a time)."""
    h = np.array(hessian, dtype=np.float64)
    work = np.array(weights, dtype=np.float64)
    columns = work.shape[1]
    diagonal = np.arange(columns)
    dead = np.ascontiguousarray(h[:, diagonal, diagonal]) <= 0
    h[dead[:, :, None] | dead[:, None, :]] = 0.0
    h[:, diagonal, diagonal] = np.where(dead, 1.0, h[:, diagonal, diagonal])
    order = np.argsort(-h[:, diagonal, diagonal], axis=1, kind="stable")
    h = np.take_along_axis(np.take_along_axis(h, order[:, :, None], axis=1),
                           order[:, None, :], axis=2)
    work = np.take_along_axis(work, order, axis=1)
    mean = np.mean(np.ascontiguousarray(h[:, diagonal, diagonal]), axis=1)
    h[:, diagonal, diagonal] += (DAMPING * mean)[:, None]
    try:
        inverse = np.swapaxes(np.linalg.cholesky(np.linalg.inv(h)), 1, 2)
    except np.linalg.LinAlgError:
        return None
    work_t = np.ascontiguousarray(work.T)  # (K, channels): one column of every channel a row
    codes_t = np.empty_like(work_t)
    for i in range(columns):
        q = np.clip(np.round(work_t[i] * scale), -levels, levels)
        codes_t[i] = q
        errors = (work_t[i] - q / scale) / inverse[:, i, i]
        work_t[i + 1:] -= inverse[:, i, i + 1:].T * errors
    result = np.empty_like(work)
    np.put_along_axis(result, order, codes_t.T, axis=1)
    return result


def bias_shift(weights: np.ndarray, codes: np.ndarray, scale: np.ndarray,
               mean: np.ndarray) -> np.ndarray:
    """Per channel, the expected output error m . (w_q - w) of the rounded weights: the amount
    to subtract from the bias (``mean`` of shape (channels, K): each channel's own)."""
    rounded = codes / np.asarray(scale, dtype=np.float64).reshape(-1, 1)
    if np.ndim(mean) == 2:
        return np.sum((rounded - weights) * mean, axis=1)
    return (rounded - weights) @ mean


def _first(result):
    return result[0] if isinstance(result, (list, tuple)) else result


def _cleared(inputs: list, target: WeightTarget) -> list:
    """The inputs in float64, with the bias slots absent."""
    return [None if s in target.bias_slots else _float64(v) for s, v in enumerate(inputs)]


def _float64(value):
    if value is None:
        return None
    array = np.asarray(value)
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array
