"""Vision, audio and time-series architectures zoo.py lacks: ptq-verify beside quantize_static.

A new-user trial (docs/benchmarks-real.md): each model is built from a small config with
random weights (seeded; CNN weights re-drawn as zoo.py does), exported by torch's legacy
exporter (opset 17, no constant folding) and the dynamo exporter (opset 18) at fixed small
shapes through zoo.py's ``export``, and fed to the CLI as a user runs it: ``ptq-verify audit``,
``ptq-verify quantize MODEL --calib calib.npz -o OUT --format qdq|integer``. Data, made here
or by zoo.py, no download: crops of scikit-learn's sample photos, synthesised tones and their
spectrograms, and for the time-series models sums of seasonal sines with a trend and noise, a
few points a series unobserved (0 in the observed mask). Even rows calibrate, odd rows are
held out; the table gives the first output's SQNR on the held-out rows against the float
export for each written file and for onnxruntime's quantize_static (per-channel QDQ,
benchmarks/ort_peer.py), and whether any run printed a traceback. EnCodec's encoder is
quantized with ``--float-op LSTM`` and Informer with ``--float-op TopK`` (each refused in one
line without it, saying so: an LSTM, and TopKs with sorted=0, which the catalog does not
declare).

Run:  python benchmarks/vision_trial.py [--samples N] [MODEL ...]   (~15 min on 2 cores;
      the bench extra)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zoo

CONTEXT, SERIES = 32, 2  # time-series models: past steps, variables per step
HORIZON, LAGS = 8, (1, 2, 3)  # forecasting models: future steps, lagged copies of the values
# refused in one line without them: an LSTM, and Informer's ProbSparse TopKs with sorted=0
EXTRA_ARGS = {"encodec_encoder": ["--float-op", "LSTM"], "informer": ["--float-op", "TopK"]}
LARGE_IMAGE = 64  # MobileViT's stride 32 leaves 1 x 1 of zoo.py's 32 x 32 photos


def series_inputs(count: int, steps: int = CONTEXT, channels: int = SERIES
                  ) -> dict[str, np.ndarray]:
    """``count`` multivariate series (count, steps, channels): a daily-like and a weekly-like
    sine of random phase, a trend and noise, about 1 in 16 points unobserved (value 0, mask 0),
    as a forecasting dataset hands them over."""
    rng = np.random.default_rng(2)
    t = np.arange(steps)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, (count, 1, channels))
    level = rng.uniform(5, 20, (count, 1, channels))
    values = (level + 3 * np.sin(2 * np.pi * t / 8 + phase) + np.sin(2 * np.pi * t / 5 + phase)
              + 0.05 * level * t / steps + 0.3 * rng.standard_normal((count, steps, channels)))
    observed = (rng.random((count, steps, channels)) > 1 / 16).astype(np.float32)
    return {"past_values": (values * observed).astype(np.float32),
            "past_observed_mask": observed}


def forecast_inputs(count: int) -> dict[str, np.ndarray]:
    """:func:`series_inputs` cut into a past of CONTEXT + the largest lag steps and a future of
    HORIZON, with each step's position (0 to 1) as its one time feature, as
    TimeSeriesTransformer and Informer take them in training (teacher forcing)."""
    past = CONTEXT + max(LAGS)
    whole = series_inputs(count, past + HORIZON)
    clock = np.broadcast_to(np.linspace(0, 1, past + HORIZON, dtype=np.float32)[None, :, None],
                            (count, past + HORIZON, 1))
    return {"past_values": whole["past_values"][:, :past],
            "past_time_features": np.ascontiguousarray(clock[:, :past]),
            "past_observed_mask": whole["past_observed_mask"][:, :past],
            "future_values": whole["past_values"][:, past:],
            "future_time_features": np.ascontiguousarray(clock[:, past:])}


def large_photos(count: int) -> dict[str, np.ndarray]:
    """zoo.py's photo crops at LARGE_IMAGE pixels a side."""
    return zoo.image_inputs(count, LARGE_IMAGE)


def mel_frames(count: int) -> dict[str, np.ndarray]:
    """zoo.py's log spectrograms as the Audio Spectrogram Transformer takes them:
    (batch, frames, bins)."""
    features = zoo.spectrogram_inputs(count)["input_features"]
    return {"input_values": np.ascontiguousarray(features.transpose(0, 2, 1))}


def waveforms(count: int) -> dict[str, np.ndarray]:
    """zoo.py's tones with a channel axis, (batch, 1, samples), as EnCodec takes them."""
    return {"input_values": zoo.audio_inputs(count, length=1600)["input_values"][:, None]}


def unit_batchnorm(model):
    """``model`` with its BatchNorm scales at torch's default, 1: transformers' EfficientNet
    draws them from N(0, 0.02), which beside zoo.py's re-drawn convolutions still leaves every
    sample the same output (their spread across samples 0 from the third block on)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    return model


def encodec_encoder():
    """EnCodec's encoder (1-D convolutions, ELU, a 2-layer LSTM) on waveforms: the model's own
    forward returns integer codes first, from a quantizer no 8-bit export keeps."""
    import torch
    import transformers as hf

    model = hf.EncodecModel(hf.EncodecConfig(
        hidden_size=16, num_filters=4, upsampling_ratios=[4, 2], num_lstm_layers=1,
        codebook_size=16))

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model.encoder

        def forward(self, input_values):
            return (self.encoder(input_values),)

    return Encoder()


def models() -> dict:
    """name -> (build, inputs or None for zoo.py's choice by parameter name)."""
    import transformers as hf

    image, small = zoo.IMAGE, zoo.SMALL
    series = dict(context_length=CONTEXT, num_input_channels=SERIES)
    forecast = dict(prediction_length=HORIZON, context_length=CONTEXT, input_size=SERIES,
                    lags_sequence=list(LAGS), num_time_features=1, d_model=16, encoder_layers=1,
                    decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32)
    wav = dict(small, conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=zoo.VOCAB)
    return {
        "mobilevit": (lambda: hf.MobileViTModel(hf.MobileViTConfig(
            image_size=LARGE_IMAGE, hidden_sizes=[16, 24, 32],
            neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64], num_attention_heads=2,
            expand_ratio=2.0)), large_photos),
        "mobilevitv2": (lambda: hf.MobileViTV2Model(hf.MobileViTV2Config(
            image_size=LARGE_IMAGE, width_multiplier=0.25, n_attn_blocks=[1, 1, 1],
            base_attn_unit_dims=[32, 48, 64])), large_photos),
        "efficientnet": (lambda: unit_batchnorm(hf.EfficientNetModel(hf.EfficientNetConfig(
            image_size=image, width_coefficient=0.25, depth_coefficient=0.25,
            hidden_dim=320))), None),
        "pvt_v2": (lambda: hf.PvtV2Model(hf.PvtV2Config(
            image_size=image, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
            hidden_sizes=[16, 32], num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2],
            mlp_ratios=[2, 2])), None),
        "swiftformer": (lambda: hf.SwiftFormerModel(hf.SwiftFormerConfig(
            image_size=image, depths=[1, 1, 1, 1], embed_dims=[8, 16, 24, 32])), None),
        "hiera": (lambda: hf.HieraModel(hf.HieraConfig(
            image_size=[LARGE_IMAGE, LARGE_IMAGE], patch_size=[7, 7], patch_stride=[4, 4],
            patch_padding=[3, 3], embed_dim=16, depths=[1, 1], num_heads=[1, 2],
            query_stride=[2, 2], masked_unit_size=[4, 4], num_query_pool=1)), large_photos),
        "upernet": (lambda: hf.UperNetForSemanticSegmentation(hf.UperNetConfig(
            backbone_config=hf.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2,
                                              out_features=["stage1", "stage2"]),
            hidden_size=16, num_labels=4, use_auxiliary_head=False)), None),
        "regnet": (lambda: hf.RegNetModel(hf.RegNetConfig(
            embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], groups_width=8)), None),
        "focalnet": (lambda: hf.FocalNetModel(hf.FocalNetConfig(
            image_size=image, embed_dim=16, depths=[1, 1], hidden_sizes=[32, 64])), None),
        "yolos": (lambda: hf.YolosModel(hf.YolosConfig(
            **small, image_size=[image, image], patch_size=8, num_detection_tokens=4)), None),
        "dpt_depth": (lambda: hf.DPTForDepthEstimation(hf.DPTConfig(
            **dict(small, num_hidden_layers=4), image_size=image, patch_size=8,
            backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
            fusion_hidden_size=16, head_hidden_size=8,
            use_batch_norm_in_fusion_residual=True)), None),
        "glpn_depth": (lambda: hf.GLPNForDepthEstimation(hf.GLPNConfig(
            num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
            num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
            decoder_hidden_size=16)), None),
        "hubert": (lambda: hf.HubertModel(hf.HubertConfig(**wav)), None),
        "sew": (lambda: hf.SEWModel(hf.SEWConfig(**wav, squeeze_factor=2)), None),
        "wavlm": (lambda: hf.WavLMModel(hf.WavLMConfig(**wav, num_buckets=32,
                                                        max_bucket_distance=64)), None),
        "ast": (lambda: hf.ASTModel(hf.ASTConfig(
            **small, patch_size=8, frequency_stride=4, time_stride=4,
            max_length=2 * zoo.AUDIO_POSITIONS, num_mel_bins=zoo.MEL_BINS)), mel_frames),
        "encodec_encoder": (encodec_encoder, waveforms),
        "patchtst": (lambda: hf.PatchTSTModel(hf.PatchTSTConfig(
            **series, patch_length=8, patch_stride=4, d_model=32, num_attention_heads=2,
            num_hidden_layers=2, ffn_dim=64)), series_inputs),
        "patchtsmixer": (lambda: hf.PatchTSMixerModel(hf.PatchTSMixerConfig(
            **series, patch_length=8, patch_stride=4, d_model=16, num_layers=2)),
                         series_inputs),
        "time_series_transformer": (lambda: hf.TimeSeriesTransformerModel(
            hf.TimeSeriesTransformerConfig(**forecast)), forecast_inputs),
        "informer": (lambda: hf.InformerModel(hf.InformerConfig(
            **forecast, attention_type="prob")), forecast_inputs),
    }


def quantize(path: Path, calib: Path, form: str, extra: list[str]
             ) -> tuple[subprocess.CompletedProcess, Path]:
    out = path.with_suffix(f".{form}.onnx")
    done = subprocess.run([sys.executable, "-m", "ptq_verify", "quantize", str(path), "--calib",
                           str(calib), "-o", str(out), "--format", form, "--no-progress",
                           *extra], capture_output=True, text=True)
    return done, out


def last_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines() or ["(nothing on stderr)"]
    return f"exit {done.returncode}: {lines[-1][:110]}".replace("|", "/")


def run(name: str, build, inputs, exporter: str, opset: int, folder: Path) -> list[str]:
    row = [name, f"{exporter} {opset}"]
    try:
        path, calib, held = zoo.export(name, exporter, opset, folder, True, build, inputs)
    except Exception as error:  # the exporter's failure, not ptq-verify's
        return [*row, f"export failed: {str(error).splitlines()[0][:80]}", "", "", "", ""]
    audit = subprocess.run([sys.executable, "-m", "ptq_verify", "audit", str(path)],
                           capture_output=True, text=True)
    other = dict(np.load(held))
    import onnxruntime as ort

    try:
        unseen = ort.InferenceSession(str(path)).run(None, other)[0].astype(np.float64)
    except Exception as error:  # an export onnxruntime cannot run: what does ptq-verify say?
        unseen = None
        row[1] += f" (onnxruntime: {str(error).splitlines()[0][:70]})".replace("|", "/")
    tracebacks = "Traceback" in audit.stderr
    cells = []
    for form in ("qdq", "integer"):
        done, out = quantize(path, calib, form, EXTRA_ARGS.get(name, []))
        tracebacks |= "Traceback" in done.stderr
        cells.append(f"{zoo.sqnr(unseen, out, other)}" if done.returncode == 0
                     else last_line(done))
    if unseen is None:
        return [*row, f"{audit.returncode}" + (" TRACEBACK" if tracebacks else ""), *cells, ""]
    from ort_peer import write_int8

    theirs = path.with_suffix(".ort.onnx")
    try:
        write_int8(path, dict(np.load(calib)), theirs, per_channel=True)
        cells.append(zoo.sqnr(unseen, theirs, other))
    except Exception as error:  # the peer's own failure
        cells.append(f"failed: {str(error).splitlines()[0][:60]}".replace("|", "/"))
    audit_cell = f"{audit.returncode}" + (" TRACEBACK" if tracebacks else "")
    return [*row, audit_cell, *cells]


def main(argv: list[str] | None = None) -> int:
    found = models()
    parser = zoo.trial_parser(__doc__.splitlines()[0], found, zoo.BATCH, "inputs")
    args = zoo.trial_arguments(parser, found, argv)
    print("| model | export | audit exit | qdq held-out SQNR (dB) | integer | "
          "quantize_static |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models or list(found):
            build, inputs = found[name]
            for exporter, opset in zoo.EXPORTS:
                print(f"{name} {exporter}...", file=sys.stderr, flush=True)
                row = run(name, build, inputs, exporter, opset, Path(folder))
                print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
