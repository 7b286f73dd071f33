"""The verdict store keeps, beside each verdict, the facts the engine reads off a declaration's
form and the shift rules of bias absorption, keyed by the declaration as written: a process
that finds them all stored parses no expression and imports no sympy, and reads back exactly
what a process computing them gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptq_verify.catalog import CATALOG
from ptq_verify.catalog.operator import Operator
from ptq_verify.rules.form import structure
from ptq_verify.rules.shift import proved_affine, shift_rule
from ptq_verify.rules.shift_verdict import Shift
from ptq_verify.rules.store import (
    VerdictStore,
    fingerprint,
    stored_proved_affine,
    stored_shift_rule,
    stored_structure,
)
from ptq_verify.rules.structure import Structure

EXAMPLES = Path(__file__).parent.parent / "ptq_verify" / "examples"
FIXTURES = Path(__file__).parent / "fixtures" / "torch"

_QUANTIZE_THEN_SAY_IF_SYMPY = """
import sys
from ptq_verify.cli import main
code = main(["quantize", sys.argv[1], "--calib", sys.argv[2], "-o", sys.argv[3],
             "--no-progress"])
print(code, "sympy" in sys.modules)
"""


@pytest.mark.parametrize(("model", "calib"), [
    (EXAMPLES / "cnn_relu.onnx", EXAMPLES / "cnn_relu.calib.npz"),
    # a transformer's accumulators held wide through their readers (a fact of the form that
    # the wide-sum search reads had been computed with sympy on every run)
    (FIXTURES / "tiny_bert.dynamo.opset17.onnx", FIXTURES / "tiny_bert.calib.npz"),
], ids=["cnn_relu", "tiny_bert"])
def test_a_quantize_whose_verdicts_are_stored_imports_no_sympy(tmp_path, model, calib):
    """The first run proves and stores (sympy); the second reads everything back, and writes
    the same file."""
    env = {**os.environ, "PTQ_VERIFY_CACHE_DIR": str(tmp_path / "cache")}
    said, files = [], []
    for run in range(2):
        files.append(tmp_path / f"q{run}.onnx")
        done = subprocess.run(
            [sys.executable, "-c", _QUANTIZE_THEN_SAY_IF_SYMPY, str(model), str(calib),
             str(files[-1])],
            env=env, capture_output=True, text=True, check=True)
        said.append(done.stdout.split()[-2:])
    assert said == [["0", "True"], ["0", "False"]]
    assert files[0].read_bytes() == files[1].read_bytes()


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_the_stored_structure_of_every_built_in_operator_reads_back_as_computed(name):
    op = CATALOG[name]
    computed = structure(op)
    assert Structure.from_json(computed.to_json()) == computed
    assert stored_structure(op) == computed


def test_the_structure_facts_read_off_the_forms():
    """A few forms whose facts are plain: the engine's decisions rest on them."""
    clip = Operator("clip", "x", "min(hi, max(lo, x))", params=["lo", "hi"])
    add = Operator("add", "a, b", "a + b")
    sub = Operator("sub", "a, b", "a - b")
    maximum = Operator("maximum", "a, b", "max(a, b)")
    sign = Operator("sign", "x", "sign(x)")
    scaled = Operator("scaled", "x", "x/2")
    pad = Operator("pad", "x", "where(k > 0, x, v)", params={"k": 1, "v": "0.5"})
    assert structure(pad).chosen_params == {"v"} and not structure(clip).chosen_params
    assert structure(clip).monotone and not structure(clip).lattice
    assert structure(clip).selection_steps == (("max", "lo"), ("min", "hi"))
    assert structure(add).sum_coefficients == (1.0, 1.0)
    assert structure(sub).sum_coefficients == (1.0, -1.0)
    assert structure(maximum).binary == "max" and structure(maximum).lattice
    assert structure(sign).jumps and not structure(clip).jumps
    assert structure(add).integer_coefficients and not structure(scaled).integer_coefficients
    divide = Operator("divide", "a, b", "a/b")
    ratio = Operator("ratio", "a, b", "(a + b)/(2*b)")
    assert structure(divide).unit_inputs == {"b"}  # a / 1 = a
    assert not structure(ratio).unit_inputs  # (a + 1) / 2 is no integer polynomial
    assert not structure(add).unit_inputs  # an integer polynomial already


@pytest.mark.parametrize(("expr", "params", "through_inputs"), [
    ("min(hi, max(lo, x))", ["lo", "hi"], True),  # proved, parameters moved
    ("max(x, 0)", [], True),  # refuted at an exact point
    ("w*x + b", ["w", "b"], False),  # the bias alone shifts the output
])
def test_a_stored_shift_rule_reads_back_as_computed(expr, params, through_inputs):
    op = Operator("op", "x", expr, params=params)
    computed = shift_rule(op, through_inputs)
    assert Shift.from_json(computed.to_json(), through_inputs) == computed
    assert stored_shift_rule(op, through_inputs) == computed


def test_proved_affine_is_stored_only_when_proved(tmp_path):
    affine = Operator("affine", "x", "2*x + b", params=["b"])
    square = Operator("square", "x", "x*x")
    assert stored_proved_affine(affine, "x") is proved_affine(affine, "x") is True
    assert stored_proved_affine(square, "x") is proved_affine(square, "x") is False
    store = VerdictStore(tmp_path / "v.json")
    store.put_fact("affine-x", square, False)
    assert store.get_fact("affine-x", square, lambda data: True if data is True else None) is None


def test_the_key_is_the_declaration_as_written():
    """Two texts are two keys (a miss, never a wrong hit); so are text and the same
    expression handed as a sympy object, and a declaration that says it mixes channels."""
    one = Operator("op", "x", "2*x")
    other = Operator("op", "x", "x*2")
    mixing = Operator("op", "x", "2*x", mixes_channels=True)
    parsed = Operator("op", "x", one.expr)
    keys = {fingerprint(op) for op in (one, other, mixing, parsed)}
    assert len(keys) == 4
    assert fingerprint(Operator("op", "x", "2*x")) == fingerprint(one)


def test_the_key_holds_the_numeric_libraries_versions(monkeypatch):
    """A counterexample is certified by python-flint's ball arithmetic and the search runs on
    mpmath: a verdict one release computed is not handed out under another (the key had
    sympy's version alone)."""
    from ptq_verify.rules import store as store_module

    op = Operator("op", "x", "2*x")
    before = fingerprint(op)
    assert any(v.startswith("flint ") for v in store_module._library_versions())
    monkeypatch.setattr(store_module, "_library_versions",
                        lambda: ["sympy 1.14.0", "flint 0.0.1", "mpmath 0"])
    assert fingerprint(op) != before


# -- one cache file per version of the checker's code -------------------------------------------


def test_each_version_of_the_code_reads_and_writes_a_file_of_its_own(tmp_path, monkeypatch):
    """A verdict proved by other code is never read back (its key holds the code's digest),
    so its entries in one shared file would only be read and rewritten on every run."""
    from ptq_verify.rules import store

    monkeypatch.setenv("PTQ_VERIFY_CACHE_DIR", str(tmp_path))
    files = []
    for digest in ("a" * 64, "b" * 64):  # two versions of the checker's code, one after the other
        monkeypatch.setattr(store, "_checker_source_digest", lambda digest=digest: digest)
        fresh = store.VerdictStore()
        assert fresh.entries == {}  # nothing of the other version's
        fresh.put_fact("structure", CATALOG["Relu"], {"fact": digest})
        fresh.save()
        files.append(store.cache_path())
    assert files[0] != files[1] and all(path.parent == tmp_path for path in files)
    assert [len(json.loads(path.read_text(encoding="utf-8"))) for path in files] == [1, 1]


def test_old_versions_files_are_removed_beyond_the_newest_few(tmp_path, monkeypatch):
    from ptq_verify.rules import store

    monkeypatch.setenv("PTQ_VERIFY_CACHE_DIR", str(tmp_path))
    versions = [tmp_path / f"verdicts-{store.CHECKER_VERSION}-{n:016x}.json" for n in range(7)]
    for age, path in enumerate(versions):  # the first written last: the newest
        path.write_text("{}", encoding="utf-8")
        os.utime(path, (1e9 - age * 1e6, 1e9 - age * 1e6))
    kept_alone = [tmp_path / name for name in (
        "verdicts-notes.json", f"verdicts-{store.CHECKER_VERSION}.json",
        f"verdicts-{store.CHECKER_VERSION}-{'A' * 16}.json")]
    for path in kept_alone:  # not named as the code names its files: someone else's
        path.write_text("{}", encoding="utf-8")
    saved = store.VerdictStore()
    saved.put_fact("structure", CATALOG["Relu"], {"fact": 1})
    saved.save()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([store.cache_path().name, *(p.name for p in kept_alone),
                           *(p.name for p in versions[:store.KEPT_VERSIONS])])
