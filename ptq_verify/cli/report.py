"""`ptq-verify report`: operator pages with plots, and the certificate files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..wording import counted
from .arguments import path_text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write one page (and plot) per operator and the certificate files",
        description=(
            "Without -o: regenerate docs/ops and proofs/certificates of the source checkout "
            "for the built-in catalog, whatever the current folder. With -o DIR: the pages in "
            "DIR and the certificates in DIR/certificates (or where --certificates says)."
        ),
    )
    parser.add_argument("-o", "--output", type=path_text,
                        help="folder for the pages (default: the checkout's docs/ops)")
    parser.add_argument(
        "--certificates", type=path_text,
        help="folder for the certificate files (default: the checkout's proofs/certificates, "
        "or DIR/certificates with -o DIR)",
    )
    parser.add_argument("--file", type=path_text,
                        help="report the operators declared in this TOML file")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # imported here: building the CLI parser must not load matplotlib or onnx
    from ..report.cells import plain_path
    from ..report.certificates import write_certificates
    from ..report.locations import CERTIFICATES, PAGES, project_path
    from ..report.pages import write_pages
    from ..report.sources import operators_from
    from . import imports_done

    imports_done()
    if args.file and not args.output:
        raise UserError(f"{args.file}: choose a folder for its pages with -o DIR")
    operators = list(operators_from(args.file).values())
    if not operators:
        raise UserError(f"{args.file}: declares no operator")
    pages = args.output or project_path(PAGES, "-o DIR")
    if args.certificates:
        certificates = args.certificates
    elif args.output:
        certificates = Path(pages) / "certificates"
    else:
        certificates = project_path(CERTIFICATES, "--certificates DIR")
    _check_outputs(operators, pages, certificates, plots=not args.no_plots)
    pages = Path(pages)
    title = f"Operators of {args.file}" if args.file else "Operators"
    written = write_pages(operators, pages, plots=not args.no_plots, title=title,
                          progress=not args.no_progress)
    print(f"wrote {counted(len(written), 'file')} ({counted(len(operators), 'operator')}) "
          f"to {plain_path(pages)}")
    write_certificates(operators, certificates)
    print(f"wrote {counted(len(operators), 'certificate')} to {plain_path(certificates)}")
    return 0


def _check_outputs(operators, pages, certificates, *, plots: bool) -> None:
    """Refuse, before anything is written, an output folder that cannot be one and a file in
    an existing output folder that cannot be replaced (a FIFO named Relu.md): a trial's
    ``--certificates ops.toml`` was refused after the pages had been written."""
    from ..atomic import check_directory, check_output
    from ..report.certificates import certificate_path
    from ..report.pages import INDEX_PAGE, page_path, plot_path

    for folder in (pages, certificates):
        check_directory(folder)
    files = [Path(pages) / INDEX_PAGE]
    for op in operators:
        page = page_path(pages, op.name)
        files += [page, plot_path(page)] if plots else [page]
        files.append(certificate_path(certificates, op.name))
    for path in files:
        if path.parent.is_dir():
            check_output(path)
