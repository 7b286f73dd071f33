"""The facts of a declaration's form (:class:`.structure.Structure`), read off its symbolic
witness with sympy."""

from __future__ import annotations

from functools import cache

import sympy

from ..catalog.grammar import STEP_FUNCTIONS
from ..catalog.operator import Operator
from .structure import Structure

_KINDS = {sympy.Max: "max", sympy.Min: "min"}


def structure(op: Operator) -> Structure:
    """The facts of ``op``'s declaration, computed."""
    elements = frozenset(op.symbols[e] for e in op.element_names)
    params = frozenset(op.symbols[p] for p in op.params)
    return Structure(
        lattice=_lattice(op.expr, elements),
        monotone=_lattice(op.expr, elements, params),
        jumps=_jumps(op.expr, elements, frozenset(
            (op.symbols[p], sympy.Rational(v)) for p, v in op.params.items())),
        sum_coefficients=_sum_coefficients(op),
        names=frozenset(str(s) for s in op.expr.free_symbols),
        integer_coefficients=_integer_coefficients(op),
        selection_steps=_selection_steps(op),
        binary=_binary(op),
        chosen_params=_chosen_params(op.expr, elements, params),
        element_sum=_element_sum(op),
        unit_inputs=_unit_inputs(op),
    )


def _element_sum(op: Operator) -> bool:
    """Whether the witness is a sum of its input elements with constant coefficients >= 0
    and nothing else, with no parameters (:attr:`Structure.element_sum`)."""
    if op.params:
        return False
    symbols = [op.symbols[e] for e in op.element_names]
    coefficients = [sympy.diff(op.expr, s) for s in symbols]
    if any(not c.is_number or not c.is_real or c < 0 for c in coefficients):
        return False
    return sympy.expand(op.expr - sum(c * s for c, s in zip(coefficients, symbols))) == 0


def _lattice(expr: sympy.Basic, elements: frozenset, constants: frozenset = frozenset()) -> bool:
    if expr in elements or expr == 0 or expr in constants or (
            constants and isinstance(expr, sympy.Number) and expr.is_finite):
        return True
    if isinstance(expr, (sympy.Max, sympy.Min)):
        return all(_lattice(arg, elements, constants) for arg in expr.args)
    if isinstance(expr, sympy.Piecewise):
        return all(_lattice(value, elements, constants)
                   and not (condition.free_symbols & elements)
                   for value, condition in expr.args)
    return False


def _chosen_params(expr: sympy.Basic, elements: frozenset, params: frozenset
                   ) -> frozenset[str]:
    """The parameters ``expr`` equals where choices on parameters alone pick them (a
    Piecewise whose conditions hold no element, nested), whatever the elements are."""
    if expr in params:
        return frozenset({str(expr)})
    if isinstance(expr, sympy.Piecewise) and not any(
            condition.free_symbols & elements for _, condition in expr.args):
        return frozenset().union(*(_chosen_params(value, elements, params)
                                   for value, _ in expr.args))
    return frozenset()


@cache
def _jumps(expr: sympy.Basic, elements: frozenset, values: frozenset = frozenset()) -> bool:
    """Whether ``expr`` may be discontinuous in ``elements``, its parameters at ``values``
    ((symbol, number) pairs: the declaration's own) where a quotient's limits decide it."""
    if not expr.free_symbols & elements:
        return False
    if isinstance(expr, STEP_FUNCTIONS):
        return True
    if isinstance(expr, sympy.Piecewise):
        for index, (value, condition) in enumerate(expr.args):
            rest = sympy.Piecewise(*expr.args[index + 1:]) if index + 1 < len(expr.args) else None
            for relation in condition.atoms(sympy.core.relational.Relational):
                if relation.free_symbols & elements and (
                        rest is None or not _meets(value, rest, relation, elements)):
                    return True
    # every divisor inside, not only this product's own: a bounded function of a pole jumps
    # (atan(1/x) is -pi/2 and pi/2 either side of 0, sigmoid(1/x) 0 and 1), which the pole's
    # own product 1/x, infinite on a side, did not show
    divisors = sorted({p.base for p in expr.atoms(sympy.Pow) if p.exp.is_negative}, key=str)
    if divisors:
        at = dict(values)
        if any(_splits(expr.xreplace(at), base.xreplace(at), elements) for base in divisors):
            return True
    return any(_jumps(arg, elements, values) for arg in expr.args)


def _splits(product: sympy.Expr, base: sympy.Expr, elements: frozenset) -> bool:
    """Whether ``product``, which divides by ``base`` somewhere inside, jumps where ``base``
    is 0: a jump written without a step function (``x/abs(x)``, ``max(x, 0)/x``,
    ``atan(1/x)``), whose one-sided limits
    there are finite and differ. A pole (``1/x``, ``x0/x1``: a side infinite) is not a jump
    in this sense: the divisor screen keeps a divisor near 0 in float (engine/quantize.py);
    a removable point (``sin(x)/x``) is not either. Zeros or limits sympy cannot find count
    as a jump. Parameters stand at their declared values (a normalization's eps = 1e-5 keeps
    its divisor above 0; at eps = 0, which no declaration states, it would not). Only zeros
    real wherever the other elements are real are followed: a divisor 0 on a surface that a
    rounding crosses; LpNormalization's norm, 0 at the origin alone (its zeros in x0 are
    imaginary but where x1 = x2 = 0), is not taken as a jump, as before this check."""
    if not base.free_symbols & elements or base.is_zero is False:
        return False
    for element in sorted(base.free_symbols & elements, key=str):
        zeros = _solved(base, element)
        if zeros is None:
            return True
        for zero in zeros:
            if not zero.is_real:  # (the norms' origin: x0 = I*sqrt(x1**2 + x2**2))
                continue
            try:
                above, below = (sympy.limit(product, element, zero, side) for side in "+-")
                if sympy.simplify(above - below) == 0:
                    continue
            except Exception:  # noqa: BLE001 - sympy's limits and simplify raise what
                return True  # they will (an AttributeError inside fu.py): not found, a jump
            if not any(side.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan)
                       for side in (above, below)):
                return True
    return False


def _meets(value: sympy.Expr, rest: sympy.Expr, relation, elements: frozenset) -> bool:
    """Whether two branches agree everywhere on the boundary lhs = rhs of ``relation``."""
    boundary = relation.lhs - relation.rhs
    for element in sorted(boundary.free_symbols & elements, key=str):
        solutions = _solved(boundary, element)
        if solutions is not None and len(solutions) == 1:
            try:  # the branch may not be real on the boundary: max(y, sqrt(1 - x)) at x = 2
                # (where(x > 2, max(y, sqrt(1 - x)), y)) raised out of stored_structure
                gap = (value - rest).xreplace({element: solutions[0]})
                gap = sympy.piecewise_fold(gap)
                return bool(sympy.simplify(gap) == 0)
            except (TypeError, ValueError, ArithmeticError):
                return False  # not shown to meet: a jump
    return False


def _solved(expr: sympy.Expr, element: sympy.Symbol) -> list | None:
    """Every solution of ``expr`` = 0 in ``element`` (sympy's solve), or None where they may
    not be all of them: only a polynomial in the element and its absolute value is solved
    completely. solve gives tan(x) = 1 at pi/4 alone: where(tan(x) > 1, x, pi/4), whose
    branches meet there, and atan((x - pi/4)/(tan(x) - 1)), removable there, had been read
    as continuous, though both jump at 5 pi/4."""
    size = sympy.Dummy(positive=True)  # |element|, a generator of its own: tan(|x|) is none
    try:
        sympy.Poly(expr.xreplace({sympy.Abs(element): size}), element, size)
        return sympy.solve(expr, element, dict=False)
    except (NotImplementedError, TypeError, ValueError, sympy.PolynomialError):
        return None


def _sum_coefficients(op: Operator) -> tuple[float, ...] | None:
    if op.mixes_channels or not op.inputs or any(len(t.elements) != 1 for t in op.inputs):
        return None
    symbols = [op.symbols[t.elements[0]] for t in op.inputs]
    coefficients = [sympy.diff(op.expr, s) for s in symbols]
    if any(not c.is_number or not c.is_real for c in coefficients):
        return None
    rest = sympy.expand(op.expr - sum(c * s for c, s in zip(coefficients, symbols)))
    return tuple(float(c) for c in coefficients) if rest == 0 else None


def _integer_coefficients(op: Operator, expr: sympy.Expr | None = None) -> bool:
    """Whether ``expr`` (the witness if None) is a polynomial with integer coefficients in
    ``op``'s element and parameter names."""
    symbols = [op.symbols[n] for n in (*op.element_names, *op.params)]
    try:
        poly = sympy.Poly(op.expr if expr is None else expr, *symbols)
    except sympy.PolynomialError:
        return False
    return all(c.is_integer for c in poly.coeffs())


def _unit_inputs(op: Operator) -> frozenset[str]:
    """The tensor inputs whose elements, all set to 1, leave an integer polynomial
    (:attr:`Structure.unit_inputs`); none where the witness is one already."""
    if _integer_coefficients(op):
        return frozenset()
    return frozenset(
        tensor.name for tensor in op.inputs
        if _integer_coefficients(op, op.expr.xreplace(
            {op.symbols[e]: sympy.Integer(1) for e in tensor.elements})))


def _selection_steps(op: Operator) -> tuple[tuple[str, str], ...] | None:
    if len(op.element_names) != 1:
        return None
    element = op.symbols[op.element_names[0]]
    steps, current = [], op.expr
    while current != element:
        if type(current) not in _KINDS or len(current.args) != 2:
            return None
        bounds = [a for a in current.args if isinstance(a, sympy.Symbol) and str(a) in op.params]
        rest = [a for a in current.args if a not in bounds]
        if len(bounds) != 1 or len(rest) != 1:
            return None
        steps.append((_KINDS[type(current)], str(bounds[0])))
        current = rest[0]
    return tuple(steps[::-1]) or None


def _binary(op: Operator) -> str | None:
    if len(op.element_names) != 2:
        return None
    elements = [op.symbols[e] for e in op.element_names]
    return next((name for kind, name in _KINDS.items() if op.expr == kind(*elements)), None)
