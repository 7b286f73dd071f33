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
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

CALIBRATION_BATCH = 32


class _ArrayReader(CalibrationDataReader):
    """Feeds the model's input arrays to onnxruntime's calibrator in batches of ``batch``
    samples."""

    def __init__(self, feeds: dict[str, np.ndarray], batch: int = CALIBRATION_BATCH) -> None:
        count = len(next(iter(feeds.values())))
        self._batches = iter(
            {name: data[i : i + batch] for name, data in feeds.items()}
            for i in range(0, count, batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(model_path: Path, input_name: str, calibration: np.ndarray,
                  per_channel: bool = False) -> bytes:
    """The serialized QDQ int8 model that ``quantize_static`` makes with its defaults otherwise
    (one weight scale per tensor, or per channel)."""
    return quantize_int8_feeds(model_path, {input_name: calibration}, per_channel)


def quantize_int8_feeds(model_path: Path, feeds: dict[str, np.ndarray],
                        per_channel: bool = False) -> bytes:
    """:func:`quantize_int8` for a model with several inputs (calibration arrays by name)."""
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "model_int8.onnx"
        write_int8(model_path, feeds, output, per_channel)
        return output.read_bytes()


def fixed_batch(model_path: Path) -> int | None:
    """The batch size the model's inputs fix along axis 0, as ptq-verify reads it
    (``ptq_verify.engine.data.fixed_batch``: the one size of those that fix it; paddle2onnx's
    detectors take (1, 3, H, W), faster-whisper's silero-vad audio chunks (seq_len, 576)
    beside an LSTM state (1, 1, 128)), or None where none fixes it. Why: batches of
    CALIBRATION_BATCH samples made onnxruntime refuse both models' calibration runs ('Got:
    32 Expected: 1', a new-user trial)."""
    model = onnx.load(str(model_path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    firsts = {value.type.tensor_type.shape.dim[0].dim_value
              for value in model.graph.input
              if value.name not in weights and value.type.tensor_type.shape.dim} - {0}
    return firsts.pop() if len(firsts) == 1 else None


def write_int8(model_path: Path, feeds: dict[str, np.ndarray], output: Path,
               per_channel: bool = False) -> None:
    """``quantize_static`` (QDQ, int8, MinMax, per tensor or per channel) of ``model_path``
    into ``output``, calibrated on ``feeds`` (one array per model input, batch first), in
    batches of the size the model fixes, if it fixes one (a remainder short of a whole
    batch is then left out: such a model runs whole batches only)."""
    batch = fixed_batch(model_path)
    if batch is not None:
        whole = len(next(iter(feeds.values()))) // batch * batch
        feeds = {name: data[:whole] for name, data in feeds.items()}
    quantize_static(
        str(model_path),
        str(output),
        _ArrayReader(feeds, batch or CALIBRATION_BATCH),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        per_channel=per_channel,
    )


def main(argv: list[str] | None = None) -> None:
    """The command line: ``python ort_peer.py MODEL DATA OUT [--per-channel]``. A new-user trial
    ran ``--help`` as the brief said and met an IndexError traceback (the arguments were read
    from sys.argv by position)."""
    import argparse

    parser = argparse.ArgumentParser(
        description="onnxruntime's quantize_static (QDQ, int8 activations and weights, MinMax) "
                    "of MODEL, calibrated on DATA, written to OUT: the peer ptq-verify is "
                    "measured against")
    parser.add_argument("model", type=Path, help="the float ONNX model")
    parser.add_argument("data", type=Path,
                        help="calibration .npz: one array per model input, keyed by its name, "
                             "batch first")
    parser.add_argument("out", type=Path, help="the quantized model to write")
    parser.add_argument("--per-channel", action="store_true",
                        help="one weight scale per output channel (default: per tensor)")
    args = parser.parse_args(argv)
    with np.load(args.data) as archive:
        write_int8(args.model, dict(archive), args.out, per_channel=args.per_channel)


if __name__ == "__main__":
    main()
