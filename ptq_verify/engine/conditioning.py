"""Activations whose n-bit codes a float node amplifies: kept in float where that pays.

A node that runs in float on its input's codes computes f(Q(x)) for f(x). For most functions
that costs what the codes' step costs (a Sigmoid on 8-bit codes of [-8, 8]: about 43 dB of
local SQNR), but a function that turns on the scale of the step does not: Sin and Cos of a
diffusion timestep times its frequencies (0 to 1000 radians) on 8-bit codes 3.9 radians apart
are noise (a DDPM-style UNet with a float timestep input: 16.2 dB at its output, 33.0 with
the timestep in float; onnxruntime's quantize_static 5.2). No range chosen for the codes helps:
the step that covers the range is too coarse for the function.

The screen (:func:`ill_conditioned`) is local and runs no model: f on points spread evenly over
the input's calibrated range against f on their codes, for each element-wise node in float
that reads one activation's n-bit codes; it flags those below half the bits' SQNR
(3.01 dB a bit: the rounding's error amplified by 2^(n/2) or more; a healthy node is near
6.02 dB a bit). It only names candidates. Which activation to keep in float is measured on
the whole model (:func:`.sensitivity.costliest`, among the flagged input and the activations
it is computed from: the timestep itself, not its product with the frequencies, whose codes
in float would still be the timestep's 8-bit codes times them), and one is kept only where
the quantized model's output SQNR gains RESCUE_GAIN_DB: a tensor in float costs a deployment
a dequantization and float kernels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..graph import Graph, Node, OperatorTable
from .calibrate import Calibration
from .metrics import sqnr_db
from .probe import run_kernel
from .quantized import Code, QuantizedModel
from .rules import is_elementwise, is_elementwise_unary
from .sensitivity import Sensitivity, costliest

# Points over the calibrated range the screen evaluates each flagged function at
SCREEN_POINTS = 4096
# A screened node is flagged below this many dB of local SQNR per bit of its input's codes
FLAG_DB_PER_BIT = 3.01
# Activations upstream of a flagged input tried as the one to keep in float, nearest first
ANCESTORS = 8
# The least gain of the quantized model's output SQNR that keeps an activation in float
RESCUE_GAIN_DB = 3.0


@dataclass(frozen=True)
class IllConditioned:
    """A node in float whose output, computed from ``tensor``'s codes, has ``sqnr`` dB of
    local SQNR over the tensor's calibrated range."""

    node: str
    tensor: str
    sqnr: float

    def describe(self) -> str:
        return f"{self.node} ({self.tensor!r} on codes: {self.sqnr:.1f} dB)"


def ill_conditioned(graph: Graph, calibration: Calibration, model: QuantizedModel,
                    table: OperatorTable) -> list[IllConditioned]:
    """The element-wise nodes in float whose input's rounding leaves their output below
    ``FLAG_DB_PER_BIT * bits`` dB of local SQNR, worst first."""
    nodes = {node.name: node for node in graph.nodes}
    producers = graph.producers()
    flagged = []
    for record in model.records:
        node = nodes.get(record.name)
        if record.kind != "compensated" or node is None:
            continue
        chain = _rounded_chain(graph, producers, model, table, node)
        if chain is None:
            continue
        local = _local_sqnr(graph, calibration, *chain)
        if local is not None and local < FLAG_DB_PER_BIT * model.bits:
            flagged.append(IllConditioned(node.name, chain[1], local))
    return sorted(flagged, key=lambda item: item.sqnr)


def _activation_input(graph: Graph, node: Node) -> str | None:
    """The node's one input that is not a constant, or None."""
    tensors = [name for name in node.inputs if name and name not in graph.initializers]
    return tensors[0] if len(tensors) == 1 else None


def _rounded_chain(graph: Graph, producers, model: QuantizedModel, table: OperatorTable,
                   node: Node) -> tuple[list, str, Code] | None:
    """The element-wise functions from the n-bit codes ``node`` reads, through, to its output:
    the node alone where it reads an activation's codes; the node after the one computing its
    input where that input is held wide from another activation's codes (the exact integer
    product of a timestep's codes and a constant table of frequencies); None otherwise."""
    op = table.find(node, graph)
    tensor = _activation_input(graph, node)
    if not is_elementwise_unary(op) or tensor is None or tensor not in model.codes:
        return None
    chain = [(node, op)]
    if model.codes[tensor].wide:
        producer = producers.get(tensor)
        inner = None if producer is None else table.find(producer, graph)
        tensor = None if producer is None else _activation_input(graph, producer)
        if inner is None or not is_elementwise(inner) or tensor not in model.codes:
            return None
        chain.insert(0, (producer, inner))
    code = model.codes[tensor]
    return (None if code.wide or np.ndim(code.scale) else (chain, tensor, code))


def _local_sqnr(graph: Graph, calibration: Calibration, chain: list, tensor: str,
                code: Code) -> float | None:
    """The SQNR of ``chain``'s output on ``tensor``'s codes against it on the values, over
    points spread evenly across the tensor's calibrated range (along its first axis, the
    others of length 1: a constant operand broadcasts over them); None where it cannot be
    measured (no range, a kernel that does not run here)."""
    stats = calibration.stats.get(tensor)
    if (stats is None or not np.isfinite([stats.minimum, stats.maximum]).all()
            or stats.maximum <= stats.minimum):
        return None
    rank = len(graph.shape_of(tensor) or (0,))
    values = np.linspace(stats.minimum, stats.maximum, SCREEN_POINTS).reshape(
        (SCREEN_POINTS,) + (1,) * (rank - 1))
    scale = float(code.scale)
    rounded = np.clip(np.round(values * scale), code.low, code.high) / scale
    exact, coded = (_run_chain(graph, chain, tensor, points) for points in (values, rounded))
    if exact is None or coded is None or exact.shape != coded.shape:
        return None
    finite = np.isfinite(exact)
    if not finite.any():
        return None
    if not np.isfinite(coded[finite]).all():
        return -np.inf  # (a Log reading codes rounded to 0)
    return sqnr_db(exact[finite], coded[finite])


def _run_chain(graph: Graph, chain: list, tensor: str, points: np.ndarray
               ) -> np.ndarray | None:
    """``chain``'s kernels in turn on ``points`` for ``tensor``, the graph's constants for the
    nodes' other inputs; None where one does not run."""
    for node, op in chain:
        inputs = [points if name == tensor else graph.initializers.get(name) if name else None
                  for name in node.inputs]
        with np.errstate(all="ignore"):  # (a Log of codes rounded to 0 is measured, not said)
            points = run_kernel(op, node, inputs, {})
        if points is None:
            return None
        tensor = node.outputs[0]
    return points


def ancestors(graph: Graph, tensors: Iterable[str], limit: int = ANCESTORS) -> list[str]:
    """Each of ``tensors`` and the activations it is computed from, nearest first, at most
    ``limit`` a tensor: the candidates for keeping it exact."""
    producers = graph.producers()
    found: dict[str, None] = {}
    for start in tensors:
        queue = [start]  # breadth first: the nearest sources first
        for name in queue:
            if len(queue) > limit:
                break
            node = producers.get(name)
            queue.extend(source for source in ([] if node is None else node.inputs)
                         if source and source not in graph.initializers and source not in queue)
        found.update(dict.fromkeys(queue[:limit]))
    return list(found)


@dataclass(frozen=True)
class Rescue:
    """What the screen flagged and the activations kept in float for it (none where no
    candidate raised the model's output SQNR by RESCUE_GAIN_DB, or none could be measured:
    ``unmeasured`` says why)."""

    flagged: list[IllConditioned]
    kept: list[Sensitivity]
    unmeasured: str = ""


def rescue(graph: Graph, calibration: Calibration, model: QuantizedModel,
           table: OperatorTable, kept: Iterable[str] = (), per_channel: bool = True,
           progress: bool = False, wide_sums: bool = True, symmetric: bool = False) -> Rescue:
    """The activations to keep in float besides ``kept`` so that no flagged node (:func:`
    ill_conditioned`) reads its input as noise: chosen among each flagged input and the
    activations it is computed from by their measured cost (:func:`.sensitivity.costliest`),
    one a flagged input at most."""
    flagged = ill_conditioned(graph, calibration, model, table)
    if not flagged:
        return Rescue([], [])
    inputs = list(dict.fromkeys(item.tensor for item in flagged))
    try:
        chosen = costliest(graph, calibration, model.bits, len(inputs), table,
                           per_channel=per_channel, progress=progress, kept=kept,
                           wide_sums=wide_sums, symmetric=symmetric,
                           among=set(ancestors(graph, inputs)), min_gain=RESCUE_GAIN_DB)
    except UserError as error:  # (no calibration sample, a float model that does not run)
        return Rescue(flagged, [], str(error))
    return Rescue(flagged, chosen)
