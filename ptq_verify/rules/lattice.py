"""The scaling rules an operator can have, and what each one means for a scale flowing in.

A rule states an identity for every s > 0 (and every parameter value):

    f(s_1 x_1, ..., s_n x_n; s^k p) = s_1^d_1 * ... * s_n^d_n * f(x; p)

with either one degree per input tensor (the inputs scale independently: Mul, Div) or one
common scale s for all inputs (``aligned``: Add, Concat). ``param_exponents`` names the
parameters that must be rescaled, p -> s^k p, under the common scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction


class RuleKind(str, Enum):
    PASS_THROUGH = "pass_through"
    PARAM_RESCALE = "param_rescale"
    HOMOGENEOUS = "homogeneous"
    ALIGNED = "aligned"
    SCALE_INVARIANT = "scale_invariant"
    NEEDS_COMPENSATION = "needs_compensation"
    UNDECIDED = "undecided"

    def __str__(self) -> str:
        return self.value

    @property
    def has_rule(self) -> bool:
        """Whether a scale can flow through (possibly with rescaled parameters)."""
        return self not in (RuleKind.NEEDS_COMPENSATION, RuleKind.UNDECIDED)


def _fraction_text(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _json_number(q: Fraction) -> int | float:
    return q.numerator if q.denominator == 1 else float(q)


@dataclass(frozen=True)
class Rule:
    """A scaling rule: its kind, degrees and parameter exponents.

    ``degree`` is the degree under one common scale for all inputs; ``input_degrees`` is set
    when the inputs may scale independently (one degree each, summing to ``degree``).
    """

    kind: RuleKind
    degree: Fraction | None = None
    input_degrees: tuple[Fraction, ...] | None = None
    param_exponents: Mapping[str, Fraction] = field(default_factory=dict)

    @classmethod
    def classify(
        cls,
        degree: Fraction,
        input_degrees: Sequence[Fraction] | None,
        param_exponents: Mapping[str, Fraction],
        n_inputs: int,
    ) -> Rule:
        """Name the rule that a proved identity with these exponents is."""
        exponents = {p: Fraction(k) for p, k in param_exponents.items() if k != 0}
        degrees = tuple(Fraction(d) for d in input_degrees) if input_degrees else None
        if n_inputs > 1:
            kind = RuleKind.HOMOGENEOUS if degrees is not None else RuleKind.ALIGNED
        elif degree == 0:
            kind = RuleKind.SCALE_INVARIANT
        elif degree != 1:
            kind = RuleKind.HOMOGENEOUS
        elif exponents:
            kind = RuleKind.PARAM_RESCALE
        else:
            kind = RuleKind.PASS_THROUGH
        return cls(kind, Fraction(degree), degrees, exponents)

    @classmethod
    def from_json(cls, data: dict) -> Rule:
        """Rebuild a rule from ``to_json`` output, using its exact fractions."""
        kind = RuleKind(data["rule"])
        exact = data.get("exact")
        if exact is None:
            return cls(kind)
        degrees = exact["input_degrees"]
        return cls(
            kind,
            Fraction(exact["degree"]),
            None if degrees is None else tuple(Fraction(d) for d in degrees),
            {p: Fraction(k) for p, k in exact["param_exponents"].items()},
        )

    def output_scale(self, input_scales: Sequence[float]) -> float:
        """The output's scale given each input tensor's scale (aligned: all equal)."""
        if not self.kind.has_rule:
            raise ValueError(f"a {self.kind} operator has no output scale: compensate it")
        if self.input_degrees is not None:
            out = 1.0
            for s, d in zip(input_scales, self.input_degrees):
                out *= float(s) ** float(d)
            return out
        return float(input_scales[0]) ** float(self.degree)

    def describe(self) -> str:
        """Short text: ``homogeneous (1, -1)``, ``param_rescale b->s*b``."""
        parts = [self.kind.value]
        if self.kind is RuleKind.HOMOGENEOUS or (
            self.kind is RuleKind.ALIGNED and self.degree not in (None, 1)
        ):
            parts.append(self.degree_text())
        if self.param_exponents:
            parts.append(
                ", ".join(
                    f"{p}->s^{_fraction_text(k)}*{p}" if k != 1 else f"{p}->s*{p}"
                    for p, k in sorted(self.param_exponents.items())
                )
            )
        return " ".join(parts)

    def degree_text(self) -> str:
        if self.input_degrees is not None and len(self.input_degrees) > 1:
            return "(" + ", ".join(_fraction_text(d) for d in self.input_degrees) + ")"
        return "-" if self.degree is None else _fraction_text(self.degree)

    def to_json(self) -> dict:
        if self.input_degrees is not None and len(self.input_degrees) > 1:
            degree: object = [_json_number(d) for d in self.input_degrees]
        else:
            degree = None if self.degree is None else _json_number(self.degree)
        out = {
            "rule": self.kind.value,
            "degree": degree,
            "param_exponents": {
                p: _json_number(k) for p, k in sorted(self.param_exponents.items())
            },
        }
        if self.kind.has_rule:
            # JSON numbers cannot hold 1/3: the exact values, for re-checking
            out["exact"] = {
                "degree": _fraction_text(self.degree),
                "input_degrees": None
                if self.input_degrees is None
                else [_fraction_text(d) for d in self.input_degrees],
                "param_exponents": {
                    p: _fraction_text(k) for p, k in sorted(self.param_exponents.items())
                },
            }
        return out
