"""Write outputs through a temporary file renamed into place, so a failure leaves no half file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError


def write_atomic(path: str | os.PathLike, data: bytes | str, *, inputs: tuple = ()) -> Path:
    """Write ``data`` to ``path`` atomically; refuse to overwrite any of ``inputs``."""
    target = Path(path)
    for source in inputs:
        if Path(source).exists() and target.exists() and target.samefile(source):
            raise UserError(f"{target}: the output path is an input file; choose another path")
    if target.is_dir():
        raise UserError(f"{target}: is a directory, expected a file path")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"{target}: folder {directory} does not exist")
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
