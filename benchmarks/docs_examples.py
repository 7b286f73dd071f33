"""The docs' examples run as written (a new-user trial, docs/benchmarks-real.md).

Every fenced ```python, ```console, ```bash and ```sh block of README.md and docs/{catalog,
engine,grammar,testing,checker,reports}.md is run from a fresh folder per page, the blocks of a
page in order in that folder (a block may read what an earlier one wrote). A console block's
``$ `` lines are run with bash, stdout and stderr together, and what they print is compared
with the lines the docs show under them. A Python block is run as a script; one that defines
``test_`` functions is run as docs/testing.md runs it (``pytest -q --tb=short test_my_ops.py``)
and the ``E`` lines of the ```text block that follows it in the page are looked for in its
output (the docs trim the traceback frames); a ``print(...)  # text`` must print the start of
that text. Blocks that stand for a user's own model, data or
session (``model.onnx``, ``ids``, ``loader``, ``streams = ...``) get one from the committed
fixtures (tests/fixtures/torch/; ``SETUP`` and ``SUBST`` below) and, where they write a
calibration file, ``ptq-verify quantize`` is run on it and that model (``QUANTIZE``). The
install block (a venv and pip) is not run. A block whose imports are not installed (Pillow,
transformers) is skipped, so the script itself needs no torch.

Run:  python benchmarks/docs_examples.py [--out DIR] [PAGE ...]   (~1 min on 2 cores;
      the venv activated, so that ``ptq-verify`` is the checkout's; exit 1 if a block failed)
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures" / "torch"
PAGES = ["README.md", "docs/catalog.md", "docs/engine.md", "docs/grammar.md", "docs/testing.md",
         "docs/checker.md", "docs/reports.md"]

# What a block leaves to the reader, keyed by (page, text the block holds): code run before it.
SETUP = {
    ("README.md", 'np.savez("calib.npz", input_ids=ids'): f"""
import shutil
import numpy as np
d = np.load("{FIX}/tiny_bert.calib.npz")
ids, mask = d["input_ids"], d["attention_mask"]
shutil.copy("{FIX}/tiny_bert.legacy.opset17.onnx", "model.onnx")
""",
    ("docs/engine.md", "tokenizer = AutoTokenizer"): f"""
import os, shutil
from transformers import BertTokenizerFast
os.makedirs("tok", exist_ok=True)
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "first", "second", "text", "."]
words += [f"w{{i}}" for i in range(64 - len(words))]  # tiny_bert's 64-word vocabulary
with open("tok/vocab.txt", "w") as f:
    f.write("\\n".join(words))
BertTokenizerFast("tok/vocab.txt").save_pretrained("tok")
shutil.copy("{FIX}/tiny_bert_dynamic.legacy.opset17.onnx", "model.onnx")
""",
    ("docs/engine.md", "from PIL import Image"): """
import os
import numpy as np
from PIL import Image
os.makedirs("images", exist_ok=True)
for i in range(4):
    pixels = np.random.default_rng(i).integers(0, 255, (300, 280, 3), np.uint8)
    Image.fromarray(pixels).save(f"images/{i}.png")
""",
    ("docs/engine.md", "batches = [images.numpy()"): f"""
import numpy as np
class Batch:  # what a torch DataLoader yields, without torch
    def __init__(self, array): self.array = array
    def numpy(self): return self.array
digits = np.load("{FIX}/digits.calib.npz")["input"]
loader = [(Batch(digits[i:i + 16]), Batch(np.zeros(16))) for i in range(0, len(digits), 16)]
""",
    ("docs/engine.md", 'InferenceSession("stream.onnx")'): f"""
import shutil
import numpy as np
import onnxruntime
shutil.copy("{FIX}/digits_lstm_state.legacy.opset17.onnx", "stream.onnx")
""",
    ("docs/engine.md", "P = 8"): f"""
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession("{FIX}/tiny_llama_past.legacy.opset17.onnx")
ids = np.random.default_rng(0).integers(0, 64, (36, 12))
heads, head_dim = 1, 16
past_names = [i.name for i in session.get_inputs() if i.name.startswith("past_key_values")]
""",
    ("docs/engine.md", "hidden = encoder.run"): """
import numpy as np
class Encoder:  # no with-past Marian decoder is committed: the block's arithmetic alone
    def run(self, _, feeds): return [np.zeros(feeds["input_ids"].shape + (32,), np.float32)]
encoder, rng = Encoder(), np.random.default_rng(0)
src_ids, src_mask = rng.integers(0, 64, (8, 6)), np.ones((8, 6), np.int64)
tgt, start, heads, head_dim, layers, cross = rng.integers(0, 64, (8, 5)), 0, 2, 16, 2, {}
""",
}
# Placeholders in a block replaced by what fits the fixture.
SUBST = {
    ("docs/engine.md", "tokenizer = AutoTokenizer"): [
        ("path/to/model", "tok"), ("max_length=128", "max_length=16")],  # tiny_bert: 16 positions
    ("docs/engine.md", "batches = [images.numpy()"): [("x=np.concatenate", "input=np.concatenate")],
    ("docs/engine.md", 'InferenceSession("stream.onnx")'): [
        ("streams = ...", "streams = np.random.default_rng(0).normal(size=(16, 12, 8))"
                          ".astype(np.float32)")],
}
# The model a block's calibration file is for: `ptq-verify quantize MODEL --calib calib.npz`.
QUANTIZE = {
    ("README.md", 'np.savez("calib.npz", input_ids=ids'): "model.onnx",
    ("docs/engine.md", "tokenizer = AutoTokenizer"): "model.onnx",
    ("docs/engine.md", "batches = [images.numpy()"): f"{FIX}/digits_mlp.legacy.opset17.onnx",
    ("docs/engine.md", 'InferenceSession("stream.onnx")'): "stream.onnx --float-op LSTM",
    ("docs/engine.md", "P = 8"): f"{FIX}/tiny_llama_past.legacy.opset17.onnx",
}


def blocks(page: str) -> list[tuple[int, str, str, str]]:
    """(line, language, text, the ```text block after it or '') of each runnable block."""
    lines = (ROOT / page).read_text(encoding="utf-8").split("\n")
    fences = []
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while not lines[j].strip().startswith("```"):
                j += 1
            fences.append((i + 1, m.group(1), textwrap.dedent("\n".join(lines[i + 1:j]))))
            i = j
        i += 1
    out = []
    for k, (line, lang, text) in enumerate(fences):
        if lang in ("python", "console", "bash", "sh"):
            after = fences[k + 1][2] if k + 1 < len(fences) and fences[k + 1][1] == "text" else ""
            out.append((line, lang, text, after))
    return out


def shell(command: str, cwd: Path, extra_path: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), extra_path) if p),
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    return run.returncode, run.stdout


def run_console(text: str, cwd: Path, extra_path: str) -> list[tuple[str, str, str]]:
    """(command, result, short diff) of each `$ ` line, its output against the lines shown."""
    rows: list[tuple[str, str, str]] = []
    command, shown = None, []
    for line in text.split("\n") + ["$ "]:
        if not line.startswith("$ "):
            shown.append(line)
            continue
        if command:
            while shown and not shown[-1].strip():
                shown.pop()
            _, got = shell(command, cwd, extra_path)
            diff = list(difflib.unified_diff(shown, got.rstrip("\n").split("\n"), lineterm="",
                                             n=0))[2:]
            rows.append((command, "differs" if diff else "ran", " / ".join(diff[:4])))
        command, shown = line[2:], []
    return rows


def run_python(page: str, text: str, after: str, cwd: Path, extra_path: str) -> tuple[str, str]:
    key = next((k for k in SETUP if k[0] == page and k[1] in text), None)
    for old, new in SUBST.get(key, []):
        text = text.replace(old, new)
    source = SETUP.get(key, "") + text
    if "def test_" in text:
        (cwd / "test_my_ops.py").write_text(source)
        _, out = shell(f"{sys.executable} -m pytest -q --tb=short -p no:cacheprovider "
                       "test_my_ops.py", cwd, extra_path)
        missing = [e for e in after.split("\n") if e.startswith("E ") and e not in out]
        summary = out.strip().split("\n")[-1]
        return ("differs", f"{summary}; not in the output: {missing[0]!r}") if missing else (
            "ran", summary)
    (cwd / "block.py").write_text(source)
    code, out = shell(f"{sys.executable} block.py", cwd, extra_path)
    last = out.strip().split("\n")[-1] if out.strip() else ""
    if code:
        needs = re.match(r"ModuleNotFoundError: No module named '(\w+)", last)
        return ("skipped", f"needs {needs.group(1)}") if needs else ("failed", last)
    # a print whose line comments what it prints: the comment starts with the printed line
    shown = re.findall(r"^print\(.*\)\s+#\s*(.+)$", text, re.M)
    for comment, printed in zip(shown, out.strip().split("\n")):
        if not comment.startswith(printed):
            return "differs", f"printed {printed!r}, the docs show {comment!r}"
    if key not in QUANTIZE:
        return "ran", last
    code, out = shell(f"ptq-verify quantize {QUANTIZE[key]} --calib calib.npz -o q.onnx "
                      "--no-progress", cwd, extra_path)
    told = [line for line in out.split("\n") if " -> " in line or "error:" in line]
    return ("ran" if code == 0 else "failed"), "quantize: " + (told[-1] if told else out[-200:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pages", nargs="*", help=f"pages to run (default: {' '.join(PAGES)})")
    parser.add_argument("--out", type=Path, help="the folders the pages run in (default: a "
                        "temporary one, removed)")
    parser.add_argument("--extra-path", default="", help="a folder for PYTHONPATH (Pillow "
                        "installed apart with pip --target)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        out = args.out or Path(temporary)
        rows = []
        for page in args.pages or PAGES:
            cwd = out / page.replace("/", "_")
            cwd.mkdir(parents=True, exist_ok=True)
            for line, lang, text, after in blocks(page):
                where = f"{page}:{line}"
                if lang == "python":
                    rows.append((where, "python", *run_python(page, text, after, cwd,
                                                              args.extra_path)))
                elif lang == "console":
                    rows += [(where, "$ " + c, r, d)
                             for c, r, d in run_console(text, cwd, args.extra_path)]
                else:
                    rows.append((where, lang, "skipped", "installs (a venv, pip)"))
    print(f"{'block':22} {'what':44} {'result':8} note")
    for where, what, result, note in rows:
        what = what if len(what) <= 44 else what[:41] + "..."
        print(f"{where:22} {what:44} {result:8} {note[:160]}")
    counts = {r: sum(row[2] == r for row in rows) for r in ("ran", "differs", "failed", "skipped")}
    print(", ".join(f"{n} {r}" for r, n in counts.items()))
    sys.exit(1 if counts["differs"] or counts["failed"] else 0)


if __name__ == "__main__":
    main()
