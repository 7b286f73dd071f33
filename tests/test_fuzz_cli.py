"""Fuzzing the command line as a new user would meet it (issue 11): expressions in the grammar
and beyond it, mutated TOML declarations, mutated ONNX models and calibration archives, hostile
output paths. Every case runs in a forked process with a time limit (tests/hostile.py) and must
keep the promise: exit 0/1 with a result, or exit 2 with one line on stderr; no traceback, no
hang, and the input files unchanged.

The default run tries a fixed sample of a few dozen cases; ``pytest --slow`` runs the deep run
(FUZZ_CASES cases, 2000 by default) and prints a summary line: cases, failures, hangs, slowest
case and peak memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import hostile
import models
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_grammar import expressions

CASE_LIMIT = 60.0  # seconds per case: the bound for a hang
MEMORY_MB = 2048  # the memory bound, enforced on each case's address space + headroom

# -- expressions ------------------------------------------------------------------------------

_LEAVES = ("x", "y", "alpha", "0", "1", "2", "0.5", "1e-3", "pi", "1/3", "-3.4e38", "1e300")
_EXPONENTS = ("2", "3", "-1", "0.5", "(1/3)", "y", "100", "101", "(1/101)")
_FUNCTIONS = ["exp", "log", "sqrt", "atanh", "sigmoid", "floor", "max", "min"]
_HOSTILE_PIECES = ["**(10**10)", "**1e1000", "**(2**64)", "**(1/10**1000)", "**-1", "/0",
                   "e999999", "[0]", ".real", "__class__", "'s'", "\n", "\x00", "#", "\\",
                   "lambda: 1", "import os", "max(", ")", ",", "==", " if x else ", "@", "^",
                   "9" * 5000, "0x" + "f" * 600, "é", "\u202e", "ⅹ", "1_0", "--", "**", "()",
                   "*sqrt(2)**(10**10)", "*exp(exp(1000))", "*2**3000*2**3000"]


def grammar_text() -> st.SearchStrategy[str]:
    return expressions(3, _LEAVES, _EXPONENTS)


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    """Grammar text, then mutated: pieces spliced in, deep nesting, long sums, or junk."""
    kind = draw(st.sampled_from(["grammar", "grammar", "grammar", "splice", "nest", "wide",
                                 "junk"]))
    if kind == "junk":
        return draw(st.text(min_size=1, max_size=60)).replace("\x00", "?")
    text = draw(grammar_text())
    if kind == "splice":
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(_HOSTILE_PIECES)) + text[at:]
    elif kind == "nest":
        function = draw(st.sampled_from(_FUNCTIONS))
        count = draw(st.integers(2, 120))
        extra = ", 0" if function in ("max", "min") else ""
        text = f"{function}(" * count + text + f"{extra})" * count
    elif kind == "wide":
        count = draw(st.integers(2, 2500))
        join = draw(st.sampled_from(["+", "*", ", "]))
        body = join.join(f"x{i}" for i in range(count))
        text = f"max({body})" if join == ", " else body
    return text.replace("\x00", "?")


@st.composite
def classify_case(draw: st.DrawFn) -> list[str]:
    text = draw(hostile_text())
    if "x" not in text and draw(st.booleans()):
        text = f"x*({text})"
    argv = ["classify", text, "--no-cache"]
    if draw(st.booleans()):
        argv += ["--inputs", draw(st.sampled_from(["x", "x, y", "x y", "x0 x1", ",", "x, x",
                                                   "s", "1x", "x " * 200]))]
    if draw(st.integers(0, 3)) == 0:
        value = draw(st.sampled_from(["1", "-1e-3", "1e999999", "1/0", "nan", "inf", "abc",
                                      "9" * 5000, "1e1000", "0x10", "", "=", "true"]))
        argv += ["--params", f"alpha={value}"]
    return argv


# -- TOML --------------------------------------------------------------------------------------

_TOML_VALUES = ["5", "true", "[1, 2]", "{a = 1}", "1e999999", "-inf", "nan", "'x'", "''",
                "'1e999999'", "1" + "0" * 5000, "[" * 3000 + "]" * 3000, "'x**(10**10)'",
                "'exp(' * 2'", "'\\u0000'", "[[1], ['x']]", "{b = true}", "{b = [1]}",
                "{b = '1/0'}", "1979-05-27", "'s'"]
_TOML_KEYS = ["name", "inputs", "params", "expr", "onnx_type", "doc", "colour"]


@st.composite
def toml_text(draw: st.DrawFn) -> str:
    """A valid declaration file, then keys given hostile values, deleted, duplicated, or its
    text cut or spliced."""
    tables = [{"name": "'A'", "inputs": "'x'", "params": "{ beta = '1.702' }",
               "expr": "'x*sigmoid(beta*x)'"}]
    if draw(st.booleans()):
        tables.append({"name": draw(st.sampled_from(["'B'", "'A'"])), "expr": "'max(x, 0)'"})
    for _ in range(draw(st.integers(1, 3))):
        table = draw(st.sampled_from(tables))
        key = draw(st.sampled_from(_TOML_KEYS))
        if draw(st.integers(0, 4)) == 0:
            table.pop(key, None)
        else:
            table[key] = draw(st.sampled_from(_TOML_VALUES))
    text = "".join(
        "[[operator]]\n" + "".join(f"{k} = {v}\n" for k, v in t.items()) for t in tables
    )
    cut = draw(st.sampled_from(["none", "none", "truncate", "splice"]))
    if cut == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif cut == "splice":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\n[[", "=", "\"", "]]", "\x7f", "é"])) + text[at:]
    return text


# -- models and calibration data ----------------------------------------------------------------


def _model_bytes(name: str) -> bytes:
    made = {"matmul": hostile.matmul_model, "mlp": lambda: models.mlp("Sigmoid"),
            "clip": hostile.clip_to_empty_range,
            "bomb": lambda: hostile.expand_bomb(through_constants=True)}[name]()
    return made.SerializeToString()


def _mutated(data: bytes, draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["same", "same", "flip", "truncate", "insert"]))
    if kind == "same" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if kind == "truncate":
        return data[:at]
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


def _calibration(draw: st.DrawFn, features: int) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["good", "good", "nan", "shape", "object", "huge", "crc",
                                 "truncated", "int", "empty", "mutated"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    good = rng.random((8, features), dtype=np.float32)
    folder = Path(os.environ.get("TMPDIR", "/tmp"))
    scratch = folder / f"fuzz-scratch-{os.getpid()}.npz"
    makers = {"object": hostile.npz_object_array, "huge": hostile.npz_huge_header,
              "crc": hostile.npz_bad_crc, "truncated": hostile.npz_truncated}
    if kind in makers:
        data = makers[kind](scratch).read_bytes()
        scratch.unlink()
        return "calib.npz", data
    array = {"good": good, "mutated": good, "nan": np.where(good > 0.5, np.nan, good),
             "shape": good[:, :-1], "int": good.astype(np.int64), "empty": good[:0]}[kind]
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    return "calib.npy", _mutated(data, draw) if kind == "mutated" else data


@st.composite
def model_case(draw: st.DrawFn) -> tuple[list[str], dict[str, bytes]]:
    name = draw(st.sampled_from(["matmul", "matmul", "mlp", "clip", "bomb"]))
    files = {"model.onnx": _mutated(_model_bytes(name), draw)}
    command = draw(st.sampled_from(["audit", "quantize", "quantize"]))
    if command == "audit":
        form = draw(st.sampled_from([[], ["--json"], ["--markdown"]]))
        return ["audit", "model.onnx", *form], files
    calib, data = _calibration(draw, 64 if name == "mlp" else 4)
    files[calib] = data
    output = draw(st.sampled_from(["q.onnx"] * 6 + ["model.onnx", calib, "fifo", "folder",
                                                     "missing/q.onnx", "/proc/self/mem"]))
    argv = ["quantize", "model.onnx", "--calib", calib, "-o", output, "--no-progress",
            "--weight-rounding", "nearest"]
    argv += draw(st.sampled_from([[], [], [], ["--bits", "4"], ["--bits", "abc"],
                                  ["--bits", "99"], ["--report", output], ["--report", "fifo"],
                                  ["--report", "q.md"], ["--per-tensor", "--bits", "3"],
                                  ["--format", "integer"], ["--format", "simulation"],
                                  ["--format", "integer", "--bits", "16"], ["--format", "x"],
                                  ["--percentile", "nan", "--calibration", "percentile"]]))
    return argv, files


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[str], dict[str, bytes]]:
    """One command line and the files it reads, written into a fresh folder."""
    kind = draw(st.sampled_from(["classify", "classify", "toml", "model", "model"]))
    if kind == "classify":
        return draw(classify_case()), {}
    if kind == "toml":
        command = draw(st.sampled_from([["classify"], ["check-proofs", "."]]))
        return [*command, "--file", "ops.toml"], {"ops.toml": draw(toml_text()).encode()}
    return draw(model_case())


# -- the runner ----------------------------------------------------------------------------------


def _digest(folder: Path, names) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names}


def run_case(case, folder: Path) -> tuple[hostile.Outcome, str | None]:
    """Run one case in ``folder``; the outcome and what it broke (None: nothing)."""
    argv, files = case
    for name, data in files.items():
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "fifo")
    (folder / "folder").mkdir()
    before = _digest(folder, files)
    outcome = hostile.run_cli(argv, limit=CASE_LIMIT, cwd=folder, memory_mb=MEMORY_MB)
    problem = hostile.broken_promise(outcome)
    if problem is None and _digest(folder, files) != before:
        problem = "an input file was modified"
    if problem is None and not (folder / "fifo").is_fifo():
        problem = "the FIFO was replaced"
    if problem is None and outcome.status == 0 and "Traceback" in outcome.out:
        problem = "a traceback on stdout"
    return outcome, problem


class Tally:
    """Outcomes of a fuzz run, and its one-line summary."""

    def __init__(self) -> None:
        self.outcomes: list[hostile.Outcome] = []
        self.failures: list[tuple[list[str], str]] = []

    def add(self, outcome: hostile.Outcome, problem: str | None) -> None:
        self.outcomes.append(outcome)
        if problem:
            self.failures.append((outcome.argv, problem))

    def summary(self) -> str:
        statuses: dict[object, int] = {}
        for o in self.outcomes:
            statuses[o.status] = statuses.get(o.status, 0) + 1
        slowest = max(self.outcomes, key=lambda o: o.seconds)
        tracebacks = sum("Traceback" in o.err for o in self.outcomes)
        return (f"fuzz: {len(self.outcomes)} cases, {len(self.failures)} failures, "
                f"{tracebacks} tracebacks, {sum(o.hung for o in self.outcomes)} hangs over "
                f"{CASE_LIMIT:.0f} s; exit statuses {statuses}; slowest {slowest.seconds:.1f} s "
                f"({' '.join(slowest.argv)[:80]!r}); peak memory "
                f"{max(o.peak_mb for o in self.outcomes):.0f} MB")


def _fuzz(tmp_path_factory, examples: int, derandomize: bool) -> Tally:
    tally = Tally()
    counter = iter(range(10**9))

    @settings(max_examples=examples, deadline=None, derandomize=derandomize,
              database=None, phases=["generate"],
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def one(case):
        folder = tmp_path_factory.mktemp(f"case{next(counter)}")
        tally.add(*run_case(case, folder))

    one()
    return tally


def test_fuzz_quick_sample(tmp_path_factory):
    tally = _fuzz(tmp_path_factory, examples=24, derandomize=True)
    assert not tally.failures, "\n".join(f"{p}: {a}" for a, p in tally.failures[:10])


@pytest.mark.slow
def test_fuzz_deep(tmp_path_factory, capsys):
    tally = _fuzz(tmp_path_factory, examples=int(os.environ.get("FUZZ_CASES", "2000")),
                  derandomize=False)
    with capsys.disabled():
        print("\n" + tally.summary())
        for argv, problem in tally.failures[:40]:
            print(f"  FAIL {problem}: {' '.join(argv)[:200]!r}")
    assert not tally.failures


def test_archive_makers_are_what_they_claim(tmp_path):
    """The hostile archives really are broken in the way their names say."""
    with zipfile.ZipFile(hostile.npz_bad_crc(tmp_path / "c.npz")) as archive:
        assert archive.testzip() == "x.npy"
    with pytest.raises(ValueError):
        np.load(hostile.npz_object_array(tmp_path / "o.npz"), allow_pickle=False)["x"]
