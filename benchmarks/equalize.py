"""Cross-layer equalization on the shipped digits examples: logit SQNR with and without it.

For every example model in ptq_verify/examples (its own calibration data), per-tensor and
per-channel weights, at 8 and 4 bits, with the CLI's defaults otherwise: the SQNR (dB) of the
simulated logits against the float logits on all 1797 scikit-learn digits, without and with
equalization, and the pairs equalized. One table on stdout.

Run:  python benchmarks/equalize.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from machine import describe
from sklearn.datasets import load_digits

from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.engine.equalize import equalize
from ptq_verify.graph import OperatorTable, run_graph

EXAMPLES = Path(__file__).resolve().parent.parent / "ptq_verify" / "examples"
BITS = (8, 4)


def _digits(shape: tuple) -> np.ndarray:
    x = load_digits().data.astype(np.float32) / 16.0
    return x.reshape((-1, *[d for d in shape[1:]]))


def _sqnr(path: Path, per_channel: bool, cle: bool, bits: int) -> tuple[float, list[str]]:
    graph = load_model(path)
    name = graph.inputs[0].name
    pairs = equalize(graph, OperatorTable()) if cle else []
    calib = dict(np.load(path.with_suffix(".calib.npz")))
    feeds = {name: _digits(graph.inputs[0].shape)}
    reference = run_graph(load_model(path), feeds, OperatorTable())
    calibration = calibrate(graph, calib, progress=False)
    model = quantize(graph, calibration, bits, per_channel=per_channel)
    out = graph.outputs[0].name
    return sqnr_db(reference[out], model.run(feeds)[out]), [p.describe() for p in pairs]


def main() -> int:
    rows = [("model", "weights", *(f"{b}-bit off / on" for b in BITS), "pairs equalized")]
    for path in sorted(EXAMPLES.glob("*.onnx")):
        for per_channel in (False, True):
            cells, pairs = [], []
            for bits in BITS:
                off, _ = _sqnr(path, per_channel, False, bits)
                on, pairs = _sqnr(path, per_channel, True, bits)
                cells.append(f"{off:.1f} / {on:.1f} dB")
            rows.append((path.stem, "per-channel" if per_channel else "per-tensor", *cells,
                         "; ".join(pairs) or "none"))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print("Machine: " + "; ".join(describe()))
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
