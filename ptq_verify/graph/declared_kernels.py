"""A user's declaration of a standard ONNX op type, compared with onnxruntime's kernel of it.

A declaration given with ``--operators`` stands for every node of its ``onnx_type``, the
catalog's own one included. Its rule is proved for its expression, so an expression that is
not the op type's function gives a right verdict for the wrong function, and the engine then
runs the nodes by it: a new-user trial declared ``Mish`` as ``max(x, 0)``, which the checker
proves passes the scale, and the written model lost 13 dB with no word said. Before any work,
each such declaration runs on random inputs as a one-node model in onnxruntime and through
its own kernel; where both run and disagree, the declaration is refused. Where they cannot
both run (a static input, such as RotaryEmbedding's position ids; an opset onnxruntime lacks),
the declaration is taken as given, and the quantize command says so in a note (a new-user
trial's RotaryEmbedding declared with a sign error had quantized with no word said).
A declaration of one of onnxruntime's own operators (``com.microsoft:Gelu``, which its
optimizers write in place of standard nodes) is compared with onnxruntime's kernel
alike: one declared as ``max(0, x)`` had been taken as given, its nodes passed the scale
through, and the written file lost 18 dB with no word said.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..catalog.operator import Operator, runtime_domain

PROBE_SHAPE = (2, 3, 5)
# the shapes of the random tensors, tried in turn: every tensor input of the full shape, then
# the inputs past the first along its last axis alone (an op whose later input must be 1-D, as
# onnxruntime's BiasGelu and FastGelu bias, had run on neither and been taken as given)
PROBE_SHAPES = (PROBE_SHAPE, PROBE_SHAPE[-1:])
# opsets tried, newest first, for the one-node model (the first onnxruntime runs is taken)
_OPSETS = (23, 21, 18, 17, 13)
_RTOL, _ATOL = 1e-3, 1e-5  # float32 kernels against float64 expressions


_COMPARED: weakref.WeakKeyDictionary[Operator, dict[tuple, tuple[str | None, str | None]]] = (
    weakref.WeakKeyDictionary())


def comparison(op: Operator, values: Mapping[str, Any] | None = None,
               spans: tuple[tuple[float, float], ...] | None = None
               ) -> tuple[str | None, str | None]:
    """:func:`compare`, once per declaration object and attribute values: every step of the
    Python API makes an operator table of its ``operators=``, and each table compares its
    declarations (:class:`.operators.OperatorTable`); each node's attribute values are
    compared where they differ from the sample values (:func:`.operators.OperatorTable.lookup`)."""
    key = (tuple(sorted((values or {}).items())), spans)
    found = _COMPARED.setdefault(op, {})
    if key not in found:
        found[key] = compare(op, values, spans)
    return found[key]


def compare(op: Operator, values: Mapping[str, Any] | None = None,
            spans: tuple[tuple[float, float], ...] | None = None
            ) -> tuple[str | None, str | None]:
    """(how ``op``'s kernel differs from onnxruntime's kernel of its ``onnx_type`` on random
    inputs, in words, or None when they agree or were not compared; why they were not
    compared). The second is None when they were, or when ``op`` declares no op type of
    ONNX's schemas nor of onnxruntime's own (:func:`runtime_domain`: a custom domain's, whose
    kernel is the user's), and else says why: a
    declaration whose inputs a random tensor cannot stand for (a static slot, several
    parameters in one input, elements of a window), or a one-node model onnxruntime does
    not run. ``values``: attribute -> value, a node's, in place of the sample values of the
    parameters they bind (LeakyRelu declared as ``max(x, alpha*x)`` is ONNX's at alpha =
    0.01, its sample value, and another function at alpha = 2). ``spans``: (least, largest)
    of each tensor input, in the declaration's order, to draw its random values from, both
    ends among them, in place of a standard normal's (Relu declared as ``min(max(x, 0), 6)``
    agrees with onnxruntime's Relu on values that seldom pass 3)."""
    domain = runtime_domain(op.onnx_type)
    if domain is None:
        return None, None
    if not op.has_onnx_kernel:
        return None, ("its witness reads elements of an input (a window, a pair), which its "
                      "expression alone cannot compute a whole node from")
    op_type = op.onnx_type.rpartition(":")[2]
    known = schema_attributes(op.onnx_type)
    theirs = None
    for later in PROBE_SHAPES:
        probe = _probe(op, later, spans)
        if probe is not None and values:
            probe[1].update(values)
        if probe is None:
            return None, ("a random tensor cannot stand for one of its inputs (a static input, "
                          "or several parameters in one)")
        inputs, attrs = probe
        # a parameter the ONNX schema has no attribute of is one no node carries: its nodes
        # run the kernel's own constant, which the engine takes the sample value for
        # (HardSwish declared with a slope 'a' had made onnxruntime refuse the probe, and
        # went unchecked)
        unknown = [] if known is None else sorted(set(attrs) - known)
        theirs = _onnxruntime(op_type, domain, inputs,
                              {k: v for k, v in attrs.items() if k not in unknown})
        if theirs is not None:
            break
    if theirs is None:
        return None, (f"onnxruntime runs no one-node {op.onnx_type} on random inputs of "
                      f"shape {PROBE_SHAPE} (the inputs past the first of shape "
                      f"{PROBE_SHAPE} or {PROBE_SHAPE[-1:]}) at opsets "
                      f"{', '.join(map(str, _OPSETS))}")
    try:
        ours = np.asarray(op.run_onnx(inputs, attrs), dtype=np.float64)
    except Exception:  # noqa: BLE001 - a kernel that cannot run here is not compared
        return None, "its expression does not run on those random inputs"
    if ours.shape != theirs.shape:
        return f"gives shape {ours.shape} where onnxruntime gives {theirs.shape}", None
    scale = float(np.nanmax(np.abs(theirs), initial=0.0))
    close = np.isclose(ours, theirs, rtol=_RTOL, atol=_ATOL * max(scale, 1.0), equal_nan=True)
    if close.all():
        return None, None
    at = np.unravel_index(np.argmax(~close), close.shape)
    named = f"ONNX {op_type}" if domain == "" else op.onnx_type
    carried = (f" ({named} has no attribute {', '.join(map(repr, unknown))}: its nodes "
               "compute with the kernel's own constant, not the sample value)" if unknown else "")
    return (f"gives {ours[at]:.4g} where onnxruntime's {op.onnx_type} gives "
            f"{theirs[at]:.4g}, on random inputs{carried}"), None


def schema_attributes(op_type: str | None) -> set[str] | None:
    """The attribute names of the schema of a standard ONNX op type or of one of
    onnxruntime's own (``schema_attribute_defaults``); None for any other op type (a custom
    domain's, or unknown)."""
    from ..catalog.operator import schema_attribute_defaults

    known = schema_attribute_defaults(op_type) if op_type else None
    return None if known is None else set(known)


def schema_lacks(onnx_type: str | None, attr: str) -> bool:
    """Whether ``onnx_type`` is a standard ONNX op type or one of onnxruntime's own whose
    schema has no ``attr``."""
    known = schema_attributes(onnx_type)
    return known is not None and attr not in known


def mismatch(op: Operator, differs: str, in_file: bool) -> str:
    """Why a declaration ``compare`` found ``differs`` is refused, from ``declares`` on, with
    the way forward: the expression corrected, or, for a custom domain's node that shares a
    standard op type's name, the domain named (as a file spells it, ``in_file``, or as
    Python does)."""
    if runtime_domain(op.onnx_type):
        return (f"declares {op.onnx_type}, one of onnxruntime's own operators, but its "
                f"expression {differs}: onnxruntime's kernel runs these nodes in the written "
                "file, and they would be quantized by the rule of another function; correct "
                "the expression")
    qualified = (f'onnx_type = "DOMAIN:{op.onnx_type}"' if in_file
                 else f"onnx_type='DOMAIN:{op.onnx_type}'")
    return (f"declares ONNX {op.onnx_type}, but its expression {differs}: every "
            f"{op.onnx_type} node would be quantized by the rule of another function; correct "
            f"the expression, or, for a node of a custom domain named {op.onnx_type}, declare "
            f"{qualified}")


def _probe(op: Operator, later: tuple[int, ...],
           spans: tuple[tuple[float, float], ...] | None = None) -> tuple[list, dict] | None:
    """Random float32 tensors for the declaration's tensor inputs (the first of
    :data:`PROBE_SHAPE`, the others of shape ``later``; standard normal, or uniform over
    each one's span of ``spans`` with both ends in it) and its parameters' sample values for
    the inputs and attributes that carry them; None where a random tensor cannot stand for an
    input."""
    rng = np.random.default_rng(0)
    tensors = {t.name for t in op.inputs}
    inputs: list = []
    for slot, binding in enumerate(op.onnx_inputs):
        if slot in op.onnx_match:  # a constant input the declaration is matched on
            wanted = op.onnx_match[slot]
            inputs.append(np.array(wanted[0] if isinstance(wanted, tuple) else wanted,
                                   dtype=np.float32))
        elif binding is None or len(binding.split()) != 1:
            return None
        elif binding in tensors:
            shape = later if any(value.ndim for value in inputs) else PROBE_SHAPE
            if spans is None:
                inputs.append(rng.normal(size=shape).astype(np.float32))
                continue
            low, high = spans[[t.name for t in op.inputs].index(binding)]
            value = rng.uniform(low, high, size=shape)
            value.flat[0], value.flat[-1] = low, high
            inputs.append(value.astype(np.float32))
        elif binding in op.params:
            inputs.append(np.array(float(op.params[binding]), dtype=np.float32))
        else:
            return None
    attrs = {attr: float(op.params[param]) for attr, param in op.onnx_attrs.items()}
    for key, wanted in op.onnx_match.items():
        if isinstance(key, str):
            attrs[key] = wanted[0] if isinstance(wanted, tuple) else wanted
    return inputs, attrs


def _onnxruntime(op_type: str, domain: str, inputs: list, attrs: dict) -> np.ndarray | None:
    """The op type's output in onnxruntime on ``inputs`` (float64), at the newest opset of
    :data:`_OPSETS` it runs (``domain``: onnxruntime's own, at its version 1, beside those);
    None when it runs at none of them."""
    from onnx import TensorProto, helper, numpy_helper

    from .ort_runner import ort_session

    names = [f"in{slot}" for slot in range(len(inputs))]
    constants = [numpy_helper.from_array(value, name) for name, value in zip(names, inputs)
                 if value.ndim == 0]
    feeds = {name: value for name, value in zip(names, inputs) if value.ndim}
    graph = helper.make_graph(
        [helper.make_node(op_type, names, ["y"], domain=domain or None, **attrs)], "probe",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, value.shape)
         for name, value in feeds.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], constants)
    for opset in _OPSETS:
        imports = [helper.make_opsetid("", opset)]
        if domain:
            imports.append(helper.make_opsetid(domain, 1))
        model = helper.make_model(graph, opset_imports=imports)
        session, _ = ort_session(model.SerializeToString())
        if session is None:  # not at this opset (or not at all): the next
            continue
        try:
            return np.asarray(session.run(None, feeds)[0], dtype=np.float64)
        except Exception:  # noqa: BLE001 - loads but does not run: the next opset
            continue
    return None
