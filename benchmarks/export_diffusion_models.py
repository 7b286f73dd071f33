"""Diffusion networks built with Hugging Face diffusers (random weights, seeded): a test fixture,
and the new-user trial's models (docs/benchmarks-real.md).

diffusers ships no weights; each network is built from a config and seeded, so the figures
measure the arithmetic, not a trained model. The data are synthetic: latents and text
embeddings from a seeded normal, images from a seeded normal times 0.5 clipped to [-1, 1],
timesteps uniform over the 1000-step schedule (int64 where the model's UNet2DModel and DiT take
integers, float32 for the float-timestep models), class labels uniform over 10 classes.

The fixture (``tests/fixtures/torch``), legacy exporter, opset 17, batch fixed at 2 as
classifier-free guidance runs it:

    diffusion_unet.legacy.opset17   UNet2DConditionModel: sample [2, 4, 8, 8], timestep float
                 [2], encoder_hidden_states [2, 4, 8] -> out [2, 4, 8, 8] (GroupNorm, SiLU, the
                 timestep's Sin/Cos embedding, self- and cross-attention, nearest Upsample,
                 skip Concats; no middle block, to stay small); data
                 ``diffusion_unet.calib.npz`` and ``diffusion_unet.test.npz`` (64 and 32
                 samples)

``--trial DIR`` writes the trial's larger models instead (16 x 16 latents, 32 and 64 channels,
both exporters: legacy opset 17 and dynamo opset 18), each with ``NAME.calib.npz`` (128
samples) and ``NAME.test.npz`` (64 held out): ``unet`` (UNet2DModel, int64 timestep),
``unet_class`` (class-conditional), ``unet_cond`` and ``unet_cond_float``
(UNet2DConditionModel, int64 or float timestep), ``unet_sdxl`` (SDXL's added text_embeds and
time_ids), ``vae_encoder`` (AutoencoderKL's
latent_dist.mean), ``vae_decoder``, ``dit`` (DiTTransformer2DModel, class labels) and ``sd3``
(SD3Transformer2DModel, an MMDiT with pooled projections).

Needs torch and diffusers (0.42.1 in the trial; pure Python, installed beside torch with
``pip install --no-deps --target DIR diffusers requests urllib3 certifi charset_normalizer``,
DIR on PYTHONPATH); the tests import none of it. Seconds:

    python benchmarks/export_diffusion_models.py [--trial DIR [MODEL ...]]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DiTTransformer2DModel,
    SD3Transformer2DModel,
    UNet2DConditionModel,
    UNet2DModel,
)
from fixture_files import FIXTURES, save_model, save_npz

BATCH = 2  # the batch the exports fix (classifier-free guidance's pair)
SEED = 0
# an input's kind -> its per-sample shape and how its values are drawn
Spec = dict[str, tuple[str, tuple[int, ...]]]


def draw(spec: Spec, count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` synthetic samples of each input of ``spec``, seeded."""
    arrays = {}
    for index, (name, (kind, shape)) in enumerate(spec.items()):
        rng = np.random.default_rng([seed, index])
        if kind == "normal":
            arrays[name] = rng.standard_normal((count, *shape)).astype(np.float32)
        elif kind == "image":
            image = rng.standard_normal((count, *shape)) * 0.5
            arrays[name] = np.clip(image, -1, 1).astype(np.float32)
        elif kind == "step":
            arrays[name] = rng.integers(0, 1000, count).astype(np.int64)
        elif kind == "time":
            arrays[name] = rng.uniform(0, 1000, count).astype(np.float32)
        elif kind == "sizes":  # SDXL's time_ids: sizes and crop offsets, 0 to 96 by 32
            arrays[name] = (rng.integers(0, 4, (count, *shape)) * 32).astype(np.float32)
        else:  # "label"
            arrays[name] = rng.integers(0, 10, count).astype(np.int64)
    return arrays


class Denoiser(torch.nn.Module):
    """A diffusers model called with keyword arguments named as the inputs, its first output
    returned (the exporters take positional tensors and a tensor out)."""

    def __init__(self, model: torch.nn.Module, names: list[str],
                 call: Callable[..., torch.Tensor] | None = None) -> None:
        super().__init__()
        self.model = model
        self.names = names
        self.call = call

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        arguments = dict(zip(self.names, inputs))
        if self.call is not None:
            return self.call(self.model, **arguments)
        return self.model(**arguments, return_dict=False)[0]


def _unet(class_embeds: int | None) -> UNet2DModel:
    return UNet2DModel(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                       block_out_channels=(32, 64), norm_num_groups=8,
                       num_class_embeds=class_embeds, attention_head_dim=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def _cond_unet(size: int, channels: tuple[int, int], groups: int, text: int, head: int,
               time_dim: int | None = None, middle: str | None = "UNetMidBlock2DCrossAttn",
               text_time: int | None = None) -> UNet2DConditionModel:
    """``text_time``: SDXL's added conditioning (pooled text embeddings of ``text`` and six
    size values, each embedded in ``text_time``), None for none."""
    added = ({"addition_embed_type": "text_time", "addition_time_embed_dim": text_time,
              "projection_class_embeddings_input_dim": text + 6 * text_time}
             if text_time else {})
    return UNet2DConditionModel(sample_size=size, in_channels=4, out_channels=4, **added,
                                layers_per_block=1, block_out_channels=channels,
                                norm_num_groups=groups, cross_attention_dim=text,
                                attention_head_dim=head, time_embedding_dim=time_dim,
                                mid_block_type=middle,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def _vae() -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)


def trial_model(name: str) -> tuple[torch.nn.Module, Spec]:
    """The trial's model ``name``, seeded, with its inputs' spec."""
    torch.manual_seed(SEED)
    latents = ("normal", (4, 16, 16))
    if name in ("unet", "unet_class"):
        spec: Spec = {"sample": latents, "timestep": ("step", ())}
        if name == "unet_class":
            spec["class_labels"] = ("label", ())
        return _unet(10 if name == "unet_class" else None), spec
    if name in ("unet_cond", "unet_cond_float"):
        spec = {"sample": latents, "timestep": ("step" if name == "unet_cond" else "time", ()),
                "encoder_hidden_states": ("normal", (8, 32))}
        return _cond_unet(16, (32, 64), 8, 32, 8), spec
    if name == "unet_sdxl":
        spec = {"sample": latents, "timestep": ("time", ()),
                "encoder_hidden_states": ("normal", (8, 32)), "text_embeds": ("normal", (32,)),
                "time_ids": ("sizes", (6,))}
        return Denoiser(_cond_unet(16, (32, 64), 8, 32, 8, text_time=8), list(spec),
                        lambda unet, text_embeds, time_ids, **inputs: unet(
                            **inputs, added_cond_kwargs={"text_embeds": text_embeds,
                                                         "time_ids": time_ids},
                            return_dict=False)[0]), spec
    if name == "vae_encoder":
        return Denoiser(_vae(), ["image"], lambda vae, image: vae.encode(image)
                        .latent_dist.mean), {"image": ("image", (3, 32, 32))}
    if name == "vae_decoder":
        return Denoiser(_vae(), ["latent"], lambda vae, latent: vae.decode(latent)
                        .sample), {"latent": latents}
    if name == "dit":
        return DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16,
                                     in_channels=4, out_channels=4, num_layers=2,
                                     sample_size=16, patch_size=2, num_embeds_ada_norm=10,
                                     norm_num_groups=8), \
            {"hidden_states": latents, "timestep": ("step", ()), "class_labels": ("label", ())}
    return SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=2,
                                 attention_head_dim=16, num_attention_heads=2,
                                 joint_attention_dim=32, caption_projection_dim=32,
                                 pooled_projection_dim=32, out_channels=4,
                                 pos_embed_max_size=16), \
        {"hidden_states": latents, "encoder_hidden_states": ("normal", (8, 32)),
         "pooled_projections": ("normal", (32,)), "timestep": ("time", ())}


TRIAL = ("unet", "unet_class", "unet_cond", "unet_cond_float", "unet_sdxl", "vae_encoder",
         "vae_decoder", "dit", "sd3")


def export(model: torch.nn.Module, spec: Spec, data: dict[str, np.ndarray], path: Path,
           dynamo: bool) -> None:
    """``model`` exported at batch ``BATCH`` to ``path`` (legacy opset 17 or dynamo 18)."""
    names = list(spec)
    wrapped = model if isinstance(model, Denoiser) else Denoiser(model, names)
    inputs = tuple(torch.from_numpy(data[name][:BATCH]) for name in names)
    if dynamo:
        program = torch.onnx.export(wrapped.eval(), inputs, dynamo=True, opset_version=18,
                                    input_names=names, output_names=["out"])
        save_model(program.model_proto, path)
    else:
        torch.onnx.export(wrapped.eval(), inputs, str(path), dynamo=False, opset_version=17,
                          input_names=names, output_names=["out"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trial", type=Path, help="write the trial's models here instead")
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"with --trial: these of {', '.join(TRIAL)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.models) - set(TRIAL))
    if unknown or (args.models and args.trial is None):
        parser.error(f"unknown models {unknown}" if unknown else "MODEL goes with --trial")
    if args.trial is None:
        torch.manual_seed(SEED)
        spec: Spec = {"sample": ("normal", (4, 8, 8)), "timestep": ("time", ()),
                      "encoder_hidden_states": ("normal", (4, 8))}
        calib, test = draw(spec, 64, SEED), draw(spec, 32, SEED + 1)
        path = FIXTURES / "diffusion_unet.legacy.opset17.onnx"
        export(_cond_unet(8, (8, 16), 4, 8, 4, time_dim=16, middle=None), spec, calib, path,
               dynamo=False)
        print(f"{path.name}: {path.stat().st_size / 1024:.1f} KiB")
        save_npz(FIXTURES / "diffusion_unet.calib.npz", **calib)
        save_npz(FIXTURES / "diffusion_unet.test.npz", **test)
        return
    args.trial.mkdir(parents=True, exist_ok=True)
    for name in args.models or TRIAL:
        model, spec = trial_model(name)
        calib, test = draw(spec, 128, SEED), draw(spec, 64, SEED + 1)
        save_npz(args.trial / f"{name}.calib.npz", **calib)
        save_npz(args.trial / f"{name}.test.npz", **test)
        export(model, spec, calib, args.trial / f"{name}.legacy.opset17.onnx", dynamo=False)
        export(model, spec, calib, args.trial / f"{name}.dynamo.opset18.onnx", dynamo=True)


if __name__ == "__main__":
    main()
