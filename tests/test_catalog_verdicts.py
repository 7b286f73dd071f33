"""Every catalog verdict against the hand-written table tests/data/expected_rules.toml, and
counterexamples that reproduce in the kernels.

The table is reasoned from each operator's mathematics, not produced by the checker, so a verdict
that changes (a checker regression, an edited declaration) fails here even when the committed
certificates were regenerated with it.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from expected import EXPECTED

from ptq_verify.catalog import CATALOG
from ptq_verify.rules import RuleKind, classify

COMPENSATED = sorted(n for n, e in EXPECTED.items() if e["rule"] == "needs_compensation")


def _degree(value) -> Fraction | list[Fraction] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [Fraction(str(v)) for v in value]
    return Fraction(str(value))


def test_the_table_covers_the_catalog_exactly():
    assert sorted(EXPECTED) == sorted(CATALOG)
    kinds = {k.value for k in RuleKind}
    for name, entry in EXPECTED.items():
        assert entry["rule"] in kinds and entry.get("why"), name
        assert ("degree" in entry) == (entry["rule"] != "needs_compensation"), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_matches_the_hand_written_rule(name):
    entry = EXPECTED[name]
    data = classify(CATALOG[name]).to_json()
    found = (data["rule"], _degree(data["degree"]) if entry["rule"] != "needs_compensation"
             else None, data["param_exponents"])
    wanted = (entry["rule"], _degree(entry.get("degree")), entry.get("rescale", {}))
    assert found == wanted, f"{name}: {entry['why']}"


@pytest.mark.parametrize("name", COMPENSATED)
def test_counterexample_reproduces_in_the_kernel(name):
    op = CATALOG[name]
    verdict = classify(op)
    assert verdict.rule.kind is RuleKind.NEEDS_COMPENSATION
    cx = verdict.certificate
    s = float(Fraction(cx.scale))
    point = {n: float(Fraction(v)) for n, v in cx.point.items()}
    moved = {n: v * s if n in op.element_names else v for n, v in point.items()}
    lhs, rhs = op.evaluate(**moved), s * op.evaluate(**point)
    assert abs(lhs - rhs) > 1e-6 * max(1.0, abs(lhs), abs(rhs))
    assert np.isclose(lhs - rhs, float(cx.difference), rtol=1e-6)
