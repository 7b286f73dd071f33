"""Seeded random expressions in the declaration grammar, for fuzzing the checker: the small
grammar of tests/test_checker_fuzz.py and most of the grammar in benchmarks/fuzz_checker.py
draw with this one generator."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Grammar:
    """What a draw may hold. ``unary`` and ``binary``: formats of one and two arguments
    (``{}``, or ``{0}`` for an argument used twice). Each application is a leaf with chance
    ``stop``; else a roll below ``cuts[0]`` applies a unary form, below ``cuts[1]`` a binary
    one, below ``cuts[2]`` ``where(u > t, v, w)`` with t from ``thresholds``, and above it
    ``clip(u, low, high)`` with bounds from ``bounds``."""

    leaves: tuple[str, ...]
    unary: tuple[str, ...]
    binary: tuple[str, ...]
    stop: float
    cuts: tuple[float, float, float]
    thresholds: tuple[str, ...] = ("0",)
    bounds: tuple[tuple[str, ...], tuple[str, ...]] = (("0",), ("1",))


def expression(rng: random.Random, depth: int, grammar: Grammar) -> str:
    """A random expression of at most ``depth`` nested applications. A choice among one
    option draws nothing (test_checker_fuzz's cases stay the ones its bound was set on)."""
    if depth == 0 or rng.random() < grammar.stop:
        return rng.choice(grammar.leaves)
    roll, inner = rng.random(), depth - 1
    if roll < grammar.cuts[0]:
        return rng.choice(grammar.unary).format(expression(rng, inner, grammar))
    if roll < grammar.cuts[1]:
        return rng.choice(grammar.binary).format(expression(rng, inner, grammar),
                                                 expression(rng, inner, grammar))
    if roll < grammar.cuts[2]:
        condition = expression(rng, inner, grammar)
        threshold = _one_of(rng, grammar.thresholds)
        return (f"where({condition} > {threshold}, {expression(rng, inner, grammar)}, "
                f"{expression(rng, inner, grammar)})")
    argument = expression(rng, inner, grammar)
    low, high = (_one_of(rng, side) for side in grammar.bounds)
    return f"clip({argument}, {low}, {high})"


def _one_of(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[0] if len(options) == 1 else rng.choice(options)
