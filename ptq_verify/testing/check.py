"""``check_operator``: property-test one operator declaration against its verdict.

Four properties, each failing with an ``AssertionError`` that names the property and shows the
(shrunk) point, the scale, both sides and the tolerance:

(a) the numpy kernel agrees with the symbolic form;
(b) every proved rule holds for the kernel: ``kernel(s*x, s**k * p) ~= s**d * kernel(x, p)``,
    under one common scale, under independent scales for rules with a degree per input, and
    under per-channel scales for operators that do not mix channels;
(c) a refuted rule's counterexample is exact for the symbolic form and reproduces in the kernel;
(d) the checker gives the same verdict for equivalent forms of the expression.

Tolerances come from :mod:`.tolerance`: a bound on the float64 error of the expression at the
very point, never a fixed epsilon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np
import sympy
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from ptq_verify.catalog.operator import Operator
from ptq_verify.rules import Counterexample, Rule, RuleKind, Verdict, classify
from ptq_verify.rules.checker import InexactPoint, exact_sides

from .rewrites import equivalent_forms, redeclare
from .strategies import MAX_ARRAY_LENGTH, channel_scales, in_domain, operator_points, scales
from .tolerance import (
    DIGITS,
    KERNEL_MARGIN,
    Bounded,
    BoundedForm,
    Undefined,
    Unrepresentable,
    to_mpf,
)


def check_operator(
    op: Operator,
    *,
    verdict: Verdict | None = None,
    max_examples: int | None = None,
    rewrites: bool = True,
) -> Verdict:
    """Property-test a declaration; raise ``AssertionError`` with a minimal failing example.

    Args:
        op: the declaration.
        verdict: a claimed verdict to test instead of the checker's (``classify(op)``).
        max_examples: examples per property; default: the active hypothesis profile's.
        rewrites: whether to run (d), which classifies a few rewritten forms (about 0.1-1 s).

    Returns the verdict that was tested.
    """
    claimed = _claimed(op, verdict, "check_operator")
    check_kernel(op, max_examples=max_examples)
    for rule in rules_of(claimed):
        check_rule(op, rule, max_examples=max_examples)
    if isinstance(claimed.certificate, Counterexample):
        check_counterexample(op, claimed.certificate)
    if rewrites:
        check_rewrites(op, claimed)
    return claimed


def _claimed(op: Operator, verdict: object, caller: str) -> Verdict:
    """The verdict to test: the checker's, or the one claimed. A claim that is no Verdict
    (``verdict="pass_through"``) is a TypeError saying how to write one: it had been an
    AttributeError from inside the properties (a library user's trial)."""
    if verdict is None:
        return classify(op)
    if not isinstance(verdict, Verdict):
        raise TypeError(f"{caller}: verdict must be a Verdict (Verdict(name, Rule(...), "
                        f"certificate=None), docs/testing.md), not {type(verdict).__name__}")
    return verdict


def operator_test(op: Operator, **options: Any) -> Callable[[], None]:
    """A pytest test function for ``op``: ``test_mine = operator_test(Operator(...))``."""

    def test() -> None:
        check_operator(op, **options)

    test.__name__ = f"test_{op.name}"
    return test


def rules_of(verdict: Verdict) -> list[Rule]:
    """The rules a verdict claims hold: its own (when it has one) and its proved alternatives."""
    rules = [verdict.rule] if verdict.rule.kind.has_rule else []
    return rules + [rule for rule, _ in verdict.alternatives]


# -- (a) kernel against the symbolic form -------------------------------------------------------


def check_kernel(op: Operator, *, max_examples: int | None = None) -> None:
    """(a): ``op.kernel`` equals ``op.expr`` within the float64 error bound, on points of the
    operator's domain (parameters around their sample values).

    The bound lets the inputs carry two roundings: a kernel may organise the computation
    differently from the expression (a stable Softmax subtracts the largest input first, which
    rounds the arguments of exp), and is accepted when it is as accurate as evaluating the
    expression at inputs perturbed by two roundings (backward stable, in numerical analysis).
    """
    form = _form(op.expr)

    @_settings(max_examples)
    @given(point=operator_points(op))
    def kernel_agrees_with_expression(point: tuple[dict, dict]) -> None:
        values, params = point
        output = _run(op, values, params)
        for index, scalar in _scalar_points(values):
            where = {**scalar, **params}
            try:
                exact = form(where)
            except Unrepresentable:
                assume(False)
                continue
            except Undefined as err:
                _fail(op, "(a) the symbolic form has no value at a point of the declared domain",
                      [("point", _show(where)), ("why", str(err)),
                       ("fix", "add the missing condition to the declaration's domain")])
            got = float(output.flat[index])
            tolerance = KERNEL_MARGIN * exact.error
            if not abs(got - exact.value) <= tolerance:
                _fail(op, "(a) the kernel disagrees with the symbolic form", [
                    ("point", _show(where)),
                    ("kernel", repr(got)),
                    ("symbolic", f"{_num(exact.value)}   ({op.expr})"),
                    ("|difference|", _num(abs(got - exact.value))),
                    ("tolerance", _tolerance_text(tolerance)),
                ])

    kernel_agrees_with_expression()


# -- (b) a proved rule holds numerically --------------------------------------------------------


def check_rule(
    op: Operator, rule: Rule, *, independent: bool | None = None, max_examples: int | None = None
) -> None:
    """(b): the kernel satisfies ``rule`` at random points and scales.

    ``independent`` picks one scale per input tensor (True) or one common scale (False); by
    default both are tested when the rule has a degree per input and rescales no parameter,
    else the common scale.
    """
    if not isinstance(rule, Rule):
        raise TypeError(f"check_rule: rule must be a Rule (Rule(RuleKind.PASS_THROUGH, "
                        f"Fraction(1)), or classify(op).rule), not {type(rule).__name__}")
    if not rule.kind.has_rule:
        raise ValueError(f"a {rule.kind} verdict claims no rule to test")
    per_input = rule.input_degrees is not None and not rule.param_exponents
    modes = [per_input and len(op.inputs) > 1, False] if independent is None else [independent]
    if independent and not per_input:
        raise ValueError(f"{rule.describe()} has no degree per input to test independently")
    for mode in dict.fromkeys(modes):
        _check_rule_once(op, rule, mode, max_examples)


def _check_rule_once(op: Operator, rule: Rule, independent: bool, max_examples: int | None):
    """One hypothesis run of (b). With a common scale and no parameter to rescale, an operator
    that does not mix channels also gets per-channel scales: one scale per array position, as
    the engine's per-output-channel normalisation sends through it."""
    tensors = list(range(len(op.inputs)))  # scales keyed by position, never by name
    degrees = rule.input_degrees if independent else None
    factor_expr = _scale_factor_expression(tensors, degrees, rule.degree)
    lhs_form, rhs_form = _form(op.expr), _form(factor_expr * op.expr)
    if independent:
        scale_strategy = st.tuples(st.tuples(*[scales() for _ in tensors]), st.none())
    else:
        channel_wise = not rule.param_exponents and not op.mixes_channels
        per_channel = channel_scales(MAX_ARRAY_LENGTH) if channel_wise else st.nothing()
        scale_strategy = st.tuples(scales().map(lambda s: (s,)), st.none() | per_channel)

    @_settings(max_examples)
    @given(point=operator_points(op), chosen=scale_strategy)
    def rule_holds(point: tuple[dict, dict], chosen: tuple[tuple[float, ...], Any]) -> None:
        values, params = point
        scalars, vector = chosen
        length = max((np.size(v) for v in values.values()), default=1)
        channel_wise = vector is not None and length > 1
        common = vector[:length] if channel_wise else scalars[0]
        tensor_scale = dict(zip(tensors, scalars)) if independent else dict.fromkeys(
            tensors, common
        )
        with np.errstate(all="ignore"):
            scaled = {
                e: values[e] * tensor_scale[i] for i, t in enumerate(op.inputs) for e in t.elements
            }
            rescaled = {
                p: v * _power(common, rule.param_exponents[p]) if p in rule.param_exponents else v
                for p, v in params.items()
            }
            if independent:
                factor = np.prod([_power(tensor_scale[t], d) for t, d in zip(tensors, degrees)])
            else:
                factor = _power(common, rule.degree)
        moved = (*scaled.values(), *rescaled.values(), factor)
        assume(all(np.all(np.isfinite(v)) for v in moved))
        with np.errstate(all="ignore"):
            lhs_out = _run(op, scaled, rescaled)
            rhs_out = factor * _run(op, values, params)
        for index, scalar in _scalar_points(values):
            scaled_scalar = {e: _item(v, index) for e, v in scaled.items()}
            assume(in_domain(op, scaled_scalar, rescaled))
            factor_values = {_scale_name(t): _item(v, index) for t, v in tensor_scale.items()}
            try:
                lhs = lhs_form({**scaled_scalar, **rescaled})
                rhs = rhs_form({**scalar, **params, **factor_values})
            except (Unrepresentable, Undefined):
                assume(False)
                continue
            got_lhs, got_rhs = float(lhs_out.flat[index]), float(rhs_out.flat[index])
            tolerance = KERNEL_MARGIN * (lhs.error + rhs.error)
            if abs(got_lhs - got_rhs) <= tolerance:
                continue
            if independent:
                how, scale = "independent scales per input", _show(
                    {f"s_{op.inputs[t].name}": v for t, v in tensor_scale.items()})
            elif channel_wise:
                how = "per-channel scales"
                scale = f"s = {_item(common, index)!r} at position {index} of {list(common)}"
            else:
                how, scale = "one common scale", f"s = {common!r}"
            _fail(op, f"(b) the rule {rule.describe()} does not hold for the kernel ({how})", [
                ("point", _show({**scalar, **params})),
                ("scale", scale),
                ("rescaled params", _show(rescaled) if rule.param_exponents else "-"),
                ("kernel(scaled)", repr(got_lhs)),
                ("scale factor * kernel", repr(got_rhs)),
                ("|difference|", _num(abs(got_lhs - got_rhs))),
                ("tolerance", _tolerance_text(tolerance)),
                ("symbolic sides", f"{_num(lhs.value)} and {_num(rhs.value)}"),
                ("diagnosis", _diagnosis(lhs, rhs, got_lhs, got_rhs)),
            ])

    rule_holds()


def _scale_name(position: int) -> str:
    """A name no declaration can use (s_* is reserved), one per input position."""
    return f"s__{position}"


def _scale_factor_expression(
    tensors: Sequence[int], degrees: Sequence[Fraction] | None, degree: Fraction | None
) -> sympy.Expr:
    """s**d (common scale, named after the first tensor) or prod s_t**d_t, as sympy."""
    def power(tensor: int, d: Fraction) -> sympy.Expr:
        return sympy.Symbol(_scale_name(tensor), positive=True) ** sympy.Rational(
            d.numerator, d.denominator
        )

    if degrees is None:
        return power(tensors[0], Fraction(degree or 0))
    return sympy.Mul(*[power(t, Fraction(d)) for t, d in zip(tensors, degrees)])


def _diagnosis(lhs: Bounded, rhs: Bounded, got_lhs: float, got_rhs: float) -> str:
    symbolic_gap = abs(lhs.value - rhs.value)
    if symbolic_gap > KERNEL_MARGIN * (lhs.error + rhs.error):
        return "the symbolic form violates the rule here too: the rule is wrong"
    bad = "kernel(scaled)" if abs(got_lhs - lhs.value) > KERNEL_MARGIN * lhs.error else "kernel"
    return f"the symbolic form satisfies the rule here: the {bad} value is wrong"


# -- (c) a counterexample reproduces ------------------------------------------------------------


def check_counterexample(op: Operator, certificate: Counterexample) -> None:
    """(c): the certificate is exact for the symbolic form (its difference f(s*x) - s*f(x) and
    its evidence that no degree works), and the kernel reproduces the difference when float64
    can show it (otherwise the kernel is checked against the exact values of both sides at the
    float64 point)."""
    point = {name: Fraction(text) for name, text in certificate.point.items()}
    s = Fraction(certificate.scale)
    facts = [("point", _show(point)), ("scale", str(s)),
             ("certificate's f(s*x) - s*f(x)", certificate.difference)]
    moved, base = _exact_sides(op, point, s)
    exact = _exact_value(moved - _rational(s) * base)
    claimed = _agrees(exact, certificate.difference)
    if claimed is None:
        _fail(op, "(c) the counterexample is wrong for the symbolic form",
              [*facts, ("exact f(s*x) - s*f(x)", "undefined" if exact is None else _num(exact))])
    if certificate.no_degree is not None:
        _check_no_degree(op, certificate.no_degree, point, s, moved, base)
    _check_counterexample_in_kernel(op, point, s, claimed, facts)


def _check_no_degree(
    op: Operator, evidence: Mapping[str, Any], first: dict, s: Fraction, moved: Any, base: Any
) -> None:
    """The certificate's second point: f(s*x)/f(x) differs from the first point's ratio (the
    cross difference f(s*x1) f(x2) - f(s*x2) f(x1) is non-zero), or f(x1) = 0 != f(s*x1)."""
    if "cross_difference" not in evidence:
        if _exact_value(base) == 0 and _exact_value(moved) not in (None, 0):
            return
        _fail(op, "(c) the certificate's no-degree evidence is wrong for the symbolic form", [
            ("point", _show(first)), ("claim", "f(x) = 0 and f(s*x) != 0"),
            ("exact f(x), f(s*x)", f"{_exact_value(base)}, {_exact_value(moved)}")])
    second = {name: Fraction(text) for name, text in evidence["point"].items()}
    moved_2, base_2 = _exact_sides(op, second, s)
    cross = _exact_value(moved * base_2 - moved_2 * base)
    if _agrees(cross, evidence["cross_difference"]) is None:
        _fail(op, "(c) the certificate's no-degree evidence is wrong for the symbolic form", [
            ("points", f"{_show(first)}; {_show(second)}"), ("scale", str(s)),
            ("certificate's cross difference", evidence["cross_difference"]),
            ("exact f(s*x1) f(x2) - f(s*x2) f(x1)", "undefined" if cross is None else _num(cross)),
        ])


def _check_counterexample_in_kernel(
    op: Operator, point: dict, s: Fraction, claimed: Any, facts: list
) -> None:
    elements = set(op.element_names)
    s_float = float(s)
    values = {n: float(v) for n, v in point.items() if n in elements}
    params = {n: float(v) for n, v in point.items() if n not in elements}
    scaled = {n: v * s_float for n, v in values.items()}
    got_lhs = float(_run(op, scaled, params))
    got_rhs = s_float * float(_run(op, values, params))
    lhs_form, rhs_form = _form(op.expr), _form(_scale_factor_expression(["s"], None, 1) * op.expr)
    try:
        lhs = lhs_form({**scaled, **params})
        rhs = rhs_form({**values, **params, _scale_name("s"): s_float})
    except (Unrepresentable, Undefined):
        return  # float64 cannot evaluate the expression there: nothing to compare the kernel with
    for side, got, bounded in (("f(s*x)", got_lhs, lhs), ("s*f(x)", got_rhs, rhs)):
        tolerance = KERNEL_MARGIN * bounded.error
        if not abs(got - bounded.value) <= tolerance:
            _fail(op, f"(c) the kernel's {side} at the counterexample disagrees with the symbolic "
                  "form", [*facts, ("kernel", repr(got)), ("symbolic", _num(bounded.value)),
                           ("tolerance", _tolerance_text(tolerance))])
    tolerance = KERNEL_MARGIN * (lhs.error + rhs.error)
    if abs(claimed) > 2 * tolerance and not abs((got_lhs - got_rhs) - claimed) <= tolerance:
        _fail(op, "(c) the counterexample does not reproduce in the kernel", [
            *facts, ("kernel f(s*x) - s*f(x)", repr(got_lhs - got_rhs)),
            ("tolerance", _tolerance_text(tolerance))])


def _rational(q: Fraction) -> sympy.Rational:
    return sympy.Rational(q.numerator, q.denominator)


def _exact_sides(op: Operator, point: dict[str, Fraction], s: Fraction) -> tuple[Any, Any]:
    """f(s*x; p) and f(x; p) at an exact rational point, as exact sympy numbers; a failure
    of (c) unless both points are inside the domain (the checker's own condition)."""
    try:
        return exact_sides(op, point, s, 0)
    except InexactPoint as err:
        _fail(op, "(c) the counterexample is not exact for the symbolic form",
              [("point", _show(point)), ("scale", str(s)), ("why", str(err))])


def _exact_value(value: sympy.Expr) -> Any:
    """An exact sympy number to DIGITS digits as mpmath (None if undefined or not real)."""
    approx = value.evalf(DIGITS)
    if not approx.is_Number or not approx.is_real or not approx.is_finite:
        return None
    with mpmath.workdps(DIGITS):
        return mpmath.mpf(approx)


def _agrees(exact: Any, text: str) -> Any:
    """The certificate's 20-digit decimal ``text`` if it matches ``exact`` and is non-zero (a
    zero difference refutes nothing), else None."""
    with mpmath.workdps(DIGITS):
        claimed = mpmath.mpf(text)
        if exact is not None and claimed != 0 and abs(exact - claimed) <= 1e-18 * abs(claimed):
            return claimed
    return None


# -- (d) the verdict does not depend on how the function is written -----------------------------


def check_rewrites(op: Operator, verdict: Verdict | None = None, limit: int = 3) -> None:
    """(d): equivalent forms of ``op.expr`` get the same verdict.

    A decided verdict (any rule, or needs_compensation) must come back identical (kind,
    degrees, parameter exponents) for every rewrite: a different decided verdict means the
    checker contradicts itself, and an undecided one means it lost a decision it could make.
    An undecided original may be decided on a rewrite.
    """
    claimed = _claimed(op, verdict, "check_rewrites")
    for label, form in equivalent_forms(op, limit):
        try:
            other = _classify_form(op, label, form)
        except Exception as err:  # any crash of the checker on a valid form is a finding
            raise AssertionError(
                f"check_operator({op.name}): (d) the checker failed on an equivalent form\n"
                f"  rewrite: {label}: {form}\n  error: {type(err).__name__}: {err}"
            ) from err
        if claimed.rule.kind is RuleKind.UNDECIDED or other.rule == claimed.rule:
            continue
        problem = (
            "contradicts" if other.rule.kind is not RuleKind.UNDECIDED else "is undecided for"
        )
        _fail(op, f"(d) the checker {problem} an equivalent form", [
            ("declared form", f"{op.expr}  ->  {claimed.rule.describe()}"),
            (f"rewrite ({label})", f"{form}  ->  {other.rule.describe()}"),
        ])


_verdicts_of_forms: dict[tuple, Verdict] = {}


def _classify_form(op: Operator, label: str, form: sympy.Expr) -> Verdict:
    """Rewrites are re-declared as new operators, which classify's own cache does not know:
    their verdicts are kept here, per form, inputs, parameters and domain."""
    key = (form, tuple(op.inputs), tuple(op.params.items()), op.domain, op.mixes_channels)
    if key not in _verdicts_of_forms:
        _verdicts_of_forms[key] = classify(redeclare(op, label, form))
    return _verdicts_of_forms[key]


# -- helpers -----------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _form(expr: sympy.Expr) -> BoundedForm:
    return BoundedForm(expr)


def _settings(max_examples: int | None) -> settings:
    current = settings()
    return settings(
        current,
        max_examples=max_examples or current.max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[p for p in current.phases if p is not Phase.explain],  # our message explains
    )


def _run(op: Operator, values: Mapping[str, Any], params: Mapping[str, float]) -> np.ndarray:
    """The kernel's output; Python floats are passed as float64 (``1e200**2`` is inf, not an
    OverflowError)."""
    arrays = {n: np.asarray(v, dtype=np.float64) for n, v in {**values, **params}.items()}
    with np.errstate(all="ignore"):
        return np.asarray(op.evaluate(**arrays), dtype=np.float64)


def _power(base: Any, exponent: Fraction) -> Any:
    """base**exponent in float64 (a scale or a vector of them), inf on overflow (Python's float
    power raises instead)."""
    with np.errstate(all="ignore"):
        return np.power(np.asarray(base, dtype=np.float64), float(exponent))


def _scalar_points(values: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """The element-wise points of a (scalars or equal-length arrays) input dict."""
    length = max((np.size(v) for v in values.values()), default=1)
    return [(i, {e: _item(v, i) for e, v in values.items()}) for i in range(length)]


def _item(value: Any, index: int) -> float:
    return float(np.asarray(value).flat[index if np.size(value) > 1 else 0])


def _num(value: Any) -> str:
    return mpmath.nstr(to_mpf(value) if not isinstance(value, mpmath.mpf) else value, 17)


def _show(values: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k} = {float(v)!r}" if isinstance(v, float) else f"{k} = {v}" for k, v in values.items()
    ) or "-"


def _tolerance_text(tolerance: Any) -> str:
    return (
        f"{_num(tolerance)}  ({KERNEL_MARGIN} x the float64 error bound of the expression at this "
        "point, see docs/testing.md)"
    )


def _fail(op: Operator, what: str, facts: Sequence[tuple[str, str]]) -> None:
    __tracebackhide__ = True  # pytest shows the message, not this helper's frame
    width = max(len(label) for label, _ in facts)
    lines = [f"check_operator({op.name}): {what}"]
    lines += [f"  {label.ljust(width)} : {text}" for label, text in facts]
    raise AssertionError("\n".join(lines))
