"""Smoothing and calibration in one float pass (ptq_verify/engine/smoothed_calibration.py): the
statistics derived from the pass before smoothing are those a pass over the smoothed graph
measures, up to float rounding, on a committed torch export of a small BERT."""

from __future__ import annotations

import sys
from pathlib import Path

import models
import numpy as np
import onnx
import pytest

from ptq_verify.engine import calibrate, load_model, quantize
from ptq_verify.engine.quantize import weight_layers
from ptq_verify.engine.smooth import apply, candidates_of, smooth
from ptq_verify.engine.smoothed_calibration import after_smoothing, smoothed_and_calibrated
from ptq_verify.engine.stats import TensorStats
from ptq_verify.graph import OperatorTable

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
quantize_module = sys.modules["ptq_verify.engine.quantize"]  # the package exports the function
MODEL = FIXTURES / "tiny_bert.legacy.opset17.onnx"
IN_PARTS = FIXTURES / "tiny_bert_outliers.legacy.opset14.onnx"  # LayerNorms in parts
FUSED = FIXTURES / "tiny_bert_outliers.legacy.opset17.onnx"  # the same model, fused nodes


def _calib(samples: int = 48) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tiny_bert.calib.npz") as data:
        return {key: data[key][:samples] for key in data.files}


@pytest.mark.parametrize(("shape", "axis"), [((5, 6, 7), 1), ((5, 6, 7), -1), ((3, 4, 5, 6), 1),
                                             ((3, 4, 5, 6), 3), ((9, 8), 1)])
def test_divided_statistics_are_those_of_the_divided_values(shape, axis):
    rng = np.random.default_rng(len(shape) * 10 + axis)
    rank = len(shape)
    batches = [rng.normal(size=shape).astype(np.float32) * rng.uniform(0.1, 30, size=shape[-1])
               for _ in range(3)]
    batches[1] = np.abs(batches[1])  # one batch all positive, so the extremes move unevenly
    scale = rng.uniform(0.05, 20, size=shape[axis]).astype(np.float32)
    kept = TensorStats(histogram=None, extremes=())
    direct = TensorStats(histogram=None)
    view = [1] * rank
    view[axis] = -1
    for batch in batches:
        kept.update(batch)
        direct.update(batch / scale.reshape(view).astype(np.float64))
    derived = kept.divided(scale, axis % rank)
    assert derived is not None
    assert derived.count == direct.count
    np.testing.assert_allclose([derived.minimum, derived.maximum],
                               [direct.minimum, direct.maximum], rtol=1e-6)
    assert derived.channel_peaks.keys() == direct.channel_peaks.keys()
    for key, peaks in direct.channel_peaks.items():
        np.testing.assert_allclose(derived.channel_peaks[key], peaks, rtol=1e-6)
    assert derived.min_abs <= direct.min_abs * (1 + 1e-6)


def test_statistics_without_kept_extremes_or_with_a_histogram_are_not_divided():
    values = np.ones((2, 3, 4), np.float32)
    plain, histogram = TensorStats(histogram=None), TensorStats(extremes=())
    for stats in (plain, histogram):
        stats.update(values)
        assert stats.divided(np.ones(4), 2) is None


@pytest.mark.parametrize("model", [FUSED, IN_PARTS, "joined"], ids=["fused", "in-parts", "joined"])
def test_one_pass_gives_the_calibration_a_pass_over_the_smoothed_graph_gives(model, tmp_path):
    """The derived statistics of every smoothed tensor (and of the tensors between its source
    and it: a LayerNorm in parts' gamma product; a Concat's inputs, each divided by a product
    made for it) and the derived input statistics of its consumers against a second
    calibration pass over the graph as smoothing left it; and the same smoothing as
    smoothing's own pass chooses."""
    data = _calib()
    if model == "joined":  # a Concat of far-apart ranges (tests/models.py)
        model, data = tmp_path / "joined.onnx", models.joined_data(256, seed=0)
        onnx.save(models.joined_ranges(), model)
    graph = load_model(model)
    smoothed, derived = smoothed_and_calibrated(graph, data, 8)
    assert smoothed, "the model must take smoothing for this test to reach the derivation"
    measured = calibrate(graph, data, bits=8, progress=False,
                         weight_layers=weight_layers(graph))
    for item in smoothed:
        joined = [(tensor, divided) for tensor, divided, _, _ in item.joined]
        for _, output in (*item.carried, *joined, (item.tensor, item.output)):
            after, again = derived.stats[output], measured.stats[output]
            scale = max(again.max_abs, 1e-30)
            assert abs(after.minimum - again.minimum) <= 1e-5 * scale, output
            assert abs(after.maximum - again.maximum) <= 1e-5 * scale, output
            assert (after.minimum >= 0) == (again.minimum >= 0)
            for key, peaks in again.channel_peaks.items():
                np.testing.assert_allclose(after.channel_peaks[key], peaks, rtol=1e-4,
                                           atol=1e-6 * scale)
        for consumer in item.consumers:
            one, two = derived.layers.stats[consumer], measured.layers.stats[consumer]
            np.testing.assert_allclose(one.hessian, two.hessian, rtol=1e-3,
                                       atol=1e-5 * np.abs(two.hessian).max())
            np.testing.assert_allclose(one.mean, two.mean, rtol=1e-3,
                                       atol=1e-5 * np.abs(two.mean).max())
    assert derived.runner is None  # its session ran the graph before smoothing
    assert any(item.carried for item in smoothed) == (model == IN_PARTS)
    again = load_model(model)
    assert [s.describe() for s in smooth(again, data)] == [s.describe() for s in smoothed]
    quantize(graph, derived, 8).to_onnx()


def test_a_clipping_method_that_reads_histograms_smooths_first_and_calibrates_after():
    """Histograms cannot be divided: smoothing's own pass, then calibration of the smoothed
    graph (the statistics are the smoothed tensors' own). The outlier variant: the plain tiny
    BERT's smoothings, taken unchecked on 32 samples before, fail the check on their later
    half, as they fail it on the samples beyond 32."""
    data = _calib(32)
    graph = load_model(FUSED)
    smoothed, calibration = smoothed_and_calibrated(graph, data, 8, method="mse")
    assert smoothed
    again = calibrate(graph, data, "mse", bits=8, progress=False,
                      weight_layers=weight_layers(graph))
    for item in smoothed:
        assert np.array_equal(calibration.stats[item.output].histogram,
                              again.stats[item.output].histogram)


def test_quantize_needs_no_float_run_after_the_one_pass(monkeypatch):
    """Every weight layer quantize rounds output-aware finds its statistics in the one pass:
    the consumers' derived ones, and none needed for a smoothed GELU's last Mul (one weight
    per channel, whose codes are exact), which becomes a weight layer only after smoothing
    (the tiny BERT's GELU gains nothing from a factor, so one is applied here by hand;
    all-MiniLM-L6-v2's take one)."""
    data = _calib()
    graph = load_model(MODEL)
    table = OperatorTable()
    gelu = [c for c in candidates_of(graph, table) if c.source.channel_wise]
    assert gelu, "the tiny BERT's exact GELU ends in a Mul by 0.5, a channel-wise source"
    before = weight_layers(graph)
    calibration = calibrate(graph, data, bits=8, progress=False, weight_layers=before,
                            keep=[gelu[0].tensor])
    channels = graph.shape_of(gelu[0].tensor)[gelu[0].axis]
    scale = np.random.default_rng(4).uniform(0.25, 4.0, channels)
    done = [apply(graph, gelu[0], scale, 0.5)]
    assert gelu[0].source.node.name in set(weight_layers(graph)) - set(before)
    derived = after_smoothing(calibration, done)
    assert derived is not None

    def no_run(*args, **kwargs):
        raise AssertionError("quantize ran the float graph for layer statistics")

    monkeypatch.setattr(quantize_module, "layer_stats", no_run)
    quantize(graph, derived, 8)


def test_the_pass_and_smoothings_own_pass_hold_out_the_same_peaks():
    """The peaks the strengths are compared on are those of the samples after the first ones,
    at the earlier and at the later half of their positions (engine/smooth.py, ``_choose``;
    engine/calibrate.py, ``halves_peaks``): the calibration pass that stands for smoothing's
    own gives what smoothing's own pass gives, and both are the channel peaks of the later
    samples' halves alone."""
    from ptq_verify.engine.float_run import sample_count
    from ptq_verify.engine.smooth import _observe

    graph, data, table = load_model(MODEL), _calib(48), OperatorTable()
    candidates = candidates_of(graph, table)
    names = [c.tensor for c in candidates]
    first = sample_count(graph)
    pass_peaks = calibrate(graph, data, progress=False, keep=names).held_out_peaks
    own = _observe(graph, table, data, candidates, first)[2]
    later = calibrate(graph, {key: value[first:] for key, value in data.items()},
                      progress=False, keep=names).kept
    assert set(pass_peaks) == set(own) == set(names)
    for name in names:  # (the passes batch the samples differently: float rounding apart)
        value = later[name]
        assert value.ndim == 3 and value.shape[1] >= 2  # (positions to hold out)
        middle = (value.shape[1] + 1) // 2
        expected = np.stack([np.abs(value[:, :middle]).max(axis=(0, 1)),
                             np.abs(value[:, middle:]).max(axis=(0, 1))])
        for peaks in (pass_peaks[name], own[name]):
            np.testing.assert_allclose(peaks, expected, rtol=1e-5)
