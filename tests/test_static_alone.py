"""Nodes no activation enters (rotary angles: positions times inverse frequencies) run in float
where only float nodes read them (ptq_verify/engine/static_alone.py): quantize runs them so, and
the audit, which reads no data, lists them so (it had listed them on codes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptq_verify.engine import calibrate, load_model, quantize
from ptq_verify.engine.static_alone import STATIC_ALONE_REASON
from ptq_verify.report.audit import audit_model

FIXTURES = Path(__file__).parent / "fixtures" / "torch"


def _data(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.calib.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("model, data", [
    ("digits_rotary.legacy.opset17.onnx", "digits_rotary"),
    ("digits_rotary.dynamo.opset18.onnx", "digits_rotary"),
    ("tiny_llama_past.legacy.opset17.onnx", "tiny_llama_past"),
])
def test_the_audit_lists_in_float_the_static_alone_nodes_quantize_runs_in_float(model, data):
    graph = load_model(FIXTURES / model)
    quantized = quantize(graph, calibrate(graph, _data(data), progress=False), 8)
    in_float = {record.name for record in quantized.records
                if STATIC_ALONE_REASON in record.note}
    entries = audit_model(FIXTURES / model).entries
    audited = {entry.node for entry in entries
               if entry.reason == STATIC_ALONE_REASON and entry.action == "compensate"}
    assert in_float and audited == in_float
    # the integer format keeps them in float too, and the audit says so with the reason
    assert all(entry.integer == f"float: {STATIC_ALONE_REASON}" for entry in entries
               if entry.node in audited)
