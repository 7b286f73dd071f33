"""Positions a static operand saturates (engine/saturation.py, proofs/saturation.md): they set
no range, and readers that take codes still get the values the codes can represent."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db


def _bias_then_codes(tmp_path, bias: np.ndarray) -> tuple[str, np.ndarray]:
    """x @ W + bias, doubled by a Mul and read by a MatMul: every reader of the sum takes codes."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(16, 8)).astype(np.float32) * 0.1
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["sum"], name="bias"),
             helper.make_node("Mul", ["sum", "two"], ["doubled"], name="mul"),
             helper.make_node("MatMul", ["doubled", "eye"], ["y"], name="mm2")]
    constants = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b"),
                 numpy_helper.from_array(np.array(2, np.float32), "two"),
                 numpy_helper.from_array(np.eye(8, dtype=np.float32), "eye")]
    graph = helper.make_graph(
        nodes, "bias", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])], constants)
    path = str(tmp_path / "bias.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, rng.normal(size=(200, 16)).astype(np.float32)


def _quantized(path: str, x: np.ndarray):
    graph = load_model(path)
    calibration = calibrate(graph, {"x": x}, progress=False)
    reference = ort.InferenceSession(path).run(None, {"x": x})[0]
    model = quantize(graph, calibration, 8)
    return calibration, model, reference, model.run({"x": x})["y"]


def test_a_bias_channel_beyond_the_others_keeps_its_values_on_codes(tmp_path):
    """One bias channel at 50 against outputs near 1: the saturation rule leaves it out of the
    range, but the sum is read on codes, so the range must still hold it (it used to clip to
    the others' range: 3.7 dB)."""
    bias = np.zeros(8, np.float32)
    bias[0] = 50
    calibration, model, reference, got = _quantized(*_bias_then_codes(tmp_path, bias))
    assert "sum" in calibration.saturated and calibration.dropped_reach["sum"] > 49
    assert sqnr_db(reference, got) > 35
    assert np.allclose(got[:, 0], reference[:, 0], rtol=0.02)


def test_a_static_operand_beyond_what_codes_can_hold_saturates_with_a_note(tmp_path):
    """A mask-sized operand (-1e4) read on codes: including it in the sum's range would put
    every other value on code 0, so those positions saturate to the end code and the summary
    says so. (Downstream tensors still see -2e4 in calibration: a mask belongs before a node
    that runs in float, such as a Softmax, as in the attention tests of test_real_exports.)"""
    bias = np.zeros(8, np.float32)
    bias[0] = -1e4
    calibration, model, reference, got = _quantized(*_bias_then_codes(tmp_path, bias))
    assert "sum" in calibration.saturated
    assert any("'sum': positions a static operand puts beyond" in n for n in model.notes)
    assert np.all(np.isfinite(got))


def _same_pool(tmp_path, value: float, opset: int) -> str:
    """Conv -> Pad (one row and column at ``value``) -> MaxPool 3x3 stride 2 -> Conv: "SAME"
    max pooling. At opset 10 the pad constant is Pad's ``value`` attribute, at 11 and later
    its third input."""
    rng = np.random.default_rng(0)
    pads = [0, 0, 0, 0, 0, 0, 1, 1]
    constants = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w1"),
                 numpy_helper.from_array(rng.normal(size=(2, 4, 3, 3)).astype(np.float32), "w2")]
    if opset < 11:
        pad = helper.make_node("Pad", ["h"], ["p"], name="pad", pads=pads, value=value)
    else:
        pad = helper.make_node("Pad", ["h", "pads", "v"], ["p"], name="pad")
        constants += [numpy_helper.from_array(np.array(pads, np.int64), "pads"),
                      numpy_helper.from_array(np.array(value, np.float32), "v")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
             pad,
             helper.make_node("MaxPool", ["p"], ["m"], name="pool", kernel_shape=[3, 3],
                              strides=[2, 2]),
             helper.make_node("Conv", ["m", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "same_pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                           ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 4, 4])], constants)
    path = str(tmp_path / f"same_pool_{opset}.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


@pytest.mark.parametrize("opset", [10, 17])
def test_a_pad_constant_far_beyond_the_activations_saturates(tmp_path, opset):
    """A Pad's constant is a value the node selects at static positions, rescaled with x
    (v -> s*v): at -1e4, far beyond the activations, those positions take the end code and
    set no range (Corollary 15.3 (c)), in the attribute form (opset 10) as in the input form.
    At 0 (torch's default) nothing saturates."""
    x = np.random.default_rng(1).normal(size=(64, 1, 8, 8)).astype(np.float32)
    path = _same_pool(tmp_path, -1e4, opset)
    graph = load_model(path)
    calibration = calibrate(graph, {"x": x}, progress=False)
    model = quantize(graph, calibration, 8)
    assert "p" in calibration.saturated and calibration.stats["p"].max_abs < 100
    assert any("'p': positions a static operand puts beyond" in n for n in model.notes)
    reference = ort.InferenceSession(path).run(None, {"x": x})[0]
    assert sqnr_db(reference, model.run({"x": x})["y"]) > 35
    graph = load_model(_same_pool(tmp_path, 0.0, opset))
    assert not calibrate(graph, {"x": x}, progress=False).saturated


def _masked_attention(tmp_path, fill: str) -> str:
    """Scores x @ W over 8 keys, a padding mask from an int64 ``attention_mask`` as Hugging
    Face exports build it (Cast to bool, Unsqueeze, Where against finfo.min), a Softmax and a
    MatMul. ``fill``: "masked_fill", the mask applied by ``Where(keep, scores, finfo.min)``;
    "full_like", by ``Where(keep, scores, full_like(scores, -inf))`` as torch's legacy
    exporter writes it (ConstantOfShape of the scores' Shape, no constant of -inf in the
    graph); "added", ``Where(keep, 0, finfo.min)`` added to the scores."""
    rng = np.random.default_rng(0)
    lowest = np.array(np.finfo(np.float32).min, np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["scores"], name="qk"),
             helper.make_node("Cast", ["attention_mask"], ["keep"], name="cast",
                              to=TensorProto.BOOL),
             helper.make_node("Unsqueeze", ["keep", "one"], ["keep3"], name="unsqueeze")]
    if fill == "masked_fill":
        nodes.append(helper.make_node("Where", ["keep3", "scores", "lowest"], ["masked"],
                                      name="masked_fill"))
    elif fill == "full_like":
        nodes += [helper.make_node("Shape", ["scores"], ["shape"], name="shape"),
                  helper.make_node("ConstantOfShape", ["shape"], ["minus_inf"], name="full",
                                   value=numpy_helper.from_array(
                                       np.array([-np.inf], np.float32))),
                  helper.make_node("Where", ["keep3", "scores", "minus_inf"], ["masked"],
                                   name="masked_fill")]
    else:
        nodes += [helper.make_node("Where", ["keep3", "zero", "lowest"], ["mask"], name="mask"),
                  helper.make_node("Add", ["scores", "mask"], ["masked"], name="add_mask")]
    nodes += [helper.make_node("Softmax", ["masked"], ["weights"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["weights", "v"], ["y"], name="av")]
    # small scores, as a random-initialised LLM's: a masked key clipped to the range's end
    # takes about the weight of the others
    constants = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32) * 0.02,
                                         "w"),
                 numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "v"),
                 numpy_helper.from_array(np.array([1], np.int64), "one"),
                 numpy_helper.from_array(np.array(0, np.float32), "zero"),
                 numpy_helper.from_array(lowest, "lowest")]
    return _attention_file(tmp_path / "masked.onnx", nodes, constants)


def _attention_file(path, nodes: list, constants: list) -> str:
    """``nodes`` as a model of scores over 8 keys: x (n, 4, 8) and an int64
    ``attention_mask`` (n, 8) in, y (n, 4, 8) out, written to ``path``."""
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 8]),
                           helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                                         ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 8])], constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


@pytest.mark.parametrize("fill", ["added", "masked_fill", "full_like"])
def test_a_mask_calibration_never_selected_still_masks(tmp_path, fill):
    """A new-user trial: a KV-cache decoder's decode step calibrated on rows without padding
    (one new token: no causal mask to add) never selected finfo.min, so the masked sum took
    codes at the scores' range, and at run time a padded key clipped to the range's end and
    took attention weight (Llama, --no-wide-sums: 8.0 dB on padded rows, 14.8 with the mask
    kept in float). That the mask may select finfo.min is read off the graph, or off the
    values its static operand held where unselected (full_like's -inf): the sum is counted as
    saturated, and runs in float with its readers, as when calibration showed it."""
    path = _masked_attention(tmp_path, fill)
    rng = np.random.default_rng(1)
    unpadded = {"x": rng.normal(size=(64, 4, 8)).astype(np.float32),
                "attention_mask": np.ones((64, 8), np.int64)}
    padded = {"x": rng.normal(size=(32, 4, 8)).astype(np.float32),
              "attention_mask": (np.arange(8) >= rng.integers(0, 2, size=(32, 1))
                                 ).astype(np.int64)}
    graph = load_model(path)
    calibration = calibrate(graph, unpadded, progress=False)
    assert "masked" in calibration.saturated
    model = quantize(graph, calibration, 8, wide_sums=False)
    reference = ort.InferenceSession(path).run(None, padded)[0]
    assert sqnr_db(reference, model.run(padded)["y"]) > 30
    assert sqnr_db(reference, ort.InferenceSession(model.to_onnx("qdq").SerializeToString()
                                                    ).run(None, padded)[0]) > 30


def test_a_masked_sum_concatenated_with_a_sink_column_keeps_its_saturation(tmp_path):
    """A new-user trial's GPT-OSS: attention sinks append one constant logit per head to the
    masked scores (Concat along the keys), subtract the row's max, and drop that column after
    the Softmax. The Concat passed the scores' finfo.min positions on but, its input placed
    elsewhere in its output, did not carry them: they set its range, every real score fell on
    code 0 and attention went uniform (the export 5.4 dB, this graph 7.8 dB). A selection
    carries the positions holding the saturated values of its input."""
    lowest = np.array(np.finfo(np.float32).min, np.float32)
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["scores"], name="qk"),
             helper.make_node("Cast", ["attention_mask"], ["keep"], name="cast",
                              to=TensorProto.BOOL),
             helper.make_node("Unsqueeze", ["keep", "one"], ["keep3"], name="unsqueeze"),
             helper.make_node("Where", ["keep3", "zero", "lowest"], ["mask"], name="mask"),
             helper.make_node("Add", ["scores", "mask"], ["masked"], name="add_mask"),
             helper.make_node("Shape", ["scores"], ["shape"], name="shape", end=2),
             helper.make_node("Concat", ["shape", "one"], ["sink_shape"], name="sink_shape",
                              axis=0),
             helper.make_node("Expand", ["sink", "sink_shape"], ["sinks"], name="expand"),
             helper.make_node("Concat", ["masked", "sinks"], ["logits"], name="with_sink",
                              axis=-1),
             helper.make_node("ReduceMax", ["logits"], ["peak"], name="peak", axes=[-1]),
             helper.make_node("Sub", ["logits", "peak"], ["shifted"], name="shift"),
             helper.make_node("Softmax", ["shifted"], ["probs"], name="softmax", axis=-1),
             helper.make_node("Slice", ["probs", "start", "eight", "last"], ["weights"],
                              name="drop_sink"),
             helper.make_node("MatMul", ["weights", "v"], ["y"], name="av")]
    constants = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32) * 0.02,
                                         "w"),
                 numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "v"),
                 numpy_helper.from_array(rng.normal(size=(4, 1)).astype(np.float32), "sink"),
                 numpy_helper.from_array(np.array([1], np.int64), "one"),
                 numpy_helper.from_array(np.array([0], np.int64), "start"),
                 numpy_helper.from_array(np.array([8], np.int64), "eight"),
                 numpy_helper.from_array(np.array([-1], np.int64), "last"),
                 numpy_helper.from_array(np.array(0, np.float32), "zero"),
                 numpy_helper.from_array(lowest, "lowest")]
    path = _attention_file(tmp_path / "sink.onnx", nodes, constants)

    def padded(count: int) -> dict[str, np.ndarray]:
        return {"x": rng.normal(size=(count, 4, 8)).astype(np.float32),
                "attention_mask": (np.arange(8) < rng.integers(4, 9, size=(count, 1))
                                   ).astype(np.int64)}

    calibration_data, held = padded(64), padded(32)
    loaded = load_model(path)
    calibration = calibrate(loaded, calibration_data, progress=False)
    assert {"masked", "logits"} <= calibration.saturated
    model = quantize(loaded, calibration, 8)
    reference = ort.InferenceSession(path).run(None, held)[0]
    assert sqnr_db(reference, ort.InferenceSession(model.to_onnx("qdq").SerializeToString()
                                                    ).run(None, held)[0]) > 30
