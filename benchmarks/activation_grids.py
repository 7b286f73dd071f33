"""How far can 8-bit activations go on EfficientNet-Lite1? Weights float, activations rounded.

The real-CNN targets (>= 95% top-1 agreement and >= 20 dB logit SQNR at 8 bits; >= 90% with
per-tensor weights) are read against this table: it isolates the activations' share of the
error, whatever the engine does to the weights. Each row puts a QuantizeLinear /
DequantizeLinear pair (onnxruntime, optimizations off, so each pair rounds exactly as written)
on every tensor that a Conv, Gemm or Add reads, the network input included, with one choice of
grid, and leaves the weights in float:

- max-abs per tensor: symmetric, unsigned where the calibration minimum is >= 0 (the engine's
  default at 8 bits);
- min/max per tensor: asymmetric, a zero point (uses all 256 codes on a shifted range);
- MSE-clipped per tensor: the range that minimises the rounding + clipping error of the
  calibration values (``--calibration mse``'s criterion);
- max-abs per channel on every 4-D tensor (more than an integer pipeline can take: a
  convolution that mixes channels needs one input scale);
- max-abs per channel on the depthwise convolutions' inputs only (what it can take);
- max-abs per tensor with the first K of those tensors (graph order) in float: the
  mixed-precision bound that ``--keep-float`` approaches.

A second table reads the metric itself: the float logits of the evaluation crops plus white
Gaussian noise scaled to a given logit SQNR (20 draws each), and the top-1 agreement that
leaves. The photos are far from ImageNet (textures, a page, a cell), so the float model is
unsure of most crops (small top-1/top-2 margins) and a small perturbation flips its argmax:
this says which agreement a logit SQNR can buy on this evaluation set at all.

Model and data as in benchmarks/efficientnet.py (folded export, calibration crops from the
first half of each photo, evaluation crops from the second); ranges from the calibration crops.

Run:  python benchmarks/activation_grids.py   [--calibration 64 --evaluation 256]
      [--model out/efficientnet_folded.onnx]  (a saved folded export instead of exporting)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from efficientnet import add_crop_arguments, crop_sets, export, logits
from onnx import helper, numpy_helper

LEVELS = 255  # 8 bits
Grid = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, int | None]]


def symmetric(low: np.ndarray | float, high: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Max-abs scales, one per element of ``low``/``high`` (the calibration minima and maxima),
    and their zero points: unsigned codes when every minimum is >= 0."""
    unsigned = bool(np.min(low) >= 0)
    levels = LEVELS if unsigned else LEVELS // 2
    peaks = np.maximum(np.maximum(np.abs(low), np.abs(high)), 1e-8)
    return ((peaks / levels).astype(np.float32),
            np.zeros(np.shape(peaks), np.uint8 if unsigned else np.int8))


def asymmetric(low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """One scale and a zero point spanning [min(low, 0), max(high, 0)] with all 256 codes."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max(high - low, 1e-8) / LEVELS
    return np.array(scale, np.float32), np.array(round(-low / scale), np.uint8)


def mse_clip(points: np.ndarray, unsigned: bool, counts: np.ndarray | None = None) -> float:
    """The clip (36 candidates from 30% to 100% of the largest |point|) whose symmetric 8-bit
    grid minimises the rounding + clipping error of ``points`` (weighted by ``counts``)."""
    levels = LEVELS if unsigned else LEVELS // 2
    reach = float(np.abs(points).max())

    def error(clip: float) -> float:
        step = clip / levels
        codes = np.clip(np.round(points / step), 0 if unsigned else -levels - 1, levels)
        return float(np.average((codes * step - points) ** 2, weights=counts))

    return min(np.linspace(0.3, 1.0, 36) * reach, key=error)


def max_abs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
    return *symmetric(values.min(), values.max()), None


def min_max(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
    return *asymmetric(values.min(), values.max()), None


def mse_clipped(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
    """The max-abs grid with its range shrunk to the MSE-optimal clip (on a subsample of at
    most ~200k values)."""
    unsigned = values.min() >= 0
    clip = mse_clip(values.ravel()[::max(1, values.size // 200_000)], unsigned)
    return *symmetric(0.0 if unsigned else -clip, clip), None


def per_channel(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
    if values.ndim != 4:
        return max_abs(values)
    return *symmetric(values.min(axis=(0, 2, 3)), values.max(axis=(0, 2, 3))), 1


def read_tensors(model: onnx.ModelProto) -> list[str]:
    """The activations a Conv, Gemm or MatMul reads as data, or an Add reads, in graph order."""
    constants = {tensor.name for tensor in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        slots = node.input[:2] if node.op_type == "Add" else node.input[:1] if (
            node.op_type in ("Conv", "Gemm", "MatMul")) else []
        names += [name for name in slots if name not in constants and name not in names]
    return names


def depthwise_inputs(model: onnx.ModelProto) -> set[str]:
    return {node.input[0] for node in model.graph.node if node.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in node.attribute)}


def qdq(name: str, scale: np.ndarray, zero: np.ndarray, axis: int | None,
        output: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """A QuantizeLinear/DequantizeLinear pair rounding ``name`` into ``output``, and its
    scale and zero point."""
    extra = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", [name, f"{name}_scale", f"{name}_zero"],
                              [f"{name}_codes"], **extra),
             helper.make_node("DequantizeLinear", [f"{name}_codes", f"{name}_scale",
                                                   f"{name}_zero"], [output], **extra)]
    return nodes, [numpy_helper.from_array(scale, f"{name}_scale"),
                   numpy_helper.from_array(zero, f"{name}_zero")]


def rounded(model: onnx.ModelProto, grids: dict[str, Grid], values: dict) -> bytes:
    """``model`` with a QuantizeLinear/DequantizeLinear pair after each tensor of ``grids``
    (each grid computes its scale from ``values[name]``)."""
    chains, constants = {}, []
    for name, grid in grids.items():
        chains[name], initializers = qdq(name, *grid(values[name]), f"{name}_rounded")
        constants += initializers
    return spliced(model, chains, constants).SerializeToString()


def spliced(model: onnx.ModelProto, chains: dict[str, list[onnx.NodeProto]],
            constants: list[onnx.TensorProto]) -> onnx.ModelProto:
    """A copy of ``model`` where the nodes ``chains[name]`` (which read ``name`` and write
    ``{name}_rounded``) run right after ``name`` is made and every reader of ``name`` reads
    ``{name}_rounded`` instead."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    graph.initializer.extend(constants)
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name in chains:
                node.input[slot] = f"{name}_rounded"
    nodes = [chain for name in graph.input if name.name in chains for chain in chains[name.name]]
    for node in list(graph.node):
        nodes.append(node)
        nodes += [chain for name in node.output if name in chains for chain in chains[name]]
    del graph.node[:]
    graph.node.extend(nodes)
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_crop_arguments(parser)
    parser.add_argument("--model", type=Path, help="a saved folded export "
                        "(python benchmarks/efficientnet.py --save DIR) instead of exporting")
    args = parser.parse_args(argv)
    from machine import describe

    from ptq_verify.engine import sqnr_db

    calibration, evaluation = crop_sets(args)
    with tempfile.TemporaryDirectory() as folder:
        path = args.model or Path(folder) / "efficientnet_folded.onnx"
        if args.model is None:
            export(path, raw=False)
        model = onnx.load(path)
    tensors = read_tensors(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inputs = {tensor.name for tensor in model.graph.input}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in tensors
                              if name not in inputs)
    session_outputs = [output.name for output in probe.graph.output]
    values = dict(zip(session_outputs[1:], _outputs(probe, calibration)[1:]))
    values.update({name: calibration for name in inputs})
    depthwise = depthwise_inputs(model)
    rows: list[tuple[str, dict[str, Grid]]] = [
        ("max-abs per tensor (the engine's default)", dict.fromkeys(tensors, max_abs)),
        ("min/max per tensor (zero point)", dict.fromkeys(tensors, min_max)),
        ("MSE-clipped per tensor", dict.fromkeys(tensors, mse_clipped)),
        ("max-abs per channel, every 4-D tensor", dict.fromkeys(tensors, per_channel)),
        ("max-abs per channel on the depthwise inputs, per tensor elsewhere",
         {name: per_channel if name in depthwise else max_abs for name in tensors}),
    ]
    for kept in (1, 2, 4, 8):
        rows.append((f"max-abs per tensor, the first {kept} in float",
                     dict.fromkeys(tensors[kept:], max_abs)))
    reference = logits(model.SerializeToString(), evaluation, optimize=False)
    print_noise_table(reference)
    print(f"EfficientNet-Lite1, float weights, {len(tensors)} activations at 8 bits, "
          f"{args.calibration} calibration and {args.evaluation} evaluation crops\n")
    print("| activations | top-1 agreement | logit SQNR (dB) |")
    print("|---|---|---|")
    for label, grids in rows:
        out = logits(rounded(model, grids, values), evaluation, optimize=False)
        agreement = np.mean(out.argmax(axis=1) == reference.argmax(axis=1))
        print(f"| {label} | {agreement:.1%} | {sqnr_db(reference, out):.1f} |", flush=True)
    print("", *describe(), sep="\n")
    return 0


def print_noise_table(reference: np.ndarray, draws: int = 20) -> None:
    """Top-1 agreement of the float logits plus white noise at each logit SQNR, and the
    float model's own top-1 probabilities and margins on these crops."""
    from ptq_verify.engine import sqnr_db

    top = np.sort(reference, axis=1)
    margin = top[:, -1] - top[:, -2]
    shifted = np.exp(reference - top[:, -1:])
    probability = (shifted / shifted.sum(axis=1, keepdims=True)).max(axis=1)
    print(f"Float model on the {len(reference)} evaluation crops: top-1 probability median "
          f"{np.median(probability):.3f} (10% of crops below {np.quantile(probability, 0.1):.3f}); "
          f"top-1 minus top-2 logit median {np.median(margin):.3f} (10% below "
          f"{np.quantile(margin, 0.1):.3f})\n")
    print("| white noise on the float logits | measured logit SQNR (dB) | top-1 agreement |")
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    power = float(np.sum(reference.astype(np.float64) ** 2))
    for target in (15, 20, 25, 30, 35, 40):
        agreement, measured = [], []
        for _ in range(draws):
            noise = rng.standard_normal(reference.shape)
            noise *= np.sqrt(power / 10 ** (target / 10) / np.sum(noise ** 2))
            noisy = reference + noise
            agreement.append(np.mean(noisy.argmax(axis=1) == reference.argmax(axis=1)))
            measured.append(sqnr_db(reference, noisy))
        print(f"| {target} dB | {np.mean(measured):.1f} | {np.mean(agreement):.1%} |")
    print()


def _outputs(model: onnx.ModelProto, data: np.ndarray) -> list[np.ndarray]:
    """Every output of ``model`` on ``data``, 32 crops at a time, concatenated."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [session.run(None, {name: data[i:i + 32]}) for i in range(0, len(data), 32)]
    return [np.concatenate(parts) for parts in zip(*batches)]


if __name__ == "__main__":
    sys.exit(main())
