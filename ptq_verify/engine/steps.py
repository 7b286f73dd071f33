"""The quantized model's steps. Each one both simulates itself in numpy and writes itself as
ONNX nodes, from the same numbers, so that onnxruntime computes what the simulation computes.

All tensors are float32. Codes are integer-valued float32: products and sums of codes stay
exact while every partial sum is below 2^24, and element-wise float32 steps (one multiply, a
round, a clip) are correctly rounded in both numpy and onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..catalog.operator import Operator
from ..graph import Node
from .export import Emitter


@dataclass
class ScaleStep:
    """dst = clip(round(round?(src) * factor)): quantize, requantize or dequantize.

    ``pre_round`` rounds an exact-integer accumulator first: an identity on its values that
    keeps onnxruntime from fusing the multiplier into the producing Conv/MatMul weights.
    """

    src: str
    dst: str
    factor: np.ndarray  # float32, scalar or broadcastable along one axis
    round: bool = True
    low: float | None = None
    high: float | None = None
    pre_round: bool = False

    def simulate(self, env: dict[str, np.ndarray]) -> None:
        x = np.asarray(env[self.src], dtype=np.float32)
        if self.pre_round:
            x = np.round(x)
        if not _is_one(self.factor):
            with np.errstate(over="ignore"):  # a saturating mask goes to +-inf; clip ends it
                x = x * self.factor
        if self.round:
            x = np.round(x)
        if self.low is not None:
            x = np.clip(x, np.float32(self.low), np.float32(self.high))
        env[self.dst] = x.astype(np.float32, copy=False)

    def emit(self, out: Emitter) -> None:
        name = self.src
        if self.pre_round:
            name = out.round(name)
        if not _is_one(self.factor):
            name = out.multiply(name, self.factor)
        if self.round:
            name = out.round(name)
        if self.low is not None:
            name = out.clip(name, self.low, self.high)
        out.rename(name, self.dst)


def _is_one(factor: np.ndarray) -> bool:
    return factor.size == 1 and float(factor.reshape(-1)[0]) == 1.0


@dataclass
class NodeStep:
    """A node of the source graph run on codes (or on floats for a compensated node), with its
    parameters replaced by ``constants`` (integer weights, rescaled parameters)."""

    node: Node
    op: Operator
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def simulate(self, env: dict[str, np.ndarray]) -> None:
        inputs = [self._value(env, name) if name else None for name in self.node.inputs]
        result = self.op.run_onnx(inputs, self.node.attrs)
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        for name, value in zip(self.node.outputs, results):
            if name:
                value = np.asarray(value)
                if np.issubdtype(value.dtype, np.floating):
                    value = value.astype(np.float32, copy=False)
                env[name] = value

    def _value(self, env: dict[str, np.ndarray], name: str) -> np.ndarray:
        return self.constants[name] if name in self.constants else env[name]

    def emit(self, out: Emitter) -> None:
        for name, value in self.constants.items():
            out.initializer(name, value)
        out.node(self.node)


Step = ScaleStep | NodeStep
