"""What onnxruntime runs of a quantized file on the CPU: its fused integer kernels, the float ops
left on dequantized values, the ONNX checks, and its latency.

For each file: ``onnx.checker.check_model(full_check=True)`` and strict shape inference; then the
graph onnxruntime optimizes (``ORT_ENABLE_EXTENDED`` and ``ORT_ENABLE_ALL``, written with
``optimized_model_filepath``), counted: the fused integer kernels (QLinearConv, QGemm,
MatMulIntegerToFloat, ...), and the float ops that read a DequantizeLinear's output (a
DequantizeLinear -> float op -> QuantizeLinear group onnxruntime did not fuse is one of them;
"sandwiched" counts those whose output goes to a QuantizeLinear). With ``--data``, the median
milliseconds per sample (one thread and onnxruntime's default, batch 1 and 32: rows of the data
repeated to fill the batch). A deployment engineer's questions, asked in a trial: does the qdq
file run on integers, which ops does it leave in float, and is it fast.

Run:  python benchmarks/deploy.py FILE.onnx [FILE.onnx ...] [--data DATA.npz]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

FUSED = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "MatMulInteger",
         "ConvInteger", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearSoftmax",
         "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearWhere",
         "QLinearLeakyRelu", "QLinearReduceMean", "QAttention", "DynamicQuantizeMatMul")
QDQ = ("QuantizeLinear", "DequantizeLinear")
LEVELS = {"EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def checks(path: Path) -> str:
    """The ONNX checker's and strict shape inference's verdicts on the file."""
    model = onnx.load(path)
    verdicts = []
    for name, check in (("checker", lambda: onnx.checker.check_model(model, full_check=True)),
                        ("strict shapes", lambda: onnx.shape_inference.infer_shapes(
                            model, check_type=True, strict_mode=True, data_prop=True))):
        try:
            check()
            verdicts.append(f"{name} ok")
        except Exception as error:  # noqa: BLE001 - any failure is the verdict
            verdicts.append(f"{name} FAILED: {str(error).splitlines()[0][:200]}")
    return ", ".join(verdicts)


def optimized(path: Path, level: ort.GraphOptimizationLevel) -> onnx.ModelProto:
    """The graph onnxruntime runs at ``level`` (its ``optimized_model_filepath``)."""
    ort.set_default_logger_severity(3)  # ALL warns that the NCHWc graph is machine-specific
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def counts(model: onnx.ModelProto) -> tuple[dict, dict, dict]:
    """(fused integer kernels, float ops reading a DequantizeLinear, those of them whose output
    a QuantizeLinear reads), each by op type."""
    nodes = model.graph.node
    producer = {name: node for node in nodes for name in node.output}
    readers = collections.defaultdict(list)
    for node in nodes:
        for name in node.input:
            readers[name].append(node.op_type)
    fused = collections.Counter(n.op_type for n in nodes if n.op_type in FUSED)
    after, sandwiched = collections.Counter(), collections.Counter()
    for node in nodes:
        if node.op_type in FUSED or node.op_type in QDQ:
            continue
        if any(name in producer and producer[name].op_type == "DequantizeLinear"
               for name in node.input):
            after[node.op_type] += 1
            if any("QuantizeLinear" in readers[name] for name in node.output):
                sandwiched[node.op_type] += 1
    return dict(fused), dict(after), dict(sandwiched)


def latency_ms(path: Path, data: dict[str, np.ndarray], threads: int, batch: int,
               budget: float = 1.0) -> float:
    """Median milliseconds per sample over at least 7 runs (about ``budget`` seconds)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in session.get_inputs():
        rows = data[spec.name]
        feeds[spec.name] = np.concatenate([rows] * -(-batch // len(rows)))[:batch]
    session.run(None, feeds)
    times, start = [], time.perf_counter()
    while len(times) < 7 or (time.perf_counter() - start < budget and len(times) < 300):
        begin = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - begin)
    return float(np.median(times)) / batch * 1e3


def main(argv: list[str] | None = None) -> int:
    """The command line: one block of lines per file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, help="inputs by name (.npz) for the latency")
    args = parser.parse_args(argv)
    data = dict(np.load(args.data)) if args.data else None
    for path in args.files:
        print(f"{path}: {checks(path)}")
        for name, level in LEVELS.items():
            fused, after, sandwiched = counts(optimized(path, level))
            print(f"  {name}: fused {fused}; float ops after a DequantizeLinear {after} "
                  f"(sandwiched by a QuantizeLinear {sandwiched})")
        if data is not None:
            cells = [f"{threads or 'default'} thread(s) batch {batch}: "
                     f"{latency_ms(path, data, threads, batch):.3g} ms"
                     for threads in (1, 0) for batch in (1, 32)]
            print("  per sample: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
