"""Exports as graph cleaners rewrite them (benchmarks/export_cleaned_models.py: onnxslim's
defaults on a committed torch export) quantize as close to their float model as the export
they came from, on the same calibration and held-out data: a cleaner's rewriting (a MatMul and
its bias Add over 3-D tokens made a Gemm between two Reshapes) changes what the engine sees,
not what the model computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.engine.smoothed_calibration import smoothed_and_calibrated

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
# cleaned fixture -> (the export it was cleaned from, its data)
CLEANED = {"digits_pad.onnxslim.opset17.onnx": ("digits_pad.legacy.opset17.onnx", "digits")}


def _sqnr(name: str, data: str) -> float:
    """The 8-bit model's output SQNR against the float file, run by onnxruntime in the batches
    of 4 the export fixes, on the held-out data."""
    with np.load(FIXTURES / f"{data}.calib.npz") as calib, \
            np.load(FIXTURES / f"{data}.test.npz") as test:
        calib, test = dict(calib), dict(test)
    graph = load_model(FIXTURES / name)
    model = quantize(graph, calibrate(graph, calib, progress=False), 8)
    session = ort.InferenceSession(FIXTURES / name, providers=["CPUExecutionProvider"])
    count = len(test["input"])
    reference = np.concatenate([session.run(None, {"input": test["input"][i:i + 4]})[0]
                                for i in range(0, count, 4)])
    return sqnr_db(reference, model.run(test)["output"])


@pytest.mark.parametrize("cleaned", sorted(CLEANED))
def test_a_cleaned_export_quantizes_as_close_as_the_export_it_came_from(cleaned):
    """digits_pad's token projection, a Gemm with per-channel weights between two Reshapes,
    is held wide into its LayerNorm as the export's MatMul and Add are; the Reshape after it,
    which takes no per-channel codes, had requantized that sum to 8 bits per tensor:
    39.4 dB against the export's 43.7."""
    source, data = CLEANED[cleaned]
    assert _sqnr(cleaned, data) > _sqnr(source, data) - 0.5


def _norm_into_projection(gemm: bool) -> onnx.ModelProto:
    """A LayerNorm whose gamma has outlier channels (as a trained BERT's has) into a
    projection, as the export writes it (MatMul, bias Add) or as onnx-simplifier rewrites it
    (Reshape, Gemm, Reshape)."""
    batch, tokens, width = 4, 16, 32
    rng = np.random.default_rng(2)
    gamma = np.ones(width, np.float32)
    gamma[[3, 17]] = 30.0
    constants = {"gamma": gamma, "beta": (rng.normal(size=width) * 0.1).astype(np.float32),
                 "W": (rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32),
                 "b": (rng.normal(size=width) * 0.1).astype(np.float32)}
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["normed"])]
    if gemm:
        constants |= {"flat": np.array([batch * tokens, width]),
                      "tokens": np.array([batch, tokens, width])}
        nodes += [helper.make_node("Reshape", ["normed", "flat"], ["rows"]),
                  helper.make_node("Gemm", ["rows", "W", "b"], ["projected"]),
                  helper.make_node("Reshape", ["projected", "tokens"], ["y"])]
    else:
        nodes += [helper.make_node("MatMul", ["normed", "W"], ["projected"]),
                  helper.make_node("Add", ["projected", "b"], ["y"])]
    return _model(nodes, constants, [batch, tokens, width])


def _model(nodes: list, constants: dict[str, np.ndarray], shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, shape)], [numpy_helper.from_array(value, name)
                                              for name, value in constants.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _projection_into_residual(gemm: bool) -> onnx.ModelProto:
    """A transformer block's output projection into its residual sum and LayerNorm, as the
    export writes it (MatMul, bias Add over 3-D tokens) or as onnx-simplifier and onnxslim
    with fixed shapes rewrite it (Reshape, Gemm, Reshape); one weight column 20x the others,
    as the feed-forward output of a trained BERT has."""
    batch, tokens, width = 4, 16, 32
    rng = np.random.default_rng(0)
    weight = (rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32)
    weight[:, 3] *= 20
    constants = {"W": weight, "b": (rng.normal(size=width) * 0.1).astype(np.float32),
                 "gamma": np.ones(width, np.float32), "beta": np.zeros(width, np.float32)}
    if gemm:
        constants |= {"flat": np.array([batch * tokens, width]),
                      "tokens": np.array([batch, tokens, width])}
        nodes = [helper.make_node("Reshape", ["x", "flat"], ["rows"]),
                 helper.make_node("Gemm", ["rows", "W", "b"], ["projected"]),
                 helper.make_node("Reshape", ["projected", "tokens"], ["biased"])]
    else:
        nodes = [helper.make_node("MatMul", ["x", "W"], ["projected"]),
                 helper.make_node("Add", ["projected", "b"], ["biased"])]
    nodes += [helper.make_node("Add", ["biased", "x"], ["residual"]),
              helper.make_node("LayerNormalization", ["residual", "gamma", "beta"], ["y"])]
    return _model(nodes, constants, [batch, tokens, width])


def _held_out_sqnr(model: onnx.ModelProto, path: Path) -> float:
    """Output SQNR on held-out data of the model quantized as the command line does it
    (smoothing included)."""
    rng = np.random.default_rng(1)
    calib, test = (rng.normal(size=(count, 16, 32)).astype(np.float32) for count in (64, 32))
    onnx.save(model, path)
    graph = load_model(path)
    _, calibration = smoothed_and_calibrated(graph, {"x": calib}, 8)
    quantized = quantize(graph, calibration, 8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(None, {"x": test[i:i + 4]})[0]
                                for i in range(0, len(test), 4)])
    return sqnr_db(reference, quantized.run({"x": test})["y"])


def test_a_gemm_into_a_residual_sum_read_in_float_is_held_wide_as_the_matmul_is(tmp_path):
    """The Gemm's sum runs in float in every deployment (only the LayerNorm reads it), so the
    Gemm writes no n-bit codes for it: rounded to 8 bits per tensor, its outlier column had
    cost 21.7 dB against the MatMul form's 36.0 (all-MiniLM-L6-v2 simplified by onnx-simplifier:
    0.931 mean cosine against 0.996, docs/limits.md)."""
    assert _held_out_sqnr(_projection_into_residual(True), tmp_path / "gemm.onnx") > \
        _held_out_sqnr(_projection_into_residual(False), tmp_path / "matmul.onnx") - 3


def test_smoothing_reaches_a_gemm_through_the_reshape_a_simplifier_writes(tmp_path):
    """The LayerNorm's outlier channels are smoothed into the Gemm's weights through the
    Reshape before it, as into the MatMul of the export's form; the Reshape had stopped
    smoothing (all-MiniLM-L6-v2 simplified: 0.986 -> 0.995 mean cosine)."""
    assert _held_out_sqnr(_norm_into_projection(True), tmp_path / "gemm.onnx") > \
        _held_out_sqnr(_norm_into_projection(False), tmp_path / "matmul.onnx") - 1
