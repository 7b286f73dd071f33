"""Small ONNX models for the engine tests, built with onnx.helper from seeded random weights.

The eight benchmark topologies (smaller), plus the graphs today's engines get silently wrong.
Inputs are scikit-learn's bundled digits (8x8, scaled to [0, 1]).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def digits(count: int = 200, image: bool = False, offset: int = 0) -> np.ndarray:
    from sklearn.datasets import load_digits

    x = load_digits().data[offset : offset + count].astype(np.float32) / 16.0
    return x.reshape(-1, 1, 8, 8) if image else x


def output_unit(model, name: str, values: np.ndarray) -> np.ndarray | float:
    """What one code of graph output ``name`` of quantized ``model`` is worth, to count a
    format's difference from the simulation in codes: the output's scale, or for an output a
    float node gives in float (a LogSoftmax, a LayerNorm: no codes of its own), the 8-bit
    step of signed codes over the values' reach, the codes it would have had; a code flipped
    before it (onnxruntime's requantization in a qdq file) moves it by about that much."""
    if name in model.output_scales:
        return np.asarray(model.output_scales[name])
    return 127 / max(float(np.abs(values).max()), 1e-30)


class Builder:
    """Appends nodes with unique names; weights drawn from one seeded generator."""

    def __init__(self, seed: int = 0, image: bool = False, batch: int | str = "batch") -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.counts: Counter[str] = Counter()
        self.image = image
        self.input_shape = [batch, 1, 8, 8] if image else [batch, 64]

    def fresh(self, prefix: str) -> str:
        self.counts[prefix] += 1
        return f"{prefix}{self.counts[prefix]}"

    def const(self, value, prefix: str = "c") -> str:
        name = self.fresh(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, op_type: str, inputs: list[str], domain: str | None = None, **attrs) -> str:
        out = self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, domain=domain,
                                           **attrs))
        return out

    def weight(self, *shape: int, fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def dense(self, x: str, n_in: int, n_out: int) -> str:
        w = self.const(self.weight(n_out, n_in, fan_in=n_in), "W")
        b = self.const((self.rng.standard_normal(n_out) * 0.1).astype(np.float32), "b")
        return self.add("Gemm", [x, w, b], transB=1)

    def conv(self, x: str, c_in: int, c_out: int, k: int = 3, bias: bool = True) -> str:
        w = self.const(self.weight(c_out, c_in, k, k, fan_in=c_in * k * k), "W")
        inputs = [x, w]
        if bias:
            inputs.append(self.const((self.rng.standard_normal(c_out) * 0.1).astype(np.float32),
                                     "b"))
        return self.add("Conv", inputs, pads=[k // 2] * 4)

    def batchnorm(self, x: str, channels: int) -> str:
        r = self.rng
        scale = self.const(r.uniform(0.5, 1.0, channels).astype(np.float32), "gamma")
        shift = self.const(r.uniform(0.2, 0.6, channels).astype(np.float32), "beta")
        mean = self.const((r.standard_normal(channels) * 0.2).astype(np.float32), "mean")
        var = self.const(r.uniform(1.0, 2.0, channels).astype(np.float32), "var")
        return self.add("BatchNormalization", [x, scale, shift, mean, var], epsilon=1e-5)

    def flatten(self, x: str) -> str:
        return self.add("Flatten", [x], axis=1)

    def model(self, output: str, name: str = "test", opsets: dict | None = None
              ) -> onnx.ModelProto:
        self.nodes[-1].output[0] = "logits" if self.nodes[-1].output[0] == output else output
        out_name = self.nodes[-1].output[0]
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, self.input_shape)],
            [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [self.input_shape[0], 10])],
            self.inits,
        )
        imports = [helper.make_opsetid("", OPSET)]
        imports += [helper.make_opsetid(d, v) for d, v in (opsets or {}).items()]
        model = helper.make_model(graph, opset_imports=imports)
        model.ir_version = 8
        return model


# -- the eight benchmark topologies ------------------------------------------------------


def mlp(activation: str = "Relu", seed: int = 0) -> onnx.ModelProto:
    b = Builder(seed)
    h = b.add(activation, [b.dense("input", 64, 32)])
    return b.model(b.dense(h, 32, 10), f"mlp_{activation.lower()}")


def cnn(activation: str = "Relu", seed: int = 1) -> onnx.ModelProto:
    b = Builder(seed, image=True)
    h = b.add(activation, [b.conv("input", 1, 4)])
    h = b.add("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    return b.model(b.dense(b.flatten(h), 64, 10), f"cnn_{activation.lower()}")


def residual(seed: int = 2) -> onnx.ModelProto:
    b = Builder(seed, image=True)
    x = b.add("Relu", [b.conv("input", 1, 4)])
    h = b.add("Relu", [b.conv(x, 4, 4)])
    h = b.add("Relu", [b.add("Add", [x, b.conv(h, 4, 4)])])
    return b.model(b.dense(b.flatten(h), 256, 10), "residual")


def branches_concat(seed: int = 3) -> onnx.ModelProto:
    b = Builder(seed, image=True)
    left = b.add("Relu", [b.conv("input", 1, 3)])
    right = b.add("Tanh", [b.conv("input", 1, 2, k=1)])
    h = b.add("Concat", [left, right], axis=1)
    h = b.add("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    return b.model(b.dense(b.flatten(h), 80, 10), "concat")


def squeeze_excite(seed: int = 4) -> onnx.ModelProto:
    b = Builder(seed, image=True)
    x = b.add("Relu", [b.conv("input", 1, 6)])
    s = b.add("GlobalAveragePool", [x])
    s = b.add("Relu", [b.conv(s, 6, 3, k=1)])
    gate = b.add("Sigmoid", [b.conv(s, 3, 6, k=1)])
    h = b.add("Mul", [x, gate])
    h = b.add("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])
    return b.model(b.dense(b.flatten(h), 96, 10), "squeeze_excite")


TOPOLOGIES = {
    "mlp_relu": (lambda: mlp("Relu"), False),
    "mlp_sigmoid": (lambda: mlp("Sigmoid"), False),
    "mlp_tanh": (lambda: mlp("Tanh"), False),
    "cnn": (lambda: cnn("Relu"), True),
    "cnn_sigmoid": (lambda: cnn("Sigmoid"), True),
    "residual": (residual, True),
    "concat": (branches_concat, True),
    "squeeze_excite": (squeeze_excite, True),
}

# -- graphs that other engines get silently wrong ----------------------------------------


def softmax_middle() -> onnx.ModelProto:
    b = Builder(5)
    h = b.add("Softmax", [b.dense("input", 64, 16)], axis=1)
    return b.model(b.dense(h, 16, 10), "softmax_middle")


def log_softmax_last() -> onnx.ModelProto:
    """A classifier ending in LogSoftmax whose logits barely differ (small weights, as a
    random-weight or untrained CTC head's): every output lies near -log(10), a narrow range
    far from 0, and the top two classes are closer than an 8-bit step of a range from 0."""
    b = Builder(31)
    w = b.const(b.weight(10, 64, fan_in=64) * 0.05, "W")
    h = b.add("Gemm", ["input", w, b.const(np.zeros(10, np.float32), "b")], transB=1)
    return b.model(b.add("LogSoftmax", [h], axis=1), "log_softmax_last")


def pad_constant() -> onnx.ModelProto:
    b = Builder(6, image=True)
    pads = b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads")
    value = b.const(np.array(0.7, dtype=np.float32), "value")
    h = b.add("Pad", ["input", pads, value], mode="constant")
    h = b.add("Relu", [b.conv(h, 1, 4)])
    return b.model(b.dense(b.flatten(h), 400, 10), "pad_constant")


def mobile_block() -> onnx.ModelProto:
    """An EfficientNet-Lite block as torch exports it: convolutions without bias, each followed
    by BatchNorm, ReLU6 as Clip(0, 6), the depthwise convolution's padding a Pad whose pads
    come from a Constant node through a Cast (unknown to shape inference before folding)."""
    b = Builder(23, image=True)
    h = b.add("Clip", [b.batchnorm(b.conv("input", 1, 8, bias=False), 8), b.const(
        np.array(0.0, np.float32), "lo"), b.const(np.array(6.0, np.float32), "hi")])
    pads = b.fresh("pads")
    b.nodes.append(helper.make_node("Constant", [], [pads], value=numpy_helper.from_array(
        np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int32))))
    h = b.add("Pad", [h, b.add("Cast", [pads], to=TensorProto.INT64)], mode="constant")
    w = b.const(b.weight(8, 1, 3, 3, fan_in=9), "W")
    h = b.add("Clip", [b.batchnorm(b.add("Conv", [h, w], group=8), 8), "lo1", "hi1"])
    h = b.add("Conv", [h, b.const(b.weight(8, 8, 1, 1, fan_in=8), "W")])
    return b.model(b.dense(b.flatten(h), 512, 10), "mobile_block")


def batchnorm_after_add() -> onnx.ModelProto:
    b = Builder(7, image=True)
    h = b.add("Add", [b.conv("input", 1, 4), b.conv("input", 1, 4, k=1)])
    h = b.add("Relu", [b.batchnorm(h, 4)])
    return b.model(b.dense(b.flatten(h), 256, 10), "bn_after_add")


def conv_batchnorm() -> onnx.ModelProto:
    b = Builder(8, image=True)
    h = b.add("Relu", [b.batchnorm(b.conv("input", 1, 4, bias=False), 4)])
    return b.model(b.dense(b.flatten(h), 256, 10), "conv_bn")


def div_constant_by_x() -> onnx.ModelProto:
    b = Builder(9)
    h = b.add("Abs", [b.dense("input", 64, 16)])
    h = b.add("Add", [h, b.const(np.array(1.0, dtype=np.float32))])
    h = b.add("Div", [b.const(np.array(2.0, dtype=np.float32)), h])
    return b.model(b.dense(h, 16, 10), "div_const_x")


def transpose_between() -> onnx.ModelProto:
    b = Builder(10, image=True)
    h = b.add("Relu", [b.conv("input", 1, 4)])
    h = b.add("Transpose", [h], perm=[0, 1, 3, 2])
    h = b.add("Relu", [b.conv(h, 4, 4)])
    return b.model(b.dense(b.flatten(h), 256, 10), "transpose_between")


def compensated_two_consumers() -> onnx.ModelProto:
    b = Builder(11)
    gate = b.add("Sigmoid", [b.dense("input", 64, 16)])
    h = b.add("Add", [b.dense(gate, 16, 10), b.dense(gate, 16, 10)])
    return b.model(b.add("Relu", [h]), "two_consumers")


def sigmoid_last() -> onnx.ModelProto:
    b = Builder(12)
    h = b.add("Relu", [b.dense("input", 64, 16)])
    return b.model(b.add("Sigmoid", [b.dense(h, 16, 10)]), "sigmoid_last")


def gelu_decomposed() -> onnx.ModelProto:
    b = Builder(13)
    x = b.dense("input", 64, 32)
    h = b.add("Div", [x, b.const(np.array(np.sqrt(2.0), dtype=np.float32))])
    h = b.add("Erf", [h])
    h = b.add("Add", [h, b.const(np.array(1.0, dtype=np.float32))])
    h = b.add("Mul", [x, h])
    h = b.add("Mul", [h, b.const(np.array(0.5, dtype=np.float32))])
    return b.model(b.dense(h, 32, 10), "gelu_decomposed")


def pad_reflect_resize_linear() -> onnx.ModelProto:
    """A segmentation-style block: reflect padding, a valid conv, bilinear upsampling."""
    b = Builder(17, image=True)
    pads = b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads")
    h = b.add("Pad", ["input", pads], mode="reflect")
    w = b.const(b.weight(4, 1, 3, 3, fan_in=9), "W")
    h = b.add("Relu", [b.add("Conv", [h, w, b.const(np.zeros(4, np.float32), "b")])])
    scales = b.const(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    h = b.add("Resize", [h, "", scales], mode="linear")
    h = b.add("MaxPool", [h], kernel_shape=[4, 4], strides=[4, 4])
    return b.model(b.dense(b.flatten(h), 64, 10), "pad_reflect_resize")


def resize_nearest_pad_edge() -> onnx.ModelProto:
    """A detection-style neck: nearest upsampling, edge padding, a conv."""
    b = Builder(18, image=True)
    h = b.add("Relu", [b.conv("input", 1, 3)])
    scales = b.const(np.array([1, 1, 1.5, 1.5], dtype=np.float32), "scales")
    h = b.add("Resize", [h, "", scales], mode="nearest")
    pads = b.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads")
    h = b.add("Pad", [h, pads], mode="edge")
    h = b.add("MaxPool", [b.conv(h, 3, 2)], kernel_shape=[2, 2], strides=[2, 2])
    return b.model(b.dense(b.flatten(h), 98, 10), "resize_nearest_pad_edge")


def uneven_channels_hardswish() -> onnx.ModelProto:
    """A MobileNetV3 squeeze-excite input: a convolution whose first output channel's bias
    puts its range 30 times above the 23 others' (as after BatchNorm folding), a compensated
    HardSwish, a GlobalAveragePool: the convolution's and the HardSwish's outputs are held
    with one scale per channel."""
    b = Builder(24, image=True)
    h = b.conv("input", 1, 24)
    bias = next(init for init in b.inits if init.name == "b1")
    bias.CopyFrom(numpy_helper.from_array(np.where(np.arange(24) == 0, 30, 0.1).astype(
        np.float32), "b1"))
    h = b.add("GlobalAveragePool", [b.add("HardSwish", [h])])
    return b.model(b.dense(b.flatten(h), 24, 10), "uneven_hardswish")


def pairwise_gather(read_all: bool = False, seed: int = 25) -> onnx.ModelProto:
    """A DLRM's interaction in small: the pairwise products of 4 feature vectors (a batched
    MatMul), flattened, of which a Gather by constant indices reads the upper triangle (the
    diagonal of squared norms, larger, is read by no one), reshaped to a shape computed from a
    Shape of the products (as torch's legacy export writes it), into the top Gemm.
    ``read_all``: a ReduceSum of every product added to the logits, a reader of every
    element."""
    b = Builder(seed)
    features = b.add("Reshape", [b.dense("input", 64, 20), b.const(np.array([-1, 4, 5]))])
    products = b.add("MatMul", [features, b.add("Transpose", [features], perm=[0, 2, 1])])
    flat = b.add("Flatten", [products], axis=1)
    upper = np.array([i * 4 + j for i in range(4) for j in range(i + 1, 4)])
    picked = b.add("Gather", [flat, b.const(upper, "idx")], axis=1)
    batch = b.add("Unsqueeze", [b.add("Gather", [b.add("Shape", [products]), b.const(
        np.array(0), "axis")]), b.const(np.array([0]), "axes")])
    shape = b.add("Concat", [batch, b.const(np.array([-1]), "rest")], axis=0)
    rows = b.add("Reshape", [picked, shape])
    out = b.add("Gemm", [rows, b.const(b.weight(10, 6, fan_in=6), "W")], transB=1)
    if read_all:
        out = b.add("Add", [out, b.add("ReduceSum", [flat, b.const(np.array([1]), "axes")],
                                       keepdims=1)])
    return b.model(out, "pairwise_gather")


TRICKY = {
    "uneven_hardswish": (uneven_channels_hardswish, True),
    "softmax_middle": (softmax_middle, False),
    "pad_constant": (pad_constant, True),
    "bn_after_add": (batchnorm_after_add, True),
    "conv_bn": (conv_batchnorm, True),
    "div_const_x": (div_constant_by_x, False),
    "transpose_between": (transpose_between, True),
    "two_consumers": (compensated_two_consumers, False),
    "sigmoid_last": (sigmoid_last, False),
    "gelu_decomposed": (gelu_decomposed, False),
    "pad_reflect_resize": (pad_reflect_resize_linear, True),
    "resize_nearest_pad_edge": (resize_nearest_pad_edge, True),
    "pairwise_gather": (pairwise_gather, False),
}


def fixed_batch_mlp() -> onnx.ModelProto:
    b = Builder(14, batch=1)
    h = b.add("Relu", [b.dense("input", 64, 16)])
    return b.model(b.dense(h, 16, 10), "fixed_batch")


def relu_branches_concat(seed: int = 15) -> onnx.ModelProto:
    """Concat of two Relu branches: non-negative, so held unsigned (unlike ``concat``)."""
    b = Builder(seed, image=True)
    left = b.add("Relu", [b.conv("input", 1, 3)])
    right = b.add("Relu", [b.conv("input", 1, 2, k=1)])
    h = b.add("Concat", [left, right], axis=1)
    return b.model(b.dense(b.flatten(h), 320, 10), "relu_concat")


def scaled_by_constant(constant: float, seed: int = 16) -> onnx.ModelProto:
    """Relu features multiplied by a constant tensor whose sign decides the output's."""
    b = Builder(seed)
    h = b.add("Relu", [b.dense("input", 64, 16)])
    factors = np.full(16, constant, dtype=np.float32)
    factors[::2] = abs(constant)
    h = b.add("Mul", [h, b.const(factors)])
    return b.model(b.dense(h, 16, 10), "scaled")


def step_between(op_type: str, seed: int = 20) -> onnx.ModelProto:
    """A discontinuous operator (Sign, Round) between two layers: rounding its input across a
    jump changes its output by the whole jump."""
    b = Builder(seed)
    h = b.add(op_type, [b.dense("input", 64, 16)])
    return b.model(b.dense(h, 16, 10), f"{op_type.lower()}_between")


def comparison_output(seed: int = 21) -> onnx.ModelProto:
    """Logits compared with a constant: the graph output is bool."""
    b = Builder(seed)
    out = b.add("Greater", [b.dense("input", 64, 10), b.const(np.array(0.1, np.float32))])
    model = b.model(out, "greater_output")
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.BOOL
    return model


def batch_similarity(seed: int = 23) -> onnx.ModelProto:
    """Embeddings and their similarity across the batch (CLIPModel's logits_per_image): a
    second output of shape (batch, batch), each sample's row depending on every other sample
    of its batch."""
    b = Builder(seed)
    emb = b.dense("input", 64, 10)
    similarity = b.add("MatMul", [emb, b.add("Transpose", [emb], perm=[1, 0])])
    model = b.model(similarity, "batch_similarity")
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "batch"]))
    model.graph.output.append(
        helper.make_tensor_value_info(emb, TensorProto.FLOAT, ["batch", 10]))
    return model


def joined_ranges(seed: int = 24) -> onnx.ModelProto:
    """A DLRM's top MLP in small: a Gemm reads a Concat of Relu features of range about 0.1 and
    features of range about 10 (the dense features and the pairwise dot products), its weights
    for the small ones 100x the others' (each input matters to the output); ``joined_data``
    feeds it."""
    b = Builder(seed)
    small = b.add("Relu", [b.add("Gemm", ["input", b.const(b.weight(8, 64, fan_in=64) * 0.02,
                                                                 "W")], transB=1)])
    large = b.add("Gemm", ["input", b.const(b.weight(8, 64, fan_in=64) * 5, "W")], transB=1)
    joined = b.add("Concat", [small, large], axis=1)
    top = b.weight(10, 16, fan_in=16)
    top[:, :8] *= 100
    b.add("Gemm", [joined, b.const(top, "W")], transB=1)
    return b.model(b.nodes[-1].output[0], "joined_ranges")


def joined_data(count: int, seed: int) -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(seed).normal(size=(count, 64)).astype(np.float32)}


def argmax_output(seed: int = 22) -> onnx.ModelProto:
    """The predicted class as the graph output: int64, one per sample."""
    b = Builder(seed)
    out = b.add("ArgMax", [b.dense("input", 64, 10)], axis=1, keepdims=0)
    model = b.model(out, "argmax_output")
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("logits", TensorProto.INT64, ["batch"]))
    return model


def affine_grid_sum(axis: int = 2, seed: int = 25) -> onnx.ModelProto:
    """torch's dynamo export of ``F.affine_grid`` in small: theta (a Gemm's 6 outputs as 2 x 3,
    transposed) times a constant base grid of (x, y, 1) rows, summed by a ReduceSum over
    ``axis`` (2: the matrix product's inner axis; 0: the free batch axis) and reshaped into a
    Softmax, a node in float (a GridSample in the spatial transformer)."""
    b = Builder(seed)
    theta = b.add("Reshape", [b.dense("input", 64, 6), b.const(np.array([-1, 2, 3]), "s")])
    theta = b.add("Unsqueeze", [b.add("Transpose", [theta], perm=[0, 2, 1]),
                                b.const(np.array([1]), "a")])
    ramp = np.linspace(-0.9, 0.9, 4, dtype=np.float32)
    x, y = np.meshgrid(ramp, ramp)
    grid = np.stack([x.ravel(), y.ravel(), np.ones(16, np.float32)], 1)[:, :, None]
    summed = b.add("ReduceSum", [b.add("Mul", [b.const(grid, "grid"), theta]),
                                 b.const(np.array([axis]), "a")], keepdims=0)
    flat = b.add("Reshape", [summed, b.const(np.array([-1, 32]), "s")])
    model = b.model(b.add("Softmax", [flat], axis=-1), "affine_grid_sum")
    model.graph.output[0].CopyFrom(
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 32]))
    return model
