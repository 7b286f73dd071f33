"""The ``ptq-verify`` command: a thin layer over the library, one module per subcommand.

Whatever goes wrong, the command ends with ONE line on stderr: a :class:`UserError` (bad input,
exit 2), a usage error found by argparse (exit 2), or an internal error (exit 3, the traceback
only with ``PTQ_VERIFY_TRACEBACK=1``). Stopped by a signal, it ends with one line too: Ctrl-C
(SIGINT) exits 130, SIGTERM and SIGHUP 128 + their number, each after the temporary file of a
write under way is removed (:class:`Terminated`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import signal
import sys
import threading
import traceback
import warnings
from typing import NoReturn

from .. import __version__
from ..atomic import WRITTEN
from ..errors import UserError
from ..report.cells import plain_cell

# Each module defines ``register(subparsers)``, which adds its subcommand and sets ``run``
# (a function of the parsed arguments returning the exit status) as its default.
SUBCOMMANDS = ("classify", "report", "check_proofs", "audit", "quantize")

INTERNAL_ERROR = 3
"""Exit status of a failure that is not the user's input: a bug to report."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the program is, as Ctrl-C raises KeyboardInterrupt: the
    stack unwinds through ``finally`` and ``except BaseException`` blocks, so write_atomic
    removes its temporary file (by default these signals end the process at once and left a
    hidden ``.NAME.XXXX.tmp`` beside the output). Not an Exception: no ``except Exception``
    takes it for an error."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_STOPPING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_owner: int | None = None  # the process whose signals raise Terminated


def _on_signal(signum: int, frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # a second one ends the process at once
    if os.getpid() != _owner:  # a forked process that kept the handler: as by default
        os.kill(os.getpid(), signum)
        return
    raise Terminated(signum)


def _default_in_child() -> None:
    """A process forked while a command runs (multiprocessing's workers) takes the default
    SIGTERM and SIGHUP back: Pool.terminate ends its workers by SIGTERM, and a worker whose
    main thread waits in C (a lock a thread of the parent held at the fork) never runs a
    Python handler, so with the inherited one it would never end and terminate would wait
    for it for ever (a full-suite run hung so in ``ptq-verify classify``)."""
    for signum in _STOPPING:
        if signal.getsignal(signum) is _on_signal:
            with contextlib.suppress(ValueError, OSError):  # (a fork from another thread)
                signal.signal(signum, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_in_child)


@contextlib.contextmanager
def _signals_raise():
    """While the command runs, SIGTERM and SIGHUP raise :class:`Terminated`; a signal ignored
    when the command started (``nohup`` ignores SIGHUP) stays ignored. Only the main thread
    can set handlers: elsewhere (a library caller's thread) nothing changes."""
    global _owner
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _STOPPING:
            handler = signal.getsignal(signum)
            if handler is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, _on_signal)
    _owner = os.getpid()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def one_line(text: object) -> str:
    """``text`` with every line break and run of blanks made one space: messages quote user
    text (expressions, file names, node names) that may hold line breaks. A byte that is not
    UTF-8 (a Linux file name may hold any: Python carries it as a lone surrogate) is shown
    as ``\\xNN``, so that printing the message never fails; any other character that does
    not print (an ANSI escape code in a node name or a file name, which onnx's checker and
    the file checks quote as they are) as repr writes it, so that a message cannot colour
    or clear the terminal."""
    text = str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return plain_cell(" ".join(text.split()))


def _printing_never_fails() -> None:
    """Standard output and error that write a byte of a non-UTF-8 file name as the byte it is
    (as ``ls`` does), instead of raising UnicodeEncodeError after the work is done: Python
    does so by itself under the C locale, not under others (en_US.UTF-8, PYTHONIOENCODING)."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(Exception):
                stream.reconfigure(errors="surrogateescape")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (argparse prints the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)",
              file=sys.stderr)
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """argparse's, but arguments no parser took are the command's error, pointing to
        its own help: argparse leaves them to the top-level parser, whose message named
        no command (``ptq-verify: error: unrecognized arguments: --per-channel (see
        ptq-verify --help)`` for ``ptq-verify quantize ...``, a new-user trial)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self._subcommands().get(getattr(parsed, "command", None) or "", self)
            given = " ".join(extras)  # (a 10,000-character argument is not quoted whole)
            command.error("unrecognized arguments: "
                          + (given if len(given) <= 200 else given[:200] + " ..."))
        return parsed

    def _subcommands(self) -> dict[str, argparse.ArgumentParser]:
        return next((dict(action.choices) for action in self._actions
                     if isinstance(action, argparse._SubParsersAction)), {})


def _written_since(count: int) -> str:
    """The files written after the first ``count`` of :data:`WRITTEN`, for the line of a
    command stopped by a signal: a write under way removes its temporary file, so those
    listed are whole (Ctrl-C while the summary prints had said only "interrupted")."""
    done = one_line(", ".join(WRITTEN[count:]))
    return f" (written in full before: {done})" if done else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ptq-verify",
        description="Prove which operators a PTQ pipeline may pass a scaling factor through.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    _printing_never_fails()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["classify"]:
        from .classify import shield_expression

        argv = shield_expression(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error, already printed on one line
        return int(exit_.code or 0)
    if not getattr(args, "run", None):
        commands = ", ".join(name.replace("_", "-") for name in SUBCOMMANDS)
        print(f"ptq-verify: error: give a command: {commands} (see ptq-verify --help)",
              file=sys.stderr)
        return 2
    where = f"ptq-verify {args.command}"
    written = len(WRITTEN)
    args.command_line = ["ptq-verify", *argv]  # (a report says what wrote it)
    try:
        with warnings.catch_warnings(), _signals_raise():
            # numeric warnings (overflow in exp, 0/0) are expected on hostile data; the
            # results say what went wrong, a warning text would break the one-line promise
            warnings.simplefilter("ignore", RuntimeWarning)
            return int(args.run(args) or 0)
    except UserError as err:
        print(f"{where}: error: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"ptq-verify: interrupted{_written_since(written)}", file=sys.stderr)
        return 130
    except Terminated as stop:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"ptq-verify: stopped by {signal.Signals(stop.signum).name}"
                  f"{_written_since(written)}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:
        return 0
    except Exception as err:  # noqa: BLE001 - the one-line promise holds for bugs too
        if os.environ.get("PTQ_VERIFY_TRACEBACK"):
            traceback.print_exc()
        detail = one_line(err)[:300] or "no message"
        print(f"{where}: internal error: {type(err).__name__}: {detail} (a bug: please "
              "report it; PTQ_VERIFY_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return INTERNAL_ERROR


_FREEZE_AFTER_IMPORTS = False  # set by entry(): this is the console script's process


def imports_done() -> None:
    """Called by a command once its modules are imported: in the console script's process
    (:func:`entry`, which turns the cyclic collector off first), every object so far is
    frozen and the collector turned on. Importing numpy, onnx, onnxruntime and the engine
    makes tens of thousands of objects, and the collector walked them over and over while
    they were made: on the digits CNN's quantize, 242 collections and 49 ms of the
    collector's own time -> 19 and 3 ms (``gc.callbacks``); wall time, median of 40
    interleaved runs on the 2-core AMD EPYC, 0.458 -> 0.439 s (docs/benchmarks-real.md,
    "Quantization speed"). The few garbage cycles the imports leave (423 of the 67,000
    objects) stay until the process ends; what the command makes after this point is
    collected as always. Elsewhere (the tests call :func:`main` in one process; a library
    user's own collector) nothing changes."""
    global _FREEZE_AFTER_IMPORTS
    if _FREEZE_AFTER_IMPORTS:
        _FREEZE_AFTER_IMPORTS = False
        gc.freeze()
        gc.enable()


def entry() -> int:
    """The console script: :func:`main` with the collector off until the command's imports
    are done (:func:`imports_done`), then ``gc.freeze()`` before the interpreter exits.

    At exit CPython collects every generation, walking each object onnx, onnxruntime, numpy
    and the run left alive: 0.03 s of a 0.33 s quantize of the digits CNN (measured on the
    2-core Xeon, docs/benchmarks-real.md, "Quantization speed"). Frozen objects are skipped;
    everything is still freed when the process ends, and nothing the command wrote is open
    by then (outputs are renamed into place before ``run`` returns). Not in :func:`main`,
    which the tests call in one process: there a freeze would keep every test's cycles."""
    global _FREEZE_AFTER_IMPORTS
    _FREEZE_AFTER_IMPORTS = True
    gc.disable()
    try:
        status = main()
    finally:
        gc.enable()  # (a command that stopped before its imports were done)
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(entry())
