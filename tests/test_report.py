"""Operator pages, plots and the report command."""

from __future__ import annotations

import re
import struct
from fractions import Fraction
from pathlib import Path

import pytest

from ptq_verify import Operator
from ptq_verify.cli import main
from ptq_verify.report import locations
from ptq_verify.report import sources as operator_sources
from ptq_verify.report.pages import operator_page, write_pages
from ptq_verify.report.plots import curves_coincide, write_plot
from ptq_verify.rules import Proof, ProofCase, Rule, RuleKind, Verdict, classify


@pytest.fixture(scope="module")
def operators() -> dict[str, Operator]:
    ops = [
        Operator("Relu", "x", "max(x, 0)"),
        Operator("Sigmoid", "x", "1/(1 + exp(-x))"),
        Operator("Clip", "x", "clip(x, lo, hi)", params={"lo": -1, "hi": 1}),
        Operator("Add", "a, b", "a + b"),
        Operator("Mul", "a, b", "a*b"),
        Operator("Square", "x", "x**2"),
        Operator("Pool", "x0 x1 x2 x3", "max(x0, x1, x2, x3)"),
    ]
    return {op.name: op for op in ops}


@pytest.fixture(scope="module")
def pages(operators, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ops")
    write_pages(operators.values(), out, proofs="../proofs")
    return out


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_every_operator_has_a_page_a_plot_and_an_index_row(pages, operators):
    index = (pages / "index.md").read_text()
    for name in operators:
        assert (pages / f"{name}.md").is_file()
        assert _png_size(pages / f"{name}.png") == (480, 320)
        assert f"[{name}]({name}.md)" in index


def test_relu_page_gives_the_proof_and_the_action(pages, operators):
    page = (pages / "Relu.md").read_text()
    assert "**pass_through**" in page
    assert "s \\max\\left(0, x\\right)" in page  # the identity, typeset
    assert "Passes the scale through" in page
    assert "(Relu.png)" in page and "The curves coincide" in page


def test_direct_proof_page_says_the_difference_simplifies():
    """Rendered from a hand-built certificate, like the sign-split page below: each proof
    method's page is checked whichever method the checker uses for Relu today."""
    op = Operator("Relu", "x", "max(x, 0)")
    proof = Proof("max(0, x*s)", "s*max(0, x)", "direct", (ProofCase({}, "0"),))
    verdict = Verdict("Relu", Rule(RuleKind.PASS_THROUGH, Fraction(1)), proof,
                      expression="max(0, x)")
    page = operator_page(op, verdict)
    assert "simplifies to 0 for all values" in page and "| $0$ |" not in page


def test_sign_split_page_lists_every_case():
    """Rendered from a hand-built certificate: the checker may prove Abs directly."""
    op = Operator("Abs", "x", "abs(x)")
    cases = tuple(ProofCase({"x": sign}, "0") for sign in ("positive", "negative", "zero"))
    proof = Proof("abs(x*s)", "s*abs(x)", "sign_split", cases)
    verdict = Verdict("Abs", Rule(RuleKind.PASS_THROUGH, Fraction(1)), proof, expression="abs(x)")
    page = operator_page(op, verdict)
    assert page.count("| $0$ |") == 3
    assert "$x > 0$" in page and "$x < 0$" in page and "$x = 0$" in page
    assert "two-slope" in page and "sign split" in page


def test_sigmoid_page_gives_the_counterexample(pages, operators):
    page = (pages / "Sigmoid.md").read_text()
    certificate = classify(operators["Sigmoid"]).certificate
    assert "**needs_compensation**" in page
    assert f"s = {certificate.scale}" in page
    assert "No degree works" in page and "Compensates" in page
    assert "The curves differ" in page


def test_parameter_and_join_pages_say_what_changes(pages):
    clip = (pages / "Clip.md").read_text()
    assert "`hi` → s·`hi`" in clip and "`lo` → s·`lo`" in clip
    assert "Aligns its inputs" in (pages / "Add.md").read_text()
    assert "σ_a·σ_b" in (pages / "Mul.md").read_text()
    assert "σ^2" in (pages / "Square.md").read_text()


def test_plots_coincide_exactly_when_a_rule_holds(operators):
    for name, op in operators.items():
        verdict = classify(op)
        assert curves_coincide(op, verdict) == verdict.rule.kind.has_rule, name


def test_plot_bytes_are_reproducible(operators, tmp_path):
    op = operators["Pool"]
    first = write_plot(op, classify(op), tmp_path / "a.png").read_bytes()
    assert write_plot(op, classify(op), tmp_path / "b.png").read_bytes() == first


def test_report_command_writes_pages_and_certificates(operators, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(operator_sources, "operators_from", lambda file: operators)
    code = main(
        ["report", "-o", str(tmp_path / "ops"), "--certificates", str(tmp_path / "c"), "--no-plots"]
    )
    assert code == 0
    assert (tmp_path / "ops" / "index.md").is_file()
    assert not list((tmp_path / "ops").glob("*.png"))
    assert sorted(p.stem for p in (tmp_path / "c").glob("*.json")) == sorted(operators)


def test_report_from_a_toml_file(tmp_path, capsys):
    declarations = tmp_path / "ops.toml"
    declarations.write_text(
        '[[operator]]\nname = "ScaledSwish"\ninputs = "x"\nparams = { beta = "1.702" }\n'
        'expr = "x*sigmoid(beta*x)"\n'
    )
    assert main(["report", "--file", str(declarations), "-o", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out  # one operator, one certificate: said so
    assert "(1 operator) to" in said and "wrote 1 certificate to" in said
    assert "ScaledSwish" in (tmp_path / "out" / "ScaledSwish.md").read_text()
    assert (tmp_path / "out" / "ScaledSwish.png").is_file()
    # -o DIR writes the certificates next to the pages, and they re-check from there
    assert (tmp_path / "out" / "certificates" / "ScaledSwish.json").is_file()
    checked = ["check-proofs", str(tmp_path / "out" / "certificates"), "--file", str(declarations)]
    assert main(checked) == 0


def test_certificates_of_declared_operators_without_their_file_is_one_line(tmp_path, capsys):
    """A new-user trial: `check-proofs DIR` on a folder `report --file ops.toml -o` wrote
    printed a failure for each of the catalog's 136 operators and each of the folder's, and
    exit 1; the folder holds no catalog operator's certificate, so --file is what it lacks."""
    declarations = tmp_path / "ops.toml"
    declarations.write_text('[[operator]]\nname = "Twice"\nexpr = "2*x"\n')
    assert main(["report", "--file", str(declarations), "--no-plots", "-o",
                 str(tmp_path / "out"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["check-proofs", str(tmp_path / "out" / "certificates")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "(Twice) are of operators the built-in catalog does not declare" in captured.err
    assert "--file OPS.toml" in captured.err


def test_an_undecided_operators_plot_is_not_said_to_refute_a_rule(tmp_path):
    """A new-user trial: x**p with p = 2.5 was undecided (it is refuted now, its Euler
    evidence read at drawn values of p), and its page said of the plot "The curves differ: no
    such rule holds", a refutation the checker did not make. The operator here is x**2
    (sign(0) = 0), undecided since sympy cannot tell asin(3/5) - atan(3/4) is 0; its curves
    f(s x) and s f(x) differ too."""
    declarations = tmp_path / "ops.toml"
    declarations.write_text('[[operator]]\nname = "PowP"\n'
                            'expr = "x**(2 + sign(asin(3/5) - atan(3/4)))"\n')
    assert main(["report", "--file", str(declarations), "-o", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    page = (tmp_path / "out" / "PowP.md").read_text()
    assert "**undecided" in page and "no such rule holds" not in page
    assert "decided no rule either way (undecided)" in page


def test_report_shows_progress_on_stderr_unless_told_not_to(tmp_path, capsys, monkeypatch):
    """Pages and plots for the whole catalog take tens of seconds: a bar says it is working
    (on stderr, so stdout keeps only the summary lines), on a terminal only: redirected, its
    carriage returns made a failing run's one-line error several lines for a reader with
    universal newlines (a new-user check)."""
    import sys

    declarations = tmp_path / "ops.toml"
    declarations.write_text('[[operator]]\nname = "Twice"\ninputs = "x"\nexpr = "2*x"\n')
    command = ["report", "--file", str(declarations), "--no-plots", "-o"]
    assert main([*command, str(tmp_path / "redirected")]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*command, str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert "pages" in err and "operator" in err and "pages" not in out.split("wrote")[0]
    assert main([*command, str(tmp_path / "b"), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_pages_link_only_to_proofs_that_exist(tmp_path, monkeypatch, operators):
    """Pages written far from the checkout link its proofs by a path that resolves; with no
    checkout (an installed wheel) they name the theorems without links."""
    out = tmp_path / "far" / "away"
    write_pages([operators["Sigmoid"]], out, plots=False)
    page = (out / "Sigmoid.md").read_text()
    targets = re.findall(r"\]\(([^)]*\.md)\)", page)
    assert targets and all((out / t).resolve().is_file() for t in targets)
    monkeypatch.setattr(locations, "checkout", lambda: None)
    write_pages([operators["Sigmoid"]], out, plots=False)
    unlinked = (out / "Sigmoid.md").read_text()
    assert "refutation.md" not in unlinked and "Theorem 9" in unlinked


def test_check_proofs_runs_from_any_folder(tmp_path, monkeypatch, capsys):
    """Without a folder, check-proofs re-checks the checkout's certificates, not the cwd's."""
    monkeypatch.chdir(tmp_path)
    assert main(["check-proofs"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("certificates re-check")
    monkeypatch.setattr(locations, "checkout", lambda: None)
    assert main(["check-proofs"]) == 2
    assert "check-proofs DIR" in capsys.readouterr().err


def test_report_file_without_output_is_a_user_error(tmp_path, capsys):
    assert main(["report", "--file", str(tmp_path / "ops.toml")]) == 2
    assert "-o DIR" in capsys.readouterr().err
