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


class Once(argparse.Action):
    """An option given at most once (``hint``: how to give all it stands for in one): argparse
    keeps the last of several in silence, and a second ``--operators`` file or ``--inputs``
    list had quietly replaced the first."""

    def __init__(self, *args, hint: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hint = hint

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if getattr(namespace, f"_{self.dest}_given", False):
            raise argparse.ArgumentError(
                self, f"given twice ({getattr(namespace, self.dest)!r} and {values!r}): "
                f"give it once{', ' + self.hint if self.hint else ''}")
        setattr(namespace, f"_{self.dest}_given", True)
        setattr(namespace, self.dest, values)


class Joined(argparse.Action):
    """An option whose values add up when it is given several times, joined by commas as
    one value would hold them: ``--params a=2 --params b=3`` is ``--params a=2,b=3`` (it had
    kept b=3 alone, and a took the sample value 1 with no word said)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        known = getattr(namespace, f"_{self.dest}_given", False)
        setattr(namespace, self.dest, f"{getattr(namespace, self.dest)},{values}" if known
                else values)
        setattr(namespace, f"_{self.dest}_given", True)
