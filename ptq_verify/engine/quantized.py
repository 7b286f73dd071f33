"""The quantized model: its steps, the exact simulation, and the ONNX export."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..graph import Graph
from .data import check_feeds, run_batched
from .export import Emitter
from .steps import Step


@dataclass(frozen=True)
class Code:
    """An activation held as integer codes: ``codes = round(x * scale)`` in [low, high]."""

    name: str
    scale: float
    low: float
    high: float

    @property
    def unsigned(self) -> bool:
        return self.low >= 0


@dataclass
class NodeRecord:
    """One line of the summary: what happened to a node."""

    name: str
    op_type: str
    rule: str
    action: str
    scale: str
    note: str = ""

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class QuantizedModel:
    """An n-bit model: ``run`` simulates it, ``to_onnx`` writes the same arithmetic as ONNX.

    ``output_scales``: per graph output, the scale of the integers it is read from (its n-bit
    codes, or the exact integer accumulator of the node producing it): output = integers /
    scale, with a scalar or a per-channel array. One unit there is one step of the output.
    """

    graph: Graph
    steps: list[Step]
    constants: dict[str, np.ndarray]
    codes: dict[str, Code]
    records: list[NodeRecord]
    bits: int
    integer_outputs: bool = False
    notes: list[str] = field(default_factory=list)
    output_scales: dict[str, np.ndarray | float] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return self.graph.output_names

    def run_batch(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = dict(self.constants)
        env.update(feeds)
        for step in self.steps:
            step.simulate(env)
        return {name: env[name] for name in self.output_names}

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray,
            batch_size: int = 256) -> dict[str, np.ndarray]:
        """Simulate the quantized model on ``inputs`` (batch first); outputs by name."""
        feeds = check_feeds(inputs, self.graph, "inputs")
        return run_batched(self.run_batch, feeds, self.graph, batch_size)

    def to_onnx(self) -> onnx.ModelProto:
        """The quantized model as ONNX, with the source model's inputs and outputs."""
        out = Emitter()
        for step in self.steps:
            step.emit(out)
        used = {name for node in out.nodes for name in node.input}
        for name, value in self.constants.items():
            if name in used and name not in out.initializers:
                out.initializer(name, value)
        # an output the engine scaled is float32 (or integer codes held in float32); one it
        # never touched (a comparison's bool, an ArgMax's int64) keeps the source's own type
        outputs = [(t.name, t.shape, np.float32 if t.name in self.output_scales else t.dtype)
                   for t in self.graph.outputs]
        kind = "integer codes" if self.integer_outputs else "float (dequantized)"
        doc = f"ptq-verify {self.bits}-bit model; outputs are {kind}"
        model = out.model(self.graph, outputs, doc)
        for name in self.output_names:
            code = self.codes.get(name)
            if self.integer_outputs and code is not None:
                entry = model.metadata_props.add()
                entry.key, entry.value = f"scale:{name}", repr(code.scale)
        return model
