"""Safe outputs: every file the toolkit writes goes through here.

A file is written to a temporary file in the target's folder and renamed into place, so a
failure leaves no half file. A path is refused (one-line :class:`UserError`) when writing there
would damage something: an input of the same run, an existing path that is not a regular file
(a FIFO, a device, a socket: renaming over it would replace it), a folder, or a place that
cannot be written (``/proc/self/mem``, a missing or read-only folder).

Links. An output path that is a symbolic link (or lies in a linked folder) is written THROUGH
the link: its links are followed (:func:`resolve`) and the file they lead to is the target,
checked as above, its temporary file made in that file's folder and renamed over it; the link
stays a link, as ``>`` in a shell or ``open(path, "w")`` would leave it. Renaming over the link
itself would replace the link with a regular file (a trial's ``-o out.onnx``, out.onnx a link
to a versioned file; as root ``-o /dev/stdout`` replaced the system's /dev/stdout); refusing
every link would refuse a plain ``current.onnx -> v3.onnx``. A link of /proc (``/dev/stdout``,
``/dev/fd/N``, ``/proc/self/...``) is refused wherever it lies on the way: it stands for an
open file of a process, not a path, and renaming onto what it resolves to would replace a
file the shell opened for appending, or make a file named ``pipe:[N]``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from .errors import UserError

MAX_LINKS = 40
"""Links followed in one path before it is refused (the system's own limit, ELOOP)."""


def _proc_device() -> int | None:
    try:
        return os.stat("/proc").st_dev
    except OSError:
        return None


def resolve(path: str | os.PathLike) -> Path:
    """Where writing ``path`` lands: an absolute path with every link on the way followed (as
    ``os.path.realpath``), the part from the first missing folder on kept as given. Refuses a
    link of /proc on the way (see the module's docstring) and a loop of links."""
    proc = _proc_device()
    resolved = Path.cwd() if not os.path.isabs(path) else Path("/")
    pending = list(Path(path).parts)
    if pending and os.path.isabs(path):
        pending = pending[1:]
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved.parent  # resolved has no link left in it: its parent is real
            continue
        candidate = resolved / part
        try:
            info = os.lstat(candidate)
        except (OSError, ValueError):  # missing, or the system refuses to look: the checks
            return candidate.joinpath(*pending)  # that follow say which, naming the path
        if not stat.S_ISLNK(info.st_mode):
            resolved = candidate
            continue
        if proc is not None and info.st_dev == proc:
            raise UserError(f"{path}: leads through {candidate}, a link of /proc to an open "
                            "file of a process; outputs are written to a temporary file and "
                            "renamed into place: give a file path")
        links += 1
        if links > MAX_LINKS:
            raise UserError(f"{path}: more than {MAX_LINKS} links on the way (a loop of links?)")
        text = os.readlink(candidate)
        if os.path.isabs(text):
            resolved = Path("/")
            pending = list(Path(text).parts[1:]) + pending
        else:
            pending = list(Path(text).parts) + pending
    return resolved


def _label(path: str | os.PathLike, resolved: Path) -> str:
    """``path`` as the user gave it, and where its links lead when they lead elsewhere."""
    given = os.path.normpath(Path.cwd() / path)
    return str(path) if str(resolved) == given else f"{path} (a link to {resolved})"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _refuse_standard_output(path: str | os.PathLike) -> None:
    """``-o -`` wrote a file named '-': no output goes to standard output (a model is
    renamed into place, and the summary goes there), so '-' as given is refused with the way
    to name such a file."""
    if isinstance(path, str) and path == "-":
        raise UserError("-: outputs are written to files, never to standard output; give a "
                        "path (./- for one named '-')")


def check_output(path: str | os.PathLike, *, inputs: Iterable = ()) -> Path:
    """Refuse an output path that is an input, exists as anything but a regular file, or
    lies in a folder that does not exist; return where writing it lands (:func:`resolve`:
    through its links). Call it before long work, so a bad path is reported before the work
    is done."""
    _refuse_standard_output(path)
    if isinstance(path, str) and path.endswith(("/", os.sep)):  # (Path drops the slash)
        raise UserError(f"{path}: names a folder (it ends with {path[-1]!r}); give a file path")
    target = resolve(path)
    name = _label(path, target)
    for source in inputs:
        if source is not None and _same_file(target, Path(source)):
            raise UserError(f"{name}: the output path is an input file; choose another path")
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise UserError(f"{name}: cannot write here ({err.strerror or err})") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"{name}: is a directory, expected a file path")
    if mode is not None and not stat.S_ISREG(mode):
        raise UserError(f"{name}: exists and is not a regular file (a FIFO, device or "
                        "socket); choose another path")
    directory = target.parent
    if not directory.is_dir():
        raise UserError(f"{name}: folder {directory} does not exist")
    try:  # the one sure test that the folder takes new files (/proc/self does not)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"{name}: cannot write in {directory} ({err.strerror or err})") from None
    try:
        os.close(fd)
    finally:
        os.unlink(probe)
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


WRITTEN: list[str] = []
"""The files :func:`write_atomic` has written in this process, as its messages name them: a
command stopped after writing them says so (Ctrl-C while the summary prints)."""


def write_atomic(path: str | os.PathLike, data: bytes | str, *, inputs: Iterable = ()) -> Path:
    """Write ``data`` to ``path`` atomically, through its links; refuse the paths
    :func:`check_output` refuses. Returns ``path`` as given (a Path)."""
    target = check_output(path, inputs=inputs)
    name = _label(path, target)
    directory = target.parent
    # a non-UTF-8 byte of a quoted file name is written as the byte it is, as on stdout
    payload = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"{name}: cannot write in {directory} ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, _file_mode(target))  # mkstemp's 0600 would keep the file from others
        # still safe to replace, just before replacing (and still the same place)
        if check_output(path, inputs=inputs) != target:
            raise UserError(f"{name}: its links changed while it was written; nothing written")
        os.replace(tmp, target)
        WRITTEN.append(name)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{name}: cannot write ({err.strerror or err})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(path)


def _file_mode(target: Path) -> int:
    """The mode a file written with open() would get: the replaced file's, or 0666 less the
    umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def check_directory(path: str | os.PathLike) -> Path:
    """Refuse a path for an output folder that exists as anything but a folder, or that could
    not be created (its nearest existing folder is no folder or cannot be written); return
    where it lands (:func:`resolve`). Nothing is created: a command calls it for each of its
    output folders before any work, so that a bad one is told before anything is written."""
    _refuse_standard_output(path)
    target = resolve(path)
    name = _label(path, target)
    try:
        mode = target.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as err:
        raise UserError(f"{name}: cannot use it as a folder ({err.strerror or err})") from None
    if mode is not None:
        if not stat.S_ISDIR(mode):
            raise UserError(f"{name}: exists and is not a folder; choose a folder path")
        return target
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{name}: cannot create the folder ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{name}: cannot create the folder ({existing} cannot be written)")
    return target


def output_directory(path: str | os.PathLike) -> Path:
    """Create (if needed) and return a folder for outputs, through its links as
    :func:`write_atomic` writes files; refuse what :func:`check_directory` refuses."""
    target = check_directory(path)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{_label(path, target)}: cannot create the folder "
                        f"({err.strerror or err})") from None
    return Path(path)
