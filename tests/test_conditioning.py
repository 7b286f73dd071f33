"""Activations whose n-bit codes make a float node's output noise are kept in float where that
measurably helps (ptq_verify/engine/conditioning.py), on torch exports of a model with a
DDPM-style embedding of a float timestep: 8-bit codes of t in [0, 1000) are 3.9 apart, and Sin
and Cos of t times frequencies up to 1 read them as noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.engine.conditioning import ancestors, ill_conditioned
from ptq_verify.engine.sensitivity import costliest
from ptq_verify.examples import calibration_path, model_path
from ptq_verify.graph import OperatorTable

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
EXPORTS = ["digits_timestep.legacy.opset17.onnx", "digits_timestep.dynamo.opset18.onnx"]


def _data(split: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"digits_timestep.{split}.npz") as data:
        return dict(data)


def _held_out_sqnr(reference: Path, quantized: Path) -> float:
    feeds = _data("test")
    expected, got = (ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                     .run(None, feeds)[0] for path in (reference, quantized))
    return sqnr_db(expected, got)


@pytest.fixture(scope="module")
def quantized_legacy():
    graph = load_model(str(FIXTURES / EXPORTS[0]))
    calibration = calibrate(graph, _data("calib"), progress=False)
    return graph, calibration, quantize(graph, calibration, 8)


@pytest.mark.parametrize("export", EXPORTS)
def test_the_timestep_is_kept_in_float_and_the_held_out_sqnr_recovers(export, tmp_path,
                                                                      capsys):
    model = FIXTURES / export
    figures = {}
    for option in ([], ["--no-rescue"], ["--format", "integer"]):
        out = tmp_path / f"q{len(option)}.onnx"
        assert main(["quantize", str(model), "--calib",
                     str(FIXTURES / "digits_timestep.calib.npz"), "-o", str(out),
                     "--no-progress", "--json", *option]) == 0
        summary = json.loads(capsys.readouterr().out)
        notes = [note for note in summary["notes"] if note.startswith("ill-conditioned")]
        figures[" ".join(option)] = _held_out_sqnr(model, out), notes
    (rescued, notes), (plain, none) = figures[""], figures["--no-rescue"]
    assert not none and len(notes) == 1 and "kept in float: t (" in notes[0]
    assert rescued > 28 and rescued > plain + 10, (rescued, plain)
    assert figures["--format integer"][0] > 28


def test_the_screen_flags_the_nodes_that_read_the_timestep_as_noise(quantized_legacy):
    graph, calibration, model = quantized_legacy
    types = {node.name: node.op_type for node in graph.nodes}
    flagged = ill_conditioned(graph, calibration, model, OperatorTable.of(None))
    # the SiLUs' Sigmoids run in float on codes too, and are not flagged
    assert {types[item.node] for item in flagged} == {"Sin", "Cos"}
    assert all(item.sqnr < 3.01 * 8 for item in flagged)
    assert "t" in ancestors(graph, [item.tensor for item in flagged])


@pytest.mark.parametrize("name", ["cnn_sigmoid", "mlp_sigmoid", "mlp_tanh"])
def test_the_screen_leaves_well_conditioned_float_nodes_alone(name):
    graph = load_model(str(model_path(name)))
    with np.load(calibration_path(name)) as data:
        calibration = calibrate(graph, dict(data), progress=False)
    model = quantize(graph, calibration, 8)
    assert any(record.kind == "compensated" for record in model.records)
    assert ill_conditioned(graph, calibration, model, OperatorTable.of(None)) == []


def test_a_candidate_is_kept_only_where_the_model_gains_the_least_gain(quantized_legacy):
    graph, calibration, _ = quantized_legacy
    among = set(ancestors(graph, ["t"]))
    kept = costliest(graph, calibration, 8, 1, among=among)
    assert [item.tensor for item in kept] == ["t"]
    # (no activation in float raises a model's output SQNR by 100 dB)
    assert costliest(graph, calibration, 8, 1, among=among, min_gain=100.0) == []
