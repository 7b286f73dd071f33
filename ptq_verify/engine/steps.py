"""The quantized model's steps: the plan's arithmetic, in order. Each step simulates itself
in numpy; the emitters in :mod:`.lower` write the same plan in each output format.

All simulated tensors are float32. Codes are integer-valued float32: products and sums of codes
stay exact while every partial sum is below 2^24; a requantization rounds the exact product of
codes and multiplier, and element-wise steps are correctly rounded in numpy and onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..catalog.operator import Operator
from ..graph import Node

STATIC_LIMIT = 2**30
"""Largest |value| a static operand of an integer sum is held at in int32: an attention mask
at -1e6 or finfo.min times an accumulator's scale lies far beyond int32 (Funnel's -1e6: 3.6e11,
whose cast wrapped around and turned masked keys into the largest scores: 5.5 dB). Such a
position saturates the sum anyway (engine/saturation.py): the activation part of an aligned
sum stays below ALIGNED_SUM_LIMIT (2^22), so a sum with an operand at -2^30 still lies
beyond the output's range, and within int32. A static operand that reaches beyond it where
the sum does not saturate is data, not a mask: the plan runs that sum in float
(quantize's ``_static_beyond_int32``)."""


DIVIDED_SUM_LIMIT = 2**22
"""Bound on |sum| of a mean's codes that a requantization multiplies back
(``ScaleStep.divided_by``): the mean computed in float32 is within 2^-23 of the sum over N
relative (onnxruntime's kernel may multiply by a rounded 1/N), so N times it rounds back to
the sum exactly while the sum stays below 2^22."""


@dataclass
class ScaleStep:
    """dst = clip(round(round?(src) * factor)): quantize, requantize or dequantize.

    A rounding step rounds the exact product (computed in float64, where it fits for
    |src| < 2^29), so that an integer fixed-point multiplier reproduces it to the last code;
    a dequantization (no rounding) is a float32 product.

    ``pre_round`` rounds an exact-integer accumulator first: an identity on its values that
    keeps onnxruntime from fusing the multiplier into the producing Conv/MatMul weights.
    ``divided_by`` > 1: ``src`` holds integers divided by that count (a mean of codes, as a
    GlobalAveragePool's), which the step multiplies back and rounds to those integers first,
    exactly (the builder keeps them below 2^22), and ``factor`` applies to them: the integer
    format computes the same sum without the division (a ReduceSum) and requantizes it with
    the same factor, to the last code.
    A step with a clip range materialises codes (their scale is in the plan's ``codes``); one
    without re-expresses the same value at another scale (dequantize, align, rescale).
    """

    src: str
    dst: str
    factor: np.ndarray  # float32, scalar or broadcastable along one axis
    round: bool = True
    low: float | None = None
    high: float | None = None
    pre_round: bool = False
    scale: float | None = None  # the scale of dst's integers, where dst holds integers
    # where no container's range clips dst: the largest |value| it holds (a static operand
    # of an integer sum, STATIC_LIMIT), as int32 holds it in the integer format
    limit: float | None = None
    divided_by: int = 1

    def simulate(self, env: dict[str, np.ndarray]) -> None:
        x = np.asarray(env[self.src], dtype=np.float32)
        if self.divided_by != 1:
            x = np.round(x.astype(np.float64) * self.divided_by)
        if self.pre_round:
            x = np.round(x)
        if self.round:  # the exact product, rounded once (float64 holds it: 24 + 29 bits)
            x = np.round(x.astype(np.float64) * np.asarray(self.factor, np.float64))
        elif not is_one(self.factor):
            x = x * self.factor
        if self.low is not None:
            x = np.clip(x, np.float32(self.low), np.float32(self.high))
        if self.limit is not None:
            x = np.clip(x, -self.limit, self.limit)
        env[self.dst] = x.astype(np.float32, copy=False)


def is_one(factor: np.ndarray) -> bool:
    return factor.size == 1 and float(factor.reshape(-1)[0]) == 1.0


@dataclass(frozen=True)
class IntegerParam:
    """A parameter held as integers: ``values = round(real * scale)``.

    ``kind`` is ``"weight"`` (n-bit, signed, symmetric), ``"bias"`` (at the accumulator
    scale, 32-bit) or ``"codes"`` (a table a selection reads activation codes from, an
    embedding: n-bit at its output's scale and range); ``axis`` is the axis a per-channel
    ``scale`` runs along (None: one scale).
    """

    kind: str
    scale: np.ndarray | float
    axis: int | None = None


@dataclass
class NodeStep:
    """A node of the source graph run on codes (or on floats for a compensated node), with its
    parameters replaced by ``constants`` (integer weights, rescaled parameters).

    ``source`` is the node as the float model has it; ``params`` says which of ``constants``
    are integers (weights, biases) and at what scale. The other constants are parameters
    rescaled for the code domain, which a format working on real values reads from ``source``.
    ``op`` None: a node kept in float at the user's request (``--float-op``) or one on
    integers only (:meth:`~ptq_verify.graph.OperatorTable.on_integers_only`), which no
    declaration describes; it runs in onnxruntime at the model's ``opsets``.
    """

    node: Node
    op: Operator | None
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    source: Node | None = None
    params: dict[str, IntegerParam] = field(default_factory=dict)
    opsets: dict[str, int] = field(default_factory=dict)

    def simulate(self, env: dict[str, np.ndarray]) -> None:
        inputs = [self._value(env, name) if name else None for name in self.node.inputs]
        if self.op is None:
            from ..graph.ort_runner import run_alone

            result = run_alone(self.node, inputs, opsets=self.opsets)
        else:
            with np.errstate(all="ignore"):  # IEEE results are the model's own (run_node)
                result = self.op.run_onnx(inputs, self.node.kernel_attrs)
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        for name, value in zip(self.node.outputs, results):
            if name:
                value = np.asarray(value)
                if np.issubdtype(value.dtype, np.floating):
                    value = value.astype(np.float32, copy=False)
                env[name] = value

    def _value(self, env: dict[str, np.ndarray], name: str) -> np.ndarray:
        return self.constants[name] if name in self.constants else env[name]


Step = ScaleStep | NodeStep
