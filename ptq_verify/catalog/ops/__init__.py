"""The built-in operator declarations, one module per family.

Each module lists its operators in a module-level ``OPERATORS`` tuple; the catalog
(:mod:`ptq_verify.catalog`) collects them. Modelling choices that decide a verdict (what is a
parameter, what a constant, how a structural operator is witnessed) are explained in each
declaration's ``doc`` and in docs/catalog.md.
"""

from . import (
    activations,
    arithmetic,
    comparison,
    linear,
    normalization,
    pooling,
    reduction,
    shape,
    unary,
)

FAMILIES = (
    activations, unary, arithmetic, comparison, linear, pooling, reduction, normalization, shape
)
