"""Whole-process speed: `ptq-verify quantize` against onnxruntime's quantize_static.

Each run is a fresh Python process, timed from its start to the quantized file written: the
command line `ptq-verify quantize MODEL --calib DATA -o OUT --no-progress` (8 bits, its
defaults: per-channel weights, output-aware rounding, bias correction, qdq) and
`python ort_peer.py MODEL DATA OUT` (quantize_static: QDQ int8, MinMax, per tensor) on the same
model and calibration set (the peer's command line imports nothing of ptq-verify for these
batch-first models: benchmarks/ort_peer.py). Runs are paired and interleaved (ours, peer,
ours, peer, ...) so that a change of load on a shared machine hits both; the table gives each
pair and the median ratio, with the load average before and after.

The verdict store (`$PTQ_VERIFY_CACHE_DIR`) is emptied before the first run, which therefore
includes proving the model's operators ("cold"); the later runs read the verdicts back.

Both commands run as on a user's machine, where Python keeps compiled modules: an environment
that sets PYTHONDONTWRITEBYTECODE (some CI images do) would make every run compile
ptq-verify's own sources again (0.15 s on the digits CNN; an editable install ships none
compiled) while the peer's installed modules come compiled. So the children run without it,
and ptq-verify's package is compiled once before the first run.

Models: the digits CNN (`benchmarks/out/cnn_sigmoid.onnx`, `python benchmarks/train_digits.py`)
and all-MiniLM-L6-v2 (`benchmarks/out/minilm.onnx`, 128 calibration texts of 64 tokens,
exported here with benchmarks/minilm.py's export when missing; needs the bench extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
MODELS = {
    "cnn_sigmoid": (OUT / "cnn_sigmoid.onnx", OUT / "cnn_sigmoid.calib.npz"),
    "minilm": (OUT / "minilm.onnx", OUT / "minilm.calib.npz"),
}


def ensure(name: str) -> None:
    """Make the model and its calibration data when they are missing."""
    model, calib = MODELS[name]
    if model.exists() and calib.exists():
        return
    if name == "minilm":
        import numpy as np

        sys.path.insert(0, str(HERE))
        import minilm

        OUT.mkdir(exist_ok=True)
        tokenizer = minilm.export(64, model)
        np.savez(calib, **minilm.tokenize(tokenizer, minilm.texts(128), 64))
    else:
        subprocess.run([sys.executable, str(HERE / "train_digits.py")], check=True)


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compiled(env: dict[str, str]) -> None:
    """Compile ptq-verify's modules where they are installed (what a first run would do)."""
    import ptq_verify

    package = str(Path(ptq_verify.__file__).parent)
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="any of " + ", ".join(MODELS) + " (default: all)")
    parser.add_argument("--runs", type=int, default=3, help="paired runs per model (>= 3)")
    args = parser.parse_args(argv)
    args.models = args.models or list(MODELS)
    if unknown := set(args.models) - set(MODELS):
        parser.error(f"unknown model {sorted(unknown)[0]!r}: choose from {', '.join(MODELS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    # the installed command; from an environment not activated, this interpreter's module
    ours_command = [shutil.which("ptq-verify") or sys.executable]
    if ours_command[0] == sys.executable:
        ours_command += ["-m", "ptq_verify"]
    print("| model | run | ptq-verify (s) | onnxruntime quantize_static (s) | ratio |")
    print("|---|---|---|---|---|")
    summary = []
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, PTQ_VERIFY_CACHE_DIR=str(Path(folder) / "cache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        compiled(env)
        for name in args.models:
            ensure(name)
            model, calib = MODELS[name]
            before = load()
            ratios = []
            for run in range(args.runs):
                ours = timed([*ours_command, "quantize", str(model), "--calib", str(calib),
                              "-o", str(Path(folder) / "ours.onnx"), "--no-progress"], env)
                peer = timed([sys.executable, str(HERE / "ort_peer.py"), str(model),
                              str(calib), str(Path(folder) / "peer.onnx")], env)
                ratios.append(ours / peer)
                label = "1 (cold verdict store)" if run == 0 else str(run + 1)
                print(f"| {name} | {label} | {ours:.2f} | {peer:.2f} | {ours / peer:.2f} |",
                      flush=True)
            summary.append((name, statistics.median(ratios), before, load()))
    print()
    for name, ratio, before, after in summary:
        print(f"{name}: median ratio {ratio:.2f} (load average before {before}, after {after})")
    sys.path.insert(0, str(HERE))
    from machine import describe

    for line in describe():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
