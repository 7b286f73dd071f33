"""What exporters write: Constant in every attribute form, ConstantOfShape, shape arithmetic,
Cast, boolean masks, Identity, Dropout, opsets 13 to 21; integer-only inputs; op types nobody
declared. Each model quantizes and runs in onnxruntime, or is refused in one line."""

from __future__ import annotations

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, prepare, quantize, sqnr_db
from ptq_verify.errors import UserError
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph
from ptq_verify.graph.static import fold_constants


def _constant(name: str, **attr) -> onnx.NodeProto:
    node = helper.make_node("Constant", [], [name], name=f"const_{name}")
    for key, value in attr.items():  # an empty list needs its type said
        kind = onnx.AttributeProto.INTS if isinstance(value, list) and not value else None
        node.attribute.append(helper.make_attribute(key, value, attr_type=kind))
    return node


def _constants_model(opset: int) -> onnx.ModelProto:
    """[N, 64] -> Gemm -> scaled, shifted, reshaped by Constants of every attribute form and a
    shape subgraph (Shape, Gather, Unsqueeze, Concat, Slice, Reshape, Expand, Range, Cast,
    ConstantOfShape), through Identity and Dropout, masked by Where/Equal/Not/And -> [N, 8]."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(8, 64)).astype(np.float32) * 0.2, "w")
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([0.5, -0.25], np.float32), "sv"),
        numpy_helper.from_array(np.array([1, 6], np.int64), "si"), [8])
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], name="gemm", transB=1),
        _constant("scalar", value=numpy_helper.from_array(np.array(1.5, np.float32))),
        _constant("vector", value=numpy_helper.from_array(
            rng.normal(size=8).astype(np.float32))),
        _constant("vf", value_float=0.25),
        _constant("vfs", value_floats=[0.1] * 8),
        _constant("vi", value_int=1),
        _constant("vis", value_ints=[-1, 8]),
        _constant("empty", value_ints=[]),
        _constant("sparse", sparse_value=sparse),
        helper.make_node("Mul", ["h", "scalar"], ["m1"], name="mul_scalar"),
        helper.make_node("Add", ["m1", "vector"], ["a1"], name="add_vector"),
        helper.make_node("Add", ["a1", "sparse"], ["a2"], name="add_sparse"),
        helper.make_node("Mul", ["a2", "vfs"], ["m2"], name="mul_floats"),
        helper.make_node("Add", ["m2", "vf"], ["a3"], name="add_float"),
        # shape arithmetic on the activation's runtime shape
        helper.make_node("Shape", ["a3"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "vi"], ["width"], name="gather_width", axis=0),
        helper.make_node("Unsqueeze", ["width", "zero_axis"], ["width1"], name="unsqueeze"),
        helper.make_node("Slice", ["shape", "zero_axis", "one_axis"], ["batch1"], name="slice"),
        helper.make_node("Concat", ["batch1", "width1"], ["shape2"], name="concat", axis=0),
        helper.make_node("Reshape", ["a3", "vis"], ["r1"], name="reshape"),
        helper.make_node("Expand", ["r1", "shape2"], ["e1"], name="expand"),
        helper.make_node("Cast", ["width"], ["width_f"], name="cast_width",
                         to=TensorProto.FLOAT),
        helper.make_node("Range", ["zero_f", "width_f", "one_f"], ["positions"], name="range"),
        helper.make_node("ConstantOfShape", ["width1"], ["threes"], name="const_of_shape",
                         value=numpy_helper.from_array(np.array([3.0], np.float32))),
        helper.make_node("Less", ["positions", "threes"], ["early"], name="less"),
        helper.make_node("Equal", ["positions", "threes"], ["at3"], name="equal"),
        helper.make_node("Not", ["at3"], ["not3"], name="not"),
        helper.make_node("And", ["early", "not3"], ["mask"], name="and"),
        helper.make_node("Identity", ["e1"], ["i1"], name="identity"),
        helper.make_node("Dropout", ["i1"], ["d1"], name="dropout"),
        helper.make_node("Where", ["mask", "d1", "zero_f"], ["y"], name="where"),
    ]
    inits = [w, numpy_helper.from_array(np.array([0], np.int64), "zero_axis"),
             numpy_helper.from_array(np.array([1], np.int64), "one_axis"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one_f")]
    graph = helper.make_graph(
        nodes, "constants",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("opset", range(13, 22))
def test_constants_and_shape_arithmetic_quantize_at_every_opset(opset, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_constants_model(opset), path)
    graph = load_model(path)
    assert not any(n.op_type == "Constant" for n in graph.nodes)
    model = quantize(graph, calibrate(graph, models.digits(80), progress=False), 8)
    test = {"x": models.digits(40, offset=300)}
    reference = ort.InferenceSession(str(path)).run(None, test)[0]
    simulated = model.run(test)["y"]
    exported = ort.InferenceSession(model.to_onnx().SerializeToString()).run(None, test)[0]
    assert np.max(np.abs(exported - simulated) * model.output_scales["y"]) < 0.5
    assert np.array_equal(reference[:, 3:] == 0, simulated[:, 3:] == 0)
    assert sqnr_db(reference, simulated) > 30


def _integer_only_model(table_shape: tuple[int, ...]) -> onnx.ModelProto:
    """int64 ids -> Gather(float table) -> Relu."""
    table = np.random.default_rng(1).normal(size=table_shape).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["rows"], name="embed"),
         helper.make_node("Relu", ["rows"], ["y"], name="relu")],
        "ids", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5, *table_shape[1:]])],
        [numpy_helper.from_array(table, "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("attr", [
    {"value": numpy_helper.from_array(np.array(1.5, np.float32))},
    {"value": numpy_helper.from_array(np.arange(6, dtype=np.float16).reshape(2, 3))},
    {"value": numpy_helper.from_array(np.array([True, False]))},
    {"value": numpy_helper.from_array(np.array([-3, 7], np.int8))},
    {"value_float": 0.1}, {"value_floats": [0.1, -2.5]}, {"value_floats": []},
    {"value_int": -4}, {"value_ints": [-1, 8]}, {"value_ints": []},
    {"value_string": "text"},
])
def test_a_constant_folds_to_what_the_reference_evaluator_computes(attr):
    """Folding reads a Constant's number forms itself (static._constant_value) and leaves
    the others to onnx's reference evaluator: each form gives that evaluator's values and
    element type (the sparse form, which it lacks, is tested with the rest of the model
    above)."""
    from onnx.reference import ReferenceEvaluator

    def model(outputs: list[str]) -> onnx.ModelProto:  # the constant read by a Where
        return helper.make_model(helper.make_graph(
            [_constant("c", **attr), helper.make_node("Where", ["cond", "c", "c"], ["y"])],
            "c", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs]),
            opset_imports=[helper.make_opsetid("", 17)])

    expected = np.asarray(ReferenceEvaluator(model(["c"])).run(None, {"cond": True})[0])
    graph = graph_from_onnx(model(["y"]))
    fold_constants(graph, OperatorTable())
    folded = graph.initializers["c"]
    assert folded.dtype == expected.dtype and folded.shape == expected.shape
    assert np.array_equal(folded, expected)


def test_token_ids_select_rows_of_a_table_that_is_a_weight(tmp_path):
    path = tmp_path / "ids.onnx"
    onnx.save(_integer_only_model((20, 6)), path)
    graph = load_model(path)
    ids = np.random.default_rng(2).integers(0, 20, size=(30, 5))
    model = quantize(graph, calibrate(graph, {"ids": ids}, progress=False), 8)
    assert model.counts()["integer"] == 2
    reference = run_graph(graph, {"ids": ids}, OperatorTable())["y"]
    assert sqnr_db(reference, model.run({"ids": ids})["y"]) > 35


def test_a_run_with_no_node_on_integers_is_an_error(tmp_path, capsys):
    """A scalar table selected by ids stays static (as a mask does): nothing to quantize."""
    path = tmp_path / "ids.onnx"
    onnx.save(_integer_only_model((1,)), path)
    graph = load_model(path)
    ids = np.zeros((4, 5), np.int64)
    with pytest.raises(UserError, match="no node runs on integer codes"):
        quantize(graph, calibrate(graph, {"ids": ids}, progress=False), 8)
    np.savez(tmp_path / "c.npz", ids=ids)
    code = main(["quantize", str(path), "--calib", str(tmp_path / "c.npz"), "-o",
                 str(tmp_path / "q.onnx"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no node runs on integer codes" in err and "\n" not in err
    assert not (tmp_path / "q.onnx").exists()


def _refused_in_one_line(graph: onnx.GraphProto, names: str, tmp_path, capsys):
    """Save the model, quantize it by the CLI on digits; it must be refused in one line that
    ``names`` the node, with exit 2 and nothing written. Returns the model's path."""
    path = tmp_path / f"{graph.name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    np.save(tmp_path / "c.npy", models.digits(10))
    code = main(["quantize", str(path), "--calib", str(tmp_path / "c.npy"), "-o",
                 str(tmp_path / "q.onnx"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and names in err and "\n" not in err
    assert not (tmp_path / "q.onnx").exists()
    return path


def test_an_undeclared_op_type_is_refused_in_one_line(tmp_path, capsys):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Det", ["r"], ["y"], name="det")],
        "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = _refused_in_one_line(graph, "'det' (Det)", tmp_path, capsys)
    assert main(["audit", str(path)]) == 0
    assert "unknown op type Det: det" in capsys.readouterr().out


def test_a_topk_runs_on_codes_its_indices_untouched_in_every_format(tmp_path, capsys):
    """TopK (once refused in one line: two outputs of different kinds) is declared by its
    values' witness, its int64 indices by ArgMax's (``index_outputs``): the values pass the
    scale through, the indices are no activation, a Gather by them reads a table, and its
    input is held at 16 bits since the indices jump at ties. Every format runs it and agrees
    with the others; the audit names the indices and their rule."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
         helper.make_node("TopK", ["h", "k"], ["v", "i"], name="topk", axis=-1),
         helper.make_node("MatMul", ["v", "w2"], ["y"], name="fc2"),
         helper.make_node("Gather", ["table", "i"], ["g"], name="pick", axis=0),
         helper.make_node("ReduceSum", ["g", "axis"], ["z"], name="sum", keepdims=0)],
        "topk", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 10])],
        [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w1"),
         numpy_helper.from_array(rng.standard_normal((4, 10)).astype(np.float32), "w2"),
         numpy_helper.from_array(np.array([4], np.int64), "k"),
         numpy_helper.from_array(np.array([1], np.int64), "axis"),
         numpy_helper.from_array(rng.standard_normal((8, 10)).astype(np.float32), "table")])
    path, calib = tmp_path / "topk.onnx", tmp_path / "c.npy"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    data = rng.standard_normal((64, 16)).astype(np.float32)
    np.save(calib, data)
    assert main(["audit", str(path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("topk"))
    assert ("pass the scale through; output 1 'i': positions, by ArgMax's witness "
            "(scale_invariant): no scale") in row
    outputs = {}
    for form in ("qdq", "integer", "simulation"):
        out = tmp_path / f"{form}.onnx"
        assert main(["quantize", str(path), "--calib", str(calib), "-o", str(out),
                     "--format", form, "--no-progress"]) == 0
        assert "input h held at 16 bits" in capsys.readouterr().out
        outputs[form] = ort.InferenceSession(str(out)).run(None, {"x": data[:32]})
    reference = ort.InferenceSession(str(path)).run(None, {"x": data[:32]})
    assert sqnr_db(reference[0], outputs["simulation"][0]) > 30
    assert sqnr_db(reference[1], outputs["simulation"][1]) > 30  # the table's rows, by index
    for form in ("qdq", "integer"):
        for ours, simulated in zip(outputs[form], outputs["simulation"]):
            assert sqnr_db(simulated, ours) > 40


@pytest.mark.parametrize(("op_type", "attrs", "transposed"), [
    ("MatMul", {}, False),
    ("Einsum", {"equation": "bi,io->bo"}, False),
    ("Einsum", {"equation": "bi, oi -> bo"}, True),
])
def test_a_constant_linear_operand_gets_per_channel_scales(op_type, attrs, transposed, tmp_path):
    """x @ W with W's columns spanning three decades: per-column scales, as a Gemm's weights
    get, keep the small columns that one per-tensor scale rounds away; the exports run in
    onnxruntime (the integer form to the code)."""
    rng = np.random.default_rng(3)
    weight = (rng.normal(size=(64, 12)) * np.logspace(-3, 0, 12)).astype(np.float32)
    stored = weight.T.copy() if transposed else weight
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x", "w"], ["y"], name="linear", **attrs)], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 12])],
        [numpy_helper.from_array(stored, "w")])
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    loaded = load_model(path)
    calibration = calibrate(loaded, models.digits(80), progress=False)
    test = models.digits(40, offset=300)
    reference = test @ weight
    small = slice(0, 4)  # the columns with the smallest weights
    errors = {}
    for per_channel in (True, False):
        model = quantize(loaded, calibration, 8, per_channel=per_channel)
        out = model.run(test)["y"]
        errors[per_channel] = sqnr_db(reference[:, small], out[:, small])
    model = quantize(loaded, calibration, 8)
    note = model.records[0].note
    assert "per-channel weights" in note and "output-aware rounding" in note
    assert errors[True] > errors[False] + 20
    simulated = model.run(test)["y"]
    for form in ("integer", "qdq"):  # integer computes the codes; qdq rounds in onnxruntime
        proto = model.to_onnx(form).SerializeToString()
        exported = ort.InferenceSession(proto).run(None, {"x": test})[0]
        if form == "integer":
            assert np.max(np.abs(exported - simulated) * model.output_scales["y"]) < 0.5
        assert sqnr_db(simulated, exported) > 30
    nearest = quantize(loaded, calibration, 4, weight_rounding="nearest").run(test)["y"]
    optq = quantize(loaded, calibration, 4).run(test)["y"]
    assert sqnr_db(reference, optq) > sqnr_db(reference, nearest)


@pytest.mark.parametrize(("op_type", "attrs", "transposed", "order"), [
    ("MatMul", {}, False, "bias first"),
    ("MatMul", {}, False, "bias second"),
    ("Einsum", {"equation": "bi, oi -> bo"}, True, "bias first"),
])
def test_a_linear_bias_correction_goes_into_the_constant_of_the_add_after_it(
        tmp_path, op_type, attrs, transposed, order):
    """MatMul and Einsum have no bias input; the Add after them, declared a + b, adds a
    constant per output channel: the correction of the rounded weights goes there, so the
    mean output error of the sum drops as it does for a Gemm's bias, and the exports run in
    onnxruntime (the simulation to the code)."""
    rng = np.random.default_rng(5)
    weight = rng.normal(size=(64, 12)).astype(np.float32)
    bias = rng.normal(size=12).astype(np.float32)
    operands = ["b", "y"] if order == "bias first" else ["y", "b"]
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x", "w"], ["y"], name="linear", **attrs),
         helper.make_node("Add", operands, ["z"], name="add")], "linear_add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 12])],
        [numpy_helper.from_array(weight.T.copy() if transposed else weight, "w"),
         numpy_helper.from_array(bias, "b")])
    path = tmp_path / "linear_add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    loaded = load_model(path)
    data = models.digits(200)
    calibration = calibrate(loaded, data, progress=False)
    reference = data @ weight + bias
    errors = {}
    for corrected in (True, False):
        model = quantize(loaded, calibration, 4, weight_rounding="nearest",
                         bias_correction=corrected)
        errors[corrected] = np.abs((model.run(data)["z"] - reference).mean(axis=0)).mean()
    assert errors[True] < 0.5 * errors[False]
    model = quantize(loaded, calibration, 4)
    assert "bias corrected in add" in model.records[0].note
    simulated = model.run(data)["z"]
    for form in ("simulation", "qdq"):
        session = ort.InferenceSession(model.to_onnx(form).SerializeToString())
        exported = session.run(None, {"x": data})[0]
        if form == "simulation":
            np.testing.assert_allclose(exported, simulated, rtol=0, atol=1e-5)
        assert sqnr_db(simulated, exported) > 30


def test_no_bias_correction_through_a_product():
    """A Mul after the MatMul is no sum: its constant is no bias and keeps its value."""
    rng = np.random.default_rng(6)
    weight = rng.normal(size=(64, 12)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul"),
         helper.make_node("Mul", ["y", "c"], ["z"], name="mul")], "matmul_mul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 12])],
        [numpy_helper.from_array(weight, "w"),
         numpy_helper.from_array(np.full(12, 0.5, np.float32), "c")])
    loaded = prepare(graph_from_onnx(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])))
    model = quantize(loaded, calibrate(loaded, models.digits(50), progress=False), 4)
    assert "bias corrected" not in model.records[0].note


def test_an_einsum_of_four_operands_is_refused_in_one_line(tmp_path, capsys):
    """Each operand carries its own scale; the catalog declares one to three of them."""
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["x", "x", "x", "x"], ["y"], name="quad",
                          equation="bi,bi,bi,bi->bi")], "quad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64])])
    _refused_in_one_line(graph, "'quad' (Einsum)", tmp_path, capsys)


def test_an_undeclared_op_type_quantizes_once_declared_with_operators(tmp_path, capsys):
    """The refusal names a way forward: a TOML declaration given with --operators, proved like
    the catalog's, in quantize and in audit."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], name="gemm", transB=1),
         helper.make_node("MyRelu", ["h"], ["y"], name="myrelu", domain="my.ops")],
        "custom", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        [numpy_helper.from_array(np.random.default_rng(0).normal(size=(8, 64)).astype(
            np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("my.ops", 1)])
    path, calib, out = tmp_path / "custom.onnx", tmp_path / "c.npy", tmp_path / "q.onnx"
    onnx.save(model, path)
    np.save(calib, models.digits(20))
    argv = ["quantize", str(path), "--calib", str(calib), "-o", str(out), "--no-progress",
            "--format", "simulation"]
    assert main(argv) == 2 and "--operators" in capsys.readouterr().err
    declarations = tmp_path / "ops.toml"
    declarations.write_text('[[operator]]\nname = "MyRelu"\nexpr = "max(x, 0)"\n')
    assert main([*argv, "--operators", str(declarations)]) == 2
    assert "give its onnx_type" in capsys.readouterr().err and not out.exists()
    declarations.write_text('[[operator]]\nname = "MyRelu"\nexpr = "max(x, 0)"\n'
                            'onnx_type = "MyRelu"\n')
    assert main([*argv, "--operators", str(declarations)]) == 0
    assert "2 on integers" in capsys.readouterr().out and out.exists()
    assert main(["audit", str(path), "--operators", str(declarations)]) == 0
    assert "myrelu" in capsys.readouterr().out


def test_a_declaration_short_of_the_nodes_inputs_says_how_to_bind_them(tmp_path, capsys):
    """A new-user trial declared a Pow by 1.7 with the exponent as a parameter: refused for
    taking one input where the node has two, with nothing saying that a file's declaration
    takes the node's inputs as its tensors, in order. The refusal now says so, and the
    declaration written that way quantizes the node."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Pow", ["r", "p"], ["y"], name="pow")],
        "pow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(np.array(1.7, np.float32), "p")])
    path, calib, ops = tmp_path / "pow.onnx", tmp_path / "c.npy", tmp_path / "ops.toml"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    np.save(calib, np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32))
    argv = ["quantize", str(path), "--calib", str(calib), "-o", str(tmp_path / "q.onnx"),
            "--no-progress", "--operators", str(ops)]
    ops.write_text('[[operator]]\nname = "Pow17"\nexpr = "x**p"\nparams = {p = "1.7"}\n'
                   'onnx_type = "Pow"\n')
    assert main(argv) == 2
    assert ('(a file\'s declaration takes the node\'s inputs as its tensors, in order: '
            'inputs = "x0, x1" for 2 inputs)') in capsys.readouterr().err
    ops.write_text('[[operator]]\nname = "Pow17"\nexpr = "x0**x1"\ninputs = "x0, x1"\n'
                   'onnx_type = "Pow"\n')
    assert main(argv) == 0


def _check_float16(nodes, initializers, form: str, path, rng) -> None:
    """A float16 model of ``nodes`` quantizes to a ``form`` model onnxruntime runs, close to
    the source, with the source's interface: float16 in and out (a new-user trial found the
    dequantized output written as float32, which a caller reading float16 cannot take)."""
    graph = helper.make_graph(
        nodes, "half", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 4])], initializers)
    source = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(source, path)
    x = rng.normal(size=(64, 16)).astype(np.float16)
    graph = load_model(path)
    model = quantize(graph, calibrate(graph, {"x": x}, progress=False), 8)
    reference = ort.InferenceSession(source.SerializeToString()).run(None, {"x": x})[0]
    session = ort.InferenceSession(model.to_onnx(form).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": x})[0]
    assert [t.type for t in session.get_outputs()] == ["tensor(float16)"]
    assert out.dtype == reference.dtype
    assert sqnr_db(reference.astype(np.float32), out.astype(np.float32)) > 25


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_a_float16_model_quantizes_into_a_model_onnxruntime_loads(form, tmp_path):
    """A float16 export (model.half()): below opset 19 QuantizeLinear takes float32 only, so
    the QDQ form wrote a model onnxruntime refused to load, with exit 0."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(16, 32)).astype(np.float16) * 0.3, "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(32, 4)).astype(np.float16) * 0.3, "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    _check_float16(nodes, [w1, w2], form, tmp_path / "half.onnx", rng)


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_a_float64_section_of_a_float32_model_is_computed_in_float32(form, tmp_path):
    """A model that computes part of its way in float64 (torch's ``x.double()``: Cast to
    DOUBLE, a float64 constant, Cast back) had its float64 activation quantized as it was:
    QuantizeLinear takes no double, and the qdq and simulation files were refused by
    onnxruntime (exit 3, an internal error); ptq-verify's own simulation file, which holds
    such Casts, fed back to quantize failed so. Such a section is computed in float32 in the
    written file, as a float16 one is, and the file's interface keeps the source's types."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array((rng.normal(size=(16, 32)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.normal(size=(32, 4)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array(0.5, np.float64), "k")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Cast", ["h"], ["hd"], name="to_double", to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["hd", "k"], ["md"], name="mul_double"),
             helper.make_node("Relu", ["md"], ["rd"], name="relu_double"),
             helper.make_node("Cast", ["rd"], ["r"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2"),
             helper.make_node("Cast", ["y"], ["yd"], name="out_double", to=TensorProto.DOUBLE)]
    graph = helper.make_graph(
        nodes, "double", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("yd", TensorProto.DOUBLE, ["n", 4])], inits)
    source = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(source, tmp_path / "double.onnx")
    x = rng.normal(size=(64, 16)).astype(np.float32)
    loaded = load_model(tmp_path / "double.onnx")
    model = quantize(loaded, calibrate(loaded, {"x": x}, progress=False), 8)
    reference = ort.InferenceSession(source.SerializeToString()).run(None, {"x": x})
    session = ort.InferenceSession(model.to_onnx(form).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    written = session.run(None, {"x": x})
    assert [t.type for t in session.get_outputs()] == ["tensor(float)", "tensor(double)"]
    for ref, out in zip(reference, written):
        assert sqnr_db(ref, out) > 25


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_a_float64_scale_computed_from_a_shape_meets_float32_values(form, tmp_path):
    """A scale computed in float64 from a free length (``Shape -> Cast(to=DOUBLE) -> Sqrt``,
    a float64 1 divided by it, cast back to float32) is static: the qdq file stored the
    float64 1 as float32 beside the Cast's float64 (Div bound to double and float, exit 3).
    Every format computes it in float32."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.normal(size=(8, 16)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.normal(size=(16, 4)) * 0.3).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array(1.0, np.float64), "one"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
             helper.make_node("Shape", ["a"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "axis1"], ["t"], name="length", axis=0),
             helper.make_node("Cast", ["t"], ["td"], name="to_double", to=TensorProto.DOUBLE),
             helper.make_node("Sqrt", ["td"], ["root"], name="sqrt"),
             helper.make_node("Div", ["one", "root"], ["inv"], name="inverse"),
             helper.make_node("Cast", ["inv"], ["invf"], name="to_float", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["a", "invf"], ["m"], name="scale"),
             helper.make_node("Relu", ["m"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(
        nodes, "length", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t", 4])], inits)
    source = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(source, tmp_path / "length.onnx")
    x = rng.normal(size=(64, 6, 8)).astype(np.float32)
    loaded = load_model(tmp_path / "length.onnx")
    model = quantize(loaded, calibrate(loaded, {"x": x}, progress=False), 8)
    reference = ort.InferenceSession(source.SerializeToString()).run(None, {"x": x})[0]
    written = ort.InferenceSession(model.to_onnx(form).SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert sqnr_db(reference, written) > 25


def _conv_with_a_near_dead_channel(dtype: type) -> onnx.ModelProto:
    """Conv whose first channel has a near-zero weight and a large bias (a channel a BatchNorm
    with gamma near 0 leaves), in ``dtype``."""
    kind = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    weight = np.array([2e-7, 1.0, 0.5], dtype).reshape(3, 1, 1, 1)
    bias = np.array([100.0, 0.0, 0.2], dtype)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")], "dead",
        [helper.make_tensor_value_info("x", kind, ["n", 1, 4, 4])],
        [helper.make_tensor_value_info("y", kind, ["n", 3, 4, 4])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_float16_models_bias_cap_is_computed_as_wide_as_a_float32_models(tmp_path):
    """A new-user trial on model.half() exports: the room a bias leaves a channel's weight
    scale below int32 was computed in the bias's own float16, where 2^31 overflows to inf, so
    the cap never held; the bias went beyond int32 and the convolution was run in float, where
    the same float32 model runs on integers."""
    x = np.random.default_rng(0).normal(size=(32, 1, 4, 4))
    kinds = {}
    for dtype in (np.float32, np.float16):
        path = tmp_path / f"dead_{np.dtype(dtype).name}.onnx"
        onnx.save(_conv_with_a_near_dead_channel(dtype), path)
        graph = load_model(path)
        model = quantize(graph, calibrate(graph, {"x": x.astype(dtype)}, progress=False), 8)
        kinds[dtype] = [record.kind for record in model.records]
    assert kinds[np.float16] == kinds[np.float32]


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_a_float16_models_own_constants_meet_float32_activations(form, tmp_path):
    """A float16 export of an exact GELU carries float16 constants (1/sqrt 2 ... 1 ... 0.5)
    into the nodes that run in float; the QDQ form cast the input to float32 but wrote those
    constants as float16, and onnxruntime refused the model (Add bound to float and float16),
    with exit 0."""
    rng = np.random.default_rng(1)
    half = np.float16
    inits = [numpy_helper.from_array((rng.normal(size=(16, 32)) * 0.3).astype(half), "w1"),
             numpy_helper.from_array((rng.normal(size=(32, 4)) * 0.3).astype(half), "w2"),
             numpy_helper.from_array(np.array(1.4142, half), "root2"),
             numpy_helper.from_array(np.array(1.0, half), "one"),
             numpy_helper.from_array(np.array(0.5, half), "half")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Div", ["h", "root2"], ["d"], name="div"),
             helper.make_node("Erf", ["d"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["a"], name="add"),
             helper.make_node("Mul", ["h", "a"], ["m"], name="mul"),
             helper.make_node("Mul", ["m", "half"], ["g"], name="mul_half"),
             helper.make_node("MatMul", ["g", "w2"], ["y"], name="mm2")]
    _check_float16(nodes, inits, form, tmp_path / "half_gelu.onnx", rng)


def test_a_model_whose_nodes_all_run_in_float_is_refused_saying_why(tmp_path, capsys):
    """A model of one ReduceMean (torch's legacy export of ``x.mean(2)``, in the onnx wheel's
    test data) computes its mean in float from the input's codes, an output finer than codes:
    nothing runs on integers and quantize refuses it, but its line said that no node reads a
    float model input, which the ReduceMean does. It now names the node and why it runs in
    float."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[2], keepdims=0)], "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    path = tmp_path / "mean.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    np.save(tmp_path / "c.npy", np.random.default_rng(0).standard_normal((16, 3, 4))
            .astype(np.float32))
    assert main(["quantize", str(path), "--calib", str(tmp_path / "c.npy"), "-o",
                 str(tmp_path / "q.onnx"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no node reads a float model input" not in err and "\n" not in err
    assert "each node on activations computes in float: 'mean' (an output finer than" in err


def _old_opset_model(op: onnx.NodeProto, opset: int) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.4, n)
               for n, shape in (("w1", (4, 2, 3, 3)), ("w2", (3, 4, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1]), op,
             helper.make_node("Conv", ["a", "w2"], ["y"], pads=[1, 1, 1, 1])]
    return _image_model(nodes, weights, 3, opset)


def _image_model(nodes: list[onnx.NodeProto], weights: list[onnx.TensorProto], channels: int,
                 opset: int) -> onnx.ModelProto:
    """``nodes`` from x (n, 2, 6, 6) to y (n, ``channels``, 6, 6), at ``opset`` (IR 7, which
    opsets from 11 load with)."""
    graph = helper.make_graph(nodes, "old", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 2, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", channels, 6, 6])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("fmt", ["integer", "simulation"])
@pytest.mark.parametrize(("op", "opset"), [
    (helper.make_node("Clip", ["h"], ["a"], min=-1.0, max=1.0), 10),
    (helper.make_node("Softmax", ["h"], ["a"], axis=1), 11)], ids=["clip6", "softmax11"])
def test_an_old_opset_model_is_written_at_the_formats_opset_computing_the_same(
        op, opset, fmt, tmp_path):
    """Clip-6 keeps its bounds in attributes, which Clip-11 takes as inputs (written as they
    were, onnxruntime refused the file), and Softmax-11 with axis 1 normalises over every axis
    from 1 on, Softmax-13 over axis 1 alone (written as it was, the integer file computed
    another function: 4.8 dB). The model is converted to opset 13 at load, checked in
    onnxruntime against itself, so the written file computes what the user's does."""
    model = _old_opset_model(op, opset)
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    data = np.random.default_rng(8).standard_normal((64, 2, 6, 6)).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npy"),
                 "-o", str(tmp_path / "q.onnx"), "--format", fmt, "--no-progress"]) == 0
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data[:16]})[0]
    written = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"x": data[:16]})[0]
    assert sqnr_db(reference, written) > 25


def _hardmax_model(opset: int, hardmax: list[onnx.NodeProto]) -> onnx.ModelProto:
    """x (n, 2, 6, 6) -> Conv -> h, ``hardmax`` nodes from h to a one-hot m, y = h * m."""
    rng = np.random.default_rng(9)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
                                       * 0.4, "w1")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="conv", pads=[1, 1, 1, 1]),
             *hardmax, helper.make_node("Mul", ["h", "m"], ["y"], name="pick")]
    return _image_model(nodes, weights, 4, opset)


def test_an_opset_11_hardmax_over_a_middle_axis_keeps_its_function(tmp_path):
    """Hardmax-11 over axis 2 of a 4-D tensor is one-hot over axes 2 and 3 together; onnx's
    version converter (1.23) has no adapter for it and renumbered it to Hardmax-13, one-hot
    over axis 2 alone. The model stayed at opset 11, the catalog's kernel (opset 13)
    calibrated another function and the integer format, written at opset 13, computed it:
    -3.8 dB where the simulation gave 44.6. The node is now spelt as Flatten -> Hardmax ->
    Reshape before the conversion: the kernels compute what onnxruntime does with the user's
    model, and the formats agree."""
    model = _hardmax_model(11, [helper.make_node("Hardmax", ["h"], ["m"], name="hard", axis=2)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    data = np.random.default_rng(8).standard_normal((64, 2, 6, 6)).astype(np.float32)
    graph = load_model(str(path))
    assert graph.opsets[""] == 13
    assert graph.loaded == (
        "opset 11: converted to opset 13 by onnx's version converter (onnxruntime computes the "
        "same outputs with both on a random input), after 1 node that opset 13 reads another "
        "way ('hard') spelt as Flatten -> node -> Reshape (the same function at both opsets; "
        "the added Flatten, Shape and Reshape nodes are listed as the model's)")
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})[0]
    np.testing.assert_allclose(run_graph(graph, {"x": data}, OperatorTable())["y"], reference,
                               rtol=1e-5, atol=1e-5)
    quantized = quantize(prepare(graph), calibrate(prepare(graph), {"x": data},
                                                   progress=False), 8)
    outputs = {fmt: ort.InferenceSession(quantized.to_onnx(fmt).SerializeToString()).run(
        None, {"x": data})[0] for fmt in ("integer", "simulation")}
    assert sqnr_db(outputs["simulation"], outputs["integer"]) > 40


def test_the_audit_and_quantize_say_how_an_old_opset_model_was_loaded(tmp_path, capsys):
    """The audit of an opset-11 model whose Hardmax was spelt as Flatten -> Hardmax -> Reshape
    listed the added nodes as the model's and said nothing of the conversion: a user reading
    it looked for nodes the file does not hold, at an opset it is not at. The audit's summary,
    its JSON and quantize's notes now say what loading did; a model at opset 13 or later
    gets no such line."""
    model = _hardmax_model(11, [helper.make_node("Hardmax", ["h"], ["m"], name="hard", axis=2)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    account = "opset 11: converted to opset 13 by onnx's version converter"
    assert main(["audit", str(path)]) == 0
    audit = capsys.readouterr().out
    assert f"loaded: {account}" in audit and "('hard') spelt as Flatten" in audit
    assert main(["audit", str(path), "--json"]) == 0
    assert account in capsys.readouterr().out
    np.save(tmp_path / "calib.npy",
            np.random.default_rng(8).standard_normal((32, 2, 6, 6)).astype(np.float32))
    assert main(["quantize", str(path), "--calib", str(tmp_path / "calib.npy"), "-o",
                 str(tmp_path / "q.onnx"), "--no-progress"]) == 0
    assert f"note: {account}" in capsys.readouterr().out
    current = _hardmax_model(13, [helper.make_node("Hardmax", ["h"], ["m"], name="hard")])
    path.write_bytes(current.SerializeToString())
    assert main(["audit", str(path)]) == 0
    assert "loaded:" not in capsys.readouterr().out


def _opset_6_model() -> onnx.ModelProto:
    """x (4, 8) -> Gemm-6 -> Relu -> Mul-6 by a per-column constant (its ``broadcast``
    attribute, opset 6's form) -> y, as torch's exports at opset 6 write them: onnxruntime
    1.32 has no kernel for Gemm-6 or Mul-6."""
    rng = np.random.default_rng(6)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("w", (6, 8)), ("b", (6,)), ("c", (6,)))]
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="fc", transB=1, broadcast=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "c"], ["y"], name="gain", broadcast=1)]
    graph = helper.make_graph(
        nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)], ir_version=4)


def test_an_opset_6_model_onnxruntime_has_no_kernels_for_is_converted_and_quantized(
        tmp_path, capsys):
    """onnxruntime 1.32 has no kernel for opset 6's Add, Mul, Gemm, BatchNormalization or
    AveragePool-1, so the check that onnx's version converter kept the function, run in
    onnxruntime on both models, failed on the file: every such model stayed at opset 6 and
    quantize refused it as one onnxruntime cannot load (34 of the torch exports the onnx wheel
    ships, a new-user trial), where the converted model of 31 computes their shipped outputs. The
    file is now run in onnx's reference evaluator there; the converted model is loaded,
    quantized and checked, and the written file computes the file's function."""
    model = _opset_6_model()
    with pytest.raises(Exception, match="implementation"):  # (the premise: no opset-6 kernel)
        ort.InferenceSession(model.SerializeToString())
    path = tmp_path / "old.onnx"
    path.write_bytes(model.SerializeToString())
    graph = load_model(str(path))
    assert graph.opsets[""] == 13
    assert graph.loaded.startswith("opset 6: converted to opset 13 by onnx's version converter")
    assert "onnx's reference evaluator" in graph.loaded
    data = np.random.default_rng(1).standard_normal((64, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=data)
    for form in ("qdq", "integer"):
        out = tmp_path / f"q_{form}.onnx"
        assert main(["quantize", str(path), "--calib", str(tmp_path / "calib.npz"), "-o",
                     str(out), "--format", form, "--no-progress"]) == 0, capsys.readouterr()
        assert "note: opset 6: converted" in capsys.readouterr().out
        session = ort.InferenceSession(str(out))
        held = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)
        weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        want = np.maximum(held @ weights["w"].T + weights["b"], 0) * weights["c"]
        assert sqnr_db(want, session.run(None, {"x": held})[0]) > 30
    assert main(["audit", str(path)]) == 0
    assert "onnxruntime cannot load" not in capsys.readouterr().out


def test_a_dropout_mask_nothing_reads_is_dropped_at_load(tmp_path, capsys):
    """onnx-caffe2's Dropout writes its mask, which nothing reads (the ONNX Model Zoo's
    AlexNet, VGG-19, SqueezeNet and Inception v1 that the onnx wheel ships): the node has two
    outputs where the Dropout's declaration describes one, and quantize refused the model. An
    optional output nothing reads is now left unnamed at load; a mask the model returns
    stays, and its node is refused as before."""
    rng = np.random.default_rng(3)
    weights = [numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
                                       * 0.4, "w1")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Dropout", ["h"], ["d", "mask"], name="drop"),
             helper.make_node("Relu", ["d"], ["y"], name="relu")]
    model = _image_model(nodes, weights, 3, 13)
    path = tmp_path / "drop.onnx"
    path.write_bytes(model.SerializeToString())
    np.save(tmp_path / "calib.npy", rng.standard_normal((32, 2, 6, 6)).astype(np.float32))
    command = ["quantize", str(path), "--calib", str(tmp_path / "calib.npy"), "-o",
               str(tmp_path / "q.onnx"), "--no-progress"]
    assert main(command) == 0, capsys.readouterr().err
    held = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": held})[0]
    got = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"x": held})[0]
    assert sqnr_db(want, got) > 30
    capsys.readouterr()
    model.graph.output.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, None))
    path.write_bytes(model.SerializeToString())
    assert main(command) == 2
    assert "'drop' (Dropout) has 1 input and 2 outputs" in capsys.readouterr().err


def test_a_jump_read_through_nodes_in_float_holds_their_inputs_and_says_so(capsys, tmp_path):
    """Conv -> Flatten -> Hardmax -> Reshape -> Mul at opset 13 (the spelling of an opset-11
    Hardmax over axis 2): the Flatten and the Hardmax run in float as one region, so the
    Hardmax read the Flatten of 8-bit codes, and the run said nothing of the argmax flips
    (15 dB; on codes the Hardmax is held at 16 bits and a note says it jumps). The Flatten's
    input is now held at 16 bits for it, and the note names both nodes."""
    model = _hardmax_model(13, [
        helper.make_node("Flatten", ["h"], ["f"], name="flat", axis=2),
        helper.make_node("Hardmax", ["f"], ["hf"], name="hard", axis=-1),
        helper.make_node("Shape", ["h"], ["s"], name="shape"),
        helper.make_node("Reshape", ["hf", "s"], ["m"], name="back")])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    np.save(tmp_path / "calib.npy",
            np.random.default_rng(8).standard_normal((64, 2, 6, 6)).astype(np.float32))
    assert main(["quantize", str(path), "--calib", str(tmp_path / "calib.npy"), "-o",
                 str(tmp_path / "q.onnx"), "--format", "simulation", "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("note:") and "discontinuous" in line]
    assert len(notes) == 1
    assert "'hard'" in notes[0] and "'flat'" in notes[0] and "input h held at 16 bits" in notes[0]


@pytest.mark.parametrize("training", [None, False, True])
def test_a_dropout_in_training_mode_is_refused_naming_it(training, tmp_path, capsys):
    """Dropout(x, ratio, training_mode=True), as a model exported in training mode has it,
    zeroes random elements at every run, in onnxruntime too: the catalog's identity had
    calibrated it and the run exited 0 with a file 3 dB from a float run (itself random).
    Its declaration now takes training_mode absent or a constant false, and the true one is
    refused in one line naming the node."""
    rng = np.random.default_rng(3)
    inputs = ["h", "ratio"] + ([] if training is None else ["training"])
    inits = [numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(0.5, np.float32), "ratio")]
    if training is not None:
        inits.append(numpy_helper.from_array(np.array(training), "training"))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Dropout", inputs, ["d"], name="drop"),
             helper.make_node("Relu", ["d"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "dropout", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    np.save(tmp_path / "calib.npy", rng.normal(size=(32, 8)).astype(np.float32))
    code = main(["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npy"),
                 "-o", str(tmp_path / "q.onnx"), "--no-progress"])
    err = capsys.readouterr().err
    if training:
        assert code == 2 and "'drop'" in err
        assert ("input 2 (training_mode) absent or a constant False (a true one is a model "
                "exported in training mode: export it after model.eval())") in err
        assert len(err.strip().splitlines()) == 1
    else:
        assert code == 0, err


def _softmax_model(opset: int, head: list[onnx.NodeProto]) -> onnx.ModelProto:
    """x (n, 4, 8, 8) -> ``head`` nodes -> t -> Conv -> Reshape (n, 4, 64) -> Softmax(axis 1)."""
    rng = np.random.default_rng(4)
    nodes = [*head, helper.make_node("Conv", ["t", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["r"], name="rows"),
             helper.make_node("Softmax", ["r"], ["y"], name="soft", axis=1)]
    graph = helper.make_graph(nodes, "softmax", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 4, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", 4, 64])], [
        numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3,
                                "w"),
        numpy_helper.from_array(np.array([0, 4, 64], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def test_a_model_nan_on_random_inputs_is_still_brought_to_opset_13(tmp_path):
    """An opset-12 model whose output is NaN on the version check's standard-normal input (a
    Sqrt of the input, which real data keeps positive): NaN != NaN made the check say the
    converter changed it, so it stayed at opset 12, its Softmax-12 over axis 1 (two axes) was
    calibrated on the opset-13 kernel and the integer file computed another function
    (-13.8 dB, exit 0). NaN where both models give it is now the same output."""
    from ptq_verify.graph.onnx_io import upgraded

    model = _softmax_model(12, [helper.make_node("Sqrt", ["x"], ["t"], name="root")])
    converted, loaded = upgraded(model)
    assert next(o.version for o in converted.opset_import if o.domain == "") == 13
    assert loaded.startswith("opset 12: converted to opset 13 by onnx's version converter")
    data = np.abs(np.random.default_rng(5).standard_normal((16, 4, 8, 8))).astype(np.float32)
    ours = run_graph(graph_from_onnx(converted), {"x": data}, OperatorTable())["y"]
    theirs = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_model_that_fails_at_batch_1_is_still_brought_to_opset_13():
    """hummingbird-ml's opset-11 trees end in a Squeeze without axes, which takes a batch of 1
    away, and a Transpose of two axes after it: the version check's random input, batch 1,
    failed the model itself, so it stayed at opset 11 and the integer format refused it
    (ReduceSum's axes attribute at the opset it writes). Where the model fails at 1, the
    check runs at 2."""
    from ptq_verify.graph.onnx_io import upgraded

    graph = helper.make_graph(
        [helper.make_node("Squeeze", ["x"], ["s"], name="squeeze"),
         helper.make_node("Transpose", ["s"], ["t"], name="transpose", perm=[1, 0]),
         helper.make_node("ReduceSum", ["t"], ["y"], name="sum", axes=[0], keepdims=0)],
        "squeezed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    converted, loaded = upgraded(model)
    assert loaded.startswith("opset 11: converted to opset 13 by onnx's version converter")
    assert next(o.version for o in converted.opset_import if o.domain == "") == 13


@pytest.mark.parametrize("op_type", ["Softmax", "LogSoftmax", "Hardmax"])
def test_a_model_left_below_opset_13_reads_its_softmax_as_its_opset_does(op_type):
    """A model the converter cannot bring to opset 13 unchanged stays at its opset, but the
    catalog's kernels and the integer format have opset 13's semantics: each Softmax,
    LogSoftmax or Hardmax over more than its last axis is spelt as Flatten -> the node over
    axis 1 -> Reshape, which both opsets read alike, whether the converter runs or not."""
    from ptq_verify.catalog.upgrades import before_conversion

    model = _softmax_model(12, [helper.make_node("Identity", ["x"], ["t"], name="same")])
    model.graph.node[-1].op_type = op_type
    spelt, names = before_conversion(model)
    assert [n.op_type for n in spelt.graph.node][-4:] == ["Flatten", op_type, "Shape",
                                                         "Reshape"]
    assert names == ["'soft'"]
    data = np.random.default_rng(6).standard_normal((16, 4, 8, 8)).astype(np.float32)
    theirs = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})[0]
    ours = run_graph(graph_from_onnx(spelt), {"x": data}, OperatorTable())["y"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    same = ort.InferenceSession(spelt.SerializeToString()).run(None, {"x": data})[0]
    np.testing.assert_allclose(same, theirs, rtol=1e-6, atol=1e-7)
    last = _softmax_model(12, [helper.make_node("Identity", ["x"], ["t"], name="same")])
    last.graph.node[-1].attribute[0].i = 2  # over the last axis: the same at both opsets
    assert before_conversion(last) == (last, [])


def _resize_model(opset: int, mode: str, scale: float) -> onnx.ModelProto:
    """x (n, 2, 6, 6) -> Conv -> an opset-``opset`` resize by ``scale`` on H and W (Upsample-7
    with scales as an attribute, Upsample-9 with them as an input, Resize-10) -> Conv -> y."""
    rng = np.random.default_rng(12)
    scales = [1.0, 1.0, scale, scale]
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.4, n)
               for n, shape in (("w1", (4, 2, 3, 3)), ("w2", (3, 4, 3, 3)))]
    if opset < 9:
        resize = helper.make_node("Upsample", ["h"], ["a"], name="up", mode=mode, scales=scales)
    else:
        weights.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        resize = helper.make_node("Upsample" if opset == 9 else "Resize", ["h", "scales"], ["a"],
                                  name="up", mode=mode)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="c1", pads=[1, 1, 1, 1]), resize,
             helper.make_node("Conv", ["a", "w2"], ["y"], name="c2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 2, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", 3, "hy", "wy"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 4
    return model


@pytest.mark.parametrize(("opset", "mode", "scale"), [
    (7, "linear", 2.0), (9, "linear", 2.0), (10, "linear", 2.0), (10, "nearest", 1.5),
    (10, "nearest", 0.5)])
def test_an_old_upsample_is_brought_to_opset_13_with_its_own_coordinates(opset, mode, scale,
                                                                          tmp_path, capsys):
    """Upsample (opsets 7 to 9) and Resize-10 compute with asymmetric coordinates (x_in =
    x_out / scale; nearest rounds down when upsampling, up when downsampling, in onnxruntime),
    and onnx's version converter (1.23) leaves Resize-11's defaults (half_pixel; round to
    nearest), another function for a bilinear resize. The model stayed at its opset: torch's
    legacy export of a bilinear F.interpolate at opset 9 was refused as an undeclared op type
    'Upsample' with the advice to declare it, and at opset 10 per-channel qdq and the integer
    format were refused (a new-user trial). The converted Resize now says those coordinates,
    and the model quantizes at opset 13 computing what the user's does."""
    from ptq_verify.graph.onnx_io import upgraded

    model = _resize_model(opset, mode, scale)
    converted, loaded = upgraded(model)
    assert next(o.version for o in converted.opset_import if o.domain == "") == 13, loaded
    data = np.random.default_rng(13).standard_normal((64, 2, 6, 6)).astype(np.float32)
    _quantizes_close(model, data, tmp_path, capsys)


def _quantizes_close(model: onnx.ModelProto, data: np.ndarray, tmp_path, capsys,
                     said: str | None = None) -> None:
    """``model`` (input ``x``) saved and quantized by the command line in qdq and integer
    formats on ``data``, each written file above 30 dB SQNR against the model in onnxruntime on the
    first 16 samples; ``said``: text each run's table must hold."""
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    np.save(tmp_path / "calib.npy", data)
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data[:16]})[0]
    for fmt in ("qdq", "integer"):
        out = tmp_path / f"{fmt}.onnx"
        assert main(["quantize", str(path), "--calib", str(tmp_path / "calib.npy"), "-o",
                     str(out), "--format", fmt, "--no-progress"]) == 0, capsys.readouterr().err
        if said is not None:
            assert said in capsys.readouterr().out
        written = ort.InferenceSession(str(out)).run(None, {"x": data[:16]})[0]
        assert sqnr_db(reference, written) > 30


@pytest.mark.parametrize("opset", [7, 8, 9])
def test_an_image_scaler_is_spelt_as_mul_and_add_and_the_model_converted(opset, tmp_path,
                                                                         capsys):
    """ImageScaler (y = scale * x + bias[c]; experimental, removed at opset 10) opens the
    zoo's tiny-yolov2 at opsets 7 and 8. onnx's version converter has no schema for it, so the
    model stayed at its opset and was refused as an undeclared op type 'ImageScaler', with the
    advice to declare it, which its per-channel bias list cannot be (a new-user trial).
    onnxruntime runs it. It is now spelt as a Mul and an Add, the model converted to opset 13,
    and the loading's account names it."""
    rng = np.random.default_rng(14)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
                                       * 0.05, "w")]
    nodes = [helper.make_node("ImageScaler", ["x"], ["s"], name="scaler", scale=1 / 255,
                              bias=[-0.5, -0.4, -0.3]),
             helper.make_node("Conv", ["s", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("LeakyRelu", ["c"], ["y"], name="leaky", alpha=0.1)]
    graph = helper.make_graph(nodes, "scaler", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 3, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", 4, 6, 6])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 4
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    graph = load_model(str(path))
    assert graph.opsets[""] == 13
    assert graph.loaded.startswith(f"opset {opset}: converted to opset 13")
    assert "1 ImageScaler node (removed at opset 10; 'scaler') spelt as Mul -> Add" in (
        graph.loaded)
    _quantizes_close(model, rng.uniform(0, 255, (64, 3, 6, 6)).astype(np.float32), tmp_path,
                     capsys)


@pytest.mark.parametrize("opset", [7, 13])
def test_an_lrn_passes_the_scale_through_rescaling_alpha(opset, tmp_path, capsys):
    """LRN (local response normalization across channels) is in the zoo's AlexNet, CaffeNet,
    GoogLeNet and Inception-v1 (opsets 3 to 9); the catalog had no LRN, so those models were
    refused as holding an undeclared op type, with the advice to declare it, which no
    declaration can (its window spans ``size`` channels; a new-user trial). onnxruntime runs
    them. It is now in the catalog: f(s x; alpha / s^2) = s f(x)."""
    rng = np.random.default_rng(15)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.4, n)
               for n, shape in (("w1", (6, 2, 3, 3)), ("w2", (3, 6, 3, 3)))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("LRN", ["r"], ["a"], name="norm", size=5, alpha=0.5, beta=0.75,
                              bias=1.0),
             helper.make_node("Conv", ["a", "w2"], ["y"], name="c2", pads=[1, 1, 1, 1])]
    model = _image_model(nodes, weights, 3, opset)
    model.ir_version = 4 if opset < 13 else 7
    data = np.random.default_rng(16).standard_normal((64, 2, 6, 6)).astype(np.float32)
    _quantizes_close(model, data, tmp_path, capsys, said="alpha->s^-2*alpha")


@pytest.mark.parametrize("opset", [10, 13])
def test_position_ids_from_a_non_zero_quantize(opset, tmp_path, capsys):
    """torch's legacy exporter writes BERT's position ids at opset 10 as NonZero of a
    ConstantOfShape of ones as long as the sequence (a shape computation); the catalog had no
    NonZero, so the model was refused as holding an undeclared op type, with the advice to
    declare it, which no declaration can (its output's length depends on the values; a
    new-user trial). onnxruntime runs it. x (n, T, 8) -> MatMul, plus the rows of a
    position table picked by those ids."""
    rng = np.random.default_rng(17)
    axes = {"axes": [0]}
    unsqueeze = (helper.make_node("Unsqueeze", ["len"], ["len1"], name="unsq", **axes)
                 if opset < 13 else helper.make_node("Unsqueeze", ["len", "zero"], ["len1"],
                                                    name="unsq"))
    squeeze = (helper.make_node("Squeeze", ["nz"], ["ids"], name="sq", **axes) if opset < 13
               else helper.make_node("Squeeze", ["nz", "zero"], ["ids"], name="sq"))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "one"], ["len"], name="length", axis=0),
             unsqueeze,
             helper.make_node("ConstantOfShape", ["len1"], ["ones"], name="ones",
                              value=numpy_helper.from_array(np.array([1], np.int64))),
             helper.make_node("NonZero", ["ones"], ["nz"], name="nonzero"), squeeze,
             helper.make_node("Gather", ["table", "ids"], ["pos"], name="positions", axis=0),
             helper.make_node("Add", ["h", "pos"], ["y"], name="add")]
    inits = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), "table"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array([0], np.int64), "zero")]
    graph = helper.make_graph(nodes, "positions", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", "t", 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", "t", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 5 if opset < 13 else 7
    _quantizes_close(model, rng.normal(size=(64, 12, 8)).astype(np.float32), tmp_path, capsys)


def test_an_experimental_op_keeps_the_json_on_stdout_parseable(tmp_path, capfd):
    """onnx's checker prints `Warning: Model contains experimental ops: ImageScaler` on the
    process's standard output (from C++), so `audit --json` of the zoo's tiny-yolov2 printed
    a line that is not JSON before the document (a new-user trial). The checker's output now
    goes to standard error."""
    import json

    weights = [numpy_helper.from_array(np.full((4, 3, 3, 3), 0.05, np.float32), "w")]
    nodes = [helper.make_node("ImageScaler", ["x"], ["s"], name="scaler", scale=0.5,
                              bias=[0.1, 0.2, 0.3]),
             helper.make_node("Conv", ["s", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "scaler", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 3, 6, 6])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", 4, 6, 6])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 4
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert main(["audit", str(path), "--json"]) == 0
    captured = capfd.readouterr()
    assert json.loads(captured.out)["nodes"]
    assert "experimental ops" in captured.err


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_a_float16_rmsnorm_in_parts_reads_its_gain_as_float32(form, tmp_path):
    """A float16 Llama export (a KV-cache trial's model.half()): its RMSNorm in parts runs in
    float (engine/invariant_regions.py), its per-channel gain a float16 constant read by the
    region's last Mul; the integer and simulation files stored that gain as float16 beside
    the float32 values the region computes, and onnxruntime refused them (Mul bound to
    float16 and float): exit 3."""
    rng = np.random.default_rng(2)
    half = np.float16
    inits = [numpy_helper.from_array((rng.normal(size=(16, 32)) * 0.3).astype(half), "w1"),
             numpy_helper.from_array((rng.normal(size=(32, 4)) * 0.3).astype(half), "w2"),
             numpy_helper.from_array((1 + 0.1 * rng.normal(size=32)).astype(half), "gain"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps")]
    float32, float16 = TensorProto.FLOAT, TensorProto.FLOAT16
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Cast", ["h"], ["h32"], name="up", to=float32),
             helper.make_node("Pow", ["h32", "two"], ["sq"], name="pow"),
             helper.make_node("ReduceMean", ["sq"], ["ms"], name="mean", axes=[-1]),
             helper.make_node("Add", ["ms", "eps"], ["mse"], name="add"),
             helper.make_node("Sqrt", ["mse"], ["rms"], name="sqrt"),
             helper.make_node("Div", ["h32", "rms"], ["n32"], name="div"),
             helper.make_node("Cast", ["n32"], ["n"], name="down", to=float16),
             helper.make_node("Mul", ["gain", "n"], ["g"], name="scale"),
             helper.make_node("MatMul", ["g", "w2"], ["y"], name="mm2")]
    _check_float16(nodes, inits, form, tmp_path / "half_rms.onnx", rng)
