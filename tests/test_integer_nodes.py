"""A node no declaration describes whose inputs and outputs are all integers (a BitwiseAnd
that hashes token ids into a table's rows) needs no scaling rule: no scale reaches integer
tensors. It runs as exported, a static node, in every format and in the Python API, where it
had been refused as an undeclared op type. A node that writes a float, or reads 8-bit codes
(a model quantized already), is still refused."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db

ROWS = 16


def _hashed_ids(ids_type: int = TensorProto.INT64, last: str = "BitwiseAnd") -> onnx.ModelProto:
    """Token ids masked to ROWS rows (a BitwiseAnd, or a TfIdfVectorizer writing floats: the
    counts of ids 0 to ROWS - 1 in each row), an embedding Gather and a projection."""
    rng = np.random.default_rng(0)
    dtype = helper.tensor_dtype_to_np_dtype(ids_type)
    mask = numpy_helper.from_array(np.array(ROWS - 1, dtype), "mask")
    table = numpy_helper.from_array(rng.normal(size=(ROWS, 8)).astype(np.float32), "table")
    weight = numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "w")
    hashed = (helper.make_node("BitwiseAnd", ["ids", "mask"], ["rows"], name="hash")
              if last == "BitwiseAnd" else
              helper.make_node("TfIdfVectorizer", ["ids"], ["rows"], name="hash", mode="TF",
                               min_gram_length=1, max_gram_length=1, max_skip_count=0,
                               ngram_counts=[0], ngram_indexes=list(range(ROWS)),
                               pool_int64s=list(range(ROWS))))
    embed = ([helper.make_node("Cast", ["rows"], ["positions"], name="positions",
                               to=TensorProto.INT64),
              helper.make_node("Gather", ["table", "positions"], ["e"], name="embed")]
             if last == "BitwiseAnd" else
             [helper.make_node("MatMul", ["rows", "table"], ["e"], name="embed")])
    graph = helper.make_graph(
        [hashed, *embed, helper.make_node("MatMul", ["e", "w"], ["y"], name="proj")],
        "hashed_ids", [helper.make_tensor_value_info("ids", ids_type, ["batch", ROWS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [mask, table, weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _ids(seed: int, count: int = 24, dtype=np.int64) -> dict[str, np.ndarray]:
    return {"ids": np.random.default_rng(seed).integers(0, 200, (count, ROWS)).astype(dtype)}


def _files(tmp_path, model: onnx.ModelProto, data: dict[str, np.ndarray]):
    path, calib = tmp_path / "model.onnx", tmp_path / "calib.npz"
    onnx.save(model, path)
    np.savez(calib, **data)
    return path, calib


@pytest.mark.parametrize("fmt", ["qdq", "integer", "simulation"])
def test_quantize_runs_the_integer_node_as_exported(fmt, tmp_path, capsys):
    path, calib = _files(tmp_path, _hashed_ids(), _ids(0))
    out = tmp_path / "q.onnx"
    code = main(["quantize", str(path), "--calib", str(calib), "-o", str(out), "--format", fmt,
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    row = next(line for line in captured.out.splitlines() if line.startswith("hash "))
    assert "static: run as exported" in row, captured.out
    written = onnx.load(out)
    assert [n.op_type for n in written.graph.node].count("BitwiseAnd") == 1
    held_out = _ids(1, count=8)
    expected = ort.InferenceSession(str(path)).run(None, held_out)[0]
    got = ort.InferenceSession(str(out)).run(None, held_out)[0]
    assert sqnr_db(expected, got) > 30


def test_audit_says_integers_only(tmp_path, capsys):
    path, _ = _files(tmp_path, _hashed_ids(), _ids(0))
    assert main(["audit", str(path)]) == 0
    listed = capsys.readouterr().out
    row = next(line for line in listed.splitlines() if line.startswith("hash "))
    assert "integers only" in row and "static" in row, listed
    assert "unknown op type" not in listed


def test_the_python_api_runs_it_on_the_catalog_s_kernels(tmp_path):
    """Calibrated on the numpy runtime and simulated: the node runs in a session of its own
    at the model's opset (BitwiseAnd exists from opset 18 on)."""
    path, _ = _files(tmp_path, _hashed_ids(), _ids(0))
    graph = load_model(path)
    model = quantize(graph, calibrate(graph, _ids(0), runtime="numpy"))
    held_out = _ids(1, count=8)
    expected = ort.InferenceSession(str(path)).run(None, held_out)[0]
    assert sqnr_db(expected, model.run(held_out)["y"]) > 30


@pytest.mark.parametrize(("model", "data", "said"), [
    (_hashed_ids(TensorProto.UINT8), _ids(0, dtype=np.uint8), "quantized already"),
    (_hashed_ids(last="TfIdfVectorizer"), _ids(0),
     "no declared operator for op type 'TfIdfVectorizer'"),
], ids=["8-bit codes", "a float output"])
def test_other_undeclared_nodes_are_still_refused(model, data, said, tmp_path, capsys):
    path, calib = _files(tmp_path, model, data)
    code = main(["quantize", str(path), "--calib", str(calib), "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and said in err, err
    assert not (tmp_path / "q.onnx").exists()
