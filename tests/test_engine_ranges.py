"""Where the engine spends its codes: unsigned ranges, outputs read off the exact accumulator,
aligned sums taken finer than their inputs, MSE-clipped weights."""

from __future__ import annotations

import importlib

import models
import numpy as np
import onnxruntime as ort
import pytest

from ptq_verify.engine import Calibration, TensorStats, calibrate, prepare, quantize, sqnr_db
from ptq_verify.engine.quantize import _common_scale, weight_reach
from ptq_verify.engine.quantized import Code
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph

# the module (ptq_verify.engine.quantize names the function there)
quantize_module = importlib.import_module("ptq_verify.engine.quantize")


def _quantized(proto, image: bool, bits: int = 8, data=None, **options):
    graph = prepare(graph_from_onnx(proto))
    data = models.digits(150, image) if data is None else data
    return graph, quantize(graph, calibrate(graph, data, progress=False), bits, **options)


def _onnxruntime(model, test) -> np.ndarray:
    session = ort.InferenceSession(model.to_onnx().SerializeToString())  # default optimizations
    return session.run(None, {"input": test})[0]


def test_input_never_negative_in_calibration_is_unsigned_and_clips_negatives_to_zero():
    _, model = _quantized(models.mlp("Relu"), False)
    assert model.codes["input"].unsigned and model.codes["input"].high == 255
    test = models.digits(20, offset=400)
    assert np.array_equal(model.run(-test)["logits"], model.run(np.zeros_like(test))["logits"])


def test_codes_at_the_float32_maximum_read_back_finite_in_the_qdq_file():
    """An input calibrated out to finfo(float32).max (an additive mask at its minimum) is
    127 codes of 1/scale, and 1/scale rounded to float32 lies just above the exact value:
    the qdq file's DequantizeLinear read the end code back as inf. Its stored scale is the
    next float32 below, as the integer and simulation formats' factors were."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Neg", ["input"], ["output"])], "neg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    big = np.finfo(np.float32).max
    data = np.tile(np.array([[-big, big, 1.0, 0.0]], np.float32), (8, 1))
    _, model = _quantized(proto, False, data=data)
    qdq = model.to_onnx("qdq")
    constants = {t.name: numpy_helper.to_array(t) for t in qdq.graph.initializer}
    grid, = (n for n in qdq.graph.node if n.op_type == "QuantizeLinear"
             and n.input[0] == "input")
    with np.errstate(over="ignore"):
        end = np.float32(model.codes["input"].high) * constants[grid.input[1]]
    assert np.isfinite(end) and end >= big * np.float32(0.999)


def test_input_negative_in_calibration_stays_signed():
    _, model = _quantized(models.mlp("Relu"), False, data=models.digits(150) - 0.5)
    assert not model.codes["input"].unsigned


@pytest.mark.parametrize("proto, tensor, unsigned", [
    (models.relu_branches_concat(), "concat1", True),
    (models.branches_concat(), "concat1", False),  # a Tanh branch: negative codes
    (models.squeeze_excite(), "mul1", True),       # Relu features times a Sigmoid gate
    (models.squeeze_excite(), "globalaveragepool1", True),
])
def test_nonnegative_preserving_nodes_of_nonnegative_inputs_are_unsigned(proto, tensor, unsigned):
    _, model = _quantized(proto, True)
    assert model.codes[tensor].unsigned is unsigned


@pytest.mark.parametrize("constant, unsigned", [(0.5, True), (-0.5, False)])
def test_constant_inputs_decide_nonnegativity_by_their_values(constant, unsigned):
    _, model = _quantized(models.scaled_by_constant(constant), False)
    assert model.codes["mul1"].unsigned is unsigned


@pytest.mark.parametrize("name", sorted(models.TOPOLOGIES))
@pytest.mark.parametrize("bits", [4, 8])
def test_output_dequantized_from_the_accumulator_matches_onnxruntime(name, bits):
    build, image = models.TOPOLOGIES[name]
    _, model = _quantized(build(), image, bits)
    test = models.digits(40, image, offset=500)
    simulated = model.run(test)["logits"]
    assert np.array_equal(_onnxruntime(model, test), simulated)
    integers = simulated * model.output_scales["logits"]
    assert np.allclose(integers, np.round(integers), atol=1e-3)
    assert np.abs(integers).max() > 2 ** (bits - 1), "read before any n-bit requantization"


@pytest.mark.parametrize("name", ["mlp_relu", "residual"])
def test_accumulator_output_beats_requantized_codes(name):
    build, image = models.TOPOLOGIES[name]
    graph, model = _quantized(build(), image, 4)
    _, codes = _quantized(build(), image, 4, integer_outputs=True)
    test = models.digits(60, image, offset=500)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    requantized = codes.run(test)["logits"] / codes.output_scales["logits"]
    assert np.array_equal(codes.run(test)["logits"], np.round(codes.run(test)["logits"]))
    assert sqnr_db(reference, model.run(test)["logits"]) > sqnr_db(reference, requantized)


def test_sums_align_finer_than_every_input_and_selections_at_the_coarsest():
    codes = [Code("a", 2.0, 0, 255), Code("b", 3.0, -127, 127)]
    common = _common_scale(codes, selection=False)
    finest = max(c.scale for c in codes)
    assert common > finest, "a sum is taken finer than every input"
    assert (common / finest).is_integer(), "the finest input enters the sum exactly"
    reach = sum(max(abs(c.low), abs(c.high)) / c.scale for c in codes)
    assert reach * common < 2**24, "and the integer sum stays exact in float32"
    assert _common_scale(codes, selection=True) == min(c.scale for c in codes)
    wide = [Code("a", 1e6, -127, 127), Code("b", 1.0, -127, 127)]
    common = _common_scale(wide, selection=False)
    assert 1.0 <= common < 1e6 and 127 * (common + common / 1e6) < 2**24


def test_weight_reach_clips_an_outlier_at_4_bits_and_reduces_the_error():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((2, 64))
    weight[0, 0] = 8.0
    reach = weight_reach(weight, (1,), 7)
    peak = np.abs(weight).max(axis=1, keepdims=True)
    assert reach[0, 0] < peak[0, 0]

    def error(r):
        step = r / 7
        return np.sum((np.clip(np.round(weight / step), -7, 7) * step - weight) ** 2, axis=1)

    assert np.all(error(reach) <= error(peak))


@pytest.mark.parametrize("levels", [1, 3, 127])
@pytest.mark.parametrize("shape,axes", [((200, 6), (1,)), ((200, 12), (1,)), ((40, 200), (0,)),
                                        ((6, 3, 3, 3), (1, 2, 3)), ((30, 20), (0, 1))])
def test_weight_reach_leaving_the_search_early_finds_what_every_fraction_finds(
        shape, axes, levels):
    """The search drops a slice once its largest values' clipping error passes its best
    error; trying every fraction on every slice must choose the same clipping values."""
    rng = np.random.default_rng(len(shape) + levels)
    weight = (rng.standard_t(2, size=shape) * rng.uniform(0.1, 3, size=shape)).astype(np.float32)
    weight.reshape(-1)[:5] = 0.0  # slices with ties and zeros
    weight[0] = 0.0  # a slice, or part of one, all zero
    peak = np.abs(weight.astype(np.float64)).max(axis=axes, keepdims=True)
    best, best_error = peak, np.full(peak.shape, np.inf)
    for fraction in np.linspace(1.0, 0.5, 26):
        reach = peak * fraction
        step = np.where(reach > 0, reach / levels, 1.0)
        error = np.sum((np.clip(np.round(weight / step), -levels, levels) * step - weight) ** 2,
                       axis=axes, keepdims=True)
        best, best_error = np.where(error < best_error, reach, best), np.minimum(error,
                                                                                  best_error)
    found = weight_reach(weight, axes, levels)
    assert found.shape == best.shape
    np.testing.assert_allclose(found, best, rtol=1e-12)


def test_integer_weights_stay_in_the_n_bit_range():
    _, model = _quantized(models.cnn("Relu"), True, 4, per_channel=True)
    weights = [v for step in model.steps for k, v in getattr(step, "constants", {}).items()
               if k.startswith("W")]
    assert len(weights) == 2 and max(np.abs(w).max() for w in weights) == 7


def test_a_float16_tensor_of_small_values_gets_the_histogram_of_its_float32_values():
    """A new-user trial on a model.half() export at --bits 4: a float16 tensor whose values
    stay below BINS / 65504 had its bin indices computed in float16, which overflowed to inf,
    and the calibration refused it as 'infinite or NaN values' it never held."""
    values = np.random.default_rng(0).normal(size=(64, 16)) * 0.01
    half, single = TensorStats(), TensorStats()
    half.update(values.astype(np.float16))
    single.update(values.astype(np.float16).astype(np.float32))
    assert half.top == single.top
    assert np.array_equal(half.histogram, single.histogram)


def test_auto_calibration_clips_mse_optimally_only_at_few_levels():
    stats = TensorStats()
    stats.update(np.concatenate([np.random.default_rng(0).standard_normal(5000), [40.0]]))
    auto = Calibration({"t": stats}, "auto")
    assert auto.clip("t", 7) == stats.mse_clip(7) < stats.max_abs
    assert auto.clip("t", 127) == auto.clip("t", 31) == stats.max_abs


def test_a_tensor_read_only_by_clip_takes_the_clip_range_and_unsigned_codes():
    # Clip(0, 6) = clip(x, lo, hi): codes clipped to its range first change nothing, so the
    # BatchNorm-folded convolution before it spends all 2^n codes on [0, max output]
    graph, model = _quantized(models.mobile_block(), True)
    stats = calibrate(graph, models.digits(150, True), progress=False).stats
    for before, clip in (("batchnormalization1", "clip1"), ("batchnormalization2", "clip2")):
        code = model.codes[before]
        assert code.unsigned and code.high == 255
        assert stats[before].minimum < 0  # negative values, which the Clip cuts off
        assert np.isclose(code.scale, 255 / stats[clip].maximum)
        assert model.codes[clip].unsigned
    assert model.codes["pad1"].unsigned  # pads with 0: a selection of unsigned codes
    test = models.digits(50, True, offset=400)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    assert sqnr_db(reference, model.run(test)["logits"]) > 30


def test_a_mask_sets_no_range_and_a_bias_does():
    """Positions where a static operand lies beyond any activation (a mask at float32's
    minimum) are dropped from the range; a bias, within the activations' reach, keeps all."""
    from ptq_verify.engine.saturation import kept_positions

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    mask = np.where(rng.random((2, 1, 1, 4)) < 0.5, np.finfo(np.float32).min, 0)
    mask = mask.astype(np.float32)
    kept = kept_positions(scores + mask, mask)
    np.testing.assert_array_equal(kept, np.broadcast_to(mask == 0, scores.shape))
    for bias in (0.1 * rng.normal(size=4), np.full(4, 5.0)):  # small, and past |activation|
        assert kept_positions(scores + bias.astype(np.float32), bias) is None


def test_calibration_batches_follow_the_memory_budget():
    from ptq_verify.engine.data import BudgetBatches
    from ptq_verify.graph import Graph, TensorInfo

    feeds = {"x": np.arange(20.0).reshape(20, 1)}
    graph = Graph([], [TensorInfo("x", ("batch", 1), np.dtype(np.float32))], [], {})
    plan = BudgetBatches(feeds, graph, batch_size=8, budget=300)
    sizes = []
    for batch in plan:
        sizes.append(len(batch["x"]))
        plan.held(100 * sizes[-1], sizes[-1])  # 100 bytes per sample: 3 fit
    assert sizes == [4, 3, 3, 3, 3, 3, 1]
    np.testing.assert_array_equal(
        np.concatenate([b["x"] for b in BudgetBatches(feeds, graph, 8, 10**9)]), feeds["x"])


def test_a_tensor_zero_on_all_calibration_data_does_not_set_a_concat_scale():
    """A new-user trial: DeiT's class and distillation tokens (zero in a randomly initialised
    model) are concatenated to the patch embeddings; their scale, set by no data (1), was the
    coarsest, so the patch embeddings were rounded to integers (3.1 dB on the export)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w")
    first = numpy_helper.from_array(np.array([0], np.int64), "first")
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Gather", ["patches", "first"], ["picked"], axis=1),
         helper.make_node("Mul", ["picked", "zero"], ["token"]),  # zero on every sample
         helper.make_node("Concat", ["token", "patches"], ["joined"], axis=1),
         helper.make_node("MatMul", ["joined", "w"], ["output"])], "zero_token",
        [helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["n", 4, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 5, 8])],
        [weight, first, zero]), opset_imports=[helper.make_opsetid("", 17)])
    data = {"patches": rng.uniform(-1.5, 1.5, (32, 4, 8)).astype(np.float32)}
    graph = prepare(graph_from_onnx(proto))
    model = quantize(graph, calibrate(graph, data, progress=False), 8)
    assert model.codes["joined"].scale == model.codes["patches"].scale
    reference = run_graph(graph, data, OperatorTable())["output"]
    assert sqnr_db(reference, model.run(data)["output"]) > 30



@pytest.mark.parametrize("read_all", [False, True])
def test_a_tensor_read_by_constant_index_selections_takes_the_range_of_what_they_read(
        read_all, monkeypatch):
    """The pairwise products of feature vectors, of which a Gather by constant indices (after
    a Flatten; a Shape reads the layout alone) reads the upper triangle: the diagonal no
    reader selects may clip, so the products' codes cover the elements read, finer codes
    for them, and the logits gain on held-out digits. A ReduceSum of every product reads
    the diagonal too: the products' own range."""
    def run(proto) -> tuple[float, float]:
        graph = prepare(graph_from_onnx(proto))
        calibration = calibrate(graph, models.digits(1000), progress=False)
        model = quantize(graph, calibration, 8)
        test = models.digits(300, offset=1200)
        reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
        simulated = model.run(test)["logits"]
        for form in ("simulation", "integer"):  # the clipped codes, alike in every format
            written = ort.InferenceSession(model.to_onnx(form).SerializeToString()).run(
                None, {"input": test})[0]
            assert (np.abs(written - simulated) * model.output_scales["logits"]).max() < 0.5
        return (model.codes["matmul1"].scale * calibration.stats[ranged].max_abs,
                sqnr_db(reference, simulated))

    ranged = "matmul1" if read_all else "gather1"
    stats = calibrate(prepare(graph_from_onnx(models.pairwise_gather())), models.digits(1000),
                      progress=False).stats
    assert stats["matmul1"].max_abs > 1.5 * stats["gather1"].max_abs  # the diagonal dwarfs them
    codes, sqnr = run(models.pairwise_gather(read_all))
    assert np.isclose(codes, 127)
    monkeypatch.setattr(quantize_module._Builder, "_copied_ends", lambda self, tensor: [])
    ranged = "matmul1"
    _, own = run(models.pairwise_gather(read_all))
    assert sqnr == own if read_all else sqnr > own + 1


def test_an_output_concat_of_boxes_and_scores_keeps_each_input_at_its_own_scale():
    """A newcomer trial of nudenet's YOLOv8 detector: its output Concat joins boxes (0 to 320)
    and class scores (a Sigmoid, 0 to 1); brought to the boxes' scale, every score below 1.3
    became code 0 in the file, and no detection was left. Read in float (a graph output
    dequantized at once), the selection runs in float on each input's own codes."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "w")
    boxes = numpy_helper.from_array(np.array(320.0, np.float32), "size")
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Sigmoid", ["h"], ["unit"]),
         helper.make_node("Mul", ["unit", "size"], ["box"]),
         helper.make_node("Sigmoid", ["h"], ["score"]),
         helper.make_node("Concat", ["box", "score"], ["output"], axis=1)], "boxes_scores",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 12])],
        [weight, boxes]), opset_imports=[helper.make_opsetid("", 17)])
    data = {"x": rng.standard_normal((64, 8)).astype(np.float32)}
    graph = prepare(graph_from_onnx(proto))
    model = quantize(graph, calibrate(graph, data, progress=False), 8)
    test = rng.standard_normal((32, 8)).astype(np.float32)
    reference = run_graph(graph, {"x": test}, OperatorTable())["output"]
    session = ort.InferenceSession(model.to_onnx().SerializeToString())
    scores = session.run(None, {"x": test})[0][:, 6:]
    assert sqnr_db(reference[:, 6:], scores) > 30


def test_a_channel_of_zero_weights_and_a_denormal_bias_takes_the_widest_channel_s_scale():
    """A newcomer trial of PP-OCRv4's recognizer (paddle2onnx): channels of all-zero weights
    and a bias of 1.9e-25 took a per-channel scale of 6.8e26, at which the constant added
    two nodes later reached beyond int32, and that sum of 240 channels ran in float."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 4, 1, 1)).astype(np.float32)
    weight[0] = 0.0
    weight[1] *= 100.0  # channels far apart: per-channel codes pay
    bias = rng.standard_normal(64).astype(np.float32) * 0.1
    bias[0] = 1.9e-25
    after = rng.standard_normal((4, 64, 1, 1)).astype(np.float32)
    constants = [numpy_helper.from_array(v, n) for v, n in (
        (weight, "w"), (bias, "b"), (after, "w2"), (np.array(0.9, np.float32), "gain"),
        (np.array(0.5, np.float32), "shift"))]
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["h"], name="conv"),
         helper.make_node("Mul", ["h", "gain"], ["scaled"], name="affine_scale"),
         helper.make_node("Add", ["scaled", "shift"], ["shifted"], name="affine_shift"),
         helper.make_node("Relu", ["shifted"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2"], ["output"], name="conv2")], "dead_channel",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 6, 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4, 6, 6])],
        constants), opset_imports=[helper.make_opsetid("", 17)])
    data = {"x": rng.standard_normal((32, 4, 6, 6)).astype(np.float32)}
    graph, model = _quantized(proto, image=True, data=data)
    shift = next(r for r in model.records if r.name == "affine_shift")
    assert "compensate" not in shift.action, shift.note
    reference = run_graph(graph, data, OperatorTable())["output"]
    assert sqnr_db(reference, model.run(data)["output"]) > 20  # as in float: 21.7 dB


@pytest.mark.parametrize("form", ["qdq", "integer"])
def test_a_softmax_reshaped_into_the_output_is_not_rounded_to_codes(form):
    """A newcomer trial of PP-OCRv4's recognizer, which ends in Softmax -> Reshape: the
    Softmax's probabilities were requantized to 8 bits for the Reshape to copy into the
    output, dequantized at once. The copy now runs in float with them, in every format."""
    from onnx import TensorProto, helper, numpy_helper

    from ptq_verify.engine.quantize import COPIED_OUT_REASON

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((16, 40)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 4, 10], np.int64), "shape")
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Softmax", ["h"], ["p"], axis=-1, name="sm"),
         helper.make_node("Reshape", ["p", "shape"], ["output"], name="rs")], "softmax_out",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 4, 10])],
        [weight, shape]), opset_imports=[helper.make_opsetid("", 17)])
    graph = prepare(graph_from_onnx(proto))
    model = quantize(graph, calibrate(graph, {"x": rng.standard_normal((64, 16)).astype(
        np.float32)}, progress=False), 8)
    assert {r.name: r.why for r in model.records}["rs"] == COPIED_OUT_REASON
    session = ort.InferenceSession(model.to_onnx(form).SerializeToString())
    got = session.run(None, {"x": rng.standard_normal((32, 16)).astype(np.float32)})[0]
    # probabilities rounded to 8-bit codes would take at most 256 values
    assert len(np.unique(got)) > 256
