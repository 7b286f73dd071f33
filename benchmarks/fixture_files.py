"""Writing the test fixtures the export scripts make (torch's, optimum's, tf2onnx's,
jax2onnx's): shared by scripts that run in different environments, so it imports only numpy and
onnx."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "torch"


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Compressed, with no timestamp in the file: the same arrays write the same bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def renamed(model: onnx.ModelProto, value: onnx.ValueInfoProto, name: str) -> None:
    """Rename a graph input or output everywhere (the tests read ``output``, and the digits
    data feed ``input``)."""
    old = value.name
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    value.name = name


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Write one fixture and say what it holds: its size and op types."""
    onnx.save(model, path)
    kinds = sorted({n.op_type for n in model.graph.node})
    print(f"{path.name:38s} {path.stat().st_size / 1024:6.1f} KiB  {' '.join(kinds)}")
