"""The facts trial: declared operators built to look like copies, shape reads, integer
polynomials, per-channel and weight-like operators, against what the engine reads off them
(docs/benchmarks-real.md, "Declared operators against the engine's facts").

Each case is a digits model ``input -> Gemm -> NODE -> Gemm`` (seeded weights; one or two
activations into the node, or one and a constant), the node of a custom domain declared by a
TOML file with ``--operators`` (its ONNX function, a ``FunctionProto``, is added to the float
model and to each written file to run them in onnxruntime), or a standard op type declared
in the file in place of the catalog's. For every case: ``ptq-verify quantize`` in the qdq,
simulation and integer formats, the held-out logit SQNR of each against the float model
(onnxruntime, 100 digits past the 150 calibration ones) and the largest difference of the
integer file from the simulation (0: code-exact), or the one line a refusal says. With
``--peer``, onnxruntime's quantize_static (QDQ, int8, per channel, MinMax) on the models of
standard op types alone (a custom node has no kernel there).

    python benchmarks/declared_facts.py [--out DIR] [--peer]       # ~2 min on 2 cores

Needs onnx, onnxruntime and scikit-learn (the digits), no torch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import AttributeProto, TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits

DOMAIN = "com.example"


def _digits(count: int, offset: int = 0) -> np.ndarray:
    return load_digits().data[offset:offset + count].astype(np.float32) / 16.0


def _dense(rng, nodes, inits, x: str, n_in: int, n_out: int, name: str) -> str:
    w = (rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32)
    b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
    nodes.append(helper.make_node("Gemm", [x, f"{name}_w", f"{name}_b"], [name], name=name,
                                  transB=1))
    return name


def _attribute_constant(attr: str, out: str) -> onnx.NodeProto:
    """A Constant whose float value is the function's attribute ``attr``."""
    node = helper.make_node("Constant", [], [out])
    ref = node.attribute.add()
    ref.name, ref.ref_attr_name, ref.type = "value_float", attr, AttributeProto.FLOAT
    return node


def _case(op_type: str, body: list, activations: int = 1, const=None, attrs=None,
          standard: bool = False, scale: float = 1.0) -> tuple[onnx.ModelProto, object, float]:
    rng = np.random.default_rng(7)
    nodes: list = []
    inits: list = []
    ins = [_dense(rng, nodes, inits, "input", 64, 16, f"gemm{i}") for i in range(activations)]
    if const is not None:
        inits.append(numpy_helper.from_array(np.asarray(const, np.float32), "k"))
        ins.append("k")
    nodes.append(helper.make_node(op_type, ins, ["h"], name="node",
                                  domain=None if standard else DOMAIN, **(attrs or {})))
    _dense(rng, nodes, inits, "h", 16, 10, "logits")
    graph = helper.make_graph(
        nodes, op_type, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    imports = [helper.make_opsetid("", 17)] + ([] if standard
                                               else [helper.make_opsetid(DOMAIN, 1)])
    model = helper.make_model(graph, opset_imports=imports)
    function = None if standard else helper.make_function(
        DOMAIN, op_type, ["x"] if len(ins) == 1 else ["a", "b"], ["y"], body,
        [helper.make_opsetid("", 17)], attributes=sorted(attrs or {}))
    return model, function, scale


def _op(name: str, expr: str, inputs: str = "x", params: str = "",
        onnx_type: str | None = None) -> str:
    return (f'[[operator]]\nname = "{name}"\nexpr = "{expr}"\ninputs = "{inputs}"\n'
            + (f"params = {{ {params} }}\n" if params else "")
            + f'onnx_type = "{onnx_type or f"{DOMAIN}:{name}"}"\n')


def _n(op_type: str, inputs: list[str], out: str = "y") -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, [out])


def _half(out: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [out], value_float=0.5)


def _cases() -> dict:
    """name -> (declaration, (model, function, input scale)), the cases of the trial."""
    k = _attribute_constant
    return {
        "scaled x*k (folded)": (_op("Scaled", "x*k", params="k = 0.3"), _case(
            "Scaled", [k("k", "c"), _n("Mul", ["x", "c"])], attrs={"k": 0.3})),
        "constant k (no element)": (_op("ConstK", "k", params="k = 1.5"), _case(
            "ConstK", [_n("Shape", ["x"], "s"), k("k", "c"), _n("Expand", ["c", "s"])],
            attrs={"k": 1.5})),
        "x - x": (_op("Zero", "x - x"), _case("Zero", [_n("Sub", ["x", "x"])])),
        "-x (negated copy)": (_op("Neg2", "-x"), _case("Neg2", [_n("Neg", ["x"])])),
        "x + k": (_op("PlusK", "x + k", params="k = 0.7"), _case(
            "PlusK", [k("k", "c"), _n("Add", ["x", "c"])], attrs={"k": 0.7})),
        "a*b": (_op("Prod", "a*b", "a, b"), _case("Prod", [_n("Mul", ["a", "b"])], 2)),
        "a*b/2": (_op("HalfProd", "a*b/2", "a, b"), _case(
            "HalfProd", [_n("Mul", ["a", "b"], "p"), _half("h"), _n("Mul", ["p", "h"])], 2)),
        "(a+b)^2-a^2-b^2": (_op("TwoAB", "(a + b)**2 - a**2 - b**2", "a, b"), _case(
            "TwoAB", [_n("Mul", ["a", "b"], "p"), _n("Add", ["p", "p"])], 2)),
        "a^3*b^3": (_op("A3B3", "a**3*b**3", "a, b"), _case(
            "A3B3", [_n("Mul", ["a", "b"], "p"), _n("Mul", ["p", "p"], "q"),
                     _n("Mul", ["q", "p"])], 2)),
        "a/2 + b/2": (_op("SumHalf", "a/2 + b/2", "a, b"), _case(
            "SumHalf", [_n("Add", ["a", "b"], "p"), _half("h"), _n("Mul", ["p", "h"])], 2)),
        "a/|b| (b = 3)": (_op("DivAbs", "a/abs(b)", "a, b"), _case(
            "DivAbs", [_n("Abs", ["b"], "p"), _n("Div", ["a", "p"])], const=np.full(16, 3.0))),
        "a*b, mixes_channels": (_op("MulK", "a*b", "a, b") + "mixes_channels = true\n", _case(
            "MulK", [_n("Mul", ["a", "b"])], const=np.linspace(0.2, 3, 16))),
        "a*|b|, mixes_channels": (_op("MulAbs", "a*abs(b)", "a, b")
                                  + "mixes_channels = true\n", _case(
            "MulAbs", [_n("Abs", ["b"], "p"), _n("Mul", ["a", "p"])],
            const=np.linspace(-3, 3, 16))),
        "a*b*b (b weight twice)": (_op("MulSq", "a*b*b", "a, b"), _case(
            "MulSq", [_n("Mul", ["a", "b"], "p"), _n("Mul", ["p", "b"])],
            const=np.linspace(0.2, 3, 16))),
        "x*|x| (degree 2)": (_op("XAbs", "x*abs(x)"), _case(
            "XAbs", [_n("Abs", ["x"], "p"), _n("Mul", ["x", "p"])])),
        "max(x, k)": (_op("MaxK", "max(x, k)", params="k = 0.2"), _case(
            "MaxK", [k("k", "c"), _n("Max", ["x", "c"])], attrs={"k": 0.2})),
        "max(a, b const)": (_op("MaxB", "max(a, b)", "a, b"), _case(
            "MaxB", [_n("Max", ["a", "b"])], const=np.linspace(-1, 1, 16))),
        "a (b unread)": (_op("First", "a", "a, b"), _case(
            "First", [_n("Identity", ["a"])], 2)),
        "LeakyRelu as max(x, alpha*x), alpha 2": (
            _op("MyLeaky", "max(x, alpha*x)", params='alpha = "0.01"', onnx_type="LeakyRelu"),
            _case("LeakyRelu", [], attrs={"alpha": 2.0}, standard=True)),
        "Relu as min(max(x, 0), 6), inputs x10": (
            _op("MyRelu", "min(max(x, 0), 6)", onnx_type="Relu"),
            _case("Relu", [], standard=True, scale=10.0)),
    }


def _with_function(path: Path, function) -> bytes:
    model = onnx.load(str(path))
    if function is not None:
        model.functions.append(function)
        if not any(o.domain == DOMAIN for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return model.SerializeToString()


def _sqnr(reference: np.ndarray, out: np.ndarray) -> float:
    reference, out = reference.astype(np.float64), out.astype(np.float64)
    return float(10 * np.log10((reference ** 2).sum() / max(((reference - out) ** 2).sum(),
                                                             1e-30)))


def run(out: Path, peer: bool) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    print("| case | qdq dB | simulation dB | integer dB | integer - simulation | peer dB |")
    print("|---|---|---|---|---|---|")
    for index, (name, (declaration, (model, function, scale))) in enumerate(_cases().items()):
        folder = out / f"case{index}"
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(folder / "m.onnx"))
        (folder / "ops.toml").write_text(declaration)
        np.save(folder / "calib.npy", scale * _digits(150))
        test = scale * _digits(100, offset=600)
        reference = ort.InferenceSession(_with_function(folder / "m.onnx", function)).run(
            None, {"input": test})[0]
        figures, outputs = {}, {}
        for fmt in ("qdq", "simulation", "integer"):
            done = subprocess.run(
                [sys.executable, "-m", "ptq_verify", "quantize", str(folder / "m.onnx"),
                 "--calib", str(folder / "calib.npy"), "--operators", str(folder / "ops.toml"),
                 "--format", fmt, "-o", str(folder / f"{fmt}.onnx"), "--no-progress"],
                capture_output=True, text=True, env=env)
            if done.returncode:
                figures[fmt] = f"refused ({done.returncode}): {done.stderr.strip()[-160:]}"
                continue
            outputs[fmt] = ort.InferenceSession(_with_function(
                folder / f"{fmt}.onnx", function)).run(None, {"input": test})[0]
            figures[fmt] = f"{_sqnr(reference, outputs[fmt]):.1f}"
        apart = (f"{np.abs(outputs['integer'] - outputs['simulation']).max():.3g}"
                 if {"integer", "simulation"} <= outputs.keys() else "-")
        peer_db = "-"
        if peer and function is None:
            from ort_peer import quantize_int8

            peer_db = f"{_sqnr(reference, ort.InferenceSession(quantize_int8(folder / 'm.onnx', 'input', scale * _digits(150), per_channel=True)).run(None, {'input': test})[0]):.1f}"  # noqa: E501
        if figures["qdq"].startswith("refused"):
            print(f"| {name} | {figures['qdq']} | | | | {peer_db} |")
        else:
            print(f"| {name} | {figures['qdq']} | {figures['simulation']} | "
                  f"{figures['integer']} | {apart} | {peer_db} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the files "
                        "(default: a temporary one)")
    parser.add_argument("--peer", action="store_true", help="quantize_static on the models "
                        "of standard op types")
    args = parser.parse_args(argv)
    if args.out is not None:
        run(args.out, args.peer)
        return
    with tempfile.TemporaryDirectory() as folder:
        run(Path(folder), args.peer)


if __name__ == "__main__":
    main()
