"""Whole Hugging Face models with several inputs of different kinds and several outputs
(CLIPModel, SiglipModel, T5 and BART for generation, Whisper, a ViT + GPT-2
VisionEncoderDecoderModel, a BERT classifier returning float logits and int64 argmax), through
ptq-verify as a user runs it: each exported by torch's legacy exporter (opset 17, dynamic
batch) and the dynamo exporter (opset 18), then ``ptq-verify quantize`` and ``audit`` in a fresh
process, calibrated on 16 samples of zoo.py's data (an .npz keyed by input name) and measured
on 16 held-out ones, every output (SQNR in dB; integer outputs as the share of equal values),
beside onnxruntime's quantize_static (per-channel, benchmarks/ort_peer.py). Random weights from
small configs as in zoo.py; no download.

Run:  python benchmarks/multi_io.py [clip siglip t5 bart whisper ved mixed]   (~5 min, 2 cores)
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
import zoo  # noqa: E402

zoo.BATCH = 32  # 16 calibration rows, 16 held out
OUT = Path(tempfile.mkdtemp(prefix="multi_io-"))


def decoder_ids(ids: np.ndarray) -> np.ndarray:
    """Token ids shifted right behind a start token (1), as a decoder is fed in training."""
    dec = np.roll(ids, 1, axis=1)
    dec[:, 0] = 1
    return dec


def builders() -> dict:
    """Name -> a function giving (model, its inputs by name, the outputs returned in order)."""
    import torch
    import transformers as hf
    S = zoo.SMALL
    text = dict(vocab_size=zoo.VOCAB)
    tok = zoo.token_inputs()
    img = zoo.image_inputs()
    spec = zoo.spectrogram_inputs()

    def clip():
        cfg = hf.CLIPConfig(text_config=dict(**S, max_position_embeddings=32, **text),
                            vision_config=dict(**S, image_size=zoo.IMAGE, patch_size=8),
                            projection_dim=16)
        return hf.CLIPModel(cfg), {**tok, **img}, ["logits_per_image", "logits_per_text",
                                                    "text_embeds", "image_embeds"]

    def siglip():
        cfg = hf.SiglipConfig(text_config=dict(**S, max_position_embeddings=32, **text),
                              vision_config=dict(**S, image_size=zoo.IMAGE, patch_size=8))
        return hf.SiglipModel(cfg), {**tok, **img}, ["logits_per_image", "logits_per_text",
                                                      "text_embeds", "image_embeds"]

    def t5():
        cfg = hf.T5Config(vocab_size=zoo.VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                          num_heads=2, decoder_start_token_id=0, use_cache=False)
        return hf.T5ForConditionalGeneration(cfg), {
            **tok, "decoder_input_ids": decoder_ids(tok["input_ids"])}, ["logits"]

    def bart():
        cfg = hf.BartConfig(d_model=32, encoder_layers=2, decoder_layers=1,
                            encoder_attention_heads=2, decoder_attention_heads=2,
                            encoder_ffn_dim=64, decoder_ffn_dim=64,
                            max_position_embeddings=64, use_cache=False, **text)
        return hf.BartForConditionalGeneration(cfg), {
            **tok, "decoder_input_ids": decoder_ids(tok["input_ids"])}, ["logits"]

    def whisper():
        cfg = hf.WhisperConfig(
            d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            num_mel_bins=zoo.MEL_BINS, max_source_positions=zoo.AUDIO_POSITIONS,
            vocab_size=zoo.VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1, use_cache=False)
        return hf.WhisperForConditionalGeneration(cfg), {
            **spec, "decoder_input_ids": decoder_ids(tok["input_ids"])[:, :8],
            "decoder_attention_mask": tok["attention_mask"][:, :8]}, ["logits"]

    def ved():
        enc = hf.ViTConfig(image_size=zoo.IMAGE, patch_size=8, **S)
        dec = hf.GPT2Config(n_embd=32, n_layer=2, n_head=2, use_cache=False,
                            add_cross_attention=True, is_decoder=True, **text)
        cfg = hf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
        cfg.decoder_start_token_id = 1
        cfg.pad_token_id = 0
        model = hf.VisionEncoderDecoderModel(cfg)
        return model, {**img, "decoder_input_ids": decoder_ids(tok["input_ids"]),
                       "decoder_attention_mask": tok["attention_mask"]}, ["logits"]

    def mixed():
        cfg = hf.BertConfig(**S, num_labels=5, **text)
        inner = hf.BertForSequenceClassification(cfg)

        class Both(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = inner

            def forward(self, input_ids, attention_mask):
                logits = self.m(input_ids=input_ids, attention_mask=attention_mask).logits
                return logits, logits.argmax(-1)

        return Both(), dict(tok), ["logits", "label"]

    return dict(clip=clip, siglip=siglip, t5=t5, bart=bart, whisper=whisper, ved=ved,
                mixed=mixed)


def export(name: str, exporter: str, opset: int) -> tuple[Path, Path, Path]:
    """The exported file, its calibration .npz (16 rows) and the held-out .npz (16 more)."""
    import torch
    torch.manual_seed(0)
    model, feeds, outs = builders()[name]()
    model.eval()
    names = list(feeds)
    custom = name == "mixed"

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            r = self.model(**dict(zip(names, args)))
            if custom:
                return r
            return tuple(getattr(r, o) for o in outs)

    args = tuple(torch.from_numpy(feeds[n][:16]) for n in names)
    path = OUT / f"{name}.{exporter}{opset}.onnx"
    zoo.export_quietly(Wrap(), args, path, names, outs, exporter, opset)
    calib = OUT / f"{name}.calib.npz"
    held = OUT / f"{name}.held.npz"
    np.savez(calib, **{k: v[:16] for k, v in feeds.items()})
    np.savez(held, **{k: v[16:] for k, v in feeds.items()})
    return path, calib, held


def sqnr(ref: np.ndarray, got: np.ndarray) -> str:
    """SQNR of ``got`` against ``ref`` in dB, as text."""
    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    err = np.sum((ref - got) ** 2)
    if err == 0:
        return "exact"
    return f"{10 * np.log10(np.sum(ref ** 2) / err):.1f}"


def run(name: str, exporter: str, opset: int, peer: bool = True) -> None:
    """Export, quantize and audit one model; print exit codes, the summary and held-out SQNRs."""
    print(f"=== {name} {exporter}{opset}", flush=True)
    try:
        path, calib, held = export(name, exporter, opset)
    except Exception as error:
        print("export failed:", str(error).splitlines()[0][:200])
        return
    out = path.with_suffix(".q.onnx")
    cli = [sys.executable, "-m", "ptq_verify"]
    q = subprocess.run([*cli, "quantize", str(path), "--calib", str(calib), "-o", str(out),
                        "--no-progress"], capture_output=True, text=True)
    a = subprocess.run([*cli, "audit", str(path)], capture_output=True, text=True)
    (OUT / f"{path.stem}.quantize.txt").write_text(q.stdout + "\n--stderr--\n" + q.stderr)
    (OUT / f"{path.stem}.audit.txt").write_text(a.stdout + "\n--stderr--\n" + a.stderr)
    print(f"quantize {q.returncode} audit {a.returncode}",
          "TRACEBACK" if "Traceback" in q.stderr + a.stderr else "")
    if q.returncode:
        print("  refusal:", q.stderr.strip().splitlines()[-1][:300])
        return
    for line in q.stdout.splitlines():
        if "->" in line and "nodes" in line or line.startswith("note: output SQNR"):
            print("  ", line[:400])
    if a.returncode:
        print("  audit:", a.stderr.strip()[-300:])
    feeds = dict(np.load(held))
    ref_s = ort.InferenceSession(str(path))
    ref = ref_s.run(None, feeds)
    got = ort.InferenceSession(str(out)).run(None, feeds)
    names = [o.name for o in ref_s.get_outputs()]
    print("   ours held-out:", {n: (sqnr(r, g) if r.dtype.kind == "f"
                                   else f"{np.mean(r == g):.2f} equal")
                               for n, r, g in zip(names, ref, got)})
    if peer:
        from ort_peer import write_int8
        theirs = path.with_suffix(".ort.onnx")
        try:
            write_int8(path, dict(np.load(calib)), theirs, per_channel=True)
            pg = ort.InferenceSession(str(theirs)).run(None, feeds)
            print("   peer held-out:", {n: (sqnr(r, g) if r.dtype.kind == "f"
                                           else f"{np.mean(r == g):.2f} equal")
                                       for n, r, g in zip(names, ref, pg)})
        except Exception as error:
            print("   peer failed:", str(error).splitlines()[0][:100])


if __name__ == "__main__":
    for name in sys.argv[1:] or list(builders()):
        for exporter, opset in zoo.EXPORTS:
            run(name, exporter, opset)
