"""Reading a user's text file within bounds: a regular file, of limited size, UTF-8.

A FIFO would block the reader, a device such as /dev/zero never ends, and a multi-gigabyte
file would fill memory before the parser saw a byte; each is a one-line :class:`UserError`.
"""

from __future__ import annotations

import os

from .errors import UserError
from .input_files import file_kind, require_file


def read_text_file(path: str | os.PathLike, limit: int, what: str = "file") -> str:
    """The text of ``path``; refuses what is not a regular file and files above ``limit``
    bytes (``what`` names the kind of file in the message)."""
    path = require_file(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise UserError(f"{path}: larger than {limit} bytes, too large for a {what}")
    try:  # a byte-order mark first (Windows editors write one) is not part of the text
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        kind = file_kind(data[:16]) or (
            "by its extension an ONNX model" if path.suffix.lower() == ".onnx" else None)
        if kind:  # (the model given as --operators had been 'not UTF-8 text (byte 3)')
            raise UserError(f"{path}: {kind}, not a {what} (UTF-8 text)") from None
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
