"""A split into an ONNX sequence whose pieces are taken at constant positions, rewritten as the
Slices they are (graph/sequences.py), agrees with onnxruntime on the sequence ops; one whose
use the rewrite cannot place is left as it is."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph
from ptq_verify.graph.sequences import split_sequences

X = np.random.default_rng(0).standard_normal((3, 7, 2)).astype(np.float32)


def _model(split: np.ndarray | None, position: int, keepdims: int = 1):
    """x [3, 7, 2] -> SplitToSequence along axis 1 (``split`` sizes, a scalar size, or none)
    -> SequenceAt(``position``)."""
    inits = [numpy_helper.from_array(np.array(position, np.int64), "at")]
    inputs = ["x"]
    if split is not None:
        inits.append(numpy_helper.from_array(split.astype(np.int64), "sizes"))
        inputs.append("sizes")
    nodes = [helper.make_node("SplitToSequence", inputs, ["parts"], axis=1, keepdims=keepdims),
             helper.make_node("SequenceAt", ["parts", "at"], ["y"])]
    graph = helper.make_graph(nodes, "seq", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [3, 7, 2])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("split, position, keepdims", [
    (np.array([2, 4, 1]), 1, 1),   # sizes: the middle piece
    (np.array([2, 4, 1]), -1, 1),  # counted from the end
    (np.array(3), 2, 1),           # one size: the last piece is shorter
    (None, 4, 0),                  # pieces of one, their axis dropped
    (None, -1, 1),                 # pieces of one, the last, the axis kept
])
def test_a_piece_taken_at_a_constant_position_is_its_slice(split, position, keepdims):
    proto = _model(split, position, keepdims)
    expected = ort.InferenceSession(proto.SerializeToString(),
                                    providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    graph = graph_from_onnx(proto)
    assert split_sequences(graph)
    assert "SplitToSequence" not in {n.op_type for n in graph.nodes}
    got = run_graph(graph, {"x": X}, OperatorTable())["y"]
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_a_scalar_size_counted_from_the_end_is_left_as_it_is():
    """Its pieces' count depends on the axis's length: no constant Slice stands for it."""
    graph = graph_from_onnx(_model(np.array(3), -1))
    assert not split_sequences(graph)
    assert "SplitToSequence" in {n.op_type for n in graph.nodes}
