"""Certificates: the evidence behind a verdict, re-checkable on their own.

Expressions are stored as text in the safe grammar (see ``catalog.grammar``), so a certificate
file is read back by the whitelist parser, never evaluated. The scale symbols are ``s`` (one
common scale) or ``s_<tensor>`` (one per input tensor); the sign-split variables are ``t_<x>``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .lattice import Rule

CHECKER_VERSION = "1"
"""The version of the checker's verdicts and certificates: stored verdicts and certificate
files of another version are not read."""


@dataclass(frozen=True)
class ProofCase:
    """One case of a proof: a sign assumption per element and the residual under it.

    ``signs`` maps an element to ``positive``, ``negative`` or ``zero``; an element that is
    not named ranges over all reals. The case substitutes x = t_x, x = -t_x or x = 0 with t_x
    a positive symbol, rewrites with s > 0 and simplifies ``lhs - rhs`` to ``residual``.
    """

    signs: dict[str, str]
    residual: str


@dataclass(frozen=True)
class Proof:
    """The identity ``lhs == rhs`` for every s > 0, shown case by case."""

    lhs: str
    rhs: str
    method: str
    cases: tuple[ProofCase, ...]
    kind: str = "proof"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "identity": f"{self.lhs} == {self.rhs}",
            "lhs": self.lhs,
            "rhs": self.rhs,
            "method": self.method,
            "cases": [asdict(c) for c in self.cases],
        }


@dataclass(frozen=True)
class Counterexample:
    """An exact point and scale where f(s*x) != s*f(x), and why no other rule holds.

    ``lhs`` and ``rhs`` are exact values (text in the grammar) of f(s*x; p) and s*f(x; p) at
    ``point`` (inputs and parameters, exact rationals). ``difference`` is lhs - rhs to 20
    significant digits (evaluated with certified precision).

    ``no_degree``: a second point where f(s*x)/f(x) differs from the first (or f(x) = 0 and
    f(s*x) != 0), so no degree d at all satisfies f(s*x) = s^d f(x) with parameters held.
    ``no_rescale``: for operators with parameters, evidence that no parameter rescaling
    p -> s^k p rescues the rule either (Euler's identity, a necessary condition, has no
    solution (d, k) at the listed points; residual evaluated at 40 digits).
    """

    point: dict[str, str]
    scale: str
    lhs: str
    rhs: str
    difference: str
    no_degree: dict | None = None
    no_rescale: dict | None = None
    kind: str = "counterexample"

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


Certificate = Proof | Counterexample


def certificate_from_json(data: dict) -> Certificate | None:
    """Rebuild a certificate from its JSON form (inverse of ``to_json``)."""
    kind = data.get("kind")
    if kind == "proof":
        cases = tuple(ProofCase(dict(c["signs"]), c["residual"]) for c in data["cases"])
        return Proof(data["lhs"], data["rhs"], data["method"], cases)
    if kind == "counterexample":
        fields = {k: v for k, v in data.items() if k != "kind"}
        return Counterexample(**fields)
    return None


@dataclass(frozen=True)
class Verdict:
    """The checker's answer for one operator.

    ``output_nonnegative``: the output is >= 0 for every input (proved by sympy's assumptions),
    so an unsigned range suffices. ``preserves_nonnegative``: the output is >= 0 whenever every
    input element is (Concat, MaxPool, Mul of two such tensors), so non-negativity proved
    upstream carries through.
    """

    operator: str
    rule: Rule
    certificate: Certificate | None
    domain: tuple[str, ...] = ()
    alternatives: tuple[tuple[Rule, Proof], ...] = ()
    output_nonnegative: bool = False
    preserves_nonnegative: bool = False
    reason: str = ""
    onnx_type: str | None = None
    expression: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def kind(self):
        return self.rule.kind

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        """Rebuild a verdict from ``to_json`` output (the verdict store reads these)."""
        return cls(
            operator=data["name"],
            rule=Rule.from_json(data),
            certificate=certificate_from_json(data["certificate"]),
            domain=tuple(data["domain"]),
            alternatives=tuple(
                (Rule.from_json(a), certificate_from_json(a["certificate"]))
                for a in data["alternatives"]
            ),
            output_nonnegative=data["output_nonnegative"],
            preserves_nonnegative=data["preserves_nonnegative"],
            reason=data.get("reason", ""),
            onnx_type=data["onnx_type"],
            expression=data["expression"],
        )

    def to_json(self) -> dict:
        out = {"name": self.operator, "onnx_type": self.onnx_type, "expression": self.expression}
        out.update(self.rule.to_json())
        out["certificate"] = (
            self.certificate.to_json() if self.certificate is not None else {"kind": "none"}
        )
        out["domain"] = list(self.domain)
        out["alternatives"] = [
            {**rule.to_json(), "certificate": proof.to_json()} for rule, proof in self.alternatives
        ]
        out["output_nonnegative"] = self.output_nonnegative
        out["preserves_nonnegative"] = self.preserves_nonnegative
        if self.reason:
            out["reason"] = self.reason
        return out
