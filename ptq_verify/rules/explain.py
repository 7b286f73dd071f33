"""Verdicts in words: what the rule says, why it holds, and what a PTQ pipeline does with it."""

from __future__ import annotations

import re
from decimal import Context, Decimal, localcontext
from fractions import Fraction

import sympy

from ..catalog.grammar import format_expression
from .certificate import Verdict
from .lattice import Rule, RuleKind, scale_power
from .shift_verdict import shift_name


def rule_statement(rule: Rule, name: str = "f") -> str:
    """The identity a rule asserts, e.g. ``Gemm(s*x; s*b) = s*Gemm(x; b) for every s > 0``."""
    kind = rule.kind
    if kind is RuleKind.NEEDS_COMPENSATION:
        return (
            f"no scaling rule exists: {name}(s*x) = s^d*{name}(x) fails for every degree d, "
            "with any parameter rescaling"
        )
    if kind is RuleKind.UNDECIDED:
        return "neither proved nor refuted: treated as needing compensation"
    params = "".join(
        f"; {p} -> {scale_power('s', k)}*{p}" for p, k in sorted(rule.param_exponents.items())
    )
    if rule.partition is not None:
        return _partition_statement(rule, name)
    if rule.input_degrees is not None and len(rule.input_degrees) > 1:
        scales = ", ".join(f"s_{i + 1}*x_{i + 1}" for i in range(len(rule.input_degrees)))
        factor = "*".join(f"s_{i + 1}^{d}" if Fraction(d).denominator == 1
                          else scale_power(f"s_{i + 1}", d)
                          for i, d in enumerate(rule.input_degrees))
        return f"{name}({scales}{params}) = {factor}*{name}(x) for all s_i > 0"
    factor = "" if rule.degree == 0 else f"{scale_power('s', rule.degree)}*"
    shared = " (all inputs share one scale s)" if kind is RuleKind.ALIGNED else ""
    return f"{name}(s*x{params}) = {factor}{name}(x) for every s > 0{shared}"


def _partition_statement(rule: Rule, name: str) -> str:
    """The identity of a rule with scale groups, e.g. f(s_1*x_1, s_1*x_2, s_2*x_3) = ..."""
    partition = rule.partition
    scaled = ", ".join(f"s_{g + 1}*x_{i + 1}" for i, g in enumerate(partition.groups))

    def monomial(exponents) -> str:
        return "*".join(
            scale_power(f"s_{g + 1}", k) for g, k in enumerate(exponents) if k
        )

    params = "".join(
        f"; {p} -> {monomial(ks)}*{p}" for p, ks in sorted(partition.param_exponents.items())
    )
    factor = monomial(partition.degrees)
    return (
        f"{name}({scaled}{params}) = {factor + '*' if factor else ''}{name}(x) for all s_g > 0; "
        "the engine uses its shared-scale case (every s_g = s)"
    )


def engine_action(rule: Rule) -> str:
    """What the numeric PTQ engine does at a node with this rule."""
    rescale = ", ".join(sorted(rule.param_exponents))
    return {
        RuleKind.PASS_THROUGH: "pass the scale through unchanged",
        RuleKind.PARAM_RESCALE: f"pass the scale through, rescaling {rescale}",
        RuleKind.HOMOGENEOUS: "output scale = product of input scales to their degrees"
        + (f", rescaling {rescale}" if rescale else ""),
        RuleKind.ALIGNED: "bring the inputs to one common scale, then pass it through"
        + (f", rescaling {rescale}" if rescale else ""),
        RuleKind.SCALE_INVARIANT: "output does not depend on the input scale: reset it to 1"
        + (f", absorbing the scale into {rescale}" if rescale else ""),
        RuleKind.NEEDS_COMPENSATION: "compensate: rescale the input back to its float range, "
        "run in float, re-normalise the output",
        RuleKind.UNDECIDED: "compensate (undecided operators are treated as non-homogeneous)",
    }[rule.kind]


def explain(verdict: Verdict) -> list[str]:
    """A few lines spelling out a verdict and its certificate for a terminal."""
    head = verdict.operator + (f" (ONNX {verdict.onnx_type})" if verdict.onnx_type else "")
    lines = [
        head,
        f"  f = {verdict.expression}",
        f"  rule: {verdict.rule.describe()}",
        f"    {rule_statement(verdict.rule)}",
        f"  domain: {domain_text(verdict.domain)}",
        f"  PTQ engine: {engine_action(verdict.rule)}",
    ]
    if verdict.output_nonnegative:
        lines.append("  output proved non-negative: an unsigned range is enough")
    certificate = verdict.certificate.to_json() if verdict.certificate else {"kind": "none"}
    if certificate["kind"] == "proof":
        lines += _proof_lines(certificate)
    elif certificate["kind"] == "counterexample":
        lines += _counterexample_lines(certificate)
    else:
        lines.append(f"  no certificate: {verdict.reason}")
    for rule, _ in verdict.alternatives:
        lines.append(f"  also holds (proved): {rule.describe()}")
    return lines


def domain_text(conditions) -> str:
    """The domain's conditions as one formula: joined by "and", each that holds an "or"
    parenthesised when there are several ("x <= 1 or x - 2 > 0 and x <= 1 or log(x - 2) != 0"
    had read as one formula, and by the usual precedence as another one)."""
    if not conditions:
        return "all real inputs"
    if len(conditions) == 1:
        return conditions[0]
    return " and ".join(f"({c})" if " or " in c else c for c in conditions)


def _proof_lines(proof: dict) -> list[str]:
    method = {
        "direct": "the identity simplifies to 0 for all inputs",
        "sign_split": "split on the sign of each input element; each case simplifies to 0",
    }[proof["method"]]
    lines = [f"  proof: {method}", f"    {proof['lhs']}  ==  {proof['rhs']}"]
    cases = [case for case in proof["cases"] if case["signs"]]
    if len(cases) > 9:
        excluded = sum(case["residual"].startswith("excluded") for case in cases)
        return [
            *lines,
            f"    {len(cases)} sign cases: {len(cases) - excluded} with residual 0, "
            f"{excluded} outside the domain (--json lists them)",
        ]
    for case in cases:
        label = ", ".join(
            f"{e} {'> 0' if sign == 'positive' else '< 0' if sign == 'negative' else '= 0'}"
            for e, sign in case["signs"].items()
        )
        lines.append(f"    case {label}: residual {case['residual']}")
    return lines


LONG = 40
"""Characters of a certificate's value that a terminal line prints as they are."""
_NUMBER = re.compile(r"-?\d+(?:/\d+)?")


def shown(text: str) -> str:
    """A certificate's value as the terminal lines print it: whole when short; else its
    shortest exact literal (``-1e1000`` for the 1001-digit integer the certificate holds);
    else, for a number, ~ and 7 significant digits with its length (``--json`` holds it
    whole). A refutation at x = -10**1000 had printed a line of a thousand digits."""
    if len(text) <= LONG or not _NUMBER.fullmatch(text):
        return text
    try:  # (a numerator past Python's 4300-digit int limit has no shorter exact literal)
        exact = format_expression(sympy.Rational(Fraction(text)))
    except ValueError:
        exact = text
    if len(exact) <= LONG:
        return exact
    numerator, _, denominator = text.partition("/")
    with localcontext(Context(prec=7)):
        value = Decimal(numerator) / Decimal(denominator or 1)
    return f"~{value:.6e} (exact: {len(text)} characters, in --json)"


def _point(point: dict) -> str:
    return ", ".join(f"{n} = {shown(v)}" for n, v in point.items())


def _counterexample_lines(cx: dict) -> list[str]:
    lines = [
        f"  counterexample: {_point(cx['point'])}, s = {shown(cx['scale'])}",
        f"    f(s*x) = {shown(cx['lhs'])}",
        f"    s*f(x) = {shown(cx['rhs'])}",
        f"    difference = {cx['difference']} (certified non-zero)",
    ]
    evidence = cx.get("no_degree")
    if evidence:
        lines.append(f"  no degree works: {evidence['reason']} (second point "
                     f"{_point(evidence['point'])})")
    rescale = cx.get("no_rescale")
    if rescale:
        lines.append(
            f"  no parameter rescaling works: Euler's identity has no solution at "
            f"{len(rescale['points'])} points (residual {rescale['least_squares_residual']} "
            f"against {rescale['relative_to']})"
        )
    return lines


def shift_summary(shift) -> str:
    """The shift rule (proofs/shift.md) of an operator in one sentence: whether bias
    absorption may move a constant through it."""
    if shift.holds:
        # the proof's own name for the shift: c_ (c__, ...) when a parameter is named c
        c = shift.certificate.shift if shift.certificate is not None else "c"
        moved = ", ".join(f"{p} -> {p} - {_times(a)}{c}" for p, a in
                          sorted(shift.param_shifts.items()))
        return (f"proved: f(x - {c}{'; ' + moved if moved else ''}) = f(x) - {c} (bias "
                "absorption may move a constant through it)")
    if shift.status == "refuted" and shift.certificate is not None:
        cx = shift.certificate.to_json()
        # the point names every element of an operator without parameters (shift.py refutes
        # no other): the shift takes the name shift_symbol gives it, c_ beside an input c
        # (which had printed "c = 3/2, c = 1")
        c = shift_name(cx["point"])
        return (f"refuted at {_point(cx['point'])}, {c} = {shown(cx['shift'])}: f(x - {c}) = "
                f"{shown(cx['lhs'])}, f(x) - {c} = {shown(cx['rhs'])}")
    return f"undecided ({shift.reason})"


def _times(a) -> str:
    return "" if a == 1 else f"{a}*"
