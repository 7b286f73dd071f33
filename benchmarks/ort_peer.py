"""The reference peer: onnxruntime's quantize_static (QDQ, int8 activations and weights, MinMax).

The quantized model is run twice: in a default onnxruntime session (what a user gets) and with
graph optimizations off, where onnxruntime evaluates the QDQ pairs one by one in float. The
second is the "emulated" figure: on CPUs without VNNI the default session fuses QDQ into u8s8
integer kernels whose 16-bit intermediate sums can saturate, so the two can differ a lot.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

CALIBRATION_BATCH = 32


class _ArrayReader(CalibrationDataReader):
    """Feeds one input array to onnxruntime's calibrator in fixed-size batches."""

    def __init__(self, input_name: str, data: np.ndarray) -> None:
        self._batches = iter(
            {input_name: data[i : i + CALIBRATION_BATCH]}
            for i in range(0, len(data), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(model_path: Path, input_name: str, calibration: np.ndarray,
                  per_channel: bool = False) -> bytes:
    """The serialized QDQ int8 model that ``quantize_static`` makes with its defaults otherwise
    (one weight scale per tensor, or per channel)."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "model_int8.onnx"
        quantize_static(
            str(model_path),
            str(output),
            _ArrayReader(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            per_channel=per_channel,
        )
        return output.read_bytes()
