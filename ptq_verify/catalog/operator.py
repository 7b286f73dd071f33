"""The operator declaration: what the checker proves things about and what the engine runs.

An operator is declared once, by a symbolic transfer function over named scalar elements and
parameters, grouped into input tensors. Element-wise operators have one element per tensor;
structural operators (Gemm, pooling, Softmax, ...) are declared by a small fixed-arity witness of
one output element (a 2x2 max pool is ``max(x0, x1, x2, x3)`` over one tensor ``x``).

Elements of one tensor share that tensor's scale; different tensors may scale independently.
Parameters are what a PTQ pipeline may rescale (biases, clip bounds, statistics, slopes).
"""

from __future__ import annotations

import numbers
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from .literals import MAX_NUMBER, exact_number, float_or_inf

if TYPE_CHECKING:
    import sympy

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# certificates name the scales s and s_<tensor> and the sign-split variables t_<x>
_RESERVED = re.compile(r"(s|s_.*|t_.*)\Z")


def _check_name(name: str, where: str) -> None:
    if not isinstance(name, str):  # (from Python: inputs=[["a", 5]] had been a TypeError)
        raise DeclarationError(f"{where}: {name!r} is {type(name).__name__}, not a name")
    if not _NAME.match(name):
        raise DeclarationError(f"{where}: {name!r} is not a valid name")
    if _RESERVED.match(name):
        raise DeclarationError(
            f"{where}: the name {name!r} is reserved (s, s_*, t_* name scales and sign "
            "variables in certificates); rename it"
        )

Kernel = Callable[..., Any]
"""``kernel(**values)``: each element and parameter name -> a numpy array (broadcastable)."""

OnnxKernel = Callable[[list, Mapping[str, Any]], Any]
"""``onnx_kernel(inputs, attrs)``: ONNX input arrays (None for absent optional inputs) and
attributes -> the output array (or a list of them), with the ONNX operator's semantics."""

AttributeDefault = Callable[[Sequence[tuple | None], Mapping[str, Any]], Any]
"""``rule(shapes, attrs)``: a node's input shapes (each a tuple of ints and symbolic dimensions,
str or None; None for an input absent or of unknown shape) and attributes -> the value of an
attribute it leaves out, or None where they do not tell it."""


class DeclarationError(ValueError):
    """A declaration is malformed: bad names, unknown symbols, inconsistent ONNX binding."""


ONNX_TYPE = re.compile(r"(?:[^\s:]+:)?[^\s:]+")
"""An op type, ``Op`` or ``domain:Op``: a hostile-input hunt's ``':'`` and ``'com.x:Relu:'``
were accepted and declared no node (the op type the file meant was then refused as unknown)."""


def onnx_type_problem(onnx_type: object) -> str | None:
    """Why ``onnx_type`` declares no node (not text, a character that does not print, not
    ``Op`` or ``domain:Op``), or None: checked for a TOML file's and a Python declaration
    alike (``Operator(..., onnx_type=5)`` had been taken, and failed where a model met it)."""
    if not isinstance(onnx_type, str):
        return f"must be a string, not {type(onnx_type).__name__}"
    if not onnx_type.isprintable():
        return "holds a character that does not print (a line break, a tab, an escape code)"
    if not ONNX_TYPE.fullmatch(onnx_type):
        return (f"{onnx_type!r} is not an op type (Op or domain:Op, without spaces; ':' or "
                "'com.x:Relu:' would declare no node)")
    return None


@dataclass(frozen=True)
class TensorInput:
    """One activation input: a name and the scalar elements of it the witness uses."""

    name: str
    elements: tuple[str, ...]


def parse_inputs(spec: str | Sequence[str | Sequence[str]]) -> tuple[TensorInput, ...]:
    """Read an input grouping.

    ``"x"`` is one tensor; ``"a, b"`` two tensors; ``"x0 x1 x2 x3"`` one tensor of four
    elements (commas separate tensors, spaces separate the elements of one tensor). A sequence
    is read the same way item by item, and an item may itself be a sequence of element names.
    """
    if isinstance(spec, str):
        groups = [g.split() for g in spec.split(",")]
    elif isinstance(spec, Sequence) and all(isinstance(item, (str, Sequence)) for item in spec):
        groups = [item.split() if isinstance(item, str) else list(item) for item in spec]
    else:  # (from Python: inputs=None or 5 had been a TypeError)
        raise DeclarationError(f"inputs: {spec!r} is {type(spec).__name__}; give names as "
                               'text ("a, b"), or a list of them')
    tensors = []
    seen: set[str] = set()
    for position, elements in enumerate(groups):
        if not elements:
            raise DeclarationError(f"inputs: tensor {position + 1} has no element names")
        for element in elements:
            _check_name(element, "inputs")
            if element in seen:
                raise DeclarationError(f"inputs: {element!r} appears twice")
            seen.add(element)
        tensors.append(TensorInput(_tensor_name(elements, position), tuple(elements)))
    return _distinct_names(tensors)


def _distinct_names(tensors: list[TensorInput]) -> tuple[TensorInput, ...]:
    """Rename tensors whose derived name another tensor already uses, as a name or an element.

    A tensor's name keys its scale (``s_<name>``): two tensors under one name would share one
    scale symbol, and a proof with one shared scale says nothing about independent ones.
    """
    taken: set[str] = set()
    named = []
    for position, tensor in enumerate(tensors):
        others = {e for t in tensors if t is not tensor for e in t.elements}
        name = tensor.name
        if name in taken or name in others:
            name = f"input{position}"
            while name in taken or name in others or name in tensor.elements[1:]:
                name = f"{name}_"
        taken.add(name)
        named.append(TensorInput(name, tensor.elements))
    return tuple(named)


def _tensor_name(elements: Sequence[str], position: int) -> str:
    """``x0 x1 x2`` is tensor ``x``; a single element names its own tensor."""
    if len(elements) == 1:
        return elements[0]
    stems = {re.sub(r"_?\d+\Z", "", e) for e in elements}
    if len(stems) == 1 and (stem := stems.pop()):
        return stem
    return f"input{position}"


def _to_number(value: Any, where: str) -> Fraction:
    """A parameter's sample value, exact; text and floats by their decimal digits, within the
    grammar's number limits. Booleans are not numbers here (TOML ``b = true`` is a mistake)."""
    if isinstance(value, numbers.Rational) and not isinstance(value, bool):
        number = Fraction(int(value.numerator), int(value.denominator))
        if max(abs(number.numerator), number.denominator) > MAX_NUMBER:
            raise DeclarationError(f"{where}: the value is above 1e1000")
        return number
    if isinstance(value, str) or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        try:
            return exact_number(str(value))
        except ValueError as err:
            raise DeclarationError(f"{where}: {err}") from None
    raise DeclarationError(f"{where}: {value!r} is not a number")


_deferring = False


def _is_sympy(value: Any) -> bool:
    """Whether ``value`` is a sympy object, without importing sympy for it: a caller that
    holds one has imported sympy already."""
    sympy = sys.modules.get("sympy")
    return sympy is not None and isinstance(value, sympy.Basic)


def _checked_domain(name: str, domain: object) -> tuple:
    """``domain`` as a tuple of sympy relations, or a DeclarationError: text (``"x > 0"``)
    had reached sympy as an AttributeError. A condition written in the expression is
    recorded by the parser (``log(x)``: x > 0), which is the way for text."""
    if isinstance(domain, (str, bytes)) or not isinstance(domain, Sequence):
        conditions: tuple = (domain,)
    else:
        conditions = tuple(domain)
    for condition in conditions:
        if not _is_sympy(condition):
            raise DeclarationError(
                f"{name}: domain: {condition!r} is {type(condition).__name__}, not a sympy "
                "relation (sympy.Symbol('x', real=True) > 0); or let the expression state "
                "it: log(x) and sqrt(x) record theirs")
    return conditions


@contextmanager
def deferred_parsing() -> Iterator[None]:
    """Operators declared inside parse their expression on first use, not at once: the
    built-in catalog (:mod:`.ops`), whose declarations the tests parse every one of, so that a
    process using a few operators (``ptq-verify quantize`` of a CNN) does not parse all of them
    (0.35 s of its start). A user's declarations are parsed, and refused, when declared."""
    global _deferring
    before, _deferring = _deferring, True
    try:
        yield
    finally:
        _deferring = before


def _undeclared_names(operator: str, unknown: set[str], text: object) -> str:
    """The message for names of the expression that are neither inputs nor parameters, with
    where the first of them is written in the expression's text (a file of many declarations
    is fixed faster with the column the grammar's other messages give)."""
    from .grammar import name_offset, position_text

    offsets = {name: name_offset(text, name) if isinstance(text, str) else None
               for name in unknown}
    written = sorted(unknown, key=lambda name: (offsets[name] is None, offsets[name] or 0, name))
    first = (position_text(text, offsets[written[0]])
             if offsets[written[0]] is not None else None)
    many = len(written) > 1
    return (f"{operator}: {', '.join(written)} in the expression {'are' if many else 'is'} "
            f"neither {'inputs nor parameters' if many else 'an input nor a parameter'}"
            f"{f' at {first}' if first else ''} (list {'them' if many else 'it'} in params, "
            "or in inputs)")


class Operator:
    """A declared operator.

    Args:
        name: the operator's name (a catalog key, e.g. ``"LeakyRelu"``).
        inputs: the activation inputs, see :func:`parse_inputs`.
        expr: the symbolic form, a sympy expression or text in the safe grammar.
        params: parameter name -> sample value (used for kernels and counterexamples; a
            proved rule holds for every value). A sequence of names gives sample value 1.
        kernel: numpy implementation of ``expr``; derived from ``expr`` when omitted.
        onnx_type: the ONNX op type, when one exists.
        onnx_inputs: per ONNX input slot, the witness names it carries: a tensor name, a
            space-separated list of parameter names (e.g. ``"w0 w1"`` for Gemm's B), or None
            for a static input (shapes, axes, indices) that is never scaled.
        onnx_attrs: ONNX attribute name -> parameter name (e.g. LeakyRelu ``alpha``). A
            parameter bound to no attribute or input is a constant of the op to the engine,
            which then cannot rescale it (a declaration file binds every parameter by name).
        onnx_defaults: ONNX attribute name (one of ``onnx_attrs``) -> how the value of that
            attribute is computed where a node leaves it out and the ONNX schema gives no
            default: a function of the node's input shapes and attributes (Attention's scale,
            1/sqrt of Q's head size), None where they do not tell it. Without it the engine
            cannot know the value a rule is to rescale, and such a node runs in float.
        onnx_input_defaults: ONNX input slot (an optional input bound to parameters) -> the
            value the op takes where a node leaves that input out (Pad's constant_value, 0).
            The qdq format writes a default of 0 explicitly where it runs the node on codes
            with a zero point z, moved by z as the shift rule says (a Pad on uint8 codes pads
            with z); without it such a node runs on dequantized values, which OpenVINO
            2026.4 refused for a Pad before a Reshape (docs/limits.md).
        onnx_kernel: the tensor implementation with ONNX semantics; element-wise operators
            get one from ``kernel`` by broadcasting.
        onnx_match: when several declarations share one ``onnx_type``, the conditions under
            which an ONNX node is this one: attribute name (absent attributes take their ONNX
            default) or input slot number (a constant input) -> the required value, or a tuple
            of allowed values. E.g. GeluTanh ``{"approximate": "tanh"}``, Pow2 ``{1: 2}``.
            See :func:`ptq_verify.catalog.operator_for_onnx_type`.
        onnx_input_types: ONNX input slot -> the ONNX element types (``onnx.TensorProto``
            numbers, as Cast's ``to``) that input must have for a node to be this declaration:
            CastLike, whose target type is its second input's, is the identity only to a
            float type (an integer target truncates). A node whose input type is unknown
            does not match.
        onnx_arity: the number of ONNX inputs a node must have to be this declaration, for a
            variadic ONNX op whose inputs play different roles (Einsum's operands each carry
            their own scale, so a three-operand node is not a two-operand witness with its last
            slot repeated); None for no exact count (see ``onnx_variadic``).
        onnx_variadic: a node may have more inputs than ``onnx_inputs`` binds, each further one
            bound like the last (Concat, Sum, Max: every input plays one role). Without it a
            node with an input beyond the bound slots is refused: the witness says nothing of it.
        onnx_outputs: how many ONNX outputs the declaration describes: 1 (its witness is an
            element of the node's first output), or None for any number, each one described by
            the witness (Split's parts). A node with a further non-empty output is refused.
        form_hint: how a node of another form comes to be and what makes it one of this
            form, said after the conditions in a refusal (Dropout in training mode: export
            the model after ``model.eval()``).
        index_outputs: ONNX output slot (1 on) -> the name of another catalog declaration,
            over the same input elements, whose witness is an element of that output: an
            integer output of positions (TopK's indices: ArgMax's witness), which carries no
            scale and is never an activation. The declaration then describes those outputs
            too (``onnx_outputs`` counts them).
        domain: extra conditions on the elements (sympy relations) under which ``expr`` is
            defined; conditions implied by the expression (log, sqrt, division) are recorded
            by the parser automatically.
        mixes_channels: whether one output element depends on several channels (Conv, Gemm,
            Softmax), which rules out per-channel scales through it. None (the default): it
            does where an input is a tensor of several elements in the witness (a norm over
            ``x0 x1 x2`` may combine channels; nothing in the expression says which axes its
            elements lie along), not where every input is one element; a pool, whose window
            lies in one channel, says False.
        doc: one line on what the operator is.
    """

    def __init__(
        self,
        name: str,
        inputs: str | Sequence[str | Sequence[str]] = "x",
        expr: sympy.Expr | str = "x",
        params: Mapping[str, Any] | Sequence[str] | None = None,
        kernel: Kernel | None = None,
        onnx_type: str | None = None,
        *,
        onnx_inputs: Sequence[str | None] | None = None,
        onnx_attrs: Mapping[str, str] | None = None,
        onnx_defaults: Mapping[str, AttributeDefault] | None = None,
        onnx_input_defaults: Mapping[int, float] | None = None,
        onnx_kernel: OnnxKernel | None = None,
        onnx_match: Mapping[str | int, Any] | None = None,
        onnx_input_types: Mapping[int, tuple[int, ...]] | None = None,
        onnx_arity: int | None = None,
        onnx_variadic: bool = False,
        onnx_outputs: int | None = 1,
        index_outputs: Mapping[int, str] | None = None,
        form_hint: str = "",
        domain: Sequence[sympy.Basic] = (),
        mixes_channels: bool | None = None,
        doc: str = "",
    ) -> None:
        if not isinstance(name, str):  # (Operator(5, ...) had been told its name was empty)
            raise DeclarationError(f"an operator's name is text, not {type(name).__name__}")
        if not name:
            raise DeclarationError("an operator needs a non-empty name")
        self.name = name
        self.inputs = parse_inputs(inputs)
        if params is None:
            params = {}
        elif isinstance(params, (str, bytes)):
            # iterated, text is its characters: "beta" had declared b, e, t and a, and the
            # expression's beta was then said to be no parameter
            raise DeclarationError(
                f"{name}: params {params!r} is text; give a dict of name -> sample value "
                "({'beta': '1.702'}) or a list of names (['beta'])")
        elif not isinstance(params, Mapping):
            # a name listed twice is a slip (the one-liner's --params refuses it), not one
            # parameter: said, as an input named twice is
            listed = list(params)
            if twice := next((p for i, p in enumerate(listed) if p in listed[:i]), None):
                raise DeclarationError(f"{name}: parameter {twice!r} appears twice")
            params = {p: 1 for p in listed}
        self.params: dict[str, Fraction] = {
            p: _to_number(v, f"{name}: parameter {p}") for p, v in params.items()
        }
        for p in self.params:
            _check_name(p, f"{name}: parameter")
            if p in self.element_names:
                raise DeclarationError(f"{name}: {p!r} is both an input and a parameter")
        if not isinstance(expr, str) and not _is_sympy(expr):
            raise DeclarationError(f"{name}: expr must be text or a sympy expression")
        self._declared = (expr, _checked_domain(name, domain))
        for what, function in (("kernel", kernel), ("onnx_kernel", onnx_kernel)):
            if function is not None and not callable(function):
                # (a number or a name here had failed only when first run, a TypeError)
                raise DeclarationError(f"{name}: {what} must be a function, not "
                                       f"{type(function).__name__}")
        self._kernel = kernel
        if onnx_type is not None and (problem := onnx_type_problem(onnx_type)):
            raise DeclarationError(f"{name}: onnx_type {problem}")
        self.onnx_type = onnx_type
        self.onnx_inputs = tuple(onnx_inputs) if onnx_inputs is not None else tuple(
            t.name for t in self.inputs
        )
        self.onnx_attrs = dict(onnx_attrs or {})
        self.onnx_defaults = dict(onnx_defaults or {})
        self.onnx_input_defaults = {slot: float(value)
                                    for slot, value in (onnx_input_defaults or {}).items()}
        self._onnx_kernel = onnx_kernel
        self.onnx_match = dict(onnx_match or {})
        self.onnx_input_types = {slot: tuple(types)
                                 for slot, types in (onnx_input_types or {}).items()}
        self.onnx_arity = onnx_arity
        self.onnx_variadic = onnx_variadic
        self.form_hint = form_hint
        self.index_outputs = dict(index_outputs or {})
        if any(not isinstance(slot, int) or slot < 1 for slot in self.index_outputs):
            raise DeclarationError(f"{name}: index_outputs are ONNX output slots from 1 on")
        self.onnx_outputs = (onnx_outputs if onnx_outputs is None or not self.index_outputs
                             else max(onnx_outputs, 1 + max(self.index_outputs)))
        if mixes_channels is not None and not isinstance(mixes_channels, bool):
            raise DeclarationError(f"{name}: mixes_channels is true or false, not "
                                   f"{type(mixes_channels).__name__}")
        self.mixes_channels = (any(len(t.elements) > 1 for t in self.inputs)
                               if mixes_channels is None else mixes_channels)
        self.doc = doc
        self._check_binding()
        if not _deferring:
            self._parsed  # noqa: B018 - a bad expression fails here, at the declaration

    @property
    def declared(self) -> tuple[str | sympy.Basic, tuple[sympy.Basic, ...]]:
        """(expression, extra domain) as declared: the expression's text is not parsed here,
        so the verdict store can key a declaration without sympy (rules.store)."""
        return self._declared

    @cached_property
    def _parsed(self) -> tuple[sympy.Basic, tuple[sympy.Basic, ...]]:
        """(expression, domain) with the real symbols, checked against the names."""
        from .grammar import CONSTANTS, FUNCTIONS, ExpressionError, parse_expression

        expr, domain = self._declared
        parsed_domain: tuple = ()
        if isinstance(expr, str):
            for name in (*self.element_names, *self.params):
                if name in CONSTANTS or name in FUNCTIONS:  # the text could not mean the name
                    what = "the constant" if name in CONSTANTS else "the function"
                    raise DeclarationError(
                        f"{self.name}: {name!r} is declared as an input or parameter, but "
                        f"expressions read it as {what} {name}; rename it")
            try:
                parsed = parse_expression(expr, source=self.name)
            except ExpressionError as err:
                raise DeclarationError(str(err)) from None
            expr, parsed_domain = parsed.expr, tuple(parsed.domain)
        expr = self._canonical_symbols(expr)
        unknown = {str(s) for s in expr.free_symbols} - set(self.element_names) - set(
            self.params
        )
        if unknown:
            raise DeclarationError(_undeclared_names(self.name, unknown, self._declared[0]))
        domain = tuple(self._canonical_symbols(c) for c in (*parsed_domain, *domain))
        self._check_samples_in(domain)
        return expr, domain

    def _check_samples_in(self, domain: tuple) -> None:
        """Refuse sample values that a condition on the parameters alone rules out (t = 0
        for a division by t): the checker evaluates at them, and there the expression has no
        value (a helper's hunt met 'nan is not comparable' from deep in the checker)."""
        import sympy

        from .grammar import format_expression

        names = {self.symbols[p]: p for p in self.params}
        for condition in domain:
            if not condition.free_symbols or not condition.free_symbols <= names.keys():
                continue
            if condition.subs({s: self.params[p] for s, p in names.items()}) is sympy.false:
                given = ", ".join(f"{names[s]} = {self.params[names[s]]}"
                                  for s in sorted(condition.free_symbols, key=str))
                many = "," in given
                raise DeclarationError(
                    f"{self.name}: the sample value{'s' if many else ''} {given} "
                    f"{'lie' if many else 'lies'} outside the expression's domain "
                    f"({format_expression(condition)}); give sample values inside it")

    @property
    def expr(self) -> sympy.Basic:
        """The symbolic form, over the real symbols of :attr:`symbols`."""
        return self._parsed[0]

    @property
    def domain(self) -> tuple[sympy.Basic, ...]:
        """Conditions under which ``expr`` is defined (declared and implied by the parse)."""
        return self._parsed[1]

    # -- names and symbols -------------------------------------------------------------

    @cached_property
    def element_names(self) -> tuple[str, ...]:
        return tuple(e for t in self.inputs for e in t.elements)

    @cached_property
    def symbols(self) -> dict[str, sympy.Symbol]:
        """Every element and parameter name -> its real sympy symbol."""
        import sympy

        names = (*self.element_names, *self.params)
        return {n: sympy.Symbol(n, real=True) for n in names}

    def _canonical_symbols(self, expr: sympy.Basic) -> sympy.Basic:
        """Replace symbols of the same name but other assumptions by the real ones.

        Only symbols that differ are swapped: xreplace rebuilds every node above a replaced
        symbol, even one replaced by itself, and the parser's symbols already are the real ones.
        """
        swap = {
            s: self.symbols[str(s)]
            for s in expr.free_symbols
            if str(s) in self.symbols and s != self.symbols[str(s)]
        }
        return expr.xreplace(swap)

    def _check_binding(self) -> None:
        names = {t.name for t in self.inputs}
        for slot, carried in enumerate(self.onnx_inputs):
            if carried is None:
                continue
            for item in carried.split():
                if item not in names and item not in self.params:
                    raise DeclarationError(
                        f"{self.name}: ONNX input {slot} carries {item!r}, which is neither an "
                        "input tensor nor a parameter"
                    )
        for key in self.onnx_match:
            if isinstance(key, int) and not 0 <= key < len(self.onnx_inputs):
                raise DeclarationError(f"{self.name}: onnx_match names ONNX input {key}, absent")
        for slot in self.onnx_input_types:
            if not isinstance(slot, int) or not 0 <= slot < len(self.onnx_inputs):
                raise DeclarationError(
                    f"{self.name}: onnx_input_types names ONNX input {slot}, absent")
        if self.onnx_arity is not None and self.onnx_arity > len(self.onnx_inputs):
            raise DeclarationError(
                f"{self.name}: onnx_arity {self.onnx_arity} but {len(self.onnx_inputs)} ONNX "
                "inputs are bound"
            )
        for attr, param in self.onnx_attrs.items():
            if param not in self.params:
                raise DeclarationError(
                    f"{self.name}: ONNX attribute {attr!r} maps to unknown parameter {param!r}"
                )
        for slot in self.onnx_input_defaults:
            carried = (self.onnx_inputs[slot] if isinstance(slot, int)
                       and 0 <= slot < len(self.onnx_inputs) else None)
            if carried is None or any(item not in self.params for item in carried.split()):
                raise DeclarationError(
                    f"{self.name}: onnx_input_defaults names ONNX input {slot!r}, which "
                    "carries no parameter")
        for attr in self.onnx_defaults:
            if attr not in self.onnx_attrs:
                raise DeclarationError(
                    f"{self.name}: onnx_defaults names attribute {attr!r}, which onnx_attrs "
                    "does not bind")

    # -- kernels -------------------------------------------------------------------------

    @cached_property
    def kernel(self) -> Kernel:
        """The numpy kernel over element and parameter names (declared or derived)."""
        if self._kernel is not None:
            return self._kernel
        from .lambdify import numpy_kernel

        return numpy_kernel(self.expr, (*self.element_names, *self.params))

    def evaluate(self, **values: Any) -> np.ndarray:
        """Run the kernel; parameters missing from ``values`` take their sample values. A
        value the kernel gives as a complex number with an imaginary part (Python's ``**``
        of a negative float to a fractional power) lies outside the reals: NaN, as numpy's
        own power gives it (a catalog author's kernel so had stopped the shift rule's
        search with a TypeError)."""
        full = {p: float_or_inf(v) for p, v in self.params.items()}
        full.update(values)
        result = np.asarray(self.kernel(**full))
        if np.iscomplexobj(result):
            result = np.where(result.imag == 0, result.real, np.nan)
        return result.astype(np.float64)

    def run_onnx(self, inputs: list, attrs: Mapping[str, Any]) -> Any:
        """Run the operator on ONNX input arrays with ONNX semantics."""
        if self._onnx_kernel is not None:
            return self._onnx_kernel(inputs, attrs)
        if any(len(t.elements) != 1 for t in self.inputs):
            raise NotImplementedError(f"{self.name} has no ONNX tensor implementation")
        values: dict[str, Any] = {p: float_or_inf(v) for p, v in self.params.items()}
        shapes = [None if array is None else np.shape(array) for array in inputs]
        for attr, param in self.onnx_attrs.items():
            values[param] = self.attribute(attr, attrs, shapes)
        for carried, array in zip(self.onnx_inputs, inputs):
            if carried is not None and array is not None:
                for item in carried.split():
                    values[item] = array
        return self.kernel(**values)

    def attribute(self, attr: str, attrs: Mapping[str, Any],
                  shapes: Sequence[tuple | None] | None = None) -> Any:
        """The value ONNX attribute ``attr`` has on a node with attributes ``attrs``: its own;
        when absent, the ONNX schema's default for this op type (what onnxruntime runs: a
        declaration's sample value may differ, as ThresholdedRelu's alpha = 3 against the
        default 1); else the value ``onnx_defaults`` computes from the node's input
        ``shapes`` (:meth:`computed_default`); else the sample value of the parameter it binds
        (an op type outside the standard schemas: its declaration is its schema)."""
        if attr in attrs:
            return attrs[attr]
        default = attribute_default(self.onnx_type, attr) if self.onnx_type else None
        if default is None:
            default = self.computed_default(attr, attrs, shapes)
        return float(self.params[self.onnx_attrs[attr]]) if default is None else default

    def computed_default(self, attr: str, attrs: Mapping[str, Any],
                         shapes: Sequence[tuple | None] | None) -> Any:
        """The value of an attribute a node leaves out, as ``onnx_defaults`` computes it from
        the node's input shapes and attributes; None where the declaration has no such rule
        or the shapes do not tell it (a symbolic head size): the value is then unknown."""
        rule = self.onnx_defaults.get(attr)
        return None if rule is None or shapes is None else rule(shapes, attrs)

    @property
    def runs_expression(self) -> bool:
        """Whether a node of it is computed by its expression (no ONNX kernel of its own):
        then the node's attributes count only through ``onnx_attrs`` and ``onnx_match``."""
        return self._onnx_kernel is None

    @property
    def has_onnx_kernel(self) -> bool:
        return self._onnx_kernel is not None or all(len(t.elements) == 1 for t in self.inputs)

    def __repr__(self) -> str:
        return f"Operator({self.name!r}, expr={self.expr})"


@cache
def runtime_schemas() -> dict[tuple[str, str], dict[str, bytes]]:
    """onnxruntime's schema registry in the domains ONNX itself does not define (its own
    operators: com.microsoft's Gelu, QuickGelu, SkipLayerNormalization): (domain, op type)
    -> {attribute: its default, a serialized AttributeProto, b'' where it has none}, the
    newest version of each; empty where onnxruntime does not list its schemas."""
    import onnx.defs

    standard = {schema.domain for schema in onnx.defs.get_all_schemas_with_history()}
    try:
        from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema

        schemas = get_all_operator_schema()
    except (ImportError, AttributeError, RuntimeError):
        return {}
    return {(schema.domain, schema.name): {name: getattr(spec, "_default_value", b"") or b""
                                           for name, spec in schema.attributes.items()}
            for schema in sorted(schemas, key=lambda schema: schema.since_version)
            if schema.domain not in standard | {"ai.onnx"}}


@cache
def schema_attribute_defaults(op_type: str) -> dict[str, Any] | None:
    """Attribute name -> default value (None where the schema gives none) of ``op_type``'s
    schema: ONNX's newest for a standard op type; onnxruntime's for one of its own operators,
    named with its domain (``com.microsoft:QuickGelu``) or alone where one of its domains
    holds it, whose kernel runs such a node in the written file; None for any other op type
    (a custom domain's: its declaration is its schema). A QuickGelu leaving out its alpha had
    been computed with the declaration's sample value, not onnxruntime's 1.702 (3 dB lost in
    the integer format), and a declared parameter its schema lacks written on its nodes,
    which onnxruntime then refused to load (a new-user trial)."""
    import onnx
    import onnx.defs
    from onnx.helper import get_attribute_value

    def value(proto: onnx.AttributeProto) -> Any:
        if not proto.name:
            return None
        found = get_attribute_value(proto)
        return found.decode() if isinstance(found, bytes) else found

    domain, name = runtime_domain(op_type), op_type.rpartition(":")[2]
    if domain is None:
        return None
    if domain == "":
        return {attr: value(spec.default_value)
                for attr, spec in onnx.defs.get_schema(name).attributes.items()}
    return {attr: value(onnx.AttributeProto.FromString(default))
            for attr, default in runtime_schemas()[(domain, name)].items()}


def runtime_domain(onnx_type: str | None) -> str | None:
    """The domain of the onnxruntime kernel that runs nodes of ``onnx_type``: '' for a
    standard ONNX op type; the domain of one of onnxruntime's own operators, named with it
    (``com.microsoft:Gelu``) or alone where one domain holds it (``FastGelu``); None for any
    other (a custom domain's, whose kernel is the user's)."""
    import onnx.defs

    if not onnx_type:
        return None
    domain, _, op_type = onnx_type.rpartition(":")
    if not domain and onnx.defs.has(op_type):
        return ""
    holders = {d for d, name in runtime_schemas() if name == op_type and domain in ("", d)}
    return next(iter(holders)) if len(holders) == 1 else None


def attribute_default(op_type: str, attribute: str) -> Any:
    """The schema's default for an attribute of a standard op type or of one of
    onnxruntime's own (:func:`schema_attribute_defaults`; None if the type or the attribute
    has none)."""
    return (schema_attribute_defaults(op_type) or {}).get(attribute)


def input_name(op_type: str, slot: int) -> str | None:
    """The ONNX schema's name of input ``slot`` of a standard op type (Dropout's 2 is
    ``training_mode``), or None where the type has no such input."""
    import onnx.defs

    if not onnx.defs.has(op_type):
        return None
    inputs = onnx.defs.get_schema(op_type).inputs
    return inputs[slot].name if slot < len(inputs) else None
