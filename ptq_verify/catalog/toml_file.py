"""Operators declared in a TOML file, so a team can keep its custom operators under review.

    [[operator]]
    name = "ScaledSwish"
    inputs = "x"                  # "a, b": two tensors; "x0 x1 x2 x3": one tensor of 4 elements
    params = { beta = 1.702 }     # sample values (strings keep every digit: "1.702")
    expr = "x*sigmoid(beta*x)"
    onnx_type = "ScaledSwish"     # optional
    doc = "..."                   # optional
    mixes_channels = false        # optional; by default true where an input has several
                                  # elements (a norm over x0 x1 x2), false where none has
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from ..errors import UserError
from ..textfile import read_text_file
from .operator import DeclarationError, Operator, onnx_type_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_KEYS = {"name", "inputs", "params", "expr", "onnx_type", "doc", "mixes_channels"}
MAX_FILE_BYTES = 1_000_000
"""Largest declaration file read (a catalog of a hundred operators is about 30 kB)."""

OUTPUTS_DESCRIBED = 1
"""ONNX outputs a declaration from a file describes: the value of its expression. A node
writing more (an LSTM's Y, Y_h, Y_c) cannot be declared in a file."""


def _check_inputs(value: object, where: str) -> None:
    """``inputs`` is text (``"a, b"``) or a list whose items are text or lists of text."""
    if isinstance(value, str):
        return
    if isinstance(value, list) and value and all(
        isinstance(item, str)
        or (isinstance(item, list) and item and all(isinstance(e, str) for e in item))
        for item in value
    ):
        return
    raise UserError(f"{where}: 'inputs' must be a string such as \"a, b\" or a list of "
                    f"element names, not {_toml_type(value)}")


def _check_params(value: object, where: str) -> None:
    """``params`` is a table name -> sample value (number or text) or a list of names."""
    if isinstance(value, dict):
        for name, sample in value.items():
            if isinstance(sample, bool) or not isinstance(sample, (int, float, str)):
                raise UserError(f"{where}: parameter {name!r} must be a number or a string of "
                                f"digits, not {_toml_type(sample)}")
            if isinstance(sample, float) and math.isnan(sample):
                raise UserError(f"{where}: parameter {name!r} is nan, not a value; write a "
                                "finite number")
            if isinstance(sample, float) and not math.isfinite(sample):
                raise UserError(f"{where}: parameter {name!r} is {sample} (TOML reads floats "
                                "beyond 1.8e308 as inf); write finite values, exact as strings")
        return
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return
    raise UserError(f"{where}: 'params' must be a table of sample values or a list of names, "
                    f"not {_toml_type(value)}")


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def load_operators(path: str | Path) -> list[Operator]:
    """Read every ``[[operator]]`` table of a TOML file; UserError names file and operator."""
    path = Path(path)
    text = read_text_file(path, MAX_FILE_BYTES, "declaration file")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML: {err}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid TOML: arrays or tables nested too deep") from None
    except ValueError as err:  # e.g. an integer beyond Python's 4300-digit limit
        raise UserError(f"{path}: not valid TOML: {str(err).splitlines()[0][:200]}") from None
    # a table or key of another name is a typo a reader would skip ([[operatr]] beside
    # [[operator]] tables had left that declaration out of classify --file and --operators)
    unknown = ", ".join(map(repr, sorted(set(document) - {"operator"})))
    found = f" (found {unknown} at the top level)" if unknown else ""
    tables = document.get("operator")
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{path}: expected one or more [[operator]] tables{found}")
    if unknown:
        raise UserError(f"{path}: unknown table(s) or key(s) {unknown} at the top level: the "
                        "file holds [[operator]] tables only")
    operators = []
    seen: dict[str, int] = {}
    for position, table in enumerate(tables, start=1):
        if not isinstance(table, dict):
            raise UserError(f"{path}: operator #{position} is {_toml_type(table)}, expected "
                            "an [[operator]] table")
        name = table.get("name")
        where = f"{path}: operator {name if isinstance(name, str) else f'#{position}'!r}"
        unknown = set(table) - _KEYS
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("name", "expr"):
            if key not in table:
                raise UserError(f"{where}: '{key}' is missing (a string)")
            if not isinstance(table.get(key), str):
                raise UserError(f"{where}: '{key}' must be a string")
        for key in ("onnx_type", "doc"):
            if key in table and not isinstance(table[key], str):
                raise UserError(f"{where}: '{key}' must be a string, not "
                                f"{_toml_type(table[key])}")
        if "mixes_channels" in table and not isinstance(table["mixes_channels"], bool):
            raise UserError(f"{where}: 'mixes_channels' must be true or false, not "
                            f"{_toml_type(table['mixes_channels'])}")
        if not table["name"].isprintable():  # a name, shown in every table and message
            raise UserError(f"{where}: 'name' holds a character that does not print (a line "
                            "break, a tab, an escape code)")
        if "onnx_type" in table and (problem := onnx_type_problem(table["onnx_type"])):
            raise UserError(f"{where}: 'onnx_type' {problem}")
        if name in seen:
            raise UserError(f"{where}: declared twice (operators #{seen[name]} and #{position})")
        seen[name] = position
        _check_inputs(table.get("inputs", "x"), where)
        params = table.get("params", {})
        _check_params(params, where)
        try:
            operators.append(
                Operator(
                    table["name"],
                    table.get("inputs", "x"),
                    table["expr"],
                    params=params,
                    onnx_type=table.get("onnx_type"),
                    onnx_outputs=OUTPUTS_DESCRIBED,
                    # a node's attribute of a parameter's name gives that parameter's value
                    onnx_attrs={name: name for name in params},
                    mixes_channels=table.get("mixes_channels"),
                    doc=table.get("doc", ""),
                )
            )
        except DeclarationError as err:  # (its message names the operator: once is enough)
            raise UserError(f"{where}: {str(err).removeprefix(f'{name}: ')}") from None
    return operators


def load_onnx_operators(path: str | Path) -> dict[str, Operator]:
    """The declarations of a TOML file as ONNX op type -> operator, for ``quantize`` and
    ``audit --operators`` (its ONNX inputs are its tensors, in order). A declaration without
    an ``onnx_type`` declares no node and is left out: a team keeps one file for
    ``classify --file`` and ``--operators`` (a trial's file of 22 declarations, 6 of them
    node types, was refused whole for the first without one). A file where none has one
    declares nothing, and is refused saying so."""
    operators = load_operators(path)
    if not any(op.onnx_type for op in operators):
        raise UserError(f"{path}: operator {operators[0].name!r}: give its onnx_type (the ONNX "
                        "op type it declares); no declaration of the file has one, so it "
                        "declares no node")
    found: dict[str, Operator] = {}
    for op in operators:
        if not op.onnx_type:
            continue
        if op.onnx_type in found:
            raise UserError(f"{path}: onnx_type {op.onnx_type!r} is declared twice "
                            f"({found[op.onnx_type].name!r} and {op.name!r})")
        found[op.onnx_type] = op
    return found
