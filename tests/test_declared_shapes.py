"""Custom ops declared with --operators: shapes through them from their declaration
(ptq_verify/engine/declared_shapes.py), and declarations for one domain."""

from __future__ import annotations

import json

import hostile
import models
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.catalog.toml_file import load_onnx_operators
from ptq_verify.engine import calibrate, plan_model, prepare, quantize
from ptq_verify.engine.declared_shapes import broadcast
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph

SCALED_RELU = hostile.declaration("ScaledRelu", "max(x, 0)*a", "ScaledRelu", a="2")


def _model():
    """Gemm -> com.example ScaledRelu -> Gemm -> ScaledRelu -> Gemm: ONNX's inference gives the
    custom nodes' outputs, and so every Gemm's after the first, no shape."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=size).astype(np.float32), f"w{i}")
            for i, size in enumerate([(16, 8), (8, 6), (6, 4)], start=1)]
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h1"], name="gemm1"),
             helper.make_node("ScaledRelu", ["h1"], ["r1"], name="srelu1", domain="com.example",
                              a=2.0),
             helper.make_node("Gemm", ["r1", "w2"], ["h2"], name="gemm2"),
             helper.make_node("ScaledRelu", ["h2"], ["r2"], name="srelu2", domain="com.example",
                              a=2.0),
             helper.make_node("Gemm", ["r2", "w3"], ["y"], name="gemm3")]
    graph = helper.make_graph(nodes, "custom", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 16])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", 4])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.example", 1)])


def test_a_custom_elementwise_op_passes_its_input_shape_on(tmp_path):
    """A new-user trial: the layers after a declared custom op lost their per-channel weights,
    output-aware rounding and bias correction, with no word said, for want of shapes."""
    ops = tmp_path / "ops.toml"
    ops.write_text(SCALED_RELU)
    table = OperatorTable(load_onnx_operators(ops), str(ops))
    graph = prepare(graph_from_onnx(_model()), table)
    assert graph.shape_of("r1") == ("N", 8) and graph.shape_of("r2") == ("N", 6)
    x = np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32)
    quantized = quantize(graph, calibrate(graph, x, bits=8, operators=table, progress=False), 8,
                         operators=table)
    for name in ("gemm2", "gemm3"):
        record = next(r for r in quantized.records if r.name == name)
        assert "per-channel weights" in record.note and "output-aware rounding" in record.note


def test_a_model_onnxruntime_cannot_run_gets_its_output_sqnr_from_the_simulation(tmp_path,
                                                                                  capsys):
    """onnxruntime cannot load a model of custom-domain ops; the written file was not measured
    at all (a new-user trial). The note now gives the simulated file's SQNR, saying so."""
    note = next(line for line in _quantized_notes(tmp_path, capsys, SCALED_RELU)
                if line.startswith("note: output SQNR"))
    assert "(ptq-verify's kernels: the file's arithmetic, simulated): y " in note
    assert float(note.split(": y ")[1].split(" dB")[0]) > 30


def test_a_custom_op_preparation_folds_away_leaves_the_model_quantized(tmp_path, capsys):
    """A declared ``a*x`` (affine) is folded into the Gemm before it by preparation; the
    model was then refused as one onnxruntime cannot load, its declared op types read off
    the prepared graph, which held none (a facts trial). Its written file holds none, so it
    runs in onnxruntime and is checked there."""
    notes = _quantized_notes(tmp_path, capsys, hostile.declaration(
        "ScaledRelu", "x*a", "com.example:ScaledRelu", a="2"))
    assert any("the written file holds none" in note and "ScaledRelu" in note
               for note in notes), notes
    note = next(line for line in notes if line.startswith("note: output SQNR"))
    assert "(onnxruntime): y " in note and float(note.split(": y ")[1].split(" dB")[0]) > 30


def _quantized_notes(tmp_path, capsys, declaration: str) -> list[str]:
    from ptq_verify.cli import main

    ops, model, calib = tmp_path / "ops.toml", tmp_path / "m.onnx", tmp_path / "x.npy"
    ops.write_text(declaration)
    model.write_bytes(_model().SerializeToString())
    np.save(calib, np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32))
    assert main(["quantize", str(model), "--calib", str(calib), "--operators", str(ops),
                 "-o", str(tmp_path / "q.onnx"), "--no-progress"]) == 0
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]


def test_an_attribute_a_custom_node_leaves_out_is_said_to_take_the_sample_value(tmp_path,
                                                                                capsys):
    """A trial's declaration bound a parameter (gamma = 2) to an attribute its custom nodes do
    not carry: the engine ran them with 2, which their kernel need not, and said nothing."""
    notes = _quantized_notes(tmp_path, capsys, hostile.declaration(
        "ScaledRelu", "max(x, 0)*a*g", "com.example:ScaledRelu", a="2", g="3"))
    assumed = [n for n in notes if "attributes the nodes leave out" in n]
    assert len(assumed) == 1
    assert "'srelu1' (ScaledRelu): g = 3" in assumed[0] and "a = " not in assumed[0]
    assert not any("attributes the nodes leave out" in n
                   for n in _quantized_notes(tmp_path, capsys, SCALED_RELU))


def test_audit_names_the_attributes_custom_nodes_leave_out(tmp_path, capsys):
    """audit is where a user looks before quantizing: it names them too, in its summary and
    in --json (the trial had found them in quantize's notes alone)."""
    from ptq_verify.cli import main

    ops, model = tmp_path / "ops.toml", tmp_path / "m.onnx"
    ops.write_text(hostile.declaration(
        "ScaledRelu", "max(x, 0)*a*g", "com.example:ScaledRelu", a="2", g="3"))
    model.write_bytes(_model().SerializeToString())
    assert main(["audit", str(model), "--operators", str(ops)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("attributes the nodes leave out")]
    assert len(lines) == 1 and "'srelu1' (ScaledRelu): g = 3" in lines[0]
    assert main(["audit", str(model), "--operators", str(ops), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["assumed_attributes"] == [f"node 'srelu{i}' (ScaledRelu): g = 3" for i in (1, 2)]


def test_an_assumed_attribute_beyond_float_range_is_written_as_the_grammar_writes_it(
        tmp_path, capsys):
    """A hostile-input hunt: a sample value of 1e400 was written out as its 401 digits in
    audit's line (and quantize's note) on attributes the nodes leave out."""
    from ptq_verify.cli import main

    ops, model = tmp_path / "ops.toml", tmp_path / "m.onnx"
    ops.write_text(hostile.declaration(
        "ScaledRelu", "max(x, 0)*a*g", "com.example:ScaledRelu", a="2", g="1e400"))
    model.write_bytes(_model().SerializeToString())
    assert main(["audit", str(model), "--operators", str(ops), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["assumed_attributes"][0] == "node 'srelu1' (ScaledRelu): g = 1e400"


@pytest.mark.parametrize(("shapes", "expected"), [
    ([("N", 8), ("N", 8)], ("N", 8)),
    ([("N", 8), (8,)], ("N", 8)),
    ([("N", 1, 5), (3, 1)], ("N", 3, 5)),
    ([(1,), ()], (1,)),
    ([("N", 8), ("M", 8)], None),  # two names: not told
    ([(None, 8), (4, 8)], None),
    ([(2, 8), (3, 8)], None),  # no broadcast
])
def test_broadcast_of_symbolic_shapes(shapes, expected):
    assert broadcast(shapes) == expected


def test_a_declaration_for_a_domain_leaves_the_standard_op_of_that_name_to_the_catalog(
        tmp_path):
    """A new-user trial: a declaration meant for com.mycompany:Relu took the standard Relu
    too, and `onnx_type = "com.mycompany:Relu"` was accepted but matched nothing. A
    ``domain:op_type`` declaration now takes that domain's nodes alone."""
    ops = tmp_path / "ops.toml"
    ops.write_text(hostile.declaration("DoubledRelu", "max(x, 0)*2", "com.example:Relu"))
    table = OperatorTable(load_onnx_operators(ops), str(ops))
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="standard"),
             helper.make_node("Relu", ["a"], ["y"], name="custom", domain="com.example")]
    model = helper.make_model(helper.make_graph(
        nodes, "relus", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    graph = prepare(graph_from_onnx(model), table)
    plans = {plan.name: plan for plan in plan_model(graph, table)}
    assert plans["standard"].operator == "Relu" and plans["custom"].operator == "DoubledRelu"
    x = np.random.default_rng(2).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_allclose(run_graph(graph, {"x": x}, table)["y"], np.maximum(x, 0) * 2)
    # quantize's table names the domain, as audit's does: both rows had read "Relu"
    records = quantize(graph, calibrate(graph, x, bits=8, operators=table, progress=False), 8,
                       operators=table).records
    assert {r.name: r.op_type for r in records} == {"standard": "Relu",
                                                    "custom": "com.example:Relu"}


@pytest.mark.parametrize(("expr", "refused"), [("max(x, alpha*x)", True),
                                               ("where(x >= 0, x, alpha*x)", False)])
def test_a_standard_op_declaration_is_compared_at_its_nodes_attribute_values(
        tmp_path, capsys, expr, refused):
    """LeakyRelu declared as max(x, alpha*x) is ONNX's at its sample alpha, 0.01, where it
    was compared with onnxruntime's kernel, and another function at a node's alpha = 2: the
    integer format's table of it had lost the model (4 dB held out, 40 in the qdq file; a
    facts trial). The node's own values are compared too, and such a node refused."""
    from ptq_verify.cli import main

    b = models.Builder(7)
    h = b.add("LeakyRelu", [b.dense("input", 64, 16)], alpha=2.0)
    (tmp_path / "m.onnx").write_bytes(b.model(b.dense(h, 16, 10), "leaky").SerializeToString())
    np.save(tmp_path / "x.npy", models.digits(64))
    (tmp_path / "ops.toml").write_text(hostile.declaration("MyLeaky", expr, "LeakyRelu",
                                                           alpha="0.01"))
    status = main(["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "x.npy"),
                   "--operators", str(tmp_path / "ops.toml"), "-o", str(tmp_path / "q.onnx"),
                   "--format", "integer", "--no-progress"])
    err = capsys.readouterr().err
    assert (status != 0) is refused and (tmp_path / "q.onnx").exists() is not refused
    if refused:
        assert "'leakyrelu1' (LeakyRelu) at its alpha = 2 the declared expression gives" in err
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(("expr", "refused"), [("min(max(x, 0), 6)", True),
                                               ("max(x, 0)", False)])
def test_a_standard_op_declaration_is_compared_over_its_nodes_calibrated_ranges(
        tmp_path, expr, refused):
    """Relu declared as min(max(x, 0), 6) agrees with onnxruntime's Relu on a standard
    normal's values, where it was compared; on inputs reaching 20 its integer file, a table of
    the declaration, gave 7 dB where the qdq file, which runs onnxruntime's Relu, gave 40 (a
    facts trial). quantize compares it over each node's calibrated input range too."""
    from ptq_verify.errors import UserError

    b = models.Builder(7)
    h = b.add("Relu", [b.dense("input", 64, 16)])
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 16, 10), "relu")))
    (tmp_path / "ops.toml").write_text(hostile.declaration("MyRelu", expr, "Relu"))
    table = OperatorTable(load_onnx_operators(tmp_path / "ops.toml"))
    calibration = calibrate(graph, 10 * models.digits(64), bits=8, operators=table,
                            progress=False)
    if not refused:
        assert quantize(graph, calibration, 8, operators=table).records
        return
    with pytest.raises(UserError, match=r"'relu1' \(Relu\): on its calibrated input range "
                                        r"\[-\d.*the declared expression gives 6 where "):
        quantize(graph, calibration, 8, operators=table)



def test_a_standard_op_declaration_is_compared_over_its_constant_inputs_values(tmp_path):
    """Mul declared as a*min(b, 6) agrees with onnxruntime's Mul on a standard normal's
    values; its node multiplies by a constant reaching 10, whose values it is compared on
    too (a facts trial: taken as given, its rule that of another function)."""
    from ptq_verify.errors import UserError

    b = models.Builder(7)
    h = b.add("Relu", [b.dense("input", 64, 16)])
    h = b.add("Tanh", [b.add("Mul", [h, b.const(np.linspace(0, 10, 16).astype(np.float32))])])
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 16, 10), "mul")))
    (tmp_path / "ops.toml").write_text(hostile.declaration("MyMul", "a*min(b, 6)", "Mul")
                                       .replace('expr', 'inputs = "a, b"\nexpr'))
    table = OperatorTable(load_onnx_operators(tmp_path / "ops.toml"))
    calibration = calibrate(graph, models.digits(64), bits=8, operators=table, progress=False)
    with pytest.raises(UserError, match=r"'mul1' \(Mul\): on its calibrated input ranges "
                                        r"\[0, \d.*\], \[0, 10\] the declared expression"):
        quantize(graph, calibration, 8, operators=table)
