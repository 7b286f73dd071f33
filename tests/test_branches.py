"""An If whose condition is computed from shapes the inputs fix is the branch it takes
(graph/branches.py): torch's legacy export of VitDet's relative positions had been refused
by name. One whose condition depends on the data stays, and is refused."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.cli import main
from ptq_verify.engine import load_model
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph
from ptq_verify.graph.branches import resolve_branches

X = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)


def _branch(name: str, nodes: list, output: str, inits: list = ()) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(
        output, TensorProto.FLOAT, None)], list(inits))


def _if(cond: str, source: str, output: str, factor: float) -> onnx.NodeProto:
    """If(``cond``): then ``factor`` * relu(``source``) (a branch constant; its name and the
    others are those every such If uses: sibling scopes may), else ``source`` as it is."""
    then = _branch("then", [helper.make_node("Relu", [source], ["r"]),
                            helper.make_node("Mul", ["r", "two"], ["doubled"])], "doubled",
                   [numpy_helper.from_array(np.array(factor, np.float32), "two")])
    orelse = _branch("else", [helper.make_node("Identity", [source], ["kept"])], "kept")
    return helper.make_node("If", [cond], [output], name=f"if_{output}", then_branch=then,
                            else_branch=orelse)


def _model(width: int, from_data: bool = False, rank: bool = False,
           free_width: bool = False) -> onnx.ModelProto:
    """x [batch, 4] -> two Ifs of (x.shape[1] == ``width``) (or, ``from_data``, of
    sum(x) > 0; ``rank``, of x.dim() == ``width``) one after the other -> MatMul with W ->
    Relu."""
    if from_data:
        test = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
                helper.make_node("Greater", ["total", "zero"], ["cond"])]
    elif rank:  # (the rank is known though the batch axis is free)
        test = [helper.make_node("Shape", ["x"], ["shape"]),
                helper.make_node("Size", ["shape"], ["width"]),
                helper.make_node("Equal", ["width", "expected"], ["cond"])]
    else:
        test = [helper.make_node("Shape", ["x"], ["shape"]),
                helper.make_node("Gather", ["shape", "one"], ["width"], axis=0),
                helper.make_node("Equal", ["width", "expected"], ["cond"])]
    nodes = [*test, _if("cond", "x", "first", 2.0), _if("cond", "first", "picked", 3.0),
             helper.make_node("MatMul", ["picked", "w"], ["out"], name="matmul"),
             helper.make_node("Relu", ["out"], ["y"], name="relu")]
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(np.array(0, np.float32),
                                                                        "zero"),
             numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array(width, np.int64), "expected")]
    graph = helper.make_graph(nodes, "branches", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["batch", "width" if free_width else 4])],
        [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("width", [4, 5])  # the then branch taken, the else branch
def test_an_if_of_a_condition_from_shapes_is_its_branch(tmp_path, width):
    _check_branch_taken(tmp_path, _model(width), width == 4)


@pytest.mark.parametrize("rank", [2, 3])  # the then branch taken, the else branch
def test_an_if_of_a_rank_with_free_dimensions_is_its_branch(tmp_path, rank):
    """torch's legacy export of an LSTM fed a state that may lack its batch axis writes
    ``If(Size(Shape(h)) != 2, Unsqueeze)``: the rank is static where the batch axis is free
    (silero-vad's 16 kHz exports, sequence length fixed; their four Ifs had been refused)."""
    _check_branch_taken(tmp_path, _model(rank, rank=True), rank == 2)


def _check_branch_taken(tmp_path, proto: onnx.ModelProto, then: bool) -> None:
    """``proto`` loads with no If left, the then branch's nodes in the graph where ``then``,
    computes what onnxruntime computes from it, and quantizes."""
    expected = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": X})[0]
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    graph = load_model(path)
    assert "If" not in {node.op_type for node in graph.nodes}
    assert ("Mul" in {node.op_type for node in graph.nodes}) == then
    got = run_graph(graph, {"x": X}, OperatorTable())["y"]
    np.testing.assert_array_equal(got, expected)
    calib, out = tmp_path / "c.npy", tmp_path / "q.onnx"
    np.save(calib, np.random.default_rng(2).standard_normal((64, 4)).astype(np.float32))
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(out),
                 "--no-progress"]) == 0
    written = ort.InferenceSession(str(out)).run(None, {"x": X})[0]
    assert np.abs(written - expected).max() < 0.05 * np.abs(expected).max()
    assert main(["audit", str(path)]) == 0


def test_an_if_of_a_condition_from_the_data_stays_and_is_refused(tmp_path, capsys):
    proto = _model(4, from_data=True)
    graph = graph_from_onnx(proto)
    assert not resolve_branches(graph)
    path, calib = tmp_path / "m.onnx", tmp_path / "c.npy"
    onnx.save(proto, path)
    np.save(calib, X)
    assert main(["quantize", str(path), "--calib", str(calib), "-o",
                 str(tmp_path / "q.onnx"), "--no-progress"]) == 2
    assert "node 'if_first' (If): no declared operator" in capsys.readouterr().err


def test_an_if_inside_a_taken_branch_is_resolved_with_the_tensors_it_reads(tmp_path):
    """The inner If's branch reads an outer constant no node reads: it is kept until the inner
    If is resolved in its turn (it had been dropped as unused after the outer one)."""
    inner = helper.make_node("If", ["cond"], ["inner"], then_branch=_branch(
        "in_then", [helper.make_node("Mul", ["x", "scale"], ["scaled"])], "scaled"),
        else_branch=_branch("in_else", [helper.make_node("Neg", ["x"], ["negated"])],
                            "negated"))
    outer = helper.make_node("If", ["cond"], ["picked"], then_branch=_branch(
        "then", [inner], "inner"), else_branch=_branch(
        "else", [helper.make_node("Identity", ["x"], ["kept"])], "kept"))
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["width"], axis=0),
             helper.make_node("Equal", ["width", "expected"], ["cond"]), outer,
             helper.make_node("MatMul", ["picked", "w"], ["y"])]
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array(4, np.int64), "expected"),
             numpy_helper.from_array(np.array(0.5, np.float32), "scale")]
    proto = helper.make_model(helper.make_graph(nodes, "nested", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])], [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    expected = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": X})[0]
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    graph = load_model(path)
    assert "If" not in {node.op_type for node in graph.nodes}
    np.testing.assert_array_equal(run_graph(graph, {"x": X}, OperatorTable())["y"], expected)


def _constant_if_model(condition: np.ndarray) -> onnx.ModelProto:
    """x -> MatMul -> If(a ``condition`` initializer: relu, else neg of the product) -> graph
    output: the If's only input is a constant, its branches read the MatMul's output."""
    def branch(name: str, op_type: str) -> onnx.GraphProto:
        return _branch(name, [helper.make_node(op_type, ["h"], [f"{name}_y"])], f"{name}_y")

    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("If", ["cond"], ["y"], name="if_1",
                              then_branch=branch("then", "Relu"),
                              else_branch=branch("else", "Neg"))]
    inits = [numpy_helper.from_array(W, "w"), numpy_helper.from_array(condition, "cond")]
    return helper.make_model(helper.make_graph(nodes, "output_if", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])], [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], inits),
        opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("taken", [True, False])
def test_an_if_of_a_constant_condition_writing_a_graph_output_reads_the_data(tmp_path, taken):
    """Its only input is a constant, but its branch reads an activation: folding had said
    the graph output depends on no model input and refused the model onnxruntime runs."""
    proto = _constant_if_model(np.array(taken))
    expected = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": X})[0]
    path, calib, out = tmp_path / "m.onnx", tmp_path / "c.npy", tmp_path / "q.onnx"
    onnx.save(proto, path)
    graph = load_model(path)
    assert "If" not in {node.op_type for node in graph.nodes}
    np.testing.assert_array_equal(run_graph(graph, {"x": X}, OperatorTable())["y"], expected)
    np.save(calib, np.random.default_rng(2).standard_normal((64, 4)).astype(np.float32))
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(out),
                 "--no-progress"]) == 0
    written = ort.InferenceSession(str(out)).run(None, {"x": X})[0]
    assert np.abs(written - expected).max() < 0.05 * np.abs(expected).max()


@pytest.mark.parametrize("condition", [np.array(0, np.int64), np.array(1.0, np.float32),
                                       np.array(b"false", object)], ids=str)
def test_a_condition_that_is_not_a_bool_takes_no_branch(condition):
    """onnxruntime refuses such an If (its condition is a bool); a string b"false" is
    truthy in Python, and had been read as the then branch taken."""
    graph = graph_from_onnx(_constant_if_model(condition))
    assert not resolve_branches(graph)
    assert "If" in {node.op_type for node in graph.nodes}


def _refusal(tmp_path, capsys, proto: onnx.ModelProto, calib: dict) -> str:
    path, data = tmp_path / "m.onnx", tmp_path / "c.npz"
    onnx.save(proto, path)
    np.savez(data, **calib)
    assert main(["quantize", str(path), "--calib", str(data), "-o",
                 str(tmp_path / "q.onnx"), "--no-progress"]) == 2
    return capsys.readouterr().err


def test_an_if_on_a_free_axis_is_refused_naming_the_axis_to_fix(tmp_path, capsys):
    """silero-vad's exports test the length of a tensor computed from their input, whose
    window the file leaves free: the refusal names the free axes; fixed, the If is taken."""
    err = _refusal(tmp_path, capsys, _model(4, free_width=True), {"x": X})
    assert "the shape of input(s) whose axes the file leaves free ('x': axis 0 (batch), " \
           "axis 1 (width))" in err
    fixed = _model(4, free_width=True)
    fixed.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4
    assert "If" not in {node.op_type for node in load_model(_saved(tmp_path, fixed)).nodes}


def test_an_if_on_the_value_of_a_scalar_input_is_refused_naming_it(tmp_path, capsys):
    """silero-vad's If on its sample rate ``sr``, an int64 scalar input: the refusal says
    to make it a constant of the file; made one, the If is taken."""
    proto = _model(4, free_width=True)
    graph = proto.graph
    graph.node[0].CopyFrom(helper.make_node("Identity", ["rate"], ["width"]))
    del graph.node[1]  # (the Equal of width and expected stays: rate == 4)
    graph.input.append(helper.make_tensor_value_info("rate", TensorProto.INT64, []))
    err = _refusal(tmp_path, capsys, proto, {"x": X, "rate": np.array(4, np.int64)})
    assert "computed from the value of input(s) 'rate'" in err
    del graph.input[1]
    graph.initializer.append(numpy_helper.from_array(np.array(4, np.int64), "rate"))
    assert "If" not in {node.op_type for node in load_model(_saved(tmp_path, proto)).nodes}


def _saved(tmp_path, proto: onnx.ModelProto):
    path = tmp_path / "saved.onnx"
    onnx.save(proto, path)
    return path


def test_a_float_op_found_only_inside_an_if_is_said_to_be_there(tmp_path, capsys):
    """silero-vad's LSTMs sit inside its If on the sample rate: `--float-op LSTM` had said the
    file holds no node of that op type. It now names the If holding them."""
    path, data = tmp_path / "m.onnx", tmp_path / "c.npz"
    onnx.save(_model(4, from_data=True), path)  # (its Ifs' then branches hold a Mul each)
    np.savez(data, x=X)
    assert main(["quantize", str(path), "--calib", str(data), "-o", str(tmp_path / "q.onnx"),
                 "--float-op", "Mul", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "holds its Mul nodes only inside the subgraphs of" in err and "if_first" in err
