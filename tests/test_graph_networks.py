"""Graph neural networks as torch exports them (benchmarks/export_gnn_models.py): a batch of
graphs is one graph of their nodes, so an export that fixes its shapes fixes the batch at the
node count, 320 for the ``gnn_grid`` fixture, more than the 256 calibration samples the engine
keeps for checking the written model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ptq_verify.cli import main
from ptq_verify.engine import sqnr_db

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
MODEL = FIXTURES / "gnn_grid.dynamo.opset18.onnx"
NODES = 320  # the batch the export fixes


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": x[i:i + NODES]})[0]
                           for i in range(0, len(x), NODES)])


def test_a_batch_fixed_above_the_kept_samples_is_checked_in_whole_batches(tmp_path, capsys):
    """The written model is checked in onnxruntime on the kept calibration samples: 256 of
    them had been fed to a model fixing 320 nodes, and quantize refused every such graph
    network ('onnxruntime cannot run the model on calibration samples 0 to 255'). Its
    scatter-adds (ScatterND, reduction add: each node's sum over its neighbours' messages)
    are declared and run on codes, aligned like any sum (they had been refused as undeclared,
    and ran in float under --float-op); the file is close to the float model on held-out
    digits."""
    target = tmp_path / "q.onnx"
    code = main(["quantize", str(MODEL), "--calib", str(FIXTURES / "gnn_grid.calib.npz"),
                 "-o", str(target), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "0 compensated" in out, "the scatter-adds run on codes"
    with np.load(FIXTURES / "gnn_grid.test.npz") as test:
        x = test["x"]
    assert sqnr_db(_logits(MODEL, x), _logits(target, x)) > 40


def test_node_features_beside_an_edge_index_are_told_the_model_has_no_batch_axis(
        tmp_path, capsys):
    """torch_geometric's layers take edge_index as an argument, so an export with fixed shapes
    takes x (320, 3) beside edge_index (2, 1120): no axis holds samples. Given the model's
    own shapes, or graphs stacked on a new axis, the refusal had said only to give one row
    per sample, batch first, which no layout of such data does; it now says why, and to make
    the shared edges a constant of the file."""
    with np.load(FIXTURES / "gnn_grid.calib.npz") as calib:
        x = calib["x"]
    edges = MODEL.with_name("gnn_grid_edges.dynamo.opset18.onnx")
    index = np.zeros((2, 1120), dtype=np.int64)  # (values unread: refused before a run)
    for name, feeds in (("whole", {"x": x[:NODES], "edge_index": index}),
                        ("stacked", {"x": x[:2 * NODES].reshape(2, NODES, 3),
                                     "edge_index": np.stack([index, index])})):
        data, target = tmp_path / f"{name}.npz", tmp_path / f"{name}.onnx"
        np.savez(data, **feeds)
        code = main(["quantize", str(edges), "--calib", str(data), "-o", str(target),
                     "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "no batch axis" in err and "'edge_index'" in err and "constants" in err, err
        assert not target.exists()
