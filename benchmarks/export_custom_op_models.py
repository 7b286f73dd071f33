"""The declared-operator trial: digits models holding operators ONNX does not define,
quantized with ``--operators`` beside onnxruntime's quantize_static (docs/benchmarks-real.md).

Four float models are trained on the scikit-learn digits (seeded) and exported as a quantization
engineer adding an operator would:

    mlp_custom   torch's legacy exporter, ``torch.autograd.Function.symbolic`` writing
                 ``g.op("custom::Op", ...)``: QuickGELU x*sigmoid(1.702*x), ScaledTanh
                 a*tanh(b*x) and SwishBeta x*sigmoid(beta*x) (float attributes), MaxXY max(x, y)
    cnn_custom   the same exporter on a CNN: ClippedLeaky min(hi, leaky(x)), ChannelScale x*g
                 (a per-channel weight as a second input), AddOne x + 1, Square x**2, HardAct
                 (thresholds lo, hi)
    mlp_dynamo   the dynamo exporter, ``torch.onnx.ops.symbolic("custom::SwishBeta", ...)``
    mlp_contrib  onnxruntime's own operators, inserted with onnx.helper: com.microsoft Gelu,
                 FastGelu, BiasGelu, QuickGelu

onnxruntime has no kernel of a ``custom`` node: each model is also written with its ops as
``FunctionProto`` s in ``model.functions`` (``NAME.fn.onnx``), which onnxruntime runs; the
same functions are added to each quantized file to run it. For every model the script writes
the declarations (``NAME.toml``), runs ``ptq-verify quantize --operators`` in the qdq,
integer and simulation formats on the file without functions, ``ptq-verify quantize`` on the
file with them (inlined at load: no declaration needed) and quantize_static (QDQ, per channel,
MinMax) on the file with them, and prints the held-out logit SQNR against the float model
and the top-1 accuracy. Needs torch (and onnxscript for the dynamo exporter); the tests import
none of it.

    python benchmarks/export_custom_op_models.py [--out DIR]     # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from ort_peer import write_int8
from train_digits import load_split, save_npz

OPSET = [helper.make_opsetid("", 17)]
DOMAIN = "custom"
EPOCHS = 30


def custom_op(name: str, compute, attributes: tuple[str, ...] = ()):
    """An autograd Function computing ``compute`` whose legacy export is one ``custom::name``
    node, its float arguments written as float attributes named ``attributes``."""

    def symbolic(g, *args):
        tensors = [a for a in args if isinstance(a, torch._C.Value)]
        floats = [a for a in args if not isinstance(a, torch._C.Value)]
        return g.op(f"{DOMAIN}::{name}", *tensors,
                    **{f"{k}_f": v for k, v in zip(attributes, floats)})

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(lambda ctx, *args: compute(*args)),
        "symbolic": staticmethod(symbolic)})


def _where_leaky(x, slope, hi):
    return torch.clamp(torch.where(x >= 0, x, slope * x), max=hi)


def _hard(x, lo, hi):
    return torch.where(x < lo, torch.zeros_like(x), torch.where(x > hi, x, x / 2))


OPS = {
    "QuickGELU": (custom_op("QuickGELU", lambda x: x * torch.sigmoid(1.702 * x)), ()),
    "ScaledTanh": (custom_op("ScaledTanh", lambda x, a, b: a * torch.tanh(b * x), ("a", "b")),
                   ("a", "b")),
    "SwishBeta": (custom_op("SwishBeta", lambda x, beta: x * torch.sigmoid(beta * x),
                            ("beta",)), ("beta",)),
    "MaxXY": (custom_op("MaxXY", torch.maximum), ()),
    "ClippedLeaky": (custom_op("ClippedLeaky", _where_leaky, ("slope", "hi")), ("slope", "hi")),
    "ChannelScale": (custom_op("ChannelScale", lambda x, g: x * g), ()),
    "AddOne": (custom_op("AddOne", lambda x: x + 1), ()),
    "Square": (custom_op("Square", lambda x: x * x), ()),
    "HardAct": (custom_op("HardAct", _hard, ("lo", "hi")), ("lo", "hi")),
}

DECLARATIONS = {  # name -> (inputs, params, expr): what each op computes, in the grammar
    "QuickGELU": ("x", {}, "x*sigmoid(1.702*x)"),
    "ScaledTanh": ("x", {"a": "1.7159", "b": "0.6667"}, "a*tanh(b*x)"),
    "SwishBeta": ("x", {"beta": "1.5"}, "x*sigmoid(beta*x)"),
    "MaxXY": ("a, b", {}, "max(a, b)"),
    "ClippedLeaky": ("x", {"slope": "0.1", "hi": "6"}, "min(hi, where(x >= 0, x, slope*x))"),
    "ChannelScale": ("x, g", {}, "x*g"),
    "AddOne": ("x", {}, "x + 1"),
    "Square": ("x", {}, "x**2"),
    "HardAct": ("x", {"lo": "-1", "hi": "1"}, "where(x < lo, 0, where(x > hi, x, x/2))"),
}
CONTRIB = {  # onnxruntime's own operators, declared with their domain
    "Gelu": ("x", {}, "x*(erf(x/sqrt(2)) + 1)/2"),
    "FastGelu": ("x", {}, "x*(tanh(0.7978845608*(x + 0.044715*x**3)) + 1)/2"),
    "BiasGelu": ("x, b", {}, "(x + b)*(erf((x + b)/sqrt(2)) + 1)/2"),
    "QuickGelu": ("x", {"alpha": "1.702"}, "x*sigmoid(alpha*x)"),
}


def declaration_file(path: Path, ops: dict, domain: str) -> None:
    tables = []
    for name, (inputs, params, expr) in ops.items():
        values = ", ".join(f'{k} = "{v}"' for k, v in params.items())
        tables.append(f'[[operator]]\nname = "{name}"\ninputs = "{inputs}"\n'
                      + (f"params = {{ {values} }}\n" if params else "")
                      + f'expr = "{expr}"\nonnx_type = "{domain}:{name}"\n')
    path.write_text("\n".join(tables))


def function(name: str, version: int) -> onnx.FunctionProto:
    """The op as an ONNX function at the model's opset ``version``, its float attributes
    referenced by the body."""
    inputs, params, expr = DECLARATIONS[name]
    tensors = [t.strip().upper() for t in inputs.split(",")]
    body = [helper.make_node("Constant", [], [p], value_float=0.0) for p in params]
    for node, p in zip(body, params):
        node.attribute[0].ref_attr_name = p
    c = {k: helper.make_node("Constant", [], [k], value_float=v)
         for k, v in (("k1702", 1.702), ("zero", 0.0), ("one", 1.0), ("half", 0.5))}
    x = tensors[0]
    steps = {
        "QuickGELU": [c["k1702"], helper.make_node("Mul", [x, "k1702"], ["t"]),
                      helper.make_node("Sigmoid", ["t"], ["u"]),
                      helper.make_node("Mul", [x, "u"], ["Y"])],
        "ScaledTanh": [helper.make_node("Mul", [x, "b"], ["t"]),
                       helper.make_node("Tanh", ["t"], ["u"]),
                       helper.make_node("Mul", ["u", "a"], ["Y"])],
        "SwishBeta": [helper.make_node("Mul", [x, "beta"], ["t"]),
                      helper.make_node("Sigmoid", ["t"], ["u"]),
                      helper.make_node("Mul", [x, "u"], ["Y"])],
        "MaxXY": [helper.make_node("Max", tensors, ["Y"])],
        "ClippedLeaky": [c["zero"], helper.make_node("Mul", [x, "slope"], ["xs"]),
                         helper.make_node("GreaterOrEqual", [x, "zero"], ["pos"]),
                         helper.make_node("Where", ["pos", x, "xs"], ["lk"]),
                         helper.make_node("Min", ["lk", "hi"], ["Y"])],
        "ChannelScale": [helper.make_node("Mul", tensors, ["Y"])],
        "AddOne": [c["one"], helper.make_node("Add", [x, "one"], ["Y"])],
        "Square": [helper.make_node("Mul", [x, x], ["Y"])],
        "HardAct": [c["zero"], c["half"], helper.make_node("Less", [x, "lo"], ["below"]),
                    helper.make_node("Greater", [x, "hi"], ["above"]),
                    helper.make_node("Mul", [x, "half"], ["xh"]),
                    helper.make_node("Where", ["above", x, "xh"], ["w"]),
                    helper.make_node("Where", ["below", "zero", "w"], ["Y"])],
    }[name]
    return helper.make_function(DOMAIN, name, tensors, ["Y"], body + steps,
                                [helper.make_opsetid("", version)], attributes=list(params))


class Mlp(torch.nn.Module):
    export = False

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l2b = (torch.nn.Linear(64, 48), torch.nn.Linear(48, 32),
                                      torch.nn.Linear(48, 32))
        self.l3 = torch.nn.Linear(32, 10)

    def op(self, name, *args):
        return OPS[name][0].apply(*args) if self.export else OPS[name][0].forward(None, *args)

    def forward(self, x):
        h = self.op("QuickGELU", self.l1(x))
        a = self.op("ScaledTanh", self.l2(h), 1.7159, 0.6667)
        b = self.op("SwishBeta", self.l2b(h), 1.5)
        return self.l3(self.op("MaxXY", a, b))


class Cnn(Mlp):
    def __init__(self):
        torch.nn.Module.__init__(self)
        self.c1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.g = torch.nn.Parameter(torch.ones(1, 8, 1, 1))
        self.c2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.c3 = torch.nn.Conv2d(16, 16, 1)
        self.fc = torch.nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        h = self.op("ChannelScale", self.op("ClippedLeaky", self.c1(x), 0.1, 6.0), self.g)
        h = self.op("AddOne", self.c2(torch.nn.functional.max_pool2d(h, 2)))
        h = self.op("HardAct", self.c3(self.op("Square", h) * 0.1), -1.0, 1.0)
        return self.fc(h.flatten(1))


class DynamoMlp(torch.nn.Module):
    export = False

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = torch.nn.Linear(64, 32), torch.nn.Linear(32, 10)

    def forward(self, x):
        h = self.l1(x)
        if self.export:
            h = torch.onnx.ops.symbolic(f"{DOMAIN}::SwishBeta", (h,), attrs={"beta": 1.5},
                                        dtype=h.dtype, shape=h.shape, version=1)
        else:
            h = h * torch.sigmoid(1.5 * h)
        return self.l2(h)


class ContribMlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.ModuleList([torch.nn.Linear(64, 48), torch.nn.Linear(48, 48),
                                      torch.nn.Linear(48, 48, bias=False),
                                      torch.nn.Linear(48, 32), torch.nn.Linear(32, 10)])
        self.bias = torch.nn.Parameter(torch.zeros(48))

    def forward(self, x):
        f = torch.nn.functional
        h = f.gelu(self.l[0](x))
        h = f.gelu(self.l[1](h), approximate="tanh")
        h = f.gelu(self.l[2](h) + self.bias)
        h = self.l[3](h)
        return self.l[4](h * torch.sigmoid(1.702 * h))

    def to_onnx(self) -> onnx.ModelProto:
        arrays = [numpy_helper.from_array(layer.weight.detach().numpy().T.copy(), f"W{i}")
                  for i, layer in enumerate(self.l)]
        arrays += [numpy_helper.from_array(layer.bias.detach().numpy(), f"B{i}")
                   for i, layer in enumerate(self.l) if layer.bias is not None]
        arrays.append(numpy_helper.from_array(self.bias.detach().numpy(), "bias"))
        ms = {"domain": "com.microsoft"}
        nodes = [helper.make_node("Gemm", ["input", "W0", "B0"], ["g0"], name="gemm0"),
                 helper.make_node("Gelu", ["g0"], ["a0"], name="gelu", **ms),
                 helper.make_node("Gemm", ["a0", "W1", "B1"], ["g1"], name="gemm1"),
                 helper.make_node("FastGelu", ["g1"], ["a1"], name="fastgelu", **ms),
                 helper.make_node("MatMul", ["a1", "W2"], ["g2"], name="matmul2"),
                 helper.make_node("BiasGelu", ["g2", "bias"], ["a2"], name="biasgelu", **ms),
                 helper.make_node("Gemm", ["a2", "W3", "B3"], ["g3"], name="gemm3"),
                 helper.make_node("QuickGelu", ["g3"], ["a3"], name="quickgelu", alpha=1.702,
                                  **ms),
                 helper.make_node("Gemm", ["a3", "W4", "B4"], ["logits"], name="gemm4")]
        graph = helper.make_graph(
            nodes, "contrib", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             ["n", 64])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], arrays)
        return helper.make_model(graph, opset_imports=OPSET + [
            helper.make_opsetid("com.microsoft", 1)])


def train(make, x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    """The module ``make()`` builds, seeded, after a few epochs of Adam on ``x``, ``y``."""
    torch.manual_seed(0)
    module = make()
    optimizer = torch.optim.Adam(module.parameters(), lr=5e-3)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(tx), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(module(tx[batch]), ty[batch]).backward()
            optimizer.step()
    return module.eval()


def export(module, sample: np.ndarray, path: Path, dynamo: bool = False) -> onnx.ModelProto:
    module.export = True
    args = (torch.from_numpy(sample[:2]),)
    if dynamo:
        torch.onnx.export(module, args, path, dynamo=True, input_names=["input"],
                          output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("n")}})
    else:
        torch.onnx.export(module, args, path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "n"}}, custom_opsets={DOMAIN: 1})
    return onnx.load(path)


def with_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy holding a function of each custom op type its nodes use, so onnxruntime runs it."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    used = sorted({n.op_type for n in model.graph.node if n.domain == DOMAIN}
                  - {f.name for f in model.functions})
    version = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    out.functions.extend(function(name, version) for name in used)
    if DOMAIN not in {o.domain for o in out.opset_import}:
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(with_functions(model).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def sqnr(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - other) ** 2)))


def measure(name: str, model: onnx.ModelProto, decl: Path, out: Path, calib: Path,
            x: np.ndarray, y: np.ndarray, contrib: bool) -> None:
    plain, functions = out / f"{name}.onnx", out / f"{name}.fn.onnx"
    onnx.save(model, plain)
    onnx.save(with_functions(model), functions)
    reference = run(model, x)
    print(f"{name}: float top-1 {100 * np.mean(reference.argmax(1) == y):.2f}%")
    runs = [(f"ptq-verify --operators {form}", plain, ["--operators", str(decl),
                                                       "--format", form])
            for form in ("qdq", "integer", "simulation")]
    if not contrib:
        runs.append(("ptq-verify, functions inlined (qdq)", functions, []))
    for label, source, extra in runs:
        target = out / f"{name}.{label.split()[-1].strip('()')}.{len(extra)}.q.onnx"
        done = subprocess.run([sys.executable, "-m", "ptq_verify", "quantize", str(source),
                               "--calib", str(calib), "-o", str(target), "--no-progress",
                               *extra], capture_output=True, text=True)
        if done.returncode:
            print(f"  {label:40s} exit {done.returncode}: {done.stderr.strip()}")
            continue
        q = run(onnx.load(target), x)
        print(f"  {label:40s} SQNR {sqnr(reference, q):5.1f} dB  top-1 "
              f"{100 * np.mean(q.argmax(1) == y):.2f}%")
    peer = out / f"{name}.peer.onnx"
    try:
        write_int8(plain if contrib else functions, dict(np.load(calib)), peer, True)
        q = run(onnx.load(peer), x)
        print(f"  {'quantize_static (QDQ, per channel)':40s} SQNR {sqnr(reference, q):5.1f} dB"
              f"  top-1 {100 * np.mean(q.argmax(1) == y):.2f}%")
    except Exception as error:  # noqa: BLE001 - the peer's failure is a figure too
        print(f"  {'quantize_static (QDQ, per channel)':40s} fails: "
              f"{str(error).splitlines()[0][:120]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "custom")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    digits = load_split()
    flat, image = out / "digits.calib.npz", out / "digits_image.calib.npz"
    save_npz(flat, input=digits.calibration_x)
    save_npz(image, input=digits.calibration_x.reshape(-1, 1, 8, 8))
    declaration_file(out / "custom.toml", DECLARATIONS, DOMAIN)
    declaration_file(out / "contrib.toml", CONTRIB, "com.microsoft")
    test_image = digits.test_x.reshape(-1, 1, 8, 8)
    cases = [
        ("mlp_custom", Mlp, digits.train_x, flat, digits.test_x, False),
        ("cnn_custom", Cnn, digits.train_x.reshape(-1, 1, 8, 8), image, test_image, False),
        ("mlp_dynamo", DynamoMlp, digits.train_x, flat, digits.test_x, True),
    ]
    for name, make, train_x, calib, test_x, dynamo in cases:
        module = train(make, train_x, digits.train_y)
        model = export(module, test_x, out / f"{name}.export.onnx", dynamo)
        measure(name, model, out / "custom.toml", out, calib, test_x, digits.test_y, False)
    contrib = train(ContribMlp, digits.train_x, digits.train_y).to_onnx()
    measure("mlp_contrib", contrib, out / "contrib.toml", out, flat, digits.test_x,
            digits.test_y, True)


if __name__ == "__main__":
    main()
