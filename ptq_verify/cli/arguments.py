"""Types of command-line values that argparse's own ``str``, ``int`` and ``float`` let through.

An empty path (``-o "$OUT"`` with OUT unset) had been taken as no path at all, since the
commands test ``args.output or default``: ``report -o ''`` regenerated the source checkout's
docs/ops instead of writing to the folder the user meant, ``--operators ''`` ran without
declarations and ``--certificates ''`` wrote beside the pages, with no word said. Python's
``int`` and ``float`` read any script's digits (``--bits ٨`` was 8), where ptq-verify's numbers
are ASCII (docs/limits.md). Each type raises argparse's ArgumentTypeError: one line, exit 2,
naming the option.
"""

from __future__ import annotations

import argparse


def path_text(text: str) -> str:
    """A file or folder path as given; an empty one is refused."""
    if text == "":
        raise argparse.ArgumentTypeError(
            "an empty path (an unset shell variable?): give a file or folder path")
    return text


def _ascii(text: str, kind: str) -> str:
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind} in ASCII digits")
    return text


def ascii_int(text: str) -> int:
    """An integer written in ASCII digits."""
    try:
        return int(_ascii(text, "an integer"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def ascii_float(text: str) -> float:
    """A number written in ASCII digits (``nan`` and ``inf`` are read as float reads them;
    the options refuse them by range)."""
    try:
        return float(_ascii(text, "a number"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
