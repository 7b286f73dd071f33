"""Hostile models: mutate real ONNX files at random and check every run ends as a user error.

    python benchmarks/fuzz_models.py [--runs 300] [--seed 0] [--keep DIR]

Each run takes, one time in two each, one of the shipped examples (ptq_verify/examples:
quantized with their own calibration data, or audited) or one of the torch export fixtures
(tests/fixtures/torch: quantized with the calibration file of its name or family, or audited),
applies one to three mutations to the file as onnx reads it (a node's op type, a dropped or
rewired input, an attribute set to -1, 0, a huge integer, NaN or infinity, an initializer's
dimensions, element type or one value, a graph input's or output's dimension or type, two nodes
swapped, a value_info shape or type that lies, an attribute dropped, another opset, two nodes
writing one tensor) and, on one quantize run in three, one to its calibration data (an array's
type, a non-finite value, 0 or 1 samples, a longer axis 1, a renamed array, values times 1e30),
writes them and runs ``ptq-verify quantize`` or ``ptq-verify audit`` on it in a fresh process,
as a user would. A run passes when it exits 0, or 2 with one line on stderr (what is wrong and
where); anything else (exit 3, an internal error; a traceback; several lines; another code; a
time-out) is listed with its run number, its mutations and the last line it printed, and with
``--keep`` its files are kept there. Needs no torch. Why: the hostile-input fixes so far came
from people trying files by hand; this reaches combinations nobody writes on purpose (the ninth
session's first 310 runs, a draft of this script: none failed).
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "ptq_verify" / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "torch"
FIXTURE_BYTES = 400_000  # the fixtures audited: the small ones (a run each stays a second)
TIMEOUT_S = 300
DATA_SHARE = 1 / 3  # of the quantize runs whose calibration file is mutated too
OP_TYPES = ("Relu", "Sigmoid", "Add", "Mul", "Conv", "MatMul", "Gemm", "Reshape", "Transpose",
            "Concat", "Softmax", "Where", "Gather", "Slice", "Cast", "Identity", "Tanh", "Div",
            "Sub", "MaxPool", "Flatten", "LayerNormalization", "Erf", "Sqrt", "Pow",
            "ReduceMean", "Unsqueeze", "Squeeze", "Expand", "Clip", "Max", "Min", "Neg", "Abs")


def sources() -> tuple[list[Path], list[Path]]:
    """The files mutated: the examples, and the torch fixtures below FIXTURE_BYTES."""
    return (sorted(EXAMPLES.glob("*.onnx")),
            sorted(p for p in FIXTURES.glob("*.onnx") if p.stat().st_size < FIXTURE_BYTES))


def fixture_data(model: Path) -> Path | None:
    """A fixture's calibration file: its own (``NAME.calib.npz`` for ``NAME.*.onnx``), else
    that of the family its name starts with (``digits.calib.npz``); None: audit it only. A
    file that does not fit the model is one more hostile input."""
    stem = model.name.split(".")[0]
    for name in (stem, stem.split("_")[0]):
        if (found := FIXTURES / f"{name}.calib.npz").exists():
            return found
    return None


def mutate(model: onnx.ModelProto, rng: random.Random) -> str:
    """Change ``model`` in place in one random way; what was changed ("" for none)."""
    graph, nodes = model.graph, list(model.graph.node)
    kind = rng.randrange(13)
    if kind == 0 and nodes:
        node = rng.choice(nodes)
        node.op_type = rng.choice(OP_TYPES)
        return f"{node.name}: op type {node.op_type}"
    if kind == 1 and nodes:
        node = rng.choice(nodes)
        if node.input:
            del node.input[rng.randrange(len(node.input))]
            return f"{node.name}: an input dropped"
    if kind == 2 and nodes:
        node = rng.choice(nodes)
        if node.attribute:
            attribute = rng.choice(node.attribute)
            if attribute.type == onnx.AttributeProto.INT:
                attribute.i = rng.choice([-1, 0, 2, 7, 1 << 40])
                return f"{node.name}.{attribute.name} = {attribute.i}"
            if attribute.type == onnx.AttributeProto.INTS and attribute.ints:
                attribute.ints[rng.randrange(len(attribute.ints))] = rng.choice([-3, 0, 5, 99])
                return f"{node.name}.{attribute.name} = {list(attribute.ints)}"
            if attribute.type == onnx.AttributeProto.FLOAT:
                attribute.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30])
                return f"{node.name}.{attribute.name} = {attribute.f}"
    if kind == 3 and graph.initializer:
        tensor = rng.choice(graph.initializer)
        if tensor.dims:
            tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice([0, 1, 3, 1000])
            return f"{tensor.name}: dims {list(tensor.dims)}"
    if kind == 4 and graph.initializer:
        tensor = rng.choice(graph.initializer)
        tensor.data_type = rng.choice([TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64,
                                       TensorProto.INT8, TensorProto.BOOL, TensorProto.STRING])
        return f"{tensor.name}: element type {tensor.data_type}"
    if kind == 5 and nodes:
        node = rng.choice(nodes)
        if node.input:
            slot = rng.randrange(len(node.input))
            node.input[slot] = rng.choice([out for n in nodes for out in n.output]
                                          + [graph.input[0].name, ""])
            return f"{node.name}: input {slot} = {node.input[slot]!r}"
    if kind == 6 and len(nodes) > 1:
        first, second = rng.sample(range(len(nodes)), 2)
        a, b = copy.deepcopy(nodes[first]), copy.deepcopy(nodes[second])
        graph.node[first].CopyFrom(b)
        graph.node[second].CopyFrom(a)
        return f"nodes {first} and {second} swapped"
    if kind == 7 and graph.initializer:
        tensor = rng.choice(graph.initializer)
        try:
            value = numpy_helper.to_array(tensor).copy()
        except (ValueError, TypeError):  # an earlier mutation changed its dims or type
            return ""
        if value.size and value.dtype.kind == "f":
            with np.errstate(over="ignore"):  # (1e38 in float16 is infinity: as meant)
                value.flat[rng.randrange(value.size)] = rng.choice(
                    [np.nan, np.inf, -np.inf, 1e38])
            tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
            return f"{tensor.name}: one value non-finite or huge"
    if kind == 8 and (ends := [*graph.input, *graph.output]):
        end = rng.choice(ends)
        info, name = end.type.tensor_type, end.name
        if info.shape.dim:
            dim = info.shape.dim[rng.randrange(len(info.shape.dim))]
            dim.dim_value = rng.choice([0, 1, 5, 77])
            return f"{name}: a dimension {dim.dim_value}"
        info.elem_type = rng.choice([TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16])
        return f"{name}: element type {info.elem_type}"
    if kind == 9 and graph.value_info:  # a stated shape or type that lies
        info = rng.choice(graph.value_info).type.tensor_type
        if info.shape.dim and rng.random() < 0.7:
            dim = info.shape.dim[rng.randrange(len(info.shape.dim))]
            dim.dim_value = rng.choice([0, 1, 3, 1000])
            return f"value_info: a dimension {dim.dim_value}"
        info.elem_type = rng.choice([TensorProto.INT64, TensorProto.DOUBLE, TensorProto.BOOL])
        return f"value_info: element type {info.elem_type}"
    if kind == 10 and (held := [node for node in nodes if node.attribute]):
        node = rng.choice(held)
        dropped = node.attribute[rng.randrange(len(node.attribute))].name
        node.attribute.remove(next(a for a in node.attribute if a.name == dropped))
        return f"{node.name}: attribute {dropped} dropped"
    if kind == 11 and model.opset_import:
        entry = next((e for e in model.opset_import if e.domain in ("", "ai.onnx")), None)
        if entry is not None:
            entry.version = rng.choice([7, 11, 13, 19, 21, 23, 30])
            return f"opset {entry.version}"
    if kind == 12 and len(nodes) > 1:  # two nodes make one tensor
        first, second = rng.sample(nodes, 2)
        if first.output and second.output:
            second.output[0] = first.output[0]
            return f"{second.name}: output 0 = {first.output[0]!r}"
    return ""


def mutate_data(arrays: dict[str, np.ndarray], rng: random.Random) -> str:
    """Change the calibration ``arrays`` in place in one random way; what was changed."""
    name = rng.choice(sorted(arrays))
    value = arrays[name]
    kind = rng.randrange(6)
    if kind == 0:
        dtype = rng.choice([np.float16, np.float64, np.int64, np.uint8, np.bool_])
        arrays[name] = value.astype(dtype)
        return f"data {name!r} as {np.dtype(dtype).name}"
    if kind == 1 and value.size and value.dtype.kind == "f":
        value = value.copy()
        value.flat[rng.randrange(value.size)] = rng.choice([np.nan, np.inf, -np.inf])
        arrays[name] = value
        return f"data {name!r}: one value non-finite"
    if kind == 2:
        arrays[name] = value[:rng.choice([0, 1])]
        return f"data {name!r}: {len(arrays[name])} samples"
    if kind == 3 and value.ndim > 1:
        arrays[name] = np.concatenate([value, value[:, :1]], axis=1)
        return f"data {name!r}: axis 1 one longer"
    if kind == 4:
        arrays[f"{name}_extra"] = arrays.pop(name)
        return f"data {name!r} renamed"
    with np.errstate(over="ignore"):  # (float16 overflows: infinity, as meant)
        arrays[name] = value * np.asarray(1e30, value.dtype) if value.dtype.kind == "f" \
            else value
    return f"data {name!r} times 1e30"


def verdict(done: subprocess.CompletedProcess) -> str:
    """"pass" for exit 0, or exit 2 with one line on stderr; else what went wrong."""
    if "Traceback" in done.stderr:
        return "traceback"
    if done.returncode == 0:
        return "pass"
    if done.returncode == 2:
        lines = len(done.stderr.strip().splitlines())
        return "pass" if lines == 1 else f"exit 2 with {lines} lines"
    return f"exit {done.returncode}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="mutated files to run (300)")
    parser.add_argument("--seed", type=int, default=0, help="the random draws' seed (0)")
    parser.add_argument("--keep", type=Path, help="a folder for the files of failed runs")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    command = [shutil.which("ptq-verify") or sys.executable]
    if command[0] == sys.executable:
        command += ["-m", "ptq_verify"]
    rng, (examples, fixtures), outcomes, failures = (random.Random(args.seed), sources(),
                                                     Counter(), [])
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, PTQ_VERIFY_CACHE_DIR=str(Path(folder) / "cache"))
        for run in range(args.runs):
            source = rng.choice(rng.choice([examples, fixtures]))
            model = onnx.load(source)
            changes = [c for c in (mutate(model, rng) for _ in range(rng.choice([1, 1, 2, 3])))
                       if c]
            path = Path(folder) / f"run{run}.onnx"
            onnx.save(model, path)
            data = (source.with_suffix(".calib.npz") if source.parent == EXAMPLES
                    else fixture_data(source))
            verb = rng.choice(["quantize", "quantize", "audit"]) if data else "audit"
            extra = []
            if verb == "quantize":
                if rng.random() < DATA_SHARE:
                    arrays = dict(np.load(data))
                    changes.append(mutate_data(arrays, rng))
                    data = Path(folder) / f"run{run}.calib.npz"
                    np.savez(data, **arrays)
                extra = ["--calib", str(data), "-o", str(Path(folder) / "out.onnx"),
                         "--no-progress"]
            try:
                done = subprocess.run([*command, verb, str(path), *extra], capture_output=True,
                                      text=True, timeout=TIMEOUT_S, env=env)
                outcome = verdict(done)
                last = (done.stderr.strip().splitlines() or [""])[-1]
            except subprocess.TimeoutExpired:
                outcome, last = "time-out", ""
            outcomes[f"exit {done.returncode}" if outcome == "pass" else "failed"] += 1
            outcomes[verb] += 1
            if outcome != "pass":
                failures.append(f"- run {run} ({outcome}): {verb} {source.name}, "
                                f"{'; '.join(changes) or 'unchanged'}: {last[:200]}")
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, args.keep / f"run{run}.{source.name}")
                    if verb == "quantize":
                        shutil.copy(data, args.keep / f"run{run}.calib.npz")
            print(f"\r{run + 1}/{args.runs} runs, {outcomes['failed']} failed",
                  end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print("| runs | quantize | audit | passed: exit 0 | passed: exit 2, one line | failed |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.runs} | {outcomes['quantize']} | {outcomes['audit']} | {outcomes['exit 0']} "
          f"| {outcomes['exit 2']} | {outcomes['failed']} |")
    print("\n".join(failures))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe

    for line in describe():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
