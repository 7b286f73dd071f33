"""The installed ``ptq-verify`` console script, as a user's shell finds it after the install."""

from __future__ import annotations

import sysconfig
from importlib.metadata import entry_points
from pathlib import Path


def console_script() -> str:
    """The path of the ``ptq-verify`` entry point of this environment; fails (never skips)
    when the package was not installed as the README says."""
    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "ptq-verify"]
    assert entry.value == "ptq_verify.cli:entry"
    path = Path(sysconfig.get_path("scripts")) / "ptq-verify"
    assert path.is_file(), f"{path}: no console script; install with pip install -e '.[dev]'"
    return str(path)
