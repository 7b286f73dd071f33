"""Certificate files: one JSON file per operator, written deterministically and re-checked.

A certificate file records the declaration it was produced for (name, ONNX type, expression,
inputs, parameters) next to the verdict and the checker version, so that a stale file is
recognised by comparing declarations, without re-running the search. Re-checking a file calls
:func:`ptq_verify.rules.recheck.recheck_certificate`, which never searches either: a proof's
residuals are simplified again, a counterexample's sides evaluated again.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..atomic import output_directory, write_atomic
from ..catalog.grammar import format_expression
from ..catalog.operator import Operator
from ..errors import UserError
from ..input_files import path_mode
from ..rules import CHECKER_VERSION, Verdict, classify
from ..rules.per_channel import per_channel_rule, recheck_per_channel
from ..rules.recheck import recheck_certificate
from ..rules.shift import recheck_shift, shift_rule
from ..textfile import read_text_file

FORMAT_VERSION = 1
_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_DECLARATION_FIELDS = ("operator", "onnx_type", "expression", "inputs", "params")


def declaration_json(op: Operator) -> dict:
    """The fields of ``op``'s declaration that a certificate is bound to."""
    return {
        "operator": op.name,
        "onnx_type": op.onnx_type,
        "expression": format_expression(op.expr),
        "inputs": [{"name": t.name, "elements": list(t.elements)} for t in op.inputs],
        "params": {p: str(v) for p, v in sorted(op.params.items())},
    }


def certificate_json(op: Operator, verdict: Verdict) -> dict:
    """The content of ``op``'s certificate file."""
    return {
        "format": FORMAT_VERSION,
        "checker_version": CHECKER_VERSION,
        **declaration_json(op),
        "verdict": verdict.to_json(),
        "per_channel": per_channel_rule(op, verdict).to_json(),
        "shift": shift_rule(op).to_json(),
    }


def certificate_text(op: Operator, verdict: Verdict | None = None) -> str:
    """Deterministic text (sorted keys, fixed indent) so regenerating yields identical files."""
    verdict = classify(op) if verdict is None else verdict
    return json.dumps(certificate_json(op, verdict), indent=2, sort_keys=True) + "\n"


def certificate_path(directory: str | Path, name: str) -> Path:
    """``<directory>/<name>.json``; refuses names that are not plain file names."""
    if not _SAFE_FILE_NAME.match(name) or name.startswith("."):
        raise UserError(f"operator {name!r}: name is not usable as a file name")
    return Path(directory) / f"{name}.json"


def write_certificates(operators: Iterable[Operator], directory: str | Path) -> list[Path]:
    """Write one certificate per operator; remove certificate files of operators now gone."""
    directory = output_directory(directory)
    written = [
        write_atomic(certificate_path(directory, op.name), certificate_text(op)) for op in operators
    ]
    # a written certificate may be a link (written through): the file it leads to is kept too
    keep = {os.path.realpath(p) for p in written}
    for stale in sorted(directory.glob("*.json")):
        if os.path.realpath(stale) not in keep and _is_certificate(stale):
            stale.unlink()
    return written


def _is_certificate(path: Path) -> bool:
    try:  # through the bounded reader: a FIFO named *.json must not block the report
        content = read_certificate(path)
    except UserError:
        return False
    return "checker_version" in content


MAX_CERTIFICATE_BYTES = 1_000_000
"""Largest certificate file read (the built-in catalog's largest is a few kB)."""


def read_certificate(path: str | Path) -> dict:
    """A certificate file's content; UserError when it is not a certificate."""
    path = Path(path)
    try:
        content = json.loads(read_text_file(path, MAX_CERTIFICATE_BYTES, "certificate"))
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON: {err}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid JSON: nested too deep") from None
    if not isinstance(content, dict) or not isinstance(content.get("verdict"), dict):
        raise UserError(f"{path}: not a certificate (no 'verdict' object)")
    return content


def staleness(op: Operator, certificate: Mapping) -> list[str]:
    """Why ``certificate`` was not produced for ``op`` as declared now (empty if it was).

    Compares declaration fields and the checker version only: deciding whether the verdict
    itself is what the checker would say today needs the search, which this never runs.
    """
    problems = []
    current = declaration_json(op)
    for key in _DECLARATION_FIELDS:
        if certificate.get(key) != current[key]:
            problems.append(f"out of date: {key} is {certificate.get(key)!r}, now {current[key]!r}")
    if certificate.get("checker_version") != CHECKER_VERSION:
        problems.append(
            f"out of date: written by checker version {certificate.get('checker_version')!r}, "
            f"now {CHECKER_VERSION!r}"
        )
    verdict = certificate.get("verdict", {})
    if verdict.get("expression") not in (None, current["expression"]):
        problems.append("the verdict is for another expression than the declaration")
    if verdict.get("name") not in (None, op.name):
        problems.append(f"the verdict is for operator {verdict.get('name')!r}")
    return problems


@dataclass(frozen=True)
class CertificateCheck:
    """The outcome of re-checking one operator's certificate."""

    name: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_certificate(op: Operator, certificate: Mapping) -> CertificateCheck:
    """Declaration match plus an independent re-check of the verdict's certificate."""
    problems = staleness(op, certificate)
    problems += recheck_certificate(op, dict(certificate["verdict"]))
    if not problems:
        try:
            verdict = Verdict.from_json(dict(certificate["verdict"]))
            problems += recheck_per_channel(op, verdict, dict(certificate.get("per_channel", {})))
        except (KeyError, TypeError, ValueError) as err:
            problems.append(f"per_channel: malformed ({err})")
        stored = certificate.get("shift")
        problems += recheck_shift(op, stored) if isinstance(stored, Mapping) else [
            "shift: missing"]
    return CertificateCheck(op.name, tuple(problems))


def check_directory(
    directory: str | Path, operators: Mapping[str, Operator]
) -> list[CertificateCheck]:
    """Re-check every operator's certificate in ``directory``, sorted by name.

    An operator without a file, and a file without an operator, are failures too.
    """
    directory = Path(directory)
    mode = path_mode(directory)
    if mode is None:
        raise UserError(f"{directory}: no such certificate folder")
    if not stat.S_ISDIR(mode):
        raise UserError(f"{directory}: not a folder; give the certificate folder")
    try:  # (glob sees nothing in a folder it may not read: each operator was 'no file')
        names = sorted(entry.name for entry in os.scandir(directory))
    except OSError as err:
        raise UserError(f"{directory}: cannot read ({err.strerror or err})") from None
    files = {Path(name).stem: directory / name for name in names if name.endswith(".json")}
    if not files and (directory / "certificates").is_dir():  # (report -o DIR's own folder)
        raise UserError(f"{directory}: no certificate files here; `report -o` writes them to "
                        f"{directory / 'certificates'}: check that folder")
    if not files:  # (a typo'd folder: each operator had been a failure, 'no certificate file')
        raise UserError(f"{directory}: no certificate files here (<Operator>.json, as `report` "
                        "writes them)")
    results = []
    for name in sorted(set(files) | set(operators)):
        if name not in files:
            results.append(CertificateCheck(name, ("no certificate file",)))
        elif name not in operators:
            results.append(CertificateCheck(name, ("certificate for an unknown operator",)))
        else:
            try:
                certificate = read_certificate(files[name])
            except UserError as err:
                results.append(CertificateCheck(name, (str(err),)))
                continue
            results.append(check_certificate(operators[name], certificate))
    return results
