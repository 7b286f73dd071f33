"""The safe grammar: what it accepts and builds, what it rejects and where, the domain it
records, and that format_expression prints text that parses back to the same expression."""

from __future__ import annotations

import itertools

import pytest
import sympy
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ptq_verify.catalog import grammar
from ptq_verify.catalog.grammar import (
    MAX_CALL_DEPTH,
    MAX_DEPTH,
    ExpressionError,
    RoundHalfEven,
    format_expression,
    parse_condition,
    parse_expression,
)

x, y, z, alpha, lo, hi = sympy.symbols("x y z alpha lo hi", real=True)
half = sympy.Rational(1, 2)


def parsed(text: str) -> sympy.Expr:
    return parse_expression(text).expr


# -- what is accepted --------------------------------------------------------------------------

ACCEPTED = [
    ("x + y - z", x + y - z),
    ("x * y / z", x * y / z),
    ("x ** 2", x**2),
    ("-x + +y", -x + y),
    ("(x + y) * 2", 2 * x + 2 * y),
    ("2 ** 10", sympy.Integer(1024)),
    ("pi * x", sympy.pi * x),
    ("exp(x)", sympy.exp(x)),
    ("log(x)", sympy.log(x)),
    ("sqrt(x)", sympy.sqrt(x)),
    ("abs(x)", sympy.Abs(x)),
    ("sign(x)", sympy.sign(x)),
    ("tanh(x)", sympy.tanh(x)),
    ("sin(x) + cos(x)", sympy.sin(x) + sympy.cos(x)),
    ("tan(x)", sympy.tan(x)),
    ("asin(x) + acos(x) + atan(x)", sympy.asin(x) + sympy.acos(x) + sympy.atan(x)),
    ("sinh(x) + cosh(x)", sympy.sinh(x) + sympy.cosh(x)),
    # (acosh(x) + atanh(x) is defined nowhere: x >= 1 and -1 < x < 1)
    ("asinh(x) + acosh(y) + atanh(x)", sympy.asinh(x) + sympy.acosh(y) + sympy.atanh(x)),
    ("erf(x)", sympy.erf(x)),
    ("sigmoid(x)", 1 / (1 + sympy.exp(-x))),
    ("softplus(x)", sympy.log(1 + sympy.exp(x))),
    ("max(x, y)", sympy.Max(x, y)),
    ("min(x, y, 0)", sympy.Min(x, y, 0)),
    ("floor(x) + ceil(y)", grammar.floor(x) + grammar.ceiling(y)),
    ("round(x)", RoundHalfEven(x)),
    ("heaviside(x)", sympy.Heaviside(x, 0)),
    ("heaviside(x, 1/2)", sympy.Heaviside(x, half)),
    ("clip(x, lo, hi)", sympy.Min(sympy.Max(x, lo), hi)),
    ("where(x > 0, x, alpha * x)", sympy.Piecewise((x, x > 0), (alpha * x, True))),
    ("where(x >= 0, 1, 0)", sympy.Piecewise((1, x >= 0), (0, True))),
    ("where(x < y, x, y)", sympy.Piecewise((x, x < y), (y, True))),
    ("where(x <= 1, x, 1)", sympy.Piecewise((x, x <= 1), (1, True))),
    ("where(x == 0, 1, x)", sympy.Piecewise((1, sympy.Eq(x, 0)), (x, True))),
    ("where(x != 0, x, 1)", sympy.Piecewise((x, sympy.Ne(x, 0)), (1, True))),
    ("where(x > 0 and y > 0, 1, 0)", sympy.Piecewise((1, (x > 0) & (y > 0)), (0, True))),
    ("where(x > 0 or y > 0, 1, 0)", sympy.Piecewise((1, (x > 0) | (y > 0)), (0, True))),
    ("where(not x > 0, 1, 0)", sympy.Piecewise((1, x <= 0), (0, True))),
    ("where((x > 0) & (y > 0), 1, 0)", sympy.Piecewise((1, (x > 0) & (y > 0)), (0, True))),
    ("where((x > 0) | ~(y > 0), 1, 0)", sympy.Piecewise((1, (x > 0) | (y <= 0)), (0, True))),
    (
        "where(x > 0, x, where(x < -1, -1, x))",
        sympy.Piecewise((x, x > 0), (-1, x < -1), (x, True)),
    ),
    ("  x\n  + y  ", x + y),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_constructs_build_the_expected_expression(text, expected):
    assert parsed(text) == expected


def test_symbols_are_real_unless_given():
    s = sympy.Symbol("s", positive=True)
    result = parse_expression("s * x", symbols={"s": s})
    assert result.expr == s * x
    assert x.is_real and s in result.expr.free_symbols



def test_remembered_builds_tell_symbols_apart():
    """Min/Max nodes are built once per argument tuple; a symbol with other assumptions is
    another argument, so the same text builds another expression."""
    positive = sympy.Symbol("x", positive=True)
    assert parsed("max(x, 0) + min(x, 0)") == sympy.Max(x, 0) + sympy.Min(x, 0)
    assert parse_expression("max(x, 0) + min(x, 0)", symbols={"x": positive}).expr == positive
    assert parsed("max(x, 0) + min(x, 0)") == sympy.Max(x, 0) + sympy.Min(x, 0)

def test_names_in_order_of_first_appearance():
    assert parse_expression("b * exp(a) + b + pi * c").names == ("b", "a", "c")
    assert parse_expression("0 * y + x").names == ("y", "x")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1", sympy.Rational(1, 10)),
        ("1e-3", sympy.Rational(1, 1000)),
        ("2.5e2", sympy.Integer(250)),
        ("-3.4e38", sympy.Integer(-34 * 10**37)),
        ("1_000.5", sympy.Rational(2001, 2)),
        (
            "1.0507009873554804934193349852946",
            sympy.Rational(10507009873554804934193349852946, 10**31),
        ),
    ],
)
def test_decimal_literals_are_exact(text, value):
    assert parsed(text) == value


def test_round_is_half_to_even_and_exact():
    assert [parsed(f"round({v})") for v in ("0.5", "1.5", "2.5", "-0.5", "-1.5", "2.4999")] == [
        0, 2, 2, 0, -2, 2,
    ]
    assert parsed("round(7/3)") == 2
    # another number is left to the checker's ball arithmetic (see _DecidedOnRationals)
    assert RoundHalfEven(sympy.pi).func is RoundHalfEven
    assert RoundHalfEven(x).is_real and RoundHalfEven(x).is_integer
    assert parsed("round(x)").subs(x, sympy.Rational(5, 2)) == 2


# -- what is rejected, with the token and the column --------------------------------------------

REJECTED = [
    ("__import__('os').system('id')", "name '__import__' is not allowed", 1),
    ("x + __import__('os')", "name '__import__' is not allowed", 5),
    ("x.real", "attribute access ('.real') is not allowed", 2),
    ("exp(x).conjugate()", "attribute access ('.conjugate') is not allowed", 7),
    ("lambda: 1", "lambda is not allowed", 1),
    ("x[0]", "subscripts ('[...]') are not allowed", 2),
    ("x + 'a'", "string literals are not allowed", 5),
    ("b'x'", "bytes literals are not allowed", 1),
    ("f'{x}'", "f-strings are not allowed", 1),
    ("().__class__", "tuples are not allowed", 1),
    ("exp(x=1)", "keyword arguments ('x=') are not allowed", 5),
    ("exp(**x)", "'**' arguments are not allowed", 5),
    ("max(*x)", "starred arguments ('*') are not allowed", 5),
    ("foo(x)", "unknown function 'foo' (docs/grammar.md lists the functions)", 1),
    ("eval('1')", "unknown function 'eval' (docs/grammar.md lists the functions)", 1),
    ("sofplus(x)", "unknown function 'sofplus' (did you mean 'softplus'?)", 1),
    ("x ^ 2", "operator '^' is not allowed; use ** for powers", 3),
    ("x // 2", "operator '//' is not allowed", 3),
    ("x % 2", "operator '%' is not allowed", 3),
    ("x @ y", "operator '@' is not allowed", 3),
    ("x << 1", "operator '<<' is not allowed", 3),
    ("1j", "complex literals ('1j') are not allowed", 1),
    ("x + 2.5j", "complex literals ('2.5j') are not allowed", 5),
    ("True", "'True' is not allowed", 1),
    ("None", "'None' is not allowed", 1),
    ("[x]", "lists are not allowed", 1),
    ("{x: 1}", "dicts are not allowed", 1),
    ("{x}", "sets are not allowed", 1),
    ("(y := 2)", "assignment expressions (':=') are not allowed", 2),
    ("[t for t in x]", "comprehensions are not allowed", 1),
    (
        "x if y else z",
        "conditional expressions ('if') are not allowed; use where(cond, a, b)",
        1,
    ),
    ("(x)(1)", "unknown function 'x' (docs/grammar.md lists the functions)", 1),
    ("(x + 1)(2)", "only named functions can be called", 8),
    ("exp", "'exp' is a function; call it as exp(...)", 1),
    ("x > 0", "'x > 0' is only allowed in the condition of where()", 1),
    ("x > 0 and y", "'x > 0 and y' is only allowed in the condition of where()", 1),
    ("where(x, 1, 0)", "the condition of where() must be a comparison, not 'x'", 7),
    ("where(0 < x < 1, 1, 0)", "chained comparisons are not allowed; use 'and'", 13),
    ("where(x in y, 1, 0)", "comparison 'in' is not allowed; use ==, !=, <, <=, > or >=", 9),
    ("where(y is not x, 1, 0)", "comparison 'is not' is not allowed; use ==, !=, <, <=, > or >=",
     9),
    (
        "where(x < where(x < y, x, y), x, y)",
        "where() inside the condition of where() is not supported",
        7,
    ),
    ("max(x)", "max() takes at least 2 arguments, not 1", 1),
    ("exp(x, y)", "exp() takes 1 argument, not 2", 1),
    ("clip(x, 1)", "clip() takes 3 arguments, not 2", 1),
    ("heaviside()", "heaviside() takes 1 or 2 arguments, not 0", 1),
    ("log(-1)", "'log(-1)' is undefined everywhere", 1),
    ("x + 1/0", "'1/0' is undefined everywhere", 5),
    ("sqrt(-2) * x", "'sqrt(-2)' is undefined everywhere", 1),
    ("(-8)**(1/3)", "'(-8)**(1/3)' is undefined everywhere", 1),
    ("x + sqrt(2*x - x**2 - 2)", "'sqrt(2*x - x**2 - 2)' is undefined everywhere", 5),
    # each condition holds somewhere, not both at once
    ("x**(1/3) + sqrt(-x - 1)", "'x**(1/3) + sqrt(-x - 1)' is undefined everywhere", 1),
    # real at x = 0 only: not "undefined everywhere"
    ("x + sqrt(-x**2)", "'sqrt(-x**2)' is complex-valued (sympy reads it as I*Abs(x))", 5),
    ("(-abs(x))**(1/3)", "'(-abs(x))**(1/3)' is complex-valued (sympy reads it as "
     "(-1)**(1/3)*Abs(x)**(1/3))", 1),
    # Python reads fullwidth and mathematical letters as ASCII ones: refused as written
    ("2*x + \uff58", "name '\uff58' is not ASCII (Python would read it as 'x'): names are "
     "ASCII letters, digits and '_'", 7),
    ("\uff53\uff51\uff52\uff54(x)", "name '\uff53\uff51\uff52\uff54' is not ASCII (Python would "
     "read it as 'sqrt'): names are ASCII letters, digits and '_'", 1),
    ("x*\U0001d460", "name '\U0001d460' is not ASCII (Python would read it as 's'): names are "
     "ASCII letters, digits and '_'", 3),
    ("\u03b1*x", "name '\u03b1' is not ASCII: names are ASCII letters, digits and '_'", 1),
    ("9**9**9**9", "'9**9**9' is too large", 4),
    ("1e99999", "the exponent of '1e99999' is too large", 1),
    # issue 11: numbers and powers too large for exact arithmetic, bounded at parse time
    ("2**33333*x", "'2**33333' is too large", 1),
    ("(x+y+1)**1000", "the exponent of '(x+y+1)**1000' is too large (at most 100 in "
     "size, denominator at most 1000000000000)", 1),
    ("sin(x)**(2**64)", "the exponent of 'sin(x)**(2**64)' is too large (at most 100 in "
     "size, denominator at most 1000000000000)", 1),
    ("x**(10**10)", "the exponent of 'x**(10**10)' is too large (at most 100 in "
     "size, denominator at most 1000000000000)", 1),
    ("x + abs(x)**1e1000", "the exponent of 'abs(x)**1e1000' is too large (at most 100 in "
     "size, denominator at most 1000000000000)", 5),
    ("x**(1/10**1000)", "the exponent of 'x**(1/10**1000)' is too large (at most 100 in "
     "size, denominator at most 1000000000000)", 1),
    ("x**exp(1000)", "the exponent of 'x**exp(1000)' is too large (at most 100)", 1),
    ("exp(log(x)*10**10)", "'exp(log(x)*10**10)' makes a power of exponent above 100 in size "
     "or with a denominator above 1000000000000", 1),
    ("sqrt(2)**(10**10)*x", "the exponent of 'sqrt(2)**(10**10)' is too large (at most 100 in "
     "size, denominator at most 1000000000000)", 1),
    ("exp(exp(exp(1000)))*x", "'exp(exp(1000))' is above 1e1000 in magnitude", 5),
    ("2**3000*2**3000*x", "'2**3000*2**3000*x' holds a number above 1e1000", 1),
    ("0x" + "f" * 900, "the number '0xffffffffffffffffff...' is too large", 1),
    ("max(" + ", ".join(f"x{i}" for i in range(65)) + ")",
     "max() has 65 arguments, more than 64", 1),
    ("+".join(f"x{i}" for i in range(65)), "expression has more than 64 variable names", 247),
    ("+".join(["x"] * 2001), "expression has more than 2000 terms", 1),
    ("x +", "invalid syntax", 4),
    ("x + $", "invalid syntax", 5),
    ("", "empty expression", 1),
    ("   ", "empty expression", 1),
]


@pytest.mark.parametrize(("text", "message", "column"), REJECTED)
def test_rejected_with_one_line_naming_token_and_column(text, message, column):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text, source="ops.toml:Foo")
    assert str(caught.value) == f"ops.toml:Foo: {message} at column {column}"
    assert "\n" not in str(caught.value)


def test_columns_count_characters_not_bytes():
    with pytest.raises(ExpressionError, match="invalid syntax at column 7$"):
        parse_expression("'é' + * x")  # (the '*': column 8 in UTF-8 bytes)


def test_multiline_text_reports_line_and_column():
    with pytest.raises(ExpressionError, match=r"unknown function 'foo' \(docs/grammar.md lists "
                       r"the functions\) at line 2, column 5$"):
        parse_expression("(x +\n    foo(x))")


def test_length_and_depth_limits():
    with pytest.raises(ExpressionError, match="longer than 10000 characters"):
        parse_expression("x" * 10_001)
    deep = "-" * (MAX_DEPTH + 5) + "x"
    with pytest.raises(ExpressionError, match=f"nested more than {MAX_DEPTH} deep"):
        parse_expression(deep)
    with pytest.raises(ExpressionError, match=f"nested more than {MAX_DEPTH} deep"):
        parse_expression("-(" * 120 + "x" + ")" * 120)
    with pytest.raises(ExpressionError, match=f"calls nested more than {MAX_CALL_DEPTH} deep"):
        parse_expression("abs(" * 150 + "x" + ")" * 150)
    with pytest.raises(ExpressionError, match="too many nested parentheses at column 201"):
        parse_expression("(" * 300 + "x" + ")" * 300)


def test_long_flat_sums_are_not_deep():
    text = " + ".join(f"w{i % 30}*x{i // 30}" for i in range(300))  # 40 names
    assert len(parsed(text).args) == 300


def test_non_text_is_a_type_error():
    with pytest.raises(TypeError):
        parse_expression(b"x")  # type: ignore[arg-type]


# -- the domain of partial operations -----------------------------------------------------------

DOMAINS = [
    ("x**2/x", x, [sympy.Ne(x, 0)]),
    ("sqrt(x)", sympy.sqrt(x), [x >= 0]),
    ("log(x)", sympy.log(x), [x > 0]),
    ("exp(log(x))", x, [x > 0]),
    ("sqrt(x)**2", x, [x >= 0]),
    ("x**0.5", sympy.sqrt(x), [x >= 0]),
    ("x**-0.5", 1 / sympy.sqrt(x), [x > 0]),
    ("x**-2", x**-2, [sympy.Ne(x, 0)]),
    ("x**y", x**y, [x > 0]),
    ("x/y/z", x / (y * z), [sympy.Ne(y, 0), sympy.Ne(z, 0)]),
    ("asin(x)", sympy.asin(x), [x >= -1, x <= 1]),
    ("acosh(x)", sympy.acosh(x), [x >= 1]),
    ("atanh(x)", sympy.atanh(x), [x > -1, x < 1]),
    ("tan(x)", sympy.tan(x), [sympy.Ne(sympy.cos(x), 0)]),
    ("log(x) + log(x)", 2 * sympy.log(x), [x > 0]),
    ("x / 2 + 2**x + x**2", x / 2 + 2**x + x**2, []),
    ("log(exp(x)) + sqrt(x**2 + 1) + 1/(1 + exp(-x))", None, []),
    ("where(x > 0, log(x), 0)", sympy.Piecewise((sympy.log(x), x > 0), (0, True)), []),
    ("where(x > 0, 0, sqrt(-x))", None, []),
    ("where(x > 0, 1/y, 0)", None, [(x <= 0) | sympy.Ne(y, 0)]),
    # conditions on one symbol that hold at every real are no condition
    ("where(x >= 0, sqrt(x), sqrt(-x))", None, []),
    ("sqrt(x**2 - 2*x + 1)", None, []),
    ("x/(x**2 + 1)", None, []),
    ("sqrt(x - x**2)", None, [x - x**2 >= 0]),
]


@pytest.mark.parametrize(("text", "expr", "domain"), DOMAINS)
def test_domain_keeps_what_sympy_cancels(text, expr, domain):
    result = parse_expression(text)
    if expr is not None:
        assert result.expr == expr
    assert list(result.domain) == domain


def test_domain_skips_conditions_true_for_given_symbols():
    s = sympy.Symbol("s", positive=True)
    assert parse_expression("log(s) + 1/s + s**y", symbols={"s": s}).domain == ()


# -- printing back ------------------------------------------------------------------------------

ROUND_TRIP = [
    "x", "-x", "x - y", "x - 2*y - 1/3", "-x/3 + y/7", "x*y/(z*alpha)", "x/(y + 1)",
    "(x + 1)**-2 * y**0.5/3", "x**(1/3)", "x**-2.5", "2**(-x)", "(x*y)**y", "x**y**z",
    "2*sqrt(2)*x", "sqrt(2)/2", "1/sqrt(x*y)", "exp(1)*x", "exp(-x)", "pi/2 - x",
    "0.1*x + 2.5", "1.0507009873554804934193349852946*where(x > 0, x, 1.6732*(exp(x) - 1))",
    "-3.4e38 + x", "1e-10*x", "sigmoid(x)", "softplus(x)", "x*sigmoid(1.702*x)",
    "x/2*(1 + erf(x/sqrt(2)))", "clip(x, lo, hi)", "max(x, y, 0)", "min(-x, 0)",
    "heaviside(x)", "heaviside(x, 1/2)", "heaviside(x - 1, 1)", "round(x/3)", "round(x)*2",
    "floor(x) - ceil(-x)", "abs(x)*sign(x)", "tanh(softplus(x))*x", "atan(x)/pi",
    "where(x > 0, x, alpha*x)", "where(x > 0, x, where(x < -1, -1, alpha*x))",
    "where(x > 0 and y > 0 or x < -1, x, y)", "where(not (x > 0 and y > 0), x, y)",
    "where(x == 1, x, -x)", "where(x != y, x - y, 1)", "where(x > 0, where(y > 0, 1, 2), 3)",
    "(-x)**3", "(-1)**3", "(x - 1)**(1/2)", "x**2**y", "exp(x)**2", "(x/y)**alpha",
    "max(x, y)**2", "-max(x, y)", "-(x + y)**2", "1/(1 - x)", "x**-1",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_format_round_trips(text):
    expr = parsed(text)
    printed = format_expression(expr)
    assert parsed(printed) == expr, printed


def test_format_prints_sympy_built_expressions():
    u = sympy.Symbol("u", real=True)
    cases = {
        sympy.Piecewise((1, u > 1), (u, u > -1), (-1, True)): (
            "where(u > 1, 1, where(u > -1, u, -1))"
        ),
        sympy.Heaviside(u): "heaviside(u, 1/2)",
        sympy.E**u: "exp(u)",
        sympy.E * u: "exp(1)*u",
        sympy.Float(0.1) * u: "3602879701896397*u/36028797018963968",
        sympy.Float(0.5) * u: "u/2",
        sympy.Rational(-7, 3): "-7/3",
        sympy.Integer(-2) ** u: "(-2)**u",
        RoundHalfEven(u / 2): "round(u/2)",
    }
    for expr, text in cases.items():
        assert format_expression(expr) == text


@pytest.mark.parametrize(
    "expr",
    [
        sympy.Function("f")(x),
        sympy.Symbol("exp", real=True),
        sympy.Symbol("lambda"),
        sympy.Symbol("x y"),
        sympy.Piecewise((x, x > 0)),
        sympy.zoo,
        sympy.I * x,
    ],
)
def test_format_refuses_what_the_grammar_cannot_write(expr):
    with pytest.raises(ValueError, match="the grammar cannot write"):
        format_expression(expr)


# -- round trip over random expression trees ----------------------------------------------------

_LEAVES = ["x", "y", "alpha", "0", "1", "2", "3", "0.5", "1e-3", "2.25", "7", "pi", "1/3"]
_UNARY_FUNCTIONS = [
    "exp", "log", "sqrt", "abs", "sign", "tanh", "sin", "cos", "erf", "sigmoid", "softplus",
    "floor", "ceil", "round", "heaviside", "atan", "atanh", "asin", "cosh",
]
_EXPONENTS = ["2", "3", "-1", "0.5", "(1/3)", "y"]
_COMPARATORS = ["<", "<=", ">", ">=", "==", "!="]


@st.composite
def expressions(
    draw: st.DrawFn, depth: int = 4, leaves=tuple(_LEAVES), exponents=tuple(_EXPONENTS)
) -> str:
    """Random text in the grammar: every operator and function, nested up to ``depth``
    (tests/test_fuzz_cli.py draws it with larger leaves and exponents)."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(leaves))
    sub = expressions(depth - 1, leaves, exponents)
    kind = draw(st.sampled_from(["binary", "power", "unary", "neg", "extremum", "clip", "where"]))
    if kind == "binary":
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"({draw(sub)} {op} {draw(sub)})"
    if kind == "power":
        return f"({draw(sub)})**{draw(st.sampled_from(exponents))}"
    if kind == "unary":
        return f"{draw(st.sampled_from(_UNARY_FUNCTIONS))}({draw(sub)})"
    if kind == "neg":
        return f"-({draw(sub)})"
    if kind == "extremum":
        args = draw(st.lists(sub, min_size=2, max_size=3))
        return f"{draw(st.sampled_from(['max', 'min']))}({', '.join(args)})"
    if kind == "clip":
        return f"clip({draw(sub)}, {draw(sub)}, {draw(sub)})"
    comparison = f"{draw(sub)} {draw(st.sampled_from(_COMPARATORS))} {draw(sub)}"
    return f"where({comparison}, {draw(sub)}, {draw(sub)})"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
@example("sigmoid((0 + ((7 + 7))**3))")  # prints exp(-2744), once refused as too small
@example("exp((log(x) / 1e-3))")  # sympy builds x**1000: refused as input, as printed
@example("sigmoid((log(x) / 1e-3))")  # the same, built deep inside sigmoid
@example("exp(abs(exp((x)**0.5)))")  # sympy evaluates it to atan2(0, x): refused as input
@example("(x + ((clip(0, 0, x))**0.5)**y)")  # its domain holds nowhere (below)
def test_format_round_trips_random_expressions(text):
    try:
        result = parse_expression(text)
    except ExpressionError:
        assume(False)  # e.g. log(-1), undefined everywhere: rejected by design
    printed = format_expression(result.expr)
    try:
        assert parsed(printed) == result.expr, printed
    except ExpressionError as error:
        # sqrt(min(0, x))**y needs sqrt(min(0, x)) > 0, which sympy leaves standing; printed,
        # sympy joins the powers and min(0, x) > 0 is false: refused as undefined
        # everywhere. Only an expression whose domain holds at no point may do that.
        assert "undefined everywhere" in str(error) and not _holds_somewhere(result.domain), \
            printed


def _holds_somewhere(domain) -> bool:
    """Whether the conditions all hold at some point of a grid of each symbol's values."""
    symbols = sorted(set().union(*(c.free_symbols for c in domain)), key=str)
    if not symbols:
        return all(bool(c) for c in domain)
    grid = [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0]
    checks = [sympy.lambdify(symbols, c, "math") for c in domain]
    for point in itertools.product(grid, repeat=len(symbols)):
        try:
            if all(check(*point) for check in checks):
                return True
        except (ValueError, ZeroDivisionError, TypeError, OverflowError):
            continue
    return False


@pytest.mark.parametrize(
    "text", ["x != 0", "alpha > 0 and x >= -1", "x < 1 or not y <= 2", "log(x) > 0", "x == y"]
)
def test_conditions_round_trip(text):
    condition = parse_condition(text).expr
    assert parse_condition(format_expression(condition)).expr == condition


def test_parsed_domains_print_and_read_back():
    result = parse_expression("where(x > 0, 1/y, log(x + 2))")
    assert [parse_condition(format_expression(c)).expr for c in result.domain] == list(
        result.domain
    )


def test_condition_text_must_be_a_condition():
    with pytest.raises(ExpressionError, match="must be a comparison, not 'x' at column 1"):
        parse_condition("x")


def test_an_expression_sympy_evaluates_beyond_the_grammar_is_refused_where_it_is_read():
    """abs(exp(sqrt(x))) of a real x becomes exp(cos(atan2(0, x)/2) sqrt(|x|)) as sympy builds
    it, which the grammar cannot print: refused when parsed, with the form named, rather than
    accepted and failing where a certificate or report prints it."""
    with pytest.raises(ExpressionError, match=r"cannot write: atan2\(0, x\)"):
        parse_expression("exp(abs(exp((x)**0.5)))")


def test_a_step_of_a_hidden_zero_is_a_bounded_number():
    """heaviside of a number whose sign sympy cannot tell (asin(3/5) - atan(3/4) is 0) stays
    unevaluated; its size is at most 1 + |h0|, and it had been refused as above 1e1000."""
    parsed = parse_expression("x + heaviside(asin(3/5) - atan(3/4), 1)")
    assert parsed.expr.has(sympy.Heaviside)
