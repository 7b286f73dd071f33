"""What the form of a declaration says, read off its symbolic witness once.

The engine decides how a node runs from the checker's verdict and from a few facts about the
witness's form: is it a selection by max/min (it runs on codes), a sum with constant
coefficients (a constant operand is a bias), a polynomial with integer coefficients (integer
codes in, integers out), does it jump (rounding its input can cross a step), is it a chain of
max/min with parameters (Clip splits into binary Max/Min). Each is a symbolic question about
the expression, answered with sympy in :mod:`.form` and nowhere else.

The answers are plain data (this module), computed by :mod:`.form` and kept by the verdict
store (:func:`.store.stored_structure`): a process that finds them stored, with the verdicts,
neither parses a declaration nor imports sympy (0.4-0.6 s of a 1.2-1.8 s ``ptq-verify
quantize`` of a small CNN). Like the verdicts, they depend only on the declaration and on
this package's code, which the store's key covers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Structure:
    """The facts; see the functions of ``ptq_verify.engine.rules`` that read them.

    Attributes:
        lattice: each output element is an input element or 0, chosen by max/min or by a
            condition on parameters alone.
        monotone: the same with parameters and numbers as further leaves (Clip, constant Pad).
        jumps: the function may be discontinuous in its input elements.
        sum_coefficients: (c_1, ..., c_n) when the output is c_1 t_1 + ... + c_n t_n of one
            element of each tensor input, constant coefficients; else None.
        names: the element and parameter names the expression holds.
        integer_coefficients: the expression is a polynomial in all its element and
            parameter names with integer coefficients.
        selection_steps: (``"max"`` or ``"min"``, parameter) from the innermost step out, when
            the witness is such a chain over its single element; else None.
        binary: ``"max"`` or ``"min"`` when the witness is that function of its two
            elements; else None.
        chosen_params: the parameters the witness outputs as they are where a condition on
            parameters alone (a position) picks them, whatever the input elements are:
            constant Pad's ``v`` in ``where(k > 0, x, v)``; not Clip's bounds, which
            ``max``/``min`` choose by comparing them with the input.
        element_sum: each output element is a sum of input elements with constant
            coefficients >= 0 and nothing else, no parameters (ReduceSum's ``x0 + x1 + x2``;
            a selection's ``x0``): ``ptq_verify.engine.rules.is_element_sum``.
        unit_inputs: the tensor inputs that, every element set to 1, leave a polynomial with
            integer coefficients in the other names (Div's divisor ``b``: ``a / 1 = a``): a
            node whose constant there is held as code 1 maps integers to integers
            (``ptq_verify.engine.rules.is_integer_polynomial``).
    """

    lattice: bool
    monotone: bool
    jumps: bool
    sum_coefficients: tuple[float, ...] | None
    names: frozenset[str]
    integer_coefficients: bool
    selection_steps: tuple[tuple[str, str], ...] | None
    binary: str | None
    chosen_params: frozenset[str] = frozenset()
    element_sum: bool = False
    unit_inputs: frozenset[str] = frozenset()

    def to_json(self) -> dict:
        out = asdict(self)
        out["names"] = sorted(self.names)
        out["chosen_params"] = sorted(self.chosen_params)
        out["unit_inputs"] = sorted(self.unit_inputs)
        return out

    @classmethod
    def from_json(cls, data: dict) -> Structure:
        steps = data["selection_steps"]
        coefficients = data["sum_coefficients"]
        return cls(
            lattice=bool(data["lattice"]), monotone=bool(data["monotone"]),
            jumps=bool(data["jumps"]),
            sum_coefficients=None if coefficients is None else tuple(
                float(c) for c in coefficients),
            names=frozenset(str(n) for n in data["names"]),
            integer_coefficients=bool(data["integer_coefficients"]),
            selection_steps=None if steps is None else tuple(
                (str(kind), str(param)) for kind, param in steps),
            binary=None if data["binary"] is None else str(data["binary"]),
            chosen_params=frozenset(str(n) for n in data["chosen_params"]),
            element_sum=bool(data["element_sum"]),
            unit_inputs=frozenset(str(n) for n in data["unit_inputs"]))
