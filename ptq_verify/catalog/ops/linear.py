"""Matrix products and convolutions, witnessed by one output element: a dot product.

Weights are parameters the scaling rule never rescales (the engine normalises them separately);
biases are parameters the rule may rescale (b -> s*b).
"""

from __future__ import annotations

from ..kernels import conv, linear
from ..operator import Operator


def _dot_plus_bias(x0, x1, w0, w1, b):
    return x0 * w0 + x1 * w1 + b


_WEIGHTS = {"w0": "0.5", "w1": "-1.5", "b": "0.25"}

def _weighted_sum(name: str, onnx_kernel, doc: str) -> Operator:
    """Gemm, Conv, ConvTranspose: one output element is a dot product with weights plus a bias."""
    return Operator(
        name, "x0 x1", "x0*w0 + x1*w1 + b", params=_WEIGHTS, kernel=_dot_plus_bias,
        onnx_type=name, onnx_inputs=("x", "w0 w1", "b"), onnx_kernel=onnx_kernel,
        mixes_channels=True, doc=doc,
    )


OPERATORS = (
    Operator(
        "MatMul", "a0 a1, b0 b1", "a0*b0 + a1*b1", kernel=lambda a0, a1, b0, b1: a0 * b0 + a1 * b1,
        onnx_type="MatMul", onnx_kernel=linear.matmul, mixes_channels=True,
        doc="Product of two tensors (activations or a weight initializer); one output element "
        "is a dot product of a row of a and a column of b, two terms in the witness.",
    ),
    *(
        Operator(
            name, inputs, expr, onnx_type="Einsum", onnx_kernel=linear.einsum, onnx_arity=arity,
            mixes_channels=True,
            doc=f"Einsum of {arity} operand{'s' if arity > 1 else ''}: every term of an output "
            "element is a product of one element of each operand, so two terms witness it "
            "(the equation only chooses which elements).",
        )
        for name, inputs, expr, arity in (
            ("EinsumUnary", "a0 a1", "a0 + a1", 1),
            ("Einsum", "a0 a1, b0 b1", "a0*b0 + a1*b1", 2),
            ("EinsumTernary", "a0 a1, b0 b1, c0 c1", "a0*b0*c0 + a1*b1*c1", 3),
        )
    ),
    Operator(
        "DFT", "x0 x1", "c0*x0 + c1*x1", params={"c0": "1/2", "c1": "-3/4"},
        kernel=lambda x0, x1, c0, c1: c0 * x0 + c1 * x1, onnx_type="DFT",
        onnx_inputs=("x", None, None), onnx_kernel=linear.dft, mixes_channels=True,
        doc="Discrete Fourier transform along a static axis (torch.fft in a dynamo export: "
        "FNet's token mixing): an output element, a real or imaginary part, is a sum of the "
        "signal's parts weighted by the cosines and sines of fixed angles, witnessed by two "
        "terms; the weights are static, so they are never rescaled.",
    ),
    _weighted_sum(
        "Gemm", linear.gemm,
        "alpha*A@B + beta*C with the weight B and bias C as parameters (ONNX slots A -> x, "
        "B -> w0 w1, C -> b).",
    ),
    _weighted_sum(
        "Conv", conv.conv,
        "Convolution: each output element is a dot product of a window with the kernel W "
        "plus the bias B (ONNX slots X -> x, W -> w0 w1, B -> b).",
    ),
    _weighted_sum(
        "ConvTranspose", conv.conv_transpose,
        "Transposed convolution: still a dot product of inputs and weights plus a bias.",
    ),
    Operator(
        "RotaryEmbedding", "x0 x1", "c*x0 - n*x1", params={"c": "3/5", "n": "4/5"},
        kernel=lambda x0, x1, c, n: c * x0 - n * x1, onnx_type="RotaryEmbedding",
        onnx_inputs=("x", None, None, None), onnx_kernel=linear.rotary_embedding,
        mixes_channels=True,
        doc="ONNX RotaryEmbedding (opset 23): a pair of a head's elements turned by an angle "
        "(x0*cos - x1*sin, or x0*sin + x1*cos, the same form with other coefficients). The "
        "cos and sin caches and the position ids are static inputs: their values c and n are "
        "no input or attribute the rule could rescale (c = cos, n = sin of the witness's "
        "angle). Elements of a head mix, so the scale is one per tensor.",
    ),
)
