"""Base-size models: ptq-verify against onnxruntime's quantize_static in time, memory, fidelity.

The other benchmarks use small or mid-size models; users also have base-size ones. Two are
built here from transformers' default configs (random weights, seeded: the point is the size
and what the exporter writes) and exported by torch's legacy exporter at opset 17:

    bert_base  BertModel(BertConfig()) (hidden 768, 12 layers, 110 M parameters, 435 MB), eager
               attention (the classic additive mask), inputs input_ids, attention_mask,
               token_type_ids (int64, batch and sequence free), output the last hidden state;
               data: standard-library docstrings hashed into the vocabulary, 64 tokens, padded
               tails masked (32 texts to calibrate, 16 others to evaluate)
    resnet50   ResNetModel(ResNetConfig()) (25 M parameters, 94 MB, BatchNorm after every
               convolution), input [N, 3, 224, 224], output the pooled features; data: crops
               of scikit-learn's sample photos, ImageNet-normalised (32 to calibrate, 16 others
               to evaluate)

Each tool runs as a user runs it, in a fresh process: ``ptq-verify quantize MODEL --calib
DATA -o OUT --no-progress`` (its defaults) and ``python ort_peer.py MODEL DATA OUT
--per-channel`` (quantize_static, QDQ int8, MinMax, per-channel weights: the better of its two
weight settings on these models). The table gives each one's wall time, its peak resident
memory (the child's ru_maxrss), and the SQNR of the output on the evaluation data (the
masked tokens left out), both quantized files and the float one run in a default onnxruntime
session.

Run:  python benchmarks/base_models.py [bert_base] [resnet50]
      (about 6 minutes on 2 cores; needs the bench extra; ~550 MB in a temporary folder)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOKENS, CALIBRATION, EVALUATION = 64, 32, 16
IMAGE = 224
MODELS = ("bert_base", "resnet50")


def token_data(count: int, skip: int) -> dict[str, np.ndarray]:
    """``count`` docstring texts after the first ``skip``, as BERT's three inputs."""
    from minilm import texts

    chosen = texts(skip + count)[skip:]
    ids = np.zeros((count, TOKENS), np.int64)
    mask = np.zeros((count, TOKENS), np.int64)
    for row, text in enumerate(chosen):
        words = text.split()[:TOKENS - 1]
        ids[row, 0] = 101  # [CLS]
        ids[row, 1:len(words) + 1] = [1000 + zlib.crc32(w.encode()) % 29000 for w in words]
        mask[row, :len(words) + 1] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def image_data(count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` IMAGE x IMAGE crops of scikit-learn's sample photos, ImageNet-normalised."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        size = int(rng.integers(IMAGE, min(photo.shape[:2])))
        top = int(rng.integers(0, photo.shape[0] - size))
        left = int(rng.integers(0, photo.shape[1] - size))
        pick = np.linspace(0, size - 1, IMAGE).astype(int)
        crop = photo[top:top + size, left:left + size][pick][:, pick]
        crops.append(crop.astype(np.float32).transpose(2, 0, 1) / 255)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return {"pixel_values": (np.stack(crops) - mean) / std}


def export(name: str, path: Path) -> None:
    """The model ``name`` exported to ``path`` (legacy exporter, opset 17)."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    if name == "bert_base":
        model = hf.BertModel(hf.BertConfig(attn_implementation="eager")).eval()
        names, output = ["input_ids", "attention_mask", "token_type_ids"], "last_hidden_state"
        args = tuple(torch.from_numpy(a[:2]) for a in token_data(2, 0).values())
        axes = {n: {0: "batch", 1: "sequence"} for n in (*names, output)}
    else:
        model = hf.ResNetModel(hf.ResNetConfig()).eval()
        names, output = ["pixel_values"], "pooler_output"
        args = (torch.from_numpy(image_data(1, 0)["pixel_values"]),)
        axes = {n: {0: "batch"} for n in (*names, output)}

    class Output(torch.nn.Module):  # the model's one output, from positional inputs
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return getattr(self.model(**dict(zip(names, inputs))), output)

    with torch.no_grad():
        torch.onnx.export(Output().eval(), args, str(path), input_names=names,
                          output_names=[output], dynamic_axes=axes, opset_version=17,
                          dynamo=False)


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident GB) of ``command`` run to its end; raises if it fails."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise RuntimeError(f"{' '.join(command)} failed: {child.stderr.read().decode()[-500:]}")
    return wall, usage.ru_maxrss / 2**20  # (KB on Linux)


def sqnr(paths: list[Path], data: dict[str, np.ndarray]) -> list[float]:
    """The output SQNR (dB) of each quantized model in ``paths[1:]`` against the float one,
    ``paths[0]``, on ``data``; tokens the attention mask hides are left out."""
    import onnxruntime as ort

    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
               .run(None, data)[0] for p in paths]
    keep = data["attention_mask"].astype(bool) if "attention_mask" in data else slice(None)
    reference = outputs[0][keep]
    return [float(10 * np.log10(np.sum(reference ** 2) / np.sum((out[keep] - reference) ** 2)))
            for out in outputs[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"any of {', '.join(MODELS)} (default: both)")
    args = parser.parse_args(argv)
    if unknown := set(args.models) - set(MODELS):
        parser.error(f"unknown model {sorted(unknown)[0]!r}: choose from {', '.join(MODELS)}")
    sys.path.insert(0, str(HERE))
    ours = [sys.executable, "-m", "ptq_verify", "quantize"]
    print("| model | tool | wall time (s) | peak memory (GB) | output SQNR (dB) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models or MODELS:
            model, calib = Path(folder) / f"{name}.onnx", Path(folder) / f"{name}.npz"
            export(name, model)
            calibration, evaluation = ((token_data(CALIBRATION, 0), token_data(EVALUATION, 256))
                                       if name == "bert_base" else
                                       (image_data(CALIBRATION, 0), image_data(EVALUATION, 1)))
            np.savez(calib, **calibration)
            written = [Path(folder) / f"{name}.{tool}.onnx" for tool in ("ours", "peer")]
            runs = [timed([*ours, str(model), "--calib", str(calib), "-o", str(written[0]),
                           "--no-progress"]),
                    timed([sys.executable, str(HERE / "ort_peer.py"), str(model), str(calib),
                           str(written[1]), "--per-channel"])]
            for tool, (wall, peak), db in zip(("ptq-verify", "quantize_static per-channel"),
                                              runs, sqnr([model, *written], evaluation)):
                print(f"| {name} | {tool} | {wall:.1f} | {peak:.2f} | {db:.1f} |", flush=True)
            for path in (model, *written):
                path.unlink()
    from machine import describe

    for line in describe():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
