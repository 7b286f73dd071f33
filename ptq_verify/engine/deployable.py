"""The written model checked where it will run: onnxruntime must load it and compute finite
outputs on the calibration data the float model computes finite ones on. A range near the
float32 maximum passes calibration (every float activation finite) yet can overflow once the
quantized arithmetic multiplies it by a scale or adds a rounding step; a file that computes inf
on the very data it was calibrated on is refused, not written with a note."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..graph import Graph, OperatorTable, holds_integers
from ..graph.ort_runner import condensed, ort_session
from ..progress import progress_bar
from .data import Feeds, batches, samples_in
from .float_run import SAMPLES, first_samples, joined, run_float
from .metrics import relative_error
from .parallel import in_background

REFERENCE_BATCH = 4
"""Samples per run of the user's model for the reference outputs: its session's memory grows
with the batch (all-MiniLM-L6-v2, 32 texts at once: the command line's peak 1.11 -> 1.21 GB),
and it is let go before the work."""


class UnloadableOutput(RuntimeError):
    """ptq-verify made a model onnxruntime refuses: a bug, not the user's input."""


class UnrunnableOutput(RuntimeError):
    """onnxruntime loads the quantized model but fails on calibration samples ``first`` to
    ``last`` (``batch``): a bug, unless the float model fails on them too (:func:`fails_on`),
    which the catalog's kernels, running the calibration instead, need not (an Attention
    whose mask onnxruntime's kernel refuses to broadcast)."""

    def __init__(self, reason: str, first: int, last: int, batch: Feeds) -> None:
        super().__init__(f"onnxruntime fails on the quantized model at calibration samples "
                         f"{first} to {last}: {reason}")
        self.first, self.last, self.batch = first, last, batch


def fails_on(model, batch: Feeds) -> str | None:
    """Why onnxruntime fails to run ``model`` (a path or a serialised model) on ``batch``,
    condensed to one line; None when it runs it."""
    session, refusal = ort_session(model)
    if session is None:
        return refusal
    try:
        session.run(None, dict(batch))
    except Exception as err:  # noqa: BLE001 - any failure is the answer
        return condensed(str(err))
    return None


def check_quantized(model: bytes, graph: Graph, sample: Feeds, target: str,
                    peaks: dict[str, float], progress: bool = False) -> dict[str, np.ndarray]:
    """Refuse the serialised quantized ``model`` (of float ``graph``) when onnxruntime cannot
    load it (:class:`UnloadableOutput`) or run it (:class:`UnrunnableOutput`) on the first
    calibration samples of ``sample``, or when a float output of it is inf or NaN there
    (UserError naming the output, the sample and the float model's peak there, from
    ``peaks``). Returns its outputs on those samples. ``progress``: a bar on stderr naming the
    stage, over the samples (BERT-base's integer file: 30 s that showed nothing after the
    last bar). The batches stay whole (SAMPLES): an output with no batch axis (a 0-d sum)
    would not join across smaller ones."""
    parts = list(_batches(graph, sample, SAMPLES))
    with progress_bar(total=sum(samples_in(b, graph) for b in parts if b),
                      desc="checking in onnxruntime", unit="sample", progress=progress) as bar:
        return _checked(model, graph, parts, target, peaks, bar)


def _checked(model: bytes, graph: Graph, parts: list[Feeds], target: str,
             peaks: dict[str, float], bar) -> dict[str, np.ndarray]:
    """:func:`check_quantized`'s work on the batches ``parts``, counting the samples run
    on ``bar``."""
    session, refusal = ort_session(model)
    if session is None:
        raise UnloadableOutput(f"onnxruntime cannot load the quantized model ({refusal}); "
                               f"nothing written to {target}")
    done, outputs_of = 0, []
    names = [o.name for o in session.get_outputs()]
    for batch in parts:
        try:
            outputs = dict(zip(names, session.run(names, batch)))
        except Exception as err:  # noqa: BLE001 - the caller tells the user's error from ours
            size = samples_in(batch, graph)
            raise UnrunnableOutput(condensed(str(err)), done, done + size - 1, batch) from None
        outputs_of.append(outputs)
        for name, value in outputs.items():
            value = np.asarray(value)
            if not np.issubdtype(value.dtype, np.floating) or np.isfinite(value).all():
                continue
            bad = ~np.isfinite(value.reshape(len(value), -1) if value.ndim else value[None])
            first = done + int(np.flatnonzero(bad.any(axis=1))[0])
            what = "NaN" if np.isnan(value).any() and not np.isinf(value).any() else "inf"
            peak = peaks.get(name)
            float_part = f" (at most {peak:.3g} in magnitude)" if peak is not None else ""
            raise UserError(
                f"{target}: the quantized model computes {what} at output {name!r} on "
                f"calibration sample {first}, where the float model's values are finite"
                f"{float_part}: its arithmetic overflows float32 on this data (ranges near "
                f"the float32 maximum, {np.finfo(np.float32).max:.3g}, do once rescaled or "
                "rounded); scale the model's inputs down; nothing written")
        done += samples_in(batch, graph)
        bar.update(samples_in(batch, graph))
    return _joined(graph, outputs_of)


def model_outputs(session, graph: Graph, data: Feeds) -> Future:
    """The outputs of the model in onnxruntime ``session`` on the first calibration
    samples of ``data`` (checked feeds), those the written model is checked on: the user's
    own file, so the fidelity note measures against the model as given, not against the
    graph the engine prepared from it (a preparation that changed what it computes, such as
    a fold of a node that is not affine, then shows there instead of passing unseen).
    Computed in the background (onnxruntime lets Python go while it runs), beside the
    caller's own work (the command line's equalization); the batches are cut here, so
    ``graph`` may change meanwhile."""
    return in_background(_outputs, session, graph, list(_batches(graph, data, REFERENCE_BATCH)))


def _outputs(session, graph: Graph, parts: list[Feeds]) -> dict[str, np.ndarray]:
    try:  # small batches: the session's peak
        return _joined(graph, [outputs for _, outputs in _runs(session, parts)])
    except Exception:  # noqa: BLE001 - data it refuses (a token id beyond the table) is
        return {}  # the calibration's to name, with the sample; the graph is measured then


def _batches(graph: Graph, feeds: Feeds, size: int):
    """The first calibration samples of ``feeds``, ``size`` samples a batch."""
    return batches(first_samples(feeds, graph), graph, size)


def _runs(session, parts):
    """(batch, the session's outputs on it) for each batch of ``parts``."""
    names = [o.name for o in session.get_outputs()]
    for batch in parts:
        yield batch, dict(zip(names, session.run(names, batch)))


def _joined(graph: Graph, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The outputs of ``parts`` (one dict a batch) joined along their batch axes."""
    return joined(graph, parts, list(parts[0])) if parts else {}


@dataclass(frozen=True)
class OutputFidelity:
    """An output's SQNR in dB as a whole, and the SQNR of each of its rows (the vectors along
    its last axis: a token's hidden state, a sample's logits; NaN for a row with no energy),
    for telling an output whose every row is off from one whose error sits in a few rows.

    ``zeros``: a model input laid out as the rows (its shape the output's without the last
    axis) that holds only 0 and 1, both present, and where it is 0: an attention mask's
    padded positions, whose rows a pooling over the mask drops. The split is a measurement to
    report, not a decision the engine takes."""

    db: float  # NaN where the float model's output is 0 on every sample
    rows: np.ndarray
    zeros: tuple[str, np.ndarray] | None = None
    # an output of integers or booleans (an ArgMax, a comparison): no SQNR, the fraction of
    # its values equal to the float model's
    agreement: float | None = None
    # the output has no element on those samples (an axis of length 0: a decoder's new
    # tokens or a KV cache's present at length 0), which had been worded as one the float
    # model gives 0 everywhere
    empty: bool = False
    # an output of integers whose rows' count depends on the data (a NonMaxSuppression's
    # selected indices): (its rows, the float model's rows, the share of the float model's
    # rows found among its own); it had been left out of the note with no word said
    rows_found: tuple[int, int, float] | None = None

    @property
    def median_row(self) -> float:
        """The median row's SQNR in dB (the whole output's for an output of no rows)."""
        return _median(self.rows, self.db)

    def rows_below(self, db: float) -> float:
        """The fraction of the rows with energy whose SQNR is under ``db``."""
        measured = self.rows[~np.isnan(self.rows)]
        return float(np.mean(measured < db)) if measured.size else 0.0

    def split_at_zeros(self) -> tuple[float, float, float] | None:
        """(the fraction of rows where ``zeros``' input is 0, their median SQNR, the other
        rows' median SQNR), over the rows with energy; None without such an input."""
        if self.zeros is None:
            return None
        at_zero = self.zeros[1] & ~np.isnan(self.rows)
        others = ~self.zeros[1] & ~np.isnan(self.rows)
        if not at_zero.any() or not others.any():
            return None
        return (float(at_zero.sum() / (at_zero.sum() + others.sum())),
                _median(self.rows[at_zero], self.db), _median(self.rows[others], self.db))


def _median(rows: np.ndarray, whole: float) -> float:
    measured = rows[~np.isnan(rows)]
    return float(np.median(measured)) if measured.size else whole


def output_fidelity(graph: Graph, table: OperatorTable, sample: Feeds,
                    quantized: dict[str, np.ndarray],
                    reference: dict[str, np.ndarray] | None = None
                    ) -> dict[str, OutputFidelity]:
    """The SQNR of each of the written model's float outputs (``quantized``, from
    :func:`check_quantized`) against the float graph's on the same calibration samples, where
    both are there; no gain is taken out, as a user measures it. A low figure says what
    calibration alone cannot: an output the codes cannot carry (rows that barely vary before
    a normalization; mixed precision keeps the costliest activations in float). The rows'
    figures tell whether the error sits in a few rows: a transformer's padded tokens, which
    the model computes and a pooling over the mask drops (all-MiniLM-L6-v2: 5.1 dB as a whole,
    its real tokens' rows 15.3 dB, its padded ones 3.5 dB). ``reference``: the float outputs
    on those samples where the caller has them (``Calibration.reference``), else the float
    graph runs for them, in the batches the written model ran in: so it does too where an
    output's shape differs from the given one's, an output that mixes the samples of its batch
    (CLIPModel's logits_per_image, one image's similarity to every text of the batch: (4, 4)
    blocks from the reference's small batches against the check's (16, 16) had dropped it
    from the note with no word said)."""
    names = list(quantized)
    feeds = first_samples(sample, graph)
    if reference is None or any(name not in reference or np.shape(reference[name])
                                != np.shape(quantized[name]) for name in names):
        reference = run_float(graph, table, feeds, names) if names else None
    if reference is None:
        return {}
    fidelity = {}
    for name in names:
        if name not in reference:
            continue
        if not np.issubdtype(np.asarray(quantized[name]).dtype, np.floating):
            ref, got = np.asarray(reference[name]), np.asarray(quantized[name])
            if ref.shape == got.shape and not ref.size:  # (no box selected, a (16, 0) mask)
                fidelity[name] = OutputFidelity(float("nan"), np.empty(0), empty=True)
            elif ref.shape == got.shape:
                fidelity[name] = OutputFidelity(float("nan"), np.empty(0),
                                                agreement=float(np.mean(ref == got)))
            elif ref.ndim == got.ndim >= 1 and ref.shape[1:] == got.shape[1:]:
                fidelity[name] = OutputFidelity(float("nan"), np.empty(0), rows_found=(
                    len(got), len(ref), _rows_found(ref, got)))
            continue
        ref = np.asarray(reference[name], dtype=np.float64)
        got = np.asarray(quantized[name], dtype=np.float64)
        if ref.shape == got.shape and not np.any(ref):  # nothing to measure against
            fidelity[name] = OutputFidelity(float("nan"), np.empty(0), empty=not ref.size)
        elif ref.shape == got.shape:
            error = relative_error(ref, got)
            fidelity[name] = OutputFidelity(
                float("inf") if error == 0 else -20.0 * np.log10(error), _row_db(ref, got),
                _zero_rows(feeds, ref.shape[:-1]) if ref.ndim >= 2 else None)
    return fidelity


def _rows_found(ref: np.ndarray, got: np.ndarray) -> float:
    """The share of ``ref``'s rows (along axis 0) that ``got`` holds too: where the count of
    rows depends on the data (the boxes a NonMaxSuppression selects), one row more or less
    shifts every later row, so comparing them place by place would say little. NaN where
    ``ref`` has no row (the float model selected none), as there is no share to give."""
    if not len(ref):
        return float("nan")
    held = {row.tobytes() for row in np.ascontiguousarray(got).reshape(len(got), -1)}
    rows = np.ascontiguousarray(ref).reshape(len(ref), -1)
    return float(np.mean([row.tobytes() in held for row in rows]))


def _row_db(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Each row's SQNR in dB (rows: the vectors along the last axis; inf where a row is exact,
    NaN where it has no energy)."""
    if ref.ndim == 0:
        return np.empty(0)
    energy = np.sum(ref * ref, axis=-1).ravel()
    noise = np.sum((ref - got) ** 2, axis=-1).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        db = np.where(noise > 0, 10.0 * np.log10(energy / np.maximum(noise, 1e-300)), np.inf)
    return np.where(energy > 0, db, np.nan)


def _zero_rows(feeds: Feeds, rows: tuple[int, ...]) -> tuple[str, np.ndarray] | None:
    """The first input shaped as ``rows`` holding only 0 and 1, both (an attention mask), and
    where it is 0, flattened as :func:`_row_db`'s rows."""
    for name, value in feeds.items():
        value = np.asarray(value)
        if value.shape == rows and holds_integers(value.dtype):
            zero = value.ravel() == 0
            if zero.any() and not zero.all() and np.isin(value, (0, 1)).all():
                return name, zero
    return None
