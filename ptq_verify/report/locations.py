"""Where the project's own generated files live: the source checkout the package runs from.

``ptq-verify report`` without ``-o`` regenerates the checkout's ``docs/ops`` and
``proofs/certificates``, and ``ptq-verify check-proofs`` without a folder re-checks the checkout's
certificates, from whatever folder the command runs in: the current folder is never written or
read by accident. A package installed without its checkout (a wheel) has none of these files;
those commands then ask for a folder, and pages written elsewhere name the proofs without links.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError

PAGES = "docs/ops"
CERTIFICATES = "proofs/certificates"
PROOFS = "proofs"


def checkout() -> Path | None:
    """The source tree this package was imported from (an editable install), if any."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / PROOFS).is_dir():
        return root
    return None


def project_path(relative: str, option: str) -> Path:
    """``relative`` inside the checkout; a UserError naming ``option`` when there is none."""
    root = checkout()
    if root is None:
        raise UserError(
            f"no {relative} here: ptq-verify is installed without its source checkout; "
            f"give the folder with {option}"
        )
    return root / relative


def proofs_link(directory: str | Path) -> str | None:
    """The relative link from pages in ``directory`` to the checkout's proofs, or None."""
    root = checkout()
    if root is None:
        return None
    return Path(os.path.relpath(root / PROOFS, Path(directory).resolve())).as_posix()
