"""Committed torch exports as graph cleaners rewrite them: fixtures for the tests.

Many users run a cleaner over their export before quantizing it (onnxslim, onnx-simplifier,
onnxoptimizer, onnxruntime's offline optimization). The cleaners fold constants and fuse
patterns: a MatMul and its bias Add over 3-D tokens become a Gemm between two Reshapes, a
legacy export's shape arithmetic a constant. The fixtures are the cleaners' outputs of
fixtures already committed (benchmarks/export_test_models.py), so the tests compare the
quantized cleaned file with the quantized export it came from, on the same data:

    digits_pad.onnxslim.opset17  digits_pad.legacy.opset17 through onnxslim's defaults: its
                 token projection a Gemm between two Reshapes into the LayerNorm; data
                 ``digits.*.npz``

The cleaners need their own environment (the tests import none of them):

    python3 -m venv /tmp/cleaners && . /tmp/cleaners/bin/activate
    pip install onnx==1.23.2 onnxruntime==1.32.0 onnxslim==0.1.98
    python benchmarks/export_cleaned_models.py      (seconds)
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from fixture_files import FIXTURES, save_model

TOLERANCE = 1e-5


def onnxslim_defaults(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


# (fixture written, fixture it is cleaned from, cleaner, calibration data it is checked on)
CLEANED = (
    ("digits_pad.onnxslim.opset17.onnx", "digits_pad.legacy.opset17.onnx", onnxslim_defaults,
     "digits.calib.npz"),
)


def main() -> None:
    for name, source, clean, data in CLEANED:
        model = clean(onnx.load(FIXTURES / source))
        feeds = {k: v[:4] for k, v in np.load(FIXTURES / data).items()}  # (a batch of 4)
        before = ort.InferenceSession(FIXTURES / source).run(None, feeds)[0]
        after = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
        assert np.abs(before - after).max() <= TOLERANCE * np.abs(before).max(), name
        save_model(model, FIXTURES / name)


if __name__ == "__main__":
    main()
