"""Keras models exported by tf2onnx, as TensorFlow users export them: fixtures for the tests.

tf2onnx writes graphs a torch export never has: NHWC layouts behind Transposes, opset 13 by
default, and graph outputs whose shape it does not know (a type with no shape, which the ONNX
checker refuses and onnxruntime runs).

    masked_pool  a Keras attention pooling over the digits as 8 tokens of 8 pixels: Dense
                 scores, ``tf.where(mask, scores, -1e9)``, Softmax over the tokens, and
                 ``tf.einsum("bt,btd->bd")`` of the weights and the tokens, whose output tf2onnx
                 writes with no shape; inputs ``x`` [N, 8, 8] float and ``mask`` [N, 8] int32
                 (trailing rows of each digit masked), opset 13; the graph output renamed
                 ``output`` as in the other fixtures; data ``masked_pool.*.npz``

tf2onnx names some nodes with a counter that differs between runs, so a new run writes the same
graph in other bytes. tf2onnx needs TensorFlow, which the bench extra does not install:

    python3 -m venv /tmp/tf-venv && . /tmp/tf-venv/bin/activate
    pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 scikit-learn
    python benchmarks/export_tf_models.py      (half a minute on 2 cores)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402 - after the log level
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from fixture_files import FIXTURES, renamed, save_model, save_npz  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

OUT = FIXTURES
SEED = 0
TOKENS, WIDTH = 8, 8
SAMPLES = 64
TOLERANCE = 1e-4


def digit_tokens(seed: int) -> dict[str, np.ndarray]:
    """SAMPLES digits from scikit-learn as 8 tokens (rows) of 8 pixels in [0, 1], each with its
    last 0 to 3 rows masked."""
    digits = load_digits().data.reshape(-1, TOKENS, WIDTH).astype(np.float32) / 16.0
    rng = np.random.default_rng(seed)
    x = digits[rng.choice(len(digits), SAMPLES, replace=False)]
    lengths = rng.integers(TOKENS - 3, TOKENS + 1, size=SAMPLES)
    mask = (np.arange(TOKENS)[None, :] < lengths[:, None]).astype(np.int32)
    return {"x": x, "mask": mask}


def masked_pool() -> keras.Model:
    layers = keras.layers
    keras.utils.set_random_seed(SEED)
    x = keras.Input((TOKENS, WIDTH), name="x")
    mask = keras.Input((TOKENS,), dtype="int32", name="mask")
    scores = layers.Dense(1)(layers.Dense(16, activation="relu")(x))[..., 0]
    scores = layers.Lambda(lambda a: tf.where(tf.cast(a[1], tf.bool), a[0], -1e9))(
        [scores, mask])
    weights = layers.Softmax()(scores)
    pooled = layers.Lambda(lambda a: tf.einsum("bt,btd->bd", a[0], a[1]))([weights, x])
    return keras.Model([x, mask], pooled)


def export(model: keras.Model, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    """tf2onnx's opset-13 export, refused unless onnxruntime reproduces Keras on ``feeds``."""
    spec = (tf.TensorSpec((None, TOKENS, WIDTH), tf.float32, name="x"),
            tf.TensorSpec((None, TOKENS), tf.int32, name="mask"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=13,
                                   output_path=str(path))
        exported = onnx.load(str(path))
    expected = model.predict(feeds, verbose=0)
    got = ort.InferenceSession(exported.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    difference = float(np.max(np.abs(got - expected)))
    if difference > TOLERANCE:
        raise RuntimeError(f"tf2onnx: onnxruntime differs from Keras by {difference:.2e}")
    return exported


def main() -> int:
    calibration, test = digit_tokens(SEED), digit_tokens(SEED + 1)
    model = export(masked_pool(), test)
    renamed(model, model.graph.output[0], "output")
    save_model(model, OUT / "masked_pool.tf2onnx.opset13.onnx")
    save_npz(OUT / "masked_pool.calib.npz", **calibration)
    save_npz(OUT / "masked_pool.test.npz", **test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
