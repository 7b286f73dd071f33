"""Safe outputs: every file the toolkit writes goes through here.

A file is written to a temporary file in the target's folder and renamed into place, so a
failure leaves no half file. A path is refused (one-line :class:`UserError`) when writing there
would damage something: an input of the same run, an existing path that is not a regular file
(a FIFO, a device, a socket: renaming over it would replace it), a folder, or a place that
cannot be written (``/proc/self/mem``, a missing or read-only folder).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import UserError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, *, inputs: Iterable = ()) -> Path:
    """Refuse an output path that is an input, exists as anything but a regular file, or
    lies in a folder that does not exist; return it as a Path. Call it before long work, so
    a bad path is reported before the work is done."""
    if isinstance(path, str) and path.endswith(("/", os.sep)):  # (Path drops the slash)
        raise UserError(f"{path}: names a folder (it ends with {path[-1]!r}); give a file path")
    target = Path(path)
    for source in inputs:
        if source is not None and _same_file(target, Path(source)):
            raise UserError(f"{target}: the output path is an input file; choose another path")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise UserError(f"{target}: cannot write here ({err.strerror or err})") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"{target}: is a directory, expected a file path")
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"{target}: exists and is not a regular file (a FIFO, device or "
                        "socket); choose another path")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UserError(f"{target}: folder {directory} does not exist")
    try:  # the one sure test that the folder takes new files (/proc/self does not)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"{target}: cannot write in {directory} ({err.strerror or err})") from None
    return target


def check_distinct(named_paths: dict[str, str | os.PathLike | None]) -> None:
    """Refuse two outputs of one run at the same path (``--report`` equal to ``-o``)."""
    seen: dict[str, str] = {}
    for option, path in named_paths.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise UserError(f"{path}: {option} and {seen[key]} name the same file; choose "
                            "two paths")
        seen[key] = option


def write_atomic(path: str | os.PathLike, data: bytes | str, *, inputs: Iterable = ()) -> Path:
    """Write ``data`` to ``path`` atomically; refuse the paths :func:`check_output` refuses."""
    target = check_output(path, inputs=inputs)
    directory = target.parent if str(target.parent) else Path(".")
    payload = data.encode() if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"{target}: cannot write in {directory} ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, _file_mode(target))  # mkstemp's 0600 would keep the file from others
        check_output(target, inputs=inputs)  # still safe to replace, just before replacing
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{target}: cannot write ({err.strerror or err})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _file_mode(target: Path) -> int:
    """The mode a file written with open() would get: the replaced file's, or 0666 less the
    umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def output_directory(path: str | os.PathLike) -> Path:
    """Create (if needed) and return a folder for outputs; refuse a path that exists as a
    file or cannot be created."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory}: exists and is not a folder; choose a folder path")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{directory}: cannot create the folder ({err.strerror or err})") from None
    return directory
