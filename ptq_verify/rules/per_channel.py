"""Per-channel rules: whether a different scale s_c per channel passes through an operator.

The theorem (proofs/per-channel.md): an operator declared not to mix channels (each output
element is computed from input elements and parameter values of its own channel only) passes a
per-channel scale exactly when it passes a per-tensor one, with the same degree and the same
parameter exponents, each parameter now rescaled channel by channel (p_c -> s_c^k * p_c). So
the per-channel rule is *derived*: from the proved per-tensor rule (its certificate re-checked
as any other) and the declaration's ``mixes_channels`` fact. It is never claimed for a
channel-mixing operator (Conv, Gemm, Softmax, LayerNorm, the layout changes), nor without a
proof.

The derivation is re-checked by :func:`recheck_per_channel`: the stored answer must be what the
rule and the declaration give, and the identity is evaluated again at random points with one
scale per channel (array position) and per-channel parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..catalog.literals import float_or_inf
from ..catalog.operator import Operator
from .certificate import Proof, Verdict
from .lattice import Rule, scale_power

_CHANNELS = 5
_POINTS = 6


@dataclass(frozen=True)
class PerChannel:
    """The per-channel rule of an operator: ``holds``, with the output degree ``degree`` in
    each channel's scale and ``param_exponents`` (p_c -> s_c^k * p_c), or why not."""

    holds: bool
    degree: Fraction | None = None
    param_exponents: Mapping[str, Fraction] = field(default_factory=dict)
    reason: str = ""

    def describe(self) -> str:
        if not self.holds:
            return f"no per-channel rule: {self.reason}"
        rescaled = ", ".join(f"{p}_c->{scale_power('s_c', k)}*{p}_c"
                             for p, k in sorted(self.param_exponents.items()))
        return f"per-channel degree {self.degree}" + (f", {rescaled}" if rescaled else "")

    def to_json(self) -> dict:
        out: dict = {"holds": self.holds}
        if self.holds:
            out["degree"] = str(self.degree)
            out["param_exponents"] = {p: str(k) for p, k in sorted(self.param_exponents.items())}
            out["derived_from"] = "proved rule, mixes_channels false (proofs/per-channel.md)"
        else:
            out["reason"] = self.reason
        return out


def per_channel_rule(op: Operator, verdict: Verdict, rule: Rule | None = None) -> PerChannel:
    """The per-channel rule that ``verdict`` (``op``'s re-validated verdict) implies.

    ``rule`` defaults to the verdict's rule; it must be that rule or a proved alternative.
    """
    rule = verdict.rule if rule is None else rule
    if op.mixes_channels:
        return PerChannel(False, reason="the declaration says it mixes channels")
    proved = isinstance(verdict.certificate, Proof) and verdict.rule.kind.has_rule
    if not proved or (rule != verdict.rule and rule not in [r for r, _ in verdict.alternatives]):
        return PerChannel(False, reason="no proved per-tensor rule")
    if rule.degree is None:
        return PerChannel(False, reason="the rule has no degree under one common scale")
    return PerChannel(True, Fraction(rule.degree),
                      {p: Fraction(k) for p, k in rule.param_exponents.items() if k != 0})


def recheck_per_channel(op: Operator, verdict: Verdict, stored: Mapping) -> list[str]:
    """Problems with a stored per-channel answer (``PerChannel.to_json``) for ``op`` whose
    ``verdict`` is re-checked elsewhere; empty when it holds."""
    derived = per_channel_rule(op, verdict)
    if dict(stored) != derived.to_json():
        return [f"per_channel: stored {dict(stored)} is not what the rule and the declaration "
                f"give: {derived.to_json()}"]
    if derived.holds:
        return spot_check_per_channel(op, derived)
    return []


def spot_check_per_channel(op: Operator, rule: PerChannel, seed: int = 0) -> list[str]:
    """Evaluate f(s_c x_c; s_c^k p_c) = s_c^d f(x_c; p_c) at random points, one scale and one
    parameter value per channel (the array position); a numeric check, not the proof."""
    rng = np.random.default_rng(seed)
    for _ in range(_POINTS):
        scales = rng.uniform(0.1, 10.0, _CHANNELS)
        values = {e: rng.standard_normal(_CHANNELS) * 3 for e in op.element_names}
        params = {p: float_or_inf(v) * rng.uniform(0.5, 2.0, _CHANNELS)
                  for p, v in op.params.items()}
        moved = {e: v * scales for e, v in values.items()}
        moved.update({p: v * scales ** float(rule.param_exponents.get(p, 0))
                      for p, v in params.items()})
        with np.errstate(all="ignore"):
            base = op.evaluate(**values, **params)
            lhs = op.evaluate(**moved)
        rhs = scales ** float(rule.degree) * base
        finite = np.isfinite(base) & np.isfinite(lhs)
        if not np.allclose(lhs[finite], rhs[finite], rtol=1e-9, atol=1e-9):
            return [f"per_channel: {rule.describe()} fails numerically at scales {scales}"]
    return []
