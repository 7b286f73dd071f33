"""Model arguments: a path to an ONNX file, or the name of an example shipped with the package."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .. import examples
from ..errors import UserError
from ..input_files import not_utf8_at, path_mode
from .arguments import Once, path_text

if TYPE_CHECKING:
    from ..graph import Graph, OperatorTable

HELP = ("the float ONNX model, or the name of a shipped example (" + ", ".join(examples.names())
        + "; a file of that name wins)")


def resolve_model(text: str) -> tuple[Path, Path | None]:
    """The model file ``text`` stands for, and the example's calibration data if it is one."""
    path = Path(text)
    # a link to nothing is the user's file too: said broken, not replaced by an example
    if path_mode(path) is not None or path.is_symlink():
        if found := not_utf8_at(text):  # onnx's checker takes a str it can encode (exit 3)
            raise UserError(f"{text}: the file name holds {found[1]} that is not UTF-8, which "
                            "onnx cannot take in a path; rename the file (or link it under a "
                            "UTF-8 name)")
        return path, None
    example = examples.model_path(text)
    if example is None:
        known = ", ".join(examples.names())
        raise UserError(f"{text}: no such model file, nor an example ({known})")
    return example, examples.calibration_path(text)


def add_operators_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operators", metavar="OPS.toml", type=path_text, action=Once,
                        hint="with every declaration in one file",
                        help="declarations of op types the catalog lacks (or replaces), each "
                        "with its onnx_type, or domain:op_type for one domain's nodes alone "
                        "(docs/catalog.md); proved like the catalog's, and one of a standard "
                        "op type checked against onnxruntime's kernel first")


def add_float_op_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--float-op", action="append", default=[], metavar="TYPE",
        help="keep every node of this op type in float, its inputs dequantized and its "
        "outputs requantized, where no declaration describes it (a recurrent layer: LSTM, "
        "GRU, RNN); no rule is claimed for it. Repeat it, or separate types by commas")


def float_op_types(values: list[str]) -> tuple[str, ...]:
    """The op types of ``--float-op`` options (each one or several, comma-separated), in
    order, once each; an empty one (``--float-op ''``, ``LSTM,``) is refused by name."""
    types: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                raise UserError(f"--float-op {value!r}: an empty op type; give ONNX op types "
                                "such as LSTM, separated by commas")
            if item not in types:
                types.append(item)
    return tuple(types)


def declared_operators(path: str | None, float_ops: list[str] | tuple[str, ...] = ()):
    """The operator table of ``--operators OPS.toml``, ahead of the catalog. A declaration of
    a standard ONNX op type must compute what onnxruntime's kernel of it computes, where both
    run (graph/declared_kernels.py): else it is refused, before any work. Where they cannot
    both run, the table's ``unchecked`` says why, for a note."""
    from ..catalog.toml_file import load_onnx_operators
    from ..graph import OperatorTable
    from ..graph.declared_kernels import comparison, mismatch

    float_types = float_op_types(list(float_ops))
    if not path:
        return OperatorTable(float_types=float_types)
    declared = load_onnx_operators(path)
    unchecked = {}
    for op in declared.values():
        differs, skipped = comparison(op)
        if skipped is not None:
            unchecked[op.name] = f"{op.onnx_type}: {skipped}"
        if differs is not None:
            raise UserError(f"{path}: operator {op.name!r} {mismatch(op, differs, True)}")
    return OperatorTable(declared, source=path, unchecked=unchecked, float_types=float_types)


def unchecked_note(table: OperatorTable) -> str | None:
    """The note on declarations of standard op types that were not compared with onnxruntime's
    kernel (:func:`declared_operators`), or None."""
    if not table.unchecked:
        return None
    listed = "; ".join(f"{name!r} ({why})" for name, why in table.unchecked.items())
    return (f"declarations not compared with onnxruntime's kernel of their op type, taken as "
            f"given: {listed}; each rule is proved for its expression, which must be that op "
            "type's function")


def assumed_attributes_note(graph: Graph, table: OperatorTable) -> str | None:
    """Quantize's note on the attributes nodes leave out that their declarations' sample
    values stand for (:meth:`OperatorTable.assumed_attributes`), or None."""
    from ..wording import assumed_attributes

    assumed = table.assumed_attributes(graph.nodes)
    return assumed_attributes(assumed) if assumed else None
