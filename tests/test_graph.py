"""Graph import/export, static-tensor recognition, constant folding, the float executor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ptq_verify.engine import prepare
from ptq_verify.errors import UserError
from ptq_verify.graph import (
    Node,
    OperatorTable,
    activation_tensors,
    fold_constants,
    graph_from_onnx,
    graph_to_onnx,
    run_graph,
)

FIXTURES = Path(__file__).parent / "fixtures" / "torch"


def test_executor_matches_onnxruntime_on_every_topology():
    for name, (build, image) in {**models.TOPOLOGIES, **models.TRICKY}.items():
        model = build()
        x = models.digits(16, image)
        expected = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})[0]
        got = run_graph(graph_from_onnx(model), {"input": x}, OperatorTable())["logits"]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=name)


def test_round_trip_through_onnx():
    graph = graph_from_onnx(models.cnn())
    again = graph_from_onnx(graph_to_onnx(graph))
    x = models.digits(4, image=True)
    table = OperatorTable()
    np.testing.assert_array_equal(run_graph(graph, {"input": x}, table)["logits"],
                                  run_graph(again, {"input": x}, table)["logits"])


def test_shape_chains_are_static_and_constants_fold():
    b = models.Builder(30)
    h = b.dense("input", 64, 16)
    shape = b.add("Shape", [h])
    size = b.add("Gather", [shape, b.const(np.array(0, np.int64))], axis=0)
    target = b.add("Concat", [b.add("Unsqueeze", [size, b.const(np.array([0], np.int64))]),
                              b.const(np.array([4, 4], np.int64))], axis=0)
    h = b.add("Reshape", [h, target])
    h = b.add("Reshape", [h, b.add("Add", [b.const(np.array([-1, 8], np.int64)),
                                           b.const(np.array([0, 8], np.int64))])])
    graph = graph_from_onnx(b.model(b.dense(h, 16, 10)))
    table = OperatorTable()
    active = activation_tensors(graph, table)
    assert "gemm1" in active and "reshape1" in active
    assert not {"shape1", "gather1", "concat1"} & active
    assert fold_constants(graph, table) == 1  # the Add of two constants
    x = models.digits(3)
    assert run_graph(graph, {"input": x}, table)["logits"].shape == (3, 10)


def test_folding_constants_makes_the_shapes_after_them_known():
    # pads computed from a Constant node: shape inference on the source leaves the Pad's
    # output open; once folded, the shapes (and the BatchNorm folding that needs them) follow
    graph = prepare(graph_from_onnx(models.mobile_block()))
    assert graph.shape_of("pad1")[1:] == (8, 10, 10)
    assert "BatchNormalization" not in {node.op_type for node in graph.nodes}


def test_shapes_computed_from_other_shapes_are_inferred():
    # torch's legacy exporter writes transformers' attention mask at opset 13 as a Reshape to
    # a shape computed from another tensor's Shape: ONNX shape inference stops there, and
    # onnxruntime's symbolic shape inference, which follows the arithmetic, gives the rest
    model = onnx.load(FIXTURES / "tiny_bert.legacy.opset13.onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name for v in inferred.graph.value_info if v.type.tensor_type.HasField("shape")}
    assert "/bert/Reshape_1_output_0" not in known  # (else this test tests nothing)
    graph = graph_from_onnx(model)
    assert graph.shape_of("/bert/Reshape_1_output_0") == ("batch", 1, 1, 16)
    assert all(graph.shape_of(name) is not None for node in graph.nodes
               for name in node.outputs if name)


def test_dimensions_of_a_reshape_to_computed_sizes_are_found_by_data_propagation():
    """torch's legacy export of ``x.reshape(x.shape[0], 8, 8)`` with a dynamic batch: ONNX
    inference gives the Reshape's output a rank but no dimension (``unk__0, unk__1,
    unk__2``), so no probe could pair the next Linear's channels, and it got neither
    per-channel weights nor output-aware rounding (a new TopK fixture's legacy export).
    With its data propagation on, it follows the Shape arithmetic: (batch, 8, 8)."""
    from ptq_verify.engine.quantize import weight_layers

    model = onnx.load(FIXTURES / "digits_topk.legacy.opset17.onnx")
    inferred = onnx.shape_inference.infer_shapes(model)
    stated = next(v for v in inferred.graph.value_info if v.name == "/Reshape_output_0")
    assert not any(d.HasField("dim_value") for d in stated.type.tensor_type.shape.dim)
    graph = graph_from_onnx(model)
    assert graph.shape_of("/Reshape_output_0") == ("batch", 8, 8)
    assert set(weight_layers(prepare(graph))) == {"/embed/MatMul", "/out/Gemm"}


def test_an_output_of_positions_is_never_an_activation_even_untyped():
    """TopK's indices are described by ArgMax's witness (the declaration's index_outputs):
    not an activation whatever inference says of their type, where a float or untyped output
    of a node fed by one is."""
    from ptq_verify.graph import OperatorTable, activation_tensors, load_graph

    graph = load_graph(FIXTURES / "digits_topk.dynamo.opset18.onnx")
    topk = next(node for node in graph.nodes if node.op_type == "TopK")
    values, indices = topk.outputs
    graph.value_info.pop(indices, None)  # no type known for it
    assert graph.dtype_of(indices) is None
    active = activation_tensors(graph, OperatorTable())
    assert values in active and indices not in active


def test_symbolic_shape_inference_imports_nothing_of_onnxruntime_tools():
    # the package onnxruntime.tools imports torch in its __init__ wherever torch is installed
    # (4.2 s a process); the module is loaded from its file instead
    model = str(FIXTURES / "tiny_bert.legacy.opset13.onnx")
    code = ("import sys, onnx; from ptq_verify.graph import graph_from_onnx; "
            f"graph = graph_from_onnx(onnx.load({model!r})); "
            "print(graph.shape_of('/bert/Reshape_1_output_0'), "
            "'onnxruntime.tools' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["('batch',", "1,", "1,", "16)", "False"]


def test_shape_inference_writes_nothing_where_it_stops(tmp_path, monkeypatch):
    # onnxruntime's SymbolicShapeInference.infer_shapes saves the model into the working
    # directory where some shape stays unknown (here: after an op of another domain)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [onnx.helper.make_node("Foo", ["x"], ["h"], domain="custom"),
             onnx.helper.make_node("Relu", ["h"], ["y"])]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], [y]), opset_imports=[
        onnx.helper.make_opsetid("", 17), onnx.helper.make_opsetid("custom", 1)])
    monkeypatch.chdir(tmp_path)
    assert graph_from_onnx(model).shape_of("h") is None
    assert list(tmp_path.iterdir()) == []


def test_a_builtin_declaration_refuses_a_node_with_an_input_more():
    """onnx's checker refuses a Relu of two inputs in a file; a graph built in Python is not
    checked, and the engine would run Relu of the first input."""
    node = Node("relu2", "Relu", ["h", "w"], ["y"])
    table = OperatorTable()
    assert table.find(node) is None
    with pytest.raises(UserError, match=r"node 'relu2' \(Relu\) has 2 inputs and 1 output; "
                       r"its declaration 'Relu' \(the built-in catalog\) takes at most 1 input"):
        table.require(node)


@pytest.mark.parametrize(("op_type", "inputs", "outputs", "declaration"), [
    ("Concat", ["a", "b", "c"], ["y"], "Concat"),
    ("Sum", ["a", "b", "c", "d", "e"], ["y"], "Sum"),
    ("Max", ["a", "b", "c", "d"], ["y"], "Max"),
    ("Mean", ["a"], ["y"], "Mean"),
    ("Einsum", ["a", "b", "c"], ["y"], "EinsumTernary"),
    ("Split", ["x"], ["y0", "y1", "y2"], "Split"),
    ("Dropout", ["x", "", ""], ["y", ""], "Dropout"),  # absent optional inputs and mask
    ("Clip", ["x", "", "hi"], ["y"], "Clip"),
])
def test_variadic_and_optional_slots_still_fit(op_type, inputs, outputs, declaration):
    node = Node("n", op_type, inputs, outputs,
                {"equation": "ij,jk,kl->il"} if op_type == "Einsum" else {})
    assert OperatorTable().require(node).name == declaration


@pytest.mark.parametrize(("values", "table"), [
    (np.zeros((8, 4), np.float32), False),  # zeros_like: a scalar broadcast
    (np.full((8, 4), -3.0, np.float32), False),
    # first, middle and last elements alike, one other apart: still a table
    (np.where(np.arange(32).reshape(8, 4) == 5, 1.0, 0.0).astype(np.float32), True),
    (np.arange(32, dtype=np.float32).reshape(8, 4), True),
    (np.full((8, 4), np.nan, np.float32), True),  # NaN equals nothing: not one value
    (np.arange(32).reshape(8, 4), False),  # integers: indices, not a float table
])
def test_a_gathered_constant_is_a_table_unless_all_its_values_are_one(values, table):
    """A Gather from a float constant makes an activation when the constant is a table (an
    embedding), not when it repeats one value (a mask's zeros): decided from every element,
    though a real table is told by three of them."""
    from onnx import TensorProto, helper, numpy_helper

    model = helper.make_model(helper.make_graph(
        [helper.make_node("Gather", ["t", "ids"], ["y"])], "gather",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(values, "t")]), opset_imports=[helper.make_opsetid("", 17)])
    graph = graph_from_onnx(model)
    assert ("y" in activation_tensors(graph, OperatorTable())) is table


def _file_declarations(tmp_path, text: str) -> OperatorTable:
    from ptq_verify.catalog.toml_file import load_onnx_operators

    path = tmp_path / "ops.toml"
    path.write_text(text)
    return OperatorTable(load_onnx_operators(path), source=str(path))


def test_a_file_declaration_with_a_tensor_the_node_does_not_feed_does_not_fit(tmp_path):
    """A trial declared a gate of three tensors for a node of two: audit gave it a verdict,
    and quantize then failed inside its kernel ("missing c")."""
    table = _file_declarations(tmp_path, '[[operator]]\nname = "Gated"\ninputs = "a, b, c"\n'
                               'expr = "a*sigmoid(b)*c"\nonnx_type = "com.acme:Gated"\n')
    node = Node("g", "Gated", ["u", "v"], ["y"], domain="com.acme")
    assert table.find(node) is None
    with pytest.raises(UserError, match=r"node 'g' \(Gated\) has 2 inputs, but its "
                       r"declaration's tensor 'c' takes input slot 2 that the node leaves "
                       r"empty .*'Gated' \(.*ops.toml\)"):
        table.require(node)
    assert table.find(Node("g", "Gated", ["u", "v", "w"], ["y"], domain="com.acme"))


def test_a_file_declaration_of_several_elements_per_tensor_does_not_fit(tmp_path):
    """An expression computes one element of the node's output from one element of each
    tensor: ``x0 x1 x2`` (an RMS over three elements) has no kernel on a node, which a trial
    met in quantize ("no ONNX tensor implementation") after audit had listed a verdict."""
    table = _file_declarations(tmp_path, '[[operator]]\nname = "RMS3"\ninputs = "x0 x1 x2"\n'
                               'expr = "x0/sqrt((x0**2 + x1**2 + x2**2)/3)"\n'
                               'onnx_type = "com.acme:RMS3"\n')
    node = Node("r", "RMS3", ["h"], ["y"], domain="com.acme")
    assert table.find(node) is None
    with pytest.raises(UserError, match=r"node 'r' \(RMS3\) takes whole tensors, but its "
                       r"declaration's tensor 'x' holds 3 elements \(x0 x1 x2\)"):
        table.require(node)


def test_operators_file_leaves_out_declarations_without_an_onnx_type(tmp_path):
    """One file serves ``classify --file`` and ``--operators``: a declaration kept only to be
    classified declares no node (the file was refused whole for it); a file where none names
    an op type still asks for one."""
    from ptq_verify.catalog.toml_file import load_onnx_operators

    path = tmp_path / "ops.toml"
    path.write_text('[[operator]]\nname = "Sq"\nexpr = "x*x"\n\n[[operator]]\nname = "Clamp"\n'
                    'params = { lo = "-2", hi = "3" }\nexpr = "clip(x, lo, hi)"\n'
                    'onnx_type = "com.acme:Clamp"\n')
    assert list(load_onnx_operators(path)) == ["com.acme:Clamp"]
    path.write_text('[[operator]]\nname = "Sq"\nexpr = "x*x"\n')
    with pytest.raises(UserError, match="operator 'Sq': give its onnx_type"):
        load_onnx_operators(path)
