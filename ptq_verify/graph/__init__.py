"""The graph representation, ONNX import/export and the float executor."""

from .executor import run_graph, run_node
from .model import Graph, Node, TensorInfo, holds_integers, require_graph
from .onnx_io import graph_from_onnx, graph_to_onnx, load_graph, read_model
from .operators import OperatorTable, slot_binding
from .static import activation_tensors, fold_constants

__all__ = [
    "Graph",
    "Node",
    "OperatorTable",
    "TensorInfo",
    "activation_tensors",
    "fold_constants",
    "graph_from_onnx",
    "graph_to_onnx",
    "holds_integers",
    "load_graph",
    "read_model",
    "require_graph",
    "run_graph",
    "run_node",
    "slot_binding",
]
