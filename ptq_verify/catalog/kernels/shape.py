"""Operators that move, copy or select elements without computing new values, and Shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .attributes import axes_from, integers, normalised_axes, text


def identity(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """Identity."""
    return np.asarray(inputs[0])


def dropout(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Dropout in inference mode: the identity (the mask output is not produced). A node
    whose ``training_mode`` input (opset 12 on) is true and whose ``ratio`` is not 0 zeroes
    random elements and scales the others at every run, in onnxruntime too (a model exported
    in training mode): no kernel computes that function, so it is refused (a ValueError, which
    names the node) rather than calibrated as the identity (a hunt for attribute forms: such a
    model quantized with exit 0, 3 dB from a float run that is itself random)."""
    training = inputs[2] if len(inputs) > 2 else None
    ratio = inputs[1] if len(inputs) > 1 and inputs[1] is not None else 0.5
    if training is not None and bool(np.asarray(training).reshape(-1)[0]) and float(
            np.asarray(ratio).reshape(-1)[0]) != 0:
        raise ValueError("its training_mode input is true: it drops random elements at every "
                         "run; export the model in inference mode (model.eval())")
    return np.asarray(inputs[0])


def concat(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Concat along the required ``axis``."""
    return np.concatenate([np.asarray(i) for i in inputs if i is not None], axis=int(attrs["axis"]))


def reshape(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Reshape: 0 copies the input dimension (unless ``allowzero=1``), -1 is inferred."""
    x = np.asarray(inputs[0])
    shape = [int(d) for d in np.asarray(inputs[1]).reshape(-1)]
    if not int(attrs.get("allowzero", 0)):
        if any(d == 0 for d in shape[x.ndim:]):  # (had been IndexError's "tuple index out
            # of range": a 0-length input's Shape as a target, a KV cache's past of 0 and
            # texts of 0 tokens)
            raise ValueError(f"its target shape {shape} copies with a 0 (allowzero 0) a "
                             f"dimension past its input's {x.ndim} ({tuple(x.shape)})")
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def flatten(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Flatten to 2-D at ``axis`` (default 1)."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


def transpose(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Transpose by ``perm`` (default: reverse the axes)."""
    return np.transpose(np.asarray(inputs[0]), integers(attrs, "perm"))


def squeeze(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Squeeze: the given axes, or every axis of size 1."""
    x = np.asarray(inputs[0])
    axes = axes_from(inputs, 1, attrs)
    return np.squeeze(x, axis=None if axes is None else normalised_axes(axes, x.ndim))


def unsqueeze(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Unsqueeze: axes are positions in the output (negative ones counted from its end)."""
    x = np.asarray(inputs[0])
    axes = axes_from(inputs, 1, attrs) or []
    return np.expand_dims(x, normalised_axes(axes, x.ndim + len(axes)))


def pad(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Pad: pads input (begins then ends), optional constant_value and axes inputs (or
    the ``pads``/``value`` attributes of opset < 11). Negative pads crop. ``constant`` mode
    fills with the value; ``reflect``, ``edge`` and ``wrap`` copy input elements (numpy's
    modes of the same names)."""
    mode = text(attrs, "mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise NotImplementedError(f"Pad: mode {mode!r} is not supported")
    x = np.asarray(inputs[0])
    given = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs["pads"]
    pads = [int(p) for p in np.asarray(given).reshape(-1)]
    value_input = inputs[2] if len(inputs) > 2 else None
    value = float(attrs.get("value", 0.0)) if value_input is None else np.asarray(value_input)
    axes = axes_from(inputs, 3, {}) or list(range(x.ndim))
    axes = normalised_axes(axes, x.ndim)
    widths = [[0, 0] for _ in range(x.ndim)]
    for i, axis in enumerate(axes):
        widths[axis] = [pads[i], pads[i + len(axes)]]
    # crop first: a wrapped or reflected border copies the cropped tensor (as onnxruntime does)
    crop = tuple(slice(max(0, -b), size - max(0, -e)) for (b, e), size in zip(widths, x.shape))
    grow = [(max(0, b), max(0, e)) for b, e in widths]
    if mode == "constant":
        return np.pad(x[crop], grow, constant_values=np.asarray(value).item())
    return np.pad(x[crop], grow, mode=mode)


def slice_(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Slice (opset 10+): starts, ends, optional axes and steps, clamped as ONNX says."""
    x = np.asarray(inputs[0])
    starts, ends = (np.asarray(v).reshape(-1).tolist() for v in inputs[1:3])
    axes = axes_from(inputs, 3, {}) or list(range(len(starts)))
    steps = inputs[4] if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(
        normalised_axes(axes, x.ndim), starts, ends, np.asarray(steps).reshape(-1).tolist()
    ):
        size = x.shape[axis]
        start = start + size if start < 0 else start
        end = end + size if end < 0 else end
        if step > 0:
            start, end = min(max(start, 0), size), min(max(end, 0), size)
            index[axis] = slice(start, end, step)
        else:
            start, end = min(max(start, 0), size - 1), min(max(end, -1), size - 1)
            index[axis] = slice(start, None if end < 0 else end, step)
    return x[tuple(index)]


def gather(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Gather along ``axis`` (default 0); negative indices count from the end."""
    return np.take(np.asarray(inputs[0]), np.asarray(inputs[1]), axis=int(attrs.get("axis", 0)))


def expand(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Expand: bidirectional broadcast to the shape input."""
    x = np.asarray(inputs[0])
    shape = tuple(int(d) for d in np.asarray(inputs[1]).reshape(-1))
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, shape)).copy()


def tile(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Tile by the repeats input."""
    return np.tile(np.asarray(inputs[0]), [int(r) for r in np.asarray(inputs[1]).reshape(-1)])


def where(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Where: X where the condition holds, else Y, broadcast."""
    return np.where(np.asarray(inputs[0], dtype=bool), inputs[1], inputs[2])


def cast(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Cast to the ``to`` element type (float to integer truncates toward zero)."""
    return _cast_to(inputs[0], int(attrs["to"]), attrs)


def _cast_to(x, to: int, attrs: Mapping[str, Any]) -> np.ndarray:
    """``x`` cast to ONNX element type ``to`` as Cast and CastLike define it: to a float8 type
    by the ``saturate`` attribute (opset 19, default 1: a value beyond the type's range
    becomes its largest), which numpy's astype ignores. Why: folded by astype, a CastLike of
    1000.0 like a float8e4m3fn tensor gave NaN where onnxruntime gives 448, and quantize
    refused the model for NaN it said were the model's own constants."""
    from onnx import TensorProto
    from onnx.helper import tensor_dtype_to_np_dtype

    x = np.asarray(x)
    if not TensorProto.DataType.Name(to).startswith("FLOAT8"):
        # (onnx's reference package, 50 ms to import, is left for the float8 types alone)
        return x.astype(tensor_dtype_to_np_dtype(to))
    from onnx.reference.ops.op_cast import cast_to

    return cast_to(x, to, saturate=bool(int(attrs.get("saturate", 1))),
                   round_mode=text(attrs, "round_mode", "up"))


def shape(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Shape: the input's dimensions as int64, optionally sliced by ``start``/``end``."""
    dims = np.asarray(inputs[0]).shape
    start, end = attrs.get("start", 0), attrs.get("end")
    return np.array(dims[int(start) : None if end is None else int(end)], dtype=np.int64)


def size(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Size: the input's element count, an int64 scalar."""
    return np.array(np.asarray(inputs[0]).size, dtype=np.int64)


def non_zero(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX NonZero: the indices of the non-zero elements, (rank, count) int64, in row-major
    order (numpy's nonzero)."""
    x = np.asarray(inputs[0])
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


def depth_to_space(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX DepthToSpace in DCR (default) or CRD mode."""
    x = np.asarray(inputs[0])
    b = int(attrs["blocksize"])
    n, c, h, w = x.shape
    if text(attrs, "mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


def space_to_depth(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX SpaceToDepth: blocks of the spatial axes become channels."""
    x = np.asarray(inputs[0])
    b = int(attrs["blocksize"])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def cum_sum(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX CumSum along the static axis input, with ``exclusive`` and ``reverse``."""
    x = np.asarray(inputs[0])
    axis = int(np.asarray(inputs[1]).reshape(-1)[0])
    reverse = bool(int(attrs.get("reverse", 0)))
    source = np.flip(x, axis) if reverse else x
    total = np.cumsum(source, axis=axis)
    if int(attrs.get("exclusive", 0)):
        total = total - source
    return (np.flip(total, axis) if reverse else total).astype(x.dtype, copy=False)


NODE_OUTPUTS = "node outputs"
"""The key under which a kernel finds how many outputs its node has (:attr:`ptq_verify.graph.
model.Node.kernel_attrs` adds it to every node's attributes): ONNX lets an op's function depend
on it (a Split before opset 18 with no sizes makes one equal part per output), and no attribute
holds it. The space keeps it apart from every ONNX attribute name."""


def split(inputs: list, attrs: Mapping[str, Any]) -> list[np.ndarray]:
    """ONNX Split along ``axis``, in every opset's form: by the sizes of the ``split`` input
    (opset 13 on) or attribute (before 13); else into ``num_outputs`` parts (opset 18), each
    ceil(size / num_outputs) long but the last, which is shorter when the size does not divide;
    else, before opset 18, into as many equal parts as the node has outputs (``NODE_OUTPUTS``),
    which must divide the size. A form that cannot hold is a ValueError, as onnxruntime refuses
    it."""
    x = np.asarray(inputs[0])
    axis = int(attrs.get("axis", 0))
    size = x.shape[axis]
    given = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
    if given is not None:
        sizes = [int(s) for s in np.asarray(given).reshape(-1)]
        if sum(sizes) != size or min(sizes, default=0) < 0:
            raise ValueError(f"split sizes {sizes} do not add up to the axis's {size}")
    elif "num_outputs" in attrs:
        parts = int(attrs["num_outputs"])
        step = -(-size // parts) if parts > 0 else 0
        if parts < 1 or size - (parts - 1) * step < 0:
            raise ValueError(f"num_outputs {parts}: an axis of {size} does not split into "
                             f"{parts} parts of ceil({size}/{parts}) but a shorter last one")
        sizes = [step] * (parts - 1) + [size - (parts - 1) * step]
    elif NODE_OUTPUTS in attrs:
        parts = int(attrs[NODE_OUTPUTS])
        if parts < 1 or size % parts:
            raise ValueError(f"an axis of {size} does not split into {parts} equal parts, one "
                             "per output (a Split with no sizes before opset 18)")
        sizes = [size // parts] * parts
    else:
        raise ValueError("no sizes: neither a 'split' input nor a 'num_outputs' attribute "
                         "(nor, before opset 18, the node's number of outputs)")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def trilu(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Trilu: the upper (default) or lower triangle of the last two axes, from diagonal k."""
    x = np.asarray(inputs[0])
    given = inputs[1] if len(inputs) > 1 else None
    k = 0 if given is None else int(np.asarray(given).reshape(-1)[0])
    return np.triu(x, k) if int(attrs.get("upper", 1)) else np.tril(x, k)


def cast_like(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX CastLike: to the element type of the second input, whose values it never reads
    (so load-time folding may give it that type alone: ``graph.static._type_only``)."""
    from onnx.helper import np_dtype_to_tensor_dtype

    return _cast_to(inputs[0], np_dtype_to_tensor_dtype(np.dtype(inputs[1].dtype)), attrs)


def eye_like(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX EyeLike: ones on the ``k``-th diagonal (default 0, the main one) of a 2-D tensor
    of the input's shape, zeros elsewhere, of element type ``dtype`` (default the input's)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    x = np.asarray(inputs[0])
    dtype = tensor_dtype_to_np_dtype(int(attrs["dtype"])) if "dtype" in attrs else x.dtype
    return np.eye(x.shape[0], x.shape[1], int(attrs.get("k", 0)), dtype=dtype)


def constant_of_shape(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX ConstantOfShape: the ``value`` attribute (one element, default float32 0) repeated."""
    value = np.asarray(attrs.get("value", np.zeros(1, dtype=np.float32))).reshape(-1)
    shape = tuple(int(d) for d in np.asarray(inputs[0]).reshape(-1))
    return np.full(shape, value[0], dtype=value.dtype)


def one_hot(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX OneHot: values[1] where an index (negative ones counted from depth) names the
    position along the new ``axis`` (default -1), values[0] elsewhere; indices outside
    [-depth, depth - 1] give a row of values[0]."""
    indices = np.asarray(inputs[0])
    depth = int(np.asarray(inputs[1]).reshape(-1)[0])
    values = np.asarray(inputs[2]).reshape(-1)
    axis = int(attrs.get("axis", -1))
    axis = axis + indices.ndim + 1 if axis < 0 else axis
    wrapped = np.where(indices < 0, indices + depth, indices).astype(np.int64)
    positions = np.arange(depth).reshape([depth] + [1] * (indices.ndim - axis))
    hot = np.expand_dims(wrapped, axis) == positions
    return np.where(hot, values[1], values[0]).astype(values.dtype)


def range_(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Range: start, start + delta, ... up to (excluding) limit, in start's type."""
    start, limit, delta = (np.asarray(i).reshape(()) for i in inputs[:3])
    if delta == 0:  # (the count had been int(inf): OverflowError, an internal error)
        raise ValueError(f"its delta is 0, so the range from {start} never reaches {limit}")
    with np.errstate(all="ignore"):
        span = np.ceil((np.float64(limit) - np.float64(start)) / np.float64(delta))
    if not np.isfinite(span):
        raise ValueError(f"the range from {start} to {limit} by {delta} has no finite length")
    count = max(int(span), 0)
    return (start + np.arange(count, dtype=np.float64) * delta).astype(start.dtype)


def gather_elements(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX GatherElements along ``axis``: output[i][j] = x[index[i][j]][j] (for axis 0)."""
    x, index = np.asarray(inputs[0]), np.asarray(inputs[1]).astype(np.int64)
    axis = int(attrs.get("axis", 0)) % x.ndim
    return np.take_along_axis(x, np.where(index < 0, index + x.shape[axis], index), axis=axis)


_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scattered(data: np.ndarray, where: tuple, updates: np.ndarray,
               attrs: Mapping[str, Any]) -> np.ndarray:
    """A copy of ``data`` with ``updates`` written at positions ``where`` (reduction none) or
    combined with what is there, each update in turn (reduction add, mul, max, min: an
    element several updates reach takes them all, as onnxruntime's kernel does)."""
    out = data.copy()
    reduction = text(attrs, "reduction", "none")
    if reduction == "none":
        out[where] = updates
    else:
        _REDUCTIONS[reduction].at(out, where, updates)
    return out


def scatter_nd(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX ScatterND: a copy of data with the slices the last axis of indices names replaced
    by updates, or combined with them by the node's reduction."""
    data, index = np.asarray(inputs[0]), np.asarray(inputs[1]).astype(np.int64)
    updates = np.asarray(inputs[2])
    depth = index.shape[-1]
    rows = index.reshape(-1, depth)
    rows = np.where(rows < 0, rows + np.array(data.shape[:depth]), rows)
    return _scattered(data, tuple(rows.T), updates.reshape(-1, *data.shape[depth:]), attrs)


def scatter_elements(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX ScatterElements along ``axis``: out[..., index[i, j], ...] = updates[i, j] (for
    axis 0), or combined with them by the node's reduction; the other elements data's."""
    data, index = np.asarray(inputs[0]), np.asarray(inputs[1]).astype(np.int64)
    axis = int(attrs.get("axis", 0)) % data.ndim
    grid = list(np.indices(index.shape, sparse=True))
    grid[axis] = np.where(index < 0, index + data.shape[axis], index)
    where = tuple(np.broadcast_arrays(*grid))
    return _scattered(data, where, np.asarray(inputs[2]), attrs)


def gather_nd(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX GatherND with ``batch_dims``: slices of x picked by the last axis of indices."""
    x, index = np.asarray(inputs[0]), np.asarray(inputs[1]).astype(np.int64)
    batch = int(attrs.get("batch_dims", 0))
    depth = index.shape[-1]
    lead = x.shape[:batch]
    flat_x = x.reshape(-1, *x.shape[batch:])
    flat_i = index.reshape(-1, *index.shape[batch:])
    picked = []
    for part, rows in zip(flat_x, flat_i):
        rows = rows.reshape(-1, depth)
        rows = np.where(rows < 0, rows + np.array(part.shape[:depth]), rows)
        picked.append(part[tuple(rows.T)])
    out = np.stack(picked) if picked else np.empty((0,), dtype=x.dtype)
    return out.reshape(*lead, *index.shape[batch:-1], *x.shape[batch + depth :])


def col2im(inputs: list, attrs: Mapping[str, Any]) -> np.ndarray:
    """ONNX Col2Im: blocks (N, C * prod(block_shape), L) summed back into an image
    (N, C, *image_shape); overlapping blocks add, as torch's fold does."""
    x = np.asarray(inputs[0])
    image = [int(v) for v in np.asarray(inputs[1]).reshape(-1)]
    block = [int(v) for v in np.asarray(inputs[2]).reshape(-1)]
    rank = len(image)
    strides = integers(attrs, "strides") or [1] * rank
    dilations = integers(attrs, "dilations") or [1] * rank
    pads = integers(attrs, "pads") or [0] * (2 * rank)
    counts = [(size + pads[a] + pads[a + rank] - dilations[a] * (block[a] - 1) - 1)
              // strides[a] + 1 for a, size in enumerate(image)]
    batch, channels = x.shape[0], x.shape[1] // int(np.prod(block))
    blocks = x.reshape(batch, channels, *block, *counts)
    padded = np.zeros((batch, channels, *[size + pads[a] + pads[a + rank]
                                          for a, size in enumerate(image)]), dtype=x.dtype)
    for offset in np.ndindex(*block):
        window = tuple(slice(k * d, k * d + (n - 1) * s + 1, s)
                       for k, d, n, s in zip(offset, dilations, counts, strides))
        padded[(slice(None), slice(None), *window)] += blocks[(slice(None), slice(None),
                                                               *offset)]
    crop = tuple(slice(pads[a], pads[a] + size) for a, size in enumerate(image))
    return padded[(slice(None), slice(None), *crop)]
