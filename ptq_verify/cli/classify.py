"""``ptq-verify classify``: the scaling rule of catalog operators, expressions or TOML files."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from fractions import Fraction

from ..errors import UserError
from ..rules.lattice import RuleKind, scale_power
from ..wording import first_few
from . import one_line
from .arguments import Joined, Once, ascii_float, path_text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="decide operators' scaling rules, with certificates",
        description=(
            "Without arguments: the whole built-in catalog, one line per operator. With an "
            "expression, --op or --file: those operators with their certificates."
        ),
    )
    parser.add_argument("expression", nargs="?", help='e.g. "x/(1+exp(-x))" (safe grammar)')
    parser.add_argument("--op", metavar="NAME",
                        help="one catalog operator, e.g. Relu; with --file, one of the file's")
    parser.add_argument("--file", metavar="OPS.toml", type=path_text,
                        help="operators declared in a TOML file")
    parser.add_argument(
        "--inputs",
        default="x",
        action=Once,
        hint='every tensor in one list, commas between them ("a, b")',
        help='input tensors: commas separate tensors, spaces the elements of one tensor '
        '("a, b": two tensors; "x0 x1 x2 x3": one tensor of four elements). Default: x',
    )
    parser.add_argument(
        "--params",
        default="",
        action=Joined,
        help="parameters with optional sample values: b,lo=-1,hi=6, given once or several "
        "times (other free names in the expression are parameters with sample value 1)",
    )
    parser.add_argument("--name", default=None,
                        help="name shown for an expression (default: expr)")
    parser.add_argument(
        "--timeout",
        type=ascii_float,
        default=None,
        metavar="SECONDS",
        help="time budget per operator (and per shift rule), at most 1e6; past it the "
        "verdict is undecided (default: 30)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="prove everything again instead of reusing verdicts cached by earlier runs "
        "(cache: $PTQ_VERIFY_CACHE_DIR or ~/.cache/ptq-verify)",
    )
    parser.add_argument(
        "--expect",
        choices=[k.value for k in RuleKind],
        help="exit 1 when a verdict proves no rule of this kind, as its rule or a proved "
        "alternative (for CI gates; pass_through counts as a param_rescale with nothing to "
        "rescale)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    operators, detailed = _operators(args)
    from ..rules import DEFAULT_TIMEOUT, MAX_TIMEOUT, classify_all
    from ..rules.explain import explain, shift_summary
    from ..rules.store import VerdictStore
    from . import imports_done

    imports_done()
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if not 0 < timeout <= MAX_TIMEOUT:  # the alarm that enforces it takes no more
        raise UserError(f"--timeout {args.timeout:g}: must be a number of seconds above 0 and "
                        f"at most {MAX_TIMEOUT:g}")
    try:
        verdicts = classify_all(
            operators, store=None if args.no_cache else VerdictStore(), timeout=timeout
        )
    except (ArithmeticError, RecursionError, MemoryError, ValueError) as err:
        # what sympy's exact arithmetic cannot evaluate inside the grammar's bounds (decimal
        # overflow, Python's 4300-digit limit, a comparison it cannot decide): the input's
        # size or form, reported on one line
        names = first_few([op.name for op in operators])
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise UserError(f"{names}: beyond what the checker's exact arithmetic can evaluate "
                        f"({type(err).__name__}{': ' + detail if detail else ''}); simplify "
                        "the expression") from None
    if args.json or detailed:  # one operator or a few: its shift rule too (proofs/shift.md)
        from ..rules.shift import shift_rule

        shifts = [shift_rule(op, timeout=timeout) for op in operators]  # its budget too
    hint = (_numbers_as_parameters(operators[0], verdicts[0], args, timeout)
            if args.expression is not None else None)
    if args.json:
        json.dump([{**v.to_json(), "shift": shift.to_json(),
                    **({"numbers_as_parameters": hint[1]} if hint else {})}
                   for v, shift in zip(verdicts, shifts)], sys.stdout, indent=2)
        print()
    elif detailed:
        print("\n\n".join("\n".join([*explain(v), f"  shift rule: {shift_summary(shift)}",
                                      *([hint[0]] if hint else [])])
                           for v, shift in zip(verdicts, shifts)))
    else:
        _print_table(verdicts)
    if not args.expect:
        return 0
    differing = [v for v in verdicts if args.expect not in _proved_kinds(v)]
    for v in differing:
        print(one_line(f"ptq-verify classify: --expect: {v.operator} ({v.expression}): "
                       f"expected {args.expect}, found {v.rule.describe()}"), file=sys.stderr)
    return 1 if differing else 0


def _proved_kinds(verdict) -> set[str]:
    """The kinds of rule a verdict proves: its rule's and its proved alternatives' (--expect
    passes on either; a trial's a*tanh(b*x), whose rule is scale_invariant with b->s^-1*b,
    failed --expect param_rescale though a->s*a, b->s^-1*b is proved beside it, and that is
    the rule a pipeline rescaling both parameters applies). A pass_through rule is also a
    param_rescale one, with no parameter to rescale: a team's file gated on param_rescale
    had failed CI on an operator g*x proved to pass the scale through as it is (a
    declared-operator trial)."""
    kinds = {verdict.rule.kind, *(rule.kind for rule, _ in verdict.alternatives)}
    if RuleKind.PASS_THROUGH in kinds:
        kinds.add(RuleKind.PARAM_RESCALE)
    return {kind.value for kind in kinds}


def _numbers_as_parameters(op, verdict, args: argparse.Namespace, timeout: float
                           ) -> tuple[str, dict] | None:
    """Where an expression ``needs_compensation``, the rule it has with its numbers as
    parameters (:mod:`..rules.literals`), as a line and as JSON; None where there is no such
    number, or no rule then either."""
    from ..catalog.grammar import format_expression
    from ..catalog.operator import DeclarationError
    from ..rules import classify_all
    from ..rules.literals import decimal, with_numbers_as_parameters
    from ..rules.store import VerdictStore

    if verdict.rule.kind is not RuleKind.NEEDS_COMPENSATION:
        return None
    try:
        found = with_numbers_as_parameters(op)
        if found is None:
            return None
        variant, values = found
        rule = classify_all([variant], store=None if args.no_cache else VerdictStore(),
                            timeout=timeout)[0].rule
    except (DeclarationError, ArithmeticError, RecursionError, MemoryError, ValueError,
            TypeError):  # a hint only: a formula sympy cannot rebuild or decide gives none
        return None
    if rule.kind in (RuleKind.NEEDS_COMPENSATION, RuleKind.UNDECIDED):
        return None
    text = format_expression(variant.expr)
    given = ", ".join(f"{name} = {decimal(value)}" for name, value in values.items())
    params = ",".join(f"{name}={decimal(value)}" for name, value in {**op.params, **values}.items())
    inputs = "" if args.inputs == "x" else f" --inputs {shlex.quote(args.inputs)}"
    line = (f"  with its numbers as parameters: f = {text} ({given}): {rule.describe()}; a "
            "pipeline that rescales them passes the scale through (the certificate: "
            f"ptq-verify classify {shlex.quote(text)}{inputs} --params {shlex.quote(params)})")
    return line, {"expression": text, "values": {k: decimal(v) for k, v in values.items()},
                  "rule": rule.describe()}


def _operators(args: argparse.Namespace):
    """The operators to classify and whether to spell out their certificates."""
    if args.expression is not None:
        if args.op is not None or args.file is not None:
            raise UserError("give an expression, or --op and/or --file, not both")
        return [_expression_operator(args)], True
    _refuse_expression_options(args)
    if args.file is not None:
        from ..catalog.toml_file import load_operators

        return _selected(load_operators(args.file), args.op, args.file), True
    if args.op is not None:
        from ..catalog import get_operator

        return [get_operator(args.op)], True
    from ..catalog import CATALOG

    return sorted(CATALOG.values(), key=lambda op: op.name.lower()), False


def _refuse_expression_options(args: argparse.Namespace) -> None:
    """Refuse --inputs, --params and --name without an expression: they describe one, and
    with --op or --file (whose operators declare their own inputs and parameters) they had
    been dropped in silence, so ``--op Clip --params hi=2`` printed Clip's certificate at
    its declared hi as if the value had been taken."""
    given = [option for option, dest in (("--inputs", "inputs"), ("--params", "params"))
             if getattr(args, f"_{dest}_given", False)]
    given += ["--name"] if args.name is not None else []
    if given:
        raise UserError(f"{', '.join(given)}: {'applies' if len(given) == 1 else 'apply'} to "
                        "an expression only (classify \"EXPR\" ...); an operator of the "
                        "catalog or of --file declares its own inputs and parameters")


def _selected(operators: list, name: str | None, path: str) -> list:
    """The file's operators, or the one named ``name``: a team's file holds many, and one
    certificate is read at a time (``--op`` with ``--file`` was refused as 'not allowed')."""
    if name is None:
        return operators
    chosen = [op for op in operators if op.name == name]
    if not chosen:
        raise UserError(f"--op {name}: {path} declares no operator of that name "
                        f"({first_few([op.name for op in operators], 8)})")
    return chosen


def _expression_operator(args: argparse.Namespace):
    from ..catalog.grammar import ExpressionError, parse_expression
    from ..catalog.operator import DeclarationError, Operator, parse_inputs
    from ..report.cells import plain_cell

    text = args.expression.strip()  # shield_expression's leading space
    try:
        parsed = parse_expression(text, source="expression")
    except ExpressionError as err:
        raise UserError(str(err)) from None
    try:
        tensors = parse_inputs(args.inputs)
    except DeclarationError as err:
        raise UserError(f"--inputs: {err}") from None
    params = _parse_params(args.params)
    elements = {e for t in tensors for e in t.elements}
    for name in parsed.names:
        if name not in elements and name not in params:
            params[name] = Fraction(1)
    if args.inputs == "x" and "x" not in parsed.names and parsed.names:
        # an input may be absent (a constant function is scale-invariant), but the default
        # one missing beside other names is nearly always a forgotten --inputs
        raise UserError(
            "--inputs: x does not appear in the expression (the default input is x; name the "
            "inputs with --inputs)"
        )
    # --name is a label for the output, any text: like a node name read from a model
    # (report.cells), it is shown with each character that does not print (a line break, a
    # tab, an ANSI escape) written as repr writes it, so it stays one line and prints no
    # control sequence; a trial's --name "a\nrule: pass_through" had faked an output line.
    # Escaped once here, it is so in every view (detail, table, JSON, --expect, errors).
    name = plain_cell("expr" if args.name is None else args.name)
    try:  # first: a parameter named pi or exp is in the text, read as the constant
        op = Operator(name, args.inputs, text, params=params)
    except DeclarationError as err:
        raise UserError(str(err)) from None
    unused = set(params) - set(parsed.names)
    if unused:
        raise UserError(f"--params: {', '.join(sorted(unused))} not in the expression")
    return op


def shield_expression(argv: list[str]) -> list[str]:
    """Let an expression start with a minus sign (``classify "-x"``).

    argparse takes every word that starts with '-' for an option; classify's own options all
    start with '--' (but -h), so a word with a single leading '-' is an expression. A leading
    space makes argparse read it as a positional argument; ``run`` strips it again.
    """
    return [
        f" {word}" if word.startswith("-") and not word.startswith("--") and word != "-h" else word
        for word in argv
    ]


def _parse_params(text: str) -> dict[str, Fraction]:
    from ..catalog.literals import exact_number

    params: dict[str, Fraction] = {}
    for position, item in enumerate(filter(None, (p.strip() for p in text.split(","))), 1):
        name, equals, value = item.partition("=")
        name = name.strip()
        if not name.isidentifier():
            raise UserError(f"--params: item {position} ({item!r}) is not name or name=value"
                            f"{_commas_hint(item)}")
        if name in params:  # (the later value would silently win)
            raise UserError(f"--params: {name} is given twice (items {list(params).index(name) + 1}"
                            f" and {position})")
        if equals and not value.strip():  # (a TOML declaration's "" is refused alike)
            raise UserError(f"--params: {name}= has no value: write {name}=VALUE, or {name} "
                            "alone for the sample value 1")
        try:
            params[name] = exact_number(value) if value.strip() else Fraction(1)
        except ValueError as err:
            raise UserError(f"--params: {name}: {err}{_commas_hint(item)}") from None
    return params


def _commas_hint(item: str) -> str:
    """Name the commas where an item holds several parameters apart by spaces ("a b", "a=2 b"),
    as ``--inputs`` separates the elements of one tensor."""
    words = item.split()
    if len(words) < 2 or not all(word.partition("=")[0].isidentifier() for word in words):
        return ""
    return f" (commas separate parameters: --params '{', '.join(words)}')"


def _print_table(verdicts) -> None:
    rows = [("operator", "ONNX type", "rule", "degree", "rescale")]
    for v in verdicts:
        rule = v.rule
        rescale = ", ".join(
            f"{p}->{scale_power('s', k)}" for p, k in sorted(rule.param_exponents.items())
        )
        degree = rule.degree_text() if rule.kind.has_rule else "-"
        rows.append((v.operator, v.onnx_type or "-", rule.kind.value, degree, rescale or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.rule.kind.value] = counts.get(v.rule.kind.value, 0) + 1
    print(f"\n{len(verdicts)} operators: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
