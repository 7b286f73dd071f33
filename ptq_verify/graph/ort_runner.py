"""The float graph in onnxruntime, with the tensors a caller wants as extra outputs.

Calibration needs every activation of the float model on many samples; onnxruntime computes
them several times faster than the catalog's numpy kernels, which stay the declared semantics
(tests/test_onnx_kernels.py checks them against onnx's reference and onnxruntime). A graph
onnxruntime cannot load (an operator only declared to ptq-verify, a custom domain) gets None,
and the caller runs the numpy executor instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper

from .model import Graph
from .onnx_io import graph_to_onnx, without_large_constants


class OrtRunner:
    """``run(feeds)`` -> the wanted tensors, in the graph's topological order."""

    def __init__(self, session, names: list[str], graph: Graph, weights: tuple = ()) -> None:
        self.session, self.names, self.graph = session, names, graph
        self.weights = weights  # the arrays the session reads its large initializers from

    def run(self, feeds: Mapping[str, np.ndarray],
            names: Iterable[str] | None = None) -> dict[str, np.ndarray] | None:
        """The wanted tensors (or those of ``names``, a part of them), or None when
        onnxruntime fails on these feeds (the caller's numpy run then names the failing
        node itself)."""
        fetch = self.names if names is None else [n for n in self.names if n in set(names)]
        try:
            return dict(zip(fetch, self.session.run(fetch, dict(feeds))))
        except Exception:  # noqa: BLE001 - onnxruntime's errors are not ours to word
            return None

    def serves(self, graph: Graph, names: Iterable[str]) -> bool:
        """Whether this session runs ``graph`` (the very object) with every tensor of
        ``names`` among its outputs."""
        return graph is self.graph and set(names) <= set(self.names)


def ort_runner(graph: Graph, want: Iterable[str]) -> OrtRunner | None:
    """A session on ``graph`` with ``want`` (tensor names) as outputs, or None when onnxruntime
    cannot run it."""
    import onnxruntime as ort

    wanted = set(want)
    order = [o for node in graph.nodes for o in node.outputs if o and o in wanted]
    # the weights go to onnxruntime as arrays, not inside the serialised model (MiniLM: a
    # session in 0.1 s instead of 0.55 s); each a copy, held by the session as before
    rest, large = without_large_constants(graph)
    model = graph_to_onnx(rest)
    for name, value in large.items():
        model.graph.initializer.append(_in_memory(name, value))
    known = {v.name for v in model.graph.output}
    for name in order:
        if name not in known:
            dtype = graph.dtype_of(name)
            elem = (helper.np_dtype_to_tensor_dtype(np.dtype(dtype)) if dtype is not None
                    else onnx.TensorProto.UNDEFINED)
            model.graph.output.append(helper.make_tensor_value_info(name, elem, None))
    options = ort.SessionOptions()
    # fatal only: a run it refuses (an index out of range) falls back to the numpy kernels,
    # which name the node in the one line a user sees; onnxruntime's own ERROR log line would
    # be a second line, in colour, on stderr
    options.log_severity_level = 4
    # no busy-waiting between runs: numpy's own threads work on each batch's tensors right
    # after a run, on the same cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    weights = [ort.OrtValue.ortvalue_from_numpy(np.array(v, order="C")) for v in large.values()]
    options.add_external_initializers(list(large), weights)
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - any model onnxruntime refuses runs in numpy instead
        return None
    return OrtRunner(session, order, graph, tuple(weights))


def _in_memory(name: str, value: np.ndarray) -> onnx.TensorProto:
    """An initializer's declaration whose values the session options supply."""
    tensor = onnx.TensorProto(name=name, dims=value.shape,
                              data_type=helper.np_dtype_to_tensor_dtype(value.dtype))
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="ptq-verify-session-options")
    return tensor
