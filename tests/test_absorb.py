"""Shift rules (proofs/shift.md) and the bias absorption of cross-layer equalization built on
them (ptq_verify/engine/absorb.py)."""

from __future__ import annotations

import importlib
import time
from fractions import Fraction
from pathlib import Path

import models
import numpy as np
import onnx
import pytest

from ptq_verify.catalog import CATALOG, Operator
from ptq_verify.engine import absorb as absorb_module
from ptq_verify.engine import calibrate, prepare, quantize, sqnr_db
from ptq_verify.engine.absorb import absorb, absorbable, shifted_tensors
from ptq_verify.engine.equalize import equalize, equalized, groups_of
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph
from ptq_verify.rules.shift import (
    Shift,
    passes_per_channel_shift,
    proved_affine,
    recheck_shift,
    shift_rule,
)

# -- the shift rule --------------------------------------------------------------------------


def test_clip_passes_a_shift_with_its_bounds_shifted():
    rule = shift_rule(CATALOG["Clip"])
    assert rule.holds and dict(rule.param_shifts) == {"lo": 1, "hi": 1}
    assert rule.certificate.to_json()["kind"] == "proof"
    assert passes_per_channel_shift(CATALOG["Clip"]).holds
    assert recheck_shift(CATALOG["Clip"], rule.to_json()) == []


def test_relu_does_not_pass_a_shift_and_the_point_shows_it():
    op = CATALOG["Relu"]
    rule = shift_rule(op)
    assert rule.status == "refuted"
    found = rule.certificate.to_json()
    x, c = float(Fraction(found["point"]["x"])), float(Fraction(found["shift"]))
    assert max(x - c, 0) != max(x, 0) - c
    assert recheck_shift(op, rule.to_json()) == []


@pytest.mark.parametrize("expr", ["exp(1000)*x", "x*10**(10**3)"])
def test_a_shift_float_arithmetic_cannot_evaluate_is_refuted_exactly(expr):
    """Every float point of e^1000 x overflows; the screen had called the shift holding
    there, and the reason said so. f(x - c) - (f(x) - c) = c (1 - e^1000) is not 0."""
    op = Operator("Huge", "x", expr)
    rule = shift_rule(op)
    assert rule.status == "refuted"
    assert recheck_shift(op, rule.to_json()) == []


def test_the_shift_text_names_the_shift_apart_from_a_parameter_named_c():
    from ptq_verify.rules.explain import shift_summary

    text = shift_summary(shift_rule(Operator("Floor", "x", "max(x, c)", params={"c": 0})))
    assert text.startswith("proved: f(x - c_; c -> c - c_) = f(x) - c_")


def test_a_selection_passes_a_shift_and_a_sum_does_not():
    for name in ("Identity", "MaxPool", "Max"):
        assert shift_rule(CATALOG[name]).holds, name
    assert shift_rule(CATALOG["Add"]).status == "refuted"  # (a - c) + (b - c): shifted by 2c
    reshape = CATALOG["Reshape"]
    assert shift_rule(reshape).holds and not passes_per_channel_shift(reshape).holds


def test_the_rule_follows_the_expression_not_the_name():
    clamp = Operator("MyClamp", "x", "min(top, max(bottom, x))", params={"bottom": 0, "top": 6})
    assert dict(shift_rule(clamp).param_shifts) == {"bottom": 1, "top": 1}
    impostor = Operator("Clip", "x", "max(x, 0)")
    assert shift_rule(impostor).status == "refuted"
    leaky = Operator("Leaky", "x", "where(x >= 0, x, alpha*x)", params={"alpha": "0.1"})
    assert not shift_rule(leaky).holds  # no shift of alpha helps; never claimed


def test_a_bias_shifts_a_linear_layer_and_its_input_enters_affinely():
    conv = CATALOG["Conv"]
    assert dict(shift_rule(conv, through_inputs=False).param_shifts) == {"b": 1}
    assert proved_affine(conv, "x")
    assert not shift_rule(CATALOG["MatMul"], through_inputs=False).holds  # no bias slot
    assert not proved_affine(Operator("Square", "x", "x**2"), "x")


def test_the_shift_rule_is_bounded_in_time(monkeypatch):
    """A declaration whose search outlasts the budget is undecided, not a hang: the engine
    asks for shift rules of a user's declarations inside quantize and audit."""
    shift_module = importlib.import_module("ptq_verify.rules.shift")

    def slow(op, through_inputs):
        time.sleep(5)
        yield {}

    monkeypatch.setattr(shift_module, "DEFAULT_TIMEOUT", 0.2)
    monkeypatch.setattr(shift_module, "_candidates", slow)
    op = Operator("SlowClamp", "x", "min(hi, max(lo, x))", params={"lo": "0", "hi": "6"})
    start = time.perf_counter()
    rule = shift_rule(op)
    assert rule.status == "undecided" and "time budget" in rule.reason
    assert time.perf_counter() - start < 3


def test_a_forged_shift_rule_is_rejected():
    clip, relu = CATALOG["Clip"], CATALOG["Relu"]
    half = shift_rule(clip).to_json()
    half["param_shifts"] = {"lo": "1"}
    assert recheck_shift(clip, half)
    proved = shift_rule(CATALOG["Identity"]).to_json()
    assert recheck_shift(relu, proved)  # Identity's proof is not Relu's identity
    lie = shift_rule(relu).to_json()
    lie["certificate"]["shift"] = "0"
    assert recheck_shift(relu, lie)  # at c = 0 both sides agree


def test_a_shift_proof_on_a_domain_is_rejected():
    """sqrt(x)**2 is x on x >= 0: the shift identity's residual is 0, but x = 0, c = 1 leaves
    the domain. The checker says undecided there; check-proofs passed a file saying proved."""
    op = Operator("RootSquared", "x", "sqrt(x)**2")
    assert shift_rule(op).status == "undecided"
    forged = shift_rule(CATALOG["Identity"]).to_json()
    assert forged["status"] == "proved"
    assert recheck_shift(op, forged)


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_every_proved_shift_rule_holds_at_random_points(name):
    op = CATALOG[name]
    rule = shift_rule(op)
    if not rule.holds:
        return
    rng = np.random.default_rng(1)
    for _ in range(5):
        values = {e: rng.uniform(-9, 9) for e in op.element_names}
        params = {p: float(v) + rng.uniform(-1, 1) for p, v in op.params.items()}
        c = rng.uniform(-4, 4)
        moved = {e: v - c for e, v in values.items()}
        moved.update({p: v - float(rule.param_shifts.get(p, 0)) * c for p, v in params.items()})
        with np.errstate(all="ignore"):
            lhs, rhs = op.evaluate(**moved), op.evaluate(**values, **params) - c
        assert np.allclose(lhs, rhs, rtol=1e-9, atol=1e-9) or not np.isfinite(rhs)


# -- bias absorption ---------------------------------------------------------------------------


def _conv_clip_conv(k2: int = 1, pads: int | None = None, middle: str = "Clip",
                    bias1: bool = True) -> onnx.ModelProto:
    """conv(1->4, 3x3) with two channels far above 0 -> middle -> conv(4->4, k2 x k2) -> Relu
    -> dense."""
    b = models.Builder(30, image=True)
    h = b.conv("input", 1, 4, bias=bias1)
    if bias1:
        b.inits[-1] = onnx.numpy_helper.from_array(np.float32([3, 0.1, 3, -0.2]),
                                                   b.inits[-1].name)
    else:  # positive weights on inputs >= 1 (offset data): channels 0 and 2 stay above 0
        weight = onnx.numpy_helper.to_array(b.inits[-1]).copy()
        weight[[0, 2]] = np.abs(weight[[0, 2]])
        b.inits[-1] = onnx.numpy_helper.from_array(weight, b.inits[-1].name)
    if middle == "Clip":
        h = b.add("Clip", [h, b.const(np.float32(-1)), b.const(np.float32(6))])
    else:
        h = b.add(middle, [h])
    h = b.conv(h, 4, 4, k=k2)
    if pads is not None:
        b.nodes[-1].attribute[0].ints[:] = [pads] * 4
    h = b.add("Relu", [h])
    size = 16 * (8 - 2 * (k2 // 2)) ** 2 // 4 if pads == 0 else 256
    return b.model(b.dense(b.flatten(h), size, 10), "absorb")


def _absorbed(model: onnx.ModelProto, offset: float = 0.0):
    graph = prepare(graph_from_onnx(model))
    data = {"input": models.digits(100, image=True) + np.float32(offset)}
    before = run_graph(graph, data, OperatorTable())
    assert equalize(graph)
    weights = dict(graph.initializers)
    done = absorb(graph, data)
    after = run_graph(graph, data, OperatorTable())
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-5,
                                   atol=1e-6 * np.abs(value).max())
    return graph, done, weights, data


def test_a_one_by_one_layer_2_takes_the_shift_into_its_bias():
    graph, done, weights, data = _absorbed(_conv_clip_conv())
    (item,) = done
    assert item.group.describe() == "conv1 -> conv2 via clip1:max + clip1:min"
    shift = item.shift
    assert shift[0] > 0 and shift[2] > 0 and shift[3] == 0
    np.testing.assert_allclose(graph.initializers["b1"], weights["b1"] - shift, rtol=1e-6)
    w2 = graph.initializers["W2"][:, :, 0, 0]
    np.testing.assert_allclose(graph.initializers["b2"], weights["b2"] + w2 @ shift,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graph.initializers["clip1:1:bound"].ravel(),
                               weights["clip1:1:bound"].ravel() - shift, rtol=1e-6)
    # the tensor layer 2 reads now starts at 0 in every shifted channel
    read = run_graph(graph, data, OperatorTable(), want=["clip1"])["clip1"]
    low = read.min(axis=(0, 2, 3))
    np.testing.assert_allclose(low[shift > 0], 0, atol=1e-5)


def test_a_zero_padded_3x3_layer_2_is_refused_and_an_unpadded_one_is_not():
    graph, done, weights, _ = _absorbed(_conv_clip_conv(k2=3))
    assert done == [] and absorbable(graph) == []
    assert all(np.array_equal(graph.initializers[k], v) for k, v in weights.items())
    _, done, _, _ = _absorbed(_conv_clip_conv(k2=3, pads=0))
    assert len(done) == 1  # a Conv either way: its borders decide, not its op type


def test_no_absorption_through_a_relu():
    graph, done, _, _ = _absorbed(_conv_clip_conv(middle="Relu"))
    assert done == [] and absorbable(graph) == []


def test_a_layer_1_without_a_bias_gets_one():
    graph, done, _, _ = _absorbed(_conv_clip_conv(bias1=False), offset=1.0)
    (item,) = done
    conv1 = next(n for n in graph.nodes if n.name == "conv1")
    np.testing.assert_allclose(graph.initializers[conv1.inputs[2]], -item.shift, rtol=1e-6)


def test_a_wrongly_claimed_shift_is_caught_by_the_probe(monkeypatch):
    """Even if the rule claimed Relu passes a shift, the kernel probe refuses the link."""
    real = absorb_module.passes_per_channel_shift

    def lying(op):
        return Shift("proved") if op.name == "Relu" else real(op)

    monkeypatch.setattr(absorb_module, "passes_per_channel_shift", lying)
    graph = prepare(graph_from_onnx(_conv_clip_conv(middle="Relu")))
    assert equalize(graph) and absorbable(graph) == []


def test_an_absorbed_model_quantizes_unsigned_and_runs_in_onnxruntime():
    import onnxruntime as ort

    graph, done, _, _ = _absorbed(_conv_clip_conv())
    calibration = calibrate(graph, models.digits(100, True), progress=False)
    model = quantize(graph, calibration, 8, per_channel=False,
                     calibrated_unsigned=shifted_tensors(done))
    assert "clip1" in shifted_tensors(done)
    test = models.digits(20, True, offset=500)
    simulated = model.run({"input": test})["logits"]
    exported = ort.InferenceSession(model.to_onnx("simulation").SerializeToString()).run(
        None, {"input": test})[0]
    np.testing.assert_array_equal(exported, simulated)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    assert sqnr_db(reference, simulated) > 25


FIXTURES = Path(__file__).parent / "fixtures" / "torch"


@pytest.mark.parametrize("source", ["conv_clip_conv", "digits_uint8.legacy.opset17",
                                    "tiny_resnet_optimum.optimum.opset18"])
def test_absorption_takes_the_groups_equalization_leaves_as_its_own_search_finds_them(source):
    """The command line hands bias absorption the groups equalization leaves (a second search
    had taken 1 s of ResNet-50's run, 4-7 s under load): they are the groups absorb's own
    search finds on the graph it meets, and absorbing through either leaves the same graph.
    A Clip split by equalization and absorbed through (the hand-built model), and two real
    exports whose groups equalization keeps."""
    measured = source != "conv_clip_conv"  # (unmeasured, a group takes its factors whole)
    if not measured:
        model, data = _conv_clip_conv(), {"input": models.digits(100, image=True)}
    else:
        calibration = "digits_uint8" if source.startswith("digits_uint8") else "digits_image"
        with np.load(FIXTURES / f"{calibration}.calib.npz") as arrays:
            model, data = onnx.load(FIXTURES / f"{source}.onnx"), dict(arrays)
    handed, searched = (prepare(graph_from_onnx(model)) for _ in range(2))
    pairs, groups = equalized(handed, data=data if measured else None)
    assert pairs, "equalization keeps a group here"
    assert equalize(searched, data=data if measured else None)
    assert groups == groups_of(searched, OperatorTable(), allow_split=True)
    done = absorb(handed, data, groups=groups)
    assert [item.describe() for item in done] == [
        item.describe() for item in absorb(searched, data)]
    assert done or measured, "the Clip's group is absorbed through its split"
    assert [node.name for node in handed.nodes] == [node.name for node in searched.nodes]
    assert handed.initializers.keys() == searched.initializers.keys()
    for name, value in handed.initializers.items():
        np.testing.assert_array_equal(value, searched.initializers[name])


def test_cli_absorbs_by_default_and_says_so(tmp_path, capsys):
    from ptq_verify.cli import main

    source, out = tmp_path / "m.onnx", tmp_path / "q.onnx"
    onnx.save(_conv_clip_conv(), source)
    calib = tmp_path / "c.npy"
    np.save(calib, models.digits(100, image=True))
    assert main(["quantize", str(source), "--calib", str(calib), "-o", str(out),
                 "--no-progress", "--per-tensor", "--equalize"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("note: bias absorption")]
    assert len(notes) == 1 and "conv1 -> conv2" in notes[0] and "channels shifted" in notes[0]
    assert main(["quantize", str(source), "--calib", str(calib), "-o", str(out),
                 "--no-progress", "--per-tensor"]) == 0
    assert notes == [line for line in capsys.readouterr().out.splitlines()
                     if line.startswith("note: bias absorption")]  # on by default
    assert main(["quantize", str(source), "--calib", str(calib), "-o", str(out),
                 "--no-progress", "--per-tensor", "--no-equalize"]) == 0
    assert "bias absorption" not in capsys.readouterr().out
    assert main(["audit", str(source)]) == 0
    assert "bias absorption (with equalization" in capsys.readouterr().out


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 6), (3, 5, 4, 2)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_each_channels_least_value_is_the_float64_one(shape, dtype):
    """Reduced in the batch's own type, batch first, the per-channel minimum is the one of the
    batch in float64 with its channels moved first (the values bias absorption shifts by)."""
    from ptq_verify.engine.absorb import _channel_least

    x = np.random.default_rng(len(shape)).normal(size=shape).astype(dtype)
    x.flat[3] = -7.5
    expected = np.moveaxis(x.astype(np.float64), 1, 0).reshape(shape[1], -1).min(axis=1)
    got = _channel_least(x)
    assert got.dtype == np.float64
    assert np.array_equal(got, expected)
