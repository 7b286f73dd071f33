"""Run a graph in float with the catalog's ONNX kernels, batched, keeping only what is needed."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from .model import Graph, Node
from .operators import OperatorTable

if TYPE_CHECKING:
    from ..catalog.operator import Operator

Observer = Callable[[str, np.ndarray], None]


class IndexBeyondTable(UserError):
    """A node read a static table (a constant operand) at an index the data carries beyond
    its size: a token id outside an embedding's rows. The data is wrong, not the node; the
    message names the tensor, the id, its sample and the table, and :meth:`in_samples` counts
    samples from the start of the data rather than of the batch."""

    _NUMPY = re.compile(r"index (-?\d+) is out of bounds for axis (\d+) with size (\d+)")

    def __init__(self, source: str, node: Node, tensor: str, data_input: bool, index: int,
                 sample: int, table: str, axis: int, size: int) -> None:
        self.source, self.node, self.tensor, self.data_input = source, node, tensor, data_input
        self.index, self.sample, self.table, self.size = index, sample, table, size
        self.axis = axis
        super().__init__(self.in_samples(0).args[0])

    def in_samples(self, offset: int) -> UserError:
        """The error with the sample counted from ``offset`` (the samples before the batch)."""
        what = (f"calibration input {self.tensor!r}" if self.data_input
                else f"tensor {self.tensor!r} (computed from the calibration data)")
        entries = "rows" if self.axis == 0 else f"entries along axis {self.axis}"
        return UserError(
            f"{self.source}: {what} holds id {self.index} in sample {self.sample + offset}, "
            f"beyond the {self.size} {entries} of node {self.node.name!r}'s table {self.table!r} "
            f"({self.node.op_type}): ids must lie in [{-self.size}, {self.size - 1}]")

    @classmethod
    def find(cls, node: Node, inputs: list, graph: Graph | None,
             err: Exception) -> IndexBeyondTable | None:
        """The error when ``err`` is an index out of range of a constant operand of
        ``node`` that one of its integer operands from the data carries; else None."""
        match = cls._NUMPY.search(str(err)) if isinstance(err, IndexError) else None
        if match is None or graph is None:
            return None
        index, axis, size = int(match[1]), int(match[2]), int(match[3])
        tables = [name for name, value in zip(node.inputs, inputs)
                  if name in graph.initializers and size in np.shape(value)]
        for name, value in zip(node.inputs, inputs):
            value = np.asarray(value) if value is not None else None
            if (not tables or name in graph.initializers or value is None or value.ndim == 0
                    or not np.issubdtype(value.dtype, np.integer)):
                continue
            holding = np.flatnonzero((value == index).reshape(len(value), -1).any(axis=1))
            if holding.size:
                return cls(graph.source, node, name, name in graph.input_names, index,
                           int(holding[0]), tables[0], axis, size)
        return None


class KernelGap(UserError):
    """A node whose catalog kernel does not implement what the node asks (a Resize mode, an
    antialias): the model may still run in onnxruntime, so a step that only probes it on the
    kernels (equalization) can be skipped, where a step that needs it cannot."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}{detail}")
        self.detail = detail  # the node and why, without the file

    @property
    def skipped(self) -> str:
        """Why a step that runs the model on the kernels did not run, for its summary."""
        return f"it runs the model on the catalog's kernels, and {self.detail}"


def run_node(node: Node, table: OperatorTable, inputs: list, graph: Graph | None = None) -> list:
    """Run one node; return its output arrays in order (a UserError names a failing node). A
    node the user keeps in float, or one on integers only
    (:meth:`OperatorTable.runs_as_exported`), runs in onnxruntime, whose kernel is the one the
    written model runs."""
    if table.runs_as_exported(node, graph):
        from .ort_runner import run_alone

        return run_alone(node, inputs, graph)
    op = table.require(node, graph)
    try:
        # IEEE results are the model's own semantics (log(0) = -inf in T5's position buckets,
        # cast of -inf): onnxruntime computes them silently, and so do we
        with np.errstate(all="ignore"):
            result = op.run_onnx(inputs, node.kernel_attrs)
    except (NotImplementedError, ValueError, TypeError, IndexError, KeyError,
            ArithmeticError) as err:
        where = f"{graph.source}: " if graph is not None else ""
        beyond = IndexBeyondTable.find(node, inputs, graph, err)
        if beyond is not None:
            raise beyond from None
        if isinstance(err, NotImplementedError):
            raise KernelGap(where, f"{node.label}: cannot run it here ({err})") from None
        raise UserError(f"{where}{node.label}: cannot run it ({_reason(node, err)}"
                        f"{_beyond_float(op, err)})") from None
    except MemoryError as err:  # an activation a node multiplies past memory (a Tile by 10**5)
        where = f"{graph.source}: " if graph is not None else ""
        raise UserError(f"{where}{node.label}: cannot run it on these inputs, its output "
                        f"does not fit in memory ({err})") from None
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(r) for r in results]


def _beyond_float(op: Operator, err: Exception) -> str:
    """For an overflow, the declaration's sample values beyond float64's range, which its
    kernel computes with (a hostile-input hunt's 1e400 had been 'integer division result too
    large for a float' alone); '' otherwise."""
    if not isinstance(err, OverflowError):
        return ""
    from ..rules.literals import decimal

    huge = [f"{name} = {decimal(value)}" for name, value in op.params.items()
            if abs(value) > np.finfo(np.float64).max]
    return (f"; its declaration's {', '.join(huge)} lies beyond float64's range, which its "
            "kernel computes in" if huge else "")


def _reason(node: Node, err: Exception) -> str:
    """Why a kernel failed, in words: a KeyError's text is the bare key (a Split before opset
    18 had failed with "cannot run it ('num_outputs')"), so it is said to be an attribute the
    node lacks where it is one, and the key of something else otherwise."""
    if not isinstance(err, KeyError):
        return str(err)
    key = err.args[0] if err.args else None
    if isinstance(key, str) and key not in node.attrs:
        return f"its kernel needs attribute {key!r}, which the node lacks"
    return f"its kernel has no entry for {key!r}"


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
