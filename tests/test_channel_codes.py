"""Per-channel activation codes (quantize.py ``_channel_scale``): a residual stream with outlier
channels, as in pretrained transformers (docs/benchmarks-real.md), is held with one scale per
channel from the per-channel accumulator of the layer that makes it, through the sums with a
per-channel rule, into the compensated LayerNorm; every format matches the simulation. With
every sum rounded to n bits (``wide_sums=False``): by default those sums stay wide
(tests/test_wide_sums.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from models import output_unit

from ptq_verify.engine import calibrate, load_model, prepare, quantize, sqnr_db
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph

quantize_module = importlib.import_module("ptq_verify.engine.quantize")  # not the function

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
OUTLIER = 2000.0  # the factor two channels of each feed-forward output get


def _data(split: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"tiny_bert.{split}.npz") as data:
        return {k: data[k] for k in data.files}


def _outlier_bert():
    """The tiny BERT with channels 0 and 5 of each feed-forward output (the second dense
    layer's weight columns and bias) multiplied by OUTLIER, and of the GELU's input by
    OUTLIER / 100: a residual stream and a GELU input whose channel ranges differ as a
    pretrained model's do."""
    graph = load_model(FIXTURES / "tiny_bert.legacy.opset17.onnx")
    changed = 0
    for name, value in list(graph.initializers.items()):
        if "attention" in name:
            continue
        for layer, factor in (("output", OUTLIER), ("intermediate", OUTLIER / 100)):
            if f"{layer}/dense/Transpose" in name or name.endswith(f"{layer}.dense.bias"):
                value = value.copy()
                value[..., [0, 5]] *= factor
                graph.initializers[name] = value
                changed += 1
    assert changed == 8  # two layers, two dense layers, weight and bias
    return graph


@pytest.fixture(scope="module")
def quantized():
    graph = _outlier_bert()
    model = quantize(graph, calibrate(graph, _data("calib"), progress=False), 8,
                     wide_sums=False)
    return graph, model


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_outlier_channels_get_per_channel_codes_and_the_layernorm_runs_in_float(quantized):
    graph, model = quantized
    per_channel = [name for name, code in model.codes.items() if np.ndim(code.scale)]
    assert per_channel
    producers = graph.producers()
    assert {producers[name].op_type for name in per_channel} >= {"MatMul", "Add"}
    notes = {r.name: r for r in model.records}
    readers = {u.name for name in per_channel for u in graph.consumers()[name]}
    assert {notes[r].op_type for r in readers} >= {"Add", "LayerNormalization"}
    for reader in readers:
        record = notes[reader]
        if record.op_type == "LayerNormalization":  # scale-invariant: float on such codes
            assert record.action.startswith("compensate")
            assert "per-channel input codes" in record.note


def test_per_channel_codes_are_closer_to_float_than_one_scale(quantized, monkeypatch):
    graph, model = quantized
    test = _data("test")
    reference = run_graph(graph, test, OperatorTable())["output"]
    calibration = calibrate(graph, _data("calib"), progress=False)
    monkeypatch.setattr(quantize_module, "CHANNEL_GAIN", np.inf)  # never per channel
    one_scale = quantize(graph, calibration, 8, wide_sums=False)
    assert not [c for c in one_scale.codes.values() if np.ndim(c.scale)]
    error = np.linalg.norm(model.run(test)["output"] - reference)
    assert error < 0.8 * np.linalg.norm(one_scale.run(test)["output"] - reference)


@pytest.mark.parametrize("form", ["simulation", "integer"])
def test_exact_formats_match_the_simulation_to_the_code(quantized, form):
    _, model = quantized
    test = _data("test")
    simulated = model.run(test)["output"]
    exported = _session(model.to_onnx(form)).run(None, test)[0]
    scale = output_unit(model, "output", simulated)
    assert np.max(np.abs(exported - simulated) * scale) < 0.5, f"{form} differs by a code"


def test_qdq_holds_per_channel_activation_codes_and_keeps_the_gain(quantized, monkeypatch):
    """QDQ requantizes inside onnxruntime's kernels (docs/engine.md), so on this model whose
    LayerNorms amplify a code's difference it is not exact with or without per-channel codes;
    what it must keep is the per-channel codes (a Mul by the channels' scales before a
    QuantizeLinear of scale 1) and the gain over one scale per tensor."""
    graph, model = quantized
    test = _data("test")
    exported = model.to_onnx("qdq")
    sizes = {init.name: int(np.prod(init.dims)) for init in exported.graph.initializer}
    made_by = {out: n for n in exported.graph.node for out in n.output}
    channels = [n for n in exported.graph.node if n.op_type == "QuantizeLinear"
                and n.input[0] in made_by and made_by[n.input[0]].op_type == "Mul"
                and sizes.get(made_by[n.input[0]].input[1], 1) > 1]
    assert channels
    reference = run_graph(graph, test, OperatorTable())["output"]
    error = np.linalg.norm(_session(exported).run(None, test)[0] - reference)
    monkeypatch.setattr(quantize_module, "CHANNEL_GAIN", np.inf)
    one_scale = quantize(graph, calibrate(graph, _data("calib"), progress=False), 8,
                         wide_sums=False)
    baseline = _session(one_scale.to_onnx("qdq")).run(None, test)[0]
    assert error < 0.9 * np.linalg.norm(baseline - reference)


def _outlier_word_table():
    """The tiny BERT whose word-embedding table has one column at 30x the others, as
    all-MiniLM-L6-v2's position table has (1.87 against a median column max of 0.05; this
    export fixes its sequence length, so its positions are folded into a constant at load)."""
    graph = load_model(FIXTURES / "tiny_bert.legacy.opset17.onnx")
    name = "bert.embeddings.word_embeddings.weight"
    table = graph.initializers[name].copy()
    table[:, 3] *= 30
    graph.initializers[name] = table
    return graph


def test_a_table_with_an_outlier_column_is_held_with_one_scale_per_column():
    """A selection from a table passes per-channel codes: the table's columns take the
    channels' scales (a probe pairs the table's axis with the output's), so the small
    columns keep their levels; every format still matches the simulation to the code."""
    graph = _outlier_word_table()
    calibration = calibrate(graph, _data("calib"), progress=False)
    model = quantize(graph, calibration, 8)
    gather = next(n for n in graph.nodes
                  if "bert.embeddings.word_embeddings.weight" in n.inputs)
    code = model.codes[gather.outputs[0]]
    assert np.ndim(code.scale) and np.ravel(code.scale).size == 32
    test = _data("test")
    want = [gather.outputs[0]]
    reference = run_graph(graph, test, OperatorTable(), want=want)[want[0]]
    one_scale = quantize(graph, calibration, 8, per_channel=False)
    errors = []
    for quantized in (model, one_scale):
        env = dict(quantized.constants)
        env.update(test)
        for step in quantized.steps:
            step.simulate(env)
        held = quantized.codes[want[0]]
        errors.append(np.linalg.norm(env[held.name] / np.asarray(held.scale) - reference))
    assert errors[0] < 0.25 * errors[1]
    simulated = model.run(test)["output"]
    exported = _session(model.to_onnx("integer")).run(None, test)[0]
    assert np.max(np.abs(exported - simulated) * output_unit(model, "output", simulated)) < 0.5
    assert _session(model.to_onnx("qdq")).run(None, test)[0].shape == simulated.shape


def _position_outlier(length: str | int):
    """exp(a) * b -> Sigmoid over [n, length, 8], position 0 of ``a`` raised by 5: the exp's
    output differs ~150-fold between positions, enough for one scale per position."""
    from onnx import TensorProto, helper

    from ptq_verify.graph import graph_from_onnx

    def info(name: str):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", length, 8])

    nodes = [helper.make_node("Exp", ["a"], ["u"], name="exp"),
             helper.make_node("Mul", ["u", "b"], ["v"], name="mul"),
             helper.make_node("Sigmoid", ["v"], ["y"], name="sigmoid")]
    graph = helper.make_graph(nodes, "positions", [info("a"), info("b")], [info("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(64, 32, 8)).astype(np.float32) for _ in range(2))
    a[:, 0] += 5
    return graph_from_onnx(model), {"a": a, "b": b}


@pytest.mark.parametrize("length", ["t", 32])
def test_codes_take_one_scale_per_position_only_along_an_axis_of_fixed_length(length):
    """Scales along a dynamic axis (a sequence's length) would fix it at the calibration
    data's length: the file then fails on every other one in onnxruntime. Along a fixed
    axis they are allowed (and taken here: the positions' ranges differ ~150-fold)."""
    graph, data = _position_outlier(length)
    model = quantize(graph, calibrate(graph, data, progress=False), 8)
    per_position = np.ndim(model.codes["u"].scale) > 0
    assert per_position == isinstance(length, int)
    rows = 5 if length == "t" else 32
    x = np.random.default_rng(1).normal(size=(2, rows, 8)).astype(np.float32)
    expected = model.run({"a": x, "b": x})["y"]
    for form in ("qdq", "integer", "simulation"):
        got = _session(model.to_onnx(form)).run(None, {"a": x, "b": x})[0]
        np.testing.assert_allclose(got, expected, atol=2 / 255)


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
@pytest.mark.parametrize("along", ["channels", "width"])
def test_per_channel_codes_times_a_per_channel_constant_keep_one_scale_per_channel(form, along):
    """FastViT's layer scale, x * gamma with gamma of shape [C, 1, 1], where x holds one
    scale per channel (its channels' ranges apart): the two scale vectors were multiplied
    as they were made, (1, C, 1, 1) by (C,), a C x C grid, and the integer and simulation
    files failed to load in onnxruntime (exit 3; a timm new-user trial, fastvit_t8 and
    tiny_vit_5m_224). The product runs along the channels, in every format; a constant whose
    scales run along another axis (the width) leaves the node in float."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    spread = np.diag([100.0] + [1.0] * 31).astype(np.float32)  # one channel 100x the rest
    mix = (spread @ rng.uniform(0.5, 1.0, (32, 4))).astype(np.float32).reshape(32, 4, 1, 1)
    gamma = rng.uniform(0.5, 2.0, (32, 1, 1) if along == "channels" else (1, 1, 3))
    gamma = gamma.astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["h"]),
         helper.make_node("Mul", ["h", "g"], ["scaled"]),
         helper.make_node("Add", ["h", "scaled"], ["y"])], "layer_scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32, 3, 3])],
        [numpy_helper.from_array(mix, "w"), numpy_helper.from_array(gamma, "g")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = rng.standard_normal((32, 4, 3, 3)).astype(np.float32)
    g = prepare(graph_from_onnx(proto))
    model = quantize(g, calibrate(g, data, progress=False), 8)
    assert np.shape(model.codes["h"].scale) == (1, 32, 1, 1)
    mul, = (r for r in model.records if r.op_type == "Mul")
    if along == "channels":
        assert mul.kind == "integer" and np.size(model.codes["scaled"].scale) == 32
    else:
        assert mul.kind == "compensated" and "another axis" in mul.note
    written = _session(model.to_onnx(form)).run(None, {"x": data})[0]
    reference = run_graph(g, {"x": data}, OperatorTable())["y"]
    assert sqnr_db(reference, written) > 35


def _conv_classifier(shape_from: str):
    """GlobalAveragePool -> 1x1 Conv (16 -> 300 classes, per-channel weights) -> Reshape to
    (n, 300), the end of pytorchcv's MobileNetV3: the target shape computed from the Conv's
    own Shape (``x.view(x.size(0), -1)`` in a legacy export) or a constant (dynamo's)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(300, 16, 1, 1)) * rng.uniform(0.1, 2.0, (300, 1, 1, 1))
    constants = [numpy_helper.from_array(weight.astype(np.float32), "w"),
                 numpy_helper.from_array(np.array([-1, 300], np.int64), "fixed"),
                 numpy_helper.from_array(np.array(0, np.int64), "zero"),
                 numpy_helper.from_array(np.array([-1], np.int64), "rest"),
                 numpy_helper.from_array(np.array([0], np.int64), "axes")]
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["pooled"], name="pool"),
             helper.make_node("Conv", ["pooled", "w"], ["logits4"], name="classifier")]
    if shape_from == "shape":
        nodes += [helper.make_node("Shape", ["logits4"], ["dims"], name="shape"),
                  helper.make_node("Gather", ["dims", "zero"], ["n"], name="gather", axis=0),
                  helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsqueeze"),
                  helper.make_node("Concat", ["n1", "rest"], ["target"], name="concat",
                                   axis=0)]
    nodes.append(helper.make_node("Reshape", ["logits4", "target" if shape_from == "shape"
                                              else "fixed"], ["logits"], name="reshape"))
    graph = helper.make_graph(
        nodes, "conv_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16, 3, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 300])], constants)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return prepare(graph_from_onnx(proto))


@pytest.mark.parametrize("shape_from", ["shape", "constant"])
def test_logits_a_reshape_makes_of_a_classifier_convolution_are_not_rounded_to_n_bits(
        shape_from):
    """The classifier convolution's accumulator is held wide (its per-channel scales) and the
    Reshape that makes the logits of it runs in float on its exact values: rounded to 256
    levels, 1000 logits had tied at the top and cut top-1 agreement with the float model
    to 0.66 on pytorchcv's MobileNetV3 (onnxruntime 0.86) in a new-user trial. The legacy
    export's Shape of the accumulator reads no value and does not stop it being held wide."""
    graph = _conv_classifier(shape_from)
    rng = np.random.default_rng(1)
    calibration, test = (rng.uniform(0, 1, (n, 16, 3, 3)).astype(np.float32) for n in (64, 8))
    model = quantize(graph, calibrate(graph, calibration, progress=False), 8)
    classifier, = (r for r in model.records if r.name == "classifier")
    assert "held wide (read by selections into outputs)" in classifier.note
    reshape, = (r for r in model.records if r.name == "reshape")
    assert "float out" in reshape.note
    reference = run_graph(graph, {"x": test}, OperatorTable())["logits"]
    written = _session(model.to_onnx("qdq")).run(None, {"x": test})[0]
    assert min(len(np.unique(row)) for row in written) > 256  # not 8-bit codes
    assert sqnr_db(reference, written) > 40
