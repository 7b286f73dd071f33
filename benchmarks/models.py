"""The benchmark topologies: small torch modules that also write themselves as ONNX graphs.

Why not ``torch.onnx.export``: in torch 2.13 the default exporter needs the extra onnxscript
package and the TorchScript exporter is deprecated. Each layer here instead emits its own ONNX
node from its trained weights with ``onnx.helper``, so the benchmark graphs are plain opset-17
graphs (Gemm, Conv, Relu, Sigmoid, Tanh, MaxPool, Flatten, Add, Concat, GlobalAveragePool, Mul)
with a dynamic batch dimension, the same on every torch version. ``train_digits.py`` checks each
exported graph against the torch module in onnxruntime before writing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
CLASSES = 10


class OnnxGraph:
    """Collects the nodes and initializers that the layers emit, with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counts: Counter[str] = Counter()

    def _fresh(self, prefix: str) -> str:
        self._counts[prefix] += 1
        return f"{prefix}{self._counts[prefix]}"

    def constant(self, prefix: str, tensor: torch.Tensor) -> str:
        name = self._fresh(prefix)
        array = tensor.detach().cpu().numpy().astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def add(self, op_type: str, inputs: list[str], **attrs) -> str:
        """Append one node; its single output is named after the node."""
        name = self._fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def model(self, graph_name: str, input_shape: tuple[int, ...], output: str) -> onnx.ModelProto:
        """Close the graph: rename the last output to OUTPUT_NAME and check the model."""
        if not self.nodes or self.nodes[-1].output[0] != output:
            raise ValueError(f"{graph_name}: the graph output must come from its last node")
        self.nodes[-1].output[0] = OUTPUT_NAME
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *input_shape])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", CLASSES])],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


class Dense(nn.Linear):
    def emit(self, graph: OnnxGraph, x: str) -> str:
        weight = graph.constant("W", self.weight)
        bias = graph.constant("b", self.bias)
        return graph.add("Gemm", [x, weight, bias], transB=1)


class Conv(nn.Conv2d):
    """A stride-1 convolution with 'same' zero padding (odd kernel sizes)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)

    def emit(self, graph: OnnxGraph, x: str) -> str:
        weight = graph.constant("W", self.weight)
        bias = graph.constant("b", self.bias)
        kernel = list(self.kernel_size)
        pads = [k // 2 for k in kernel] * 2
        return graph.add("Conv", [x, weight, bias], kernel_shape=kernel, pads=pads)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
}


class Activation(nn.Module):
    """An element-wise activation named by its ONNX op type."""

    def __init__(self, op_type: str) -> None:
        super().__init__()
        self.op_type = op_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ACTIVATIONS[self.op_type](x)

    def emit(self, graph: OnnxGraph, x: str) -> str:
        return graph.add(self.op_type, [x])


class MaxPool2(nn.MaxPool2d):
    def __init__(self) -> None:
        super().__init__(2)

    def emit(self, graph: OnnxGraph, x: str) -> str:
        return graph.add("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])


class Flatten(nn.Flatten):
    def emit(self, graph: OnnxGraph, x: str) -> str:
        return graph.add("Flatten", [x], axis=1)


class GlobalAveragePool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)

    def emit(self, graph: OnnxGraph, x: str) -> str:
        return graph.add("GlobalAveragePool", [x])


class Chain(nn.Sequential):
    def emit(self, graph: OnnxGraph, x: str) -> str:
        for layer in self:
            x = layer.emit(graph, x)
        return x


class Residual(nn.Module):
    """x + body(x): an Add joining an identity branch and a computed one."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)

    def emit(self, graph: OnnxGraph, x: str) -> str:
        return graph.add("Add", [x, self.body.emit(graph, x)])


class Branches(nn.Module):
    """Two branches on one input joined by a Concat over channels."""

    def __init__(self, left: nn.Module, right: nn.Module) -> None:
        super().__init__()
        self.left = left
        self.right = right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.left(x), self.right(x)], dim=1)

    def emit(self, graph: OnnxGraph, x: str) -> str:
        left = self.left.emit(graph, x)
        right = self.right.emit(graph, x)
        return graph.add("Concat", [left, right], axis=1)


class SqueezeExcite(nn.Module):
    """x * Sigmoid gate(channel means of x): a Mul of two activations."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = channels // reduction
        self.gate = Chain(
            GlobalAveragePool(),
            Conv(channels, hidden, 1),
            Activation("Relu"),
            Conv(hidden, channels, 1),
            Activation("Sigmoid"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)

    def emit(self, graph: OnnxGraph, x: str) -> str:
        return graph.add("Mul", [x, self.gate.emit(graph, x)])


@dataclass(frozen=True)
class Topology:
    """One benchmark model: how to build it and the shape of one input sample."""

    name: str
    description: str
    build: Callable[[], Chain]
    input_shape: tuple[int, ...]

    def to_onnx(self, module: Chain) -> onnx.ModelProto:
        graph = OnnxGraph()
        output = module.emit(graph, INPUT_NAME)
        return graph.model(self.name, self.input_shape, output)


def _mlp(activation: str) -> Chain:
    return Chain(
        Dense(64, 64),
        Activation(activation),
        Dense(64, 32),
        Activation(activation),
        Dense(32, CLASSES),
    )


def _cnn(first_activation: str) -> Chain:
    return Chain(
        Conv(1, 8, 3),
        Activation(first_activation),
        MaxPool2(),
        Conv(8, 16, 3),
        Activation("Relu"),
        MaxPool2(),
        Flatten(),
        Dense(64, CLASSES),
    )


def _head(channels: int) -> list[nn.Module]:
    """Pool 8x8 down to 4x4 and classify."""
    return [MaxPool2(), Flatten(), Dense(channels * 16, CLASSES)]


def _residual() -> Chain:
    body = Chain(Conv(8, 8, 3), Activation("Relu"), Conv(8, 8, 3))
    return Chain(Conv(1, 8, 3), Activation("Relu"), Residual(body), Activation("Relu"), *_head(8))


def _concat() -> Chain:
    left = Chain(Conv(8, 8, 3), Activation("Relu"))
    right = Chain(Conv(8, 8, 1), Activation("Relu"))
    return Chain(Conv(1, 8, 3), Activation("Relu"), Branches(left, right), *_head(16))


def _squeeze_excite() -> Chain:
    return Chain(Conv(1, 16, 3), Activation("Relu"), SqueezeExcite(16, 4), *_head(16))


IMAGE = (1, 8, 8)
FLAT = (64,)

TOPOLOGIES: tuple[Topology, ...] = (
    Topology("mlp_relu", "MLP 64-64-32-10, ReLU", lambda: _mlp("Relu"), FLAT),
    Topology("mlp_sigmoid", "MLP 64-64-32-10, Sigmoid", lambda: _mlp("Sigmoid"), FLAT),
    Topology("mlp_tanh", "MLP 64-64-32-10, Tanh", lambda: _mlp("Tanh"), FLAT),
    Topology("cnn_relu", "Conv-ReLU-MaxPool x2, Gemm", lambda: _cnn("Relu"), IMAGE),
    Topology("cnn_sigmoid", "CNN, Sigmoid after the first Conv", lambda: _cnn("Sigmoid"), IMAGE),
    Topology("residual", "Conv stem, Add(x, Conv-ReLU-Conv(x))", _residual, IMAGE),
    Topology("concat", "Conv stem, Concat(Conv3x3, Conv1x1)", _concat, IMAGE),
    Topology("squeeze_excite", "Conv stem, x * Sigmoid(SE gate)", _squeeze_excite, IMAGE),
)
