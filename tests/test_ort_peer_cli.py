"""benchmarks/ort_peer.py, the onnxruntime quantize_static peer, as a user runs it: a new-user
trial ran ``--help`` and met an IndexError traceback."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "ort_peer.py"
EXAMPLES = ROOT / "ptq_verify" / "examples"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


def test_help_prints_the_usage():
    outcome = _run("--help")
    assert outcome.returncode == 0, outcome.stderr
    assert "model data out" in outcome.stdout and "--per-channel" in outcome.stdout


def test_missing_arguments_are_a_usage_error_not_a_traceback():
    outcome = _run()
    assert outcome.returncode == 2
    assert "Traceback" not in outcome.stderr and "required" in outcome.stderr


def test_it_writes_a_qdq_model(tmp_path):
    out = tmp_path / "peer.onnx"
    outcome = _run(str(EXAMPLES / "cnn_relu.onnx"), str(EXAMPLES / "cnn_relu.calib.npz"),
                   str(out), "--per-channel")
    assert outcome.returncode == 0, outcome.stderr
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(out).graph.node}


def _fixed_batch_model(path: Path, first_axis) -> None:
    """x (first_axis, 4) -> MatMul -> + state (1, 3) -> Relu: with first_axis 1, a model
    exported with its batch fixed at 1, as paddle2onnx exports detectors; with a name, free
    chunks beside a state of batch 1, as faster-whisper's silero-vad."""
    weight = numpy_helper.from_array(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Add", ["h", "state"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
        "fixed_batch", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [first_axis, 4]),
                        helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [first_axis, 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.mark.parametrize("first_axis", [1, "seq_len"])
def test_a_model_that_fixes_its_batch_is_calibrated_in_batches_of_that_size(tmp_path,
                                                                             first_axis):
    """A new-user trial's layout detector takes (1, 3, 800, 608), and faster-whisper's
    silero-vad chunks (seq_len, 576) beside a state (1, 1, 128): batches of 32 samples had
    made onnxruntime refuse both calibration runs ('Got: 32 Expected: 1')."""
    model, data, out = tmp_path / "m.onnx", tmp_path / "calib.npz", tmp_path / "peer.onnx"
    _fixed_batch_model(model, first_axis)
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.normal(size=(40, 4)).astype(np.float32),
             state=rng.normal(size=(40, 3)).astype(np.float32))
    outcome = _run(str(model), str(data), str(out))
    assert outcome.returncode == 0, outcome.stderr[-400:]
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(out).graph.node}


def test_a_streaming_state_is_batched_along_its_own_axis(tmp_path):
    """A new-user trial's streaming speaker encoder, its LSTM state (3, batch, 256) recorded
    in the model's own layout as docs/engine.md says, ended in onnxruntime's traceback: every
    input had been cut along axis 0, the state's layers."""
    fixtures = ROOT / "tests" / "fixtures" / "torch"
    out = tmp_path / "peer.onnx"
    outcome = _run(str(fixtures / "digits_lstm_state.legacy.opset17.onnx"),
                   str(fixtures / "digits_lstm_state.calib.npz"), str(out), "--per-channel")
    assert outcome.returncode == 0, outcome.stderr[-600:]
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(out).graph.node}


def test_a_batch_first_model_is_quantized_without_ptq_verify(tmp_path):
    """The command line is the peer benchmarks/quantize_speed.py times: where the model takes
    its samples along axis 0 it must not import ptq-verify (whose import and loader had been
    a fifth of the peer's time on the digits CNN), and it writes the file the general path
    (ptq-verify's batch axes) writes."""
    out = tmp_path / "peer.onnx"
    args = [str(EXAMPLES / "cnn_relu.onnx"), str(EXAMPLES / "cnn_relu.calib.npz"), str(out)]
    check = ("import runpy, sys; sys.argv = ['ort_peer.py', *sys.argv[1:]]; "
             f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__'); "
             "print(sorted(m for m in sys.modules if m.startswith('ptq_verify')))")
    outcome = subprocess.run([sys.executable, "-c", check, *args], capture_output=True,
                             text=True, timeout=120)
    assert outcome.returncode == 0, outcome.stderr[-400:]
    assert outcome.stdout.strip().splitlines()[-1] == "[]"
    general = tmp_path / "general.onnx"
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import ort_peer
    finally:
        sys.path.remove(str(SCRIPT.parent))
    model = Path(args[0])
    with np.load(args[1]) as archive:
        feeds = dict(archive)
    ort_peer._quantize(model, general, ort_peer._sample_axis_batches(model, feeds), False)
    assert out.read_bytes() == general.read_bytes()
