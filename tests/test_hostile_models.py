"""Hostile ONNX models from a hostile-input trial: each gets a result or one line on stderr and
exit 2, never an internal error (exit 3), a traceback or unbounded memory. The models are built
here with onnx.helper; each case runs in a forked process with a time and memory limit
(tests/hostile.py)."""

from __future__ import annotations

import warnings

import hostile
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.engine import calibrate, load_model, prepare, quantize
from ptq_verify.errors import UserError
from ptq_verify.graph import onnx_io

QUICK_LIMIT = 30.0  # seconds; every case below answers in a few


def _assert_one_line_error(outcome: hostile.Outcome, *fragments: str) -> None:
    assert hostile.broken_promise(outcome) is None, (outcome.argv[:4], outcome.err)
    assert outcome.status == 2, (outcome.status, outcome.err)
    for fragment in fragments:
        assert fragment in outcome.err, outcome.err


def _model(nodes, inputs, outputs, initializers=(), sparse=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, list(initializers),
                              sparse_initializer=list(sparse))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", hostile.OPSET)])


def _weight(name: str, *shape: int, seed: int = 0) -> onnx.TensorProto:
    values = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _float(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# -- D1: a declared shape of 10**15 elements ---------------------------------------------------


def test_a_huge_declared_input_shape_is_not_drawn(tmp_path):
    """A 1 KB model declaring an input of (N, 3, 10**5, 10**5) elements: the probes drew random
    values of that shape (numpy asked for 224 GiB: exit 3). Beyond the bound of constant
    folding a shape is probed as an unknown one is: not at all."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="conv1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2")]
    model = tmp_path / "huge.onnx"
    onnx.save(_model(nodes, [_float("x", ["N", 3, 10**5, 10**5])],
                     [_float("y", ["N", 2, 10**5, 10**5])],
                     [_weight("w1", 4, 3, 1, 1), _weight("w2", 2, 4, 1, 1, seed=1)]), model)
    outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT, memory_mb=2048)
    assert hostile.broken_promise(outcome) is None, outcome.err
    assert outcome.status == 0, outcome.err
    assert outcome.peak_mb < 1024


def test_an_activation_tiled_past_memory_is_one_line(tmp_path):
    """A Tile of an activation by (10**5, 10**5): calibration's run of the catalog's kernels
    met numpy's MemoryError (596 GiB; exit 3). It is the model's own computation on the data,
    refused in one line naming the node."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Tile", ["h", "repeats"], ["t"], name="tile"),
             helper.make_node("ReduceMean", ["t"], ["y"], keepdims=0, name="mean")]
    repeats = numpy_helper.from_array(np.array([10**5, 10**5], np.int64), "repeats")
    model, calib = tmp_path / "tile.onnx", tmp_path / "x.npy"
    onnx.save(_model(nodes, [_float("x", ["N", 4])], [_float("y", [])],
                     [_weight("w", 4, 4), repeats]), model)
    np.save(calib, np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    outcome = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o",
                               str(tmp_path / "q.onnx")], limit=QUICK_LIMIT, memory_mb=2048)
    _assert_one_line_error(outcome, "node 'tile' (Tile)", "does not fit in memory")


# -- D2: weights stored as sparse initializers -------------------------------------------------


def _sparse(name: str, dims, indices, values) -> onnx.SparseTensorProto:
    return helper.make_sparse_tensor(
        numpy_helper.from_array(np.array(values, np.float32), name),
        numpy_helper.from_array(np.array(indices, np.int64), f"{name}_indices"), dims)


def _sparse_weight_model(path, weight: onnx.SparseTensorProto | None = None,
                         constant: onnx.SparseTensorProto | None = None, columns: int = 4):
    """x (N, 4) -> MatMul w (4, columns) -> Relu; w a sparse initializer or the sparse_value
    of a Constant node."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    if constant is not None:
        nodes.insert(0, helper.make_node("Constant", [], ["w"], name="const",
                                         sparse_value=constant))
    onnx.save(_model(nodes, [_float("x", ["N", 4])], [_float("y", ["N", columns])],
                     sparse=[weight] if weight is not None else []), path)
    calib = path.with_suffix(".npy")
    np.save(calib, np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    return path, calib


def test_a_sparse_initializer_weight_quantizes(tmp_path):
    """A weight stored in graph.sparse_initializer (onnxruntime loads it; audit listed it)
    was missing from quantize's kernel run: KeyError 'w', exit 3. It is read dense at load,
    in both coordinate forms (linear indices and (n, rank) coordinates)."""
    for name, indices in (("linear", [0, 5, 10, 15]), ("coords", [[0, 0], [1, 1], [2, 2], [3, 3]])):
        model, calib = _sparse_weight_model(tmp_path / f"{name}.onnx",
                                            _sparse("w", [4, 4], indices, [1.0, 2.0, -3.0, 0.5]))
        out = tmp_path / f"{name}.q.onnx"
        outcome = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o", str(out)],
                                  limit=QUICK_LIMIT)
        assert hostile.broken_promise(outcome) is None, outcome.err
        assert outcome.status == 0 and out.exists(), outcome.err


def test_a_sparse_tensor_larger_dense_than_a_constant_may_be_is_one_line(tmp_path):
    """A sparse tensor of two values claiming (4, 10**9) elements: refused before it is made
    dense, as an initializer (naming it) and as a Constant's sparse_value (naming the node)."""
    big = _sparse("w", [4, 10**9], [0, 5], [1.0, 2.0])
    cases = {"init": {"weight": big}, "const": {"constant": big}}
    for name, kwargs in cases.items():
        model, _ = _sparse_weight_model(tmp_path / f"{name}.onnx", columns=10**9, **kwargs)
        outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT, memory_mb=2048)
        _assert_one_line_error(outcome, "(4, 1000000000)", "more than the 134217728",
                               "sparse initializer 'w'" if name == "init" else "node 'const'")
        assert outcome.peak_mb < 1024


# -- D3: a weight that holds strings -----------------------------------------------------------


def test_a_weight_of_strings_is_listed_by_audit_and_refused_by_quantize(tmp_path):
    """A Gemm weight stored as a STRING tensor: audit's smoothing probe converted it to float
    (ValueError, exit 3). A probe that cannot run proves nothing: audit lists the model and
    says onnxruntime cannot load it; quantize refuses it so in one line."""
    strings = helper.make_tensor("w2", TensorProto.STRING, [8, 2], [b"x"] * 16)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2")]
    model, calib = tmp_path / "strings.onnx", tmp_path / "x.npy"
    onnx.save(_model(nodes, [_float("x", ["N", 4])], [_float("y", ["N", 2])],
                     [_weight("w1", 4, 8), strings]), model)
    np.save(calib, np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    audit = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    assert hostile.broken_promise(audit) is None, audit.err
    assert audit.status == 0 and "onnxruntime cannot load this model" in audit.out, audit.err
    quantize = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o",
                                str(tmp_path / "q.onnx")], limit=QUICK_LIMIT)
    _assert_one_line_error(quantize, "onnxruntime cannot load it", "tensor(string)")


# -- D4: what onnx warns of while reading ------------------------------------------------------


def test_an_unknown_external_data_key_is_one_line_not_onnx_warnings(tmp_path):
    """An external-data entry with a key onnx does not know: onnx ignores it with a
    UserWarning per tensor (audit: exit 0 and ten lines of warnings on stderr; quantize: 21
    lines), onnxruntime refuses the model. Both commands now say so in one line."""
    from onnx.external_data_helper import convert_model_to_external_data

    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    proto = _model(nodes, [_float("x", ["N", 4])], [_float("y", ["N", 4])],
                   [_weight("w", 4, 4)])
    convert_model_to_external_data(proto, location="weights.bin", size_threshold=0)
    model = tmp_path / "model.onnx"
    onnx.save(proto, model)
    proto = onnx.load(model, load_external_data=False)
    entry = proto.graph.initializer[0].external_data.add()
    entry.key, entry.value = "evil", "1"
    onnx.save(proto, model)  # (the data file stays as written)
    calib = tmp_path / "x.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    for argv in (["audit", str(model)],
                 ["quantize", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.onnx")]):
        outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
        _assert_one_line_error(outcome, "invalid external data", "['evil']", "tensor 'w'")
    # (pytest records the forked child's warnings: what would reach stderr is checked here)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert onnx_io.external_data_files(model) == [tmp_path / "weights.bin"]
        with pytest.raises(UserError):
            onnx_io.read_model(model)
    assert not caught, [str(w.message) for w in caught]


# -- a model in one of onnx's text formats ----------------------------------------------------


@pytest.mark.parametrize("suffix, text", [
    (".txtpb", None),  # a valid textproto model: the checker had called it invalid protobuf
    (".onnxtxt", "ir_version: 8"),  # not onnx's textual syntax: an internal error (exit 3)
    (".json", '{"irVersion": '),  # malformed JSON: an internal error (exit 3)
])
def test_a_model_in_a_text_format_is_one_line_saying_to_save_it_binary(tmp_path, suffix, text):
    model = tmp_path / f"model{suffix}"
    if text is None:
        nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
        onnx.save(_model(nodes, [_float("x", [1, 4])], [_float("y", [1, 4])]), model,
                  format="textproto")
    else:
        model.write_text(text)
    calib = tmp_path / "x.npy"
    np.save(calib, np.ones((4, 4), np.float32))
    for argv in (["audit", str(model)],
                 ["quantize", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.onnx")]):
        outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
        _assert_one_line_error(outcome, "text format", "onnx.save(onnx.load(PATH)")
    assert not (tmp_path / "q.onnx").exists()


# -- D8 and its kin: a kernel dividing by what a node says -------------------------------------


def _constant_path_model(path, node: onnx.NodeProto, initializers=()) -> None:
    """x (N, 4, 8, 8) -> Conv -> Mul by the sum of ``node``'s output, ``node`` reading the
    constant c (1, 4, 8, 8) only: constant folding runs its kernel as the model is read."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"), node,
             helper.make_node("ReduceSum", [node.output[0]], ["total"], keepdims=0, name="sum"),
             helper.make_node("Mul", ["h", "total"], ["y"], name="mul")]
    constant = numpy_helper.from_array(
        np.random.default_rng(2).standard_normal((1, 4, 8, 8)).astype(np.float32), "c")
    onnx.save(_model(nodes, [_float("x", ["N", 4, 8, 8])], [_float("y", None)],
                     [_weight("w", 4, 4, 1, 1), constant, *initializers]), path)


ZERO_DIVISORS = {
    "conv-group-0": helper.make_node("Conv", ["c", "w"], ["o"], name="hostile", group=0),
    "depth-to-space-0": helper.make_node("DepthToSpace", ["c"], ["o"], name="hostile",
                                         blocksize=0),
    "space-to-depth-0": helper.make_node("SpaceToDepth", ["c"], ["o"], name="hostile",
                                         blocksize=0),
}


@pytest.mark.parametrize("case", sorted(ZERO_DIVISORS))
def test_a_kernel_dividing_by_a_zero_attribute_is_one_line(tmp_path, case):
    """A Conv of group 0, a DepthToSpace or SpaceToDepth of blocksize 0 on a constant: the
    kernel's ZeroDivisionError (an ArithmeticError, like Range's OverflowError) had been an
    internal error; a kernel's arithmetic failure is the node's, in one line."""
    model = tmp_path / "model.onnx"
    _constant_path_model(model, ZERO_DIVISORS[case])
    outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "node 'hostile'", "cannot run it", "by zero")


@pytest.mark.parametrize(("start", "limit", "delta", "fragment"), [
    (np.float32(0), np.float32(10), np.float32(0), "its delta is 0"),
    (np.int64(0), np.int64(10), np.int64(0), "its delta is 0"),
    (np.float32(0), np.float32(np.inf), np.float32(1), "has no finite length"),
    (np.float32(0), np.float32(np.nan), np.float32(1), "has no finite length"),
], ids=["float-delta-0", "int64-delta-0", "inf-limit", "nan-limit"])
def test_a_constant_range_without_end_is_one_line_saying_why(tmp_path, start, limit, delta,
                                                            fragment):
    """A constant Range of delta 0 (float or int64) had been exit 3 (OverflowError: its count
    int(inf)); it says why, as a NaN limit does, in audit and in quantize."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Range", ["start", "limit", "delta"], ["r"], name="range"),
             helper.make_node("ReduceSum", ["r"], ["total"], keepdims=0, name="sum"),
             helper.make_node("Mul", ["h", "total"], ["y"], name="mul")]
    bounds = [numpy_helper.from_array(np.asarray(v), n)
              for n, v in (("start", start), ("limit", limit), ("delta", delta))]
    if start.dtype == np.int64:
        nodes.insert(3, helper.make_node("Cast", ["total"], ["total_f"], to=TensorProto.FLOAT))
        nodes[-1].input[1] = "total_f"
    model, calib = tmp_path / "range.onnx", tmp_path / "x.npy"
    onnx.save(_model(nodes, [_float("x", ["N", 4])], [_float("y", ["N", 4])],
                     [_weight("w", 4, 4), *bounds]), model)
    np.save(calib, np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    for argv in (["audit", str(model)],
                 ["quantize", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.onnx")]):
        outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
        _assert_one_line_error(outcome, "node 'range' (Range)", fragment)


# -- names holding escape codes: every line printed stays one line, no escape reaches a terminal

_HOSTILE_NAME = "re\x1b[31mlu\nFAKE LINE\r\x07"  # a colour, a line break, a return, a bell


def _printable_lines(text: str) -> list[str]:
    """The lines of ``text`` holding a character that does not print (an escape code, a
    carriage return or a bell that came from a name), or that a name started."""
    return [line for line in text.split("\n")
            if not line.isprintable() or line.startswith("FAKE")]


def test_a_node_named_with_escape_codes_is_escaped_in_notes_and_summaries(mlp_files):
    """The equalization note and audit's summary quote the Relu between the two Gemms by
    name: they had printed its ANSI colour code, bell and line break as they are (the tables
    escaped them already)."""
    tmp, _, calib = mlp_files
    import models

    model = models.mlp("Relu")
    for node in model.graph.node:
        if node.name == "relu1":
            node.name = _HOSTILE_NAME
    path = tmp / "named.onnx"
    onnx.save(model, path)
    for argv in (["audit", str(path)], ["audit", str(path), "--markdown"],
                 ["quantize", str(path), "--calib", str(calib), "-o", str(tmp / "q.onnx"),
                  "--report", str(tmp / "r.md"), "--no-progress"]):
        outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
        assert outcome.status == 0, outcome.err
        assert "re\\x1b[31mlu\\nFAKE LINE\\r\\x07" in outcome.out  # (named, escaped)
        assert _printable_lines(outcome.out) == [] and outcome.err == "", argv
    assert _printable_lines((tmp / "r.md").read_text()) == []


def test_output_paths_with_escape_codes_are_escaped_on_standard_output(mlp_files):
    tmp, model, calib = mlp_files
    target = tmp / "q\n\x1b[31m.onnx"
    outcome = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o",
                               str(target), "--no-progress"], limit=QUICK_LIMIT)
    assert outcome.status == 0, outcome.err
    assert target.exists() and "q\\n\\x1b[31m.onnx" in outcome.out
    assert _printable_lines(outcome.out) == []


def test_error_messages_escape_what_does_not_print(tmp_path):
    """onnx's checker quotes a node's name as it is, and so do the file checks a path:
    the one-line message had carried the escape codes to the terminal."""
    node = helper.make_node("Relu", ["x"], ["y"], name="bad\x1b[2J\x07")
    node.input.append("extra")  # (Relu takes one input: the checker names the node)
    path = tmp_path / "m.onnx"
    onnx.save(_model([node], [_float("x", [1, 4]), _float("extra", [1, 4])],
                     [_float("y", [1, 4])]), path)
    for argv in (["audit", str(path)], ["audit", str(tmp_path / "no\x1b[31m.onnx")]):
        outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
        _assert_one_line_error(outcome, "\\x1b[")
        assert outcome.err[:-1].isprintable(), outcome.err


@pytest.mark.parametrize("saturate", [None, 1, 0])
def test_a_constant_cast_like_a_float8_activation_saturates_as_the_attribute_says(tmp_path,
                                                                                  saturate):
    """A constant beyond float8e4m3fn's range cast by a CastLike like a float8 activation
    (folded by its element type alone) becomes +-448 with ``saturate`` 1 (its
    default), as onnxruntime computes it: numpy's astype, which the kernels had used, gave NaN,
    and quantize refused the model for NaN it called the model's own constants. With
    ``saturate`` 0 the NaN are the model's, and so refused."""
    model, calib = tmp_path / "model.onnx", tmp_path / "calib.npy"
    onnx.save(hostile.float8_round_trip_of_a_constant("CastLike", saturate), model)
    np.save(calib, np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32))
    outcome = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o",
                               str(tmp_path / "q.onnx")], limit=QUICK_LIMIT)
    if saturate == 0:
        _assert_one_line_error(outcome, "NaN", "constant 'cf'")
    else:
        assert outcome.status == 0, outcome.err


@pytest.mark.parametrize("fmt", ["integer", "qdq", "simulation"])
def test_an_input_named_as_a_format_names_a_tensor_of_its_own_quantizes(mlp_files, fmt):
    """A model's input may be named anything, the names a format invents included: the
    integer format's codes of input ``input`` (``input:int~1``) and the engine's accumulator
    of a Gemm (``gemm1:acc~q4``), each taken from the file written for the mlp, had been
    written beside the input of that name: two tensors of one name, which onnxruntime refused
    (exit 3)."""
    folder, model, calib = mlp_files
    plain = folder / "plain.onnx"
    assert hostile.run_cli(["quantize", str(model), "--calib", str(calib), "--format",
                            "integer", "-o", str(plain)], limit=QUICK_LIMIT).status == 0
    # the format's names, as the written nodes take them, and the engine's, from its plan
    invented = [n.name for n in onnx.load(plain).graph.node if n.name.startswith("input:")]
    graph = prepare(load_model(str(model)))
    planned = quantize(graph, calibrate(graph, np.load(calib)), 8).names_in_use()
    invented += sorted(name for name in planned if "~q" in name)[:3]
    assert any("~q" in name for name in invented) and any(":" in name for name in invented)
    for name in invented:
        source = onnx.load(model)
        source.graph.input[0].name = name
        for node in source.graph.node:
            node.input[:] = [name if i == "input" else i for i in node.input]
        renamed, data = folder / "renamed.onnx", folder / "renamed.npz"
        onnx.save(source, renamed)
        np.savez(data, **{name: np.load(calib)})
        outcome = hostile.run_cli(["quantize", str(renamed), "--calib", str(data), "--format",
                                   fmt, "-o", str(folder / "q.onnx")], limit=QUICK_LIMIT)
        assert outcome.status == 0, (name, outcome.err)


@pytest.mark.parametrize("fmt", ["simulation", "qdq"])
def test_a_node_named_as_a_selection_run_again_at_16_bits_quantizes(tmp_path, fmt):
    """A node named as the engine names a selection it runs again on a jump's 16-bit codes
    (``gather:16bit~q16``, read off the file written for the model) had been written beside
    that node: two nodes of one name, which onnxruntime refused (exit 3)."""
    model, calib, plain = tmp_path / "model.onnx", tmp_path / "calib.npy", tmp_path / "p.onnx"
    np.save(calib, np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32))
    source = hostile.threshold_after_selections()
    onnx.save(source, model)
    argv = ["--calib", str(calib), "--bits", "4", "--format", fmt]
    assert hostile.run_cli(["quantize", str(model), *argv, "-o", str(plain)]).status == 0
    invented = [n.name for n in onnx.load(plain).graph.node if "16bit" in n.name]
    assert invented
    for name in invented:
        renamed = onnx.ModelProto()
        renamed.CopyFrom(source)
        next(n for n in renamed.graph.node if n.name == "last").name = name
        onnx.save(renamed, model)
        outcome = hostile.run_cli(["quantize", str(model), *argv, "-o", str(tmp_path / "q.onnx")],
                                  limit=QUICK_LIMIT)
        assert outcome.status == 0, (name, outcome.err)


@pytest.mark.parametrize("fmt", ["integer", "qdq", "simulation"])
def test_a_static_operand_beyond_int32_that_is_data_runs_the_sum_in_float(tmp_path, fmt):
    """A hostile-input trial: a Cast of ids (near 10^6) added to a MatMul's accumulator is
    data, not a mask (no position saturates the sum), yet at the accumulator's scale it lies
    beyond int32: the integer file clipped it at 2^30 and its output had 0 dB where the
    simulation held it whole. The sum runs in float in every format now."""
    import onnxruntime as ort

    from ptq_verify.engine import sqnr_db

    model, calib, out = tmp_path / "model.onnx", tmp_path / "calib.npz", tmp_path / "q.onnx"
    onnx.save(hostile.ids_added_to_an_accumulator(), model)
    rng = np.random.default_rng(1)
    data = {"x": rng.standard_normal((32, 4)).astype(np.float32),
            "ids": rng.integers(1_000_000, 1_000_003, (32, 4))}
    np.savez(calib, **data)
    outcome = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "--format", fmt,
                               "-o", str(out)], limit=QUICK_LIMIT)
    assert outcome.status == 0, outcome.err
    expected = ort.InferenceSession(str(model)).run(None, data)[0]
    assert sqnr_db(expected, ort.InferenceSession(str(out)).run(None, data)[0]) > 30
