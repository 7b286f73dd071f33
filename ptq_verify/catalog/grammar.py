"""The safe expression grammar: text from users and files -> sympy, without evaluating the text.

Operator declarations, the command line (``ptq-verify classify "x/(1+exp(-x))"``) and the
certificate files all carry formulas as text. Handing such text to ``eval`` or
``sympy.sympify`` runs arbitrary code, so this module parses it with Python's ``ast`` module and
builds the sympy expression itself from an explicit whitelist of node types and function names.
Anything else is rejected with a one-line message naming the offending token and its column.

Decimal literals become exact rationals read from the literal's text (``0.1`` is 1/10, not the
binary float nearest to it), so a proof about the declared operator is a proof about the
numbers the user wrote.

sympy constructors silently cancel partial operations (``x**2/x`` becomes ``x``,
``exp(log(x))`` becomes ``x``), which would let the checker prove a rule at points where the
written operator is undefined. The parser therefore records, while it builds, the condition
each partial operation needs (``x != 0``, ``x > 0``) in :attr:`ParsedExpression.domain`.

:func:`format_expression` prints a sympy expression back in the same grammar, so that
certificates written as text re-parse to the very same expression.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import sympy

from ..input_files import not_utf8_at
from .literals import MAX_LITERAL_EXPONENT, MAX_NUMBER, NUMBER_TEXT

MAX_LENGTH = 10_000
"""Longest expression text accepted, in characters."""

MAX_DEPTH = 100
"""Deepest nesting accepted (a chain ``a + b + c`` or ``a * b / c`` counts as one level)."""

MAX_CALL_DEPTH = 12
"""Deepest nesting of function calls (``exp(exp(x))`` is 2): each level multiplies the work
of the checker's case splits and exact evaluations."""

MAX_NODES = 2_000
"""Most syntax nodes (names, numbers, operators, calls) in one expression."""

MAX_NAMES = 64
"""Most distinct variable names in one expression (a witness of 64 elements is plenty)."""

MAX_ARGS = 64
"""Most arguments of one ``max``/``min`` call."""

MAX_EXPONENT = 100
"""Largest size of a numeric exponent of a base that is not a rational number (``x**100``,
``sqrt(2)**100``): sympy expands such powers (``(x+y+1)**1000`` has half a million terms).
Rational bases are bounded by the size of the result instead (``2**3000``)."""

MAX_EXPONENT_DENOMINATOR = 10**12
"""Largest denominator of a rational exponent (``abs(x)**0.333333`` is 333333/10^6,
``x**(1 + 1e-12)`` has 10^12): roots stay symbolic in sympy, so only absurd ones
(``x**(1/10**1000)``) are refused."""



class ExpressionError(ValueError):
    """Expression text outside the grammar; the message is one line naming the token and column."""


@dataclass(frozen=True)
class ParsedExpression:
    """A parsed expression.

    Attributes:
        expr: the sympy expression (symbols are real unless the caller supplied others).
        domain: conditions (sympy relations) the written expression needs to be defined,
            recorded before sympy could cancel them away.
        names: the variable names written in the text, in order of first appearance.
    """

    expr: sympy.Expr
    domain: tuple[sympy.Basic, ...]
    names: tuple[str, ...]


def position_text(text: str, offset: int) -> str:
    """``column N`` (1-based) of a character offset, ``line L, column C`` in text of several
    lines: how every message on an expression says where."""
    if "\n" not in text:
        return f"column {offset + 1}"
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def name_offset(text: str, name: str) -> int | None:
    """The character offset where ``name`` is first written in ``text`` as a whole name (not
    inside a longer one, ``b`` in ``beta``); None where it is not written."""
    found = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    return None if found is None else found.start()


class _DecidedOnRationals:
    """Mixin for a rounding function (floor, ceiling) that evaluates only a rational
    argument, where the result is exact.

    sympy evaluates ``floor(u)`` of any number ``u`` at a working precision and gets the wrong
    side of an integer when ``u`` lies closer to it than that precision: ``floor(cos(1e-60))``
    and ``floor(tanh(1509/10))`` (both just below 1) came back as 1. That made the parser
    fold ``x**(1 + floor(cos(1e-60)))`` into ``x**2`` and "prove" it homogeneous of degree 2,
    and made the checker certify counterexamples computed from the wrong integer (a trial's
    hunt for wrong verdicts). Any other number is left as it stands: the checker's ball
    arithmetic (rules/certified.py) decides it where it can, and otherwise the point or the
    proof says nothing (``undecided``)."""

    @classmethod
    def eval(cls, arg: sympy.Basic) -> sympy.Basic | None:
        if arg.is_number and not arg.is_Rational and not arg.is_Float:
            return None
        return super().eval(arg)  # type: ignore[misc]


class floor(_DecidedOnRationals, sympy.floor):  # noqa: N801 - prints as sympy's floor
    """``floor(u)``, evaluated only on a rational ``u`` (see :class:`_DecidedOnRationals`)."""


class ceiling(_DecidedOnRationals, sympy.ceiling):  # noqa: N801 - prints as sympy's ceiling
    """``ceil(u)``, evaluated only on a rational ``u`` (see :class:`_DecidedOnRationals`)."""


class RoundHalfEven(sympy.Function):
    """``round(u)``: the nearest integer, ties to the even one (numpy.round, ONNX Round).

    sympy has no such function; this one evaluates exactly on rational numbers, so the checker
    can evaluate counterexamples in exact arithmetic.
    """

    nargs = 1

    @classmethod
    def eval(cls, arg: sympy.Basic) -> sympy.Basic | None:
        if arg.is_Float:
            arg = sympy.Rational(arg)
        if arg.is_integer:
            return arg
        if arg.is_Rational:
            value = Fraction(int(arg.p), int(arg.q))
            return sympy.Integer(round(value))  # Fraction rounds half to even
        return None  # another number: see _DecidedOnRationals

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_integer(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_nonnegative(self) -> bool | None:
        return True if self.args[0].is_nonnegative else None

    def _eval_is_nonpositive(self) -> bool | None:
        return True if self.args[0].is_nonpositive else None


_SIGN_TESTS: dict[type, Callable[[sympy.Expr], bool | None]] = {
    sympy.StrictGreaterThan: lambda d: d.is_extended_positive,
    sympy.GreaterThan: lambda d: d.is_extended_nonnegative,
    sympy.StrictLessThan: lambda d: d.is_extended_negative,
    sympy.LessThan: lambda d: d.is_extended_nonpositive,
    sympy.Equality: lambda d: d.is_zero,
    sympy.Unequality: lambda d: None if d.is_zero is None else not d.is_zero,
}


def relation(kind: type[sympy.core.relational.Relational], lhs: sympy.Expr,
             rhs: sympy.Expr) -> sympy.Basic:
    """``kind(lhs, rhs)``, a comparison of two numbers decided only by what sympy's
    assumptions know of the sign of ``lhs - rhs``, never by sympy's own comparison.

    sympy compares two numbers by their difference evaluated to 2 digits, and takes a
    difference whose digits all cancel for 0: ``log(1 + 1e-200) > 0`` (and softplus(-1000) >
    0) came back False, which folded ``where(log(1 + 1e-200) > 0, x, x**2)`` into ``x**2``
    and "proved" it homogeneous of degree 2 (a helper's hunt for wrong verdicts); the domain
    condition of ``log(log(1 + exp(-1000)))`` was refused as false. The assumptions check the
    digits they read (``log(1 + 1e-200).is_positive`` is True). A comparison they do not
    decide is left unevaluated, for the checker's ball arithmetic to decide at a point or say
    nothing. Comparisons that hold a variable, or of two rationals, are sympy's as before."""
    difference = lhs - rhs
    if difference.free_symbols or not difference.is_number or difference.is_Rational:
        return kind(lhs, rhs)
    truth = _SIGN_TESTS[kind](difference)
    if truth is None:
        return kind(lhs, rhs, evaluate=False)
    return sympy.true if truth else sympy.false


def _compared_numbers(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
    """The difference sympy reads when it compares two numbers, certified
    (rules.certified.certified_difference; imported on first use, so that parsing loads the
    ball arithmetic only when sympy compares two numbers)."""
    from ..rules.certified import certified_difference

    return certified_difference(a, b)


def _install_compared_numbers() -> None:
    """Make every comparison of two numbers sympy makes, from here on, read a difference of
    certain sign, never its 2 digits (``sympy.core.relational._n2``): not only the parser's
    but every rebuild of a comparison in sympy's own steps (``expand`` reduces
    ``(x+1)**2 - x**2 - 2*x - 1 + log(1 + exp(-100)) > 0`` to ``log(1 + exp(-100)) > 0``,
    which sympy's 2 digits made false). Installed when the grammar is imported, so that the
    parser and the checker read numbers alike in every process."""
    from sympy.core import relational

    if not callable(getattr(relational, "_n2", None)):  # another sympy: fail loudly
        raise ImportError("sympy.core.relational._n2 is gone: ptq-verify cannot make sympy's "
                          "comparisons of numbers certain with this sympy")
    relational._n2 = _compared_numbers


_install_compared_numbers()


def extremum(kind: type[sympy.Max] | type[sympy.Min], *args: sympy.Expr) -> sympy.Expr:
    """``kind(*args)`` (Max or Min) with its numbers compared as :func:`relation` compares
    them: sympy orders the arguments of a Max by ``a >= b``, which reads a difference of
    numbers to 2 digits, and made ``max(-log(1 + 1e-200), 0)`` the negative one (so
    ``x**(2 + sign(max(-log(1 + 1e-200), 0)))`` became ``x``, its degree 1 "proved"; it is
    x**2). The numbers are reduced to their largest (smallest) first, by the signs of their
    differences that the assumptions prove; numbers they cannot order are refused, since sympy
    would order them by its 2 digits."""
    numbers = [a for a in args if a.is_number]
    if len(numbers) < 2 or all(a.is_Rational for a in numbers):
        return kind(*args)
    best = numbers[0]
    for other in numbers[1:]:
        gap = other - best if kind is sympy.Max else best - other
        if gap.is_extended_positive:
            best = other
        elif gap.is_extended_nonpositive is not True:
            raise ValueError(f"the numbers {best} and {other} are too close for sympy to "
                             "order")
    return kind(*[a for a in args if not a.is_number], best)


def _heaviside(u: sympy.Expr, at_zero: sympy.Expr = sympy.S.Zero) -> sympy.Expr:
    return sympy.Heaviside(u, at_zero)


def _sigmoid(u: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-u))


def _softplus(u: sympy.Expr) -> sympy.Expr:
    return sympy.log(1 + sympy.exp(u))


def _max(*args: sympy.Expr) -> sympy.Expr:
    return extremum(sympy.Max, *args)


def _min(*args: sympy.Expr) -> sympy.Expr:
    return extremum(sympy.Min, *args)


def _clip(u: sympy.Expr, lo: sympy.Expr, hi: sympy.Expr) -> sympy.Expr:
    return _applied(_min, (_applied(_max, (u, lo)), hi))


def _where(condition: sympy.Basic, then: sympy.Expr, otherwise: sympy.Expr) -> sympy.Expr:
    """A nested where() in the else branch becomes one flat Piecewise, as sympy writes them."""
    if isinstance(otherwise, sympy.Piecewise) and otherwise.args[-1].cond is sympy.true:
        return sympy.Piecewise((then, condition), *otherwise.args)
    return sympy.Piecewise((then, condition), (otherwise, True))


@dataclass(frozen=True)
class _Function:
    """A callable name of the grammar: its arity and how it builds sympy."""

    build: Callable[..., sympy.Expr]
    min_args: int
    max_args: int | None  # None: any number from min_args on
    domain: Callable[[sympy.Expr], tuple[sympy.Basic, ...]] = lambda u: ()


FUNCTIONS: dict[str, _Function] = {
    "exp": _Function(sympy.exp, 1, 1),
    "log": _Function(sympy.log, 1, 1, lambda u: (relation(sympy.Gt, u, 0),)),
    "sqrt": _Function(sympy.sqrt, 1, 1, lambda u: (relation(sympy.Ge, u, 0),)),
    "abs": _Function(sympy.Abs, 1, 1),
    "sign": _Function(sympy.sign, 1, 1),
    "sin": _Function(sympy.sin, 1, 1),
    "cos": _Function(sympy.cos, 1, 1),
    "tan": _Function(sympy.tan, 1, 1, lambda u: (relation(sympy.Ne, sympy.cos(u), 0),)),
    "asin": _Function(sympy.asin, 1, 1, lambda u: (relation(sympy.Ge, u, -1),
                                                      relation(sympy.Le, u, 1))),
    "acos": _Function(sympy.acos, 1, 1, lambda u: (relation(sympy.Ge, u, -1),
                                                      relation(sympy.Le, u, 1))),
    "atan": _Function(sympy.atan, 1, 1),
    "sinh": _Function(sympy.sinh, 1, 1),
    "cosh": _Function(sympy.cosh, 1, 1),
    "tanh": _Function(sympy.tanh, 1, 1),
    "asinh": _Function(sympy.asinh, 1, 1),
    "acosh": _Function(sympy.acosh, 1, 1, lambda u: (relation(sympy.Ge, u, 1),)),
    "atanh": _Function(sympy.atanh, 1, 1, lambda u: (relation(sympy.Gt, u, -1),
                                                        relation(sympy.Lt, u, 1))),
    "erf": _Function(sympy.erf, 1, 1),
    "sigmoid": _Function(_sigmoid, 1, 1),
    "softplus": _Function(_softplus, 1, 1),
    "max": _Function(_max, 2, None),
    "min": _Function(_min, 2, None),
    "floor": _Function(floor, 1, 1),
    "ceil": _Function(ceiling, 1, 1),
    "round": _Function(RoundHalfEven, 1, 1),
    "heaviside": _Function(_heaviside, 1, 2),
    "clip": _Function(_clip, 3, 3),
    "where": _Function(_where, 3, 3),
}
"""Every function name of the grammar (``where`` is special-cased: its first argument is a
condition)."""

STEP_FUNCTIONS: tuple[type, ...] = (sympy.sign, sympy.floor, sympy.ceiling, RoundHalfEven,
                                     sympy.Heaviside)
"""The grammar's functions that jump (are discontinuous) where their argument crosses 0 or an
integer (sympy's floor and ceiling: the grammar's are their subclasses); ``heaviside`` is
sympy's Heaviside(u, h0), a step at u = 0 (it had been left out, said to become a Piecewise,
which only ``where`` does: heaviside(x - 1) was read as continuous); ``where``'s jumps lie
on its Piecewise's conditions."""

CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi}

MAX_DECIDED_DEGREE = 4
"""Highest polynomial degree of a condition on one symbol that :func:`_decided_on_the_reals`
solves (solving is exact there; a higher degree could take long for nothing shown)."""


def _decided_on_the_reals(condition: sympy.Basic) -> sympy.Basic:
    """``condition``, or true (false) when it is a condition on one symbol, polynomial of
    degree at most MAX_DECIDED_DEGREE in each comparison, that holds at every real (at none):
    sympy's set of its solutions decides those exactly. ``where(x >= 0, sqrt(x), sqrt(-x))``
    had shown the domain "x >= 0 or -x >= 0", which excludes nothing."""
    symbols = condition.free_symbols
    if len(symbols) != 1:
        return condition
    symbol = next(iter(symbols))
    for relation in condition.atoms(sympy.Rel):
        difference = relation.lhs - relation.rhs
        if not difference.is_polynomial(symbol) or sympy.degree(
                difference, symbol) > MAX_DECIDED_DEGREE:
            return condition
    try:
        solutions = condition.as_set()
    except (NotImplementedError, TypeError, ValueError):
        return condition
    if solutions == sympy.S.Reals:
        return sympy.true
    return sympy.false if solutions is sympy.S.EmptySet else condition


_NOT_FINITE_REAL = tuple(type(a) for a in (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I))
"""The classes of the singletons a finite real expression never holds: ``has`` looks for
classes in one walk of the tree, where it walks it twice for each value."""

_OPERATOR_TOKENS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
    ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.FloorDiv: "//", ast.Mod: "%",
    ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
}
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_LOGICAL = (ast.BitAnd, ast.BitOr)
_COMPARISONS: dict[type, type[sympy.core.relational.Relational]] = {
    ast.Lt: sympy.StrictLessThan, ast.LtE: sympy.LessThan, ast.Gt: sympy.StrictGreaterThan,
    ast.GtE: sympy.GreaterThan, ast.Eq: sympy.Equality, ast.NotEq: sympy.Unequality,
}
_REJECTED_NODES: dict[type, str] = {
    ast.Lambda: "lambda is not allowed",
    ast.IfExp: "conditional expressions ('if') are not allowed; use where(cond, a, b)",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.List: "lists are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (':=') are not allowed",
    ast.Starred: "starred arguments ('*') are not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
    ast.Slice: "slices are not allowed",
}


def parse_expression(
    text: str,
    *,
    source: str = "<expr>",
    symbols: Mapping[str, sympy.Symbol] | None = None,
) -> ParsedExpression:
    """Parse ``text`` in the safe grammar (see docs/grammar.md) into a sympy expression.

    Args:
        text: the expression, e.g. ``"where(x > 0, x, alpha * x)"``.
        source: where the text comes from, the prefix of error messages
            (``"ops.toml:Foo"``).
        symbols: names to map to given symbols (e.g. positive ones); any other name becomes
            ``sympy.Symbol(name, real=True)``.

    Raises:
        ExpressionError: the text is outside the grammar or undefined everywhere.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression text must be a str, not {type(text).__name__}")
    return _Parser(text, source, dict(symbols or {})).parse()


def parse_condition(
    text: str,
    *,
    source: str = "<condition>",
    symbols: Mapping[str, sympy.Symbol] | None = None,
) -> ParsedExpression:
    """Parse a condition (what ``where`` takes first, e.g. ``"x != 0 and alpha > 0"``): how
    domain conditions printed by :func:`format_expression` are read back.

    Raises:
        ExpressionError: the text is not a condition in the grammar.
    """
    if not isinstance(text, str):
        raise TypeError(f"condition text must be a str, not {type(text).__name__}")
    return _Parser(text, source, dict(symbols or {})).parse(condition=True)


class _Parser:
    """One parse: positions into the original text, the recorded domain, the names seen."""

    def __init__(self, text: str, source: str, symbols: dict[str, sympy.Symbol]) -> None:
        self.text = text
        self.source = source
        self.symbols = symbols
        # Line breaks and tabs are blanks of the formula (text from TOML may span lines); the
        # same number of characters keeps every offset valid in the original text.
        flat = text.translate({ord("\n"): " ", ord("\r"): " ", ord("\t"): " "})
        self.base = len(flat) - len(flat.lstrip())
        self.body = flat.strip()
        # (surrogatepass: a byte of the command line that is not UTF-8 is refused by parse)
        self.body_bytes = self.body.encode("utf-8", "surrogatepass")
        self.domain: list[sympy.Basic] = []
        self.guards: list[sympy.Basic] = []

    # -- positions and errors ------------------------------------------------------------

    def offset(self, col_bytes: int) -> int:
        """Character offset in the original text of an ast UTF-8 byte column."""
        prefix = self.body_bytes[:col_bytes].decode("utf-8", errors="ignore")
        return self.base + len(prefix)

    def start(self, node: ast.AST) -> int:
        return self.offset(node.col_offset)

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_col_offset)

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node) : self.end(node)]

    def token_after(self, offset: int, default: int) -> int:
        """The first character from ``offset`` on that is not blank or a closing parenthesis."""
        for i in range(offset, len(self.text)):
            if not (self.text[i].isspace() or self.text[i] in ")\\"):
                return i
        return default

    def where(self, offset: int) -> str:
        return position_text(self.text, offset)

    def error(self, message: str, offset: int) -> ExpressionError:
        # a message quotes the user's text, which may span lines: it is kept on one line
        line = " ".join(f"{self.source}: {message}".split())
        return ExpressionError(f"{line} at {self.where(offset)}")

    # -- the parse -------------------------------------------------------------------------

    def parse(self, condition: bool = False) -> ParsedExpression:
        if not self.body:
            raise self.error("empty expression", 0)
        if found := not_utf8_at(self.text):  # a byte not UTF-8, as Python carries it
            raise self.error(f"{found[1]} is not UTF-8 text", found[0])
        if len(self.text) > MAX_LENGTH:
            raise self.error(f"expression longer than {MAX_LENGTH} characters", MAX_LENGTH)
        if "#" in self.body:
            raise self.error("comments ('#') are not allowed", self.text.index("#"))
        try:
            tree = ast.parse(self.body, mode="eval")
        except SyntaxError as err:
            # offset 0 (or none): the text ended too early
            offset = self.base + err.offset - 1 if err.offset else len(self.text.rstrip())
            raise self.error(err.msg, min(offset, len(self.text))) from None
        except (RecursionError, MemoryError):
            raise self.error(f"expression nested more than {MAX_DEPTH} deep", 0) from None
        names = self.screen(tree.body)
        try:
            expr = self.condition(tree.body) if condition else self.value(tree.body)
        except ExpressionError:
            raise
        except (TypeError, ValueError, ArithmeticError) as err:  # sympy refusing a value
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise self.error(f"'{self.body}' cannot be built: {message}", self.base) from None
        expr = _settled(expr)
        if _holds_huge_number(expr, expr.atoms(sympy.Rational)):
            raise self.error(f"'{self.body}' holds a number above {NUMBER_TEXT}", self.base)
        if expr.has(*_NOT_FINITE_REAL):
            raise self.error(f"'{self.body}' is not a finite real expression", self.base)
        if any(_too_large_power(p) for p in expr.atoms(sympy.Pow)):  # built deep inside
            raise self.error(f"'{self.body}' {_LARGE_POWER}", self.base)
        try:  # what sympy built must print back (abs(exp(x**0.5)) evaluates to atan2(0, x))
            _format(expr)
        except ValueError as err:
            raise self.error(f"'{self.body}' evaluates to a form that {err}", self.base) from None
        if len(self.domain) > 1 and _decided_on_the_reals(sympy.And(*self.domain)) is sympy.false:
            # each condition holds somewhere, not all at once (x**(1/3) + sqrt(-x - 1))
            raise self.error(f"'{self.body}' is undefined everywhere", self.base)
        return ParsedExpression(expr, tuple(self.domain), names)

    def screen(self, root: ast.expr) -> tuple[str, ...]:
        """Reject every node outside the whitelist (the leftmost one is reported) and the depth
        limit, before any sympy object is built; return the variable names in text order."""
        violations: list[tuple[int, str]] = []
        names: list[tuple[int, str]] = []
        stack: list[tuple[ast.AST, int, int]] = [(root, 1, 0)]
        count = 0
        while stack:
            node, depth, calls = stack.pop()
            count += 1
            if depth > MAX_DEPTH:
                raise self.error(f"expression nested more than {MAX_DEPTH} deep", self.start(node))
            if count > MAX_NODES:
                raise self.error(f"expression has more than {MAX_NODES} terms", self.base)
            if isinstance(node, ast.Call):
                calls += 1
                if calls > MAX_CALL_DEPTH:
                    raise self.error(
                        f"function calls nested more than {MAX_CALL_DEPTH} deep", self.start(node)
                    )
            children: list[ast.AST] = []
            problem = self.screen_node(node, children, names)
            if problem is not None:
                violations.append(problem)
            for child in children:
                same_chain = (
                    isinstance(node, ast.BinOp)
                    and child is node.left
                    and isinstance(child, ast.BinOp)
                    and _chain_kind(child.op) == _chain_kind(node.op) is not None
                )
                stack.append((child, depth if same_chain else depth + 1, calls))
        if violations:
            offset, message = min(violations)
            raise self.error(message, offset)
        seen: dict[str, int] = {}
        for offset, name in sorted(names):
            seen.setdefault(name, offset)
            if len(seen) > MAX_NAMES:
                raise self.error(f"expression has more than {MAX_NAMES} variable names", offset)
        return tuple(seen)

    def screen_node(
        self, node: ast.AST, children: list[ast.AST], names: list[tuple[int, str]]
    ) -> tuple[int, str] | None:
        """One node's context-free check; fills ``children`` with the nodes to screen next."""
        at = self.start(node)
        if isinstance(node, ast.Constant):
            return self.screen_constant(node)
        if isinstance(node, ast.Name):
            if (refused := self.screen_name(node)) is not None:
                return refused
            if node.id.startswith("_"):
                return at, f"name '{node.id}' is not allowed"
            if node.id in FUNCTIONS:
                return at, f"'{node.id}' is a function; call it as {node.id}(...)"
            if node.id not in CONSTANTS:
                names.append((at, node.id))
            return None
        if isinstance(node, ast.BinOp):
            children += [node.left, node.right]
            if isinstance(node.op, _ARITHMETIC + _LOGICAL):
                return None
            token = _OPERATOR_TOKENS.get(type(node.op), type(node.op).__name__)
            where = self.token_after(self.end(node.left), at)
            if isinstance(node.op, ast.BitXor):
                return where, "operator '^' is not allowed; use ** for powers"
            return where, f"operator '{token}' is not allowed"
        if isinstance(node, ast.UnaryOp):
            children.append(node.operand)
            return None
        if isinstance(node, ast.BoolOp):
            children += node.values
            return None
        if isinstance(node, ast.Compare):
            children += [node.left, *node.comparators]
            if type(node.ops[0]) not in _COMPARISONS:
                word = {ast.In: "in", ast.NotIn: "not in", ast.Is: "is"}.get(
                    type(node.ops[0]), "is not")
                return self.token_after(self.end(node.left), at), (
                    f"comparison '{word}' is not allowed; use ==, !=, <, <=, > or >=")
            if len(node.ops) > 1:
                return self.token_after(self.end(node.comparators[0]), at), (
                    "chained comparisons are not allowed; use 'and'"
                )
            return None
        if isinstance(node, ast.Call):
            if len(node.args) > MAX_ARGS:
                children += node.args
                name = node.func.id if isinstance(node.func, ast.Name) else "a call"
                return at, f"{name}() has {len(node.args)} arguments, more than {MAX_ARGS}"
            return self.screen_call(node, children)
        if isinstance(node, ast.Attribute):
            children.append(node.value)
            dot = self.text.rfind(".", self.end(node.value), self.end(node))
            return (dot if dot >= 0 else at), f"attribute access ('.{node.attr}') is not allowed"
        if isinstance(node, ast.Subscript):
            children.append(node.value)
            bracket = self.text.find("[", self.end(node.value))
            return (bracket if bracket >= 0 else at), "subscripts ('[...]') are not allowed"
        message = _REJECTED_NODES.get(type(node), f"'{type(node).__name__}' is not allowed")
        return at, message

    def screen_name(self, node: ast.Name) -> tuple[int, str] | None:
        """A name written with other than ASCII letters, digits and '_' is refused: Python
        reads 'ｘ' (fullwidth) as 'x' and '𝑠' as 's', so the expression would not hold the
        name its text shows, and --params, --inputs and TOML files take ASCII names only."""
        written = self.segment(node)
        if written.isascii():
            return None
        read = f" (Python would read it as '{node.id}')" if node.id != written else ""
        return self.start(node), (f"name '{written}' is not ASCII{read}: names are ASCII "
                                  "letters, digits and '_'")

    def screen_constant(self, node: ast.Constant) -> tuple[int, str] | None:
        at, value = self.start(node), node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            return at, f"'{self.segment(node)}' is not allowed"
        if isinstance(value, str):
            return at, "string literals are not allowed"
        if isinstance(value, bytes):
            return at, "bytes literals are not allowed"
        if isinstance(value, complex):
            return at, f"complex literals ('{self.segment(node)}') are not allowed"
        if isinstance(value, float):
            exponent = re.search(r"[eE]([+-]?[\d_]+)", self.segment(node))
            if exponent and abs(int(exponent.group(1))) > MAX_LITERAL_EXPONENT:
                return at, f"the exponent of '{self.segment(node)}' is too large"
            if len(self.segment(node)) > MAX_LITERAL_EXPONENT:
                return at, f"the number '{self.segment(node)[:20]}...' has too many digits"
        if isinstance(value, int) and value > MAX_NUMBER:
            return at, f"the number '{self.segment(node)[:20]}...' is too large"
        return None

    def screen_call(self, node: ast.Call, children: list[ast.AST]) -> tuple[int, str] | None:
        at = self.start(node)
        children += node.args
        children += [k.value for k in node.keywords]
        if any(isinstance(a, ast.Starred) for a in node.args):
            return None  # reported as a starred argument
        if not isinstance(node.func, ast.Name):
            children.append(node.func)
            if isinstance(node.func, ast.Attribute):
                return None  # reported as attribute access
            paren = self.text.find("(", self.end(node.func))
            return (paren if paren >= 0 else at), "only named functions can be called"
        if (refused := self.screen_name(node.func)) is not None:
            return refused
        name = node.func.id
        if name.startswith("_"):
            return at, f"name '{name}' is not allowed"
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, FUNCTIONS, n=1, cutoff=0.8)
            return at, f"unknown function '{name}'" + (
                f" (did you mean '{close[0]}'?)" if close
                else " (docs/grammar.md lists the functions)")
        if node.keywords:
            first = node.keywords[0]
            if first.arg is None:
                return self.start(first), "'**' arguments are not allowed"
            return self.start(first), f"keyword arguments ('{first.arg}=') are not allowed"
        function = FUNCTIONS[name]
        count = len(node.args)
        most = count if function.max_args is None else function.max_args
        if not function.min_args <= count <= most:
            if function.max_args is None:
                wanted = f"at least {function.min_args}"
            elif function.min_args == function.max_args:
                wanted = str(function.min_args)
            else:
                wanted = f"{function.min_args} or {function.max_args}"
            plural = "" if wanted == "1" else "s"
            return at, f"{name}() takes {wanted} argument{plural}, not {count}"
        return None

    # -- building sympy --------------------------------------------------------------------

    def require(self, condition: sympy.Basic, node: ast.AST) -> None:
        """Record a condition the expression needs, guarded by the enclosing where() branches."""
        if self.guards:  # a branch of where() that is outside the domain is never taken
            condition = sympy.Or(*[sympy.Not(g) for g in self.guards], condition)
        condition = _decided_on_the_reals(condition)
        if condition is sympy.true:
            return
        if condition is sympy.false:
            raise self.error(f"'{self.segment(node)}' is undefined everywhere", self.start(node))
        if condition not in self.domain:
            self.domain.append(condition)

    def finite(self, built: sympy.Expr, node: ast.AST) -> sympy.Expr:
        """``built``, unless sympy made it infinite, nan or complex (``log(0)``, ``sqrt(-2)``),
        or it holds a number too large for exact arithmetic (``2**3000*3**3000``,
        ``exp(exp(1000))``)."""
        if built.has(*_NOT_FINITE_REAL):
            if built.free_symbols and built.has(sympy.I):  # sqrt(-x**2) is 0 at x = 0
                raise self.error(f"'{self.segment(node)}' is complex-valued (sympy reads it "
                                 f"as {built})", self.start(node))
            raise self.error(f"'{self.segment(node)}' is undefined everywhere", self.start(node))
        if _holds_huge_number(built, (built, *built.args)):
            raise self.error(f"'{self.segment(node)}' is too large", self.start(node))
        if any(_too_large_power(part) for part in (built, *built.args)):
            # sympy makes powers of its own: exp(log(x)*10**10) is x**(10**10)
            raise self.error(f"'{self.segment(node)}' {_LARGE_POWER}", self.start(node))
        if built.is_number and not built.is_Rational and not _moderate(built):
            raise self.error(
                f"'{self.segment(node)}' is above 1e1000 in magnitude",
                self.start(node),
            )
        return built

    def value(self, node: ast.expr) -> sympy.Expr:
        """Build an arithmetic (non-boolean) expression."""
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            return self.symbols.get(node.id) or sympy.Symbol(node.id, real=True)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            operand = self.value(node.operand)
            return _negated(operand) if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            return sympy.Add(*self.chain(node, (ast.Add, ast.Sub)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
            return sympy.Mul(*self.chain(node, (ast.Mult, ast.Div)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return self.power(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.error(
            f"'{self.segment(node)}' is only allowed in the condition of where()", self.start(node)
        )

    def chain(self, node: ast.BinOp, ops: tuple[type, ...]) -> list[sympy.Expr]:
        """The operands of a left-nested chain ``a + b - c`` (or ``a * b / c``), as terms
        (or factors), built without recursing along the chain."""
        spine: list[ast.BinOp] = []
        left: ast.expr = node
        while isinstance(left, ast.BinOp) and isinstance(left.op, ops):
            spine.append(left)
            left = left.left
        operands = [self.value(left)]
        for link in reversed(spine):
            right = self.value(link.right)
            if isinstance(link.op, ast.Sub):
                right = _negated(right)
            elif isinstance(link.op, ast.Div):
                self.require(relation(sympy.Ne, right, 0), link)
                right = self.finite(sympy.Pow(right, -1), link)
            operands.append(right)
        return operands

    def power(self, node: ast.BinOp) -> sympy.Expr:
        base, exponent = self.value(node.left), self.value(node.right)
        if exponent.is_number:
            # what sympy cannot show is taken at its worst: an exponent not shown to be an
            # integer as a fractional one, one not shown non-negative as negative.
            # ``x**tanh(1)`` (tanh(1).is_integer is None) once recorded no condition, so
            # ``where(x > 0, x, x**2) + 0*x**tanh(1)``, pass_through on its domain x >= 0,
            # was "refuted" at x = -361/10, where it is undefined
            if exponent.is_integer is not True:
                kind = sympy.Ge if exponent.is_nonnegative else sympy.Gt
                self.require(relation(kind, base, 0), node)
            elif exponent.is_nonnegative is not True:
                self.require(relation(sympy.Ne, base, 0), node)
        elif base == 0:
            self.require(relation(sympy.Gt, exponent, 0), node)
        else:
            self.require(relation(sympy.Gt, base, 0), node)
        if exponent.is_Rational and not base.is_Rational and (
            abs(exponent) > MAX_EXPONENT or exponent.q > MAX_EXPONENT_DENOMINATOR
        ):  # a symbol, or a constant sympy would expand (sqrt(2)**(10**10) is 2**(5*10**9))
            raise self.error(
                f"the exponent of '{self.segment(node)}' is too large (at most {MAX_EXPONENT} "
                f"in size, denominator at most {MAX_EXPONENT_DENOMINATOR})",
                self.start(node),
            )
        if base.is_Rational and exponent.is_Rational and base not in (0, 1, -1):
            bits = abs(int(sympy.floor(exponent))) * math.log2(max(abs(base.p), base.q))
            if bits > MAX_NUMBER.bit_length() or exponent.q > MAX_EXPONENT_DENOMINATOR:
                raise self.error(f"'{self.segment(node)}' is too large", self.start(node))
        if exponent.is_number and not exponent.is_Rational and not _moderate(
            exponent, MAX_EXPONENT
        ):
            raise self.error(
                f"the exponent of '{self.segment(node)}' is too large (at most {MAX_EXPONENT})",
                self.start(node),
            )
        power = sympy.Pow(base, exponent)
        if any(
            p.base.is_negative and p.base.is_number and p.exp.is_integer is False
            for p in power.atoms(sympy.Pow)
        ):  # sympy split off a complex factor such as (-1)**(1/3)
            if power.free_symbols:  # (-abs(x))**(1/3) is 0 at x = 0, as sqrt(-x**2) is
                raise self.error(f"'{self.segment(node)}' is complex-valued (sympy reads it "
                                 f"as {power})", self.start(node))
            raise self.error(
                f"'{self.segment(node)}' is a fractional power of a negative number",
                self.start(node),
            )
        return self.finite(power, node)

    def call(self, node: ast.Call) -> sympy.Expr:
        name = node.func.id  # screened: a Name in FUNCTIONS with a valid argument count
        function = FUNCTIONS[name]
        if name == "where":
            return self.where_call(node)
        args = [self.value(a) for a in node.args]
        for condition in function.domain(args[0]):
            self.require(condition, node)
        return self.finite(_applied(function.build, tuple(args)), node)

    def where_call(self, node: ast.Call) -> sympy.Expr:
        """``where(c, a, b)``: conditions of ``a`` hold only where ``c`` does, those of ``b``
        only where it does not (numpy evaluates both branches and keeps one)."""
        condition = self.condition(node.args[0])
        if condition.has(sympy.Piecewise):
            # sympy rewrites such a condition into an if-then-else of booleans (ITE), which
            # has no text form here; a nested where() belongs in the branches
            raise self.error(
                "where() inside the condition of where() is not supported",
                self.start(node.args[0]),
            )
        branches = []
        for guard, arg in ((condition, node.args[1]), (sympy.Not(condition), node.args[2])):
            self.guards.append(guard)
            try:
                branches.append(self.value(arg))
            finally:
                self.guards.pop()
        return FUNCTIONS["where"].build(condition, *branches)

    def condition(self, node: ast.expr) -> sympy.Basic:
        """Build the condition of where(): comparisons joined by and/or/not (or & | ~)."""
        if isinstance(node, ast.Compare):
            kind = _COMPARISONS[type(node.ops[0])]
            return relation(kind, self.value(node.left), self.value(node.comparators[0]))
        if isinstance(node, ast.BoolOp):
            join = sympy.And if isinstance(node.op, ast.And) else sympy.Or
            return join(*[self.condition(v) for v in node.values])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return sympy.Not(self.condition(node.operand))
        if isinstance(node, ast.BinOp) and isinstance(node.op, _LOGICAL):
            join = sympy.And if isinstance(node.op, ast.BitAnd) else sympy.Or
            return join(self.condition(node.left), self.condition(node.right))
        raise self.error(
            f"the condition of where() must be a comparison, not '{self.segment(node)}'",
            self.start(node),
        )

    def number(self, node: ast.Constant) -> sympy.Expr:
        """An exact number from the literal's text (a Python float would lose digits)."""
        if isinstance(node.value, int):
            return sympy.Integer(node.value)
        fraction = Fraction(self.segment(node).replace("_", ""))
        return sympy.Rational(fraction.numerator, fraction.denominator)



_LARGE_POWER = (
    f"makes a power of exponent above {MAX_EXPONENT} in size or with a denominator above "
    f"{MAX_EXPONENT_DENOMINATOR}"
)


def _too_large_power(e: sympy.Basic) -> bool:
    """A power of a non-rational base whose rational exponent is beyond the grammar's bounds."""
    return (
        isinstance(e, sympy.Pow)
        and not e.base.is_Rational
        and e.exp.is_Rational
        and (abs(e.exp) > MAX_EXPONENT or e.exp.q > MAX_EXPONENT_DENOMINATOR)
    )


def _holds_huge_number(expr: sympy.Basic, candidates) -> bool:
    """Whether one of ``candidates`` (parts of ``expr``) is a rational beyond MAX_NUMBER."""
    return any(n.is_Rational and max(abs(n.p), n.q) > MAX_NUMBER for n in candidates)


def _moderate(constant: sympy.Expr, bound: int = MAX_NUMBER) -> bool:
    """Whether a numeric constant that is not rational (``exp(1000)``, ``sqrt(2)*pi``) is at
    most ``bound`` in magnitude, judged at 15 digits.

    Only large values are refused: they overflow the arithmetic downstream. A tiny one
    (``exp(-2744)`` inside ``sigmoid(2744)``) is harmless, and refusing it would refuse the
    printed form of expressions the parser accepted."""
    # a rounding of a number sympy does not evaluate (_DecidedOnRationals) is within 1 of
    # that number, which is all a bound of 1e1000 needs; a step of a number whose sign
    # sympy cannot tell (a hidden zero: heaviside(asin(3/5) - atan(3/4))) is at most 1 + |h0|
    # in size, where sympy's N leaves it unevaluated and it had been refused as above 1e1000
    constant = constant.replace(lambda e: isinstance(e, (sympy.floor, sympy.ceiling,
                                                         RoundHalfEven)),
                                lambda e: e.args[0])
    constant = constant.replace(lambda e: isinstance(e, sympy.Heaviside),
                                lambda e: 1 + sympy.Abs(e.args[1]))
    try:
        value = abs(sympy.N(constant, 15))
    except (ArithmeticError, ValueError, TypeError, RecursionError):
        return False
    if not value.is_Number:  # not evaluable to a real number
        return False
    return value <= bound


def _settled(e: sympy.Basic) -> sympy.Basic:
    """``e`` rebuilt bottom-up until rebuilding changes nothing.

    Some sympy simplifications (Min/Max absorption) depend on the order things were built in,
    so the expression a text denotes is made a fixed point: printing it and parsing the text
    (which rebuilds it bottom-up) then gives it back.
    """
    for _ in range(4):
        rebuilt = _rebuilt(e)
        if rebuilt == e:
            break
        e = rebuilt
    return e


def _rebuilt(e: sympy.Basic) -> sympy.Basic:
    if not e.args or isinstance(e, sympy.Atom):
        return e
    return built(e, tuple(_rebuilt(a) for a in e.args))


def built(e: sympy.Basic, args: tuple[sympy.Basic, ...]) -> sympy.Basic:
    """``e``'s head applied to ``args`` as the parser builds it: numbers in a comparison or a
    max/min compared by :func:`relation` and :func:`extremum`, not by sympy. What rebuilds a
    parsed expression with other arguments (:func:`substitute`, rules.literals) calls it."""
    if isinstance(e, sympy.core.relational.Relational):
        return relation(type(e), *args)
    if type(e) in (sympy.Max, sympy.Min):
        return _applied(_max if type(e) is sympy.Max else _min, args)
    return _applied(e.func, args)


def substitute(e: sympy.Basic, values: dict) -> sympy.Basic:
    """``e`` with its symbols replaced by ``values``, rebuilt bottom-up as the parser builds:
    comparisons by :func:`relation` and max/min by :func:`extremum`, never by sympy's own
    comparison, which ``xreplace`` would use once a comparison holds only numbers.

    At x = 1, ``where(x*log(1 + 1e-200) > 0, x, x**2) + where(x > 0, 0, x - x**2)`` (which is
    x) took its second branch under ``xreplace``, and f(2) = 4, 2 f(1) = 2 "refuted" it; the
    zero case of a sign split meets the same numbers. A ValueError, as from
    :func:`extremum`, when numbers cannot be ordered."""
    if e in values:
        return values[e]
    if not e.args or isinstance(e, sympy.Atom) or not (e.free_symbols & set(values)):
        return e
    return built(e, tuple(substitute(a, values) for a in e.args))


@lru_cache(maxsize=4096)
def _applied(build: Callable[..., sympy.Basic], args: tuple[sympy.Basic, ...]) -> sympy.Basic:
    """``build(*args)``, remembered.

    sympy caches what it builds for Add, Mul, Pow and functions, but not for Min and Max,
    whose construction compares every pair of arguments through assumption queries. The
    parser builds such a node, :func:`_settled` rebuilds it from the same arguments, and
    declarations share them (every max pool is ``max(x0, x1, x2, x3)``): each is built once.
    """
    return build(*args)


def _negated(e: sympy.Expr) -> sympy.Expr:
    """``-e`` in sympy's canonical form (``Expr.__neg__`` skips the flattening that
    ``Mul`` does, so ``-(1/2)**y`` and ``-1*(1/2)**y`` would differ)."""
    return sympy.Mul(sympy.S.NegativeOne, e)


def _chain_kind(op: ast.operator) -> str | None:
    if isinstance(op, (ast.Add, ast.Sub)):
        return "sum"
    if isinstance(op, (ast.Mult, ast.Div)):
        return "product"
    return None


# -- printing back -------------------------------------------------------------------------

_OR, _AND, _NOT, _REL, _ADD, _MUL, _NEG, _POW, _ATOM = range(1, 10)
"""Binding strength of printed text, loosest first, as Python parses it."""

_PRINTED_FUNCTIONS: dict[type, str] = {
    f.build: name for name, f in FUNCTIONS.items() if isinstance(f.build, type)
} | {sympy.floor: "floor", sympy.ceiling: "ceil",  # as sympy may build them itself
     sympy.Max: "max", sympy.Min: "min"}  # built by extremum()
_PRINTED_RELATIONS: dict[type, str] = {
    sympy.StrictLessThan: "<", sympy.LessThan: "<=", sympy.StrictGreaterThan: ">",
    sympy.GreaterThan: ">=", sympy.Equality: "==", sympy.Unequality: "!=",
}
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def format_expression(expr: sympy.Basic) -> str:
    """Print a sympy expression as text in the grammar; parsing the text gives ``expr`` back.

    Numbers print exactly (a Float prints as its exact rational value), ``E`` as ``exp(1)``,
    Piecewise as nested ``where``, ``Heaviside(u, 0)`` as ``heaviside(u)``.

    Raises:
        ValueError: ``expr`` holds something the grammar cannot write (an unknown function,
            a symbol whose name is not a variable name, a Piecewise without a default).
    """
    return _format(expr)[0]


def _format(e: sympy.Basic) -> tuple[str, int]:
    """The text of ``e`` and how strongly it binds."""
    if isinstance(e, sympy.Float):
        e = sympy.Rational(e)
    if isinstance(e, sympy.Rational):
        return _format_number(e)
    if e is sympy.pi:
        return "pi", _ATOM
    if e is sympy.E:
        return "exp(1)", _ATOM
    if isinstance(e, sympy.Symbol):
        return _format_symbol(e), _ATOM
    if isinstance(e, sympy.Add):
        return _format_sum(e), _ADD
    if isinstance(e, sympy.Mul) or (
        isinstance(e, sympy.Pow) and e.exp.is_Rational and e.exp.is_negative
    ):
        return _format_product(e)
    if isinstance(e, sympy.Pow):
        if e.exp == sympy.S.Half:
            return f"sqrt({_format(e.base)[0]})", _ATOM
        base = _wrap(e.base, _POW + 1)
        exponent = _wrap(e.exp, _ATOM)
        return f"{base}**{exponent}", _POW
    if isinstance(e, sympy.Piecewise):
        return _format_piecewise(e), _ATOM
    if isinstance(e, sympy.Heaviside):
        u, at_zero = e.args
        extra = "" if at_zero == 0 else f", {_format(at_zero)[0]}"
        return f"heaviside({_format(u)[0]}{extra})", _ATOM
    if type(e) in _PRINTED_FUNCTIONS:
        args = ", ".join(_format(a)[0] for a in e.args)
        return f"{_PRINTED_FUNCTIONS[type(e)]}({args})", _ATOM
    if type(e) in _PRINTED_RELATIONS:
        lhs, rhs = _wrap(e.lhs, _ADD), _wrap(e.rhs, _ADD)
        return f"{lhs} {_PRINTED_RELATIONS[type(e)]} {rhs}", _REL
    if isinstance(e, (sympy.And, sympy.Or)):
        strength, word = (_AND, " and ") if isinstance(e, sympy.And) else (_OR, " or ")
        return word.join(_wrap(a, strength + 1) for a in e.args), strength
    if isinstance(e, sympy.Not):
        return f"not {_wrap(e.args[0], _NOT)}", _NOT
    raise ValueError(f"the grammar cannot write: {e} ({type(e).__name__})")


def _wrap(e: sympy.Basic, strength: int) -> str:
    """``e``'s text, parenthesised unless it binds at least as strongly as ``strength``."""
    text, own = _format(e)
    return text if own >= strength else f"({text})"


def _format_symbol(symbol: sympy.Symbol) -> str:
    name = symbol.name
    if (
        not _IDENTIFIER.match(name)
        or name in FUNCTIONS
        or name in CONSTANTS
        or keyword.iskeyword(name)
    ):
        raise ValueError(f"the grammar cannot write the symbol name {name!r}")
    return name


def _is_negative_term(term: sympy.Expr) -> bool:
    coefficient = term.as_coeff_Mul()[0]
    return bool(coefficient.is_negative)


def _format_sum(e: sympy.Add) -> str:
    first, *rest = e.as_ordered_terms()
    text = _wrap(first, _ADD)
    for term in rest:
        if _is_negative_term(term):
            text += f" - {_wrap(_negated(term), _ADD + 1)}"
        else:
            text += f" + {_wrap(term, _ADD + 1)}"
    return text


def _format_product(e: sympy.Expr) -> tuple[str, int]:
    """A product as ``numerator/denominator``; a negative one with a leading minus."""
    coefficient, rest = e.as_coeff_Mul()
    if isinstance(coefficient, sympy.Float):
        coefficient = sympy.Rational(coefficient)
    if coefficient.is_negative:
        text, own = _format(_negated(e))
        if own < _MUL:
            text = f"({text})"
        if text.startswith("("):
            # "-(x + y)/x" would distribute the minus over the sum; "-1*(x + y)/x" does not
            return f"-1*{text}", _MUL
        return f"-{text}", (_MUL if own == _MUL else _NEG)
    numerator, denominator = [], []
    if coefficient != 1:
        text, own = _format_number(coefficient)
        if own == _ATOM:  # an integer or a decimal literal
            numerator.append(text)
        else:
            numerator += [] if coefficient.p == 1 else [str(coefficient.p)]
            denominator.append(str(coefficient.q))
    for factor in sympy.Mul.make_args(rest):
        if factor.is_Pow and factor.exp.is_Rational and factor.exp.is_negative:
            denominator.append(_wrap(sympy.Pow(factor.base, -factor.exp), _NEG))
        elif factor != 1:
            numerator.append(_wrap(factor, _NEG))
    # "x/2/(y + 1)", not "x/(2*(y + 1))": a product of a number and a sum would distribute
    text = "*".join(numerator) or "1"
    text += "".join(f"/{d}" for d in denominator)
    if len(numerator) == 1 and not denominator:
        return text, _format(rest if coefficient == 1 else coefficient)[1]
    return text, _MUL


def _format_number(r: sympy.Rational) -> tuple[str, int]:
    """The shortest exact literal of a rational: ``7``, ``1/3``, ``0.1``, ``3.4e38``."""
    magnitude = abs(r)
    candidates = [(str(magnitude.p), _ATOM) if magnitude.q == 1 else (str(magnitude), _MUL)]
    q, twos, fives = magnitude.q, 0, 0
    while q % 2 == 0:
        q, twos = q // 2, twos + 1
    while q % 5 == 0:
        q, fives = q // 5, fives + 1
    if q == 1 and magnitude.p != 0:
        places = max(twos, fives)  # magnitude * 10**places is an integer
        digits = str(magnitude.p * 10**places // magnitude.q)
        if places:
            padded = digits.rjust(places + 1, "0")
            candidates.append((f"{padded[:-places]}.{padded[-places:]}", _ATOM))
        significant = digits.rstrip("0")
        exponent = len(digits) - 1 - places
        mantissa = significant[0] + (f".{significant[1:]}" if len(significant) > 1 else "")
        candidates.append((f"{mantissa}e{exponent}", _ATOM))
    text, own = min(candidates, key=lambda c: len(c[0]))
    return (f"-{text}", min(own, _NEG)) if r < 0 else (text, own)


def _format_piecewise(e: sympy.Piecewise) -> str:
    *cases, (default, last) = e.args
    if last is not sympy.true:
        raise ValueError(f"the grammar cannot write {e}: it has no default case")
    text = _format(default)[0]
    for value, condition in reversed(cases):
        text = f"where({_format(condition)[0]}, {_format(value)[0]}, {text})"
    return text
