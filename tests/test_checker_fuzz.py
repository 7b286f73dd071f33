"""The checker on random expressions: no verdict may contradict the numbers.

Every verdict on a random operator is property-tested with ``check_operator``: a proved rule
must hold at random inputs and scales, a counterexample must reproduce in the kernel.
Undecided is allowed, but only rarely (MAX_UNDECIDED); a wrong verdict or a crash is not. The
expressions come from a seeded generator, so a failure names its expression and reproduces.
"""

from __future__ import annotations

import random

import pytest
from depth import examples
from random_expressions import Grammar, expression

from ptq_verify import Operator
from ptq_verify.catalog.operator import DeclarationError
from ptq_verify.rules import RuleKind, classify
from ptq_verify.testing import check_operator

GRAMMAR = Grammar(
    leaves=("x", "x", "x", "y", "2", "0.5", "-1", "3/2"),
    unary=("abs({})", "sigmoid({})", "tanh({})", "sign({})", "-({})", "2*({})", "max({}, 0)"),
    binary=("({} + {})", "({} - {})", "({})*({})", "max({}, {})", "min({}, {})"),
    stop=0.25, cuts=(0.35, 0.9, 1.0))


def _cases(count: int, seed: int = 2026) -> list[tuple[str, str]]:
    """``count`` valid declarations: forms the grammar refuses (a where() nested in a
    condition) are drawn again, so that every case runs."""
    rng = random.Random(seed)
    cases: list[tuple[str, str]] = []
    while len(cases) < count:
        text = expression(rng, 3, GRAMMAR)
        if "x" not in text:
            continue
        inputs = ("x y" if rng.random() < 0.5 else "x, y") if "y" in text else "x"
        try:
            Operator("fuzz", inputs, text)
        except DeclarationError:
            continue
        cases.append((text, inputs))
    return cases


CASES = _cases(30)
# Undecided is an honest answer, but a checker that gave it everywhere would pass every case
# above: at most this many of the 30 (1 when this bound was set, 10 % allowed).
MAX_UNDECIDED = 3


@pytest.mark.parametrize("text, inputs", CASES)
def test_random_operator_verdicts_hold_numerically(text, inputs):
    check_operator(Operator("fuzz", inputs, text), max_examples=examples(15), rewrites=False)


def test_undecided_stays_rare_on_random_operators():
    undecided = [text for text, inputs in CASES
                 if classify(Operator("fuzz", inputs, text)).rule.kind is RuleKind.UNDECIDED]
    assert len(undecided) <= MAX_UNDECIDED, undecided
