"""Wide sums (quantize.py ``_takes_wide``): a layer's integer accumulator read only by
element-wise sums and float nodes stays the integers it was computed as, not rounded to n
bits: a MatMul's accumulator into its bias Add, the bias sum into the residual Add, the residual
sum into the LayerNorm. On the tiny BERT with an outlier at one token of one channel (as
all-MiniLM-L6-v2's [CLS] token carries 224 in channel 99 of its residual sum, where the rest of
that channel stays under 1.3) that is closer to float than rounding every sum, every input of
an integer product stays n-bit codes, and every format runs it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from models import cnn, digits, output_unit
from test_channel_codes import FIXTURES, _data

from ptq_verify.engine import calibrate, load_model, prepare, quantize, sqnr_db
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph


def _token_outlier_bert(folder):
    """The tiny BERT whose position 0 has 20 in channel 3 of its position embedding (the
    table's other values are within 0.1): the residual stream's channel 3 is large at the
    first token only, so one scale for the channel wastes its levels at every other token.
    Changed in the file: the export fixes its sequence length, so loading folds the
    positions' rows into a constant."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(FIXTURES / "tiny_bert.legacy.opset17.onnx")
    weight = next(t for t in model.graph.initializer
                  if t.name == "bert.embeddings.position_embeddings.weight")
    table = numpy_helper.to_array(weight).copy()
    table[0, 3] = 20.0
    weight.CopyFrom(numpy_helper.from_array(table, weight.name))
    path = folder / "tiny_bert_outlier.onnx"
    onnx.save(model, path)
    return load_model(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    graph = _token_outlier_bert(tmp_path_factory.mktemp("bert"))
    calibration = calibrate(graph, _data("calib"), progress=False)
    return graph, quantize(graph, calibration, 8), quantize(graph, calibration, 8,
                                                           wide_sums=False)


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_wide_tensors_are_read_only_by_sums_and_float_nodes(models):
    graph, wide, narrow = models
    held = {name for name, code in wide.codes.items() if code.wide}
    producers, consumers = graph.producers(), graph.consumers()
    assert {producers[name].op_type for name in held} == {"MatMul", "Add"}
    assert not [name for name, code in narrow.codes.items() if code.wide]
    records = {r.name: r for r in wide.records}
    for name in held:
        for reader in consumers[name]:
            record = records[reader.name]
            # a sum, a node run in float, or a scale-invariant one (its output is the same on
            # the integers as on the values they stand for, with eps rescaled)
            assert record.op_type == "Add" or record.action.startswith(
                ("compensate", "reset the scale to 1")), name
    products = [n for n in graph.nodes if n.op_type == "MatMul"]
    for node in products:
        for name in node.inputs:
            code = wide.codes.get(name)
            assert code is None or code.high - code.low <= 255, f"{node.name} reads {name}"


def test_wide_sums_are_closer_to_float_than_sums_rounded_to_n_bits(models):
    graph, wide, narrow = models
    test = _data("test")
    reference = run_graph(graph, test, OperatorTable())["output"]
    gain = sqnr_db(reference, wide.run(test)["output"]) - sqnr_db(reference,
                                                                   narrow.run(test)["output"])
    assert gain > 2  # measured 3.1 dB (22.1 against 18.9)


@pytest.mark.parametrize("form", ["simulation", "integer", "qdq"])
def test_every_format_runs_wide_sums(models, form):
    graph, wide, _ = models
    test = _data("test")
    simulated = wide.run(test)["output"]
    exported = _session(wide.to_onnx(form)).run(None, test)[0]
    if form == "qdq":  # onnxruntime requantizes with its own float32 multipliers
        assert sqnr_db(simulated, exported) > 30
    else:
        scale = output_unit(wide, "output", simulated)
        assert np.max(np.abs(exported - simulated) * scale) < 0.5, f"{form} differs by a code"


@pytest.mark.parametrize("flag", [[], ["--no-wide-sums"]])
def test_cli_keeps_sums_wide_unless_told_not_to(tmp_path, capsys, flag):
    import json

    from ptq_verify.cli import main

    out = tmp_path / "q.onnx"
    assert main(["quantize", str(FIXTURES / "tiny_bert.legacy.opset17.onnx"), "--calib",
                 str(FIXTURES / "tiny_bert.calib.npz"), "-o", str(out), "--no-progress",
                 "--json", *flag]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    wide = [n for n in nodes if "held wide" in json.dumps(n)]
    assert bool(wide) == (not flag)


def test_a_shape_of_a_wide_sum_reads_its_codes_and_does_not_make_it_narrow():
    """A Shape is scale-invariant with no activation out: it reads the wide codes as they are
    (its output is their shape) rather than running in float, where a helper's GPT-2 export
    had it counted among the compensated nodes; and, a reader that takes any codes, it does
    not stop the sum it reads from being held wide (the Swin's patch-merging MatMul, read by
    two Shapes and a LayerNorm)."""
    name = "digits_swin.legacy.opset17.onnx"
    graph = load_model(FIXTURES / name)
    with np.load(FIXTURES / "digits_image.calib.npz") as data:
        model = quantize(graph, calibrate(graph, dict(data), progress=False), 8)
    records, consumers = {r.name: r for r in model.records}, graph.consumers()
    wide = {name for name, code in model.codes.items() if code.wide}
    shapes = [reader for name in wide for reader in consumers.get(name, [])
              if reader.op_type == "Shape"]
    assert shapes
    for node in shapes:
        assert records[node.name].action == "reset the scale to 1", node.name


def _gemm_codes(name: str) -> tuple[dict, dict]:
    """The codes quantize gives the torch digits MLP's outputs (Linear -> LayerNorm -> GELU ->
    Linear -> Softmax), with its Gemms' outputs by node name."""
    graph = load_model(FIXTURES / name)
    with np.load(FIXTURES / "digits.calib.npz") as data:
        model = quantize(graph, calibrate(graph, dict(data), progress=False), 8)
    gemms = {n.name: model.codes[n.outputs[0]] for n in graph.nodes if n.op_type == "Gemm"}
    return model.codes, gemms


def test_a_layers_own_output_is_held_wide_into_nodes_in_float_alone():
    # the first Gemm into the LayerNorm (fused, or in parts in float), the last into the
    # Softmax: both run in float on the exact accumulator, fused and in parts alike
    fused_codes, fused = _gemm_codes("digits_mlp.legacy.opset17.onnx")
    parts_codes, parts = _gemm_codes("digits_mlp.legacy.opset13.onnx")
    assert len(fused) == len(parts) == 2
    assert all(code.wide for code in [*fused.values(), *parts.values()])
    # a layer's output read by a sum or a table of codes (the digits CNN's Conv -> Sigmoid)
    # stays n-bit codes, as QLinearConv writes them
    graph = prepare(graph_from_onnx(cnn("Sigmoid")))
    codes = quantize(graph, calibrate(graph, digits(64, True), progress=False), 8).codes
    conv = next(n for n in graph.nodes if n.op_type == "Conv")
    assert not codes[conv.outputs[0]].wide and codes[conv.outputs[0]].high <= 255
