"""Text read from a model (node and tensor names, op types) made fit for one table cell.

ONNX allows any string as a name, line breaks included (a converter's "enc|gru\nlayer 1"):
printed as it is, a name split its table row over two lines, and a ``|`` a Markdown row
into more cells, and an ANSI escape code in a name coloured the terminal. Error messages
quote names with repr; a table cell, a note and a summary line write the same escapes
without the quotes."""

from __future__ import annotations


def plain_cell(text: str) -> str:
    """``text`` on one line: each character that does not print (a line break, a tab, a
    control character) written as its escape, as repr writes it."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def plain_path(path: object) -> str:
    """A file name as given on the command line, for standard output: each control or format
    character escaped as :func:`plain_cell` escapes it (an ``-o`` name holding a line break
    and an ANSI colour code had split the summary line and coloured the terminal), a byte
    that is not UTF-8 kept as the byte it is (as ``ls`` prints it, docs/limits.md)."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or "\udc80" <= c <= "\udcff" else _escape(c)
                   for c in text)


def _escape(char: str) -> str:
    if "\udc80" <= char <= "\udcff":  # a byte of the command line that is not UTF-8
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


def markdown_cell(text: str) -> str:
    """:func:`plain_cell`, with ``|`` escaped for a Markdown table."""
    return plain_cell(text).replace("|", "\\|")
