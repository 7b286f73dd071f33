"""Unary operators that compute in float as look-up tables of output codes, indexed by input
codes.

A compensated node runs in float between a dequantization of its input codes and a
quantization of its output; a node whose rule passes the scale on with real-valued parameters
(a HardSigmoid, scale-invariant with alpha -> alpha/s) runs in float on the codes themselves,
then its output is quantized. When its declaration says each output element is a function of
one input element (one tensor input, one element in its witness, no channel mixing) and its
other inputs are scalar parameters, those steps map each of the 2^n input codes to one output
code: the table is computed by *simulating those very steps* on every input code, so looking
codes up reproduces the plan's simulation exactly. Where the codes on either side hold one
scale per channel (a GELU's Erf after a smoothed MatMul's per-channel sum), each channel has
a table of its own: the steps simulated on every code of every channel at once, the tables
laid end to end and a code looked up at its channel's offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rules import is_elementwise_unary
from ..steps import NodeStep, ScaleStep

MAX_TABLE_BITS = 10  # at most 1024 entries
MAX_TABLE_ENTRIES = 2**20  # the tables of all channels: at most 1 MB of 8-bit codes a node


@dataclass(frozen=True)
class Table:
    """``output codes = values[input codes - low]``, the output materialised by ``output``."""

    source: str  # the plan tensor holding the input codes
    output: ScaleStep
    low: int
    values: np.ndarray  # the tables of the channels end to end, each over the input codes
    channels: tuple[int, ...] = ()  # the scales' broadcast shape (a table per element of it)

    def offsets(self) -> np.ndarray:
        """What a code adds to find its output code in :attr:`values`: its channel's table's
        start, less ``low``, shaped like the scales (one number for one table)."""
        count = self.values.size // max(int(np.prod(self.channels)), 1)
        starts = np.arange(int(np.prod(self.channels)), dtype=np.int64) * count
        return (starts - self.low).reshape(self.channels)


def unary_table(step: NodeStep, source: str, dequantize: ScaleStep | None,
                quantize: ScaleStep | None, code, constants: dict) -> tuple[Table | None, str]:
    """The table for ``step`` reading the codes ``code`` of plan tensor ``source``, through
    ``dequantize`` (back to float: a compensated node) or directly (None: a node on codes
    with real-valued parameters), its output read by ``quantize``; or None and why not."""
    if step.op is None:  # kept in float at the user's request (--float-op)
        return None, "no declaration to make a table of codes from"
    if not is_elementwise_unary(step.op):
        return None, "not element-wise unary by its declaration"
    if code is None or quantize is None or quantize.low is None:
        return None, "its input or output is not held as codes"
    if len(step.node.outputs) != 1:
        return None, "several outputs"
    channels = np.broadcast_shapes(*(np.shape(s.factor) for s in (dequantize, quantize)
                                     if s is not None))
    if sum(length > 1 for length in channels) > 1:
        return None, "scales along several axes"
    read = dequantize.dst if dequantize is not None else source
    count = int(code.high - code.low) + 1
    if count > 2**MAX_TABLE_BITS:
        return None, f"input codes wider than {MAX_TABLE_BITS} bits"
    if count * int(np.prod(channels)) > MAX_TABLE_ENTRIES:
        return None, f"tables of more than {MAX_TABLE_ENTRIES} codes, one per channel"
    env = {}
    for name in step.node.inputs:
        if name and name != read:
            value = step.constants.get(name, constants.get(name))
            if value is None or np.size(value) != 1:
                return None, "a parameter is not a scalar constant"
            env[name] = value
    codes = np.arange(code.low, code.high + 1, dtype=np.float32)
    # every code in every channel: (codes, *channels), the scales broadcasting along the rest
    env[source] = np.ascontiguousarray(np.broadcast_to(
        codes.reshape(count, *[1] * len(channels)), (count, *channels)))
    if dequantize is not None:
        dequantize.simulate(env)
    step.simulate(env)
    quantize.simulate(env)
    values = np.asarray(env[quantize.dst])
    if values.shape != (count, *channels):
        return None, "its kernel does not map each element alone"
    tables = values.reshape(count, -1).T.reshape(-1)  # channel by channel, each over the codes
    return Table(source, quantize, int(code.low), tables,
                 channels if np.prod(channels) > 1 else ()), ""
