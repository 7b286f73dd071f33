"""Cross-layer equalization on the shipped digits examples: logit SQNR with and without it.

For every example model in ptq_verify/examples (its own calibration data), per-tensor and
per-channel weights, at 8 and 4 bits, with the CLI's defaults otherwise: the SQNR (dB) of the
simulated logits against the float logits on all 1797 scikit-learn digits: without
equalization, with every group's whole factors (Nagel et al.), and as the CLI does by default
(each group's strength chosen on its calibration data, then bias absorption), the groups the
default equalized and the biases it absorbed. One table on stdout.

The examples are trained and their channel ranges are even; the last row, ``uneven_relu6``, is
an untrained seeded network shaped like a mobile block after BatchNorm folding (output channels
of the first convolution spread over a factor 100, ReLU6, a depthwise convolution, ReLU6, a
convolution), calibrated on the first 200 digits.

Run:  python benchmarks/equalize.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from machine import describe
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.engine.absorb import absorb, shifted_tensors
from ptq_verify.engine.equalize import equalize
from ptq_verify.graph import OperatorTable, run_graph

EXAMPLES = Path(__file__).resolve().parent.parent / "ptq_verify" / "examples"
BITS = (8, 4)


def _digits(shape: tuple) -> np.ndarray:
    x = load_digits().data.astype(np.float32) / 16.0
    return x.reshape((-1, *[d for d in shape[1:]]))


def uneven_relu6(path: Path) -> Path:
    """Write the ``uneven_relu6`` model and its calibration data next to ``path``; return it."""
    rng = np.random.default_rng(0)
    inits, nodes = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = f"{op.lower()}{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    spread = np.logspace(-1, 1, 8).reshape(8, 1, 1, 1)
    h = node("Conv", ["input", const("w1", rng.standard_normal((8, 1, 3, 3)) * spread),
                      const("b1", rng.standard_normal(8) * 0.1)], pads=[1] * 4)
    h = node("Clip", [h, const("lo1", 0), const("hi1", 6)])
    h = node("Conv", [h, const("w2", rng.standard_normal((8, 1, 3, 3)) / 3)], group=8,
             pads=[1] * 4)
    h = node("Clip", [h, const("lo2", 0), const("hi2", 6)])
    h = node("Relu", [node("Conv", [h, const("w3", rng.standard_normal((8, 8, 1, 1)) / 3)])])
    h = node("Flatten", [h])
    node("Gemm", [h, const("w4", rng.standard_normal((10, 512)) / 20)], transB=1)
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes, "uneven_relu6",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    target = path / "uneven_relu6.onnx"
    target.write_bytes(model.SerializeToString())
    np.savez(target.with_suffix(".calib.npz"), input=_digits((0, 1, 8, 8))[:200])
    return target


def _sqnr(path: Path, per_channel: bool, cle: str, bits: int
          ) -> tuple[float, list[str], list[str]]:
    """Logit SQNR with ``cle`` "off", "whole" (every group's full factors, as Nagel et al.)
    or "measured" (each group's strength chosen on the calibration data, then bias
    absorption: what the CLI does by default)."""
    graph = load_model(path)
    name = graph.inputs[0].name
    calib = dict(np.load(path.with_suffix(".calib.npz")))
    pairs = [] if cle == "off" else equalize(
        graph, OperatorTable(), data=calib if cle == "measured" else None, bits=bits,
        per_channel=per_channel)
    absorbed = absorb(graph, calib) if cle == "measured" else []
    feeds = {name: _digits(graph.inputs[0].shape)}
    reference = run_graph(load_model(path), feeds, OperatorTable())
    calibration = calibrate(graph, calib, progress=False)
    model = quantize(graph, calibration, bits, per_channel=per_channel,
                     calibrated_unsigned=shifted_tensors(absorbed))
    out = graph.outputs[0].name
    return (sqnr_db(reference[out], model.run(feeds)[out]), [p.describe() for p in pairs],
            [a.describe() for a in absorbed])


def main() -> int:
    rows = [("model", "weights",
             *(f"{b}-bit off / whole CLE / default (measured CLE + absorption)" for b in BITS),
             f"groups equalized by default at {BITS[0]} bits", "biases absorbed")]
    scratch = tempfile.TemporaryDirectory()
    for path in [*sorted(EXAMPLES.glob("*.onnx")), uneven_relu6(Path(scratch.name))]:
        for per_channel in (False, True):
            cells, kept = [], []
            for bits in BITS:
                sqnr = {cle: _sqnr(path, per_channel, cle, bits)
                        for cle in ("off", "whole", "measured")}
                cells.append(" / ".join(f"{sqnr[cle][0]:.1f}" for cle in sqnr) + " dB")
                kept = kept or [sqnr["measured"][1], sqnr["measured"][2]]
            rows.append((path.stem, "per-channel" if per_channel else "per-tensor", *cells,
                         "; ".join(kept[0]) or "none", "; ".join(kept[1]) or "none"))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print("Machine: " + "; ".join(describe()))
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + " --- |" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
