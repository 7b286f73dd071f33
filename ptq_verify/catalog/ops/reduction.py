"""Reductions, witnessed by one output element reducing three input elements.

The axes are a static input (slot 1 in current opsets, an attribute before), never scaled.
ArgMax/ArgMin output int64 indices; their witness is the index picked among three elements.
TopK selects along its axis: its values are witnessed by their first element (the largest or
least of three), its int64 indices by ArgMax's or ArgMin's witness (``index_outputs``).

ReduceProd's degree is the number of elements it multiplies: its witness carries the number
past the first two as the power n**2 of its last element (``x0*x1*x2**(n**2)``), so no degree of
one node is claimed for another (the witness ``x0*x1*x2`` had been proved homogeneous of
degree 3, which a differential trial against onnxruntime contradicted on every reduction of
more or fewer than 3 elements).

The reduced axes are the node's: they may include the channel axis, so every reduction is
declared ``mixes_channels`` (a per-channel scale is not claimed to pass through any of them).
"""

from __future__ import annotations

import numpy as np

from ..kernels import reduction
from ..operator import Operator

_THREE = "x0 x1 x2"


def _reduce(name: str, expr: str, kernel, onnx_kernel, doc: str) -> Operator:
    return Operator(name, _THREE, expr, kernel=kernel, onnx_type=name,
                    onnx_inputs=("x", None), onnx_kernel=onnx_kernel, mixes_channels=True,
                    doc=doc)


def _stacked(combine):
    return lambda x0, x1, x2: combine(np.stack(np.broadcast_arrays(x0, x1, x2)), axis=0)


def _arg(name: str, expr: str, pick, onnx_kernel, doc: str) -> Operator:
    return Operator(
        name, _THREE, expr, kernel=_stacked(pick), onnx_type=name, onnx_inputs=("x",),
        onnx_kernel=onnx_kernel, onnx_match={"select_last_index": 0}, mixes_channels=True,
        doc=doc,
    )


def _top(name: str, expr: str, pick, largest: int, indices: str, doc: str) -> Operator:
    """ONNX TopK: its values' first element is the witness; its second output (int64
    positions, ties in index order as ArgMax and ArgMin break them) is ``indices``'s. An
    unsorted TopK (sorted = 0) has its elements in an order the runtime chooses: no witness
    is its first element, so it has no declaration."""
    return Operator(name, _THREE, expr, kernel=_stacked(pick), onnx_type="TopK",
                    onnx_inputs=("x", None), onnx_kernel=reduction.top_k,
                    onnx_match={"largest": largest, "sorted": 1}, index_outputs={1: indices},
                    mixes_channels=True, doc=doc)


OPERATORS = (
    _reduce("ReduceMean", "(x0 + x1 + x2)/3", _stacked(np.mean), reduction.reduce_mean,
            "Mean over the reduced axes."),
    _reduce("ReduceSum", "x0 + x1 + x2", _stacked(np.sum), reduction.reduce_sum,
            "Sum over the reduced axes."),
    _reduce("ReduceMax", "max(x0, x1, x2)", _stacked(np.max), reduction.reduce_max,
            "Maximum over the reduced axes."),
    _reduce("ReduceMin", "min(x0, x1, x2)", _stacked(np.min), reduction.reduce_min,
            "Minimum over the reduced axes."),
    Operator("ReduceProd", _THREE, "x0*x1*x2**(n**2)", params={"n": 1},
             onnx_type="ReduceProd",
             onnx_inputs=("x", None), onnx_kernel=reduction.reduce_prod, mixes_channels=True,
             doc="Product over the reduced axes. Its degree is the number of elements it "
             "multiplies, which the node's shapes set, so no witness of a fixed arity speaks "
             "for every node: the last element's power n**2 (n no input or attribute; 1 at "
             "its sample value) stands for the number of elements past the first two."),
    _reduce("ReduceL1", "abs(x0) + abs(x1) + abs(x2)",
            _stacked(lambda v, axis: np.abs(v).sum(axis)),
            reduction.reduce_l1, "Sum of absolute values."),
    _reduce("ReduceL2", "sqrt(x0**2 + x1**2 + x2**2)",
            _stacked(lambda v, axis: np.sqrt((v * v).sum(axis))), reduction.reduce_l2,
            "Euclidean norm: square root of the sum of squares."),
    _reduce("ReduceSumSquare", "x0**2 + x1**2 + x2**2",
            _stacked(lambda v, axis: (v * v).sum(axis)), reduction.reduce_sum_square,
            "Sum of squares."),
    _reduce("ReduceLogSum", "log(x0 + x1 + x2)", _stacked(lambda v, axis: np.log(v.sum(axis))),
            reduction.reduce_log_sum, "Logarithm of the sum (defined for a positive sum)."),
    _reduce("ReduceLogSumExp", "log(exp(x0) + exp(x1) + exp(x2))",
            _stacked(lambda v, axis: np.logaddexp.reduce(v, axis=axis)),
            reduction.reduce_log_sum_exp, "log(sum(exp(x))), a smooth maximum."),
    _arg("ArgMax", "where(x1 > x0, where(x2 > x1, 2, 1), where(x2 > x0, 2, 0))", np.argmax,
         reduction.arg_max,
         "Index of the first maximum (select_last_index = 0), an int64 output."),
    _arg("ArgMin", "where(x1 < x0, where(x2 < x1, 2, 1), where(x2 < x0, 2, 0))", np.argmin,
         reduction.arg_min,
         "Index of the first minimum (select_last_index = 0), an int64 output."),
    _top("TopK", "max(x0, x1, x2)", np.max, 1, "ArgMax",
         "The k largest elements along an axis, sorted (largest = 1, sorted = 1); witness: "
         "the first of them. Its second output, their int64 indices, is ArgMax's witness."),
    _top("TopKSmallest", "min(x0, x1, x2)", np.min, 0, "ArgMin",
         "The k smallest elements along an axis, sorted (ONNX TopK with largest = 0, sorted "
         "= 1); witness: the first of them. Its indices are ArgMin's witness."),
)
