"""scikit-learn models as skl2onnx exports them (made by benchmarks/export_sklearn_models.py,
committed under tests/fixtures/sklearn; skl2onnx is not needed here): a MinMaxScaler and a
StandardScaler pipeline into a LogisticRegression on the raw wine features, float64 input
(skl2onnx writes them in standard ops: Cast, Mul and Add, or Sub and Div, then MatMul and
Softmax), an MLPClassifier on the digits' 0-16 pixels without ZipMap, and a LogisticRegression
with skl2onnx's defaults (ai.onnx.ml's LinearClassifier and Normalizer, then a ZipMap whose
output is a sequence of maps), and a StandardScaler -> SVC (ai.onnx.ml's SVMClassifier in a
float64 section), kept in float with --float-op; and graphs built here in skl2onnx's
float32 form, an ai.onnx.ml Scaler or Normalizer before a MatMul."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.graph import OperatorTable

FIXTURES = Path(__file__).parent / "fixtures" / "sklearn"


def _data(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name) as data:
        return dict(data)


def _outputs(model: Path | bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                   providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": x})))


def _quantized_outputs(name: str, data: str) -> tuple[dict, list[dict]]:
    """The float model's outputs on the held-out data, and the qdq and integer files'."""
    path = FIXTURES / name
    graph = load_model(str(path))
    model = quantize(graph, calibrate(graph, {"X": _data(f"{data}.calib.npz")["X"]},
                                      progress=False), 8)
    test = _data(f"{data}.test.npz")["X"]
    return _outputs(path, test), [_outputs(model.to_onnx(form).SerializeToString(), test)
                                  for form in ("qdq", "integer")]


@pytest.mark.parametrize("name", ["wine_minmax_logreg", "wine_standard_logreg"])
def test_raw_features_a_scaler_in_the_model_brings_to_one_range_keep_their_codes(name):
    """The wine features range from 0.13-0.66 (nonflavanoid phenols) to 278-1680 (proline),
    13 of them: one scale for the input left every small feature a code or two, and the
    scaler's Mul or Div then magnified that rounding (33% and 72% of the held-out labels,
    0.5 and 3.9 dB, exit 0). Per-channel codes, which 13 channels could not earn by their
    ranges alone, pay once each channel's noise is weighted by the scaler's factor."""
    reference, quantized = _quantized_outputs(f"{name}.skl2onnx.f64.onnx", "wine")
    for outputs in quantized:
        assert np.mean(outputs["label"] == reference["label"]) >= 0.98
        assert sqnr_db(reference["probabilities"], outputs["probabilities"]) > 30


def test_an_mlp_classifier_without_zipmap_keeps_its_labels():
    reference, quantized = _quantized_outputs("digits_mlp.skl2onnx.f32.onnx", "digits_raw")
    for outputs in quantized:
        assert np.mean(outputs["label"] == reference["label"]) >= 0.99
        assert sqnr_db(reference["probabilities"], outputs["probabilities"]) > 35


def test_skl2onnx_s_default_export_is_refused_in_one_line(tmp_path, capsys):
    """ZipMap's output is a sequence of maps: refused naming it, nothing written; audit lists
    the model and says why."""
    model = str(FIXTURES / "iris_logreg.skl2onnx.f32.zipmap.onnx")
    out = tmp_path / "q.onnx"
    assert main(["quantize", model, "--calib", str(FIXTURES / "iris.calib.npz"),
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'output_probability' is a sequence of maps, not a tensor" in err
    assert "options={id(classifier): {'zipmap': False}}" in err
    assert not out.exists()
    assert main(["audit", model]) == 0
    assert "quantize refuses this model" in capsys.readouterr().out


def _ml_graph(path: Path, op_type: str, **attrs) -> None:
    """X (N, 4) -> an ai.onnx.ml node -> MatMul by a constant (4, 3) -> Y, as skl2onnx writes a
    float32 pipeline's scaler before its model."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [4, 3],
                                np.linspace(-1, 1, 12, dtype=np.float32))
    graph = helper.make_graph(
        [helper.make_node(op_type, ["X"], ["scaled"], name=op_type, domain="ai.onnx.ml",
                          **attrs),
         helper.make_node("MatMul", ["scaled", "W"], ["Y"], name="MatMul")],
        "ml", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                      helper.make_opsetid("ai.onnx.ml", 1)]),
              path)


@pytest.mark.parametrize("op_type, attrs, held", [
    ("Scaler", {"offset": [0.5, 1.0, 2.0, 4.0], "scale": [2.0, 1.0, 0.5, 0.25]},
     "its attribute 'offset' holds 4 values"),
    ("Normalizer", {"norm": "L2"}, "its attribute 'norm' holds text")])
def test_an_ml_node_no_declaration_takes_is_refused_with_float_op_as_the_way(
        op_type, attrs, held, tmp_path, capsys):
    """skl2onnx writes a float32 StandardScaler as ai.onnx.ml's Scaler, its offsets and scales
    lists. Its refusal said to declare it with --operators, whose parameters take one number
    each, so the declaration was refused in turn; and it did not name --float-op, which
    keeps such a node in float (onnxruntime runs ONNX's ML domain) and quantizes the rest."""
    model, calib, out = tmp_path / "m.onnx", tmp_path / "c.npz", tmp_path / "q.onnx"
    _ml_graph(model, op_type, **attrs)
    np.savez(calib, X=np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32))
    command = ["quantize", str(model), "--calib", str(calib), "-o", str(out)]
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"node '{op_type}'" in err and held in err
    assert f"--float-op {op_type}" in err and "declare it" not in err
    assert main([*command, "--float-op", op_type]) == 0
    assert out.exists()


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_an_svc_kept_in_float_writes_float_scores_into_a_float64_section(form):
    """skl2onnx's float64 SVC: SVMClassifier writes float scores (its schema fixes them; the
    file states no type), a Cast to double, a Less that reads it at 16 bits, and
    ArrayFeatureExtractors of the comparison's votes. Kept in float as the refusal advises,
    the one-node session typed the scores as the double input and was refused; the copy of
    the Cast run again at 16 bits kept its double output beside float32 codes (onnxruntime
    refused the file: exit 3); and the integer format asked the declaration of a node kept
    in float that reads no activation (exit 3)."""
    path = FIXTURES / "iris_svc.skl2onnx.f64.onnx"
    table = OperatorTable(float_types=["SVMClassifier", "ArrayFeatureExtractor"])
    graph = load_model(str(path), operators=table)
    model = quantize(graph, calibrate(graph, {"X": _data("iris.calib.npz")["X"]},
                                      operators=table, progress=False), 8, operators=table)
    test = _data("iris.test.npz")["X"]
    reference = _outputs(path, test)
    outputs = _outputs(model.to_onnx(form).SerializeToString(), test)
    assert np.mean(outputs["label"] == reference["label"]) >= 0.9
