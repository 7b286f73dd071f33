"""`ptq-verify quantize` (not written yet)."""


def register(subparsers) -> None:
    subparsers.add_parser("quantize", help="(not available yet)")
