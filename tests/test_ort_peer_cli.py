"""benchmarks/ort_peer.py, the onnxruntime quantize_static peer, as a user runs it: a new-user
trial ran ``--help`` and met an IndexError traceback."""

import subprocess
import sys
from pathlib import Path

import onnx

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
