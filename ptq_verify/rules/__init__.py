"""The scaling-rule lattice and the checker that decides an operator's rule.

The lattice and certificate types load at once; the checker (sympy, python-flint) loads on
first use of ``classify``, ``classify_all`` or the constants below, so that a command which
only needs rule names (the CLI's parser), or finds every verdict it needs stored
(``stored_classify``, ``stored_structure``), starts without them.
"""

from importlib import import_module

from .certificate import CHECKER_VERSION, Counterexample, Proof, ProofCase, Verdict
from .lattice import Partition, Rule, RuleKind

_LAZY = {
    "DEFAULT_TIMEOUT": ".decide",
    "MAX_TIMEOUT": ".decide",
    "classify": ".decide",
    "classify_all": ".decide",
    "stored_classify": ".store",
    "stored_structure": ".store",
    "stored_shift_rule": ".store",
    "stored_proved_affine": ".store",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHECKER_VERSION",
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
    "Counterexample",
    "Partition",
    "Proof",
    "ProofCase",
    "Rule",
    "RuleKind",
    "Verdict",
    "classify",
    "classify_all",
    "stored_classify",
    "stored_proved_affine",
    "stored_shift_rule",
    "stored_structure",
]
