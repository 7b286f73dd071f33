"""Run a graph in float with the catalog's ONNX kernels, batched, keeping only what is needed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from ..errors import UserError
from .model import Graph, Node
from .operators import OperatorTable

Observer = Callable[[str, np.ndarray], None]


def run_node(node: Node, table: OperatorTable, inputs: list, graph: Graph | None = None) -> list:
    """Run one node; return its output arrays in order (a UserError names a failing node)."""
    op = table.require(node, graph)
    try:
        # IEEE results are the model's own semantics (log(0) = -inf in T5's position buckets,
        # cast of -inf): onnxruntime computes them silently, and so do we
        with np.errstate(all="ignore"):
            result = op.run_onnx(inputs, node.attrs)
    except (NotImplementedError, ValueError, TypeError, IndexError, KeyError) as err:
        where = f"{graph.source}: " if graph is not None else ""
        raise UserError(f"{where}{node.label}: cannot run it ({err})") from None
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(r) for r in results]


def run_graph(
    graph: Graph,
    feeds: Mapping[str, np.ndarray],
    table: OperatorTable,
    *,
    want: Iterable[str] | None = None,
    observe: Observer | None = None,
) -> dict[str, np.ndarray]:
    """Execute ``graph`` on ``feeds``; return the ``want`` tensors (default: graph outputs).

    ``observe(name, array)`` sees every tensor a node computes (calibration uses it). Tensors
    are freed after their last use, so memory stays at the width of the graph.
    """
    wanted = set(graph.output_names if want is None else want)
    last_use: dict[str, int] = {}
    for position, node in enumerate(graph.nodes):
        for name in node.inputs:
            last_use[name] = position
    env: dict[str, np.ndarray] = dict(graph.initializers)
    env.update(feeds)
    for position, node in enumerate(graph.nodes):
        inputs = [env[name] if name else None for name in node.inputs]
        outputs = run_node(node, graph=graph, table=table, inputs=inputs)
        for name, value in zip(node.outputs, outputs):
            if name:
                env[name] = value
                if observe is not None:
                    observe(name, value)
        for name in node.inputs:
            if name and last_use.get(name) == position and name not in wanted:
                if name not in graph.initializers:
                    env.pop(name, None)
    missing = wanted - env.keys()
    if missing:
        raise UserError(f"{graph.source}: tensors {sorted(missing)} are never computed")
    return {name: env[name] for name in wanted}
