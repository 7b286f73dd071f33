"""Run a serialized ONNX model in onnxruntime on the CPU, the way the benchmark's users would."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort


def run_session(model: bytes, feeds: dict[str, np.ndarray], *, optimize: bool = True) -> np.ndarray:
    """The first output in a CPU session: default options, or with graph optimizations off."""
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]
