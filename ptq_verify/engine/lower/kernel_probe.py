"""Whether this machine's onnxruntime computes each 8-bit QDQ encoding's integer products
exactly.

On an x86 CPU without VNNI, onnxruntime's kernels for uint8 activations times int8 weights
multiply with ``vpmaddubsw``, which adds pairs of u8 x s8 products into 16 bits and saturates
(255 * 127 * 2 > 32767); int8 activations are shifted to uint8 and run through the same
kernels. Its uint8 x uint8 kernels widen to 16 bits first. Measured on an AMD EPYC with AVX2
and no VNNI (onnxruntime 1.32): a fused MatMul off by 4,096,384 under ``u8s8`` and ``s8s8``,
exact under ``u8u8``; on a Xeon with VNNI all three exact. The probe asks the kernels
themselves, so it stays true on CPUs and versions not measured here.
"""

from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# (activation dtype, its zero point, weight dtype, its zero point) of each encoding
_CONTAINERS = {"u8s8": (np.uint8, 0, np.int8, 0), "s8s8": (np.int8, -128, np.int8, 0),
               "u8u8": (np.uint8, 0, np.uint8, 128)}


@functools.cache
def encoding_error(encoding: str) -> int:
    """Max |error| of a fused 8-bit QDQ MatMul under ``encoding`` in a default onnxruntime
    session on this CPU, on sums whose u8 x s8 pairs overflow 16 bits; 0 when exact."""
    xtype, xzero, wtype, wzero = _CONTAINERS[encoding]
    rng = np.random.default_rng(0)
    weights = np.where(rng.random((256, 16)) < 0.5, 127, -127)
    weights[:, :8] = 127
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(xzero, xtype), "xz"),
             numpy_helper.from_array(np.array(wzero, wtype), "wz"),
             numpy_helper.from_array((weights + wzero).astype(wtype), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "one", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "one", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "one", "wz"], ["wd"]),
             helper.make_node("MatMul", ["xd", "wd"], ["y"])]
    graph = helper.make_graph(
        nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = rng.integers(0, 256, (64, 256)).astype(np.float32)
    x[:32] = 255
    exact = x.astype(np.int64) @ weights
    return int(np.abs(session.run(None, {"x": x})[0] - exact).max())


def saturates_here(encoding: str) -> bool:
    """Whether this machine's onnxruntime saturates products under ``encoding``."""
    return encoding_error(encoding) != 0
