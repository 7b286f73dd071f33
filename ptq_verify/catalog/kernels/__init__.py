"""ONNX tensor kernels: the built-in operators' semantics on real tensors (batch first).

One small module per family. Each kernel has the signature ``kernel(inputs, attrs)`` of
:data:`ptq_verify.catalog.operator.OnnxKernel`: ``inputs`` holds the ONNX input arrays in slot
order (None for an absent optional input), ``attrs`` the node's attributes as plain Python
values (strings may arrive as bytes). They follow the ONNX specification of the latest opset the
installed ``onnx`` knows, and accept the older forms that moved an attribute to an input (axes of
the reductions, Squeeze and Unsqueeze, Pad's pads; Split's sizes, and its equal parts
before opset 18, which the node's number of outputs sets). tests/test_onnx_kernels.py checks each
against ``onnx.reference.ReferenceEvaluator``.
"""
