"""Equivalent forms of an operator's expression, for testing that a verdict does not depend on
how the function is written.

Each form is built by sympy transformations of the declaration's own expression (never by
parsing text) and equals it at every point of the domain. Forms identical to the original, or
to an earlier form, are dropped: sympy's automatic evaluation undoes many rewrites
(``(x + x)/2`` is ``x`` again), and a form the checker has already seen tests nothing. So are
forms the grammar cannot write (``I`` from rewriting sin as exp, ``ITE`` conditions): no user
could declare them.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from ptq_verify.catalog.grammar import format_expression
from ptq_verify.catalog.operator import Operator


def sign_split(op: Operator) -> Callable[[sympy.Expr], sympy.Expr]:
    """f(x) = f(|x|) where x >= 0, f(-|x|) elsewhere: the same function with a case split on
    the sign of the first element, which a checker must see through."""
    x = op.symbols[op.element_names[0]]

    def split(expr: sympy.Expr) -> sympy.Expr:
        return sympy.Piecewise(
            (expr.xreplace({x: sympy.Abs(x)}), x >= 0), (expr.xreplace({x: -sympy.Abs(x)}), True)
        )

    return split


def _transformations(op: Operator) -> list[tuple[str, Callable[[sympy.Expr], sympy.Expr]]]:
    return [
        ("max/min/abs/steps as Piecewise", lambda e: e.rewrite(sympy.Piecewise)),
        ("expanded", sympy.expand),
        ("hyperbolic functions as exp",
         lambda e: e.rewrite([sympy.tanh, sympy.sinh, sympy.cosh], sympy.exp)),
        ("over a common denominator", sympy.together),
        (f"split on the sign of {op.element_names[0]}", sign_split(op)),
    ]


def equivalent_forms(op: Operator, limit: int = 3) -> list[tuple[str, sympy.Expr]]:
    """Up to ``limit`` forms of ``op.expr`` that differ from it and from each other, each with
    a label saying how it was obtained."""
    forms: list[tuple[str, sympy.Expr]] = []
    seen = {op.expr}
    for label, transform in _transformations(op):
        form = transform(op.expr)
        if form in seen or not _writable(form):
            continue
        seen.add(form)
        forms.append((label, form))
        if len(forms) == limit:
            break
    return forms


def _writable(form: sympy.Basic) -> bool:
    try:
        format_expression(form)
    except ValueError:
        return False
    return not form.has(sympy.I)


def redeclare(op: Operator, label: str, expr: sympy.Expr) -> Operator:
    """The same operator (inputs, parameters, domain) with another expression."""
    return Operator(
        f"{op.name} [{label}]",
        [list(t.elements) for t in op.inputs],
        expr,
        params=dict(op.params),
        domain=op.domain,
        mixes_channels=op.mixes_channels,
    )
