"""Hugging Face models exported by optimum, as its users export them: fixtures for the tests.

optimum (``optimum-cli export onnx``) is how many users get an ONNX file of a Hugging Face
model. Its exports differ from a plain ``torch.onnx.export`` of the same model: optimum pins
transformers 4.x, whose T5 builds the extended mask ``(1 - mask) * finfo.min``, adds it to the
position bias, and casts the scores to float32 before the Softmax (a Cast between the masked
sum and the Softmax).

    tiny_t5_optimum  a 2-layer T5 (random weights, vocabulary 64) exported by optimum's
                 ``main_export`` for text2text-generation; its encoder_model.onnx, the graph
                 output renamed ``output`` as in the other fixtures; data ``tiny_bert.*.npz``

    tiny_resnet_optimum  a 2-stage ResNet (random weights, one input channel) exported by
                 optimum for image-classification: every input dimension symbolic, the
                 channels too; its input renamed ``input``; data ``digits_image.*.npz``

optimum needs its own environment (its transformers pin conflicts with the bench extra's):

    python3 -m venv /tmp/optimum-venv && . /tmp/optimum-venv/bin/activate
    pip install torch==2.13.0 'optimum-onnx==0.1.0' 'optimum==2.1.0' 'transformers==4.57.6'
    python benchmarks/export_optimum_models.py      (a minute on 2 cores)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from fixture_files import FIXTURES, renamed, save_model

OUT = FIXTURES
SEED = 0
VOCAB = 64  # the token ids of tiny_bert.*.npz (benchmarks/export_test_models.py) lie below it
TOLERANCE = 1e-4


def export_t5(folder: Path) -> onnx.ModelProto:
    """optimum's encoder_model.onnx of a small random T5, checked against torch."""
    from optimum.exporters.onnx import main_export
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(SEED)
    config = T5Config(vocab_size=VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                      num_decoder_layers=2, num_heads=2, relative_attention_num_buckets=8,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    model.save_pretrained(folder / "hf")
    main_export(str(folder / "hf"), output=str(folder / "onnx"), task="text2text-generation")
    exported = onnx.load(str(folder / "onnx" / "encoder_model.onnx"))
    with np.load(OUT / "tiny_bert.test.npz") as data:
        feeds = dict(data)
    with torch.no_grad():
        expected = model.encoder(input_ids=torch.from_numpy(feeds["input_ids"]),
                                 attention_mask=torch.from_numpy(feeds["attention_mask"])
                                 ).last_hidden_state.numpy()
    _check(exported, feeds, expected, "T5 encoder")
    return exported


def export_resnet(folder: Path) -> onnx.ModelProto:
    """optimum's model.onnx of a small random ResNet on the 8x8 digits, checked against torch."""
    from optimum.exporters.onnx import main_export
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(SEED)
    config = ResNetConfig(num_channels=1, embedding_size=16, hidden_sizes=[16, 32],
                          depths=[1, 1], layer_type="basic", num_labels=10)
    model = ResNetForImageClassification(config).eval()
    model.save_pretrained(folder / "hf")
    main_export(str(folder / "hf"), output=str(folder / "onnx"), task="image-classification")
    exported = onnx.load(str(folder / "onnx" / "model.onnx"))
    with np.load(OUT / "digits_image.test.npz") as data:
        image = data["input"]
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(image)).logits.numpy()
    _check(exported, {exported.graph.input[0].name: image}, expected, "ResNet")
    return exported


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray], expected: np.ndarray,
           what: str) -> None:
    got = ort.InferenceSession(model.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    difference = float(np.max(np.abs(got - expected)))
    if difference > TOLERANCE:
        raise RuntimeError(f"optimum's {what}: onnxruntime differs by {difference:.2e}")


def main() -> int:
    for name, export in (("tiny_t5_optimum", export_t5), ("tiny_resnet_optimum", export_resnet)):
        with tempfile.TemporaryDirectory() as folder:
            model = export(Path(folder))
        renamed(model, model.graph.output[0], "output")
        if name == "tiny_resnet_optimum":
            renamed(model, model.graph.input[0], "input")
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        save_model(model, OUT / f"{name}.optimum.opset{opset}.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
