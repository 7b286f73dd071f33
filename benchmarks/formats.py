"""The output formats on the digits models: file size, latency, fidelity; one table.

For every digits model at 8 bits (ptq-verify defaults): the size of each format's file against
the float model; the logits' SQNR against the float model for the engine's simulation, the qdq
and integer formats and onnxruntime's quantize_static int8; the latency in a default
onnxruntime session (CPU) at batch 1 and 64, for float, simulation, qdq (default u8s8 and
s8s8 encodings), integer and quantize_static, timed in paired interleaved rounds. Then the
encoding probe: whether each 8-bit QDQ encoding's integer kernels compute exact sums on this
CPU (a MatMul whose u8 x s8 pair sums overflow 16 bits). With ``--minilm DIR`` (the folder
``benchmarks/minilm.py --save DIR`` writes), the same size and latency figures for the real
transformer.

Run:  python benchmarks/formats.py [--docs docs/benchmarks.md] [--minilm DIR]
      (trains the digits models first when needed)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import ort_peer
from machine import describe
from models import INPUT_NAME, TOPOLOGIES
from onnx import TensorProto, helper, numpy_helper
from train_digits import missing, model_files, train_all

from ptq_verify.atomic import write_atomic
from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.engine.lower import ENCODINGS
from ptq_verify.engine.lower.kernel_probe import encoding_error

FORMATS = ("simulation", "qdq", "integer")
PEER = "ort quantize_static"
KINDS = ("float", "simulation", "qdq", "qdq s8s8", "integer", PEER)  # the timed models
BATCHES = (1, 64)
AGREEMENT_BITS = (4, 6, 8)
REPEATS = {1: 100, 64: 20}
MINILM_REPEATS = {1: 10, 64: 2}  # a run of the transformer takes 10-1000 ms
ROUNDS = 9
SECTION = "## Output formats"


def session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()  # default optimizations, as a user gets them
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def latencies_ms(models: dict[str, bytes], feeds: dict[str, np.ndarray], batch: int,
                 repeats: dict[int, int] = REPEATS) -> dict[str, tuple[float, float]]:
    """Per model, (the median wall time of one run at ``batch`` in ms, the median of its
    paired ratios to the peer's). The models take turns, ROUNDS rounds of REPEATS runs each,
    so that load from other processes on a shared machine hits them alike; each round gives
    one median per model and one ratio to the peer's median of the same round."""
    feeds = {name: data[:batch] for name, data in feeds.items()}
    runs = {name: session(model) for name, model in models.items()}
    for run in runs.values():
        for _ in range(min(10, repeats[batch])):
            run.run(None, feeds)
    rounds: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            times = []
            for _ in range(repeats[batch]):
                start = time.perf_counter()
                run.run(None, feeds)
                times.append(time.perf_counter() - start)
            rounds[name].append(1000 * float(np.median(times)))
    peer = np.array(rounds[PEER])
    return {name: (float(np.median(ms)), float(np.median(np.array(ms) / peer)))
            for name, ms in rounds.items()}


def exported(quantized, float_model: bytes, peer: bytes) -> dict[str, bytes]:
    """The timed models: float, every format (qdq in both int8-weight encodings), the peer."""
    models = {"float": float_model, PEER: peer}
    models.update({f: quantized.to_onnx(f).SerializeToString() for f in FORMATS})
    models["qdq s8s8"] = quantized.to_onnx("qdq", encoding="s8s8").SerializeToString()
    return models


def measure(name: str) -> dict:
    model_path, calib_path, test_path = model_files(name)
    calib, test = np.load(calib_path)[INPUT_NAME], np.load(test_path)[INPUT_NAME]
    graph = load_model(model_path)
    quantized = quantize(graph, calibrate(graph, {INPUT_NAME: calib}, progress=False), 8)
    models = exported(quantized, model_path.read_bytes(),
                      ort_peer.quantize_int8(model_path, INPUT_NAME, calib))
    reference = session(models["float"]).run(None, {INPUT_NAME: test})[0]
    row = {"size": {k: len(v) / len(models["float"]) for k, v in models.items()},
           "parts": parts(models["qdq"], len(models["float"])),
           "sqnr": {k: sqnr_db(reference, session(v).run(None, {INPUT_NAME: test})[0])
                    for k, v in models.items() if k != "float"},
           "latency": {(k, b): ms for b in BATCHES
                       for k, ms in latencies_ms(models, {INPUT_NAME: test}, b).items()}}
    row["sqnr"]["engine simulation"] = sqnr_db(reference, quantized.run(test)["logits"])
    return row


def parts(model: bytes, reference: int) -> tuple[float, float, float]:
    """What a file is made of, x ``reference`` bytes: the integer data (weights, biases, zero
    points), the float data (scales), and the rest (the graph: nodes, names, headers)."""
    proto = onnx.load_from_string(model)
    data = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    integer = sum(a.nbytes for a in data if not np.issubdtype(a.dtype, np.floating))
    scales = sum(a.nbytes for a in data if np.issubdtype(a.dtype, np.floating))
    return integer / reference, scales / reference, (len(model) - integer - scales) / reference


def measure_minilm(folder: Path) -> dict:
    """Sizes and latencies of the real transformer saved by ``minilm.py --save folder``."""
    model_path = folder / "minilm.onnx"
    calib = dict(np.load(folder / "minilm.calib.npz"))
    graph = load_model(model_path)
    quantized = quantize(graph, calibrate(graph, calib, progress=False), 8)
    models = exported(quantized, model_path.read_bytes(),
                      ort_peer.quantize_int8_feeds(model_path, calib))
    return {"float MB": len(models["float"]) / 1e6,
            "size": {k: len(v) / len(models["float"]) for k, v in models.items()},
            "parts": parts(models["qdq"], len(models["float"])),
            "peer parts": parts(models[PEER], len(models["float"])),
            "latency": {(k, b): ms for b in BATCHES
                        for k, ms in latencies_ms(models, calib, b, MINILM_REPEATS).items()},
            "float nodes": quantized.to_onnx("integer").metadata_props}


def agreement(name: str) -> list[str]:
    """Per width (4, 6, 8 bits): how far each format's logits in onnxruntime are from the
    engine's simulation: the most differing codes (units of the output's integer scale) for
    simulation and integer, the SQNR change against float for qdq."""
    model_path, calib_path, test_path = model_files(name)
    calib, test = np.load(calib_path)[INPUT_NAME], np.load(test_path)[INPUT_NAME]
    graph = load_model(model_path)
    reference = session(model_path.read_bytes()).run(None, {INPUT_NAME: test})[0]
    calibration = calibrate(graph, {INPUT_NAME: calib}, progress=False)
    cells = []
    for bits in AGREEMENT_BITS:
        quantized = quantize(graph, calibration, bits)
        simulated = quantized.run(test)["logits"]
        scale = np.asarray(quantized.output_scales["logits"])
        out = {f: session(quantized.to_onnx(f).SerializeToString()).run(
            None, {INPUT_NAME: test})[0] for f in FORMATS}
        codes = [float((np.abs(out[f] - simulated) * scale).max()) for f in
                 ("simulation", "integer")]
        shift = sqnr_db(reference, out["qdq"]) - sqnr_db(reference, simulated)
        cells.append(f"{codes[0]:.0f} / {codes[1]:.0f} / {shift:+.2f}")
    return cells


def sizes_at_scale(width: int = 1024) -> dict[str, float]:
    """File sizes (x float) on an MLP 64 -> width -> width -> width -> 10 with random weights:
    where the weights dominate the file, as in real models (the digits models are 8-26 KB)."""
    rng = np.random.default_rng(0)
    dims, nodes, inits, x = [64, width, width, width, 10], [], [], INPUT_NAME
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        inits += [numpy_helper.from_array((rng.normal(size=(b, a)) / np.sqrt(a)).astype(
            np.float32), f"W{i}"), numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        y = "logits" if i == len(dims) - 2 else f"g{i}"
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [y], name=f"gemm{i}",
                                      transB=1))
        x = y
        if y != "logits":
            nodes.append(helper.make_node("Relu", [y], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    graph = helper.make_graph(
        nodes, "wide_mlp", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                          ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    calib = np.load(model_files(TOPOLOGIES[0].name)[1])[INPUT_NAME]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wide_mlp.onnx"
        onnx.save(model, path)
        loaded = load_model(path)
        quantized = quantize(loaded, calibrate(loaded, {INPUT_NAME: calib}, progress=False), 8,
                             weight_rounding="nearest")
        sizes = {f: len(quantized.to_onnx(f).SerializeToString()) for f in FORMATS}
        sizes["ort quantize_static"] = len(ort_peer.quantize_int8(path, INPUT_NAME, calib))
    total = len(model.SerializeToString())
    return {"float MB": total / 1e6, **{k: v / total for k, v in sizes.items()}}


def table(rows: dict[str, dict]) -> str:
    sized = ["simulation", "qdq", "integer", PEER]
    scored = ["engine simulation", "simulation", "qdq", "qdq s8s8", "integer", PEER]
    out = ["| model | size (x float): " + " / ".join(sized) + " | qdq made of: integers / "
           "scales / graph (x float) | logit SQNR dB: " + " / ".join(scored) + " |",
           "| --- | --- | --- | --- |"]
    for name, row in rows.items():
        size = " / ".join(f"{row['size'][k]:.3f}" for k in sized)
        made = " / ".join(f"{x:.3f}" for x in row["parts"])
        sqnr = " / ".join(f"{row['sqnr'][k]:.1f}" for k in scored)
        out.append(f"| {name} | {size} | {made} | {sqnr} |")
    return "\n".join(out)


def latency_table(rows: dict[str, dict]) -> str:
    """Median ms per model and batch, and the paired ratios to quantize_static."""
    compared = ["qdq", "qdq s8s8", "integer"]
    out = ["| model | batch | " + " | ".join(f"{k} ms" for k in KINDS) + " | "
           + " | ".join(f"{k} / ort" for k in compared) + " |",
           "| --- " * (2 + len(KINDS) + len(compared)) + "|"]
    for name, row in rows.items():
        for batch in BATCHES:
            cells = [f"{row['latency'][(k, batch)][0]:.3f}" for k in KINDS]
            cells += [f"{row['latency'][(k, batch)][1]:.2f}x" for k in compared]
            out.append(f"| {name} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def target_checks(rows: dict[str, dict]) -> list[str]:
    """The issue's targets, each with the models that miss it."""
    def misses(test) -> str:
        failed = [name for name, row in rows.items() if not test(row)]
        return "met on every model" if not failed else "missed on " + ", ".join(failed)

    lines = [
        "- qdq file size <= 0.3x float: " + misses(lambda r: r["size"]["qdq"] <= 0.3),
        "- qdq file size <= onnxruntime's own: " + misses(lambda r: r["size"]["qdq"]
                                                          <= r["size"][PEER]),
        "- qdq logit SQNR within 0.5 dB of the engine's simulation: " + misses(
            lambda r: abs(r["sqnr"]["qdq"] - r["sqnr"]["engine simulation"]) <= 0.5),
        "- integer (tables) within 1 dB of float compensation: " + misses(
            lambda r: abs(r["sqnr"]["integer"] - r["sqnr"]["engine simulation"]) <= 1.0),
    ]
    for form in ("qdq", "integer"):
        for batch in BATCHES:
            lines.append(f"- {form} latency <= 1.0x quantize_static at batch {batch} (median "
                         "paired ratio): " + misses(
                             lambda r, f=form, b=batch: r["latency"][(f, b)][1] <= 1.0))
    return lines


def minilm_lines(folder: Path) -> list[str]:
    row = measure_minilm(folder)
    listed = {e.key: e.value for e in row["float nodes"]}.get("float_nodes", "")
    ops = sorted({item.split(": ", 1)[1] for item in listed.split("; ") if item})
    return [f"Real transformer (all-MiniLM-L6-v2, `benchmarks/minilm.py --save`, "
            f"{row['float MB']:.1f} MB as float, 64 tokens), size x float: " + ", ".join(
                f"{k} {row['size'][k]:.3f}" for k in ("simulation", "qdq", "integer", PEER))
            + "; qdq made of integers / scales / graph: " + " / ".join(
                f"{x:.3f}" for x in row["parts"]) + ", quantize_static's: " + " / ".join(
                f"{x:.3f}" for x in row["peer parts"]),
            "", latency_table({"MiniLM": row}), "",
            f"integer format: {len(listed.split('; ')) if listed else 0} nodes left in float "
            f"({'; '.join(ops) or 'none'})"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", help="also write the table into this Markdown file's "
                        f"'{SECTION}' section")
    parser.add_argument("--minilm", type=Path, help="the folder `benchmarks/minilm.py --save` "
                        "wrote: also measure the real transformer")
    args = parser.parse_args(argv)
    if missing():
        train_all(log=lambda line: print(line, file=sys.stderr))
    load = [os.getloadavg()[0]]
    rows = {}
    for topology in TOPOLOGIES:
        print(f"measuring {topology.name}", file=sys.stderr)
        rows[topology.name] = measure(topology.name)
    real = minilm_lines(args.minilm) if args.minilm else []
    load.append(os.getloadavg()[0])
    agree = ["| model | " + " | ".join(
        f"{b} bits: simulation / integer codes off, qdq dB" for b in AGREEMENT_BITS) + " |",
        "| --- |" + " --- |" * len(AGREEMENT_BITS)]
    for topology in TOPOLOGIES:
        print(f"agreement {topology.name}", file=sys.stderr)
        agree.append(f"| {topology.name} | " + " | ".join(agreement(topology.name)) + " |")
    probe = {name: encoding_error(name) for name in ENCODINGS}
    wide = sizes_at_scale()
    text = "\n".join([table(rows), "", latency_table(rows), "",
                      f"Load average (1 min, 2 cores) when the timings started / ended: "
                      f"{load[0]:.1f} / {load[1]:.1f}", "", *target_checks(rows), "", *real,
                      "" if real else "",
                      "Agreement with the engine's simulation in onnxruntime (codes off: the "
                      "largest difference in units of the output's integer scale; qdq: its "
                      "logit SQNR minus the simulation's):", "", *agree, "",
                      f"Sizes at scale (an MLP 64-1024-1024-1024-10 with random weights, "
                      f"{wide['float MB']:.1f} MB as float; x float): " + ", ".join(
                          f"{k} {v:.3f}" for k, v in wide.items() if k != "float MB"), "",
                      "Encoding probe (max |error| of a fused 8-bit MatMul whose u8 x s8 pair "
                      "sums overflow 16 bits): "
                      + ", ".join(f"{k} {v}" for k, v in probe.items())])
    print(text)
    if args.docs:
        _write_section(args.docs, text, " --minilm DIR" if args.minilm else "")
    return 0


def _write_section(path: str, text: str, options: str) -> None:
    with open(path, encoding="utf-8") as handle:
        doc = handle.read()
    body = "\n".join([SECTION, "", "Command: `python benchmarks/formats.py --docs "
                      f"docs/benchmarks.md{options}` (8 bits, ptq-verify defaults; latency: "
                      f"the models take turns, {ROUNDS} rounds of {REPEATS[1]} runs at batch 1 "
                      f"and {REPEATS[64]} at batch 64; per model the median of its round "
                      "medians, and the median of its paired per-round ratios to "
                      "quantize_static; default onnxruntime session, CPU).", "",
                      *describe(), "", text, ""])
    start = doc.find(SECTION)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + body
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + body + ("\n" + doc[end + 1:] if end >= 0 else "")
    write_atomic(path, doc)


if __name__ == "__main__":
    raise SystemExit(main())
