"""Activation smoothing through carriers that round their input, on real torch exports.

A new-user trial (docs/benchmarks-real.md): small models with element-wise carriers between
weight layers (YOLO/darknet Conv-BN-LeakyReLU(0.1) blocks, a DCGAN-discriminator-style
Conv-LeakyReLU(0.2) stack, per-channel PReLU after Conv and after Linear, a Mul by a constant,
LeakyReLU then a Mul by a constant and the reverse, the plain LeakyReLU MLP), trained a few
epochs on scikit-learn's digits (``export_test_models.train_digits`` on
``train_digits.load_split``'s training split), some then given an outlier channel (the same
function, ``*_outlier``), or with seeded random weights whose channels' scales spread over
1/4..8 (``*_seeded``), each exported by torch's legacy exporter (opset 17) and its dynamo
exporter (opset 18). Each export is quantized by the command line as a user runs it,
``ptq-verify quantize MODEL --calib calib.npz -o OUT`` (qdq, defaults) and with
``--no-smooth``, by this checkout and by each ``--base`` checkout of ptq-verify (the code
before a change: ``git worktree add --detach /tmp/wt-base COMMIT``); onnxruntime's
quantize_static (QDQ int8, per channel, MinMax; ``ort_peer.write_int8``) stands beside them.
Calibration: the split's 256 calibration digits; held out: its 540 test digits. The table
gives the logits' SQNR (dB) against the float export and top-1 agreement with float (%) on
the held-out digits; below it, the activations each checkout smoothed (its ``activation
smoothing`` note) and, per smoothing candidate with carriers, whether the tensors the strength
search rounds before a carrier (``Candidate.rounded_carried``; starred: per-channel codes) are
those this checkout's files round there (``carried_check``).

Run:  python benchmarks/carriers_trial.py [--base /tmp/wt-base ...] [--out DIR] [MODEL ...]
      (~2 min on 2 cores with one --base; needs torch and scikit-learn: the bench extra)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from export_test_models import export, train_digits
from onnx_session import cpu_session, run_session
from ort_peer import write_int8
from train_digits import load_split

from ptq_verify.engine import load_model
from ptq_verify.engine.smooth import _held_reach, candidates_of
from ptq_verify.graph import Node, OperatorTable

ROOT = Path(__file__).resolve().parent.parent
EXPORTS = {"legacy": 17, "dynamo": 18}
NOTE = re.compile(r"^note: activation smoothing(?: \((\d+)\))?: (.*)$", re.M)


class Scaled(torch.nn.Module):
    """x * factor (a Mul by a constant in the export)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _conv_bn_leaky(cin: int, cout: int, kernel: int, stride: int = 1) -> list[torch.nn.Module]:
    """A darknet block: Conv (no bias) -> BatchNorm -> LeakyReLU(0.1)."""
    return [torch.nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            torch.nn.BatchNorm2d(cout), torch.nn.LeakyReLU(0.1)]


def darknet() -> torch.nn.Module:
    """YOLO-style backbone on the 8x8 digit: four Conv-BN-LeakyReLU(0.1) blocks (a 1x1
    bottleneck among them), then a Linear head."""
    return torch.nn.Sequential(*_conv_bn_leaky(1, 16, 3), *_conv_bn_leaky(16, 32, 3, 2),
                               *_conv_bn_leaky(32, 16, 1), *_conv_bn_leaky(16, 32, 3),
                               torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10))


def dcgan() -> torch.nn.Module:
    """DCGAN-discriminator-style stack: strided 4x4 Convs with LeakyReLU(0.2), BN on the
    second, a last Conv to 10 logits."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 4, 2, 1), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(16, 32, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(32),
        torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(32, 10, 2), torch.nn.Flatten())


def _prelu(channels: int) -> torch.nn.PReLU:
    """PReLU with one slope per channel, drawn in [0.05, 0.5] (training moves them little)."""
    module = torch.nn.PReLU(num_parameters=channels)
    with torch.no_grad():
        module.weight.uniform_(0.05, 0.5)
    return module


def prelu_conv() -> torch.nn.Module:
    """Conv-BN-PReLU(C) blocks (MobileFaceNet's body), then a Linear head."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(16), _prelu(16),
        torch.nn.Conv2d(16, 16, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(16), _prelu(16),
        torch.nn.Conv2d(16, 32, 3, 2, 1), _prelu(32),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10))


def prelu_linear() -> torch.nn.Module:
    """Linear-BN-PReLU(C) layers (MobileFaceNet's embedding head written as an MLP)."""
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.BatchNorm1d(128), _prelu(128),
        torch.nn.Linear(128, 64), torch.nn.BatchNorm1d(64), _prelu(64), torch.nn.Linear(64, 10))


def mul_const() -> torch.nn.Module:
    """Linear -> x*0.5 -> Linear -> ReLU -> Linear."""
    return torch.nn.Sequential(torch.nn.Linear(64, 64), Scaled(0.5), torch.nn.Linear(64, 64),
                               torch.nn.ReLU(), torch.nn.Linear(64, 10))


def leaky_mul() -> torch.nn.Module:
    """Two carriers in a row: Linear -> LeakyReLU(0.1) -> x*0.5 -> Linear, twice."""
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.LeakyReLU(0.1), Scaled(0.5),
        torch.nn.Linear(64, 64), torch.nn.LeakyReLU(0.1), Scaled(0.5), torch.nn.Linear(64, 10))


def mul_leaky() -> torch.nn.Module:
    """The Mul first: Linear -> x*0.5 -> LeakyReLU(0.1) -> Linear, twice."""
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64), Scaled(0.5), torch.nn.LeakyReLU(0.1),
        torch.nn.Linear(64, 64), Scaled(0.5), torch.nn.LeakyReLU(0.1), torch.nn.Linear(64, 10))


def leaky_mlp() -> torch.nn.Module:
    """Linear(64,64) -> LeakyReLU(0.1) -> Linear(64,64) -> LeakyReLU(0.1) -> Linear(64,10)."""
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LeakyReLU(0.1),
                               torch.nn.Linear(64, 64), torch.nn.LeakyReLU(0.1),
                               torch.nn.Linear(64, 10))


def _outliers(module: torch.nn.Module) -> torch.nn.Module:
    """Seeded random weights with outlier channels: each weight layer's output channels (and
    each BatchNorm's) scaled by factors spread over 1/4..8 (log-uniform), BN statistics
    drawn as zoo.py draws them."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                spread = torch.exp(torch.empty(layer.weight.shape[0]).uniform_(
                    np.log(0.25), np.log(8.0), generator=generator))
                layer.weight.mul_(spread.reshape(-1, *[1] * (layer.weight.dim() - 1)))
            if isinstance(layer, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                layer.running_mean.normal_(0, 0.1, generator=generator)
                layer.running_var.uniform_(0.5, 2, generator=generator)
    return module


def _outlier_channel(module: torch.nn.Sequential, factor: float = 16.0) -> torch.nn.Sequential:
    """The same function with one outlier channel: channel 0 of the first carrier's input
    (the output of the Linear, Conv or BatchNorm before it, through a Mul by a scalar) times
    ``factor``, the next weight
    layer's input channel 0 divided by it (the carriers are homogeneous of degree 1, per
    channel), as the massive activations of large trained networks look."""
    layers = list(module)
    first = next(i for i, layer in enumerate(layers)
                 if isinstance(layer, (torch.nn.LeakyReLU, torch.nn.PReLU)))
    after = next(layer for layer in layers[first:]
                 if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)))
    before = next(layer for layer in reversed(layers[:first]) if hasattr(layer, "weight"))
    with torch.no_grad():
        before.weight[0] *= factor
        before.bias[0] *= factor
        after.weight[:, 0] /= factor
    return module


def _trained_with_outlier(build: Callable[[], torch.nn.Module], image: bool
                          ) -> Callable[[], torch.nn.Module]:
    """``build``'s model trained on digits, then given an outlier channel."""
    def made() -> torch.nn.Module:
        digits = load_split()
        module = build()
        train_digits(module, digits.train_x.reshape(-1, *((1, 8, 8) if image else (64,))),
                     digits.train_y)
        return _outlier_channel(module.eval())
    return made


# name -> (builder, image input, trained)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], bool, bool]] = {
    "darknet": (darknet, True, True),
    "darknet_seeded": (lambda: _outliers(darknet()), True, False),
    "dcgan_disc": (dcgan, True, True),
    "prelu_conv": (prelu_conv, True, True),
    "prelu_linear": (prelu_linear, False, True),
    "prelu_linear_seeded": (lambda: _outliers(prelu_linear()), False, False),
    "mul_const": (mul_const, False, True),
    "leaky_mul": (leaky_mul, False, True),
    "mul_leaky": (mul_leaky, False, True),
    "leaky_mlp": (leaky_mlp, False, True),
    "leaky_mlp_seeded": (lambda: _outliers(leaky_mlp()), False, False),
    "leaky_mlp_outlier": (_trained_with_outlier(leaky_mlp, False), False, False),
    "prelu_linear_outlier": (_trained_with_outlier(prelu_linear, False), False, False),
    "darknet_outlier": (_trained_with_outlier(darknet, True), True, False),
    "mul_leaky_outlier": (_trained_with_outlier(mul_leaky, False), False, False),
}


def run_outputs(model: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of ``model`` on ``feeds`` in a CPU session, by name."""
    session = cpu_session(model)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def sqnr(reference: np.ndarray, other: np.ndarray) -> float:
    return 10 * np.log10(float(np.sum(reference ** 2))
                         / max(float(np.sum((reference - other) ** 2)), 1e-30))


def measured(path: Path, reference: np.ndarray, feeds: dict[str, np.ndarray]) -> str:
    """'SQNR dB / top-1 agreement %' of the file at ``path`` against the float logits."""
    logits = run_session(path.read_bytes(), feeds)
    agree = 100 * float(np.mean(logits.argmax(1) == reference.argmax(1)))
    return f"{sqnr(reference, logits):.2f} / {agree:.1f}"


def quantized(checkout: Path, model: Path, calib: Path, out: Path, *extra: str) -> str:
    """Run ``ptq-verify quantize`` of ``checkout``; the smoothing note ('-' where none)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-m", "ptq_verify", "quantize", str(model),
                           "--calib", str(calib), "-o", str(out), "--no-progress", *extra],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(f"{model.name} {extra}: exit {done.returncode}: {done.stderr}")
    note = NOTE.search(done.stdout + done.stderr)
    if note is None or note.group(1) is None:
        return "-"
    return note.group(2)


def _channel_peaks(model: Path, tensors: list[str], axis: int,
                   feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each of ``tensors``' largest |value| per channel (along ``axis``) on ``feeds``."""
    proto = onnx.load(str(model))
    proto.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in tensors)
    values = run_outputs(proto.SerializeToString(), feeds)
    return {t: np.abs(np.moveaxis(values[t], axis, -1)).reshape(
        -1, values[t].shape[axis]).max(axis=0) for t in tensors}


def carried_check(model: Path, written: Path, plain: Path, feeds: dict[str, np.ndarray]) -> str:
    """For each smoothing candidate of ``model`` with carriers: whether the tensors the
    search rounds before a carrier (``Candidate.rounded_carried``) are the carriers' inputs
    the written QDQ file (``written``, smoothing on) reads through a DequantizeLinear of a
    scale of their own (the same scale as the carrier's output: codes passed on, a Relu),
    and whether those the file without smoothing nor equalization (``plain``: the graph the
    search reads) holds with per-channel codes (a Mul by
    one constant per channel on either side of the pair) are those the search rounds per
    channel unsmoothed (``smooth._held_reach`` of their ranges on ``feeds``). 'ok [...]'
    (per-channel ones starred) or 'search=...; file=...'."""
    graph = load_model(model)
    found = []
    for candidate in candidates_of(graph, OperatorTable()):
        if not candidate.chain:
            continue
        makers = (candidate.source, *candidate.chain)
        pairs = [(maker.node.outputs[0], carrier.node)
                 for maker, carrier in zip(makers, makers[1:])]
        rounded = _rounded_in(written, pairs)
        per_channel = {t for t, channels in _rounded_in(plain, pairs).items() if channels}
        peaks = _channel_peaks(model, list(candidate.rounded_carried), candidate.axis, feeds)
        modelled = {t for t in candidate.rounded_carried
                    if np.ndim(_held_reach(peaks[t], per_channel=True))}
        search = sorted(candidate.rounded_carried)
        if search == sorted(rounded) and modelled == per_channel:
            verdict = f"ok {[t + '*' * (t in modelled) for t in search]}"
        else:
            verdict = (f"search={[t + '*' * (t in modelled) for t in search]}; file="
                       f"{[t + '*' * (t in per_channel) for t in sorted(rounded)]}")
        found.append(f"{candidate.tensor}: {verdict}")
    return ", ".join(found) or "(no carriers)"


def _rounded_in(written: Path, pairs: list[tuple[str, Node]]) -> dict[str, bool]:
    """Of the (tensor, carrier) pairs, the tensors the QDQ file ``written`` rounds to codes
    of their own before the carrier, each with whether those codes are per channel."""
    qdq = onnx.load(str(written)).graph
    producer = {o: n for n in qdq.node for o in n.output}
    nodes = {n.name: n for n in qdq.node}
    constants = {i.name: i for i in qdq.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in qdq.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)

    def per_channel_mul(node: onnx.NodeProto | None) -> str | None:
        """The activation input of a Mul by one constant per channel, else None."""
        if node is None or node.op_type != "Mul":
            return None
        sizes = {name: int(np.prod(constants[name].dims)) for name in node.input
                 if name in constants}
        if len(sizes) != 1 or max(sizes.values()) < 2:
            return None
        return next(name for name in node.input if name not in constants)

    rounded = {}
    for tensor, carrier in pairs:
        node = nodes.get(carrier.name)
        if node is None:  # folded or renamed in the written file
            rounded[f"?{carrier.name}"] = False
            continue
        feeding = producer.get(node.input[list(carrier.inputs).index(tensor)])
        channels = (inner := per_channel_mul(feeding)) is not None
        if channels:
            feeding = producer.get(inner)
        after = [n for n in readers.get(node.output[0], []) if n.op_type == "QuantizeLinear"]
        if (feeding is not None and feeding.op_type == "DequantizeLinear"
                and not any(q.input[1] == feeding.input[1] for q in after)):
            rounded[tensor] = channels
    return rounded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"among {', '.join(MODELS)} (default: all)")
    parser.add_argument("--base", type=Path, action="append", default=[],
                        help="a checkout of the code before a change (repeatable: one column "
                             "pair each, named by its folder)")
    parser.add_argument("--out", type=Path, help="folder for the files (default: a temporary one)")
    args = parser.parse_args(argv)
    if unknown := set(args.models) - set(MODELS):
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    digits = load_split()
    folder = args.out or Path(tempfile.mkdtemp(prefix="carriers_trial_"))
    folder.mkdir(parents=True, exist_ok=True)
    rows, notes = [], []
    for name in args.models or list(MODELS):
        build, image, trained = MODELS[name]
        torch.manual_seed(0)
        module = build()
        shape = (1, 8, 8) if image else (64,)
        train = digits.train_x.reshape(-1, *shape)
        if trained:
            train_digits(module, train, digits.train_y)
        module.eval()
        calib = {"input": digits.calibration_x.reshape(-1, *shape)}
        test = {"input": digits.test_x.reshape(-1, *shape)}
        for exporter, opset in EXPORTS.items():
            model = folder / f"{name}.{exporter}.onnx"
            calib_file = folder / f"{name}.{exporter}.calib.npz"
            onnx.save(export(module, calib, exporter, opset), str(model))
            np.savez(calib_file, **calib)
            reference = run_session(model.read_bytes(), test)
            row = [f"{name} {exporter}"]
            runs = [("after", ROOT), *((base.name, base) for base in args.base)]
            for label, checkout in runs:
                for extra in ([], ["--no-smooth"]):
                    out = folder / f"{name}.{exporter}.{label}{''.join(extra)}.onnx"
                    note = quantized(checkout, model, calib_file, out, *extra)
                    row.append(measured(out, reference, test))
                    if not extra:
                        notes.append(f"{name} {exporter} {label}: {note}")
            plain = folder / f"{name}.{exporter}.plain.onnx"  # the graph the search reads
            quantized(ROOT, model, calib_file, plain, "--no-smooth", "--no-equalize")
            notes.append(f"{name} {exporter} carried: " + carried_check(
                model, folder / f"{name}.{exporter}.after.onnx", plain, calib))
            peer = folder / f"{name}.{exporter}.peer.onnx"
            write_int8(model, calib, peer, per_channel=True)
            row.append(measured(peer, reference, test))
            rows.append(row)
            print(" | ".join(row), flush=True)
    head = ["model export", "smooth", "--no-smooth"]
    for base in args.base:
        head += [f"{base.name}: smooth", f"{base.name}: --no-smooth"]
    print("\nheld-out logits SQNR dB / top-1 agreement % (540 digits)\n")
    print("| " + " | ".join([*head, "quantize_static"]) + " |")
    print("|" + "---|" * (len(head) + 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for line in notes:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
