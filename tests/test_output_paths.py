"""Output paths (ptq_verify/atomic.py): links, special files, folders and signals.

Every file the CLI writes goes through ``write_atomic``; a path that is a link is written
through the link (the link stays a link), a link of /proc and a path that resolves to anything
but a regular file are refused in one line with nothing written. No test writes to the real
/dev/stdout: a link in tmp_path to /proc/self/fd/1 stands for it."""

from __future__ import annotations

import os
import stat

import hostile
import onnx
import pytest

from ptq_verify.atomic import output_directory, write_atomic
from ptq_verify.errors import UserError


def _assert_one_line_error(outcome: hostile.Outcome, *fragments: str) -> None:
    assert hostile.broken_promise(outcome) is None, ascii((outcome.argv[:4], outcome.err))
    assert outcome.status == 2, (outcome.status, outcome.err)
    for fragment in fragments:
        assert fragment in outcome.err, outcome.err


def _quantize(model, calib, out, *extra) -> hostile.Outcome:
    return hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                            "--no-progress", *extra], limit=120)


# -- links ------------------------------------------------------------------------------------


def test_quantize_onto_a_link_writes_through_it_and_keeps_the_link(mlp_files):
    """The trial's repro: -o out.onnx, out.onnx a link to victim, replaced the link by a
    regular file and left victim as it was."""
    tmp, model, calib = mlp_files
    (tmp / "victim").write_text("previous")
    (tmp / "out.onnx").symlink_to("victim")
    (tmp / "report.md").symlink_to(tmp / "kept.md")  # absolute and dangling: created
    outcome = _quantize(model, calib, tmp / "out.onnx", "--report", str(tmp / "report.md"))
    assert outcome.status == 0, outcome.err
    assert (tmp / "out.onnx").is_symlink() and os.readlink(tmp / "out.onnx") == "victim"
    onnx.checker.check_model(onnx.load(tmp / "victim"))
    assert (tmp / "report.md").is_symlink() and "Quantization" in (tmp / "kept.md").read_text()
    assert not [p for p in os.listdir(tmp) if p.endswith(".tmp")]


def test_a_link_into_another_folder_is_written_there(tmp_path):
    """The temporary file is made beside the target, so the rename stays in one file system
    and the link's folder gets no stray file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "v3.onnx").write_bytes(b"old")
    os.chmod(tmp_path / "b" / "v3.onnx", 0o640)
    (tmp_path / "a" / "current.onnx").symlink_to("../b/v3.onnx")
    assert write_atomic(tmp_path / "a" / "current.onnx", b"new") == tmp_path / "a/current.onnx"
    assert (tmp_path / "b" / "v3.onnx").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(tmp_path / "b" / "v3.onnx").st_mode) == 0o640
    assert (tmp_path / "a" / "current.onnx").is_symlink()
    assert os.listdir(tmp_path / "a") == ["current.onnx"]


def test_a_linked_folder_on_the_way_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to("real")
    write_atomic(tmp_path / "linked" / ".." / "linked" / "q.onnx", "text")
    assert (tmp_path / "real" / "q.onnx").read_text() == "text"
    assert (tmp_path / "linked").is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_link_to_what_is_not_a_regular_file_is_refused_and_kept(mlp_files, kind):
    tmp, model, calib = mlp_files
    if kind == "fifo":
        target = tmp / "fifo"
        os.mkfifo(target)
    elif kind == "device":
        target = "/dev/null"
    else:
        target = tmp / "folder"
        target.mkdir()
    (tmp / "out.onnx").symlink_to(target)
    fragment = "is a directory" if kind == "folder" else "not a regular file"
    _assert_one_line_error(_quantize(model, calib, tmp / "out.onnx"), fragment,
                           f"a link to {target}")
    assert os.readlink(tmp / "out.onnx") == str(target)
    if kind == "fifo":
        assert stat.S_ISFIFO(os.stat(target).st_mode)
    if kind == "device":
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="no /proc")
def test_a_link_to_an_open_file_of_proc_is_refused(mlp_files):
    """As root, -o /dev/stdout (a link to /proc/self/fd/1) replaced the system's /dev/stdout
    with a regular file. A link of tmp_path to /proc/self/fd/1 stands for it: whatever fd 1
    is (here a regular temporary file), nothing is written."""
    tmp, model, calib = mlp_files
    (tmp / "stdout").symlink_to("/proc/self/fd/1")
    outcome = _quantize(model, calib, tmp / "stdout")
    _assert_one_line_error(outcome, "a link of /proc")
    assert os.readlink(tmp / "stdout") == "/proc/self/fd/1"
    with pytest.raises(UserError, match="a link of /proc"):
        write_atomic(tmp / "stdout", b"x")
    with pytest.raises(UserError, match="a link of /proc"):
        output_directory("/proc/self/cwd")


def test_a_loop_of_links_is_one_line(tmp_path):
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(UserError):
        write_atomic(tmp_path / "a", b"x")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


def test_certificates_and_pages_are_written_through_links(tmp_path):
    from ptq_verify.catalog import CATALOG
    from ptq_verify.report.certificates import write_certificates

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "certs").symlink_to("elsewhere")  # a linked output folder
    (tmp_path / "elsewhere" / "target.json").write_text("{}")
    (tmp_path / "elsewhere" / "Relu.json").symlink_to("target.json")
    write_certificates([CATALOG["Relu"]], tmp_path / "certs")
    assert (tmp_path / "elsewhere" / "Relu.json").is_symlink()
    assert '"operator": "Relu"' in (tmp_path / "elsewhere" / "target.json").read_text()
    assert (tmp_path / "certs").is_symlink()


def test_the_verdict_cache_is_written_through_a_link(tmp_path):
    from ptq_verify.catalog.operator import Operator
    from ptq_verify.rules.store import VerdictStore

    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "v.json").symlink_to("real.json")
    store = VerdictStore(tmp_path / "v.json")
    store.put_fact("affine-x", Operator("square", "x", "x*x"), False)
    store.save()
    assert (tmp_path / "v.json").is_symlink()
    assert "affine-x" in (tmp_path / "real.json").read_text()


# -- standard output --------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["-o", "--report"])
def test_a_dash_for_an_output_is_refused_with_the_way_to_name_such_a_file(mlp_files, option):
    """-o - wrote a file named '-' (a reader expects standard output); ./- still names it."""
    tmp, model, calib = mlp_files
    paths = {"-o": str(tmp / "q.onnx"), "--report": str(tmp / "r.md")}
    paths[option] = "-"
    outcome = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o",
                               paths["-o"], "--report", paths["--report"], "--no-progress"],
                              limit=120, cwd=tmp)
    _assert_one_line_error(outcome, "never to standard output", "./-")
    assert not (tmp / "-").exists() and not (tmp / "q.onnx").exists()
    outcome = hostile.run_cli(["quantize", str(model), "--calib", str(calib), "-o", "./-",
                               "--no-progress"], limit=120, cwd=tmp)
    assert outcome.status == 0, outcome.err
    onnx.checker.check_model(onnx.load(tmp / "-"))


# -- report: every output checked before any work ----------------------------------------------

TWICE = '[[operator]]\nname = "Twice"\ninputs = "x"\nexpr = "2*x"\nonnx_type = "com.x:Twice"\n'


def _report(tmp, *argv) -> hostile.Outcome:
    (tmp / "twice.toml").write_text(TWICE)
    return hostile.run_cli(["report", "--file", str(tmp / "twice.toml"), "--no-plots",
                            "--no-progress", *argv], limit=60, cwd=tmp)


def test_report_refuses_a_certificates_folder_that_is_a_file_before_writing_pages(tmp_path):
    """The trial: 'wrote 2 files to out', then exit 2 for --certificates twice.toml."""
    outcome = _report(tmp_path, "-o", "out", "--certificates", "twice.toml")
    _assert_one_line_error(outcome, "twice.toml: exists and is not a folder")
    assert not (tmp_path / "out").exists() and outcome.out == ""
    assert (tmp_path / "twice.toml").read_text() == TWICE


@pytest.mark.parametrize("where", ["pages", "certificates"])
def test_report_refuses_a_file_it_cannot_replace_before_writing_any(tmp_path, where):
    (tmp_path / "out" / "certificates").mkdir(parents=True)
    fifo = tmp_path / "out" / ("Twice.md" if where == "pages" else "certificates/Twice.json")
    os.mkfifo(fifo)
    _assert_one_line_error(_report(tmp_path, "-o", "out"), "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == sorted(
        ["certificates", fifo.name])


@pytest.mark.parametrize("argv", [["-o", "-"], ["-o", "out", "--certificates", "-"],
                                  ["-o", "twice.toml/pages"]])
def test_report_refuses_folders_it_cannot_make_and_makes_none(tmp_path, argv):
    _assert_one_line_error(_report(tmp_path, *argv))
    assert sorted(os.listdir(tmp_path)) == ["twice.toml"]


# -- signals during a write -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_a_signal_while_the_output_is_written_removes_the_temporary_file(mlp_files, monkeypatch,
                                                                         name):
    """SIGTERM or SIGHUP while the model's temporary file existed left a hidden partial
    .q.onnx.XXXX.tmp beside the output (SIGINT did not). The signal is raised in the CLI's
    own (forked) process at the moment the temporary file is written and not yet renamed."""
    import signal

    from ptq_verify import atomic

    tmp, model, calib = mlp_files
    (tmp / "q.onnx").write_text("previous")
    signum = getattr(signal, name)
    if signal.getsignal(signum) is signal.SIG_IGN:  # (the command keeps it ignored, as asked)
        pytest.skip(f"{name} is ignored in this process (the suite run under nohup)")
    file_mode = atomic._file_mode

    def signalled(target):
        if target.name == "q.onnx":
            assert [p for p in os.listdir(tmp) if p.startswith(".q.onnx.")]
            signal.raise_signal(signum)
        return file_mode(target)

    monkeypatch.setattr(atomic, "_file_mode", signalled)
    outcome = _quantize(model, calib, tmp / "q.onnx")
    assert outcome.status == 128 + signum, (outcome.status, outcome.err)
    assert outcome.err == f"ptq-verify: stopped by {name}\n"
    assert (tmp / "q.onnx").read_text() == "previous"
    assert not [p for p in os.listdir(tmp) if p.endswith(".tmp")]


def test_a_hangup_ignored_by_nohup_stays_ignored(mlp_files, monkeypatch):
    import signal

    from ptq_verify import atomic

    tmp, model, calib = mlp_files
    file_mode = atomic._file_mode

    def hangup(target):
        signal.raise_signal(signal.SIGHUP)
        return file_mode(target)

    monkeypatch.setattr(atomic, "_file_mode", hangup)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:  # the forked CLI inherits the ignored SIGHUP and raises it at itself mid-write
        outcome = _quantize(model, calib, tmp / "q.onnx")
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert outcome.status == 0, outcome.err
    onnx.checker.check_model(onnx.load(tmp / "q.onnx"))


def test_a_process_forked_while_a_command_runs_ends_on_sigterm_by_default():
    """multiprocessing's Pool.terminate ends workers by SIGTERM: a worker that inherited the
    CLI's handler and waited in C never ran it, and a full-suite run hung in classify."""
    import signal

    from ptq_verify.cli import _signals_raise

    with _signals_raise():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        pid = os.fork()
        if pid == 0:
            os._exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# -- names that are not UTF-8 -----------------------------------------------------------------


def _not_utf8(folder, name: bytes) -> str:
    """A path in ``folder`` whose last part is the bytes ``name``, as Python's argv holds it."""
    return os.fsdecode(os.fsencode(folder) + b"/" + name)


@pytest.mark.parametrize("command", ["audit", "quantize"])
def test_a_model_file_name_that_is_not_utf8_is_one_line(mlp_files, command):
    """A legal Linux name: onnx's checker raised TypeError on it (exit 3)."""
    tmp, model, calib = mlp_files
    path = _not_utf8(tmp, b"bad\xffname.onnx")
    os.rename(model, path)
    argv = [command, path] + (["--calib", str(calib), "-o", str(tmp / "q.onnx")]
                              if command == "quantize" else [])
    _assert_one_line_error(hostile.run_cli(argv, limit=60), "bad\\xffname.onnx",
                           "byte 0xff that is not UTF-8", "rename the file")
    assert not (tmp / "q.onnx").exists()


@pytest.mark.parametrize(("argv", "fragment"), [
    ([b"classify", b"x\xff"], "byte 0xff is not UTF-8 text at column 2"),
    ([b"classify", b"--file", b"ops\xfe.toml"], "ops\\xfe.toml: no such file"),
])
def test_text_that_is_not_utf8_is_one_line(argv, fragment):
    """classify $'x\\xff' raised UnicodeEncodeError (exit 3)."""
    outcome = hostile.run_cli([os.fsdecode(a) for a in argv], limit=60)
    _assert_one_line_error(outcome, fragment)


def test_outputs_named_with_a_byte_that_is_not_utf8_are_written_and_printed(mlp_files):
    """-o $'q\\xfe.onnx' --report r.md wrote the model, then failed (exit 3) encoding the
    report's text, and printing the summary under a strict stdout (PYTHONIOENCODING=utf-8):
    the name's byte is written as it is, in both, as ls prints it."""
    tmp, model, calib = mlp_files
    target = _not_utf8(tmp, b"q\xfe.onnx")
    outcome = _quantize(model, calib, target, "--report", str(tmp / "r.md"))
    assert outcome.status == 0, outcome.err
    assert os.path.isfile(target)
    assert b"q\xfe.onnx" in (tmp / "r.md").read_bytes()
    assert "q\ufffd.onnx" in outcome.out  # (the test decodes the child's stdout with replace)


def test_messages_show_a_byte_that_is_not_utf8_as_an_escape():
    from ptq_verify.cli import one_line
    from ptq_verify.report.cells import plain_cell

    text = os.fsdecode(b"bad\xffname\n.onnx")
    # (ascii: pytest-xdist cannot send a failure's diff that holds a lone surrogate)
    assert ascii(one_line(f"{text}: no such file")) == ascii("bad\\xffname .onnx: no such file")
    assert ascii(plain_cell(text)) == ascii("bad\\xffname\\n.onnx")


def test_a_ctrl_c_after_the_outputs_are_written_says_they_are(mlp_files, capsys, monkeypatch):
    """Ctrl-C while the summary prints (a full pipe, a pager) said only "interrupted", where
    -o and --report were already written whole (a hostile-input hunt)."""
    from ptq_verify.cli import main, quantize

    tmp, model, calib = mlp_files

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize, "table", stopped)
    out, report = tmp / "q.onnx", tmp / "q.md"
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out), "--report",
                 str(report), "--no-progress"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"ptq-verify: interrupted (written in full before: {out}, {report})"
    assert out.exists() and report.exists()
