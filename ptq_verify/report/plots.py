"""The picture on an operator page: f(s*x) against s^d*f(x) for a few scales s.

Where the verdict has a rule, the plot uses its degree d and rescales parameters by s^k, so the
curves coincide exactly when the rule holds along the plotted line; otherwise it shows the plain
degree-1 question f(s*x) vs s*f(x). Scalar operators are plotted against x; operators with
several elements along a line x(t) = p + t*q through a generic point (proofs/multivariate.md,
Section 1). A plot illustrates; the certificate proves.
"""

from __future__ import annotations

import zlib
from fractions import Fraction
from io import BytesIO
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..atomic import write_atomic
from ..catalog.operator import Operator
from ..rules import Verdict

SCALES = (Fraction(1, 2), Fraction(2), Fraction(4))
FIGURE_SIZE = (4.8, 3.2)
DPI = 100
_SAMPLES = 241
_T_RANGE = 3.0


def _fraction_text(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _power_text(exponent: Fraction) -> str:
    """Mathtext for s^exponent (plain ``s`` for 1)."""
    return "s" if exponent == 1 else f"s^{{{_fraction_text(exponent)}}}"


def plotted_rule(verdict: Verdict) -> tuple[Fraction, dict[str, Fraction]]:
    """The degree (under one common scale) and parameter exponents the plot compares against."""
    rule = verdict.rule
    if not rule.kind.has_rule or rule.degree is None:
        return Fraction(1), {}
    return Fraction(rule.degree), {p: Fraction(k) for p, k in rule.param_exponents.items()}


def _lines(op: Operator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Candidate lines (p, q) over the elements, most generic first, deterministic per name."""
    n = len(op.element_names)
    if n == 1:
        return [(np.zeros(1), np.ones(1))]
    rng = np.random.default_rng(zlib.crc32(op.name.encode()))
    p, q = rng.normal(size=n), rng.normal(size=n)
    return [(p, q), (np.abs(p) + 1.0, q / 4), (np.zeros(n), np.abs(q) + 0.5)]


def _evaluate(op: Operator, x: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """f at the points x (shape: samples x elements); NaN outside the domain."""
    values = {e: x[:, i] for i, e in enumerate(op.element_names)}
    with np.errstate(all="ignore"):
        try:
            out = np.asarray(op.evaluate(**values, **params), dtype=np.float64)
        except (ArithmeticError, ValueError, TypeError):
            return np.full(len(x), np.nan)
    out = np.broadcast_to(out, (len(x),)).copy() if out.ndim <= 1 else np.full(len(x), np.nan)
    out[~np.isfinite(out)] = np.nan
    return out


def plot_curves(op: Operator, verdict: Verdict) -> dict:
    """The plotted data: t, and per scale the two curves (NaN outside the domain)."""
    degree, exponents = plotted_rule(verdict)
    params = {p: float(v) for p, v in op.params.items()}
    t = np.linspace(-_T_RANGE, _T_RANGE, _SAMPLES)
    best = None
    for p, q in _lines(op):
        x = p[None, :] + t[:, None] * q[None, :]
        base = _evaluate(op, x, params)
        curves = []
        for s in SCALES:
            moved = {k: float(s) ** float(e) * params[k] for k, e in exponents.items()}
            lhs = _evaluate(op, float(s) * x, {**params, **moved})
            curves.append((s, lhs, float(s) ** float(degree) * base))
        finite = sum(np.isfinite(a).sum() + np.isfinite(b).sum() for _, a, b in curves)
        if best is None or finite > best["finite"]:
            best = {"t": t, "curves": curves, "finite": finite, "line": (p, q)}
        if finite >= len(curves) * _SAMPLES:
            break
    best["degree"], best["exponents"] = degree, exponents
    return best


def _limits(curves) -> tuple[float, float] | None:
    values = np.concatenate([np.concatenate([a, b]) for _, a, b in curves])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [3, 97])
    pad = 0.15 * (hi - lo) if hi > lo else max(1.0, abs(hi)) * 0.5
    return float(lo - pad), float(hi + pad)


def write_plot(op: Operator, verdict: Verdict, path: str | Path) -> Path:
    """Write the PNG (480x320, no timestamp metadata, so reruns give the same bytes)."""
    data = plot_curves(op, verdict)
    degree, exponents = data["degree"], data["exponents"]
    fig = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for index, (s, lhs, rhs) in enumerate(data["curves"]):
        color = f"C{index}"
        ax.plot(data["t"], lhs, color=color, linewidth=1.8, label=f"s={_fraction_text(s)}")
        ax.plot(data["t"], rhs, color="black", linewidth=0.9, linestyle=(0, (3, 2)))
        ax.plot(data["t"], rhs, color=color, linewidth=0.9, linestyle=(3, (3, 2)))
    limits = _limits(data["curves"])
    if limits is not None:
        ax.set_ylim(*limits)
    power = _power_text(degree)
    params = ", ".join(f"{p}\\to {_power_text(k)}{p}" for p, k in sorted(exponents.items()))
    lhs_text = f"$f(s\\,x{'; ' + params if params else ''})$"
    ax.set_title(f"{op.name}: solid {lhs_text}, dashed ${power}\\,f(x)$", fontsize=8)
    single = len(op.element_names) == 1
    ax.set_xlabel("x" if single else "t   (x = p + t q, a generic line)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, linewidth=0.3, alpha=0.6)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    buffer = BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return write_atomic(path, buffer.getvalue())


def curves_coincide(op: Operator, verdict: Verdict, tolerance: float = 1e-9) -> bool:
    """Whether the plotted curves agree wherever both are defined (for tests and captions)."""
    data = plot_curves(op, verdict)
    for _, lhs, rhs in data["curves"]:
        both = np.isfinite(lhs) & np.isfinite(rhs)
        if not np.allclose(lhs[both], rhs[both], rtol=tolerance, atol=tolerance):
            return False
    return True
