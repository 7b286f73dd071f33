"""Work spread over threads (ptq_verify/engine/parallel.py) gives what one thread gives: the
helper itself, and the smoothing search and the calibration pass that use it, on a committed
torch export of a small BERT (masked sums, smoothing candidates, MatMul weight layers)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ptq_verify.engine import load_model, parallel, quantize
from ptq_verify.engine.smoothed_calibration import smoothed_and_calibrated

FIXTURES = Path(__file__).parent / "fixtures" / "torch"


def test_mapped_keeps_the_items_order_and_their_results():
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(n, 40)) for n in range(5, 60, 7)]
    assert all(np.array_equal(a, b) for a, b in zip(
        parallel.mapped(lambda m: m.T @ m, matrices), [m.T @ m for m in matrices]))


def test_mapped_raises_the_first_failure_in_the_items_order():
    def failing(item: int) -> int:
        if item in (3, 5):
            raise ValueError(f"item {item}")
        return item

    with pytest.raises(ValueError, match="item 3"):
        parallel.mapped(failing, range(8))


def _sums_in_threads(queue) -> None:
    queue.put(parallel.mapped(np.sum, [np.ones(8)] * 4)
              + [parallel.in_background(np.sum, np.ones(8)).result()])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_process_forked_after_the_pool_was_made_has_a_pool_of_its_own(monkeypatch):
    """A library user's worker processes forked from a process that already used the pool
    and the background thread (multiprocessing's default start method on Linux): the
    child's copies of them have no threads, and work given to them would wait forever."""
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    assert parallel.mapped(np.sum, [np.ones(8)] * 4) == [8.0] * 4  # the parent's pool
    assert parallel.in_background(np.sum, np.ones(8)).result() == 8.0
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_sums_in_threads, args=(queue,))
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and queue.get(timeout=5) == [8.0] * 5


def _written(monkeypatch, cores: int) -> tuple[bytes, list[str]]:
    """The tiny BERT with outlier channels (the plain one's random weights take no smoothing)
    smoothed and calibrated with its weight layers in one pass, as the command line does, and
    quantized, on ``cores`` threads (a pool of that many is made for the test: the process's
    pool has the machine's)."""
    monkeypatch.setattr(parallel, "cores", lambda: cores)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)  # its batches are small
    pool = ThreadPoolExecutor(max_workers=cores)
    monkeypatch.setattr(parallel, "_pool", lambda: pool)
    graph = load_model(str(FIXTURES / "tiny_bert_outliers.legacy.opset17.onnx"))
    with np.load(FIXTURES / "tiny_bert.calib.npz") as archive:
        data = {key: archive[key][:48] for key in archive}
    smoothed, calibration = smoothed_and_calibrated(graph, data, 8)
    written = quantize(graph, calibration, 8).to_onnx().SerializeToString()
    return written, [s.describe() for s in smoothed]


def test_threads_write_the_model_one_thread_writes(monkeypatch):
    one, smoothed = _written(monkeypatch, 1)
    assert smoothed, "the export must take smoothing for this test to reach the search"
    assert _written(monkeypatch, 4) == (one, smoothed)
