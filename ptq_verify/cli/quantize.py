"""`ptq-verify quantize`: ONNX model + calibration data -> n-bit ONNX model."""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path

from ..atomic import check_distinct, check_output, write_atomic
from ..errors import UserError
from ..input_files import require_file
from ..report.cells import markdown_cell, plain_cell, plain_path
from ..wording import first_few, tensor_label, unused_declarations
from .arguments import Once, ascii_float, ascii_int, path_text
from .models import (
    HELP,
    add_float_op_argument,
    add_operators_argument,
    assumed_attributes_note,
    declared_operators,
    resolve_model,
    unchecked_note,
)

CALIBRATION_METHODS = ("auto", "maxabs", "percentile", "mse")
"""engine.calibrate.METHODS, named here without importing the engine to build the parser."""
CALIB_ONCE = ("with every sample in one file, one shape per input: samples of several "
              "lengths (a KV cache's past lengths) padded to the longest, the padding masked "
              "(attention_mask 0, as left-padded batches are; docs/limits.md, calibration data)")
"""How to give the data of two --calib files in one: argparse had kept the last of two in
silence, and a new-user trial's KV-cache decoder, given a file at past length 0 and one at 8,
was calibrated at 8 alone (0.5 dB at past length 0 on Llama; padded in one file, 33.2)."""


def _method(value: str) -> str:
    """A --calibration method; a file name given in its place is pointed to --calib (a
    new-user trial typed ``--calibration cnn.calib.npz``)."""
    if value in CALIBRATION_METHODS:
        return value
    hint = ("; the calibration data file goes to --calib"
            if value.endswith((".npz", ".npy")) or Path(value).exists() else "")
    raise argparse.ArgumentTypeError(
        f"invalid choice: {value!r} (choose from {', '.join(CALIBRATION_METHODS)}){hint}")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="quantize an ONNX model to n bits, each node by its proved rule",
        description=(
            "Quantize a float ONNX model to n-bit codes: each node passes the scale through, "
            "rescales its parameters, aligns its inputs or is compensated in float, by its "
            "proved rule; calibration data sets the ranges. Writes the -o file, checked in "
            "onnxruntime (and --report's, and the verdict cache: docs/checker.md), and prints "
            "one line per node and a summary."))
    p.add_argument("model", type=path_text, help=HELP)
    p.add_argument("--calib", type=path_text, action=Once, hint=CALIB_ONCE,
                   help=".npz (one array per model input, keyed by name, batch first) or .npy "
                   "(required, except for an example model: its own calibration data)")
    p.add_argument("--bits", type=ascii_int, default=8, help="2 to 16 (default 8)")
    p.add_argument("-o", "--output", required=True, type=path_text, action=Once,
                   help="the quantized ONNX model to write")
    p.add_argument(
        "--per-tensor",
        action="store_true",
        help="one weight scale per tensor and no per-channel activation codes (default: per "
        "output channel; 0-3 dB better SQNR on the digits models; all-MiniLM-L6-v2's pooled "
        "embeddings on its calibration texts: mean cosine 0.996 against 0.943)",
    )
    equalization = p.add_mutually_exclusive_group()
    equalization.add_argument(
        "--no-equalize", dest="equalize", action="store_false", default=True,
        help="no cross-layer equalization and no bias absorption")
    equalization.add_argument(
        "--equalize", dest="equalize", action="store_true",
        help="(the default) cross-layer equalization between weight layers joined by "
        "operators with a per-channel rule, each group at the strength (none, half, whole) "
        "whose n-bit codes cost its outputs least on the calibration data, then bias "
        "absorption where the links pass a shift by a proved rule")
    add_operators_argument(p)
    add_float_op_argument(p)
    p.add_argument("--no-smooth", action="store_true",
                   help="no activation smoothing (default: on: a per-channel factor moved from "
                   "an activation into the next layers' weights where the rules allow it and "
                   "it lowers their output error on the calibration data)")
    p.add_argument("--calibration", type=_method, default="auto",
                   metavar="{" + ",".join(CALIBRATION_METHODS) + "}",
                   help="how a tensor's range is read from its statistics (default auto: "
                   "MSE-optimal clipping for 4-bit tensors, max-abs otherwise)")
    p.add_argument("--percentile", type=ascii_float, default=None,
                   help="percent of |x| kept by --calibration percentile (default 99.99)")
    p.add_argument("--weight-rounding", choices=("optq", "nearest"), default="optq",
                   help="optq (default): round each layer's weights to minimise its output "
                   "error on the calibration data; nearest: round each weight alone")
    p.add_argument("--no-bias-correction", action="store_true",
                   help="keep the biases as they are (default: subtract the rounded weights' "
                   "expected output error on the calibration data)")
    p.add_argument("--keep-float", type=ascii_int, default=0, metavar="N",
                   help="mixed precision: keep in float the N activations whose n-bit codes "
                   "alone cost the outputs most on the calibration data (the nodes between "
                   "the weight layers around each run in float; one float run per activation "
                   "ranks them; default 0: every activation the rules allow on integers)")
    p.add_argument("--no-rescue", action="store_true",
                   help="keep no activation in float for ill-conditioned codes (default: "
                   "where an element-wise node in float amplifies the rounding of an "
                   "activation's codes, as Sin of a timestep does, the activation it comes from "
                   "that most raises the output SQNR is kept in float, if by 3 dB or more)")
    p.add_argument("--keep-float-tensor", action="append", default=[], metavar="NAME",
                   help="keep this activation in float, as --keep-float would (repeat it for "
                   "several; the names a --keep-float note gave, without ranking again)")
    p.add_argument("--fixed-point", action="store_true",
                   help="multipliers as a 16-bit integer times a power of two (--format "
                   "simulation and integer, which write them)")
    p.add_argument("--integer-outputs", action="store_true",
                   help="leave the outputs as integer codes (scales in the model metadata)")
    p.add_argument("--format", default="qdq", metavar="{qdq,simulation,integer}",
                   help="qdq (default): QuantizeLinear/DequantizeLinear, 8-bit weights (uint8 "
                   "by default, int8 by --encoding), int32 biases, for onnxruntime's integer "
                   "kernels and deployment toolchains (at most 8 bits); simulation: the "
                   "engine's exact arithmetic as float32 ops on integer-valued tensors (any "
                   "width, the reference); integer: integer arithmetic inside "
                   "(ConvInteger/MatMulInteger, fixed-point requantization, compensated unary "
                   "ops as tables of codes; at most 8 bits)")
    p.add_argument("--encoding", metavar="{u8u8,u8s8,s8s8}",
                   help="how qdq codes sit in 8-bit containers: u8u8 "
                   "(default: exact on every x86 CPU), u8s8 (what onnxruntime's x86 kernels "
                   "take natively; saturates on CPUs without VNNI), s8s8 (quantize_static's "
                   "convention; likewise); see docs/engine.md")
    p.add_argument("--no-wide-sums", action="store_true",
                   help="round every activation to --bits bits, a layer's accumulator into its "
                   "bias and residual sums, the sums a LayerNorm reads and a layer's output "
                   "that only float nodes read included (by default those stay the integers "
                   "they were computed as; docs/engine.md)")
    p.add_argument("--symmetric", action="store_true",
                   help="activation codes centred on 0 (signed, or unsigned where proved "
                   "non-negative) for toolchains that take no other zero point; by default a "
                   "tensor whose calibrated range is lopsided around 0 (a GELU's output) takes "
                   "its 2^n codes over that range (docs/engine.md)")
    p.add_argument("--report", type=path_text, action=Once,
                   help="also write the per-node summary as Markdown here")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the summary as JSON")
    output.add_argument("--summary", action="store_true",
                        help="print the summary line and the notes, not the node table (a "
                        "transformer's has hundreds of rows; --report writes it to a file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from google.protobuf.message import EncodeError

    from ..engine import check_bits, prepare, quantize, read_data_file
    from ..engine.absorb import absorb, shifted_tensors
    from ..engine.calibrate import check_method
    from ..engine.conditioning import rescue
    from ..engine.data import calibrated_lengths
    from ..engine.deployable import (
        UnloadableOutput,
        UnrunnableOutput,
        check_quantized,
        fails_on,
        model_outputs,
        output_fidelity,
    )
    from ..engine.equalize import equalized
    from ..engine.float_run import few_samples_note
    from ..engine.lower import DEFAULT_ENCODING, check_format
    from ..engine.lower.kernel_probe import saturates_here
    from ..engine.lower.qdq import FUSED_WRONG
    from ..engine.probe import fit_examples_to_data
    from ..engine.sensitivity import costliest
    from ..engine.smoothed_calibration import smoothed_and_calibrated
    from ..graph.executor import KernelGap
    from ..graph.onnx_io import LEAST_OPSET, external_data_files, load_graph, parsed_file
    from ..graph.operators import check_float_types
    from ..graph.ort_runner import float_session, own_kernel_types, quiet_onnxruntime, session_crash
    from . import imports_done

    imports_done()
    quiet_onnxruntime()
    check_bits(args.bits, "--bits")
    if args.encoding is not None and args.format != "qdq":
        raise UserError(f"--encoding {args.encoding}: applies to --format qdq only (the "
                        f"{args.format} format has its own containers; docs/engine.md)")
    if args.fixed_point and args.format == "qdq":
        raise UserError("--fixed-point: applies to --format simulation and integer, whose "
                        "multipliers the engine writes (a qdq file's requantization is "
                        "onnxruntime's, from its float scales; docs/engine.md)")
    args.encoding = DEFAULT_ENCODING if args.encoding is None else args.encoding  # ('' refused)
    check_format(args.format, args.bits, args.encoding)
    if args.percentile is not None and args.calibration != "percentile":
        raise UserError(f"--percentile {args.percentile}: applies to --calibration percentile "
                        f"only (this run's method: {args.calibration})")
    args.percentile = 99.99 if args.percentile is None else args.percentile
    check_method(args.calibration, args.percentile)
    if args.keep_float < 0:
        raise UserError(f"--keep-float {args.keep_float}: must be 0 or more")
    source, example_calibration = resolve_model(args.model)
    require_file(source, "model")  # (before parsing: a FIFO or /dev/zero would never end)
    calib = args.calib or example_calibration
    if calib is None:
        raise UserError(f"{source}: give its calibration data with --calib calib.npz ("
                        "one array per model input, keyed by its name, batch first, as "
                        "`ptq-verify audit` names them; docs/engine.md, making the "
                        "calibration file)")
    target = Path(args.output)
    parsed = parsed_file(source)  # parsed once, for its external files here and loading
    inputs = (source, calib, args.operators, *external_data_files(source, parsed))
    # every output path is checked before the work, so a bad one costs nothing
    check_distinct({"-o": target, "--report": args.report})
    for output in (args.output, args.report):
        if output is not None:
            check_output(output, inputs=inputs)
    declared = declared_operators(args.operators, args.float_op)
    overridable = [] if parsed is None else [
        value.name for value in parsed.model.graph.input
        if value.name in {tensor.name for tensor in parsed.model.graph.initializer}]
    graph = load_graph(source, parsed)
    loaded_types = {node.op_type for node in graph.nodes}  # (before prepare drops any)
    # the op types onnxruntime lacks, as loaded: prepare may fold such a node into its layer
    # (a declared x*k), and the float model still holds it (a trial's model had been refused
    # as one onnxruntime cannot load, no declared op type left to say why)
    own_types = own_kernel_types(graph, declared)
    prepare(graph, declared)  # (in place)
    dropped = declared.float_types & (loaded_types - {node.op_type for node in graph.nodes})
    # the file read again only where prepare dropped every node of a --float-op type
    check_float_types(graph, declared, load_graph(source) if dropped else None)
    del parsed  # (taken over by the graph's loading: let it go with it)
    # after the engine's own load, not beside it (0.1 s): a model the engine refuses in one
    # line (an expand bomb, external data outside its folder) must not reach onnxruntime
    # (a file of an opset onnxruntime has no kernels for: the model converted at load)
    original, refusal, float_model = float_session(source)
    own_kernels = runs_without_onnxruntime(source, graph, declared, refusal, own_types)
    # every node declared or kept in float before any float run (after onnxruntime's refusal
    # of the float model, whose reason holds whatever is declared): equalization's run had met
    # the first undeclared node alone (a new-user trial's DLRM: a Size named, the Loop torch
    # writes for nn.EmbeddingBag, which no declaration takes, left unsaid)
    declared.require_all(graph.nodes, graph)
    producers = graph.producers()
    for name in args.keep_float_tensor:
        if name in graph.output_names:  # (a graph output was written from codes, asked or not)
            raise UserError(f"--keep-float-tensor {name!r}: a graph output of {source}; the "
                            "option keeps activations inside the model in float, such as the "
                            "inputs of the node that computes it")
        if name not in producers and name not in graph.input_names:
            loaded = load_graph(source)
            raise UserError(f"--keep-float-tensor {name!r}: {source} " + (
                "holds it as a constant (a weight or a bias), not an activation; the option "
                "keeps activations in float, such as the output of the node reading it"
                if name in loaded.initializers else
                "computes it only from constants or merges its node into the layer before it "
                "(folded at load): no activation of that name is left to keep in float"
                if name in loaded.producers() else "has no tensor of that name"
                + _one_each_hint(name, set(producers) | set(graph.input_names))))
    equalizing = args.equalize
    data = read_data_file(calib, graph)
    fit_examples_to_data(graph, data)  # the probes at the data's lengths (free axes)
    # the user's model's own outputs, which the written one is measured against, computed
    # beside equalization and the search for smoothing candidates and weight layers; its
    # session goes before calibration makes one (it holds the model's weights: the two at
    # once would raise the peak by the model's size)
    reference = None if original is None else model_outputs(original, graph, data)
    del original
    pairs, absorbed, unequalized = [], [], ""
    if equalizing:
        try:  # equalization measures on the catalog's kernels; quantizing needs none of them
            pairs, groups = equalized(graph, declared, data=data, bits=args.bits,
                                      per_channel=not args.per_tensor,
                                      progress=not args.no_progress)
            absorbed = absorb(graph, data, declared, progress=not args.no_progress,
                              groups=groups)
        except KernelGap as gap:  # raised on the first float run, before any change
            unequalized = gap.skipped
    smoothed, calibration = smoothed_and_calibrated(
        graph, data, args.bits, declared, smoothing=not args.no_smooth,
        method=args.calibration, percent=args.percentile, per_channel=not args.per_tensor,
        rounding=args.weight_rounding == "optq" or not args.no_bias_correction,
        progress=not args.no_progress, ready=None if reference is None else reference.result)
    kept = costliest(graph, calibration, args.bits, args.keep_float, declared,
                     per_channel=not args.per_tensor, progress=not args.no_progress,
                     kept=args.keep_float_tensor,
                     wide_sums=not args.no_wide_sums,
                     symmetric=args.symmetric) if args.keep_float else []

    def quantized(floats: list[str]):
        return quantize(graph, calibration, args.bits, operators=declared,
                        per_channel=not args.per_tensor,
                        fixed_point_multipliers=args.fixed_point,
                        integer_outputs=args.integer_outputs,
                        weight_rounding=args.weight_rounding,
                        bias_correction=not args.no_bias_correction, float_tensors=floats,
                        calibrated_unsigned=shifted_tensors(absorbed),
                        wide_sums=not args.no_wide_sums, symmetric=args.symmetric,
                        progress=not args.no_progress)

    floats = [*args.keep_float_tensor, *(item.tensor for item in kept)]
    model = quantized(floats)
    rescued = None if args.no_rescue else rescue(
        graph, calibration, model, declared, kept=floats, per_channel=not args.per_tensor,
        progress=not args.no_progress, wide_sums=not args.no_wide_sums,
        symmetric=args.symmetric)
    if rescued is not None and rescued.kept:  # quantized again, those in float too
        model = quantized([*floats, *(item.tensor for item in rescued.kept)])
    if graph.loaded:  # the nodes listed are not all the file's own, or not of its opset
        model.notes.insert(0, graph.loaded)
    model.notes.append(equalization_note(equalizing, pairs, unequalized))
    if pairs or absorbed:
        model.notes.append(absorption_note(absorbed))
    if args.keep_float:
        model.notes.append(mixed_precision_note(args.keep_float, kept))
    if args.keep_float_tensor:
        model.notes.append("mixed precision (--keep-float-tensor): kept in float as named: "
                           + ", ".join(args.keep_float_tensor))
    if rescued is not None and rescued.flagged:
        model.notes.append(rescue_note(rescued))
    model.notes.append(smoothing_note(not args.no_smooth, smoothed))
    if (unchecked := unchecked_note(declared)) is not None:
        model.notes.append(unchecked)
    if (assumed := assumed_attributes_note(graph, declared)) is not None:
        model.notes.append(assumed)
    if unused := declared.unused(graph.nodes):
        model.notes.append(unused_declarations(unused))
    if overridable:
        model.notes.append(
            f"inputs that are also initializers (defaults a runtime may override), quantized "
            f"as the values they hold; the written model takes them as constants, not inputs: "
            f"{first_few([repr(name) for name in overridable], 8)}")
    if (lengths := calibrated_lengths(graph, data)) is not None:
        model.notes.append(lengths)
    if (few := few_samples_note(calibration.sample, graph)) is not None:
        model.notes.append(few)
    try:
        exported = model.to_onnx(args.format, encoding=args.encoding)
        serialised = exported.SerializeToString()
    except (EncodeError, ValueError) as err:  # (protobuf's limit: a message of 2 GB or more;
        if isinstance(err, ValueError) and "2GB" not in str(err):  # a Python protobuf's text)
            raise
        raise UserError(
            f"{target}: the {args.format} model of {source} reaches protobuf's 2 GB limit for "
            "one ONNX file, and ptq-verify writes no external data"
            + (" (its weights stay float32 in this format): --format qdq or integer hold "
               "them in 8 bits, a quarter of the size" if args.format == "simulation" else "")
            + "; nothing written") from None
    if args.format == "qdq" and saturates_here(args.encoding):
        model.notes.append(
            f"--encoding {args.encoding}: this CPU's onnxruntime saturates its 8-bit products "
            "at 16 bits (x86 without VNNI), so the file computes wrong values here; it is "
            "exact on CPUs with VNNI. u8u8, the default, is exact on both (docs/engine.md)")
    if args.format == "qdq" and (wrong := {e.key: e.value for e in exported.metadata_props}
                                  .get(FUSED_WRONG)):
        model.notes.append(
            "onnxruntime's default session computes AveragePool "
            f"{', '.join(repr(name) for name in json.loads(wrong))} wrong in this file "
            "where a ceil_mode window runs past the padding (its fused QLinearAveragePool "
            "divides such a window by the whole kernel; no other spelling keeps the output's "
            "length): right with graph optimizations off, and in --format simulation and "
            "integer")
    format_floats = 0  # nodes the integer format runs in float beyond the compensated ones
    if args.format == "integer":
        listed = {e.key: e.value for e in exported.metadata_props}["float_nodes"]
        model.notes.append(f"integer format: nodes left in float: {listed or 'none'}")
        compensated = {r.name for r in model.records if r.kind == "compensated"}
        format_floats = sum(1 for item in listed.split("; ") if item
                            and item.split(": ", 1)[0] not in compensated)
    if own_kernels and (tabulated := without_own_kernels(exported, own_types)):
        # (the integer format writes each element-wise declared op as a table of codes: a
        # new-user trial's file ran in onnxruntime as it was, said to be unchecked there)
        own_kernels = ""
        model.notes.append(tabulated)
    if own_kernels:
        model.notes.append(own_kernels)
        if not args.integer_outputs:
            model.notes.append(simulated_fidelity_note(model, graph, declared, calibration))
    else:
        if args.format == "integer" and (signal := session_crash(serialised)) is not None:
            raise UnloadableOutput(
                f"onnxruntime crashes ({signal}) making a default session of the integer "
                f"model ptq-verify made of {source}; nothing written to {target}; --format "
                "qdq or simulation write this model")
        try:
            outputs = check_quantized(serialised, graph, calibration.sample, str(target),
                                      {name: stats.max_abs for name, stats in
                                       calibration.stats.items()},
                                      progress=not args.no_progress)
        except UnrunnableOutput as failed:
            if (float_failure := fails_on(float_model, failed.batch)) is None:
                raise
            raise UserError(
                f"{source}: onnxruntime cannot run the model on calibration samples "
                f"{failed.first} to {failed.last} ({float_failure}); ptq-verify's own kernels "
                "could, so it calibrated, but the quantized model fails there too: the data "
                "disagree with the model, or the model does not run in onnxruntime as "
                "exported; nothing written") from None
        except UnloadableOutput as refused:
            if graph.opsets.get("", LEAST_OPSET) >= LEAST_OPSET:
                raise
            raise UserError(  # a node of an old opset, written at the format's newer one
                f"{source}: opset {graph.opsets['']}, which onnx's version converter could not "
                f"bring to {LEAST_OPSET} unchanged, and the {args.format} format writes a newer "
                f"one: {refused}; re-export the model at opset {LEAST_OPSET} or later") from None
        if not args.integer_outputs:
            model.notes.append(fidelity_note(output_fidelity(
                graph, declared, calibration.sample, outputs,
                None if reference is None else reference.result()),
                calibration.sample, graph))
    write_atomic(target, serialised, inputs=inputs)
    summary = summary_rows(model)
    if args.report:
        write_atomic(args.report, markdown(model, source, target, args.format, format_floats,
                                           args.command_line, calib), inputs=inputs)
    if args.json:
        print(json.dumps({"model": str(source), "output": str(target), "bits": model.bits,
                          "format": args.format,
                          # the summary line's count of the plan's integer nodes that the
                          # written format runs in float, else --json told less than it did
                          "counts": {**model.counts(), "format_float": format_floats},
                          "kept_float": [{"tensor": name, "sqnr_db": None}
                                         for name in args.keep_float_tensor]
                          + [{"tensor": item.tensor, "sqnr_db": item.sqnr} for item in kept],
                          "nodes": summary, "notes": model.notes}, indent=2))
    else:
        print(table(model, args.model if example_calibration else source, target,
                    args.format, format_floats, rows=not args.summary))
    return 0


def runs_without_onnxruntime(source: Path, graph, declared, refusal: str | None,
                             own: list[str]) -> str:
    """"" when onnxruntime loads the float model (the quantized one is then checked in it
    too); a note when it refuses it but the model holds op types declared only with
    --operators outside ONNX's domain (their kernels live in the user's runtime, not in
    onnxruntime; the numpy kernels calibrate); else a one-line refusal, before any work.
    ``refusal``: why onnxruntime refuses the float model (:func:`.ort_session`), None when
    it loads it; ``own``: the op types of the model as loaded that onnxruntime lacks
    (:func:`.ort_runner.own_kernel_types`).

    A node that no declaration fits is refused by its own message when it is outside ONNX's
    domain (declaring it with --operators is the way forward) or its op type is declared
    with --operators (the message is about that declaration). A node of ONNX's domain with
    no declaration of the user's is not: whatever is declared for it, onnxruntime still
    refuses the model, so its reason is the one that holds (a Cast to complex128 in a legacy
    Falcon export)."""
    if refusal is None:
        return ""
    declared.require_all([node for node in graph.nodes
                          if not node.in_onnx_domain or declared.declaration_key(node)], graph)
    if not own:
        raise UserError(f"{source}: onnxruntime cannot load it ({refusal}); quantize takes "
                        "models onnxruntime runs")
    return (f"onnxruntime: cannot load the float model ({refusal}); it holds op types "
            f"declared with --operators ({', '.join(own)}), so the quantized model runs "
            "where their kernels are, and was not checked in onnxruntime")


def without_own_kernels(exported, own: list[str]) -> str:
    """A note where the written ``exported`` model holds no node of the op types ``own`` that
    onnxruntime has no kernel of (declared with --operators outside ONNX's domain): the
    integer format computes an element-wise one as a table of codes, and preparation folds
    an affine one into its layer, so that file runs in onnxruntime as it is, and is checked
    there like any other; "" where one remains."""
    if any(node.domain not in ("", "ai.onnx") and node.op_type in own
           for node in exported.graph.node):
        return ""
    return (f"onnxruntime: cannot load the float model (its {', '.join(own)}, declared with "
            "--operators), but the written file holds none (computed as tables of codes or "
            "folded into a layer): it runs in onnxruntime as it is, and was checked there")


LOW_SQNR_DB = 10.0  # an output below it is said to be low, with the way forward
# The rows where an input is 0 are said to hold the error only when the others' median is this
# much better (a tenth of the error power): a new-user trial's boolean branch flag gave 8.7 dB
# at its zeros and 15.2 elsewhere, both from s8s8 saturation, and the note blamed the zeros.
APART_DB = 10.0


def _error_under_mask(measured) -> str | None:
    """The figures of an output whose error sits in the rows where an input (an attention
    mask) is 0, the rows that count first; None where it does not sit there. Led by the
    whole output's figure, all-MiniLM-L6-v2's note ("2.7 dB") read as a failure to a
    newcomer, although its real tokens' rows are at 18.7 dB and its use drops the others."""
    split = measured.split_at_zeros()
    if split is None:
        return None
    share, at_zero, others = split
    if not (others >= LOW_SQNR_DB > at_zero and others - at_zero >= APART_DB):
        return None
    mask = measured.zeros[0]
    return (f"{others:.1f} dB in its median row where input {mask!r} is not 0 "
            f"({1 - share:.0%} of its rows); where it is 0 ({share:.0%}) median "
            f"{at_zero:.1f} dB, and {measured.db:.1f} dB over every row: the error sits in "
            f"the rows {mask!r} masks (padded tokens), which a model's use drops; measure "
            "it without them")


def simulated_fidelity_note(model, graph, declared, calibration) -> str:
    """:func:`fidelity_note` for a model onnxruntime cannot run (op types declared with
    --operators outside ONNX's domain): the written arithmetic simulated on the catalog's and
    the declarations' kernels, against the float graph run on them. A new-user trial's model
    of three custom ops had been written with no figure at all."""
    from ..engine.deployable import output_fidelity
    from ..engine.float_run import first_samples

    simulated = model.run(first_samples(calibration.sample, graph))
    return fidelity_note(output_fidelity(graph, declared, calibration.sample, simulated),
                         calibration.sample, graph,
                         "ptq-verify's kernels: the file's arithmetic, simulated")


def _one_each_hint(name: str, tensors: set[str]) -> str:
    """Advice for a ``--keep-float-tensor`` value that is several tensor names joined by commas
    (as ``--float-op LSTM,GRU`` takes op types; a tensor name may hold a comma, so the option
    does not split it): one option each."""
    parts = [part.strip() for part in name.split(",")]
    if len(parts) < 2 or not all(part in tensors for part in parts):
        return ""
    return (" (it names " + ", ".join(repr(part) for part in parts) + ": give each with a "
            "--keep-float-tensor of its own)")


def fidelity_note(fidelity: dict, sample, graph, measured_by: str = "onnxruntime") -> str:
    """The written model's output SQNR against the float model's, on the samples it was
    checked on (``measured_by``: what ran both). An output below LOW_SQNR_DB is called low,
    with what to try, when its typical row (the median) is low too; when the error sits in a
    minority of rows, the note says so and how many: rows a model computes and its use drops
    (padded tokens) are no reason to keep activations in float. Where an input marks rows
    with 0 and 1 (an attention mask), the rows at its zeros are measured apart, and the
    others decide whether the output is low: padded rows can be most of the rows, and then
    the median is theirs."""
    from ..engine.data import samples_in
    from ..engine.float_run import first_samples

    if not fidelity:
        return "output SQNR: not measured (no float output the float model also gives here)"
    count = samples_in(first_samples(sample, graph), graph)
    figures, low = [], []
    for output, measured in fidelity.items():
        name = tensor_label(output)
        # (an output the float nodes compute alone, a recurrent layer's final state kept in
        # float, equals the float model's: 'inf dB' read as an error to a streaming trial)
        text = f"{name} exact" if measured.db == math.inf else f"{name} {measured.db:.1f} dB"
        if measured.agreement is not None:  # integers or booleans: equal or not
            text = f"{name} {measured.agreement:.1%} of its values equal"
        elif measured.rows_found is not None:  # integers, as many rows as the data select
            rows, float_rows, share = measured.rows_found
            text = (f"{name} {rows} rows against the float model's {float_rows}"
                    + (f", {share:.1%} of those among them" if float_rows else ""))
        elif measured.empty:
            text = f"{name} not measured (empty: an axis of length 0 on those samples)"
        elif math.isnan(measured.db):
            text = (f"{name} not measured (the float model gives 0 there on every sample: "
                    "weights or inputs that make it vanish?)")
        elif measured.db < LOW_SQNR_DB and measured.rows.size > 1 and (
                masked := _error_under_mask(measured)) is not None:
            text = f"{name} {masked}"
        elif measured.db < LOW_SQNR_DB and measured.rows.size > 1:
            median = measured.median_row
            text += (f" (its median row {median:.1f} dB, "
                     f"{measured.rows_below(LOW_SQNR_DB):.0%} of its rows under "
                     f"{LOW_SQNR_DB:.0f} dB")
            split = measured.split_at_zeros()
            if split is not None:
                share, at_zero, others = split
                text += (f"; its rows where input {measured.zeros[0]!r} is 0, {share:.0%} of "
                         f"them, median {at_zero:.1f} dB, the others {others:.1f} dB)")
            else:
                text += ")"
            if median >= LOW_SQNR_DB:
                text += (": the error sits in those rows; where the model's use drops "
                         "them (padded tokens under a mask), measure it there; where it "
                         "reads every row (a detector's cells), try --keep-float N as for a "
                         "low output")
            else:
                low.append(name)
        elif measured.db < LOW_SQNR_DB:
            low.append(name)
        figures.append(text)
    advice = (f"; low at {', '.join(low)}: try --keep-float N (the activations that cost the "
              "outputs most, kept in float) or more bits; docs/engine.md#limits says which "
              "tensors codes cannot carry") if low else ""
    return (f"output SQNR against the float model on the first {count} calibration samples "
            f"({measured_by}): {', '.join(figures)}{advice}{_recorded_state_note(graph)}")


def _recorded_state_note(graph) -> str:
    """For :func:`fidelity_note`, where an input holds its samples off axis 0 (a recurrent
    state, (layers, batch, hidden): ``moved_batch_note``): the note runs each sample from
    the state the file gives, the float model's as recorded, where a streaming model runs on
    the state it fed back itself, whose error grows over chunks. A streaming trial's LSTM:
    the note 52.8 dB on its hn, the file run recurrently on held-out streams 52.9 dB at the
    first chunk and 32.2 at the sixth (quantize_static's the same). "" otherwise."""
    from ..engine.data import moved_batch_note

    if not moved_batch_note(graph):
        return ""
    return ("; each sample ran from the state the file gives (the float model's, if the "
            "file records its runs), not one the quantized model fed back: run the written "
            "file recurrently on held-out data to see the error over chunks")


def equalization_note(on: bool, pairs, skipped: str = "") -> str:
    """What cross-layer equalization did, for the summary; ``skipped``: why it did not run."""
    if skipped:
        return f"cross-layer equalization: not run ({skipped})"
    return _step_note("cross-layer equalization", on, pairs, "off (--no-equalize)",
                      "none (no two weight layers joined only by operators with a per-channel "
                      "rule, or equalizing them did not lower their outputs' error on the "
                      "calibration data)")


def absorption_note(absorbed) -> str:
    """What bias absorption (part of equalization) did, for the summary."""
    return _step_note("bias absorption", True, absorbed, "", "none (no equalized group whose "
                      "links pass a shift by a proved rule into layers whose bias takes it, "
                      "or no channel above 0 on all calibration data)")


def smoothing_note(on: bool, smoothed) -> str:
    """What activation smoothing did, for the summary."""
    return _step_note("activation smoothing", on, smoothed, "off (--no-smooth)",
                      "none (no activation feeding weight layers from a node proved linear "
                      "in its parameters, or it did not lower their output error)", counted=True)


def mixed_precision_note(asked: int, kept) -> str:
    """Which activations mixed precision kept in float, with what each costs alone."""
    head = f"mixed precision (--keep-float {asked})"
    why = "the candidates tried did not raise the quantized model's output SQNR, or none are left"
    if not kept:  # (it had said "no activation to keep" where candidates had not helped)
        return f"{head}: none kept in float ({why})"
    fewer = f" (only {len(kept)}: {why.replace('the ', 'the other ', 1)})" if len(
        kept) < asked else ""
    return (f"{head}: kept in float{fewer}, each with the output SQNR when it is the only "
            "activation on codes, and the quantized model's once it is kept in float: "
            + ", ".join(item.describe() for item in kept))


def rescue_note(rescued) -> str:
    """The nodes whose input codes the screen found too coarse, and what was kept in float
    for them (engine/conditioning.py)."""
    from ..engine.conditioning import FLAG_DB_PER_BIT, RESCUE_GAIN_DB

    count = len(rescued.flagged)
    head = (f"ill-conditioned codes (--no-rescue turns this off): {count} "
            f"{'node' if count == 1 else 'nodes'} in float amplify the rounding of the codes "
            f"they read (local SQNR over the calibrated range, below {FLAG_DB_PER_BIT:g} dB a "
            f"bit): {first_few([item.describe() for item in rescued.flagged], 4)}")
    if rescued.kept:
        return (f"{head}; kept in float: "
                + ", ".join(item.describe() for item in rescued.kept))
    why = rescued.unmeasured or (
        f"no activation among their inputs and those they are computed from raised the "
        f"quantized model's output SQNR by {RESCUE_GAIN_DB:g} dB in float")
    return f"{head}; none kept in float ({why})"


def _step_note(step: str, on: bool, done, off: str, none: str, counted: bool = False) -> str:
    if not on:
        return f"{step}: {off}"
    if not done:
        return f"{step}: {none}"
    count = f" ({len(done)})" if counted else ""
    return f"{step}{count}: " + "; ".join(item.describe() for item in done)


def summary_rows(model) -> list[dict]:
    return [record.to_json() for record in model.records]


def table(model, source, target, format: str = "simulation", format_floats: int = 0,
          rows: bool = True) -> str:
    """The node table (unless not ``rows``: --summary) and the summary line;
    ``format_floats``: nodes the written format runs in float although the plan has them on
    integers (the integer format's, listed in a note)."""
    lines = _node_table(model) if rows else []
    lines.append(f"{plain_path(source)} -> {plain_path(target)}: "
                 f"{summary_line(model, format, format_floats)}")
    lines.extend(f"note: {plain_cell(n)}" for n in model.notes)  # (notes quote node names)
    return "\n".join(lines)


def _node_table(model) -> list[str]:
    """One line a node, in aligned columns."""
    rows = [("node", "op type", "rule", "action", "out scale", "note")]
    rows += [tuple(map(plain_cell, (r.name, r.op_type, r.rule, r.action, r.scale, r.note)))
             for r in model.records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def summary_line(model, format: str, format_floats: int = 0) -> str:
    """How many nodes run on integers, in float and why, and static (see :func:`table`)."""
    counts = model.counts()
    return (f"{model.bits}-bit {format}, {len(model.records)} nodes: "
            f"{counts['integer']} on integers, {counts['compensated']} compensated "
            f"({_why_float(model.records)}), {counts['static']} static (float: shapes, "
            "indices, masks; no activation)"
            + (f"; the {format} format leaves {format_floats} of the {counts['integer']} on "
               "integers in float (listed below)" if format_floats else ""))


def _why_float(records) -> str:
    """Why the compensated nodes run in float, with how many for each reason."""
    reasons: dict[str, int] = {}
    for record in records:
        if record.kind == "compensated":
            reasons[record.why] = reasons.get(record.why, 0) + 1
    if not reasons:
        return "none in float"
    if len(reasons) == 1:
        return f"float: {next(iter(reasons))}"
    return "float: " + "; ".join(f"{n} {why}" for why, n in reasons.items())


def markdown(model, source, target, format: str, format_floats: int,
             command: list[str], calib) -> str:
    """The --report file: what the summary line and notes say, the node table, and the
    command that wrote it (a new-user trial's report had neither the counts nor the
    calibration data and options)."""
    out = [f"# Quantization of {plain_path(source.name)}", "",
           f"Written to `{plain_path(target)}`: "
           f"{markdown_cell(summary_line(model, format, format_floats))}.",
           "", f"Command: `{markdown_cell(shlex.join(command))}` (calibration data: "
           f"`{markdown_cell(str(calib))}`)", "",
           "| node | op type | rule | action | output scale | note |",
           "| --- | --- | --- | --- | --- | --- |"]
    out += ["| " + " | ".join(map(markdown_cell, (r.name, r.op_type, r.rule, r.action,
                                                  r.scale, r.note))) + " |"
            for r in model.records]
    out += [""] + [f"- {plain_cell(n)}" for n in model.notes]
    return "\n".join(out) + "\n"


