"""Two models a quantization engineer would bring, through ptq-verify as its docs say (a new-user
trial, docs/benchmarks-real.md).

    inverted_residual  digits (N, 1, 8, 8) -> Conv 3x3 + BatchNorm + ReLU6 -> two MobileNetV2
                       inverted-residual blocks (1x1 expand, BatchNorm, ReLU6, depthwise 3x3,
                       BatchNorm, ReLU6, 1x1 project, BatchNorm; the second with its residual
                       Add) -> Conv 1x1 + HardSwish -> global average pool -> Linear
    prenorm_encoder    digits as 8 tokens of 8 pixels (N, 8, 8) -> Linear + a learned
                       positional embedding -> torch's nn.TransformerEncoder (two pre-norm
                       layers, norm_first=True, 4 heads, GELU with the tanh approximation) ->
                       LayerNorm -> mean over tokens -> Linear

Each is trained a few epochs on the digits (benchmarks/train_digits.py's split), exported by
torch's legacy exporter (dynamo=False, opset 17) and its dynamo exporter (opset 18), with
``NAME.calib.npz`` (256 training samples, shuffled, keyed by the input's name) and
``NAME.test.npz`` (the 540 held-out ones). Then, per export, through the command line as a user
runs it: ``audit``, ``quantize`` in qdq (with ``--report``), integer and simulation, qdq and
integer with ``--keep-float 1``, and onnxruntime's quantize_static (benchmarks/ort_peer.py, per
channel): held-out output SQNR against the float model in onnxruntime and top-1 agreement.

    python benchmarks/newcomer_models.py [--out DIR]

Needs torch (the bench extra) and onnxscript for the dynamo exports; ~2 min on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from export_test_models import train_digits
from ort_peer import write_int8
from train_digits import load_split

SEED = 0
CALIBRATION = 256


class InvertedResidual(torch.nn.Module):
    """MobileNetV2's block: 1x1 expand, depthwise 3x3, 1x1 linear projection, residual where
    the shape allows."""

    def __init__(self, channels: int, out: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.residual = channels == out
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(channels, hidden, 1, bias=False), torch.nn.BatchNorm2d(hidden),
            torch.nn.ReLU6(),
            torch.nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            torch.nn.BatchNorm2d(hidden), torch.nn.ReLU6(),
            torch.nn.Conv2d(hidden, out, 1, bias=False), torch.nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def inverted_residual() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16),
        torch.nn.ReLU6(),
        InvertedResidual(16, 24, 4), InvertedResidual(24, 24, 4),
        torch.nn.Conv2d(24, 64, 1), torch.nn.Hardswish(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))


class PrenormEncoder(torch.nn.Module):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(8, width)
        self.position = torch.nn.Parameter(torch.randn(1, 8, width) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(
            width, 4, dim_feedforward=64, dropout=0.0, batch_first=True, norm_first=True,
            activation=torch.nn.GELU(approximate="tanh"))
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(tokens) + self.position)
        return self.head(self.norm(h).mean(1))


MODELS = {"inverted_residual": (inverted_residual, (1, 8, 8), "image"),
          "prenorm_encoder": (PrenormEncoder, (8, 8), "tokens")}


def export(module: torch.nn.Module, sample: np.ndarray, name: str, dynamo: bool,
           path: Path) -> None:
    batch = {0: "batch"} if not dynamo else {0: torch.export.Dim("batch")}
    torch.onnx.export(module, (torch.from_numpy(sample),), str(path), input_names=[name],
                      output_names=["logits"], dynamo=dynamo, opset_version=18 if dynamo else 17,
                      dynamic_axes=None if dynamo else {name: batch, "logits": {0: "batch"}},
                      dynamic_shapes=({0: batch[0]},) if dynamo else None,
                      **({"external_data": False} if dynamo else {}))


def make(out: Path) -> list[tuple[Path, Path]]:
    """Trains and exports both models; returns (model, test data) pairs."""
    digits = load_split()
    order = np.random.default_rng(SEED).permutation(len(digits.train_x))[:CALIBRATION]
    made = []
    for key, (build, shape, name) in MODELS.items():
        torch.manual_seed(SEED)
        shaped = {part: getattr(digits, part).reshape(-1, *shape)
                  for part in ("train_x", "test_x")}
        module = train_digits(build(), shaped["train_x"], digits.train_y, lr=3e-3)
        np.savez(out / f"{key}.calib.npz", **{name: shaped["train_x"][order]})
        np.savez(out / f"{key}.test.npz", **{name: shaped["test_x"]})
        for dynamo in (False, True):
            path = out / f"{key}.{'dynamo.opset18' if dynamo else 'legacy.opset17'}.onnx"
            export(module, shaped["test_x"][:2], name, dynamo, path)
            made.append((path, out / f"{key}.test.npz"))
    return made


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def sqnr(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference - other) ** 2))
    return 10 * np.log10(float(np.sum(reference ** 2)) / max(noise, 1e-30))


def cli(*args: str) -> tuple[int, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ptq_verify", *args], capture_output=True,
                          text=True)
    if done.returncode:
        print(f"  {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}",
              file=sys.stderr)
    return done.returncode, time.perf_counter() - start


def measure(model: Path, test: Path) -> None:
    calib = Path(str(test).replace(".test.", ".calib."))
    with np.load(test) as archive:
        feeds = dict(archive)
    reference = run(model, feeds)
    labels = reference.argmax(1)
    stem = model.with_suffix("")
    rows = {"qdq": ["--report", f"{stem}.qdq.md"], "integer": ["--format", "integer"],
            "simulation": ["--format", "simulation"], "qdq --keep-float 1": ["--keep-float", "1"],
            "integer --keep-float 1": ["--format", "integer", "--keep-float", "1"]}
    audit = cli("audit", str(model))[0]
    print(f"{model.name}: audit exit {audit}")
    for label, extra in rows.items():
        written = Path(f"{stem}.{label.replace(' --', '_').replace(' ', '')}.q.onnx")
        code, seconds = cli("quantize", str(model), "--calib", str(calib), "-o", str(written),
                            "--no-progress", "--summary", *extra)
        if code == 0:
            got = run(written, feeds)
            print(f"  {label:22} {sqnr(reference, got):5.1f} dB  top-1 "
                  f"{np.mean(got.argmax(1) == labels):.3f}  {seconds:4.1f} s")
    with np.load(calib) as archive:
        start = time.perf_counter()
        peer = Path(f"{stem}.ort.q.onnx")
        write_int8(model, dict(archive), peer, per_channel=True)
        seconds = time.perf_counter() - start
    got = run(peer, feeds)
    print(f"  {'quantize_static':22} {sqnr(reference, got):5.1f} dB  top-1 "
          f"{np.mean(got.argmax(1) == labels):.3f}  {seconds:4.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "newcomer")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # (training sums in another order on two threads: other weights)
    for model, test in make(args.out):
        measure(model, test)


if __name__ == "__main__":
    main()
