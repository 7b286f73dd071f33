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


def declared_operators(path: str | None):
    """The operator table of ``--operators OPS.toml``, ahead of the catalog. A declaration of
    a standard ONNX op type must compute what onnxruntime's kernel of it computes, where both
    run (graph/declared_kernels.py): else it is refused, before any work. Where they cannot
    both run, the table's ``unchecked`` says why, for a note."""
    from ..catalog.toml_file import load_onnx_operators
    from ..graph import OperatorTable
    from ..graph.declared_kernels import comparison

    if not path:
        return OperatorTable()
    declared = load_onnx_operators(path)
    unchecked = {}
    for op in declared.values():
        differs, skipped = comparison(op)
        if skipped is not None:
            unchecked[op.name] = f"{op.onnx_type}: {skipped}"
        if differs is not None:
            raise UserError(
                f"{path}: operator {op.name!r} declares ONNX {op.onnx_type}, but its expression "
                f"{differs}: every {op.onnx_type} node would be quantized by the rule of "
                "another function; correct the expression, or, for a node of a custom domain "
                f"named {op.onnx_type}, declare onnx_type = \"DOMAIN:{op.onnx_type}\"")
    return OperatorTable(declared, source=path, unchecked=unchecked)


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
    """The note on nodes that leave out an attribute their file declaration binds to a
    parameter, where no ONNX schema gives its default (a custom domain's op type), or None.

    The declaration's sample value then stands for the node's value (its declaration is its
    schema, :meth:`Operator.attribute`), which the node's own kernel may not share: a trial's
    SwishBeta declared ``gamma*x*sigmoid(beta*x)`` with gamma = 2 on nodes without a gamma
    was calibrated on twice the outputs its kernel writes, and the output note measured it
    against that function, with no word said."""
    from ..catalog.operator import attribute_default
    from ..wording import first_few

    assumed = []
    for node in graph.nodes:
        key = table.declaration_key(node)
        op = table.extra.get(key) if key is not None else None
        if op is None or not op.runs_expression:
            continue
        for attr, param in op.onnx_attrs.items():
            if attr not in node.attrs and attribute_default(op.onnx_type, attr) is None:
                assumed.append(f"node {node.name!r} ({node.op_type}): {attr} = "
                               f"{op.params[param]}")
    if not assumed:
        return None
    return ("attributes the nodes leave out, taken as their declarations' sample values (no "
            f"ONNX schema gives a default for them): {first_few(assumed, 8)}; where the node's "
            "kernel computes another value, write the attribute on the node when exporting")
