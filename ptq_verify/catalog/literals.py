"""Exact numbers written as text, within the grammar's limits, without sympy.

Parameter sample values (declarations, the command line, TOML files) go through
:func:`exact_number` whether or not any expression is parsed; the grammar
(:mod:`.grammar`) holds its literals to the same limits. Kept apart from the grammar so that
a process which reads stored verdicts and never parses an expression does not import sympy.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_NUMBER = 10**1000
"""Largest numerator and denominator of any number the expression holds (literals, and
constants computed from them such as ``2**3000``)."""

MAX_LITERAL_EXPONENT = 1000
NUMBER_TEXT = "1e1000"

# ASCII digits only, as the expression grammar reads them (\d alone takes a full-width 1)
_DECIMAL = re.compile(r"[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE]([+-]?\d+))?(?:/(\d+))?\Z",
                      re.ASCII)


def exact_number(text: str) -> Fraction:
    """The exact value of a number written as text (``"0.1"``, ``"-3.4e38"``, ``"1/3"``),
    within the grammar's limits: what parameter sample values on the command line and in
    TOML files go through, so ``1e999999`` is refused instead of built digit by digit.

    Raises:
        ValueError: not a decimal number or fraction, or beyond MAX_NUMBER.
    """
    text = text.strip()
    match = _DECIMAL.match(text)
    if not match:
        raise ValueError(f"{text[:40]!r} is not a number")
    if len(text) > MAX_LITERAL_EXPONENT:
        raise ValueError(f"{text[:20]!r}... is {len(text)} characters long (at most "
                         f"{MAX_LITERAL_EXPONENT})")
    if match.group(2) and abs(int(match.group(2))) > MAX_LITERAL_EXPONENT:
        raise ValueError(f"the exponent of {text!r} is too large (at most {MAX_LITERAL_EXPONENT})")
    try:
        value = Fraction(text.replace("_", ""))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not a number") from None
    if max(abs(value.numerator), value.denominator) > MAX_NUMBER:
        raise ValueError(f"{text[:40]!r} is above {NUMBER_TEXT}")
    return value


def float_or_inf(value: Fraction) -> float:
    """``float(value)``, or an infinity of its sign beyond float range: a sample value may
    reach MAX_NUMBER, and the numeric screens that evaluate at it in float skip points whose
    values are not finite (float() itself raises OverflowError there)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")
