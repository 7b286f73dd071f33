"""`ptq-verify check-proofs` (not written yet)."""


def register(subparsers) -> None:
    subparsers.add_parser("check-proofs", help="(not available yet)")
