"""A Flax (nnx) model exported by jax2onnx, as JAX users export them: a fixture for the tests.

jax2onnx writes graphs neither torch nor tf2onnx writes: NHWC Flax layers behind Transposes
around NCHW Convs, LayerNorm in parts (ReduceMean of x and of x*x, Max of the variance and 0),
opset 23, and shapes it states for some tensors in another layout than its nodes compute (0.17
states the Relu between the two Convs as NHWC; onnxruntime merges it leniently and runs).

    digits_jax_cnn  the digits [N, 64] reshaped to 8 x 8 x 1 (NHWC) -> Conv 3x3 -> BatchNorm
                    -> ReLU -> Conv 3x3 -> LayerNorm over channels -> exact GELU -> max pool 2
                    -> Linear; trained 300 Adam steps (about 5 s); opset 23; data
                    ``digits.*.npz`` (the torch fixtures' digits, input ``input``)

jax2onnx needs JAX and Flax, which the bench extra does not install:

    python3 -m venv /tmp/jax-venv && . /tmp/jax-venv/bin/activate
    pip install jax==0.10.2 flax==0.12.8 jax2onnx==0.17.1 optax scikit-learn onnxruntime
    python benchmarks/export_jax_models.py      (a quarter of a minute on 2 cores)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import optax
from fixture_files import FIXTURES, renamed, save_model
from flax import nnx
from jax2onnx import to_onnx
from sklearn.datasets import load_digits

SEED = 0
STEPS = 300
TOLERANCE = 1e-4


class DigitsCNN(nnx.Module):
    """Conv -> BatchNorm -> ReLU -> Conv -> LayerNorm -> GELU -> max pool -> Linear."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(1, 16, (3, 3), rngs=rngs)
        self.norm1 = nnx.BatchNorm(16, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
        self.norm2 = nnx.LayerNorm(32, rngs=rngs)
        self.head = nnx.Linear(32 * 4 * 4, 10, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0], 8, 8, 1)
        x = nnx.relu(self.norm1(self.conv1(x)))
        x = nnx.gelu(self.norm2(self.conv2(x)), approximate=False)
        x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
        return self.head(x.reshape(x.shape[0], -1))


def trained() -> DigitsCNN:
    """The CNN after STEPS Adam steps on batches of 128 of scikit-learn's digits in [0, 1]."""
    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(SEED)
    model = DigitsCNN(nnx.Rngs(SEED))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
        grads = nnx.grad(loss)(model)
        optimizer.update(model, grads)

    for _ in range(STEPS):
        batch = rng.choice(len(images), 128)
        step(model, optimizer, jnp.asarray(images[batch]), jnp.asarray(digits.target[batch]))
    model.eval()
    return model


def export(model: DigitsCNN, test: np.ndarray) -> onnx.ModelProto:
    """jax2onnx's export with a free batch, refused unless onnxruntime reproduces JAX."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        to_onnx(model, [("N", 64)], return_mode="file", output_path=str(path),
                input_names=["input"])
        exported = onnx.load(str(path))
    got = ort.InferenceSession(exported.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"input": test})[0]
    difference = float(np.max(np.abs(got - np.asarray(model(jnp.asarray(test))))))
    if difference > TOLERANCE:
        raise RuntimeError(f"jax2onnx: onnxruntime differs from JAX by {difference:.2e}")
    return exported


def main() -> int:
    with np.load(FIXTURES / "digits.test.npz") as data:
        test = data["input"]
    model = export(trained(), test)
    renamed(model, model.graph.output[0], "output")
    save_model(model, FIXTURES / "digits_jax_cnn.jax2onnx.opset23.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
