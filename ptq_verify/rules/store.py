"""A disk cache of verdicts, so a fresh process does not prove the catalog again.

A verdict depends only on the declaration (name, ONNX type, expression, inputs, parameters
and their sample values, domain), the checker's code and sympy's version; the key is a SHA-256
of all of them (the code by the bytes of ptq_verify/rules and ptq_verify/catalog/*.py), so any
change to a declaration or to the checker misses the cache and the checker runs. Nothing
here is a verdict written by hand: entries are the checker's own
output, and ``ptq-verify check-proofs`` re-checks the committed certificates independently.

``ptq-verify classify`` (through ``classify_all``) and the engine (``stored_classify``, for
every node of a model and the derived operators its weights are proved by) read and fill it.

The cache lives in ``$PTQ_VERIFY_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptq-verify``, else
``~/.cache/ptq-verify``. An unreadable or corrupt cache is ignored; an unwritable one is not
written. ``ptq-verify classify --no-cache`` bypasses it.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path

import sympy

from ..catalog.operator import Operator
from ..errors import UserError
from ..textfile import read_text_file
from .certificate import Verdict
from .checker import CHECKER_VERSION
from .decide import classify, known, remember, timed_out


def cache_path() -> Path:
    folder = os.environ.get("PTQ_VERIFY_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "ptq-verify"
    return Path(folder) / f"verdicts-{CHECKER_VERSION}.json"


@functools.cache
def _checker_source_digest() -> str:
    """A hash of the code verdicts come from, so editing the checker empties the cache."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*package.glob("rules/*.py"), *package.glob("catalog/*.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(op: Operator) -> str:
    """Everything a verdict depends on, hashed."""
    declaration = [
        CHECKER_VERSION,
        _checker_source_digest(),
        sympy.__version__,
        op.name,
        op.onnx_type,
        sympy.srepr(op.expr),
        [[t.name, list(t.elements)] for t in op.inputs],
        [[p, str(v)] for p, v in op.params.items()],
        [sympy.srepr(c) for c in op.domain],
    ]
    return hashlib.sha256(json.dumps(declaration).encode()).hexdigest()


MAX_CACHE_BYTES = 64 * 2**20
"""A larger cache file is ignored (the catalog's verdicts take about 1 MB)."""


class VerdictStore:
    """Verdicts by fingerprint, read once and written back when something was added."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_path()
        self.entries: dict[str, dict] = {}
        self.changed = False
        try:
            # bounded: $PTQ_VERIFY_CACHE_DIR may point anywhere, a FIFO or /dev/zero included
            text = read_text_file(self.path, MAX_CACHE_BYTES, "verdict cache")
            data = json.loads(text)
            if isinstance(data, dict):
                self.entries = data
        except (UserError, ValueError, RecursionError):
            pass

    def get(self, op: Operator) -> Verdict | None:
        entry = self.entries.get(fingerprint(op))
        if entry is None:
            return None
        try:
            return Verdict.from_json(entry)
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, op: Operator, verdict: Verdict) -> None:
        self.entries[fingerprint(op)] = verdict.to_json()
        self.changed = True

    def save(self) -> None:
        if not self.changed or (self.path.exists() and not self.path.is_file()):
            return  # never replace what is not our regular file
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.entries, handle)
            os.replace(tmp, self.path)
        except OSError:
            pass


@functools.cache
def _process_store() -> VerdictStore:
    """The store of this process, read on first use and written back once at exit."""
    store = VerdictStore()
    atexit.register(store.save)
    return store


def stored_classify(op: Operator) -> Verdict:
    """``classify(op)``, reading a verdict an earlier process proved for the same declaration,
    checker code and sympy version from the disk cache (exactly as ``ptq-verify classify``
    does) and storing a newly proved one (never a time-out)."""
    verdict = known(op)
    if verdict is not None:
        return verdict
    store = _process_store()
    verdict = store.get(op)
    if verdict is not None:
        remember(op, verdict)
        return verdict
    verdict = classify(op)
    if not timed_out(verdict):
        store.put(op, verdict)
    return verdict
