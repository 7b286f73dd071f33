"""The scaling rules an operator can have, and what each one means for a scale flowing in.

A rule states an identity for every s > 0 (and every parameter value):

    f(s_1 x_1, ..., s_n x_n; s^k p) = s_1^d_1 * ... * s_n^d_n * f(x; p)

with either one degree per input tensor (the inputs scale independently: Mul, Div) or one
common scale s for all inputs (``aligned``: Add, Concat). ``param_exponents`` names the
parameters that must be rescaled, p -> s^k p, under the common scale.

Between the two lie *partitions* (:class:`Partition`): tensors in scale groups, one scale per
group, parameters rescaled by products of group scales. ``(a + b)*c`` has a and b in one group
and c in another; ``a0*b0 + a1*b1 + c`` has one group per tensor with c -> s_a*s_b*c. Such a
rule is reported with its shared-scale consequence (set every group scale to s) as kind,
degree and exponents, which is what the engine acts on, and the partition as the full truth.
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


def scale_power(base: str, k: Fraction | int) -> str:
    """``base`` to the power ``k`` as plain text: ``s``, ``s^2``, ``s^-1``, and ``s^(1/2)``
    for a fraction, which ``s^1/2*f(x)`` read as (s^1)/2 (a trial read ``a->s^-1/3*a`` so)."""
    q = Fraction(k)
    if q == 1:
        return base
    return f"{base}^{_fraction_text(q)}" if q.denominator == 1 else f"{base}^({_fraction_text(q)})"


def _json_number(q: Fraction) -> int | float:
    return q.numerator if q.denominator == 1 else float(q)


@dataclass(frozen=True)
class Partition:
    """Scale groups: f(.., s_g x_T for T in group g, ..; prod_g s_g^k_pg p) = prod_g s_g^d_g f.

    ``groups`` gives each input tensor's group (numbered by first appearance), ``degrees`` one
    degree per group, ``param_exponents`` one exponent per group for each rescaled parameter.
    """

    groups: tuple[int, ...]
    degrees: tuple[Fraction, ...]
    param_exponents: Mapping[str, tuple[Fraction, ...]] = field(default_factory=dict)

    def shared(self) -> tuple[Fraction, dict[str, Fraction]]:
        """The degree and exponents when every group takes the same scale s."""
        exponents = {p: sum(ks, Fraction(0)) for p, ks in self.param_exponents.items()}
        return sum(self.degrees, Fraction(0)), {p: k for p, k in exponents.items() if k != 0}

    def describe(self, tensors: Sequence[str] | None = None) -> str:
        """``groups {a, b} {c}: degrees (1, 1)`` and the rescaled parameters."""
        names = tensors or [f"x_{i + 1}" for i in range(len(self.groups))]
        members = [
            "{" + ", ".join(n for n, g in zip(names, self.groups) if g == group) + "}"
            for group in range(len(self.degrees))
        ]
        text = "groups " + " ".join(members) + ": degrees ("
        text += ", ".join(_fraction_text(d) for d in self.degrees) + ")"
        for p, ks in sorted(self.param_exponents.items()):
            factor = "*".join(
                scale_power(f"s_{g + 1}", k)
                for g, k in enumerate(ks)
                if k != 0
            )
            text += f", {p}->{factor}*{p}"
        return text

    def to_json(self) -> dict:
        return {
            "groups": list(self.groups),
            "degrees": [_fraction_text(d) for d in self.degrees],
            "param_exponents": {
                p: [_fraction_text(k) for k in ks] for p, ks in sorted(self.param_exponents.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict) -> Partition:
        degrees = tuple(Fraction(d) for d in data["degrees"])
        groups = tuple(int(g) for g in data["groups"])
        exponents = {
            p: tuple(Fraction(k) for k in ks) for p, ks in data["param_exponents"].items()
        }
        if sorted(set(groups)) != list(range(len(degrees))) or any(
            len(ks) != len(degrees) for ks in exponents.values()
        ):
            raise ValueError("a partition needs one degree and one exponent per group")
        return cls(groups, degrees, exponents)


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
    partition: Partition | None = None

    def __post_init__(self) -> None:
        # One scale per input tensor leaves no common scale for a parameter to follow, and a
        # partition is its own account of the scales: scale_groups would drop either, and a
        # proof of the identity without them would back a rule that claims them.
        if self.input_degrees is not None and (
            any(k != 0 for k in self.param_exponents.values()) or self.partition is not None
        ):
            raise ValueError("a rule with one degree per input tensor rescales no parameter "
                             "and has no partition")

    @classmethod
    def classify(
        cls,
        degree: Fraction,
        input_degrees: Sequence[Fraction] | None,
        param_exponents: Mapping[str, Fraction],
        n_inputs: int,
        partition: Partition | None = None,
    ) -> Rule:
        """Name the rule that a proved identity with these exponents is.

        With a ``partition`` the other arguments are ignored: the rule is the partition's
        shared-scale consequence, carrying the partition along.
        """
        if partition is not None:
            degree, param_exponents = partition.shared()
            rule = cls.classify(degree, None, param_exponents, n_inputs)
            return cls(rule.kind, rule.degree, None, rule.param_exponents, partition)
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
            Partition.from_json(exact["partition"]) if exact.get("partition") else None,
        )

    def scale_groups(self, n_inputs: int) -> Partition:
        """The rule as a partition: one group when the inputs share a scale, else one each."""
        if self.partition is not None:
            return self.partition
        if self.input_degrees is not None:
            return Partition(tuple(range(n_inputs)), tuple(self.input_degrees), {})
        exponents = {p: (Fraction(k),) for p, k in self.param_exponents.items()}
        return Partition((0,) * n_inputs, (Fraction(self.degree),), exponents)

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
                    f"{p}->{scale_power('s', k)}*{p}"
                    for p, k in sorted(self.param_exponents.items())
                )
            )
        if self.partition is not None:
            parts.append(f"[{self.partition.describe()}]")
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
            if self.partition is not None:
                out["partition"] = self.partition.to_json()
                out["exact"]["partition"] = self.partition.to_json()
        return out
