"""Bad input gets a one-line error and exit 2; custom operators and rule overrides flow through;
plan_model reports unknown op types instead of raising."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import models
import numpy as np
import onnx
import onnxruntime
import pytest

from ptq_verify.catalog.operator import Operator
from ptq_verify.cli import main
from ptq_verify.engine import calibrate, plan_model, prepare, quantize, relative_error
from ptq_verify.errors import UserError
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph
from ptq_verify.rules import Rule, RuleKind


def _quantize(capsys, model, calib, out, *extra) -> tuple[int, str]:
    code = main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--no-progress", *extra])
    return code, capsys.readouterr().err.strip()


def test_cli_writes_a_model_and_a_report(mlp_files, capsys):
    tmp, model, calib = mlp_files
    code = main(["quantize", str(model), "--calib", str(calib), "-o", str(tmp / "q.onnx"),
                 "--no-progress", "--report", str(tmp / "q.md")])
    assert code == 0
    onnx.checker.check_model(onnx.load(tmp / "q.onnx"))
    report = (tmp / "q.md").read_text()
    assert "| gemm1 | Gemm |" in report
    printed = capsys.readouterr().out
    assert "0 compensated" in printed
    # the report says what the printed summary says, and what wrote it from what data
    summary = next(line for line in printed.splitlines() if " -> " in line).split(": ", 1)[1]
    assert f"Written to `{tmp / 'q.onnx'}`: {summary}." in report
    assert f"(calibration data: `{calib}`)" in report and "--report" in report


def test_summary_prints_the_summary_line_and_notes_without_the_node_table(mlp_files, capsys):
    """A transformer's node table runs to hundreds of lines (a new-user trial's BERT: 210,
    up to 849 characters wide); --summary keeps the summary line and the notes."""
    tmp, model, calib = mlp_files
    argv = ["quantize", str(model), "--calib", str(calib), "-o", str(tmp / "q.onnx"),
            "--no-progress"]
    assert main(argv) == 0
    whole = capsys.readouterr().out.splitlines()
    assert main([*argv, "--summary"]) == 0
    short = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(whole) if " -> " in line)
    assert whole[0].startswith("node ") and short == whole[start:]


@pytest.mark.parametrize(("count", "noted"), [(1, True), (31, True), (32, False)])
def test_a_calibration_set_smaller_than_the_checks_take_is_noted(mlp_files, capsys, count,
                                                                  noted):
    """One image calibrated a CNN with no word said, and the output note, measured on that
    image, read 6 dB above held-out data (a new-user trial)."""
    tmp, model, calib = mlp_files
    np.save(tmp / "few.npy", np.load(calib)[:count])
    assert main(["quantize", str(model), "--calib", str(tmp / "few.npy"), "-o",
                 str(tmp / "q.onnx"), "--no-progress"]) == 0
    note = (f"note: calibrated on {count} sample{'s' if count > 1 else ''}: ranges from so few "
            "miss values that other inputs reach")
    assert (note in capsys.readouterr().out) == noted


def test_an_example_name_stands_for_its_model_and_calibration(tmp_path, monkeypatch, capsys):
    from ptq_verify import examples

    assert "cnn_sigmoid" in examples.names()
    monkeypatch.chdir(tmp_path)
    assert main(["quantize", "mlp_relu", "-o", str(tmp_path / "q.onnx"), "--no-progress"]) == 0
    assert "mlp_relu -> " in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]
    (tmp_path / "mlp_relu").write_bytes(b"a file of that name wins")
    code, err = _quantize(capsys, "mlp_relu", "none.npz", tmp_path / "r.onnx")
    assert code == 2 and err.startswith("ptq-verify quantize: error: mlp_relu")
    code, err = _quantize(capsys, "no_such_model", "none.npz", tmp_path / "r.onnx")
    assert code == 2 and "no such model file, nor an example (" in err and "\n" not in err
    assert main(["quantize", str(tmp_path / "q.onnx"), "-o", str(tmp_path / "r.onnx")]) == 2
    assert "--calib" in capsys.readouterr().err


def test_a_folder_or_a_broken_link_of_an_example_s_name_is_the_user_s(tmp_path, monkeypatch,
                                                                     capsys):
    """A newcomer's trial: a folder named cnn_relu made quantize ask for --calib (audit said
    it was a folder), and a link to nothing named mlp_relu quietly stood for the example."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cnn_relu").mkdir()
    (tmp_path / "mlp_relu").symlink_to("nothing")
    for command in ("quantize", "audit"):
        extra = ["-o", str(tmp_path / "q.onnx")] if command == "quantize" else []
        assert main([command, "cnn_relu", *extra]) == 2
        assert "cnn_relu: a folder, not a model" in capsys.readouterr().err
        assert main([command, "mlp_relu", *extra]) == 2
        assert "a symbolic link to 'nothing', which does not exist" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("content", [b"not an onnx model at all", "truncated"])
def test_corrupt_or_truncated_model(mlp_files, capsys, content):
    tmp, model, calib = mlp_files
    bad = tmp / "bad.onnx"
    data = model.read_bytes()
    bad.write_bytes(data[: len(data) // 3] if content == "truncated" else content)
    code, err = _quantize(capsys, bad, calib, tmp / "q.onnx")
    assert code == 2 and "bad.onnx" in err and "\n" not in err


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((10, 63), np.float32), "shape"),
        (np.zeros((10,), np.float32), "1 axis,"),
        (np.zeros((10, 64), np.int64), "dtype"),
        (np.full((10, 64), np.nan, np.float32), "NaN"),
        (np.zeros((0, 64), np.float32), "empty"),
        # a new-user trial: float64 data beyond float32's range became inf in the cast
        (np.full((10, 64), 1e300), "beyond the model's float32"),
    ],
)
def test_bad_calibration_arrays(mlp_files, capsys, array, message):
    tmp, model, _ = mlp_files
    calib = tmp / "bad.npy"
    np.save(calib, array)
    code, err = _quantize(capsys, model, calib, tmp / "q.onnx")
    assert code == 2 and message in err and "\n" not in err


def test_the_output_sqnr_is_said_of_float_outputs_and_an_integer_one_by_equal_values(
        tmp_path, capsys):
    """An integer output (an argmax beside the logits) has no SQNR: the note gave it one
    (inf dB) when the checked samples made one batch, then left it out without a word (a
    new-user trial's causal encoder). It says how many of its values equal the float
    model's."""
    from onnx import TensorProto, helper

    proto = models.mlp("Relu")
    proto.graph.node.append(helper.make_node("ArgMax", ["logits"], ["digit"], name="argmax",
                                             axis=1, keepdims=0))
    proto.graph.output.append(helper.make_tensor_value_info("digit", TensorProto.INT64,
                                                            ["batch"]))
    model, calib = tmp_path / "two.onnx", tmp_path / "x.npy"
    onnx.save(proto, model)
    np.save(calib, models.digits(40))
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.onnx"),
                 "--no-progress"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "output SQNR" in line)
    assert "logits " in note and "dB, digit " in note and "of its values equal" in note
    assert "digit inf" not in note


@pytest.mark.parametrize("value", [np.full(32, 1.5, np.float32), np.float32(1.5)])
def test_a_scalar_model_input_is_refused_as_one(tmp_path, capsys, value):
    """A new-user trial: a model taking a scalar input (a temperature, shape ()) beside its
    batched one was refused with 'no samples (empty calibration set)' when given the scalar,
    and with 'the model expects 0 axes, batch first' when given one value a sample: neither
    said what the data can be, since no calibration form feeds such an input."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(8, 4, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
         helper.make_node("Mul", ["h", "t"], ["y"], name="temperature")], "scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("t", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [weight])
    model, calib = tmp_path / "scalar.onnx", tmp_path / "c.npz"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.savez(calib, x=np.ones((32, 8), np.float32), t=value)
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err
    assert "input 't': the model takes a scalar there" in err and "no samples" not in err


def test_inputs_fixing_their_batch_at_different_sizes_are_refused_by_name(tmp_path, capsys):
    """A new-user trial: a diffusion UNet exported with its timestep of shape (1,) beside
    latents of batch 2 (one timestep expanded over the batch) took data of one row per sample
    for each input, and was refused after the first run inside the model, at its Expand, with
    onnxruntime's 'Got: 4 Expected: 2' on another input: no word of the timestep. No run fits
    inputs whose batch axes the model fixes at 2 and 1, so the data check refuses it, naming
    each input's size and the one taking one row for the whole batch."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["sample", "w"], ["h"], name="proj"),
         helper.make_node("Expand", ["timestep", "batch"], ["per_sample"], name="expand"),
         helper.make_node("Unsqueeze", ["per_sample", "axis"], ["column"], name="column"),
         helper.make_node("Mul", ["h", "column"], ["y"], name="scale")], "shared_timestep",
        [helper.make_tensor_value_info("sample", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("timestep", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.eye(8, 4, dtype=np.float32), "w"),
         numpy_helper.from_array(np.array([2], np.int64), "batch"),
         numpy_helper.from_array(np.array([1], np.int64), "axis")])
    model, calib = tmp_path / "shared.onnx", tmp_path / "c.npz"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    rows = np.random.default_rng(0)
    np.savez(calib, sample=rows.standard_normal((32, 8)).astype(np.float32),
             timestep=rows.uniform(0, 1000, 32).astype(np.float32))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err
    assert "fixes its inputs' axis 0 at different sizes ('sample' 2, 'timestep' 1)" in err
    assert "'timestep' takes one row for the whole batch" in err and "expand" not in err
    assert not (tmp_path / "q.onnx").exists()
    assert main(["audit", str(model)]) == 0  # the audit's line on the data says the same
    line = next(row for row in capsys.readouterr().out.splitlines()
                if row.startswith("calibration data"))
    assert line.endswith("; but " + err.split(f"{calib}: ", 1)[1]), line


def test_ids_beyond_the_input_type_are_refused_as_they_are(tmp_path, capsys):
    """A new-user trial: uint64 token ids from 2^63 up wrapped to negative int64 ids in the
    cast, and the refusal named an id the data never held (-9223372036854775753)."""
    import hostile

    model, calib = tmp_path / "embedding.onnx", tmp_path / "ids.npy"
    onnx.save(hostile.embedding_model(), model)
    np.save(calib, np.full((4, 8), 2**63 + 55, np.uint64))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err
    assert "9223372036854775863" in err and "beyond the model's int64" in err


@pytest.mark.parametrize("ids, hint", [(np.full((4, 8), 5.0, np.float32), True),
                                       (np.full((4, 8), 5.5, np.float32), False)])
def test_token_ids_held_as_whole_floats_are_refused_with_the_cast_to_make(
        tmp_path, capsys, ids, hint):
    """A new-user trial: ids saved as float32 were refused with no word of what to do."""
    import hostile

    model, calib = tmp_path / "embedding.onnx", tmp_path / "ids.npy"
    onnx.save(hostile.embedding_model(), model)
    np.save(calib, ids)
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err and "does not fit the model's int64" in err
    assert (".astype(np.int64)" in err) is hint
    assert ("whole numbers held as floats" in err) is hint  # (an int64 mask is no ids)


def test_a_float_mask_for_a_bool_input_is_told_the_cast_to_a_mask(tmp_path, capsys):
    """A new-user trial: a float 0/1 padding mask given for a bool input (torch's
    ``memory_key_padding_mask`` exported as it is) was told 'ids held as floats: save them
    with .astype(np.bool)', naming ids and a numpy name that numpy 1.24-1.26 lacks."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Where", ["m", "x", "zero"], ["h"], name="masked"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="proj")]
    graph = helper.make_graph(
        nodes, "mask",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
         helper.make_tensor_value_info("m", TensorProto.BOOL, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(np.eye(8, 4, dtype=np.float32), "w"),
         numpy_helper.from_array(np.zeros(1, np.float32), "zero")])
    model, calib = tmp_path / "mask.onnx", tmp_path / "c.npz"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.savez(calib, x=np.ones((16, 8), np.float32),
             m=(np.arange(8) < 5).astype(np.float32)[None].repeat(16, 0))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err and "does not fit the model's bool" in err
    assert "a mask held as floats: save it with .astype(bool)" in err and "ids" not in err


@pytest.mark.parametrize("count", [1, 6])
def test_samples_not_filling_the_fixed_batch_are_refused_by_count(tmp_path, capsys, count):
    """A model exported with a fixed batch runs only whole batches: a remainder used to fail
    deep in the graph (a GatherND index out of bounds) instead of naming the count."""
    fixture = Path(__file__).parent / "fixtures" / "torch"
    model = fixture / "digits_attention_fixed.dynamo.opset18.onnx"
    calib = tmp_path / "c.npz"
    with np.load(fixture / "digits.calib.npz") as data:
        np.savez(calib, input=data["input"][:count])
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err
    assert f"{count} samples" in err and "multiple of 4" in err
    assert not (tmp_path / "q.onnx").exists()


def test_npz_with_wrong_key(mlp_files, capsys):
    tmp, model, _ = mlp_files
    calib = tmp / "c.npz"
    np.savez(calib, images=models.digits(10))
    code, err = _quantize(capsys, model, calib, tmp / "q.onnx")
    name = onnx.load(model).graph.input[0].name
    # a new-user trial: the refusal listed 'images' as unknown with no word of renaming it
    assert code == 2 and f"save it under that name: np.savez(file, {name}=array)" in err


def test_npz_of_unnamed_arrays_says_how_to_name_them(mlp_files, capsys):
    """A new-user trial: ``np.savez(path, images)`` stores the array as ``arr_0``; the refusal
    listed arr_0 as unknown without saying where the name came from or what to write."""
    tmp, model, _ = mlp_files
    calib = tmp / "c.npz"
    np.savez(calib, models.digits(10))
    code, err = _quantize(capsys, model, calib, tmp / "q.onnx")
    name = onnx.load(model).graph.input[0].name
    assert code == 2 and "\n" not in err.strip()
    assert "arr_0" in err and f"np.savez(file, {name}=array)" in err


def test_weights_exported_as_inputs_are_named_as_such(mlp_files, capsys):
    """A new-user trial: torch.onnx.export(..., export_params=False) makes every weight a
    graph input with no batch axis; the refusal listed them as missing arrays and no more."""
    tmp, model, _ = mlp_files
    proto = onnx.load(model)
    data_input = proto.graph.input[0]
    assert data_input.type.tensor_type.shape.dim[0].dim_param  # it takes a batch axis
    calib = tmp / "c.npz"
    np.savez(calib, **{data_input.name: models.digits(10)})
    for initializer in proto.graph.initializer:
        proto.graph.input.append(onnx.helper.make_tensor_value_info(
            initializer.name, initializer.data_type, list(initializer.dims)))
    del proto.graph.initializer[:]
    bare = tmp / "bare.onnx"
    onnx.save(proto, bare)
    code, err = _quantize(capsys, bare, calib, tmp / "q.onnx")
    assert code == 2 and "\n" not in err.strip()
    assert "export_params=False" in err and "missing" in err and "Keras Normalization" in err
    assert err.split(": ")[2] == str(calib)  # the refusal names the file
    code, err = _quantize(capsys, model, calib, tmp / "q.onnx")
    assert code == 0  # the same data fits the model with its weights


def test_an_input_the_model_takes_whole_for_every_sample_is_named(tmp_path, capsys):
    """A new-user trial fed nn.MultiheadAttention's (L, S) causal mask as an input: refused
    as "inputs have different numbers of samples [16, 128]", naming neither input. The
    refusal names each input's length and the model's name for its first axis, and says
    that an input the model fixes whole cannot be fed one row per sample."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "mask"], ["y"])], "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = tmp_path / "shared.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.ones((8, 4), np.float32), mask=np.eye(4, dtype=np.float32))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err
    assert "('x' 8, the model's 'batch'; 'mask' 4, the model's 4)" in err
    assert "the model fixes input 'mask' at (4, 4)" in err and "constant" in err


def test_a_wrong_key_gets_no_hint_about_weights(mlp_files, capsys):
    tmp, model, _ = mlp_files
    calib = tmp / "c.npz"
    np.savez(calib, images=models.digits(10))
    code, err = _quantize(capsys, model, calib, tmp / "q.onnx")
    assert code == 2 and "export_params" not in err


@pytest.mark.parametrize("bits", ["1", "17"])
def test_bits_out_of_range(mlp_files, capsys, bits):
    tmp, model, calib = mlp_files
    code, err = _quantize(capsys, model, calib, tmp / "q.onnx", "--bits", bits)
    assert code == 2 and "2 to 16" in err


def test_output_equal_to_input_is_refused_and_input_kept(mlp_files, capsys):
    _, model, calib = mlp_files
    before = model.read_bytes()
    code, err = _quantize(capsys, model, calib, model)
    assert code == 2 and "input" in err
    assert model.read_bytes() == before


def test_all_zero_activation_gets_a_default_scale():
    """A tensor 0 on all calibration data (a dense layer's output times 0) gets scale 1."""
    b = models.Builder(21)
    zero = b.add("Mul", [b.dense("input", 64, 16), b.const(np.float32(0))])
    graph = prepare(graph_from_onnx(b.model(b.dense(b.add("Relu", [zero]), 16, 10))))
    model = quantize(graph, calibrate(graph, models.digits(8), progress=False))
    assert any(f"tensor {zero!r} is 0 on all calibration data" in note for note in model.notes)
    assert np.all(np.isfinite(model.run(models.digits(5))["logits"]))


def test_unknown_op_type_is_planned_but_refused():
    b = models.Builder(21)
    h = b.add("Mystery", [b.dense("input", 64, 16)], domain="test.custom")
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 16, 10), opsets={"test.custom": 1})))
    actions = {a.name: a for a in plan_model(graph)}
    assert actions["mystery1"].action.value == "unknown" and actions["mystery1"].rule is None
    with pytest.raises(UserError, match="node 'mystery1' \\(Mystery\\)"):
        calibrate(graph, models.digits(10), progress=False)


def test_operator_declared_only_here_flows_through():
    """A pass-through op and a compensated op the catalog has never heard of."""
    extra = {
        "TwoSlopes": Operator("TwoSlopes", "x", "where(x >= 0, 2*x, x/4)", onnx_type="TwoSlopes"),
        "Swishish": Operator("Swishish", "x", "x*sigmoid(x)", onnx_type="Swishish"),
    }
    b = models.Builder(22)
    h = b.add("TwoSlopes", [b.dense("input", 64, 16)], domain="test.custom")
    h = b.add("Swishish", [b.dense(h, 16, 16)], domain="test.custom")
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 16, 10), opsets={"test.custom": 1})),
                    extra)
    actions = {a.op_type: a.action.value for a in plan_model(graph, extra)}
    assert actions["TwoSlopes"] == "scale" and actions["Swishish"] == "compensate"
    model = quantize(graph, calibrate(graph, models.digits(100), operators=OperatorTable(extra),
                                      progress=False), operators=extra)
    test = models.digits(50, offset=400)
    reference = run_graph(graph, {"input": test}, OperatorTable(extra))["logits"]
    assert relative_error(reference, model.run(test)["logits"]) < 0.1


def test_a_rule_rescaling_a_parameter_the_node_does_not_carry_is_compensated():
    """A new-user trial, declaring ONNX's Attention: its witness has the scale c, which the
    proved rule rescales (c -> c/s^2). A parameter bound to no input or attribute of the node
    cannot be rescaled there, so applying the rule would compute another function (a swish
    x*sigmoid(beta*x) passed its scale through would keep beta): the node runs in float."""
    swish = Operator("ScaledSwish", "x", "x*sigmoid(beta*x)", params={"beta": "1.702"},
                     kernel=lambda x, beta: x / (1 + np.exp(-beta * x)), onnx_type="ScaledSwish")
    extra = {"ScaledSwish": swish}
    b = models.Builder(23)
    h = b.add("ScaledSwish", [b.dense("input", 64, 16)], domain="test.custom")
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 16, 10), opsets={"test.custom": 1})),
                    extra)
    action = next(a for a in plan_model(graph, extra) if a.op_type == "ScaledSwish")
    assert action.rule.param_exponents == {"beta": -1}
    assert action.action.value == "compensate" and "beta" in action.reason
    model = quantize(graph, calibrate(graph, models.digits(100), operators=OperatorTable(extra),
                                      progress=False), operators=extra)
    test = models.digits(50, offset=400)
    reference = run_graph(graph, {"input": test}, OperatorTable(extra))["logits"]
    assert relative_error(reference, model.run(test)["logits"]) < 0.05


def test_switching_compensation_off_costs_accuracy():
    graph = prepare(graph_from_onnx(models.mlp("Sigmoid")))
    calibration = calibrate(graph, models.digits(100), progress=False)
    test = models.digits(50, offset=400)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    forced = {"Sigmoid": Rule(RuleKind.PASS_THROUGH, Fraction(1))}
    errors = [relative_error(reference, quantize(graph, calibration, override_rules=o)
                             .run(test)["logits"]) for o in (None, forced)]
    assert errors[0] < 3e-2 < 0.2 < errors[1]


def test_a_token_id_beyond_the_vocabulary_is_one_line_on_stderr(tmp_path, capfd):
    """onnxruntime logged its own failure of the embedding Gather (a coloured ERROR line on
    the process's stderr) before the engine's one line naming the node."""
    fixture = Path(__file__).parent / "fixtures" / "torch"
    calib = tmp_path / "c.npz"
    with np.load(fixture / "tiny_bert.calib.npz") as data:
        np.savez(calib, input_ids=data["input_ids"] + 10**6,
                 attention_mask=data["attention_mask"])
    code = main(["quantize", str(fixture / "tiny_bert.legacy.opset17.onnx"), "--calib",
                 str(calib), "-o", str(tmp_path / "q.onnx"), "--no-progress"])
    err = capfd.readouterr().err.strip()
    assert code == 2 and "Gather" in err and "\n" not in err, err


def test_a_token_id_beyond_the_vocabulary_in_a_later_batch_names_its_sample(tmp_path, capfd):
    """onnxruntime computes the next calibration batch while the engine settles the one it
    has; one it fails on (an id beyond the table) runs in the catalog's kernels instead,
    which name the node and the sample, counted from the first batch."""
    fixture = Path(__file__).parent / "fixtures" / "torch"
    calib = tmp_path / "c.npz"
    with np.load(fixture / "tiny_bert.calib.npz") as data:
        ids = data["input_ids"].copy()
        ids[50, 3] += 10**6
        np.savez(calib, input_ids=ids, attention_mask=data["attention_mask"])
    code = main(["quantize", str(fixture / "tiny_bert.legacy.opset17.onnx"), "--calib",
                 str(calib), "-o", str(tmp_path / "q.onnx"), "--no-progress"])
    err = capfd.readouterr().err.strip()
    assert code == 2 and "in sample 50," in err and "\n" not in err, err
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("extra", [["--percentile", "150"], ["--percentile", "0"]])
def test_a_bad_percentile_is_refused_before_any_work(mlp_files, capsys, monkeypatch, extra):
    """Smoothing (tens of seconds on a transformer, with its progress bar) ran before
    calibration refused the percentile."""
    import ptq_verify.engine as engine

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(engine, "load_model", no_work)
    tmp, model, calib = mlp_files
    code, err = _quantize(capsys, model, calib, tmp / "q.onnx", "--calibration",
                          "percentile", *extra)
    assert code == 2 and "percentile" in err and "\n" not in err


def test_a_table_sliced_to_the_input_s_length_quantizes(tmp_path, capsys):
    """A new-user trial: DeBERTa's legacy export slices its relative-position table to a
    length computed from the input's shape. The probe for the table's channel axis feeds
    such inputs zeros, so the Slice selected nothing, and the empty output's maximum was an
    internal error (exit 3)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    table = numpy_helper.from_array(rng.normal(size=(32, 8)).astype(np.float32), "table")
    weight = numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "w")
    starts = numpy_helper.from_array(np.array([0], np.int64), "starts")
    nodes = [helper.make_node("Shape", ["x"], ["length"], start=1, end=2),
             helper.make_node("Slice", ["table", "starts", "length"], ["rows"], name="rows"),
             helper.make_node("Add", ["x", "rows"], ["h"], name="add"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="proj")]
    graph = helper.make_graph(
        nodes, "sliced_table",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "length", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "length", 4])],
        [table, weight, starts])
    model, calib = tmp_path / "sliced.onnx", tmp_path / "x.npy"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.save(calib, rng.normal(size=(16, 12, 8)).astype(np.float32))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 0, err


@pytest.mark.parametrize("bits", [8, 2])
def test_quantize_says_the_written_model_s_output_sqnr(mlp_files, capsys, bits):
    """A new-user trial: DeBERTa quantized with exit 0 and nothing said while its output
    measured -6.4 dB against the float model (its padded rows); the summary now gives each
    output's SQNR on the samples the written file is checked on, and calls a low one low."""
    import re

    import onnxruntime as ort

    tmp, model, calib = mlp_files
    out = tmp / "q.onnx"
    code = main(["quantize", str(model), "--calib", str(calib), "-o", str(out), "--bits",
                 str(bits), "--format", "simulation", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    said = re.search(r"output SQNR against the float model on the first (\d+) calibration "
                     r"samples \(onnxruntime\): logits (-?[\d.]+) dB", printed)
    assert said, "no output SQNR note"
    samples = np.load(calib)[:int(said.group(1))]
    reference = ort.InferenceSession(str(model)).run(None, {"input": samples})[0]
    got = ort.InferenceSession(str(out)).run(None, {"input": samples})[0]
    measured = -20 * np.log10(relative_error(reference, got))
    assert abs(float(said.group(2)) - measured) < 0.05
    rows = 10 * np.log10(np.sum(reference**2, axis=1) / np.sum((reference - got) ** 2, axis=1))
    assert ("; low at logits" in printed) == (measured < 10 and np.median(rows) < 10)


def test_an_output_whose_error_sits_in_a_few_rows_is_not_called_low():
    """all-MiniLM-L6-v2's hidden states measure 5.1 dB as a whole, its real tokens' rows
    15.3 dB and its padded ones 3.5 dB: a mean pooling over the mask drops those. An output
    low as a whole is called low (with --keep-float advice) only when its median row is low
    too; otherwise the note says where the error sits."""
    from ptq_verify.cli.quantize import fidelity_note
    from ptq_verify.engine.deployable import OutputFidelity

    feeds = {"input": models.digits(40)}
    graph = graph_from_onnx(onnx.load(str(Path(__file__).parent.parent / "ptq_verify" /
                                          "examples" / "mlp_relu.onnx")))
    few = fidelity_note({"out": OutputFidelity(5.0, np.float64([20.0] * 8 + [0.0] * 2))},
                        feeds, graph)
    every = fidelity_note({"out": OutputFidelity(5.0, np.float64([5.0] * 10))}, feeds, graph)
    fine = fidelity_note({"out": OutputFidelity(30.0, np.float64([30.0] * 10))}, feeds, graph)
    assert "low at" not in few and "20% of its rows under 10 dB" in few
    assert "the error sits in those rows" in few
    assert "low at out" in every and "--keep-float" in every
    assert "low" not in fine and "rows" not in fine


def _selected_rows():
    """A graph whose integer output has a row per element of x that is not 0 (NonZero, then
    Transpose): as many rows as the data select, as a NonMaxSuppression's."""
    from onnx import TensorProto, helper

    return graph_from_onnx(helper.make_model(helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["at"], name="nonzero"),
         helper.make_node("Transpose", ["at"], ["rows"], name="transpose", perm=[1, 0])],
        "selected", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("rows", TensorProto.INT64, ["k", 2])]),
        opset_imports=[helper.make_opsetid("", 17)]))


def test_an_integer_output_of_as_many_rows_as_the_data_select_is_in_the_sqnr_note():
    """A trial's detection head ending in a NonMaxSuppression (kept in float): its selected
    indices' rows are as many as the scores pass its threshold, which rounding moves, and
    where the written file selected another count the note left the output out with no word
    said. It now gives both counts and the share of the float model's rows the file holds."""
    from ptq_verify.cli.quantize import fidelity_note
    from ptq_verify.engine.deployable import output_fidelity

    graph = _selected_rows()
    x = np.float32(np.random.default_rng(0).integers(0, 2, (16, 4)))  # (the note takes 32)
    reference = np.argwhere(x)
    fewer = np.delete(reference, [0, 5], axis=0)  # two rows the float model selects, missed
    measured = output_fidelity(graph, OperatorTable(), {"x": x}, {"rows": fewer})["rows"]
    assert measured.rows_found == (len(fewer), len(reference), len(fewer) / len(reference))
    note = fidelity_note({"rows": measured}, {"x": x}, graph)
    assert (f"rows {len(fewer)} rows against the float model's {len(reference)}, "
            f"{len(fewer) / len(reference):.1%} of those among them") in note


def test_an_integer_output_with_no_row_is_in_the_sqnr_note():
    """A hostile-input trial: a NonMaxSuppression that selects no box (kept in float) left its
    selected indices, (0, 3) in both models, out of the note with no word said, and a (16, 0)
    integer output was said to hold '16 rows against the float model's 16'. Each is now
    named as empty; rows where the float model has none give both counts and no share."""
    from ptq_verify.cli.quantize import fidelity_note
    from ptq_verify.engine.deployable import output_fidelity

    graph = _selected_rows()
    x = np.zeros((16, 4), np.float32)  # NonZero selects nothing
    for got, said in [(np.zeros((0, 2), np.int64), "rows not measured (empty"),
                      (np.array([[1, 2]]), "rows 1 rows against the float model's 0")]:
        measured = output_fidelity(graph, OperatorTable(), {"x": x}, {"rows": got})
        note = fidelity_note(measured, {"x": x}, graph)
        assert said in note and "of those among them" not in note, note


def test_an_output_named_by_a_number_is_quoted_in_the_sqnr_note():
    """A newcomer trial: torch's legacy exporter named the unnamed output '36', and the note
    read 'onnxruntime): 36 52.6 dB', two figures; such a name is quoted, an identifier not."""
    from ptq_verify.cli.quantize import fidelity_note
    from ptq_verify.engine.deployable import OutputFidelity

    feeds = {"input": models.digits(40)}
    graph = graph_from_onnx(onnx.load(str(Path(__file__).parent.parent / "ptq_verify" /
                                          "examples" / "mlp_relu.onnx")))
    note = fidelity_note({"36": OutputFidelity(52.6, np.float64([52.6] * 10)),
                          "logits": OutputFidelity(40.0, np.float64([40.0] * 10))}, feeds, graph)
    assert note.endswith("(onnxruntime): '36' 52.6 dB, logits 40.0 dB")


def test_an_output_the_float_model_gives_as_zero_is_said_unmeasured_and_why(tmp_path, capsys):
    """A float model whose output is 0 on every calibration sample (random weights that make
    a deep network vanish, a zeroed layer) leaves no signal to measure the SQNR against: the
    note says so for that output, not that the float model lacks it."""
    from onnx import numpy_helper

    examples = Path(__file__).parent.parent / "ptq_verify" / "examples"
    model = onnx.load(str(examples / "mlp_relu.onnx"))
    last = [n for n in model.graph.node if n.op_type == "Gemm"][-1]
    for tensor in model.graph.initializer:
        if tensor.name in last.input:
            tensor.CopyFrom(numpy_helper.from_array(
                np.zeros_like(numpy_helper.to_array(tensor)), tensor.name))
    onnx.save(model, tmp_path / "zero.onnx")
    assert main(["quantize", str(tmp_path / "zero.onnx"), "--calib",
                 str(examples / "mlp_relu.calib.npz"), "-o", str(tmp_path / "q.onnx"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "logits not measured (the float model gives 0 there on every sample" in printed


def test_an_output_low_only_where_the_mask_is_zero_is_not_called_low():
    """all-MiniLM-L6-v2's calibration texts are mostly padding: its median row was low too
    (6.6 dB, 52% of rows under 10 dB), so the note advised --keep-float, which cannot help the
    padded rows a pooling drops. The rows are split where an input laid out as them (the
    attention mask) is 0; the output is called low only when the other rows are low. Rows at
    a flag's zeros only a few dB worse than the rest (a new-user trial's branch flag under s8s8
    saturation: 8.7 against 15.2 dB) are not said to hold the error."""
    from ptq_verify.cli.quantize import fidelity_note
    from ptq_verify.engine.deployable import OutputFidelity

    feeds = {"input": models.digits(40)}
    graph = graph_from_onnx(onnx.load(str(Path(__file__).parent.parent / "ptq_verify" /
                                          "examples" / "mlp_relu.onnx")))
    padded = np.array([False] * 4 + [True] * 6)
    rows = np.float64([20.0] * 4 + [1.0] * 6)
    masked = fidelity_note({"out": OutputFidelity(3.0, rows, ("attention_mask", padded))},
                           feeds, graph)
    everywhere = fidelity_note({"out": OutputFidelity(3.0, np.float64([5.0] * 10),
                                                      ("attention_mask", padded))}, feeds, graph)
    assert "low at" not in masked
    # the rows that count lead (the whole output's 3 dB read as a failure to a newcomer)
    assert ("out 20.0 dB in its median row where input 'attention_mask' is not 0 (40% of its "
            "rows); where it is 0 (60%) median 1.0 dB, and 3.0 dB over every row") in masked
    assert "the error sits in the rows 'attention_mask' masks" in masked
    assert "low at out" in everywhere
    near = fidelity_note({"out": OutputFidelity(
        3.0, np.float64([15.2] * 4 + [8.7] * 6), ("flag", padded))}, feeds, graph)
    assert "the error sits" not in near and "low at out" in near


def test_an_output_mixing_the_samples_of_its_batch_is_measured(tmp_path, capsys):
    """An output of shape (batch, batch), each sample's similarity to every other of its
    batch (CLIPModel's logits_per_image), depends on how the samples are batched: the
    reference outputs, run 4 samples at a time, had given (4, 4) blocks against the written
    model's (32, 32), and the output was left out of the SQNR note with no word said. It is
    measured in the batches the written model ran in now, at the figure a user measures."""
    model, calib, out = tmp_path / "m.onnx", tmp_path / "c.npz", tmp_path / "q.onnx"
    onnx.save(models.batch_similarity(), model)
    data = models.digits(64)
    np.savez(calib, input=data)
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--no-progress"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("note: output SQNR"))
    first = data[:32]
    ref = onnxruntime.InferenceSession(str(model)).run(["logits"], {"input": first})[0]
    got = onnxruntime.InferenceSession(str(out)).run(["logits"], {"input": first})[0]
    db = 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got) ** 2.0))
    assert f"logits {db:.1f} dB" in note, note


def test_the_rows_are_split_at_the_attention_mask_of_a_real_export(tmp_path):
    """On the tiny BERT, the split names its attention_mask (0/1, int64, laid out as the
    hidden states' rows) and not input_ids (laid out the same, but not 0/1)."""
    from ptq_verify.engine.deployable import check_quantized, output_fidelity

    fixture = Path(__file__).parent / "fixtures" / "torch"
    model = fixture / "tiny_bert.legacy.opset17.onnx"
    with np.load(fixture / "tiny_bert.calib.npz") as data:
        feeds = {k: data[k] for k in data.files}
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "--calib", str(fixture / "tiny_bert.calib.npz"),
                 "-o", str(out), "--no-progress"]) == 0
    graph = graph_from_onnx(onnx.load(str(model)))
    quantized = check_quantized(out.read_bytes(), graph, feeds, str(out), {})
    fidelity = output_fidelity(graph, OperatorTable(), feeds, quantized)["output"]
    count = len(quantized["output"])
    assert fidelity.zeros[0] == "attention_mask"
    assert np.array_equal(fidelity.zeros[1], feeds["attention_mask"][:count].ravel() == 0)
    assert fidelity.rows.shape == fidelity.zeros[1].shape


def test_a_node_only_onnxruntime_runs_leaves_equalization_to_the_other_layers(tmp_path, capsys):
    """A Resize with antialias (torch's dynamo export of interpolate(..., antialias=True)) has
    no catalog kernel, though onnxruntime runs it. Equalization had been skipped for the whole
    model ("not run (it runs the model on the catalog's kernels ...)"), in quantize and audit:
    its float check ran the model on the kernels. It runs in onnxruntime now, and the probes,
    which run the kernels, leave the Resize out of every group: the layers after it are
    equalized."""
    from onnx import helper, numpy_helper

    examples = Path(__file__).parent.parent / "ptq_verify" / "examples"
    model = onnx.load(str(examples / "mlp_relu.onnx"))
    model.opset_import[0].version = 18  # antialias: Resize-18
    nodes = list(model.graph.node)
    at = next(i for i, n in enumerate(nodes) if n.name == "relu1")
    nodes[at + 1].input[0] = "resized"
    resize = helper.make_node("Resize", ["relu1", "", "scales"], ["resized"], name="resize",
                              mode="linear", antialias=1)
    model.graph.initializer.append(numpy_helper.from_array(
        np.ones(2, np.float32), "scales"))
    del model.graph.node[:]
    model.graph.node.extend([*nodes[:at + 1], resize, *nodes[at + 1:]])
    onnx.save(model, tmp_path / "resized.onnx")
    assert main(["quantize", str(tmp_path / "resized.onnx"), "--calib",
                 str(examples / "mlp_relu.calib.npz"), "-o", str(tmp_path / "q.onnx"),
                 "--no-progress"]) == 0
    assert "cross-layer equalization: not run" not in capsys.readouterr().out
    assert main(["audit", str(tmp_path / "resized.onnx")]) == 0
    assert "gemm2 -> gemm3 via relu2" in capsys.readouterr().out


def test_each_free_axis_is_said_to_be_calibrated_at_its_one_length(tmp_path, capsys):
    """A new-user trial: KV-cache decoders calibrated at past length 8 lost 15-30 dB at past
    lengths 3 and 0, with no word of it. The summary names every axis past the batch that
    the model leaves free, with the one length the data gave it; none when every one is
    fixed."""
    import hostile

    model, calib = tmp_path / "sum.onnx", tmp_path / "calib.npz"
    onnx.save(hostile.sum_of_inputs_that_must_agree(), model)
    rng = np.random.default_rng(0)
    np.savez(calib, x=rng.normal(size=(8, 4)).astype(np.float32),
             m=rng.normal(size=(8, 4)).astype(np.float32))
    args = ["quantize", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.onnx"),
            "--no-progress"]
    assert main(args) == 0
    assert "calibrated at one length per free axis: 'm_length' 4 (m);" in capsys.readouterr().out
    onnx.save(hostile.matmul_model(), model)
    np.savez(calib, x=rng.normal(size=(8, 4)).astype(np.float32))
    assert main(args) == 0
    assert "free axis" not in capsys.readouterr().out


def _identity_graph(inputs: dict[str, tuple[int, list]]):
    """A graph passing each input through (name -> (ONNX element type, shape)): the feeds'
    checks read only the inputs."""
    from onnx import helper

    nodes = [helper.make_node("Identity", [name], [f"{name}_out"], name=f"id_{name}")
             for name in inputs]
    graph = helper.make_graph(
        nodes, "inputs",
        [helper.make_tensor_value_info(name, kind, shape) for name, (kind, shape) in
         inputs.items()],
        [helper.make_tensor_value_info(f"{name}_out", kind, shape) for name, (kind, shape) in
         inputs.items()])
    return graph_from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _image_graph():
    from onnx import TensorProto

    return _identity_graph({"pixel_values": (TensorProto.FLOAT, ["batch", 3, 8, 8])})


def _refusal(data, graph) -> str:
    from ptq_verify.engine.data import check_feeds

    with pytest.raises(UserError) as caught:
        check_feeds(data, graph, "c.npz")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("data", "advice"), [
    (np.zeros((4, 8, 8, 3), np.float32), "array.transpose(0, 3, 1, 2) gives its layout"),
    (np.zeros((3, 8, 8), np.float32), "without its batch axis? add one: array[None]"),
    (np.zeros((4, 3, 8, 8), np.uint8), "apply it (scale, normalise, as in training)"),
    (np.zeros((4, 3, 9, 9), np.float32), "fixed at 8: give data of that length"),
])
def test_image_data_in_a_pipeline_s_form_is_refused_with_the_step_to_take(data, advice):
    """A new-user trial: images as uint8 HWC arrays, one image without its batch axis, or
    float NHWC for an NCHW model were refused with the mismatch alone, no word of the
    transpose, the batch axis or the preprocessing to apply."""
    assert advice in _refusal({"pixel_values": data}, _image_graph())


@pytest.mark.parametrize("dtype", [np.complex64, np.str_, "datetime64[s]", "V4"])
def test_data_of_no_number_type_is_not_called_integer_data(dtype):
    """A hostile-input hunt: complex, text, date and raw-byte arrays given to a float input
    were told 'integer data is not cast to a float input' and to apply the preprocessing to
    raw pixels, advice about uint8 images that they are not."""
    message = _refusal({"pixel_values": np.zeros((4, 3, 8, 8), dtype)}, _image_graph())
    assert "does not fit the model's float32" in message and "integer" not in message


def test_a_bool_mask_for_a_float_input_is_told_the_cast_not_a_preprocessing():
    """A new-user trial: PatchTST's observed-values mask, True/False as transformers documents
    it, given to the export's float32 input, was told to preprocess raw 0-255 pixels."""
    message = _refusal({"pixel_values": np.ones((4, 3, 8, 8), bool)}, _image_graph())
    assert "dtype bool does not fit the model's float32" in message
    assert "a mask of True/False" in message and ".astype(np.float32)" in message
    assert "pixels" not in message


def test_an_image_model_missing_an_input_is_not_told_of_a_tokenizer_s_output():
    """A hostile-input hunt: a model of inputs x and an unread 'unused' given x alone was told
    to save np.savez(file, **{k: encoded[k] ...}), a tokenizer's output it has not got, and
    nothing of the input no node reads."""
    from onnx import TensorProto, helper

    from ptq_verify.engine.data import savez_of

    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Identity", ["pixel_values"], ["y"], name="id")], "g",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 3, 8, 8])
         for name in ("pixel_values", "unused")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])]),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = graph_from_onnx(proto)
    message = _refusal({"pixel_values": np.zeros((4, 3, 8, 8), np.float32)}, graph)
    assert "encoded" not in message
    assert savez_of(["pixel_values", "unused"]) in message
    assert "(no node reads 'unused': any array of its shape and type will do" in message


def test_nan_in_the_data_names_its_first_sample():
    """A new-user trial: NaN in one image was refused as '1 NaN values', no sample named."""
    data = np.zeros((6, 3, 8, 8), np.float32)
    data[4, 1, 2, 3] = np.nan
    assert "1 NaN value in 1 of its 6 samples, the first in sample 4" in _refusal(
        {"pixel_values": data}, _image_graph())


def test_an_image_dataset_s_labels_are_refused_with_the_savez_of_the_inputs_alone():
    """A newcomer trial: labels saved beside the images were refused with the advice to filter
    a tokenizer's ``encoded.items()``, which an image user has not got."""
    message = _refusal({"pixel_values": np.zeros((4, 3, 8, 8), np.float32),
                        "labels": np.zeros(4, np.int64)}, _image_graph())
    assert message.endswith("(unknown ['labels']): the model takes no input of that name; "
                            "leave it out of the file, as np.savez(file, pixel_values=array)")


def test_a_tokenizer_s_extra_keys_are_refused_with_how_to_leave_them_out():
    """A new-user trial: np.savez(file, **tokenizer(...)) for a model exported without
    token_type_ids was refused as 'unknown' with no word of what to do."""
    from onnx import TensorProto

    graph = _identity_graph({name: (TensorProto.INT64, ["batch", "sequence"])
                             for name in ("input_ids", "attention_mask")})
    ids = np.ones((4, 16), np.int64)
    message = _refusal({"input_ids": ids, "attention_mask": ids, "token_type_ids": ids}, graph)
    assert "(unknown ['token_type_ids']): the model takes no input of that name" in message
    assert "if k in ('input_ids', 'attention_mask',)" in message


def test_a_missing_mask_says_to_ask_the_tokenizer_for_it():
    """Saving only the token ids for a model that also takes the mask was refused as
    'missing' with no word of where the mask comes from."""
    from onnx import TensorProto

    graph = _identity_graph({name: (TensorProto.INT64, ["batch", "sequence"])
                             for name in ("input_ids", "attention_mask", "token_type_ids")})
    message = _refusal({"input_ids": np.ones((4, 16), np.int64)}, graph)
    assert "(missing ['attention_mask', 'token_type_ids']): the model takes every" in message
    assert "tokenizer(texts, return_attention_mask=True, return_token_type_ids=True" in message
    assert "for k in ('input_ids', 'attention_mask', 'token_type_ids',)" in message


@pytest.mark.parametrize(("content", "kind"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(32), "a PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(32), "a JPEG image"),
    (b"input_ids,attention_mask\n1,1\n", "neither .npy nor .npz"),
    (b"\x89HDF\r\n\x1a\n" + bytes(32), "an HDF5 file"),  # (a hostile-input hunt)
], ids=["png", "jpeg", "csv", "hdf5"])
def test_a_file_that_is_no_array_says_what_it_is_and_what_to_make(tmp_path, content, kind):
    """A new-user trial: an image given to --calib was refused in numpy's words ('the magic
    string is not correct; expected b'\\x93NUMPY', got b'\\xff\\xd8...'), and a folder of
    images as 'a folder' alone: neither said what a calibration file is."""
    from ptq_verify.engine.data import read_data_file

    path = tmp_path / "photo"
    path.write_bytes(content)
    for given, what in ((path, kind), (tmp_path, "a folder")):
        with pytest.raises(UserError) as caught:
            read_data_file(given, _image_graph())
        message = str(caught.value)
        assert what in message and "one .npz holding one array per model input" in message


@pytest.mark.parametrize(("given", "call"), [
    ({"input": np.zeros((2, 3), np.float32)}, "np.savez(file, **{'input.1': array})"),
    ({"arr_0": np.zeros((2, 3), np.float32)}, "np.savez(file, **{'input.1': array})"),
], ids=["other-name", "positional"])
def test_the_savez_hint_for_an_input_name_that_is_no_identifier_is_valid_python(given, call):
    """A newcomer trial: torch's legacy exporter names an unnamed input ``input.1``; the
    refusal said ``np.savez(file, input.1=array)``, a SyntaxError once pasted."""
    from onnx import TensorProto

    from ptq_verify.engine.data import check_feeds

    graph = _identity_graph({"input.1": (TensorProto.FLOAT, ["batch", 3])})
    with pytest.raises(UserError) as caught:  # (as read from a file: read_data_file)
        check_feeds(given, graph, "c.npz", in_file=True)
    message = str(caught.value)
    assert call in message and "input.1=array" not in message
    compile(call.replace("file", "'f.npz'"), "hint", "eval")


def test_a_model_given_as_calibration_data_says_the_two_are_swapped(mlp_files, capsys):
    """A newcomer trial: `quantize calib.npz --calib model.onnx` called the model 'neither
    .npy nor .npz' (and the model slot now names the .npz as numpy data)."""
    tmp, model, _ = mlp_files
    other = tmp / "other.onnx"  # (the model itself as its data is said to be so)
    other.write_bytes(model.read_bytes())
    assert main(["quantize", str(model), "--calib", str(other), "-o", str(tmp / "q.onnx"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (f"{other}: by its extension an ONNX model, not calibration data: the model comes "
            "first, its data after --calib; calibration data is one .npz") in err


def test_a_torch_save_file_says_it_is_one_and_what_to_make(tmp_path):
    """A newcomer trial: torch.save's zip (calib/data.pkl beside the storages) given to
    --calib was refused as an .npz whose member 'calib/data.pkl' is not an .npy array."""
    import zipfile

    from ptq_verify.engine.data import read_data_file

    path = tmp_path / "calib.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("calib/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("calib/data/0", bytes(16))
    with pytest.raises(UserError) as caught:
        read_data_file(path, _image_graph())
    message = str(caught.value)
    assert message.startswith(f"{path}: a torch.save file (a checkpoint or tensors), not "
                              "calibration data; ")
    assert "np.savez(file, name=tensor.numpy())" in message


def test_an_input_fixed_at_one_row_is_told_to_take_one_row_per_sample():
    """A new-user trial: a past length exported with shape (1,) beside a batched input, given
    as one value, was told ptq-verify cannot feed it; one row per sample does (the model runs
    one sample at a time), and the refusal now says so."""
    from onnx import TensorProto

    from ptq_verify.engine.data import check_feeds

    graph = _identity_graph({"x": (TensorProto.FLOAT, ["batch", 8]),
                             "past_length": (TensorProto.INT64, [1])})
    x = np.zeros((6, 8), np.float32)
    message = _refusal({"x": x, "past_length": np.array([3])}, graph)
    assert "runs one sample at a time" in message and "cannot feed" not in message
    feeds = check_feeds({"x": x, "past_length": np.full(6, 3)}, graph, "c.npz")
    assert feeds["past_length"].shape == (6,)


def test_an_archive_without_arrays_says_so():
    """A new-user trial: np.savez on a tokenizer's ragged lists fails part-way and leaves an
    archive without members, refused as "arrays [] do not match the model inputs"."""
    message = _refusal({}, _image_graph())
    assert "holds no arrays" in message and "pixel_values" in message


def test_a_model_past_protobufs_limit_is_checked_from_its_file(tmp_path, monkeypatch):
    """A model whose external tensors make 2 GB or more (a 720000 x 768 embedding table) could
    not be serialised for onnx's checker: audit and quantize ended in an internal error,
    EncodeError. Such a model is checked from its file, which holds the tensors' places (the
    limit is lowered here so a small model stands for it, and a check of the loaded message
    fails as a huge one's does)."""
    from google.protobuf.message import EncodeError

    from ptq_verify.graph import onnx_io

    path = tmp_path / "m.onnx"
    onnx.save(models.mlp("Relu"), path, save_as_external_data=True, size_threshold=0,
              location="m.onnx.data")
    real = onnx.checker.check_model

    def checker(model, *args, **kwargs):
        if isinstance(model, onnx.ModelProto):
            raise EncodeError("Failed to serialize proto")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnx_io, "PROTOBUF_LIMIT", 1)
    monkeypatch.setattr(onnx.checker, "check_model", checker)
    assert onnx_io.read_model(path).graph.node
    assert main(["audit", str(path)]) == 0


def test_an_output_past_protobufs_limit_is_one_line(mlp_files, capsys, monkeypatch):
    """A quantized model of 2 GB or more (--format simulation keeps a 2.2 GB table float32)
    cannot be one ONNX file: that was an internal error, EncodeError, after the whole run;
    now one line naming the limit and the formats that fit, and nothing written."""
    from google.protobuf.message import EncodeError

    from ptq_verify.engine.quantized import QuantizedModel

    def too_large(self, *args, **kwargs):
        raise EncodeError("Failed to serialize proto")

    monkeypatch.setattr(QuantizedModel, "to_onnx", too_large)
    folder, model, calib = mlp_files
    out = folder / "q.onnx"
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--format", "simulation", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 GB limit" in err and "--format qdq" in err
    assert not out.exists()


def _kv_cache_step():
    """One attention layer's cache as exporters write it: the new tokens' keys (a MatMul of
    the input) appended to the past keys by a Concat along the length axis, which is both
    the ``present`` output and what the rest of the layer reads."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 4)).astype(np.float32), name)
               for name in ("w_key", "w_out")]
    nodes = [helper.make_node("MatMul", ["x", "w_key"], ["key"], name="key_proj"),
             helper.make_node("Concat", ["past", "key"], ["present"], name="append", axis=1),
             helper.make_node("MatMul", ["present", "w_out"], ["scores"], name="out_proj")]
    floats = {"x": ["batch", "new", 4], "past": ["batch", "past_length", 4],
              "present": ["batch", "total", 4], "scores": ["batch", "total", 4]}
    graph = helper.make_graph(
        nodes, "kv", [helper.make_tensor_value_info(n, TensorProto.FLOAT, floats[n])
                      for n in ("x", "past")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, floats[n])
         for n in ("scores", "present")], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_an_empty_past_is_said_to_be_empty_not_zero_nor_mixed_precision(tmp_path, capsys):
    """A new-user trial: a KV-cache decoder calibrated for the prefill (past key/values of
    length 0) was said to have its past inputs "0 on all calibration data ... (an additive
    attention mask calibrated on rows without padding)" and the nodes reading them to run in
    float as "mixed precision: an activation kept in float", which means --keep-float chose
    them. The note says they are empty, and the nodes say why they run in float."""
    model, calib = tmp_path / "kv.onnx", tmp_path / "calib.npz"
    onnx.save(_kv_cache_step(), model)
    rng = np.random.default_rng(1)
    np.savez(calib, x=rng.normal(size=(16, 3, 4)).astype(np.float32),
             past=np.zeros((16, 0, 4), np.float32))
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(tmp_path / "q.onnx"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "note: kept in float: input 'past': empty in all calibration data" in out
    assert "0 on all calibration data" not in out and "mixed precision" not in out
    assert "(float: an input empty in all calibration data, kept in float)" in out


def test_quantize_without_calib_says_what_the_file_holds_and_where_to_read_more(mlp_files,
                                                                                capsys):
    """A newcomer trial: a model with no --calib was told 'give its calibration data with
    --calib' and nothing of what that file is or how to make it."""
    tmp, model, _ = mlp_files
    assert main(["quantize", str(model), "-o", str(tmp / "q.onnx"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--calib calib.npz (one array per model input" in err
    assert "`ptq-verify audit` names them; docs/engine.md, making the calibration file" in err


def test_a_fixed_size_beside_a_free_length_is_called_a_size_of_the_model():
    """A new-user trial: a KV cache of 4 heads for a Llama export taking 2 key/value heads
    (batch, 2, past, 16) was told to pad texts to 2 tokens or export that axis dynamic. An
    axis the model fixes where it leaves another past the batch free is a size of the model
    itself; a model fixing every axis keeps the length advice."""
    from onnx import TensorProto

    past = _identity_graph({"past": (TensorProto.FLOAT, ["batch", 2, "past", 16])})
    message = _refusal({"past": np.zeros((3, 4, 8, 16), np.float32)}, past)
    assert "(axis 1); the model fixes that axis at 2" in message
    assert "a size of the model itself" in message and "texts padded" not in message
    fixed = _identity_graph({"ids": (TensorProto.INT64, ["batch", 16])})
    message = _refusal({"ids": np.zeros((3, 12), np.int64)}, fixed)
    assert "texts padded or truncated to 16 tokens" in message


def test_a_mean_over_a_size_quantizes(tmp_path, capsys):
    """tf2onnx writes tf.size as ONNX Size, which the catalog lacked: a mean taken as
    ReduceSum over Cast(Size(x)) was refused as an undeclared op. Size's count is static
    (it depends on no value), so the layers around it run on integers."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("ReduceSum", ["r"], ["total"], keepdims=1, name="total"),
             helper.make_node("Size", ["r"], ["count"], name="count"),
             helper.make_node("Cast", ["count"], ["n"], to=TensorProto.FLOAT, name="n"),
             helper.make_node("Div", ["total", "n"], ["mean"], name="mean"),
             helper.make_node("Sub", ["r", "mean"], ["y"], name="centred")]
    graph = helper.make_graph(
        nodes, "size_mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])], [weight])
    model, calib = tmp_path / "size.onnx", tmp_path / "x.npy"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.save(calib, rng.normal(size=(16, 8)).astype(np.float32))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 0, err
    audit = main(["audit", str(model)])
    listed = capsys.readouterr().out
    assert audit == 0 and re.search(r"^count +Size +scale_invariant", listed, re.M), listed


def _paddle_dims_model(path) -> None:
    """Two Conv -> Relu, GlobalAveragePool, Flatten, Gemm over an image input declared
    (-1, 1, '?', '?'), as paddle2onnx declares PP-OCR's classifier: -1 for a free batch, '?'
    for a free height and width."""
    b = models.Builder(seed=5, image=True)
    b.input_shape = [-1, 1, "?", "?"]
    h = b.add("Relu", [b.conv(b.add("Relu", [b.conv("input", 1, 4)]), 4, 4)])
    h = b.add("GlobalAveragePool", [h])
    w = b.const(b.weight(10, 4, fan_in=4), "W")
    b.add("Gemm", [b.flatten(h), w], transB=1)
    onnx.save(b.model("logits"), path)


def test_a_minus_one_batch_and_question_mark_axes_are_free(tmp_path, capsys):
    """A newcomer trial of PP-OCR's classifier (paddle2onnx): its batch declared -1 was read as
    a fixed batch of -1, which split the data into no batch (audit: internal error, exit 3;
    quantize, where no '?' stopped it first, looped for ever), and its height and width both
    named '?' were bound to one length (quantize refused 48x192 text lines); onnxruntime
    runs both as free axes."""
    model, calib = tmp_path / "m.onnx", tmp_path / "c.npz"
    _paddle_dims_model(model)
    graph = graph_from_onnx(onnx.load(model))
    assert graph.inputs[0].shape == (None, 1, None, None)  # (a -1 batch had hung quantize)
    np.savez(calib, input=np.random.default_rng(0).normal(size=(32, 1, 6, 10)).astype(
        np.float32))
    assert main(["audit", str(model)]) == 0
    capsys.readouterr()
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 0, err


@pytest.mark.parametrize("batch", ["batch", 2])
@pytest.mark.parametrize("given, call", [((32,), "np.expand_dims(array, 1)"),
                                         ((32, 1, 1), "np.squeeze(array, 1)")])
def test_a_per_sample_value_with_an_axis_of_1_missing_or_too_many_is_told_the_call(
        tmp_path, capsys, batch, given, call):
    """A gain input (batch, 1) given as one value a sample, (N,): a streaming trial's had been
    told only that the model expects 2 axes. The same with the batch the export fixes (torch
    fixes every shape unless told otherwise): a diffusion trial's timesteps given as a column
    to a UNet of batch 2 had been told only that the model expects 1 axis, the call missing
    since the count of samples, 128, was compared with the batch of 2."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(8, 4, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
         helper.make_node("Mul", ["h", "gain"], ["y"], name="gain")], "gain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8]),
         helper.make_tensor_value_info("gain", TensorProto.FLOAT, [batch, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], [weight])
    model, calib = tmp_path / "gain.onnx", tmp_path / "c.npz"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.savez(calib, x=np.ones((32, 8), np.float32), gain=np.full(given, 1.5, np.float32))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 2 and "\n" not in err
    assert "input 'gain'" in err and f"{call} gives its layout" in err, err


def test_an_output_equal_to_the_float_model_s_is_called_exact():
    """A recurrent layer's final state kept in float and written as an output equals the
    float model's: a streaming trial read the note's 'hn inf dB' as an error."""
    from ptq_verify.cli.quantize import fidelity_note
    from ptq_verify.engine.deployable import OutputFidelity

    graph = graph_from_onnx(onnx.load(str(Path(__file__).parent.parent / "ptq_verify" /
                                          "examples" / "mlp_relu.onnx")))
    note = fidelity_note({"out": OutputFidelity(math.inf, np.full(10, math.inf))},
                         {"input": models.digits(40)}, graph)
    assert "out exact" in note and "inf" not in note


def test_a_mask_from_an_eye_of_a_computed_length_quantizes(tmp_path, capsys):
    """torch's legacy exporter writes torch.eye(length) of a length it computes (XLNet's mask,
    its sequence axis free) as EyeLike of a ConstantOfShape, which the catalog lacked: the
    export was refused as undeclared. The diagonal depends on no value, so it is static and the
    attention around it runs on integers."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "w")
    block = numpy_helper.from_array(np.array(-1e4, np.float32), "block")
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("Transpose", ["h"], ["ht"], perm=[0, 2, 1], name="keys"),
             helper.make_node("MatMul", ["h", "ht"], ["scores"], name="scores"),
             helper.make_node("Shape", ["x"], ["dims"], name="dims"),
             helper.make_node("Slice", ["dims", "one", "two"], ["length"], name="length"),
             helper.make_node("Concat", ["length", "length"], ["square"], axis=0, name="square"),
             helper.make_node("ConstantOfShape", ["square"], ["ones"], name="ones",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("EyeLike", ["ones"], ["eye"], name="eye"),
             helper.make_node("Mul", ["eye", "block"], ["mask"], name="mask"),
             helper.make_node("Add", ["scores", "mask"], ["masked"], name="masked"),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1, name="softmax"),
             helper.make_node("MatMul", ["p", "h"], ["y"], name="context")]
    two = numpy_helper.from_array(np.array([2], np.int64), "two")
    graph = helper.make_graph(
        nodes, "eye_mask",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 8])],
        [weight, block, one, two])
    model, calib = tmp_path / "eye.onnx", tmp_path / "x.npy"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    np.save(calib, rng.normal(size=(16, 6, 8)).astype(np.float32))
    code, err = _quantize(capsys, model, calib, tmp_path / "q.onnx")
    assert code == 0, err
    audit = main(["audit", str(model)])
    listed = capsys.readouterr().out
    assert audit == 0 and re.search(r"^eye +EyeLike +scale_invariant", listed, re.M), listed


def test_a_fourier_mixing_quantizes(tmp_path, capsys):
    """FNet's token mixing, as torch's dynamo exporter writes torch.fft.fftn(x).real: the
    signal given an imaginary part of zeros (Unsqueeze, Concat), two DFT nodes (hidden, then
    sequence axis) and the real part taken (Gather), added back to x. The catalog lacked DFT,
    and the export was refused as undeclared; a DFT's weights are static, so it passes the
    scale through and the block quantizes close to float."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32) / 3, "w")
    constants = [weight, numpy_helper.from_array(np.array([-1], np.int64), "last"),
                 numpy_helper.from_array(np.zeros((1, 6, 8, 1), np.float32), "imaginary"),
                 numpy_helper.from_array(np.array(0, np.int64), "real")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("Unsqueeze", ["h", "last"], ["h1"], name="as_signal"),
             helper.make_node("Shape", ["h1"], ["batch_shape"], name="batch_shape"),
             helper.make_node("Expand", ["imaginary", "batch_shape"], ["zeros"], name="zeros"),
             helper.make_node("Concat", ["h1", "zeros"], ["signal"], axis=-1, name="signal"),
             helper.make_node("DFT", ["signal"], ["hidden"], axis=2, name="dft_hidden"),
             helper.make_node("DFT", ["hidden"], ["both"], axis=1, name="dft_sequence"),
             helper.make_node("Gather", ["both", "real"], ["mixed"], axis=3, name="real_part"),
             helper.make_node("Add", ["h", "mixed"], ["y"], name="residual")]
    graph = helper.make_graph(
        nodes, "fourier_mixing",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6, 8])], constants)
    model, calib, out = tmp_path / "fnet.onnx", tmp_path / "x.npy", tmp_path / "q.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), model)
    x = rng.normal(size=(32, 6, 8)).astype(np.float32)
    np.save(calib, x)
    code, err = _quantize(capsys, model, calib, out)
    assert code == 0, err
    reference = onnxruntime.InferenceSession(str(model)).run(None, {"x": x})[0]
    got = onnxruntime.InferenceSession(str(out)).run(None, {"x": x})[0]
    assert relative_error(reference, got) < 0.05
    audit = main(["audit", str(model)])
    listed = capsys.readouterr().out
    assert audit == 0 and re.search(r"^dft_sequence +DFT +pass_through", listed, re.M), listed
