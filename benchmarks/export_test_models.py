"""Export small real torch models as ONNX test fixtures, the way users export theirs.

The test suite must never import torch, so the exports are made once by this script and the
small files are committed under tests/fixtures/torch/. Each model is exported by torch's legacy
(TorchScript) exporter and by the dynamo exporter (``torch.onnx.export(..., dynamo=True)``,
which needs the ``onnxscript`` package) at opsets 13, 17 and 20, constant folding off, so the
files keep what real exports are full of: Constant nodes in their several attribute forms,
shape arithmetic (Shape, Gather, Unsqueeze, Concat, Slice, Reshape, Expand), Cast, Where and
Equal masks.

Models (weights seeded; the digits ones trained a few epochs so their outputs mean something):
    digits_mlp   Linear -> LayerNorm -> exact GELU (Erf) -> Linear -> Softmax   input [N, 64]
    digits_gelu_mlp  Linear -> exact GELU -> Linear -> exact GELU -> Linear   input [N, 64]; the
                 legacy export writes GELU as x*(1+erf(x/sqrt 2)) then *0.5, a Mul by a constant
                 feeding the next Linear (a smoothing source that cannot help); legacy opset 17
    digits_cnn   Conv -> GELU -> MaxPool -> Conv -> ReLU -> Flatten -> Linear   input [N, 1, 8, 8]
    digits_attention_fixed  LayerNorm -> one self-attention head (Linear Q, K, V, Softmax) ->
                 Linear, on the digits image as 8 tokens of 8 values (random weights), exported
                 by the dynamo exporter with no dynamic shapes: the batch is fixed at 4 and
                 baked into the graph's Reshape constants, as users' exports often are
    digits_norms  Conv -> GroupNorm -> HardSwish -> Conv -> InstanceNorm -> PReLU -> Conv ->
                 LeakyReLU -> ConvTranspose -> Conv -> PixelShuffle -> Conv -> Linear   input
                 [N, 1, 8, 8]; legacy opset 13 (GroupNorm as Reshape + InstanceNormalization)
                 and dynamo opset 21 (GroupNormalization)
    digits_norms_fixed  the same, exported by the dynamo exporter at opset 18 with no dynamic
                 shapes: batch 2 baked into GroupNorm's Reshape constants
    tiny_bert    a 2-layer BERT built from a config (random weights, eager attention, so the
                 classic additive mask at finfo(float32).min), inputs int64 ``input_ids`` and
                 ``attention_mask`` [N, 16], output the last hidden state
    tiny_t5      a 2-layer T5 encoder from a config (random weights): relative position buckets
                 in integer arithmetic (Log, Min, Where), RMS norm, and the boolean mask applied
                 by ``Where(mask, position_bias, finfo.min)`` before it meets the scores; legacy
                 exporter at opset 17 only (same inputs as tiny_bert)
    tiny_t5_fixed  tiny_t5 exported with its batch fixed at 4: every shape known, its position
                 bias is a constant once folded, a float table that Where(mask, bias,
                 finfo.min) chooses from; legacy exporter at opset 17 only
    tiny_bert_dynamic  tiny_bert with the sequence axis left free as well as the batch (as
                 Hugging Face's own exports leave it): quantized on 16 tokens, run on fewer;
                 legacy exporter at opset 17, dynamo at 18
    tiny_bert_sdpa  tiny_bert with transformers' default (sdpa) attention, whose export has
                 IsNaN and Where around the Softmax; legacy exporter at opset 17 only
    digits_sdpa_half  DigitsAttention with F.scaled_dot_product_attention, in float16 (weights
                 and input): the legacy exporter computes the attention scale from the
                 input's shape (Shape -> Cast(to=FLOAT16) -> Sqrt), a float16 tensor that
                 meets the float32 values of a quantized file; legacy opset 17 only, data
                 ``digits_half.*.npz`` (the digits as float16)
    digits_pad   the digits as 8 tokens -> Linear -> LayerNorm -> F.pad of one zero token in
                 front -> Linear (random weights): the dynamo exporter writes a constant Pad
                 with two inputs (no value: 0), the legacy one with an empty third; the batch
                 fixed at 4 (torch.export cannot trace it free); legacy opset 17 and dynamo
                 opset 18
    digits_clamp  the digits as 8 tokens -> torch.einsum with a weight Parameter -> Mul by a
                 learned scalar -> torch.clamp with per-channel Parameter bounds -> Linear
                 (random weights): the legacy exporter writes the clamp as Max and Min of the
                 bounds, the dynamo one as Max(x, CastLike(low, x)) and Min(., CastLike(high,
                 x)), a constant cast to an activation's type; legacy opset 17 and dynamo 18
    digits_detector  the digits as 8 anchors -> Linear -> ReLU -> a box (Linear to 4) and a
                 score (Linear -> Sigmoid -> squeeze) per anchor -> the boxes of the 4 best
                 scores (torch.topk, torch.gather), flattened, and those scores where above
                 0.5, else 0 (random weights): a TopK whose scores reach it through a
                 Squeeze, its values compared; legacy opset 17 and dynamo 18
    digits_same_pool  Conv (no activation after it: values of both signs) -> "SAME" max pooling
                 as timm's MaxPool2dSame and TF ports write it, F.pad of one row and column
                 at -1e4 then MaxPool 3x3 stride 2 -> Conv -> ReLU -> Flatten -> Linear (random
                 weights), input [N, 1, 8, 8]: the pad constant lies far beyond the
                 activations' reach; legacy opset 17 and dynamo opset 18
    token_encoder  torch's own nn.TransformerEncoder (one post-LN layer, 2 heads) over an
                 nn.Embedding of the token ids, with ``src_key_padding_mask=attention_mask ==
                 0``: torch builds the key mask as ``zeros_like(mask).masked_fill(mask, -inf)``,
                 a Where choosing -inf or zeros (same inputs as tiny_bert, the batch fixed at
                 4, so the exporters write the zeros as a constant tensor; the fast path off,
                 which the legacy exporter cannot trace); legacy opset 17 and dynamo opset 18
    digits_same_conv  fully convolutional, for images of any size (input [N, 1, H, W], H and W
                 free): F.pad of one pixel -> Conv 3x3 (no padding of its own, as TF ports
                 write "SAME") -> ReLU6 -> F.pad -> depthwise Conv 3x3 -> ReLU6 -> Conv 1x1 to
                 10 classes -> mean over H and W (random weights): the probes that find
                 equalization groups must run the 3x3 kernels at a size the data gives, not at
                 2; legacy opset 17 and dynamo opset 18, data ``digits_image.*.npz``
    digits_tensor_split  the digits as 8 tokens of 8 values (input [N, T, 8], T free) ->
                 Linear -> torch.tensor_split into T // 2 sections, the first one -> mean ->
                 Linear: with T free, the legacy exporter writes the split as an ONNX sequence
                 (SplitToSequence, sizes computed from T by Tile, then SequenceAt), as it does
                 Mamba's in transformers 5; legacy opset 17 only, data ``digits_tokens.*.npz``
    mask_encoder  the digits as 8 tokens -> Linear -> torch's nn.TransformerEncoder (one layer,
                 2 heads) with ``src_key_padding_mask`` a float input ``key_mask`` [N, 8]
                 that torch adds to the scores as it is (data ``mask_encoder.*.npz``: -inf at
                 the padded keys of seeded lengths); legacy opset 17 and dynamo opset 18
    tiny_llama_left  a 2-layer Llama decoder from a config (random weights, transformers'
                 default sdpa attention) on left-padded token batches (``tiny_llama.*.npz``):
                 the causal mask hides every key of a padded row's first positions, whose
                 Softmax rows are NaN until an IsNaN-guarded Where turns them into 0; legacy
                 exporter at opset 17 only
    tiny_qwen2_outliers  a 2-layer Qwen2 decoder from a config whose norm weights are
                 perturbed (1 + 0.1 N(0, 1)) and two embedding channels 10x the rest, the
                 outlier channels real LLMs have (left-padded tokens, ``tiny_llama.*.npz``):
                 its RMSNorms start with a Cast to float32, which the legacy exporter keeps;
                 legacy exporter at opset 17 only
    tiny_bert_outliers  tiny_bert with its LayerNorm weights perturbed (1 + 0.1 N(0, 1)) and
                 two of their channels 10x the rest: at opset 14 its LayerNorms are
                 exported in parts, so smoothing takes them through a Mul by gamma and an
                 Add of beta; legacy exporter at opsets 14 and 17
    tiny_funnel  a Funnel transformer from a config (random weights): its additive mask is
                 (1 - mask) * -1e6, far beyond int32 at an accumulator's scale; dynamo exporter
                 at opset 18 with its default optimizations, the batch fixed at 1
    digits_regressor  Linear -> ReLU -> MatMul(32 x 1) -> Add -> reshape(-1) on the flat
                 digits (random weights): a graph output that a Reshape makes of the last
                 layer's sum, as skl2onnx writes regressors; legacy opset 17 only
    digits_cross_attention  the digits as 8 tokens -> Linear -> a learned query attending
                 over them with nn.MultiheadAttention -> Linear (random weights): the legacy
                 exporter cuts the packed in_proj_weight by Slices whose bounds come from
                 the embedding width's Shape; legacy opset 17 only
    digits_uint8  the digits as an 8-bit RGB photo [N, 8, 8, 3] (uint8, channels last),
                 normalised in the model (/ 255, ImageNet's per-channel mean and std) ->
                 digits_cnn's layers (random weights): a float tensor computed from an integer
                 input meets a per-channel constant in a Sub before any activation; legacy
                 opset 17 and dynamo opset 18, data ``digits_uint8.*.npz``
    digits_rotary  the digits as 8 tokens -> Linear -> a rotary position embedding from an int64
                 ``position_ids`` input (offsets of 0 to 499 plus 0..7): angles are positions
                 times a table of frequencies, up to 506 radians, read by Cos and Sin through a
                 Concat -> mean -> Linear (random weights); legacy opset 17 and dynamo opset
                 18, data ``digits_rotary.*.npz``
    digits_timestep  the digits image -> Conv -> SiLU plus a DDPM-style embedding of a float
                 ``t`` input (0 to 1000): t times a table of 16 frequencies (1 down to 1e-4),
                 Sin and Cos of them, Concat -> Linear -> SiLU, added per channel -> Conv ->
                 Linear (random weights): the angles reach 1000 radians, so any 8-bit codes of
                 t make Sin and Cos noise; legacy opset 17 and dynamo opset 18, data
                 ``digits_timestep.*.npz``
    digits_gqa   the digits as 8 tokens -> nn.RMSNorm -> Linear -> a causal self-attention with
                 4 query heads sharing 2 key/value heads (F.scaled_dot_product_attention,
                 enable_gqa, scale 0.5) -> another over 4 heads without a scale -> Linear
                 (random weights): at opset 23 the dynamo exporter writes RMSNormalization and
                 two ONNX Attention nodes, one with a ``scale`` attribute and one without;
                 dynamo opset 23 only
    digits_lstm  the digits as 8 tokens -> Linear -> nn.LSTM(16, 16) -> its sequence output
                 plus a Linear of its input (a residual Add) -> the last token -> Linear
                 (random weights): an LSTM node, which no declaration describes, for
                 ``--float-op LSTM``; legacy opset 17 (three outputs: Y, Y_h, Y_c) and dynamo
                 opset 18 (Y alone), data ``digits_tokens.*.npz``
    digits_bigru  the same with a bidirectional nn.GRU(16, 8) (two outputs, two directions);
                 legacy opset 17 only
    digits_lstm_state  a streaming recurrent model: a chunk of 4 of the digits' 8 tokens ->
                 Linear -> nn.LSTM(16, 16, batch_first=True) from an initial state given as
                 inputs ``h0`` and ``c0`` (1, batch, 16: torch takes an LSTM's state batch
                 second whatever batch_first says) -> its last output plus a Linear of the
                 last token -> Linear; outputs the logits and the final state ``hn``, ``cn``
                 (1, batch, 16) (random weights); legacy opset 17 and dynamo opset 18. Data,
                 recorded as a streaming user would: the float export run in onnxruntime on
                 the first chunk from a zero state, its final state then the initial state of
                 the second chunk, in the model's own layout (``digits_lstm_state.*.npz``)
    tiny_llama_past  a 2-layer Llama causal LM (``_tiny_decoder``'s config, logits over the
                 vocabulary) wrapped as a decoder_with_past export: inputs ``input_ids``,
                 ``attention_mask``, ``position_ids`` [N, new] and ``past_key_values.L.key``
                 / ``.value`` [N, 1, past, 16], outputs ``logits`` and ``present.L.key`` /
                 ``.value``, batch, new tokens and past length free; legacy exporter at opset
                 17 (traced at 2 new tokens over a past of 3: a trace at 1 token fixes shapes
                 that other lengths need). Data, recorded by running the float export in
                 onnxruntime as a user would: ``tiny_llama_past.calib.npz`` one decode step
                 over pasts left-padded to 8, the padding masked (past lengths 0 to 8 in
                 effect), ``.past8.npz`` the same steps over whole pasts of 8, ``.test0.npz``
                 and ``.test3.npz`` steps over whole pasts of 0 and 3 (other token rows)
    tiny_marian_decoder  a Marian translation model's decoder alone (2 + 2 layers of width 32,
                 tied embeddings, sinusoidal positions; random weights) as seq2seq decoder
                 files hold it: ``input_ids`` [N, target], ``encoder_hidden_states`` [N,
                 source, 32] and ``encoder_attention_mask`` [N, source] -> ``output`` (the
                 logits), all three axes free; legacy opset 17. Data: the encoder's output
                 for sources of 3 to 8 tokens (padded tails masked) and teacher-forced
                 targets, ``.calib.npz`` 8 target tokens, ``.test.npz`` 12 (positions never
                 calibrated)
    digits_swin  a 2-stage Swin transformer from a config (random weights, windows of 2 x 2
                 patches on the 8x8 digits image as 4 x 4 patches of 2 x 2 pixels, then one
                 window after patch merging):
                 the window padding computed from the input's shape with Mod, window partition
                 by Reshape/Transpose, relative position bias; legacy exporter at opset 17 only
                 (input [N, 1, 8, 8], output the last hidden state)

Data written next to them (made here, offline): ``digits.calib.npz`` / ``digits_image.calib.npz``
(64 training digits from scikit-learn, keyed ``input``) and ``tiny_bert.calib.npz`` (seeded
token ids with padded tails, so some keys are masked), plus ``*.test.npz`` to compare against.

Run:  python benchmarks/export_test_models.py   (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from fixture_files import FIXTURES, save_model, save_npz
from onnx_session import cpu_session, run_session
from train_digits import load_split

OUT = FIXTURES
# The dynamo exporter writes opset 18 and up; it converts down to 17 but not to 13
# (LayerNormalization has no version before 17), so it gets 18 in place of 13.
OPSETS = {"legacy": (13, 17, 20), "dynamo": (17, 18, 20)}
# tiny_t5: the legacy exporter at 17 only (fixture size); the dynamo exporter fails on T5's
# reshape with a dynamic batch (torch 2.13, transformers 5.24)
OPSETS_OF = {"tiny_t5": {"legacy": (17,)}, "tiny_bert_sdpa": {"legacy": (17,)},
             "digits_norms": {"legacy": (13,), "dynamo": (21,)},
             "digits_norms_fixed": {"dynamo": (18,)},
             "digits_swin": {"legacy": (17,)},
             "digits_gelu_mlp": {"legacy": (17,)},
             "digits_attention_fixed": {"dynamo": (18,)},
             "tiny_bert_dynamic": {"legacy": (17,), "dynamo": (18,)},
             "token_encoder": {"legacy": (17,), "dynamo": (18,)},
             "mask_encoder": {"legacy": (17,), "dynamo": (18,)},
             "digits_tensor_split": {"legacy": (17,)},
             "digits_sdpa_half": {"legacy": (17,)},
             "tiny_t5_fixed": {"legacy": (17,)},
             "digits_pad": {"legacy": (17,), "dynamo": (18,)},
             "digits_same_pool": {"legacy": (17,), "dynamo": (18,)},
             "digits_same_conv": {"legacy": (17,), "dynamo": (18,)},
             "digits_topk": {"legacy": (17,), "dynamo": (18,)},
             "digits_clamp": {"legacy": (17,), "dynamo": (18,)},
             "digits_detector": {"legacy": (17,), "dynamo": (18,)},
             "tiny_llama_left": {"legacy": (17,)},
             "tiny_qwen2_outliers": {"legacy": (17,)},
             "tiny_bert_outliers": {"legacy": (14, 17)},
             "tiny_funnel": {"dynamo": (18,)},
             "tiny_gpt2": {"legacy": (11,)},
             "digits_regressor": {"legacy": (17,)},
             "digits_cross_attention": {"legacy": (17,)},
             "digits_uint8": {"legacy": (17,), "dynamo": (18,)},
             "digits_rotary": {"legacy": (17,), "dynamo": (18,)},
             "digits_timestep": {"legacy": (17,), "dynamo": (18,)},
             "digits_gqa": {"dynamo": (23,)},
             "digits_lstm": {"legacy": (17,), "dynamo": (18,)},
             "digits_bigru": {"legacy": (17,)}}
# exported with this batch size, no dynamic axes
FIXED_BATCH = {"digits_attention_fixed": 4, "digits_norms_fixed": 2, "token_encoder": 4,
               "tiny_t5_fixed": 4, "digits_pad": 4, "tiny_funnel": 1}
# exported with the dynamo exporter's default optimizations (the others keep its raw graph):
# tiny_funnel's raw export splits into a SplitToSequence, which has no declaration
OPTIMIZED = {"tiny_funnel"}
# exported with the sequence axis (1) free too
DYNAMIC_SEQUENCE = {"tiny_bert_dynamic", "digits_tensor_split"}
# exported with the image's height and width (axes 2 and 3) free too
DYNAMIC_IMAGE = {"digits_same_conv"}
SEED = 0
SAMPLES = 64
SEQUENCE = 16
VOCAB = 64
EPOCHS = 15
TOLERANCE = 1e-4
HALF_TOLERANCE = 1e-2  # float16 kernels: torch's and onnxruntime's round differently


def digits_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, 32),
        torch.nn.LayerNorm(32),
        torch.nn.GELU(),
        torch.nn.Linear(32, 10),
        torch.nn.Softmax(dim=-1),
    )


def digits_gelu_mlp() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, 64),
        torch.nn.GELU(),
        torch.nn.Linear(64, 64),
        torch.nn.GELU(),
        torch.nn.Linear(64, 10),
    )


class DigitsRegressor(torch.nn.Module):
    """An MLP with one output per digit, its last layer ``h @ w + b`` (MatMul and Add, as
    skl2onnx writes a regressor's) flattened to [N] (``.reshape(-1)``): the graph output is a
    Reshape of a sum of a one-column product."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.w = torch.nn.Parameter(torch.randn(32, 1) / 32**0.5)
        self.b = torch.nn.Parameter(torch.tensor([0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.hidden(x) @ self.w + self.b).reshape(-1)


class DigitsAttention(torch.nn.Module):
    """A pre-LN self-attention block on [N, 8, 8] (8 tokens of 8 values) and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)
        self.q, self.k, self.v = (torch.nn.Linear(8, 8) for _ in range(3))
        self.out = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(x.reshape(x.shape[0], 8, 8))
        scores = self.q(tokens) @ self.k(tokens).transpose(1, 2) / 8**0.5
        mixed = torch.softmax(scores, dim=-1) @ self.v(tokens)
        return self.out(mixed.reshape(x.shape[0], 64))


class DigitsPad(torch.nn.Module):
    """Tokens -> Linear -> LayerNorm -> a zero token padded in front (F.pad) -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)
        self.out = torch.nn.Linear(72, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(self.embed(x.reshape(x.shape[0], 8, 8)))
        padded = torch.nn.functional.pad(tokens, (0, 0, 1, 0))
        return self.out(padded.reshape(x.shape[0], 72))


class DigitsTopK(torch.nn.Module):
    """Rows of the digit as 8 tokens -> Linear -> ReLU -> k-max pooling over the tokens
    (torch.topk, k = 3: a TopK node, whose indices output nothing reads) -> Linear (random
    weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.out = torch.nn.Linear(8, 16), torch.nn.Linear(48, 10)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        tokens = torch.relu(self.embed(input.reshape(input.shape[0], 8, 8)))
        top = torch.topk(tokens, 3, dim=1).values
        return self.out(top.reshape(input.shape[0], 48))


class DigitsDetector(torch.nn.Module):
    """A detector-style head on the rows of the digit as 8 anchors: Linear -> ReLU -> a box
    (Linear to 4) and a score (Linear to 1 -> Sigmoid -> squeeze) per anchor, then the 4 best
    anchors' boxes by torch.topk over the scores and torch.gather, beside their scores where
    above 0.5 (a score threshold), else 0 (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(8, 16)
        self.box, self.score = torch.nn.Linear(16, 4), torch.nn.Linear(16, 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        anchors = torch.relu(self.embed(input.reshape(input.shape[0], 8, 8)))
        boxes = self.box(anchors)
        scores = torch.sigmoid(self.score(anchors)).squeeze(-1)
        values, best = torch.topk(scores, 4, dim=1)
        top = torch.gather(boxes, 1, best.unsqueeze(-1).expand(-1, -1, 4))
        kept = torch.where(values > 0.5, values, torch.zeros_like(values))
        return torch.cat([top.reshape(input.shape[0], 16), kept], dim=1)


class DigitsClamp(torch.nn.Module):
    """Rows of the digit as 8 tokens -> torch.einsum('bij,jk->bik') with a weight Parameter ->
    a learned scalar scale (Mul) -> torch.clamp with Parameter bounds of one value per channel
    -> Linear (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(8, 16) * 0.3)
        self.scale = torch.nn.Parameter(torch.tensor(1.7))
        self.low = torch.nn.Parameter(-torch.rand(16))
        self.high = torch.nn.Parameter(torch.rand(16) + 0.5)
        self.out = torch.nn.Linear(128, 10)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        tokens = torch.einsum("bij,jk->bik", input.reshape(input.shape[0], 8, 8), self.weight)
        clamped = torch.clamp(tokens * self.scale, self.low, self.high)
        return self.out(clamped.reshape(input.shape[0], 128))


class DigitsSamePool(torch.nn.Module):
    """Conv -> "SAME" max pooling (F.pad at -1e4, then MaxPool 3x3 stride 2) -> Conv -> ReLU ->
    Flatten -> Linear, on the digits image (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = (torch.nn.Conv2d(1, 8, 3, padding=1),
                                   torch.nn.Conv2d(8, 8, 3, padding=1))
        self.out = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        padded = torch.nn.functional.pad(self.first(input), (0, 1, 0, 1), value=-1e4)
        pooled = torch.nn.functional.max_pool2d(padded, 3, stride=2)
        return self.out(torch.relu(self.second(pooled)).flatten(1))


class DigitsSameConv(torch.nn.Module):
    """F.pad -> Conv 3x3 -> ReLU6 -> F.pad -> depthwise Conv 3x3 -> ReLU6 -> Conv 1x1 -> mean
    over H and W: a classifier of images of any size (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 8, 3)
        self.depthwise = torch.nn.Conv2d(8, 8, 3, groups=8)
        self.head = torch.nn.Conv2d(8, 10, 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        pad = torch.nn.functional.pad
        x = torch.nn.functional.relu6(self.stem(pad(input, (1, 1, 1, 1))))
        x = torch.nn.functional.relu6(self.depthwise(pad(x, (1, 1, 1, 1))))
        return self.head(x).mean(dim=(2, 3))


class TokenEncoder(torch.nn.Module):
    """nn.Embedding -> nn.TransformerEncoder with the padding mask from attention_mask."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 16)
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)


class DigitsTensorSplit(torch.nn.Module):
    """The digits as tokens -> Linear -> torch.tensor_split into half as many sections as
    tokens -> the first section, mean over its tokens -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.out = torch.nn.Linear(8, 16), torch.nn.Linear(16, 10)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        tokens = self.embed(input)
        first = torch.tensor_split(tokens, tokens.shape[1] // 2, dim=1)[0]
        return self.out(first.mean(dim=1))


class DigitsRecurrent(torch.nn.Module):
    """The digits as 8 tokens -> Linear -> a recurrent layer (``layer``: 16 features in, 16
    out over its directions) plus a Linear of its input -> the last token -> Linear."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.embed, self.layer = torch.nn.Linear(8, 16), layer
        self.skip, self.out = torch.nn.Linear(16, 16), torch.nn.Linear(16, 10)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        tokens = self.embed(input)
        states = self.layer(tokens)[0] + self.skip(tokens)
        return self.out(states[:, -1])


class DigitsStreaming(torch.nn.Module):
    """digits_lstm_state (see the module's docstring): (a chunk of tokens, h0, c0) -> (logits,
    hn, cn)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.layer = torch.nn.Linear(8, 16), torch.nn.LSTM(16, 16, batch_first=True)
        self.skip, self.out = torch.nn.Linear(16, 16), torch.nn.Linear(16, 10)

    def forward(self, input: torch.Tensor, h0: torch.Tensor,  # noqa: A002
                c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = self.embed(input)
        states, (hn, cn) = self.layer(tokens, (h0, c0))
        return self.out(states[:, -1] + self.skip(tokens[:, -1])), hn, cn


STREAM_OUTPUTS = ["output", "hn", "cn"]


def export_streaming(module: DigitsStreaming, feeds: dict[str, np.ndarray], exporter: str,
                     opset: int) -> onnx.ModelProto:
    """digits_lstm_state's export, the batch free (axis 0 of the chunk, axis 1 of the
    states); refused unless onnxruntime reproduces torch's three outputs."""
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    state = {1: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=1024)
            program = torch.onnx.export(
                module, args, input_names=list(feeds), output_names=STREAM_OUTPUTS,
                opset_version=opset, dynamo=True, optimize=False, verbose=False,
                dynamic_shapes={"input": {0: batch}, "h0": {1: batch}, "c0": {1: batch}})
            model = _stripped(program.model_proto)
        else:
            torch.onnx.export(
                module, args, buffer, input_names=list(feeds), output_names=STREAM_OUTPUTS,
                opset_version=opset, dynamo=False, do_constant_folding=False,
                dynamic_axes={"input": {0: "batch"}, "h0": state, "c0": state,
                              "output": {0: "batch"}, "hn": state, "cn": state})
            model = onnx.load_from_string(buffer.getvalue())
    with torch.no_grad():
        expected = [v.numpy() for v in module(*args)]
    got = cpu_session(model.SerializeToString()).run(STREAM_OUTPUTS, feeds)
    difference = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
    if difference > TOLERANCE:
        raise RuntimeError(f"digits_lstm_state {exporter}: onnxruntime differs by "
                           f"{difference:.2e}")
    return model


def streamed_chunks(model: onnx.ModelProto, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """The second chunk of ``tokens`` [N, 8, 8] with the state the float ``model`` leaves
    after the first, run from a zero state in onnxruntime: (1, N, 16), its own layout."""
    session = cpu_session(model.SerializeToString())
    zero = np.zeros((1, len(tokens), 16), np.float32)
    _, hn, cn = session.run(STREAM_OUTPUTS, {"input": tokens[:, :4], "h0": zero, "c0": zero})
    return {"input": tokens[:, 4:], "h0": hn, "c0": cn}


def save_streaming(folder: Path, calibration: np.ndarray, test: np.ndarray) -> None:
    """digits_lstm_state's exports and data (see the module's docstring)."""
    torch.manual_seed(SEED)
    module = DigitsStreaming().eval()
    zero = np.zeros((1, 3, 16), np.float32)
    trace = {"input": calibration[:3, :4], "h0": zero + 0.1, "c0": zero - 0.2}
    models = {(exporter, opset): export_streaming(module, trace, exporter, opset)
              for exporter, opset in (("legacy", 17), ("dynamo", 18))}
    for (exporter, opset), model in models.items():
        save_model(model, folder / f"digits_lstm_state.{exporter}.opset{opset}.onnx")
    legacy = models["legacy", 17]
    save_npz(folder / "digits_lstm_state.calib.npz", **streamed_chunks(legacy, calibration))
    save_npz(folder / "digits_lstm_state.test.npz", **streamed_chunks(legacy, test))


class MaskEncoder(torch.nn.Module):
    """The digits as 8 tokens -> Linear -> nn.TransformerEncoder whose key padding mask is a
    float input, added to the scores as it is (-inf at padded keys) -> Linear per token."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.out = torch.nn.Linear(8, 16), torch.nn.Linear(16, 10)
        layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        with torch.no_grad():  # queries and keys 4x: attention peaked, not near uniform
            self.encoder.layers[0].self_attn.in_proj_weight[:32] *= 4

    def forward(self, input: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:  # noqa: A002
        # (the dynamo exporter's dynamic shapes are keyed by the arguments' names)
        tokens = self.embed(input.reshape(input.shape[0], 8, 8))
        return self.out(self.encoder(tokens, src_key_padding_mask=key_mask))


class DigitsCrossAttention(torch.nn.Module):
    """The digits as 8 tokens -> Linear -> a learned query attending over them with
    nn.MultiheadAttention -> Linear: a query apart from the keys, so torch cuts its packed
    in_proj_weight into the query's rows and the keys' and values' at bounds computed from
    the embedding width's Shape (the legacy exporter writes Shape -> Slice -> ... -> Slice of
    the weight)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.out = torch.nn.Linear(8, 16), torch.nn.Linear(16, 10)
        self.query = torch.nn.Parameter(torch.randn(1, 1, 16))
        self.attention = torch.nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        tokens = self.embed(input.reshape(input.shape[0], 8, 8))
        query = self.query.expand(input.shape[0], -1, -1)
        pooled, _ = self.attention(query, tokens, tokens, need_weights=False)
        return self.out(pooled[:, 0])


def key_mask(count: int, seed: int) -> np.ndarray:
    """Seeded additive key masks [count, 8]: 0 on the first 3 to 8 tokens of a row, -inf on
    the rest (the tests write finfo(float32).min and -1e4 in place of -inf)."""
    lengths = np.random.default_rng(seed).integers(3, 9, size=count)
    return np.where(np.arange(8)[None, :] < lengths[:, None], 0.0, -np.inf).astype(np.float32)


class DigitsSdpa(DigitsAttention):
    """DigitsAttention with torch's fused attention function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(x.reshape(x.shape[0], 8, 8))
        mixed = torch.nn.functional.scaled_dot_product_attention(
            self.q(tokens), self.k(tokens), self.v(tokens))
        return self.out(mixed.reshape(x.shape[0], 64))


def digits_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.GELU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    )


class DigitsUint8(torch.nn.Module):
    """The digits as an 8-bit RGB photo [N, 8, 8, 3] (uint8, channels last), normalised in the
    model as exported vision models do (``x.permute(...).float() / 255``, minus ImageNet's
    per-channel mean, over its std), then digits_cnn's layers (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
            torch.nn.Linear(8 * 4 * 4, 10))

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        pixels = input.permute(0, 3, 1, 2).float() / 255.0
        return self.cnn((pixels - self.mean) / self.std)


class DigitsRotary(torch.nn.Module):
    """The digits as 8 tokens of 8 values -> Linear -> rotary position embedding from an int64
    ``position_ids`` input [N, 8] (as Hugging Face decoders take it: each text's offset plus
    0..7), angles = positions times a table of frequencies, cos and sin of their Concat ->
    mean over tokens -> Linear (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.project = torch.nn.Linear(8, 8)
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, 8, 2) / 8.0)))
        self.out = torch.nn.Linear(8, 10)

    def forward(self, input: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:  # noqa: A002
        h = self.project(input.reshape(input.shape[0], 8, 8))
        angles = position_ids.float()[..., None] * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)
        half = torch.cat([-h[..., 4:], h[..., :4]], dim=-1)
        return self.out((h * angles.cos() + half * angles.sin()).mean(1))


class DigitsTimestep(torch.nn.Module):
    """The digits image -> Conv -> SiLU, plus a sinusoidal embedding of a float timestep per
    channel -> Conv -> Linear (random weights); see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.mix = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 3)
        self.embed, self.out = torch.nn.Linear(32, 8), torch.nn.Linear(4 * 6 * 6, 10)
        self.register_buffer("frequencies", torch.exp(-9.21 * torch.arange(16) / 16))

    def forward(self, input: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # noqa: A002
        angles = t[:, None] * self.frequencies[None]
        step = torch.nn.functional.silu(self.embed(torch.cat([angles.sin(), angles.cos()], 1)))
        h = torch.nn.functional.silu(self.conv(input)) + step[:, :, None, None]
        return self.out(self.mix(h).flatten(1))


class DigitsGqa(torch.nn.Module):
    """Tokens -> RMSNorm -> Linear -> causal grouped-query attention (scale 0.5) -> attention
    of 4 heads (default scale) -> Linear; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.norm, self.embed = torch.nn.RMSNorm(8), torch.nn.Linear(8, 16)
        self.q, self.k, self.v = (torch.nn.Linear(16, n) for n in (16, 8, 8))
        self.q2, self.k2, self.v2 = (torch.nn.Linear(16, 16) for _ in range(3))
        self.out = torch.nn.Linear(128, 10)
        with torch.no_grad():
            self.norm.weight += 0.1 * torch.randn(8)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        n = input.shape[0]
        h = self.embed(self.norm(input.reshape(n, 8, 8)))

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(n, 8, -1, 4).transpose(1, 2)

        mixed = torch.nn.functional.scaled_dot_product_attention(
            heads(self.q(h)), heads(self.k(h)), heads(self.v(h)), is_causal=True, scale=0.5,
            enable_gqa=True).transpose(1, 2).reshape(n, 8, 16)
        mixed = torch.nn.functional.scaled_dot_product_attention(
            heads(self.q2(mixed)), heads(self.k2(mixed)), heads(self.v2(mixed)))
        return self.out(mixed.transpose(1, 2).reshape(n, 128))


def position_ids(count: int, seed: int) -> np.ndarray:
    """Seeded int64 positions [count, 8]: an offset of 0 to 499 plus 0..7."""
    offsets = np.random.default_rng(seed).integers(0, 500, size=(count, 1))
    return (offsets + np.arange(8)[None, :]).astype(np.int64)


def timesteps(count: int, seed: int) -> np.ndarray:
    """Seeded float32 diffusion timesteps [count], uniform in [0, 1000)."""
    return np.random.default_rng(seed).uniform(0, 1000, count).astype(np.float32)


def uint8_photos(digits: np.ndarray) -> np.ndarray:
    """Flat digits (0 to 16) as 8-bit RGB images [N, 8, 8, 3], the gray level in each channel."""
    gray = np.round(digits.reshape(-1, 8, 8, 1) * (255 / 16)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray, 3, axis=3))


def digits_norms() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.GroupNorm(2, 8),
        torch.nn.Hardswish(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.InstanceNorm2d(8, affine=True),
        torch.nn.PReLU(8),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.LeakyReLU(0.1),
        torch.nn.ConvTranspose2d(8, 8, 2, stride=2),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.PixelShuffle(2),
        torch.nn.Conv2d(4, 4, 3, stride=2, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    )


def _tiny_decoder(config_class):
    """A transformers decoder config of the tests' size: 2 layers of width 32, 2 heads sharing
    one key/value head, no cache."""
    return config_class(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                        max_position_embeddings=SEQUENCE, use_cache=False)


class TinyLlama(torch.nn.Module):
    """transformers' LlamaModel from a small config (its default sdpa attention, no cache);
    returns the last hidden state only."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaModel

        self.llama = LlamaModel(_tiny_decoder(LlamaConfig)).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.llama(input_ids=input_ids, attention_mask=attention_mask,
                          use_cache=False).last_hidden_state


class TinyQwen2Outliers(torch.nn.Module):
    """transformers' Qwen2Model from a small config, its norm weights perturbed and two
    embedding channels scaled 10x; returns the last hidden state only."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import Qwen2Config, Qwen2Model

        self.qwen2 = Qwen2Model(_tiny_decoder(Qwen2Config)).eval()
        with torch.no_grad():
            for name, parameter in self.qwen2.named_parameters():
                if "norm" in name:
                    parameter += 0.1 * torch.randn_like(parameter)
            self.qwen2.embed_tokens.weight[:, [3, 17]] *= 10

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.qwen2(input_ids=input_ids, attention_mask=attention_mask,
                          use_cache=False).last_hidden_state


class TinyLlamaPast(torch.nn.Module):
    """transformers' LlamaForCausalLM from ``_tiny_decoder``'s config, its cache as flat
    tensors: (input_ids, attention_mask, position_ids, then each layer's past key and value)
    -> (logits, then each layer's present key and value), as decoder_with_past files hold."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        self.llama = LlamaForCausalLM(_tiny_decoder(LlamaConfig)).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.llama(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, past_key_values=cache, use_cache=True)
        return (out.logits, *(t for layer in out.past_key_values.layers
                              for t in (layer.keys, layer.values)))


PAST = 8
"""The longest past of tiny_llama_past's calibration steps."""


def past_names(layers: int) -> list[str]:
    """The flat cache inputs of a decoder_with_past export, as optimum names them."""
    return [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def export_with_past(module: TinyLlamaPast) -> onnx.ModelProto:
    """tiny_llama_past's legacy opset-17 export, batch, new tokens and past length free;
    refused unless onnxruntime reproduces torch's logits at a past and a length other than
    the trace's."""
    config = module.llama.config
    layers, heads = config.num_hidden_layers, config.num_key_value_heads
    width = config.hidden_size // config.num_attention_heads
    cache = past_names(layers)
    names = ["input_ids", "attention_mask", "position_ids", *cache]
    outputs = ["logits", *(n.replace("past_key_values", "present") for n in cache)]
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "position_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "total"}, "logits": {0: "batch", 1: "sequence"},
            **{n: {0: "batch", 2: "past"} for n in cache},
            **{n: {0: "batch", 2: "total"} for n in outputs[1:]}}

    def feeds(batch: int, new: int, past: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {"input_ids": rng.integers(0, VOCAB, (batch, new), dtype=np.int64),
                "attention_mask": np.ones((batch, past + new), np.int64),
                "position_ids": np.tile(np.arange(past, past + new), (batch, 1)),
                **{n: rng.normal(size=(batch, heads, past, width)).astype(np.float32)
                   for n in cache}}

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(torch.from_numpy(v) for v in feeds(3, 2, 3, 0).values()),
                          buffer, input_names=names, output_names=outputs, opset_version=17,
                          dynamo=False, do_constant_folding=False, dynamic_axes=axes)
    model = onnx.load_from_string(buffer.getvalue())
    check = feeds(2, 1, 5, 1)
    with torch.no_grad():
        expected = module(*(torch.from_numpy(v) for v in check.values()))[0].numpy()
    difference = float(np.max(np.abs(run_session(model.SerializeToString(), check) - expected)))
    if difference > TOLERANCE:
        raise RuntimeError(f"tiny_llama_past: onnxruntime differs by {difference:.2e}")
    return model


def decode_steps(model: onnx.ModelProto, ids: np.ndarray, real: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """One decode step's inputs per row of ``ids`` [N, P + 1]: the float export run in
    onnxruntime over the first P tokens, left-padded so that row r's past holds ``real[r]``
    of them (the rest masked), then the last token at position ``real[r]``; with P = 0 the
    first token over an empty past."""
    count, past = len(ids), ids.shape[1] - 1
    cache = [value.name for value in model.graph.input][3:]
    shape = [d.dim_value for d in model.graph.input[3].type.tensor_type.shape.dim]
    mask = (np.arange(past)[None] >= past - real[:, None]).astype(np.int64)
    empty = {n: np.zeros((count, shape[1], 0, shape[3]), np.float32) for n in cache}
    present = dict(empty)
    if past:
        prefix = {"input_ids": ids[:, :past], "attention_mask": mask,
                  "position_ids": np.clip(mask.cumsum(1) - 1, 0, None), **empty}
        present = dict(zip(cache, cpu_session(model.SerializeToString()).run(None, prefix)[1:]))
    return {"input_ids": ids[:, past:], "position_ids": real[:, None].astype(np.int64),
            "attention_mask": np.concatenate([mask, np.ones((count, 1), np.int64)], 1),
            **present}


def save_with_past(folder: Path) -> None:
    """tiny_llama_past's export and its decode steps (see the module's docstring)."""
    torch.manual_seed(SEED)
    model = export_with_past(TinyLlamaPast().eval())
    save_model(model, folder / "tiny_llama_past.legacy.opset17.onnx")
    rng = np.random.default_rng(SEED)
    ids = rng.integers(1, VOCAB, size=(2 * SAMPLES, PAST + 1), dtype=np.int64)
    calib, held = ids[:SAMPLES], ids[SAMPLES:]
    stem = folder / "tiny_llama_past"
    save_npz(stem.with_suffix(".calib.npz"),
             **decode_steps(model, calib, np.arange(SAMPLES) % (PAST + 1)))
    save_npz(stem.with_suffix(".past8.npz"),
             **decode_steps(model, calib, np.full(SAMPLES, PAST)))
    for past in (0, 3):
        save_npz(stem.with_suffix(f".test{past}.npz"),
                 **decode_steps(model, held[:, PAST - past:], np.full(SAMPLES, past)))


class TinyMarianDecoder(torch.nn.Module):
    """transformers' MarianMTModel from a small config (2 + 2 layers of width 32, tied
    embeddings, sinusoidal positions), its decoder alone with the LM head: (input_ids [N, T],
    encoder_hidden_states [N, S, 32], encoder_attention_mask [N, S]) -> logits [N, T, VOCAB],
    as seq2seq decoder files hold; ``encode`` runs its encoder, whose output the decoder
    reads."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import MarianConfig, MarianMTModel

        self.marian = MarianMTModel(MarianConfig(
            vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
            decoder_ffn_dim=64, max_position_embeddings=32, pad_token_id=0,
            decoder_start_token_id=0, eos_token_id=1)).eval()

    def encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.marian.get_encoder()(input_ids=torch.from_numpy(ids),
                                             attention_mask=torch.from_numpy(mask))[0].numpy()

    def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.marian.get_decoder()(
            input_ids=input_ids, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, use_cache=False)[0]
        return self.marian.lm_head(hidden) + self.marian.final_logits_bias


def save_marian_decoder(folder: Path) -> None:
    """tiny_marian_decoder's legacy opset-17 export (batch, target and source lengths free)
    and its data, the encoder's output for token rows with padded tails (sources of 3 to 8
    tokens) and teacher-forced targets from the start token: ``.calib.npz`` targets of 8
    tokens, ``.test.npz`` other rows with targets of 12 (positions the calibration never
    held)."""
    torch.manual_seed(SEED)
    module = TinyMarianDecoder().eval()
    rng = np.random.default_rng(SEED)

    def rows(count: int, target: int) -> dict[str, np.ndarray]:
        ids = rng.integers(2, VOCAB, (count, 8), dtype=np.int64)
        mask = (np.arange(8)[None] < rng.integers(3, 9, (count, 1))).astype(np.int64)
        ids *= mask
        start = np.zeros((count, 1), np.int64)
        targets = rng.integers(2, VOCAB, (count, target - 1), dtype=np.int64)
        return {"input_ids": np.concatenate([start, targets], 1),
                "encoder_hidden_states": module.encode(ids, mask),
                "encoder_attention_mask": mask}

    calib, test = rows(SAMPLES, 8), rows(16, 12)
    names = list(calib)
    axes = {"input_ids": {0: "batch", 1: "target"},
            "encoder_hidden_states": {0: "batch", 1: "source"},
            "encoder_attention_mask": {0: "batch", 1: "source"},
            "output": {0: "batch", 1: "target"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(torch.from_numpy(v[:2, :5]) if n == "input_ids" else
                                        torch.from_numpy(v[:2]) for n, v in calib.items()),
                          buffer, input_names=names, output_names=["output"], opset_version=17,
                          dynamo=False, do_constant_folding=False, dynamic_axes=axes)
    model = onnx.load_from_string(buffer.getvalue())
    with torch.no_grad():
        expected = module(*(torch.from_numpy(v) for v in test.values())).numpy()
    difference = float(np.max(np.abs(run_session(model.SerializeToString(), test) - expected)))
    if difference > TOLERANCE:
        raise RuntimeError(f"tiny_marian_decoder: onnxruntime differs by {difference:.2e}")
    save_model(model, folder / "tiny_marian_decoder.legacy.opset17.onnx")
    save_npz(folder / "tiny_marian_decoder.calib.npz", **calib)
    save_npz(folder / "tiny_marian_decoder.test.npz", **test)


def left_padded(tokens: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The token batch with each row's padding moved to its start (a decoder's batches)."""
    shifts = SEQUENCE - tokens["attention_mask"].sum(axis=1)
    return {name: np.stack([np.roll(row, shift) for row, shift in zip(value, shifts)])
            for name, value in tokens.items()}


class TinyFunnel(torch.nn.Module):
    """transformers' FunnelModel from a small config; returns the last hidden state only."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import FunnelConfig, FunnelModel

        config = FunnelConfig(vocab_size=VOCAB, d_model=16, n_head=2, d_head=8, d_inner=32,
                              block_sizes=[1, 1], num_decoder_layers=1,
                              max_position_embeddings=SEQUENCE)
        self.funnel = FunnelModel(config).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.funnel(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class TinyGpt2(torch.nn.Module):
    """transformers' GPT2Model from a small config (eager attention, no cache); returns the last
    hidden state only. Exported by the legacy exporter at opset 11, as older scripts still do:
    ONNX's shape inference knows no rank for its attention scores, which read a mask's Add
    before their Softmax (a new-user trial: the loader's opset-13 spelling had put that Add on
    codes, 16 dB where opset 13 gives 37)."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        config = GPT2Config(vocab_size=VOCAB, n_positions=SEQUENCE, n_embd=32, n_layer=2,
                            n_head=2, attn_implementation="eager", use_cache=False,
                            bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1)
        self.gpt2 = GPT2Model(config).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.gpt2(input_ids=input_ids, attention_mask=attention_mask,
                         use_cache=False).last_hidden_state


class TinyBert(torch.nn.Module):
    """transformers' BertModel from a small config; returns the last hidden state only."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=SEQUENCE,
            hidden_act="gelu",
            attn_implementation="eager",
        )
        self.bert = BertModel(config, add_pooling_layer=False).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class TinyBertOutliers(TinyBert):
    """The same BERT, its LayerNorm weights perturbed and two of their channels scaled 10x
    (the outlier channels of real encoders' LayerNorm outputs)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            for name, parameter in self.bert.named_parameters():
                if "LayerNorm" in name:
                    parameter += 0.1 * torch.randn_like(parameter)
                if "LayerNorm.weight" in name:
                    parameter[[3, 17]] *= 10


class TinyBertSdpa(TinyBert):
    """The same BERT with transformers' default attention (sdpa): the export computes the
    mask with Where and guards the Softmax with Where(IsNaN(p), 0, p)."""

    def __init__(self) -> None:
        super().__init__()
        config = self.bert.config
        config._attn_implementation = "sdpa"
        from transformers import BertModel

        self.bert = BertModel(config, add_pooling_layer=False).eval()


class TinyT5(torch.nn.Module):
    """transformers' T5EncoderModel from a small config; returns the last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                          num_heads=2, relative_attention_num_buckets=8)
        self.t5 = T5EncoderModel(config).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.t5(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class DigitsSwin(torch.nn.Module):
    """transformers' SwinModel from a small config; returns the last hidden state."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import SwinConfig, SwinModel

        config = SwinConfig(image_size=8, patch_size=2, num_channels=1, embed_dim=16,
                            depths=[1, 1], num_heads=[2, 2], window_size=2, mlp_ratio=2.0)
        self.swin = SwinModel(config, add_pooling_layer=False).eval()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.swin(pixel_values=pixel_values).last_hidden_state


def train_digits(module: torch.nn.Module, x: np.ndarray, y: np.ndarray,
                 lr: float = 5e-3) -> torch.nn.Module:
    """A few epochs of Adam on the digits training split (a Sequential ending in a Softmax
    gets NLL on logs); benchmarks/newcomer_models.py trains its models here at lr 3e-3."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    probabilities = (isinstance(module, torch.nn.Sequential)
                     and isinstance(module[-1], torch.nn.Softmax))
    module.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(inputs), generator=generator).split(64):
            optimizer.zero_grad()
            out = module(inputs[batch])
            if probabilities:
                loss = torch.nn.functional.nll_loss(torch.log(out + 1e-9), labels[batch])
            else:
                loss = torch.nn.functional.cross_entropy(out, labels[batch])
            loss.backward()
            optimizer.step()
    return module.eval()


def token_batch(count: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded token ids [count, SEQUENCE] with a padded tail of 0 to 11 tokens per row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(count, SEQUENCE), dtype=np.int64)
    lengths = rng.integers(SEQUENCE - 11, SEQUENCE + 1, size=count)
    mask = (np.arange(SEQUENCE)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def export(
    module: torch.nn.Module, feeds: dict[str, np.ndarray], exporter: str, opset: int,
    dynamic: bool = True, sequence: bool = False, optimize: bool = False, image: bool = False,
) -> onnx.ModelProto:
    """One export, refused unless onnxruntime reproduces torch on ``feeds``; ``dynamic``:
    the batch axis is left free (else it is fixed at the feeds' batch size); ``sequence``:
    axis 1 of every input and of the output too; ``image``: axes 2 and 3 of every input (height
    and width; the output's batch alone); ``optimize``: the dynamo exporter's own graph
    optimizations on (its default, which users get)."""
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    names = list(feeds)
    free = {0: "batch", 1: "sequence"} if sequence else {0: "batch"}
    axes = {name: free for name in [*names, "output"]}
    if image:
        axes = {**{name: {0: "batch", 2: "height", 3: "width"} for name in names},
                "output": {0: "batch"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims = {0: torch.export.Dim("batch", min=1, max=1024)}
            if sequence:
                dims[1] = torch.export.Dim("sequence", min=2, max=SEQUENCE)
            if image:
                dims[2] = torch.export.Dim("height", min=4, max=256)
                dims[3] = torch.export.Dim("width", min=4, max=256)
            program = torch.onnx.export(
                module, args, input_names=names, output_names=["output"], opset_version=opset,
                dynamo=True,
                dynamic_shapes={n: dims for n in names} if dynamic else None,
                optimize=optimize, verbose=False,
            )
            model = _stripped(program.model_proto)
        else:
            torch.onnx.export(
                module, args, buffer, input_names=names, output_names=["output"],
                opset_version=opset, dynamo=False, do_constant_folding=False,
                dynamic_axes=axes if dynamic else None,
            )
            model = onnx.load_from_string(buffer.getvalue())
    if model.opset_import[0].version != opset:
        raise RuntimeError(f"{exporter} wrote opset {model.opset_import[0].version}, not {opset}")
    with torch.no_grad():
        expected = module.eval()(*args).numpy()  # the legacy exporter restores training mode
    got = run_session(model.SerializeToString(), feeds)
    difference = float(np.max(np.abs(got - expected)))
    if difference > (HALF_TOLERANCE if expected.dtype == np.float16 else TOLERANCE):
        raise RuntimeError(f"{exporter} opset {opset}: onnxruntime differs by {difference:.2e}")
    return model


def _stripped(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without the dynamo exporter's per-node stack traces (most of the file size)."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        del value.metadata_props[:]
    del model.graph.metadata_props[:]
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    parser.add_argument("--only", nargs="+", metavar="MODEL",
                        help="export only these models (the others' files stay as they are)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.backends.mha.set_fastpath_enabled(False)  # its fused kernel has no ONNX export
    digits = load_split()
    flat = {"input": digits.calibration_x[:SAMPLES]}
    image = {"input": flat["input"].reshape(-1, 1, 8, 8)}
    test_flat = {"input": digits.test_x[:SAMPLES]}
    test_image = {"input": test_flat["input"].reshape(-1, 1, 8, 8)}
    tokens, test_tokens = token_batch(SAMPLES, SEED), token_batch(SAMPLES, SEED + 1)
    photos = {"input": uint8_photos(flat["input"])}
    rotary = {**flat, "position_ids": position_ids(SAMPLES, SEED)}
    save_npz(args.out / "digits_rotary.calib.npz", **rotary)
    save_npz(args.out / "digits_rotary.test.npz", **test_flat,
             position_ids=position_ids(SAMPLES, SEED + 1))
    timed = {**image, "t": timesteps(SAMPLES, SEED)}
    save_npz(args.out / "digits_timestep.calib.npz", **timed)
    save_npz(args.out / "digits_timestep.test.npz", **test_image,
             t=timesteps(SAMPLES, SEED + 1))
    save_npz(args.out / "digits_uint8.calib.npz", **photos)
    save_npz(args.out / "digits_uint8.test.npz", input=uint8_photos(test_flat["input"]))
    save_npz(args.out / "digits.calib.npz", **flat)
    save_npz(args.out / "digits.test.npz", **test_flat)
    save_npz(args.out / "digits_image.calib.npz", **image)
    save_npz(args.out / "digits_image.test.npz", **test_image)
    half = {"input": flat["input"].astype(np.float16)}
    save_npz(args.out / "digits_half.calib.npz", **half)
    save_npz(args.out / "digits_half.test.npz", input=test_flat["input"].astype(np.float16))
    tokens_of_digits = {"input": flat["input"].reshape(-1, 8, 8)}
    save_npz(args.out / "digits_tokens.calib.npz", **tokens_of_digits)
    save_npz(args.out / "digits_tokens.test.npz", input=test_flat["input"].reshape(-1, 8, 8))
    masked = {**flat, "key_mask": key_mask(SAMPLES, SEED)}
    save_npz(args.out / "mask_encoder.calib.npz", **masked)
    save_npz(args.out / "mask_encoder.test.npz", **test_flat, key_mask=key_mask(SAMPLES, SEED + 1))
    left = left_padded(tokens)
    save_npz(args.out / "tiny_llama.calib.npz", **left)
    save_npz(args.out / "tiny_llama.test.npz", **left_padded(test_tokens))
    save_npz(args.out / "tiny_bert.calib.npz", **tokens)
    save_npz(args.out / "tiny_bert.test.npz", **test_tokens)
    models = {
        "digits_mlp": lambda: (train_digits(digits_mlp(), digits.train_x, digits.train_y), flat),
        "digits_gelu_mlp": lambda: (
            train_digits(digits_gelu_mlp(), digits.train_x, digits.train_y), flat),
        "digits_attention_fixed": lambda: (DigitsAttention().eval(), flat),
        "digits_cnn": lambda: (
            train_digits(digits_cnn(), digits.train_x.reshape(-1, 1, 8, 8), digits.train_y),
            image,
        ),
        "digits_norms": lambda: (
            train_digits(digits_norms(), digits.train_x.reshape(-1, 1, 8, 8), digits.train_y),
            image,
        ),
        "digits_norms_fixed": lambda: (
            train_digits(digits_norms(), digits.train_x.reshape(-1, 1, 8, 8), digits.train_y),
            image,
        ),
        "tiny_bert": lambda: (TinyBert().eval(), tokens),
        "tiny_t5": lambda: (TinyT5().eval(), tokens),
        "tiny_t5_fixed": lambda: (TinyT5().eval(), tokens),
        "tiny_bert_sdpa": lambda: (TinyBertSdpa().eval(), tokens),
        "tiny_bert_dynamic": lambda: (TinyBert().eval(), tokens),
        "digits_swin": lambda: (DigitsSwin().eval(), image),
        "token_encoder": lambda: (TokenEncoder().eval(), tokens),
        "mask_encoder": lambda: (MaskEncoder().eval(), masked),
        "digits_tensor_split": lambda: (DigitsTensorSplit().eval(), tokens_of_digits),
        "digits_sdpa_half": lambda: (DigitsSdpa().eval().half(), half),
        "digits_pad": lambda: (DigitsPad().eval(), flat),
        "digits_same_pool": lambda: (DigitsSamePool().eval(), image),
        "digits_same_conv": lambda: (DigitsSameConv().eval(), image),
        "digits_topk": lambda: (DigitsTopK().eval(), flat),
        "digits_clamp": lambda: (DigitsClamp().eval(), flat),
        "digits_detector": lambda: (DigitsDetector().eval(), flat),
        "tiny_llama_left": lambda: (TinyLlama().eval(), left),
        "tiny_qwen2_outliers": lambda: (TinyQwen2Outliers().eval(), left),
        "tiny_bert_outliers": lambda: (TinyBertOutliers().eval(), tokens),
        "tiny_funnel": lambda: (TinyFunnel().eval(), tokens),
        "tiny_gpt2": lambda: (TinyGpt2().eval(), tokens),
        "digits_regressor": lambda: (DigitsRegressor().eval(), flat),
        "digits_cross_attention": lambda: (DigitsCrossAttention().eval(), flat),
        "digits_uint8": lambda: (DigitsUint8().eval(), photos),
        "digits_rotary": lambda: (DigitsRotary().eval(), rotary),
        "digits_timestep": lambda: (DigitsTimestep().eval(), timed),
        "digits_gqa": lambda: (DigitsGqa().eval(), flat),
        "digits_lstm": lambda: (DigitsRecurrent(
            torch.nn.LSTM(16, 16, batch_first=True)).eval(), tokens_of_digits),
        "digits_bigru": lambda: (DigitsRecurrent(
            torch.nn.GRU(16, 8, batch_first=True, bidirectional=True)).eval(), tokens_of_digits),
    }
    if not args.only or "tiny_llama_past" in args.only:
        save_with_past(args.out)
    if not args.only or "tiny_marian_decoder" in args.only:
        save_marian_decoder(args.out)
    if not args.only or "digits_lstm_state" in args.only:
        save_streaming(args.out, tokens_of_digits["input"],
                       test_flat["input"].reshape(-1, 8, 8))
    for name, build in models.items():
        if args.only and name not in args.only:
            continue
        torch.manual_seed(SEED)
        module, feeds = build()
        for exporter, opsets in OPSETS_OF.get(name, OPSETS).items():
            for opset in opsets:
                fixed = FIXED_BATCH.get(name)
                model = export(module, feeds if fixed is None else
                               {k: v[:fixed] for k, v in feeds.items()}, exporter, opset,
                               dynamic=fixed is None, sequence=name in DYNAMIC_SEQUENCE,
                               image=name in DYNAMIC_IMAGE,
                               optimize=name in OPTIMIZED)
                save_model(model, args.out / f"{name}.{exporter}.opset{opset}.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
