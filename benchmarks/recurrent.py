"""Models with a recurrent layer, quantized with the layer kept in float (``--float-op``).

No declaration describes an LSTM, a GRU or an RNN (each step of the output depends on every
earlier step), so ptq-verify refuses such a model by name unless the user keeps those op types
in float: ``ptq-verify quantize model.onnx --calib calib.npz --float-op LSTM``. This measures
what that gives on digits classifiers trained a few epochs here (scikit-learn's bundled digits
as 8 tokens of 8 values -> Linear -> the recurrent layer -> the last token -> Linear), each
exported by torch's legacy exporter (opset 17) and the dynamo exporter (opset 18):
ptq-verify's 8-bit qdq file against onnxruntime's quantize_static (QDQ int8, MinMax, per
tensor and per channel), which leaves the recurrent node in float too. Both calibrate on the
first 256 digits of the test split; the metric is the logit SQNR against the float export
and the top-1 agreement on the 256 digits after them, which neither quantizer saw.

Run:  python benchmarks/recurrent.py   (about a minute on 2 cores; needs the bench extra)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).parent))
from ort_peer import CALIBRATION_BATCH as BATCH  # noqa: E402 - what its reader feeds at once
from ort_peer import write_int8  # noqa: E402

CALIBRATION, HELD_OUT = 256, 256
LAYERS = {
    "LSTM": ("LSTM", lambda torch: torch.nn.LSTM(16, 16, batch_first=True)),
    "GRU": ("GRU", lambda torch: torch.nn.GRU(16, 16, batch_first=True)),
    "RNN": ("RNN", lambda torch: torch.nn.RNN(16, 16, batch_first=True)),
    "bidirectional LSTM": ("LSTM", lambda torch: torch.nn.LSTM(16, 8, batch_first=True,
                                                               bidirectional=True)),
}
EXPORTS = (("legacy", 17), ("dynamo", 18))


def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x): the digits as (N, 8, 8) tokens in [0, 1], the first 1,000
    to train on, the rest to calibrate and measure."""
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 8, 8)
    y = data.target.astype(np.int64)
    return x[:1000], y[:1000], x[1000:], y[1000:]


def trained(layer: str):
    """The digits classifier around ``layer``, trained a few epochs (seeded)."""
    import torch
    from export_test_models import DigitsRecurrent, train_digits

    torch.manual_seed(0)
    x, y, _, _ = digits()
    module = DigitsRecurrent(LAYERS[layer][1](torch))
    head = torch.nn.Sequential(module)  # train_digits reads the last module's type
    return train_digits(head, x, y)[0]


def logits(path: Path, x: np.ndarray) -> np.ndarray:
    """The model's logits in onnxruntime, BATCH digits at a time."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[start:start + BATCH]})[0]
                           for start in range(0, len(x), BATCH)])


def row(layer: str, exporter: str, opset: int, folder: Path) -> str:
    """One table row: export, quantize both ways, measure on the held-out digits."""
    import torch
    from zoo import export_quietly

    from ptq_verify.engine import sqnr_db

    _, _, test, _ = digits()
    calibration, held = test[:CALIBRATION], test[CALIBRATION:CALIBRATION + HELD_OUT]
    model = folder / f"{layer.replace(' ', '_')}.{exporter}{opset}.onnx"
    # (the dynamo export fixes the batch at the example's: quantize_static's reader and
    # logits() feed batches of BATCH)
    export_quietly(trained(layer), (torch.from_numpy(calibration[:BATCH]),), model, ["input"],
                   ["logits"], exporter, opset)
    calib = folder / "calib.npz"
    np.savez(calib, input=calibration)
    ours = model.with_suffix(".q.onnx")
    op_type = LAYERS[layer][0]
    # (the dynamo exporter writes nn.RNN out as the steps' Gemms and Tanhs: no node to keep)
    held_layer = any(node.op_type == op_type for node in onnx.load(model).graph.node)
    run = subprocess.run([sys.executable, "-m", "ptq_verify", "quantize", str(model), "--calib",
                          str(calib), "-o", str(ours), "--no-progress",
                          *(["--float-op", op_type] if held_layer else [])],
                         capture_output=True, text=True)
    if run.returncode:
        return f"| {layer} | {exporter} {opset} | exit {run.returncode}: " \
               f"{run.stderr.strip()[:120]} | | |"
    files = [ours]
    for per_channel in (False, True):
        files.append(model.with_suffix(f".peer{int(per_channel)}.onnx"))
        write_int8(model, {"input": calibration}, files[-1], per_channel=per_channel)
    reference = logits(model, held)
    cells = []
    for quantized in files:
        value = logits(quantized, held)
        agreement = np.mean(value.argmax(1) == reference.argmax(1))
        cells.append(f"{sqnr_db(reference, value):.1f} / {100 * agreement:.1f}%")
    written = "" if held_layer else f" (no {op_type} node: written out in steps)"
    return f"| {layer} | {exporter} {opset}{written} | " + " | ".join(cells) + " |"


def main() -> int:
    print("| recurrent layer | export | ptq-verify 8-bit qdq, --float-op (dB / top-1) | "
          "quantize_static per tensor | quantize_static per channel |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for layer in LAYERS:
            for exporter, opset in EXPORTS:
                print(row(layer, exporter, opset, Path(folder)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
