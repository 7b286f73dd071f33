"""The channel probes (engine/probe.py). Their memory (``example_channel_axes``): a layer probed
again with the very same node, operator and weight arrays gets the earlier answer without a
kernel run; any new array, another node object or other cleared slots makes a new probe. And
``paired_weight_axis``, the probe of a layer's input channels."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.engine import probe
from ptq_verify.graph import OperatorTable, activation_tensors, graph_from_onnx


@pytest.fixture
def counted(monkeypatch):
    """The kernel probes run, counted."""
    runs = []
    real = probe.channel_axes

    def channel_axes(*args, **kwargs):
        runs.append(args[1].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(probe, "channel_axes", channel_axes)
    monkeypatch.setattr(probe, "_PROBED", {})
    return runs


def _gemm_graph():
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(6, 4)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=6).astype(np.float32), "b")
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm", transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6])], [weight, bias]),
        opset_imports=[helper.make_opsetid("", 17)])
    return graph_from_onnx(model)


def test_a_probe_is_taken_again_only_on_the_very_same_arrays(counted):
    graph = _gemm_graph()
    table = OperatorTable()
    node = graph.nodes[0]
    op, active = table.find(node, graph), activation_tensors(graph, table)

    def axes(cleared=(2,)):
        return probe.example_channel_axes(graph, node, op, active, 1, cleared)

    first = axes()
    assert first == (0, 1) and len(counted) == 1
    assert axes() == first and len(counted) == 1  # the same objects: no kernel run
    graph.initializers["w"] = graph.initializers["w"].copy()  # equal values, a new array
    assert axes() == first and len(counted) == 2
    axes(cleared=())  # other cleared slots
    assert len(counted) == 3
    node.inputs[1] = "w2"  # an input renamed in place, as smoothing and absorption do
    graph.initializers["w2"] = graph.initializers["w"] * 2
    axes()
    assert len(counted) == 4
    del graph.initializers["w2"]  # gone: a new array may take its id, and is probed
    graph.initializers["w2"] = np.zeros((6, 4), np.float32)
    axes()
    assert len(counted) == 5


@pytest.mark.parametrize("trans_b", [0, 1])
def test_the_weight_axis_of_a_layers_input_channels_is_found_by_its_kernel(trans_b):
    """probe.paired_weight_axis, the one probe equalization's layers 2 and smoothing's
    consumers ask: which weight axis scales like the activation's channels. A Gemm's weight
    (4, 6), or (6, 4) with transB, pairs its axis 0, or 1, with the input's axis 1; the
    input's rows (axis 0, samples) pair with no weight axis."""
    rng = np.random.default_rng(1)
    shape = (6, 4) if trans_b else (4, 6)
    weight = numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), "w")
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="gemm", transB=trans_b)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])], [weight]),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = graph_from_onnx(model)
    table = OperatorTable()
    node = graph.nodes[0]
    op = table.find(node, graph)
    examples = probe.example_inputs(graph, node, activation_tensors(graph, table))
    factors = np.random.default_rng(2).uniform(0.5, 2.0, 4)
    assert probe.paired_weight_axis(op, node, examples, 0, 1, 1, factors) == trans_b
    assert probe.paired_weight_axis(op, node, examples, 0, 1, 0, factors) is None
