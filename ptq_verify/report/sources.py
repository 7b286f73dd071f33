"""Where the operators of a report or a proof check come from: the catalog or a TOML file."""

from __future__ import annotations

from ..catalog.operator import Operator


def operators_from(file: str | None = None) -> dict[str, Operator]:
    """The built-in catalog, or the operators declared in a TOML file (the classify format)."""
    if file is None:
        from ..catalog import CATALOG

        return dict(CATALOG)
    from ..catalog.toml_file import load_operators

    return {op.name: op for op in load_operators(file)}
