"""Lowering the plan to ONNX: one small emitter per output format.

- ``simulation``: float32 ops on integer-valued tensors, exactly the engine's arithmetic.
- ``qdq``: QuantizeLinear/DequantizeLinear around the source ops, int8 weights, int32 biases;
  deployment toolchains and onnxruntime's integer kernels read it.
- ``integer``: integer arithmetic inside (ConvInteger/MatMulInteger, fixed-point
  requantization, integer kernels where onnxruntime has them) and every compensated
  element-wise unary node (Sigmoid, Tanh, GELU, SiLU, HardSwish, a user's declared unary op)
  as a look-up table of codes (Gather); what stays float is listed in the model's metadata.
"""

from __future__ import annotations

import json

import numpy as np
import onnx

from ...errors import UserError
from .integer import emit_integer
from .qdq import DEFAULT_ENCODING, ENCODINGS, check_qdq, emit_qdq
from .simulation import emit_simulation

FORMATS = ("qdq", "integer", "simulation")


def check_format(format: str, bits: int, encoding: str = DEFAULT_ENCODING) -> None:
    """Refuse, before any work, a format that cannot hold ``bits``-bit codes."""
    if format not in FORMATS:
        raise UserError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    if format in ("qdq", "integer"):
        check_qdq(bits, encoding, format)


def lower(model, format: str = "simulation", encoding: str = DEFAULT_ENCODING) -> onnx.ModelProto:
    """The plan of ``model`` (a QuantizedModel) as ONNX in ``format``; ``encoding`` is
    how qdq holds codes in 8-bit containers."""
    check_format(format, model.bits, encoding)
    if format != "qdq" and encoding != DEFAULT_ENCODING:  # (as --encoding is refused there)
        raise UserError(f"encoding {encoding!r}: applies to format qdq only (the {format} "
                        "format has its own containers; docs/engine.md)")
    if format == "qdq":
        result = emit_qdq(model, encoding)
    elif format == "integer":
        result = emit_integer(model)
    else:
        result = emit_simulation(model)
    return _with_output_scales(result, model)


def _with_output_scales(result: onnx.ModelProto, model) -> onnx.ModelProto:
    """With integer outputs, each output held as codes gets its scale in the model's metadata,
    ``scale:<output>``: a number, or a JSON list of one per channel (value = code / scale).
    In every format: the codes mean nothing without it."""
    if model.integer_outputs:
        for name in model.output_names:
            code = model.codes.get(name)
            if code is not None:
                scale = np.asarray(code.scale, dtype=np.float64)
                entry = result.metadata_props.add()
                entry.key = f"scale:{name}"
                entry.value = json.dumps(scale.tolist() if scale.ndim else float(scale))
    return result


__all__ = ["DEFAULT_ENCODING", "ENCODINGS", "FORMATS", "check_format", "emit_integer", "emit_qdq",
           "emit_simulation", "lower"]
