"""`ptq-verify report`: operator pages with plots, and the certificate files."""

from __future__ import annotations

import argparse

from ..errors import UserError

DEFAULT_PAGES = "docs/ops"
DEFAULT_CERTIFICATES = "proofs/certificates"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write one page (and plot) per operator and the certificate files",
        description=(
            f"Without options: regenerate {DEFAULT_PAGES} and {DEFAULT_CERTIFICATES} for the "
            "built-in catalog (run from the project folder). With -o: write the pages to that "
            "folder, and certificates only where --certificates says."
        ),
    )
    parser.add_argument("-o", "--output", help=f"folder for the pages (default {DEFAULT_PAGES})")
    parser.add_argument(
        "--certificates",
        help=f"folder for the certificate files (default {DEFAULT_CERTIFICATES} without -o)",
    )
    parser.add_argument("--file", help="report the operators declared in this TOML file")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # imported here: building the CLI parser must not load matplotlib or onnx
    from ..report.certificates import write_certificates
    from ..report.pages import write_pages
    from ..report.sources import operators_from

    if args.file and not args.output:
        raise UserError(f"{args.file}: choose a folder for its pages with -o DIR")
    operators = list(operators_from(args.file).values())
    if not operators:
        raise UserError(f"{args.file}: declares no operator")
    pages = args.output or DEFAULT_PAGES
    certificates = args.certificates or (None if args.output else DEFAULT_CERTIFICATES)
    title = f"Operators of {args.file}" if args.file else "Operators"
    written = write_pages(operators, pages, plots=not args.no_plots, title=title)
    print(f"wrote {len(written)} files ({len(operators)} operators) to {pages}")
    if certificates:
        write_certificates(operators, certificates)
        print(f"wrote {len(operators)} certificates to {certificates}")
    return 0
