"""Hostile inputs (issue 11) and a runner that tries each in a process of its own.

:func:`run_cli` forks the test process (ptq_verify already imported, so a case costs
milliseconds, not the second a fresh interpreter needs to import sympy), runs
``ptq_verify.cli.main(argv)`` in the child with stdout and stderr sent to files, kills it at
the time limit and reads its peak memory from the kernel's accounting. :func:`broken_promise`
says what, if anything, a result breaks of "one line on stderr, exit 2, no traceback, no hang".
"""

from __future__ import annotations

import io
import os
import signal
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass
class Outcome:
    """What one run did: exit status (None when killed at the limit), its output, its time
    and its peak resident memory."""

    argv: list[str]
    status: int | None
    out: str
    err: str
    seconds: float
    peak_mb: float

    @property
    def hung(self) -> bool:
        return self.status is None


def run_cli(argv: list[str], *, limit: float = 60.0, cwd: str | os.PathLike | None = None,
            memory_mb: int = 4096) -> Outcome:
    """Run ``ptq-verify ARGV`` in a forked child, killed after ``limit`` seconds; its address
    space is capped at ``memory_mb`` so that a runaway case fails instead of swapping."""
    from ptq_verify.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            status = 70
            try:
                import resource

                limit_bytes = memory_mb << 20
                resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
                os.setsid()
                if cwd is not None:
                    os.chdir(cwd)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False))
                sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False))
                status = main(argv)
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:  # noqa: BLE001 - reported like the interpreter would
                import traceback

                traceback.print_exc()
                status = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(status)
        status, rusage = _wait(pid, start + limit)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Outcome(list(argv), status, out.read().decode(errors="replace"),
                       err.read().decode(errors="replace"), seconds, rusage.ru_maxrss / 1024)


def _wait(pid: int, deadline: float):
    """(exit status or None if killed at the deadline, rusage) of a child."""
    while True:
        done, raw, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            return (os.waitstatus_to_exitcode(raw), rusage)
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            _, _, rusage = os.wait4(pid, 0)
            return None, rusage
        time.sleep(0.005)


def broken_promise(outcome: Outcome) -> str | None:
    """What the outcome breaks of the promise for bad input, or None.

    Exit 0 and 1 are results (1: a failed --expect or check-proofs); exit 2 must come with
    exactly one line on stderr. Anything else (a traceback, an internal error, a kill at the
    time limit, a line break inside the message) is a failure."""
    if outcome.hung:
        return f"no answer within the time limit ({outcome.seconds:.0f} s)"
    if "Traceback" in outcome.err:
        return "a traceback"
    if outcome.status not in (0, 1, 2):
        return f"exit status {outcome.status}: {outcome.err.strip()[:200]}"
    if outcome.status == 2 and (outcome.err.count("\n") != 1 or not outcome.err.endswith("\n")):
        return f"{outcome.err.count(chr(10))} lines on stderr: {outcome.err[:200]!r}"
    return None


# -- models ----------------------------------------------------------------------------------


def declaration(name: str, expr: str, onnx_type: str, **params: str) -> str:
    """One ``[[operator]]`` table of a declaration file (docs/catalog.md), parameters given
    with their sample values."""
    table = f'[[operator]]\nname = "{name}"\n'
    if params:
        table += "params = { " + ", ".join(f'{k} = "{v}"' for k, v in params.items()) + " }\n"
    return table + f'expr = "{expr}"\nonnx_type = "{onnx_type}"\n'


def _model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _float(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def clip_to_empty_range() -> onnx.ModelProto:
    """Clip with lo = +inf and hi = -inf: every output is -inf."""
    lo = numpy_helper.from_array(np.array(np.inf, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(-np.inf, np.float32), "hi")
    return _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")],
                  [_float("x", ["batch", 4])], [_float("y", ["batch", 4])], [lo, hi])


def expand_bomb(shape=(12500, 12500, 8), through_constants: bool = False) -> onnx.ModelProto:
    """A model of a few hundred bytes whose constant folding would materialise ``shape``
    (1.25e9 elements by default): an Expand of one number, summed, times the input. With
    ``through_constants`` the shape is a Concat of Constant nodes, which the model's own
    shape inference does not see through."""
    one = numpy_helper.from_array(np.array([1.0], np.float32), "one")
    initializers, nodes = [one], []
    if through_constants:
        head = numpy_helper.from_array(np.array(shape[:-1], np.int64))
        tail = numpy_helper.from_array(np.array(shape[-1:], np.int64))
        nodes += [helper.make_node("Constant", [], ["head"], value=head),
                  helper.make_node("Constant", [], ["tail"], value=tail),
                  helper.make_node("Concat", ["head", "tail"], ["shape"], axis=0)]
    else:
        initializers.append(numpy_helper.from_array(np.array(shape, np.int64), "shape"))
    nodes += [helper.make_node("Expand", ["one", "shape"], ["big"], name="expand"),
              helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
              helper.make_node("Mul", ["x", "total"], ["y"], name="mul")]
    return _model(nodes, [_float("x", [1, 4])], [_float("y", [1, 4])], initializers)


def matmul_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    return _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
                  [_float("x", ["batch", 4])], [_float("y", ["batch", 4])], [w])


def sum_of_inputs_that_must_agree() -> onnx.ModelProto:
    """y = x @ w + m with m's length along axis 1 free in the model: onnxruntime loads it,
    and calibration data whose m is one longer than x runs in neither onnxruntime nor the
    catalog's kernels (as a KV-cache decoder's mask one position short of past + new)."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    return _model([helper.make_node("MatMul", ["x", "w"], ["p"], name="matmul"),
                   helper.make_node("Add", ["p", "m"], ["y"], name="add")],
                  [_float("x", ["batch", 4]), _float("m", ["batch", "m_length"])],
                  [_float("y", ["batch", 4])], [w])


def product_that_runs_on_no_input() -> onnx.ModelProto:
    """h = x @ w reshaped to [batch, 4, 1] by a shape computed at run time, then h @ h: the
    shapes never agree, which neither ONNX's nor onnxruntime's inference sees at load (as
    torch's legacy export of Canine: a MatMul onnxruntime fails on at the export's own
    inputs)."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    return _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
                   helper.make_node("Shape", ["h"], ["shape"], name="shape"),
                   helper.make_node("Concat", ["shape", "one"], ["target"], axis=0,
                                    name="target"),
                   helper.make_node("Reshape", ["h", "target"], ["column"], name="reshape"),
                   helper.make_node("MatMul", ["column", "column"], ["y"], name="broken")],
                  [_float("x", ["batch", 4])], [_float("y", None)], [w, one])


def initializer_larger_than_its_shape() -> onnx.ModelProto:
    """The weight's dims say 4 values, its data holds 16."""
    model = matmul_model()
    del model.graph.initializer[0].dims[1:]
    return model


def unknown_element_type() -> onnx.ModelProto:
    """The output declares element type 109, which no ONNX version defines."""
    model = matmul_model()
    model.graph.output[0].type.tensor_type.elem_type = 109
    return model


def non_utf8_name() -> bytes:
    """A serialized model whose node name holds a byte that is not UTF-8 (onnx's checker then
    fails to decode its own error message)."""
    data = matmul_model().SerializeToString()
    at = data.index(b"matmul")
    return data[:at] + b"\xa9" + data[at + 1:]


def lstm_after_matmul(outputs: tuple[str, ...] = ("y", "y_h", "y_c")) -> onnx.ModelProto:
    """MatMul -> LSTM (7 inputs: X, W, R, B, sequence lengths, initial h and c; 3 outputs, or
    ``outputs``: torch's dynamo exporter writes only Y): a node a one-input declaration
    ``tanh(x)`` does not describe, which onnxruntime loads."""
    rng = np.random.default_rng(0)
    hidden, size = 4, 3
    arrays = {"w": np.eye(size), "W": rng.normal(size=(1, 4 * hidden, size)),
              "R": rng.normal(size=(1, 4 * hidden, hidden)), "B": np.zeros((1, 8 * hidden)),
              "h0": np.zeros((1, 2, hidden)), "c0": np.zeros((1, 2, hidden))}
    initializers = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    initializers.append(numpy_helper.from_array(np.full(2, 2, np.int32), "lengths"))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("LSTM", ["h", "W", "R", "B", "lengths", "h0", "c0"],
                              list(outputs), name="lstm_1", hidden_size=hidden)]
    return _model(nodes, [_float("x", [2, 2, size])], [_float("y", [2, 1, 2, hidden])],
                  initializers)


def unique_after_matmul(outputs: tuple[str, ...] = ("y", "indices", "inverse")) -> onnx.ModelProto:
    """MatMul -> Unique (outputs Y, indices, inverse indices, or ``outputs``): an op of several
    outputs that is no recurrent layer, which onnxruntime loads."""
    initializers = [numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("Unique", ["h"], list(outputs), name="unique_1")]
    return _model(nodes, [_float("x", [2, 3])], [_float("y", [None])], initializers)


def attention_over_a_row_masked_whole() -> onnx.ModelProto:
    """MatMul -> Add of an additive mask -> Softmax -> MatMul, the mask Where(x > 100, 0, -inf)
    computed from the input as an exporter writes a key padding mask: on data below 100 every
    position is hidden, the Softmax's row is all -inf and it writes NaN (an attention over a
    sample of padding alone), from finite inputs."""
    arrays = {"w": np.eye(4), "w2": np.ones((4, 2)), "hundred": np.array(100.0),
              "zero": np.array(0.0), "minus_inf": np.array(-np.inf)}
    initializers = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("Greater", ["x", "hundred"], ["keep"], name="greater"),
             helper.make_node("Where", ["keep", "zero", "minus_inf"], ["mask"], name="where"),
             helper.make_node("Add", ["h", "mask"], ["scores"], name="add"),
             helper.make_node("Softmax", ["scores"], ["p"], name="softmax_1", axis=-1),
             helper.make_node("MatMul", ["p", "w2"], ["y"], name="matmul_2")]
    return _model(nodes, [_float("x", ["n", 4])], [_float("y", ["n", 2])], initializers)


def kv_cache_projection() -> onnx.ModelProto:
    """A KV cache's step in small: the new tokens ``x`` (batch, new, 4) projected to keys, the
    keys appended to the past ``past`` (batch, past, 4) as ``present``, and the new keys'
    scores against all of them (``y``); both lengths free, so calibration data may hold
    either at 0 (a prefill's empty past, or no new token)."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32),
                                "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["k"], name="proj"),
             helper.make_node("Concat", ["past", "k"], ["present"], name="cat", axis=1),
             helper.make_node("Transpose", ["present"], ["keys"], name="tr", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["k", "keys"], ["y"], name="scores")]
    inputs = [_float("x", ["batch", "new", 4]), _float("past", ["batch", "past", 4])]
    outputs = [_float("y", ["batch", "new", "total"]), _float("present", ["batch", "total", 4])]
    return _model(nodes, inputs, outputs, [w])


def matmul_then_local_function() -> onnx.ModelProto:
    """MatMul -> a call of ``local.MyRelu``, a function the model itself defines as one Relu
    (torch's ``export_modules_as_functions`` writes a module's nodes so)."""
    function = helper.make_function("local", "MyRelu", ["a"], ["b"],
                                    [helper.make_node("Relu", ["a"], ["b"])],
                                    [helper.make_opsetid("", OPSET)])
    model = _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
                    helper.make_node("MyRelu", ["h"], ["y"], name="call_1", domain="local")],
                   [_float("x", ["batch", 4])], [_float("y", ["batch", 4])],
                   [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")])
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("local", 1))
    return model


def skip_layer_norm_after_matmul() -> onnx.ModelProto:
    """MatMul -> com.microsoft SkipLayerNormalization -> Add: the fused residual norm that
    onnxruntime's transformer optimizer writes into GPT-2 (outputs in slots 0 and 3: the
    normalised sum and the sum itself, the next residual's input), which onnxruntime loads."""
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=(4, 4)), "gamma": np.ones(4), "beta": np.zeros(4)}
    initializers = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("SkipLayerNormalization", ["h", "x", "gamma", "beta"],
                              ["n", "", "", "sum"], name="skip_ln", domain="com.microsoft"),
             helper.make_node("Add", ["n", "sum"], ["y"], name="add")]
    model = _model(nodes, [_float("x", ["batch", 3, 4])], [_float("y", ["batch", 3, 4])],
                   initializers)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def contrib_gelu_after_matmul() -> onnx.ModelProto:
    """MatMul -> com.microsoft Gelu: one of onnxruntime's own operators, element-wise and of
    one output, as a user writes it by hand (onnxruntime runs it)."""
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(rng.normal(size=(4, 4)).astype(np.float32), "w")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("Gelu", ["h"], ["y"], name="gelu", domain="com.microsoft")]
    model = _model(nodes, [_float("x", ["batch", 3, 4])], [_float("y", ["batch", 3, 4])],
                   initializers)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def random_like_after_matmul() -> onnx.ModelProto:
    """MatMul -> RandomUniformLike -> Mul: a drop-path mask torch's dynamo exporter left in the
    inference graphs of MobileNetV1 and FocalNet in a new-user trial (the output changes
    from run to run)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("RandomUniformLike", ["h"], ["r"], name="random_1"),
             helper.make_node("Mul", ["h", "r"], ["y"], name="mul")]
    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    return _model(nodes, [_float("x", ["batch", 4])], [_float("y", ["batch", 4])], [weight])


def split_to_sequence_after_matmul() -> onnx.ModelProto:
    """MatMul -> SplitToSequence -> ConcatFromSequence: a split into a list of tensors joined
    again, no piece taken at a constant position (which a Slice would stand for,
    graph/sequences.py)."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    split = numpy_helper.from_array(np.array([2, 2], np.int64), "split")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("SplitToSequence", ["h", "split"], ["parts"], name="split_1",
                              axis=1),
             helper.make_node("ConcatFromSequence", ["parts"], ["y"], name="join_1", axis=1)]
    return _model(nodes, [_float("x", ["batch", 4])], [_float("y", ["batch", 4])],
                  [w, split])


def if_after_matmul() -> onnx.ModelProto:
    """MatMul -> If (its output or its negation, by the sign of its largest element): a node
    with two subgraph attributes, as a legacy export with dynamic shapes writes for a padding
    it may or may not need (ViTDet's windows)."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    zero = numpy_helper.from_array(np.array(0, np.float32), "zero")

    def branch(name: str, op_type: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op_type, ["h"], [f"{name}_y"])], name, [],
                                 [_float(f"{name}_y", ["batch", 4])])

    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("ReduceMax", ["h"], ["top"], keepdims=0),
             helper.make_node("Greater", ["top", "zero"], ["positive"]),
             helper.make_node("If", ["positive"], ["y"], name="if_1",
                              then_branch=branch("then", "Identity"),
                              else_branch=branch("else", "Neg"))]
    return _model(nodes, [_float("x", ["batch", 4])], [_float("y", ["batch", 4])], [w, zero])


def unnamed_required_output(op_type: str) -> onnx.ModelProto:
    """MatMul -> a node that leaves its second output unnamed where its schema makes it no
    optional one: a Split in two (``Split``), or an If of a constant condition whose branches
    each write two tensors (``If``). onnx's checker passes it; onnxruntime 1.32 crashes
    (SIGSEGV) running it."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    if op_type == "Split":
        split = numpy_helper.from_array(np.array([2, 2], np.int64), "split")
        layer = helper.make_node("Split", ["h", "split"], ["y", ""], name="split_1", axis=1)
        return _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"), layer],
                      [_float("x", ["batch", 4])], [_float("y", ["batch", 2])], [w, split])

    def branch(name: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("Relu", ["h"], [f"{name}_r"]),
                                  helper.make_node("Neg", ["h"], [f"{name}_n"])], name, [],
                                 [_float(f"{name}_r", ["batch", 4]),
                                  _float(f"{name}_n", ["batch", 4])])

    cond = numpy_helper.from_array(np.array(True), "cond")
    layer = helper.make_node("If", ["cond"], ["y", ""], name="if_1",
                             then_branch=branch("then"), else_branch=branch("else"))
    return _model([helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"), layer],
                  [_float("x", ["batch", 4])], [_float("y", ["batch", 4])], [w, cond])


def normalized_then_if() -> onnx.ModelProto:
    """:func:`if_after_matmul` whose MatMul output is first normalized
    (MeanVarianceNormalization, undeclared): two undeclared nodes, the first one a
    declaration could take, the second (the If) one it could not (a new-user trial's
    EmbeddingBag: a Size, then undeclared, and a Loop). Its ``axes`` holds one value, which
    a declaration's parameter takes (two, [0, 1], none could: the refusal says so now)."""
    model = if_after_matmul()
    graph = model.graph
    nodes = list(graph.node)
    graph.ClearField("node")
    graph.node.extend([nodes[0], helper.make_node("MeanVarianceNormalization", ["h"],
                                                  ["h_scaled"], name="mvn_1", axes=[1])])
    for node in nodes[1:]:
        node.input[:] = ["h_scaled" if name == "h" else name for name in node.input]
        for attribute in node.attribute:
            for inner in attribute.g.node:
                inner.input[:] = ["h_scaled" if n == "h" else n for n in inner.input]
        graph.node.append(node)
    return model


def normalized_then_if_after_layers() -> onnx.ModelProto:
    """:func:`normalized_then_if` behind two Gemm layers joined by a Relu (torch's Linear
    layers), a group cross-layer equalization runs the model to measure: that run had met the
    first undeclared node and refused it alone (a new-user trial's DLRM, its EmbeddingBag's
    Size and Loop after an MLP)."""
    model = normalized_then_if()
    graph = model.graph
    graph.input[0].name = "x_in"
    rng = np.random.default_rng(0)
    for name, shape in (("w0", (4, 4)), ("b0", (4,)), ("w1", (4, 4)), ("b1", (4,))):
        scale = np.array([1, 4, 0.25, 2], np.float32) if name == "w0" else 1
        graph.initializer.append(numpy_helper.from_array(
            (rng.normal(size=shape) * scale).astype(np.float32), name))
    layers = [helper.make_node("Gemm", ["x_in", "w0", "b0"], ["a"], name="gemm_0"),
              helper.make_node("Relu", ["a"], ["r"], name="relu_0"),
              helper.make_node("Gemm", ["r", "w1", "b1"], ["x"], name="gemm_1")]
    nodes = list(graph.node)
    graph.ClearField("node")
    graph.node.extend(layers + nodes)
    return model


def max_pool_with_indices() -> onnx.ModelProto:
    """Conv -> MaxPool whose second output, the Indices, is a model output: the catalog's
    MaxPool describes the pooled values only."""
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("MaxPool", ["c"], ["y", "at"], name="pool", kernel_shape=[2, 2])]
    outputs = [_float("y", ["batch", 1, 2, 2]),
               helper.make_tensor_value_info("at", TensorProto.INT64, ["batch", 1, 2, 2])]
    return _model(nodes, [_float("x", ["batch", 1, 4, 4])], outputs, [w])


def external_data_outside(folder: Path) -> Path:
    """A model whose weight claims to live in ``../../etc/passwd``."""
    path = folder / "outside.onnx"
    onnx.save(matmul_model(), path, save_as_external_data=True,
              all_tensors_to_one_file=True, location="outside.data", size_threshold=0)
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../../etc/passwd"
    onnx.save(model, path)
    return path


# -- calibration archives ------------------------------------------------------------------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def write_npz(path: Path, members: dict[str, bytes],
              compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return path


def npz_object_array(path: Path) -> Path:
    return write_npz(path, {"x": npy_bytes(np.array([{"a": 1}, None], dtype=object))})


def npz_huge_header(path: Path) -> Path:
    """A member whose header claims 10**12 float32 elements, holding 16 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    return write_npz(path, {"x": buffer.getvalue() + bytes(16)})


def npz_expression_header(path: Path) -> Path:
    """A member whose header holds a call where its shape should be (numpy's literal parser
    refuses it, in words that quote its own objects: '<ast.Call object at 0x...>')."""
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (__import__('os'),), }"
    header = text.ljust(117) + "\n"
    return write_npz(path, {"x": b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                            + header.encode("latin1") + bytes(16)})


def npy_with_header(path: Path, text: str, data: bytes = b"") -> Path:
    """An .npy file of version 1.0 whose header is ``text`` (padded as numpy pads it),
    followed by ``data``."""
    header = text.encode("latin1")
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)
    return path


def npz_truncated(path: Path) -> Path:
    data = npy_bytes(np.ones((8, 4), np.float32))
    return write_npz(path, {"x": data[: len(data) - 40]})


def npz_cut(path: Path) -> Path:
    """An archive cut short (a copy interrupted): its zip directory, at the end, is gone."""
    write_npz(path, {"x": npy_bytes(np.ones((8, 4), np.float32))})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def npz_bad_crc(path: Path) -> Path:
    array = np.arange(32, dtype=np.float32).reshape(8, 4)
    write_npz(path, {"x": npy_bytes(array)})
    raw = bytearray(path.read_bytes())
    at = raw.index(array.tobytes())
    raw[at + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def npz_of_zeros(path: Path, nbytes: int) -> Path:
    """A deflated member of ``nbytes`` zero bytes (a small file that expands: a zip bomb
    when ``nbytes`` is large), its header claiming exactly that much float32 data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 16, 4)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            member.write(buffer.getvalue())
            chunk = bytes(1 << 20)
            left = (nbytes // 16) * 16
            while left:
                member.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
    return path


def pow_with_an_undeclared_exponent() -> onnx.ModelProto:
    """x ** 1.7: Pow is declared for the exponents 2, 3, 0.5 and -0.5 only."""
    exponent = numpy_helper.from_array(np.array(1.7, np.float32), "e")
    node = helper.make_node("Pow", ["x", "e"], ["y"], name="pow_1")
    return _model([node], [_float("x", [None, 4])], [_float("y", [None, 4])], [exponent])


def embedding_model(rows: int = 1000) -> onnx.ModelProto:
    """Token ids (batch, 8) read from an embedding table of ``rows`` rows, then projected."""
    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.normal(size=(rows, 16)).astype(np.float32), "table")
    w = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w")
    return _model(
        [helper.make_node("Gather", ["table", "input_ids"], ["emb"],
                          name="/embeddings/word_embeddings/Gather"),
         helper.make_node("MatMul", ["emb", "w"], ["y"], name="proj")],
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 8])],
        [_float("y", ["batch", 8, 4])], [table, w])


def cast_to_complex() -> onnx.ModelProto:
    """A MatMul whose output is cast to complex128 and multiplied: onnx's checker passes it,
    onnxruntime has no complex Mul and refuses to load it (a legacy export of Falcon with
    ALiBi writes this), and the catalog declares no Cast to a complex type."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("Cast", ["h"], ["c"], name="cast", to=TensorProto.COMPLEX128),
             helper.make_node("Mul", ["c", "c"], ["y"], name="mul")]
    return _model(nodes, [_float("x", ["batch", 4])],
                  [helper.make_tensor_value_info("y", TensorProto.COMPLEX128, ["batch", 4])],
                  [w])


def opset_99(model: onnx.ModelProto) -> None:
    """Declare an ONNX opset no onnxruntime release supports (onnx's checker lets it pass)."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 99


def one_name_for_every_node(model: onnx.ModelProto) -> None:
    """Give every node the same name (onnx's checker lets it pass; onnxruntime refuses it)."""
    for node in model.graph.node:
        node.name = "same"


def shift_with_attributes(**attributes) -> onnx.ModelProto:
    """A node of a custom domain (``custom.Shift``: its kernel is whoever declares it) with
    the given attributes, then a MatMul."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    nodes = [helper.make_node("Shift", ["x"], ["s"], name="shift", domain="custom", **attributes),
             helper.make_node("MatMul", ["s", "w"], ["y"], name="matmul")]
    model = _model(nodes, [_float("x", ["batch", 4])], [_float("y", ["batch", 4])], [w])
    model.opset_import.append(helper.make_opsetid("custom", 1))
    return model


def float8_round_trip_of_a_constant(op_type: str, saturate: int | None) -> onnx.ModelProto:
    """y = m * float(float8e4m3fn(c)) (m = x @ W, opset 19), c holding 1000 and -1000, beyond
    float8e4m3fn's 448: the constant cast by a Cast (``to``) or by a CastLike like a float8
    activation (the type-only fold), with ``saturate`` (None: its default, 1: to +-448; 0: NaN)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W")
    bound = numpy_helper.from_array(np.array([1000.0, 1.0, -1000.0, 0.3], np.float32), "c")
    extra = {} if saturate is None else {"saturate": saturate}
    cast = (helper.make_node("Cast", ["c"], ["c8"], name="cast8", to=TensorProto.FLOAT8E4M3FN,
                             **extra) if op_type == "Cast" else
            helper.make_node("CastLike", ["c", "m8"], ["c8"], name="cast8", **extra))
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Cast", ["m"], ["m8"], name="to8", to=TensorProto.FLOAT8E4M3FN),
             cast, helper.make_node("Cast", ["c8"], ["cf"], name="back", to=TensorProto.FLOAT),
             helper.make_node("Mul", ["m", "cf"], ["y"], name="mul")]
    graph = helper.make_graph(nodes, "hostile", [_float("x", ["batch", 8])],
                              [_float("y", ["batch", 4])], [weight, bound])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def threshold_after_selections() -> onnx.ModelProto:
    """y = float(TopK(Gather(Squeeze(Unsqueeze(Sigmoid(x @ W)))), 3).values > 0.5): a jump
    (Greater) reading selections, which the engine runs again on 16-bit codes under names of
    its own (``gather:16bit~q16``); node 'last' (the Cast) is there to be renamed."""
    rng = np.random.default_rng(0)
    constants = [numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "W"),
                 numpy_helper.from_array(np.array([5, 0, 3, 3, 1], np.int64), "idx"),
                 numpy_helper.from_array(np.array([3], np.int64), "k"),
                 numpy_helper.from_array(np.array([1], np.int64), "axis"),
                 numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Sigmoid", ["m"], ["s"], name="sig"),
             helper.make_node("Unsqueeze", ["s", "axis"], ["u"], name="unsq"),
             helper.make_node("Squeeze", ["u", "axis"], ["sq"], name="sq"),
             helper.make_node("Gather", ["sq", "idx"], ["g"], name="gather", axis=1),
             helper.make_node("TopK", ["g", "k"], ["v", "i"], name="topk"),
             helper.make_node("Greater", ["v", "half"], ["b"], name="gt"),
             helper.make_node("Cast", ["b"], ["y"], name="last", to=TensorProto.FLOAT)]
    return _model(nodes, [_float("x", ["batch", 8])], [_float("y", ["batch", 3])], constants)


def ids_added_to_an_accumulator() -> onnx.ModelProto:
    """y = x @ W + float(ids): a static operand of a sum, computed from integer inputs alone,
    whose values (ids near 10^6, a few apart) are data, not a mask: no position saturates the
    sum, and at the MatMul accumulator's scale (thousands) they lie beyond int32."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Cast", ["ids"], ["idf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["m", "idf"], ["y"], name="add")]
    return _model(nodes, [_float("x", ["batch", 4]),
                          helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])],
                  [_float("y", ["batch", 4])], [weight])
