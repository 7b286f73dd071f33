"""Output-aware weight rounding (OPTQ) and bias correction: each lowers the error it targets,
falls back to nearest rounding where it cannot apply, and keeps the export exact."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import models
import numpy as np
import onnxruntime as ort
import pytest

from ptq_verify.catalog import Operator, operator_for_onnx_type
from ptq_verify.engine import calibrate, load_model, prepare, quantize, sqnr_db
from ptq_verify.engine.quantize import weight_layers
from ptq_verify.engine.rounding import (
    ChannelPatchSource,
    PatchSource,
    ProbeMemo,
    WeightTarget,
    channel_patches,
    gram,
    layer_stats,
    optq_round,
    patches,
)
from ptq_verify.errors import UserError
from ptq_verify.graph import Graph, Node, OperatorTable, graph_from_onnx, run_graph

FIXTURES = Path(__file__).parent / "fixtures" / "torch"


def _setup(name: str):
    build, image = models.TOPOLOGIES[name]
    graph = prepare(graph_from_onnx(build()))
    calibration = calibrate(graph, models.digits(150, image), progress=False)
    test = models.digits(200, image, offset=500)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    return graph, calibration, test, reference


def _error(graph, calibration, test, reference, bits, **options) -> np.ndarray:
    return quantize(graph, calibration, bits, **options).run(test)["logits"] - reference


def test_patches_reproduce_a_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    weight = rng.standard_normal((4, 3, 3, 3))
    node = Node("conv", "Conv", ["x", "w"], ["y"], {"pads": [1, 1, 1, 1]})
    op = operator_for_onnx_type("Conv")
    columns = patches(op, node, [x, weight], WeightTarget(1, 0, 1, ()))
    assert columns is not None and columns.shape == (2 * 36, 27)
    direct = np.moveaxis(op.run_onnx([x, weight], node.attrs), 1, -1).reshape(-1, 4)
    np.testing.assert_allclose(columns @ weight.reshape(4, -1).T, direct, atol=1e-9)
    # A wrong layout (weights feeding output axis 2) is refused, not used.
    assert patches(op, node, [x, weight], WeightTarget(1, 0, 2, ())) is None


@pytest.mark.parametrize("op_type, attrs, shapes, target", [
    ("Conv", {"pads": [1, 1, 1, 1]}, ((2, 3, 6, 6), (4, 3, 3, 3)), WeightTarget(1, 0, 1, ())),
    ("MatMul", {}, ((2, 5, 6), (6, 4)), WeightTarget(1, 1, 2, ())),
])
def test_later_batches_read_patches_by_a_checked_selection(op_type, attrs, shapes, target):
    rng = np.random.default_rng(2)
    weight = rng.standard_normal(shapes[1])
    node = Node("n", op_type, ["x", "w"], ["y"], attrs)
    op = operator_for_onnx_type(op_type)
    source = PatchSource(op, node, target, [0])
    first, second = (rng.standard_normal(shapes[0]) for _ in range(2))
    x, index = source([first, weight])
    assert index is not None  # im2col with padding and the rows of a MatMul are selections
    np.testing.assert_array_equal(x, patches(op, node, [first, weight], target))
    again, same = source([second, weight])
    assert same is index
    np.testing.assert_allclose(again, patches(op, node, [second, weight], target), atol=1e-12)


@pytest.mark.parametrize("depthwise", [False, True])
def test_nodes_probing_the_same_computation_share_one_probe(monkeypatch, depthwise):
    # Repeated blocks (ResNet's bottlenecks, EfficientNet's depthwise convolutions, a
    # transformer's projections) probe the same computation on element numbers: one probe
    # serves them, each node's own check still runs with its own weights, and a node whose
    # probe differs (its padding) probes again. A depthwise node's probe (K outputs per
    # channel) is kept as its shifts and shared the same way.
    import ptq_verify.engine.rounding as rounding

    probed, checked = [], []
    real, real_check = rounding._probed_index, rounding.reproduces
    monkeypatch.setattr(rounding, "_probed_index",
                        lambda *args: probed.append(args[2].name) or real(*args))
    monkeypatch.setattr(rounding, "reproduces",
                        lambda *args: checked.append(args[1].name) or real_check(*args))
    rng = np.random.default_rng(4)
    op = operator_for_onnx_type("Conv")
    target = WeightTarget(1, 0, 1, ())
    memo = ProbeMemo()
    x = rng.standard_normal((1, 4, 5, 5) if depthwise else (2, 3, 6, 6))
    sources = []  # kept, as the calibration keeps its nodes' sources (the memo holds weakly)
    for name, pads in (("a", [1, 1, 1, 1]), ("b", [1, 1, 1, 1]), ("c", [0, 0, 0, 0])):
        weight = rng.standard_normal((4, 1, 3, 3) if depthwise else (4, 3, 3, 3))
        node = Node(name, "Conv", ["x", f"w_{name}"], [f"y_{name}"],
                    {"pads": pads, "group": 4 if depthwise else 1})
        if depthwise:
            graph = Graph([node], [], [], {f"w_{name}": weight})
            sources.append(ChannelPatchSource(op, node, target, graph, memo))
            got = sources[-1]([x, weight])
            expected = channel_patches(op, node, [x, weight], target, check=False)
        else:
            sources.append(PatchSource(op, node, target, [0], memo))
            got = sources[-1]([x, weight])[0]
            expected = patches(op, node, [x, weight], target, check=False)
        np.testing.assert_allclose(got, expected, atol=1e-12)
    assert probed == ["a", "c"] and checked == ["a", "b", "c"]


@pytest.mark.parametrize("flipped, probed_samples", [(False, [1]), (True, [1, 3])])
def test_a_batch_is_probed_by_its_first_sample_where_that_reproduces_it(
        monkeypatch, flipped, probed_samples):
    # The first sample's selection, repeated sample by sample, is tried first (a probe of one
    # sample's work); a node that does not treat its samples alike (here it reverses their
    # order) fails that check and is probed on the whole batch, which reproduces it.
    import ptq_verify.engine.rounding as rounding

    probed = []
    real = rounding._probed_index
    monkeypatch.setattr(rounding, "_probed_index",
                        lambda *args: probed.append(len(args[3][0])) or real(*args))
    op = Operator("FlipMatMul", "a, b", "a*b", onnx_kernel=lambda inputs, attrs: np.matmul(
        inputs[0][::-1] if flipped else inputs[0], inputs[1]))
    rng = np.random.default_rng(7)
    node = Node("n", "FlipMatMul", ["x", "w"], ["y"], {})
    target = WeightTarget(1, 1, 2, ())
    x, weight = rng.standard_normal((3, 4, 5)), rng.standard_normal((5, 2))
    got, index = PatchSource(op, node, target, [0], ProbeMemo())([x, weight])
    assert index is not None and probed == probed_samples
    np.testing.assert_array_equal(got, patches(op, node, [x, weight], target))


def test_patches_that_are_no_selection_are_probed_every_batch():
    # patches tanh(x): linear in the weights, but no element of x, so no selection is kept
    op = Operator("TanhMatMul", "a0 a1, b0 b1", "tanh(a0)*b0 + tanh(a1)*b1",
                  onnx_kernel=lambda inputs, attrs: np.tanh(inputs[0]) @ inputs[1])
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((6, 4))
    node = Node("n", "TanhMatMul", ["x", "w"], ["y"], {})
    source = PatchSource(op, node, WeightTarget(1, 1, 1, ()), [0])
    for _ in range(2):
        x = rng.standard_normal((5, 6))
        columns, index = source([x, weight])
        assert index is None
        np.testing.assert_allclose(columns, np.tanh(x), atol=1e-12)
    # a node with two activation inputs has no single input to select from
    both = PatchSource(operator_for_onnx_type("MatMul"), node, WeightTarget(1, 1, 1, ()), [0, 1])
    assert both([x, weight])[1] is None


@pytest.mark.parametrize("op_type, attrs, shapes, target", [
    ("Mul", {}, ((3, 5, 6), (6,)), WeightTarget(1, 0, 2, ())),  # one constant per channel
    ("Conv", {"group": 3, "pads": [1, 1, 1, 1]}, ((2, 3, 5, 5), (3, 1, 3, 3)),
     WeightTarget(1, 0, 1, ())),  # depthwise: each channel's own 3 x 3 windows, 0 at padding
])
def test_channel_patches_read_by_a_selection_are_the_probes(op_type, attrs, shapes, target):
    rng = np.random.default_rng(4)
    node = Node("n", op_type, ["x", "w"], ["y"], attrs)
    op = operator_for_onnx_type(op_type)
    graph = Graph([node], [], [], {"w": rng.standard_normal(shapes[1])})
    source = ChannelPatchSource(op, node, target, graph)
    for _ in range(2):
        x = rng.standard_normal(shapes[0]).astype(np.float32)
        inputs = [x, graph.initializers["w"]]
        probed = np.concatenate([channel_patches(op, node, [x[:1], inputs[1]], target),
                                 channel_patches(op, node, [x[1:], inputs[1]], target)], axis=1)
        assert np.array_equal(source(inputs), probed)
    assert source._selections and all(s is not None for s in source._selections.values())


def test_channel_patches_that_are_no_selection_are_probed_every_chunk():
    # channel c's output tanh(x_c) * w_c: linear in the weights, but no element of x
    op = Operator("TanhMul", "a, b", "tanh(a)*b",
                  onnx_kernel=lambda inputs, attrs: np.tanh(inputs[0]) * inputs[1])
    rng = np.random.default_rng(5)
    node = Node("n", "TanhMul", ["x", "w"], ["y"], {})
    graph = Graph([node], [], [], {"w": rng.standard_normal(6)})
    source = ChannelPatchSource(op, node, WeightTarget(1, 0, 2, ()), graph)
    for _ in range(2):
        x = rng.standard_normal((3, 5, 6))
        columns = source([x, graph.initializers["w"]])
        np.testing.assert_allclose(columns, np.tanh(x).reshape(-1, 6).T[:, :, None],
                                   atol=1e-12)
    assert set(source._selections.values()) == {None}


@pytest.mark.parametrize("channels, columns", [(64, 9), (40, 25), (5, 128)])
def test_channels_with_their_own_h_round_together_as_one_at_a_time(channels, columns):
    """A depthwise convolution's channels are rounded all at once: the same codes as each
    channel alone, dead inputs (a column never non-zero) included."""
    rng = np.random.default_rng(channels)
    x = rng.standard_normal((channels, 200, columns)) * rng.uniform(0.1, 3, (channels, 1, columns))
    x[::3, :, 0] = 0.0
    hessians = np.einsum("crk,crl->ckl", x, x) / 200
    weights = rng.standard_normal((channels, columns))
    scale = 127 / np.abs(weights).max(axis=1)
    alone = [optq_round(weights[c:c + 1], scale[c:c + 1], 127, hessians[c])
             for c in range(channels)]
    assert np.array_equal(optq_round(weights, scale, 127, hessians), np.concatenate(alone))


def test_optq_lowers_the_output_error_of_rounding():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12))  # correlated inputs
    weights = rng.standard_normal((6, 12))
    scale = 7 / np.abs(weights).max(axis=1)
    nearest = np.round(weights * scale[:, None])
    optq = optq_round(weights, scale, 7, x.T @ x / len(x))
    assert np.abs(optq).max() <= 7

    def output_error(codes):
        return float(np.sum((x @ (codes / scale[:, None] - weights).T) ** 2))

    assert output_error(optq) < 0.8 * output_error(nearest)


def test_weights_of_inputs_never_seen_nonzero_keep_nearest_rounding():
    weights = np.array([[0.3, -0.7, 0.55]])
    hessian = np.diag([1.0, 0.0, 2.0])  # input 1 is 0 on all calibration data
    codes = optq_round(weights, np.array([10.0]), 127, hessian)
    assert codes[0, 1] == -7.0


def test_one_column_weights_round_to_nearest_and_per_channel_h_rounds_each_row_alone():
    rng = np.random.default_rng(3)
    column = rng.standard_normal((5, 1))
    scale = rng.uniform(5, 50, 5)
    nearest = np.clip(np.round(column * scale[:, None]), -7, 7)
    for hessian in (np.array([[3.0]]), rng.uniform(0, 2, (5, 1, 1))):
        assert np.array_equal(optq_round(column, scale, 7, hessian), nearest)
    weights = rng.standard_normal((3, 4))
    x = rng.standard_normal((3, 50, 4)) * [[[1.0, 3.0, 0.1, 2.0]]]
    hessians = np.swapaxes(x, 1, 2) @ x / 50
    rows = [optq_round(weights[c:c + 1], scale[c:c + 1], 7, hessians[c]) for c in range(3)]
    assert np.array_equal(optq_round(weights, scale[:3], 7, hessians), np.concatenate(rows))


@pytest.mark.parametrize("name", ["mlp_relu", "cnn_sigmoid"])
def test_bias_correction_removes_the_mean_output_error(name):
    graph, calibration, test, reference = _setup(name)
    plain = _error(graph, calibration, test, reference, 4, weight_rounding="nearest",
                   bias_correction=False)
    corrected = _error(graph, calibration, test, reference, 4, weight_rounding="nearest")
    assert np.abs(corrected.mean(axis=0)).mean() < 0.7 * np.abs(plain.mean(axis=0)).mean()


@pytest.mark.parametrize("name", ["cnn", "squeeze_excite"])
def test_default_rounding_beats_nearest_on_held_out_data(name):
    graph, calibration, test, reference = _setup(name)
    for bits in (4, 8):
        nearest = _error(graph, calibration, test, reference, bits, weight_rounding="nearest",
                         bias_correction=False)
        default = _error(graph, calibration, test, reference, bits)
        assert np.mean(default**2) < np.mean(nearest**2)


def test_without_the_sample_rounding_is_nearest():
    graph, calibration, test, _ = _setup("cnn")
    bare = dataclasses.replace(calibration, sample={})
    fallback = quantize(graph, bare, 6).run(test)["logits"]
    nearest = quantize(graph, calibration, 6, weight_rounding="nearest",
                       bias_correction=False).run(test)["logits"]
    np.testing.assert_array_equal(fallback, nearest)


def test_summary_names_the_rounding_and_export_stays_exact():
    graph, calibration, test, _ = _setup("concat")
    model = quantize(graph, calibration, 4)
    notes = " ".join(record.note for record in model.records)
    assert "output-aware rounding" in notes and "bias corrected" in notes
    session = ort.InferenceSession(model.to_onnx().SerializeToString())
    exported = session.run(None, {"input": test})[0]
    codes = np.abs(exported - model.run(test)["logits"]) * model.output_scales["logits"]
    assert codes.max() < 0.5


def test_unknown_rounding_is_refused():
    graph, calibration, _, _ = _setup("mlp_relu")
    with pytest.raises(UserError, match="weight rounding 'best'"):
        quantize(graph, calibration, 8, weight_rounding="best")


def test_depthwise_convolution_gets_output_aware_rounding_and_bias_correction():
    # each channel of a grouped convolution reads patches of its own: one H per channel
    graph = prepare(graph_from_onnx(models.mobile_block()))
    data = models.digits(150, True)
    calibration = calibrate(graph, data, progress=False)
    notes = {r.name: r.note for r in quantize(graph, calibration, 8).records}
    assert "output-aware rounding" in notes["conv2"] and "bias corrected" in notes["conv2"]
    test = models.digits(100, True, offset=400)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    scores = {rounding: sqnr_db(reference, quantize(
        graph, calibration, 4, weight_rounding=rounding).run(test)["logits"])
        for rounding in ("optq", "nearest")}
    assert scores["optq"] > scores["nearest"]


@pytest.mark.parametrize("source", ["tiny_bert.legacy.opset17", "digits_cnn.dynamo.opset18",
                                    "mobile_block"])
def test_the_calibration_pass_gathers_what_quantize_would_run_the_model_for(source):
    """calibrate(weight_layers=...) gathers the layer statistics in its own pass (slices of
    the rounding's batch size, cut from larger batches): the same statistics as quantize's
    own float run, and so the same written model. A real transformer export (MatMul
    weights), a real CNN export (Conv, Gemm) and a depthwise convolution (patches per
    channel)."""
    if source == "mobile_block":
        graph = prepare(graph_from_onnx(models.mobile_block()))
        data = {"input": models.digits(30, True)}
    else:
        graph = load_model(str(FIXTURES / f"{source}.onnx"))
        name = "tiny_bert" if source.startswith("tiny_bert") else "digits_image"
        with np.load(FIXTURES / f"{name}.calib.npz") as archive:
            data = {key: archive[key][:30] for key in archive}
    targets = weight_layers(graph)
    assert targets
    gathered = calibrate(graph, data, progress=False, weight_layers=targets)
    plain = calibrate(graph, data, progress=False)
    own = layer_stats(graph, OperatorTable(), plain.sample, targets, plain.runner)
    assert gathered.layers.stats.keys() == own.keys() and own
    for name, stats in own.items():
        assert np.array_equal(gathered.layers.stats[name].hessian, stats.hessian), name
        assert np.array_equal(gathered.layers.stats[name].mean, stats.mean), name
    written = [quantize(graph, c, 8).to_onnx().SerializeToString() for c in (gathered, plain)]
    assert written[0] == written[1]


def test_gathering_layer_inputs_keeps_batches_large_where_the_inputs_can_be_sliced(
        monkeypatch):
    """The layers take their inputs in slices of the rounding's batch, so the pass's own
    batches need not shrink to it: the digits CNN's 64 samples in 2 onnxruntime runs (a first
    of 4, then the rest), not 16 of 4 (which made its calibration twice as slow)."""
    assert _calibration_batches(monkeypatch) == [4, 60]


def _calibration_batches(monkeypatch) -> list[int]:
    """The samples of each onnxruntime run of the digits CNN's calibration pass (64 samples),
    weight layers' inputs gathered."""
    from ptq_verify.graph.ort_runner import OrtRunner

    graph = load_model(str(FIXTURES / "digits_cnn.dynamo.opset18.onnx"))
    with np.load(FIXTURES / "digits_image.calib.npz") as archive:
        data = {key: archive[key] for key in archive}
    sizes = []
    run = OrtRunner.run

    def counted(self, feeds, names=None):
        sizes.append(len(next(iter(feeds.values()))))
        return run(self, feeds, names)

    monkeypatch.setattr(OrtRunner, "run", counted)
    calibration = calibrate(graph, data, progress=False, weight_layers=weight_layers(graph))
    assert calibration.layers.stats and sum(sizes) == len(data["input"]) == 64
    return sizes


def test_batches_after_the_rounding_samples_stay_as_small_as_the_gathering_held_them(
        monkeypatch):
    """The batches past the rounding's samples (calibrate.SAMPLE_LIMIT, here 8) hold no more
    samples than the layer-gathering budget let those before hold, so the pass's peak does
    not grow with the calibration set: they had grown to BATCH_BYTES, and all-MiniLM-L6-v2's
    peak from 1.07 GB on 128 texts to 1.77 GB on 512."""
    import importlib

    calibrate_module = importlib.import_module("ptq_verify.engine.calibrate")  # (the
    # package's name calibrate is the function)
    monkeypatch.setattr(calibrate_module, "SAMPLE_LIMIT", 8)
    monkeypatch.setattr(calibrate_module, "GATHER_BYTES", 1)  # the rounding's BATCH, 4
    assert max(_calibration_batches(monkeypatch)) == 4


def test_the_gram_of_float16_inputs_is_taken_in_float32():
    """A float16 export's layer inputs come from onnxruntime in float16: X^T X is taken in
    float32 (exact cast; numpy's float16 products are slow and round each sum to 11 bits)."""
    x = np.random.default_rng(3).normal(size=(64, 48)).astype(np.float16)
    assert np.array_equal(gram(x), gram(x.astype(np.float32)))
