"""The reference peer: onnxruntime's quantize_static (QDQ, int8 activations and weights, MinMax).

The quantized model is run twice: in a default onnxruntime session (what a user gets) and with
graph optimizations off, where onnxruntime evaluates the QDQ pairs one by one in float. The
second is the "emulated" figure: on CPUs without VNNI the default session fuses QDQ into u8s8
integer kernels whose 16-bit intermediate sums can saturate, so the two can differ a lot.

The command line (``python ort_peer.py MODEL DATA OUT``, what benchmarks/quantize_speed.py
times) and :func:`write_int8` import nothing of ptq-verify where the model takes its samples
along axis 0 of every input, free there: they feed slices of the arrays as a user's own reader
would. They had cut them with ptq-verify's data helpers and parsed the model with ptq-verify's
loader, which put ptq-verify's own import (65-77 ms) and load (all-MiniLM-L6-v2: 0.26 s) into
the peer's time, a fifth of its whole run on the digits CNN. Models that fix their batch or
take samples along another axis still go through those helpers. What the check still costs
the peer is one parse of the model for its inputs' shapes, which a user's own reader, knowing
its model, would not make: 6 ms on the digits CNN, 0.12-0.18 s on all-MiniLM-L6-v2 (2-3% of
either run; ptq-verify's ratios read low by that much).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
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


class _BatchReader(CalibrationDataReader):
    """Feeds onnxruntime's calibrator the given batches, one per call."""

    def __init__(self, batches: Iterable[dict[str, np.ndarray]]) -> None:
        self._batches = iter(batches)

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


def write_int8(model_path: Path, feeds: dict[str, np.ndarray], output: Path,
               per_channel: bool = False) -> None:
    """``quantize_static`` (QDQ, int8, MinMax, per tensor or per channel) of ``model_path``
    into ``output``, calibrated on ``feeds`` (one array per model input, its samples along
    the model's batch axis, as ptq-verify reads them: ``sample_axes``), in batches of the
    size the model fixes, if it fixes one (a remainder short of a whole batch is then left
    out: such a model runs whole batches only; batches of 32 had made onnxruntime refuse
    paddle2onnx's detector (1, 3, 800, 608) and faster-whisper's silero-vad, 'Got: 32
    Expected: 1')."""
    batches = _batch_first(model_path, feeds) or _sample_axis_batches(model_path, feeds)
    _quantize(model_path, output, batches, per_channel)


def _sample_axis_batches(model_path: Path, feeds: dict[str, np.ndarray]
                         ) -> Iterator[dict[str, np.ndarray]]:
    """The calibration batches, each input cut along its batch axis as ptq-verify reads it
    (``ptq_verify.engine.data.take``): a streaming model's LSTM state (layers, batch,
    hidden) holds its samples on axis 1, and batches cut along axis 0 had failed in
    onnxruntime's LSTM (initial_h of shape (1, 400, 256) beside 32 frames)."""
    from ptq_verify.engine.data import fixed_batch, samples_in, take
    from ptq_verify.graph import graph_from_onnx

    graph = graph_from_onnx(onnx.load(str(model_path)))
    fixed = fixed_batch(graph)
    batch = fixed or CALIBRATION_BATCH
    count = samples_in(feeds, graph)
    if fixed:
        count = count // batch * batch
    return (take(feeds, graph, i, i + batch) for i in range(0, count, batch))


def _batch_first(model_path: Path, feeds: dict[str, np.ndarray]
                 ) -> Iterator[dict[str, np.ndarray]] | None:
    """Batches of CALIBRATION_BATCH samples along axis 0 of every array, where every input of
    the model (but those an initializer backs) names its axis 0 alike, the arrays feed only
    such inputs and agree on that axis's length: ptq-verify's batch axes are then axis 0 and
    its batch free (``ptq_verify.engine.data.sample_axes``, ``fixed_batch``), so the batches
    are the ones :func:`_sample_axis_batches` cuts. None otherwise."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    constants = {tensor.name for tensor in graph.initializer}
    inputs = {info.name: info.type.tensor_type.shape for info in graph.input
              if info.name not in constants}
    firsts = {shape.dim[0].dim_param if shape.dim else "" for shape in inputs.values()}
    lengths = {np.shape(array)[0] if np.ndim(array) else None for array in feeds.values()}
    if (len(firsts) != 1 or "" in firsts or not feeds or not feeds.keys() <= inputs.keys()
            or len(lengths) != 1 or None in lengths):
        return None
    count = lengths.pop()
    return ({name: array[i:i + CALIBRATION_BATCH] for name, array in feeds.items()}
            for i in range(0, count, CALIBRATION_BATCH))


def _quantize(model_path: Path, output: Path, batches: Iterable[dict[str, np.ndarray]],
              per_channel: bool) -> None:
    quantize_static(
        str(model_path),
        str(output),
        _BatchReader(batches),
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
