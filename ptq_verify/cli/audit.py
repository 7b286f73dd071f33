"""`ptq-verify audit`: every node of an ONNX model with its verdict and the engine's action."""

from __future__ import annotations

import argparse
import json

from .arguments import path_text
from .models import (
    HELP,
    add_float_op_argument,
    add_operators_argument,
    declared_operators,
    resolve_model,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="list every node of an ONNX model with its rule and what the PTQ engine does",
        description=(
            "List every node of the model: name, op type, verdict and the engine's action "
            "(pass the scale through, rescale parameters, align inputs, compensate), then a "
            "summary. Op types outside the catalog are listed by node; the exit status is 0."
        ),
    )
    parser.add_argument("model", type=path_text, help=HELP)
    add_operators_argument(parser)
    add_float_op_argument(parser)
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable output")
    form.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # imported here: building the CLI parser must not load matplotlib or onnx
    from ..graph.ort_runner import quiet_onnxruntime
    from ..report.audit import audit_markdown, audit_model, audit_text
    from . import imports_done

    imports_done()
    quiet_onnxruntime()
    table = declared_operators(args.operators, args.float_op)
    audit = audit_model(resolve_model(args.model)[0], table)
    if args.json:
        print(json.dumps(audit.to_json(), indent=2, sort_keys=True))
    elif args.markdown:
        print(audit_markdown(audit), end="")
    else:
        print(audit_text(audit), end="")
    return 0
