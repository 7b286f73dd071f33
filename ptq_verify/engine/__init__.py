"""The numeric PTQ engine: load, calibrate, normalise, quantize (the plan), simulate, lower.

Each step is a function of its own::

    graph = load_model("model.onnx")              # folded, ready to calibrate
    actions = plan_model(graph)                    # per node: rule and action
    calibration = calibrate(graph, data)           # per-tensor statistics
    model = quantize(graph, calibration, bits=8)   # QuantizedModel: the plan
    model.run(data)                                # its simulation
    onnx.save(model.to_onnx("qdq"), "q.onnx")      # or "integer", "simulation" (.lower)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import onnx

from ..catalog.operator import Operator
from ..errors import UserError
from ..graph import Graph, OperatorTable, fold_constants, load_graph, require_graph
from ..graph.branches import resolve_branches
from ..graph.onnx_io import ParsedFile, infer_shapes_again
from ..graph.sequences import split_sequences
from ..rules import Rule
from .calibrate import METHODS, Calibration, calibrate
from .data import check_feeds, read_data_file, type_name
from .declared_shapes import infer_declared_shapes
from .fold import fold_affine_channels
from .metrics import relative_error, sqnr_db
from .plan import Action, NodeAction, plan_model
from .quantize import check_bits, quantize
from .quantized import Code, NodeRecord, QuantizedModel
from .rules import check_overrides
from .stats import TensorStats


def prepare(graph: Graph, operators: Mapping[str, Operator] | OperatorTable | None = None,
            override_rules: Mapping[str, Rule] | None = None) -> Graph:
    """Fold constant subgraphs, replace an If of a constant condition (computed from shapes
    the inputs fix) by its taken branch and fold again (:mod:`.graph.branches`), rewrite an
    ONNX sequence that only splits a tensor as the
    Split it stands for (:mod:`.graph.sequences`), give the nodes ONNX's shape inference
    cannot see into the shapes their declarations tell (a custom op's,
    :mod:`.declared_shapes`), and fold
    per-channel affine nodes (BatchNorm) into their producer; first, a node that its
    declaration describes with fewer outputs loses the optional ones nothing reads
    (:meth:`.graph.OperatorTable.drop_unread_outputs`: a Dropout's mask). Never raises on
    unknown op types (they stay as they are)."""
    require_graph(graph, "prepare")
    table = OperatorTable.of(operators)
    check_overrides(override_rules, table)
    table.drop_unread_outputs(graph)
    fold_constants(graph, table)
    while resolve_branches(graph):
        infer_shapes_again(graph)
        fold_constants(graph, table)
    if split_sequences(graph):
        infer_shapes_again(graph)
    infer_declared_shapes(graph, table)
    fold_affine_channels(graph, table, override_rules)
    return graph


def load_model(path: str | os.PathLike,
               operators: Mapping[str, Operator] | OperatorTable | None = None, *,
               parsed: ParsedFile | None = None) -> Graph:
    """Read an ONNX file and prepare it (see :func:`prepare`); ``parsed``: the file as
    :func:`.graph.onnx_io.parsed_file` gave it, where the caller has it (taken over).

    ``path`` is a path (``str`` or ``os.PathLike``); anything else is a UserError saying so
    (a library user passed an ``onnx.ModelProto``, which reached ``os.stat`` as a TypeError,
    and a model's bytes, refused with all of them in the message)."""
    check_model_path(path)
    return prepare(load_graph(path, parsed), operators)


def check_model_path(path: object) -> None:
    """A UserError unless ``path`` is a ``str`` or ``os.PathLike`` (the one thing
    :func:`load_model` reads), naming what was given and what to do with it."""
    if isinstance(path, (str, os.PathLike)):
        return
    if isinstance(path, onnx.ModelProto):
        hint = ("; save it first (onnx.save(model, 'model.onnx')) and pass that path: the "
                "engine reads the file so that onnxruntime runs the same model")
    elif isinstance(path, (bytes, bytearray)):
        hint = " (a model's bytes, or a path as bytes: decode it, os.fsdecode(path))"
    else:
        hint = ""
    raise UserError(f"load_model: takes the path of an ONNX file (str or os.PathLike), not "
                    f"{type_name(path)}{hint}")


__all__ = [
    "METHODS",
    "Action",
    "Calibration",
    "Code",
    "NodeAction",
    "NodeRecord",
    "QuantizedModel",
    "TensorStats",
    "calibrate",
    "check_bits",
    "check_feeds",
    "check_model_path",
    "load_model",
    "plan_model",
    "prepare",
    "quantize",
    "read_data_file",
    "relative_error",
    "sqnr_db",
]
