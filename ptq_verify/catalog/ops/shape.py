"""Operators that move, copy or select elements, and Shape.

Most are witnessed by ``x``: every output element is some input element. Five select between
sources, and are witnessed by ``where(k > 0, first, second)`` with a *selector parameter* ``k``
standing for the output element's position (which side of the seam, inside or outside the
padding, what the static condition says). The selector is never rescaled: the sign of a position
does not change with the scale. Because one rule must hold at every position, the checker sees
both sources in one formula:

- Concat: an output element is an element of a or of b, so both must share the output's scale
  (aligned). A linear blend ``c*a + (1-c)*b`` would give the same rule but admit
  counterexamples at c = 1/2 that no Concat produces; the selector keeps them realisable.
- Pad: an output element is an element of x or the pad constant v, so v must scale like x
  (param_rescale v -> s*v).
- Where: the condition is a static input, X and Y play the roles of a and b.
- ScatterND, ScatterElements (reduction none): the indices are static, data and updates play
  the roles of a and b. With reduction add, max or min an output element combines the data
  element with the updates the indices send there, however many: witnessed, as ReduceSum and
  ReduceMax are, by ``a + b0 + b1`` and ``max(a, b0, b1)`` (a graph network's aggregation
  over each node's neighbours); reduction mul has no declaration (its degree is the number of
  updates an element takes).

Pad in reflect, edge and wrap modes and nearest Resize copy input elements (witness ``x``);
linear Resize blends neighbours with static weights (witness ``c*x0 + (1 - c)*x1``). Each is
its own declaration, told apart by the node's ``mode`` (onnx_match); a Resize in
``tf_crop_and_resize`` coordinates has none (it writes a constant where it extrapolates).

Layout changes (Reshape, Transpose, Squeeze, ...) move the channel axis or mix elements of
several channels into one axis, so they are declared ``mixes_channels``: a per-channel scale
does not pass through them unchanged.
"""

from __future__ import annotations

import numpy as np

from ..kernels import resize, shape
from ..operator import Operator

_INTEGER_TYPES = (2, 3, 4, 5, 6, 7, 12, 13)  # onnx.TensorProto UINT8 ... UINT64
_BOOL_TYPE = 9
_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_FLOAT8_TYPES = (17, 18, 19, 20)  # FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ


# The coordinate transformations under which every output element is an input element or a
# blend of them; tf_crop_and_resize writes ``extrapolation_value`` (a constant, not scaled)
# where a coordinate falls outside the input, so a node of it has no declaration.
_COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                "asymmetric")


def _select(first, second, k):
    return np.where(k > 0, first, second)


def _copy(name: str, onnx_kernel, static_slots: int, doc: str, mixes: bool = True,
          onnx_match: dict | None = None, outputs: int | None = 1,
          form_hint: str = "") -> Operator:
    return Operator(
        name, "x", "x", kernel=lambda x: x, onnx_type=name,
        onnx_inputs=("x", *[None] * static_slots), onnx_kernel=onnx_kernel,
        mixes_channels=mixes, doc=doc, onnx_match=onnx_match or {}, onnx_outputs=outputs,
        form_hint=form_hint,
    )


def _layout_only(name: str, n: int, onnx_kernel, mixes: bool | None, doc: str) -> Operator:
    """An op whose output depends on the input's layout, not its values (its shape, its
    size, a tensor of that shape), witnessed by a constant n that no scaling changes."""
    return Operator(
        name, "x", "n", params={"n": n}, kernel=lambda x, n: np.zeros(np.shape(x)) + n,
        onnx_type=name, onnx_kernel=onnx_kernel, mixes_channels=mixes, doc=doc,
    )


def _pad_copy(mode: str, what: str) -> Operator:
    """Pad in a mode that fills with input elements: every output element is one of x's."""
    return Operator(
        f"Pad{mode.capitalize()}", "x", "x", kernel=lambda x: x, onnx_type="Pad",
        onnx_inputs=("x", None, None, None), onnx_kernel=shape.pad, onnx_match={"mode": mode},
        mixes_channels=True, doc=f"Padding in {mode} mode: the border is {what}.",
    )


OPERATORS = (
    Operator(
        "Concat", "a, b", "where(k > 0, a, b)", params={"k": 1},
        kernel=lambda a, b, k: _select(a, b, k), onnx_type="Concat", onnx_inputs=("a", "b"),
        onnx_variadic=True, onnx_kernel=shape.concat, mixes_channels=True,
        doc="Joins tensors along an axis (variadic). Witness: an output element is a's or b's, "
        "chosen by the selector k, the element's position (see the module docstring).",
    ),
    Operator(
        "Pad", "x", "where(k > 0, x, v)", params={"k": 1, "v": "0.5"},
        kernel=lambda x, k, v: _select(x, v, k), onnx_type="Pad",
        onnx_inputs=("x", None, "v", None), onnx_attrs={"value": "v"},
        onnx_input_defaults={2: 0}, onnx_kernel=shape.pad,
        onnx_match={"mode": "constant"}, mixes_channels=True,
        doc="Constant padding: an output element is an input element (k > 0) or the pad "
        "constant v (ONNX input constant_value), which must then scale like x.",
    ),
    Operator(
        "Where", "a, b", "where(cond > 0, a, b)", params={"cond": 1},
        kernel=lambda a, b, cond: _select(a, b, cond), onnx_type="Where",
        onnx_inputs=(None, "a", "b"), onnx_kernel=shape.where,
        doc="X where the static condition holds, else Y; the selector cond stands for it.",
    ),
    *(Operator(
        name, "a, b", "where(k > 0, a, b)", params={"k": 1},
        kernel=lambda a, b, k: _select(a, b, k), onnx_type=name, onnx_inputs=("a", None, "b"),
        onnx_kernel=kernel, onnx_match={"reduction": "none"}, mixes_channels=True,
        doc=f"A copy of data (a) with {what} replaced by updates (b) at static indices "
        "(reduction none); the selector k stands for whether an element was replaced.",
    ) for name, kernel, what in (("ScatterND", shape.scatter_nd, "slices"),
                                 ("ScatterElements", shape.scatter_elements, "elements"))),
    *(Operator(
        f"{name}{reduction.capitalize()}", "a, b0 b1", expr, kernel=combine,
        onnx_type=name, onnx_inputs=("a", None, "b"), onnx_kernel=kernel,
        onnx_match={"reduction": reduction}, mixes_channels=True,
        doc=f"A copy of data (a) with the {what} static indices name combined with updates "
        f"(b) by reduction {reduction}: an element takes every update sent to it (the "
        "witness: two; a graph network's aggregation over each node's neighbours).",
    ) for name, kernel, what in (("ScatterND", shape.scatter_nd, "slices"),
                                 ("ScatterElements", shape.scatter_elements, "elements"))
      for reduction, expr, combine in (
          ("add", "a + b0 + b1", lambda a, b0, b1: a + b0 + b1),
          ("max", "max(a, b0, b1)", lambda a, b0, b1: np.maximum(np.maximum(a, b0), b1)),
          ("min", "min(a, b0, b1)", lambda a, b0, b1: np.minimum(np.minimum(a, b0), b1)))),
    *(_pad_copy(mode, doc) for mode, doc in (
        ("reflect", "the input mirrored at its border, the border element not repeated"),
        ("edge", "copies of the border element"),
        ("wrap", "the input repeated from its other end"),
    )),
    _copy("Resize", resize.resize, 3,
          "Nearest-neighbour resizing (mode nearest, the default): every output element is "
          "the input element its coordinate rounds to.",
          onnx_match={"mode": "nearest", "coordinate_transformation_mode": _COORDINATES}),
    Operator(
        "ResizeLinear", "x0 x1", "c*x0 + (1 - c)*x1", params={"c": "1/4"},
        kernel=lambda x0, x1, c: c * x0 + (1 - c) * x1, onnx_type="Resize",
        onnx_inputs=("x", None, None, None), onnx_kernel=resize.resize,
        onnx_match={"mode": "linear", "coordinate_transformation_mode": _COORDINATES},
        mixes_channels=True,
        doc="(Bi)linear resizing: per axis, an output element blends two neighbours with "
        "weights c and 1 - c fixed by its position (the witness; in n axes, a product of such "
        "blends). The weights are static, so they are never rescaled.",
    ),
    Operator(
        "ResizeCubic", "x0 x1 x2 x3", "c0*x0 + c1*x1 + c2*x2 + (1 - c0 - c1 - c2)*x3",
        params={"c0": "-27/256", "c1": "225/256", "c2": "67/256"},
        kernel=lambda x0, x1, x2, x3, c0, c1, c2: (c0 * x0 + c1 * x1 + c2 * x2
                                                   + (1 - c0 - c1 - c2) * x3),
        onnx_type="Resize", onnx_inputs=("x", None, None, None), onnx_kernel=resize.resize,
        onnx_match={"mode": "cubic", "coordinate_transformation_mode": _COORDINATES},
        mixes_channels=True,
        doc="Bicubic resizing: per axis, an output element blends four neighbours with Keys' "
        "cubic weights fixed by its position, which sum to 1 (the witness; a = -3/4 a quarter "
        "past a sample gives c0..c2 = -27/256, 225/256, 67/256; in n axes, a product of such "
        "blends). The weights are static, so they are never rescaled.",
    ),
    _copy("Reshape", shape.reshape, 1, "New shape, same elements (shape input static)."),
    _copy("Flatten", shape.flatten, 0, "To 2-D at an axis, same elements."),
    _copy("Transpose", shape.transpose, 0, "Permuted axes, same elements."),
    _copy("Squeeze", shape.squeeze, 1, "Size-1 axes removed (axes static)."),
    _copy("Unsqueeze", shape.unsqueeze, 1, "Size-1 axes inserted (axes static)."),
    _copy("Expand", shape.expand, 1, "Broadcast to a static shape: copies of elements."),
    _copy("Tile", shape.tile, 1, "Repeated copies (repeats static)."),
    _copy("Slice", shape.slice_, 4, "A strided sub-tensor (starts, ends, axes, steps static)."),
    _copy("Gather", shape.gather, 1,
          "Elements picked by static indices (e.g. an embedding lookup by token ids)."),
    _copy("DepthToSpace", shape.depth_to_space, 0, "Channels rearranged into spatial blocks."),
    _copy("SpaceToDepth", shape.space_to_depth, 0, "Spatial blocks rearranged into channels."),
    _copy("GatherElements", shape.gather_elements, 1,
          "Elements picked one by one by a static index tensor along an axis."),
    _copy("GatherND", shape.gather_nd, 1, "Slices picked by static multi-indices."),
    Operator(
        "Col2Im", "x0 x1", "x0 + x1", kernel=lambda x0, x1: x0 + x1, onnx_type="Col2Im",
        onnx_inputs=("x", None, None), onnx_kernel=shape.col2im, mixes_channels=True,
        doc="Blocks summed back into an image (torch's fold): an output element is the sum of "
        "the block elements that cover it (the witness: two; a copy where blocks do not "
        "overlap, 0 where none covers it). Image and block shapes are static.",
    ),
    # training_mode (opset 12 on) absent or a constant false: a true one drops random
    # elements at every run (a model exported in training mode), no function to quantize
    _copy("Dropout", shape.dropout, 2, "Inference-mode Dropout: the identity.", mixes=False,
          onnx_match={2: (None, False)},
          form_hint="a true one is a model exported in training mode: export it after "
          "model.eval()"),
    Operator(
        "CastLike", "x", "x", kernel=lambda x: x, onnx_type="CastLike",
        onnx_inputs=("x", None), onnx_kernel=shape.cast_like,
        onnx_input_types={1: _FLOAT_TYPES + _FLOAT8_TYPES},
        doc="Cast to the element type of a second tensor, a float type: the identity up to "
        "the target's rounding. Told apart by the target's type, as Cast by its ``to``: "
        "CastLikeToInteger and CastLikeToBool (a node whose target's type the graph does not "
        "tell has no declaration; one to an integer target had been said to pass a scale "
        "through).",
    ),
    Operator(
        "CastLikeToInteger", "x", "where(x >= 0, floor(x), ceil(x))", kernel=lambda x: np.trunc(x),
        onnx_type="CastLike", onnx_inputs=("x", None), onnx_kernel=shape.cast_like,
        onnx_input_types={1: _INTEGER_TYPES},
        doc="Cast to the element type of a second tensor, an integer type: truncation toward "
        "zero, as CastToInteger (exports cast shape arithmetic so).",
    ),
    Operator(
        "CastLikeToBool", "x", "where(x != 0, 1, 0)", kernel=lambda x: np.where(x != 0, 1.0, 0.0),
        onnx_type="CastLike", onnx_inputs=("x", None), onnx_kernel=shape.cast_like,
        onnx_input_types={1: (_BOOL_TYPE,)},
        doc="Cast to the element type of a second tensor, bool: whether x is non-zero, as "
        "CastToBool.",
    ),
    Operator(
        "Cast", "x", "x", kernel=lambda x: x, onnx_type="Cast", onnx_kernel=shape.cast,
        onnx_match={"to": _FLOAT_TYPES},
        doc="Cast to a float type: the identity up to the target's rounding.",
    ),
    Operator(
        "CastToInteger", "x", "where(x >= 0, floor(x), ceil(x))", kernel=lambda x: np.trunc(x),
        onnx_type="Cast", onnx_kernel=shape.cast, onnx_match={"to": _INTEGER_TYPES},
        doc="Cast to an integer type: truncation toward zero (the identity on integer "
        "inputs, as in shape arithmetic).",
    ),
    Operator(
        "CastToBool", "x", "where(x != 0, 1, 0)", kernel=lambda x: np.where(x != 0, 1.0, 0.0),
        onnx_type="Cast", onnx_kernel=shape.cast, onnx_match={"to": _BOOL_TYPE},
        doc="Cast to bool: whether x is non-zero (attention masks).",
    ),
    Operator(
        "CumSum", "x0 x1", "x0 + x1", kernel=lambda x0, x1: x0 + x1, onnx_type="CumSum",
        onnx_inputs=("x", None), onnx_kernel=shape.cum_sum, mixes_channels=True,
        doc="Running sum along a static axis; witness: an element and its predecessor.",
    ),
    _copy("Split", shape.split, 1,
          "Parts along an axis (several outputs, one list from the ONNX kernel).", outputs=None),
    Operator(
        "Trilu", "x", "where(k > 0, x, 0)", params={"k": 1},
        kernel=lambda x, k: _select(x, 0.0, k), onnx_type="Trilu", onnx_inputs=("x", None),
        onnx_kernel=shape.trilu, mixes_channels=True,
        doc="Upper or lower triangle: an output element is x inside (selector k > 0) or 0.",
    ),
    _layout_only(
        "Shape", 3, shape.shape, None,
        "The input's dimensions (int64). The output does not depend on the values of x: "
        "the witness is a dimension n, which no scaling changes.",
    ),
    _layout_only(
        "Size", 3, shape.size, None,
        "The input's element count (an int64 scalar; tf2onnx writes it for tf.size). As "
        "for Shape, the witness is a count n, which no scaling changes.",
    ),
    _layout_only(
        "ConstantOfShape", 1, shape.constant_of_shape, True,
        "A tensor of the shape given by x filled with the ``value`` attribute, witnessed by "
        "a constant n: the values of x do not matter (they are the output's whole layout, so "
        "no per-channel scale passes).",
    ),
    _layout_only(
        "EyeLike", 1, shape.eye_like, True,
        "Ones on a diagonal of a matrix of the input's shape, zeros elsewhere (torch's "
        "legacy exporter writes it for torch.eye of a length it computes: XLNet's mask), "
        "witnessed by a constant n: the values of x do not matter.",
    ),
    Operator(
        "NonZero", "x", "n*abs(sign(x))", params={"n": 3},
        kernel=lambda x, n: n * np.abs(np.sign(x)), onnx_type="NonZero",
        onnx_kernel=shape.non_zero, mixes_channels=True,
        doc="The int64 indices of the non-zero elements of x: which they are does not change "
        "when x is scaled by s > 0 (witness: an index n where x is not 0). torch's legacy "
        "exporter writes it at opset 10 for an index over a range (BERT's position ids: "
        "NonZero of a ConstantOfShape of ones), a shape computation.",
    ),
    Operator(
        "OneHot", "x0 x1", "where(k > 0, x1, x0)", params={"k": 1},
        kernel=lambda x0, x1, k: _select(x1, x0, k), onnx_type="OneHot",
        onnx_inputs=(None, None, "x"), onnx_kernel=shape.one_hot, mixes_channels=True,
        doc="A one-hot encoding of static indices: an output element is values[1] (the "
        "on value, at the position an index names: selector k > 0) or values[0] (the off "
        "value), the two elements of the values input. The indices and depth are static.",
    ),
    Operator(
        "Range", "start, limit, delta",
        "where((limit - start - k*delta)*delta > 0, start + k*delta, 0)", params={"k": 2},
        kernel=lambda start, limit, delta, k: np.where((limit - start - k * delta) * delta > 0,
                                                       start + k * delta, 0),
        onnx_type="Range", onnx_inputs=("start", "limit", "delta"), onnx_kernel=shape.range_,
        doc="start, start + delta, ... before limit (shape arithmetic); witness: element k, "
        "which exists (else 0) where it lies before the limit. The limit sets how many "
        "elements there are, so it scales with start and delta: a static limit had been "
        "claimed to let a scale through, but the scaled start and delta make another count "
        "of elements below it.",
    ),
)
