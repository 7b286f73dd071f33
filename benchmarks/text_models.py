"""Text encoders zoo.py does not build: ptq-verify on each, as a new user runs it.

Each model is built from a small config with random weights (hidden 32, 2 layers, 2 heads;
seeded), its last hidden state exported by both torch exporters as zoo.py exports (legacy,
opset 17, no constant folding; dynamo, opset 18), and fed to the CLI: ``ptq-verify audit`` and
``ptq-verify quantize MODEL --calib calib.npz -o OUT`` in the qdq and integer formats, beside
onnxruntime's quantize_static (per-channel QDQ, benchmarks/ort_peer.py). The data is zoo.py's
(docstring words hashed into the vocabulary, padded tails masked; even rows calibrate, odd rows
are held out); LayoutLM takes word boxes as well, made here from each word's place in its text.
On the held-out rows it measures the last hidden state's SQNR against the float export over
all positions and over the real tokens (where the output keeps one position per token).

The architectures bring what the zoo lacks: Fourier mixing (FNet, its DFT as matrices or as
torch's FFT), elementwise affine in place of LayerNorm and bottlenecks (MobileBERT), grouped
1-D convolutions over tokens (SqueezeBERT), span-based dynamic convolution (ConvBERT), pooling
and upsampling of the sequence (Funnel), rotary embeddings and token dropout (ESM, RoFormer),
relative position buckets (MPNet), word boxes (LayoutLM), language adapters (X-MOD),
sliding-window and block-sparse attention (Longformer, BigBird), two-stream relative attention
(XLNet), LSH attention (Reformer), sampled attention (YOSO, MRA), cross-attention to latents
(Perceiver), ELECTRA's embedding projection and ModernBERT's alternating local and global
attention. ``--float-op`` is given where the catalog lacks an op (EXTRA_ARGS); ``--save DIR``
keeps the exports, their data and the quantized files. ``--free-length``: legacy exports with
the sequence axis free as well (as users export for texts of any length), calibrated at 16
tokens and measured (qdq) on held-out texts of 9, 16 and 24 tokens.

Run:  python benchmarks/text_models.py [--samples N] [--save DIR] [--free-length] [MODEL ...]
      (~5 min on 2 cores, --free-length ~2 min; the bench extra)
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import zoo

SMALL = dict(zoo.SMALL, vocab_size=zoo.VOCAB)
# an ONNX op the catalog does not declare in this form, kept in float as the refusal advises:
# YOSO's Pow by 9
EXTRA_ARGS = {"yoso": ["--float-op", "Pow"]}
LENGTHS = (9, 16, 24)  # --free-length: held-out lengths, shorter and longer than calibrated


def models() -> dict:
    """Builders of the trial's text encoders, by name."""
    import torch
    import transformers as hf

    class Perceiver(torch.nn.Module):
        """A Perceiver over token ids (its text preprocessor), called as the others are."""

        def __init__(self) -> None:
            super().__init__()
            config = hf.PerceiverConfig(
                num_latents=8, d_latents=32, d_model=32, num_blocks=1,
                num_self_attends_per_block=2, num_self_attention_heads=2,
                num_cross_attention_heads=2, vocab_size=zoo.VOCAB, max_position_embeddings=64)
            self.model = hf.PerceiverModel(config, input_preprocessor=hf.models.perceiver.
                                           modeling_perceiver.PerceiverTextPreprocessor(config))

        def forward(self, input_ids, attention_mask):
            return self.model(inputs=input_ids, attention_mask=attention_mask)

    return {
        "fnet_dft": lambda: hf.FNetModel(hf.FNetConfig(
            **SMALL, use_tpu_fourier_optimizations=True, tpu_short_seq_length=zoo.SEQUENCE)),
        "fnet_fft": lambda: hf.FNetModel(hf.FNetConfig(**SMALL)),
        "mobilebert": lambda: hf.MobileBertModel(hf.MobileBertConfig(
            **SMALL, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
            num_feedforward_networks=2, normalization_type="no_norm")),
        "squeezebert": lambda: hf.SqueezeBertModel(hf.SqueezeBertConfig(
            **SMALL, embedding_size=32, q_groups=2, k_groups=2, v_groups=2,
            post_attention_groups=2, intermediate_groups=2, output_groups=2)),
        "convbert": lambda: hf.ConvBertModel(hf.ConvBertConfig(
            **SMALL, embedding_size=32, head_ratio=2, conv_kernel_size=3, num_groups=1)),
        "funnel": lambda: hf.FunnelBaseModel(hf.FunnelConfig(
            vocab_size=zoo.VOCAB, block_sizes=[1, 1], d_model=32, n_head=2, d_head=16,
            d_inner=64)),
        "electra": lambda: hf.ElectraModel(hf.ElectraConfig(**SMALL, embedding_size=16)),
        "esm": lambda: hf.EsmModel(hf.EsmConfig(
            **SMALL, position_embedding_type="rotary", token_dropout=True, mask_token_id=3,
            pad_token_id=0, max_position_embeddings=64), add_pooling_layer=False),
        "roformer": lambda: hf.RoFormerModel(hf.RoFormerConfig(**SMALL, embedding_size=32)),
        "mpnet": lambda: hf.MPNetModel(hf.MPNetConfig(**SMALL),
                                       add_pooling_layer=False),
        "layoutlm": lambda: hf.LayoutLMModel(hf.LayoutLMConfig(**SMALL)),
        "xmod": lambda: hf.XmodModel(hf.XmodConfig(
            **SMALL, languages=("en_XX", "de_DE"), default_language="en_XX")),
        "longformer": lambda: hf.LongformerModel(hf.LongformerConfig(
            **SMALL, attention_window=4), add_pooling_layer=False),
        "bigbird": lambda: hf.BigBirdModel(hf.BigBirdConfig(
            **SMALL, attention_type="block_sparse", block_size=2, num_random_blocks=1),
            add_pooling_layer=False),
        "funnel_full": lambda: hf.FunnelModel(hf.FunnelConfig(
            vocab_size=zoo.VOCAB, block_sizes=[1, 1], num_decoder_layers=1, d_model=32, n_head=2,
            d_head=16, d_inner=64)),
        "xlnet": lambda: hf.XLNetModel(hf.XLNetConfig(
            vocab_size=zoo.VOCAB, d_model=32, n_layer=2, n_head=2, d_inner=64,
            use_mems_eval=False)),
        "reformer": lambda: hf.ReformerModel(hf.ReformerConfig(
            vocab_size=zoo.VOCAB, hidden_size=32, attention_head_size=16, num_attention_heads=2,
            feed_forward_size=64, attn_layers=["local", "lsh"], axial_pos_embds=False,
            max_position_embeddings=64, local_attn_chunk_length=4, lsh_attn_chunk_length=4,
            num_buckets=4, num_hashes=1, is_decoder=False, pad_token_id=0)),
        "yoso": lambda: hf.YosoModel(hf.YosoConfig(**SMALL, use_expectation=True,
                                                   conv_window=None, use_fast_hash=False)),
        "mra": lambda: hf.MraModel(hf.MraConfig(**SMALL, block_per_row=2, approx_mode="full",
                                                max_position_embeddings=64)),
        "perceiver": Perceiver,
        "modernbert": lambda: hf.ModernBertModel(hf.ModernBertConfig(
            **SMALL, global_attn_every_n_layers=2, local_attention=4, pad_token_id=0,
            bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)),
    }


def boxes(mask: np.ndarray) -> np.ndarray:
    """LayoutLM's word boxes (x0, y0, x1, y1 in 0-1000): the words of a text laid out on lines
    of 4, each word's width from its place; padding 0."""
    count, length = mask.shape
    place = np.arange(length)
    x0 = (place % 4) * 240 + 20
    y0 = (place // 4) * 60 + 40
    box = np.stack([x0, y0, x0 + 200 - 10 * (place % 3), y0 + 40], -1)
    return (np.broadcast_to(box, (count, length, 4)) * mask[..., None]).astype(np.int64)


def token_feeds(takes, count: int, length: int = zoo.SEQUENCE
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """zoo.py's texts at ``length`` tokens, the inputs the model ``takes`` (LayoutLM's boxes
    made here), and their attention mask (the real tokens, whether the model takes it or not)."""
    default, zoo.SEQUENCE = zoo.SEQUENCE, length
    try:
        feeds = zoo.token_inputs(count)
    finally:
        zoo.SEQUENCE = default
    feeds["bbox"] = boxes(feeds["attention_mask"])
    return ({key: array for key, array in feeds.items() if key in takes},
            feeds["attention_mask"].astype(bool))


def export(name: str, build, exporter: str, opset: int, folder: Path,
           free: dict[int, str] | None = None
           ) -> tuple[Path, Path, dict[str, np.ndarray], np.ndarray]:
    """The export (with the axes ``free`` names free, legacy only), its calibration file (even
    rows), the held-out feeds (odd rows) and the held-out rows' attention mask."""
    import torch

    torch.manual_seed(0)
    model = build()
    model.eval()
    feeds, real = token_feeds(inspect.signature(model.forward).parameters, 2 * zoo.BATCH)
    names = list(feeds)

    calib = {key: array[::2] for key, array in feeds.items()}
    path = folder / f"{name}.{exporter}{opset}{'.free' if free else ''}.onnx"
    zoo.export_quietly(zoo.first_output(model, names),
                       tuple(torch.from_numpy(calib[n]) for n in names), path,
                       names, ["output"], exporter, opset, free)
    # an input the model leaves unused may be left out of the file (MRA's legacy export drops
    # its mask): the data then holds what the file takes, as ptq-verify's refusal advises
    kept = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    calib = {key: array for key, array in calib.items() if key in kept}
    held = {key: array[1::2] for key, array in feeds.items() if key in kept}
    np.savez(path.with_suffix(".calib.npz"), **calib)
    return path, path.with_suffix(".calib.npz"), held, real[1::2]


def measure(source: Path, written: Path, feeds: dict[str, np.ndarray], real: np.ndarray) -> str:
    """SQNR of the written file's first output against the source's, all positions / real
    tokens (the latter where the output keeps one position per token)."""
    reference = ort.InferenceSession(str(source)).run(None, feeds)[0].astype(np.float64)
    got = ort.InferenceSession(str(written)).run(None, feeds)[0].astype(np.float64)
    error = (reference - got) ** 2
    whole = 10 * np.log10(np.sum(reference ** 2) / np.sum(error))
    if reference.shape[:2] != real.shape:
        return f"{whole:.1f} / -"
    tokens = 10 * np.log10(np.sum(reference[real] ** 2) / np.sum(error[real]))
    return f"{whole:.1f} / {tokens:.1f}"


def run(name: str, build, exporter: str, opset: int, folder: Path) -> list[str]:
    row = [name, f"{exporter} {opset}"]
    try:
        path, calib, held, real = export(name, build, exporter, opset, folder)
    except Exception as error:  # the exporter's failure, not ptq-verify's
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines() or ["?"]
        return [*row, f"export failed: {first[0][:70]}"]
    cli = [sys.executable, "-m", "ptq_verify"]
    audit = subprocess.run([*cli, "audit", str(path)], capture_output=True, text=True)
    row.append(str(audit.returncode) + (" TRACEBACK" if "Traceback" in audit.stderr else ""))
    for form in ("qdq", "integer"):
        out = path.with_suffix(f".{form}.onnx")
        done = subprocess.run([*cli, "quantize", str(path), "--calib", str(calib), "-o",
                               str(out), "--format", form, "--no-progress",
                               *EXTRA_ARGS.get(name, [])],
                              capture_output=True, text=True)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["?"]
            row.append(f"exit {done.returncode}: {lines[-1][:140]}"
                       + (" TRACEBACK" if "Traceback" in done.stderr else ""))
            continue
        counts = re.search(r"(\d+) on integers, (\d+) compensated .*\), (\d+) static",
                           done.stdout)
        row.append(measure(path, out, held, real)
                   + (f" ({'/'.join(counts.groups())})" if counts and form == "qdq" else ""))
    from ort_peer import write_int8

    theirs = path.with_suffix(".ort.onnx")
    try:
        write_int8(path, dict(np.load(calib)), theirs, per_channel=True)
        row.append(measure(path, theirs, held, real))
    except Exception as error:  # the peer's own failure
        row.append(f"failed: {str(error).splitlines()[0][:50]}")
    return row


def free_length_row(name: str, build, folder: Path) -> list[str]:
    """The legacy export with batch and sequence free, calibrated at zoo.SEQUENCE tokens (qdq),
    measured on held-out texts of each of LENGTHS tokens."""
    row = [name, "legacy 17, sequence free"]
    try:
        path, calib, _, _ = export(name, build, "legacy", 17, folder, {0: "batch", 1: "sequence"})
    except Exception as error:  # the exporter's failure, not ptq-verify's
        return [*row, f"export failed: {str(error).strip().splitlines()[0][:70]}"]
    out = path.with_suffix(".qdq.onnx")
    done = subprocess.run([sys.executable, "-m", "ptq_verify", "quantize", str(path), "--calib",
                           str(calib), "-o", str(out), "--no-progress", *EXTRA_ARGS.get(name, [])],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return [*row, f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1][:140]}"]
    kept = set(np.load(calib))
    for length in LENGTHS:
        feeds, real = token_feeds(kept, 2 * zoo.BATCH, length)
        held = {key: array[1::2] for key, array in feeds.items()}
        try:
            row.append(measure(path, out, held, real[1::2]))
        except Exception as error:  # onnxruntime fails on the export itself at that length
            row.append(f"the export fails ({str(error).splitlines()[0][:50]})")
    return row


def main(argv: list[str] | None = None) -> int:
    found = models()
    parser = zoo.trial_parser(__doc__.splitlines()[0], found, 64, "texts")
    parser.add_argument("--save", type=Path, help="a folder to keep the files in")
    parser.add_argument("--free-length", action="store_true",
                        help="legacy exports with the sequence axis free too, calibrated at "
                        f"{zoo.SEQUENCE} tokens, measured at {', '.join(map(str, LENGTHS))}")
    args = zoo.trial_arguments(parser, found, argv)
    print("| model | export | " + (
        " | ".join(f"qdq at {length} tokens: SQNR all / real dB" for length in LENGTHS)
        + " |\n|---|---|---|---|---|" if args.free_length else
        "audit | ptq-verify qdq: SQNR all / real tokens dB (integer / float / static nodes) | "
        "integer | quantize_static |\n|---|---|---|---|---|---|"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.save or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.models or list(found):
            for exporter, opset in [] if args.free_length else zoo.EXPORTS:
                print(f"{name} {exporter}...", file=sys.stderr, flush=True)
                row = run(name, found[name], exporter, opset, folder)
                print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |",
                      flush=True)
            if args.free_length:
                print(f"{name} sequence free...", file=sys.stderr, flush=True)
                row = free_length_row(name, found[name], folder)
                print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
