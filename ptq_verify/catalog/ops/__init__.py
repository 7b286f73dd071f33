"""The built-in operator declarations, one module per family.

Each module lists its operators in a module-level ``OPERATORS`` tuple; the catalog
(:mod:`ptq_verify.catalog`) collects them. Modelling choices that decide a verdict (what is a
parameter, what a constant, how a structural operator is witnessed) are explained in each
declaration's ``doc`` and in docs/catalog.md.

Families are imported on first use (:func:`families`): looking up one operator by name builds
its family only, which keeps ``ptq-verify classify --op NAME`` quick to start.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

FAMILY_NAMES = (
    "activations", "unary", "arithmetic", "comparison", "linear", "pooling", "reduction",
    "normalization", "shape",
)


def families() -> Iterator[ModuleType]:
    """The family modules, in catalog order, each imported (its operators built, their
    expressions parsed on first use: :func:`~ptq_verify.catalog.operator.deferred_parsing`)
    when reached."""
    from ..operator import deferred_parsing

    for name in FAMILY_NAMES:
        with deferred_parsing():
            module = importlib.import_module(f"{__name__}.{name}")
        yield module
