"""Run a serialized ONNX model in onnxruntime on the CPU, the way the benchmark's users would."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort


def cpu_session(model: str | bytes, *, optimize: bool = True) -> ort.InferenceSession:
    """A CPU session with default options, or with graph optimizations off (so that each
    QuantizeLinear/DequantizeLinear pair rounds exactly as written, unfused)."""
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run_session(model: bytes, feeds: dict[str, np.ndarray], *, optimize: bool = True) -> np.ndarray:
    """The first output in a CPU session: default options, or with graph optimizations off."""
    return cpu_session(model, optimize=optimize).run(None, feeds)[0]


def latency_ms(model: str | bytes, feeds: dict[str, np.ndarray], runs: int = 32) -> float:
    """Median milliseconds of one sample (the first ``runs`` rows of ``feeds``, one at a time)
    through a default CPU session with one thread, after one warm-up run: a deployment's
    per-request latency, and with one thread a figure that follows the machine's other load
    less than a multi-threaded one."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    session.run(None, {k: v[:1] for k, v in feeds.items()})
    times = []
    for i in range(min(runs, len(next(iter(feeds.values()))))):
        start = time.perf_counter()
        session.run(None, {k: v[i:i + 1] for k, v in feeds.items()})
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
