"""The hand-written expected rules of the catalog (tests/data/expected_rules.toml)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the package depends on tomli there
    import tomli as tomllib

TABLE = Path(__file__).resolve().parent / "data" / "expected_rules.toml"
EXPECTED: dict[str, dict] = tomllib.loads(TABLE.read_text(encoding="utf-8"))


def has_rule(name: str) -> bool:
    """Whether the table gives ``name`` a scaling rule (anything but compensation)."""
    return EXPECTED[name]["rule"] not in ("needs_compensation", "undecided")


def independent_scales(name: str) -> bool:
    """Whether the table gives ``name`` one degree per input tensor (Mul, Div, MatMul)."""
    return isinstance(EXPECTED[name].get("degree"), list)
