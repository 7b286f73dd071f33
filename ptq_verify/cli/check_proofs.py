"""`ptq-verify check-proofs`: re-verify committed certificates without running the search."""

from __future__ import annotations

import argparse

from .arguments import path_text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "check-proofs",
        help="re-check every certificate file (proof residuals, counterexample values)",
        description=(
            "Re-check each operator's certificate independently of the search that found it, "
            "and report certificates whose declaration no longer matches the operator. "
            "Exit status 1 if any certificate fails."
        ),
    )
    parser.add_argument(
        "directory",
        nargs="?",
        type=path_text,
        help="folder of <Operator>.json certificates (default: the built-in catalog's, "
        "proofs/certificates of the source checkout, from any current folder)",
    )
    parser.add_argument(
        "--file", type=path_text,
        help="check certificates of the operators declared in this TOML file"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # imported here: building the CLI parser must not load matplotlib or onnx
    from ..errors import UserError
    from ..report.cells import plain_cell
    from ..report.certificates import check_directory
    from ..report.locations import CERTIFICATES, project_path
    from ..report.sources import operators_from
    from . import imports_done

    imports_done()
    if args.file and not args.directory:
        raise UserError(f"{args.file}: give the folder of its certificates")
    directory = args.directory or project_path(CERTIFICATES, "check-proofs DIR")
    operators = operators_from(args.file)
    if not args.file:
        _require_catalog_certificates(directory, operators)
    results = check_directory(directory, operators)
    for result in results:
        status = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)
        # (a certificate's name and problems quote the file: escaped as table cells are)
        print(plain_cell(f"{result.name}: {status}"), flush=True)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} of {len(results)} certificates re-check")
    return 1 if failed else 0


def _require_catalog_certificates(directory, operators) -> None:
    """Refuse, in one line, a folder whose certificates are all of operators the built-in
    catalog does not declare (a newcomer's ``report --file ops.toml -o DIR``): without
    ``--file`` each catalog operator was a line 'no certificate file', and each of the folder's
    one 'certificate for an unknown operator', 143 lines for 7 certificates."""
    from pathlib import Path

    from ..errors import UserError
    from ..wording import first_few

    names = sorted(p.stem for p in Path(directory).glob("*.json"))
    if names and not set(names) & set(operators):
        raise UserError(f"{directory}: its {len(names)} certificate(s) ({first_few(names)}) "
                        "are of "
                        "operators the built-in catalog does not declare: give their "
                        "declarations with --file OPS.toml")
