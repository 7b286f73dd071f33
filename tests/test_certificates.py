"""Certificate files: deterministic writing, independent re-checking, corruption, staleness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptq_verify import Operator
from ptq_verify.cli import main
from ptq_verify.report import sources as operator_sources
from ptq_verify.report.certificates import (
    certificate_text,
    check_directory,
    read_certificate,
    write_certificates,
)

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "proofs" / "certificates"


@pytest.fixture(scope="module")
def operators() -> dict[str, Operator]:
    ops = [
        Operator("Relu", "x", "max(x, 0)"),
        Operator("Sigmoid", "x", "1/(1 + exp(-x))"),
        Operator("Clip", "x", "clip(x, lo, hi)", params={"lo": 0, "hi": 6}),
        Operator("Mul", "a, b", "a*b"),
        Operator("LeakyRelu", "x", "where(x >= 0, x, alpha*x)", params={"alpha": "0.01"}),
    ]
    return {op.name: op for op in ops}


@pytest.fixture
def written(tmp_path, operators) -> Path:
    write_certificates(operators.values(), tmp_path)
    return tmp_path


def _edit(directory: Path, name: str, change) -> None:
    path = directory / f"{name}.json"
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def _problems(directory: Path, operators, name: str) -> tuple[str, ...]:
    return {r.name: r.problems for r in check_directory(directory, operators)}[name]


def test_regenerating_gives_identical_files(written, operators, tmp_path_factory):
    again = tmp_path_factory.mktemp("again")
    write_certificates(operators.values(), again)
    for path in written.glob("*.json"):
        assert path.read_bytes() == (again / path.name).read_bytes()
    assert read_certificate(written / "Relu.json")["verdict"]["rule"] == "pass_through"


def test_fresh_certificates_recheck(written, operators):
    results = check_directory(written, operators)
    assert [r.name for r in results] == sorted(operators)
    assert all(r.ok for r in results), [r.problems for r in results]


@pytest.mark.parametrize("name", ["Relu", "LeakyRelu"])
def test_changed_residual_is_rejected(written, operators, name):
    def corrupt(c):
        c["verdict"]["certificate"]["cases"][-1]["residual"] = "x*s"

    _edit(written, name, corrupt)
    assert any("residual" in p for p in _problems(written, operators, name))


@pytest.mark.parametrize("name", ["Clip", "LeakyRelu"])
def test_dropped_case_is_rejected(written, operators, name):
    _edit(written, name, lambda c: c["verdict"]["certificate"]["cases"].pop())
    assert any("cover" in p for p in _problems(written, operators, name))


def test_changed_rule_is_rejected(written, operators):
    def corrupt(c):
        c["verdict"]["param_exponents"] = {}
        c["verdict"]["rule"] = "pass_through"

    _edit(written, "Clip", corrupt)
    assert _problems(written, operators, "Clip")


def test_changed_counterexample_value_is_rejected(written, operators):
    def corrupt(c):
        c["verdict"]["certificate"]["point"]["x"] = "1/3"

    _edit(written, "Sigmoid", corrupt)
    assert _problems(written, operators, "Sigmoid")


def test_counterexample_with_equal_sides_is_rejected(written, operators):
    relu_like = {"Sigmoid": Operator("Sigmoid", "x", "1/(1 + exp(-x))")}

    def corrupt(c):
        cx = c["verdict"]["certificate"]
        cx["scale"] = "1"

    _edit(written, "Sigmoid", corrupt)
    assert _problems(written, relu_like, "Sigmoid")


def test_out_of_date_declaration_is_reported(written, operators):
    changed = dict(operators, Relu=Operator("Relu", "x", "max(x, 0) + 0*x + x/2"))
    problems = _problems(written, changed, "Relu")
    assert any(p.startswith("out of date: expression") for p in problems)


def test_missing_and_unknown_files_fail(written, operators):
    (written / "Mul.json").unlink()
    (written / "Extra.json").write_text((written / "Relu.json").read_text())
    results = {r.name: r for r in check_directory(written, operators)}
    assert results["Mul"].problems == ("no certificate file",)
    assert not results["Extra"].ok


def test_cli_exit_status_and_lines(written, operators, monkeypatch, capsys):
    monkeypatch.setattr(operator_sources, "operators_from", lambda file: operators)
    assert main(["check-proofs", str(written)]) == 0
    assert "Relu: ok" in capsys.readouterr().out
    _edit(written, "Sigmoid", lambda c: c["verdict"]["certificate"].update(lhs="1"))
    assert main(["check-proofs", str(written)]) == 1
    assert "Sigmoid: FAILED: " in capsys.readouterr().out


def test_cli_rejects_bad_json(written, operators, monkeypatch, capsys):
    monkeypatch.setattr(operator_sources, "operators_from", lambda file: operators)
    (written / "Relu.json").write_text("{not json")
    assert main(["check-proofs", str(written)]) == 1
    assert "Relu: FAILED: " in capsys.readouterr().out
    assert main(["check-proofs", str(written / "nowhere")]) == 2


def test_committed_certificates_are_current_and_recheck():
    """Calls the checker for the whole catalog (a few seconds) and compares byte for byte."""
    from ptq_verify.catalog import CATALOG

    stale = [
        name
        for name, op in CATALOG.items()
        if not (COMMITTED / f"{name}.json").is_file()
        or (COMMITTED / f"{name}.json").read_text() != certificate_text(op)
    ]
    assert not stale, f"regenerate with `ptq-verify report`: {stale}"
    failed = [r for r in check_directory(COMMITTED, CATALOG) if not r.ok]
    assert not failed, [(r.name, r.problems) for r in failed]
