"""Codes over a range lopsided around 0 (docs/engine.md, lopsided ranges), on a real export:
torch's legacy exporter at opset 13 writes the digits CNN's exact GELU as Div, Erf, Add, Mul,
Mul, whose output ([-0.17, 3.7] and the like) feeds a MaxPool and a convolution."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from models import Builder
from onnx import numpy_helper
from test_mixed_precision import FIXTURES, _data

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, prepare, quantize, sqnr_db
from ptq_verify.engine.stats import SAMPLE_EXTREMES, TensorStats
from ptq_verify.graph import graph_from_onnx

MODEL = FIXTURES / "digits_cnn.legacy.opset13.onnx"
GELU = "/1/Mul_1_output_0"


@pytest.fixture(scope="module")
def models():
    graph = load_model(str(MODEL))
    calibration = calibrate(graph, _data("calib"), progress=False)
    return calibration, {symmetric: quantize(graph, calibration, 8, symmetric=symmetric)
                         for symmetric in (False, True)}


def test_a_lopsided_range_takes_all_its_codes_over_itself(models):
    calibration, built = models
    stats = calibration.stats[GELU]
    assert stats.minimum < 0 < stats.maximum and -stats.minimum < stats.maximum / 4
    code = built[False].codes[GELU]
    assert code.low < 0 < 127 < code.high and code.high - code.low == 255
    # the long side's end and the short side's with its room (where unseen samples may reach,
    # at most its reach doubled) round inside the codes: the step is that span over 254,
    # where the signed codes' is the reach over 127; every sample's GELU reaches its least
    # value, -0.17, so the room is all but none
    least = max(2 * stats.minimum, stats.unseen_extremes()[0])
    assert least == pytest.approx(stats.minimum, abs=0.01)
    assert code.low <= least * code.scale
    assert stats.maximum * code.scale <= code.high
    assert code.scale == pytest.approx(254 / (stats.maximum - least))
    assert built[True].codes[GELU].low == -128 and built[True].codes[GELU].high == 127


def test_the_finer_codes_lower_the_output_error(models):
    _, built = models
    test = _data("test")
    reference = ort.InferenceSession(str(MODEL)).run(None, test)[0]
    lopsided, symmetric = (sqnr_db(reference, built[s].run(test)["output"])
                           for s in (False, True))
    assert lopsided > symmetric + 0.3


def test_every_format_computes_the_lopsided_codes(models):
    """The simulation and integer formats to the code (the integer one lifts the codes into
    uint8 for its MaxPool and gives ConvInteger their zero point); qdq holds them in uint8
    with a zero point that is neither 0 nor 128."""
    _, built = models
    model, test = built[False], _data("test")
    simulated = model.run(test)["output"]
    scale = np.asarray(model.output_scales["output"])
    for fmt in ("simulation", "integer"):
        proto = model.to_onnx(fmt)
        got = ort.InferenceSession(proto.SerializeToString()).run(None, test)[0]
        assert (np.abs(got - simulated) * scale).max() < 0.5, fmt
    integer = model.to_onnx("integer")
    listed = {entry.key: entry.value for entry in integer.metadata_props}["float_nodes"]
    assert "MaxPool" not in listed and "/3/Conv" not in listed
    qdq = model.to_onnx("qdq")
    points = _activation_zero_points(qdq)
    assert any(point not in (0, 128) for point in points)
    got = ort.InferenceSession(qdq.SerializeToString()).run(None, test)[0]
    assert sqnr_db(simulated, got) > 30


def _activation_zero_points(proto: onnx.ModelProto) -> list[int]:
    constants = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return [int(constants[node.input[2]]) for node in proto.graph.node
            if node.op_type == "QuantizeLinear" and len(node.input) > 2
            and node.input[2] in constants and constants[node.input[2]].size == 1]


def test_cli_symmetric_writes_no_other_zero_point(tmp_path, capsys):
    for flag, name in (([], "lopsided.onnx"), (["--symmetric"], "symmetric.onnx")):
        assert main(["quantize", str(MODEL), "--calib", str(FIXTURES / "digits_image.calib.npz"),
                     "-o", str(tmp_path / name), "--no-progress", *flag]) == 0
    capsys.readouterr()
    lopsided, symmetric = (_activation_zero_points(onnx.load(tmp_path / name))
                           for name in ("lopsided.onnx", "symmetric.onnx"))
    assert set(symmetric) <= {0, 128} and not set(lopsided) <= {0, 128}


def test_symmetric_says_which_ranges_it_changed(models):
    """--symmetric names the lopsided ranges it gave symmetric codes, and says so when there
    were none (a file identical to the default's, which the user would not know otherwise)."""
    _, built = models
    said = [note for note in built[True].notes if note.startswith("symmetric codes")]
    assert len(said) == 1 and GELU in said[0]
    assert not any(note.startswith("symmetric codes") for note in built[False].notes)


def test_symmetric_says_when_it_changed_nothing(tmp_path, capsys):
    assert main(["quantize", "mlp_relu", "-o", str(tmp_path / "q.onnx"), "--no-progress",
                 "--symmetric"]) == 0
    assert "no activation's calibrated range is lopsided" in capsys.readouterr().out


def _one_sided(scattered: bool, samples: int = 16) -> np.ndarray:
    """Rows within [-0.3, 4], every one reaching 4; the short side reaches -2 on the first
    row and, ``scattered``, on no other (the rest stop near -0.3), else on every row."""
    rng = np.random.default_rng(0)
    rows = rng.uniform(-0.3, 4.0, (samples, 64)).astype(np.float32)
    rows[:, 1] = 4.0
    rows[:, 0] = -2.0
    if scattered:
        rows[1:, 0] = rng.uniform(-0.3, -0.1, samples - 1)
    return rows


def test_unseen_extremes_read_the_scatter_of_the_per_sample_extremes():
    """Extremes every sample reaches get no room; one set by a single sample gets room in
    proportion to how far the others stay from it; either side alike."""
    agreeing, scattered = TensorStats(histogram=None), TensorStats(histogram=None)
    agreeing.update(_one_sided(False), samples=16)
    scattered.update(_one_sided(True), samples=16)
    assert agreeing.minimum == scattered.minimum == -2.0
    assert agreeing.unseen_extremes() == pytest.approx((-2.0, 4.0))
    low, high = scattered.unseen_extremes()
    assert low < -2.0 - 0.1 and high == pytest.approx(4.0)
    mirrored = TensorStats(histogram=None)
    mirrored.update(-_one_sided(True), samples=16)
    assert mirrored.unseen_extremes() == pytest.approx((-high, -low))
    # a few numbers a tensor, however many samples
    for _ in range(10):
        scattered.update(_one_sided(True), samples=16)
    assert scattered.sample_lows.size == scattered.sample_highs.size == SAMPLE_EXTREMES
    assert scattered.samples == 176


def test_unseen_extremes_need_the_samples_told_apart():
    """A batch whose sample count is not known (or whose first axis is not it) leaves where
    unseen samples may reach unknown, as do fewer than two samples."""
    one, untold, other_axis = (TensorStats(histogram=None) for _ in range(3))
    one.update(_one_sided(False, samples=1), samples=1)
    untold.update(_one_sided(False))
    other_axis.update(_one_sided(False), samples=8)
    assert one.unseen_extremes() is untold.unseen_extremes() is other_axis.unseen_extremes() is None


def _input_codes(rows: np.ndarray):
    builder = Builder(seed=0)
    hidden = builder.add("Relu", [builder.dense("input", 64, 16)])
    graph = prepare(graph_from_onnx(builder.model(builder.dense(hidden, 16, 10))))
    return quantize(graph, calibrate(graph, {"input": rows}, progress=False), 8).codes["input"]


def test_a_short_side_every_sample_reaches_takes_its_exact_range():
    """The calibrated [-2, 4] where every sample reaches -2: codes over [-2, 4] (a 1.33x finer
    step than the signed codes' over [-4, 4]); where one sample of sixteen does, the short
    side's room (capped at its reach doubled, [-4, 4]) leaves no finer step: signed codes. A
    fixed doubling gave both the signed codes."""
    agreeing, scattered = _input_codes(_one_sided(False)), _input_codes(_one_sided(True))
    assert (scattered.low, scattered.high) == (-128, 127)
    assert agreeing.high - agreeing.low == 255 and agreeing.low > -128
    assert agreeing.scale == pytest.approx(254 / 6.0, rel=1e-3)


def test_no_per_sample_extremes_are_kept_for_a_range_that_cannot_be_lopsided():
    """A range that starts at 0 or whose short side is beyond LOPSIDED_SHORT_SIDE of its long
    one never takes lopsided codes, whatever its room: calibration keeps no per-sample
    extremes for it (two passes over every activation saved), and it is read as any range
    whose room is unknown."""
    from ptq_verify.engine.stats import LOPSIDED_SHORT_SIDE

    rows = _one_sided(True)
    for values in (np.abs(rows), rows * np.where(rows < 0, 4.0 / 2.0, 1.0)):
        stats = TensorStats(histogram=None)
        stats.update(values, samples=16)
        short, long = sorted((-stats.minimum, stats.maximum))
        assert short <= 0 or short > LOPSIDED_SHORT_SIDE * long
        assert stats.sample_lows is None and stats.unseen_extremes() is None
    kept = TensorStats(histogram=None)
    kept.update(rows, samples=16)
    assert kept.sample_lows.size == SAMPLE_EXTREMES


def test_a_range_read_through_a_copy_alone_takes_its_codes_over_itself():
    """An activation read only by a copy (a Cast: the reader of hummingbird-ml's
    StandardScaler output, a float64 [-2.9, 32.4], before its MLP's first Gemm) has its
    range bound by that copy's output, one tensor: it takes lopsided codes as when the Gemm
    reads it itself. It had taken the signed codes (only a range its readers read whole took
    lopsided ones): 30.2 dB held out against quantize_static's asymmetric 35.2, now 36.5."""
    builder = Builder(seed=0)
    rows = np.random.default_rng(1).uniform(-1, 16, size=(64, 64)).astype(np.float32)
    rows[rows < 0] /= 8  # [-0.125, 16]: every sample reaches below 0 (a known short side)
    cast = builder.add("Cast", ["input"], to=onnx.TensorProto.FLOAT)
    graph = prepare(graph_from_onnx(builder.model(builder.dense(cast, 64, 10))))
    codes = quantize(graph, calibrate(graph, {"input": rows}, progress=False), 8).codes
    assert codes["input"].high - codes["input"].low == 255 and codes["input"].low > -128
