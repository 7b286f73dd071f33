"""A disk cache of verdicts, so a fresh process does not prove the catalog again.

A verdict depends only on the declaration (name, ONNX type, expression, inputs, parameters
and their sample values, domain, channel mixing), the checker's code and the versions of sympy,
python-flint and mpmath; the key is a SHA-256 of all of them (the code by the bytes of
ptq_verify/rules and ptq_verify/catalog/*.py), so any change to a declaration, to the checker
or to the libraries its proofs and certified numbers come from misses the cache and the
checker runs. The expression enters the key as declared (its text, which the
grammar's code, in the key, parses to one expression), so a process whose verdicts are all
stored parses nothing and does not import sympy. Nothing here is a verdict written by hand:
entries are the checker's own output, and ``ptq-verify check-proofs`` re-checks the
committed certificates independently.

The facts the engine reads off a declaration's form (:mod:`.structure`) are kept beside the
verdicts, under the same key, for the same reason.

``ptq-verify classify`` (through ``classify_all``) and the engine (``stored_classify``, for
every node of a model and the derived operators its weights are proved by) read and fill it.

The cache lives in ``$PTQ_VERIFY_CACHE_DIR``, else ``$XDG_CACHE_HOME/ptq-verify``, else
``~/.cache/ptq-verify``, a file per version of the checker's code (:func:`cache_path`). An
unreadable or corrupt cache is ignored; an unwritable one is not written. ``ptq-verify
classify --no-cache`` bypasses it.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import re
import sys
import weakref
from importlib.util import find_spec
from pathlib import Path

from ..atomic import output_directory, write_atomic
from ..catalog.operator import Operator
from ..errors import UserError
from ..textfile import read_text_file
from .certificate import CHECKER_VERSION, Verdict
from .held import TIMEOUT_REASON, known, remember
from .shift_verdict import Shift
from .structure import Structure


def cache_path() -> Path:
    """This code's cache file: one per version of the checker's code, so that a process reads
    only the verdicts it can use. One file for all of them had grown with every version
    (a developer's: 4862 entries, 3.9 MB, 34 ms of every run spent reading it)."""
    return _cache_folder() / f"{_CACHE_PREFIX}{_checker_source_digest()[:16]}.json"


def _cache_folder() -> Path:
    folder = os.environ.get("PTQ_VERIFY_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "ptq-verify"
    return Path(folder)


_CACHE_PREFIX = f"verdicts-{CHECKER_VERSION}-"
KEPT_VERSIONS = 4
"""Cache files of other versions of the code kept beside this one's (the most recently
written; older ones are removed when this one is saved): a few installs side by side keep
theirs, and upgrades do not pile up files."""


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
    expr, domain = op.declared
    declaration = [
        CHECKER_VERSION,
        _checker_source_digest(),
        _library_versions(),
        op.name,
        op.onnx_type,
        ["text", expr] if isinstance(expr, str) else ["sympy", _srepr(expr)],
        [[t.name, list(t.elements)] for t in op.inputs],
        [[p, str(v)] for p, v in op.params.items()],
        [_srepr(c) for c in domain],
        op.mixes_channels,
    ]
    return hashlib.sha256(json.dumps(declaration).encode()).hexdigest()


LIBRARIES = (("sympy", "release.py", "sympy"), ("flint", "__init__.py", "python-flint"),
             ("mpmath", "__init__.py", "mpmath"))
"""(module, file that holds its ``__version__``, distribution) of each library a verdict comes
from: sympy's proofs, python-flint's ball arithmetic that certifies every counterexample, and
mpmath's numbers in the search and the no-rescale evidence."""


@functools.cache
def _library_versions() -> list[str]:
    """The installed release of each of :data:`LIBRARIES`, read off its version file without
    importing it (importing sympy would cost a warm run its start; importlib.metadata's parse
    of the package metadata costs 45 ms, so it is only the fallback): a verdict computed with
    one release is not handed out by another."""
    found = []
    for module, file, distribution in LIBRARIES:
        spec = find_spec(module)
        if spec is None or spec.origin is None:
            found.append(f"no {module}")
            continue
        try:
            text = (Path(spec.origin).parent / file).read_text(encoding="utf-8")
            version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
            release = version.group(1) if version else hashlib.sha256(text.encode()).hexdigest()
        except (OSError, UnicodeDecodeError):
            from importlib.metadata import version as installed

            release = installed(distribution)
        found.append(f"{module} {release}")
    return found


def _srepr(value) -> str:
    """sympy's exact form of an object declared as one (its holder imported sympy)."""
    return sys.modules["sympy"].srepr(value)


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

    def get_fact(self, kind: str, op: Operator, read):
        """A fact of ``kind`` about ``op`` stored beside its verdict, read by ``read`` from
        its JSON; None when absent or unreadable."""
        entry = self.entries.get(f"{kind}:{fingerprint(op)}")
        if entry is None:
            return None
        try:
            return read(entry)
        except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
            return None

    def put_fact(self, kind: str, op: Operator, entry) -> None:
        self.entries[f"{kind}:{fingerprint(op)}"] = entry
        self.changed = True

    def save(self) -> None:
        if not self.changed:
            return
        try:  # as every output: through links, never over what is not a regular file, and
            # no temporary file left on an interrupt (ptq_verify.atomic)
            output_directory(self.path.parent)
            write_atomic(self.path, json.dumps(self.entries))
        except UserError:
            return
        if self.path == cache_path():
            _prune(self.path)


def _prune(current: Path) -> None:
    """Remove the cache files of other versions of the code but the KEPT_VERSIONS most
    recently written: only regular files named as this code names its own (``verdicts-``,
    the checker version, 16 hex digits), whatever else the folder holds."""
    pattern = re.compile(re.escape(_CACHE_PREFIX) + r"[0-9a-f]{16}\.json")
    try:
        others = [path for path in current.parent.iterdir()
                  if path != current and pattern.fullmatch(path.name)
                  and path.is_file() and not path.is_symlink()]
        others.sort(key=lambda path: path.stat().st_mtime, reverse=True)
        for path in others[KEPT_VERSIONS:]:
            path.unlink()
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
    from .decide import classify, timed_out

    verdict = classify(op)
    if not timed_out(verdict):
        store.put(op, verdict)
    return verdict


_facts: dict[str, weakref.WeakKeyDictionary] = {}


def _stored_fact(kind: str, op: Operator, compute, write, read):
    """``compute(op)``, read back from the store when an earlier process computed it for the
    same declaration and code (kept in this process too); ``write``/``read`` turn it into
    JSON and back. None results (time-outs) are not kept."""
    held_here = _facts.setdefault(kind, weakref.WeakKeyDictionary())
    found = held_here.get(op)
    if found is not None:
        return found
    store = _process_store()
    found = store.get_fact(kind, op, read)
    if found is None:
        found = compute(op)
        if found is None:
            return None
        store.put_fact(kind, op, write(found))
    held_here[op] = found
    return found


def stored_structure(op: Operator) -> Structure:
    """The facts of ``op``'s form (:func:`.form.structure`, with sympy), stored."""
    def compute(op: Operator) -> Structure:
        from .form import structure

        return structure(op)

    return _stored_fact("structure", op, compute, Structure.to_json, Structure.from_json)


def stored_shift_rule(op: Operator, through_inputs: bool = True) -> Shift:
    """``op``'s shift rule (:func:`.shift.shift_rule`, with sympy), stored; a time-out is
    computed again in the next process, as for the scaling rule."""
    def compute(op: Operator) -> Shift | None:
        from .shift import shift_rule

        rule = shift_rule(op, through_inputs)
        return None if rule.reason.startswith(TIMEOUT_REASON) else rule

    found = _stored_fact(f"shift-{'inputs' if through_inputs else 'params'}", op, compute,
                         Shift.to_json, lambda data: Shift.from_json(data, through_inputs))
    if found is None:
        from .shift import shift_rule

        return shift_rule(op, through_inputs)
    return found


def stored_proved_affine(op: Operator, tensor: str) -> bool:
    """Whether ``op`` is proved affine in input ``tensor`` (:func:`.shift.proved_affine`),
    stored."""
    def compute(op: Operator) -> bool | None:
        from .shift import proved_affine

        return proved_affine(op, tensor) or None  # "not proved" may be a time-out: not kept

    return _stored_fact(f"affine-{tensor}", op, compute, lambda proved: proved,
                        lambda data: True if data is True else None) or False
