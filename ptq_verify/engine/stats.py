"""Per-tensor calibration statistics, kept in a form every clipping rule can reuse.

A :class:`TensorStats` holds the extremes and a histogram of |x| whose range doubles (merging
bin pairs) whenever a larger value arrives, so one pass over the calibration set serves
max-abs, percentile and MSE-optimal clipping at any bit width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BINS = 2048
# Per-sample extremes kept on each side of a tensor (the least per-sample minima, the largest
# per-sample maxima): enough order statistics for the tail's scale to average over several
# spacings (:meth:`TensorStats.unseen_extremes`), few enough to stay a few numbers a tensor.
SAMPLE_EXTREMES = 8
# A range lopsided around 0 takes 2^n codes over itself (quantize's lopsided codes) only where
# their step is this much finer than the signed codes' reach / levels: a span (both sides, the
# short one with its room) of at most 2 / LOPSIDED_GAIN times the reach.
LOPSIDED_GAIN = 1.25
# So a short side beyond this fraction of the long one never takes them, whatever its room:
# no per-sample extremes are kept for such a range (two passes over the values saved).
LOPSIDED_SHORT_SIDE = 2 / LOPSIDED_GAIN - 1


@dataclass
class TensorStats:
    """Running statistics of one tensor over the calibration set."""

    count: int = 0
    minimum: float = np.inf
    maximum: float = -np.inf
    min_abs: float = np.inf
    top: float = 0.0  # the histogram covers |x| in [0, top]
    # None when no clipping rule of the run reads it (max-abs needs only the extremes)
    histogram: np.ndarray | None = field(
        default_factory=lambda: np.zeros(BINS, dtype=np.int64))
    # max |x| per channel along axis 1 and along the last axis (per-channel activation
    # scales); None once a batch of another rank or channel count arrived
    channel_peaks: dict[int, np.ndarray] | None = field(default_factory=dict)
    # when asked for (``TensorStats(extremes=())``): the largest and least value at each
    # position of axis 1 and the last, over the other axes (the tensor's rank >= 2), from
    # which its statistics after a per-channel factor follow (engine/smoothed_calibration.py);
    # None once the channel peaks are
    extremes: tuple[np.ndarray, ...] | None = None
    rank: int | None = None  # the tensor's rank, where the extremes are kept
    # whether min_abs follows the least |x| where the values straddle 0 (one more pass over
    # them: all-MiniLM-L6-v2's calibration, 0.3 of its 3.3 s of statistics); without it,
    # min_abs is 0 there, a bound. calibrate follows it for the tensors a node reads as a
    # divisor, its one reader (quantize keeps a divisor near 0 in float)
    least_abs: bool = True
    # the SAMPLE_EXTREMES least per-sample minima (ascending) and largest per-sample maxima
    # (descending) over ``samples`` samples; None once a batch came without its sample count
    # (or the statistics were derived: :meth:`divided`), when where unseen samples may reach
    # is not known
    sample_lows: np.ndarray | None = field(default_factory=lambda: np.empty(0))
    sample_highs: np.ndarray | None = field(default_factory=lambda: np.empty(0))
    samples: int = 0

    @property
    def max_abs(self) -> float:
        return max(abs(self.minimum), abs(self.maximum)) if self.count else 0.0

    def update(self, values: np.ndarray,
               peaks: tuple[np.ndarray, np.ndarray] | None = None,
               samples: int | None = None) -> None:
        """Add ``values``; a ValueError, with nothing added, when one is infinite or NaN.
        ``peaks``: :meth:`channel_extremes` of ``values`` (float), where the caller took them
        already (a masked sum's, whose extremes say whether a static operand saturates it).
        ``samples``: how many samples ``values`` holds along its first axis (their extremes
        are then kept, :attr:`sample_lows`); None, or a first axis of another length: not
        known per sample, and no later batch's are kept either."""
        raw = np.asarray(values)
        if not np.issubdtype(raw.dtype, np.floating):
            raw, peaks = raw.astype(np.float64), None
        if raw.size == 0:
            return
        if peaks is None:
            peaks = self.channel_extremes(raw)
        if peaks is None:
            low, high = float(raw.min()), float(raw.max())  # NaN if any value is NaN
        else:  # the extremes of the per-channel extremes: no third pass over the values
            low, high = float(peaks[1].min()), float(peaks[0].max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError("infinite or NaN values")
        self.count += raw.size
        self.minimum, self.maximum = min(self.minimum, low), max(self.maximum, high)
        self._sample_extremes(raw, samples)
        if peaks is not None:
            self._channels(raw.ndim, *peaks)
        elif raw.ndim < 2:
            self.channel_peaks = self.extremes = None
        if self.histogram is None:
            # the least |x| from the extremes, unless the values straddle 0
            self.min_abs = min(self.min_abs, low if low >= 0 else -high if high <= 0
                               else _least_abs(raw) if self.least_abs else 0.0)
            return
        # in the tensor's own float type (no float64 copies), but float16 at least as
        # float32: BINS / top overflows float16 once the values stay below 0.03
        flat = np.abs(raw.ravel()).astype(np.promote_types(raw.dtype, np.float32),
                                          copy=False)
        self.min_abs = min(self.min_abs, float(flat.min()))
        peak = float(flat.max())
        if peak > self.top:
            self._grow(peak)
        if self.top > 0:
            index = np.minimum((flat * (BINS / self.top)).astype(np.int64), BINS - 1)
            self.histogram += np.bincount(index, minlength=BINS)
        else:
            self.histogram[0] += flat.size

    def _sample_extremes(self, raw: np.ndarray, samples: int | None) -> None:
        """Merge the extremes of each of ``raw``'s ``samples`` rows into the kept ones."""
        if self.sample_lows is None or self.sample_highs is None:
            return
        short, long = sorted((-self.minimum, self.maximum))
        if (not samples or raw.ndim == 0 or raw.shape[0] != samples
                or not 0 < short <= LOPSIDED_SHORT_SIDE * long):
            # (a range that turns lopsided only in a later batch takes the doubled short
            # side then, :meth:`unseen_extremes` being None, as any range without them)
            self.sample_lows = self.sample_highs = None
            return
        rows = raw.reshape(samples, -1)
        lows = np.concatenate([self.sample_lows, rows.min(axis=1).astype(np.float64)])
        highs = np.concatenate([self.sample_highs, rows.max(axis=1).astype(np.float64)])
        self.sample_lows = np.sort(lows)[:SAMPLE_EXTREMES]
        self.sample_highs = -np.sort(-highs)[:SAMPLE_EXTREMES]
        self.samples += samples

    def unseen_extremes(self) -> tuple[float, float] | None:
        """(least, largest) value an unseen sample may reach, each side's calibrated extreme
        moved out by its tail's scale, estimated from the kept per-sample extremes; None
        where they are not known or fewer than two samples set them.

        Why this estimate: a per-sample extreme beyond a high threshold is, for the light
        tails activations have (the Gumbel domain), about exponentially distributed; the
        excesses of the k most extreme samples over the k-th (k = SAMPLE_EXTREMES, or every
        sample where fewer) are then draws of that exponential, and their mean is its
        scale beta (the additive form of Hill's estimator). The extreme of a set N times
        the calibration's lies about beta * ln N beyond the calibrated one: one beta is room
        for a deployment set e times the calibration set. Extremes the samples agree on (a
        GELU's minimum, -0.17 on every sample) get no room; scattered ones get room in
        proportion; and with few samples the estimate averages fewer spacings but reads the
        same scatter, instead of one fixed doubling that every sample count gets alike. Where
        the gap between the two most extreme samples is wider than that mean (one sample far
        beyond the rest: a tail heavier than exponential, which the mean of k excesses
        dilutes), the room is that gap: Robson and Whitlock's estimate of a distribution's
        end, 2 x(1) - x(2) (the mean alone and the wider of the two measured alike, to
        0.1 dB, on the zoo's held-out rows, EfficientNet-Lite1 and the digits examples:
        docs/benchmarks-real.md)."""
        if (self.sample_lows is None or self.sample_highs is None
                or min(self.sample_lows.size, self.sample_highs.size) < 2):
            return None
        lows, highs = self.sample_lows, self.sample_highs
        # each side's mean excess over its k-th extreme, or the gap between its two most
        # extreme samples where that is wider (<= 0 on the low side)
        below = min(float(np.mean(lows[:-1] - lows[-1])), float(lows[0] - lows[1]))
        above = max(float(np.mean(highs[:-1] - highs[-1])), float(highs[0] - highs[1]))
        return float(lows[0]) + below, float(highs[0]) + above

    def channel_extremes(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(max, min) of ``raw`` (not empty) over every axis but 1 and the last (one pass
        each), from which the per-channel peaks along both and the tensor's extremes follow;
        None when no channel peaks are kept or the tensor has no channel axis (rank < 2)."""
        if self.channel_peaks is None or raw.ndim < 2:
            return None
        return _reduced(raw, np.maximum), _reduced(raw, np.minimum)

    def _channels(self, ndim: int, high: np.ndarray, low: np.ndarray) -> None:
        """Update the per-channel peaks from ``high`` and ``low`` (:meth:`channel_extremes`,
        axes 1 and ``ndim - 1`` left), and the extremes when they are kept."""
        if self.extremes is not None:
            if self.extremes and (self.extremes[0].shape != high.shape or self.rank != ndim):
                self.channel_peaks = self.extremes = None
                return
            self.rank = ndim
            self.extremes = (high, low) if not self.extremes else (
                np.maximum(self.extremes[0], high), np.minimum(self.extremes[1], low))
        magnitude = np.maximum(high, -low)  # each position's largest |x|: one array, where
        # the peaks of high and low along each axis took four reductions and two arrays more
        for axis in {1, ndim - 1}:
            rest = () if ndim == 2 else (1 if axis == 1 else 0,)
            peak = magnitude.max(axis=rest).astype(np.float64)
            known = self.channel_peaks.get(axis)
            if known is not None and known.shape != peak.shape:
                self.channel_peaks = self.extremes = None
                return
            self.channel_peaks[axis] = peak if known is None else np.maximum(known, peak)

    def divided(self, scale: np.ndarray, axis: int) -> TensorStats | None:
        """The statistics of this tensor with its channels along ``axis`` divided by
        ``scale`` (all > 0), from the kept :attr:`extremes`: exact but for the rounding of
        the divisions, which a float run of the divided tensor has too (its least |x| is a
        bound, min |x| / max(scale): only divisors read it, and such a tensor feeds weight
        layers). None when no extremes were kept, a histogram was (it cannot be divided), or
        ``axis`` (negative counts from the last) is neither 1 nor the last."""
        if not self.extremes or self.histogram is not None:
            return None
        axis %= self.rank
        if axis not in (1, self.rank - 1):
            return None
        shape = (-1,) if self.rank == 2 else (-1, 1) if axis == 1 else (1, -1)
        factor = np.asarray(scale, dtype=np.float64).reshape(shape)
        high, low = (np.asarray(m, dtype=np.float64) / factor for m in self.extremes)
        result = TensorStats(count=self.count, minimum=float(low.min()),
                             maximum=float(high.max()),
                             min_abs=self.min_abs / float(np.max(scale)), histogram=None,
                             extremes=(), rank=self.rank, least_abs=self.least_abs,
                             sample_lows=None, sample_highs=None)
        result._channels(self.rank, high, low)
        return result

    def _grow(self, peak: float) -> None:
        if self.top == 0:
            self.top = peak
            return
        while self.top < peak:
            merged = self.histogram.reshape(-1, 2).sum(axis=1)
            self.histogram = np.concatenate([merged, np.zeros(BINS // 2, dtype=np.int64)])
            self.top *= 2

    def edges(self) -> np.ndarray:
        """Upper edge of each histogram bin."""
        return np.arange(1, BINS + 1) * (self.top / BINS)

    def _histogram(self) -> np.ndarray:
        if self.histogram is None:
            raise ValueError("these statistics were gathered without a histogram "
                             "(calibrate with the clipping method and bits that need one)")
        return self.histogram

    def percentile(self, percent: float) -> float:
        """The |x| below which ``percent`` % of the values fall (bin upper edge)."""
        histogram = self._histogram()
        if not self.count or self.top == 0:
            return 0.0
        cumulative = np.cumsum(histogram) / self.count
        index = int(np.searchsorted(cumulative, percent / 100.0))
        return float(min(self.edges()[min(index, BINS - 1)], self.max_abs))

    def mse_clip(self, levels: int) -> float:
        """The clipping value minimising the expected squared error of rounding to
        ``levels`` positive steps plus clipping, estimated from the histogram."""
        histogram = self._histogram()
        if not self.count or self.top == 0:
            return 0.0
        centers = (np.arange(BINS) + 0.5) * (self.top / BINS)
        weights = histogram.astype(np.float64)
        candidates = np.linspace(0.05, 1.0, 96) * self.max_abs
        best, best_error = self.max_abs, np.inf
        for clip in candidates:
            step = clip / levels
            inside = centers <= clip
            error = np.sum(weights[inside]) * step * step / 12.0
            error += np.sum(weights[~inside] * (centers[~inside] - clip) ** 2)
            if error < best_error:
                best, best_error = float(clip), error
        return best


def _reduced(raw: np.ndarray, extreme: np.ufunc) -> np.ndarray:
    """``extreme.reduce`` of ``raw`` (rank >= 2) over every axis but 1 and the last: over the
    batch axis first, then over the middle ones of what is left. The same values as one
    reduction over all of them (an extreme is exact in any order), in a fraction of its time:
    numpy reduces several axes at once far slower (a (64, 32, 16, 16) batch of feature maps:
    0.75 ms, in two steps 0.07 ms; a (4, 12, 64, 64) attention: 0.073 -> 0.034 ms)."""
    first = extreme.reduce(raw, axis=0)
    middle = tuple(range(1, first.ndim - 1))
    return extreme.reduce(first, axis=middle) if middle else first


_CHUNK = 1 << 17


def _least_abs(values: np.ndarray) -> float:
    """min |x|, a chunk at a time through one buffer (an |x| copy of a whole transformer
    activation cost more than the reductions around it)."""
    flat = values.reshape(-1)
    buffer = np.empty(min(_CHUNK, flat.size), flat.dtype)
    least = np.inf
    for start in range(0, flat.size, _CHUNK):
        part = buffer[:min(_CHUNK, flat.size - start)]
        np.abs(flat[start:start + _CHUNK], out=part)
        least = min(least, float(part.min()))
    return least
