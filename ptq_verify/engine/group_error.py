"""What n-bit codes cost an equalization group's outputs on data: the measure by which
cross-layer equalization keeps, halves or drops each group's factors (:mod:`.equalize`).

Equalization trades error: evening out the channels of the layers' weights (one scale per
tensor wastes fewer levels) uneven-s the channels of the activations between them (one scale
per tensor for those too). Which side wins depends on the model and the weight granularity:
on EfficientNet-Lite1 whole factors gave 16.3 dB logit SQNR with per-channel weights where
none gave 15.9 and these measured strengths 16.6; on the digits MLP they cost 0.2-0.5 dB
(docs/benchmarks-real.md, docs/benchmarks.md). So the group's own
nodes are run on a calibration sample, in float and with their weights (one scale per output
channel, or per tensor) and the activations their layers 2 read (one scale per tensor,
unsigned when non-negative) rounded to nearest on n-bit grids, and the relative squared error
of the layers 2's outputs compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..graph import Graph, Node, OperatorTable, run_node
from ..graph.ort_runner import NodeSessions
from .metrics import fake_quantized, sum_of_squares


@dataclass(frozen=True)
class GroupRun:
    """A group's nodes in graph order, the weights they hold (initializer name -> the axis
    of its output channels, None for one scale per tensor), the activations its layers 2
    read, and the tensors whose error counts (the layers 2's outputs)."""

    nodes: tuple[Node, ...]
    weights: Mapping[str, int | None]
    read: frozenset[str]
    outputs: tuple[str, ...]

    def external(self, graph: Graph) -> list[str]:
        """The tensors its nodes read that neither they nor the initializers hold."""
        made = {name for node in self.nodes for name in node.outputs}
        return list(dict.fromkeys(name for node in self.nodes for name in node.inputs
                                  if name and name not in made
                                  and name not in graph.initializers))

    def outputs_of(self, graph: Graph, table: OperatorTable, inputs: Mapping[str, np.ndarray],
                   bits: int | None = None, per_channel: bool = True,
                   sessions: NodeSessions | None = None) -> list[np.ndarray]:
        """The layers 2's outputs on ``inputs``: in float, or with ``bits``-bit codes; its
        nodes in onnxruntime where ``sessions`` runs them, else in the catalog's kernels."""
        constants: Mapping[str, np.ndarray] = graph.initializers
        if bits is not None:
            levels = 2 ** (bits - 1) - 1
            constants = dict(constants)
            for name, axis in self.weights.items():
                constants[name] = _rounded_weight(constants[name], axis if per_channel
                                                  else None, levels)
        env = dict(inputs)
        for node in self.nodes:
            values = [None if not name else env[name] if name in env else constants[name]
                      for name in node.inputs]
            results = None if sessions is None else sessions.run(node, values)
            if results is None:
                results = run_node(node, table, values, graph)
            for name, value in zip(node.outputs, results):
                env[name] = (_rounded_activation(value, bits) if bits is not None
                             and name in self.read else value)
        return [env[name] for name in self.outputs]

    def error(self, graph: Graph, table: OperatorTable, inputs: Mapping[str, np.ndarray],
              reference: list[np.ndarray], energies: list[float], bits: int,
              per_channel: bool, sessions: NodeSessions | None = None) -> float:
        """Sum over the layers 2's outputs of ||quantized - float||^2 / ||float||^2, given
        the float outputs ``reference`` and their ``energies`` (:func:`.metrics.squared_norms`):
        the search measures each group at every strength against the same ones."""
        total = 0.0
        for exact, energy, rounded in zip(reference, energies, self.outputs_of(
                graph, table, inputs, bits, per_channel, sessions)):
            # (a copy in the difference's type: sum_of_squares writes over it)
            difference = sum_of_squares(np.array(rounded, np.result_type(rounded, exact)),
                                        exact)
            total += difference / energy if energy > 0 else 0.0
        return total


def _rounded_weight(weight: np.ndarray, axis: int | None, levels: int) -> np.ndarray:
    magnitude = np.abs(weight)
    if axis is None:
        reach = magnitude.max()
    else:
        reach = magnitude.max(axis=tuple(a for a in range(weight.ndim) if a != axis),
                              keepdims=True)
    return fake_quantized(weight, reach, levels)


def _rounded_activation(value: np.ndarray, bits: int) -> np.ndarray:
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating) or not value.size:
        return value
    unsigned = value.min() >= 0
    return fake_quantized(value, np.abs(value).max(),
                          2**bits - 1 if unsigned else 2 ** (bits - 1) - 1)
