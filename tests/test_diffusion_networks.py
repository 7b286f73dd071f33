"""A diffusion UNet as Hugging Face diffusers builds it and torch's legacy exporter writes it
(benchmarks/export_diffusion_models.py; random weights, synthetic data): UNet2DConditionModel
with a float timestep per sample (its Sin/Cos embedding), cross-attention on text embeddings
of another shape than the latents, GroupNorm, SiLU, nearest Upsample and skip Concats, the
batch fixed at 2 as classifier-free guidance runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ptq_verify.cli import main
from ptq_verify.engine import sqnr_db

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "torch"
MODEL = FIXTURES / "diffusion_unet.legacy.opset17.onnx"
CALIB = FIXTURES / "diffusion_unet.calib.npz"
BATCH = 2  # the batch the export fixes


def _outputs(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    count = len(next(iter(feeds.values())))
    return np.concatenate([session.run(None, {k: v[i:i + BATCH] for k, v in feeds.items()})[0]
                           for i in range(0, count, BATCH)])


@pytest.fixture(scope="module")
def peer_sqnr(tmp_path_factory) -> float:
    """Held-out output SQNR of onnxruntime's quantize_static (per channel) on the fixture."""
    target = tmp_path_factory.mktemp("peer") / "peer.onnx"
    outcome = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ort_peer.py"),
                              str(MODEL), str(CALIB), str(target), "--per-channel"],
                             capture_output=True, text=True, timeout=300)
    assert outcome.returncode == 0, outcome.stderr
    with np.load(FIXTURES / "diffusion_unet.test.npz") as test:
        feeds = dict(test)
    return sqnr_db(_outputs(MODEL, feeds), _outputs(target, feeds))


@pytest.mark.parametrize("form", ["qdq", "integer"])
def test_a_diffusers_unet_quantizes_above_quantize_static(tmp_path, capsys, peer_sqnr, form):
    """Every node of the export is declared, so it quantizes with no option; the written
    file runs in onnxruntime at the export's batch and is closer to the float model on
    held-out latents, timesteps and text embeddings than quantize_static's."""
    target = tmp_path / "q.onnx"
    code = main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(target),
                 "--format", form, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    with np.load(FIXTURES / "diffusion_unet.test.npz") as test:
        feeds = dict(test)
    assert sqnr_db(_outputs(MODEL, feeds), _outputs(target, feeds)) > peer_sqnr
