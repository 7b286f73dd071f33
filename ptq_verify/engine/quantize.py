"""Quantization: normalise parameters and activations by each node's rule, and build the
n-bit model (integer weights, integer activations, float multipliers between them).

Formulation: every activation tensor t is held as integer codes q_t = round(x_t * S_t),
clipped to the signed range [-2^(n-1), 2^(n-1)-1] or, where the output is proved
non-negative, the unsigned range [0, 2^n-1]. A node with a scaling rule runs on the codes
with its parameters rescaled as the rule says; its raw output has the scale the rule gives
(times the weights' scale), and one scaling step requantizes it to S_out. A node without a
rule is compensated: its input codes are brought back to the float range (x = q / S), the
node runs in float, and its output is quantized again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import NamedTuple, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from ..catalog.operator import Operator
from ..errors import UserError
from ..graph import (
    Graph,
    Node,
    OperatorTable,
    activation_tensors,
    holds_integers,
    require_graph,
    slot_binding,
)
from ..graph.static import table_slots
from ..progress import progress_bar
from ..rules import Rule, RuleKind
from ..rules.per_channel import per_channel_rule
from ..wording import first_few
from .calibrate import Calibration
from .float_region import FloatRegions
from .invariant_regions import INVARIANT_REASON, invariant_regions
from .parallel import mapped
from .plan import Action, NodeAction, plan_model
from .probe import (
    along,
    channel_axes,
    example_channel_axes,
    example_inputs,
    example_shape,
    mean_count,
    ones_gain,
    run_kernel,
)
from .quantized import Code, NodeRecord, QuantizedModel
from .rounding import (
    WeightTarget,
    bias_shift,
    from_matrix,
    layer_stats,
    optq_round,
    weight_matrix,
)
from .rules import (
    input_params,
    is_copy,
    is_element_sum,
    is_elementwise,
    is_elementwise_unary,
    is_integer_polynomial,
    is_lattice_selection,
    is_monotone_selection,
    jumps,
    passes_codes_on,
    reads_no_elements,
    sum_coefficients,
    tensor_degrees,
    tensor_weight_slot,
    weight_layout,
)
from .static_alone import mark_static_alone, read_in_float_only
from .stats import LOPSIDED_GAIN
from .steps import DIVIDED_SUM_LIMIT, STATIC_LIMIT, IntegerParam, NodeStep, ScaleStep

MIN_BITS, MAX_BITS = 2, 16
BIAS_LIMIT = 2**31 - 1  # a bias is an int32 at its accumulator's scale
# Per-channel weight scales are capped so that the channel's bias stays within this fraction
# of BIAS_LIMIT (the rest is room for the bias correction's shift).
BIAS_HEADROOM = 0.5
FIXED_POINT_BITS = 16
# A negative-degree input (a divisor) closer to 0 than this many codes amplifies rounding
# error beyond the 8-bit level; the engine refuses rather than return a wrong network.
MIN_DIVISOR_CODES = 16
EXACT_FLOAT32 = 2.0**24  # float32 holds every integer below this exactly
# An aligned sum (Add) is taken at 2^4 times the finest input scale: the other inputs' rounding
# there costs 1/256 of the finest input's own rounding error, and the finest enters exactly.
ALIGN_HEADROOM = 16.0
# ... unless the integer sum could then leave float32's exact range (margin for constants).
ALIGNED_SUM_LIMIT = EXACT_FLOAT32 / 4
# A tensor is held with one scale per channel where that cuts its rounding noise power by this
# factor (2 bits) and every reader takes per-channel codes (docs/engine.md).
CHANNEL_GAIN = 16.0
# A channel whose calibrated range is below float32's resolution of the widest channel's
# (epsilon times it) is taken as 0 on all data, at the widest channel's scale: PP-OCRv4's
# recognizer has channels of all-zero weights and a bias of 1.9e-25, whose scale of 6.8e26 put
# the constant added after them beyond int32, and that sum of 240 channels ran in float.
NEGLIGIBLE_CHANNEL = float(np.finfo(np.float32).eps)
# A tensor whose calibrated range is lopsided around 0 takes 2^n codes over that range instead of
# the signed ones centred on 0 where its step is at least LOPSIDED_GAIN times finer (stats.py;
# docs/engine.md, lopsided ranges): about 2 dB of its rounding noise, against a range whose
# short side has only the room its calibration samples' scatter gives it (1.0 to 1.15 with that
# room: gains on most held-out rows, but up to -0.7 dB on MobileNetV2 at 8 and 16 samples;
# docs/benchmarks-real.md).
WEIGHT_CLIP_FRACTIONS = np.linspace(1.0, 0.5, 26)  # of a channel's max |w|; the max first
WEIGHT_ROUNDING = ("nearest", "optq")


_BEYOND_FLOAT32 = ("its parameter {!r} at the codes' scale leaves float32's range (overflows "
                   "or becomes 0)")


def _holds_in_float32(value, rescaled: np.ndarray) -> bool:
    """Whether ``rescaled`` (``value`` times a scale's power, in float64) is finite in float32
    and 0 only where ``value`` is: a LayerNorm's epsilon times the square of a scale of 1e23
    (activations near 1e-22) is inf there, and times that of 1e-28 it is 0, which would
    divide a constant row's 0 by 0."""
    with np.errstate(over="ignore"):
        narrow = np.asarray(rescaled).astype(np.float32)
    return bool(np.all(np.isfinite(narrow)) and np.all((narrow != 0) | (np.asarray(value) == 0)))


Answer = TypeVar("Answer")


def _bottom_up(root: str, after: Callable[[str], Iterable[str]],
               answer: Callable[[str, dict], Answer]) -> Answer:
    """``answer(root, found)``, where ``found`` holds ``answer`` of every tensor ``after`` gives
    for root, of every tensor ``after`` gives for those, and so on (a DAG walked downstream),
    each found first: a walk with a stack of its own, where recursion passed Python's limit on
    long chains of nodes (200 Relus)."""
    found: dict[str, Answer] = {}
    stack = [(root, False)]
    while stack:
        name, ready = stack.pop()
        if name in found:
            continue
        if ready:
            found[name] = answer(name, found)
        else:
            stack.append((name, True))
            stack.extend((later, False) for later in after(name) if later not in found)
    return found[root]


def check_bits(bits: int, what: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise UserError(f"{what} {bits!r}: must be an integer from {MIN_BITS} to {MAX_BITS}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise UserError(f"{what} {bits}: must be from {MIN_BITS} to {MAX_BITS}")
    return int(bits)


def check_calibration(graph: Graph, calibration: object, bits: int,
                      table: OperatorTable) -> None:
    """A UserError, before any work, unless ``calibration`` is what :func:`.calibrate` made of
    this ``graph`` for a width that can be quantized to ``bits`` bits. Each of these had
    failed deep inside instead: no Calibration (``None``, or the data themselves) an
    AttributeError, another model's calibration a KeyError or a refusal of one of this
    model's nodes, a calibration at 8 bits quantized to 4 a ValueError about histograms."""
    from .calibrate import needs_histogram

    if not isinstance(calibration, Calibration):
        raise UserError(f"quantize: calibration is {type(calibration).__name__}, not the "
                        "Calibration that calibrate(graph, data) returns: calibrate first")
    where = graph.source or "the graph"
    # (the sample may be left out: rounding then falls back to nearest, tests do so)
    unseen = sorted(activation_tensors(graph, table) - calibration.stats.keys())
    if unseen and calibration.stats:
        raise UserError(
            f"{where}: the calibration has no statistics of "
            f"{first_few([repr(name) for name in unseen], 4)}: "
            "it was made of another model, or of this graph before a change to it (equalize, "
            "absorb and smooth run before calibrate); calibrate this graph as it is")
    if changed := calibration.changed_weights(graph):
        raise UserError(
            f"{where}: constants changed since calibrate ran on this graph "
            f"({first_few([repr(name) for name in changed], 4)}): its calibrated ranges are "
            "stale; run equalize, absorb and smooth before calibrate, then calibrate again")
    if (calibration.bits is not None and needs_histogram(calibration.method, bits)
            and not needs_histogram(calibration.method, calibration.bits)):
        raise UserError(
            f"{where}: calibrated for {calibration.bits} bits, where clipping method "
            f"{calibration.method!r} reads no histogram, but quantized to {bits} bits, "
            f"where it reads one: calibrate(..., bits={bits}) (or bits=None: any width)")


def fixed_point(factor: np.ndarray, bits: int = FIXED_POINT_BITS) -> np.ndarray:
    """Round each multiplier to m * 2^-shift with m an integer of ``bits`` bits."""
    mantissa, exponent = np.frexp(np.asarray(factor, dtype=np.float64))
    return np.ldexp(np.round(mantissa * 2.0**bits), exponent - bits).astype(np.float32)


def quantize(
    graph: Graph,
    calibration: Calibration,
    bits: int = 8,
    *,
    per_channel: bool = True,
    fixed_point_multipliers: bool = False,
    integer_outputs: bool = False,
    operators: Mapping[str, Operator] | OperatorTable | None = None,
    override_rules: Mapping[str, Rule] | None = None,
    weight_rounding: str = "optq",
    bias_correction: bool = True,
    float_tensors: Iterable[str] = (),
    calibrated_unsigned: Iterable[str] = (),
    wide_sums: bool = True,
    symmetric: bool = False,
    progress: bool = False,
) -> QuantizedModel:
    """Build the ``bits``-bit model of ``graph`` from its calibration.

    ``weight_rounding="optq"`` rounds each weight node's integers to minimise its output error
    on the calibration sample (see :mod:`.rounding`); ``"nearest"`` rounds each weight alone.
    ``bias_correction`` subtracts the expected output error of the rounded weights from the
    node's bias. Both need ``calibration.sample`` and fall back to nearest rounding without it.
    ``float_tensors``: activations kept in float (mixed precision, :mod:`.sensitivity`): the
    nodes of each one's float region (:mod:`.float_region`) run in float.
    ``calibrated_unsigned``: activations held unsigned where their calibrated range starts at
    0 or above, although no proof says they are non-negative (bias absorption's shifted
    channels, :mod:`.absorb`: below the calibrated minimum they saturate at 0, as any value
    beyond a calibrated range saturates).
    ``wide_sums``: a tensor whose readers are all element-wise sums or nodes that run in float
    is held as the integers it was computed as, not rounded to ``bits`` bits: a MatMul's
    accumulator into its bias Add, that sum into the residual Add, the residual sum into the
    LayerNorm (see :meth:`_Builder._takes_wide`). Every input of an integer product stays
    ``bits``-bit codes.
    ``symmetric``: every activation's codes centred on 0 (signed, or unsigned where proved
    non-negative); by default a range lopsided around 0 takes its 2^n codes over itself
    (:meth:`_Builder._lopsided`).
    ``progress``: bars on stderr (a terminal's) over the weight layers rounded ahead of the
    build and over the build's walk of the nodes (BERT-base: 72 layers rounded, 5-20 s that
    showed nothing after the last bar; ResNet-50's convolutions are rounded in the walk).
    """
    bits = check_bits(bits)
    require_graph(graph, "quantize")
    table = OperatorTable.of(operators)
    check_calibration(graph, calibration, bits, table)
    table.require_calibrated(graph, {name: (stats.minimum, stats.maximum)
                                     for name, stats in calibration.stats.items()})
    for name, value in (("float_tensors", float_tensors),
                        ("calibrated_unsigned", calibrated_unsigned)):
        if isinstance(value, (str, bytes)):  # (a str is iterated letter by letter)
            raise UserError(f"quantize: {name}={value!r}: a list of tensor names, "
                            f"[{value!r}] for one")
    if weight_rounding not in WEIGHT_ROUNDING:
        raise UserError(f"weight rounding {weight_rounding!r}: choose one of "
                        f"{', '.join(WEIGHT_ROUNDING)}")
    plans = plan_model(graph, table, override_rules)
    table.require_all([node for plan, node in zip(plans, graph.nodes)
                       if plan.action is Action.UNKNOWN], graph)
    if unknown := set(float_tensors) - calibration.stats.keys():
        raise UserError(f"{graph.source}: {sorted(unknown)[0]!r} is not an activation of the "
                        "model: it cannot be kept in float")

    def built(kept: set[str]) -> _Builder:
        builder = _Builder(graph, calibration, bits, table, per_channel,
                           fixed_point_multipliers, integer_outputs)
        builder.optq, builder.bias_correction = weight_rounding == "optq", bias_correction
        builder.kept_float = kept
        builder.kept_reasons = {name: UNRANGED_REASONS[why] for name, why in unranged.items()}
        builder.calibrated_unsigned = set(calibrated_unsigned)
        builder.wide_sums = wide_sums
        builder.lopsided = not symmetric
        builder.progress = progress
        builder.build(plans)
        return builder

    unranged = unranged_inputs(graph, calibration)
    # The products here are small (at most 1024 columns: patches, H, its Cholesky factor,
    # OPTQ's column blocks); with BLAS threads they wait on each other whenever another
    # process holds a core (measured 2x slower on the transformer, 5x on the digits CNN,
    # docs/benchmarks-real.md). The float model runs in onnxruntime's own thread pool.
    with threadpool_limits(limits=1, user_api="blas"):
        builder = built(set(float_tensors) | calibration.non_finite.keys() | set(unranged))
        # A divisor whose codes come near 0 is kept in float, as --keep-float-tensor would
        # keep it, and the plan made again; a divisor found then (behind one kept) too. So
        # is the widest input of a sum whose inputs' ranges lie too far apart.
        divisors: list[tuple[str, str]] = []
        far_apart: list[tuple[str, str]] = []
        for _ in range(MAX_DIVISOR_ROUNDS):
            found, wide = builder.near_zero_divisors(), builder.far_apart_sums()
            if not found and not wide:
                break
            divisors += found
            far_apart += wide
            builder = built(builder.kept_float | {name for _, name in (*found, *wide)})
        builder.refuse_near_zero_divisors()
        if divisors:
            builder.notes.append(divisor_note(divisors, bits))
        if far_apart:
            builder.notes.append(
                f"kept in float, the widest input of a sum whose inputs' ranges lie too far "
                f"apart for one integer sum: {'; '.join(what for what, _ in far_apart)}")
        if calibration.non_finite:
            builder.notes.append(non_finite_note(calibration.non_finite))
        if symmetric:
            builder.notes.append(symmetric_note(builder.symmetric_instead))
        builder.notes += unranged_notes(unranged)
    # the constants as the arithmetic reads them, a float16 export's as float32: a float node
    # reading one (an RMSNorm in parts' gamma) meets float32 values in every format's file,
    # and the simulation and integer files had stored it float16 (onnxruntime refused them)
    model = QuantizedModel(graph, builder.steps, dict(builder.consts), builder.codes,
                           builder.records, bits, integer_outputs, builder.notes,
                           builder.output_scales, dict(builder._precise_selected))
    counts = model.counts()
    if not counts["integer"]:
        # (each node that runs in float, with why: "no node reads a float model input" had
        # been said of a model whose one node, a ReduceMean of it, computes in float from its
        # codes, which a new-user trial's single-node files met)
        floats = [f"{record.name!r} ({record.why})" for record in model.records
                  if record.kind == "compensated" and record.why]
        why = (f"{len(builder.kept_float)} activations kept in float leave none"
               if builder.kept_float else
               f"each node on activations computes in float: {first_few(floats)}" if floats
               else "no node reads a float model input or a float table through the model's "
               "inputs")
        raise UserError(
            f"{graph.source}: no node runs on integer codes ({counts['compensated']} "
            f"compensated, {counts['static']} static: {why}); nothing to quantize")
    return model


MIXED_PRECISION = "mixed precision: an activation kept in float"
# a graph output computed from codes that is no code itself (a mean), read by no node
OUTPUT_FINER_REASON = "an output finer than codes (a mean of them), dequantized as computed"
# a copy (Reshape, Flatten, Transpose) of a float node's output into a graph output
COPIED_OUT_REASON = "a float node's output copied into a graph output, dequantized as computed"
# a copy (Transpose, Squeeze, Reshape) of a float model input or float node's output that
# only float nodes read (a mel input transposed into an LSTM kept in float)
COPIED_BETWEEN_REASON = ("a copy between float ends: of a model input or a float node's "
                         "output, read only by nodes in float")
SHAPE_OF_FLOAT_REASON = "it reads only the shape of a tensor held in float"
# why a float model input has no calibrated range: what a node reading it says (the summary
# counts it by that), and the note's words for it
UNRANGED_REASONS = {"zero": "an input 0 on all calibration data, kept in float",
                    "empty": "an input empty in all calibration data, kept in float"}
UNRANGED_NOTES = {
    "zero": ("0 on all calibration data, so no range holds its values at run time (an "
             "additive attention mask calibrated on rows without padding); calibrate on data "
             "that uses it"),
    "empty": ("empty in all calibration data (an axis of length 0, as the past key/values "
              "of a KV cache before the first token), so no range was measured for its values; "
              "the nodes that read it run in float. To have them on codes, calibrate on data "
              "where it holds values (past key/values recorded from real prompts)"),
}


def unranged_inputs(graph: Graph, calibration: Calibration) -> dict[str, str]:
    """The float model inputs no calibrated range can hold, each with why ("zero" or "empty").

    An input 0 on all calibration data would take codes of scale 1, which clip whatever it
    holds at run time (an additive attention mask calibrated on rows without padding: every
    masked key came back unmasked). An input with no element at all (a KV cache's past
    key/values at past length 0, calibrated for the prefill) has no range either; it had
    been reported as 0 on all the data, an additive mask, and its nodes as mixed precision."""
    unranged = {}
    for info in graph.float_inputs():
        stats = calibration.stats.get(info.name)
        if stats is not None and stats.max_abs == 0:
            unranged[info.name] = "zero" if stats.count else "empty"
    return unranged


def unranged_notes(unranged: Mapping[str, str]) -> list[str]:
    """One note per reason the inputs :func:`unranged_inputs` found are kept in float."""
    notes = []
    for why, words in UNRANGED_NOTES.items():
        if names := [name for name, its in unranged.items() if its == why]:
            notes.append(f"kept in float: input {', '.join(map(repr, names))}: {words}")
    return notes


def symmetric_note(tensors: set[str]) -> str:
    """What ``symmetric`` changed: a model with no lopsided range gets the very file it
    would get without it, which the user asked for in vain unless told."""
    if not tensors:
        return ("symmetric codes: no activation's calibrated range is lopsided around 0, so "
                "the codes are those of a run without --symmetric")
    return (f"symmetric codes on {len(tensors)} activation(s) whose calibrated range is "
            f"lopsided around 0 (they would take 2^n codes over it without --symmetric): "
            f"{first_few(sorted(tensors), 5)}")


# (its probes' products are tiny; with BLAS threads they wait on each other whenever another
# process holds a core: all-MiniLM-L6-v2's 0.07 s took 0.4-1.5 s at load 3 on 2 cores)
@threadpool_limits.wrap(limits=1, user_api="blas")
def weight_layers(graph: Graph, operators: Mapping[str, Operator] | OperatorTable | None = None,
                  override_rules: Mapping[str, Rule] | None = None, per_channel: bool = True
                  ) -> dict[str, WeightTarget]:
    """The nodes whose weights :func:`quantize` may round output-aware, and where their
    weights sit: for ``calibrate(weight_layers=...)``, which then gathers their input
    statistics in its own pass over the data (quantize reads the subset it rounds: a node
    the calibration leaves in float is not rounded)."""
    table = OperatorTable.of(operators)
    plans = plan_model(graph, table, override_rules)
    builder = _Builder(graph, Calibration({}), 8, table, per_channel, False, False)
    builder._float = dict.fromkeys(invariant_regions(graph, table, plans, builder.active),
                                   INVARIANT_REASON)  # a norm's gamma, applied in float
    return builder._weight_targets(plans)


class _Builder:
    def __init__(self, graph: Graph, calibration: Calibration, bits: int, table: OperatorTable,
                 per_channel: bool, fixed: bool, integer_outputs: bool) -> None:
        self.graph, self.cal, self.bits, self.table = graph, calibration, bits, table
        self.per_channel, self.fixed, self.integer_outputs = per_channel, fixed, integer_outputs
        self.active = activation_tensors(graph, table)
        # the constants the arithmetic reads: a float16 export's as float32, the width its
        # activations are quantized in (2^31 / a bias, a constant at an accumulator's
        # scale overflow float16's 65504), and a float64 section's too (every format
        # computes it in float32: emitter._widen_narrow_floats); every format stores these
        self.consts = {name: value.astype(np.float32) if value.dtype in (np.float16, np.float64)
                       else value for name, value in graph.initializers.items()}
        self.consumers = graph.consumers()
        self.steps: list = []
        self.codes: dict[str, Code] = {}
        self.records: list[NodeRecord] = []
        self.notes: list[str] = []
        # held at MAX_BITS or not -> what discontinuous nodes read: a note each once the walk
        # is done (discontinuity_notes)
        self._jump_reads: dict[bool, _JumpReads] = {}
        self._dequantized: dict[str, str] = {}
        # graph outputs read straight off an exact integer accumulator: (tensor, scale)
        self._accumulators: dict[str, tuple[str, np.ndarray | float]] = {}
        self.output_scales: dict[str, np.ndarray | float] = {}
        self._inexact_sums: set[str] = set()  # nodes whose float32 integer sums may round
        self._ops = {node.name: table.find(node, graph) for node in graph.nodes}
        self._verdicts: dict[str, NodeAction] = {}
        self._count = 0
        # the source's tensor and node names, which fresh never gives: an input named
        # 'gemm1:acc~q4', the name fresh had given a Gemm's accumulator, made the integer
        # format write two tensors of one name, and a node named 'gather:16bit~q16', the name
        # of a selection run again at 16 bits (_precise_selection), two nodes of one name
        # (onnxruntime refused either file: exit 3)
        self._taken = {*graph.input_names, *graph.initializers,
                       *(name for node in graph.nodes for name in (node.name, *node.outputs))}
        self.optq, self.bias_correction = False, False
        self.progress = False  # bars over the weights rounded ahead and over the walk
        self.kept_float: set[str] = set()  # activations kept in float (mixed precision)
        # a tensor of kept_float -> why its float region runs in float, where the user did not
        # choose it (an input without a calibrated range); the others are mixed precision
        self.kept_reasons: dict[str, str] = {}
        self.calibrated_unsigned: set[str] = set()  # held unsigned on a calibrated range >= 0
        self.wide_sums = True  # integers read only by sums and float nodes stay wide
        self.lopsided = True  # a range lopsided around 0 may take 2^n codes over itself
        self.symmetric_instead: set[str] = set()  # lopsided ranges given symmetric codes
        self._layers: dict = {}  # node name -> LayerStats of its input patches
        self._targets: dict[str, WeightTarget] = {}  # node name -> where its weights sit
        # node name -> _tensor_weight_codes of it, rounded before the build takes it
        self._rounded_ahead: dict[str, tuple | None] = {}
        self._floors: dict[tuple, float | None] = {}  # (node, least inputs) -> least output
        self._unranged: set[str] = set()  # tensors 0 on all calibration data (scale 1)
        # divisors whose codes come near 0: (what to say of it, its tensor)
        self._near_zero: list[tuple[str, str]] = []
        # the widest input of each sum whose inputs' ranges lie too far apart for its
        # integers (_too_far_apart): (what to say of it, its tensor)
        self._far_apart: list[tuple[str, str]] = []
        self._bias_shift: dict[str, np.ndarray] = {}  # node name -> per-channel bias correction
        self._corrected: set[str] = set()  # nodes whose bias took the correction
        # (sum node, constant) -> the constant with a bias correction of the layer before it
        self._corrected_constants: dict[tuple[str, str], np.ndarray] = {}
        self._corrected_in: dict[str, str] = {}  # layer -> the sum node its correction went to
        # tensor -> (source, its scale, non-negative, pre_round, divided_by) of the step that
        # made its codes, so that a node whose function jumps can take the same tensor at
        # MAX_BITS instead
        self._sources: dict[str, tuple[str, np.ndarray | float, bool, bool, int]] = {}
        # tensor -> (the step of the selection that passed its inputs' codes on as the
        # tensor's, and for each activation input (one, or several of a Concat) that input
        # and the code name the step read), so that a node whose function jumps reads the
        # same selection of the inputs' MAX_BITS codes (_precise_selection)
        self._selected: dict[str, tuple[NodeStep, tuple[tuple[str, str], ...]]] = {}
        self._precise_selected: dict[str, Code] = {}  # tensor -> its MAX_BITS selection
        self._precise_codes: set[str] = set()  # codes at MAX_BITS (a selection of them too)
        # outputs of selections run in float on wide accumulators, left float for readers
        # that run in float on them (_read_exactly_in_float)
        self._moved_exact: set[str] = set()

    # -- ranges and scales ---------------------------------------------------------------

    @property
    def signed_max(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def unsigned_max(self) -> int:
        return 2**self.bits - 1

    def fresh(self, hint: str) -> str:
        while True:
            self._count += 1
            name = f"{hint}~q{self._count}"
            if name not in self._taken:
                return name

    def factor(self, value, exact: bool = False) -> np.ndarray:
        array = np.asarray(value, dtype=np.float64)
        if self.fixed and not exact:
            return fixed_point(array)
        return array.astype(np.float32)

    def target(self, tensor: str, proved_nonnegative: bool, axis: int | None = None,
               channels: bool = True) -> tuple[float | np.ndarray, float, float]:
        """(scale, low, high) for materialising ``tensor`` as codes; with ``channels``, one
        scale per channel (along ``axis`` if given) where :meth:`_channel_scale` allows it."""
        unsigned = proved_nonnegative
        ranged = [tensor]
        users = self.consumers.get(tensor, [])
        floors = self._clip_floors(tensor)
        if floors is not None:
            # Every consumer is clip(x, lo, hi) (its declared witness, Theorem 2 of
            # proofs/selections.md): the codes need only cover what the consumers output,
            # and clipping below at lo >= 0 changes nothing, so such a tensor is unsigned.
            # Where a consumer's output is read by clips again (ReLU6 split into Max and Min
            # by equalization), the end of that chain bounds it (Corollary 2.1).
            unsigned = unsigned or min(floors) >= 0
            ranged = self._clip_ends(tensor) or ranged
        elif (not unsigned and users and tensor not in self.graph.output_names
                and all(self._feeds_nonnegative_selection(user) for user in users)):
            # Every consumer is max/min-selection with a proved non-negative output: clipping
            # below 0 first changes none of their outputs, so the unsigned range is exact.
            unsigned = True
            ranged = [out for user in users for out in user.outputs if out in self.cal.stats]
        elif copied := self._copied_ends(tensor):
            # Every reader copies elements of it by constant positions (a Gather of the upper
            # triangle of a DLRM's pairwise products): the codes need only cover what they
            # read, and an element no reader reads may clip (nothing sees it)
            ranged = copied
        if not unsigned and tensor in self.calibrated_unsigned:
            unsigned = all(self.cal.stats[name].minimum >= 0 for name in ranged)
        levels = self.unsigned_max if unsigned else self.signed_max
        low = 0.0 if unsigned else -float(levels + 1)
        # per channel on the range its readers take: its own, or that of the one-element
        # selections it passes through when they pass per-channel codes on (a Cast to float32
        # before an RMSNorm: Qwen2's, Phi-3's, Gemma's)
        channel = (self._channel_scale(ranged[0], axis, levels) if channels and (
            ranged == [tensor] or len(ranged) == 1 and all(
                self._takes_channels(user) for user in users)) else None)
        if channel is not None:
            return channel, low, float(levels)
        reach = max(self.cal.clip(name, levels) for name in ranged)
        reach = self._saturated_reach(tensor, reach, levels)
        if not np.isfinite(reach) or reach <= 0:
            empty = all(not getattr(self.cal.stats.get(name), "count", 1) for name in ranged)
            self.notes.append(f"tensor {tensor!r} is "
                              + ("empty (an axis of length 0) in" if empty else "0 on")
                              + " all calibration data: scale 1 used")
            self._unranged.add(tensor)
            reach = float(levels)
        elif not unsigned and len(ranged) == 1 and (
                lopsided := self._lopsided(tensor, ranged[0], reach, levels)) is not None:
            return lopsided
        scale = levels / reach
        # Signed codes use the two's-complement range [-2^(n-1), 2^(n-1)-1]: the scale is set
        # by the symmetric levels, and the extra negative code holds outliers below the
        # calibrated range; the n-bit container (int8 at 8 bits) then holds every code.
        return scale, low, float(levels)

    def _lopsided(self, tensor: str, ranged: str, reach: float, levels: int
                  ) -> tuple[float, float, float] | None:
        """(scale, low, high) of 2 * (levels + 1) consecutive codes (2^n) over the calibrated
        range of ``ranged``, the one tensor that bounds what ``tensor``'s readers read (itself,
        or the output of the clips or copies that alone read it: a Cast from float64, a
        StandardScaler's output in hummingbird's pipelines, [-2.9, 32.4] on one side of 0,
        had taken signed codes, 30.2 dB held out against quantize_static's asymmetric 35.2),
        its short side moved out to where unseen samples may reach
        (:meth:`.stats.TensorStats.unseen_extremes`; at most doubled, and doubled where the
        per-sample extremes are not known), where that range is lopsided around 0 (a GELU's
        [-0.17, 3.7], a Hardswish's [-0.37, 6]) enough that its step is LOPSIDED_GAIN times
        finer than the signed codes' reach / levels; None otherwise. The codes stay
        round(x * scale), 0 at 0, so every rule and kernel reads them as before; only the
        range differs from [-levels - 1, levels], and an 8-bit container holds it with a
        zero point (qdq: quantize_static's asymmetric activations; integer: the products'
        zero-point inputs).
        Not where the method clips (its ranges are of |x|), where a static operand
        saturated positions of the sum, on a tensor bias absorption shifted (its least value
        is 0 up to float32 rounding, and its range follows absorption's rule), nor on a graph
        output (``--integer-outputs`` gives int8 or uint8 codes)."""
        if any(name in self.cal.saturated or name in self.cal.dropped_reach
               or name in self.calibrated_unsigned or name in self.graph.output_names
               for name in {tensor, ranged}):
            return None
        extremes = self.cal.extremes(ranged, levels)
        if extremes is None or not all(np.isfinite(extremes)):
            return None
        least, largest = extremes
        # the short side's room for values the calibration data did not show: where unseen
        # samples may reach, read from the scatter of its per-sample extremes, at most its
        # calibrated reach doubled (the room it had before; without room, EfficientNet-Lite1's
        # signed projection outputs clipped on evaluation crops: -0.6 dB of logit SQNR, and
        # the exact range lost 3.6 dB on MobileNetV2 calibrated on 8 samples; docs/engine.md)
        unseen = self.cal.unseen_extremes(ranged, levels) or (2 * least, 2 * largest)
        if largest >= -least:
            least = max(2 * least, min(least, unseen[0]))
        else:
            largest = min(2 * largest, max(largest, unseen[1]))
        span = largest - least
        codes = 2 * (levels + 1)
        # one step fewer than the codes have over the span, so that either end rounds inside
        steps = codes - 2
        if not (least < 0 < largest and LOPSIDED_GAIN * span / steps <= reach / levels):
            return None
        if not self.lopsided:  # --symmetric: counted, so the summary can say what it changed
            self.symmetric_instead.add(tensor)
            return None
        scale = steps / span
        if largest >= -least:
            low = float(np.floor(least * scale))
            return scale, low, low + codes - 1
        high = float(np.ceil(largest * scale))
        return scale, high - codes + 1, high

    def _channel_scale(self, tensor: str, axis: int | None, levels: int) -> np.ndarray | None:
        """One scale per channel along ``axis`` (the axis its source's scale runs along: a
        per-channel accumulator, a per-channel sum; for a scalar source scale the axis with
        the largest gain) when every reader takes per-channel codes (:meth:`_takes_channels`,
        or a node that runs in float on them, which dequantizes them exactly) and the channels'
        ranges differ enough to cut the rounding noise power CHANNEL_GAIN-fold, each
        channel's noise weighted as the element-wise nodes after it scale it
        (:meth:`_noise_weights`). A static reader (Shape) reads no codes. Requantizing to
        per-channel codes is one multiplier per channel whatever made the tensor. Only an
        axis of fixed length in the graph qualifies: scales along a dynamic one (a sequence's
        positions) would fix its length to the calibration data's, and onnxruntime would
        refuse every other."""
        users = self.consumers.get(tensor, [])
        if (not self.per_channel or tensor in self.graph.output_names or not users
                or tensor not in self.cal.stats or tensor in self.cal.saturated):
            return None
        gains = {}
        for candidate in ([axis] if axis is not None else (1, -1)):
            shape = self.graph.shape_of(tensor)
            if shape is None or len(shape) < 2:
                return None
            candidate %= len(shape)
            if not isinstance(shape[candidate], int):
                continue  # a dynamic axis (a sequence's length): its scales would fix it
            peaks = self.cal.channel_clip(tensor, candidate, levels)
            if peaks is None or peaks.size < 2 or not np.all(np.isfinite(peaks)):
                continue
            peaks = np.where(peaks > peaks.max() * NEGLIGIBLE_CHANNEL, peaks, peaks.max())
            if peaks.max() > 0:
                weights = self._noise_weights(tensor, candidate, levels, peaks.size)
                noise = np.sum((peaks * weights) ** 2)
                if noise > 0:  # (0: every chain after it multiplies by 0, nothing to gain)
                    gains[candidate] = (peaks.max() ** 2 * np.sum(weights**2) / noise, peaks)
        if not gains:
            return None
        axis, (gain, peaks) = max(gains.items(), key=lambda item: item[1][0])
        if gain < CHANNEL_GAIN:
            return None
        if not self._read_per_channel(tensor):
            return None
        return along(levels / peaks, axis, len(self.graph.shape_of(tensor)))

    def _noise_weights(self, tensor: str, axis: int, levels: int, count: int) -> np.ndarray:
        """How much of each channel's rounding noise (along ``axis``, ``count`` channels)
        reaches the end of each chain of element-wise nodes that read ``tensor``, one row per
        end: a node of one activation input, its others constants, passes the noise on as
        its output's channel ranges over its input's where it is homogeneous of degree 1 in
        that input (a Mul or Div by one constant per channel: a scikit-learn scaler), and
        unchanged where it is an aligned sum of degree 1 or passes codes on (an Add or Sub
        of a constant, a Cast); any other reader, or a graph output, ends the chain with the
        weights so far. Rows of ones (no such node) give the unweighted gain. Why: raw tabular
        features (wine: proline up to 1680 beside hue 0.5-1.7) feed a per-feature scaler
        that brings them to one range, and one scale for all of them left every small
        feature a code or two (33% label agreement on 3 classes, exit 0); unweighted, 13
        channels can gain at most 13-fold, below CHANNEL_GAIN. Walked with a stack of its
        own, not by recursion (a chain of 200 Relus passed Python's recursion limit)."""
        rank = len(self.graph.shape_of(tensor) or ())
        ends = []
        stack = [(tensor, np.ones(count))]
        while stack:
            name, weights = stack.pop()
            users = self.consumers.get(name, [])
            if not users or name in self.graph.output_names:
                ends.append(weights)
            for user in users:
                factor = self._channel_factor(user, name, axis, levels, rank)
                if factor is None or factor.shape != weights.shape:
                    ends.append(weights)
                else:
                    stack.append((user.outputs[0], weights * factor))
        return np.array(ends)

    def _channel_factor(self, node: Node, tensor: str, axis: int, levels: int,
                        rank: int) -> np.ndarray | None:
        """The factor by which ``node`` scales each channel of ``tensor`` (along ``axis``)
        into its one output of the same rank, for :meth:`_noise_weights`; None where it is
        no element-wise node of that one activation input and constants whose rule passes
        the noise on so."""
        plan, op = self._plans.get(node.name), self._ops.get(node.name)
        if (plan is None or op is None or not self._runs_on_codes(node)
                or not is_elementwise(op) or len(node.outputs) != 1
                or [node.inputs[s] for s in plan.activation_slots] != [tensor]
                or any(name and name not in self.consts for s, name in enumerate(node.inputs)
                       if s not in plan.activation_slots)):
            return None
        out = node.outputs[0]
        if len(self.graph.shape_of(out) or ()) != rank or out not in self.cal.stats:
            return None
        rule, before = plan.rule, self.cal.channel_clip(tensor, axis, levels)
        if before is None:
            return None
        if self._passes_codes_on(node) or rule.kind is RuleKind.ALIGNED and rule.degree == 1:
            return np.ones(before.shape)
        if (rule.kind is not RuleKind.HOMOGENEOUS or tensor_degrees(op, rule).get(
                slot_binding(op, plan.activation_slots[0])) != 1):
            return None
        after = self.cal.channel_clip(out, axis, levels)
        if after is None or before.shape != after.shape:
            return None
        return np.divide(after, before, out=np.ones(before.shape), where=before > 0)

    def _read_per_channel(self, tensor: str) -> bool:
        """Whether every reader of ``tensor`` takes per-channel codes of it: it runs on them
        (:meth:`_takes_channels`), in float (it dequantizes them exactly), or reads no codes
        (a static Shape). A reader that passes codes on asks the same of its outputs: the
        tensors after it are answered first, from a stack of its own, not by recursion (a
        chain of 200 Relus passed Python's recursion limit)."""
        def after(name: str) -> list[str]:
            return [out for user in self.consumers.get(name, [])
                    if self._runs_on_codes(user) and self._passes_codes_on(user)
                    for out in user.outputs if out in self.active]

        def answer(name: str, known: dict[str, bool]) -> bool:
            return all(u.name in self._float or self._plans[u.name].action is Action.STATIC
                       or self._takes_channels(u, known) or self._compensates_channels(u)
                       for u in self.consumers.get(name, []))

        return _bottom_up(tensor, after, answer)

    def _runs_on_codes(self, node: Node) -> bool:
        """Whether the node's plan scales or aligns codes by a rule of a declared operator."""
        plan = self._plans[node.name]
        return (plan.action in (Action.SCALE, Action.ALIGN) and plan.rule is not None
                and self._ops[node.name] is not None)

    def _takes_channels(self, node: Node, known: Mapping[str, bool] | None = None) -> bool:
        """Whether the node runs on per-channel codes and gives per-channel output scales: a
        proved per-channel rule (a sum brings its inputs to one scale per channel; a product
        multiplies them), no parameter to rescale (a scalar bound cannot take one value per
        channel) and no integer weights; selections, which pass codes on unchanged, are left
        to one scale, but an element-wise one whose readers take them. ``known``: the answers
        of :meth:`_read_per_channel` found so far, for the tensors after the node."""
        if not self._runs_on_codes(node):
            return False
        plan, op = self._plans[node.name], self._ops[node.name]
        if self._passes_codes_on(node):  # per channel where its readers take them so
            known = known or {}
            return all(known[out] if out in known else self._read_per_channel(out)
                       for out in node.outputs if out in self.active)
        if (is_lattice_selection(op) or any(plan.rule.param_exponents.values())
                or weight_layout(op, plan.rule) is not None):
            return False
        return per_channel_rule(op, plan.verdict, plan.rule).holds

    def _compensates_channels(self, node: Node) -> bool:
        """Whether a node that would run on codes runs in float instead when its input has
        per-channel codes: a scale-invariant node (LayerNorm) holds no integer weights, its
        output does not depend on its input's scale, so running it on the dequantized input
        costs no integer arithmetic. Such a node takes any codes of its input, wide ones
        too (:meth:`_takes_wide`)."""
        plan = self._plans[node.name]
        return (plan.action is Action.SCALE and plan.rule is not None
                and plan.rule.kind is RuleKind.SCALE_INVARIANT)

    def _saturated_reach(self, tensor: str, reach: float, levels: int) -> float:
        """The range of a tensor held as codes whose calibration left out the positions a
        static operand saturates. Its readers take codes, so those positions are read as
        codes too: they set the range when it can still represent the rest (the dropped
        values within ``levels`` steps of the kept range); beyond that (a mask at -1e4 or
        finfo.min) the kept values would all fall on a code or two, and the positions
        saturate to the end code instead (proofs/saturation.md, Corollary 15.1)."""
        dropped = self.cal.dropped_reach.get(tensor)
        if dropped is None or not reach > 0:
            return reach
        if dropped <= levels * reach:
            return max(reach, dropped)
        self.notes.append(f"tensor {tensor!r}: positions a static operand puts beyond "
                          f"{levels}x its range are held at the end code (its readers take "
                          "codes)")
        return reach

    def _feeds_nonnegative_selection(self, node: Node) -> bool:
        plan = self._plans.get(node.name)
        op = self._ops.get(node.name)
        return (plan is not None and op is not None and plan.action is Action.SCALE
                and plan.verdict is not None and plan.verdict.output_nonnegative
                and is_lattice_selection(op) and len(plan.activation_slots) == 1
                and all(not name or name in self.active for name in node.inputs))

    def _clip_floors(self, tensor: str) -> list[float] | None:
        """lo of each consumer of ``tensor`` when every one is a clip (:meth:`_clip_floor`)
        and the tensor is no graph output; else None."""
        users = self.consumers.get(tensor, [])
        if not users or tensor in self.graph.output_names:
            return None
        floors = [self._clip_floor(user) for user in users]
        return None if any(floor is None for floor in floors) else floors

    def _clip_ends(self, tensor: str) -> list[str]:
        """The calibrated tensors whose ranges bound ``tensor``, read only by clips: their
        outputs, or, for an output read only by clips in turn, what bounds that output (a
        clip of a clip is a clip: Corollary 2.1 of proofs/selections.md). Walked with a stack of
        its own, not by recursion: a chain of 200 Relus passed Python's recursion limit."""
        @functools.cache
        def outputs(name: str) -> list[str]:
            return [out for user in self.consumers.get(name, []) for out in user.outputs
                    if out in self.cal.stats]

        @functools.cache
        def clipped(name: str) -> bool:  # read only by clips: its ends are further on
            return bool(self._clip_floors(name))

        def ends(name: str, found: dict[str, list[str]]) -> list[str]:
            return [end for out in outputs(name)
                    for end in (found[out] if clipped(out) else []) or [out]]

        return _bottom_up(tensor, lambda name: [out for out in outputs(name) if clipped(out)],
                          ends)

    def _copied_ends(self, tensor: str) -> list[str]:
        """The calibrated tensors that hold every element of ``tensor`` its readers read,
        where each reader copies elements of it alone to positions its constants fix (a
        declared witness ``x``, its other inputs constants: Gather by constant indices,
        Transpose, Flatten, Slice), followed through outputs read only so in turn; and only
        where those elements leave out its largest |x| (elsewhere its own range is theirs).
        Else []: a reader of any other kind, or a graph output, reads every element.
        Why: a tensor whose unread elements dwarf the read ones (the diagonal of squared
        norms beside the dot products a DLRM's interaction reads) spent its codes on them."""
        @functools.cache
        def outputs(name: str) -> list[str] | None:  # None: some reader is no such copy
            users = [user for user in self.consumers.get(name, [])
                     if not reads_no_elements(self._ops.get(user.name))]  # (a Shape)
            if not users or name in self.graph.output_names or not all(
                    self._copies_by_constants(user, name) for user in users):
                return None
            found = [out for user in users for out in user.outputs if out]
            return found if all(out in self.cal.stats for out in found) else None

        def ends(name: str, found: dict[str, list[str]]) -> list[str]:
            return [end for out in outputs(name) or [] for end in found.get(out) or [out]]

        if outputs(tensor) is None:
            return []
        copied = _bottom_up(tensor, lambda name: outputs(name) or [], ends)
        reach = max(self.cal.stats[name].max_abs for name in copied)
        return copied if reach < self.cal.stats[tensor].max_abs else []

    def _copies_by_constants(self, node: Node, tensor: str) -> bool:
        """Whether ``node`` passes codes on (its action SCALE) and each output element is an
        element of ``tensor``, its one activation input, at a position its constant inputs
        fix: a copy (:func:`.rules.is_copy`: the witness is the element itself), every
        other input a constant (not data-dependent ids, not a shape computed at run time)."""
        if not self._on_codes_of(node, tensor) or not is_copy(self._ops[node.name]):
            return False
        slots = self._plans[node.name].activation_slots
        return all(not name or name in self.consts for slot, name in enumerate(node.inputs)
                   if slot not in slots)

    def _on_codes_of(self, node: Node, tensor: str) -> bool:
        """Whether ``node`` runs on codes (its action SCALE, by a declared operator's rule)
        with ``tensor`` as its one activation input: what a node that carries that tensor's
        codes on (:meth:`_copies_by_constants`, :meth:`_carries_integers`,
        :meth:`_selected_into_outputs`) must do first."""
        plan, op = self._plans.get(node.name), self._ops.get(node.name)
        return (plan is not None and op is not None and plan.rule is not None
                and plan.action is Action.SCALE
                and [node.inputs[slot] for slot in plan.activation_slots] == [tensor])

    def _clip_floor(self, node: Node) -> float | None:
        """For a node that computes clip(x, lo, hi) of its one activation input element by
        element (a monotone selection whose other inputs are constants, run on codes: Clip,
        Relu, or Max and Min with a constant bound per element): lo, its least output at
        x = -inf. None for any other node."""
        plan = self._plans.get(node.name)
        op = self._ops.get(node.name)
        if (plan is None or op is None or plan.action not in (Action.SCALE, Action.ALIGN)
                or len(plan.activation_slots) != 1 or not is_elementwise(op)
                or not any(out in self.active for out in node.outputs)):
            return None  # (a Shape reads x but outputs no activation: it takes no codes)
        if not is_elementwise_unary(op) and (
                any(name and name not in self.consts for slot, name in
                    enumerate(node.inputs) if slot not in plan.activation_slots)
                or self.graph.shape_of(node.outputs[0])
                != self.graph.shape_of(node.inputs[plan.activation_slots[0]])):
            return None  # its other tensors must be constant bounds within x's shape
        return self._selection_floor(node, op, plan, {plan.activation_slots[0]: -np.inf})

    def _selection_floor(self, node: Node, op: Operator, plan: NodeAction,
                         least: dict[int, float]) -> float | None:
        """The least output of a monotone selection (Theorem 1 of proofs/selections.md: its
        value when each activation input slot is at its least value, ``least``), by its own
        kernel with the node's constants; None when the node is no such selection or its
        other inputs are not constants."""
        key = (node.name, tuple(sorted(least.items())))
        if key not in self._floors:
            self._floors[key] = None
            examples = example_inputs(self.graph, node, self.active)
            if (is_monotone_selection(op) and examples is not None
                    and set(plan.activation_slots) == set(least)):
                changes = {slot: np.full(np.shape(examples[slot]), value, np.float64)
                           for slot, value in least.items()}
                with np.errstate(invalid="ignore"):
                    out = run_kernel(op, node, examples, changes)
                if out is not None and out.size:
                    self._floors[key] = float(out.min())
        return self._floors[key]

    def materialise(self, src: str, tensor: str, scale_of_src: np.ndarray | float,
                    nonnegative: bool, pre_round: bool = False, divided_by: int = 1) -> Code:
        """``tensor``'s codes made from ``src`` (at ``scale_of_src``; with ``divided_by``,
        the scale of ``src`` times that count: :class:`.steps.ScaleStep`)."""
        scale, low, high = self.target(tensor, nonnegative, _scale_axis(scale_of_src))
        factor = self.factor(np.asarray(scale) / np.asarray(scale_of_src, dtype=np.float64))
        dst = self.fresh(tensor)
        self.steps.append(ScaleStep(src, dst, factor, True, low, high, pre_round, scale,
                                    divided_by=divided_by))
        code = Code(dst, scale, low, high, tensor not in self._unranged)
        self.codes[tensor] = code
        self._sources[tensor] = (src, scale_of_src, nonnegative, pre_round, divided_by)
        return code

    def dequantized(self, tensor: str) -> str:
        code = self.codes[tensor]
        if code.name not in self._dequantized:
            dst = self.fresh(f"{tensor}:float")
            self.steps.append(ScaleStep(code.name, dst, code.dequantizing(), round=False))
            self._dequantized[code.name] = dst
        return self._dequantized[code.name]

    def hold_precisely(self, node: Node, op: Operator) -> dict[str, Code]:
        """For a node whose function jumps (Sign, Round, a comparison), or a node in float
        whose outputs reach one through nodes in float alone (:meth:`_reaching_jumps`: a Flatten
        before a Hardmax, run in float as one region): its activation inputs as MAX_BITS
        codes made from the same source as their n-bit codes, so that rounding moves an
        input across a jump far less often. Swaps them into ``codes`` and returns the n-bit
        codes to restore after the node; says so in the notes."""
        if op is not None and jumps(op):
            label = node.label
        elif node.name in self._jumps_ahead:
            label = self._jumps_ahead[node.name]
        else:
            return {}
        held, kept = {}, []
        for name in dict.fromkeys(node.inputs):
            if name not in self.codes or (self.codes[name].wide and name not in self._selected):
                continue  # (wide: exact integers; a selection of n-bit codes held wide is not)
            code = (self.codes[name] if self.codes[name].name in self._precise_codes
                    else self._precise(name))
            if code is None:
                kept.append(name)
                continue
            held[name] = self.codes[name]
            self.codes[name] = code
        for inputs, precise in ((held, True), (kept, False)):
            if inputs:
                reads = self._jump_reads.setdefault(precise, _JumpReads({}, {}, {}))
                reads.nodes[label] = None
                reads.inputs.update(dict.fromkeys(inputs))
                if label != node.label:
                    reads.through[node.label] = None
        return held

    def _precise(self, name: str) -> Code | None:
        """``name``'s MAX_BITS codes, from its scaling step's source or by its selection again
        (:meth:`_precise_from_source`, :meth:`_precise_selection`), or None."""
        return (self._precise_from_source(name) if name in self._sources
                else self._precise_selection(name))

    def _precise_from_source(self, name: str) -> Code | None:
        """``name``'s MAX_BITS codes made from the source of its scaling step, or None (at
        MAX_BITS, or where its calibrated range gives no scale)."""
        if self.bits >= MAX_BITS:
            return None
        src, scale_of_src, nonnegative, pre_round, divided_by = self._sources[name]
        levels = 2**MAX_BITS - 1 if nonnegative else 2 ** (MAX_BITS - 1) - 1
        reach = self.cal.clip(name, levels) if name in self.cal.stats else 0.0
        if not np.isfinite(reach) or reach <= 0:
            return None
        scale = levels / reach
        factor = self.factor(np.asarray(scale) / np.asarray(scale_of_src, dtype=np.float64))
        dst = self.fresh(f"{name}:{MAX_BITS}bit")
        low = 0.0 if nonnegative else -float(levels)
        self.steps.append(ScaleStep(src, dst, factor, True, low, float(levels), pre_round,
                                    scale, divided_by=divided_by))
        self._precise_codes.add(dst)
        return Code(dst, scale, low, float(levels))

    def _precise_selection(self, name: str) -> Code | None:
        """``name``'s MAX_BITS codes where a selection on integers passed its inputs' n-bit
        codes on as its own, with no scaling step (a Squeeze, a TopK's values, a Gather by
        indices; a Concat of several): the same selection run again on those inputs' MAX_BITS
        codes (made from their scaling steps' sources, or so in turn; several brought to the
        coarsest of their scales, :meth:`_aligned_precisely`). A detector's score threshold
        after TopK(Squeeze(Sigmoid)) had read 4-bit codes: its kept-box count agreed with the
        float model's on 73% of held-out digits; a two-level head's TopK over the Concat of its
        levels' scores read 8-bit codes (a trial's: its top 20 values 52.8 dB, 56.0 since).
        None where there is no such selection."""
        if name not in self._selected:
            return None
        if name in self._precise_selected:
            return self._precise_selected[name]
        step, reads = self._selected[name]
        inners = [self._precise(source) for source, _ in reads]
        if any(code is None for code in inners):
            return None
        if len(inners) > 1:
            inners = self._aligned_precisely(inners)
            if inners is None:
                return None
        inner = Code("", inners[0].scale, min(c.low for c in inners),
                     max(c.high for c in inners), any(c.ranged for c in inners))
        swaps = {read: code.name for (_, read), code in zip(reads, inners)}
        inputs = [swaps.get(i, i) for i in step.node.inputs]
        outputs = [self.fresh(f"{o}:{MAX_BITS}bit") if o else o for o in step.node.outputs]
        again = _renamed(step.node, inputs, outputs)
        again.name = self.fresh(f"{step.node.name}:{MAX_BITS}bit")  # (names are unique)
        source = step.source or step.node
        source = _renamed(source, source.inputs, source.outputs)
        source.name = again.name  # (the formats write a node under its source's name)
        self.steps.append(NodeStep(again, step.op, source=source))
        produced = outputs[step.node.outputs.index(self.codes[name].name)]
        code = Code(produced, inner.scale, inner.low, inner.high, inner.ranged)
        self._precise_selected[name] = code
        self._precise_codes.add(produced)
        return code

    def _aligned_precisely(self, codes: list[Code]) -> list[Code] | None:
        """Several inputs' MAX_BITS codes (a Concat's) brought to the coarsest of their scales,
        as the n-bit codes were to theirs (:func:`_common_scale`), so that the selection holds
        one scale; None where one is per channel (no one scale to bring it to)."""
        if any(np.ndim(c.scale) for c in codes):
            return None
        common = float(_common_scale(codes, True))
        aligned = []
        for code in codes:
            if float(code.scale) == common:
                aligned.append(code)
                continue
            ratio = common / float(code.scale)
            aligned.append(Code(self._at_scale(code, common, code.name), common,
                                float(np.floor(code.low * ratio)),
                                float(np.ceil(code.high * ratio)), code.ranged))
        return aligned

    def _at_scale(self, code: Code, scale, stem: str) -> str:
        """A step taking ``code``'s integers to ``scale`` (an aligned node's common one), and
        the name of the codes it makes."""
        dst = self.fresh(f"{stem}:aligned")
        self.steps.append(ScaleStep(code.name, dst, self.factor(scale / code.scale),
                                    scale=scale))
        return dst

    def _is_float(self, tensor: str) -> bool:
        """Whether ``tensor`` may hold real values (a float, or of a type unknown), not indices,
        shapes or a mask: a selection reading one beside its activation (Where's other
        operand, a constant brought to its scale) does not select from its input alone."""
        dtype = self.graph.dtype_of(tensor)
        return dtype is None or not holds_integers(dtype)

    def discontinuity_notes(self) -> list[str]:
        """A note for the inputs held at MAX_BITS for discontinuous nodes and one for those
        left n-bit codes (:meth:`hold_precisely`), naming a few of the nodes, of the nodes in
        float they are read through and of the inputs: a keypoint head's 68 Signs, each read
        through Gathers in float, had written 104 notes of one line each (a new-user
        trial)."""
        notes = []
        for precise, (labels, inputs, vias) in self._jump_reads.items():
            many, plural = len(labels) > 1, len(inputs) > 1
            what = (f"{first_few(list(labels))} {'are' if many else 'is'} discontinuous: an "
                    f"input rounded across a jump changes "
                    f"{'their outputs' if many else 'its output'} by the jump")
            if vias:
                what += (f" ({'read' if many else 'it reads them'} through "
                         f"{first_few(list(vias))}, in float)")
            names = f"input{'s' if plural else ''} {first_few(list(inputs))}"
            notes.append(
                f"{what}; {names} held at {MAX_BITS} bits for {'them' if many else 'it'} (in "
                "float in a qdq file, whose containers hold 8 bits; inputs within a rounding "
                "step of a jump may still flip)" if precise else
                f"{what}; {names} {'are' if plural else 'is'} {self.bits}-bit codes, so "
                "outputs near a jump may flip")
        return notes

    # -- the walk ------------------------------------------------------------------------

    def build(self, plans: list[NodeAction]) -> None:
        self._plans = {p.name: p for p in plans}
        self._float = self._float_nodes(plans)
        self._jumps_ahead = self._reaching_jumps()
        if (self.optq or self.bias_correction) and self.cal.sample:
            targets = self._weight_targets(plans)
            nodes = {node.name: node for node in self.graph.nodes}
            needed = {name: target for name, target in targets.items()
                      if not self._one_column(nodes[name], target)}
            gathered = self.cal.layers
            if gathered is not None and needed.items() <= gathered.targets.items():
                # each node's statistics are its own: the gathered ones of these targets are
                # layer_stats's for them (up to the order of the sums where the calibration
                # took smaller batches)
                self._layers = {name: gathered.stats[name] for name in targets
                                if name in gathered.stats}
            else:
                self._layers = layer_stats(self.graph, self.table, self.cal.sample, needed,
                                           self.cal.runner)
            self._round_tensor_weights_ahead(plans)
        for info in self.graph.float_inputs():
            if info.name in self.cal.stats and not self._float_only(info.name):
                # Calibration-based: an input never negative on the calibration data is held
                # unsigned (negative values at run time clip to 0, as any out-of-range value
                # clips to the calibrated range).
                nonneg = self.cal.stats[info.name].minimum >= 0
                self.materialise(info.name, info.name, 1.0, nonneg)
        # (a bar over the walk: it rounds the weights of the layers with a weight layout, a
        # CNN's convolutions, in graph order: ResNet-50's 53, 3-6 s after the last bar)
        for node, plan in progress_bar(zip(self.graph.nodes, plans), total=len(plans),
                                       desc="quantizing", unit="node", progress=self.progress):
            op = self._ops[node.name]
            if plan.action is Action.STATIC:  # (op None: integers only, run as exported)
                self.steps.append(NodeStep(node, op, source=node,
                                           opsets=dict(self.graph.opsets) if op is None else {}))
                self.records.append(NodeRecord(node.name, node.qualified_type, _rule_text(plan),
                                               plan.text, "-"))
                continue
            n_bit = self.hold_precisely(node, op)
            if plan.action is Action.COMPENSATE:
                self.compensate(node, op, plan)
            elif node.name in self._float:
                self.compensate(node, op, plan, self._float[node.name])
            elif any(name in self._moved_exact for name in node.inputs):
                self.compensate(node, op, plan, "wide input")
            elif (any(np.ndim(self.codes[n].scale) for n in node.inputs if n in self.codes)
                  and not self._takes_channels(node)):
                self.compensate(node, op, plan, "per-channel input codes, and no per-channel rule")
            elif (any(self.codes[n].wide for n in node.inputs if n in self.codes)
                  and self._compensates_channels(node)
                  and any(out in self.active for out in node.outputs)):
                # on its real values, as a LayerNorm whose input is per-channel codes: run on
                # 32-bit integers with its epsilon rescaled, float32 kernels that differ in
                # their last bits (onnxruntime's, numpy's) flip an output code now and then;
                # a Shape of the wide sum (no activation out) reads its codes as they are
                self.compensate(node, op, plan, "wide input")
            else:
                self.scale_node(node, op, plan)
            if n_bit:
                record = self.records[-1]
                record.note = ", ".join(filter(None, [record.note, f"discontinuous: input at "
                                                                  f"{MAX_BITS} bits"]))
            self.codes.update(n_bit)
        for info in self.graph.outputs:
            if info.name in self._accumulators:
                acc, scale = self._accumulators[info.name]
                self.output_scales[info.name] = scale
                self.steps.append(ScaleStep(acc, info.name, self.factor(1.0 / scale, True),
                                            round=False, pre_round=True))
                continue
            code = self.codes.get(info.name)
            if code is None:
                continue
            self.output_scales[info.name] = code.scale
            factor = self.factor(1.0, True) if self.integer_outputs else code.dequantizing()
            self.steps.append(ScaleStep(code.name, info.name, factor, round=False))
        self.notes.extend(self.discontinuity_notes())

    def compensate(self, node: Node, op: Operator, plan: NodeAction, why: str = "") -> None:
        inputs = [self.dequantized(name) if name in self.codes else name for name in node.inputs]
        self._hold_copies_in_float([name for out in node.outputs if out in self.active
                                    for name in self._copies_into_floats(out)], self._float)
        exact = self._moves_exact_integers(node, op, plan)
        coded = {o for o in node.outputs if o in self.active and not self._float_only(o)
                 and not (self._float_output(o) and (exact or not self._tabulable(op)))
                 and not (exact and self._read_exactly_in_float(o))}
        self._moved_exact.update(o for o in node.outputs if o in self.active and o not in coded
                                 and exact)
        outputs = [self.fresh(f"{o}:float") if o in coded else o for o in node.outputs]
        self.steps.append(NodeStep(_renamed(node, inputs, outputs), op, source=node,
                                   opsets=dict(self.graph.opsets) if op is None else {}))
        scales = []
        nonneg = self._nonnegative(node, op, plan)
        for original, produced in zip(node.outputs, outputs):
            if original in coded:
                code = self.materialise(produced, original, 1.0, nonneg)
                scales.append(code.scale)
        back = ", ".join(f"{n} x1/{_scale_text(self.codes[n].scale)}"
                         for n in dict.fromkeys(node.inputs) if n in self.codes)
        note = "; ".join(filter(None, [f"float in: {back}" if back else "",
                                       "requantized out" if scales else "float out"]))
        note += f" ({why})" if why else ""
        self.records.append(NodeRecord(node.name, node.qualified_type, _rule_text(plan),
                                       "compensate: run in float", _scales_text(scales), note,
                                       why or plan.reason))

    def _select_from_table(self, node: Node, op: Operator, plan: NodeAction) -> None:
        """A selection from a float table by static indices (Gather of token ids): the output
        elements are table elements, so the table is held as codes at the output's calibrated
        scale and the node passes them on, one rounding in all (table rows the calibration
        never selected clip to the range, as any activation does). With one table whose axis
        feeds an output axis (a probe of the node), the codes may take one scale per channel
        of that axis (:meth:`_channel_scale`): the table's slices along it take the channels'
        scales (a position-embedding table with one outlier column)."""
        out = node.outputs[0]
        slots = table_slots(self.graph, op, node)
        axes = self._table_axes(node, op, slots[0]) if len(slots) == 1 else None
        scale, low, high = self.target(out, self._nonnegative(node, op, plan),
                                       axis=None if axes is None else axes[1],
                                       channels=axes is not None)
        table_scale, table_axis = scale, None
        if np.ndim(scale):
            table_axis = axes[0]
            table_ndim = self.consts[node.inputs[slots[0]]].ndim
            table_scale = along(np.ravel(scale), table_axis, table_ndim)
        inputs, constants, params = list(node.inputs), {}, {}
        clipped = total = 0
        for slot in slots:
            name = node.inputs[slot]
            inputs[slot] = self.fresh(f"{name}:codes")
            constants[inputs[slot]], beyond = _table_codes(self.consts[name], table_scale,
                                                           low, high)
            params[inputs[slot]] = IntegerParam("codes", table_scale, table_axis)
            clipped += beyond
            total += self.consts[name].size
        if clipped:  # silent otherwise: a position table calibrated on short sequences
            self.notes.append(
                f"{node.label}: {clipped} of its table's {total} values lie beyond the "
                "calibrated range and clip when selected (rows the calibration data never "
                "selected: positions past its sequence length, tokens it never held; "
                "calibrate on inputs that reach them)")
        produced = self.fresh(f"{out}:codes")
        self.steps.append(NodeStep(_renamed(node, inputs, [produced]), op, constants, node,
                                   params))
        self.codes[out] = Code(produced, scale, low, high, out not in self._unranged)
        self.records.append(NodeRecord(node.name, node.qualified_type, _rule_text(plan), plan.text,
                                       _scales_text([scale]),
                                       "table held as codes at the output's scale"))

    def _table_axes(self, node: Node, op: Operator, slot: int) -> tuple[int, int] | None:
        """(table axis, output axis) such that scaling the table's slices along the first
        scales the output along the second, by a probe of the node with index 0 everywhere
        (any table has a row 0); None when no axis pairs up."""
        inputs = []
        for index, name in enumerate(node.inputs):
            if index == slot:
                inputs.append(self.consts[name])
            elif not name:
                inputs.append(None)
            elif name in self.consts:
                inputs.append(self.consts[name])
            else:
                shape, dtype = example_shape(self.graph, name), self.graph.dtype_of(name)
                if shape is None or dtype is None:
                    return None
                inputs.append(np.zeros(shape, dtype))
        return channel_axes(op, node, inputs, slot)

    def _tensor_target(self, node: Node, op: Operator, slot: int) -> WeightTarget | None:
        """Which axis of the constant in ``slot`` feeds which output axis (a probe)."""
        if node.name in self._targets:
            return self._targets[node.name]
        axes = example_channel_axes(self.graph, node, op, self.active, slot)
        return None if axes is None else WeightTarget(slot, *axes, ())

    def _tensor_weight(self, node: Node, op: Operator, rule: Rule, slot: int):
        """Integer codes, per-channel scale, its axis and the output axis for a constant on a
        tensor input (see :func:`.rules.tensor_weight_slot`): scaling one of its slices scales one
        output channel, exactly as for a declared weight, and its rounding is output-aware the
        same way. None when it is not such a weight or per-tensor scales were asked for."""
        if not self.per_channel or tensor_weight_slot(self.graph, node, op, rule) != slot:
            return None
        found = (self._rounded_ahead.pop(node.name) if node.name in self._rounded_ahead
                 else self._tensor_weight_codes(node, op, slot))
        if found is None:
            return None
        *weight, shift = found
        if shift is not None:
            self._bias_shift[node.name] = shift
        return tuple(weight)

    def _tensor_weight_codes(self, node: Node, op: Operator, slot: int):
        """:meth:`_tensor_weight`'s codes, scale and axes, and the bias correction its rounding
        calls for (None: none); reads the builder, changes nothing in it."""
        target = self._tensor_target(node, op, slot)
        if target is None:
            return None
        weight = self.consts[node.inputs[slot]]
        reduce = tuple(a for a in range(weight.ndim) if a != target.weight_axis)
        peak = weight_reach(weight, reduce, self.signed_max).reshape(-1)
        scale = np.where(peak > 0, self.signed_max / np.where(peak > 0, peak, 1.0), 1.0)
        codes, shift = self._rounded(node, weight, along(scale, target.weight_axis, weight.ndim))
        return codes, scale, target.weight_axis, target.out_axis, shift

    def _round_tensor_weights_ahead(self, plans: list[NodeAction]) -> None:
        """Round the tensor weights of the output-aware targets before the build, on all cores
        (engine/parallel.py): each reads only its own weight and statistics, and the build
        then takes them in graph order (all-MiniLM-L6-v2: 3 s of its 4 s build, serial)."""
        work = [(node, op, slot) for node, plan in zip(self.graph.nodes, plans)
                if node.name in self._targets and (op := self._ops[node.name]) is not None
                and weight_layout(op, plan.rule) is None
                and (slot := tensor_weight_slot(self.graph, node, op, plan.rule)) is not None]
        def rounded(item):
            found = self._tensor_weight_codes(*item)
            bar.update(1)
            return found

        with progress_bar(total=len(work), desc="rounding weights", unit="layer",
                          progress=self.progress and bool(work)) as bar:
            self._rounded_ahead = dict(zip((node.name for node, _, _ in work), mapped(
                rounded, work, sum(self.consts[node.inputs[slot]].nbytes
                                   for node, _, slot in work))))

    def _float_only(self, tensor: str, floats: Collection[str] | None = None) -> bool:
        """Whether every reader of ``tensor`` runs in float, so that codes for it would only
        add a rounding between two float nodes."""
        return read_in_float_only(tensor, self.consumers, self.graph.output_names,
                                  self._float if floats is None else floats)

    def _read_exactly_in_float(self, tensor: str) -> bool:
        """Whether every reader of ``tensor``, a selection's output of wide accumulators run
        in float (:meth:`_moves_exact_integers`), runs in float on it: a float node, or a
        scale-invariant one (a LayerNorm), which runs in float on a wide input
        (:meth:`_compensates_channels`). n-bit codes between them would round the sum held
        wide for those readers (:meth:`_takes_wide`) all the same: a Gemm with per-channel
        weights between two Reshapes (a MatMul and its bias Add over 3-D tokens, as graph
        cleaners rewrite it), whose Reshape takes no per-channel codes, had requantized the
        LayerNorm's input to 8 bits per tensor (43.7 -> 39.4 dB on a digits model)."""
        in_float = {user.name for user in self.consumers.get(tensor, [])
                    if user.name in self._float or self._compensates_channels(user)}
        return self._float_only(tensor, in_float)

    def _float_output(self, tensor: str) -> bool:
        """Whether ``tensor`` is a graph output that nothing reads and the outputs are
        dequantized, so that n-bit codes for it would be dequantized at once."""
        return (not self.integer_outputs and tensor in self.graph.output_names
                and not self.consumers.get(tensor))

    @staticmethod
    def _tabulable(op: Operator | None) -> bool:
        """Whether a compensated node of ``op`` can become a table of codes in the integer
        format (declared element-wise unary, lower/tables.py; onnxruntime fuses its qdq form
        likewise, QLinearSigmoid), which needs codes on its input and output. Any other
        compensated node runs in float in every format: its graph output nothing reads is
        dequantized at once, so n-bit codes there only round it, and a layer's output it
        alone reads is held wide (:meth:`_takes_wide`). A CRNN ending in LogSoftmax (values
        in [-2.57, -2.21], a range that takes 0 in: steps of 0.02 where the top two classes
        are 0.01 apart) had 34% frame agreement with the float model at 52.5 dB;
        onnxruntime's quantize_static, which leaves it float, 98%."""
        return is_elementwise_unary(op)

    def _moves_exact_integers(self, node: Node, op: Operator | None, plan: NodeAction) -> bool:
        """Whether ``node`` only moves the elements (a selection, as a Reshape or Flatten) of
        inputs held wide, exact integer accumulators: run in float on their dequantized
        values, its outputs are the accumulator's values, which a graph output takes as they
        are (as a last layer's accumulator is dequantized, not requantized). The Reshape after
        a classifier convolution with per-channel scales runs in float (no per-channel rule
        for a Reshape): requantized, its 1000 logits had been rounded to 256 levels, and ties
        at the top had cut top-1 agreement with the float model to 0.66 on a MobileNetV3,
        where onnxruntime had 0.86 (0.83-0.91 since)."""
        coded = [node.inputs[slot] for slot in plan.activation_slots
                 if node.inputs[slot] in self.codes]
        return (op is not None and is_lattice_selection(op) and bool(coded)
                and all(self.codes[name].wide for name in coded))

    def _float_nodes(self, plans: list[NodeAction]) -> dict[str, str]:
        """The nodes that run in float besides the compensated ones, each with why: the
        float region of each activation kept in float (mixed precision), and each
        sum a static operand saturates (saturation.py), or pass-through node passing its
        positions on, whose readers all run in float (proofs/saturation.md, Corollary 15.2),
        decided readers first, so a chain of them (a boolean mask applied by a Where, then
        added to the scores, cast to float32, of a Softmax) runs in float as a whole; and so,
        the same way, does each node no activation of the model's data enters whose readers
        all run in float (static_alone.py: rotary angles before Cos and Sin)."""
        floats = {p.name: "" for p in plans if p.action is Action.COMPENSATE}
        for name in invariant_regions(self.graph, self.table, plans, self.active):
            floats.setdefault(name, INVARIANT_REASON)
        if self.kept_float:  # (regions index the whole graph: only when asked for)
            regions = FloatRegions(self.graph, self.table, plans, self.active)
            for tensor in self.kept_float:
                # no code holds inf or NaN: such a tensor's maker and readers run in float,
                # and a finite output of theirs takes codes at its own range (a Softmax's
                # after a -inf mask); a tensor kept exact takes its whole region
                if tensor in self.cal.non_finite:
                    for node in regions.touching(tensor):
                        floats.setdefault(node.name, "it makes or reads a tensor that takes "
                                          "inf or NaN, which no code holds")
                    continue
                for name in regions.of(tensor)[0]:
                    floats.setdefault(name, self.kept_reasons.get(tensor, MIXED_PRECISION))
        carrying = self._carrying_saturated()
        for node in reversed(self.graph.nodes):
            if (self._plans[node.name].action is not Action.STATIC
                    and any(out in carrying for out in node.outputs)
                    and all(self._float_only(out, floats) for out in node.outputs)):
                # on codes the masked positions would read back as the range's end, not as
                # the mask, in the float consumers; computed in float they keep the exact mask
                floats.setdefault(node.name, (
                    "a static operand saturates it" if any(
                        out in self.cal.saturated for out in node.outputs)
                    else "it passes on positions a static operand saturates")
                    + " and every consumer runs in float")
        for node in self.graph.nodes:
            op, plan = self._ops[node.name], self._plans[node.name]
            if (plan.action is Action.SCALE and plan.rule is not None and op is not None
                    and plan.rule.kind is RuleKind.PASS_THROUGH
                    and len(plan.activation_slots) == 1
                    and not is_integer_polynomial(op, set())
                    and all(self._float_output(out) for out in node.outputs if out)):
                # its output, dequantized at once, is finer than its input's codes: a mean
                # over a global pool (H x W codes averaged) rounded to n bits at the range
                # calibrated at one image size had cost a digits classifier 47.5 -> 34.6
                # dB and clipped at other sizes (28.3 dB at 40x40; onnxruntime, which
                # leaves it float, 37.1)
                floats.setdefault(node.name, OUTPUT_FINER_REASON)
        for name in self._copies_of_floats_into_outputs(floats):
            floats.setdefault(name, COPIED_OUT_REASON)
        self._hold_copies_in_float(self._copies_between_floats(floats), floats)
        mark_static_alone(self.graph, self._ops, plans, floats, self.consumers)
        return floats

    def _copies_of_floats_into_outputs(self, floats: Mapping[str, str]) -> list[str]:
        """The copies and joins (:meth:`_copies_or_joins`: a Reshape, Transpose, Concat) that
        move float nodes' outputs, through such nodes alone, into graph outputs dequantized
        at once: codes between them would round the float values for nothing (PP-OCRv4's
        recognizer ends in Softmax -> Reshape, and its probabilities had been rounded to 8
        bits; a streaming speaker encoder's cell state output, a Concat of its three LSTMs'
        Y_c, had each rounded to 8 bits and fed back at the next chunk: 9.6 dB after 5
        chunks, 35.1 with them float)."""
        def ends(out: str, carriers: set[str]) -> bool:
            return self._float_output(out) or (
                out not in self.graph.output_names and bool(self.consumers.get(out))
                and all(user.name in carriers for user in self.consumers[out]))

        return self._float_carriers(floats, ends, from_inputs=False)

    def _copies_between_floats(self, floats: Mapping[str, str]) -> list[str]:
        """The copies and joins (:meth:`_copies_or_joins`: a Transpose, a Squeeze, a Concat)
        that move float model inputs or float nodes' outputs, through such nodes alone, to
        nodes that all run in float (a Shape beside them reads no element): no integer node
        reads the codes such a copy would make, so they would only round the values between
        two float ends. A speaker encoder's mel input (values 3.8e-10 to 0.75, median 2e-4)
        reached its LSTM, kept in float by ``--float-op LSTM``, through the exporter's
        Transpose: its 8-bit codes had set most of it to 0 (held-out embedding 7.8 dB;
        onnxruntime's quantize_static, which leaves the input float, 34.0)."""
        return self._float_carriers(
            floats, lambda out, carriers: self._read_in_float(out, floats, carriers),
            from_inputs=True)

    def _float_carriers(self, floats: Mapping[str, str],
                        ends: Callable[[str, set[str]], bool], from_inputs: bool) -> list[str]:
        """The copies and joins (:meth:`_copies_or_joins`) each of whose outputs ``ends``
        (given the carriers found after it: a chain of them, readers first) and whose
        sources come unrounded (:meth:`_float_source`: a node in ``floats``, a carrier
        before it, or with ``from_inputs`` a float model input), makers first."""
        carriers: set[str] = set()
        for node in reversed(self.graph.nodes):  # readers first: a chain of copies
            if self._copies_or_joins(node) and all(
                    ends(out, carriers) for out in node.outputs if out):
                carriers.add(node.name)
        producers, copied = self.graph.producers(), []
        for node in self.graph.nodes:  # makers first: a copy of a copy in float
            sources = [node.inputs[slot] for slot in self._plans[node.name].activation_slots]
            if node.name in carriers and sources and all(
                    self._float_source(name, producers, floats, copied, from_inputs)
                    for name in sources):
                copied.append(node.name)
        return copied

    def _copies_into_floats(self, tensor: str) -> list[str]:
        """The copies (:func:`.rules.is_copy`: a Transpose, a Reshape) that carry ``tensor``,
        the output of a node found to run in float as the walk reaches it (a LayerNorm on
        per-channel codes), through such copies alone, to nodes that all run in float; none
        where any reader takes its values on codes. :meth:`_copies_between_floats` finds
        those between float ends known before the walk: a pre-norm encoder's LayerNorm, in
        float for its per-channel input codes, fed a Transpose into the attention's input
        projection kept in float by ``--keep-float``; the Transpose had moved 8-bit codes
        between the two, rounding values no integer node read, and in the integer format
        (Transpose of codes -> Cast -> MatMul) onnxruntime 1.32's default session crashed
        loading the file (SIGSEGV: exit 3)."""
        def after(name: str) -> list[str]:
            return [out for user in self.consumers.get(name, []) if user.name not in self._float
                    and is_copy(self._ops.get(user.name)) for out in user.outputs if out]

        def answer(name: str, found: dict[str, bool]) -> bool:
            copies = {user.name for user in self.consumers.get(name, [])
                      if is_copy(self._ops.get(user.name))
                      and self._plans[user.name].action is not Action.STATIC
                      and all(found.get(out, False) for out in user.outputs if out)}
            return self._read_in_float(name, self._float, copies)

        if not _bottom_up(tensor, after, answer):
            return []
        copies, stack = [], [tensor]
        while stack:
            for user in self.consumers.get(stack.pop(), []):
                if user.name not in self._float and is_copy(self._ops.get(user.name)) \
                        and user.name not in copies:
                    copies.append(user.name)
                    stack.extend(out for out in user.outputs if out)
        return copies

    def _copies_or_joins(self, node: Node) -> bool:
        """Whether ``node`` is a copy (:func:`.rules.is_copy`: a Reshape, Transpose, Squeeze)
        or a selection among several activations (:func:`.rules.is_lattice_selection`: a
        Concat): on float values either gives float values, each output element one of its
        inputs'. (A one-input selection, a Relu, keeps its codes: the node on integers that
        a model of a float input, a Relu and a float node has.)"""
        op = self._ops[node.name]
        return is_copy(op) or (is_lattice_selection(op)
                               and len(self._plans[node.name].activation_slots) > 1)

    def _read_in_float(self, tensor: str, floats: Mapping[str, str],
                       copies: set[str]) -> bool:
        """Whether every reader of ``tensor`` runs in float, is such a copy, or reads no
        element of it (a Shape), with at least one reading its values, and it is no graph
        output."""
        users = self.consumers.get(tensor, [])
        valued = [user for user in users if not reads_no_elements(self._ops.get(user.name))]
        return (tensor not in self.graph.output_names and bool(valued)
                and all(user.name in floats or user.name in copies for user in valued))

    def _float_source(self, tensor: str, producers: Mapping[str, Node],
                      floats: Mapping[str, str], copied: list[str], from_inputs: bool) -> bool:
        """Whether ``tensor`` comes to its reader unrounded: the output of a node in float or
        of a copy of such, or (``from_inputs``) a float model input."""
        maker = producers.get(tensor)
        if maker is None:
            return (from_inputs and tensor in self.active
                    and tensor in self.graph.input_names)
        return maker.name in floats or maker.name in copied

    def _hold_copies_in_float(self, copies: list[str], floats: dict[str, str]) -> None:
        """Put ``copies`` (between float ends: :meth:`_copies_between_floats`,
        :meth:`_copies_into_floats`) in ``floats``, and the readers of their tensors that read
        no element (:meth:`_shapes_of`), each unless ``floats`` already gives it a reason."""
        for name in copies:
            floats.setdefault(name, COPIED_BETWEEN_REASON)
        for name in self._shapes_of(copies):
            floats.setdefault(name, SHAPE_OF_FLOAT_REASON)

    def _shapes_of(self, copies: list[str]) -> list[str]:
        """The readers of the copies' inputs and outputs that read no element (a Shape):
        they read the float tensor where it holds no codes."""
        nodes = {node.name: node for node in self.graph.nodes}
        tensors = {name for copy in copies for name in (*nodes[copy].inputs, *nodes[copy].outputs)}
        return [user.name for name in sorted(tensors) for user in self.consumers.get(name, [])
                if reads_no_elements(self._ops.get(user.name))
                and self._plans[user.name].action is not Action.STATIC]

    def _reaching_jumps(self) -> dict[str, str]:
        """Each node in float whose outputs reach a node that jumps, itself in float, through
        nodes in float alone, with that node's label. The jump reads what such a node
        computes from its inputs' codes, not codes of its own, so the node's inputs are the
        ones to hold precisely (:meth:`hold_precisely`): a Flatten before a Hardmax, run in
        float as one region (an opset-11 Hardmax over axis 2, spelt so for opset 13), had
        read 8-bit codes, 15 dB where the Hardmax on codes held at 16 bits gave 44, and no
        note said why."""
        ahead: dict[str, str] = {}
        for node in reversed(self.graph.nodes):
            if node.name not in self._float:
                continue
            for out in node.outputs:
                for user in self.consumers.get(out, []):
                    if user.name not in self._float:
                        continue
                    op = self._ops.get(user.name)
                    if op is not None and jumps(op):
                        ahead.setdefault(node.name, user.label)
                    elif user.name in ahead:
                        ahead.setdefault(node.name, ahead[user.name])
        return ahead

    def scale_node(self, node: Node, op: Operator, plan: NodeAction) -> None:
        rule = plan.rule
        assert rule is not None
        tensors = [t.name for t in op.inputs]
        inputs = list(node.inputs)
        constants: dict[str, np.ndarray] = {}
        integers: dict[str, IntegerParam] = {}  # which constants are integers, at what scale
        tensor_scale: dict[str, float] = {}
        consts = self.consts
        aligned = rule.kind is RuleKind.ALIGNED
        codes_in = [self.codes[node.inputs[s]] for s in plan.activation_slots]
        selection = is_lattice_selection(op)
        if not codes_in and selection and len(node.outputs) == 1:
            return self._select_from_table(node, op, plan)
        if not codes_in and not selection:
            # no activation among its inputs, only static tensors and constants, one of them a
            # table (x / 255 of a uint8 image minus a per-channel mean): exact in float, its
            # output quantized as any activation's. At scale 1 for want of an input scale,
            # the codes had rounded the image to 0 and 1 and the mean to 0 (2.9 dB)
            return self.compensate(node, op, plan, "no activation input: static tensors and "
                                   "constants, exact in float")
        tensor_weight = None  # (per-channel scale, output axis) of a constant tensor input
        column_sum = None  # its largest sum of |integer weights| into one output element
        # a node reading a table by static indices (Gather of token ids) has no codes in
        # an output of degree 0 (a comparison) carries no scale, so no accumulator wants
        # headroom: its inputs meet on the coarsest input's grid, where a constant equal to
        # an input's value takes that input's code (at 16x it took another: Equal of
        # hummingbird's tree paths to their leaves never held, 0.5 dB)
        compares = aligned and rule.degree == 0
        common = _common_scale(codes_in, selection or compares) if codes_in else 1.0
        apart, widest_code = (_too_far_apart(codes_in, common, self.signed_max,
                                             self._float_only(node.outputs[0]))
                              if aligned and not selection else ("", None))
        if selection and aligned and _rescaled(codes_in, common) and (
                self._float_only(node.outputs[0]) or self._float_output(node.outputs[0])):
            return self.compensate(node, op, plan, "a selection from inputs at other scales, "
                                   "read in float: one scale would round them again")
        if apart:
            # its widest input is kept in float, as a near-zero divisor is (quantize), and the
            # plan made again: at a scale that held a mask at finfo(float32).min, every score
            # was code 0; at the codes of a -1e4 mask, a key bias added in it was 0
            widest = next(node.inputs[slot] for slot, code in zip(plan.activation_slots,
                                                                  codes_in)
                          if code is widest_code)
            stats = self.cal.stats[widest]
            self._far_apart.append((f"{widest!r} (calibrated {stats.minimum:.3g} to "
                                    f"{stats.maximum:.3g}) in sum {node.name!r}: {apart}",
                                    widest))
            return self.compensate(node, op, plan, "its inputs' ranges lie too far apart")
        beyond = (self._static_beyond_int32(node, op, common)
                  if aligned and not selection and codes_in else "")
        if beyond:  # the integer format could not hold it: run the sum in float in every one
            return self.compensate(node, op, plan, f"static input {beyond!r} reaches beyond "
                                   "int32 at the sum's scale")
        degrees = tensor_degrees(op, rule)
        unbounded = next((name for slot, name in enumerate(node.inputs)
                          if not aligned and name in consts and name not in self.codes
                          and slot_binding(op, slot) in tensors
                          and not np.all(np.isfinite(consts[name]))), None)
        if unbounded is not None:  # its scale would be 127 / inf = 0: a Div by a std of -inf
            # (a fuzz run) computes finite values, and 0 ** -1 had stopped quantize (exit 3)
            return self.compensate(node, op, plan, f"constant {unbounded!r} holds inf or NaN, "
                                   "which no code holds")
        for slot, name in enumerate(node.inputs):
            binding = slot_binding(op, slot)
            if not name or binding not in tensors:
                continue
            if name in self.codes:
                code = self.codes[name]
                if aligned and not np.array_equal(code.scale, common):
                    inputs[slot] = self._at_scale(code, common, name)
                else:
                    inputs[slot] = code.name
                tensor_scale[binding] = common if aligned else code.scale
                continue
            selection = False
            if aligned:
                inputs[slot] = self._constant_at(name, common, constants, node, compares)
                tensor_scale[binding] = common
            elif name in consts:
                inputs[slot] = self.fresh(f"{name}:int")
                weight = self._tensor_weight(node, op, rule, slot)
                if weight is not None:  # scales along an axis, carried like weights'
                    codes, scale, weight_axis, out_axis = weight
                    tensor_weight = (scale, out_axis)
                    column_sum = _largest_channel_sum(np.abs(codes), weight_axis)
                    tensor_scale[binding] = 1.0
                    integers[inputs[slot]] = IntegerParam("weight", scale, weight_axis)
                else:
                    scale = _weight_scale(consts[name], self.signed_max)
                    if _divides_by(degrees.get(binding), consts[name]):
                        # one positive divisor: at its own value's scale it is code 1, exact,
                        # and the integer format divides by nothing (x / 1 maps integers to
                        # integers; at code 127 a decomposed HardSwish's Div by 6 ran in float)
                        scale = 1.0 / float(np.ravel(consts[name])[0])
                    codes = np.round(consts[name] * scale)
                    tensor_scale[binding] = scale
                    integers[inputs[slot]] = IntegerParam("weight", scale)
                    if (rule.kind is RuleKind.HOMOGENEOUS and not is_elementwise(op)
                            and np.ndim(codes) >= 2):  # a matrix product: its sums' bound
                        column_sum = _largest_channel_sum(np.abs(codes), None)
                constants[inputs[slot]] = codes.astype(np.float32)
            else:
                tensor_scale[binding] = 1.0  # a static tensor enters exact, at scale 1
        scales = [tensor_scale.get(t, 1.0) for t in tensors]
        coarse = self._coarse_constant_divisor(node, op, degrees, inputs, constants, integers)
        if coarse is not None:  # (0.01 beside 5 is code 0): in float on the constant as it is
            return self.compensate(node, op, plan, f"constant divisor {coarse!r}: its codes "
                                   f"are off by more than 1/{2 * MIN_DIVISOR_CODES} of a value")
        near_zero = [found for t, degree in degrees.items()
                     if (found := self._divisor_near_zero(node, op, t, degree, tensor_scale))]
        if near_zero:  # refused at the end of the walk, with every other such divisor
            self._near_zero.extend(near_zero)
            return self.compensate(node, op, plan, "a divisor near 0")
        param_scale = common if aligned or len(tensors) > 1 else scales[0]
        acc_scale: np.ndarray | float = (
            _channel_output_scale(rule, scales) if any(np.ndim(s) for s in scales)
            else rule.output_scale(scales))
        layout = weight_layout(op, rule)
        attrs = dict(node.attrs)
        real = set()
        weight_scale, out_axis, weights_sum = self._weights(node, op, layout, inputs,
                                                            constants, integers, param_scale)
        own_weights = weights_sum is not None  # (weights and bias its parameters: Conv, Gemm)
        if weight_scale is None and tensor_weight is not None:
            weight_scale, out_axis = tensor_weight
            if np.ptp(weight_scale) == 0:  # one scale, as a per-tensor weight's: a Reshape
                weight_scale = float(np.ravel(weight_scale)[0])  # passes it on (STN's grid)
        if column_sum is None:
            column_sum = weights_sum
        bias_reach = 0.0
        for slot, name in enumerate(node.inputs):
            binding = slot_binding(op, slot)
            if not name or binding is None or binding in tensors:
                continue
            params = binding.split()
            exponents = {rule.param_exponents.get(p, 0) for p in params}
            if layout and set(params) <= layout.weights and name in consts:
                continue  # quantized in _weights
            if layout and set(params) <= layout.biases and name in consts and len(exponents) == 1:
                k = float(exponents.pop())
                shift = self._bias_shift.get(node.name)
                value = consts[name]
                if shift is not None and shift.shape == np.shape(value):
                    value = value - shift
                    self._corrected.add(node.name)
                bias_scale = param_scale**k * _bias_scale(weight_scale, consts[name])
                codes = np.round(np.asarray(value, np.float64) * bias_scale)
                if np.abs(codes).max(initial=0) > BIAS_LIMIT:
                    # a channel with near-zero weights and a real bias: its weight scale puts
                    # the bias beyond int32, where a cast would wrap it to garbage
                    return self.compensate(node, op, plan, "its bias at the accumulator's "
                                           "scale is beyond 32-bit integers (a channel with "
                                           "near-zero weights and a bias)")
                inputs[slot] = self.fresh(f"{name}:int")
                constants[inputs[slot]] = codes.astype(np.float32)
                bias_reach += float(np.abs(codes).max(initial=0))
                integers[inputs[slot]] = IntegerParam(
                    "bias", bias_scale, None if np.ndim(bias_scale) == 0 else np.ndim(value) - 1)
                continue
            real.update(params)
            if len(exponents) > 1:
                return self.compensate(node, op, plan, "parameters in one input rescale apart")
            k = float(exponents.pop())
            if k == 0:
                continue
            if name in consts:
                rescaled = np.asarray(consts[name], np.float64) * param_scale**k
                if not _holds_in_float32(consts[name], rescaled):
                    return self.compensate(node, op, plan, _BEYOND_FLOAT32.format(name))
                inputs[slot] = self.fresh(f"{name}:rescaled")
                constants[inputs[slot]] = rescaled.astype(np.float32)
            else:
                dst = self.fresh(f"{name}:rescaled")
                self.steps.append(ScaleStep(name, dst, self.factor(param_scale**k), False))
                inputs[slot] = dst
        if node.name in self._bias_shift and node.name not in self._corrected:
            self._bias_into_sum(node, out_axis)
        carried = input_params(op)
        for attr, param in op.onnx_attrs.items():
            k = float(rule.param_exponents.get(param, 0))
            real.add(param)
            if k and (attr in node.attrs or param not in carried):
                # an absent attribute's value as the plan read it (the schema's default, or
                # computed from the node's input shapes): written explicitly, rescaled
                value = (plan.computed[attr] if attr in plan.computed
                         else op.attribute(attr, node.attrs))
                rescaled = np.asarray(value, dtype=np.float64) * param_scale**k
                if not _holds_in_float32(value, rescaled):  # ONNX float attributes: float32
                    return self.compensate(node, op, plan, _BEYOND_FLOAT32.format(attr))
                attrs[attr] = float(rescaled)
        if weight_scale is not None:
            if np.ndim(acc_scale) > 1 and np.ndim(weight_scale) == 1:
                # per-channel input codes (shaped to broadcast) times per-channel weights (a
                # vector): one scale per channel only where both run along the output axis
                # (FastViT's layer scale, x * gamma[C, 1, 1]; the two vectors multiplied
                # as they were made a C x C grid)
                if _scale_axis(acc_scale) != out_axis:
                    return self.compensate(node, op, plan, "per-channel input codes along "
                                           "another axis than its weights' channels")
                weight_scale = along(weight_scale, out_axis, np.ndim(acc_scale))
            acc_scale = acc_scale * weight_scale
        outputs = [self.fresh(f"{o}:acc") if o in self.active else o for o in node.outputs]
        step = NodeStep(_renamed(node, inputs, outputs, attrs), op, constants, node, integers)
        self.steps.append(step)
        nonneg = self._nonnegative(node, op, plan)
        integer = is_integer_polynomial(op, real)
        out_scales = []
        note = ", ".join(filter(None, ["per-channel weights" if np.ndim(weight_scale) else "",
                                       self._rounding_note(node)]))
        for original, produced in zip(node.outputs, outputs):
            if original not in self.active:
                continue
            scale_array = _along_axis(acc_scale, out_axis, self.graph, original)
            if (integer and not self.integer_outputs and original in self.graph.output_names
                    and node.name not in self._inexact_sums):
                # The exact integer accumulator is dequantized as it is: requantizing it to
                # n bits first would only add a rounding. (A sum that may pass 2^24 is
                # requantized, so that a float32 rounding seldom changes the output.)
                self._accumulators[original] = (produced, scale_array)
                # a selection (a Reshape after the last layer) passes on its input's codes:
                # n-bit ones, clipped to their calibrated range, unless held wide
                source = ("the integer accumulator" if not selection
                          or any(c.wide for c in codes_in) else f"its input's {self.bits}-bit "
                          "codes (clipped to their calibrated range)")
                note = ", ".join(filter(None, [note, f"{original} dequantized from {source}"]))
                if not self.consumers.get(original):
                    continue
            reach = self._wide_reach(op, codes_in, constants, common, column_sum)
            if reach is None and integer and column_sum is None:
                reach = self._summed_reach(node, op, codes_in)
            if reach is not None and column_sum is not None:
                reach += bias_reach
            readers = ""  # who takes the output as the integers it was computed as
            if integer and reach is not None and reach <= BIAS_LIMIT and self._takes_wide(
                    original, sums=not own_weights):  # int32 holds it
                readers = "read by float nodes" if own_weights else "read by sums, float nodes"
            elif (integer and not self.integer_outputs and node.name not in self._inexact_sums
                  and (reach is None or reach <= BIAS_LIMIT)
                  and self._selected_into_outputs(original)):
                # read off as the graph outputs a Reshape or Flatten makes of it: exact, as
                # the accumulator of a layer that is an output itself (int32 holds it: its
                # bound, or a weight layer's float32 sum below 2^24, not in _inexact_sums)
                readers = "read by selections into outputs"
            passed_on = (selection and np.ndim(acc_scale) == 0 and not constants and all(
                not self._is_float(i) for s, i in enumerate(node.inputs)
                if i and s not in plan.activation_slots))
            if passed_on and not any(c.wide for c in codes_in):
                # activations' n-bit codes passed on, beside indices, shapes, masks alone:
                # held wide too (a Concat of levels' scores, read by a TopK into outputs),
                # they are those n-bit codes, which a jump reads again at MAX_BITS
                self._selected[original] = (step, tuple(
                    (node.inputs[s], step.node.inputs[s]) for s in plan.activation_slots))
                if all(c.name in self._precise_codes for c in codes_in):  # (a jump's own)
                    self._precise_codes.add(produced)
            if readers:
                bound = float(BIAS_LIMIT if reach is None else reach)
                self.codes[original] = Code(produced, scale_array, -bound, bound, wide=True)
                out_scales.append(scale_array)
                note = ", ".join(filter(None, [note, f"held wide ({readers})"]))
                continue
            if selection and np.ndim(acc_scale) == 0:
                low = min(c.low for c in codes_in)
                high = max(c.high for c in codes_in)
                self.codes[original] = Code(produced, float(acc_scale), low, high,
                                            any(c.ranged for c in codes_in))
                out_scales.append(float(acc_scale))
                continue
            count = 1 if integer or selection else self._divided_by(node, op, plan, codes_in,
                                                                     original)
            code = self.materialise(produced, original, scale_array * count, nonneg,
                                    pre_round=integer, divided_by=count)
            out_scales.append(code.scale)
        self.records.append(NodeRecord(node.name, node.qualified_type, _rule_text(plan), plan.text,
                                       _scales_text(out_scales), note))

    @staticmethod
    def _wide_reach(op: Operator, codes_in: list[Code], constants: dict, common,
                    column_sum: float | None) -> float | None:
        """A bound on |integer output| of a weight layer (its inputs' reach times its largest
        column sum) or of an element-wise sum (its inputs' reach at the common scale, and its
        constants'); None for any other node."""
        if not codes_in:
            return None
        if column_sum is not None:
            return column_sum * max(max(abs(c.low), abs(c.high)) for c in codes_in)
        if sum_coefficients(op) is None:
            return None
        coefficients = np.abs(np.asarray(sum_coefficients(op), np.float64)).max()
        reach = sum(max(abs(c.low), abs(c.high)) * float(np.max(common / np.asarray(c.scale)))
                    for c in codes_in)
        reach += sum(float(np.abs(v).max(initial=0)) for v in constants.values())
        return float(coefficients * reach)

    def _divided_by(self, node: Node, op: Operator, plan: NodeAction, codes_in: list[Code],
                    tensor: str) -> int:
        """N where ``node`` makes ``tensor`` a sum of its one input's n-bit codes divided by N,
        by its declaration (an element sum, :func:`.rules.is_element_sum`) and a probe at the
        shapes the graph fixes (:func:`.probe.mean_count`: a GlobalAveragePool, a
        ReduceMean); else 1. Its requantization multiplies N back first
        (:class:`.steps.ScaleStep`), so the integer format can compute the sum on integers
        and requantize it with the same factor, to the last code (the mean had run in float
        there). Not for a graph output (dequantized, never requantized), nor where the sums
        may reach DIVIDED_SUM_LIMIT."""
        if (len(codes_in) != 1 or codes_in[0].wide or tensor in self.graph.output_names
                or any(plan.rule.param_exponents.values()) or not is_element_sum(op)):
            return 1
        count = mean_count(self.graph, node, op, self.active)
        reach = max(abs(codes_in[0].low), abs(codes_in[0].high))
        return count if count is not None and count * reach < DIVIDED_SUM_LIMIT else 1

    def _summed_reach(self, node: Node, op: Operator, codes_in: list[Code]) -> float | None:
        """A bound on |integer output| of a sum of one input's elements with coefficients
        >= 0 (a ReduceSum; :func:`.rules.is_element_sum`): its input's reach times its output
        on ones (:func:`.probe.ones_gain`); None for a selection, which passes its input's
        codes on as they are, and for any other node."""
        if len(codes_in) != 1 or is_lattice_selection(op) or not is_element_sum(op):
            return None
        gain = ones_gain(self.graph, node, op, self.active)
        return None if gain is None else gain * max(abs(codes_in[0].low), abs(codes_in[0].high))

    def _carries_integers(self, node: Node, tensor: str) -> bool:
        """Whether ``node`` runs on ``tensor``'s codes, its only activation input, and makes
        integers of them at its scale: a selection that moves or picks elements (a Reshape, a
        MaxPool) or a sum of its elements (a ReduceSum: affine_grid's matrix product in pieces
        in a dynamo export). Its outputs' readers decide whether ``tensor`` stays wide."""
        if not self._on_codes_of(node, tensor):
            return False
        plan, op = self._plans[node.name], self._ops[node.name]
        return (not any(plan.rule.param_exponents.values())
                and (is_lattice_selection(op) or is_element_sum(op))
                and is_integer_polynomial(op, set()))

    def _takes_wide(self, tensor: str, sums: bool = True) -> bool:
        """Whether every reader of ``tensor`` (an integer accumulator or sum) takes it wide, as
        the integers it was computed as: an element-wise sum (a MatMul's bias Add, a residual
        Add) brings it and its other inputs to one scale there (:func:`_common_scale`); a node
        that runs in float on it (a LayerNorm, compensated) dequantizes it exactly; a node
        that makes integers of its codes at its scale (a Relu, a Reshape, a ReduceSum:
        :meth:`_carries_integers`) leaves it to its own readers. Rounding it to n bits would
        only add an error: all-MiniLM-L6-v2's feed-forward output, whose outlier channel is
        large at a few tokens only, and its residual sums cost it most of its error so
        (docs/engine.md, wide sums).

        Not ``sums``: the output of a layer with weights of its own (a Conv, a Gemm), which
        every deployment runs as one integer kernel writing n-bit codes (QLinearConv, QGemm)
        for the sums (QLinearAdd) and tables of codes (QLinearSigmoid) that read it; it is
        held wide only where every reader runs in float on it anyway (a LayerNorm, a
        Softmax, an L2 normalization: CLIP's projections, 22.5 -> 28.0 dB), or is a sum
        whose own output is held so, on to such readers alone: that sum writes no codes
        for any reader, so no deployment runs it on codes (onnxruntime's Add between a
        QGemm with float output and a LayerNorm is a float Add). onnx-simplifier writes a
        transformer's MatMul and bias Add as a Gemm; rounding its output to n bits before
        the residual sum gave all-MiniLM-L6-v2 so simplified 0.931 mean cosine against
        its export's 0.996; held wide 0.986, as its export without smoothing (the same
        latency in onnxruntime: the Gemm is a QGemm either way)."""
        if not self.wide_sums:
            return False
        pending = [tensor]
        while pending:  # (a loop, not a recursion: a chain of a thousand Relus)
            current = pending.pop()
            users = self.consumers.get(current, [])
            if not users or current in self.graph.output_names:
                return False
            for user in users:
                if user.name not in self._float:
                    if self._reads_as_sum(user, current):
                        if not sums:  # (its output, read on as this one is)
                            pending.extend(out for out in user.outputs if out in self.active)
                        continue
                    if self._carries_integers(user, current):
                        pending.extend(out for out in user.outputs if out in self.active)
                        continue
                if not (user.name in self._float or self._compensates_channels(user)
                        or self._plans[user.name].action is Action.COMPENSATE):
                    return False
                if not sums and self._plans[user.name].action is Action.COMPENSATE and (
                        self._tabulable(self._ops[user.name])):  # (a table of n-bit codes)
                    return False
        return True

    def _passes_codes_on(self, node: Node) -> bool:
        """Whether ``node`` is an element-wise selection with no parameter (a Cast to float32
        before an RMSNorm, a Relu): it runs on codes and its output is its input's codes,
        unchanged."""
        plan = self._plans[node.name]
        return plan.action is Action.SCALE and passes_codes_on(self._ops[node.name], plan.rule)

    def _selected_into_outputs(self, tensor: str) -> bool:
        """Whether every reader of ``tensor`` only moves its elements into graph outputs that
        nothing else reads (a Reshape, Flatten or Squeeze after the last layer, as torch's
        ``.view(-1)`` and skl2onnx's regressors end; not an element-wise selection such as a
        Relu, which may lack a per-channel rule for a per-channel accumulator). A reader that
        makes no activation (the Shape whose Gather and Concat give a legacy export's
        ``x.view(x.size(0), -1)`` its target shape) reads no value: it takes any codes."""
        users = [user for user in self.consumers.get(tensor, [])
                 if any(out in self.active for out in user.outputs)]
        if not users or tensor in self.graph.output_names:
            return False
        for user in users:
            op = self._ops.get(user.name)
            if (user.name in self._float or not self._on_codes_of(user, tensor)
                    or not is_lattice_selection(op)
                    or is_elementwise_unary(op)  # a Relu at the end reads codes, as before
                    or not all(out in self.graph.output_names and not self.consumers.get(out)
                               for out in user.outputs if out)):
                return False
        return True

    def _carrying_saturated(self) -> set[str]:
        """The tensors that hold positions a static operand saturates: the saturated sums
        (saturation.py) and, in graph order, the outputs of pass-through nodes reading one,
        which pass those values on (T5's scores, cast to float32 after the mask is added and
        before the Softmax). A pass-through node runs in float exactly, so a chain of them
        between a masked sum and float readers runs in float with the sum, mask intact."""
        carrying = set(self.cal.saturated)
        for node in self.graph.nodes:
            plan = self._plans[node.name]
            if (plan.action is not Action.STATIC and plan.rule is not None
                    and plan.rule.kind is RuleKind.PASS_THROUGH
                    and any(node.inputs[slot] in carrying for slot in plan.activation_slots)):
                carrying.update(out for out in node.outputs if out in self.active)
        return carrying

    def _reads_as_sum(self, user: Node, tensor: str) -> bool:
        """Whether ``user`` takes ``tensor`` once, as a term of an element-wise sum it runs on
        codes (aligned, declared c_1 x_1 + c_2 x_2 + ...), whose outputs no static operand
        saturates (such a sum may run in float instead: saturation.py)."""
        plan, op = self._plans.get(user.name), self._ops.get(user.name)
        return (plan is not None and plan.action is Action.ALIGN and op is not None
                and sum_coefficients(op) is not None and user.inputs.count(tensor) == 1
                and not any(out in self.cal.saturated for out in user.outputs))

    def _nonnegative(self, node: Node, op: Operator, plan: NodeAction) -> bool:
        """Whether the node's output is >= 0 in the quantized model: proved for every input
        (Relu, Sigmoid), or proved whenever every input element is >= 0 (Concat, Mul, MaxPool)
        and every activation input is held unsigned and every constant input is >= 0."""
        verdict = plan.verdict
        if verdict is None or verdict.output_nonnegative:
            return verdict is not None
        least = {slot: 0.0 if name in self.codes and self.codes[name].unsigned else -np.inf
                 for slot, name in enumerate(node.inputs) if slot in plan.activation_slots}
        floor = self._selection_floor(node, op, plan, least)
        if floor is not None and floor >= 0:
            return True  # its least output, with the node's own parameter values, is >= 0
        if not verdict.preserves_nonnegative:
            return False
        tensors = {t.name for t in op.inputs}
        for slot, name in enumerate(node.inputs):
            if not name or slot_binding(op, slot) not in tensors:
                continue  # parameters: the proof holds for every value
            if name in self.codes:
                if not self.codes[name].unsigned:
                    return False
            elif name not in self.consts or np.any(self.consts[name] < 0):
                return False
        return True

    def _bias_into_sum(self, node: Node, axis: int | None) -> None:
        """Bias correction for a layer with no bias input (a MatMul): when its output's one
        reader is declared an element-wise sum of its inputs, c_1 y + c_2 b (an Add), with a
        constant b, that constant is the layer's bias, so b - (c_1 / c_2) * shift along the
        output channels keeps the sum's expected error at zero as a bias input would."""
        out = node.outputs[0]
        users = self.consumers.get(out, [])
        shape = self.graph.shape_of(out)
        if (axis is None or shape is None or not 0 <= axis < len(shape) or len(users) != 1
                or len(node.outputs) != 1 or out in self.graph.output_names):
            return
        user = users[0]
        if not self._reads_as_sum(user, out):
            return
        op = self._ops[user.name]
        coefficients = sum_coefficients(op)
        tensors = [t.name for t in op.inputs]
        slots = {slot_binding(op, s): s for s in range(len(user.inputs))}
        if set(slots) != set(tensors):
            return
        mine = tensors.index(slot_binding(op, user.inputs.index(out)))
        others = [i for i, t in enumerate(tensors) if i != mine]
        if len(others) != 1 or user.inputs[slots[tensors[others[0]]]] not in (
                self.consts) or coefficients[others[0]] == 0:
            return
        name = user.inputs[slots[tensors[others[0]]]]
        shift = self._bias_shift[node.name]
        along = shift.reshape((shift.size,) + (1,) * (len(shape) - 1 - axis))
        ratio = coefficients[mine] / coefficients[others[0]]
        self._corrected_constants[(user.name, name)] = (
            self.consts[name] - ratio * along).astype(np.float32)
        self._corrected.add(node.name)
        self._corrected_in[node.name] = user.name

    def _static_beyond_int32(self, node: Node, op: Operator, common) -> str:
        """The first constant or static input of aligned sum ``node`` whose values reach
        beyond STATIC_LIMIT at the ``common`` scale while no output of the sum saturates,
        else ''. The integer format clips such an operand there, right for a mask (its
        positions saturate the sum anyway) but not for data: a Cast of hashed ids near 2^32
        added to a MatMul's accumulator (scale 5e4) had been clipped to 2^30, the output at
        0 dB in the integer file alone, where the simulation held 2^47 unclipped."""
        if any(out in self.cal.saturated for out in node.outputs):
            return ""
        tensors = {t.name for t in op.inputs}
        for slot, name in enumerate(node.inputs):
            if not name or name in self.codes or slot_binding(op, slot) not in tensors:
                continue
            if name in self.consts:
                reach = float(np.abs(self.consts[name]).max(initial=0))
            elif name in self.cal.static_peaks:
                reach = self.cal.static_peaks[name]
            else:
                continue
            if reach * float(np.max(common)) > STATIC_LIMIT:
                return name
        return ""

    def _constant_at(self, name: str, scale: float, constants: dict,
                     node: Node | None = None, compared: bool = False) -> str:
        """A constant or static input of an aligned node, brought to the common scale (a
        constant that took a bias correction, with it). A ``compared`` constant (an input of
        a comparison) is rounded at the scale as a step stores it, as the activation's codes
        from a float source are: a value on a tie of the exact scale (3 at 32767/6) had taken
        one code more than the activation of that value, and Equal failed there.

        Both are held within +-STATIC_LIMIT, as the integer format's int32 holds them, in
        every format: a mask at finfo(float32).min times an accumulator's scale had been
        -inf in the simulation and its file (the integer file held -2^30), and a Softmax
        reading the wide sum of a row its mask hides entirely (left padding in a GPT-2
        export) gave NaN there, which the next layer's products spread to every row; the
        float model gives that row equal weights, and so does -2^30."""
        dst = self.fresh(f"{name}:aligned")
        if name in self.consts:
            value = self._corrected_constants.get(
                (node.name if node else "", name), self.consts[name])
            factor = np.float64(self.factor(scale)) if compared else scale
            with np.errstate(over="ignore"):  # (finfo.min in float32 times the scale)
                constants[dst] = np.clip(np.round(value * factor), -STATIC_LIMIT,
                                         STATIC_LIMIT).astype(np.float32)
        else:
            self.steps.append(ScaleStep(name, dst, self.factor(scale), True,
                                        limit=STATIC_LIMIT))
        return dst

    def _coarse_constant_divisor(self, node: Node, op: Operator, degrees: dict,
                                 inputs: list[str], constants: dict, integers: dict
                                 ) -> str | None:
        """The first constant input of negative degree (a divisor) whose per-tensor codes
        (``inputs``, ``constants`` and ``integers`` as :meth:`scale_node` made them) are off
        by more than a code of MIN_DIVISOR_CODES can be: a divisor amplifies that error."""
        for slot, name in enumerate(node.inputs):
            degree = degrees.get(slot_binding(op, slot))
            held = integers.get(inputs[slot])
            if (degree is not None and degree < 0 and held is not None and held.axis is None
                    and _relative_rounding(self.consts[name], constants[inputs[slot]],
                                           held.scale) > 0.5 / MIN_DIVISOR_CODES):
                return name
        return None

    def _divisor_near_zero(self, node: Node, op: Operator, tensor: str, degree,
                           tensor_scale: dict) -> tuple[str, str] | None:
        """(what to say of it, its tensor) when input ``tensor`` of ``node`` has a negative
        degree (a divisor) and its codes come within MIN_DIVISOR_CODES of 0 on the
        calibration data, where rounding would be amplified without bound; None otherwise."""
        if degree is None or degree >= 0:
            return None
        for slot, name in enumerate(node.inputs):
            if slot_binding(op, slot) == tensor and name in self.cal.stats:
                nearest = self.cal.stats[name].min_abs * np.min(tensor_scale[tensor])
                if nearest < MIN_DIVISOR_CODES:
                    return (f"{node.label}: input {name!r} has degree {degree} and comes "
                            f"within {nearest:.3g} codes of 0", name)
        return None

    def near_zero_divisors(self) -> list[tuple[str, str]]:
        """(what to say of it, its tensor) for every divisor the walk found near 0 whose
        tensor is not kept in float yet."""
        return [item for item in self._near_zero if item[1] not in self.kept_float]

    def far_apart_sums(self) -> list[tuple[str, str]]:
        """(what to say of it, its tensor) for the widest input of every sum the walk ran in
        float for its inputs' ranges, not kept in float yet."""
        return [item for item in self._far_apart if item[1] not in self.kept_float]

    def refuse_near_zero_divisors(self) -> None:
        """One refusal naming every divisor the walk found near 0 that is not kept in float
        yet (none once :func:`quantize` has kept them: past MAX_DIVISOR_ROUNDS), with every
        --keep-float-tensor it takes."""
        near_zero = self.near_zero_divisors()
        if not near_zero:
            return
        more = (f" (and {len(near_zero) - 1} more divisor"
                f"{'s' if len(near_zero) > 2 else ''} so)" if len(near_zero) > 1 else "")
        keep = " ".join(f"--keep-float-tensor {name!r}" for _, name in near_zero)
        raise UserError(
            f"{self.graph.source}: {near_zero[0][0]} at {self.bits} bits on the calibration "
            f"data{more}; rounding there would be amplified without bound, so the node cannot "
            f"run on its codes: keep that input in float ({keep})")

    def _weights(self, node: Node, op: Operator, layout, inputs: list, constants: dict,
                 integers: dict, input_scale: np.ndarray | float = 1.0
                 ) -> tuple[np.ndarray | float | None, int | None, float | None]:
        """Quantize the weight inputs to integers; return their scale, the output axis
        a per-channel scale runs along (``input_scale``: the scale the node's bias is taken
        at, with the weights') and their largest sum of |integer weights| into one output
        element (None: no weight input; all three None then)."""
        if layout is None:
            return None, None, None
        consts = self.consts
        slots = [s for s, name in enumerate(node.inputs)
                 if name in consts and (b := slot_binding(op, s)) is not None
                 and set(b.split()) <= layout.weights]
        if not slots:
            return None, None, None
        def per_tensor() -> float:
            peak = max(float(weight_reach(w, tuple(range(w.ndim)), self.signed_max).max())
                       for w in (consts[node.inputs[s]] for s in slots))
            return self.signed_max / peak if peak > 0 else 1.0

        scale: np.ndarray | float | None = None
        out_axis = weight_axis = None
        largest_sum = 0.0
        if self.per_channel and len(slots) == 1:
            scale, out_axis, weight_axis = self._per_channel(node, op, layout, slots[0],
                                                             input_scale)
        if scale is None:  # the per-tensor search only where it is used (26 roundings)
            scale = per_tensor()
        for slot in slots:
            weight = consts[node.inputs[slot]]
            inputs[slot] = self.fresh(f"{node.inputs[slot]}:int")
            constants[inputs[slot]] = self._round_weights(node, weight, scale).astype(np.float32)
            integers[inputs[slot]] = IntegerParam("weight", scale, weight_axis)
            axis = weight_axis
            if axis is None and (probed := self._targets.get(node.name)) and probed.slot == slot:
                axis = probed.weight_axis  # the rounding's probe, with one scale per tensor
            channel_sum = _largest_channel_sum(np.abs(constants[inputs[slot]]), axis)
            largest_sum = max(largest_sum, channel_sum)
            bound = self.unsigned_max * channel_sum
            if bound >= EXACT_FLOAT32:
                self._inexact_sums.add(node.name)
                self.notes.append(
                    f"{node.label}: integer sums may reach {bound:.3g} > 2^24 at {self.bits} "
                    "bits; float32 accumulation may then round (onnxruntime can differ by a code)")
        return scale, out_axis, largest_sum

    def _round_weights(self, node: Node, weight: np.ndarray, scale) -> np.ndarray:
        """Integer weights (:meth:`_rounded`); records the bias correction the rounding calls
        for."""
        codes, shift = self._rounded(node, weight, scale)
        if shift is not None:
            self._bias_shift[node.name] = shift
        return codes

    def _rounded(self, node: Node, weight: np.ndarray, scale
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Integer weights, output-aware (OPTQ) where the node's input patches are known, else
        nearest, and the bias correction that rounding calls for (None: none)."""
        levels = self.signed_max
        layer = self._layers.get(node.name)
        target = self._targets.get(node.name) if layer is not None else None
        if target is None:
            return np.clip(np.round(weight * scale), -levels, levels), None
        matrix = weight_matrix(weight, target.weight_axis)
        rows = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1),
                               (matrix.shape[0],))
        if self.optq:
            codes = optq_round(matrix, rows, levels, layer.hessian)
        else:
            codes = np.clip(np.round(matrix * rows[:, None]), -levels, levels)
        shift = bias_shift(matrix, codes, rows, layer.mean) if self.bias_correction else None
        return from_matrix(codes, weight.shape, target.weight_axis), shift

    def _rounding_note(self, node: Node) -> str:
        if node.name not in self._layers:
            return ""
        home = self._corrected_in.get(node.name)
        parts = ["output-aware rounding" if self.optq else "",
                 "bias corrected" + (f" in {home}" if home else "")
                 if node.name in self._corrected else ""]
        return ", ".join(filter(None, parts))

    def _one_column(self, node: Node, target: WeightTarget) -> bool:
        """Whether the node's weights hold one value per output channel under per-channel
        scales: output-aware rounding with one input column is rounding to nearest, and a
        channel's one weight at its max-abs scale is its code exactly (no error for a bias
        correction), so input statistics change nothing there (after smoothing, an exact
        GELU's last Mul, by 0.5 / s_c, is such a node; a calibration pass before smoothing
        gathered none for it)."""
        weight = self.consts.get(node.inputs[target.slot])
        return (self.per_channel and weight is not None
                and weight.size == weight.shape[target.weight_axis])

    def _weight_targets(self, plans: list[NodeAction]) -> dict[str, WeightTarget]:
        """The nodes with one weight input whose channel layout a probe finds (not those that
        run in float: their weights are not rounded)."""
        for node, plan in zip(self.graph.nodes, plans):
            op = self._ops[node.name]
            if (plan.action is not Action.SCALE or plan.rule is None or op is None
                    or node.name in self._float):
                continue
            layout = weight_layout(op, plan.rule)
            if layout is None:
                slot = tensor_weight_slot(self.graph, node, op, plan.rule)
                if self.per_channel and slot is not None and (
                        target := self._tensor_target(node, op, slot)):
                    self._targets[node.name] = target
                continue
            slots = [s for s, name in enumerate(node.inputs)
                     if name in self.consts and (b := slot_binding(op, s))
                     and set(b.split()) <= layout.weights]
            if len(slots) == 1 and (target := self._target(node, op, layout, slots[0])):
                self._targets[node.name] = target
        return self._targets

    def _target(self, node: Node, op: Operator, layout, slot: int) -> WeightTarget | None:
        """Where the declared weight in ``slot`` sits (a probe, taken again from memory where
        :meth:`_weight_targets` made it: :func:`.probe.example_channel_axes`), or None."""
        bias_slots = tuple(s for s in range(len(node.inputs))
                           if (b := slot_binding(op, s)) and set(b.split()) <= layout.biases)
        axes = example_channel_axes(self.graph, node, op, self.active, slot, bias_slots)
        return None if axes is None else WeightTarget(slot, *axes, bias_slots)

    def _per_channel(self, node: Node, op: Operator, layout, slot: int,
                     input_scale: np.ndarray | float = 1.0):
        """(per-channel weight scale, output axis, weight axis), or (None, None, None) when
        no probe pairs the axes (the caller then takes one scale for the tensor). A channel
        with near-zero weights and a real bias (pruned, or BatchNorm folded with gamma near 0)
        would get a scale that puts its bias, taken at input scale x weight scale, beyond
        int32 (measured: 35 layers of EfficientNet-Lite1): its scale is capped there, which
        costs nothing but levels of weights that are near zero anyway."""
        target = self._target(node, op, layout, slot)
        if target is None:
            return None, None, None
        bias_slots, weight_axis, out_axis = target.bias_slots, target.weight_axis, target.out_axis
        weight = self.consts[node.inputs[slot]]
        reduce = tuple(a for a in range(weight.ndim) if a != weight_axis)
        peak = weight_reach(weight, reduce, self.signed_max)
        scale = np.where(peak > 0, self.signed_max / np.where(peak > 0, peak, 1.0), 1.0)
        for s in bias_slots:
            bias = self.consts.get(node.inputs[s])
            if bias is not None and (bias.ndim == 0 or bias.shape[-1] != weight.shape[weight_axis]):
                return None, None, None
            if bias is not None:
                reach = np.abs(bias).reshape(scale.shape) * float(np.max(input_scale))
                with np.errstate(divide="ignore"):
                    room = np.where(reach > 0, BIAS_HEADROOM * BIAS_LIMIT / reach, np.inf)
                scale = np.minimum(scale, room)
        return scale, out_axis, weight_axis


_TABLE_ROWS = 1024  # rows of a table _table_codes rounds at a time


def _table_codes(table: np.ndarray, scale, low: float, high: float) -> tuple[np.ndarray, int]:
    """round(table * scale) (in float64) clipped to [low, high], as float32 codes, and how
    many values clipped; ``_TABLE_ROWS`` rows at a time through one float64 buffer that stays
    in cache (the whole 30522 x 384 word table of all-MiniLM-L6-v2 in float64 copies took
    0.15 s; a row block at a time, 0.03 s). ``scale``: a number, or an array that broadcasts
    against the table (one per channel)."""
    codes = np.empty(table.shape, np.float32)
    buffer = np.empty((min(_TABLE_ROWS, len(table)), *table.shape[1:]))
    per_row = np.ndim(scale) == table.ndim and np.shape(scale)[0] > 1
    clipped = 0
    for start in range(0, len(table), _TABLE_ROWS):
        rows = table[start:start + _TABLE_ROWS]
        part = buffer[:len(rows)]
        np.multiply(rows, scale[start:start + _TABLE_ROWS] if per_row else scale, out=part)
        np.rint(part, out=part)
        if part.size and (part.min() < low or part.max() > high):
            clipped += int(np.count_nonzero(part < low)) + int(np.count_nonzero(part > high))
            np.clip(part, low, high, out=part)
        codes[start:start + len(part)] = part
    return codes, clipped


def _largest_channel_sum(magnitude: np.ndarray, axis: int | None) -> float:
    """The largest sum of |integer weights| that one output element adds up: over every
    axis but ``axis``, the weight axis a probe paired with the output channel; when no probe
    did, the larger of the sums for the first and for the last axis as the channel. (Taking
    both always counted a 1x1 convolution's every weight as one sum: 38 false notes on a
    MobileNetV3 at 8 bits.)"""
    if axis is not None:
        return float(np.moveaxis(magnitude, axis, 0).reshape(magnitude.shape[axis], -1)
                     .sum(axis=1).max())
    return max(float(magnitude.reshape(magnitude.shape[0], -1).sum(axis=1).max()),
               float(magnitude.reshape(-1, magnitude.shape[-1]).sum(axis=0).max()))


def _common_scale(codes: list[Code], selection: bool) -> float:
    """The one scale an aligned node's inputs are brought to.

    A selection (Concat, Max) passes codes through unchanged, so they must fit the n-bit range:
    the coarsest input scale. A sum is an integer accumulator that is requantized anyway, so
    it is taken finer than every input (ALIGN_HEADROOM), while it stays exact in float32.
    An input that was 0 on all calibration data has a scale no data set: the others decide
    (a zero class token concatenated to patch embeddings would round them to integers).
    """
    codes = [c for c in codes if c.ranged] or codes
    scales = [np.asarray(c.scale, np.float64) for c in codes]
    coarsest = functools.reduce(np.minimum, scales)
    if not selection:
        reach = sum(max(abs(c.low), abs(c.high)) / s for c, s in zip(codes, scales))
        coarsest = np.maximum(coarsest, np.minimum(
            ALIGN_HEADROOM * functools.reduce(np.maximum, scales), ALIGNED_SUM_LIMIT / reach))
    return coarsest if np.ndim(coarsest) else float(coarsest)


def _rescaled(codes: list[Code], common: float | np.ndarray) -> bool:
    """Whether bringing ``codes`` to the ``common`` scale of a selection (the coarsest:
    :func:`_common_scale`) rounds one of them again, an input ranged by the data at another
    scale. Where the selection is read in float, its inputs dequantized each at its own scale
    lose nothing: nudenet's YOLOv8 output joins boxes (0 to 320) and class scores (0 to 1)
    in one Concat, and at the boxes' scale every score below 1.3 was code 0 (held-out
    detections at nudenet's 0.2 threshold: none of 24 kept, at 26.2 dB)."""
    return any(not np.array_equal(np.asarray(c.scale), np.asarray(common))
               for c in codes if c.ranged)


def _too_far_apart(codes: list[Code], common: float | np.ndarray, levels: int,
                   read_in_float: bool) -> tuple[str, Code | None]:
    """(why, the widest input) where the inputs of a sum whose every reader runs in float
    (``read_in_float``: a Softmax; its output is not rounded again) lie too far apart for its
    integers: at the ``common`` scale (:func:`_common_scale`) an input ranged by the data is
    rounded more coarsely than ``levels`` codes over its own range would round it (the float32
    bound on the sum's integers, ALIGNED_SUM_LIMIT, won: ranges more than about 2^22 / levels
    apart, a float mask input at finfo(float32).min beside the scores), or the widest input's
    own step is more than every other input's largest value, so that its rounding alone
    outweighs them (a float mask input at -1e4, step 79, with a key bias of a few units in it,
    beside scores of tens); ("", None) where they do not. A sum whose output is rounded again at
    its range loses the small inputs there anyway (a random-weight model's residual stream
    beside a branch near 0). A wide input, an accumulator finer than n bits, may be rounded
    coarser than its own codes, as any sum's is."""
    ranged = [c for c in codes if c.ranged]
    if not read_in_float or len(ranged) < 2:
        return "", None
    reach = [max(abs(c.low), abs(c.high)) / np.asarray(c.scale, np.float64) for c in ranged]
    largest = [float(np.max(r)) for r in reach]
    widest = int(np.argmax(largest))
    if any(np.any(np.asarray(common) * r < levels) for r in reach):
        return "no integer scale holds them all exactly in float32", ranged[widest]
    step = 1.0 / float(np.max(ranged[widest].scale))  # its finest channel's
    others = max(r for i, r in enumerate(largest) if i != widest)
    if step > others:
        return (f"the step of its codes, {step:.3g}, exceeds the other inputs' largest "
                f"value, {others:.3g}"), ranged[widest]
    return "", None


MAX_DIVISOR_ROUNDS = 4
"""Plans made again at most, each keeping in float the divisors found near 0 in the last."""


class _JumpReads(NamedTuple):
    """What discontinuous nodes read (:meth:`_Builder.hold_precisely`), each an ordered set:
    the nodes (their labels), their inputs, and the nodes in float they read them through."""

    nodes: dict[str, None]
    inputs: dict[str, None]
    through: dict[str, None]


def divisor_note(divisors: list[tuple[str, str]], bits: int) -> str:
    """What keeping near-zero divisors in float did, for the summary."""
    first = divisors[0][0]
    more = f" (and {len(divisors) - 1} more)" if len(divisors) > 1 else ""
    names = ", ".join(repr(name) for _, name in divisors)
    return (f"kept in float: {names}: {first} at {bits} bits on the calibration data{more}, "
            "where rounding would be amplified without bound (as --keep-float-tensor keeps "
            "them)")


def non_finite_note(non_finite: dict[str, str]) -> str:
    """What keeping tensors that take inf or NaN in float did, for the summary."""
    (first, where), more = next(iter(non_finite.items())), len(non_finite) - 1
    return (f"kept in float: {', '.join(repr(name) for name in non_finite)}: they take "
            f"infinite or NaN values on the calibration data ({first!r}: {where}"
            f"{f'; and {more} more' if more else ''}), which no code holds and a later node "
            "removes (a Softmax over scores plus a -inf mask; a Softmax over a row its mask "
            "hides entirely, then IsNaN)")


def weight_reach(weight: np.ndarray, axes: tuple[int, ...], levels: int) -> np.ndarray:
    """Per slice (reducing ``axes``), the clipping value c minimising the squared error of
    rounding ``weight`` to ``levels`` steps of c / levels, clipped at +-c. The weights are known
    exactly, so the search is on their actual values; at 8 bits it mostly keeps the maximum.

    A slice leaves the search once the clipping error of its largest values alone exceeds its
    best error so far: that error only grows as c shrinks, and it is part of the rounding
    error at every smaller c, so no later fraction could win (all-MiniLM-L6-v2's weights: 4
    to 6 of the 26 fractions per slice, not all 26)."""
    values = np.asarray(weight, dtype=np.float64)
    kept = [a for a in range(values.ndim) if a not in axes]
    rows = np.moveaxis(values, kept, range(len(kept))).reshape(
        int(np.prod([values.shape[a] for a in kept])), -1)
    peak = np.abs(rows).max(axis=1)
    tops = np.abs(rows)
    if tops.shape[1] > _TOP_VALUES:
        tops = np.partition(tops, -_TOP_VALUES, axis=1)[:, -_TOP_VALUES:]
    best, best_error = peak.copy(), np.full(peak.shape, np.inf)
    live = np.arange(len(rows))
    part = rows
    for fraction in WEIGHT_CLIP_FRACTIONS:
        reach = peak[live] * fraction
        step = np.where(reach > 0, reach / levels, 1.0)[:, None]
        clipped = np.maximum(tops[live] - levels * step, 0.0)
        going = (np.square(clipped).sum(axis=1) * (1 - 1e-9) > best_error[live]) | (
            best_error[live] == 0)
        if going.any():  # the error is a sum of squares: these rows cannot do better
            stay = ~going
            live, reach, step = live[stay], reach[stay], step[stay]
            part = rows[live]
        if not len(live):
            break
        work = part / step
        np.round(work, out=work)
        np.clip(work, -levels, levels, out=work)
        work *= step
        work -= part
        np.square(work, out=work)
        error = work.sum(axis=1)
        better = error < best_error[live]
        best[live[better]], best_error[live[better]] = reach[better], error[better]
    return best.reshape([1 if a in axes else values.shape[a] for a in range(values.ndim)])


_TOP_VALUES = 8
"""Largest |w| per slice whose clipping error bounds :func:`weight_reach`'s error from below."""


def _relative_rounding(value: np.ndarray, codes: np.ndarray, scale) -> float:
    """The largest relative error of a constant held as ``codes`` at ``scale`` (inf where a
    non-zero value became code 0): a divisor amplifies it. One value alone is exact (it is
    its own max-abs scale), at any width."""
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        error = np.abs(np.asarray(codes, np.float64) / scale - value) / np.abs(value)
    return float(np.max(np.where(value != 0, error, 0.0), initial=0.0))


def _divides_by(degree: int | None, value: np.ndarray) -> bool:
    """Whether the constant ``value``, an input of that ``degree`` in the rule, is a divisor
    (a negative degree) holding one positive number in every element."""
    value = np.asarray(value)
    return (degree is not None and degree < 0 and value.size > 0 and np.ptp(value) == 0
            and float(np.ravel(value)[0]) > 0)


def _weight_scale(value: np.ndarray, levels: int) -> float:
    peak = float(np.abs(value).max()) if value.size else 0.0
    return levels / peak if peak > 0 else 1.0


def _bias_scale(weight_scale, bias: np.ndarray):
    if weight_scale is None:
        return 1.0
    if np.ndim(weight_scale) == 0:
        return weight_scale
    return np.asarray(weight_scale).reshape(-1)


def _along_axis(scale, axis: int | None, graph: Graph, tensor: str):
    """A per-channel scale shaped to broadcast along ``axis`` of ``tensor``."""
    if np.ndim(scale) == 0 or axis is None:
        return scale
    shape = graph.shape_of(tensor)
    rank = len(shape) if shape is not None else axis + 1
    layout = [1] * rank
    layout[axis] = -1
    return np.asarray(scale, dtype=np.float64).reshape(layout)


def _renamed(node: Node, inputs: list[str], outputs: list[str], attrs=None) -> Node:
    return Node(node.name, node.op_type, list(inputs), list(outputs),
                dict(node.attrs if attrs is None else attrs), node.domain, node.attr_types)


def _rule_text(plan: NodeAction) -> str:
    return "-" if plan.rule is None else plan.rule.describe()


def _scales_text(scales: list) -> str:
    return ", ".join(_scale_text(s) for s in scales) if scales else "-"


def _scale_text(scale) -> str:
    if np.ndim(scale):
        return f"per-channel {np.min(scale):.4g}..{np.max(scale):.4g}"
    return f"{scale:.4g}"


def _channel_output_scale(rule: Rule, scales: list) -> np.ndarray:
    """``rule.output_scale`` for per-channel input scales, channel by channel."""
    if rule.input_degrees is not None:
        out = np.ones(())
        for scale, degree in zip(scales, rule.input_degrees):
            out = out * np.asarray(scale, np.float64) ** float(degree)
        return out
    return np.asarray(scales[0], np.float64) ** float(rule.degree)


def _scale_axis(scale) -> int | None:
    """The axis a per-channel scale array runs along (its one axis longer than 1)."""
    axes = [a for a, d in enumerate(np.shape(scale)) if d > 1]
    return axes[0] if len(axes) == 1 else None
