"""The scaling-rule lattice and the checker that decides an operator's rule."""

from .certificate import Counterexample, Proof, ProofCase, Verdict
from .checker import CHECKER_VERSION
from .decide import DEFAULT_TIMEOUT, classify, classify_all
from .lattice import Rule, RuleKind

__all__ = [
    "CHECKER_VERSION",
    "DEFAULT_TIMEOUT",
    "Counterexample",
    "Proof",
    "ProofCase",
    "Rule",
    "RuleKind",
    "Verdict",
    "classify",
    "classify_all",
]
