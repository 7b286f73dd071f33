"""The ``ptq-verify`` command: a thin layer over the library, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import UserError

# Each module defines ``register(subparsers)``, which adds its subcommand and sets ``run``
# (a function of the parsed arguments returning the exit status) as its default.
SUBCOMMANDS = ("classify", "report", "check_proofs", "audit", "quantize")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptq-verify",
        description="Prove which operators a PTQ pipeline may pass a scaling factor through.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["classify"]:
        from .classify import shield_expression

        argv = shield_expression(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except UserError as err:
        print(f"ptq-verify {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ptq-verify: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
