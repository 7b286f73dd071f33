"""`ptq-verify report` (not written yet)."""


def register(subparsers) -> None:
    subparsers.add_parser("report", help="(not available yet)")
