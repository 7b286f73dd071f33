"""Operators declared in a TOML file, so a team can keep its custom operators under review.

    [[operator]]
    name = "ScaledSwish"
    inputs = "x"                  # "a, b": two tensors; "x0 x1 x2 x3": one tensor of 4 elements
    params = { beta = 1.702 }     # sample values (strings keep every digit: "1.702")
    expr = "x*sigmoid(beta*x)"
    onnx_type = "ScaledSwish"     # optional
    doc = "..."                   # optional
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UserError
from .operator import DeclarationError, Operator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_KEYS = {"name", "inputs", "params", "expr", "onnx_type", "doc"}


def load_operators(path: str | Path) -> list[Operator]:
    """Read every ``[[operator]]`` table of a TOML file; UserError names file and operator."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read: {err}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML: {err}") from None
    tables = document.get("operator")
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{path}: expected one or more [[operator]] tables")
    operators = []
    for position, table in enumerate(tables, start=1):
        where = f"{path}: operator {table.get('name', f'#{position}')!r}"
        unknown = set(table) - _KEYS
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("name", "expr"):
            if not isinstance(table.get(key), str):
                raise UserError(f"{where}: '{key}' must be a string")
        params = table.get("params", {})
        if not isinstance(params, (dict, list)):
            raise UserError(f"{where}: 'params' must be a table of sample values or a list")
        try:
            operators.append(
                Operator(
                    table["name"],
                    table.get("inputs", "x"),
                    table["expr"],
                    params=params,
                    onnx_type=table.get("onnx_type"),
                    doc=table.get("doc", ""),
                )
            )
        except DeclarationError as err:
            raise UserError(f"{where}: {err}") from None
    return operators
