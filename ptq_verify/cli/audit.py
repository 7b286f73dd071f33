"""`ptq-verify audit` (not written yet)."""


def register(subparsers) -> None:
    subparsers.add_parser("audit", help="(not available yet)")
