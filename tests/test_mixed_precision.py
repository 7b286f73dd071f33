"""Mixed precision by float fallback (engine/sensitivity.py, quantize(float_tensors=...),
`ptq-verify quantize --keep-float N`), on a real torch export of the digits CNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.engine.sensitivity import _rounded, candidates, rank_activations
from ptq_verify.errors import UserError
from ptq_verify.graph.ort_runner import ort_runner

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
MODEL = FIXTURES / "digits_cnn.legacy.opset17.onnx"
CALIB = FIXTURES / "digits_image.calib.npz"


def _data(split: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"digits_image.{split}.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def prepared():
    graph = load_model(str(MODEL))
    return graph, calibrate(graph, _data("calib"), progress=False)


def _qdq_output(model, feeds) -> np.ndarray:
    session = ort.InferenceSession(model.to_onnx("qdq").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def test_every_candidate_is_ranked_costliest_first(prepared):
    graph, calibration = prepared
    ranked = rank_activations(graph, calibration, 4)
    assert {item.tensor for item in ranked} == set(candidates(graph, calibration))
    assert graph.input_names[0] in {item.tensor for item in ranked}
    costs = [item.sqnr for item in ranked]
    assert costs == sorted(costs) and np.isfinite(costs[0])


def test_the_ranking_measures_the_rounding_of_that_tensor_alone(prepared):
    """At 2 bits a tensor's rounding costs far more than at 8: the ranking is a measurement
    of the grid, not a fixed order."""
    graph, calibration = prepared
    coarse = {item.tensor: item.sqnr for item in rank_activations(graph, calibration, 2)}
    fine = {item.tensor: item.sqnr for item in rank_activations(graph, calibration, 8)}
    assert all(coarse[name] < fine[name] for name in coarse)


def test_the_rounded_graphs_run_in_onnxruntime(prepared):
    """Not in the numpy kernels, which the runner falls back to silently (10x slower on
    EfficientNet-Lite: duplicate node names once made onnxruntime refuse every copy)."""
    graph, calibration = prepared
    for name in candidates(graph, calibration):
        assert ort_runner(_rounded(graph, calibration, name, 8), graph.output_names), name


def test_a_kept_tensor_has_no_codes_and_its_producer_and_readers_run_in_float(prepared):
    graph, calibration = prepared
    worst = rank_activations(graph, calibration, 4)[0].tensor
    model = quantize(graph, calibration, 4, float_tensors=[worst])
    assert worst not in model.codes
    near = {node.name for node in graph.nodes if worst in node.outputs or worst in node.inputs}
    records = {record.name: record for record in model.records}
    for name in near:
        if records[name].kind != "static":
            assert records[name].kind == "compensated"
            assert "mixed precision" in records[name].why


def test_keeping_the_costliest_tensors_in_float_lowers_the_error(prepared):
    graph, calibration = prepared
    test = _data("test")
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    reference = session.run(None, test)[0]
    ranked = rank_activations(graph, calibration, 4)
    every = sqnr_db(reference, _qdq_output(quantize(graph, calibration, 4), test))
    kept = quantize(graph, calibration, 4, float_tensors=[item.tensor for item in ranked[:2]])
    assert sqnr_db(reference, _qdq_output(kept, test)) > every + 1


def test_a_name_that_is_no_activation_is_refused(prepared):
    graph, calibration = prepared
    with pytest.raises(UserError, match="'no such tensor' is not an activation"):
        quantize(graph, calibration, 8, float_tensors=["no such tensor"])


def test_cli_keep_float_names_what_it_kept(tmp_path, capsys):
    assert main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(tmp_path / "q.onnx"),
                 "--keep-float", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "note: mixed precision: 1 activations kept in float" in out
    assert "mixed precision: an activation kept in float" in out  # the nodes' reason


def test_cli_refuses_a_negative_count_before_any_work(tmp_path, capsys):
    target = tmp_path / "q.onnx"
    assert main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(target),
                 "--keep-float", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--keep-float -1" in err
    assert not target.exists()
