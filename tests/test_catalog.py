"""The built-in catalog: every declaration's numpy kernel agrees with its symbolic form, and the
names and ONNX bindings are consistent with the ONNX specification."""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnx.defs
import pytest
import sympy

from ptq_verify.catalog import CATALOG, get_operator, operator_for_onnx_type
from ptq_verify.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
# Zero, ties of Round, the thresholds of ThresholdedRelu / Shrink / Relu6 at their defaults.
_SPECIAL = [Fraction(v) for v in ("0", "1/2", "-1/2", "1", "-1", "3/2", "-5/2", "6", "-6")]


def _draw(rng: random.Random) -> Fraction:
    if rng.random() < 0.35:
        return rng.choice(_SPECIAL)
    return Fraction(rng.randint(-400, 400), rng.choice((7, 16, 100)))


def _points(op, count: int, seed: int):
    """Exact points (element and parameter values) inside the operator's domain."""
    rng = random.Random(seed)
    found = []
    for _ in range(60 * count):
        values = {e: _draw(rng) for e in op.element_names}
        for p, sample in op.params.items():
            values[p] = sample if rng.random() < 0.5 else _draw(rng)
        subs = {op.symbols[n]: sympy.Rational(v.numerator, v.denominator)
                for n, v in values.items()}
        if all(c.xreplace(subs) == sympy.true for c in op.domain):
            found.append((values, subs))
            if len(found) == count:
                break
    return found


@pytest.mark.parametrize("name", list(CATALOG))
def test_kernel_agrees_with_expression(name):
    op = CATALOG[name]
    points = _points(op, 12, seed=sum(map(ord, name)))
    assert len(points) >= 6, f"{name}: too few points in the domain"
    for values, subs in points:
        exact = op.expr.xreplace(subs).evalf(30)
        assert exact.is_real and exact.is_finite, f"{name} at {values}: {exact}"
        got = float(op.evaluate(**{n: float(v) for n, v in values.items()}))
        assert math.isclose(got, float(exact), rel_tol=1e-9, abs_tol=1e-12), (
            f"{name} at {values}: kernel {got}, expression {float(exact)}"
        )


@pytest.mark.parametrize("name", list(CATALOG))
def test_kernel_broadcasts_over_arrays(name):
    op = CATALOG[name]
    values, _ = _points(op, 1, seed=1)[0]
    scalars = {n: float(v) for n, v in values.items()}
    arrays = {n: np.full((2, 3), v) for n, v in scalars.items()}
    np.testing.assert_allclose(op.evaluate(**arrays), np.full((2, 3), op.evaluate(**scalars)))


def test_catalog_has_the_count_the_docs_promise_and_is_sorted():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    catalog_doc = (ROOT / "docs" / "catalog.md").read_text(encoding="utf-8")
    promised = re.search(r"the built-in catalog \((\d+) operators\)", readme)
    listed = re.search(r"^(\d+) operators\.$", catalog_doc, re.M)
    assert promised and listed, "README or docs/catalog.md no longer states the count"
    assert len(CATALOG) == int(promised.group(1)) == int(listed.group(1))
    assert list(CATALOG) == sorted(CATALOG)
    assert all(op.name == name for name, op in CATALOG.items())


def _schemas(op_type: str) -> list:
    return [s for s in onnx.defs.get_all_schemas_with_history() if s.name == op_type]


@pytest.mark.parametrize("name", [n for n, op in CATALOG.items() if op.onnx_type])
def test_onnx_binding_names_real_inputs_and_attributes(name):
    op = CATALOG[name]
    assert onnx.defs.has(op.onnx_type), f"{name}: {op.onnx_type} is not an ONNX op"
    schemas = _schemas(op.onnx_type)
    latest = max(schemas, key=lambda s: s.since_version)
    variadic = any(
        i.option == onnx.defs.OpSchema.FormalParameterOption.Variadic for i in latest.inputs
    )
    assert variadic or len(op.onnx_inputs) <= latest.max_input
    attributes = {a for s in schemas for a in s.attributes}
    for attr in op.onnx_attrs:
        assert attr in attributes, f"{name}: {op.onnx_type} has no attribute {attr!r}"
    for key in op.onnx_match:
        assert isinstance(key, int) or key in attributes
    assert op.has_onnx_kernel


def test_every_parameter_and_tensor_is_bound_or_explained():
    """A parameter missing from the ONNX binding is a witness-only selector, dimension or
    blend weight (ResizeLinear's c, ResizeCubic's c0..c2)."""
    for op in CATALOG.values():
        if op.onnx_type is None:
            continue
        bound = {item for slot in op.onnx_inputs if slot for item in slot.split()}
        bound |= set(op.onnx_attrs.values())
        assert {t.name for t in op.inputs} <= bound, op.name
        unbound = set(op.params) - bound
        assert unbound <= {"k", "cond", "n", "c", "c0", "c1", "c2"}, (
            f"{op.name}: {unbound} reach no ONNX input")


def test_get_operator_suggests_a_near_name():
    assert get_operator("Relu") is CATALOG["Relu"]
    with pytest.raises(UserError, match=r"unknown operator 'Foo'; did you mean 'Floor'\?"):
        get_operator("Foo")
    with pytest.raises(UserError, match="did you mean 'LeakyRelu'"):
        get_operator("leakyrelu")


def test_onnx_binding_default_and_conditions():
    assert operator_for_onnx_type("Relu") is CATALOG["Relu"]
    assert operator_for_onnx_type("NoSuchOp") is None
    assert operator_for_onnx_type("Gelu").name == "Gelu"
    assert operator_for_onnx_type("Gelu", {"approximate": b"tanh"}).name == "GeluTanh"
    assert operator_for_onnx_type("Pow") is None
    assert operator_for_onnx_type("Pow", constants={1: np.array(2.0, np.float32)}).name == "Pow2"
    assert operator_for_onnx_type("Pow", constants={1: np.array([0.5])}).name == "PowHalf"
    assert operator_for_onnx_type("Pow", constants={1: np.array(7.0)}) is None
    six = {1: np.array(0.0, np.float32), 2: np.array(6.0, np.float32)}
    assert operator_for_onnx_type("Clip", constants=six).name == "Relu6"
    assert operator_for_onnx_type("Clip", constants={2: np.array(6.0)}).name == "Clip"
    assert operator_for_onnx_type("Clip").name == "Clip"
    assert operator_for_onnx_type("LpNormalization").name == "LpNormalization"
    assert operator_for_onnx_type("LpNormalization", {"p": 1}).name == "L1Normalization"
    assert operator_for_onnx_type("LpNormalization", {"p": 3}) is None
    assert operator_for_onnx_type("Cast") is None
    assert operator_for_onnx_type("Cast", {"to": onnx.TensorProto.FLOAT}).name == "Cast"
    assert operator_for_onnx_type("Cast", {"to": onnx.TensorProto.INT64}).name == "CastToInteger"
    assert operator_for_onnx_type("ArgMax", {"select_last_index": 1}) is None
    assert operator_for_onnx_type("Pad").name == "Pad"
    assert operator_for_onnx_type("Pad", {"mode": b"reflect"}).name == "PadReflect"
    assert operator_for_onnx_type("Pad", {"mode": b"edge"}).name == "PadEdge"
    assert operator_for_onnx_type("Resize").name == "Resize"
    assert operator_for_onnx_type("Resize", {"mode": b"linear"}).name == "ResizeLinear"
    assert operator_for_onnx_type("Resize", {"mode": b"cubic"}).name == "ResizeCubic"


def test_every_onnx_type_resolves_to_one_of_its_declarations():
    for op in CATALOG.values():
        if op.onnx_type is None:
            continue
        attrs = {k: v[0] if isinstance(v, tuple) else v for k, v in op.onnx_match.items()
                 if isinstance(k, str)}
        # an input slot's first allowed constant (None among them allows it absent: Dropout)
        constants = {k: np.array(next(x for x in (v if isinstance(v, tuple) else (v,))
                                      if x is not None))
                     for k, v in op.onnx_match.items() if isinstance(k, int)}
        arity = op.onnx_arity
        # an input slot's first allowed element type (CastLike's target)
        types = {slot: allowed[0] for slot, allowed in op.onnx_input_types.items()}
        assert operator_for_onnx_type(op.onnx_type, attrs, constants, arity, types=types) is op
        absent = [k for k, v in op.onnx_match.items()
                  if isinstance(k, int) and isinstance(v, tuple) and None in v]
        if absent:
            assert operator_for_onnx_type(op.onnx_type, attrs, {}, arity,
                                          empty=absent, types=types) is op


def test_castlike_is_matched_on_its_target_type():
    """CastLike to a float type is the identity; to an integer type it truncates, to bool it
    tells zero from the rest (a differential trial against onnxruntime found CastLike to int32
    claimed to pass a scale through); a target of unknown type has no declaration."""
    from onnx import TensorProto

    def name(target):
        op = operator_for_onnx_type("CastLike", types={1: target})
        return op and op.name

    assert name(TensorProto.FLOAT16) == name(TensorProto.FLOAT8E4M3FN) == "CastLike"
    assert name(TensorProto.INT32) == name(TensorProto.UINT8) == "CastLikeToInteger"
    assert name(TensorProto.BOOL) == "CastLikeToBool"
    assert operator_for_onnx_type("CastLike") is None


def test_resize_in_crop_coordinates_has_no_declaration():
    """tf_crop_and_resize writes extrapolation_value, a constant no scale reaches, outside its
    crop: no Resize declaration describes it."""
    for mode in ("nearest", "linear", "cubic"):
        assert operator_for_onnx_type("Resize", {
            "mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize"}) is None
        assert operator_for_onnx_type("Resize", {
            "mode": mode, "coordinate_transformation_mode": "pytorch_half_pixel"}) is not None


def test_a_declaration_is_refused_when_made_and_a_built_in_one_when_first_read():
    from ptq_verify.catalog.operator import DeclarationError, Operator, deferred_parsing

    with pytest.raises(DeclarationError, match="neither an input nor a parameter"):
        Operator("Bad", "x", "x + y")
    with deferred_parsing():
        deferred = Operator("Bad", "x", "x + y")  # the catalog's way: parsed on first use
    with pytest.raises(DeclarationError, match="neither an input nor a parameter"):
        _ = deferred.expr
    with deferred_parsing():
        good = Operator("Twice", "x", "2*x")
    assert good.expr == 2 * good.symbols["x"] and good.domain == ()


def test_a_computed_attribute_default_is_read_where_the_node_leaves_it_out():
    """``onnx_defaults`` computes an absent attribute from the node's input shapes (where the
    ONNX schema has no default) and says None where they do not tell it; an attribute the
    node sets is its own; a rule for an attribute no parameter binds is refused."""
    from ptq_verify.catalog import CATALOG
    from ptq_verify.catalog.operator import DeclarationError, Operator

    attention = CATALOG["Attention"]
    assert attention.computed_default("scale", {}, [(1, 2, 3, 8)]) == np.float32(8 ** -0.5)
    assert attention.computed_default("scale", {"q_num_heads": 4}, [("b", 5, 64)]) == 0.25
    assert attention.computed_default("scale", {}, [("b", 2, 3, "d")]) is None
    assert attention.computed_default("scale", {}, [None]) is None
    assert attention.attribute("scale", {}, [(1, 2, 3, 16)]) == 0.25
    assert attention.attribute("scale", {"scale": 0.5}, [(1, 2, 3, 16)]) == 0.5
    with pytest.raises(DeclarationError, match="onnx_defaults names attribute 'beta'"):
        Operator("Bad", "x", "a*x", params={"a": 2}, onnx_type="Custom",
                 onnx_attrs={"alpha": "a"}, onnx_defaults={"beta": lambda shapes, attrs: 1})


@pytest.mark.parametrize("slot", [0, 1, 4, "2"])
def test_an_input_default_names_a_slot_that_carries_parameters(slot):
    """``onnx_input_defaults`` (Pad's constant_value, 0 where a node leaves it out) keys an
    ONNX input bound to parameters: a tensor's slot (0), a static one (1), one past the
    bindings (4) or a slot given as text is refused by name."""
    from ptq_verify.catalog import CATALOG
    from ptq_verify.catalog.operator import DeclarationError, Operator

    assert CATALOG["Pad"].onnx_input_defaults == {2: 0.0}
    with pytest.raises(DeclarationError, match=f"onnx_input_defaults names ONNX input {slot!r}"):
        Operator("Bad", "x", "where(k > 0, x, v)", params={"k": 1, "v": 0}, onnx_type="Custom",
                 onnx_inputs=("x", None, "v", None), onnx_input_defaults={slot: 0})


@pytest.mark.parametrize(("inputs", "params", "expr"), [("pi", {}, "2*pi"),
                                                         ("exp, x", {}, "exp(x)"),
                                                         ("x", {"pi": 2}, "pi*x")])
def test_a_name_the_expression_reads_as_a_constant_or_function_is_refused(inputs, params,
                                                                          expr):
    """Declared as an input, 'pi' was read as the constant in '2*pi': the verdict was
    scale_invariant, about a function the user did not write."""
    from ptq_verify.catalog.operator import DeclarationError, Operator

    with pytest.raises(DeclarationError, match="rename it"):
        Operator("Clash", inputs, expr, params=params)


def test_an_absent_attribute_takes_the_onnx_default_and_a_custom_type_the_sample_value():
    from ptq_verify.catalog.operator import Operator

    x = np.array([0.5, 2.0, 4.0])
    for onnx_type, absent in (("ThresholdedRelu", [0.0, 2.0, 4.0]), ("MyThreshold", [0, 0, 4.0])):
        op = Operator("T", "x", "where(x > alpha, x, 0)", params={"alpha": 3},
                      onnx_type=onnx_type, onnx_attrs={"alpha": "alpha"})
        assert np.array_equal(op.run_onnx([x], {}), absent), onnx_type
        assert np.array_equal(op.run_onnx([x], {"alpha": 1.0}), [0.0, 2.0, 4.0])
