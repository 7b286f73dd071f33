"""The console script's own work around :func:`ptq_verify.cli.main`: the cyclic collector is
off while a command imports its modules, and on again after, whatever the command did."""

from __future__ import annotations

import gc
import sys

import pytest

from ptq_verify import cli


@pytest.fixture
def console(monkeypatch):
    """Run ``entry()`` with ``argv`` as the console script would, undoing its exit freeze."""

    def run(*argv: str) -> int:
        monkeypatch.setattr(sys, "argv", ["ptq-verify", *argv])
        try:
            return cli.entry()
        finally:
            gc.unfreeze()

    yield run
    gc.enable()


def test_a_command_that_stops_before_its_imports_leaves_the_collector_on(console, tmp_path):
    assert console("quantize", str(tmp_path / "missing.onnx")) != 0
    assert gc.isenabled()


def test_a_command_turns_the_collector_on_once_its_modules_are_imported(console, monkeypatch):
    seen = []
    imports_done = cli.imports_done

    def watched() -> None:
        seen.append(gc.isenabled())
        imports_done()
        seen.append(gc.isenabled())

    monkeypatch.setattr(cli, "imports_done", watched)
    assert console("audit", "mlp_relu") == 0
    assert seen == [False, True]
    assert gc.isenabled()


def test_imports_done_outside_the_console_script_changes_nothing():
    gc.disable()  # (a library user's own setting)
    try:
        cli.imports_done()
        assert not gc.isenabled()
    finally:
        gc.enable()
