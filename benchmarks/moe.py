"""Mixture-of-experts decoders: held-out SQNR, and how often a quantized router picks other experts.

Each model is built from a small config with random weights (4 experts, 2 per token), exported
by both torch exporters and quantized through the CLI as zoo.py does (its data: docstring words
hashed into the vocabulary, padded tails masked; even rows calibrate, odd rows are held out),
in the qdq and integer formats, beside onnxruntime's quantize_static (per-channel QDQ,
benchmarks/ort_peer.py). On the held-out rows it measures the last hidden state's SQNR against
the float export (all positions, and the real tokens alone) and, for every TopK of the float
export (a router's choice of experts; found again by node name in the quantized files), the
share of real tokens whose chosen set of experts differs from the float model's.

transformers' default experts (grouped_mm) fail in both torch exporters, so every model uses
``experts_implementation="batched_mm"`` (zoo.py says why). DeepSeek-V3's routing writes TopKs
with ``sorted=0``, which the catalog does not declare: it is quantized with ``--float-op TopK``
(docs/limits.md).

Run:  python benchmarks/moe.py [--samples N] [MODEL ...]   (~4 min on 2 cores; the bench extra)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import zoo

EXTRA_ARGS = {"deepseek_v3": ["--float-op", "TopK"]}


def models() -> dict:
    """zoo.py's mixture-of-experts rows and three more routings: DeepSeek-V3 (Sigmoid scores,
    a TopK over groups of experts, unsorted TopKs), OLMoE and Qwen3-MoE (TopK after the
    router's Softmax, no shared expert)."""
    import transformers as hf

    small = dict(zoo.SMALL, num_key_value_heads=1, use_cache=False, vocab_size=zoo.VOCAB,
                 experts_implementation="batched_mm")
    found = {name: build for name, build in zoo.architectures().items()
             if name in ("mixtral", "qwen2_moe", "gpt_oss")}
    found["olmoe"] = lambda: hf.OlmoeModel(hf.OlmoeConfig(
        **small, num_experts=4, num_experts_per_tok=2))
    found["qwen3_moe"] = lambda: hf.Qwen3MoeModel(hf.Qwen3MoeConfig(
        **small, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32))
    found["deepseek_v3"] = lambda: hf.DeepseekV3Model(hf.DeepseekV3Config(
        **dict(small, num_key_value_heads=2), moe_intermediate_size=32, n_routed_experts=4,
        n_shared_experts=1, num_experts_per_tok=2, n_group=2, topk_group=1,
        first_k_dense_replace=1, q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8,
        qk_nope_head_dim=8, v_head_dim=16))
    return found


def routed(path: Path, routers: list[str], feeds: dict[str, np.ndarray]
           ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The model's first output and the indices output of each TopK named in ``routers``."""
    model = onnx.load(str(path))
    by_name = {node.name: node.output[1] for node in model.graph.node if node.op_type == "TopK"}
    missing = [name for name in routers if name not in by_name]
    if missing:
        raise SystemExit(f"{path.name}: no TopK named {missing[0]!r}")
    for name in routers:
        model.graph.output.append(onnx.helper.make_tensor_value_info(
            by_name[name], onnx.TensorProto.INT64, None))
    results = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    return results[0], results[len(results) - len(routers):]


def measure(source: Path, written: Path, feeds: dict[str, np.ndarray]) -> str:
    """SQNR all / real tokens and the share of real tokens routed elsewhere, per router."""
    routers = [node.name for node in onnx.load(str(source)).graph.node
               if node.op_type == "TopK"]
    reference, chosen = routed(source, routers, feeds)
    got, theirs = routed(written, routers, feeds)
    real = feeds["attention_mask"].astype(bool)
    error = (reference.astype(np.float64) - got) ** 2
    whole = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum(error))
    tokens = 10 * np.log10(np.sum(reference[real].astype(np.float64) ** 2)
                           / np.sum(error[real]))
    shares = []
    for ours, float_choice in zip(theirs, chosen):
        rows = float_choice.reshape(-1, float_choice.shape[-1])
        differ = np.any(np.sort(rows, -1) != np.sort(ours.reshape(rows.shape), -1), -1)
        counted = real.reshape(-1) if len(differ) == real.size else np.ones(len(differ), bool)
        shares.append(f"{100 * differ[counted].mean():.1f}%")
    return f"{whole:.1f} / {tokens:.1f} dB, experts differ {', '.join(shares)}"


def run(name: str, build, exporter: str, opset: int, folder: Path) -> list[str]:
    try:
        path, calib, held = zoo.export(name, exporter, opset, folder, True, build)
    except Exception as error:  # the exporter's failure, not ptq-verify's
        return [name, f"{exporter} {opset}", f"export failed: {str(error).splitlines()[0][:60]}"]
    feeds = dict(np.load(held))
    row = [name, f"{exporter} {opset}"]
    for form in ("qdq", "integer"):
        out = path.with_suffix(f".{form}.onnx")
        done = subprocess.run([sys.executable, "-m", "ptq_verify", "quantize", str(path),
                               "--calib", str(calib), "-o", str(out), "--format", form,
                               "--no-progress", *EXTRA_ARGS.get(name, [])],
                              capture_output=True, text=True)
        row.append(measure(path, out, feeds) if done.returncode == 0 else
                   f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:80]}")
    from ort_peer import write_int8

    theirs = path.with_suffix(".ort.onnx")
    write_int8(path, dict(np.load(calib)), theirs, per_channel=True)
    row.append(measure(path, theirs, feeds))
    return row


def main(argv: list[str] | None = None) -> int:
    found = models()
    parser = zoo.trial_parser(__doc__.splitlines()[0], found, 64, "texts")
    args = zoo.trial_arguments(parser, found, argv)
    print("| model | export | ptq-verify qdq: SQNR all / real tokens | integer | "
          "quantize_static |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models or list(found):
            for exporter, opset in zoo.EXPORTS:
                print(f"{name} {exporter}...", file=sys.stderr, flush=True)
                row = run(name, found[name], exporter, opset, Path(folder))
                print("| " + " | ".join(re.sub(r"\|", "/", cell) for cell in row) + " |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
