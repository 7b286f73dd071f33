"""Wide sums through a sum of one tensor's elements (quantize.py ``_carries_integers``,
``_summed_reach``): torch's dynamo export writes ``F.affine_grid`` as a Mul of theta by a
constant base grid, a ReduceSum and a Reshape into GridSample, in float. Rounding the Mul's
products and then their sum to n bits put a spatial transformer's sampling grid in steps of
1/134 (35.4 dB held out); both held wide, the grid reaches the float node exact (43.6 dB)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from models import affine_grid_sum, digits, output_unit

from ptq_verify.engine import calibrate, prepare, quantize, sqnr_db
from ptq_verify.engine.probe import ones_gain
from ptq_verify.graph import OperatorTable, activation_tensors, graph_from_onnx, run_graph


def _quantized(axis: int = 2, **options):
    graph = prepare(graph_from_onnx(affine_grid_sum(axis)))
    calibration = calibrate(graph, {"input": digits(64)}, progress=False)
    return graph, quantize(graph, calibration, 8, **options)


@pytest.fixture(scope="module")
def models():
    graph, wide = _quantized()
    return graph, wide, _quantized(wide_sums=False)[1]


def _outputs(graph, op_type: str) -> str:
    return next(n.outputs[0] for n in graph.nodes if n.op_type == op_type)


def test_the_product_and_its_sum_are_held_wide_into_the_float_node(models):
    graph, wide, narrow = models
    for op_type in ("Mul", "ReduceSum"):
        assert wide.codes[_outputs(graph, op_type)].wide, op_type
        assert not narrow.codes[_outputs(graph, op_type)].wide, op_type
    test = {"input": digits(200, offset=64)}
    reference = run_graph(graph, test, OperatorTable())["logits"]
    gain = (sqnr_db(reference, wide.run(test)["logits"])
            - sqnr_db(reference, narrow.run(test)["logits"]))
    assert gain > 3, gain


@pytest.mark.parametrize("form", ["simulation", "integer", "qdq"])
def test_every_format_runs_the_wide_element_sum(models, form):
    _, wide, _ = models
    test = {"input": digits(200, offset=64)}
    simulated = wide.run(test)["logits"]
    session = ort.InferenceSession(wide.to_onnx(form).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    exported = session.run(None, test)[0]
    if form == "qdq":  # onnxruntime requantizes with its own float32 multipliers
        assert sqnr_db(simulated, exported) > 30
    else:
        scale = output_unit(wide, "logits", simulated)
        assert np.max(np.abs(exported - simulated) * scale) < 0.5, f"{form} differs by a code"


def test_a_sum_over_the_free_batch_axis_has_no_bound():
    # the ReduceSum's output on ones: 3 over the product's inner axis, whatever the batch;
    # over the batch it grows with it, so no int32 bound holds at run time
    for axis, gain in ((2, 3.0), (0, None)):
        graph = prepare(graph_from_onnx(affine_grid_sum(axis)))
        node = next(n for n in graph.nodes if n.op_type == "ReduceSum")
        table = OperatorTable()
        active = activation_tensors(graph, table)
        assert ones_gain(graph, node, table.lookup(node, graph)[0], active) == gain, axis
