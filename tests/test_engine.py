"""The PTQ engine end to end: every topology quantizes, matches onnxruntime, stays accurate."""

from __future__ import annotations

import models
import numpy as np
import onnxruntime as ort
import pytest

from ptq_verify.engine import calibrate, prepare, quantize, relative_error, sqnr_db
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph

ALL = {**models.TOPOLOGIES, **models.TRICKY}


def _pipeline(name: str, bits: int = 8, **options):
    build, image = ALL[name]
    graph = prepare(graph_from_onnx(build()))
    calibration = calibrate(graph, models.digits(150, image), progress=False)
    test = models.digits(60, image, offset=500)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    return graph, quantize(graph, calibration, bits, **options), test, reference


def _onnxruntime(model, test) -> np.ndarray:
    session = ort.InferenceSession(model.to_onnx().SerializeToString())  # default optimizations
    return session.run(None, {"input": test})[0]


@pytest.mark.parametrize("name", sorted(ALL))
def test_topology_matches_onnxruntime_and_stays_accurate(name):
    _, model, test, reference = _pipeline(name, per_channel=name.endswith("e"))
    simulated = model.run(test)["logits"]
    codes = np.abs(_onnxruntime(model, test) - simulated) * model.output_scales["logits"]
    assert codes.max() < 0.5, "onnxruntime must compute the simulated codes"
    assert relative_error(reference, simulated) < 4e-2
    assert sqnr_db(reference, simulated) > 28


@pytest.mark.parametrize("bits", [4, 6, 12])
def test_other_bit_widths_match_onnxruntime(bits):
    _, model, test, reference = _pipeline("cnn_sigmoid", bits)
    simulated = model.run(test)["logits"]
    codes = np.abs(_onnxruntime(model, test) - simulated) * model.output_scales["logits"]
    if bits <= 8:
        assert codes.max() < 0.5
    else:  # documented: float32 sums beyond 2^24 and ulp-level float kernels may flip a code
        assert codes.max() < 1.5 and np.mean(codes > 0.5) < 0.01
    assert sqnr_db(reference, simulated) > {4: 8, 6: 20, 12: 55}[bits]


def test_more_bits_less_error():
    errors = [relative_error(r, m.run(t)["logits"])
              for m, t, r in (_pipeline("mlp_sigmoid", b)[1:] for b in (4, 8))]
    assert errors[1] < errors[0] / 4


def test_batchnorm_after_conv_is_folded_and_elsewhere_kept():
    folded, _, _, _ = _pipeline("conv_bn")
    kept, _, _, _ = _pipeline("bn_after_add")
    assert not any(n.op_type == "BatchNormalization" for n in folded.nodes)
    assert any(n.op_type == "BatchNormalization" for n in kept.nodes)


def test_fixed_point_multipliers_match_onnxruntime():
    _, model, test, reference = _pipeline("residual", fixed_point_multipliers=True)
    simulated = model.run(test)["logits"]
    codes = np.abs(_onnxruntime(model, test) - simulated) * model.output_scales["logits"]
    assert codes.max() < 0.5
    assert relative_error(reference, simulated) < 4e-2


def test_integer_outputs_are_codes():
    _, model, test, _ = _pipeline("mlp_relu", integer_outputs=True)
    out = model.run(test)["logits"]
    assert np.array_equal(out, np.round(out)) and out.min() >= -128 and out.max() <= 127


def test_gelu_decomposed_compensates_only_the_erf():
    _, model, _, _ = _pipeline("gelu_decomposed")
    compensated = [r.op_type for r in model.records if r.action.startswith("compensate")]
    assert compensated == ["Erf"]


def test_fixed_batch_model_is_calibrated_sample_by_sample():
    graph = prepare(graph_from_onnx(models.fixed_batch_mlp()))
    calibration = calibrate(graph, models.digits(20), progress=False)
    model = quantize(graph, calibration)
    test = models.digits(7, offset=300)
    assert model.run(test)["logits"].shape == (7, 10)


def test_calibration_methods_give_working_models():
    build, _ = ALL["mlp_tanh"]
    graph = prepare(graph_from_onnx(build()))
    test = models.digits(60, offset=500)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    for method in ("percentile", "mse"):
        calibration = calibrate(graph, models.digits(150), method, progress=False)
        model = quantize(graph, calibration, 6)
        assert relative_error(reference, model.run(test)["logits"]) < 0.1


def _pointwise_notes(bits: int, per_channel: bool) -> list[str]:
    b = models.Builder(30, image=True)
    h = b.add("Relu", [b.conv("input", 1, 64)])
    h = b.add("Relu", [b.conv(h, 64, 64, k=1)])
    h = b.flatten(b.add("GlobalAveragePool", [h]))
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 64, 10), "pointwise")))
    model = quantize(graph, calibrate(graph, models.digits(60, True), progress=False), bits,
                     per_channel=per_channel)
    return [note for note in model.notes if "conv2" in note and "may reach" in note]


@pytest.mark.parametrize("per_channel", [True, False])
def test_the_float32_sum_bound_adds_up_one_output_channel(per_channel):
    """A 1x1 convolution of 64 channels adds 64 products per output (64 * 127 * 255 < 2^24 at
    8 bits); its weight's last axis has size 1, so taking that axis as a possible channel
    summed all 4096 weights and noted sums beyond 2^24 (on every MobileNetV3 expansion)."""
    assert not _pointwise_notes(8, per_channel)
    assert _pointwise_notes(16, per_channel), "at 16 bits the same sums do pass 2^24"


def test_quantize_names_its_last_stages_on_a_terminal(tmp_path, capsys, monkeypatch):
    """After the smoothing bar, quantize rounded the weights, walked the nodes and ran the
    written model in onnxruntime with no bar: BERT-base sat 20-50 s (its integer file 80 s
    under load) showing nothing after a cleared smoothing bar. Each stage has a bar now, on a
    terminal only, and --no-progress still shows none."""
    import sys

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ptq_verify.cli import main

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("W1", (16, 8)), ("b1", (8,)), ("W2", (8, 4)))]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
         helper.make_node("Add", ["h", "b1"], ["hb"], name="add1"),
         helper.make_node("Relu", ["hb"], ["r"], name="relu1"),
         helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2")],
        "matmuls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], weights)
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    calib = tmp_path / "calib.npy"
    np.save(calib, rng.standard_normal((40, 16)).astype(np.float32))
    command = ["quantize", str(model), "--calib", str(calib), "--summary", "-o"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*command, str(tmp_path / "q.onnx")]) == 0
    err = capsys.readouterr().err
    for stage in ("rounding weights", "quantizing", "checking in onnxruntime"):
        assert stage in err, stage
    assert main([*command, str(tmp_path / "q2.onnx"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
