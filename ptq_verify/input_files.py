"""Input paths a user gives: a regular file, or one line saying why not.

A FIFO would block the reader and a device such as /dev/zero never ends, so what is not a
regular file is refused before anything opens it. ``Path.is_file()`` itself raises for a name
the system refuses (a component over 255 bytes) or a folder it may not search (EACCES): those
are the user's paths too, so they get the same one line, not an internal error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UserError


def path_mode(path: str | os.PathLike) -> int | None:
    """``path``'s file mode, or None when nothing is there; a UserError when the system
    refuses to look (the name too long, no permission, a loop of links)."""
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:  # a NUL byte in the name
        raise UserError(f"{path}: not a usable path ({err})") from None


def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path when it is a regular file; else a UserError naming it and saying
    what it is instead (``what``: the kind of file, for "no such model file")."""
    mode = path_mode(path)
    if mode is None:
        if os.path.islink(path):
            raise UserError(f"{path}: a symbolic link to {os.readlink(path)!r}, which does "
                            "not exist")
        raise UserError(f"{path}: no such {what}")
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: a folder, not a {what}")
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: not a regular file")
    return Path(path)


def not_utf8_at(text: str) -> tuple[int, str] | None:
    """The position and name ("byte 0xff", "U+D800") of the first character of ``text`` that
    is not UTF-8, or None. Python carries a byte of a command-line argument or file name that
    is not UTF-8 as a lone surrogate (U+DC80-U+DCFF)."""
    for offset, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            code = ord(char)
            return offset, (f"byte 0x{code - 0xDC00:02x}" if code >= 0xDC80 else f"U+{code:04X}")
    return None


def torch_archive(member_names: list[str]) -> str | None:
    """What torch wrote a zip as, by its members, or None: a newcomer gives one as the model
    or as the calibration data, and each refusal says what it is. ``torch.export.save``'s
    program (.pt2: ``name/archive_format``) had been 'Wire format was corrupt' as a model and
    an .npz whose member is not an .npy array as data; a TorchScript model (``torch.jit.save``:
    ``name/code/`` beside its pickles) is a model, not a checkpoint; ``torch.save``'s file
    (its default since torch 1.6) holds ``name/data.pkl`` beside the tensors' storages."""
    if any(name.endswith("/archive_format") for name in member_names):
        return "a torch.export program (torch.export.save, .pt2)"
    if not any(name.endswith("/data.pkl") for name in member_names):
        return None
    if any("/code/" in name for name in member_names):
        return "a TorchScript model (torch.jit.save)"
    return "a torch.save file (a checkpoint or tensors)"


_SIGNATURES = ((0, b"\x89PNG", "a PNG image"), (0, b"\xff\xd8\xff", "a JPEG image"),
               (0, b"GIF8", "a GIF image"), (0, b"BM", "a BMP image"),
               (0, b"RIFF", "a RIFF file (WAV, WebP)"), (0, b"\x80", "a pickle (torch.save?)"),
               (0, b"\x89HDF\r\n\x1a\n", "an HDF5 file (h5py, a Keras .h5 model)"),
               (4, b"TFL3", "a TensorFlow Lite model"), (0, b"GGUF", "a GGUF file (llama.cpp)"))
"""(offset, leading bytes, what) of files people hold their data and models in, to say what
a file is that is neither .npy nor ONNX: numpy's words ('the magic string is not correct') and
protobuf's ('Wire format was corrupt') name none of them."""


def file_kind(start: bytes) -> str | None:
    """What a file is by its first bytes (``start``: 16 of them at least), or None."""
    return next((name for at, magic, name in _SIGNATURES
                 if start[at:at + len(magic)] == magic), None)
