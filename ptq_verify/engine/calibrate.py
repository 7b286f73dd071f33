"""Calibration: run the float graph over the calibration set and record each activation's
statistics; a clipping method turns them into a range."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from ..graph import Graph, Node, OperatorTable, activation_tensors, require_graph, run_graph
from ..graph.executor import IndexBeyondTable, KernelGap
from ..graph.ort_runner import OrtRunner, ort_failure, ort_runner
from ..progress import progress_bar
from .data import (
    BudgetBatches,
    Feeds,
    batch_axis_of,
    check_feeds,
    join,
    samples_in,
    slice_along,
    take,
)
from .float_run import sample_count
from .parallel import cores, in_background, mapped
from .plan import plan_model
from .probe import fit_examples_to_data
from .rounding import BATCH, LayerInputs, LayerStats, WeightTarget
from .rules import divisor_inputs
from .saturation import (
    beyond_codes,
    kept_positions,
    masked_sums,
    static_part,
    unselected_saturation,
)
from .stats import TensorStats

if TYPE_CHECKING:
    from ..catalog.operator import Operator

METHODS = ("auto", "maxabs", "percentile", "mse")
# "auto" clips MSE-optimally where a tensor's range has fewer steps than this (4-bit tensors),
# and keeps the max-abs range elsewhere. Measured on the digits benchmark: MSE clipping gains
# 0.5-3 dB on every model at 4 bits but loses up to 0.7 dB at 6 and 8 bits on some, where
# test values pass the calibrated range more often than its estimate expects.
AUTO_MSE_LEVELS = 16
# Calibration samples kept as they are, for what needs the data and not only ranges
# (output-aware weight rounding and bias correction in quantize).
SAMPLE_LIMIT = 256
# Bytes of activations one onnxruntime batch may return (every activation is an output: a
# transformer's take tens of MB per sample), which sets the batch size after the first. Two
# batches are held at once (one settled while onnxruntime computes the next); the peak stayed
# where it was (EfficientNet-Lite1 2.47 -> 2.49 GB, all-MiniLM-L6-v2 1.07 -> 1.03 GB). Halved,
# it would cut EfficientNet's to 2.09 GB, but batches of other sizes add the layer inputs'
# sums in another order, and its file would change (82.0% -> 81.6% top-1, 16.5 -> 16.6 dB).
BATCH_BYTES = 512 << 20
# The same while the pass also gathers weight layers' inputs: each batch's statistics and
# layer inputs are then worked on by threads at once, with copies of their own (batches of
# all-MiniLM-L6-v2's texts held to this budget peak at 1.1 GB; to BATCH_BYTES, at 1.9 GB);
# the batches after the rounding's samples keep the size it set, so the peak does not grow
# with the number of samples.
GATHER_BYTES = 64 << 20


@dataclass(frozen=True)
class LayerGathering:
    """The weight layers a calibration pass gathered input statistics for (``targets``) and
    what it found (``stats``: a node whose patches could not be read has none)."""

    targets: Mapping[str, WeightTarget]
    stats: dict[str, LayerStats]


@dataclass
class Calibration:
    """Statistics per activation tensor and the clipping method that reads them."""

    stats: dict[str, TensorStats]
    method: str = "auto"
    percent: float = 99.99
    samples: int = 0
    sample: dict[str, np.ndarray] = field(default_factory=dict)  # first SAMPLE_LIMIT inputs,
    # whole batches where the model fixes a larger one
    # sums where a static operand saturated some positions (engine/saturation.py), and the
    # largest finite |value| at those positions, for the readers that take codes of them
    saturated: set[str] = field(default_factory=set)
    dropped_reach: dict[str, float] = field(default_factory=dict)
    # the onnxruntime session that computed the statistics (every activation an output),
    # reused for the layer inputs weight rounding needs; None when the numpy kernels ran
    runner: OrtRunner | None = field(default=None, repr=False, compare=False)
    # activations that take inf or NaN on the calibration data, which a later node of the
    # model removes (no graph output does): no code holds them, so they stay in float
    # (quantize keeps them, as --keep-float-tensor does); tensor -> how many, where
    non_finite: dict[str, str] = field(default_factory=dict)
    # the input statistics of the weight layers named by calibrate(weight_layers=...), from
    # this pass over ``sample`` (output-aware rounding reads them; None: not gathered, and
    # quantize runs the float graph over the sample for them)
    layers: LayerGathering | None = field(default=None, repr=False, compare=False)
    # the float graph's outputs on its first float_run.sample_count samples, from this pass
    # (the written model's output note compares against them; None: not all were kept)
    reference: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # the tensors named by calibrate(keep=...) on those samples (smoothing measures its
    # strengths on them; None: not all were kept)
    kept: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # each of those tensors' largest |x| per channel of its last axis over the samples after
    # them, at the earlier and at the later half of their positions (smoothing compares its
    # strengths on ranges its sample did not set: halves_peaks; a tensor is missing where no
    # sample came after)
    held_out_peaks: dict[str, np.ndarray] = field(default_factory=dict, repr=False,
                                                  compare=False)
    # the width calibrate was told (its ``bits``; None: any), which decided whether the
    # statistics hold histograms: quantize refuses a width whose clipping reads one that was
    # not gathered, naming both widths (else a bare ValueError from deep in the clipping)
    bits: int | None = None
    # the graph's constants as calibrated (weak references: no copy is held), so that
    # quantize refuses a graph changed since (equalize, absorb or smooth after calibrate:
    # the same tensor names, ranges gone stale, and the plan built on them in silence)
    weights: dict[str, weakref.ref] | None = field(default=None, repr=False, compare=False)
    # the largest |x| of each static operand of an aligned sum on the calibration data (a
    # mask, or data: a Cast of hashed ids), which quantize checks against int32 at the sum's
    # scale, where the integer format holds it (quantize's _static_beyond_int32)
    static_peaks: dict[str, float] = field(default_factory=dict)

    def changed_weights(self, graph: Graph) -> list[str]:
        """The constants of ``graph`` that are not the arrays it was calibrated with (none
        when the calibration did not record them)."""
        if self.weights is None:
            return []
        return sorted(name for name, value in graph.initializers.items()
                      if (held := self.weights.get(name)) is None or held() is not value)

    def clip(self, tensor: str, levels: int) -> float:
        """The clipping range (|x| <= range) of ``tensor`` for ``levels`` positive codes."""
        stats = self.stats[tensor]
        if self.method == "auto":
            return stats.mse_clip(levels) if levels < AUTO_MSE_LEVELS else stats.max_abs
        if self.method == "percentile":
            return stats.percentile(self.percent)
        if self.method == "mse":
            return stats.mse_clip(levels)
        return stats.max_abs


    def channel_clip(self, tensor: str, axis: int, levels: int) -> np.ndarray | None:
        """Per-channel ranges (max |x| of each channel along ``axis``) where the method keeps
        max-abs ranges at ``levels``; None where it clips, or no such statistics exist."""
        stats = self.stats.get(tensor)
        if stats is None or self._clips(levels) or not stats.channel_peaks:
            return None
        return stats.channel_peaks.get(axis)

    def extremes(self, tensor: str, levels: int) -> tuple[float, float] | None:
        """(least, largest) calibrated value of ``tensor`` where the method keeps max-abs
        ranges at ``levels``; None where it clips (its ranges are of |x|)."""
        stats = self.stats.get(tensor)
        if stats is None or self._clips(levels):
            return None
        return float(stats.minimum), float(stats.maximum)

    def unseen_extremes(self, tensor: str, levels: int) -> tuple[float, float] | None:
        """:meth:`.stats.TensorStats.unseen_extremes` of ``tensor`` where the method keeps
        max-abs ranges at ``levels`` (as :meth:`extremes`); None where it clips or they are
        not known."""
        stats = self.stats.get(tensor)
        if stats is None or self._clips(levels):
            return None
        return stats.unseen_extremes()

    def _clips(self, levels: int) -> bool:
        return self.method in ("percentile", "mse") or (
            self.method == "auto" and levels < AUTO_MSE_LEVELS)


def _non_finite(value: np.ndarray) -> str:
    """How many of ``value``'s elements are NaN and how many infinite, in words."""
    value = np.asarray(value)
    nan = int(np.count_nonzero(np.isnan(value)))
    infinite = int(np.count_nonzero(np.isinf(value)))
    counts = [f"{count} {what}" for count, what in ((nan, "NaN"), (infinite, "infinite"))
              if count]
    return f"{' and '.join(counts)} of its {value.size} values"


def _first_non_finite(graph: Graph, known: Mapping[str, str],
                      *batches: dict[str, np.ndarray]) -> str:
    """Where the float model first computes NaN (or, with none, inf) on this batch: the first
    node (in graph order) whose output ``known`` words so or one of ``batches`` holds so,
    worded for the refusal of a non-finite graph output; "" where none is found or a graph
    input holds them (the refusal names it). NaN is looked for first since an additive mask
    is -inf by design. A new-user trial's attention over a sample of padding alone (a Softmax
    of a row all -inf) was refused naming only the output, as if the data were at fault,
    where the model computes NaN from finite ids."""
    def holds(name: str, test: Callable[[np.ndarray], np.ndarray], word: str) -> bool:
        if word in known.get(name, ""):
            return True
        value = next((batch[name] for batch in batches if name in batch), None)
        return (value is not None and np.issubdtype(np.asarray(value).dtype, np.floating)
                and bool(test(value).any()))

    if any(holds(name, np.isnan, "NaN") or holds(name, np.isinf, "infinite")
           for name in graph.input_names):
        return ""
    def unrecorded(name: str) -> bool:
        return name not in known and not any(name in batch for batch in batches)

    for test, word in ((np.isnan, "NaN"), (np.isinf, "infinite")):
        for node in graph.nodes:
            constant = _non_finite_constant(graph, node, test)
            # (a constant blamed where the node passes it on, or where its output went
            # unrecorded: a Clip to [0, inf], as exporters write a Relu, computes no inf)
            if constant is not None and any(name and (holds(name, test, word) or unrecorded(
                    name)) for name in node.outputs):
                return (f"; {node.label} reads constant {constant!r}, which holds "
                        f"{_non_finite(graph.initializers[constant])}: the model's own "
                        "values, not the data's (mend them, or export the model again)")
            if any(name and holds(name, test, word) for name in node.outputs):
                return (f"; the float model computes {word} first at {node.label}, from "
                        "finite inputs: leave out the samples it computes them on, or make the "
                        "model guard them")
    return ""


def _non_finite_constant(graph: Graph, node: Node, test: Callable[[np.ndarray], np.ndarray]
                         ) -> str | None:
    """The first constant ``node`` reads that holds a value ``test`` finds (NaN, inf), or
    None: a weight holding NaN had been worded as NaN the node computes 'from finite inputs',
    with the advice to leave out samples, which no sample causes."""
    for name in node.inputs:
        value = graph.initializers.get(name) if name else None
        if (value is not None and np.issubdtype(np.asarray(value).dtype, np.floating)
                and bool(test(value).any())):
            return name
    return None


def _kept_names(keep: Iterable[str], graph: Graph) -> list[str]:
    """The tensor names ``calibrate(keep=...)`` was given (one name alone taken as one), each
    a model input or a node's output; one that is neither is refused in one line: a
    misspelt name had been dropped in silence, and one string read as its letters."""
    names = [keep] if isinstance(keep, str) else list(keep)
    known = graph.producers().keys() | set(graph.input_names)
    if unknown := [name for name in names if name not in known]:
        raise UserError(f"calibrate: keep names {unknown[0]!r}, which is no input of the "
                        "model and no node's output")
    return names


def _where_in_batch(value: np.ndarray, done: int, size: int) -> str:
    """Which calibration samples hold ``value``'s inf or NaN: the batch's (``size`` samples
    after ``done``), and the first one's index where ``value`` has a batch axis."""
    value = np.asarray(value)
    where = f"in samples {done} to {done + size - 1}"
    if value.ndim and len(value) == size:
        bad = ~np.isfinite(value.reshape(size, -1)).all(axis=1)
        if bad.any():
            return f"{where}, the first in sample {done + int(np.argmax(bad))}"
    return where


def needs_histogram(method: str, bits: int | None) -> bool:
    """Whether ``method`` reads a histogram of |x| at ``bits`` (None: any width): max-abs
    needs only the extremes, and so does ``auto`` above AUTO_MSE_LEVELS steps."""
    if method == "maxabs":
        return False
    return method != "auto" or bits is None or (1 << (bits - 1)) - 1 < AUTO_MSE_LEVELS


RUNTIMES = ("onnxruntime", "numpy")
"""What :func:`calibrate` runs the float graph with (``runtime=``)."""


def check_method(method: str, percent: float) -> None:
    """Refuse an unknown method or a percent outside (0, 100] (the CLI calls it before any
    work: smoothing a transformer runs tens of seconds before calibration would)."""
    if method not in METHODS:
        raise UserError(f"calibration method {method!r}: choose one of {', '.join(METHODS)}")
    if not 0 < percent <= 100:
        raise UserError(f"percentile {percent}: must be in (0, 100]")


def calibrate(
    graph: Graph,
    data: Mapping[str, np.ndarray] | np.ndarray,
    method: str = "auto",
    *,
    bits: int | None = None,
    percent: float = 99.99,
    batch_size: int = 64,
    operators: Mapping[str, Operator] | OperatorTable | None = None,
    progress: bool = False,
    runtime: str = "onnxruntime",
    weight_layers: Mapping[str, WeightTarget] | None = None,
    keep: Iterable[str] = (),
) -> Calibration:
    """Run ``data`` (one array per graph input, batch first) through ``graph`` in float and
    record a :class:`TensorStats` for every activation tensor (with a histogram of |x| when
    ``method`` at ``bits`` reads one; None: whatever the width). ``runtime="numpy"`` runs the
    catalog's kernels instead of onnxruntime (also the fallback for graphs onnxruntime
    cannot load). Memory: two batches' wanted tensors at a time, one settled while
    onnxruntime computes the next (each of at most ``batch_size`` samples, fewer when their
    tensors would pass BATCH_BYTES, or GATHER_BYTES with ``weight_layers``, from the first
    batch to the last); statistics are streamed, so the peak does not grow with the samples.
    ``weight_layers`` (:func:`.quantize.weight_layers`): the same pass gathers those nodes'
    input statistics on ``sample`` for output-aware rounding, so that quantize needs no
    float run of its own (on all-MiniLM-L6-v2 that run took 3 of 36 s). The layers take
    their inputs in slices of the rounding's :data:`.rounding.BATCH` samples (what bounds
    their patches' memory), so their sums add the rows in the rounding's own order; where
    the inputs have no batch axis to cut along, batches hold at most BATCH samples, and
    fewer where this pass's budget takes fewer (the sums then add the same rows in another
    order). ``keep``: activations whose values on the first samples the result holds
    (``Calibration.kept``) with their per-position extremes (``TensorStats.extremes``), for
    smoothing after this pass (engine/smoothed_calibration.py). ``progress``: a bar on stderr
    (a terminal's) over the samples; off by default, as every other step's (it had been the
    one step of a library call to draw on a terminal unasked)."""
    check_method(method, percent)
    if bits is not None:
        from .quantize import check_bits  # (quantize imports this module)

        bits = check_bits(bits)
    if runtime not in RUNTIMES:  # (anything but "numpy" had silently meant onnxruntime)
        raise UserError(f"calibration runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise UserError(f"calibration batch_size {batch_size!r}: must be an integer of 1 or more")
    require_graph(graph, "calibrate")
    table = OperatorTable.of(operators)
    table.require_all(graph.nodes, graph)
    feeds = check_feeds(data, graph, "calibration data")
    fit_examples_to_data(graph, feeds)  # (the weight probes quantize runs after)
    active = activation_tensors(graph, table)
    histogram = needs_histogram(method, bits)
    keep = [name for name in _kept_names(keep, graph) if name in active]
    plans = plan_model(graph, table)
    divisors = divisor_inputs(graph, table, plans)
    stats = {name: TensorStats(**({} if histogram else {"histogram": None}),
                               **({"extremes": ()} if name in keep else {}),
                               least_abs=name in divisors)
             for name in active}
    sums = masked_sums(graph, table, active, plans)
    wanted = {name for masked in sums.values() for name in masked.static}
    carriers = {name for masked in sums.values() for name in masked.carried}
    held: dict[str, np.ndarray] = {}  # this batch's static operands of those sums
    static_peaks: dict[str, float] = {}  # their largest |x| on all batches so far
    layers = None if weight_layers is None else LayerInputs(graph, table, weight_layers)
    gathered = set() if layers is None else layers.wanted
    layer_inputs: dict[str, np.ndarray] = {}  # this batch's inputs of those weight layers
    pending: dict[str, np.ndarray] = {}  # this batch's masked sums, taken in graph order
    plain: dict[str, np.ndarray] = {}  # this batch's other values, from onnxruntime
    outputs: dict[str, list] = {name: [] for name in (*graph.output_names, *keep)}
    kept_set = {name for name in keep if len(graph.shape_of(name) or ()) >= 2}
    held_out: dict[str, np.ndarray] = {}  # kept tensors' peaks after the first samples
    reference_count = sample_count(graph)
    saturated: set[str] = set()
    dropped_reach: dict[str, float] = {}
    non_finite: dict[str, str] = {}

    def observe(name: str, value: np.ndarray) -> None:
        if name in outputs and done < reference_count:
            outputs[name].append(value)
        if name in kept_set and done + len(value) > reference_count:
            peak = halves_peaks(value[max(0, reference_count - done):])
            known = held_out.get(name)
            held_out[name] = peak if known is None else np.maximum(known, peak)
        if name in gathered:
            layer_inputs[name] = value
        if name in wanted:
            held[name] = value
            if value.size and np.issubdtype(value.dtype, np.floating):
                peak = max(-float(value.min()), float(value.max()))
                # (np.maximum: a NaN, which comparisons drop, stays)
                static_peaks[name] = float(np.maximum(static_peaks.get(name, 0.0), peak))
        if name in sums:
            pending[name] = value
        elif name in stats:
            if runner is None:  # the numpy kernels free each value once its readers ran
                record(name, value)
            else:
                plain[name] = value

    def record(name: str, value: np.ndarray, peaks: tuple | None = None,
               whole: bool = True) -> None:
        """Add ``value`` to ``name``'s statistics (``whole``: it holds the batch's samples
        along its first axis, not a masked sum's kept positions, flattened)."""
        try:
            stats[name].update(value, peaks, size if whole else None)
        except ValueError:  # (Clip to [+inf, -inf], exp overflow, a Softmax of a row all
            # -inf: a decoder's mask over left padding, guarded by IsNaN after it)
            non_finite.setdefault(
                name, f"{_non_finite(value)} {_where_in_batch(value, done, size)}")
            if name in graph.output_names:  # nothing removes them: the model's own output
                # (this batch's inputs may not be recorded yet: the settling threads take
                # the tensors largest first, so they are looked at here)
                given = next((f"; from input {i!r}: " + (non_finite.get(i) or (
                    f"{_non_finite(plain[i])} {_where_in_batch(plain[i], done, size)}"))
                    for i in graph.input_names if i in non_finite or (
                        i in plain and np.issubdtype(np.asarray(plain[i]).dtype, np.floating)
                        and not np.isfinite(plain[i]).all())), "")
                raise UserError(
                    f"{graph.source}: tensor {name!r} takes infinite or NaN values on the "
                    f"calibration data ({non_finite[name]}{given}"
                    f"{_first_non_finite(graph, non_finite, plain, pending, held)}); "
                    "quantizing needs finite activations") from None

    def settle_batch(nbytes: int) -> None:
        """Record the batch's values (``nbytes`` of them from onnxruntime), settle its masked
        sums and add the weight layers' inputs: independent work, spread over the cores
        (engine/parallel.py), the layers first (all-MiniLM-L6-v2, a pass: 0.75 s of layer
        inputs, 0.65 of masked sums, 1.1 of other values; EfficientNet-Lite1: 25 s of layer
        inputs, one task per group of layers reading one activation). The other values go
        in a few runs of about equal bytes, not a task each: 213 tasks a batch on MiniLM
        spent 0.12 of the process's 8.96 core-seconds handing them to threads."""
        names = sorted(plain, key=lambda name: -plain[name].size)
        tasks = [settle_masked_sums] + [partial(_each, record, part, plain)
                                        for part in _parts(names, plain, 4 * cores())]
        if layers is not None and done < rounding_samples:
            tasks[:0] = layers.tasks(layer_batches())
        mapped(lambda task: task(), tasks, nbytes)
        plain.clear()

    def layer_batches() -> list[dict[str, np.ndarray]]:
        """The weight layers' inputs, in slices of the rounding's BATCH samples where every
        one of them has the batch along its first axis (its patches are then held a slice at
        a time, and the sums add the rows layer_stats's batches would), else whole."""
        if not sliced:
            return [layer_inputs]
        stop = min(size, rounding_samples - done)
        return [{name: value[start : min(start + BATCH, stop)]
                 for name, value in layer_inputs.items()} for start in range(0, stop, BATCH)]

    def settle_masked_sums() -> None:
        """Positions where a static operand saturates a sum set no range; the values there
        travel on to the sums that read this one (engine/saturation.py)."""
        carried: dict[str, np.ndarray] = {}
        for name in sums:  # graph order: a carrier is settled before its readers
            if name not in pending:
                continue
            value = pending.pop(name)
            # its extremes, taken once for the test of saturation and its statistics
            peaks = (stats[name].channel_extremes(value) if value.size and np.issubdtype(
                value.dtype, np.floating) else None)
            kept = kept_positions(value, static_part(sums[name], held, graph, value, carried),
                                  None if peaks is None else (float(peaks[1].min()),
                                                              float(peaks[0].max())))
            if kept is not None and sums[name].chosen and _within_codes(value, kept, bits):
                kept = None  # a pad constant codes can hold beside the rest: it sets the range
            if kept is not None:
                saturated.add(name)
                if name in carriers:
                    carried[name] = np.where(kept, 0, value)
                dropped = np.abs(value[~kept])
                finite = dropped[np.isfinite(dropped)]
                if finite.size:
                    dropped_reach[name] = max(dropped_reach.get(name, 0.0), float(finite.max()))
                value, peaks = value[kept], None
            record(name, value, peaks, kept is None)

    total = samples_in(feeds, graph)
    # the float runs go through onnxruntime (tensors observed as extra outputs), or through
    # the catalog's kernels when onnxruntime cannot load the graph
    rounding_samples = min(total, SAMPLE_LIMIT)
    runner = ort_runner(graph, (stats.keys() | wanted | gathered) - set(graph.input_names)) if (
        runtime == "onnxruntime") else None
    bar = progress_bar(total=total, desc="calibrating", unit="sample", progress=progress)
    plan = BudgetBatches(feeds, graph, batch_size, BATCH_BYTES, first=BATCH)
    done = size = 0  # samples before this batch, and in it (for messages)
    gathering = 0  # the batch size gathering the layers' inputs takes (0: none gathered)
    with bar:
        # onnxruntime runs the next batch on a thread of its own while this one's values are
        # settled here (it lets Python go while it runs): all-MiniLM-L6-v2's pass 4.1 -> 3.5 s
        batches = iter(plan)
        batch = next(batches, None)
        ahead = _ahead(runner, batch)
        while batch is not None:
            size = samples_in(batch, graph)
            for name, value in batch.items():
                observe(name, value)
            computed = None if ahead is None else ahead.result()
            if computed is None:
                refused = runner is not None  # onnxruntime loaded the graph, not these data
                runner = None
                try:
                    run_graph(graph, batch, table, observe=observe)
                except IndexBeyondTable as err:
                    raise err.in_samples(done) from None
                except KernelGap:
                    raise
                except UserError as err:
                    failure = ort_failure(graph, batch)
                    if not refused and failure is None:
                        raise
                    raise _on_data(err, feeds, done, size, failure) from None
            else:
                for name, value in computed.items():
                    observe(name, value)
            nbytes = sum(v.nbytes for v in computed.values()) if computed else 0
            del computed  # (its values stay where observe put them, until settled)
            # whether the layer inputs are added in slices (add_layer_inputs)
            sliced = all(np.shape(value)[:1] == (size,) for value in layer_inputs.values())
            plan.held(nbytes, size)
            if layers is not None and not layers.full and done + size < rounding_samples:
                # a batch's layer inputs cut into slices need no smaller batch than
                # GATHER_BYTES holds (the digits CNN: 4 runs of 64 samples, not 64 of 4);
                # whole ones, the rounding's samples (what bounds their patches' memory)
                gathering = max(BATCH, GATHER_BYTES * size // max(nbytes, 1)) if sliced \
                    else BATCH
            if gathering:
                # the batches after the gathering stay as small, so that the peak is the
                # same for any number of samples: grown to BATCH_BYTES, all-MiniLM-L6-v2's
                # rose from 1.07 GB on 128 texts to 1.77 GB on 512 (now 1.04 GB on 128 to
                # 2048), and were no faster (2048 texts: 61 s, now 42 s; same file)
                plan.at_most(gathering)
            batch = next(batches, None)
            ahead = _ahead(runner, batch)
            settle_batch(nbytes)
            held.clear()
            layer_inputs.clear()
            bar.update(size)
            done += size
    saturated |= unselected_saturation(
        {name: sums[name] for name in sums.keys() - saturated}, graph, table,
        {name: stats[name].max_abs for name in sums if name in stats}, bits, static_peaks)
    # whole batches where the model fixes one larger than the limit (a graph network's
    # 1024 nodes): 256 of them had failed the written model's check in onnxruntime
    sample = take(feeds, graph, 0, sample_count(graph, SAMPLE_LIMIT))
    return Calibration(stats, method, percent, total, sample, saturated, dropped_reach,
                       runner, non_finite,
                       None if layers is None else LayerGathering(weight_layers, layers.stats()),
                       _joined_outputs(graph, {name: outputs[name]
                                               for name in graph.output_names},
                                       reference_count),
                       _joined_outputs(graph, {name: outputs[name] for name in keep},
                                       reference_count),
                       held_out, bits, weight_references(graph), static_peaks)


def weight_references(graph: Graph) -> dict[str, weakref.ref] | None:
    """Weak references to ``graph``'s constants (see ``Calibration.weights``); None where one
    cannot be referenced so (not a numpy array)."""
    try:
        return {name: weakref.ref(value) for name, value in graph.initializers.items()}
    except TypeError:
        return None


def _within_codes(value: np.ndarray, kept: np.ndarray, bits: int | None) -> bool:
    """Whether every finite value of ``value`` off the ``kept`` positions lies within
    2^(n-1) - 1 times the kept values' reach (n = ``bits``, 8 when not given): a selected
    parameter (a pad constant at -30 beside activations within +-3) that codes can still hold
    beside the rest, as quantize would count it back (``_saturated_reach``), so it sets the
    range as any value does and the tensor keeps the codes it had (lopsided or per channel);
    only a constant beyond that (-1e4, finfo.min) or infinite is left out."""
    dropped = np.abs(value[~kept])
    finite = dropped[np.isfinite(dropped)]
    if finite.size < dropped.size:
        return False
    reach = float(np.max(np.abs(value[kept]), initial=0.0))
    return not beyond_codes(float(finite.max(initial=0.0)), reach, bits)


def _each(record: Callable, names: list[str], values: dict[str, np.ndarray]) -> None:
    """``record`` each of ``names`` with its value, in order."""
    for name in names:
        record(name, values[name])


def _parts(names: list[str], values: dict[str, np.ndarray], count: int) -> list[list[str]]:
    """``names`` (largest first) cut into at most ``count`` runs of about equal bytes."""
    total = sum(values[name].nbytes for name in names)
    parts, part, size = [], [], 0
    for name in names:
        part.append(name)
        size += values[name].nbytes
        if size * count >= total * (len(parts) + 1):
            parts.append(part)
            part = []
    return parts + ([part] if part else [])


def _on_data(err: UserError, feeds: Feeds, done: int, size: int,
             failure: str | None) -> UserError:
    """``err`` (a node the catalog's kernels cannot run on a batch that onnxruntime could not
    run either) with the samples, that onnxruntime fails on them too, in its own words
    (``failure``, where it said them: :func:`.graph.ort_runner.ort_failure`), and every
    input's shape: the data may disagree with the model or with each other (a mask one
    position short of the ids and the past keys), or the model may not run as it was exported
    (torch's legacy exports of Mamba, a Tile onnxruntime refuses, and of Canine, a MatMul of
    shapes that do not broadcast: onnxruntime fails on their own export inputs)."""
    shapes = ", ".join(f"{name} {tuple(value.shape)}" for name, value in feeds.items())
    said = f" ({failure})" if failure else ""
    return UserError(f"{err.args[0]}, on calibration samples {done} to {done + size - 1}, "
                     f"which onnxruntime fails on too{said}: the data disagree with the model "
                     f"or with each other, or the model does not run as exported (inputs: "
                     f"{shapes})")


def halves_peaks(value: np.ndarray) -> np.ndarray:
    """Each channel's largest |x| (``value`` batch first, channels last) over the earlier and
    over the later half of its first axis past the batch, stacked (2, channels), where it has
    one besides the channels (a sequence's positions); both the whole value's otherwise.
    Smoothing's held-out ranges: a strength must hold at positions other than those that set
    the ranges, on one side at least (padding, at the end of right-padded texts and the start
    of left-padded ones, stands for no real token there). Why: a new-user trial's
    random-weight Marian decoder file, its hidden states led by the sinusoidal position table,
    calibrated on targets of 8 tokens: held-out samples at the same positions passed 6
    smoothings, and the file gave 22.0 dB at target position 11 where unsmoothed it gave 37.9
    (now 37.9: one of them passes). The later half alone, mostly padding in right-padded
    texts, refused 16 of all-MiniLM-L6-v2's 17 smoothings (mean cosine 0.9962 -> 0.9876); the
    earlier half alone refused those of the left-padded decoder fixtures."""
    value = np.asarray(value)
    if value.ndim < 3 or value.shape[1] < 2:
        return np.stack([channel_peaks(value)] * 2)
    middle = (value.shape[1] + 1) // 2
    return np.stack([channel_peaks(value[:, :middle]), channel_peaks(value[:, middle:])])


def channel_peaks(value: np.ndarray) -> np.ndarray:
    """The largest |x| of each channel of ``value``'s last axis (rank >= 2)."""
    value = np.asarray(value)
    return np.abs(value.reshape(-1, value.shape[-1])).max(axis=0, initial=0.0)


def _ahead(runner: OrtRunner | None, batch: Feeds | None) -> Future | None:
    """``runner.run(batch)`` started in the background; None without a runner or batch."""
    return None if runner is None or batch is None else in_background(runner.run, batch)


def _joined_outputs(graph: Graph, parts: dict[str, list], count: int
                    ) -> dict[str, np.ndarray] | None:
    """Each output's batches joined along its batch axis (:func:`batch_axis_of`) and cut at
    ``count`` samples; None when an output has none, or no batch axis to join along (a 0-d
    output, or one whose axis 0 is not the batch: a Reshape to a fixed [2, -1] gives batches
    of other widths). The tensors are joined side by side (engine/parallel.py): the pass's
    last serial step, on fresh pages (all-MiniLM-L6-v2's smoothing candidates, 32 texts:
    150 MB, 0.18 s on one core)."""
    axes = {name: batch_axis_of(graph, name) for name in parts}

    def others(value, axis: int) -> tuple:  # the shape but for the batch axis
        shape = np.shape(value)
        return shape[:axis] + shape[axis + 1:]

    if any(not values or any(np.ndim(v) <= axes[name] or others(v, axes[name])
                             != others(values[0], axes[name]) for v in values)
           for name, values in parts.items()):
        return None
    return dict(zip(parts, mapped(
        lambda item: join(graph, *item)[slice_along(axes[item[0]], 0, count)],
        list(parts.items()),
        sum(np.asarray(v).nbytes for values in parts.values() for v in values))))

