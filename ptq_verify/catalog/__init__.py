"""The operator catalog: every built-in declaration by name, and the ONNX binding.

``CATALOG`` maps names to :class:`~ptq_verify.catalog.operator.Operator` (sorted by name; built
on first use); :func:`get_operator` looks one up for a user; :func:`operator_for_onnx_type`
finds the declaration an ONNX node stands for. Several declarations may share an ONNX type when
the node's attributes or constant inputs change the function (Gelu's ``approximate``, Pow's
exponent, LpNormalization's ``p``); each such declaration says when it applies with
``onnx_match``, and the lookup never guesses: a node that matches none of them has no
declaration.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from functools import cache
from typing import Any

import numpy as np

from ..errors import UserError
from .operator import (
    DeclarationError,
    Operator,
    TensorInput,
    attribute_default,
    input_name,
    parse_inputs,
)
from .ops import families

__all__ = [
    "CATALOG",
    "DeclarationError",
    "Operator",
    "TensorInput",
    "get_operator",
    "operator_for_onnx_type",
    "parse_inputs",
]


@cache
def _collect() -> dict[str, Operator]:
    found: dict[str, Operator] = {}
    for family in families():
        for op in family.OPERATORS:
            if op.name in found:
                raise DeclarationError(f"operator {op.name!r} is declared twice")
            found[op.name] = op
    for op in found.values():
        for slot, name in op.index_outputs.items():
            described = found.get(name)
            if described is None or described.element_names != op.element_names:
                raise DeclarationError(f"{op.name}: output {slot} is described by {name!r}, "
                                       "which is no declaration over the same input elements")
    return dict(sorted(found.items()))


def __getattr__(name: str) -> Any:
    # CATALOG is built on first use (PEP 562), so importing the package costs no parsing
    if name == "CATALOG":
        return _collect()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _by_onnx_type() -> dict[str, tuple[Operator, ...]]:
    """ONNX type -> its declarations; two with the same conditions would be ambiguous."""
    groups: dict[str, list[Operator]] = {}
    for op in _collect().values():
        if op.onnx_type is not None:
            groups.setdefault(op.onnx_type, []).append(op)
    for op_type, ops in groups.items():
        conditions = [(op.onnx_arity, tuple(sorted(op.onnx_match.items(), key=str)),
                       tuple(sorted(op.onnx_input_types.items()))) for op in ops]
        if len(set(conditions)) != len(conditions):
            names = ", ".join(op.name for op in ops)
            raise DeclarationError(f"ONNX {op_type}: {names} cannot be told apart (onnx_match)")
    return {t: tuple(ops) for t, ops in groups.items()}


def get_operator(name: str) -> Operator:
    """The catalog's operator called ``name``; a UserError suggesting the nearest name if none.
    Builds the families only up to the one that declares it."""
    for family in families():
        for op in family.OPERATORS:
            if op.name == name:
                return op
    lowered = {n.lower(): n for n in _collect()}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1)
    hint = f"; did you mean {lowered[close[0]]!r}?" if close else ""
    raise UserError(f"unknown operator {name!r}{hint} (`ptq-verify classify` lists them)")


def operator_for_onnx_type(
    op_type: str,
    attrs: Mapping[str, Any] | None = None,
    constants: Mapping[int, Any] | None = None,
    arity: int | None = None,
    empty: Collection[int] = (),
    types: Mapping[int, int] | None = None,
) -> Operator | None:
    """The declaration an ONNX node of type ``op_type`` stands for, or None.

    ``attrs`` are the node's attributes as plain values (absent ones take their ONNX defaults);
    ``constants`` maps input slots to the values of constant inputs (initializers, Constant
    nodes). Among the declarations of that type whose ``onnx_match`` conditions all hold, the
    one with the most conditions wins (Relu6 over Clip for Clip(x, 0, 6)). With no attributes
    given, the answer is the declaration for the default attributes (Gelu, not GeluTanh); a
    condition on a constant input that is not given fails (a Pow with an unknown exponent has
    no declaration). ``arity``, the node's number of inputs, selects among declarations with an
    ``onnx_arity`` (Einsum by its number of operands); without it they never match. An input
    slot at or past ``arity``, or in ``empty`` (the node's optional inputs left empty), is
    absent: a condition on it holds where its allowed values include None (Dropout's
    ``training_mode``: absent or a constant false). ``types`` maps input slots to their ONNX
    element types where known, for declarations with ``onnx_input_types`` (CastLike's target).
    """
    def absent(slot: int) -> bool:
        return (arity is not None and slot >= arity) or slot in empty

    matching = [
        op for op in _by_onnx_type().get(op_type, ())
        if _matches(op, attrs or {}, constants or {}, absent)
        and all((types or {}).get(slot) in allowed
                for slot, allowed in op.onnx_input_types.items())
        and (op.onnx_arity is None or op.onnx_arity == arity)
    ]
    if not matching:
        return None
    def conditions(op: Operator) -> int:  # the most specific declaration wins
        return len(op.onnx_match) + len(op.onnx_input_types)

    most = max(map(conditions, matching))
    best = [op for op in matching if conditions(op) == most]
    if len(best) > 1:
        names = ", ".join(op.name for op in best)
        raise DeclarationError(f"ONNX {op_type} node matches several declarations: {names}")
    return best[0]


@cache
def typed_input_slots(op_type: str) -> frozenset[int]:
    """The input slots whose element types tell the declarations of ``op_type`` apart
    (``onnx_input_types``): the only ones a node's lookup needs the types of (kept per op
    type: every catalog lookup asks, 12,419 times in a quantize of all-MiniLM-L6-v2)."""
    return frozenset(slot for op in _by_onnx_type().get(op_type, ())
                     for slot in op.onnx_input_types)


def declared_forms(op_type: str) -> str:
    """The built-in declarations of ONNX type ``op_type`` with what a node must have for each
    (``Pow2: input 1 (Y) a constant 2; Pow3: input 1 (Y) a constant 3; ...``), for a message about a
    node none of them fits; empty when the catalog has none."""
    return "; ".join(f"{op.name}: {_match_conditions(op)}"
                     + (f" ({op.form_hint})" if op.form_hint else "")
                     for op in _by_onnx_type().get(op_type, ()))


def _match_conditions(op: Operator) -> str:
    """What a node must have for ``op`` to stand for it, in words (``mode = 'nearest'``,
    ``input 1 (Y) a constant 2``, ``3 inputs``); empty when it stands for any node of its type."""
    parts = []
    for key, wanted in op.onnx_match.items():
        values = wanted if isinstance(wanted, tuple) else (wanted,)
        allowed = " or ".join(repr(v) for v in values if v is not None)
        if isinstance(key, int):
            slot = _slot(op, key)
            parts.append(f"{slot} absent or a constant {allowed}" if None in values
                         else f"{slot} a constant {allowed}")
        else:
            parts.append(f"{key} = {allowed}")
    if op.onnx_input_types:
        from onnx import TensorProto

        for key, types in op.onnx_input_types.items():
            kinds = " or ".join(TensorProto.DataType.Name(t).lower() for t in types)
            parts.append(f"{_slot(op, key)} of type {kinds}")
    if op.onnx_arity is not None:
        parts.append(f"{op.onnx_arity} input" + ("" if op.onnx_arity == 1 else "s"))
    return ", ".join(parts)


def _slot(op: Operator, key: int) -> str:
    """``input 1 (Y)``: an ONNX input slot of ``op``'s type, with its schema's name."""
    named = input_name(op.onnx_type or "", key) if op.onnx_type else None
    return f"input {key}" + (f" ({named})" if named else "")


def _matches(op: Operator, attrs: Mapping[str, Any], constants: Mapping[int, Any],
             absent: Callable[[int], bool]) -> bool:
    for key, wanted in op.onnx_match.items():
        allowed = wanted if isinstance(wanted, tuple) else (wanted,)
        if isinstance(key, int):
            if absent(key):  # an optional input the node leaves out: allowed where None is
                if None in allowed:
                    continue
                return False
            value = constants.get(key)
            if value is None:
                return False
            array = np.asarray(value)
            if array.size != 1 or not (np.issubdtype(array.dtype, np.number)
                                       or array.dtype == np.bool_):
                return False
            value = array.item()
        else:
            value = attrs[key] if key in attrs else attribute_default(op.onnx_type, key)
            if isinstance(value, bytes):
                value = value.decode()
        if value is None or value not in allowed:
            return False
    return True
