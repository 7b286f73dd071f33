"""Every model file shipped in the onnx wheel's backend test data through ptq-verify, beside
onnxruntime's quantize_static (a new-user trial, docs/benchmarks-real.md).

The installed onnx package holds, under ``onnx/backend/test/data``, real files written by old
tools at old opsets: ``light/`` (nine ONNX Model Zoo CNNs at opset 9 from onnx-caffe2, their
weights made by ConstantOfShape nodes), ``pytorch-converted/`` and ``pytorch-operator/`` (torch
exports at opsets 6 to 9, each with ``test_data_set_0/input_*.pb``) and ``simple/`` (hand-made
models of the backend tests); ``real/`` holds download pointers only and is skipped. Nothing is
downloaded: every file is read from the installed package.

For each model: whether the model ptq-verify loads from the file (converted to opset 13 by
onnx's version converter where the file is older) computes in onnxruntime the reference
outputs the wheel ships; ``ptq-verify audit MODEL`` (exit 0 with every node listed, or a
refusal in one line); ``ptq-verify quantize MODEL --calib CALIB.npz -o OUT`` in the qdq and
integer formats; and ``quantize_static`` (per-channel QDQ, benchmarks/ort_peer.py) on the
same data, on the file and, where it fails there or writes a file onnxruntime cannot load
(per-channel QDQ below opset 13), on the file converted to opset 13 as well. Where
onnxruntime cannot load the file itself (opset 6's Add, Mul, Gemm, BatchNormalization), the
float reference is the file converted to opset 13 by onnx's version converter.
The calibration data are COUNT copies of the test input, each float input plus seeded noise of
its own scale (standard deviation, else 1), joined along axis 0, the model's fixed batch
(``ptq_verify.engine.data``); integer, boolean and string inputs are copied as they are (a
shape, an index or a string stays valid). The light models, which ship no input, take random
images of the input's shape scaled like ImageNet-normalised ones (uniform pixels in [0, 1]
less the ImageNet mean, over its standard deviation). Held out: COUNT more copies drawn with
another seed, each run alone in onnxruntime; the SQNR (dB) is of every float output of every
held-out copy against the float model's (the lowest over the outputs), "exact" where the two
agree to the last bit. The light models' weights are constants (every channel alike), so
their 1000 logits are equal and their Softmax output is 1/1000 for any input: each is run
a second time with its last Softmax cut off (a row "... logits"), which measures the
network's arithmetic. A cell that is not a figure is the run's exit status and its last
stderr line. A run whose stderr holds a traceback, that exits 3, that refuses in more than
one line or that exits 0 with anything on stderr is marked DEFECT, and so is a loaded model
that computes other outputs than the shipped ones, or a written file onnxruntime fails on.

Run:  python benchmarks/onnx_wheel_models.py [--samples COUNT] [--light-samples N] [NAME ...]
      (NAME: a part of a model's path, e.g. ``light`` or ``test_GLU``; no torch needed;
      ~50 min on 2 shared cores, the light models most of it)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper, version_converter

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
FOLDERS = ("light", "pytorch-converted", "pytorch-operator", "simple")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def model_files(patterns: list[str]) -> list[Path]:
    """The wheel's model files, by folder and name, keeping those whose path holds one of
    ``patterns`` (all where none is given)."""
    found = []
    for folder in FOLDERS:
        found += sorted((DATA / folder).glob("*.onnx"))
        found += sorted((DATA / folder).glob("*/model.onnx"))
    return [path for path in found
            if not patterns or any(p in str(path.relative_to(DATA)) for p in patterns)]


def label(path: Path) -> str:
    relative = path.relative_to(DATA)
    return str(relative.parent if relative.name == "model.onnx" else relative.with_suffix(""))


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The model's inputs that are no initializers (what a user feeds)."""
    constants = {t.name for t in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in constants]


def test_inputs(path: Path, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The test input the wheel ships beside ``path`` (``test_data_set_0/input_i.pb``, the
    i-th graph input), or for a light model a random ImageNet-like image of each input's
    shape."""
    inputs = graph_inputs(model)
    folder = path.parent / "test_data_set_0"
    if folder.is_dir():
        return {value.name: read_tensor(folder / f"input_{i}.pb")
                for i, value in enumerate(inputs)}
    rng = np.random.default_rng(0)
    arrays = {}
    for value in inputs:
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        arrays[value.name] = image_like(rng, shape)
    return arrays


def shipped(path: Path, model: onnx.ModelProto
            ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The input and reference outputs the wheel ships for ``path``: test_data_set_0's, or
    for a light model its ``_output_0.pb`` beside the input onnx's backend test runner feeds
    it (``arange(n) / n`` of the input's shape, ``generate_dummy_data``)."""
    folder = path.parent / "test_data_set_0"
    if folder.is_dir():
        files = sorted(folder.glob("output_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
        return test_inputs(path, model), [read_tensor(file) for file in files]
    feeds = {}
    for value in graph_inputs(model):
        shape = [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = (np.arange(np.prod(shape)).reshape(shape)
                             / np.prod(shape)).astype(np.float32)
    return feeds, [read_tensor(path.with_name(f"{path.stem}_output_0.pb"))]


def read_tensor(file: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(file.read_bytes())
    return numpy_helper.to_array(tensor)


def loaded_cell(path: Path, model: onnx.ModelProto) -> str:
    """Whether the model ptq-verify loads (converted by onnx's version converter where the
    file is older than opset 13, ``ptq_verify.graph.onnx_io.upgraded``) computes, in
    onnxruntime, the reference outputs the wheel ships: "same" (1e-3 relative), the largest
    gap, or why it cannot tell."""
    from ptq_verify.graph.onnx_io import upgraded

    loaded = upgraded(onnx.load(str(path)))[0]
    feeds, expected = shipped(path, model)
    try:
        found = ort.InferenceSession(loaded.SerializeToString()).run(None, feeds)
    except Exception as error:  # the loaded model does not run: say why
        return f"does not run: {one_line(error, 60)}"
    for want, got in zip(expected, found):
        if want.dtype.kind not in "fc":
            if not np.array_equal(want, got):
                return "DEFECT: differs"
        elif np.shape(want) != np.shape(got) or not np.allclose(
                want, got, rtol=1e-3, atol=1e-4 * float(np.max(np.abs(want), initial=0)),
                equal_nan=True):
            return f"DEFECT: differs by {float(np.max(np.abs(want - got))):.3g}"
    return "same"


def image_like(rng: np.random.Generator, shape: list[int]) -> np.ndarray:
    """Uniform pixels in [0, 1] normalised with ImageNet's mean and std over axis 1."""
    pixels = rng.random(shape)
    where = [1] * len(shape)
    if len(shape) == 4 and shape[1] == 3:
        where[1] = 3
        pixels = (pixels - IMAGENET_MEAN.reshape(where)) / IMAGENET_STD.reshape(where)
    return pixels.astype(np.float32)


def perturbed(base: dict[str, np.ndarray], count: int, seed: int, light: bool
              ) -> list[dict[str, np.ndarray]]:
    """``count`` copies of ``base``: a float input plus seeded noise of its own scale (the
    first copy of the calibration set is the input itself), a light model's image drawn anew;
    other types copied as they are."""
    rng = np.random.default_rng(seed)
    copies = []
    for k in range(count):
        feeds = {}
        for name, array in base.items():
            if array.dtype.kind != "f" or (k == 0 and seed == 0):
                feeds[name] = array.copy()
            elif light:
                feeds[name] = image_like(rng, list(array.shape)).astype(array.dtype)
            else:
                with np.errstate(over="ignore", invalid="ignore"):  # (garbage test inputs)
                    spread = float(np.std(array.astype(np.float64))) if array.size > 1 else 0.0
                scale = spread if np.isfinite(spread) and spread > 0 else 1.0
                noise = rng.standard_normal(array.shape) * scale
                feeds[name] = (array + noise).astype(array.dtype)
        copies.append(feeds)
    return copies


def joined(copies: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The copies as one calibration archive: joined along axis 0 (the batch the model fixes),
    a scalar input stacked."""
    return {name: (np.concatenate([c[name] for c in copies]) if copies[0][name].ndim
                   else np.stack([c[name] for c in copies])) for name in copies[0]}


def outputs(session: ort.InferenceSession, copies: list[dict[str, np.ndarray]]
            ) -> list[list[np.ndarray]]:
    names = {i.name for i in session.get_inputs()}
    return [session.run(None, {k: v for k, v in c.items() if k in names}) for c in copies]


def sqnr(reference: list[list[np.ndarray]], path: Path,
         copies: list[dict[str, np.ndarray]], failed: str = "DEFECT: ") -> str:
    """The lowest SQNR over the float outputs of the held-out copies, ``path``'s against the
    reference's; onnxruntime's failure in one line after ``failed``."""
    try:
        got = outputs(ort.InferenceSession(str(path)), copies)
    except Exception as error:  # the written file does not run
        return f"{failed}written file fails in onnxruntime: {one_line(error, 90)}"
    worst = None
    for slot in range(len(reference[0])):
        want = np.concatenate([np.ravel(r[slot]) for r in reference])
        have = np.concatenate([np.ravel(g[slot]) for g in got])
        if want.dtype.kind != "f":
            continue
        want, have = want.astype(np.float64), have.astype(np.float64)
        noise = np.sum((want - have) ** 2)
        value = np.inf if noise == 0 else 10 * np.log10(np.sum(want ** 2) / noise)
        worst = value if worst is None else min(worst, value)
    if worst is None:
        return "no float output"
    return "exact" if worst == np.inf else f"{worst:.1f}"


def one_line(error: BaseException | str, width: int = 160) -> str:
    """The first line of ``error``, the wheel's folder and the command's prefix left out."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    text = lines[0].replace(f"{DATA}/", "")
    text = re.sub(r"ptq-verify \w+: error: |\[ONNXRuntimeError\] : \d+ : \w+ : "
                  r"|Load model from \S+ failed:", "", text)
    return text[:width].replace("|", "/")


def cli_cell(done: subprocess.CompletedProcess) -> str | None:
    """None for a run that exited 0 and printed nothing on stderr; else its status and last
    line, DEFECT where it printed a traceback, exited 3, said more than one line, or exited 0
    with something on stderr."""
    if done.returncode == 0:
        said = done.stderr.strip()
        return f"DEFECT exit 0 with stderr: {one_line(said)}" if said else None
    lines = done.stderr.strip().splitlines()
    bad = "Traceback" in done.stderr or done.returncode not in (1, 2) or len(lines) != 1
    return (f"{'DEFECT ' if bad else ''}exit {done.returncode}: "
            f"{one_line(lines[-1] if lines else '(nothing on stderr)')}")


def ptq(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptq_verify", *arguments],
                          capture_output=True, text=True)


def audit_cell(path: Path, model: onnx.ModelProto) -> str:
    """Exit 0 with the count of rows listed (the nodes after loading: a version conversion may
    add some) beside the file's node count; else the refusal."""
    done = ptq("audit", str(path))
    refused = cli_cell(done)
    if refused is not None:
        return refused
    lines = done.stdout.splitlines()
    rows = lines[2:lines.index("", 2)] if "" in lines[2:] else lines[2:]
    return f"0 ({len(rows)} rows, {len(model.graph.node)} in file)"


def logits_model(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of ``model`` whose one output is the input of the Softmax that computes its one
    output (the node dropped), so that the light models' logits are measured; None where the
    model does not end so."""
    ends = [n for n in model.graph.node if n.output[0] == model.graph.output[0].name]
    if len(model.graph.output) != 1 or len(ends) != 1 or ends[0].op_type != "Softmax":
        return None
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    cut.graph.node.remove(next(n for n in cut.graph.node if n.output == ends[0].output))
    del cut.graph.output[:]
    cut.graph.output.append(onnx.helper.make_tensor_value_info(
        ends[0].input[0], model.graph.output[0].type.tensor_type.elem_type, None))
    return cut


def run(path: Path, folder: Path, count: int, light: bool, name: str = "") -> list[str]:
    """One row of the table; ``name``: the row's label for a file made here (the light
    models' logits), whose reference outputs the wheel does not ship."""
    model = onnx.load(str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
    row = [name or label(path), str(opset), "-" if name else loaded_cell(path, model),
           audit_cell(path, model)]
    base = test_inputs(path, model)
    calibration = perturbed(base, count, 0, light)
    held = perturbed(base, count, 1, light)
    calib = folder / "calib.npz"
    np.savez(calib, **joined(calibration))
    float_model = str(path)
    try:
        ort.InferenceSession(float_model)
    except Exception as error:  # no kernel for an old opset's node: onnx's converter's model
        row[1] += f" (onnxruntime: {one_line(error, 90)})"
        try:
            converted = version_converter.convert_version(model, 13)
            ort.InferenceSession(converted.SerializeToString())
            float_model = str(folder / "converted.onnx")
            onnx.save(converted, float_model)
            row[1] += "; float reference: the file at opset 13 by onnx's version converter"
        except Exception:  # noqa: BLE001 - nothing runs the float model
            float_model = None
    try:
        reference = None if float_model is None else outputs(
            ort.InferenceSession(float_model), held)
    except Exception as error:  # onnxruntime cannot run the model: what does ptq-verify say?
        reference = None
        row[1] += f" (onnxruntime fails: {one_line(error, 90)})"
    for form in ("qdq", "integer"):
        out = folder / f"out.{form}.onnx"
        out.unlink(missing_ok=True)
        done = ptq("quantize", str(path), "--calib", str(calib), "-o", str(out), "--format",
                   form, "--no-progress")
        cell = cli_cell(done)
        if cell is None:
            cell = ("(float model does not run)" if reference is None
                    else sqnr(reference, out, held))
        row.append(cell)
    if reference is None:
        return [*row, "-"]
    sys.path.insert(0, str(Path(__file__).parent))
    from ort_peer import write_int8

    theirs = folder / "out.ort.onnx"
    try:
        write_int8(Path(float_model), joined(calibration), theirs, per_channel=True)
        row.append(sqnr(reference, theirs, held, ""))
    except Exception as error:  # the peer's own failure
        row.append(f"fails: {one_line(error, 90)}")
    if float_model == str(path) and "fails" in row[-1]:  # at the file's opset: at 13?
        converted = folder / "converted.onnx"
        try:
            onnx.save(version_converter.convert_version(model, 13), str(converted))
            write_int8(converted, joined(calibration), theirs, per_channel=True)
            row[-1] += f"; at opset 13: {sqnr(reference, theirs, held, '')}"
        except Exception as error:  # the peer's own failure there too
            row[-1] += f"; at opset 13: fails: {one_line(error, 60)}"
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="parts of model paths to run (default: all)")
    parser.add_argument("--samples", type=int, default=32,
                        help="calibration copies, and held-out copies (default 32)")
    parser.add_argument("--light-samples", type=int, default=8,
                        help="the same for the light models' 224 x 224 images (default 8)")
    args = parser.parse_args(argv)
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, data from {DATA}")
    print("| model | opset | loaded model vs shipped outputs | audit | qdq SQNR (dB) | integer | "
          "quantize_static |\n|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for path in model_files(args.names):
            print(f"{label(path)}...", file=sys.stderr, flush=True)
            light = path.parent.name == "light"
            count = args.light_samples if light else args.samples
            print("| " + " | ".join(run(path, Path(scratch), count, light)) + " |", flush=True)
            cut = logits_model(onnx.load(str(path))) if light else None
            if cut is not None:  # (a light model's output is 1/1000 whatever its input)
                logits = Path(scratch) / "logits.onnx"
                onnx.save(cut, str(logits))
                row = run(logits, Path(scratch), count, light, f"{label(path)} logits")
                print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
