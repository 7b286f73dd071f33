"""ptq-verify's quantized files on runtimes other than onnxruntime: onnx's reference evaluator
(``onnx.reference.ReferenceEvaluator``) and Intel OpenVINO (CPU), against onnxruntime's
quantize_static as the peer; one table.

For every model (the eight digits examples, a few torch fixtures of tests/fixtures/torch,
all-MiniLM-L6-v2 and EfficientNet-Lite1 when asked) and every file (the float model, ptq-verify's
``--format qdq``, ``integer`` and ``simulation`` at 8 bits, and quantize_static's QDQ int8): does
it load and run in each runtime, how far are its outputs from onnxruntime's run of the same
file (max abs difference, SQNR), the benchmark's metric on the held-out inputs (digits:
accuracy; fixtures: first output's SQNR against the float model in onnxruntime; MiniLM: mean
cosine of the mean-pooled sentence embeddings against the float model's; EfficientNet: top-1
agreement with the float model), and the median
latency of one sample in onnxruntime and OpenVINO, each with its defaults (all cores), and in
OpenVINO with its float ops held in float32: on a CPU with bfloat16 units (AMX, AVX512-BF16)
its default runs them in bfloat16, 50 dB from onnxruntime even on the float model.

onnx.reference (onnx 1.23) implements DequantizeLinear from opset 19 only (QuantizeLinear from
10): a file at an older opset (every torch export below 19, and quantize_static keeps the
model's opset) is refused with "No implementation for operator 'DequantizeLinear' ... version
17". The run is then retried with its newest DequantizeLinear kernel registered for every
version (a superset of opset 13's on the types 13 allows), and the table says so ("runs*").

OpenVINO is not a dependency of ptq-verify: install it apart, never into the project's
environment, and put it on PYTHONPATH for this script only:
    pip install --no-deps --target /tmp/ov openvino openvino-telemetry
    PYTHONPATH=/tmp/ov python benchmarks/other_runtimes.py
Without it, the OpenVINO rows say "not installed".

Run:  python benchmarks/other_runtimes.py [--fixtures] [--minilm DIR] [--efficientnet DIR2]
      [--only NAME,...] [--repeats 50]
      (DIR holds minilm.onnx and minilm.calib.npz: benchmarks/minilm.py --save DIR; its
      held-out texts are minilm.py's evaluation texts, which need its tokenizer package.
      DIR2 holds efficientnet_raw.onnx and efficientnet.calib.npz, exported there when absent
      (efficientnet.py's packages and torch); its metric is top-1 agreement with the float
      model on 16 of efficientnet.py's held-out crops)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import ort_peer
from machine import describe
from onnx.reference import ReferenceEvaluator
from onnx.reference.ops.op_dequantize_linear import DequantizeLinear_25
from train_digits import OUT, missing, train_all

from ptq_verify.cli import main as cli
from ptq_verify.engine import sqnr_db
from ptq_verify.examples import calibration_path, model_path, names

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "torch"
# (file, data stem): both exporters, opsets 13 to 21, convolutions, MLPs and a small BERT
FIXTURE_MODELS = (("digits_cnn.legacy.opset13.onnx", "digits_image"),
                  ("digits_cnn.dynamo.opset20.onnx", "digits_image"),
                  ("digits_mlp.dynamo.opset18.onnx", "digits"),
                  ("digits_norms.dynamo.opset21.onnx", "digits_image"),
                  ("tiny_bert.legacy.opset17.onnx", "tiny_bert"),
                  ("tiny_bert.dynamo.opset20.onnx", "tiny_bert"))
FORMATS = ("float", "qdq", "integer", "simulation", "peer")
# OpenVINO with its defaults (on a CPU with bfloat16 units, its float ops run in bfloat16) and
# with float ops held in float32 (INFERENCE_PRECISION_HINT f32)
RUNTIMES = ("onnxruntime", "onnx.reference", "openvino", "openvino f32")
TIMED = ("onnxruntime", "openvino", "openvino f32")
MINILM_EVALUATION = 64  # held-out texts (the reference evaluator takes seconds per text)
EFFICIENTNET_EVALUATION = 16  # held-out crops (the reference evaluator: seconds per crop)
# onnx.reference keeps every intermediate tensor of a run: all-MiniLM-L6-v2's integer file took
# 3 GB for 4 texts (its thousands of int64 requantization tensors), so it runs this many at once
REFERENCE_BATCH = 4


class DequantizeLinear(DequantizeLinear_25):
    """DequantizeLinear-25's kernel for every opset (10 and 13 are its restriction)."""

    op_domain = ""


@dataclass
class Case:
    """One model: its float file, calibration and held-out inputs, and the metric of its
    outputs (the float model's outputs in onnxruntime and the file's in one runtime)."""

    name: str
    path: Path
    calibration: Path
    held_out: dict[str, np.ndarray]
    metric: Callable[[list[np.ndarray], list[np.ndarray]], str]


def accuracy(labels: np.ndarray) -> Callable[[list[np.ndarray], list[np.ndarray]], str]:
    return lambda _float, outputs: f"acc {100 * np.mean(outputs[0].argmax(1) == labels):.1f}%"


def first_sqnr(float_outputs: list[np.ndarray], outputs: list[np.ndarray]) -> str:
    return f"{sqnr_db(float_outputs[0], outputs[0]):.1f} dB"


def embedding_cosine(mask: np.ndarray) -> Callable[[list[np.ndarray], list[np.ndarray]], str]:
    from minilm import cosine, mean_pooled

    def metric(float_outputs: list[np.ndarray], outputs: list[np.ndarray]) -> str:
        score = cosine(mean_pooled(float_outputs[0], mask), mean_pooled(outputs[0], mask))
        return f"cos {np.mean(score):.4f}"
    return metric


def digits_cases() -> list[Case]:
    if missing():
        train_all()
    cases = []
    for name in names():
        with np.load(OUT / f"{name}.test.npz") as data:
            held_out, labels = {"input": data["input"]}, data["labels"]
        cases.append(Case(name, model_path(name), calibration_path(name), held_out,
                          accuracy(labels)))
    return cases


def fixture_cases() -> list[Case]:
    cases = []
    for file, stem in FIXTURE_MODELS:
        with np.load(FIXTURES / f"{stem}.test.npz") as data:
            held_out = dict(data)
        cases.append(Case(file.removesuffix(".onnx"), FIXTURES / file,
                          FIXTURES / f"{stem}.calib.npz", held_out, first_sqnr))
    return cases


def minilm_case(folder: Path) -> Case:
    from minilm import load_tokenizer, texts, tokenize

    with np.load(folder / "minilm.calib.npz") as data:
        calibrated, length = len(data["input_ids"]), data["input_ids"].shape[1]
    sentences = texts(calibrated + MINILM_EVALUATION)[calibrated:]
    held_out = tokenize(load_tokenizer(), sentences, length)
    return Case("all-MiniLM-L6-v2", folder / "minilm.onnx", folder / "minilm.calib.npz",
                held_out, embedding_cosine(held_out["attention_mask"]))


def top1(float_outputs: list[np.ndarray], outputs: list[np.ndarray]) -> str:
    agree = np.mean(outputs[0].argmax(1) == float_outputs[0].argmax(1))
    return f"top-1 {100 * agree:.1f}%"


def efficientnet_case(folder: Path) -> Case:
    """EfficientNet-Lite1's raw export (BatchNorm, Pad and Constant nodes kept) and
    efficientnet.py's crops: its calibration set and the first EFFICIENTNET_EVALUATION of its
    held-out set (exported into ``folder`` first if it is not there: torch and the weights
    packages, the bench extra)."""
    from efficientnet import crops, export, photos

    path, calibration = folder / "efficientnet_raw.onnx", folder / "efficientnet.calib.npz"
    images = photos()
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        export(path, raw=True)
    if not calibration.exists():
        np.savez(calibration, input=crops(images, 64, half=0, seed=0))
    held_out = {"input": crops(images, EFFICIENTNET_EVALUATION, half=1, seed=1)}
    return Case("EfficientNet-Lite1 (raw)", path, calibration, held_out, top1)


def quantized_files(case: Case, folder: Path) -> dict[str, Path]:
    """The float file and each quantized one, written into ``folder``."""
    files = {"float": case.path}
    for fmt in FORMATS[1:-1]:
        files[fmt] = folder / f"{case.name}.{fmt}.onnx"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = cli(["quantize", str(case.path), "--calib", str(case.calibration),
                          "--bits", "8", "--format", fmt, "-o", str(files[fmt])])
        if status:
            raise SystemExit(f"{case.name}: quantize --format {fmt} exited {status}")
    files["peer"] = folder / f"{case.name}.peer.onnx"
    with np.load(case.calibration) as data, contextlib.redirect_stderr(io.StringIO()):
        ort_peer.write_int8(case.path, dict(data), files["peer"])
    return files


class Runner:
    """One runtime's session on one file: ``run(feeds)`` gives the outputs in the graph's
    order; ``note`` says how it was made to run (a retry)."""

    def __init__(self, runtime: str, path: Path) -> None:
        self.note = ""
        model = onnx.load(path)
        self.outputs = [o.name for o in model.graph.output]
        if runtime == "onnxruntime":
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.run = lambda feeds: session.run(None, feeds)
        elif runtime == "onnx.reference":
            evaluator = ReferenceEvaluator(model)
            self.run = lambda feeds: evaluator.run(None, feeds)
        else:
            import openvino

            config = {"INFERENCE_PRECISION_HINT": "f32"} if runtime.endswith("f32") else {}
            compiled = openvino.Core().compile_model(str(path), "CPU", config)
            ports = list(compiled.outputs)
            self.run = lambda feeds: [np.asarray(r) for r in
                                      (compiled(feeds)[p] for p in ports)]

    def reference_retry(self, path: Path) -> None:
        """onnx.reference with the opset-25 DequantizeLinear kernel for older opsets."""
        evaluator = ReferenceEvaluator(onnx.load(path), new_ops=[DequantizeLinear])
        self.run = lambda feeds: evaluator.run(None, feeds)
        self.note = "*"


def open_runner(runtime: str, path: Path) -> Runner:
    try:
        return Runner(runtime, path)
    except Exception as error:  # noqa: BLE001 - the refusal is the finding
        if runtime == "onnx.reference" and "No implementation for operator" in str(error):
            runner = Runner.__new__(Runner)
            runner.outputs = [o.name for o in onnx.load(path).graph.output]
            runner.reference_retry(path)
            return runner
        raise


def fixed_batch(path: Path) -> int | None:
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].dim_value else None


def run_all(runner: Runner, feeds: dict[str, np.ndarray], batch: int | None) -> list[np.ndarray]:
    total = len(next(iter(feeds.values())))
    step = batch or total
    parts = [runner.run({k: v[i:i + step] for k, v in feeds.items()})
             for i in range(0, total, step)]
    return [np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(len(parts[0]))]


def agreement(reference: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[float, float]:
    """Max abs difference and SQNR (dB, no gain alignment: inf when equal) of the outputs
    against onnxruntime's, all outputs together."""
    a = np.concatenate([np.asarray(r, np.float64).ravel() for r in reference])
    b = np.concatenate([np.asarray(o, np.float64).ravel() for o in outputs])
    noise = float(np.sum((a - b) ** 2))
    sqnr = 10 * np.log10(float(np.sum(a ** 2)) / noise) if noise else float("inf")
    return float(np.max(np.abs(a - b))), sqnr


def latency_ms(runner: Runner, feeds: dict[str, np.ndarray], repeats: int,
               batch: int | None) -> float:
    """The median time of one run on one sample (on the batch the model fixes, if it does,
    per sample), in milliseconds."""
    size = batch or 1
    one = {k: v[:size] for k, v in feeds.items()}
    for _ in range(min(5, repeats)):
        runner.run(one)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.run(one)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)) / size


def openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None
    return openvino.__version__


def rows_of(case: Case, folder: Path, repeats: int,
            runtimes: tuple[str, ...]) -> Iterator[list[str]]:
    """The table's rows for one model, each as soon as it is measured."""
    files = quantized_files(case, folder)
    batch = fixed_batch(case.path)
    float_outputs = run_all(Runner("onnxruntime", case.path), case.held_out, batch)
    for fmt, path in files.items():
        ort_outputs: list[np.ndarray] | None = None
        for runtime in runtimes:
            row = [case.name, fmt, runtime]
            try:
                runner = open_runner(runtime, path)
            except Exception as error:  # noqa: BLE001 - the refusal is the finding
                yield row + [f"refused: {_first_line(error)}", "-", "-", "-", "-"]
                continue
            try:
                outputs = run_all(runner, case.held_out,
                                  batch or (REFERENCE_BATCH if runtime == "onnx.reference"
                                            else None))
            except Exception as error:  # noqa: BLE001
                yield row + [f"fails: {_first_line(error)}", "-", "-", "-", "-"]
                continue
            if ort_outputs is None:
                ort_outputs = outputs
            worst, sqnr = agreement(ort_outputs, outputs)
            timed = (f"{latency_ms(runner, case.held_out, repeats, batch):.3g}"
                     if runtime in TIMED else "-")
            yield row + ["runs" + runner.note, f"{worst:.3g}", f"{sqnr:.1f}",
                         case.metric(float_outputs, outputs), timed]


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(error).__name__])[-1][:110]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, help="folder with minilm.onnx, minilm.calib.npz")
    parser.add_argument("--efficientnet", type=Path,
                        help="folder with (or to export) efficientnet_raw.onnx and its "
                             "calibration crops")
    parser.add_argument("--fixtures", action="store_true",
                        help="also the torch fixtures of tests/fixtures/torch")
    parser.add_argument("--only", help="comma-separated model names to keep")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per file")
    args = parser.parse_args(argv)
    version = openvino_version()
    runtimes = RUNTIMES if version else RUNTIMES[:2]
    cases = digits_cases() + (fixture_cases() if args.fixtures else [])
    if args.minilm:
        cases.append(minilm_case(args.minilm))
    if args.efficientnet:
        cases.append(efficientnet_case(args.efficientnet))
    if args.only:
        cases = [c for c in cases if c.name in args.only.split(",")]
    print("\n".join(describe()))
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, openvino "
          f"{version or 'not installed'}")
    header = ["model", "file", "runtime", "loads/runs", "max |d| vs ORT", "SQNR vs ORT (dB)",
              "metric", "ms/sample"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        for case in cases:
            for row in rows_of(case, Path(folder), args.repeats, runtimes):
                print("| " + " | ".join(row) + " |", flush=True)
    print("runs*: onnx.reference with its DequantizeLinear-25 kernel registered for the "
          "file's older opset")
    return 0


if __name__ == "__main__":
    sys.exit(main())
