"""Pieces of the one-line messages and notes every layer writes."""

from __future__ import annotations

from collections.abc import Sequence


def first_few(names: Sequence[str], shown: int = 3) -> str:
    """The first ``shown`` of ``names`` and how many more (a line stays readable whatever the
    model's or the file's size, and still says how many there are)."""
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest} more" if rest > 0 else "")


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless one ('wrote 1 certificates' had read wrong)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def assumed_attributes(items: Sequence[str]) -> str:
    """The line on attributes nodes leave out that their declarations' sample values stand
    for (``OperatorTable.assumed_attributes``), as quantize's note and audit's summary say it."""
    return ("attributes the nodes leave out, taken as their declarations' sample values (no "
            f"ONNX schema gives a default for them): {first_few(items, 8)}; where the node's "
            "kernel computes another value, write the attribute on the node when exporting")


def unused_declarations(items: Sequence[str]) -> str:
    """The line on ``--operators`` declarations no node of the model takes
    (``OperatorTable.unused``), as quantize's note and audit's summary say it."""
    return (f"declarations no node of the model takes (given with --operators, left unused): "
            f"{first_few(items, 8)}; an op type is spelt as the nodes' (domain:op_type), and "
            "nodes of a function the model defines (model.functions) run its body, inlined "
            "at load")


def tensor_label(name: str) -> str:
    """A tensor's name as the words and figures beside it can be told from it: quoted where
    it is no Python name. torch's legacy exporter names an unnamed output by a number, and
    'onnxruntime): 36 52.6 dB' read as two figures ('36' 52.6 dB now); audit's inputs line
    listed 'pixel values' as two words. ``logits`` is left as it is."""
    return name if name.isidentifier() else repr(name)
