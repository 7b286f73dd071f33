"""Hypothesis strategies for property-testing operator declarations.

Scaling rules fail in the corners: at zero, at a sign change, for scales far from 1, for
magnitudes near float64's limits, and for scales that are not powers of two (a function can be
homogeneous for every s = 2**k and for no other s, so scales whose logarithms have irrational
ratios, such as 2 and 3 together, are drawn too). These strategies aim there on purpose.

Points respect the operator's domain (``op.domain``: sympy relations on elements and
parameters, e.g. ``x > 0`` for log): a drawn point outside it is first repaired (absolute
values, then squashed into (-1, 1)) and rejected only if no repair lands inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from .tolerance import holds

if TYPE_CHECKING:
    from ptq_verify.catalog.operator import Operator

MAX_ARRAY_LENGTH = 4
"""Arrays are short: the kernels are element-wise over them; length exercises broadcasting."""

_LENGTHS = st.integers(0, MAX_ARRAY_LENGTH)
_SIMPLE_VALUES = (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0)


def scales(max_decades: int = 30) -> st.SearchStrategy[float]:
    """Positive scales: powers of two and of three and their products, values within a few
    ulp to a few percent of 1, and log-uniform values over ``10**-max_decades`` to
    ``10**max_decades``. Never exactly 1 (nothing to test there)."""
    bits = int(max_decades * 3.33)
    powers_of_two = st.integers(-bits, bits).filter(bool).map(lambda k: 2.0**k)
    powers_of_three = st.integers(-(bits * 2) // 3, (bits * 2) // 3).filter(bool).map(
        lambda k: 3.0**k
    )
    mixed = st.tuples(st.integers(-20, 20), st.integers(-12, 12)).filter(any).map(
        lambda ab: 2.0 ** ab[0] * 3.0 ** ab[1]
    )
    near_one = st.tuples(st.sampled_from((1.0, -1.0)), st.integers(1, 52)).map(
        lambda sk: 1.0 + sk[0] * 2.0 ** -sk[1]
    )
    log_uniform = st.floats(-max_decades, max_decades).map(lambda e: 10.0**e).filter(
        lambda s: s != 1.0
    )
    return st.one_of(st.sampled_from((2.0, 3.0, 0.5)), log_uniform, powers_of_two,
                     powers_of_three, mixed, near_one)


def channel_scales(channels: int, max_decades: int = 30) -> st.SearchStrategy[np.ndarray]:
    """Per-channel scale vectors: ``channels`` positive scales, each from :func:`scales`."""
    return st.lists(scales(max_decades), min_size=channels, max_size=channels).map(
        lambda values: np.array(values, dtype=np.float64)
    )


@cache
def element_values() -> st.SearchStrategy[float]:
    """Finite float64 values: simple ones, moderate ones, signed log-uniform magnitudes from
    1e-300 to 1e300, and anything float64 holds (subnormals included)."""
    signed_magnitudes = st.tuples(st.booleans(), st.floats(-300, 300)).map(
        lambda sm: (-1.0 if sm[0] else 1.0) * 10.0 ** sm[1]
    )
    return st.one_of(
        st.floats(-10, 10),
        st.sampled_from(_SIMPLE_VALUES),
        signed_magnitudes,
        st.floats(allow_nan=False, allow_infinity=False),
    )


def parameter_values(op: Operator) -> st.SearchStrategy[dict[str, float]]:
    """Values for the operator's parameters around their sample values: the sample itself,
    or the sample times a positive factor between 1/8 and 8 (keeping its sign, which some
    parameters' meaning depends on); a zero sample varies over [-10, 10]."""
    return _parameter_values(tuple((p, float(v)) for p, v in op.params.items()))


@cache
def _parameter_values(samples: tuple[tuple[str, float], ...]) -> st.SearchStrategy:
    """Built once per set of samples: building strategies inside every draw is slow."""
    def around(sample: float) -> st.SearchStrategy[float]:
        if sample == 0:
            return st.one_of(st.just(0.0), st.floats(-10, 10))
        factors = st.one_of(st.floats(0.125, 8.0), st.integers(-3, 3).map(lambda k: 2.0**k))
        return st.one_of(st.just(sample), factors.map(lambda f: sample * f))

    return st.fixed_dictionaries({p: around(v) for p, v in samples})


@cache
def _rows(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, float]]:
    return st.fixed_dictionaries({e: element_values() for e in names})


def operator_inputs(
    op: Operator, params: Mapping[str, float] | None = None, length: int | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Values for every element of the operator's inputs: all float64 scalars, or all arrays of
    one length (1 to ``MAX_ARRAY_LENGTH``, or ``length``), inside ``op.domain`` at ``params``
    (default: the sample values)."""
    fixed = {p: float(v) for p, v in op.params.items()} if params is None else dict(params)
    return _inputs(op, fixed, length)


@st.composite
def operator_points(draw: st.DrawFn, op: Operator) -> tuple[dict[str, Any], dict[str, float]]:
    """A point of the operator: (element values, parameter values), jointly in its domain."""
    params = draw(parameter_values(op))
    return draw(_inputs(op, params, None)), params


@st.composite
def _inputs(
    draw: st.DrawFn, op: Operator, params: dict[str, float], length: int | None
) -> dict[str, Any]:
    if length is None:
        length = draw(_LENGTHS)
    names = op.element_names
    rows = [draw(_rows(names)) for _ in range(max(length, 1))]
    repaired = []
    for row in rows:
        inside = _repair(op, row, params)
        assume(inside is not None)
        repaired.append(inside)
    if length == 0:
        return {e: np.float64(v) for e, v in repaired[0].items()}
    return {e: np.array([row[e] for row in repaired], dtype=np.float64) for e in names}


def in_domain(op: Operator, values: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Whether a scalar point satisfies every condition of ``op.domain`` exactly."""
    point = {**params, **values}
    return all(holds(condition, point) for condition in op.domain)


def _repair(op: Operator, row: dict[str, float], params: dict[str, float]) -> dict | None:
    if not op.domain:
        return row
    for candidate in (
        row,
        {e: abs(v) for e, v in row.items()},
        {e: v / (1.0 + abs(v)) for e, v in row.items()},
        {e: abs(v) / (1.0 + abs(v)) for e, v in row.items()},
    ):
        if in_domain(op, candidate, params):
            return candidate
    return None
