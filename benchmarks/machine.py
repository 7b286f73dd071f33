"""Describe the machine and software a benchmark ran on, so a recorded table can be reproduced."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("ptq-verify", "numpy", "onnx", "onnxruntime", "torch", "scikit-learn", "sympy")


def cpu_model() -> str:
    """The CPU's model name as lscpu reports it (falls back to the platform string)."""
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in listing.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name":
            return value.strip()
    return platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def source_commit() -> str:
    """The git commit of the checkout the benchmark ran from, "+ changes" when it is dirty."""
    folder = Path(__file__).resolve().parent
    try:
        commit = _git(folder, "rev-parse", "--short", "HEAD")
        dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if dirty else "")


def _git(folder: Path, *args: str) -> str:
    command = ["git", "-C", str(folder), *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def describe() -> list[str]:
    """One line per fact: CPU, cores, OS, Python, package versions and the source commit."""
    packages = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores",
        f"OS: {platform.system()} {platform.release()}",
        f"Python {platform.python_version()}; {packages}",
        f"ptq-verify source: commit {source_commit()}",
    ]
