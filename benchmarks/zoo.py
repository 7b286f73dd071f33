"""Architectures users export, as they export them: ptq-verify on each, as a new user runs it.

Thirty-six Hugging Face architectures are built from small configs (random weights: the point is
what exporters write, not accuracy on a task), exported by torch's legacy exporter (opset 17,
no constant folding) and by the dynamo exporter (opset 18), and fed to the CLI exactly as a
user would: ``ptq-verify quantize model.onnx --calib calib.npz -o q.onnx`` and ``ptq-verify
audit model.onnx`` in a fresh process. The table says whether each ran (exit code, and whether
any traceback was printed), how many nodes run on integers, in float and static, and the SQNR
of the 8-bit qdq export against the float export, both run by onnxruntime on the calibration
inputs.

Data, made here, no download: token ids from the words of standard-library docstrings (hashed
into the vocabulary; padded tails masked, so attention masks matter), images from crops of
scikit-learn's bundled sample photos (china.jpg, flower.jpg), waveforms synthesised here
(decaying harmonic tones) and their log spectrograms for the audio models. The weights of CNNs with
BatchNorm are re-drawn with Kaiming's initialisation and their statistics perturbed: Hugging
Face's std-0.02 initialisation makes a deep random CNN's output vanish (1e-25), which tests
nothing.

With ``--peer``, a last column gives onnxruntime's quantize_static on the same file and
calibration inputs (QDQ, int8 activations with zero points, per-channel int8 weights, MinMax;
benchmarks/ort_peer.py), measured the same way.

The SQNR is measured on the calibration inputs themselves, where a range fitted tightly to
them loses nothing; with ``--held-out`` the inputs are twice as many, interleaved: the even rows
calibrate (and trace the export) and a further column measures each file on the odd rows,
which neither quantizer saw (a range fitted exactly to the calibration rows, as the peer's
[min, max] with a zero point, can clip there; docs/benchmarks-real.md).

Run:  python benchmarks/zoo.py [--peer] [--held-out] [--samples N] [MODEL ...]
      (~18 min on 2 cores; needs the bench extra)
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import re
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BATCH, SEQUENCE, VOCAB, IMAGE = 16, 16, 100, 32
MEL_BINS, AUDIO_POSITIONS = 16, 16  # Whisper: bins per frame, positions after its stride-2 conv
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
EXPORTS = (("legacy", 17), ("dynamo", 18))
PEER = "quantize_static SQNR (dB)"
HELD, PEER_HELD = "held-out SQNR (dB)", "quantize_static held-out SQNR (dB)"


def token_inputs(count: int = BATCH) -> dict[str, np.ndarray]:
    """Docstring words hashed into the vocabulary, one text a row, padded tails masked."""
    from minilm import texts

    ids = np.zeros((count, SEQUENCE), np.int64)
    mask = np.zeros((count, SEQUENCE), np.int64)
    for row, text in enumerate(texts(count)):
        words = text.split()[:SEQUENCE]
        ids[row, :len(words)] = [1 + zlib.crc32(w.encode()) % (VOCAB - 1) for w in words]
        mask[row, :len(words)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def image_inputs(count: int = BATCH, size: int = IMAGE) -> dict[str, np.ndarray]:
    """``size`` x ``size`` crops of scikit-learn's sample photos, normalised as ImageNet models
    expect."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(0)
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]
        side = int(rng.integers(64, 200))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        crop = photo[top:top + side, left:left + side].astype(np.float32) / 255
        pick = np.linspace(0, side - 1, size).astype(int)
        crops.append(crop[pick][:, pick].transpose(2, 0, 1))
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return {"pixel_values": (np.stack(crops) - mean) / std}


def audio_inputs(count: int = BATCH, length: int = 4000, rate: int = 16000
                 ) -> dict[str, np.ndarray]:
    """Synthesised speech-like waveforms: a harmonic tone a semitone higher per row, decaying,
    with a little noise, peak 0.5 (what a feature extractor hands a wav2vec2-style model)."""
    rng = np.random.default_rng(1)
    t = np.arange(length) / rate
    rows = []
    for row in range(count):
        f0 = 110 * 2 ** (row / 12)
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)) * np.exp(-3 * t)
        wave = wave + 0.01 * rng.standard_normal(length)
        rows.append(0.5 * wave / np.abs(wave).max())
    return {"input_values": np.stack(rows).astype(np.float32)}


def spectrogram_inputs(count: int = BATCH, bins: int = MEL_BINS,
                       frames: int = 2 * AUDIO_POSITIONS) -> dict[str, np.ndarray]:
    """Log-magnitude spectrograms (batch, bins, frames) of :func:`audio_inputs`' waveforms,
    normalised as Whisper's feature extractor leaves them (about zero mean, unit spread)."""
    waves = audio_inputs(count)["input_values"]
    hop = waves.shape[1] // frames
    window = np.hanning(2 * hop)
    padded = np.pad(waves, ((0, 0), (0, 2 * hop)))
    starts = np.arange(frames) * hop
    framed = np.stack([padded[:, s:s + 2 * hop] for s in starts], axis=1)  # (batch, frames, 2hop)
    spectrum = np.abs(np.fft.rfft(framed * window, axis=-1))[..., :bins * 4]
    bands = spectrum.reshape(*spectrum.shape[:2], bins, 4).mean(-1).transpose(0, 2, 1)
    features = np.log10(bands + 1e-6)
    return {"input_features": ((features - features.mean()) / features.std()).astype(np.float32)}


def architectures():
    import transformers as hf

    text = dict(vocab_size=VOCAB)  # transformers' default attention (sdpa), as users get it
    return {
        "distilbert": lambda: hf.DistilBertModel(hf.DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, **text)),
        "roberta": lambda: hf.RobertaModel(hf.RobertaConfig(**SMALL, **text)),
        "gpt2": lambda: hf.GPT2Model(hf.GPT2Config(n_embd=32, n_layer=2, n_head=2,
                                                    use_cache=False, **text)),
        "llama": lambda: hf.LlamaModel(hf.LlamaConfig(**SMALL, num_key_value_heads=1,
                                                      use_cache=False, **text)),
        "t5_encoder": lambda: hf.T5EncoderModel(hf.T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)),
        "vit": lambda: hf.ViTModel(hf.ViTConfig(image_size=IMAGE, patch_size=8, **SMALL)),
        "mobilenet_v2": lambda: hf.MobileNetV2Model(hf.MobileNetV2Config(
            image_size=IMAGE, depth_multiplier=0.35)),
        "resnet": lambda: hf.ResNetModel(hf.ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1])),
        "convnext": lambda: hf.ConvNextModel(hf.ConvNextConfig(
            hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)),
        # added by the fourth new-user trial: zero class and distillation tokens concatenated
        # to the patches (DeiT), a relative position index built with ScatterND (BEiT, legacy),
        # a sliding-window mask over padded rows (Mistral), overlapping patch merging (Segformer)
        "deit": lambda: hf.DeiTModel(hf.DeiTConfig(image_size=IMAGE, patch_size=8, **SMALL)),
        "beit": lambda: hf.BeitModel(hf.BeitConfig(image_size=IMAGE, patch_size=8,
                                                   use_relative_position_bias=True, **SMALL)),
        "mistral": lambda: hf.MistralModel(hf.MistralConfig(**SMALL, num_key_value_heads=1,
                                                            sliding_window=4, use_cache=False,
                                                            **text)),
        "segformer": lambda: hf.SegformerModel(hf.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
            num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2])),
        # added by the fifth new-user trial: audio (a Whisper encoder on spectrograms, wav2vec2
        # on waveforms: Conv1d feature extractor, GroupNorm, weight-normed positional conv),
        # one weight shared by several layers (ALBERT), CLIP's towers, BART's encoder,
        # DeBERTa-v2's relative attention, DINOv2, SwinV2's log-spaced position bias and
        # cosine attention, LeViT's attention biases and HardSwish, ConvNeXt-V2's global
        # response norm, PoolFormer's pooling mixer
        "whisper_encoder": lambda: hf.WhisperModel(hf.WhisperConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            num_mel_bins=MEL_BINS, max_source_positions=AUDIO_POSITIONS, vocab_size=VOCAB,
            pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1)).get_encoder(),
        "wav2vec2": lambda: hf.Wav2Vec2Model(hf.Wav2Vec2Config(
            **SMALL, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, **text)),
        "albert": lambda: hf.AlbertModel(hf.AlbertConfig(embedding_size=16, **SMALL, **text)),
        "clip_text": lambda: hf.CLIPTextModel(hf.CLIPTextConfig(
            **SMALL, max_position_embeddings=32, **text)),
        "clip_vision": lambda: hf.CLIPVisionModel(hf.CLIPVisionConfig(
            **SMALL, image_size=IMAGE, patch_size=8)),
        "bart_encoder": lambda: hf.BartModel(hf.BartConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=64, **text)).get_encoder(),
        "deberta_v2": lambda: hf.DebertaV2Model(hf.DebertaV2Config(
            **SMALL, relative_attention=True, position_buckets=8, max_relative_positions=16,
            pos_att_type=["p2c", "c2p"], **text)),
        "dinov2": lambda: hf.Dinov2Model(hf.Dinov2Config(**SMALL, image_size=IMAGE,
                                                         patch_size=8)),
        "swinv2": lambda: hf.Swinv2Model(hf.Swinv2Config(
            image_size=IMAGE, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
            window_size=4)),
        "levit": lambda: hf.LevitModel(hf.LevitConfig(
            image_size=IMAGE, hidden_sizes=[32, 48, 64], num_attention_heads=[1, 2, 2],
            depths=[1, 1, 1], key_dim=[8, 8, 8])),
        "convnextv2": lambda: hf.ConvNextV2Model(hf.ConvNextV2Config(
            hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)),
        "poolformer": lambda: hf.PoolFormerModel(hf.PoolFormerConfig(
            hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1])),
        # added by the sixth new-user trial: ALiBi (BLOOM, MPT), a state-space model with a
        # softplus threshold (Mamba: token ids only), character hashing with a one-hot table
        # and a finfo.min mask (CANINE), DeBERTa's relative attention over a sliced table,
        # windowed attention padded under dynamic shapes (ViTDet), convolutional projections
        # (CvT), a detection transformer on a ResNet backbone (DETR)
        "bloom": lambda: hf.BloomModel(hf.BloomConfig(hidden_size=32, n_layer=2, n_head=2,
                                                      use_cache=False, **text)),
        "mpt": lambda: hf.MptModel(hf.MptConfig(d_model=32, n_layers=2, n_heads=2,
                                                expansion_ratio=2, max_seq_len=64,
                                                use_cache=False, **text)),
        "mamba": lambda: hf.MambaModel(hf.MambaConfig(hidden_size=32, num_hidden_layers=2,
                                                      state_size=8, expand=2, conv_kernel=4,
                                                      use_cache=False, **text)),
        "canine": lambda: hf.CanineModel(hf.CanineConfig(
            **SMALL, num_hash_functions=2, num_hash_buckets=64, downsampling_rate=2,
            local_transformer_stride=4)),
        "deberta": lambda: hf.DebertaModel(hf.DebertaConfig(
            **SMALL, relative_attention=True, max_relative_positions=16,
            pos_att_type=["p2c", "c2p"], **text)),
        "vitdet": lambda: hf.VitDetModel(hf.VitDetConfig(
            **SMALL, image_size=IMAGE, pretrain_image_size=IMAGE, patch_size=8, window_size=2,
            window_block_indices=[0], use_relative_position_embeddings=True)),
        "cvt": lambda: hf.CvtModel(hf.CvtConfig(embed_dim=[16, 32, 48], num_heads=[1, 2, 3],
                                                depth=[1, 2, 3])),
        "detr": lambda: hf.DetrModel(hf.DetrConfig(
            use_timm_backbone=False, use_pretrained_backbone=False,
            backbone_config=hf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32],
                                            depths=[1, 1], out_features=["stage2"]),
            d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=8)),
        # added by the mixture-of-experts trial: a router's Softmax and TopK choosing 2 of 4
        # experts per token (Mixtral), a shared expert behind a Sigmoid gate (Qwen2-MoE),
        # attention sinks concatenated to the masked scores and a TopK before the router's
        # Softmax (GPT-OSS). transformers' default experts (grouped_mm) fail in both torch
        # exporters and its eager loop in the dynamo one: "batched_mm" gathers each token's
        # experts' weights, which both export
        "mixtral": lambda: hf.MixtralModel(hf.MixtralConfig(
            **SMALL, num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2,
            use_cache=False, experts_implementation="batched_mm", **text)),
        "qwen2_moe": lambda: hf.Qwen2MoeModel(hf.Qwen2MoeConfig(
            **SMALL, num_key_value_heads=1, num_experts=4, num_experts_per_tok=2,
            moe_intermediate_size=32, shared_expert_intermediate_size=64, use_cache=False,
            experts_implementation="batched_mm", **text)),
        "gpt_oss": lambda: hf.GptOssModel(hf.GptOssConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            head_dim=16, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2,
            sliding_window=4, layer_types=["sliding_attention", "full_attention"],
            use_cache=False, experts_implementation="batched_mm", **text)),
    }


@contextlib.contextmanager
def _native_output_dropped():
    """Standard output and error of native code dropped for the block: the legacy exporter
    prints its whole TorchScript graph from C++ when it fails ('Torch IR graph at exception'),
    which had filled the table printed on standard output."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def first_output(model, names: list[str]):
    """A module taking ``model``'s inputs ``names`` by position and returning its first output
    (the exporters name positional inputs; a Hugging Face model's outputs are a tuple)."""
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(names, args)))[0]

    return FirstOutput()


def trial_parser(description: str, found, samples: int, what: str) -> argparse.ArgumentParser:
    """The command line of a script that runs some of the models ``found`` as zoo.py does:
    their names, and ``--samples`` (``what`` to calibrate on, as many held out)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("models", nargs="*", help="some of: " + ", ".join(found))
    parser.add_argument("--samples", type=int, default=samples,
                        help=f"calibration {what}, and as many held out (default {samples})")
    return parser


def trial_arguments(parser: argparse.ArgumentParser, found, argv: list[str] | None
                    ) -> argparse.Namespace:
    """:func:`trial_parser`'s arguments, checked; ``--samples`` becomes this module's BATCH."""
    global BATCH
    args = parser.parse_args(argv)
    unknown = [name for name in args.models if name not in found]
    if unknown or args.samples < 1:
        parser.error(f"unknown model {unknown[0]!r}" if unknown else "--samples: at least 1")
    BATCH = args.samples
    return args


def export_quietly(module, args: tuple, path: Path, names: list[str], outputs: list[str],
                   exporter: str, opset: int, free: dict[int, str] | None = None) -> None:
    """``module`` exported to ``path`` by torch's ``exporter`` ("legacy": without constant
    folding, the batch axis of every input free, or the axes ``free`` names; "dynamo"), its
    warnings and prints held back."""
    import torch

    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), \
            contextlib.redirect_stderr(quiet), _native_output_dropped():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(module, args, str(path), input_names=names, output_names=outputs,
                              opset_version=opset, dynamo=False, do_constant_folding=False,
                              dynamic_axes={n: free or {0: "batch"} for n in names})
        else:
            torch.onnx.export(module, args, str(path), input_names=names, output_names=outputs,
                              opset_version=opset, dynamo=True)


def export(name: str, exporter: str, opset: int, folder: Path, held_out: bool = False,
           build=None, inputs=None) -> tuple[Path, Path, Path | None]:
    """The model's first output (last hidden state) as ONNX, its calibration inputs and, with
    ``held_out``, as many other inputs to measure on: the even rows of twice as many inputs
    calibrate, the odd ones are held out (interleaved: the audio rows rise a semitone each).
    ``build``: a function making the model, for one not in :func:`architectures`; ``inputs``:
    a function of the sample count making its inputs, for a model that takes none of the
    kinds chosen here by the names of its ``forward``'s parameters."""
    import torch

    torch.manual_seed(0)
    model = (build or architectures()[name])()
    takes = inspect.signature(model.forward).parameters
    count = 2 * BATCH if held_out else BATCH
    feeds = (inputs(count) if inputs is not None
             else image_inputs(count) if "pixel_values" in takes
             else audio_inputs(count) if "input_values" in takes
             else spectrogram_inputs(count) if "input_features" in takes
             else token_inputs(count))
    feeds = {name: array for name, array in feeds.items() if name in takes}  # Mamba: no mask
    held = {name: array[1::2] for name, array in feeds.items()} if held_out else None
    if held_out:
        feeds = {name: array[::2] for name, array in feeds.items()}
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2)
    model.eval()
    names = list(feeds)
    args = tuple(torch.from_numpy(feeds[n]) for n in names)
    path = folder / f"{name}.{exporter}{opset}.onnx"
    export_quietly(first_output(model, names), args, path, names, ["output"], exporter, opset)
    calib = folder / f"{name}.calib.npz"
    np.savez(calib, **feeds)
    if held is None:
        return path, calib, None
    np.savez(folder / f"{name}.held.npz", **held)
    return path, calib, folder / f"{name}.held.npz"


def sqnr(reference: np.ndarray, path: Path, feeds: dict[str, np.ndarray]) -> str:
    got = ort.InferenceSession(str(path)).run(None, feeds)[0].astype(np.float64)
    return f"{10 * np.log10(np.sum(reference ** 2) / np.sum((reference - got) ** 2)):.1f}"


def run(name: str, exporter: str, opset: int, folder: Path, peer: bool = False,
        held_out: bool = False) -> dict[str, str]:
    row = {"model": name, "export": f"{exporter} {opset}"}
    try:
        path, calib, held = export(name, exporter, opset, folder, held_out)
    except Exception as error:  # the exporter's failure, not ptq-verify's
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines()[0]
        row["result"] = f"export failed: {first[:60]}"
        return row
    out = path.with_suffix(".q.onnx")
    cli = [sys.executable, "-m", "ptq_verify"]
    quantized = subprocess.run([*cli, "quantize", str(path), "--calib", str(calib), "-o",
                                str(out), "--no-progress"], capture_output=True, text=True)
    audit = subprocess.run([*cli, "audit", str(path)], capture_output=True, text=True)
    traceback = "Traceback" in quantized.stderr + audit.stderr
    row["quantize / audit"] = f"{quantized.returncode} / {audit.returncode}" + (
        " TRACEBACK" if traceback else "")
    if quantized.returncode != 0:
        row["result"] = quantized.stderr.strip().splitlines()[-1][:100]
        return row
    counts = re.search(r"(\d+) on integers, (\d+) compensated .*\), (\d+) static",
                       quantized.stdout)
    row["integer / float / static"] = " / ".join(counts.groups()) if counts else "?"
    feeds = dict(np.load(calib))
    reference = ort.InferenceSession(str(path)).run(None, feeds)[0].astype(np.float64)
    row["8-bit qdq SQNR (dB)"] = sqnr(reference, out, feeds)
    if held is not None:
        other = dict(np.load(held))
        unseen = ort.InferenceSession(str(path)).run(None, other)[0].astype(np.float64)
        row[HELD] = sqnr(unseen, out, other)
    if peer:
        from ort_peer import write_int8

        theirs = path.with_suffix(".ort.onnx")
        try:
            write_int8(path, feeds, theirs, per_channel=True)
            row[PEER] = sqnr(reference, theirs, feeds)
            if held is not None:
                row[PEER_HELD] = sqnr(unseen, theirs, other)
        except Exception as error:  # the peer's own failure
            row[PEER] = f"failed: {str(error).splitlines()[0][:40]}"
    return row


def main(argv: list[str] | None = None) -> int:
    global BATCH  # --samples sets it for export()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="some of: " + ", ".join(architectures()))
    parser.add_argument("--peer", action="store_true",
                        help="also onnxruntime's quantize_static (per-channel) on each export")
    parser.add_argument("--held-out", action="store_true",
                        help=f"calibrate on {BATCH} inputs and measure on {BATCH} others as well")
    parser.add_argument("--samples", type=int, default=BATCH,
                        help=f"calibration inputs (and held-out ones) per model (default {BATCH}): "
                        "how much room a range needs beyond its calibrated values depends on it")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error(f"--samples {args.samples}: must be at least 1")
    BATCH = args.samples
    names = args.models or list(architectures())
    columns = ("model", "export", "quantize / audit", "integer / float / static",
               "8-bit qdq SQNR (dB)", *([HELD] if args.held_out else []),
               *([PEER] if args.peer else []),
               *([PEER_HELD] if args.peer and args.held_out else []), "result")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            for exporter, opset in EXPORTS:
                print(f"{name} {exporter}...", file=sys.stderr, flush=True)
                row = run(name, exporter, opset, Path(folder), args.peer, args.held_out)
                print("| " + " | ".join(row.get(c, "") for c in columns) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
