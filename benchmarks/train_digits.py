"""Train the benchmark's float models on scikit-learn's bundled digits and export them as ONNX.

Writes into benchmarks/out/ (gitignored), for each topology NAME in models.TOPOLOGIES:
    NAME.onnx        the float model (input "input", batch first; output "logits")
    NAME.calib.npz   256 calibration samples from the training split, keyed "input"
    NAME.test.npz    the test split: "input" and "labels"
Everything is seeded: the same command gives the same split, weights and files.

Run:  python benchmarks/train_digits.py
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from models import INPUT_NAME, TOPOLOGIES, Topology
from onnx_session import run_session
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

OUT = Path(__file__).resolve().parent / "out"
SEED = 0
CALIBRATION_SAMPLES = 256
TEST_FRACTION = 0.3
EPOCHS = 60
BATCH = 64
LEARNING_RATE = 5e-3
EXPORT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Digits:
    """The fixed digits split, pixels scaled to [0, 1], flat (N, 64) float32."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    calibration_x: np.ndarray


def load_split() -> Digits:
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SEED
    )
    order = np.random.default_rng(SEED).permutation(len(train_x))
    calibration_x = train_x[order[:CALIBRATION_SAMPLES]]
    return Digits(train_x, train_y, test_x, test_y, calibration_x)


def shaped(topology: Topology, flat: np.ndarray) -> np.ndarray:
    """The flat (N, 64) pixels in the topology's input shape."""
    return np.ascontiguousarray(flat.reshape(len(flat), *topology.input_shape))


def train(topology: Topology, digits: Digits) -> torch.nn.Module:
    """A few epochs of Adam on the training split: enough for ~96-99% test accuracy."""
    torch.manual_seed(SEED)
    module = topology.build()
    optimizer = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE)
    x = torch.from_numpy(shaped(topology, digits.train_x))
    y = torch.from_numpy(digits.train_y)
    generator = torch.Generator().manual_seed(SEED)
    module.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(x), generator=generator).split(BATCH):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    return module.eval()


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The model's output in a default onnxruntime CPU session."""
    return run_session(model.SerializeToString(), {INPUT_NAME: x})


def export(topology: Topology, module: torch.nn.Module, x: np.ndarray) -> onnx.ModelProto:
    """The module as ONNX, refused unless onnxruntime reproduces torch's logits on ``x``."""
    model = topology.to_onnx(module)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    difference = float(np.max(np.abs(run_onnx(model, x) - expected)))
    if difference > EXPORT_TOLERANCE:
        raise RuntimeError(f"{topology.name}: ONNX export differs from torch by {difference:.2e}")
    return model


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def model_files(name: str, out: Path = OUT) -> tuple[Path, Path, Path]:
    """Paths of (model, calibration data, test data) for one topology."""
    return out / f"{name}.onnx", out / f"{name}.calib.npz", out / f"{name}.test.npz"


def missing(out: Path = OUT) -> list[str]:
    """Names of the topologies whose files are not all in ``out``."""
    return [t.name for t in TOPOLOGIES if not all(p.exists() for p in model_files(t.name, out))]


def train_all(out: Path = OUT, log=print) -> None:
    """Train, export and write every topology; print test accuracy per model."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    digits = load_split()
    for topology in TOPOLOGIES:
        start = time.perf_counter()
        module = train(topology, digits)
        test_x = shaped(topology, digits.test_x)
        model = export(topology, module, test_x)
        accuracy = 100.0 * np.mean(run_onnx(model, test_x).argmax(axis=1) == digits.test_y)
        model_path, calibration_path, test_path = model_files(topology.name, out)
        onnx.save(model, model_path)
        save_npz(calibration_path, **{INPUT_NAME: shaped(topology, digits.calibration_x)})
        save_npz(test_path, **{INPUT_NAME: test_x, "labels": digits.test_y})
        seconds = time.perf_counter() - start
        log(f"{topology.name:15s} float test accuracy {accuracy:6.2f}%  ({seconds:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (benchmarks/out)")
    args = parser.parse_args(argv)
    train_all(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
