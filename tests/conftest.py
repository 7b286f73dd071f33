"""Hypothesis profiles for the whole suite, and the ``--slow`` option that selects the deep one.

``default`` keeps the suite fast (a few dozen examples per property); ``slow`` runs many more
before a release: ``pytest --slow`` or ``HYPOTHESIS_PROFILE=slow pytest``. A test that fixes
its own number of examples scales it with ``depth.examples``, so that --slow deepens it too.
Deadlines are off in both: some examples evaluate an expression at 60 digits, and a slow
example is not a failure. Tests marked ``@pytest.mark.slow`` (the deep fuzz run, slow
reproducers) run only with ``--slow``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from depth import DEFAULT_EXAMPLES, SLOW_EXAMPLES
from hypothesis import settings

settings.register_profile("default", max_examples=DEFAULT_EXAMPLES, deadline=None)
settings.register_profile("slow", max_examples=SLOW_EXAMPLES, deadline=None)


def pytest_addoption(parser):
    parser.addoption(
        "--slow", action="store_true", default=False,
        help="run hypothesis properties with the 'slow' profile (many more examples)",
    )


def pytest_configure(config):
    # the verdict cache of a test run is its own: never read or fill the user's
    os.environ["PTQ_VERIFY_CACHE_DIR"] = tempfile.mkdtemp(prefix="ptq-verify-cache-")
    profile = "slow" if config.getoption("--slow") else os.environ.get("HYPOTHESIS_PROFILE")
    settings.load_profile(profile or "default")
    config.addinivalue_line(
        "markers", "slow: a long test (a deep fuzz run, a slow reproducer), run with --slow"
    )


def pytest_unconfigure(config):
    shutil.rmtree(os.environ.get("PTQ_VERIFY_CACHE_DIR", ""), ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture()
def mlp_files(tmp_path):
    """A folder with a small float model (mlp.onnx) and its calibration data (calib.npy)."""
    import models
    import numpy as np
    import onnx

    model = tmp_path / "mlp.onnx"
    onnx.save(models.mlp("Relu"), model)
    calib = tmp_path / "calib.npy"
    np.save(calib, models.digits(40))
    return tmp_path, model, calib
