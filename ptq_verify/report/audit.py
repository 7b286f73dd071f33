"""Model audit: every node of an ONNX model with its verdict and what the PTQ engine does there.

The actions come from the engine's own plan (:func:`ptq_verify.engine.plan_model`), run on the
model as the engine prepares it (constants folded, BatchNorm merged into its producer), so the
audit says what quantizing will really do. Nodes that preparation removes are listed as folded.
An op type nobody declared is listed with its node name and counted, never skipped; so is a
node whose declaration does not fit it (an input or output more than the declaration describes).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from ..catalog import declared_forms
from ..engine import plan_model, prepare
from ..engine.absorb import absorbable
from ..engine.data import (
    batch_not_first,
    batch_sizes_disagree,
    fixed_batch_hint,
    keyword_name,
    moved_batch_note,
    named_batch_hint,
    sample_axes,
    savez_of,
)
from ..engine.equalize import equalized, unprobed_without_data
from ..engine.invariant_regions import INVARIANT_REASON, invariant_regions
from ..engine.plan import INTEGERS_REASON, KEPT_REASON, Action
from ..engine.rules import is_elementwise_unary
from ..engine.smooth import candidates_of
from ..engine.static_alone import STATIC_ALONE_REASON, mark_static_alone
from ..errors import UserError
from ..graph import Graph, Node, OperatorTable, activation_tensors, load_graph
from ..graph.executor import KernelGap
from ..graph.model import subgraphs
from ..graph.operators import (
    check_float_types,
    model_codes_hint,
    quantized_hint,
    runtime_operator_hint,
    way_forward_hint,
)
from ..graph.ort_runner import float_session, own_kernel_types
from ..rules import stored_classify
from ..wording import assumed_attributes, tensor_label, unused_declarations
from .cells import markdown_cell, plain_cell, plain_path

UNKNOWN = "unknown op type"
UNFIT = "declaration does not fit"
KEPT = "kept in float"  # at the user's request (--float-op): no declaration, no rule claimed
INTEGERS = "integers only"  # undeclared, reads and writes integers: no scale, no rule needed
CONSTANT = "constant"
FOLDED = "folded"
UNUSED = "unused"


@dataclass(frozen=True)
class AuditEntry:
    """One node: ``verdict`` is the rule kind (or ``unknown op type``, ``declaration does not
    fit``), ``action`` the step."""

    node: str
    op_type: str
    operator: str | None
    verdict: str
    rule: str | None
    action: str
    text: str
    reason: str = ""
    integer: str = ""  # a compensated node in --format integer: a table of codes, or float
    hint: str = ""  # an unknown node on 8-bit integer tensors: the model looks quantized


@dataclass(frozen=True)
class AuditInput:
    """A model input as the calibration file must hold it: the array's key, its dtype, and
    its shape (a symbolic dimension by its name, as the batch axis of a dynamic export)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...] | None
    batch_axis: int = 0  # the axis the samples lie along (engine.data.sample_axes)

    def describe(self) -> str:
        """Name (quoted where it is no Python name: 'pixel values' read as two words), dtype
        and shape."""
        name = tensor_label(self.name)
        if self.shape is None:
            return f"{name} {self.dtype} (shape not stated)"
        return f"{name} {self.dtype} ({', '.join(map(str, self.shape))})"


def model_inputs(graph: Graph) -> tuple[AuditInput, ...]:
    """The inputs the calibration data is keyed by: a newcomer's first question after
    exporting (torch's dynamo exporter names an image input ``x``, the legacy one ``input``
    or what ``input_names`` says), answered where the audit already is."""
    axes = sample_axes(graph)
    return tuple(AuditInput(info.name, np.dtype(info.dtype).name,
                            None if info.shape is None else
                            tuple(d if d not in (None, "") else "?" for d in info.shape),
                            axes[info.name])
                 for info in graph.inputs)


@dataclass(frozen=True)
class Audit:
    model: str
    entries: tuple[AuditEntry, ...]
    equalized: tuple[str, ...] = ()  # groups cross-layer equalization may take
    smoothable: tuple[str, ...] = ()  # activations smoothing may move a factor out of
    absorbable: tuple[str, ...] = ()  # equalized groups whose links pass a shift
    onnxruntime: str | None = None  # why onnxruntime refuses to load the model, condensed
    own_kernels: tuple[str, ...] = ()  # op types declared with --operators it has no kernel for
    unprobed: str = ""  # why equalization was not probed (it runs the model), if it was not
    interface: str | None = None  # why quantize refuses the model's inputs or outputs
    loaded: str = ""  # how the file was brought to the engine's opset (Graph.loaded)
    inputs: tuple[AuditInput, ...] = ()  # what the calibration file holds, one array each
    # attributes nodes leave out that their declarations' sample values stand for
    assumed: tuple[str, ...] = ()
    # where the batch lies off axis 0 (moved_batch_note), why no data is batch first along
    # every input (batch_not_first), or that the model fixes its batch (fixed_batch_hint)
    batch_elsewhere: str = ""
    # declarations given with --operators that no node takes (OperatorTable.unused)
    unused: tuple[str, ...] = ()

    def summary(self) -> dict:
        """Counts per verdict and per action, unknown op types with their nodes, nodes their
        declaration does not fit with why, compensations."""
        unknown: dict[str, list[str]] = {}
        for e in self.entries:
            if e.verdict == UNKNOWN:
                unknown.setdefault(e.op_type, []).append(e.node)
        return {
            "nodes": len(self.entries),
            "verdicts": dict(sorted(Counter(e.verdict for e in self.entries).items())),
            "actions": dict(sorted(Counter(e.action for e in self.entries).items())),
            "unknown_op_types": dict(sorted(unknown.items())),
            "unfit_nodes": {e.node: e.reason for e in self.entries if e.verdict == UNFIT},
            "kept_in_float": [e.node for e in self.entries if e.verdict == KEPT],
            "compensated": [e.node for e in self.entries if e.action == Action.COMPENSATE.value],
            "integer_format_float": {e.node: e.integer for e in self.entries
                                     if e.integer.startswith("float")},
            "equalized": list(self.equalized),
            "equalization_probed": not self.unprobed,
            "smoothable": list(self.smoothable),
            "absorbable": list(self.absorbable),
            "onnxruntime_refuses": self.onnxruntime,
            "quantize_refuses_interface": self.interface,
            "loaded": self.loaded,
            "assumed_attributes": list(self.assumed),
            "unused_declarations": list(self.unused),
            # the calibration data line's advice on where the samples go ("" where none)
            "calibration_batch": self.batch_elsewhere.removeprefix("; "),
        }

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "inputs": [asdict(i) for i in self.inputs],
            "nodes": [asdict(e) for e in self.entries],
            "summary": self.summary(),
        }


def _folded_entry(node, original: Graph, table: OperatorTable, read: set[str]) -> AuditEntry:
    """The entry of a node the engine's preparation removed; ``read``: the tensors some node
    of ``original`` reads."""
    if not any(out in read or out in original.output_names for out in node.outputs):
        # (a node writing an output that is not a tensor, kept out of an audit's graph)
        return AuditEntry(node.name, node.op_type, None, UNUSED, None, UNUSED,
                          "left out: no node reads its outputs and none is a tensor output "
                          "of the model")
    if any(subgraphs(value) for value in node.attrs.values()):
        # an If of a constant condition, replaced by its branch (graph/branches.py)
        return AuditEntry(node.name, node.op_type, None, CONSTANT, None, FOLDED,
                          "its condition is a constant of the model (shapes its inputs fix): "
                          "replaced at load by the branch it takes, whose nodes are listed")
    op = table.find(node, original)
    if op is None:
        # Folded at load (a Constant node, or a constant subgraph onnx's reference evaluator
        # computed): its value is known, so it needs no declaration and no rule.
        return AuditEntry(
            node.name,
            node.op_type,
            None,
            CONSTANT,
            None,
            FOLDED,
            "computed once at load (depends on no model input): no rule needed",
        )
    rule = stored_classify(op).rule
    return AuditEntry(
        node.name,
        node.op_type,
        op.name,
        rule.kind.value,
        rule.describe(),
        FOLDED,
        "folded: merged into its producer or computed once as a constant",
    )


def audit_model(path: str | os.PathLike, table: OperatorTable | None = None) -> Audit:
    """Audit the ONNX model at ``path`` (UserError for an unreadable or invalid file), with
    ``table``'s declarations ahead of the catalog."""
    try:
        original, refused = load_graph(path), None
    except UserError as err:  # listed all the same where only its interface is refused (a
        # scikit-learn classifier's ZipMap output: quantize takes tensors only), with why
        original, refused = load_graph(path, tensors_only=False), str(err)
    table = OperatorTable.of(table)
    prepared = prepare(load_graph(path, tensors_only=refused is None), table)
    check_float_types(prepared, table, original)
    actions = plan_model(prepared, table)
    plan = {a.name: a for a in actions}
    # normalizations in parts run in float, as quantize runs them (found from the rules), and
    # so do nodes no activation enters that only float nodes read (rotary angles before Cos)
    regions = invariant_regions(prepared, table, actions, activation_tensors(prepared, table))
    reasons = dict.fromkeys(regions, INVARIANT_REASON)
    floats = {**{a.name: "" for a in actions if a.action is Action.COMPENSATE}, **reasons}
    mark_static_alone(prepared, {node.name: table.find(node, prepared) for node in prepared.nodes},
                      actions, floats)
    reasons.update((name, why) for name, why in floats.items() if why == STATIC_ALONE_REASON)
    # (each looked up once: a search per entry was quadratic in the nodes)
    nodes = {node.name: node for node in prepared.nodes}
    model_hint = model_codes_hint(prepared)
    entries = []
    read = {name for node in original.nodes for name in node.inputs}
    for node in original.nodes:
        action = plan.pop(node.name, None)
        if action is None:
            entries.append(_folded_entry(node, original, table, read))
            continue
        entries.append(_entry(action, prepared, nodes[action.name], table, model_hint,
                              reasons.get(action.name, "")))
    entries.extend(_entry(action, prepared, nodes[action.name], table, model_hint,
                          reasons.get(action.name, ""))
                   for action in plan.values())  # nodes preparation created
    smoothable = tuple(c.describe() for c in candidates_of(prepared, table))
    # the probe runs the graph on the catalog's kernels: not with a node none of them runs
    unprobed = "" if all(entry.verdict not in (UNKNOWN, UNFIT) for entry in entries) else (
        "it runs the model, and some nodes have no declaration that fits them, listed below")
    if not unprobed:
        unprobed = unprobed_without_data(prepared) or ""
    pairs, groups = [], None
    if not unprobed:
        try:
            pairs, groups = equalized(prepared, table)
        except KernelGap as gap:
            unprobed = gap.skipped
        except UserError:  # random inputs of the shapes the inputs declare do not fit the
            # model (optimum's exports leave an image's channels symbolic: 2 meet a Conv's 3)
            unprobed = ("the model does not run on random inputs of the shapes its inputs "
                        "declare, symbolic dimensions taken as 2; quantize measures it on the "
                        "calibration data")
    shiftable = tuple(a.describe() for a in absorbable(prepared, table, groups=groups)
                      ) if pairs else ()
    return Audit(str(path), tuple(entries), tuple(p.describe() for p in pairs), smoothable,
                 shiftable, float_session(path)[1], tuple(own_kernel_types(original, table)),
                 unprobed, refused, original.loaded, model_inputs(original),
                 tuple(table.assumed_attributes(original.nodes)),
                 _disagreeing_batch(original) or moved_batch_note(original)
                 or batch_not_first(original) or named_batch_hint(original)
                 or fixed_batch_hint(original), tuple(table.unused(original.nodes)))


def _disagreeing_batch(graph: Graph) -> str:
    """The refusal quantize gives data for a model whose inputs fix their batch axes at
    different sizes, for the audit's line on the calibration data (which had asked a
    diffusion trial for a timestep (1) beside latents (2, 4, 16, 16), data quantize cannot
    run)."""
    text = batch_sizes_disagree(graph)
    return f"; but {text}" if text else ""


def _integer_form(action, graph: Graph, table: OperatorTable) -> str:
    """What --format integer makes of a compensated node, from its declaration: a table of
    codes (element-wise unary with scalar constant parameters) or float, and why."""
    if action.action is not Action.COMPENSATE:
        return ""
    node = next(n for n in graph.nodes if n.name == action.name)
    op = table.find(node, graph)
    if op is None:  # kept in float at the user's request (--float-op)
        return "float: no declaration describes it"
    if not is_elementwise_unary(op):
        return "float: not element-wise unary by its declaration"
    params = [name for slot, name in enumerate(node.inputs) if name and slot not in
              action.activation_slots]
    if any(graph.initializers.get(name, [0, 0]).size != 1 for name in params):
        return "float: a parameter is not a scalar constant"
    return "table of output codes (Gather)"


_SHORT = {INVARIANT_REASON: "a normalization in parts"}
"""The audit's words for a region's reason where they are shorter than the summary's."""


def _entry(action, graph: Graph, node: Node, table: OperatorTable, model_hint: str,
           in_float: str = "") -> AuditEntry:
    """``node``: the action's; ``model_hint``: :func:`model_codes_hint` of the graph, taken
    once for every undeclared node (each had scanned the whole graph: quadratic); and
    ``in_float``: why the node runs in float as quantize runs it though its rule would not
    (a normalization in parts, INVARIANT_REASON; STATIC_ALONE_REASON), or ""."""
    verdict = action.rule.kind.value if action.rule is not None else (
        KEPT if action.reason == KEPT_REASON else
        INTEGERS if action.reason == INTEGERS_REASON else
        UNKNOWN if action.operator is None else UNFIT)
    hint = (quantized_hint(node, graph, model_hint) or runtime_operator_hint(node)
            or way_forward_hint(node) if verdict == UNKNOWN else "")
    if verdict == UNKNOWN and (near := table.near_declaration(node)):
        hint = f"{near}; {hint}"
    return AuditEntry(
        action.name,
        node.qualified_type,
        action.operator,
        verdict,
        None if action.rule is None else action.rule.describe(),
        Action.COMPENSATE.value if in_float else action.action.value,
        f"compensate: run in float ({_SHORT.get(in_float, in_float)})" if in_float
        else action.text,
        in_float or action.reason,
        f"float: {_SHORT.get(in_float, in_float)}" if in_float
        else _integer_form(action, graph, table),
        hint,
    )


CALIBRATION_DECIDES = (
    "decided on calibration data, which the audit does not read: quantize may run more nodes "
    "in float than listed here (inputs held as per-channel codes or as a wide integer sum that a "
    "node has no rule for, a static operand that saturates a sum such as an attention mask, "
    "input ranges too far apart, a divisor near 0); its summary line counts them with why")
"""A new-user trial's BERT: the audit listed 4 compensated nodes, quantize ran 15 in float,
and nothing said why the two differ."""


def inputs_line(audit: Audit) -> str:
    """The line naming what ``quantize --calib`` reads, in the words of the README; with the
    np.savez call where a name is none Python takes as a keyword (torch's legacy exporter's
    ``input.1``: the README's ``np.savez("calib.npz", input.1=...)`` is a SyntaxError)."""
    names = [i.name for i in audit.inputs]
    call = "" if all(keyword_name(name) for name in names) else f": {savez_of(names)}"
    return ("calibration data (--calib calib.npz): one array per input, keyed by its name, "
            "batch first: " + "; ".join(i.describe() for i in audit.inputs) + call
            + " (docs/engine.md, making the calibration file)" + audit.batch_elsewhere)


def _summary_lines(audit: Audit) -> list[str]:
    summary = audit.summary()
    # a rule matters only where a scale reaches: a Cast of the mask to int64 is refuted
    # (it rounds), yet runs exactly in float before any scale (a newcomer read the counts as
    # nodes to compensate)
    off_path = Counter(e.verdict for e in audit.entries
                       if e.action in (Action.STATIC.value, FOLDED))
    lines = [
        f"{summary['nodes']} nodes; verdicts: "
        + ", ".join(f"{k} {n}" + (f" ({off_path[k]} of them static or folded: no scale "
                                   "reaches them)" if k == "needs_compensation"
                                  and off_path[k] else "")
                    for k, n in summary["verdicts"].items()),
        "actions: " + ", ".join(f"{k} {n}" for k, n in summary["actions"].items()),
    ]
    if audit.loaded:
        lines.append(f"loaded: {audit.loaded}")
    if audit.inputs:
        lines.append(inputs_line(audit))
    lines.append(CALIBRATION_DECIDES)
    if summary["compensated"]:
        lines.append("compensation at: " + ", ".join(summary["compensated"]))
        floats = summary["integer_format_float"]
        lines.append("--format integer: " + ("every compensated node is a table of codes"
                     if not floats else "float at " + ", ".join(
                         f"{node} ({why.removeprefix('float: ')})"
                         for node, why in floats.items())))
    lines.append("cross-layer equalization (on by default; each group's strength chosen on "
                 "calibration data): " + (
                     "; ".join(summary["equalized"]) or ("no pair (no two weight layers joined "
                     "only by operators with a per-channel rule)" if not audit.unprobed
                     else f"not probed ({audit.unprobed})")))
    lines.append("bias absorption (with equalization, where calibration data puts a channel "
                 "above 0): " + ("; ".join(summary["absorbable"]) or (
                     "no equalized group whose links pass a shift by a proved rule into layers "
                     "whose bias takes it" if not audit.unprobed
                     else "not probed (equalization was not)")))
    lines.append("activation smoothing (on by default; chosen on calibration data): " + (
        "; ".join(summary["smoothable"]) or "no activation feeds weight layers from a node "
        "proved linear in its parameters"))
    for op_type, nodes in summary["unknown_op_types"].items():
        forms = declared_forms(op_type)
        why = (f"no declaration fits them; the catalog's forms of it: {forms}; --float-op "
               f"{op_type} keeps them in float, the declared forms keep their rule"
               if forms else "not in the catalog")
        hints = sorted(e.hint for e in audit.entries if e.op_type == op_type and e.hint)
        why += f"; {hints[0]}" if hints else ""
        lines.append(f"unknown op type {op_type}: {', '.join(nodes)} ({why})")
    for node, why in summary["unfit_nodes"].items():
        lines.append(f"refused {node}: {why}")
    if summary["kept_in_float"]:
        lines.append(f"{KEPT_REASON} (--float-op): " + ", ".join(summary["kept_in_float"]))
    if audit.assumed:
        lines.append(assumed_attributes(audit.assumed))
    if audit.unused:
        lines.append(unused_declarations(audit.unused))
    if audit.interface is not None:
        lines.append(f"quantize refuses this model: {audit.interface}")
    if audit.onnxruntime is not None:
        lines.append(f"onnxruntime cannot load this model ({audit.onnxruntime}): " + (
            f"it holds op types declared with --operators ({', '.join(audit.own_kernels)}), "
            "whose kernels it lacks" if audit.own_kernels else "quantize refuses it"))
    return lines


def audit_text(audit: Audit) -> str:
    """Aligned columns, one node a line, then the summary."""
    rows = [("node", "op type", "verdict", "action")]
    rows += [tuple(map(plain_cell, (e.node, e.op_type, e.rule or e.verdict, e.text)))
             for e in audit.entries]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{plain_path(audit.model)}:"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    # the summary lines quote node names: escaped as the cells are
    return "\n".join([*lines, "", *map(plain_cell, _summary_lines(audit))]) + "\n"


def audit_markdown(audit: Audit) -> str:
    """A Markdown table, then the summary as a list."""

    lines = [
        f"# Audit of `{plain_path(audit.model)}`",
        "",
        "| node | op type | verdict | what the engine does | why |",
        "| --- | --- | --- | --- | --- |",
    ]
    for e in audit.entries:
        lines.append(
            f"| {markdown_cell(e.node)} | {markdown_cell(e.op_type)} | "
            f"{markdown_cell(e.rule or e.verdict)} | {markdown_cell(e.text)} | "
            f"{markdown_cell(e.reason)} |"
        )
    lines += ["", *(f"- {plain_cell(line)}" for line in _summary_lines(audit)), ""]
    return "\n".join(lines)
