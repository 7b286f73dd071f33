"""Re-check a certificate on its own, without the search that found it.

A proof is re-checked by rebuilding the identity its rule claims from the operator's
expression, comparing it with the certificate's, checking that the sign cases cover every
sign of every split element, and simplifying each case's residual to zero again (or checking
that the case is outside the domain). A counterexample is re-checked by evaluating both sides
again at its exact point and certifying that they differ. A proof also needs a domain that
its scaling keeps (a cone: proofs/two-slope.md). Expressions are read back with the
whitelist parser: a certificate file is data, never code.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from fractions import Fraction

import mpmath
import sympy

from ..catalog.grammar import ExpressionError, format_expression, parse_expression, substitute
from ..catalog.operator import Operator
from .certificate import Verdict
from .certified import certified_nonzero, certified_zero
from .checker import (
    Candidate,
    case_substitution,
    domain_left_by_scaling,
    euler_points,
    exact_sides,
    excluded_by_domain,
    scale_symbol,
    scaled_identity,
    sign_symbol,
    stable_euler_residual,
    verdict_facts,
)
from .lattice import Partition
from .rewrite import zero_residual

_SIGNS = ("positive", "negative", "zero")


def recheck_certificate(op: Operator, verdict: Verdict | Mapping) -> list[str]:
    """Problems found in ``verdict`` (a Verdict, or its JSON as ``Verdict.to_json()`` and a
    certificate file hold it) for ``op``; empty when it holds. A Verdict is taken as its JSON:
    what ``classify`` returns is what a library user re-checks first (it had raised an
    AttributeError on ``.get``)."""
    if isinstance(verdict, Verdict):
        verdict = verdict.to_json()
    certificate = verdict.get("certificate") or {}
    kind = certificate.get("kind")
    problems = _recheck_facts(op, verdict)
    try:
        if kind == "proof":
            problems += _recheck_proof(op, verdict, certificate)
            for alternative in verdict.get("alternatives", []):
                problems += [
                    f"alternative {alternative.get('rule')}: {p}"
                    for p in _recheck_proof(op, alternative, alternative.get("certificate", {}))
                ]
            return problems
        if verdict.get("alternatives"):
            # a refutation says no rule holds, and an undecided verdict proves none: a proved
            # alternative beside either was never re-checked (a Sigmoid certificate listing a
            # pass_through "proof" of garbage text re-checked; trial checker3)
            problems.append(f"a {verdict.get('rule')} verdict lists proved alternatives")
        if kind == "counterexample":
            return problems + _recheck_counterexample(op, verdict, certificate)
    except (ExpressionError, KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        return [*problems, f"malformed certificate: {err}"]
    if kind == "none" and verdict.get("rule") == "undecided":
        return problems
    return [*problems, f"certificate kind {kind!r} does not fit rule {verdict.get('rule')!r}"]


def _recheck_facts(op: Operator, verdict: Mapping) -> list[str]:
    """Problems with what the verdict states of the declaration beside its rule: its domain
    must be the declaration's (a verdict of log(x) stating no domain claims every real x), its
    ONNX type the declaration's, and a fact it states as true (the output is >= 0, or stays
    >= 0 on inputs >= 0) must be one sympy proves of the expression; false claims nothing. A
    certificate of LeakyRelu stating a non-negative output, or of Log stating no domain,
    had re-checked."""
    facts = verdict_facts(op)
    problems = []
    if list(verdict.get("domain") or []) != list(facts["domain"]):
        problems.append(f"the stated domain {list(verdict.get('domain') or [])} is not the "
                        f"declaration's {list(facts['domain'])}")
    if verdict.get("onnx_type") not in (None, facts["onnx_type"]):
        problems.append(f"the stated ONNX type {verdict.get('onnx_type')!r} is not the "
                        f"declaration's {facts['onnx_type']!r}")
    for fact in ("output_nonnegative", "preserves_nonnegative"):
        if verdict.get(fact) not in (False, None) and not facts[fact]:
            problems.append(f"{fact} is stated, but not shown for this expression")
    return problems


def _symbols(op: Operator) -> dict[str, sympy.Symbol]:
    names = dict(op.symbols)
    names["s"] = scale_symbol()
    for tensor in op.inputs:
        names[f"s_{tensor.name}"] = scale_symbol(tensor.name)
    for element in op.element_names:
        names[f"t_{element}"] = sign_symbol(element)
    return names


def _parse(text: str, op: Operator) -> sympy.Expr:
    return parse_expression(text, source="certificate", symbols=_symbols(op)).expr


def _same_text(text: str, expr: sympy.Expr, op: Operator) -> bool:
    """Whether stored text is ``expr``: the very text the checker prints for it, or the same
    expression once both are read through the grammar.

    Reading both through the parser compares them alike even for an expression built in sympy
    that the parser would have written more simply (``Abs(Abs(x))`` reads back as ``abs(x)``);
    the exact text also matches values the grammar's size bounds refuse as user input
    (``exp(-1.474e299)``). Only the comparison uses the text: the re-check's mathematics runs
    on the expression rebuilt from the declaration.
    """
    printed = format_expression(expr)
    if text == printed:
        return True
    try:
        return _parse(text, op) == _parse(printed, op)
    except ExpressionError:
        return False


def _candidate(op: Operator, verdict: dict) -> Candidate:
    exact = verdict["exact"]
    exponents = {p: Fraction(k) for p, k in exact["param_exponents"].items()}
    if exact.get("partition"):
        partition = Partition.from_json(exact["partition"])
        if len(partition.groups) != len(op.inputs):
            raise ValueError("a partition needs one group per input tensor")
        degree, shared = partition.shared()
        return Candidate(degree, None, shared, partition)
    if exact["input_degrees"] is not None:
        degrees = tuple(Fraction(d) for d in exact["input_degrees"])
        if len(degrees) != len(op.inputs):
            raise ValueError("one degree per input tensor is needed")
        return Candidate(sum(degrees, Fraction(0)), degrees, exponents)
    return Candidate(Fraction(exact["degree"]), None, exponents)


def _recheck_proof(op: Operator, verdict: dict, proof: dict) -> list[str]:
    if verdict.get("rule") in ("needs_compensation", "undecided"):
        return [f"a proof cannot back rule {verdict.get('rule')!r}"]
    candidate = _candidate(op, verdict)
    lhs, rhs = scaled_identity(op, candidate)
    problems = []
    claimed = candidate.rule(len(op.inputs)).to_json()
    # every field a reader rebuilds the rule from (Rule.from_json reads "exact"), not only the
    # ones shown: stray per-tensor degrees beside a partition would be the engine's rule
    if any(verdict.get(key) != claimed.get(key)
           for key in ("rule", "degree", "param_exponents", "exact", "partition")):
        problems.append(
            f"the stated rule {verdict.get('rule')} {verdict.get('degree')} "
            f"{verdict.get('param_exponents')} is not what the exact exponents give: "
            f"{claimed['rule']} {claimed['degree']} {claimed['param_exponents']}"
        )
    if not (_same_text(proof["lhs"], lhs, op) and _same_text(proof["rhs"], rhs, op)):
        problems.append("the identity is not the one the rule claims for this expression")
    left = domain_left_by_scaling(op, candidate)
    if left is not None:
        problems.append(f"scaling may leave the domain: {format_expression(left)} is not shown "
                        "to hold at the scaled point wherever it holds")
    cases = proof["cases"]
    split = sorted({e for case in cases for e in case["signs"]})
    unknown = set(split) - set(op.element_names)
    if unknown:
        return [*problems, f"cases name unknown elements {sorted(unknown)}"]
    covered = {tuple(case["signs"].get(e) for e in split) for case in cases}
    missing = [c for c in itertools.product(_SIGNS, repeat=len(split)) if c not in covered]
    if missing or any(len(case["signs"]) != len(split) for case in cases):
        problems.append(f"the cases do not cover every sign of {', '.join(split)}")
    for case in cases:
        substitution = case_substitution(op, case["signs"])
        label = ", ".join(f"{e} {sign}" for e, sign in case["signs"].items()) or "all x"
        if case["residual"].startswith("excluded"):
            if excluded_by_domain(op, substitution) is None:
                problems.append(f"case {label}: claimed outside the domain, but it is not")
            continue
        if case["residual"] != "0":
            problems.append(f"case {label}: residual {case['residual']} is not zero")
            continue
        if zero_residual(substitute(lhs - rhs, substitution)) != 0:
            problems.append(f"case {label}: the residual does not simplify to zero")
    return problems


def _sides(op: Operator, point: dict[str, str], s: Fraction, degree: int):
    if set(point) != {*op.element_names, *op.params}:
        raise ValueError("the point must give every input element and parameter")
    return exact_sides(op, {n: Fraction(v) for n, v in point.items()}, s, degree)


def _recheck_counterexample(op: Operator, verdict: dict, cx: dict) -> list[str]:
    if verdict.get("rule") != "needs_compensation":
        return [f"a counterexample cannot back rule {verdict.get('rule')!r}"]
    problems = []
    s = Fraction(cx["scale"])
    if s <= 0:
        return ["the scale of a counterexample must be positive"]
    lhs, rhs = _sides(op, cx["point"], s, 1)
    if not (_same_text(cx["lhs"], lhs, op) and _same_text(cx["rhs"], rhs, op)):
        problems.append("the stored sides are not f(s*x) and s*f(x) at the stored point")
    difference = certified_nonzero(lhs - rhs)
    if difference is None:
        problems.append("f(s*x) and s*f(x) are not certainly different at the stored point")
    elif not _close(difference, cx["difference"]):
        problems.append(f"the stored difference {cx['difference']} is not {difference}")
    problems += _recheck_no_degree(op, cx, s)
    if op.params:
        problems += _recheck_no_rescale(op, cx.get("no_rescale"))
    return problems


def _recheck_no_degree(op: Operator, cx: dict, s: Fraction) -> list[str]:
    evidence = cx.get("no_degree")
    if not evidence:
        return ["no evidence that every degree fails"]
    moved_1, base_1 = _sides(op, cx["point"], s, 0)
    moved_2, base_2 = _sides(op, evidence["point"], s, 0)
    if "cross_difference" not in evidence:
        if certified_zero(base_2) and certified_nonzero(moved_2) is not None:
            return []
        return ["no-degree evidence: f(x) = 0 and f(s*x) != 0 does not hold at its point"]
    if certified_nonzero(base_1) is None or certified_nonzero(base_2) is None:
        return ["no-degree evidence: f(x) must be non-zero at both points"]
    if certified_nonzero(moved_1 * base_2 - moved_2 * base_1) is None:
        return ["no-degree evidence: the ratios f(s*x)/f(x) are not certainly different"]
    return []


def _recheck_no_rescale(op: Operator, evidence: dict | None) -> list[str]:
    """The evidence must be Euler's identity failing at the points the checker draws for
    this declaration (:func:`euler_points`), never at points a certificate chooses: f need
    not be differentiable at every point, and where it is not (a kink no tried direction
    crosses) the readings of its derivatives are no derivatives."""
    if not evidence:
        return ["no evidence that rescaling the parameters cannot help"]
    points = [{n: Fraction(v) for n, v in p.items()} for p in evidence["points"]]
    with mpmath.workdps(30):
        residual, _, used = stable_euler_residual(op, euler_points(op))
    if points != used:
        return ["no-rescale evidence: its points are not the ones the checker draws for "
                "this declaration"]
    if residual is None:
        return ["no-rescale evidence: Euler's identity is not clearly unsolvable at the points"]
    return []


def _close(a: str, b: str) -> bool:
    x, y = mpmath.mpf(a), mpmath.mpf(b)  # not float: a difference may pass 1e308
    return abs(x - y) <= mpmath.mpf(10) ** -12 * max(abs(x), abs(y))
