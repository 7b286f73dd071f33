"""Node verdicts against onnxruntime: a differential trial of what `ptq-verify audit` claims.

    python benchmarks/node_verdicts.py [--runs 300] [--seed 0] [--keep DIR]

Each run builds a small ONNX model at random (mostly one node, with its constant inputs as
initializers or Constant nodes; some two-node chains) over op types the catalog declares and
ones it does not, at opsets 13-21 (23 for the opset-23 ops), with random valid attributes and
constant inputs in the forms exports write, and runs ``ptq-verify audit MODEL --json`` on it in a
fresh process, as a user would. Every node the audit says the engine passes a scale through
(action ``scale`` or ``align``) has its claim checked in onnxruntime, the node alone on the
values the model gives it (inputs with negative values, zeros, magnitudes 1e-3 to 1e3), at
s in 1e-3, 0.37, 2.9, 1e3:

- the tensors its declaration binds (activations and constant operands alike) are scaled as the
  rule says: one s for all (pass-through, aligned, param_rescale, scale-invariant), one scale each
  (homogeneous with one degree per input) or one per group (a partition);
- the parameters the rule rescales are rescaled where the declaration binds them (a constant
  input, or an attribute: its own value, or its ONNX schema default at the model's opset);
- the node's outputs must be s**d times the unscaled ones (integer outputs unchanged).

The node runs in float64 where onnxruntime has a double kernel for it (tolerance 1e-8 of the
element plus 1e-2 of the output's largest value, times that), else in its own float type
(float32: 1e-4; float16: 4e-3; bfloat16: 3e-2). Where the rule has no parameter and the
declaration is not ``mixes_channels``, the claim is checked per channel too (axis 1 of rank-4
inputs scaled by one s per channel). A claim onnxruntime contradicts is a wrong verdict
(``WRONG``); exit 3 or a traceback is a crash; exit 2 with one line is a refusal (fine). A node
the audit runs in float (needs compensation, undecided, or compensated for another reason)
whose inputs obey degree 1 or 0 at every s tried is counted as conservative, with its form.
Needs no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnx.defs
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's declarations, as the audit it runs reads them
SCALES = (1e-3, 0.37, 2.9, 1e3)
GROUP_FACTORS = (1.0, 1.7, 0.45, 3.1)  # the scale of each further group: s times this
TOLERANCE = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-4,
             np.dtype(np.float16): 4e-3}
BFLOAT16_TOLERANCE = 3e-2
TIMEOUT_S = 120


# ----------------------------------------------------------------------------- the models


@dataclass
class Case:
    """One random model: its nodes, constants (name -> array; ``as_nodes``: written as Constant
    nodes), graph inputs (name -> the values fed) and ``form``, a label of its kind."""

    form: str
    opset: int
    nodes: list
    constants: dict
    inputs: dict
    as_nodes: bool = False
    output_names: list = field(default_factory=list)

    def model(self) -> onnx.ModelProto:
        constant_nodes = [helper.make_node("Constant", [], [name], name=f"const_{name}",
                                           value=numpy_helper.from_array(value, name))
                          for name, value in self.constants.items()] if self.as_nodes else []
        inits = [] if self.as_nodes else [numpy_helper.from_array(v, k)
                                          for k, v in self.constants.items()]
        inputs = [helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))
            for name, v in self.inputs.items()]
        outputs = self.output_names or [o for o in self.nodes[-1].output if o]
        graph = helper.make_graph(constant_nodes + self.nodes, "g", inputs,
                                  [onnx.ValueInfoProto(name=o) for o in outputs], inits)
        imports = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=imports, ir_version=9)
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {v.name: v.type for v in list(inferred.graph.value_info)
                 + list(inferred.graph.output)}
        for out in model.graph.output:
            if out.name in types and types[out.name].tensor_type.elem_type:
                out.type.CopyFrom(types[out.name])
                out.type.tensor_type.ClearField("shape")
            else:  # (inference gave up: the float type of the inputs)
                out.type.tensor_type.elem_type = TensorProto.FLOAT
        return model


def values(rng: np.random.Generator, shape, positive: bool = False) -> np.ndarray:
    """Random float32 values: both signs (or positive), zeros, magnitudes 1e-3 to 1e3."""
    x = np.asarray(rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape))
    x = np.where(rng.random(shape) < 0.1, 0.0, x)
    if positive:
        x = np.abs(x) + 1e-3
    return x.astype(np.float32)


def f32(*numbers) -> np.ndarray:
    return np.array(numbers[0] if len(numbers) == 1 else numbers, dtype=np.float32)


def i64(*numbers) -> np.ndarray:
    return np.array(numbers[0] if len(numbers) == 1 else numbers, dtype=np.int64)


class Maker:
    """Helpers for one case: a named constant, a named node, and the random choices."""

    def __init__(self, rng: np.random.Generator, opset: int):
        self.rng, self.opset, self.constants, self.count = rng, opset, {}, 0

    def const(self, value: np.ndarray) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def node(self, op_type: str, inputs, outputs=None, **attrs) -> onnx.NodeProto:
        self.count += 1
        outputs = outputs or [f"y{self.count}"]
        return helper.make_node(op_type, list(inputs), outputs, name=f"n{self.count}", **attrs)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float = 0.5) -> bool:
        return bool(self.rng.random() < p)

    def broadcast_shape(self, shape) -> tuple:
        """A constant's shape that broadcasts against ``shape``: 0-d, one value, per channel,
        per last axis, or the full shape."""
        return self.pick([(), (1,), (shape[1], 1, 1)[: len(shape) - 1] if len(shape) >= 3
                          else (shape[-1],), (shape[-1],), tuple(shape),
                          (1,) * len(shape)])

    def special(self) -> float:
        return float(self.pick([0.0, 1.0, -1.0, 0.5, 2.0, 0.01, 3.0,
                                round(float(self.rng.uniform(-5, 5)), 3)]))


UNARY = ("Abs", "Neg", "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Reciprocal",
         "Sign", "Round", "Floor", "Ceil", "Softplus", "Softsign", "HardSwish", "Sin", "Cos",
         "Identity", "Atan", "Mish", "IsNaN", "IsInf", "Not")
ALPHAS = {"LeakyRelu": ("alpha",), "Elu": ("alpha",), "Celu": ("alpha",),
          "ThresholdedRelu": ("alpha",), "Selu": ("alpha", "gamma"),
          "HardSigmoid": ("alpha", "beta"), "Shrink": ("lambd", "bias")}
REDUCE = ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2",
          "ReduceSumSquare", "ReduceProd", "ReduceLogSum", "ReduceLogSumExp")
BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Mod", "PRelu", "Greater", "Less",
          "Equal", "GreaterOrEqual", "LessOrEqual", "Sum", "Mean")


def f_unary(m: Maker, x: str, shape):
    op = m.pick(UNARY)
    if op == "HardSwish":
        m.opset = max(m.opset, 14)
    return op, [m.node(op, [x])]


def f_alpha(m: Maker, x: str, shape):
    op = m.pick(list(ALPHAS))
    attrs = {a: m.special() for a in ALPHAS[op] if m.chance(0.7)}
    if op == "Celu" and attrs.get("alpha") == 0.0:
        attrs["alpha"] = 1.0
    label = ",".join(f"{a}={v:g}" for a, v in attrs.items()) or "defaults"
    return f"{op}[{label}]", [m.node(op, [x], **attrs)]


def f_clip(m: Maker, x: str, shape):
    lo = m.pick([None, 0.0, -1.5, -6.0, 1.0])
    hi = m.pick([None, 6.0, 1.0, 2.5, 0.0])
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    inputs = [x, "" if lo is None else m.const(f32(lo)),
              "" if hi is None else m.const(f32(hi))]
    while inputs[-1] == "":
        inputs.pop()
    return f"Clip[min={lo},max={hi}]", [m.node("Clip", inputs)]


def f_pad(m: Maker, x: str, shape):
    mode = m.pick(["constant", "constant", "reflect", "edge"] + (["wrap"] if m.opset >= 19
                                                                 else []))
    rank = len(shape)
    pads = [0, 0] + [int(m.rng.integers(0, 2)) for _ in range(rank - 2)]
    pads = pads + [0, 0] + [int(m.rng.integers(0, 2)) for _ in range(rank - 2)]
    inputs = [x, m.const(i64(*pads))]
    value = None
    if mode == "constant" and m.chance(0.7):
        value = m.pick([0.0, 1.0, -2.5])
        inputs.append(m.const(f32(value)))
    return f"Pad[{mode},value={value}]", [m.node("Pad", inputs, mode=mode)]


def f_pow(m: Maker, x: str, shape):
    p = m.pick([1.0, 2.0, 0.5, -1.0, 3.0, -0.5, 0.49999976])
    form = m.pick(["scalar", "[1]", "int"])
    exponent = (np.array(int(p), np.int64) if form == "int" and p == int(p) else
                f32(p) if form == "scalar" else np.array([p], np.float32))
    return f"Pow[{p:g},{exponent.dtype},{exponent.shape}]", [m.node("Pow", [x, m.const(exponent)])]


def f_binary_const(m: Maker, x: str, shape):
    op = m.pick(BINARY)
    cshape = m.broadcast_shape(shape)
    if op == "PRelu":
        cshape = m.pick([(1,), (shape[1], 1, 1)[: len(shape) - 1] if len(shape) >= 3
                         else (shape[-1],)])
    c = values(m.rng, cshape)
    if op == "Pow":
        return f_pow(m, x, shape)
    attrs = {}
    if op == "Mod":
        attrs["fmod"] = 1
        c = np.where(c == 0, np.float32(1.5), c).astype(np.float32)
    if op == "Div" and m.chance(0.5):
        c = np.where(c == 0, np.float32(0.25), c).astype(np.float32)
    const = m.const(c)
    order = [x, const] if op in ("PRelu", "Mod") or m.chance(0.6) else [const, x]
    side = "x,c" if order[0] == x else "c,x"
    return f"{op}[{side},c{cshape}]", [m.node(op, order, **attrs)]


def f_binary_two(m: Maker, x: str, shape, y: str):
    op = m.pick([o for o in BINARY if o not in ("Pow", "PRelu")] + ["Where", "Concat", "MatMul"])
    if op == "Where":
        cond = m.const(m.rng.random(shape) < 0.5)
        return "Where[c,x,y]", [m.node("Where", [cond, x, y])]
    if op == "Concat":
        return "Concat[x,y]", [m.node("Concat", [x, y], axis=int(m.rng.integers(-1, 1)))]
    if op == "MatMul":
        return "MatMul[x,y^T]", [m.node("Transpose", [y], perm=[0, 1, 3, 2]),
                                 m.node("MatMul", [x, f"y{m.count}"])]
    attrs = {"fmod": 1} if op == "Mod" else {}
    return f"{op}[x,y]", [m.node(op, [x, y], **attrs)]


def f_where(m: Maker, x: str, shape):
    cond = m.const(m.rng.random(shape) < 0.5)
    other = m.const(values(m.rng, m.broadcast_shape(shape)) if m.chance() else f32(
        m.pick([0.0, -1e4, float("-inf"), 1.0])))
    order = [cond, x, other] if m.chance() else [cond, other, x]
    label = "x,c" if order[1] == x else "c,x"
    return f"Where[{label},c={m.constants[other].shape or float(m.constants[other])}]", [
        m.node("Where", order)]


def f_reduce(m: Maker, x: str, shape):
    op = m.pick(REDUCE)
    rank = len(shape)
    axes = m.pick([None, [1], [-1], [2, 3][: rank - 2] or [1], []])
    attrs = {}
    if m.chance():
        attrs["keepdims"] = int(m.rng.integers(0, 2))
    noop = m.chance(0.3)
    inputs = [x]
    as_input = op == "ReduceSum" and m.opset >= 13 or m.opset >= 18
    if axes is not None and not (axes == [] and not as_input):
        if as_input:
            inputs.append(m.const(i64(*axes) if axes else np.zeros((0,), np.int64)))
        elif axes:
            attrs["axes"] = axes
    if noop and as_input:
        attrs["noop_with_empty_axes"] = 1
    label = f"{op}[axes={axes},{'input' if as_input else 'attr'}," \
            f"keepdims={attrs.get('keepdims', 1)},noop={attrs.get('noop_with_empty_axes', 0)}]"
    return label, [m.node(op, inputs, **attrs)]


def f_softmax(m: Maker, x: str, shape):
    op = m.pick(["Softmax", "LogSoftmax", "Hardmax"])
    axis = int(m.rng.integers(-len(shape), len(shape)))
    return f"{op}[axis={axis}]", [m.node(op, [x], axis=axis)]


def f_gemm(m: Maker, x: str, shape):
    flat = m.node("Flatten", [x])
    k = int(np.prod(shape[1:]))
    n = 5
    attrs = {}
    if m.chance():
        attrs["alpha"] = m.pick([1.0, 0.5, 2.0])
    if m.chance():
        attrs["beta"] = m.pick([1.0, 0.0, 1.5])
    trans_b = int(m.rng.integers(0, 2))
    if trans_b:
        attrs["transB"] = 1
    w = m.const(values(m.rng, (n, k) if trans_b else (k, n)))
    inputs = [flat.output[0], w]
    bias = m.pick([None, (n,), (1, n), ()])
    if bias is not None:
        inputs.append(m.const(values(m.rng, bias)))
    label = f"Gemm[alpha={attrs.get('alpha', 1)},beta={attrs.get('beta', 1)}," \
            f"transB={trans_b},C={bias}]"
    return label, [flat, m.node("Gemm", inputs, **attrs)]


def f_conv(m: Maker, x: str, shape):
    c = shape[1]
    op = m.pick(["Conv", "ConvTranspose"])
    group = m.pick([1, c]) if op == "Conv" else 1
    out = m.pick([2, 4]) if group == 1 else c
    kernel = m.pick([1, 3])
    w_shape = (out, c // group, kernel, kernel) if op == "Conv" else (c, out, kernel, kernel)
    inputs = [x, m.const(values(m.rng, w_shape))]
    if m.chance(0.7):
        inputs.append(m.const(values(m.rng, (out,))))
    attrs = {}
    if group > 1:
        attrs["group"] = group
    if m.chance() and kernel == 3:
        attrs["pads"] = [1, 1, 1, 1]
    if m.chance(0.3):
        attrs["strides"] = [2, 2]
    return f"{op}[group={group},k={kernel},bias={len(inputs) == 3}," \
           f"pads={'pads' in attrs}]", [m.node(op, inputs, **attrs)]


def f_matmul(m: Maker, x: str, shape):
    side = m.pick(["x,c", "c,x"])
    if side == "x,c":
        c = m.const(values(m.rng, (shape[-1], 3)))
        return "MatMul[x,c]", [m.node("MatMul", [x, c])]
    c = m.const(values(m.rng, (3, shape[-2])))
    return "MatMul[c,x]", [m.node("MatMul", [c, x])]


EINSUMS = ("bchw->bc", "bchw->bhwc", "bchw,wk->bchk", "bchw,hw->bc", "bcii->bci", "bchw->",
           "bchw,c->bhw")


def f_einsum(m: Maker, x: str, shape):
    eq = m.pick([e for e in EINSUMS if "ii" not in e or shape[2] == shape[3]])
    inputs = [x]
    if "," in eq:
        letters = eq.split(",")[1].split("->")[0]
        dims = {"b": shape[0], "c": shape[1], "h": shape[2], "w": shape[3], "k": 3}
        inputs.append(m.const(values(m.rng, tuple(dims[ch] for ch in letters))))
    return f"Einsum[{eq}]", [m.node("Einsum", inputs, equation=eq)]


def f_norm(m: Maker, x: str, shape):
    c = shape[1]
    ops = ["LayerNormalization", "InstanceNormalization", "BatchNormalization",
           "LpNormalization"] + (["GroupNormalization"] if m.opset >= 21 else [])
    op = m.pick(ops)
    if op == "LayerNormalization":
        m.opset = max(m.opset, 17)
    attrs = {}
    if m.chance(0.6) and op != "LpNormalization":
        attrs["epsilon"] = m.pick([1e-5, 1e-12, 1e-3, 0.1])
    eps = attrs.get("epsilon", "default")
    if op == "LayerNormalization":
        axis = m.pick([-1, 1])
        attrs["axis"] = axis
        norm_shape = tuple(shape[axis:]) if axis > 0 else (shape[-1],)
        inputs = [x, m.const(values(m.rng, norm_shape))]
        if m.chance():
            inputs.append(m.const(values(m.rng, norm_shape)))
        return f"LayerNormalization[axis={axis},eps={eps},bias={len(inputs) == 3}]", [
            m.node(op, inputs, **attrs)]
    if op == "InstanceNormalization":
        return f"InstanceNormalization[eps={eps}]", [m.node(op, [
            x, m.const(values(m.rng, (c,))), m.const(values(m.rng, (c,)))], **attrs)]
    if op == "GroupNormalization":
        groups = m.pick([1, c])
        per = c if m.opset >= 21 else groups
        return f"GroupNormalization[groups={groups},eps={eps}]", [m.node(op, [
            x, m.const(values(m.rng, (per,))), m.const(values(m.rng, (per,)))],
            num_groups=groups, **attrs)]
    if op == "LpNormalization":
        p = m.pick([1, 2])
        return f"LpNormalization[p={p}]", [m.node(op, [x], p=p, axis=m.pick([1, -1]))]
    return f"BatchNormalization[eps={eps}]", [m.node(op, [
        x, m.const(values(m.rng, (c,))), m.const(values(m.rng, (c,))),
        m.const(values(m.rng, (c,))), m.const(values(m.rng, (c,), positive=True))], **attrs)]


def f_resize(m: Maker, x: str, shape):
    mode = m.pick(["nearest", "linear", "cubic"])
    ct = m.pick(["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                 "tf_crop_and_resize"])
    attrs = {"mode": mode, "coordinate_transformation_mode": ct}
    roi = ""
    if ct == "tf_crop_and_resize":
        roi = m.const(f32(0, 0, 0.1, -0.2, 1, 1, 0.8, 1.3))
        if m.chance():
            attrs["extrapolation_value"] = m.pick([0.0, 1.0, -2.0])
    if mode == "cubic" and m.chance():
        attrs["exclude_outside"] = 1
    if m.opset >= 18 and mode != "nearest" and m.chance(0.3):
        attrs["antialias"] = 1
    scales = m.const(f32(1, 1, m.pick([2.0, 0.5, 1.5]), m.pick([2.0, 0.5])))
    return f"Resize[{mode},{ct},extrapolation={attrs.get('extrapolation_value', 'default')}," \
           f"antialias={attrs.get('antialias', 0)}]", [m.node("Resize", [x, roi, scales],
                                                               **attrs)]


def f_pool(m: Maker, x: str, shape):
    op = m.pick(["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
                 "GlobalLpPool"])
    if op.startswith("Global"):
        return op, [m.node(op, [x])]
    attrs = {"kernel_shape": [2, 2]}
    if m.chance():
        attrs["pads"] = [1, 1, 1, 1]
        if op == "AveragePool" and m.chance():
            attrs["count_include_pad"] = 1
    if m.chance(0.3):
        attrs["ceil_mode"] = 1
    if op == "LpPool" and m.chance():
        attrs["p"] = m.pick([1, 2, 3])
    return f"{op}[pads={'pads' in attrs},p={attrs.get('p', '-')}," \
           f"count_include_pad={attrs.get('count_include_pad', 0)}]", [m.node(op, [x], **attrs)]


def f_select(m: Maker, x: str, shape):
    op = m.pick(["TopK", "ArgMax", "ArgMin", "CumSum", "Trilu"])
    if op == "TopK":
        largest = int(m.rng.integers(0, 2))
        return f"TopK[largest={largest}]", [m.node("TopK", [x, m.const(i64(2)[None])],
                                                   [f"v{m.count}", f"i{m.count}"],
                                                   axis=-1, largest=largest)]
    if op in ("ArgMax", "ArgMin"):
        last = int(m.rng.integers(0, 2))
        return f"{op}[select_last_index={last}]", [m.node(op, [x], axis=1,
                                                          select_last_index=last)]
    if op == "CumSum":
        attrs = {k: 1 for k in ("exclusive", "reverse") if m.chance()}
        return f"CumSum[{attrs}]", [m.node(op, [x, m.const(i64(m.pick([1, -1])))], **attrs)]
    m.opset = max(m.opset, 14)
    upper = int(m.rng.integers(0, 2))
    inputs = [x] + ([m.const(i64(m.pick([0, 1, -1])))] if m.chance() else [])
    return f"Trilu[upper={upper}]", [m.node(op, inputs, upper=upper)]


def f_cast(m: Maker, x: str, shape):
    to = m.pick([TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
                 TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL, TensorProto.BFLOAT16,
                 TensorProto.FLOAT])
    name = TensorProto.DataType.Name(to)
    if m.chance(0.3):
        m.opset = max(m.opset, 15)
        like = m.const(np.zeros((1,), helper.tensor_dtype_to_np_dtype(to)))
        return f"CastLike[{name}]", [m.node("CastLike", [x, like])]
    return f"Cast[{name}]", [m.node("Cast", [x], to=to)]


def f_mod(m: Maker, x: str, shape):
    c = m.const(m.pick([f32(2.5), f32(-1.5), values(m.rng, (shape[-1],))]))
    fmod = 1
    return f"Mod[fmod={fmod}]", [m.node("Mod", [x, c], fmod=fmod)]


def f_gelu(m: Maker, x: str, shape):
    if m.opset < 20:
        m.opset = 20
    approximate = m.pick([None, "none", "tanh"])
    attrs = {} if approximate is None else {"approximate": approximate}
    return f"Gelu[{approximate}]", [m.node("Gelu", [x], **attrs)]


def f_shape_ops(m: Maker, x: str, shape):
    op = m.pick(["Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Gather",
                 "Expand", "Tile", "Split", "DepthToSpace", "SpaceToDepth", "Dropout",
                 "Shape", "Size"])
    if op == "Reshape":
        return op, [m.node(op, [x, m.const(i64(shape[0], -1))])]
    if op == "Transpose":
        return op, [m.node(op, [x], perm=[0, 2, 3, 1])]
    if op == "Squeeze":
        return op, [m.node("Unsqueeze", [x, m.const(i64(1)[None])]),
                    m.node(op, [f"y{m.count}", m.const(i64(1)[None])])]
    if op == "Unsqueeze":
        return op, [m.node(op, [x, m.const(i64(-1)[None])])]
    if op == "Slice":
        return op, [m.node(op, [x, m.const(i64(0)), m.const(i64(2)), m.const(i64(1))])]
    if op == "Gather":
        return op, [m.node(op, [x, m.const(i64(0, 2, -1))], axis=1)]
    if op == "Expand":
        return op, [m.node(op, [x, m.const(i64(2, *shape))])]
    if op == "Tile":
        return op, [m.node(op, [x, m.const(i64(*([1] * (len(shape) - 1)), 2))])]
    if op == "Split":
        return op, [m.node(op, [x], [f"p{m.count}", f"q{m.count}"], axis=1,
                           **({"num_outputs": 2} if m.opset >= 18 else {}))]
    if op in ("DepthToSpace", "SpaceToDepth"):
        if op == "DepthToSpace" and shape[1] % 4:
            return "Identity", [m.node("Identity", [x])]
        return op, [m.node(op, [x], blocksize=2)]
    return op, [m.node(op, [x])]


def f_lrn(m: Maker, x: str, shape):
    attrs = {"size": 3}
    for a, choices in (("alpha", [1e-4, 0.5]), ("beta", [0.75, 1.0, 0.5]), ("bias", [1.0, 2.0])):
        if m.chance():
            attrs[a] = m.pick(choices)
    return f"LRN[{attrs}]", [m.node("LRN", [x], **attrs)]


def f_undeclared(m: Maker, x: str, shape):
    op = m.pick(["Det", "Sinh", "BitShift", "Compress", "ReverseSequence", "Unique",
                 "LpPool", "MeanVarianceNormalization", "Softmax", "Tan"])
    if op == "Compress":
        return op, [m.node(op, [x, m.const(np.array([True, False, True]))], axis=1)]
    if op in ("Det", "BitShift", "ReverseSequence", "Unique", "LpPool"):
        op = "MeanVarianceNormalization"
    return op, [m.node(op, [x])]


def f_range(m: Maker, x: str, shape):
    return "Range[start=x,limit=c,delta=c]", [
        m.node("ReduceMax", [x], keepdims=0),
        m.node("Range", [f"y{m.count}", m.const(f32(100.0)), m.const(f32(25.0))])]


def f_opset23(m: Maker, x: str, shape):
    m.opset = 23
    op = m.pick(["RMSNormalization", "Attention"])
    if op == "RMSNormalization":
        attrs = {"epsilon": m.pick([1e-5, 1e-2])} if m.chance() else {}
        return f"RMSNormalization[{attrs}]", [m.node(op, [x, m.const(values(m.rng, (shape[-1],)))],
                                                     **attrs)]
    attrs = {"scale": m.pick([0.5, 0.125])} if m.chance() else {}
    return f"Attention[{attrs}]", [m.node(op, [x, x, x], **attrs)]


def f_variadic(m: Maker, x: str, shape):
    op = m.pick(["Max", "Min", "Sum", "Mean"])
    others = [m.const(values(m.rng, m.broadcast_shape(shape))) for _ in range(m.pick([1, 2]))]
    inputs = [x, *others] if m.chance() else [*others, x]
    return f"{op}[{len(inputs)} inputs]", [m.node(op, inputs)]


def f_gemm_sides(m: Maker, x: str, shape):
    """Gemm with the activation as A (transA) or B, the other a constant."""
    flat = m.node("Flatten", [x])
    k = int(np.prod(shape[1:]))
    if m.chance():
        attrs = {"transA": 1}
        t = m.node("Transpose", [flat.output[0]], perm=[1, 0])
        return "Gemm[transA=1]", [flat, t, m.node("Gemm", [t.output[0], m.const(
            values(m.rng, (k, 3)))], **attrs)]
    return "Gemm[A=c,B=x]", [flat, m.node("Gemm", [m.const(values(m.rng, (3, shape[0]))),
                                                   flat.output[0]])]


def f_pad_axes(m: Maker, x: str, shape):
    m.opset = max(m.opset, 18)
    value = m.pick([None, 0.0, 1.5])
    inputs = [x, m.const(i64(1, 1)), "" if value is None else m.const(f32(value)),
              m.const(i64(-1))]
    return f"Pad[axes input,value={value}]", [m.node("Pad", inputs, mode="constant")]


def f_einsum3(m: Maker, x: str, shape):
    eq = m.pick(["bchw,c,w->bh", "bchw,hw,c->b"])
    dims = {"b": shape[0], "c": shape[1], "h": shape[2], "w": shape[3]}
    operands = [m.const(values(m.rng, tuple(dims[ch] for ch in letters)))
                for letters in eq.split("->")[0].split(",")[1:]]
    return f"Einsum[{eq}]", [m.node("Einsum", [x, *operands], equation=eq)]


def f_conv_transpose(m: Maker, x: str, shape):
    attrs = {"strides": [2, 2]}
    if m.chance():
        attrs["output_padding"] = [1, 1]
    if m.chance():
        attrs["pads"] = [1, 1, 1, 1]
    inputs = [x, m.const(values(m.rng, (shape[1], 2, 3, 3)))]
    if m.chance():
        inputs.append(m.const(values(m.rng, (2,))))
    return f"ConvTranspose[{sorted(attrs)},bias={len(inputs) == 3}]", [
        m.node("ConvTranspose", inputs, **attrs)]


SINGLE = [f_unary, f_alpha, f_clip, f_pad, f_pow, f_binary_const, f_where, f_reduce, f_softmax,
          f_gemm, f_conv, f_matmul, f_einsum, f_norm, f_resize, f_pool, f_select, f_cast, f_mod,
          f_gelu, f_shape_ops, f_lrn, f_undeclared, f_range, f_opset23, f_variadic, f_gemm_sides,
          f_pad_axes, f_einsum3, f_conv_transpose]
WEIGHTS = [3, 4, 3, 3, 3, 5, 2, 5, 1, 2, 2, 1, 2, 3, 3, 2, 2, 2, 1, 1, 2, 1, 1, 1, 1, 2, 1, 1, 1,
           1]


def random_case(rng: np.random.Generator) -> Case:
    """One model: one form (or two chained, one time in five), at a random opset."""
    opset = int(rng.integers(13, 22))
    m = Maker(rng, opset)
    shape = (2, int(rng.choice([3, 4])), 4, 4)
    inputs = {"x": values(rng, shape)}
    weights = np.array(WEIGHTS, float) / sum(WEIGHTS)
    form = SINGLE[int(rng.choice(len(SINGLE), p=weights))]
    nodes = []
    if rng.random() < 0.1:
        inputs["x2"] = values(rng, shape)
        label, nodes = f_binary_two(m, "x", shape, "x2")
    else:
        label, nodes = form(m, "x", shape)
    if rng.random() < 0.2 and nodes[-1].output[0] and label not in ("Shape", "Size"):
        # a second node on the first one's output (its shape: inferred by a float run)
        second = SINGLE[int(rng.choice([0, 1, 2, 3, 5]))]
        out = nodes[-1].output[0]
        later_label, later = second(m, out, shape)
        if _runs(Case(label, m.opset, nodes + later, dict(m.constants), inputs)):
            label, nodes = f"{label} -> {later_label}", nodes + later
    return Case(label, m.opset, nodes, dict(m.constants), inputs, as_nodes=bool(rng.random() < 0.4))


def _runs(case: Case) -> bool:
    try:
        run_model(case.model(), case.inputs)
        return True
    except Exception:  # noqa: BLE001 (a chain the generator made invalid: drop the second)
        return False


# ----------------------------------------------------------------------------- onnxruntime


def session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def run_model(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return session(model).run(None, feeds)


def all_values(case: Case) -> dict[str, np.ndarray]:
    """Every tensor of the case's model (inputs, constants, each node's outputs), by name."""
    model = case.model()
    known = {o.name for o in model.graph.output}
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in inferred.graph.value_info}
    for node in case.nodes:
        for out in node.output:
            if out and out not in known:
                info = onnx.ValueInfoProto(name=out)
                if out in types:
                    info.type.CopyFrom(types[out])
                    info.type.tensor_type.ClearField("shape")
                else:  # (inference gave up: the float type of the inputs)
                    info.type.tensor_type.elem_type = TensorProto.FLOAT
                model.graph.output.append(info)
                known.add(out)
    names = [o.name for o in model.graph.output]
    got = dict(zip(names, run_model(model, case.inputs)))
    return {**case.inputs, **case.constants, **got}


def one_node(node: onnx.NodeProto, feeds: dict, opset: int, attrs: dict | None = None,
             double: bool = False) -> onnx.ModelProto:
    """The node alone, every input a graph input (float32 ones as float64 with ``double``),
    with ``attrs`` set over its own."""
    node = onnx.NodeProto.FromString(node.SerializeToString())
    for name, value in (attrs or {}).items():
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(name, value))
    inputs = []
    for name in dict.fromkeys(i for i in node.input if i):
        value = feeds[name]
        dtype = np.float64 if double and value.dtype == np.float32 else value.dtype
        inputs.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(value.shape)))
    outputs = [onnx.ValueInfoProto(name=o) for o in node.output if o]
    graph = helper.make_graph([node], "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=9)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for out in model.graph.output:
        if out.name in types:
            out.type.CopyFrom(types[out.name])
            out.type.tensor_type.ClearField("shape")
    return model


def run_node(node, feeds: dict, opset: int, attrs: dict, double: bool) -> list[np.ndarray]:
    model = one_node(node, feeds, opset, attrs, double)
    cast = {k: (v.astype(np.float64) if double and v.dtype == np.float32 else v)
            for k, v in feeds.items() if k in node.input}
    return run_model(model, cast)


# ----------------------------------------------------------------------------- the claims


@dataclass(frozen=True)
class Claim:
    """A rule as the audit prints it: one degree per group of tensors (a tensor's group by
    ``groups``, or one group for all), and each rescaled parameter's exponent per group."""

    kind: str
    groups: dict  # tensor name -> group index; empty: every tensor in group 0
    degrees: tuple
    params: dict  # parameter -> tuple of exponents, one per group


_FRACTION = r"-?\d+(?:/\d+)?"


def _fraction(text: str) -> Fraction:
    return Fraction(text.strip("()"))


def parse_rule(text: str, tensors: list[str]) -> Claim:
    """The rule text of an audit entry (``Rule.describe``), read as a user reads it:
    ``pass_through``, ``param_rescale hi->s*hi, lo->s*lo``, ``homogeneous (1, -1)``,
    ``aligned``, ``scale_invariant alpha->s^-1*alpha``, ``homogeneous 2 [groups {a} {b}:
    degrees (1, 1), c->s_1^-1*c]``."""
    kind, _, rest = text.partition(" ")
    partition = re.search(r"\[groups (.*?): degrees \(([^)]*)\)(.*)\]", rest)
    if partition:
        members = re.findall(r"\{([^}]*)\}", partition.group(1))
        groups = {name.strip(): g for g, names in enumerate(members)
                  for name in names.split(",")}
        if not set(groups) & set(tensors):  # (printed without the tensors' names: x_1, x_2..)
            groups = {tensors[int(name[2:]) - 1]: g for name, g in groups.items()
                      if re.fullmatch(r"x_\d+", name) and int(name[2:]) <= len(tensors)}
        degrees = tuple(_fraction(d) for d in partition.group(2).split(","))
        params = {}
        for p, factor in re.findall(r"(\w+)->(\S+?)\*\1\b", partition.group(3)):
            exps = [Fraction(0)] * len(degrees)
            for g, k in re.findall(rf"s_(\d+)(?:\^\(?({_FRACTION})\)?)?", factor):
                exps[int(g) - 1] += Fraction(k) if k else Fraction(1)
            params[p] = tuple(exps)
        return Claim(kind, groups, degrees, params)
    params = {}
    for p, k in re.findall(rf"(\w+)->s(?:\^\(?({_FRACTION})\)?)?\*\1\b", rest):
        params[p] = (Fraction(k) if k else Fraction(1),)
    head = rest.split("[")[0]
    tuple_degrees = re.match(r"\(([^)]*)\)", head.strip())
    if tuple_degrees:
        degrees = tuple(_fraction(d) for d in tuple_degrees.group(1).split(","))
        return Claim(kind, {t: i for i, t in enumerate(tensors)}, degrees, {})
    single = re.match(rf"({_FRACTION})(?:\s|,|$)", head.strip())
    degree = (Fraction(0) if kind == "scale_invariant" else
              _fraction(single.group(1)) if single and kind in ("homogeneous", "aligned")
              else Fraction(1))
    return Claim(kind, {}, (degree,), params)


def slot_binding(op, slot: int) -> str | None:
    bound = op.onnx_inputs
    if slot < len(bound):
        return bound[slot]
    return bound[-1] if op.onnx_variadic and bound else None


ABSENT = object()  # an attribute the op type's schema at the model's opset does not have


def attribute_value(op_type: str, opset: int, node: onnx.NodeProto, attr: str):
    """The node's attribute, or the ONNX schema's default at the model's opset (None: none;
    ABSENT: no such attribute at that opset, as Pad's ``value`` from opset 11)."""
    for a in node.attribute:
        if a.name == attr:
            return helper.get_attribute_value(a)
    try:
        spec = onnx.defs.get_schema(op_type, opset).attributes.get(attr)
    except onnx.defs.SchemaError:
        return None
    if spec is None:
        return ABSENT
    if not spec.default_value.name:
        return None
    return helper.get_attribute_value(spec.default_value)


@dataclass
class Scaled:
    """The node's feeds and attributes with the claim applied at ``s``, and the factor each
    output must change by (``per_channel``: an array along axis 1 of rank-4 outputs)."""

    feeds: dict
    attrs: dict
    factor: object


def apply_claim(claim: Claim, op, node: onnx.NodeProto, opset: int, feeds: dict, s: float,
                channel_scales: np.ndarray | None = None) -> Scaled | str:
    """Scale ``feeds`` and attributes as ``claim`` says at ``s`` (one s per channel along
    axis 1 with ``channel_scales``); a string says why it cannot be applied."""
    tensors = [t.name for t in op.inputs]
    n_groups = len(claim.degrees)
    scales = [s * GROUP_FACTORS[g % len(GROUP_FACTORS)] for g in range(n_groups)]
    fed = {}
    for slot, name in enumerate(node.input):
        bound = slot_binding(op, slot) if name else None
        if bound in tensors:
            fed.setdefault(name, set()).add(claim.groups.get(bound, 0))
    bound = {p for carried in op.onnx_inputs if carried for p in carried.split()}
    bound |= set(op.onnx_attrs.values())
    unbound = [p for p, k in claim.params.items() if any(k) and p not in bound]
    if any(len(groups) > 1 for groups in fed.values()) or unbound:
        # one tensor in several groups (they share its scale), or a parameter the node has
        # no place for (Range's element index): the engine's shared-scale case
        scales = [s] * n_groups
    if channel_scales is not None:
        scales = [channel_scales]
    factor = 1.0
    for g, d in enumerate(claim.degrees):
        factor = factor * np.power(scales[g], float(d))
    new = dict(feeds)
    for slot, name in enumerate(node.input):
        if not name:
            continue
        bound = slot_binding(op, slot)
        if bound is None:
            continue
        names = bound.split()
        if len(names) == 1 and names[0] in tensors:
            group = claim.groups.get(names[0], 0)
            value = feeds[name]
            if value.dtype.kind != "f":
                return f"tensor {names[0]} is {value.dtype}"
            scale = scales[group]
            if channel_scales is not None:
                if value.ndim != 4 or value.shape[1] != len(channel_scales):
                    return "not a channel-first tensor"
                scale = channel_scales.reshape(1, -1, 1, 1)
            with np.errstate(over="ignore"):  # (float32 beyond its range: inf, compared so)
                new[name] = np.asarray(value * scale, dtype=value.dtype)
            continue
        exps = [claim.params.get(p) for p in names if claim.params.get(p)]
        if not exps:
            continue
        if len(names) > 1:
            return f"parameter input {slot} binds {bound}"
        k = exps[0]
        param_factor = float(np.prod([scales[g] ** float(e) for g, e in enumerate(k)]))
        new[name] = np.asarray(feeds[name] * param_factor, dtype=feeds[name].dtype)
    attrs = {}
    for attr, param in op.onnx_attrs.items():
        k = claim.params.get(param)
        if not k or not any(k):
            continue
        value = attribute_value(node.op_type, opset, node, attr)
        if value is ABSENT:
            continue
        if value is None:
            return f"attribute {attr} has no value"
        attrs[attr] = float(value) * float(np.prod([scales[g] ** float(e)
                                                    for g, e in enumerate(k)]))
    return Scaled(new, attrs, factor)


def tame(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Values of ``value``'s shape and type without zeros or extreme magnitudes (0.5 to 2 in
    size, both signs), where a product of many elements stays finite and non-zero."""
    size = rng.uniform(0.5, 2.0, value.shape) * rng.choice([-1.0, 1.0], value.shape)
    return np.asarray(size, dtype=value.dtype)


def tolerance(dtype: np.dtype) -> float:
    if dtype == np.float64 or dtype == np.float32 or dtype == np.float16:
        return TOLERANCE[np.dtype(dtype)]
    return BFLOAT16_TOLERANCE if "bfloat16" in str(dtype) else 0.0


def disagreement(base: np.ndarray, scaled: np.ndarray, factor) -> float:
    """How far ``scaled`` is from ``factor * base``, in units of the tolerance of its type
    (> 1: contradicted); NaN and infinities must sit where they are expected, and an expected
    value beyond the type's range (a float16 Cast at s = 1e3) is not compared."""
    if base.shape != scaled.shape:
        return float("inf")
    if base.dtype.kind not in "fc" or str(base.dtype) == "bfloat16":
        if str(base.dtype) == "bfloat16":
            base, scaled = base.astype(np.float32), scaled.astype(np.float32)
        else:
            return 0.0 if np.array_equal(base, scaled) else float("inf")
    if np.ndim(factor):
        factor = np.reshape(factor, (1, -1) + (1,) * (base.ndim - 2)) if base.ndim >= 2 \
            else factor
    expected = base.astype(np.float64) * factor
    got = scaled.astype(np.float64)
    limit = float(np.finfo(np.float32).max if str(scaled.dtype) == "bfloat16"
                  else np.finfo(scaled.dtype).max) / 2
    compared = np.isfinite(expected) & (np.abs(expected) < limit)
    if np.any(np.isnan(expected) != np.isnan(got)):
        return float("inf")
    if np.any(np.isinf(expected) & ~np.isnan(got) & (expected != got)):
        return float("inf")
    if not np.any(compared):
        return float("nan")  # (no finite value: NaN or inf everywhere tells nothing)
    if np.any(~np.isfinite(got[compared])):
        return float("inf")
    e, g = expected[compared], got[compared]
    bound = tolerance(scaled.dtype) * (np.abs(e) + 1e-2 * np.max(np.abs(e))) + 1e-300
    return float(np.max(np.abs(g - e) / bound))


def check_claim(claim: Claim, op, node: onnx.NodeProto, opset: int, feeds: dict,
                per_channel: bool = False) -> tuple[float, str]:
    """The largest disagreement of the node with ``claim`` over SCALES, and the worst scale;
    (nan, why) where it could not be checked."""
    double = True
    try:
        base = run_node(node, feeds, opset, {}, double)
        feeds = {k: v.astype(np.float64) if v.dtype == np.float32 else v
                 for k, v in feeds.items()}
    except Exception:  # noqa: BLE001 (no double kernel: its own float type)
        double = False
        try:
            base = run_node(node, feeds, opset, {}, double)
        except Exception as err:  # noqa: BLE001
            return float("nan"), f"onnxruntime does not run the node: {str(err)[:80]}"
    worst, where, compared = 0.0, "", False
    n_channels = next((v.shape[1] for k, v in feeds.items() if k in node.input
                       and v.ndim == 4), 0)
    for s in SCALES:
        channels = (s * np.linspace(0.5, 2.0, n_channels)) if per_channel else None
        if per_channel and not n_channels:
            return float("nan"), "no channel-first input"
        scaled = apply_claim(claim, op, node, opset, feeds, s, channels)
        if isinstance(scaled, str):
            return float("nan"), scaled
        try:
            outs = run_node(node, scaled.feeds, opset, scaled.attrs, double)
        except Exception as err:  # noqa: BLE001
            return float("inf"), f"s={s:g}: the rescaled node does not run: {str(err)[:80]}"
        for slot, (b, o) in enumerate(zip(base, outs)):
            index_output = slot in op.index_outputs
            factor = 1.0 if index_output or b.dtype.kind not in "fc" else scaled.factor
            if per_channel and (b.ndim != 4 or b.shape[1] != n_channels):
                return float("nan"), "output not channel-first"
            bad = disagreement(b, o, factor)
            if bad != bad:
                continue
            compared = True
            if scaled.attrs and o.dtype == np.float64:  # (attributes are float32)
                bad *= TOLERANCE[np.dtype(np.float64)] / TOLERANCE[np.dtype(np.float32)]
            if bad > worst:
                worst, where = bad, f"s={s:g}, output {slot}"
    if not compared:
        return float("nan"), "no finite output to compare"
    return worst, where


# ----------------------------------------------------------------------------- the runs


def run_audit(path: Path, env: dict) -> tuple[int, str, str]:
    try:
        proc = subprocess.run([sys.executable, "-m", "ptq_verify", "audit", str(path), "--json"],
                              capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return -1, "", "time-out"
    return proc.returncode, proc.stdout, proc.stderr


@dataclass
class Outcome:
    """What one node's claim came to: ``kind`` one of checked, WRONG, conservative, float,
    unchecked, static, unknown, folded; ``detail`` the evidence."""

    form: str
    node: str
    op_type: str
    rule: str
    kind: str
    detail: str = ""


def judge(case: Case, audit: dict, tensors: dict[str, np.ndarray]) -> list[Outcome]:
    """Each audited node of ``case`` against onnxruntime (``tensors``: every value of the
    model, by name)."""
    from ptq_verify.catalog import CATALOG

    by_name = {n.name: n for n in case.nodes}
    outcomes = []
    for entry in audit["nodes"]:
        node = by_name.get(entry["node"])
        rule, action = entry.get("rule") or "", entry["action"]
        found = Outcome(case.form, entry["node"], entry["op_type"], rule, action)
        if node is None or action in ("folded", "unused") or entry["verdict"] == "constant":
            found.kind = "folded"
        elif action == "unknown":
            found.kind = "unknown"
        elif action == "static":
            found.kind = "static"
        elif entry["operator"] not in CATALOG:
            found.kind, found.detail = "unchecked", f"operator {entry['operator']}"
        else:
            op = CATALOG[entry["operator"]]
            feeds = {name: tensors[name] for name in node.input if name}
            tensor_names = [t.name for t in op.inputs]
            rng = np.random.default_rng(len(outcomes))
            tamed = {name: tame(value, rng) if name not in case.constants
                     and value.dtype == np.float32 else value for name, value in feeds.items()}
            if action in ("scale", "align"):
                claim = parse_rule(rule, tensor_names)
                worst, where = max(check_claim(claim, op, node, case.opset, feeds),
                                   check_claim(claim, op, node, case.opset, tamed),
                                   key=lambda found: -1 if found[0] != found[0] else found[0])
                found.kind, found.detail = _verdict(worst, where)
                if found.kind == "checked" and not claim.params and not op.mixes_channels \
                        and len(claim.degrees) == 1:
                    worst, where = check_claim(claim, op, node, case.opset, feeds, True)
                    kind, detail = _verdict(worst, where)
                    if kind == "WRONG":
                        found.kind, found.detail = kind, f"per channel: {detail}"
            else:
                found.kind = "float"
                for degree in (1, 0):
                    claim = Claim("pass_through", {}, (Fraction(degree),), {})
                    if all(check_claim(claim, op, node, case.opset, f)[0] <= 1.0
                           for f in (feeds, tamed)):  # (NaN, nothing compared: no)
                        found.kind = "conservative"
                        found.detail = f"degree {degree} holds; {entry['reason'][:70]}"
                        break
        outcomes.append(found)
    return outcomes


def _verdict(worst: float, where: str) -> tuple[str, str]:
    if worst != worst:  # nan: not checkable
        return "unchecked", where
    if worst > 1.0:
        return "WRONG", f"{worst:.3g} x tolerance at {where}"
    return "checked", ""


def audit_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_case(case: Case, folder: Path, env: dict) -> tuple[str, list[Outcome], str]:
    """Audit one case in a fresh process and judge its nodes: (status, outcomes, message)."""
    path = folder / "model.onnx"
    onnx.save(case.model(), path)
    code, out, err = run_audit(path, env)
    lines = [line for line in err.strip().splitlines() if line]
    if code == 2 and len(lines) == 1 and "Traceback" not in err:
        return "refused", [], lines[0]
    if code != 0 or "Traceback" in err:
        return "crash", [], f"exit {code}: {lines[-1] if lines else ''}"
    try:
        tensors = all_values(case)
    except Exception as err:  # noqa: BLE001 (the generator made a model onnxruntime refuses)
        return "invalid", [], str(err).splitlines()[0][:100]
    return "audited", judge(case, json.loads(out), tensors), ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the models of wrong verdicts and crashes")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    random.seed(args.seed)
    env = audit_env()
    statuses: Counter = Counter()
    kinds: Counter = Counter()
    wrong, crashes, conservative, refusals = [], [], Counter(), Counter()
    unchecked, invalid = Counter(), Counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for run in range(args.runs):
            case = random_case(rng)
            status, outcomes, message = run_case(case, folder, env)
            statuses[status] += 1
            if status == "crash":
                crashes.append(f"run {run}: {case.form} (opset {case.opset}): {message}")
            if status == "refused":
                refusals[f"{case.form}: {message[-90:]}"] += 1
            if status == "invalid":
                invalid[case.form.split("[")[0]] += 1
            bad = False
            for o in outcomes:
                kinds[o.kind] += 1
                if o.kind == "WRONG":
                    bad = True
                    wrong.append(f"run {run}: {o.form} (opset {case.opset}) node {o.node} "
                                 f"{o.op_type} '{o.rule}': {o.detail}")
                elif o.kind == "unchecked":
                    unchecked[f"{o.op_type}: {o.detail[:60]}"] += 1
                elif o.kind == "conservative":
                    conservative[f"{o.op_type} ({o.rule}): {o.detail}"] += 1
            if args.keep and (bad or status == "crash"):
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(folder / "model.onnx", args.keep / f"run{run}.onnx")
            print(f"\r{run + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"runs {args.runs} (seed {args.seed}): " + ", ".join(
        f"{k} {v}" for k, v in sorted(statuses.items())))
    print("\n| node outcome | nodes |\n|---|---|")
    for kind in ("checked", "WRONG", "conservative", "float", "unchecked", "static", "unknown",
                 "folded"):
        print(f"| {kind} | {kinds.get(kind, 0)} |")
    for title, items in (("wrong verdicts", wrong), ("crashes", crashes)):
        print(f"\n{title}: {len(items)}")
        for item in items[:40]:
            print(f"  {item}")
    print("\nconservative (runs in float where degree 1 or 0 held at every s; why it runs in "
          "float), most common:")
    for form, count in conservative.most_common(12):
        print(f"  {count:4d}  {form}")
    for title, counts in (("refusals (exit 2, one line)", refusals),
                          ("unchecked claims (why)", unchecked),
                          ("invalid models (onnxruntime refuses the generator's model)", invalid)):
        print(f"\n{title}, most common:")
        for line, count in counts.most_common(8):
            print(f"  {count:4d}  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
