"""A shift rule's verdict (:mod:`.shift`) as plain data: what the verdict store keeps, so a
process that finds it stored imports no sympy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from ..catalog.operator import Operator


def shift_name(taken: Iterable[str]) -> str:
    """The shift's name: ``c``, or ``c_``, ``c__``... when ``taken`` (the operator's names)
    holds it."""
    taken = set(taken)
    name = "c"
    while name in taken:
        name += "_"
    return name


@dataclass(frozen=True)
class ShiftProof:
    """``lhs == rhs`` for every real value of the symbol ``shift`` and of every element and
    parameter: the residual simplifies to 0 after the translation rewrite."""

    lhs: str
    rhs: str
    shift: str
    method: str = "translation rewrite, then simplify"

    def to_json(self) -> dict:
        return {"kind": "proof", "identity": f"{self.lhs} == {self.rhs}", "lhs": self.lhs,
                "rhs": self.rhs, "shift": self.shift, "method": self.method}


@dataclass(frozen=True)
class ShiftCounterexample:
    """An exact point (elements; the operator has no parameters) and shift where the two
    sides of (T) differ by ``difference`` (certified non-zero)."""

    point: Mapping[str, str]
    shift: str
    lhs: str
    rhs: str
    difference: str

    def to_json(self) -> dict:
        return {"kind": "counterexample", "point": dict(self.point), "shift": self.shift,
                "lhs": self.lhs, "rhs": self.rhs, "difference": self.difference}


@dataclass(frozen=True)
class Shift:
    """The shift rule of an operator: ``status`` proved, refuted or undecided; when proved,
    each parameter p moves to p - a_p c (``param_shifts``, zeros left out)."""

    status: str
    through_inputs: bool = True
    param_shifts: Mapping[str, Fraction] = field(default_factory=dict)
    certificate: ShiftProof | ShiftCounterexample | None = None
    reason: str = ""

    @property
    def holds(self) -> bool:
        return self.status == "proved"

    def moves(self, op: Operator, binding: str | None) -> set[Fraction]:
        """How far the constants an input slot carries (``binding``: its witness names, as
        ``op.onnx_inputs`` gives them) move per unit of shift under this rule: a_p for a
        parameter p, 1 for an input tensor when the rule shifts the inputs, 0 when it holds
        them; one value per name, so a slot whose names move apart gives several."""
        held = Fraction(1 if self.through_inputs else 0)
        return {self.param_shifts.get(item, Fraction(0)) if item in op.params else held
                for item in (binding or "").split()}

    def to_json(self) -> dict:
        out: dict = {"status": self.status}
        if self.holds:
            out["param_shifts"] = {p: str(a) for p, a in sorted(self.param_shifts.items())}
        if self.certificate is not None:
            out["certificate"] = self.certificate.to_json()
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, data: Mapping, through_inputs: bool) -> Shift:
        """The rule :meth:`to_json` wrote (the verdict store's entry)."""
        found = data.get("certificate")
        certificate: ShiftProof | ShiftCounterexample | None = None
        if found is not None and found["kind"] == "proof":
            certificate = ShiftProof(str(found["lhs"]), str(found["rhs"]), str(found["shift"]),
                                     str(found["method"]))
        elif found is not None:
            certificate = ShiftCounterexample(
                {str(k): str(v) for k, v in found["point"].items()}, str(found["shift"]),
                str(found["lhs"]), str(found["rhs"]), str(found["difference"]))
        return cls(str(data["status"]), through_inputs,
                   {str(p): Fraction(a) for p, a in data.get("param_shifts", {}).items()},
                   certificate, str(data.get("reason", "")))


def passes_per_channel_shift(op: Operator) -> Shift:
    """The shift rule a per-channel shift c_c may rely on: (T) proved, and the declaration
    says the operator does not mix channels (proofs/shift.md, Theorem T2)."""
    from .store import stored_shift_rule

    rule = stored_shift_rule(op)
    if rule.holds and op.mixes_channels:
        return Shift("undecided", reason="the declaration says it mixes channels")
    return rule
