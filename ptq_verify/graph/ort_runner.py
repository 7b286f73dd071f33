"""The float graph in onnxruntime, with the tensors a caller wants as extra outputs.

Calibration needs every activation of the float model on many samples; onnxruntime computes
them several times faster than the catalog's numpy kernels, which stay the declared semantics
(tests/test_onnx_kernels.py checks them against onnx's reference and onnxruntime). A graph
onnxruntime cannot load (an operator only declared to ptq-verify, a custom domain) gets None,
and the caller runs the numpy executor instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import helper

from .model import Graph, Node
from .onnx_io import (
    LEAST_OPSET,
    graph_to_onnx,
    inlined_functions,
    onnx_opset,
    read_model,
    upgraded,
    without_large_constants,
)
from .operators import OperatorTable


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
            return dict(zip(fetch, _fetched(self.session, fetch, feeds)))
        except Exception:  # noqa: BLE001 - onnxruntime's errors are not ours to word
            return None

    def serves(self, graph: Graph, names: Iterable[str]) -> bool:
        """Whether this session runs ``graph`` (the very object) with every tensor of
        ``names`` among its outputs."""
        return graph is self.graph and set(names) <= set(self.names)


def _fetched(session, fetch: list[str], feeds: Mapping[str, np.ndarray]) -> list:
    """``session.run(fetch, feeds)``'s values, read in place from onnxruntime's own outputs:
    ``run`` copies every output into a fresh numpy array, and calibration fetches every
    activation (all-MiniLM-L6-v2: 135 MB a 4-text batch, 0.24 -> 0.21 s a run). The arrays
    keep onnxruntime's buffers alive, as long as they are. Outputs other than tensors (a
    sequence) come from ``run``, as before."""
    import onnxruntime as ort

    arrays = {name: np.asarray(value, order="C") for name, value in feeds.items()}
    if not all(array.dtype.kind in "biuf" for array in arrays.values()):  # (strings)
        return session.run(fetch, dict(feeds))
    values = session.run_with_ort_values(
        fetch, {name: ort.OrtValue.ortvalue_from_numpy(array) for name, array in arrays.items()})
    if not all(value.is_tensor() for value in values):
        return session.run(fetch, dict(feeds))
    return [value.numpy() for value in values]


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
    options = session_options()
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


def quiet_onnxruntime() -> None:
    """Only fatal messages from onnxruntime's process-wide logger, which sessions' options do
    not reach: its warnings about a model (a Resize's deprecated ``tf_half_pixel_for_nn``,
    once per session) would print lines on stderr around the command's own one-line
    messages. The command-line runs call it; a library user keeps onnxruntime's setting."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)


def session_options(arena: bool = True, optimize: bool = True):
    """The options of every session the engine makes. Fatal log messages only: a run
    onnxruntime refuses (an index out of range) falls back to the numpy kernels, which name
    the node in the one line a user sees, and onnxruntime's own ERROR log line would be a
    second line, in colour, on stderr. No busy-waiting between runs: numpy's threads and the
    engine's own work run right after a run, on the same cores. ``arena`` False: no memory
    arena, for sessions kept per node (an arena each held its peak). ``optimize`` False: no
    graph optimization, so that a failure names the model's own node, not a fused one."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = arena
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def ort_session(model: str | os.PathLike | bytes, arena: bool = True, optimize: bool = True):
    """(an onnxruntime session on ``model`` (a path, or a serialised model), None), or (None,
    why onnxruntime refuses to load it, condensed to one line). The project promises models
    that run in onnxruntime: quantize refuses a float model onnxruntime cannot load before any
    work, and never writes a quantized one it cannot load. ``arena``, ``optimize``: see
    :func:`session_options`."""
    import onnxruntime as ort

    source = os.fspath(model) if not isinstance(model, bytes) else model
    try:
        return ort.InferenceSession(source, session_options(arena, optimize),
                                    providers=["CPUExecutionProvider"]), None
    except Exception as err:  # noqa: BLE001 - any refusal is reported, condensed
        return None, condensed(str(err))


_SESSION_IN_CHILD = (
    "import sys, onnxruntime as o\n"
    "options = o.SessionOptions()\n"
    "options.log_severity_level = 4\n"
    "try:\n"
    "    o.InferenceSession(sys.stdin.buffer.read(), options, providers=['CPUExecutionProvider'])\n"
    "except Exception:\n"
    "    pass\n")


def session_crash(model: bytes) -> str | None:
    """The signal that kills a process making a default onnxruntime session on the serialised
    ``model``, tried in a child process; None when the child lives (it loaded the model, or
    refused it: :func:`ort_session` says why). Why: onnxruntime 1.32's NCHWc layout optimizer
    (the default level's) crashed on integer-format files of an options trial (SIGSEGV): made
    in this process, the session took the command with it, with no message."""
    import signal
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SESSION_IN_CHILD], input=model,
                          capture_output=True, check=False)
    if done.returncode >= 0:
        return None
    try:
        return signal.Signals(-done.returncode).name
    except ValueError:
        return f"signal {-done.returncode}"


def float_session(source: str | os.PathLike):
    """(an onnxruntime session on the float model of the file ``source``, None, the model it
    runs: the path or a serialised model), or (None, why onnxruntime refuses the file, the
    path). Where onnxruntime has no kernel for a node of the file's old opset (opset 6's Add,
    Mul, Gemm, BatchNormalization), the model the engine loads from it at
    :data:`.onnx_io.LEAST_OPSET` (:func:`.onnx_io.upgraded`: onnx's version converter, its
    outputs checked against onnx's reference evaluator on the file) stands for it, serialised:
    quantize had refused every such file as one onnxruntime cannot load, although the engine
    loads it converted (a new-user trial on the torch exports the onnx wheel ships)."""
    session, refusal = ort_session(source)
    if session is not None:
        return session, None, os.fspath(source)
    model = inlined_functions(read_model(source), source)[0]
    if (onnx_opset(model) or LEAST_OPSET) < LEAST_OPSET:
        model = upgraded(model)[0]
        if (onnx_opset(model) or 0) >= LEAST_OPSET:  # (else kept at its opset)
            serialised = model.SerializeToString()
            converted = ort_session(serialised)[0]
            if converted is not None:
                return converted, None, serialised
    return None, refusal, os.fspath(source)


def ort_failure(graph: Graph, feeds: Mapping[str, np.ndarray]) -> str | None:
    """onnxruntime's own error, condensed to one line, running ``graph`` (its own outputs) on
    ``feeds``; None when it runs, or cannot load the graph. Where the catalog's kernels cannot
    run a node on calibration data, this tells a model that does not run as exported (torch's
    legacy exports of Mamba and Canine, which onnxruntime fails on at any batch) from a gap of
    the kernels, in onnxruntime's words, which name where it fails (a calibration session
    that fetches every tensor may not load such a graph at all: the types after the failing
    node are unknown). Its graph optimizations are off, so the node it names is the model's
    own (Canine's MatMul, not the FusedMatMul it makes of it)."""
    session = ort_session(graph_to_onnx(graph).SerializeToString(), optimize=False)[0]
    if session is None:  # a graph it cannot load tells nothing of the data
        return None
    try:
        _fetched(session, [output.name for output in session.get_outputs()], feeds)
    except Exception as err:  # noqa: BLE001 - onnxruntime's failure is the answer
        return condensed(str(err))
    return None


def own_kernel_types(graph: Graph, table: OperatorTable) -> list[str]:
    """The op types of ``graph`` outside ONNX's domain that ``table``'s extra declarations
    (--operators) declare: onnxruntime has no kernel for them, the user's runtime does."""
    return sorted({node.op_type for node in graph.nodes
                   if not node.in_onnx_domain and table.declaration_key(node) is not None})


_ORT_NOISE = (
    re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : "),  # status code and name
    re.compile(r"Load model from .*? failed:"),  # the path, which the caller names itself
    # a C++ source location and the signature of the function that threw
    re.compile(r"/\S+\.(?:h|cc|cpp):\d+ [^()]*\([^()]*\)\s*"),
    re.compile(r"\b\w+\.(?:h|cc|cpp):\d+ "),  # a source file and line alone (a run's failure)
)
# a run's failure, named as the engine's own messages name a node: node 'name' (OpType)
_ORT_NODE = re.compile(r"Non-zero status code returned while running (\w+) node\. "
                       r"Name:'([^']*)' Status Message: ")
_ORT_MESSAGE_CHARS = 240


def condensed(message: str) -> str:
    """onnxruntime's error message without its status code, path and C++ source location, on
    one line of at most _ORT_MESSAGE_CHARS characters."""
    for noise in _ORT_NOISE:
        message = noise.sub("", message)
    message = _ORT_NODE.sub(lambda m: f"node {m.group(2)!r} ({m.group(1)}): ", message)
    message = " ".join(message.split()).removeprefix("This is an invalid model. ")
    message = message.removeprefix("Error: ").rstrip(".")
    if len(message) > _ORT_MESSAGE_CHARS:  # whole sentences where they fit, else words
        cut = message[:_ORT_MESSAGE_CHARS]
        message = cut[:cut.rfind(". ")] if ". " in cut else cut.rsplit(" ", 1)[0] + " ..."
    return message or "no reason given"


class NodeSessions:
    """Single nodes of ``graph`` in onnxruntime, every input fed (weights too, so one session
    serves a layer at each of the weights a search tries), a session per node made on its
    first large run and kept: equalization's strength search runs each group's layers on a
    calibration sample at every strength, and the catalog's numpy convolutions took 11.7 s of
    ResNet-50's 37.5 (onnxruntime's are 3-12x faster on its shapes). A small run (the digits
    CNN's) stays in numpy, where a session would cost more than the run; a node onnxruntime
    cannot run gets None, and the caller runs the numpy kernel."""

    LARGE = 1 << 20  # bytes of input from which a session pays

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.sessions: dict[str, object | None] = {}

    def run(self, node: Node, values: list) -> list[np.ndarray] | None:
        arrays = [None if value is None else np.asarray(value) for value in values]
        if sum(a.nbytes for a in arrays if a is not None) < self.LARGE:
            return None
        if node.name not in self.sessions:
            self.sessions[node.name] = self._session(node, arrays)
        session = self.sessions[node.name]
        if session is None:
            return None
        feeds = {name: array for name, array in zip(node.inputs, arrays) if name}
        try:
            return [np.asarray(v) for v in session.run(list(node.outputs), feeds)]
        except Exception:  # noqa: BLE001 - the numpy kernel runs it and names what fails
            return None

    def _session(self, node: Node, arrays: list):
        """The node's session, or None where its output types are unknown or onnxruntime
        refuses it (the node then runs in numpy)."""
        types = [self.graph.dtype_of(name) for name in node.outputs if name]
        if None in types:
            return None
        return node_session(node, arrays, types, self.graph.opsets)[0]


def node_session(node: Node, arrays: list, output_types: list,
                 opsets: Mapping[str, int]):
    """(an onnxruntime session running ``node`` alone, None), every input fed (``arrays``: an
    array, or None for an empty slot, per input; their dtypes type the inputs), its named
    outputs of ``output_types``; (None, onnxruntime's reason) where it refuses it."""
    from .onnx_io import node_proto

    # (one tensor in two slots is one graph input: a legacy LSTM's initial_h and initial_c)
    fed = {name: array for name, array in zip(node.inputs, arrays) if name and array is not None}
    inputs = [helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(array.dtype), None) for name, array in fed.items()]
    outputs = [helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), None)
        for name, dtype in zip([name for name in node.outputs if name], output_types)]
    model = helper.make_model(
        helper.make_graph([node_proto(node)], "node", inputs, outputs),
        opset_imports=[helper.make_opsetid(domain, version)
                       for domain, version in opsets.items()])
    model.ir_version = min(model.ir_version, 8)
    return ort_session(model.SerializeToString(), arena=False)


def schema_output_type(node: Node, slot: int, opsets: Mapping[str, int]) -> np.dtype | None:
    """The element type the ONNX schema of ``node``'s op type fixes for its output ``slot``
    (one allowed type: SVMClassifier's scores are float whatever it reads), None where it
    allows several or has no schema."""
    domain = "" if node.in_onnx_domain else node.domain
    version = opsets.get(domain) or (None if domain else opsets.get("ai.onnx"))
    try:
        schema = (onnx.defs.get_schema(node.op_type, version, domain) if version
                  else onnx.defs.get_schema(node.op_type, domain))
        formal = schema.outputs[min(slot, len(schema.outputs) - 1)]
    except (onnx.defs.SchemaError, IndexError):
        return None
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    kinds = list(allowed.get(formal.type_str, [formal.type_str]))
    if len(kinds) != 1 or not kinds[0].startswith("tensor("):
        return None
    element = kinds[0][len("tensor("):-1].upper()
    if element not in onnx.TensorProto.DataType.keys() or element == "STRING":
        return None
    return np.dtype(helper.tensor_dtype_to_np_dtype(onnx.TensorProto.DataType.Value(element)))


_ALONE: dict[tuple, object] = {}  # (node, input dtypes, opsets) -> its session
_ALONE_KEPT = 64


def run_alone(node: Node, inputs: list, graph: Graph | None = None,
              opsets: Mapping[str, int] | None = None) -> list[np.ndarray]:
    """``node``'s outputs on ``inputs`` as onnxruntime computes them, in a session of the node
    alone: the kernel of a node the user keeps in float (``--float-op``; a recurrent layer),
    which no declaration describes, so the catalog has no kernel for it, while onnxruntime,
    which runs the model, has one. Outputs of an unknown type take the one type their schema
    allows (:func:`schema_output_type`: skl2onnx's float64 SVMClassifier writes float scores
    no inference in the file states; typed as its double input, the session was refused),
    else the first input's (an LSTM's Y, Y_h, Y_c are its X's type). A failure is a UserError
    naming the node, in onnxruntime's words. Sessions are kept per node, input types and
    opsets (calibration and the simulation run a node on batch after batch). ``opsets``: the
    model's, where no ``graph`` gives them (a quantized model's step)."""
    from ..errors import UserError

    arrays = [None if value is None else np.asarray(value) for value in inputs]
    first = next((a.dtype for a in arrays if a is not None), np.dtype(np.float32))
    opsets = graph.opsets if graph is not None else opsets or {"": LEAST_ALONE_OPSET}
    types = [(graph.dtype_of(name) if graph is not None else None)
             or schema_output_type(node, slot, opsets) or first
             for slot, name in enumerate(node.outputs) if name]
    key = (node.name, node.op_type, node.domain, tuple(node.inputs), tuple(node.outputs),
           repr(sorted(node.attrs.items(), key=lambda item: item[0])),
           tuple(None if a is None else a.dtype.str for a in arrays),
           tuple(sorted(opsets.items())))
    if key not in _ALONE:
        if len(_ALONE) >= _ALONE_KEPT:
            _ALONE.pop(next(iter(_ALONE)))
        _ALONE[key] = node_session(node, arrays, types, opsets)
    session, refusal = _ALONE[key]
    where = f"{graph.source}: " if graph is not None else ""
    if session is None:
        raise UserError(f"{where}{node.label}: kept in float at your request, but onnxruntime "
                        f"cannot run it as a one-node model ({refusal})")
    feeds = {name: array for name, array in zip(node.inputs, arrays) if name}
    try:
        values = session.run([name for name in node.outputs if name], feeds)
    except Exception as err:  # noqa: BLE001 - onnxruntime's failure, in its words
        raise UserError(f"{where}{node.label}: kept in float at your request, onnxruntime "
                        f"cannot run it on these inputs ({condensed(str(err))})") from None
    named = iter(values)
    return [np.asarray(next(named)) if name else None for name in node.outputs]


LEAST_ALONE_OPSET = 17  # a node run with no graph to give its opsets
