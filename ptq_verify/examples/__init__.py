"""Small float models shipped with the package, so quantizing works from a plain install.

Each example NAME is ``NAME.onnx`` (a digits classifier: input ``input``, batch first, output
``logits``) and ``NAME.calib.npz`` (256 calibration images keyed ``input``), written by
``benchmarks/make_examples.py`` from the benchmark's seeded training. The command line takes
an example's name where it takes a model path (a file of that name wins)::

    ptq-verify quantize cnn_sigmoid -o cnn_q.onnx     # --calib defaults to the example's
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
    """The example models, sorted."""
    return sorted(p.stem for p in FOLDER.glob("*.onnx"))


def model_path(name: str) -> Path | None:
    """The example's model file, or None when ``name`` is no example."""
    path = FOLDER / f"{name}.onnx"
    return path if name in names() else None


def calibration_path(name: str) -> Path:
    """The example's calibration data."""
    return FOLDER / f"{name}.calib.npz"
