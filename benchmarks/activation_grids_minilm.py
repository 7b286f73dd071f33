"""How far can static 8-bit activations go on all-MiniLM-L6-v2? Weights float, activations rounded.

Issue 8's transformer target (mean embedding cosine >= 0.995, min >= 0.98 at 8 bits, static) is
read against this table: it isolates the activations' share of the error, whatever is done to
the weights. Each row puts a QuantizeLinear/DequantizeLinear pair (onnxruntime, graph
optimizations off, so each pair rounds exactly as written) on every activation an integer
pipeline would hold as codes, with one choice of grid, ranges from the calibration texts, and
leaves every weight in float.

Which tensors: the float tensors that carry the text's data (a Gather of a float table by a
data-dependent index starts that flow: the word embeddings; Shape ends it) where a computing
node reads them: MatMul, Add, Mul, Div, Softmax, LayerNormalization, Erf (GELU's parts), ...
Not rounded: constants and initializers, shape arithmetic, integer tensors, the position and
token-type embedding rows and the additive attention mask (made from shapes, constants and the
integer ``attention_mask``: static); tensors read only by Reshape/Transpose/Squeeze/Unsqueeze
(codes pass through them: the pair sits where the moved tensor is read); and tensors read only
by an Add/Sub/Mul/Div whose other input is static (a MatMul's output before its bias, the
attention scores before their 1/sqrt(d) scale and the mask, Erf's output before its + 1):
an integer pipeline applies those in the wide accumulator or the requantization scale. The
Softmax input holds the mask's finfo(float32).min cells: they are left out of its ranges and
kept exact (an integer Softmax gives them probability 0). The output (last hidden state)
stays float, as the logits do in activation_grids.py. 97 tensors on the saved export.

The channel axis of a tensor is its last axis whose size is not the token count (the hidden
dim of [batch, token, hidden], the head dim of Q, K^T and V, the feed-forward dim), and for the
attention maps [batch, head, query, key] the head. An integer MatMul needs ONE scale along
its contraction axis (the last axis of its first input, the second-last of its second): Q,
K^T and the LayerNorm, context and GELU outputs are contracted on their channel axis; V, the
attention maps and everything read by Add, Softmax, LayerNormalization or Erf are not.

Rows (ranges from the calibration texts; max-abs grids are symmetric, unsigned where the
calibration minimum is >= 0):

- max-abs, min/max (a zero point), MSE-clipped (the clip minimising rounding + clipping error
  on the histogram of |x|) and 99.99th / 99.999th percentile of |x|, one scale per tensor;
- max-abs per channel on every tensor: idealized, more than an integer MatMul can take;
- (A) per channel where no MatMul contracts the channel axis, per tensor elsewhere: what an
  integer pipeline takes with the weights unchanged;
- (A) with position 0 (always [CLS]) on a static scale of its own along the token axis the
  MatMul keeps (its first input's rows, its second input's columns), one scale for all other
  positions; and (B): every token position on a static scale of its own there. Row scales are
  on a MatMul's kept axis, so the accumulator takes them (scale row x column), as dynamic
  per-token quantization does, but here fixed from the calibration texts;
- per channel everywhere except where an attention MatMul (two activations) contracts it:
  per-channel codes of a weight MatMul's input are what folding the scales into the float
  weights gives (smoothing at strength 1); the weights then carry the ranges;
- per-token dynamic: one scale per row at run time (each text's own values; a row is along
  the contraction axis where a MatMul reads the tensor, the last axis elsewhere): not static,
  the reference for onnxruntime's dynamic quantization (which quantizes only the weight
  MatMuls' inputs, one range per tensor per run, everything else float);
- max-abs per tensor, and (B), with the K tensors of largest cost in float, K = 1, 2, 4, 8
  (the mixed-precision bound that ``--keep-float`` approaches). A tensor's cost is the mean
  cosine with it alone rounded, on the first ``--rank-texts`` calibration texts (not the
  evaluation ones), every tensor in one session with a switch (Where) per tensor;
- the MatMul weights alone at 8 bits (max-abs per output column), activations float; and
  rows that are not about float weights, for what follows from the rows above: (B) with
  those 8-bit weights, and the smoothing row with the weights rounded after the channel
  scales are folded into them (what strength-1 smoothing costs the weights);
- (S): SmoothQuant at strength 0.5 on every input X of a weight MatMul (the LayerNorm outputs
  read by Q/K/V and FFN-up, the attention context, the GELU output): s_c = max|X_c|^0.5 /
  max|W_c|^0.5, X / s on one static scale per token position r_t (steps s_c * r_t: the
  MatMul's accumulator has a scale per row and per column; the residual Add reading the same
  LayerNorm output rescales the codes per row and column), diag(s) W the weight; (B)
  elsewhere. With float weights, then with the weights 8-bit per output column rounded after
  folding, and at strength 0.7.

``--skip 256`` evaluates on the next 256 texts instead (none of them used anywhere else): a
second, held-out check of any row that looks good.

A second table lists the costliest tensors under (B) and where each one's calibration peak
sits (token, channel), against the largest |x| elsewhere on its channel and in its row: a peak
far above both is one (token, channel) cell, which no static scale per tensor, channel or
position isolates; a peak matched elsewhere on its channel is a channel outlier.

Model and data as in benchmarks/minilm.py (export, standard-library docstrings, 64 tokens,
calibration and evaluation texts disjoint, cosine of the mean-pooled embeddings).

Run:  python benchmarks/activation_grids_minilm.py   [--calibration 128 --evaluation 256]
      [--rank-texts 8] [--skip 0] [--model out/minilm.onnx --calib out/minilm.calib.npz]
      (a saved export and its calibration texts: minilm.py --save out)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from activation_grids import LEVELS, asymmetric, mse_clip, qdq, spliced, symmetric
from minilm import cosine, embeddings, export, load_tokenizer, mean_pooled, texts, tokenize
from onnx import TensorProto, helper, numpy_helper
from onnx_session import cpu_session

MASKED = -1e30  # a cell at or below it holds the additive mask (finfo(float32).min)
FOLDS = {"Add", "Sub", "Mul", "Div"}
BINS = 8192  # histogram of |x| per tensor, for the MSE and percentile clips
MOVES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"}
SHAPES = {"Shape", "Size"}
Grid = Callable[["Ranges"], tuple[np.ndarray, np.ndarray, int | None]]
Nodes = tuple[list[onnx.NodeProto], list[onnx.TensorProto]]
Chain = Callable[[str, str], Nodes]


@dataclass
class Ranges:
    """One activation's calibration statistics and how it is read: minimum and maximum over
    the texts of each cell (shape without the batch axis), the histogram of |x| over [0,
    peak]; the axes (-1, -2) the MatMuls reading it contract; ``foldable``: no MatMul of two
    activations reads it (a weight can take per-channel scales of a contracted axis);
    ``masked``: it holds the additive mask's cells (<= MASKED), left out of the statistics and
    kept exact; its channel axis (negative) and the texts' token count."""

    low: np.ndarray
    high: np.ndarray
    counts: np.ndarray
    contracted: frozenset[int]
    foldable: bool
    masked: bool
    channel: int
    tokens: int

    @property
    def peak(self) -> float:
        return float(max(-self.low.min(), self.high.max()))

    @property
    def unsigned(self) -> bool:
        return bool(self.low.min() >= 0)

    def along(self, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """The minima and maxima of each index of ``axis`` (negative, counted from the end)."""
        axes = tuple(i for i in range(self.low.ndim) if i != self.low.ndim + axis)
        return self.low.min(axis=axes), self.high.max(axis=axes)

    def onnx_axis(self, axis: int) -> int:
        return self.low.ndim + 1 + axis


def per_tensor(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, None]:
    return *symmetric(ranges.low.min(), ranges.high.max()), None


def zero_point(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, None]:
    return *asymmetric(ranges.low.min(), ranges.high.max()), None


def clipped(clip: float, ranges: Ranges) -> tuple[np.ndarray, np.ndarray, None]:
    return *symmetric(0.0 if ranges.unsigned else -clip, clip), None


def mse(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, None]:
    filled = np.flatnonzero(ranges.counts)
    centres = (filled + 0.5) * ranges.peak / BINS
    return clipped(mse_clip(centres, ranges.unsigned, ranges.counts[filled]), ranges)


def percentile(share: float) -> Grid:
    def grid(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, None]:
        cumulative = np.cumsum(ranges.counts)
        index = int(np.searchsorted(cumulative, share / 100 * cumulative[-1]))
        return clipped(min(index + 1, BINS) * ranges.peak / BINS, ranges)
    return grid


def per_channel(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, int]:
    return *symmetric(*ranges.along(ranges.channel)), ranges.onnx_axis(ranges.channel)


def positions(every: bool) -> Grid:
    """Static scales along the token axis a MatMul keeps (its first input's rows, its second
    input's columns): one per position if ``every``, else one for position 0 (always
    [CLS]) and one shared by all others; per tensor where no MatMul keeps a token axis."""
    def grid(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, int | None]:
        axis = -2 if -1 in ranges.contracted else -1
        if not ranges.contracted or ranges.low.shape[axis] != ranges.tokens:
            return per_tensor(ranges)
        low, high = ranges.along(axis)
        if not every:
            low = np.r_[low[0], np.full(len(low) - 1, low[1:].min())]
            high = np.r_[high[0], np.full(len(high) - 1, high[1:].max())]
        return *symmetric(low, high), ranges.onnx_axis(axis)
    return grid


def integer(fold: bool, otherwise: Grid = per_tensor) -> Grid:
    """Per channel where an integer pipeline can take it, ``otherwise`` elsewhere: where no
    MatMul contracts the channel axis, or with ``fold``, where each MatMul that does has a
    weight as its other input (the scales folded into it: smoothing at strength 1)."""
    def grid(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, int | None]:
        if ranges.channel not in ranges.contracted or fold and ranges.foldable:
            return per_channel(ranges)
        return otherwise(ranges)
    return grid


def smoothing(model: onnx.ModelProto, ranges: dict[str, Ranges],
              strength: float) -> dict[str, np.ndarray]:
    """SmoothQuant's factors s_c = max|X_c|^strength / max|W_c|^(1 - strength) (divided by
    their largest) for each input X of a MatMul with a 2-D weight W (the largest of its
    readers' rows W_c); X / s then one static scale per token position, diag(s) W the weight."""
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rows: dict[str, list[np.ndarray]] = {}
    for node in model.graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and weight.ndim == 2 and node.input[0] in ranges:
            rows.setdefault(node.input[0], []).append(np.abs(weight).max(axis=1))
    out = {}
    for name, peaks in rows.items():
        reach = np.maximum(-ranges[name].low, ranges[name].high)
        reach = reach.reshape(-1, reach.shape[-1]).max(axis=0)
        factors = (np.maximum(reach, 1e-5) ** strength
                   / np.maximum(np.max(peaks, axis=0), 1e-5) ** (1 - strength))
        out[name] = factors / factors.max()
    return out


def smoothed_rows(factors: np.ndarray) -> Grid:
    """Steps s_c * r_t: the channels divided by the smoothing factors ``factors`` (folded
    into the weight) and each token position t on a static scale r_t of its own (the MatMul's
    kept axis), so the integer MatMul's accumulator has a scale per row and column."""
    def grid(ranges: Ranges) -> tuple[np.ndarray, np.ndarray, None]:
        reach = np.maximum(-ranges.low, ranges.high) / factors
        peaks = factors * reach.max(axis=-1, keepdims=True)
        scale, zero = symmetric(0.0 if ranges.unsigned else -peaks, peaks)
        return scale, zero.flat[0], None
    return grid


def activations(model: onnx.ModelProto) -> tuple[list[str], dict[str, set[int]], set[str]]:
    """The data-carrying tensors a computing node reads (graph order); for each, the axes
    (-1 for a MatMul's first input, -2 for its second) MatMuls contract; and the tensors a
    MatMul of two activations reads (no weight to fold a scale into)."""
    tables = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    varying = {tensor.name for tensor in model.graph.input}
    data = {tensor.name for tensor in model.graph.input
            if tensor.type.tensor_type.elem_type == TensorProto.FLOAT}
    names: list[str] = []
    contracted: dict[str, set[int]] = {}
    shared: set[str] = set()
    for node in model.graph.node:
        if node.op_type in SHAPES:
            continue
        if any(name in varying for name in node.input):
            varying.update(node.output)
        lookup = node.op_type == "Gather" and node.input[0] in tables and node.input[1] in varying
        if lookup or any(name in data for name in node.input):
            data.update(node.output)
        read = [name for name in node.input if name in data]
        if node.op_type in MOVES or node.op_type in FOLDS and len(read) == 1:
            continue
        for slot, name in enumerate(node.input):
            if name not in data:
                continue
            if name not in names:
                names.append(name)
            axes = contracted.setdefault(name, set())
            if node.op_type == "MatMul":
                axes.add(-1 if slot == 0 else -2)
                if len(read) == 2:
                    shared.add(name)
    return names, contracted, shared


def calibrate(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
              batch: int = 16) -> dict[str, Ranges]:
    """Cell-wise minima and maxima (first pass) and histograms of |x| (second) over
    ``feeds``, from a session with every tensor as an output, ``batch`` texts at a time."""
    names, contracted, shared = activations(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    session = cpu_session(probe.SerializeToString())
    count = len(next(iter(feeds.values())))

    def batches():
        for start in range(0, count, batch):
            print(f"  texts {start}-{min(start + batch, count)} of {count}", file=sys.stderr)
            yield dict(zip(names, session.run(None, {k: v[start:start + batch]
                                                     for k, v in feeds.items()})))

    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    masked: set[str] = set()
    for outputs in batches():
        for name, values in outputs.items():
            kept = values > MASKED
            if not kept.all():
                masked.add(name)
            low[name] = np.minimum(low.get(name, np.inf), np.where(kept, values, np.inf).min(0))
            high[name] = np.maximum(high.get(name, -np.inf),
                                    np.where(kept, values, -np.inf).max(axis=0))
    for name in masked:  # cells masked in every text: no range
        low[name], high[name] = (np.where(low[name] > high[name], 0, side)
                                 for side in (low[name], high[name]))
    counts = {name: np.zeros(BINS, np.int64) for name in names}
    for outputs in batches():
        for name, values in outputs.items():
            peak = max(-low[name].min(), high[name].max(), 1e-30)
            index = np.minimum((np.abs(values[values > MASKED]) * (BINS / peak)).astype(np.int64),
                               BINS - 1)
            counts[name] += np.bincount(index, minlength=BINS)
    tokens = next(iter(feeds.values())).shape[1]
    return {name: Ranges(low[name], high[name], counts[name], frozenset(contracted[name]),
                         name not in shared, name in masked, channel(low[name].shape, tokens),
                         tokens) for name in names}


def channel(shape: tuple[int, ...], tokens: int) -> int:
    """The channel axis of an activation of ``shape`` (no batch axis; negative): the last
    axis whose size is not the text's token count (hidden, head or feed-forward dim), or the
    head axis of an attention map [head, query, key]."""
    return next((axis for axis in range(-1, -len(shape) - 1, -1) if shape[axis] != tokens), -1)


def chain(name: str, stats: Ranges, body: Chain, output: str) -> Nodes:
    """The nodes ``body`` makes (rounding a tensor into ``output``), and where ``name``
    holds the mask, around them: masked cells read as 0 and written back exactly."""
    if not stats.masked:
        return body(name, output)
    nodes, constants = body(f"{name}_unmasked", f"{name}_grid")
    constants += [numpy_helper.from_array(np.array(value, np.float32), f"{name}_{key}")
                  for key, value in (("floor", MASKED), ("nought", 0.0))]
    return [helper.make_node("Less", [name, f"{name}_floor"], [f"{name}_mask"]),
            helper.make_node("Where", [f"{name}_mask", f"{name}_nought", name],
                             [f"{name}_unmasked"]),
            *nodes,
            helper.make_node("Where", [f"{name}_mask", name, f"{name}_grid"], [output])
            ], constants


def static(grids: dict[str, Grid], ranges: dict[str, Ranges], suffix: str) -> dict[str, Nodes]:
    """For each tensor of ``grids``, the QuantizeLinear/DequantizeLinear pair on its grid
    (``{name}{suffix}`` out) and its constants."""
    return {name: chain(name, ranges[name],
                        lambda source, out, grid=grid, name=name: pair(
                            source, *grid(ranges[name]), out, ranges[name].low.ndim + 1),
                        f"{name}{suffix}") for name, grid in grids.items()}


def pair(name: str, scale: np.ndarray, zero: np.ndarray, axis: int | None, output: str,
         rank: int) -> Nodes:
    """A QuantizeLinear/DequantizeLinear pair; with an ``axis`` (or no axis and scales of the
    tensor's shape without the batch axis: one per cell), written as a division by the
    broadcast scales, a scale-1 pair and the multiplication back (the same codes: 6x faster
    in onnxruntime than a pair with an axis)."""
    if axis is None and scale.ndim == 0:
        return qdq(name, scale, zero, None, output)
    shape = [1, *scale.shape]
    if axis is not None:
        shape = [1] * rank
        shape[axis] = len(scale)
    nodes, constants = qdq(f"{name}_scaled", np.array(1, np.float32), zero.flat[0:1].reshape(()),
                           None, f"{name}_unit")
    return [helper.make_node("Div", [name, f"{name}_steps"], [f"{name}_scaled"]), *nodes,
            helper.make_node("Mul", [f"{name}_unit", f"{name}_steps"], [output])], [
        *constants, numpy_helper.from_array(scale.reshape(shape), f"{name}_steps")]


def rounded(model: onnx.ModelProto, grids: dict[str, Grid], ranges: dict[str, Ranges]) -> bytes:
    """``model`` with a QuantizeLinear/DequantizeLinear pair after each tensor of ``grids``."""
    return joined(model, static(grids, ranges, "_rounded")).SerializeToString()


def joined(model: onnx.ModelProto, chains: dict[str, Nodes]) -> onnx.ModelProto:
    return spliced(model, {name: nodes for name, (nodes, _) in chains.items()},
                   [constant for _, constants in chains.values() for constant in constants])


def per_row(stats: Ranges) -> Chain:
    """Rounding on one max-abs scale per row computed at run time (a row: along the
    contraction axis where a MatMul reads the tensor, else along the last axis)."""
    levels = LEVELS if stats.unsigned else LEVELS // 2
    axes = sorted(stats.contracted) or [-1]

    def body(name: str, output: str) -> Nodes:
        constants = [numpy_helper.from_array(np.array(value, np.float32), f"{name}_{key}")
                     for key, value in (("levels", levels), ("tiny", 1e-8),
                                        ("lowest", 0 if stats.unsigned else -levels - 1))]
        return [
            helper.make_node("Abs", [name], [f"{name}_abs"]),
            helper.make_node("ReduceMax", [f"{name}_abs"], [f"{name}_peak"], axes=axes),
            helper.make_node("Max", [f"{name}_peak", f"{name}_tiny"], [f"{name}_reach"]),
            helper.make_node("Div", [f"{name}_reach", f"{name}_levels"], [f"{name}_step"]),
            helper.make_node("Div", [name, f"{name}_step"], [f"{name}_ratio"]),
            helper.make_node("Round", [f"{name}_ratio"], [f"{name}_nearest"]),
            helper.make_node("Clip", [f"{name}_nearest", f"{name}_lowest", f"{name}_levels"],
                             [f"{name}_codes"]),
            helper.make_node("Mul", [f"{name}_codes", f"{name}_step"], [output])], constants
    return body


def dynamic(model: onnx.ModelProto, ranges: dict[str, Ranges]) -> bytes:
    """``model`` with every activation rounded on one max-abs scale per row at run time."""
    chains = {name: chain(name, stats, per_row(stats), f"{name}_rounded")
              for name, stats in ranges.items()}
    return joined(model, chains).SerializeToString()


def eight_bit_weights(model: onnx.ModelProto,
                      folded: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """``model`` with every MatMul's 2-D weight rounded to 8 bits, max-abs per output column.
    Where the MatMul's input has per-channel codes of steps ``folded[input]``, the weight is
    rounded with them folded in (diag(steps) W rounded, then divided back): smoothing at
    strength 1, the input then one scale per tensor in the smoothed basis."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    readers = {node.input[1]: node.input[0] for node in copy.graph.node
               if node.op_type == "MatMul"}
    for index, tensor in enumerate(copy.graph.initializer):
        values = numpy_helper.to_array(tensor).astype(np.float64)
        if tensor.name not in readers or values.ndim != 2:
            continue
        steps = (folded or {}).get(readers[tensor.name], np.ones(len(values)))[:, None]
        values *= steps
        scale = symmetric(values.min(axis=0), values.max(axis=0))[0]
        codes = np.clip(np.round(values / scale), -LEVELS // 2 - 1, LEVELS // 2)
        copy.graph.initializer[index].CopyFrom(
            numpy_helper.from_array((codes * scale / steps).astype(np.float32), tensor.name))
    return copy


def costs(model: onnx.ModelProto, grids: dict[str, Grid], ranges: dict[str, Ranges],
          feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """Each tensor's cost: the mean cosine on ``feeds`` with it alone rounded on its grid.
    One session: each pair is switched on by a boolean input (Where) of its own."""
    chains = static(grids, ranges, "_switched")
    for name, (nodes, _) in chains.items():
        nodes.append(helper.make_node("Where", [f"{name}_gate", f"{name}_switched", name],
                                      [f"{name}_rounded"]))
    gated = joined(model, chains)
    gated.graph.input.extend(helper.make_tensor_value_info(f"{name}_gate", TensorProto.BOOL, [])
                             for name in grids)
    session = cpu_session(gated.SerializeToString(), optimize=False)
    off = {f"{name}_gate": np.array(False) for name in grids}

    def pooled(switches: dict[str, np.ndarray]) -> np.ndarray:
        return mean_pooled(session.run(None, feeds | switches)[0], feeds["attention_mask"])

    reference = pooled(off)
    out = {}
    for number, name in enumerate(grids):
        if number % 20 == 0:
            print(f"  cost of tensor {number} of {len(grids)}", file=sys.stderr)
        out[name] = float(cosine(reference, pooled(off | {f"{name}_gate": np.array(True)})).mean())
    return out


def peak_cell(stats: Ranges) -> tuple[tuple[int, ...], float, float, float]:
    """Where the calibration peak |x| sits (cell index without the batch axis), the peak, and
    the largest |x| elsewhere on its channel (last axis) and elsewhere in its row (the same
    leading indices: its token, for a [batch, token, hidden] tensor)."""
    reach = np.maximum(-stats.low, stats.high)
    cell = np.unravel_index(int(reach.argmax()), reach.shape)
    rows = reach.reshape(-1, reach.shape[-1])
    row = int(np.ravel_multi_index(cell[:-1], reach.shape[:-1])) if reach.ndim > 1 else 0
    column, line = rows[:, cell[-1]].copy(), rows[row].copy()
    column[row], line[cell[-1]] = 0, 0
    return tuple(int(i) for i in cell), float(reach[cell]), float(column.max()), float(line.max())


def data(args: argparse.Namespace, folder: Path) -> tuple[onnx.ModelProto, dict, dict]:
    """The float model, the calibration feeds and the evaluation feeds."""
    if args.model:
        if not args.calib:
            raise SystemExit("--model needs --calib (minilm.py --save writes both)")
        calibration = dict(np.load(args.calib))
        count, length = calibration["input_ids"].shape
        tokenizer = load_tokenizer()
        path = args.model
    else:
        count, length, path = args.calibration, args.length, folder / "minilm.onnx"
        tokenizer = export(length, path)
        calibration = tokenize(tokenizer, texts(count), length)
    first = count + args.skip
    evaluation = tokenize(tokenizer, texts(first + args.evaluation)[first:], length)
    return onnx.load(path), calibration, evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=int, default=128)
    parser.add_argument("--evaluation", type=int, default=256)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--skip", type=int, default=0, help="evaluate on the texts after the "
                        "first SKIP evaluation texts (--skip 256: a second, held-out set)")
    parser.add_argument("--rank-texts", type=int, default=8,
                        help="calibration texts each tensor's cost is measured on")
    parser.add_argument("--model", type=Path, help="a saved export (minilm.py --save DIR)")
    parser.add_argument("--calib", type=Path, help="its calibration data (minilm.calib.npz)")
    args = parser.parse_args(argv)
    from machine import describe

    with tempfile.TemporaryDirectory() as folder:
        model, calibration, evaluation = data(args, Path(folder))
    print("calibrating", file=sys.stderr)
    ranges = calibrate(model, calibration)
    names = list(ranges)
    ranking = {k: v[:args.rank_texts] for k, v in calibration.items()}
    best = integer(False, positions(every=True))
    print("ranking the tensors: max-abs per tensor", file=sys.stderr)
    cost = costs(model, dict.fromkeys(names, per_tensor), ranges, ranking)
    print("ranking the tensors: the best integer-runnable static grid", file=sys.stderr)
    best_cost = costs(model, dict.fromkeys(names, best), ranges, ranking)
    grids: list[tuple[str, dict[str, Grid]]] = [(label, dict.fromkeys(names, grid)) for
                                                label, grid in GRIDS]
    grids.insert(8, (BEST, dict.fromkeys(names, best)))
    for kept in (1, 2, 4, 8):
        grids.append((f"max-abs per tensor, the {kept} costliest in float",
                      dict.fromkeys(sorted(names, key=cost.get)[kept:], per_tensor)))
    for kept in (1, 2, 4, 8):
        grids.append((f"(B), the {kept} costliest in float",
                      dict.fromkeys(sorted(names, key=best_cost.get)[kept:], best)))
    rows = [(label, lambda grid=grid: rounded(model, grid, ranges)) for label, grid in grids]
    rows.insert(10, ("per-token dynamic (one scale per row at run time; not static)",
                    lambda: dynamic(model, ranges)))
    folding = dict.fromkeys(names, integer(True))
    folded = {name: per_channel(stats)[0].ravel() for name, stats in ranges.items()
              if stats.channel in stats.contracted and stats.foldable}

    def smoothed(strength: float, weights: bool) -> bytes:
        factors = smoothing(model, ranges, strength)
        grids = {name: smoothed_rows(factors[name]) if name in factors else best
                 for name in names}
        return rounded(eight_bit_weights(model, factors) if weights else model, grids, ranges)

    rows += [
        ("weights alone 8-bit per output column, activations float",
         lambda: eight_bit_weights(model).SerializeToString()),
        ("(B) with the weights 8-bit per output column",
         lambda: rounded(eight_bit_weights(model), dict.fromkeys(names, best), ranges)),
        ("per channel but where an attention MatMul contracts it (smoothing at strength 1), "
         "the weights 8-bit per output column, rounded after folding",
         lambda: rounded(eight_bit_weights(model, folded), folding, ranges)),
        ("(S) smoothing at strength 0.5 folded into the float weights, the smoothed "
         "weight-MatMul inputs on one static scale per token position, (B) elsewhere",
         lambda: smoothed(0.5, weights=False)),
        ("(S) with the weights 8-bit per output column, rounded after folding",
         lambda: smoothed(0.5, weights=True)),
        ("(S) at strength 0.7, the weights 8-bit per output column, rounded after folding",
         lambda: smoothed(0.7, weights=True))]
    reference = embeddings(model.SerializeToString(), evaluation, optimize=False)
    print(f"all-MiniLM-L6-v2, float weights, {len(names)} activations at 8 bits, "
          f"{len(calibration['input_ids'])} calibration and {len(evaluation['input_ids'])} "
          f"evaluation texts (after skipping {args.skip}) of "
          f"{evaluation['input_ids'].shape[1]} tokens; target mean >= 0.995, min >= 0.98\n")
    print("| activations (8 bits) | mean cosine | min cosine |")
    print("|---|---|---|")
    for label, build in rows:
        print(f"row: {label}", file=sys.stderr)
        score = cosine(reference, embeddings(build(), evaluation, optimize=False))
        print(f"| {label} | {score.mean():.4f} | {score.min():.4f} |", flush=True)
    print(f"\nCostliest tensors under the best integer-runnable static grid (B): mean "
          f"cosine on {args.rank_texts} calibration texts with that tensor alone rounded; the "
          f"calibration peak |x|, its cell (no batch axis: [token, channel] or [head, row, "
          f"column]) and the largest |x| elsewhere on its channel and in its row\n")
    print("| tensor | grid | mean cosine alone | peak |x| at cell | elsewhere on its channel | "
          "elsewhere in its row |")
    print("|---|---|---|---|---|---|")
    for name in sorted(names, key=best_cost.get)[:10]:
        stats = ranges[name]
        axis = best(stats)[2]
        grid = ("per tensor" if axis is None else "per channel"
                if axis == stats.onnx_axis(stats.channel) else "per position")
        cell, peak, channel, position = peak_cell(stats)
        print(f"| `{name}` | {grid} | {best_cost[name]:.4f} | {peak:.1f} at {cell} | "
              f"{channel:.1f} | {position:.1f} |", flush=True)
    print("\nThe 8 costliest under max-abs per tensor (same measure): " + ", ".join(
        f"`{name}` {cost[name]:.4f}" for name in sorted(names, key=cost.get)[:8]))
    print("", *describe(), sep="\n")
    return 0


BEST = ("(B) (A) with every token position on a scale of its own where a MatMul contracts the "
        "channel (integer-runnable, weights unchanged)")
GRIDS: list[tuple[str, Grid]] = [
    ("max-abs per tensor", per_tensor),
    ("min/max per tensor (zero point)", zero_point),
    ("MSE-clipped per tensor", mse),
    ("99.99th percentile per tensor", percentile(99.99)),
    ("99.999th percentile per tensor", percentile(99.999)),
    ("max-abs per channel, every tensor (idealized)", per_channel),
    ("(A) per channel where no MatMul contracts the channel axis, per tensor elsewhere "
     "(integer-runnable, weights unchanged)", integer(False)),
    ("(A) with [CLS] (position 0) on a scale of its own where a MatMul contracts the channel",
     integer(False, positions(every=False))),
    ("per channel but where an attention MatMul contracts it (weight-MatMul inputs: scales "
     "folded into the float weights, smoothing at strength 1)", integer(True)),
]


if __name__ == "__main__":
    sys.exit(main())
