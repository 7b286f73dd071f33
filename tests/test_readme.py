"""The README's quantize session, run as a newcomer runs it: the installed ``ptq-verify`` on a
shipped example model, from a folder outside the checkout, with nothing but the README's install
(no torch). The printed plan must be the one the README shows."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
from console import console_script

README = Path(__file__).resolve().parent.parent / "README.md"


def _quantize_session() -> tuple[list[str], list[str]]:
    """The README's quantize command (argv after the program) and the lines it prints."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^\$ ptq-verify (quantize .*)\n((?:(?!\$ |```).*\n)+)", text, re.M)
    assert match, "README: no `$ ptq-verify quantize` session"
    return shlex.split(match.group(1)), match.group(2).splitlines()


def test_readme_quantize_session_runs_and_prints_what_the_readme_shows(tmp_path):
    argv, shown = _quantize_session()
    written = argv[argv.index("-o") + 1]
    target = tmp_path / "out.onnx"
    argv[argv.index("-o") + 1] = str(target)
    work = tmp_path / "cwd"
    work.mkdir()
    result = subprocess.run([console_script(), *argv, "--no-progress"], cwd=work,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not list(work.iterdir()), "quantize wrote into the current folder"
    printed = result.stdout.replace(str(target), written).splitlines()
    # node, op type and rule of every row, and the summary line, as the README shows them
    assert [row.split()[:3] for row in printed[:-1]] == [row.split()[:3] for row in shown[:-1]]
    assert printed[-1] == shown[-1]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    batch = np.zeros([2 if not isinstance(d, int) else d for d in feed.shape], np.float32)
    (logits,) = session.run(None, {feed.name: batch})
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_readme_catalog_listing_is_what_classify_prints():
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^\$ ptq-verify classify \| head -(\d+)\n((?:(?!\$ |```).*\n)+)", text,
                      re.M)
    assert match, "README: no `$ ptq-verify classify | head` session"
    shown = match.group(2).rstrip("\n").splitlines()
    printed = subprocess.run([console_script(), "classify"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert shown == printed[:int(match.group(1))]
