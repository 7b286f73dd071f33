"""``--float-op TYPE``: the nodes of an op type no declaration describes (a recurrent layer)
run in float, as onnxruntime runs them, and the rest of the model is quantized.

The fixtures are torch exports (benchmarks/export_test_models.py): ``digits_lstm`` (an LSTM
whose sequence output feeds a residual Add and a Linear; legacy opset 17 with its three
outputs, dynamo opset 18 with one) and ``digits_bigru`` (a bidirectional GRU, legacy).
"""

from __future__ import annotations

from pathlib import Path

import hostile
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, plan_model, quantize, sqnr_db
from ptq_verify.errors import UserError
from ptq_verify.graph import OperatorTable

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
RECURRENT = {"digits_lstm.legacy.opset17.onnx": "LSTM", "digits_lstm.dynamo.opset18.onnx": "LSTM",
             "digits_bigru.legacy.opset17.onnx": "GRU"}


def _data(split: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"digits_tokens.{split}.npz") as data:
        return dict(data)


def _run(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    source = model if isinstance(model, (str, Path)) else model.SerializeToString()
    session = ort.InferenceSession(str(source) if isinstance(source, Path) else source,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_without_the_option_the_refusal_names_the_node_and_the_option(name, tmp_path, capsys):
    code = main(["quantize", str(FIXTURES / name), "--calib",
                 str(FIXTURES / "digits_tokens.calib.npz"), "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"({RECURRENT[name]}): no declared operator" in err
    assert f"--float-op {RECURRENT[name]}" in err
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_the_recurrent_node_runs_in_float_and_the_rest_on_integers(name):
    """Calibrated on the catalog's kernels (runtime numpy: the recurrent node in a session of
    its own) and simulated so too: every format's file runs in onnxruntime, the simulation's
    gives the engine's outputs, and the model stays close to the float one on held-out data."""
    table = OperatorTable(float_types=[RECURRENT[name]])
    graph = load_model(FIXTURES / name, table)
    kept = [node.name for node in graph.nodes if node.op_type == RECURRENT[name]]
    assert len(kept) == 1
    plans = {plan.name: plan for plan in plan_model(graph, table)}
    assert plans[kept[0]].rule is None and plans[kept[0]].compensated
    assert "kept in float at your request" in plans[kept[0]].reason
    calibration = calibrate(graph, _data("calib"), runtime="numpy", operators=table,
                            progress=False)
    model = quantize(graph, calibration, 8, operators=table)
    records = {record.name: record for record in model.records}
    assert records[kept[0]].kind == "compensated"
    assert sum(record.kind == "integer" for record in model.records) >= 4  # Gemms, MatMuls, Add
    test = _data("test")
    reference = _run(FIXTURES / name, test)
    simulated = model.run(test)["output"]
    assert np.allclose(_run(model.to_onnx("simulation"), test), simulated, atol=1e-5)
    assert sqnr_db(reference, simulated) > 30
    for form in ("qdq", "integer"):
        assert sqnr_db(reference, _run(model.to_onnx(form), test)) > 30, form


def test_the_recurrent_node_is_calibrated_as_onnxruntime_computes_it():
    """The kernel of a node kept in float is onnxruntime's: the numpy executor's ranges of its
    outputs are those of a calibration that runs the whole model in onnxruntime."""
    name = "digits_lstm.legacy.opset17.onnx"
    table = OperatorTable(float_types=["LSTM"])
    graph = load_model(FIXTURES / name, table)
    (node,) = [node for node in graph.nodes if node.op_type == "LSTM"]
    data = {key: value[:32] for key, value in _data("calib").items()}
    ours = calibrate(graph, data, runtime="numpy", operators=table, progress=False)
    theirs = calibrate(graph, data, operators=table, progress=False)
    for output in node.outputs:
        assert np.isclose(ours.stats[output].maximum, theirs.stats[output].maximum, rtol=1e-5)
        assert np.isclose(ours.stats[output].minimum, theirs.stats[output].minimum, rtol=1e-5)


def test_cli_quantize_and_audit_with_the_option(tmp_path, capsys):
    name = "digits_lstm.legacy.opset17.onnx"
    path, calib = str(FIXTURES / name), str(FIXTURES / "digits_tokens.calib.npz")
    assert main(["audit", path, "--float-op", "LSTM"]) == 0
    listing = capsys.readouterr().out
    assert "kept in float at your request: no declaration describes it (--float-op): /layer/LSTM" \
        in listing
    assert "unknown op type" not in listing
    for form in ("qdq", "integer", "simulation"):
        out = tmp_path / f"{form}.onnx"
        assert main(["quantize", path, "--calib", calib, "-o", str(out), "--format", form,
                     "--float-op", "LSTM", "--summary", "--no-progress"]) == 0
        summary = capsys.readouterr().out
        assert "1 compensated (float: kept in float at your request" in summary
        assert out.exists()


@pytest.mark.parametrize(("option", "said"), [
    ("Lstm", "holds no node of that op type"),
    ("LSTM,Gemm", "is declared (Gemm, the built-in catalog)"),
    ("LSTM,", "an empty op type"),
])
def test_an_op_type_it_cannot_keep_is_one_line(option, said, tmp_path, capsys):
    """A misspelt op type would change nothing (and the refusal would follow), a declared
    one has its proved rule: each is refused before any work."""
    for command in (["audit"], ["quantize", "--calib", str(FIXTURES / "digits_tokens.calib.npz"),
                                "-o", str(tmp_path / "q.onnx")]):
        code = main([*command, str(FIXTURES / "digits_lstm.legacy.opset17.onnx"),
                     "--float-op", option])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and said in err, err


def _cdist_like() -> onnx.ModelProto:
    """MatMul -> Pow by 2 (the catalog's Pow2) -> ReduceSum -> Pow by float32(1/2.0000001),
    as torch's legacy export of ``torch.cdist`` writes a distance: the second Pow has an
    exponent no declaration takes."""
    weight = numpy_helper.from_array(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4),
                                     "w")
    constants = [weight, numpy_helper.from_array(np.float32(2), "two"),
                 numpy_helper.from_array(np.float32(0.49999976), "root"),
                 numpy_helper.from_array(np.array([1], np.int64), "axis")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("Pow", ["h", "two"], ["sq"], name="square"),
             helper.make_node("ReduceSum", ["sq", "axis"], ["total"], name="total", keepdims=1),
             helper.make_node("Pow", ["total", "root"], ["y"], name="root")]
    graph = helper.make_graph(
        nodes, "cdist", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_option_keeps_a_type_s_undeclared_nodes_beside_its_declared_ones(tmp_path, capsys):
    """A new-user trial: torch.cdist's legacy export holds a Pow by 2 (declared, Pow2) and a
    Pow by 0.49999976 (no declaration): quantize refused the second, and refused
    ``--float-op Pow`` for the first, so the model had no way through. The option now keeps
    the undeclared node in float and the declared one keeps its rule; a type whose every node
    is declared is still refused (test above)."""
    model, calib = tmp_path / "cdist.onnx", tmp_path / "c.npy"
    onnx.save(_cdist_like(), model)
    x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    np.save(calib, x)
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--no-progress"]) == 2
    assert "--float-op Pow" in capsys.readouterr().err
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out), "--float-op",
                 "Pow", "--no-progress"]) == 0
    listing = capsys.readouterr().out
    assert "1 compensated (float: kept in float at your request" in listing
    assert next(line for line in listing.splitlines() if line.startswith("square")).split()[2] \
        == "homogeneous"
    assert sqnr_db(_run(_cdist_like(), {"x": x}), _run(onnx.load(out), {"x": x})) > 30
    assert main(["audit", str(model)]) == 0
    assert "; --float-op Pow keeps them in float" in capsys.readouterr().out
    assert main(["audit", str(model), "--float-op", "Pow"]) == 0
    assert "(--float-op): root" in capsys.readouterr().out


def test_the_table_takes_a_list_of_op_types():
    with pytest.raises(UserError, match=r"\['LSTM'\] for one"):
        OperatorTable(float_types="LSTM")


def _lstm_unread_or_in_a_branch(where: str) -> onnx.ModelProto:
    """tests/hostile.py's MatMul -> LSTM, its LSTM read by no output (``unread``: the graph
    output is a Relu of the MatMul) or written inside the then branch of an If of a constant
    true condition (``branch``)."""
    model = hostile.lstm_after_matmul(("y", "", ""))
    graph = model.graph
    lstm = next(node for node in graph.node if node.op_type == "LSTM")
    others = [node for node in graph.node if node is not lstm]
    graph.ClearField("node")
    graph.node.extend(others)
    if where == "unread":
        graph.node.extend([lstm, helper.make_node("Relu", ["h"], ["r"], name="relu")])
        graph.output[0].CopyFrom(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
        return model
    def branch(name: str, nodes: list, output: str) -> onnx.GraphProto:
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(
            output, TensorProto.FLOAT, None)])
    graph.node.append(helper.make_node(
        "If", ["cond"], ["y"], name="if_1", then_branch=branch("then", [lstm], "y"),
        else_branch=branch("else", [helper.make_node("Identity", ["h"], ["e"])], "e")))
    graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    return model


@pytest.mark.parametrize("where", ["unread", "branch"])
def test_audit_and_quantize_agree_on_an_lstm_prepare_drops_or_brings(where, tmp_path, capsys):
    """The option was checked on the file as read in audit and on the prepared graph in
    quantize: an LSTM no output reads (dropped at load) was refused by quantize as 'holds no
    node of that op type', one in the taken branch of a constant If by audit."""
    path, calib = tmp_path / "m.onnx", tmp_path / "c.npy"
    onnx.save(_lstm_unread_or_in_a_branch(where), path)
    np.save(calib, np.random.default_rng(0).standard_normal((8, 2, 3)).astype(np.float32))
    assert main(["audit", str(path), "--float-op", "LSTM"]) == 0, capsys.readouterr().err
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(tmp_path / "q.onnx"),
                 "--float-op", "LSTM", "--no-progress"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(("value", "said"), [
    (None, "float_types=None: a list of op types"), (5, "float_types=5: a list of op types"),
    (["LSTM", 3], "3 is no op type"), ([["LSTM"]], "['LSTM'] is no op type"),
    ([b"LSTM"], "b'LSTM' is no op type"), ([""], "'' is no op type"),
    ([" LSTM "], "' LSTM ' is no op type")], ids=repr)
def test_the_table_refuses_what_is_no_op_type(value, said):
    """None, a number or a nested list had failed as a TypeError; bytes, '' or a padded name
    was kept, matched no node, and the LSTM was then refused as if the option were not given."""
    with pytest.raises(UserError) as refusal:
        OperatorTable(float_types=value)
    assert said in str(refusal.value)


def test_a_type_folded_at_load_is_still_refused_as_declared(tmp_path, capsys):
    """A BatchNorm is folded into its Conv at load: quantize, checking the prepared graph,
    had said the model 'holds no node of that op type'; it is declared, and said so."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")]
    inits += [numpy_helper.from_array(value.astype(np.float32), name) for name, value in [
        ("g", rng.random(4) + 0.5), ("b", rng.normal(size=4)), ("mu", rng.normal(size=4)),
        ("var", rng.random(4) + 0.5)]]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["y"],
                              name="bn")]
    path, calib = tmp_path / "m.onnx", tmp_path / "c.npy"
    onnx.save(helper.make_model(helper.make_graph(nodes, "bn", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 3, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits),
        opset_imports=[helper.make_opsetid("", 17)]), path)
    np.save(calib, rng.normal(size=(8, 3, 8, 8)).astype(np.float32))
    for command in (["audit"], ["quantize", "--calib", str(calib), "-o", str(tmp_path / "q.onnx")]):
        assert main([*command, str(path), "--float-op", "BatchNormalization"]) == 2
        err = capsys.readouterr().err
        assert "node 'bn' (BatchNormalization)" in err and "is declared" in err, err


def _sequence_first_gru(initial: bool = True) -> onnx.ModelProto:
    """A GRU as torch's legacy exporter writes ``nn.GRU(8, 16)`` (batch_first=False) called
    with an initial state (``initial``) or not: inputs x (seq, batch, 8) and h0 (1, batch,
    16), output Y squeezed to (seq, batch, 16) and projected by a 16 x 16 MatMul (the layer
    quantized: a Squeeze alone after the GRU in float runs in float)."""
    rng = np.random.default_rng(0)
    weights = {"w": (1, 48, 8), "r": (1, 48, 16), "b": (1, 96), "project": (16, 16)}
    constants = [numpy_helper.from_array((0.3 * rng.standard_normal(shape)).astype(np.float32),
                                         name) for name, shape in weights.items()]
    constants.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    nodes = [helper.make_node("GRU", ["x", "w", "r", "b", "", "h0" if initial else ""], ["y4"],
                              name="gru",
                              hidden_size=16, linear_before_reset=1),
             helper.make_node("Squeeze", ["y4", "axes"], ["y3"], name="squeeze"),
             helper.make_node("MatMul", ["y3", "project"], ["y"], name="project")]
    graph = helper.make_graph(
        nodes, "gru_h0",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["seq", "batch", 8]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "batch", 16])][:1 + initial],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["seq", "batch", 16])], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_sequence_first_model_takes_its_samples_along_its_batch_axis(tmp_path, capsys):
    """x (seq, batch, 8) and h0 (1, batch, 16) name one dimension alike, 'batch', away from
    axis 0: the data hold the samples there, in the model's own layout (a new-user trial's
    GRU with its initial state as an input had been refused as holding 'different numbers
    of samples ... batch first', told to export batch first, which torch's h0 never is).
    37 samples make batches of 32 and 5, cut and joined along axis 1; the written file and
    the simulation match the float model in onnxruntime on held-out sequences."""
    path, calib = tmp_path / "m.onnx", tmp_path / "c.npz"
    onnx.save(_sequence_first_gru(), path)
    rng = np.random.default_rng(1)

    def feeds(count: int) -> dict[str, np.ndarray]:
        return {"x": rng.standard_normal((10, count, 8)).astype(np.float32),
                "h0": rng.standard_normal((1, count, 16)).astype(np.float32)}

    calibration = feeds(37)
    np.savez(calib, **calibration)
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(out),
                 "--float-op", "GRU", "--no-progress"]) == 0, capsys.readouterr().err
    test = feeds(37)
    reference = _run(path, test)
    assert reference.shape == (10, 37, 16)
    assert sqnr_db(reference, _run(out, test)) > 30
    table = OperatorTable(float_types=["GRU"])
    graph = load_model(path, table)
    model = quantize(graph, calibrate(graph, calibration, operators=table, progress=False), 8,
                     operators=table)
    simulated = model.run(test)["y"]
    assert simulated.shape == reference.shape and sqnr_db(reference, simulated) > 30
    assert main(["audit", str(path), "--float-op", "GRU"]) == 0
    out_text = capsys.readouterr().out
    assert "the model's batch, 'batch', lies on axis 1 of 'x' and axis 1 of 'h0'" in out_text
    assert "not axis 0" not in out_text


def test_a_state_given_samples_first_is_told_the_model_layout(tmp_path, capsys):
    """The one layout the data take is the model's: an initial state given with its samples
    on axis 0, as the other inputs have them, is refused in one line with the np.moveaxis
    call that gives the model's; nothing is written."""
    path, calib = tmp_path / "m.onnx", tmp_path / "c.npz"
    onnx.save(_sequence_first_gru(), path)
    np.savez(calib, x=np.ones((10, 32, 8), np.float32), h0=np.ones((32, 1, 16), np.float32))
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(tmp_path / "q.onnx"),
                 "--float-op", "GRU", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "input 'h0'" in err and "np.moveaxis(array, 0, 1) gives its layout" in err, err
    assert not (tmp_path / "q.onnx").exists()


def _fixed_batch_state_model(layers: int) -> onnx.ModelProto:
    """x (1, 4, 8) beside a state h0 (layers, 1, 16), every axis fixed, as torch exports a
    streaming GRU without dynamic axes; y = x and hn = 2 h0 (what runs does not matter
    here: the data are checked first)."""
    two = numpy_helper.from_array(np.array(2, np.float32), "two")
    nodes = [helper.make_node("Identity", ["x"], ["y"]),
             helper.make_node("Mul", ["h0", "two"], ["hn"])]
    graph = helper.make_graph(
        nodes, "fixed_state",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [layers, 1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8]),
         helper.make_tensor_value_info("hn", TensorProto.FLOAT, [layers, 1, 16])], [two])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("layers", [1, 2])
def test_a_state_recorded_along_a_batch_the_export_fixes_is_told_where_samples_go(
        layers, tmp_path, capsys):
    """A streaming export without dynamic axes names no batch: its samples go along axis 0
    of every input. A state recorded as docs/engine.md records one, along its batch axis (1,
    N, 16), is told the np.moveaxis call that gives that layout, which then quantizes; with
    two layers no layout holds more than one sample, and the line says to export the batch
    dynamic. A streaming trial's (1, 512, 16) had been told to pad texts to 1 token."""
    path, calib, out = tmp_path / "m.onnx", tmp_path / "c.npz", tmp_path / "q.onnx"
    onnx.save(_fixed_batch_state_model(layers), path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4, 8)).astype(np.float32)
    h0 = rng.standard_normal((layers, 40, 16)).astype(np.float32)
    np.savez(calib, x=x, h0=h0)
    command = ["quantize", str(path), "--calib", str(calib), "-o", str(out), "--no-progress"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and not out.exists(), err
    if layers == 2:
        assert "no layout holds more than one sample" in err, err
        return
    assert "np.moveaxis(array, 1, 0) gives that layout" in err, err
    np.savez(calib, x=x, h0=np.moveaxis(h0, 1, 0))
    assert main(command) == 0, capsys.readouterr().err


def test_a_batch_first_model_with_two_inputs_has_its_batch_on_axis_0(capsys):
    assert main(["audit", str(FIXTURES / "tiny_bert_dynamic.legacy.opset17.onnx")]) == 0
    out_text = capsys.readouterr().out
    assert "not axis 0" not in out_text and "lies on axis" not in out_text


def test_a_streaming_lstm_export_quantizes_with_its_state_as_recorded(tmp_path, capsys):
    """torch's legacy and dynamo exports of an LSTM taking its state (h0, c0: (1, batch,
    16), batch second whatever batch_first says) as inputs and giving it back (hn, cn), as
    a streaming model runs chunk by chunk; its data recorded from the float export's own
    states (benchmarks/export_test_models.py, digits_lstm_state). The written file follows
    the float model on held-out chunks, every output. The output note says it ran each
    sample from the state the file gives, not a fed-back one (a streaming trial's LSTM: the
    note 52.8 dB on hn, 32.2 at the sixth chunk run recurrently on held-out streams)."""
    for name in ("digits_lstm_state.legacy.opset17.onnx", "digits_lstm_state.dynamo.opset18.onnx"):
        out = tmp_path / f"q_{name}"
        assert main(["quantize", str(FIXTURES / name), "--calib",
                     str(FIXTURES / "digits_lstm_state.calib.npz"), "-o", str(out),
                     "--float-op", "LSTM", "--no-progress"]) == 0, capsys.readouterr().err
        with np.load(FIXTURES / "digits_lstm_state.test.npz") as data:
            test = dict(data)
        assert "not one the quantized model fed back" in capsys.readouterr().out
        names = ["output", "hn", "cn"]
        reference = ort.InferenceSession(str(FIXTURES / name)).run(names, test)
        got = ort.InferenceSession(str(out)).run(names, test)
        for output, want, have in zip(names, reference, got):
            assert have.shape == want.shape and sqnr_db(want, have) > 30, (name, output)


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_audit_without_the_option_names_it_for_a_recurrent_layer(name, capsys):
    """A new user audits first: a CRNN's LSTMs were listed as 'unknown op type LSTM: ... (not
    in the catalog)' with no way forward, where quantize's refusal names --float-op."""
    assert main(["audit", str(FIXTURES / name)]) == 0
    line, = (row for row in capsys.readouterr().out.splitlines()
             if row.startswith(f"unknown op type {RECURRENT[name]}:"))
    assert "recurrent layer" in line and f"--float-op {RECURRENT[name]} keeps it" in line


def test_a_one_input_sequence_first_model_is_told_axis_0_was_taken_for_samples(tmp_path, capsys):
    """x (seq, batch, 8) alone passes every check in its own layout, and ptq-verify takes its
    steps for samples: a new-user trial's GRU was calibrated on slices of its sequences and
    its output note said 13.6 dB where the file gave 50.6 on whole held-out sequences. The
    note on calibrated lengths and the audit say so where the model names axis 1 'batch'."""
    path, calib = tmp_path / "m.onnx", tmp_path / "c.npz"
    onnx.save(_sequence_first_gru(initial=False), path)
    np.savez(calib, x=np.random.default_rng(1).standard_normal((10, 32, 8)).astype(np.float32))
    said = "axis 1 of input 'x' is named 'batch': if that is the model's batch"
    assert main(["quantize", str(path), "--calib", str(calib), "-o", str(tmp_path / "q.onnx"),
                 "--float-op", "GRU", "--no-progress"]) == 0
    out_text = capsys.readouterr().out
    assert said in out_text and "fed back" not in out_text
    assert main(["audit", str(path), "--float-op", "GRU"]) == 0
    assert said in capsys.readouterr().out
    assert main(["audit", str(FIXTURES / "tiny_bert_dynamic.legacy.opset17.onnx")]) == 0
    assert "if that is the model's batch" not in capsys.readouterr().out


@pytest.mark.parametrize("apart", [False, True])
def test_an_export_naming_no_dimension_is_told_how_to_name_its_batch(apart, tmp_path, capsys):
    """spox's export of silero-vad names no dimension: its state (2, ?, 128) beside audio
    (?, 576) holds the samples on axis 1, which nothing in the file says; torch's legacy
    export given unnamed dynamic axes names each tensor's apart ('h0_dynamic_axes_1', as
    ``apart``), which shape inference keeps on the outputs. The refusal names
    the axes to call alike, the outputs' too, in one Python statement; run as given, the file
    so named quantizes and the Python API joins the final states of more samples than one
    batch along their batch axis (a streaming trial's hint had been a SyntaxError, and
    followed by hand, naming the inputs alone, joined 320 samples' hn into (2, 256, 16))."""
    proto = onnx.load(FIXTURES / "digits_lstm_state.legacy.opset17.onnx")
    for value in (*proto.graph.input, *proto.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.Clear()
                if apart:
                    dim.dim_param = f"{value.name}_dynamic_axes_1"
    path, out = tmp_path / "unnamed.onnx", tmp_path / "q.onnx"
    onnx.save(proto, path)
    calib = str(FIXTURES / "digits_lstm_state.calib.npz")
    command = ["quantize", str(path), "--calib", calib, "-o", str(out), "--float-op", "LSTM",
               "--no-progress"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert "if the model's batch is axis 1 of 'h0' and axis 1 of 'c0'" in err, err
    code = err.strip().split("in the model's own layout: ", 1)[1]
    exec(code, {"model": proto})  # noqa: S102 - the hint's own code, as a user runs it
    onnx.save(proto, path)
    assert main(command) == 0, capsys.readouterr().err
    table = OperatorTable(float_types=["LSTM"])
    graph = load_model(path, table)
    with np.load(calib) as data:
        calibration = dict(data)
    model = quantize(graph, calibrate(graph, calibration, operators=table, progress=False), 8,
                     operators=table)
    many = {name: np.concatenate([array] * 5, axis=1 if name in ("h0", "c0") else 0)
            for name, array in calibration.items()}
    simulated = model.run(many)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for name, reference in zip(["output", "hn", "cn"], session.run(["output", "hn", "cn"], many)):
        assert simulated[name].shape == reference.shape, name
        assert sqnr_db(reference, simulated[name]) > 30, name


def _input_transposed_into_lstms() -> onnx.ModelProto:
    """x (batch, T, D) -> Transpose (T, batch, D) -> LSTM -> Squeeze -> LSTM -> its last state
    -> MatMul: a batch-first torch module over a sequence-first ``nn.LSTM`` of two layers, as
    both exporters write a speaker encoder over mel frames."""
    rng = np.random.default_rng(0)
    hidden, features = 8, 6

    def lstm(index: int, width: int, spread: float) -> list:
        return [numpy_helper.from_array(
            rng.normal(0, scale, (1, 4 * hidden, size)).astype(np.float32), f"{kind}{index}")
            for kind, size, scale in (("w", width, spread), ("r", hidden, 0.5))]

    # the first layer's input weights large, as for inputs whose useful values are small
    initializers = [*lstm(1, features, 20.0), *lstm(2, hidden, 0.5),
                    numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                    numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                    numpy_helper.from_array(rng.normal(0, 1, (hidden, 4)).astype(np.float32),
                                            "head")]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2], name="to_seq"),
             helper.make_node("LSTM", ["xt", "w1", "r1"], ["y1"], hidden_size=hidden,
                              name="lstm1"),
             helper.make_node("Squeeze", ["y1", "axis1"], ["y1s"], name="squeeze"),
             helper.make_node("LSTM", ["y1s", "w2", "r2"], ["", "h2"], hidden_size=hidden,
                              name="lstm2"),
             helper.make_node("Squeeze", ["h2", "axis0"], ["last"], name="last_state"),
             helper.make_node("MatMul", ["last", "head"], ["output"], name="head")]
    return helper.make_model(helper.make_graph(
        nodes, "input_into_lstms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 10, features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])],
        initializers), opset_imports=[helper.make_opsetid("", 17)])


def _power_frames(rng, count: int) -> np.ndarray:
    """Positive values over five decades, most near 0 (a power mel spectrogram's)."""
    return (10 ** rng.uniform(-5, 0, (count, 10, 6)) * rng.uniform(0.2, 1, (count, 1, 1))
            ).astype(np.float32)


def test_a_copy_of_the_input_into_a_float_node_keeps_the_input_float(tmp_path):
    """A new-user trial's speaker encoder (resemblyzer: mels (batch, frames, 40), values 4e-10
    to 0.75, median 2e-4, through the exporter's Transpose into 3 LSTMs kept in float) had its
    input rounded to 8-bit codes that no integer node read: most of it became 0, the embedding
    7.8 dB on held-out utterances where quantize_static, which leaves it float, gave 34.0.
    The Transpose, and the Squeeze between the LSTMs, now run in float with their ends: here
    42.9 dB in both formats, 30.1 with the input on codes."""
    from ptq_verify.engine.quantize import COPIED_BETWEEN_REASON

    table = OperatorTable(float_types=["LSTM"])
    onnx.save(_input_transposed_into_lstms(), tmp_path / "m.onnx")
    graph = load_model(tmp_path / "m.onnx", table)
    rng = np.random.default_rng(1)
    calibration = calibrate(graph, {"x": _power_frames(rng, 64)}, operators=table,
                            progress=False)
    model = quantize(graph, calibration, 8, operators=table)
    why = {record.name: record.why for record in model.records}
    assert why["to_seq"] == why["squeeze"] == COPIED_BETWEEN_REASON
    assert why["head"] is None or "float" not in why["head"]  # the head stays on integers
    test = {"x": _power_frames(rng, 64)}
    reference = _run(tmp_path / "m.onnx", test)
    for form in ("qdq", "integer"):
        assert sqnr_db(reference, _run(model.to_onnx(form), test)) > 38, form


def _lstms_with_cell_state_out() -> onnx.ModelProto:
    """x -> LSTM -> Squeeze -> LSTM, each LSTM's last cell state Y_c joined by a Concat into
    the graph output ``cn`` (torch's ``nn.LSTM`` of two layers returning its state, as a
    streaming model does), the last hidden state into a MatMul head."""
    rng = np.random.default_rng(2)
    hidden, features = 8, 6
    initializers = [numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)
                    for name, shape in (("w1", (1, 4 * hidden, features)),
                                        ("r1", (1, 4 * hidden, hidden)),
                                        ("w2", (1, 4 * hidden, hidden)),
                                        ("r2", (1, 4 * hidden, hidden)),
                                        ("head", (hidden, 4)))]
    initializers += [numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                     numpy_helper.from_array(np.array([0], np.int64), "axis0")]
    nodes = [helper.make_node("LSTM", ["x", "w1", "r1"], ["y1", "", "c1"], hidden_size=hidden,
                              name="lstm1"),
             helper.make_node("Squeeze", ["y1", "axis1"], ["y1s"], name="squeeze"),
             helper.make_node("LSTM", ["y1s", "w2", "r2"], ["", "h2", "c2"], hidden_size=hidden,
                              name="lstm2"),
             helper.make_node("Concat", ["c1", "c2"], ["cn"], axis=0, name="cell_states"),
             helper.make_node("Squeeze", ["h2", "axis0"], ["last"], name="last_state"),
             helper.make_node("MatMul", ["last", "head"], ["output"], name="head")]
    return helper.make_model(helper.make_graph(
        nodes, "cell_state_out",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [10, "batch", features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("cn", TensorProto.FLOAT, [2, "batch", hidden])],
        initializers), opset_imports=[helper.make_opsetid("", 17)])


def test_a_concat_of_float_outputs_into_a_graph_output_runs_in_float(tmp_path):
    """A new-user trial's streaming speaker encoder returns its cell state, a Concat of its
    three LSTMs' Y_c: the Concat was found to run in float (its inputs at other scales) only
    after each Y_c had been rounded to 8-bit codes for it, and the rounded state, fed back at
    the next chunk, left the embedding at 9.6 dB after 5 chunks (35.1 with the state float;
    quantize_static 12.5). The Concat now runs in float from the start, its inputs uncoded:
    here ``cn`` is exact, where it was 31.9 dB."""
    from ptq_verify.engine.quantize import COPIED_OUT_REASON

    table = OperatorTable(float_types=["LSTM"])
    onnx.save(_lstms_with_cell_state_out(), tmp_path / "m.onnx")
    graph = load_model(tmp_path / "m.onnx", table)
    rng = np.random.default_rng(3)
    calibration = calibrate(graph, {"x": rng.normal(0, 1, (10, 64, 6)).astype(np.float32)},
                            operators=table, progress=False)
    model = quantize(graph, calibration, 8, operators=table)
    assert {record.name: record.why for record in model.records}["cell_states"] == (
        COPIED_OUT_REASON)
    test = {"x": rng.normal(0, 1, (10, 64, 6)).astype(np.float32)}
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    reference = dict(zip(["output", "cn"], session.run(None, test)))
    for form in ("qdq", "integer"):
        got = ort.InferenceSession(model.to_onnx(form).SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(["cn"], test)[0]
        assert sqnr_db(reference["cn"], got) > 60, form


def test_a_state_stacked_per_sample_is_told_the_call_that_gives_the_model_layout(tmp_path,
                                                                                 capsys):
    """A streaming trial's recorded states stacked one per sample, (N, layers, 1, hidden) for
    (layers, batch, hidden), had been told only that the model expects 3 axes."""
    with np.load(FIXTURES / "digits_lstm_state.calib.npz") as data:
        feeds = dict(data)
    stacked = np.moveaxis(feeds["h0"], 1, 0)[:, :, None, :]  # (64, 1, 1, 16)
    calib = tmp_path / "c.npz"
    np.savez(calib, **{**feeds, "h0": stacked})
    assert main(["quantize", str(FIXTURES / "digits_lstm_state.legacy.opset17.onnx"), "--calib",
                 str(calib), "-o", str(tmp_path / "q.onnx"), "--float-op", "LSTM",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    call = err.rsplit("? ", 1)[1].split(" gives its layout")[0]
    assert call == "np.moveaxis(np.squeeze(array, 1), 0, 1)", err
    mended = np.moveaxis(np.squeeze(stacked, 1), 0, 1)
    assert np.array_equal(mended, feeds["h0"])
