"""A graph neural network as users export it from torch: a test fixture.

Each digit is a graph of its 64 pixels (4-neighbour edges both ways; node features the pixel
value and its row and column); a batch of graphs is one graph of their nodes, as
torch_geometric batches them. Five graphs make a batch of 320 nodes, more than the 256
calibration samples the engine keeps: the export fixes every shape, so the model runs whole
batches of 320 nodes only. The network passes messages by hand, ``index_add_`` into each
node's row (torch's dynamo exporter writes it as ScatterND with reduction add), twice, then
mean-pools each graph's nodes into 10 logits; the edges are a constant of the file (every digit
is the same grid):

    gnn_grid.dynamo.opset18   x [320, 3] -> logits [5, 10]; data ``gnn_grid.calib.npz`` and
                 ``gnn_grid.test.npz`` (x: nodes of 40 and 20 digits, 5 to a batch)
    gnn_grid_edges.dynamo.opset18  the same model taking its edges as a second input,
                 edge_index int64 [2, 1120], as torch_geometric's layers take them: no input
                 axis holds samples, which calibration data cannot feed (a refusal)

Run with torch (the tests import none of it), seconds:

    python benchmarks/export_gnn_models.py
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from fixture_files import FIXTURES, save_model, save_npz
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional

GRAPHS = 5  # digits a batch holds: 320 nodes
HIDDEN = 16


def grid_edges() -> np.ndarray:
    """(2, E) int64: source and target pixel of each 4-neighbour edge of the 8 x 8 grid."""
    pairs = [(r * 8 + c, rr * 8 + cc) for r in range(8) for c in range(8)
             for rr, cc in ((r, c + 1), (r + 1, c), (r, c - 1), (r - 1, c))
             if 0 <= rr < 8 and 0 <= cc < 8]
    return np.array(pairs, dtype=np.int64).T


def node_features(images: np.ndarray) -> np.ndarray:
    """(len(images) * 64, 3) float32: each pixel's value in [0, 1], its row and column."""
    rows, cols = np.divmod(np.arange(64), 8)
    place = np.stack([rows, cols], 1) / 7.0
    return np.concatenate([np.concatenate([img.reshape(64, 1) / 16.0, place], 1)
                           for img in images]).astype(np.float32)


class MessagePassing(nn.Module):
    """Two rounds of messages summed into each node (index_add_), then a mean per graph."""

    def __init__(self, edges: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("edges", edges)
        self.embed = nn.Linear(3, HIDDEN)
        self.message = nn.ModuleList(nn.Linear(HIDDEN, HIDDEN) for _ in range(2))
        self.update = nn.ModuleList(nn.Linear(2 * HIDDEN, HIDDEN) for _ in range(2))
        self.out = nn.Linear(HIDDEN, 10)

    def forward(self, x: torch.Tensor, edges: torch.Tensor | None = None) -> torch.Tensor:
        edges = self.edges if edges is None else edges
        h = functional.relu(self.embed(x))
        for message, update in zip(self.message, self.update):
            sent = message(h)[edges[0]]
            summed = torch.zeros_like(h).index_add_(0, edges[1], sent)
            h = functional.relu(update(torch.cat([h, summed], 1)))
        return self.out(h.reshape(GRAPHS, 64, HIDDEN).mean(1))


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    images, labels = digits.images, digits.target
    one = grid_edges()
    edges = np.concatenate([one + 64 * g for g in range(GRAPHS)], 1)
    model = MessagePassing(torch.tensor(edges))
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    for _ in range(600):  # a few seconds
        pick = rng.choice(1500, GRAPHS)
        loss = functional.cross_entropy(model(torch.tensor(node_features(images[pick]))),
                                        torch.tensor(labels[pick]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    sample = torch.tensor(node_features(images[1500:1500 + GRAPHS]))
    program = torch.onnx.export(model, (sample,), dynamo=True, opset_version=18,
                                input_names=["x"], output_names=["logits"])
    exported = program.model_proto
    onnx.checker.check_model(exported)
    save_model(exported, FIXTURES / "gnn_grid.dynamo.opset18.onnx")
    program = torch.onnx.export(model, (sample, torch.tensor(edges)), dynamo=True,
                                opset_version=18, input_names=["x", "edge_index"],
                                output_names=["logits"])
    save_model(program.model_proto, FIXTURES / "gnn_grid_edges.dynamo.opset18.onnx")
    save_npz(FIXTURES / "gnn_grid.calib.npz", x=node_features(images[:40]))
    save_npz(FIXTURES / "gnn_grid.test.npz", x=node_features(images[1500:1520]))


if __name__ == "__main__":
    main()
