"""The reproducers of issue 11, kept: hostile or pathological input gets one line on stderr and
exit 2, no traceback, no hang, and nothing written over the user's files.

Each case runs in a forked process with a time limit (tests/hostile.py), so a regression to a
hang fails the test instead of hanging the suite."""

from __future__ import annotations

import json
import os
import stat
import warnings

import hostile
import numpy as np
import onnx
import pytest
from onnx import helper

from ptq_verify.engine import data as engine_data
from ptq_verify.engine import float_run

QUICK_LIMIT = 30.0  # seconds; every case below answers in well under one


def _assert_one_line_error(outcome: hostile.Outcome, *fragments: str) -> None:
    assert hostile.broken_promise(outcome) is None, (outcome.argv[:4], outcome.err)
    assert outcome.status == 2, (outcome.status, outcome.err)
    for fragment in fragments:
        assert fragment in outcome.err, outcome.err


# -- numbers too large, hangs on valid grammar: bounded by the grammar ------------------------

EXPRESSIONS = [
    ("2**33333*x", "is too large"),
    ("(x+y+1)**1000", "exponent"),
    ("sin(x)**(2**64)", "exponent"),
    ("exp(exp(exp(1000)))", "above 1e1000 in magnitude"),
    ("x**(10**10)", "exponent"),
    ("x**(2**64)+x", "exponent"),
    ("abs(x)**(10**10)", "exponent"),
    ("x**1e1000", "exponent"),
    ("x**(1/10**1000)", "exponent"),
    ("exp(" * 99 + "x" + ")" * 99, "function calls nested more than"),
    ("sqrt(" * 99 + "x" + ")" * 99, "function calls nested more than"),
    ("+".join(f"x{i}" for i in range(1600)), "more than"),
    ("max(" + ", ".join(f"x{i}" for i in range(1200)) + ")", "arguments, more than"),
    ("x +\n*", "invalid syntax"),  # the message quotes no raw line break
    ("x**(10**10\n)", "exponent"),
]


@pytest.mark.parametrize(("text", "fragment"), EXPRESSIONS, ids=lambda v: str(v)[:30])
def test_grammar_bounds_answer_at_once(text, fragment):
    inputs = ["--inputs", "x, y"] if "y" in text else []
    outcome = hostile.run_cli(["classify", text, "--no-cache", *inputs], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "ptq-verify classify: error: expression", fragment)
    assert outcome.seconds < 10


@pytest.mark.parametrize("seconds", ["inf", "1e12", "nan", "0"])
def test_a_timeout_beyond_what_the_alarm_takes_is_blamed_on_the_timeout(seconds):
    outcome = hostile.run_cli(["classify", "x", "--no-cache", "--timeout", seconds],
                              limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "ptq-verify classify: error: --timeout", "at most")


@pytest.mark.parametrize("text", ["exp(x**100)", "max(x*atanh(x), 0)"])
def test_what_exact_arithmetic_cannot_evaluate_is_one_line(text):
    outcome = hostile.run_cli(["classify", text, "--no-cache"], limit=QUICK_LIMIT)
    assert hostile.broken_promise(outcome) is None, outcome.err
    assert outcome.status in (0, 2)


@pytest.mark.slow
@pytest.mark.parametrize("text", ["exp(exp(x**2))", "+".join(f"x{i}" for i in range(64))],
                         ids=["exp-exp", "sum-of-64-names"])
def test_checker_hard_cases_answer_within_60_s(text):
    """Inside the grammar's bounds, what is hard for the checker is bounded by its time
    budget (30 s by default): a sum of 63 parameters grows its rescaling search."""
    outcome = hostile.run_cli(["classify", text, "--no-cache", "--inputs", "x" if "x0" not in
                               text else "x0"], limit=60)
    assert hostile.broken_promise(outcome) is None, outcome.err
    assert outcome.status == 0


@pytest.mark.parametrize("value", ["1e999999", "1" + "0" * 5000, "1/0", "nan", "abc"])
def test_params_numbers_are_bounded(value):
    outcome = hostile.run_cli(["classify", "x + b", "--params", f"b={value}", "--no-cache"],
                              limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "--params: b:")


# -- command-line usage ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "give a command"),
        (["quantize", "m.onnx", "--calib", "c.npz", "-o", "q.onnx", "--bits", "abc"],
         "argument --bits: invalid int value: 'abc'"),
        (["classify", "--expect", "nothing"], "argument --expect"),
        (["frobnicate"], "invalid choice"),
        # an option no parser takes is the command's error, pointing to its own help (the
        # top-level parser's named no command: a new-user trial's --per-channel)
        (["quantize", "m.onnx", "-o", "q.onnx", "--per-channel"],
         "ptq-verify quantize: error: unrecognized arguments: --per-channel (see ptq-verify "
         "quantize --help)"),
        (["audit", "m.onnx", "--calib", "c.npz"],
         "ptq-verify audit: error: unrecognized arguments: --calib c.npz"),
        (["--bogus"], "ptq-verify: error: unrecognized arguments: --bogus"),
        # a 10,000-character argument is cut, not quoted whole
        (["classify", "-" * 10_000 + "x"], "ptq-verify classify: error: unrecognized "
         "arguments: " + "-" * 200 + " ... (see ptq-verify classify --help)"),
        # the data file given to --calibration (the clipping method) is pointed to --calib
        (["quantize", "m.onnx", "-o", "q.onnx", "--calibration", "c.npz"],
         "invalid choice: 'c.npz' (choose from auto, maxabs, percentile, mse); the "
         "calibration data file goes to --calib"),
    ],
)
def test_usage_errors_are_one_line(argv, fragment):
    outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, fragment)
    assert outcome.out == ""


def test_the_version_is_printed_and_the_methods_are_the_engines():
    from ptq_verify import __version__
    from ptq_verify.cli.quantize import CALIBRATION_METHODS
    from ptq_verify.engine.calibrate import METHODS

    outcome = hostile.run_cli(["--version"], limit=QUICK_LIMIT)
    assert (outcome.status, outcome.out.strip()) == (0, f"ptq-verify {__version__}")
    assert CALIBRATION_METHODS == METHODS


# -- TOML declarations ------------------------------------------------------------------------

TOML = [
    ("[[operator]]\nname = 'A'\nexpr = 'x'\nonnx_type = ':'", "is not an op type"),
    ("[[operator]]\nname = 'A'\nexpr = 'x'\nonnx_type = 'com.x:Relu:'", "is not an op type"),
    ("[[operator]]\nname = 'A'\nexpr = 'x'\nonnx_type = 'My Relu'", "is not an op type"),
    ("operator = [1, 2]", "operator #1 is an integer"),
    ("[[operator]]\nname = 'A'\nexpr = 'x'\ninputs = 5", "'inputs' must be a string"),
    ("[[operator]]\nname = 'A'\nexpr = 'x'\ninputs = true", "'inputs' must be a string"),
    ("[[operator]]\nname = 'A'\nexpr = 'x'\ninputs = [1, 2]", "'inputs' must be a string"),
    ("[[operator]]\nname = 'A'\nexpr = 'x*b'\nparams = [1, 2]", "'params' must be a table"),
    ("[[operator]]\nname = 'A'\nexpr = 'x*b'\nparams = {b = true}", "not a boolean"),
    ("[[operator]]\nname = 'A'\nexpr = 'x*b'\nparams = {b = 1e999999}", "inf"),
    ("[[operator]]\nname = 'A'\nexpr = 'x*b'\nparams = {b = nan}",
     "operator 'A': parameter 'b' is nan, not a value; write a finite number"),
    ("[[operator]]\nname = 'A'\nexpr = 'x*b'\nparams = {b = 'x1'}",
     "operator 'A': parameter b: 'x1' is not a number"),  # (the operator named once)
    ("[[operator]]\nname = 'A'\nexpr = 'x*b'\nparams = {b = '1e999999'}", "too large"),
    ("[[operator]]\nname = 'A'\nexpr = 'x*b'\nparams = {b = 1" + "0" * 5000 + "}",
     "not valid TOML"),
    ("[[operator]]\nname = 'A'\nexpr = 'x'\nonnx_type = 5", "'onnx_type' must be a string"),
    ("[[operator]]\nname = 'A'\nexpr = 'x'\n[[operator]]\nname = 'A'\nexpr = '2*x'",
     "declared twice"),
    ("a = " + "[" * 5000 + "]" * 5000, "nested too deep"),
    ("[[operator]]\nname = 'A'\nexpr = 'x**(10**10)'", "exponent"),
]


@pytest.mark.parametrize("command", ["classify", "check-proofs"])
@pytest.mark.parametrize(("text", "fragment"), TOML, ids=lambda v: str(v)[:30])
def test_toml_types_are_checked(tmp_path, command, text, fragment):
    path = tmp_path / "ops.toml"
    path.write_text(text)
    folder = [str(tmp_path)] if command == "check-proofs" else []  # its certificates' folder
    outcome = hostile.run_cli([command, *folder, "--file", str(path)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, str(path), fragment)


def test_toml_size_is_capped(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("# padding\n" * 200_000)
    outcome = hostile.run_cli(["classify", "--file", str(path)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "larger than")


def test_toml_from_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "ops.toml"
    os.mkfifo(fifo)
    outcome = hostile.run_cli(["classify", "--file", str(fifo)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "not a regular file")


# -- output paths ------------------------------------------------------------------------------


def _quantize(model, calib, out, *extra) -> hostile.Outcome:
    return hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                            "--no-progress", *extra], limit=120)


def test_output_onto_a_fifo_is_refused_and_the_fifo_kept(mlp_files):
    tmp, model, calib = mlp_files
    fifo = tmp / "out.onnx"
    os.mkfifo(fifo)
    outcome = _quantize(model, calib, fifo)
    _assert_one_line_error(outcome, "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_report_onto_a_fifo_is_refused_before_any_work(mlp_files):
    tmp, model, calib = mlp_files
    fifo = tmp / "report.md"
    os.mkfifo(fifo)
    outcome = _quantize(model, calib, tmp / "q.onnx", "--report", str(fifo))
    _assert_one_line_error(outcome, "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and not (tmp / "q.onnx").exists()


def test_report_equal_to_output_is_refused(mlp_files):
    tmp, model, calib = mlp_files
    outcome = _quantize(model, calib, tmp / "q.onnx", "--report", str(tmp / "q.onnx"))
    _assert_one_line_error(outcome, "name the same file")
    assert not (tmp / "q.onnx").exists()


def test_output_onto_the_models_external_data_is_refused_and_the_data_kept(tmp_path):
    """torch's dynamo exporter writes model.onnx + model.onnx.data: -o model.onnx.data would
    break the input model."""
    import models

    model, calib = tmp_path / "m.onnx", tmp_path / "c.npy"
    onnx.save(models.mlp("Relu"), model, save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    np.save(calib, models.digits(40))
    data = (tmp_path / "m.onnx.data").read_bytes()
    _assert_one_line_error(_quantize(model, calib, tmp_path / "m.onnx.data"), "an input file")
    assert (tmp_path / "m.onnx.data").read_bytes() == data


def test_outputs_take_the_umask_not_private_modes(mlp_files):
    """mkstemp's 0600 would keep a shipped model from other users (a container's)."""
    tmp, model, calib = mlp_files
    mask = os.umask(0o022)
    try:
        assert _quantize(model, calib, tmp / "q.onnx").status == 0
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(tmp / "q.onnx").st_mode) == 0o644


@pytest.mark.parametrize("target", ["/proc/self/mem", "/proc/no-such-folder/q.onnx"])
def test_unwritable_output_is_one_line(mlp_files, target):
    _, model, calib = mlp_files
    _assert_one_line_error(_quantize(model, calib, target), target)


def test_report_onto_an_existing_file_is_refused_and_the_file_kept(tmp_path):
    existing = tmp_path / "pages"
    existing.write_text("mine")
    outcome = hostile.run_cli(["report", "-o", str(existing), "--no-plots"], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "is not a folder")
    assert existing.read_text() == "mine"


# -- models and calibration data ---------------------------------------------------------------


def test_clip_to_an_empty_range_is_one_line(tmp_path):
    model = tmp_path / "clip.onnx"
    onnx.save(hostile.clip_to_empty_range(), model)
    calib = tmp_path / "x.npy"
    np.save(calib, np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4))
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    _assert_one_line_error(outcome, "infinite or NaN", "(16 infinite of its 16 values in "
                           "samples 0 to 3, the first in sample 0; node 'clip' (Clip) reads "
                           "constant 'lo', which holds 1 infinite of its 1 values")


@pytest.mark.parametrize("value, expected", [
    (np.inf, "; from input 'input': 1 infinite of its"),
    (np.nan, "input 'input': 1 NaN value in 1 of its")])
def test_an_infinite_or_nan_input_value_that_reaches_the_output_is_one_line(mlp_files, value,
                                                                           expected):
    """An input may hold -inf (an additive mask that a Softmax removes, kept in float), but
    one that reaches the model's output is refused naming the input it came from; NaN in an
    input is refused as it is read."""
    tmp, model, calib = mlp_files
    data = np.load(calib)
    data[7, 3] = value
    np.save(calib, data)
    outcome = _quantize(model, calib, tmp / "q.onnx")
    _assert_one_line_error(outcome, expected)
    assert not (tmp / "q.onnx").exists()


@pytest.mark.parametrize("through_constants", [False, True])
def test_constant_folding_is_capped(tmp_path, through_constants):
    model = tmp_path / "bomb.onnx"
    onnx.save(hostile.expand_bomb(through_constants=through_constants), model)
    outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "constant folding may materialise")
    assert outcome.peak_mb < 1024


def test_a_model_with_names_that_are_not_utf8(tmp_path):
    model = tmp_path / "names.onnx"
    model.write_bytes(hostile.non_utf8_name())
    outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "NodeProto.name is not UTF-8")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [(hostile.initializer_larger_than_its_shape, "initializer 'w': cannot reshape"),
     (hostile.unknown_element_type, "tensor 'y': unknown element type 109")],
)
def test_models_the_onnx_checker_lets_through(tmp_path, make, fragment):
    """Found by the deep fuzz run: defects onnx.checker does not see."""
    model = tmp_path / "model.onnx"
    model.write_bytes(make().SerializeToString())
    outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "invalid ONNX model", fragment)


def test_certificate_folder_with_a_fifo_does_not_block(tmp_path):
    os.mkfifo(tmp_path / "Relu.json")
    outcome = hostile.run_cli(["check-proofs", str(tmp_path)], limit=QUICK_LIMIT)
    assert hostile.broken_promise(outcome) is None and outcome.status == 1, outcome.err
    assert "not a regular file" in outcome.out


def test_report_certificates_next_to_a_fifo_do_not_block(tmp_path):
    toml = tmp_path / "ops.toml"
    toml.write_text("[[operator]]\nname = 'Twice'\nexpr = '2*x'\n")
    certificates = tmp_path / "certificates"
    certificates.mkdir()
    os.mkfifo(certificates / "Other.json")
    outcome = hostile.run_cli(["report", "--file", str(toml), "-o", str(tmp_path / "pages"),
                               "--certificates", str(certificates), "--no-plots"],
                              limit=QUICK_LIMIT)
    assert hostile.broken_promise(outcome) is None and outcome.status == 0, outcome.err
    assert (certificates / "Other.json").is_fifo() and (certificates / "Twice.json").is_file()


def test_external_data_behind_a_link_says_how_to_load_it(tmp_path):
    """A Hugging Face cache keeps a snapshot's files as links into its blobs, through which
    onnx reads no external data; the refusal now says how to get a loadable copy."""
    folder = tmp_path / "snapshot"
    folder.mkdir()
    model = folder / "model.onnx"
    onnx.save(hostile.matmul_model(), model, save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx_data", size_threshold=0)
    (folder / "model.onnx_data").rename(tmp_path / "blob")
    (folder / "model.onnx_data").symlink_to(tmp_path / "blob")
    outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "symbolic link")
    assert "cp -rL" in outcome.err


@pytest.mark.parametrize("command", ["audit", "quantize"])
def test_a_model_whose_external_data_file_is_missing_says_so_by_its_name(tmp_path, command):
    """A hostile-input hunt: a model copied without its .data file was refused as 'unsafe or
    missing external data (... should be stored in PATH, but it is not regular file.)',
    onnx's words, which name neither the cause nor the step."""
    model = tmp_path / "m.onnx"
    onnx.save(hostile.matmul_model(), model, save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    (tmp_path / "m.onnx.data").unlink()
    argv = [command, str(model)] + (["--calib", str(tmp_path / "x.npy"), "-o",
                                     str(tmp_path / "q.onnx")] if command == "quantize" else [])
    np.save(tmp_path / "x.npy", np.ones((4, 4), np.float32))
    _assert_one_line_error(hostile.run_cli(argv, limit=QUICK_LIMIT),
                           "its external data file 'm.onnx.data' is missing")


def test_external_data_outside_the_model_folder(tmp_path):
    folder = tmp_path / "a" / "b"
    folder.mkdir(parents=True)
    outcome = hostile.run_cli(["audit", str(hostile.external_data_outside(folder))],
                              limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "external data")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (hostile.npz_object_array, "Python objects"),
        (hostile.npz_huge_header, "claims"),
        (hostile.npz_expression_header, "not a plain shape, dtype and order"),
        (hostile.npz_truncated, "truncated"),
        (hostile.npz_cut, "truncated or damaged .npz"),
        (hostile.npz_bad_crc, "CRC"),
    ],
)
def test_calibration_archive_members_are_checked(mlp_files, make, fragment):
    tmp, model, _ = mlp_files
    calib = make(tmp / "calib.npz")
    outcome = _quantize(model, calib, tmp / "q.onnx")
    _assert_one_line_error(outcome, fragment)
    assert not (tmp / "q.onnx").exists()


_PLAIN = "{'descr': '<f4', 'fortran_order': False, 'shape': "


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        # numpy parses headers with Python's own tokenizer and parser: an unclosed bracket or
        # string had ended in tokenize's TokenError, a run of minus signs in the parser's
        # MemoryError (exit 3 both); a negative length in numpy's "negative count"
        (_PLAIN[:-2], "not a plain shape"),
        (_PLAIN + "(40, 64), 'x': '''", "not a plain shape"),
        (_PLAIN + "(40, " + "-" * 9000 + "64), }", "not a plain shape"),
        (_PLAIN + "(-40, 64), }", "negative length"),
        (_PLAIN + "(-1, -64), }", "negative length"),
    ],
    ids=["unclosed-bracket", "unclosed-string", "minus-signs", "negative", "two-negative"])
def test_npy_headers_pythons_parser_chokes_on_are_one_line(mlp_files, header, fragment):
    tmp, model, _ = mlp_files
    calib = hostile.npy_with_header(tmp / "calib.npy", header, bytes(40 * 64 * 4))
    outcome = _quantize(model, calib, tmp / "q.onnx")
    _assert_one_line_error(outcome, fragment)
    assert not (tmp / "q.onnx").exists()


@pytest.mark.parametrize(
    "header",
    [_PLAIN + "(40L, 64L), }",  # written by Python 2's numpy: read with a UserWarning (printed)
     "{'descr': ('<f4', (64,)), 'fortran_order': False, 'shape': (40,), }"],  # (40, 64)
    ids=["python-2", "subarray-dtype"])
def test_npy_headers_numpy_reads_are_read_without_a_word(mlp_files, header):
    tmp, model, calib = mlp_files
    data = np.load(calib).astype("<f4").tobytes()
    odd = hostile.npy_with_header(tmp / "odd.npy", header, data)
    with warnings.catch_warnings(record=True) as caught:  # (pytest's own catch hides them
        warnings.simplefilter("always")  # from the forked run's stderr)
        array = engine_data._load_arrays(odd)
    assert not caught and array.shape == (40, 64), [str(w.message) for w in caught]
    outcome = _quantize(model, odd, tmp / "q.onnx")
    assert (outcome.status, outcome.err) == (0, ""), outcome.err


def test_zip_bomb_is_refused_before_it_expands(mlp_files, monkeypatch):
    tmp, model, _ = mlp_files
    monkeypatch.setattr(engine_data, "MAX_DATA_BYTES", 1 << 20)  # forked child inherits it
    bomb = hostile.npz_of_zeros(tmp / "bomb.npz", 4 << 20)
    assert bomb.stat().st_size < 64 << 10
    outcome = _quantize(model, bomb, tmp / "q.onnx")
    _assert_one_line_error(outcome, "decompressed")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_data_over_the_size_limit_is_refused_as_too_large_not_as_unreadable(
        mlp_files, monkeypatch, suffix):
    """A readable file over MAX_DATA_BYTES (EfficientNet-Lite1's 1600 crops of 240 x 240,
    1.1 GB) had been refused as 'not a readable .npy/.npz file', with no way forward."""
    import onnx

    tmp, model, calib = mlp_files
    monkeypatch.setattr(engine_data, "MAX_DATA_BYTES", 4096)  # forked child inherits it
    samples = np.load(calib)
    assert samples.nbytes > 4096
    big = tmp / f"big{suffix}"
    if suffix == ".npy":
        np.save(big, samples)
    else:
        np.savez(big, **{onnx.load(model).graph.input[0].name: samples})
    outcome = _quantize(model, big, tmp / "q.onnx")
    _assert_one_line_error(outcome, "bytes once decompressed, more than the 4,096",
                           "save fewer samples")
    assert "not a readable" not in outcome.err


@pytest.mark.slow
def test_real_zip_bomb_is_refused_in_little_memory(mlp_files):
    tmp, model, _ = mlp_files
    bomb = hostile.npz_of_zeros(tmp / "bomb.npz", 3 << 30)  # about 3 MB on disk
    outcome = _quantize(model, bomb, tmp / "q.onnx")
    _assert_one_line_error(outcome, "decompressed")
    assert outcome.peak_mb < 512


# -- declarations that do not describe the node ------------------------------------------------

LSTM_AS_TANH = """
[[operator]]
name = "MyLSTM"
inputs = "x"
expr = "tanh(x)"
onnx_type = "LSTM"
"""


def test_a_declaration_with_fewer_inputs_and_outputs_than_the_node_is_refused(tmp_path):
    """A new-user trial: an LSTM declared as tanh(x) was accepted, onnxruntime ran the LSTM
    while the engine's simulation computed tanh of its first input."""
    model, calib, ops = tmp_path / "lstm.onnx", tmp_path / "x.npy", tmp_path / "ops.toml"
    onnx.save(hostile.lstm_after_matmul(), model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 2, 3)).astype(np.float32))
    ops.write_text(LSTM_AS_TANH)
    outcome = _quantize(model, calib, tmp_path / "q.onnx", "--operators", str(ops))
    _assert_one_line_error(outcome, "node 'lstm_1' (LSTM) has 7 inputs and 3 outputs",
                           f"declaration 'MyLSTM' ({ops}) takes at most 1 input and gives "
                           "1 output")
    assert not (tmp_path / "q.onnx").exists()
    audit = hostile.run_cli(["audit", str(model), "--operators", str(ops)], limit=QUICK_LIMIT)
    assert audit.status == 0, audit.err
    assert "refused lstm_1: the node has 7 inputs and 3 outputs" in audit.out


def _refused_undeclared(tmp_path, proto: onnx.ModelProto, shape: tuple, *fragments: str):
    """Quantize ``proto`` on random data of ``shape``: refused in one line holding
    ``fragments``, nothing written; the outcome."""
    model, calib = tmp_path / "model.onnx", tmp_path / "x.npy"
    onnx.save(proto, model)
    np.save(calib, np.random.default_rng(0).normal(size=shape).astype(np.float32))
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    _assert_one_line_error(outcome, *fragments)
    assert not (tmp_path / "q.onnx").exists()
    return outcome


def test_an_undeclared_node_with_subgraphs_is_not_sent_to_a_declaration(tmp_path):
    """A new-user trial: ViTDet's legacy export holds an If (its windows' padding under dynamic
    shapes), refused with the advice to declare it with --operators; an expression cannot
    describe its branches, and a declaration would be refused for their attributes."""
    outcome = _refused_undeclared(tmp_path, hostile.if_after_matmul(), (8, 4),
                                  "node 'if_1' (If)", "no declared operator",
                                  "subgraphs (attribute else_branch, then_branch")
    assert "declare it in a TOML file" not in outcome.err


def test_a_loop_is_refused_with_the_way_an_embedding_bag_exports_without_one():
    """A new-user trial: both torch exporters write nn.EmbeddingBag as a Loop over its bags
    (a DLRM, a two-tower model); the refusal said to fix the input shapes, which resolves
    branches but leaves a loop's body. An If's refusal keeps its own words."""
    from ptq_verify.errors import UserError
    from ptq_verify.graph import Node, OperatorTable

    def refusal(op_type: str, *subgraphs: str) -> str:
        node = Node(name="n", op_type=op_type, inputs=["count", "", "x"], outputs=["y"],
                    attrs={}, domain="",
                    attr_types=dict.fromkeys(subgraphs, onnx.AttributeProto.GRAPH))
        with pytest.raises(UserError) as caught:
            OperatorTable.of(None).require(node)
        return str(caught.value)

    assert "torch writes nn.EmbeddingBag as a Loop" in refusal("Loop", "body")
    assert "EmbeddingBag" not in refusal("If", "then_branch", "else_branch")


def test_every_undeclared_node_is_counted_the_one_no_declaration_takes_first(tmp_path):
    """A new-user trial: an EmbeddingBag export was refused naming its Size alone, with the
    advice to declare it; declared, the Loop behind it was refused next. The line now names
    the node no declaration can take first, and the others after it."""
    outcome = _refused_undeclared(
        tmp_path, hostile.normalized_then_if(), (8, 4), "node 'if_1' (If)",
        "no declared operator",
        "1 other node(s) lack a declaration too: node 'mvn_1' (MeanVarianceNormalization)")
    assert outcome.err.index("'if_1'") < outcome.err.index("'mvn_1'")


def test_undeclared_nodes_are_all_counted_before_equalization_runs_the_model(tmp_path,
                                                                             monkeypatch):
    """A new-user trial's DLRM (an MLP, then nn.EmbeddingBag's Size and Loop, dynamo export):
    onnxruntime could not run the prepared graph, so equalization ran it on the catalog's
    kernels before calibration checked every node, met the Size, and refused it alone with
    the advice to declare it. onnxruntime is made to fail here (the forked run inherits it)."""
    monkeypatch.setattr(float_run, "ort_runner", lambda graph, want: None)
    _refused_undeclared(
        tmp_path, hostile.normalized_then_if_after_layers(), (8, 4), "node 'if_1' (If)",
        "1 other node(s) lack a declaration too: node 'mvn_1' (MeanVarianceNormalization)")


def test_an_undeclared_op_with_several_outputs_is_not_sent_to_a_declaration(tmp_path):
    """A new-user trial: an LSTM (torch's legacy export: Y, Y_h, Y_c) was refused with the
    advice to declare it with --operators, which then refuses it again, since a declaration
    file describes one output. The first refusal says so (here of a Unique, since a recurrent
    layer's refusal now says what it is)."""
    outcome = _refused_undeclared(tmp_path, hostile.unique_after_matmul(), (8, 3),
                                  "node 'unique_1' (Unique)", "no declared operator",
                                  "it writes 3 outputs", "describes 1")
    assert "declare it in a TOML file" not in outcome.err


def test_an_undeclared_op_counts_the_outputs_it_writes(tmp_path):
    """A new-user trial: onnxruntime's SkipLayerNormalization, writing output slots 0 and 3,
    was said to write 4 outputs."""
    _refused_undeclared(tmp_path, hostile.unique_after_matmul(("y", "", "inverse")), (8, 3),
                        "node 'unique_1' (Unique)", "it writes 2 outputs (slots 0, 2)",
                        "describes 1")


@pytest.mark.parametrize("op_type", ["Split", "If"])
def test_an_unnamed_output_no_schema_makes_optional_is_one_line(tmp_path, op_type):
    """onnxruntime crashes (SIGSEGV) running a model whose node leaves a non-optional output
    unnamed (onnx's checker passes it): quantize died with it, with no message."""
    _refused_undeclared(tmp_path, hostile.unnamed_required_output(op_type), (8, 4),
                        f"({op_type}) leaves output 1 (outputs) unnamed",
                        "optional output only")


def test_an_onnxruntime_fused_op_is_sent_back_to_the_export(tmp_path):
    """A new-user trial: BERT and GPT-2 after onnxruntime's transformer optimizer (and a CNN
    saved by an optimizing session: FusedConv) were refused with the advice to declare
    SkipLayerNormalization, BiasGelu, FusedConv with --operators, which a fused normalization
    cannot be. The line now says what wrote them and to quantize the model as exported; the
    audit says it too."""
    outcome = _refused_undeclared(
        tmp_path, hostile.skip_layer_norm_after_matmul(), (8, 3, 4),
        "node 'skip_ln' (SkipLayerNormalization)",
        "op type 'SkipLayerNormalization' in domain 'com.microsoft'",
        "one of onnxruntime's own operators", "quantize the model as exported")
    assert "declare it in a TOML file" not in outcome.err
    audit = hostile.run_cli(["audit", str(tmp_path / "model.onnx")], limit=QUICK_LIMIT)
    assert audit.status == 0
    assert ("unknown op type com.microsoft:SkipLayerNormalization: skip_ln (not in the catalog; "
            "one of onnxruntime's own operators") in audit.out


def test_an_element_wise_onnxruntime_op_is_also_sent_to_a_declaration(tmp_path):
    """A new-user trial: a com.microsoft Gelu a user wrote into a model by hand was sent back
    to an export before onnxruntime's optimizer, which it never had; a node of one output is
    also told the declaration that takes it (a fused op of several outputs, above, is not)."""
    outcome = _refused_undeclared(
        tmp_path, hostile.contrib_gelu_after_matmul(), (8, 3, 4), "node 'gelu' (Gelu)",
        "one of onnxruntime's own operators", "quantize the model as exported",
        'declare it with --operators, onnx_type = "com.microsoft:Gelu"')
    assert "declare it in a TOML file" not in outcome.err


def test_an_undeclared_sequence_op_is_not_sent_to_a_declaration(tmp_path):
    """A new-user trial: Mamba's legacy export (transformers 5) splits a tensor into an ONNX
    sequence, refused with the advice to declare the ops as a formula of their inputs, which
    a list of tensors is not. A split whose pieces are taken at constant positions is now
    Slices (tests/test_real_exports.py); one joined again is refused, saying what the ops
    are and which export writes a Split instead."""
    outcome = _refused_undeclared(tmp_path, hostile.split_to_sequence_after_matmul(), (8, 4),
                                  "node 'split_1' (SplitToSequence)", "ONNX sequence",
                                  "1 other node(s) lack a declaration too: node 'join_1'",
                                  "dynamo exporter")
    assert "declare it in a TOML file" not in outcome.err


def test_an_undeclared_random_op_is_not_sent_to_a_declaration(tmp_path):
    """A new-user trial: the dynamo exports of MobileNetV1 and FocalNet held a
    RandomUniformLike (a drop-path), refused with the advice to declare it as a formula of
    its inputs, which a random draw is not. The refusal says what it is and what to do: a
    diffusion trial's VAE encoder exported with latent_dist.sample(), a RandomNormalLike by
    design, had been told only model.eval() and the other exporter, neither of which removes
    it."""
    outcome = _refused_undeclared(tmp_path, hostile.random_like_after_matmul(), (8, 4),
                                  "node 'random_1' (RandomUniformLike)", "random seed",
                                  "model.eval()", "draw the noise outside the file")
    assert "declare it in a TOML file" not in outcome.err


SHIFT = hostile.declaration("MyShift", "x - offset", "Shift", offset="0")


def test_a_declared_parameter_takes_the_value_of_the_nodes_attribute_of_its_name(tmp_path):
    """A new-user trial: scikit-learn's Scaler declared as (x - offset)*scale was calibrated
    with the declaration's sample values, not the node's offset and scale (11.5 dB, exit 0);
    a parameter now takes the value of the node's attribute of the same name."""
    from ptq_verify.catalog.toml_file import load_onnx_operators
    from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph

    ops = tmp_path / "ops.toml"
    ops.write_text(SHIFT)
    table = OperatorTable(load_onnx_operators(ops), str(ops))
    graph = graph_from_onnx(hostile.shift_with_attributes(offset=5.0))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    np.testing.assert_allclose(run_graph(graph, {"x": x}, table)["y"], x - 5, rtol=1e-6)


@pytest.mark.parametrize(("attributes", "fragment"), [
    ({"offset": [5.0, 1.0, 2.0, 3.0]}, "attribute 'offset' of 4 values"),
    ({"offset": 5.0, "gain": 2.0}, "attribute 'gain' that its declaration does not bind"),
    # (a new-user trial's: read as the number, then written back as a float where the rule
    # rescales it, an internal error in the simulation format; a tensor one in every format)
    ({"offset": "5"}, "attribute 'offset' of type STRING where its parameter 'offset' takes "
                      "one number"),
    ({"offset": onnx.numpy_helper.from_array(np.array([5.0], np.float32))},
     "attribute 'offset' of type TENSOR"),
])
def test_a_node_attribute_a_declaration_cannot_take_is_refused(tmp_path, attributes, fragment):
    """The kernel of a declaration is its expression: an attribute it does not bind, or a
    list for a one-number parameter, would be computed with something else than the node's
    values."""
    model, calib, ops = tmp_path / "shift.onnx", tmp_path / "x.npy", tmp_path / "ops.toml"
    onnx.save(hostile.shift_with_attributes(**attributes), model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    ops.write_text(SHIFT)
    outcome = _quantize(model, calib, tmp_path / "q.onnx", "--operators", str(ops))
    _assert_one_line_error(outcome, "node 'shift' (Shift)", fragment, "'MyShift'")
    assert not (tmp_path / "q.onnx").exists()


def test_an_int_attribute_the_rule_rescales_runs_the_node_in_float(tmp_path):
    """A new-user trial: a custom node's int attribute bound to a parameter its rule rescales
    had the rescaled value written into it, a float, and the simulation format failed as an
    internal error ('Inferred attribute type FLOAT mismatched with specified type INT'). No
    rescaled value is an integer: the node runs in float, and every format is written."""
    model, calib, ops = tmp_path / "shift.onnx", tmp_path / "x.npy", tmp_path / "ops.toml"
    onnx.save(hostile.shift_with_attributes(offset=5), model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    ops.write_text(SHIFT)
    for form in ("qdq", "integer", "simulation"):
        outcome = _quantize(model, calib, tmp_path / f"{form}.onnx", "--operators", str(ops),
                            "--format", form)
        assert outcome.status == 0, outcome.err
        row, = [line for line in outcome.out.splitlines() if line.startswith("shift ")]
        assert "compensate" in row, row


def test_an_integer_file_without_the_declared_ops_is_checked_in_onnxruntime(tmp_path):
    """A new-user trial: the integer format writes an element-wise declared op of a custom
    domain as a table of codes, so its file held no such node and ran in onnxruntime as it
    was; the note said it had not been checked there, and gave a simulated SQNR. The qdq
    file keeps the node, which only the user's runtime runs."""
    model, calib, ops = tmp_path / "m.onnx", tmp_path / "x.npy", tmp_path / "ops.toml"
    _quick_gelu_model(model, "custom", "Shift")  # (its codes feed the table: a MatMul before)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    ops.write_text(hostile.declaration("PlusOne", "x + 1", "custom:Shift"))
    for form, checked in (("integer", True), ("qdq", False)):
        outcome = _quantize(model, calib, tmp_path / f"{form}.onnx", "--operators", str(ops),
                            "--format", form, "--no-wide-sums")  # (8-bit codes: a table)
        assert outcome.status == 0, outcome.err
        assert ("it runs in onnxruntime as it is, and was checked there" in outcome.out) \
            is checked, outcome.out
        assert ("samples (onnxruntime): y" in outcome.out) is checked, outcome.out


@pytest.mark.parametrize(("declared", "near"), [
    ("custom:Shfit", True),    # a typo in the op type
    ("custm:Shift", True),     # a typo in the domain
    ("custom:shift", True),    # a case slip
    ("custom:Scale", False),   # another op type of the domain: not a near miss
])
def test_a_declaration_whose_onnx_type_nearly_names_the_node_is_named(tmp_path, declared, near):
    """A new-user trial declared custom:SwishBta for nodes of custom:SwishBeta: quantize
    refused the nodes saying to declare them in a file given with --operators, which it had
    been; the refusal, and audit's summary of the node, now name the near miss."""
    model, calib, ops = tmp_path / "shift.onnx", tmp_path / "x.npy", tmp_path / "ops.toml"
    onnx.save(hostile.shift_with_attributes(), model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    ops.write_text(hostile.declaration("MyShift", "x - 1", declared))
    said = f"{ops} declares '{declared}', a near miss: to declare this node, " \
           'onnx_type = "custom:Shift"'
    outcome = _quantize(model, calib, tmp_path / "q.onnx", "--operators", str(ops))
    _assert_one_line_error(outcome, "node 'shift' (Shift): no declared operator")
    assert (said in outcome.err) is near, outcome.err
    audit = hostile.run_cli(["audit", str(model), "--operators", str(ops)], limit=QUICK_LIMIT)
    assert audit.status == 0 and (said in audit.out) is near, audit.out


@pytest.mark.parametrize("with_function", [False, True])
def test_a_declaration_no_node_takes_is_named(tmp_path, with_function):
    """A new-user trial declared custom:QuickGELU and the like for a model that defines them
    itself as functions (model.functions, so that onnxruntime runs it): the functions were
    inlined at load, the declarations left unused, and nothing said so. audit's summary and
    quantize's note now name each declaration no node takes."""
    proto = hostile.shift_with_attributes()
    if with_function:
        proto.functions.append(helper.make_function(
            "custom", "Shift", ["X"], ["Y"], [helper.make_node("Identity", ["X"], ["Y"])],
            [helper.make_opsetid("", hostile.OPSET)]))
    model, calib, ops = tmp_path / "shift.onnx", tmp_path / "x.npy", tmp_path / "ops.toml"
    onnx.save(proto, model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    ops.write_text(SHIFT.replace('"Shift"', '"custom:Shift"')
                   + hostile.declaration("Unused", "x", "custom:Other"))
    said = (["'MyShift' (custom:Shift)"] if with_function else []) + ["'Unused' (custom:Other)"]
    audit = hostile.run_cli(["audit", str(model), "--operators", str(ops), "--json"],
                            limit=QUICK_LIMIT)
    assert audit.status == 0, audit.err
    assert json.loads(audit.out)["summary"]["unused_declarations"] == said
    outcome = _quantize(model, calib, tmp_path / "q.onnx", "--operators", str(ops))
    assert outcome.status == 0, outcome.err
    line, = [line for line in outcome.out.splitlines() if "no node of the model takes" in line]
    assert all(name in line for name in said) and ("MyShift" in line) is with_function, line


@pytest.mark.parametrize("command", ["quantize", "audit"])
@pytest.mark.parametrize(("op_type", "said"), [
    ("Mish", ("'NotReally' declares ONNX Mish", "onnxruntime's Mish",
              "onnx_type = \"DOMAIN:Mish\"")),
    ("com.microsoft:Gelu", ("'NotReally' declares com.microsoft:Gelu, one of onnxruntime's own",
                            "onnxruntime's com.microsoft:Gelu", "correct the expression"))])
def test_a_declaration_of_an_onnx_op_type_that_computes_another_function_is_refused(
        mlp_files, command, op_type, said):
    """A new-user trial declared ONNX Mish as max(x, 0): proved to pass the scale, every Mish
    node was quantized by that rule and the written model lost 13 dB, with no word said. A
    declaration of a standard op type is run against onnxruntime's kernel first; so is one of
    onnxruntime's own operators (an optimized BERT's com.microsoft:Gelu declared as max(x, 0)
    had been taken as given, as a custom domain's is, and the file lost 18 dB unsaid)."""
    tmp, model, calib = mlp_files
    ops = tmp / "ops.toml"
    ops.write_text(hostile.declaration("NotReally", "max(x, 0)", op_type))
    args = [str(model), "--operators", str(ops)] + (
        ["--calib", str(calib), "-o", str(tmp / "q.onnx"), "--no-progress"]
        if command == "quantize" else [])
    outcome = hostile.run_cli([command, *args], limit=120)
    _assert_one_line_error(outcome, *said)
    assert not (tmp / "q.onnx").exists()


@pytest.mark.parametrize(("declaration", "agrees"), [
    ('name = "M"\nexpr = "x*tanh(log(1 + exp(x)))"\nonnx_type = "Mish"', True),
    ('name = "L"\nparams = { alpha = "0.2" }\nexpr = "where(x >= 0, x, alpha*x)"\n'
     'onnx_type = "LeakyRelu"', True),
    ('name = "A"\ninputs = "x, y"\nexpr = "x + y"\nonnx_type = "Add"', True),
    ('name = "R"\nexpr = "max(x, 0)"\nonnx_type = "Relu"', True),
    ('name = "S"\nparams = { offset = "1" }\nexpr = "x - offset"\nonnx_type = "Shift"', True),
    ('name = "L2"\nparams = { alpha = "0.2" }\nexpr = "where(x >= 0, x, x/alpha)"\n'
     'onnx_type = "LeakyRelu"', False),
    ('name = "A2"\ninputs = "x, y"\nexpr = "x - y"\nonnx_type = "Add"', False),
    ('name = "G"\nexpr = "x*(erf(x*sqrt(2)/2) + 1)/2"\nonnx_type = "com.microsoft:Gelu"', True),
    ('name = "G2"\nexpr = "max(x, 0)"\nonnx_type = "com.microsoft:Gelu"', False),
    ('name = "G3"\nexpr = "max(x, 0)"\nonnx_type = "com.acme:Gelu"', True),
    ('name = "Q"\nparams = { alpha = "1.702" }\nexpr = "x*sigmoid(alpha*x)"\n'
     'onnx_type = "com.microsoft:QuickGelu"', True),
    ('name = "Q2"\nexpr = "x*sigmoid(x)"\nonnx_type = "QuickGelu"', False),
    # a 1-D bias (a new-user trial's): onnxruntime's BiasGelu runs on no bias of the input's
    # shape, and a BiasGelu declared as max(0, x + b) had been taken as given
    ('name = "B"\ninputs = "x, b"\nexpr = "(x + b)*(erf((x + b)/sqrt(2)) + 1)/2"\n'
     'onnx_type = "com.microsoft:BiasGelu"', True),
    ('name = "B2"\ninputs = "x, b"\nexpr = "max(0, x + b)"\n'
     'onnx_type = "com.microsoft:BiasGelu"', False),
    # parameters HardSwish's schema has no attribute of (a new-user trial's): onnxruntime
    # had refused the probe carrying them, and a wrong slope went unchecked
    ('name = "H"\nparams = { a = "1/6", b = "1/2" }\nexpr = "x*max(0, min(1, a*x + b))"\n'
     'onnx_type = "HardSwish"', True),
    ('name = "H2"\nparams = { a = "0.2", b = "0.5" }\nexpr = "x*max(0, min(1, a*x + b))"\n'
     'onnx_type = "HardSwish"', False),
])
def test_a_declared_kernel_is_compared_with_onnxruntimes_of_its_op_type(tmp_path, declaration,
                                                                        agrees):
    """Right declarations of standard op types pass (an attribute carried by a parameter of
    its name, two inputs), wrong ones are told; so are declarations of onnxruntime's own
    operators, named with their domain or alone (QuickGelu without its alpha: the node's
    1.702 by default); an op type outside ONNX and onnxruntime (Shift, com.acme's Gelu) is
    not compared."""
    from ptq_verify.catalog.toml_file import load_onnx_operators
    from ptq_verify.graph.declared_kernels import comparison

    ops = tmp_path / "ops.toml"
    ops.write_text(f"[[operator]]\n{declaration}\n")
    op, = load_onnx_operators(ops).values()
    assert (comparison(op)[0] is None) is agrees


def test_a_rescaled_parameter_the_op_types_schema_lacks_is_named_in_the_reason(tmp_path):
    """A newcomer trial: HardSwish declared with its slope and offset as parameters (proved
    param_rescale a -> a/s) runs in float, since its nodes carry no 'a'; the reason had told
    of Attention's scale, which has nothing to do with it, and quantize's note had advised
    writing 'a' on the nodes."""
    from onnx import TensorProto, helper

    from ptq_verify.catalog.toml_file import load_onnx_operators
    from ptq_verify.engine import load_model
    from ptq_verify.engine.plan import plan_model
    from ptq_verify.graph import OperatorTable

    ops = tmp_path / "ops.toml"
    ops.write_text('[[operator]]\nname = "H"\nparams = { a = "1/6", b = "1/2" }\n'
                   'expr = "x*max(0, min(1, a*x + b))"\nonnx_type = "HardSwish"\n')
    graph = helper.make_graph([helper.make_node("HardSwish", ["x"], ["y"], name="hs")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    graph, declared = load_model(model), load_onnx_operators(ops)
    plan, = plan_model(graph, declared)
    assert "ONNX's HardSwish has no attribute 'a'" in plan.reason, plan.reason
    assert "Attention" not in plan.reason
    # nor are its nodes told to carry 'a' and 'b' (no HardSwish can; onnxruntime's kernel
    # was compared with the sample values)
    assert OperatorTable.of(declared).assumed_attributes(graph.nodes) == []


def _quick_gelu_model(path, domain: str = "com.microsoft", op_type: str = "QuickGelu"):
    """x @ W -> com.microsoft:QuickGelu (no alpha: onnxruntime's default, 1.702), or another
    op type of one input, -> @ W."""
    from onnx import TensorProto, numpy_helper

    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm1"),
             helper.make_node(op_type, ["h"], ["g"], name="qg", domain=domain),
             helper.make_node("MatMul", ["g", "w"], ["y"], name="mm2")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid(domain, 1)]), path)


@pytest.mark.parametrize(("param", "value"), [("alpha", "1"), ("beta", "1.702")])
def test_an_onnxruntime_operators_schema_tells_its_attributes(tmp_path, param, value):
    """A new-user trial: a com.microsoft:QuickGelu that leaves out its alpha runs with
    onnxruntime's default, 1.702. Declared with alpha = 1 (compared with onnxruntime's kernel
    at alpha = 1, so taken), its nodes were computed with 1 (3 dB lost in the integer
    format); declared with a 'beta' its schema lacks, the rescaled beta was written on the
    node and the simulation format failed as an internal error (onnxruntime: 'Unrecognized
    attribute: beta'). Its schema is onnxruntime's, as a standard op type's is ONNX's."""
    from ptq_verify.catalog.toml_file import load_onnx_operators
    from ptq_verify.engine import load_model
    from ptq_verify.engine.plan import plan_model
    from ptq_verify.graph import OperatorTable

    model, calib, ops = tmp_path / "qg.onnx", tmp_path / "x.npy", tmp_path / "ops.toml"
    _quick_gelu_model(model)
    np.save(calib, np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32))
    ops.write_text(hostile.declaration("Q", f"x*sigmoid({param}*x)", "com.microsoft:QuickGelu",
                                       **{param: value}))
    declared = load_onnx_operators(ops)
    graph = load_model(model)
    assert OperatorTable.of(declared).assumed_attributes(graph.nodes) == []
    node, = [node for node in graph.nodes if node.op_type == "QuickGelu"]
    if param == "alpha":
        assert declared["com.microsoft:QuickGelu"].attribute("alpha", node.attrs) == \
            pytest.approx(1.702)
    else:
        plan, = [p for p in plan_model(graph, declared) if p.name == "qg"]
        assert "onnxruntime's com.microsoft:QuickGelu has no attribute 'beta'" in plan.reason
    for form in ("qdq", "integer", "simulation"):
        out = tmp_path / f"q_{form}.onnx"
        outcome = _quantize(model, calib, out, "--operators", str(ops), "--format", form)
        assert outcome.status == 0, outcome.err
        assert "sample values" not in outcome.out


@pytest.mark.parametrize(("declaration", "skipped"), [
    ('name = "R"\nexpr = "max(x, 0)"\nonnx_type = "Relu"', None),
    ('name = "S"\nparams = { offset = "1" }\nexpr = "x - offset"\nonnx_type = "Shift"', None),
    ('name = "Rope"\ninputs = ["x0 x1", "cs", "sn", "p"]\nexpr = "x0*cs + x1*sn"\n'
     'onnx_type = "RotaryEmbedding"', "its witness reads elements of an input"),
])
def test_a_declaration_its_op_types_kernel_cannot_check_is_noted(mlp_files, declaration,
                                                                  skipped):
    """A new-user trial: RotaryEmbedding (opset 23) declared with a sign error quantized with
    no word said: its witness reads a pair of elements, which the comparison with
    onnxruntime's kernel cannot run. Such a declaration is now named in a note; a compared
    one and a custom op type's are not."""
    from ptq_verify.cli.models import declared_operators, unchecked_note

    tmp, _, _ = mlp_files
    ops = tmp / "ops.toml"
    ops.write_text(f"[[operator]]\n{declaration}\n")
    note = unchecked_note(declared_operators(str(ops)))
    if skipped is None:
        assert note is None
    else:
        assert note is not None and "'Rope' (RotaryEmbedding: " + skipped in note


def test_a_builtin_declaration_with_an_output_fewer_than_the_node_is_refused(tmp_path):
    """The catalog's MaxPool describes the pooled values, not the Indices output."""
    model, calib = tmp_path / "pool.onnx", tmp_path / "x.npy"
    onnx.save(hostile.max_pool_with_indices(), model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 1, 4, 4)).astype(np.float32))
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    _assert_one_line_error(outcome, "node 'pool' (MaxPool) has 1 input and 2 outputs",
                           "declaration 'MaxPool' (the built-in catalog) takes at most 1 input "
                           "and gives 1 output")
    assert not (tmp_path / "q.onnx").exists()


def test_an_op_type_declared_for_other_attributes_says_which_forms_exist(tmp_path):
    """Pow is in the catalog, for four exponents: a fifth is refused with the forms that exist,
    not as an op type the catalog lacks."""
    model = tmp_path / "pow.onnx"
    onnx.save(hostile.pow_with_an_undeclared_exponent(), model)
    calib = tmp_path / "x.npy"
    np.save(calib, np.linspace(0.1, 1, 32, dtype=np.float32).reshape(8, 4))
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    _assert_one_line_error(outcome, "node 'pow_1'", "op type 'Pow' is declared only for other",
                           "Pow2: input 1 (Y) a constant 2",
                           "export the node in one of those forms", "--operators")
    assert not (tmp_path / "q.onnx").exists()
    audit = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    assert audit.status == 0
    assert "the catalog's forms of it: Pow2: input 1 (Y) a constant 2" in audit.out
    # its row too (a new-user trial: an opset-23 Attention with a softcap was "not in the
    # catalog", which declares Attention)
    row = next(line for line in audit.out.splitlines() if line.startswith("pow_1"))
    assert "no declaration of this form" in row


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_ptq_verify_s_own_output_is_refused_as_quantized_already(mlp_files, form):
    """A trial: ptq-verify's own simulation file given back as the input was quantized again
    (43 dB against itself), with nothing said; every form it writes is now refused at load by
    the doc string it writes, and the audit says quantize refuses it."""
    tmp, model, calib = mlp_files
    assert _quantize(model, calib, tmp / "q.onnx", "--format", form).status == 0
    outcome = _quantize(tmp / "q.onnx", calib, tmp / "qq.onnx")
    _assert_one_line_error(outcome, f"written by ptq-verify quantize (8-bit {form} model)",
                           "quantized already", "takes the float model")
    assert not (tmp / "qq.onnx").exists()
    audit = hostile.run_cli(["audit", str(tmp / "q.onnx")], limit=QUICK_LIMIT)
    assert audit.status == 0 and "quantize refuses this model" in audit.out, audit.out


@pytest.mark.parametrize("doc", ["ptq-verify 8-bit model (float); my notes",
                                 "ptq-verify 99999999999999999999999-bit model (x); ",
                                 "ptq-verify \uff18-bit model (qdq); outputs are integer codes",
                                 "ptq-verify 8-bit model (qdq); outputs are integer codes, "
                                 "and a user's notes after them"],
                         ids=["form-float", "23-digit-width", "fullwidth-8", "more-after"])
def test_a_float_model_whose_doc_string_only_begins_as_ptq_verify_s_quantizes(mlp_files, doc):
    """A hostile-input trial: a user's float model whose doc string began as the one quantize
    writes ('ptq-verify 8-bit model (float); my notes') was refused as quantized already (and
    as a '99999999999999999999999-bit x model'); only the whole string quantize writes, in one
    of its forms, says so."""
    tmp, model, calib = mlp_files
    written = onnx.load(model)
    written.doc_string = doc
    onnx.save(written, tmp / "doc.onnx")
    outcome = _quantize(tmp / "doc.onnx", calib, tmp / "q.onnx")
    assert outcome.status == 0, outcome.err


@pytest.mark.parametrize("form", ["qdq", "integer"])
def test_a_model_quantized_already_is_refused_as_such(mlp_files, form):
    """A new-user trial: a quantized model (onnxruntime's, or ptq-verify's with its doc string
    gone, as another tool's file has none of it) given back as the input was refused as an op
    type to declare; the refusal now says the model looks quantized, and asks for the float
    model, not for a declaration (a later trial: that advice misled)."""
    tmp, model, calib = mlp_files
    assert _quantize(model, calib, tmp / "q.onnx", "--format", form).status == 0
    written = onnx.load(tmp / "q.onnx")
    written.doc_string = ""
    onnx.save(written, tmp / "q.onnx")
    outcome = _quantize(tmp / "q.onnx", calib, tmp / "qq.onnx")
    _assert_one_line_error(outcome, "is the model quantized already?", "int8 codes",
                           "give it the float model")
    assert "--operators" not in outcome.err
    assert not (tmp / "qq.onnx").exists()
    audit = hostile.run_cli(["audit", str(tmp / "q.onnx")], limit=QUICK_LIMIT)
    assert audit.status == 0 and "is the model quantized already?" in audit.out


def _output_listed_twice(model: onnx.ModelProto) -> None:
    model.graph.output.append(model.graph.output[0])


def _input_as_output(model: onnx.ModelProto) -> None:
    model.graph.output.append(model.graph.input[0])


def _initializer_as_output(model: onnx.ModelProto) -> None:
    weight = model.graph.initializer[0]
    model.graph.output.append(onnx.helper.make_tensor_value_info(
        weight.name, weight.data_type, list(weight.dims)))


def _constant_node_output(model: onnx.ModelProto) -> None:
    value = onnx.numpy_helper.from_array(np.arange(3, dtype=np.float32))
    model.graph.node.append(onnx.helper.make_node("Constant", [], ["k"], value=value))
    model.graph.output.append(onnx.helper.make_tensor_value_info("k", onnx.TensorProto.FLOAT,
                                                                 [3]))


@pytest.mark.parametrize(("change", "fragment", "audited"), [
    (_output_listed_twice, "is listed 2 times (node ", True),
    (_input_as_output, "is a graph input, not computed by a node", True),
    (_initializer_as_output, "is a constant, not computed by a node", True),
    (_constant_node_output, "depends on no model input", False),  # (found once folded)
])
def test_outputs_the_quantized_model_could_not_hold_are_refused(mlp_files, change, fragment,
                                                                audited):
    """A new-user trial: onnxruntime runs a model that lists an output twice or returns an
    input or a constant as an output, but refused what quantizing wrote (a duplicate name),
    and a Constant node's output was refused as 'declare Constant'."""
    tmp, model, calib = mlp_files
    proto = onnx.load(model)
    change(proto)
    onnx.save(proto, model)
    import onnxruntime

    onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # it loads
    outcome = _quantize(model, calib, tmp / "q.onnx")
    _assert_one_line_error(outcome, fragment)
    assert not (tmp / "q.onnx").exists()
    # a later trial: such a model, valid ONNX, was called 'invalid ONNX model', and the audit
    # refused it too; it lists the model and ends with quantize's reason
    assert "invalid ONNX model" not in outcome.err
    if not audited:
        return
    audit = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    assert audit.status == 0 and "\nquantize refuses this model: " in audit.out
    assert fragment in audit.out


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda path: path.mkdir(), "a folder, not a calibration file"),
    (os.mkfifo, "not a regular file"),
    (lambda path: None, "no such calibration file"),
])
def test_calibration_path_that_is_no_file_says_what_it_is(mlp_files, make, fragment):
    """A new-user trial: --calib naming a folder was 'no such calibration file'."""
    tmp, model, _ = mlp_files
    make(tmp / "calib")
    _assert_one_line_error(_quantize(model, tmp / "calib", tmp / "q.onnx"), fragment)


def test_a_divisor_near_zero_is_kept_in_float_and_named(tmp_path):
    """A new-user trial: x / (x.std() + 1e-3) was refused with 'the node cannot be quantized'
    and no way forward; then refused with the option that keeps the divisor in float (a
    second run: Qwen2 and Gemma's RMSNorm over a zero pad-token row); now kept in float at
    once, with a note naming it and that option."""
    import models

    b = models.Builder(9)
    h = b.dense(b.add("Relu", [b.dense("input", 64, 32)]), 32, 16)
    h = b.add("Div", [b.const(np.array(1.0, dtype=np.float32)), h])
    model, calib = tmp_path / "div.onnx", tmp_path / "x.npy"
    onnx.save(b.model(b.dense(h, 16, 10), "div_x"), model)
    np.save(calib, models.digits(40))
    done = _quantize(model, calib, tmp_path / "q.onnx")
    assert done.status == 0 and "note: kept in float: 'gemm2'" in done.out
    assert "comes within" in done.out and "--keep-float-tensor" in done.out


def test_every_divisor_near_zero_is_kept_in_float_in_one_run(tmp_path):
    """A new-user trial: at 4 bits an RMSNorm model is refused at each norm's divisor in
    turn, one run per norm (Mamba: three runs to learn its three tensors); then in one
    refusal naming them all; now all kept in float in one run."""
    import models

    b = models.Builder(9)
    parts = []
    for _ in range(2):
        h = b.dense(b.add("Relu", [b.dense("input", 64, 32)]), 32, 16)
        parts.append(b.add("Div", [b.const(np.array(1.0, dtype=np.float32)), h]))
    model, calib = tmp_path / "divs.onnx", tmp_path / "x.npy"
    onnx.save(b.model(b.dense(b.add("Add", parts), 16, 10), "two_divs"), model)
    np.save(calib, models.digits(40))
    done = _quantize(model, calib, tmp_path / "q.onnx")
    assert done.status == 0 and "note: kept in float: 'gemm2', 'gemm4'" in done.out
    assert "(and 1 more)" in done.out


# -- models and data onnxruntime cannot run ----------------------------------------------------


@pytest.mark.parametrize(("change", "fragment"), [
    (hostile.opset_99, "Opset 99 is under development"),
    (hostile.one_name_for_every_node, "two nodes with same node name (same)"),
])
def test_a_model_onnxruntime_cannot_load_is_refused_before_any_work(mlp_files, change,
                                                                    fragment):
    """A new-user trial: such a model 'quantized' with exit 0 (calibrated by the numpy kernels)
    and the written file did not load in onnxruntime either; audit said nothing."""
    tmp, model, calib = mlp_files
    proto = onnx.load(model)
    change(proto)
    onnx.save(proto, model)
    outcome = _quantize(model, calib, tmp / "q.onnx")
    _assert_one_line_error(outcome, f"{model}: onnxruntime cannot load it (", fragment)
    assert not (tmp / "q.onnx").exists()
    audit = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    assert audit.status == 0
    assert "onnxruntime cannot load this model (" in audit.out and fragment in audit.out


def test_an_onnx_node_onnxruntime_cannot_load_is_refused_with_onnxruntime_s_reason(tmp_path):
    """A new-user trial: a legacy Falcon export with ALiBi casts to complex128, which no
    declaration fits and onnxruntime cannot load; quantize said to declare the Cast with
    --operators, which could never help (onnxruntime would still refuse the model): the
    reason that holds whatever is declared is onnxruntime's."""
    model = tmp_path / "complex.onnx"
    onnx.save(hostile.cast_to_complex(), model)
    np.save(tmp_path / "x.npy", np.ones((4, 4), np.float32))
    outcome = _quantize(model, tmp_path / "x.npy", tmp_path / "q.onnx")
    _assert_one_line_error(outcome, f"{model}: onnxruntime cannot load it (", "complex128")
    assert "--operators" not in outcome.err


def test_a_quantized_model_onnxruntime_cannot_load_is_never_written():
    from ptq_verify.engine.deployable import UnloadableOutput, check_quantized
    from ptq_verify.graph import graph_from_onnx

    proto = hostile.matmul_model()
    graph = graph_from_onnx(proto)
    hostile.opset_99(proto)
    with pytest.raises(UnloadableOutput, match="onnxruntime cannot load the quantized model"):
        check_quantized(proto.SerializeToString(), graph,
                        {"x": np.ones((2, 4), np.float32)}, "q.onnx", {})


def test_a_quantized_model_computing_inf_on_its_calibration_data_is_refused():
    """The last guard: a written model whose float outputs overflow on the data it was
    calibrated on (a range near the float32 maximum) is refused, naming output and sample."""
    from ptq_verify.engine.deployable import check_quantized
    from ptq_verify.errors import UserError
    from ptq_verify.graph import graph_from_onnx

    proto = hostile.matmul_model()
    graph = graph_from_onnx(proto)
    proto.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(
        np.eye(4, dtype=np.float32) * np.float32(1e38), "w"))  # what overflows
    sample = {"x": np.array([[0.5, 0, 0, 0], [0, 0, 0, 9.0]], np.float32)}
    with pytest.raises(UserError, match="computes inf at output 'y' on calibration sample 1, "
                       r"where the float model's values are finite \(at most 9 in magnitude\)"):
        check_quantized(proto.SerializeToString(), graph, sample, "q.onnx", {"y": 9.0})


@pytest.mark.parametrize("form", ["qdq", "simulation"])
def test_calibration_data_near_the_float32_maximum_quantizes_to_finite_outputs(mlp_files,
                                                                                form):
    """A new-user trial: the digits scaled by 1e30 quantized with exit 0 to a model computing
    inf or NaN everywhere: OPTQ's X^T X overflowed float32 and every weight code was NaN."""
    import onnxruntime

    tmp, model, calib = mlp_files
    data = (np.load(calib) * np.float32(1e30)).astype(np.float32)
    np.save(calib, data)
    outcome = _quantize(model, calib, tmp / "q.onnx", "--format", form)
    assert outcome.status == 0, outcome.err
    session = onnxruntime.InferenceSession(str(tmp / "q.onnx"),
                                           providers=["CPUExecutionProvider"])
    reference = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    (quantized,), (expected,) = session.run(None, {name: data}), reference.run(None,
                                                                               {name: data})
    assert np.isfinite(quantized).all()
    assert np.abs(quantized - expected).max() < 0.2 * np.abs(expected).max()


def test_token_ids_beyond_the_embedding_table_are_a_calibration_data_error(tmp_path):
    """A new-user trial: an id past the table's rows was the Gather node's 'cannot run it
    (index 1054 ...)', as if the model were at fault."""
    model, calib = tmp_path / "emb.onnx", tmp_path / "ids.npz"
    onnx.save(hostile.embedding_model(rows=1000), model)
    ids = np.random.default_rng(1).integers(0, 1000, size=(100, 8))
    ids[70, 5] = 1054  # past the first batch: the sample counts from the data's start
    np.savez(calib, input_ids=ids)
    _assert_one_line_error(
        _quantize(model, calib, tmp_path / "q.onnx"),
        f"{model}: calibration input 'input_ids' holds id 1054 in sample 70, beyond the 1000 "
        "rows of node '/embeddings/word_embeddings/Gather''s table 'table'")
    assert not (tmp_path / "q.onnx").exists()
    ids[70, 5] = 999
    np.savez(calib, input_ids=ids)
    assert _quantize(model, calib, tmp_path / "q.onnx").status == 0


def test_data_neither_runtime_can_run_is_said_of_the_data(tmp_path):
    """A new-user trial: a KV-cache decoder calibrated with an attention mask one position
    short of past + new tokens failed in onnxruntime and in the catalog's kernels, and the
    line blamed a node of the model file alone. It now says which samples failed, that
    onnxruntime fails on them too, and every input's shape."""
    model, calib = tmp_path / "sum.onnx", tmp_path / "calib.npz"
    onnx.save(hostile.sum_of_inputs_that_must_agree(), model)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    np.savez(calib, x=x, m=rng.normal(size=(8, 5)).astype(np.float32))
    _assert_one_line_error(
        _quantize(model, calib, tmp_path / "q.onnx"),
        "node 'add' (Add): cannot run it", "on calibration samples 0 to",
        "which onnxruntime fails on too", "x (8, 4), m (8, 5)")
    assert not (tmp_path / "q.onnx").exists()
    np.savez(calib, x=x, m=rng.normal(size=(8, 4)).astype(np.float32))
    assert _quantize(model, calib, tmp_path / "q.onnx").status == 0


def test_a_model_onnxruntime_cannot_run_is_said_in_its_words(tmp_path):
    """torch's legacy exports of Mamba and Canine run in onnxruntime on no input, at their
    export's own batch neither: Canine's line named the catalog's MatMul kernel alone (its
    calibration session, fetching every tensor, could not load the graph), Mamba's did not say
    where onnxruntime fails (a Tile before the Gather the kernels fail at). Both now quote
    onnxruntime's failure, which names the node."""
    model, calib = tmp_path / "broken.onnx", tmp_path / "calib.npy"
    onnx.save(hostile.product_that_runs_on_no_input(), model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    _assert_one_line_error(
        _quantize(model, calib, tmp_path / "q.onnx"),
        "node 'broken' (MatMul): cannot run it", "on calibration samples 0 to",
        "which onnxruntime fails on too (node 'broken' (MatMul): ", "(inputs: x (8, 4))")
    assert not (tmp_path / "q.onnx").exists()


def test_a_nan_output_names_the_node_the_float_model_first_computes_it_at(tmp_path):
    """A new-user trial: torch's MultiheadAttention and TransformerEncoder with a key padding
    mask, calibrated with one sample of padding alone, were refused naming only the output
    'y', as if the data were at fault; the float model computes NaN at the Softmax, from
    finite ids. The refusal names that Softmax (not the -inf mask before it, -inf by design)
    and says to leave such samples out."""
    outcome = _refused_undeclared(tmp_path, hostile.attention_over_a_row_masked_whole(), (8, 4),
                                  "tensor 'y' takes infinite or NaN values",
                                  "the float model computes NaN first at node 'softmax_1' "
                                  "(Softmax), from finite inputs", "leave out the samples")
    assert "'where'" not in outcome.err


def test_an_infinite_bound_a_node_does_not_pass_on_is_not_blamed(tmp_path):
    """Clip(x, 0, inf), as exporters write a Relu, before an Exp that overflows: the output's
    inf is the Exp's, not the constant's the Clip reads (a constant is named only where its
    node's output holds what it holds, or went unrecorded)."""
    arrays = {"lo": np.array(0.0, np.float32), "hi": np.array(np.inf, np.float32)}
    nodes = [onnx.helper.make_node("Clip", ["x", "lo", "hi"], ["c"], name="clip"),
             onnx.helper.make_node("Exp", ["c"], ["y"], name="exp")]
    proto = hostile._model(nodes, [hostile._float("x", ["batch", 4])],
                           [hostile._float("y", ["batch", 4])],
                           [onnx.numpy_helper.from_array(v, k) for k, v in arrays.items()])
    model, calib = tmp_path / "m.onnx", tmp_path / "x.npy"
    onnx.save(proto, model)
    np.save(calib, np.full((8, 4), 100.0, np.float32))
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    _assert_one_line_error(outcome, "the float model computes infinite first at node 'exp'")
    assert "constant 'hi'" not in outcome.err


def test_a_weight_layer_whose_input_is_empty_in_all_calibration_data_quantizes(tmp_path):
    """A hostile-input hunt: a KV-cache step calibrated with no new token (x of length 0
    along its free axis) ended in an internal error (the max of an empty array, in weight
    rounding's check of the layer's inputs), and the empty tensors it then passed were noted
    as '0 on all calibration data' and as outputs 'the float model gives 0' everywhere."""
    model, calib = tmp_path / "kv.onnx", tmp_path / "kv.npz"
    onnx.save(hostile.kv_cache_projection(), model)
    past = np.random.default_rng(0).normal(size=(8, 2, 4)).astype(np.float32)
    np.savez(calib, x=np.zeros((8, 0, 4), np.float32), past=past)
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    assert outcome.status == 0 and hostile.broken_promise(outcome) is None, outcome.err
    assert "tensor 'k' is empty (an axis of length 0) in all calibration data" in outcome.out
    assert "y not measured (empty: an axis of length 0" in outcome.out
    assert "gives 0 there" not in outcome.out


def test_a_call_of_a_function_the_model_defines_is_inlined(tmp_path):
    """A hostile-input hunt: a node calling a function of the model's own (torch's
    export_modules_as_functions) was refused as an op type no declaration takes, with the
    advice to declare it in a TOML file or remove it, where its body is a standard Relu."""
    model, calib = tmp_path / "f.onnx", tmp_path / "x.npy"
    onnx.save(hostile.matmul_then_local_function(), model)
    np.save(calib, np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))
    audit = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    assert audit.status == 0 and "Relu" in audit.out, audit.err
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    assert outcome.status == 0 and hostile.broken_promise(outcome) is None, outcome.err
    assert "the model's own functions inlined (MyRelu)" in outcome.out
    assert onnx.load(tmp_path / "q.onnx").functions == []


def test_the_model_file_given_as_its_own_calibration_data_is_said_to_be_so(mlp_files):
    """A hostile-input hunt: ``quantize m.onnx --calib m.onnx`` was told 'the model comes
    first, its data after --calib', as if the two had been swapped."""
    tmp, model, _ = mlp_files
    outcome = _quantize(model, tmp / ".." / tmp.name / model.name, tmp / "q.onnx")
    _assert_one_line_error(outcome, "the model file itself, given as its calibration data")
    assert "comes first" not in outcome.err


def test_a_sample_value_beyond_float_range_a_kernel_cannot_take_is_named(tmp_path):
    """A hostile-input hunt: a custom node left without its attribute takes the declaration's
    sample value; at 1e400 its kernel overflowed and the refusal said 'integer division result
    too large for a float' alone, naming no value."""
    model, ops, calib = tmp_path / "m.onnx", tmp_path / "ops.toml", tmp_path / "x.npy"
    onnx.save(hostile.shift_with_attributes(), model)
    ops.write_text(hostile.declaration("Shift", "gamma*x", "custom:Shift", gamma="1e400"))
    np.save(calib, np.ones((8, 4), np.float32))
    _assert_one_line_error(_quantize(model, calib, tmp_path / "q.onnx", "--operators", str(ops)),
                           "node 'shift' (Shift): cannot run it", "its declaration's gamma = "
                           "1e400 lies beyond float64's range")


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_weight_holding_nan_or_inf_is_named_not_the_samples(tmp_path, value):
    """A hostile-input hunt: a MatMul weight holding one NaN (or inf) was refused as NaN
    'the float model computes first at node mm, from finite inputs: leave out the samples',
    where no sample causes it; the refusal names the weight."""
    proto = hostile.matmul_model()
    weight = onnx.numpy_helper.to_array(proto.graph.initializer[0]).copy()
    weight[2, 1] = value
    proto.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weight, "w"))
    word = "NaN" if np.isnan(value) else "infinite"
    outcome = _refused_undeclared(tmp_path, proto, (8, 4),
                                  f"node 'matmul' (MatMul) reads constant 'w', which holds 1 "
                                  f"{word} of its 16 values", "not the data's")
    assert "leave out the samples" not in outcome.err


@pytest.mark.parametrize("outputs", [("y",), ("y", "y_h", "y_c")], ids=["dynamo", "legacy"])
def test_an_undeclared_recurrence_is_refused_as_a_recurrent_layer(tmp_path, outputs):
    """New-user trials: torch's dynamo export of an LSTM or GRU writes only Y (one output), and
    the refusal advised declaring it with --operators (a recurrence over a sequence cannot be
    declared); the legacy export writes Y, Y_h, Y_c and was told to "remove it or export the
    model without it", which a model built around it cannot do. Both exports are refused
    alike, as a recurrent layer that no declaration describes, with --float-op LSTM (the node
    in float, the rest quantized: tests/test_float_op.py) as the way forward."""
    outcome = _refused_undeclared(tmp_path, hostile.lstm_after_matmul(outputs), (8, 2, 3),
                                  "node 'lstm_1' (LSTM)", "no declared operator",
                                  "it is a recurrent layer", "initial_h",
                                  "--float-op LSTM keeps it in float")
    assert "declare it in a TOML file" not in outcome.err
    assert "remove it" not in outcome.err


# -- a hostile-input hunt (helper trial, 330 cases): what it found -----------------------------


def test_a_model_path_that_is_a_fifo_is_refused_before_it_is_read(mlp_files):
    """quantize parsed the model (for its external data) before looking at what the path is:
    a FIFO blocked for good and /dev/zero filled memory."""
    tmp, _, calib = mlp_files
    fifo = tmp / "model.onnx"
    os.mkfifo(fifo)
    outcome = _quantize(fifo, calib, tmp / "q.onnx")
    _assert_one_line_error(outcome, "not a regular file")
    assert outcome.seconds < 20


@pytest.mark.parametrize("option", ["-o", "--report"])
def test_an_output_onto_the_declarations_file_is_refused_and_the_file_kept(mlp_files, option):
    """--operators OPS.toml -o OPS.toml wrote the quantized model over the declarations."""
    tmp, model, calib = mlp_files
    declarations = tmp / "ops.toml"
    text = ('[[operator]]\nname = "MyRelu"\nonnx_type = "Relu"\ninputs = "x"\n'
            'expr = "max(x, 0)"\n')
    declarations.write_text(text)
    extra = ["--operators", str(declarations)]
    if option == "--report":
        extra += ["--report", str(declarations)]
        out = tmp / "q.onnx"
    else:
        out = declarations
    _assert_one_line_error(_quantize(model, calib, out, *extra), "the output path is an input")
    assert declarations.read_text() == text


@pytest.mark.parametrize("command", ["audit", "quantize-calib", "classify"])
def test_a_path_the_system_refuses_to_look_at_is_one_line(mlp_files, command):
    """A name longer than the file system takes (ENAMETOOLONG): Path.is_file() raises, which
    was an internal error (exit 3); so was a folder without search permission (EACCES)."""
    tmp, model, _ = mlp_files
    long = str(tmp / ("b" * 300))
    argv = {"audit": ["audit", long + ".onnx"],
            "quantize-calib": ["quantize", str(model), "--calib", long + ".npz", "-o",
                               str(tmp / "q.onnx"), "--no-progress"],
            "classify": ["classify", "--file", long + ".toml"]}[command]
    _assert_one_line_error(hostile.run_cli(argv, limit=QUICK_LIMIT), "cannot read",
                           "name too long")


@pytest.mark.parametrize(("key", "value"), [("length", "-5"), ("offset", "abc")])
def test_external_data_with_a_bad_length_or_offset_is_one_line_in_quantize(tmp_path, key,
                                                                             value):
    import models

    model, calib = tmp_path / "m.onnx", tmp_path / "c.npy"
    onnx.save(models.mlp("Relu"), model, save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    proto = onnx.load(model, load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == key:
                entry.value = value
        if not any(entry.key == key for entry in tensor.external_data):
            tensor.external_data.add(key=key, value=value)
    onnx.save(proto, model)
    np.save(calib, models.digits(40))
    _assert_one_line_error(_quantize(model, calib, tmp_path / "q.onnx"),
                           "not a readable ONNX model")


def test_a_calibration_archive_with_an_encrypted_member_is_one_line(mlp_files):
    tmp, model, calib = mlp_files
    archive = tmp / "x.npz"
    np.savez(archive, input=np.load(calib))
    raw = bytearray(archive.read_bytes())
    raw[raw.find(b"PK\x03\x04") + 6] |= 1  # the "encrypted" flag, local header
    raw[raw.find(b"PK\x01\x02") + 8] |= 1  # and central directory
    archive.write_bytes(bytes(raw))
    _assert_one_line_error(_quantize(model, archive, tmp / "q.onnx"), "encrypted")


def test_a_model_that_fixes_its_batch_axis_at_zero_is_one_line(mlp_files):
    tmp, model, calib = mlp_files
    proto = onnx.load(model)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    onnx.save(proto, model)
    _assert_one_line_error(_quantize(model, calib, tmp / "q.onnx"), "fixes axis 0",
                           "at 0", "takes no samples")


def test_a_torch_export_whose_batch_axis_is_fixed_at_zero_is_audited(tmp_path):
    """A fuzz run (benchmarks/fuzz_models.py, seed 4): the probes of smoothing ran the
    cross-attention export's nodes on empty examples and took the maximum of an empty array
    (exit 3); an empty probe output now pairs no axes."""
    from pathlib import Path

    proto = onnx.load(Path(__file__).parent / "fixtures" / "torch"
                      / "digits_cross_attention.legacy.opset17.onnx")
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    model = tmp_path / "m.onnx"
    onnx.save(proto, model)
    outcome = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    assert hostile.broken_promise(outcome) is None, outcome.err
    assert outcome.status == 0, outcome.err


def test_a_constant_divisor_of_infinity_runs_its_division_in_float(tmp_path):
    """A fuzz run (benchmarks/fuzz_models.py, seed 5): the torch export's normalization
    divided by a std of -inf (finite outputs, zeros), whose code scale was 127 / inf = 0, and
    0 ** -1 stopped quantize (exit 3)."""
    from pathlib import Path

    from onnx import numpy_helper

    fixtures = Path(__file__).parent / "fixtures" / "torch"
    proto = onnx.load(fixtures / "digits_uint8.dynamo.opset18.onnx")
    std = next(i for i in proto.graph.initializer if i.name == "std")
    values = numpy_helper.to_array(std).copy()
    values[0] = -np.inf
    std.CopyFrom(numpy_helper.from_array(values, "std"))
    model = tmp_path / "m.onnx"
    onnx.save(proto, model)
    outcome = _quantize(model, fixtures / "digits_uint8.calib.npz", tmp_path / "q.onnx")
    assert hostile.broken_promise(outcome) is None, outcome.err
    assert outcome.status == 0, outcome.err
    assert "constant 'std' holds inf or NaN, which no code holds" in outcome.out


def test_a_sequence_first_model_is_told_where_its_batch_may_be(tmp_path):
    """A new-user trial: nn.TransformerEncoderLayer(batch_first=False) takes (T, N, D) with T
    fixed; batch-first data got 'give a multiple of T' (T is no batch size) and, followed,
    quantized on data with time and batch swapped."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [12, "batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [12, "batch", 4])], [weight])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    calib = tmp_path / "c.npy"
    np.save(calib, np.ones((64, 12, 4), np.float32))
    _assert_one_line_error(_quantize(model, calib, tmp_path / "q.onnx"),
                           "whole batches of 12", "axis 1 of input 'x' is free ('batch')",
                           "sequence-first")
    np.save(calib, np.ones((12, 64, 4), np.float32))  # the model's own layout quantizes
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    assert outcome.status == 0 and hostile.broken_promise(outcome) is None, outcome.err
    # batch-first data whose count is a multiple of T pass every check: a note says it
    np.save(calib, np.ones((72, 12, 4), np.float32))
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    assert outcome.status == 0, outcome.err
    assert "the model fixes axis 0 at 12; but axis 1 of input 'x' is free" in outcome.out


def _attention_with_a_mask_onnxruntime_refuses() -> onnx.ModelProto:
    """Opset 23 Attention on 3-D q, k, v with a (B, 1, 1, T) mask: the catalog's kernel
    broadcasts the mask, onnxruntime's refuses it at run time (it loads the model)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32) * 0.2,
                                       name) for name in ("wq", "wk", "wv", "wo")]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wq"], ["q"]),
         helper.make_node("MatMul", ["x", "wk"], ["k"]),
         helper.make_node("MatMul", ["x", "wv"], ["v"]),
         helper.make_node("Attention", ["q", "k", "v", "mask"], ["a"], q_num_heads=4,
                          kv_num_heads=4, scale=0.5),
         helper.make_node("MatMul", ["a", "wo"], ["y"])], "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 6, 16]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["B", 1, 1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 6, 16])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model.ir_version = 10
    return model


def test_a_model_onnxruntime_loads_but_cannot_run_on_the_data_is_one_line(tmp_path):
    """A new-user trial: calibration ran on the catalog's kernels, and the written model's
    check then failed in onnxruntime as the float model does: exit 3."""
    model, calib = tmp_path / "m.onnx", tmp_path / "c.npz"
    onnx.save(_attention_with_a_mask_onnxruntime_refuses(), model)
    rng = np.random.default_rng(1)
    np.savez(calib, x=rng.standard_normal((8, 6, 16)).astype(np.float32),
             mask=np.ones((8, 1, 1, 6), bool))
    _assert_one_line_error(_quantize(model, calib, tmp_path / "q.onnx"),
                           "onnxruntime cannot run the model on calibration samples 0 to",
                           "nothing written")
    assert not (tmp_path / "q.onnx").exists()


def test_an_output_whose_axis_0_is_not_the_batch_quantizes(tmp_path):
    """A traced export with a baked Reshape to [2, -1] on a free batch: its batches' outputs
    have other widths, and joining them was an internal error."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["a"]),
         helper.make_node("Reshape", ["a", "shape"], ["b"]),
         helper.make_node("Relu", ["b"], ["y"])], "baked",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "N"])],
        [numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([2, -1], np.int64), "shape")])
    model, calib = tmp_path / "m.onnx", tmp_path / "c.npy"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), model)
    np.save(calib, rng.standard_normal((15, 8)).astype(np.float32))
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    assert outcome.status == 0 and hostile.broken_promise(outcome) is None, outcome.err


@pytest.mark.parametrize(("kind", "fragment"), [
    ("sequence", "graph output 'parts' is a sequence of tensors"),
    ("optional", "graph output 'parts' is an optional value"),
    ("sequence-input", "graph input 'xs' is a sequence of tensors"),
])
def test_a_graph_input_or_output_that_is_no_tensor_is_refused(mlp_files, kind, fragment):
    """A hostile-input hunt: a SplitToSequence or Optional output was dropped from the written
    model with exit 0 (a scikit-learn classifier's ZipMap output too), and a sequence input
    was reported as missing from the data. quantize refuses such a model in one line; audit
    lists its nodes and says why quantize refuses it (a new-user trial: it had refused too,
    where it lists the nodes of every other model quantize refuses)."""
    from onnx import TensorProto, helper

    tmp, model, calib = mlp_files
    proto = onnx.load(model)
    output = proto.graph.output[0].name
    if kind == "sequence-input":
        proto.graph.input.append(helper.make_tensor_sequence_value_info(
            "xs", TensorProto.FLOAT, None))
        proto.graph.node.append(helper.make_node("SequenceLength", ["xs"], ["n"]))
        proto.graph.output.append(helper.make_tensor_value_info("n", TensorProto.INT64, []))
    elif kind == "sequence":
        proto.graph.node.append(helper.make_node("SplitToSequence", [output], ["parts"],
                                                 axis=1))
        proto.graph.output.append(helper.make_tensor_sequence_value_info(
            "parts", TensorProto.FLOAT, None))
    else:
        proto.graph.node.append(helper.make_node("Optional", [output], ["parts"]))
        proto.graph.output.append(helper.make_value_info("parts", helper.make_optional_type_proto(
            helper.make_tensor_type_proto(TensorProto.FLOAT, None))))
    onnx.save(proto, model)
    _assert_one_line_error(_quantize(model, calib, tmp / "q.onnx"), fragment, "not a tensor")
    audited = hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT)
    assert hostile.broken_promise(audited) is None and audited.status == 0, audited.err
    assert f"quantize refuses this model: {model}: {fragment}" in audited.out


def test_an_output_path_ending_with_a_slash_is_refused(mlp_files):
    """A hostile-input hunt: -o newdir/ (no such folder) wrote a file named newdir."""
    tmp, model, calib = mlp_files
    outcome = _quantize(model, calib, f"{tmp / 'newdir'}/")
    _assert_one_line_error(outcome, "names a folder")
    assert not (tmp / "newdir").exists()


def _gemm_relu(path) -> np.ndarray:
    """Save a Gemm (4 -> 8, with bias) and Relu model, free batch, at ``path``; return 16
    samples of data for it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=1),
         helper.make_node("Relu", ["g"], ["y"])], "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w"),
         numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return rng.standard_normal((16, 4)).astype(np.float32)


def test_onnxruntimes_default_qdq_model_is_refused_as_quantized_already(mlp_files):
    """A hostile-input hunt: onnxruntime's quantize_static file (its defaults) was refused at
    the DequantizeLinear of an int32 bias with the advice to declare it: that node holds no
    8-bit tensor of its own."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    tmp, _, _ = mlp_files
    model, calib, name = tmp / "gemm.onnx", tmp / "x.npy", "x"
    data = _gemm_relu(model)
    np.save(calib, data)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{name: data}])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(model), str(tmp / "ort.onnx"), Reader())
    outcome = _quantize(tmp / "ort.onnx", calib, tmp / "qq.onnx")
    _assert_one_line_error(outcome, "is the model quantized already?", "give it the float model")
    assert "--operators" not in outcome.err


def test_an_infinite_input_is_named_when_the_output_it_reaches_is_wider(tmp_path):
    """A hostile-input hunt: a 4-wide input with an inf, a Gemm to 8 wide: the output was
    refused without naming the input (its statistics, the smaller, were settled after)."""
    model, calib = tmp_path / "gemm.onnx", tmp_path / "x.npy"
    data = _gemm_relu(model)
    data[7, 3] = np.inf
    np.save(calib, data)
    _assert_one_line_error(_quantize(model, calib, tmp_path / "q.onnx"),
                           "tensor 'y' takes infinite", "; from input 'x': 1 infinite",
                           "the first in sample 7")


def test_a_node_reading_a_tensor_nobody_computes_is_named(mlp_files):
    """A hostile-input hunt: onnx's checker says where on its later lines, and the message
    had kept its first line alone, which ends at 'of node:'."""
    tmp, model, _ = mlp_files
    proto = onnx.load(model)
    proto.graph.node[-1].input.append("ghost")
    proto.graph.node[-1].name = "last"
    onnx.save(proto, model)
    _assert_one_line_error(hostile.run_cli(["audit", str(model)], limit=QUICK_LIMIT),
                           "input 'ghost'", "name: last")


def test_an_initializer_listed_as_an_input_is_said_to_be_taken_as_a_constant(mlp_files):
    """A hostile-input hunt: data given for it was 'unknown' with no word why, and without
    data the written model lost the input with no word said."""
    from onnx import helper

    tmp, model, calib = mlp_files
    proto = onnx.load(model)
    weight = proto.graph.initializer[0]
    proto.graph.input.append(helper.make_tensor_value_info(weight.name, weight.data_type,
                                                           list(weight.dims)))
    onnx.save(proto, model)
    data = tmp / "both.npz"
    np.savez(data, **{proto.graph.input[0].name: np.load(calib),
                      weight.name: np.zeros((40, *weight.dims), np.float32)})
    _assert_one_line_error(_quantize(model, data, tmp / "q.onnx"),
                           f"{weight.name!r} is a constant of the model")
    outcome = _quantize(model, calib, tmp / "q.onnx")
    assert outcome.status == 0 and hostile.broken_promise(outcome) is None, outcome.err
    assert "inputs that are also initializers" in outcome.out and weight.name in outcome.out


@pytest.mark.parametrize(("argv", "fragment"), [
    (["classify", "--op", ""], "unknown operator ''"),
    (["classify", "a*x", "--params", "a=\uff11"], "is not a number"),
    (["quantize", "mlp_relu", "--percentile", "50", "-o", "{tmp}/q.onnx"],
     "applies to --calibration percentile only"),
    (["quantize", "mlp_relu", "--fixed-point", "-o", "{tmp}/q.onnx"],
     "applies to --format simulation and integer"),
    (["quantize", "mlp_relu", "--keep-float-tensor", "logits", "-o", "{tmp}/q.onnx"],
     "a graph output of"),
    (["classify", "--op", "Clip", "--params", "hi=2"], "--params: applies to an expression"),
    (["classify", "--file", "{tmp}/none.toml", "--inputs", "a, b"],
     "--inputs: applies to an expression"),
    (["classify", "--op", "Relu", "--name", "mine"], "--name: applies to an expression"),
])
def test_options_that_did_something_else_silently_are_one_line(tmp_path, argv, fragment):
    """A hostile-input hunt: --op "" printed the whole catalog, a full-width digit in --params
    was read as 1 (the expression grammar refuses it), --percentile without --calibration
    percentile was ignored. An options trial: --fixed-point left a qdq file byte-identical,
    and --keep-float-tensor on a graph output was noted as kept while the output was still
    written from codes (requantized, where it had been read off its accumulator). A
    hostile-input trial: --params, --inputs and --name beside --op or --file were dropped,
    Clip's certificate printed at its declared bounds as if hi=2 had been taken."""
    argv = [item.replace("{tmp}", str(tmp_path)) for item in argv]
    _assert_one_line_error(hostile.run_cli(argv, limit=QUICK_LIMIT), fragment)


def test_a_calibration_archive_with_a_member_twice_is_one_line(mlp_files):
    """zip lets two members share a name; numpy kept one of them, unsaid."""
    import zipfile

    tmp, model, calib = mlp_files
    archive = tmp / "twice.npz"
    data = np.load(calib)
    with zipfile.ZipFile(archive, "w") as handle:
        for scale in (1, 2):
            with handle.open("input.npy", "w") as member:
                np.lib.format.write_array(member, data * scale)
    _assert_one_line_error(_quantize(model, archive, tmp / "q.onnx"), "appears twice")


def test_check_proofs_on_a_file_says_it_is_no_folder(mlp_files):
    """A hostile-input hunt: a file path was 'no such certificate folder'; an unreadable
    folder (not testable as root) listed every operator as 'no certificate file'."""
    _, model, _ = mlp_files
    _assert_one_line_error(hostile.run_cli(["check-proofs", str(model)], limit=QUICK_LIMIT),
                           "not a folder")


def test_a_long_chain_of_clips_quantizes(tmp_path):
    """A new-user check: Gemm and 300 Relus was an internal error (RecursionError: the walks
    over clips and over readers of per-channel codes recursed once per node)."""
    from onnx import TensorProto, helper

    model, calib = tmp_path / "chain.onnx", tmp_path / "x.npy"
    data = _gemm_relu(model)
    proto = onnx.load(model)
    proto.graph.node.extend(helper.make_node("Relu", [f"r{i}" if i else "y"], [f"r{i + 1}"])
                            for i in range(300))
    del proto.graph.output[:]
    proto.graph.output.append(helper.make_tensor_value_info("r300", TensorProto.FLOAT,
                                                            ["N", 8]))
    onnx.save(proto, model)
    np.save(calib, data)
    outcome = _quantize(model, calib, tmp_path / "q.onnx")
    assert outcome.status == 0 and hostile.broken_promise(outcome) is None, outcome.err


def test_keep_float_tensor_naming_a_weight_says_it_is_a_constant(mlp_files):
    """A hostile-input hunt: a weight's name got 'has no tensor of that name'."""
    tmp, model, calib = mlp_files
    weight = onnx.load(model).graph.initializer[0].name
    _assert_one_line_error(_quantize(model, calib, tmp / "q.onnx", "--keep-float-tensor",
                                     weight), "holds it as a constant")


def test_keep_float_tensor_naming_two_tensors_at_once_says_one_option_each(mlp_files):
    """A speech trial gave --keep-float-tensor 'a,b' as --float-op takes 'LSTM,GRU', and got
    'has no tensor of that name' with no hint; the refusal now names the two tensors."""
    tmp, model, calib = mlp_files
    named = [node.output[0] for node in onnx.load(model).graph.node[:2]]
    _assert_one_line_error(_quantize(model, calib, tmp / "q.onnx", "--keep-float-tensor",
                                     ",".join(named)),
                           "has no tensor of that name", "a --keep-float-tensor of its own")


def test_check_proofs_on_a_report_folder_points_at_its_certificates(tmp_path):
    """A new-user check: the report folder (not its certificates/) listed 136 operators as
    'no certificate file'."""
    (tmp_path / "certificates").mkdir()
    _assert_one_line_error(hostile.run_cli(["check-proofs", str(tmp_path)], limit=QUICK_LIMIT),
                           "check that folder", "certificates")


_DECLARATION = '[[operator]]\nname = "Twice"\nexpr = "2*x"\nonnx_type = "Twice"\n'


@pytest.mark.parametrize(
    "argv",
    [["report", "-o", "", "--file", "{decl}"],
     ["report", "-o", "{tmp}/pages", "--certificates", "", "--file", "{decl}", "--no-plots",
      "--no-progress"],
     ["quantize", "{model}", "--calib", "{calib}", "-o", "{tmp}/q.onnx", "--operators", ""],
     ["quantize", "{model}", "--calib", "", "-o", "{tmp}/q.onnx"],
     ["quantize", "{model}", "--calib", "{calib}", "-o", "{tmp}/q.onnx", "--report", ""],
     ["audit", "{model}", "--operators", ""],
     ["check-proofs", ""],
     ["classify", "--file", ""]],
    ids=["report-o", "report-certificates", "quantize-operators", "quantize-calib",
         "quantize-report", "audit-operators", "check-proofs", "classify-file"])
def test_an_empty_path_is_refused_not_taken_for_no_path(mlp_files, argv):
    """``-o "$OUT"`` with OUT unset: the commands had read '' as no path given (``report -o
    ''`` regenerated the source checkout's docs/ops, ``--operators ''`` ran without
    declarations, ``--certificates ''`` wrote beside the pages), with no word said."""
    tmp, model, calib = mlp_files
    decl = tmp / "decl.toml"
    decl.write_text(_DECLARATION)
    argv = [a.format(tmp=tmp, model=model, calib=calib, decl=decl) for a in argv]
    outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "an empty path")
    assert not (tmp / "pages").exists() and not (tmp / "q.onnx").exists()


@pytest.mark.parametrize(
    "argv",
    [["quantize", "{model}", "--calib", "{calib}", "-o", "{tmp}/q.onnx", "--bits", "\u0668"],
     ["quantize", "{model}", "--calib", "{calib}", "-o", "{tmp}/q.onnx", "--keep-float",
      "\uff12"],
     ["quantize", "{model}", "--calib", "{calib}", "-o", "{tmp}/q.onnx", "--calibration",
      "percentile", "--percentile", "\uff19\uff19"],
     ["classify", "x", "--timeout", "\u0663", "--no-cache"]],
    ids=["bits-arabic-indic-8", "keep-float-fullwidth-2", "percentile-fullwidth-99",
         "timeout-arabic-indic-3"])
def test_numeric_options_take_ascii_digits_only(mlp_files, argv):
    """Python's int and float read any script's digits (``--bits`` followed by an Arabic-Indic
    8 ran at 8 bits); ptq-verify's numbers are ASCII, as in expressions and --params."""
    tmp, model, calib = mlp_files
    argv = [a.format(tmp=tmp, model=model, calib=calib) for a in argv]
    outcome = hostile.run_cli(argv, limit=QUICK_LIMIT)
    _assert_one_line_error(outcome, "ASCII digits")
    assert not (tmp / "q.onnx").exists()


@pytest.mark.parametrize("command", ["quantize", "classify"])
def test_a_model_given_as_the_declaration_file_is_named_as_one(mlp_files, command):
    """A hostile-input hunt: the model given as --operators (or classify --file) was refused
    as 'not UTF-8 text (byte 3)', which says neither what the file is nor which was meant;
    an image or a pickle there is named by its leading bytes likewise."""
    tmp, model, calib = mlp_files
    argv = (["quantize", str(model), "--calib", str(calib), "-o", str(tmp / "q.onnx"),
             "--operators", str(model)] if command == "quantize"
            else ["classify", "--file", str(model)])
    _assert_one_line_error(hostile.run_cli(argv, limit=QUICK_LIMIT),
                           "by its extension an ONNX model, not a declaration file")
    image = tmp / "ops.toml"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)))
    _assert_one_line_error(hostile.run_cli(["classify", "--file", str(image)],
                                           limit=QUICK_LIMIT),
                           "a PNG image, not a declaration file")


def test_an_empty_encoding_is_refused_not_taken_for_the_default(mlp_files):
    """A new-user trial: ``--encoding "$ENC"`` with ENC unset had run with the default u8u8
    and exit 0, where every other value outside the three encodings is refused."""
    tmp, model, calib = mlp_files
    _assert_one_line_error(_quantize(model, calib, tmp / "q.onnx", "--encoding", ""),
                           "QDQ encoding ''", "u8u8")
    assert not (tmp / "q.onnx").exists()


def test_check_proofs_on_a_folder_without_certificates_is_one_line(tmp_path):
    """A new-user trial: an empty folder (a typo'd or not yet written one) printed 'no
    certificate file' for each of the catalog's 157 operators and exit 1, as if certificates
    had failed; it holds none to check."""
    _assert_one_line_error(hostile.run_cli(["check-proofs", str(tmp_path)], limit=QUICK_LIMIT),
                           "no certificate files here")
