"""Operator pages: one Markdown page per operator, and an index table.

A page says what the checker decided, why (the proof's identity and cases, or the exact
counterexample and the evidence that no degree or rescaling works), what the PTQ engine does
with the operator, and shows a plot. Expressions come from the verdict and the certificate as
text in the grammar; they are read back with the whitelist parser only to typeset them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import sympy

from ..atomic import output_directory, write_atomic
from ..catalog.grammar import ExpressionError, parse_expression
from ..catalog.operator import Operator
from ..progress import progress_bar
from ..rules import Rule, RuleKind, Verdict, classify
from ..rules.explain import shift_summary
from ..rules.lattice import scale_power
from ..rules.per_channel import per_channel_rule
from ..rules.shift import shift_rule
from .certificates import certificate_path
from .locations import proofs_link
from .plots import SCALES, curves_coincide, plotted_rule, write_plot

_CASES_SHOWN = 9
_NO_PROOFS = "\0proofs"  # a link target no real path has, removed with its link
_SIGN_TEXT = {"positive": "> 0", "negative": "< 0", "zero": "= 0"}


def _latex(text: str) -> str:
    """Typeset grammar text; falls back to the text itself (in \\texttt) if it does not parse."""
    try:
        expr = parse_expression(text, source="certificate").expr
    except ExpressionError:
        return "\\texttt{" + text.replace("_", "\\_") + "}"
    names = {
        symbol: f"\\mathrm{{{symbol.name}}}"
        for symbol in expr.free_symbols
        if len(symbol.name) > 1 and symbol.name.isalpha()
    }
    return sympy.latex(expr, symbol_names=names)


def _inline(text: str) -> str:
    """Inline math that survives a Markdown table (no bare ``|``)."""
    return "$" + _latex(text).replace("|", "\\vert ") + "$"


def _approx(text: str) -> str:
    try:
        value = parse_expression(text, source="certificate").expr
    except ExpressionError:
        return "?"
    return sympy.sstr(sympy.N(value, 8))


def _q(value: str | int | float) -> str:
    q = Fraction(str(value))
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _exponent_words(rule: Rule) -> str:
    parts = []
    for p, k in sorted(rule.param_exponents.items()):
        factor = scale_power("s", Fraction(str(k)))
        parts.append(f"`{p}` → {factor}·`{p}`")
    return ", ".join(parts)


# -- what the engine does ----------------------------------------------------------------------


def _separable_scale(op: Operator, rule: Rule) -> str:
    """``σ_a·σ_b^-1``: the output scale of a rule with one degree per input."""
    return "·".join(
        scale_power(f"σ_{t.name}", Fraction(str(d)))
        for t, d in zip(op.inputs, rule.input_degrees)
        if d != 0
    )


def _power(exponent: Fraction) -> str:
    """LaTeX for s^exponent, plain ``s`` for 1."""
    return "s" if exponent == 1 else f"s^{{{_q(exponent)}}}"


def engine_action(op: Operator, verdict: Verdict, proofs: str) -> str:
    """What the PTQ engine does with this operator, in sentences (σ: the input's scale)."""
    rule = verdict.rule
    kind = rule.kind
    rescale = _exponent_words(rule)
    degree = _q(rule.degree) if rule.degree is not None else None
    out_scale = "σ" if degree == "1" else f"σ^{degree}"
    if kind is RuleKind.PASS_THROUGH:
        text = (
            "**Passes the scale through.** If the input carries scale σ, the output carries σ: "
            "no scaling node, no parameter change."
        )
    elif kind is RuleKind.PARAM_RESCALE:
        text = (
            f"**Rescales parameters, then passes the scale through.** With input scale σ the "
            f"engine replaces {rescale} (with s = σ); the output carries σ."
        )
    elif kind is RuleKind.HOMOGENEOUS and rule.input_degrees is not None:
        text = (
            "**Each input keeps its own scale** (no alignment needed): the output carries "
            f"{_separable_scale(op, rule)}."
        )
    elif kind is RuleKind.HOMOGENEOUS:
        text = f"**Carries a power of the scale.** Input scale σ gives output scale {out_scale}."
    elif kind is RuleKind.ALIGNED:
        text = (
            "**Aligns its inputs.** The inputs must share one scale σ: the engine rescales the "
            f"inputs whose scale differs to a common σ first; the output carries {out_scale}."
        )
    elif kind is RuleKind.SCALE_INVARIANT:
        text = (
            "**Absorbs the scale.** The output does not depend on the input's scale (degree 0): "
            "it carries scale 1, i.e. it is the float output, and no compensation node is needed."
        )
    else:
        why = (
            "No scaling rule exists (see the counterexample above)."
            if kind is RuleKind.NEEDS_COMPENSATION
            else "Neither a proof nor a refutation was found, so the engine does not guess: it "
            "treats the operator as needing compensation."
        )
        text = (
            f"**Compensates.** {why} The engine rescales the input back by the inverse of the "
            "product of all factors accumulated upstream, runs the operator on its float range, "
            "and re-normalises the output with a new scale. This is exact in real arithmetic "
            f"([compensation]({proofs}/compensation.md))."
        )
    if rescale and kind is not RuleKind.PARAM_RESCALE and kind.has_rule:
        text += f" Parameters are rescaled first: {rescale} (s = σ)."
    notes = []
    if verdict.output_nonnegative:
        notes.append("The output is proved non-negative: the quantizer may use an unsigned range.")
    per_channel = per_channel_rule(op, verdict)
    if per_channel.holds:
        notes.append(
            f"It acts on each channel separately: a per-channel scale s_c passes through too "
            f"({per_channel.describe()}; [per-channel]({proofs}/per-channel.md))."
        )
    if op.mixes_channels and kind.has_rule:
        notes.append(
            "It mixes channels: a per-channel input scale does not pass through it; the input "
            "needs one scale per tensor (or the channel factors folded into its parameters)."
        )
    notes.append(f"Why the whole network stays exact: [propagation]({proofs}/propagation.md).")
    return text + "\n\n" + "\n".join(f"- {n}" for n in notes)


def engine_action_short(op: Operator, verdict: Verdict) -> str:
    """One phrase for the index table."""
    rule = verdict.rule
    rescale = _exponent_words(rule)
    phrase = {
        RuleKind.PASS_THROUGH: "pass the scale through",
        RuleKind.PARAM_RESCALE: "rescale parameters",
        RuleKind.HOMOGENEOUS: "output scale σ^d",
        RuleKind.ALIGNED: "align inputs",
        RuleKind.SCALE_INVARIANT: "absorb the scale",
        RuleKind.NEEDS_COMPENSATION: "compensate",
        RuleKind.UNDECIDED: "compensate (undecided)",
    }[rule.kind]
    if rule.kind is RuleKind.HOMOGENEOUS and rule.input_degrees is not None:
        phrase = f"output scale {_separable_scale(op, rule)}"
    elif rule.kind is RuleKind.HOMOGENEOUS:
        phrase = f"output scale σ^{rule.degree_text()}"
    if rescale and rule.kind is not RuleKind.PARAM_RESCALE:
        phrase += f"; rescale {rescale}"
    elif rescale:
        phrase += f" {rescale}"
    return phrase


# -- why ---------------------------------------------------------------------------------------


def _proof_section(op: Operator, certificate: dict, proofs: str) -> list[str]:
    lines = [
        "For every $s > 0$ (and every value of the parameters) the identity",
        "",
        f"$$ {_latex(certificate['lhs'])} = {_latex(certificate['rhs'])} $$",
        "",
    ]
    cases = certificate["cases"]
    method = certificate.get("method", "")
    if method == "direct" or (len(cases) == 1 and not cases[0]["signs"]):
        lines.append(
            "holds: the difference of the two sides simplifies to 0 for all values, after the "
            f"positive-scale rewrite ([rewrite rules]({proofs}/rewrite-rules.md))."
        )
        return lines
    split = sorted({e for case in cases for e in case["signs"]})
    lines.append(
        f"holds on each of the {len(cases)} sign cells of {', '.join(f'`{e}`' for e in split)}: "
        "in every cell the difference of the two sides (the residual) simplifies to 0, or the "
        "cell lies outside the domain. The cells cover every input "
        f"([sign split, Theorem 7]({proofs}/sign-split.md))."
    )
    if len(op.element_names) == 1:
        lines.append(
            f"For a scalar function this is the [two-slope theorem]({proofs}/two-slope.md): "
            "the cells x > 0, x < 0, x = 0."
        )
    table = ["", "| case | residual |", "| --- | --- |"]
    for case in cases:
        signs = ", ".join(f"${e} {_SIGN_TEXT[v]}$" for e, v in case["signs"].items())
        residual = case["residual"]
        shown = residual if residual.startswith("excluded") else _inline(residual)
        table.append(f"| {signs} | {shown} |")
    if len(cases) > _CASES_SHOWN:
        lines += ["", "<details><summary>All cases</summary>", *table, "", "</details>"]
    else:
        lines += table
    return lines


def _point_text(point: dict) -> str:
    return ", ".join(f"${name} = {_latex(str(_q(v)))}$" for name, v in point.items())


def _counterexample_section(op: Operator, cx: dict, proofs: str) -> list[str]:
    lines = [
        f"At the exact point {_point_text(cx['point'])} and scale $s = {_latex(_q(cx['scale']))}$:",
        "",
        f"- $f(s\\,x) = {_latex(cx['lhs'])} \\approx {_approx(cx['lhs'])}$",
        f"- $s\\,f(x) = {_latex(cx['rhs'])} \\approx {_approx(cx['rhs'])}$",
        f"- difference $\\approx {cx['difference']}$ (certified non-zero)",
        "",
        f"so $f(s\\,x) \\ne s\\,f(x)$ ([Theorem 9]({proofs}/refutation.md)).",
    ]
    evidence = cx.get("no_degree")
    if evidence:
        if "cross_difference" in evidence:
            lines += [
                "",
                f"**No degree works.** At a second point {_point_text(evidence['point'])}, "
                f"$f(x) = {_latex(evidence['f_x'])}$ and $f(s\\,x) = {_latex(evidence['f_sx'])}$: "
                "the ratio $f(s\\,x)/f(x)$ differs from the first point's (cross difference "
                f"$\\approx {evidence['cross_difference']}$), so no $d$ satisfies "
                f"$f(s\\,x) = s^d f(x)$ ([Theorem 10]({proofs}/refutation.md)).",
            ]
        else:
            lines += [
                "",
                f"**No degree works.** At {_point_text(evidence['point'])}, $f(x) = 0$ but "
                "$f(s\\,x) \\ne 0$, so no $d$ satisfies $f(s\\,x) = s^d f(x)$ "
                f"([Theorem 10]({proofs}/refutation.md)).",
            ]
    rescue = cx.get("no_rescale")
    if rescue:
        lines += [
            "",
            "**No parameter rescaling works.** Euler's identity, a necessary condition for any "
            "rule $f(s\\,x; s^k p) = s^d f(x; p)$, has no solution $(d, k)$ at "
            f"{len(rescue.get('points', []))} points ([Theorem 11]({proofs}/refutation.md), "
            f"[Euler]({proofs}/euler.md)).",
        ]
    return lines


def _why(op: Operator, verdict: Verdict, proofs: str) -> list[str]:
    certificate = verdict.to_json()["certificate"]
    kind = certificate.get("kind")
    if kind == "proof":
        lines = _proof_section(op, certificate, proofs)
        if verdict.rule.kind is RuleKind.ALIGNED:
            lines += [
                "",
                "All inputs are scaled by the same $s$: no rule with one scale per input was "
                f"found ([aligned vs separable]({proofs}/multivariate.md)).",
            ]
        return lines
    if kind == "counterexample":
        return _counterexample_section(op, certificate, proofs)
    return [verdict.reason or "No certificate."]


# -- pages -------------------------------------------------------------------------------------


def _declaration_rows(op: Operator, verdict: Verdict) -> list[str]:
    inputs = ", ".join(
        f"`{t.name}`" + (f" (elements {', '.join(t.elements)})" if len(t.elements) > 1 else "")
        for t in op.inputs
    )
    params = ", ".join(f"`{p}` (sample {_q(v)})" for p, v in sorted(op.params.items()))
    domain = ", ".join(f"`{d}`" for d in verdict.domain) or "all reals"
    return [
        "| | |",
        "| --- | --- |",
        f"| ONNX op type | {f'`{op.onnx_type}`' if op.onnx_type else '—'} |",
        f"| inputs | {inputs} |",
        f"| parameters | {params or 'none'} |",
        f"| expression | {_inline(verdict.expression)} |",
        f"| domain | {domain} |",
        f"| **rule** | **{verdict.rule.describe()}** |",
    ]


def operator_page(
    op: Operator, verdict: Verdict, plot: str | None = None, proofs: str | None = "../../proofs"
) -> str:
    """The Markdown page of one operator; ``plot`` is the PNG's file name next to the page.

    ``proofs`` is the link to the proofs folder; None names the theorems without links (pages
    written where no proofs folder exists must not link to missing files)."""
    if proofs is None:
        page = operator_page(op, verdict, plot, _NO_PROOFS)
        return re.sub(rf"\[([^\]]*)\]\({re.escape(_NO_PROOFS)}/[^)]*\)", r"\1", page)
    lines = [f"# {op.name}", ""]
    if op.doc:
        lines += [op.doc, ""]
    lines += _declaration_rows(op, verdict)
    lines += ["", "## Why", "", *_why(op, verdict, proofs)]
    lines += ["", "## What the PTQ engine does", "", engine_action(op, verdict, proofs)]
    lines += ["", "## Shift rule", "", f"f(x - c) = f(x) - c, every input element shifted by c "
              f"([shift.md]({proofs}/shift.md)): {shift_summary(shift_rule(op))}."]
    if verdict.alternatives:
        lines += ["", "## Other valid rules", ""]
        lines.append(
            "Each is proved too (certificate file); the rule above rescales the fewest parameters."
        )
        lines.append("")
        for rule, proof in verdict.alternatives:
            lines.append(f"- **{rule.describe()}**: ${_latex(proof.lhs)} = {_latex(proof.rhs)}$")
    if plot:
        degree, exponents = plotted_rule(verdict)
        coincide = curves_coincide(op, verdict)
        lines += [
            "",
            "## Plot",
            "",
            f"![f(s x) against s^d f(x) for {op.name}]({plot})",
            "",
            f"Solid: $f(s\\,x)${' with rescaled parameters' if exponents else ''}; dashed: "
            f"${_power(degree)}\\,f(x)$, for $s = {', '.join(_q(s) for s in SCALES)}$. "
            + (
                "The curves coincide, as the rule says."
                if coincide
                # (an undecided verdict refutes nothing)
                else "The curves differ for this degree; the checker decided no rule either "
                "way (undecided)." if verdict.rule.kind is RuleKind.UNDECIDED
                else "The curves differ: no such rule holds."
            )
            + " The plot illustrates; the certificate proves.",
        ]
    lines.append("")
    return "\n".join(lines)


def index_page(entries: list[tuple[Operator, Verdict]], title: str = "Operators") -> str:
    """A table of every operator: rule, engine action, certificate kind."""
    counts = Counter(v.rule.kind.value for _, v in entries)
    lines = [f"# {title}", ""]
    lines.append(
        f"{len(entries)} operators: "
        + ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
        + "."
    )
    lines += [
        "",
        "| operator | ONNX | rule | the PTQ engine | evidence |",
        "| --- | --- | --- | --- | --- |",
    ]
    for op, verdict in sorted(entries, key=lambda e: e[0].name):
        evidence = verdict.certificate.kind if verdict.certificate is not None else "none"
        lines.append(
            f"| [{op.name}]({op.name}.md) | {op.onnx_type or '—'} | {verdict.rule.describe()} | "
            f"{engine_action_short(op, verdict)} | {evidence} |"
        )
    lines.append("")
    return "\n".join(lines)


def write_pages(
    operators: Iterable[Operator],
    directory: str | Path,
    *,
    plots: bool = True,
    proofs: str | None = None,
    title: str = "Operators",
    progress: bool = False,
) -> list[Path]:
    """Write ``<Name>.md`` (and ``<Name>.png``) per operator and ``index.md`` into ``directory``.

    ``proofs`` is the link from the pages to the proofs folder; by default the relative path
    from ``directory`` to the source checkout's proofs (no links without a checkout).
    ``progress``: a bar on stderr (the catalog's 127 pages and plots take 15-35 s).
    """
    directory = output_directory(directory)
    if proofs is None:
        proofs = proofs_link(directory)
    operators = list(operators)
    entries, written = [], []
    for op in progress_bar(operators, desc="pages", unit="operator", progress=progress):
        verdict = classify(op)
        entries.append((op, verdict))
        page = page_path(directory, op.name)
        plot = None
        if plots:
            plot = plot_path(page).name
            written.append(write_plot(op, verdict, directory / plot))
        written.append(write_atomic(page, operator_page(op, verdict, plot, proofs)))
    written.append(write_atomic(directory / INDEX_PAGE, index_page(entries, title)))
    return written


INDEX_PAGE = "index.md"


def page_path(directory: str | Path, name: str) -> Path:
    """Where :func:`write_pages` writes operator ``name``'s page in ``directory``."""
    return certificate_path(directory, name).with_suffix(".md")


def plot_path(page: Path) -> Path:
    """Where :func:`write_pages` writes the plot of ``page``."""
    return page.with_suffix(".png")
