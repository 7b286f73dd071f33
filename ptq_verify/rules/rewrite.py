"""Rewrites that hold because a factor is positive, which sympy does not apply by itself.

Each rewrite is an identity for c > 0 (proofs/rewrite-rules.md proves them):

    Max(c*a, c*b, ...) = c*Max(a, b, ...)        Min likewise
    (c*u  >  0) <=> (u > 0)                      for every comparison against zero
    Heaviside(c*u) = Heaviside(u)                sign(c*u) = sign(u)

Comparisons are first moved to the form ``lhs - rhs  REL  0``. ``c`` is any product of powers of
symbols that sympy knows to be positive (the scales ``s`` and the sign-split variables ``t_x``).
Nothing here changes the value of an expression, so a residual that simplifies to zero after the
rewrite is zero before it.
"""

from __future__ import annotations

import sympy
from sympy.core.relational import Relational

from ..catalog.grammar import RoundHalfEven, extremum, floor, relation


def positive_factor(expr: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr]:
    """Split ``expr`` into ``(c, rest)`` with ``expr == c*rest`` and c a positive monomial."""
    if expr.is_zero:
        return sympy.S.One, expr
    factored = sympy.factor_terms(expr)
    factors = factored.args if factored.is_Mul else (factored,)
    positive = [f for f in factors if _is_positive_monomial(f)]
    if not positive:
        return sympy.S.One, expr
    c = sympy.Mul(*positive)
    rest = sympy.Mul(*[f for f in factors if not _is_positive_monomial(f)])
    return c, rest


def _is_positive_monomial(factor: sympy.Expr) -> bool:
    base, _ = factor.as_base_exp()
    return bool(base.is_Symbol and base.is_positive)


def _common_positive_factor(args: tuple[sympy.Expr, ...]) -> sympy.Expr:
    """The largest positive monomial dividing every non-zero argument."""
    powers: dict[sympy.Symbol, sympy.Expr] | None = None
    for arg in args:
        if arg.is_zero:
            continue
        c, _ = positive_factor(arg)
        mine = c.as_powers_dict()
        if powers is None:
            powers = dict(mine)
            continue
        common = {}
        for sym, exp in powers.items():
            if sym in mine:
                other = mine[sym]
                if exp.is_number and other.is_number:
                    common[sym] = sympy.Min(exp, other)
        powers = common
    if not powers:
        return sympy.S.One
    return sympy.Mul(*[sym**exp for sym, exp in powers.items()])


def _rewrite_node(node: sympy.Basic) -> sympy.Basic:
    """One rewrite; numbers the factor leaves behind are compared as the parser compares them
    (grammar.relation, grammar.extremum), never by sympy's 2 digits; a Max of numbers they
    cannot order (``max(x*(1 - tanh(150)), 0)`` at x = t) is left as it was, where sympy's
    Max had raised and crashed the checker."""
    if isinstance(node, (sympy.Max, sympy.Min)):
        c = _common_positive_factor(node.args)
        if c != 1:
            try:
                return c * extremum(type(node), *[sympy.expand(a / c) for a in node.args])
            except ValueError:
                return node
        return node
    if isinstance(node, (sympy.Heaviside, sympy.sign)):
        c, rest = positive_factor(node.args[0])
        if c != 1:
            return node.func(rest, *node.args[1:])
        return node
    if isinstance(node, Relational):
        # canonical form "rest REL 0", so that both sides of an identity compare alike
        if node.rhs == 0 and positive_factor(node.lhs)[0] == 1:
            return node
        _, rest = positive_factor(node.lhs - node.rhs)
        return relation(node.func, rest, sympy.S.Zero)
    return node


def rewrite_positive(expr: sympy.Basic) -> sympy.Basic:
    """Apply the positive-factor rewrites bottom-up until nothing changes."""
    for _ in range(4):
        new = _bottom_up(expr)
        if new == expr:
            return new
        expr = new
    return expr


def _bottom_up(expr: sympy.Basic) -> sympy.Basic:
    if not expr.args or expr.is_Atom:
        return expr
    args = tuple(_bottom_up(a) for a in expr.args)
    if args != expr.args:
        expr = expr.func(*args)
    return _rewrite_node(expr)


def zero_residual(residual: sympy.Expr, thorough: bool = True) -> sympy.Expr:
    """Simplify a residual as far as needed to see zero: cheap steps first.

    Returns the simplified residual; it is 0 exactly when the identity was shown. Without
    ``thorough`` the costly general ``simplify`` is skipped (callers try cheaper routes first).
    """
    residual = rewrite_positive(residual)
    if residual == 0:
        return residual
    steps = [
        sympy.expand,
        _fold_piecewise,
        _factor_terms,
        _expand_special,
        sympy.cancel,
        _exponential_form,
        _logarithmic_form,
        _rounding_form,
    ]
    if thorough:
        steps.append(sympy.simplify)
    for step in steps:
        try:
            residual = rewrite_positive(step(residual))
        except (TypeError, ValueError, NotImplementedError, RecursionError):
            continue
        if residual == 0:
            return residual
    return residual


def _fold_piecewise(expr: sympy.Expr) -> sympy.Expr:
    """Move sums and products into Piecewise branches and expand each branch.

    ``s*Piecewise((a, c), (b, True)) - Piecewise((s*a, c), (s*b, True))`` becomes a Piecewise
    whose branches are all 0, which is 0.
    """
    folded = sympy.piecewise_fold(expr)
    if not isinstance(folded, sympy.Piecewise):
        return folded
    branches = []
    for value, condition in folded.args:
        if not any(_implies(condition, earlier) for _, earlier in branches):
            branches.append((sympy.expand(value), condition))
    if all(value == 0 for value, _ in branches):
        return sympy.S.Zero
    return sympy.Piecewise(*branches)


def _implies(condition: sympy.Basic, earlier: sympy.Basic) -> bool:
    """Syntactically: every conjunct of ``earlier`` is a conjunct of ``condition``.

    A branch whose condition implies an earlier branch's is never reached (the earlier one is
    taken first), so dropping it keeps the Piecewise's value.
    """
    if earlier == sympy.true:
        return True
    mine = set(sympy.And.make_args(condition))
    return set(sympy.And.make_args(earlier)) <= mine


def _factor_terms(expr: sympy.Expr) -> sympy.Expr:
    """Pull common factors out of sums everywhere, so sqrt(s**2*a + s**2*b) becomes s*sqrt(a+b)."""
    return sympy.factor_terms(expr.replace(lambda e: e.is_Add, sympy.factor_terms))


def _exponential_form(expr: sympy.Expr) -> sympy.Expr:
    """Hyperbolic functions as exponentials, expanded: cosh(x)**2 - sinh(x)**2 becomes 1."""
    hyperbolic = (sympy.sinh, sympy.cosh, sympy.tanh)
    if not expr.has(*hyperbolic):
        return expr
    return sympy.expand(sympy.powsimp(sympy.expand(expr.rewrite(sympy.exp))))


def _logarithmic_form(expr: sympy.Expr) -> sympy.Expr:
    """Inverse hyperbolic functions as the logs they are on the reals, expanded: asinh(x) -
    log(x + sqrt(x**2 + 1)) becomes 0 (asinh written as a log had stayed undecided)."""
    atoms = expr.atoms(sympy.asinh, sympy.acosh, sympy.atanh)
    if not atoms:
        return expr
    # those atoms alone: rewrite(log) of the whole would turn asin and atan into complex logs
    return sympy.expand(expr.xreplace({atom: atom.rewrite(sympy.log) for atom in atoms}))


def _rounding_form(expr: sympy.Expr) -> sympy.Expr:
    """Each ceiling as the floor it is, ceil(u) = -floor(-u), and a round of a negated
    argument as the negated round (ties go to even, which is symmetric), expanded:
    floor(x) + ceil(-x) and round(x) + round(-x) become 0 (sympy keeps the forms apart)."""
    mapping = {atom: -floor(-atom.args[0]) for atom in expr.atoms(sympy.ceiling)}
    mapping.update({atom: -RoundHalfEven(-atom.args[0]) for atom in expr.atoms(RoundHalfEven)
                    if atom.args[0].could_extract_minus_sign()})
    if not mapping:
        return expr
    # the grammar's floor, as the expression's own floors are (sympy's would not cancel them)
    return sympy.expand(expr.xreplace(mapping))


def _expand_special(expr: sympy.Expr) -> sympy.Expr:
    """Split logs and powers of products where signs allow (expand with positivity known)."""
    return sympy.expand(sympy.expand_log(sympy.powsimp(sympy.expand_power_base(expr))))
