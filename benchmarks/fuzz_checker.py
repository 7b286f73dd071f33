"""The checker on random declarations, each verdict judged by an independent evaluator.

    python benchmarks/fuzz_checker.py [--runs 300] [--seed 0] [--timeout 30]

Each run draws an expression from most of the grammar (docs/grammar.md): exp, log, sqrt,
asin, tan (domains that scaling can leave), powers (a parameter's too), abs, sign, floor,
round, the activations, max, min, where, clip, division, huge and
tiny constants, parameters ``a`` and ``b`` with sample values, over one tensor ``x``, one
tensor of two elements ``x y`` or two tensors ``x, y``; classifies it with ``classify``'s
time budget at --timeout, in a fresh forked process (killed after twice that plus a minute);
and judges the verdict with tests/adversarial_truth.py, which evaluates the expression itself
in mpmath at adaptive precision and shares no code with ``ptq_verify.rules``:

- a rule: the law it states (and the law of its kind, degree and exponents alone, what the
  engine acts on) must hold at random points, breakpoints and scales; else a **false rule**;
- needs_compensation: confirmed when the evaluator finds its own evidence that no law holds
  (two points whose ratios f(s x)/f(x) differ, or Euler's identity with no solution); else
  every law with a degree in {-2, -1, -1/2, 0, 1/2, 1, 2, 3} and parameter exponents in
  {-1, 0, 1, 2} is tried at the certificate's own point and 120 random ones, and one that
  holds is a **false refutation** (none holding is counted apart: a refutation neither
  confirmed nor contradicted);
- undecided is an honest answer, counted.

A false rule, a false refutation, a crash or a hang is listed with its run number, its
declaration and the judge's words. Why: tests/test_checker_fuzz.py holds the checker to 30
expressions of seven unary forms; the adversarial corpus to the cases people wrote. This
reaches combinations nobody writes on purpose.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import queue
import random
import sys
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import adversarial_truth as truth  # noqa: E402
from random_expressions import Grammar, expression  # noqa: E402

from ptq_verify import Operator  # noqa: E402
from ptq_verify.catalog.operator import DeclarationError  # noqa: E402

GRAMMAR = Grammar(
    leaves=("x", "x", "x", "y", "y", "2", "0.5", "-1", "3/2", "0", "1e-3", "1e4", "a", "b"),
    unary=("abs({})", "sign({})", "exp({})", "tanh({})", "erf({})", "sigmoid({})",
           "softplus({})", "atan({})", "sin({})", "cosh({})", "asinh({})", "floor({})",
           "round({})", "ceil({})", "({})**2", "({})**3", "abs({})**0.5", "sqrt(abs({}))",
           "log(1 + abs({}))", "1/(1 + abs({}))", "({0})/(1 + abs({0}))", "-({})", "2*({})",
           "a*({})", "({})/a", "max({}, 0)", "min({}, 0)", "heaviside({})", "({0})*({0})",
           "log({})", "sqrt({})", "asin({})", "tan({})", "abs({})**a", "heaviside({}, 0.5)"),
    binary=("({} + {})", "({} - {})", "({})*({})", "({})/({})", "max({}, {})", "min({}, {})"),
    stop=0.22, cuts=(0.38, 0.82, 0.92), thresholds=("0", "1", "-2", "a", "x"),
    bounds=(("-1", "-b", "0", "a"), ("6", "1", "a", "b")))
SAMPLE_VALUES = {"a": ("2", "0.5", "3"), "b": ("1", "4", "0.25")}
DEGREES = tuple(Fraction(d) for d in ("-2", "-1", "-1/2", "0", "1/2", "1", "2", "3"))
EXPONENTS = tuple(Fraction(k) for k in (-1, 0, 1, 2))
LAW_POINTS = 120  # random points a candidate law must hold at before a refutation is false
FAILURES = ("false rule", "false refutation", "crash", "hang")


def declarations(seed: int, count: int) -> list[tuple[str, str, dict[str, str]]]:
    """``count`` (expression, inputs, params) that declare an operator of ``x``: a draw the
    grammar refuses (a where() inside a condition) is drawn again."""
    rng = random.Random(seed)
    found: list[tuple[str, str, dict[str, str]]] = []
    while len(found) < count:
        text = expression(rng, rng.choice([2, 3, 3, 4]), GRAMMAR)
        if "x" not in text:
            continue
        inputs = rng.choice(["x y", "x, y"]) if "y" in text else "x"
        params = {name: rng.choice(values) for name, values in SAMPLE_VALUES.items()
                  if _mentions(text, name)}
        try:
            Operator("fuzz", inputs, text, params)
        except DeclarationError:
            continue
        found.append((text, inputs, params))
    return found


def _mentions(text: str, name: str) -> bool:
    """Whether ``name`` occurs in ``text`` as a leaf (not inside a function's name)."""
    return any(token == name for token in "".join(
        c if c.isalnum() or c == "_" else " " for c in text).split())


def judged(text: str, inputs: str, params: dict[str, str], timeout: float
           ) -> tuple[str, str, float]:
    """(outcome, detail, classify's seconds) for one declaration."""
    from ptq_verify.rules import classify

    op = Operator("fuzz", inputs, text, params)
    start = time.perf_counter()
    verdict = classify(op, timeout=timeout)
    seconds = time.perf_counter() - start
    case = truth.Case("fuzz", "fuzz", inputs, text, dict(params), None, [], "")
    kind = verdict.rule.kind.value
    if kind == "undecided":
        return "undecided", verdict.reason, seconds
    if kind == "needs_compensation":
        if truth.no_law_evidence(case, op):
            return "refutation confirmed", "", seconds
        # the certificate's own point first: the judge's random points can miss the corner
        # it names (where(max(clip(b, -1, 1), 2 a) > 0, abs(x) + y, -a sin(x)) takes its
        # second branch only where a and b are both <= 0)
        point = getattr(verdict.certificate, "point", None)
        case.points = [dict(point)] if isinstance(point, dict) else []
        names = sorted(params)
        for degree in DEGREES:
            for exponents in itertools.product(EXPONENTS, repeat=len(names)):
                law = truth.make_law("homogeneous", len(op.inputs), degree=degree,
                                     exponents=dict(zip(names, exponents)))
                if truth.law_failure(case, op, law, count=LAW_POINTS) is None:
                    return "false refutation", f"{law.describe()} holds", seconds
        return "refutation, no law found", "", seconds
    for law in (truth.law_from_rule(verdict.rule, len(op.inputs)),
                truth.shared_law_from_rule(verdict.rule, len(op.inputs))):
        failure = truth.law_failure(case, op, law)
        if failure is not None:
            return "false rule", f"{verdict.rule.describe()}: {failure}", seconds
    return "rule confirmed", "", seconds


def _child(replies, *args) -> None:
    try:
        replies.put(judged(*args))
    except Exception as error:  # noqa: BLE001 - a crash is a result to report
        replies.put(("crash", f"{type(error).__name__}: {error}", 0.0))


def run_one(context, declaration: tuple, timeout: float) -> tuple[str, str, float]:
    replies = context.Queue()
    child = context.Process(target=_child, args=(replies, *declaration, timeout))
    child.start()
    try:
        return replies.get(timeout=2 * timeout + 60)
    except queue.Empty:
        return "hang", f"no answer in {2 * timeout + 60:g} s", 0.0
    finally:
        child.kill()
        child.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="declarations to draw (300)")
    parser.add_argument("--seed", type=int, default=0, help="the random draws' seed (0)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="classify's time budget per declaration, seconds (30)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    if args.timeout <= 0:
        parser.error("--timeout: more than 0")
    context = multiprocessing.get_context("fork")  # sympy imported once, in the parent
    import ptq_verify.rules  # noqa: F401

    outcomes, failures, seconds = Counter(), [], []
    for run, declaration in enumerate(declarations(args.seed, args.runs)):
        outcome, detail, took = run_one(context, declaration, args.timeout)
        outcomes[outcome] += 1
        seconds.append(took)
        if outcome in FAILURES:
            text, inputs, params = declaration
            failures.append(f"- run {run} ({outcome}): inputs {inputs!r}, params {params}, "
                            f"{text}: {detail[:300]}")
        print(f"\r{run + 1}/{args.runs} declarations, {sum(outcomes[f] for f in FAILURES)} "
              "failed", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    columns = ("rule confirmed", "refutation confirmed", "refutation, no law found",
               "undecided", *FAILURES)
    print(f"| declarations | {' | '.join(columns)} | classify median / max (s) |")
    print(f"|---|{'---|' * len(columns)}---|")
    seconds.sort()
    print(f"| {args.runs} | {' | '.join(str(outcomes[c]) for c in columns)} "
          f"| {seconds[len(seconds) // 2]:.2f} / {seconds[-1]:.1f} |")
    print("\n".join(failures))
    from machine import describe

    for line in describe():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
