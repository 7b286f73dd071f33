"""Per-channel rules (proofs/per-channel.md) and cross-layer equalization built on them."""

from __future__ import annotations

import models
import numpy as np
import onnx
import pytest

from ptq_verify.catalog import CATALOG
from ptq_verify.engine import calibrate, prepare, quantize, sqnr_db
from ptq_verify.engine.equalize import _channel_range, equalize
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph
from ptq_verify.rules import classify
from ptq_verify.rules.certificate import Proof
from ptq_verify.rules.per_channel import (
    PerChannel,
    per_channel_rule,
    recheck_per_channel,
    spot_check_per_channel,
)

# -- the per-channel rule ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_per_channel_rule_is_the_proved_rule_of_a_channel_wise_operator(name):
    op = CATALOG[name]
    verdict = classify(op)
    derived = per_channel_rule(op, verdict)
    proved = isinstance(verdict.certificate, Proof) and verdict.rule.kind.has_rule
    assert derived.holds == (proved and not op.mixes_channels
                             and verdict.rule.degree is not None)
    if derived.holds:
        assert derived.degree == verdict.rule.degree
        assert dict(derived.param_exponents) == {
            p: k for p, k in verdict.rule.param_exponents.items() if k != 0}
        assert spot_check_per_channel(op, derived) == []
    assert recheck_per_channel(op, verdict, derived.to_json()) == []


def test_recheck_refuses_a_per_channel_claim_for_a_mixing_operator():
    mixing = next(op for op in CATALOG.values()
                  if op.mixes_channels and classify(op).rule.kind.has_rule)
    verdict = classify(mixing)
    forged = PerChannel(True, verdict.rule.degree, dict(verdict.rule.param_exponents))
    assert recheck_per_channel(mixing, verdict, forged.to_json())


def test_spot_check_catches_a_wrong_per_channel_exponent():
    """A parameter left alone where the rule rescales it fails at per-channel scales."""
    op, verdict = next((op, classify(op)) for op in CATALOG.values()
                       if per_channel_rule(op, classify(op)).holds
                       and per_channel_rule(op, classify(op)).param_exponents)
    right = per_channel_rule(op, verdict)
    wrong = PerChannel(True, right.degree, {p: k - 1 for p, k in right.param_exponents.items()})
    assert spot_check_per_channel(op, right) == []
    assert spot_check_per_channel(op, wrong)


# -- cross-layer equalization ----------------------------------------------------------------


def _between(middle: list[tuple[str, dict]], seed: int = 30, depthwise: bool = False
             ) -> onnx.ModelProto:
    """conv(1->4) -> middle ops -> [depthwise conv] -> conv(4->4) -> Relu -> dense."""
    b = models.Builder(seed, image=True)
    h = b.conv("input", 1, 4)
    # uneven channel ranges, which equalization evens out
    b.inits[-2] = onnx.numpy_helper.from_array(
        onnx.numpy_helper.to_array(b.inits[-2]) * np.float32([[[[0.05]]], [[[1]]], [[[8]]],
                                                              [[[0.5]]]]), b.inits[-2].name)
    for op_type, attrs in middle:
        inputs = [h] + [b.const(np.float32(v), "p") for v in attrs.pop("_consts", [])]
        h = b.add(op_type, inputs, **attrs)
    if depthwise:
        w = b.const(b.weight(4, 1, 3, 3, fan_in=9), "W")
        h = b.add("Relu", [b.add("Conv", [h, w], group=4, pads=[1] * 4)])
    h = b.add("Relu", [b.conv(h, 4, 4)])
    return b.model(b.dense(b.flatten(h), 256, 10), "between")


def _equalized(model: onnx.ModelProto):
    graph = prepare(graph_from_onnx(model))
    data = {"input": models.digits(50, image=graph.inputs[0].shape[1:] != (64,))}
    before = run_graph(graph, data, OperatorTable())
    weights = dict(graph.initializers)
    pairs = equalize(graph)
    after = run_graph(graph, data, OperatorTable())
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-4,
                                   atol=1e-5 * np.abs(value).max())
    return graph, pairs, weights


@pytest.mark.parametrize("name", sorted(models.TOPOLOGIES))
def test_equalization_keeps_the_float_function_of_the_topologies(name):
    _equalized(models.TOPOLOGIES[name][0]())


def test_equalization_through_relu_and_maxpool_evens_the_channel_ranges():
    graph, pairs, before = _equalized(_between([("Relu", {}), ("MaxPool", {
        "kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]})]))
    (pair,) = pairs
    assert len(pair.through) == 2
    first, second = (next(n for n in graph.nodes if n.name == name)
                     for name in (*pair.firsts, *pair.seconds))
    r1 = _channel_range(graph.initializers[first.inputs[1]], 0)
    r2 = _channel_range(graph.initializers[second.inputs[1]], 1)
    np.testing.assert_allclose(r1, r2, rtol=1e-5)
    old = _channel_range(before[first.inputs[1]], 0)
    assert old.max() / old.min() > 5 * r1.max() / r1.min()  # 112 -> 12 here


def test_equalization_through_a_depthwise_convolution():
    graph, pairs, _ = _equalized(_between([("Relu", {})], depthwise=True))
    assert len(pairs) == 2  # conv -> depthwise, depthwise -> conv


def test_per_channel_parameters_pass_and_clip_bounds_become_per_channel():
    """PRelu's per-channel slope has exponent 0 (passes as it is). A Clip(0, 6)'s bounds are
    scalars in ONNX (onnxruntime's Clip refuses per-channel ones): the Clip is split into
    Max/Min steps whose bounds, tensors, take the per-channel values 6 / s_c."""
    slope = {"_consts": [np.full((4, 1, 1), 0.1)]}
    _, pairs, _ = _equalized(_between([("PRelu", slope)]))
    assert len(pairs) == 1
    graph, pairs, _ = _equalized(_between([("Clip", {"_consts": [0.0, 6.0]})]))
    (pair,) = pairs
    assert len(pair.through) == 2 and not any(n.op_type == "Clip" for n in graph.nodes)
    upper = graph.initializers[f"{pair.through[-1].split(':')[0]}:1:bound"].ravel()
    np.testing.assert_allclose(upper, 6 / pair.scale, rtol=1e-6)


def test_clips_sharing_one_pair_of_bounds_are_equalized():
    """torch's dynamo exporter gives every ReLU6 the same two bound tensors: each Clip split
    for equalization takes its own copies, so the pairs on both sides are found."""
    model = _between([("Clip", {"_consts": [0.0, 6.0]})], depthwise=True)
    clips = [n for n in model.graph.node if n.op_type == "Clip"]
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Clip"  # the depthwise output's Relu becomes a second ReLU6 ...
    relu.input.extend(clips[0].input[1:])  # ... reading the first Clip's bound tensors
    graph, pairs, _ = _equalized(model)
    assert len(pairs) == 2


def test_a_clip_is_left_whole_when_no_pair_needs_it():
    b = models.Builder(32, image=True)
    h = b.add("Clip", [b.conv("input", 1, 4), b.const(np.float32(0)), b.const(np.float32(6))])
    model = b.model(b.dense(b.flatten(h), 256, 10), "clip_last")
    graph, pairs, _ = _equalized(model)
    assert pairs == [] and any(n.op_type == "Clip" for n in graph.nodes)


def test_no_equalization_through_an_operator_without_a_per_channel_rule():
    _, pairs, _ = _equalized(_between([("Sigmoid", {})]))
    assert pairs == []
    _, pairs, _ = _equalized(_between([("Relu", {})]))
    assert len(pairs) == 1  # the same model with Relu in its place does equalize


def test_a_fan_out_into_weight_layers_is_equalized_with_the_largest_range():
    b = models.Builder(31, image=True)
    x = b.add("Relu", [b.conv("input", 1, 4)])
    h = b.add("Add", [b.conv(x, 4, 4), b.conv(x, 4, 4)])
    model = b.model(b.dense(b.flatten(b.add("Relu", [h])), 256, 10), "branch")
    graph, pairs, _ = _equalized(model)
    (pair,) = [p for p in pairs if p.firsts == ("conv1",)]
    assert len(pair.seconds) == 2
    nodes = {n.name: n for n in graph.nodes}
    r1 = _channel_range(graph.initializers[nodes["conv1"].inputs[1]], 0)
    r2 = np.max([_channel_range(graph.initializers[nodes[s].inputs[1]], 1)
                 for s in pair.seconds], axis=0)
    np.testing.assert_allclose(r1, r2, rtol=1e-5)


def test_a_group_that_reaches_a_channel_mixing_node_is_not_equalized():
    """A residual whose skip Add's output (after a Relu) is flattened: the stem's output and
    the block's last convolution's join at the Add, so both would take the factor, but the
    Flatten after it mixes channels: the whole group is left as it is."""
    graph, groups, _ = _equalized(models.residual())
    assert all("conv1" not in g.firsts for g in groups)


def _residual_into_a_convolution(seed: int = 33) -> onnx.ModelProto:
    """conv -> Relu = x; x -> conv -> Relu -> conv = y; Relu(x + y) -> conv -> Relu -> dense,
    the first convolution's channels made uneven."""
    b = models.Builder(seed, image=True)
    stem = b.conv("input", 1, 4)
    b.inits[-2] = onnx.numpy_helper.from_array(
        onnx.numpy_helper.to_array(b.inits[-2]) * np.float32([0.05, 1, 8, 0.5])[:, None, None,
                                                              None], b.inits[-2].name)
    x = b.add("Relu", [stem])
    y = b.conv(b.add("Relu", [b.conv(x, 4, 4)]), 4, 4)
    h = b.add("Relu", [b.conv(b.add("Relu", [b.add("Add", [x, y])]), 4, 4)])
    return b.model(b.dense(b.flatten(h), 256, 10), "residual_conv")


def test_branches_meeting_at_an_aligned_join_are_one_group():
    """The skip Add's two inputs must take the same factor: the group holds both layers that
    make them (the stem and the block's last convolution) and both that read its tensors (the
    block's first convolution and the one after the join), with one scale for all four."""
    graph, groups, before = _equalized(_residual_into_a_convolution())
    nodes = {n.name: n for n in graph.nodes}
    (group,) = [g for g in groups if len(g.firsts) == 2]
    assert len(group.seconds) == 2 and any(nodes[n].op_type == "Add" for n in group.through)
    r1 = np.max([_channel_range(graph.initializers[nodes[n].inputs[1]], 0)
                 for n in group.firsts], axis=0)
    old = np.max([_channel_range(before[nodes[n].inputs[1]], 0) for n in group.firsts], axis=0)
    assert old.max() / old.min() > 3 * r1.max() / r1.min()  # 11.7 -> 2.4 here


def test_a_join_with_an_input_from_outside_the_rules_is_not_equalized():
    """The same residual with a Sigmoid (no per-channel rule) on the skip: the Add's other input
    cannot take the factor, so no group crosses the join."""
    model = _residual_into_a_convolution()
    add = next(n for n in model.graph.node if n.op_type == "Add")
    sigmoid = onnx.helper.make_node("Sigmoid", [add.input[0]], ["skip_sigmoid"], name="sig")
    add.input[0] = "skip_sigmoid"
    model.graph.node.insert(list(model.graph.node).index(add), sigmoid)
    _, groups, _ = _equalized(model)
    assert not any(len(g.firsts) > 1 for g in groups)


@pytest.mark.parametrize("middle", ["Relu", "Clip"])
@pytest.mark.parametrize("form", ["qdq", "simulation", "integer"])
def test_equalized_model_quantizes_and_runs_in_onnxruntime(middle, form):
    import onnxruntime as ort

    consts = {"_consts": [0.0, 6.0]} if middle == "Clip" else {}
    graph, pairs, _ = _equalized(_between([(middle, consts)]))
    assert pairs
    calibration = calibrate(graph, models.digits(100, True), progress=False)
    model = quantize(graph, calibration, 8, per_channel=False)
    test = models.digits(20, True, offset=500)
    session = ort.InferenceSession(model.to_onnx(form).SerializeToString())
    simulated = model.run({"input": test})["logits"]
    exported = session.run(None, {"input": test})[0]
    if form == "qdq":  # onnxruntime requantizes in its own rounding
        assert sqnr_db(simulated, exported) > 30
    else:
        np.testing.assert_array_equal(exported, simulated)


def test_cli_equalizes_by_default_and_says_so(tmp_path, capsys):
    """Equalization is on by default (each group at its measured strength) and the summary
    names what it kept; --no-equalize turns it off."""
    from ptq_verify.cli import main

    model = tmp_path / "between.onnx"
    model.write_bytes(_between([("Clip", {"_consts": [0.0, 6.0]})]).SerializeToString())
    calib = tmp_path / "calib.npz"
    np.savez(calib, input=models.digits(100, True))
    graph = prepare(graph_from_onnx(onnx.load(model)))
    kept = equalize(graph, data={"input": models.digits(100, True)}, per_channel=False)
    assert kept  # the uneven channels make it worth it (test below)
    notes = {}
    for options in ((), ("--equalize",), ("--no-equalize",)):
        assert main(["quantize", str(model), "--calib", str(calib), "-o",
                     str(tmp_path / "q.onnx"), "--no-progress", "--per-tensor", *options]) == 0
        (notes[options],) = [line for line in capsys.readouterr().out.splitlines()
                             if line.startswith("note: cross-layer equalization")]
    assert notes[()] == notes[("--equalize",)]
    assert all(group.describe() in notes[()] for group in kept)
    assert notes[("--no-equalize",)].endswith("off (--no-equalize)")


@pytest.mark.parametrize("per_channel", [True, False])
def test_measured_strengths_keep_what_helps_and_drop_what_costs(per_channel):
    """Whole factors cost per-channel weights here (the activation between the layers gets
    the weights' uneven channels) and help per-tensor ones; the strengths measured on the
    calibration data follow: no worse than no equalization, better where it helps."""
    calibration, test = models.digits(100, True), models.digits(300, True, offset=500)

    def sqnr(mode: str) -> float:
        graph = prepare(graph_from_onnx(_between([("Clip", {"_consts": [0.0, 6.0]})])))
        if mode != "off":
            equalize(graph, data={"input": calibration} if mode == "measured" else None,
                     per_channel=per_channel)
        model = quantize(graph, calibrate(graph, calibration, progress=False), 8,
                         per_channel=per_channel)
        reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
        return sqnr_db(reference, model.run({"input": test})["logits"])

    off, whole, measured = sqnr("off"), sqnr("whole"), sqnr("measured")
    assert measured >= off - 0.05
    if whole > off + 1:
        assert measured > off + 1


def test_a_clip_split_by_equalization_still_bounds_the_tensor_before_it():
    """The ReLU6 equalization splits into Max(x, lo) and Min(., 6 / s_c) is a chain of clips
    (Corollary 2.1 of proofs/selections.md): the convolution output before it is held
    unsigned on the chain's output range, as before an unsplit Clip, not on its own range."""
    graph, (pair,), _ = _equalized(_between([("Clip", {"_consts": [0.0, 6.0]})]))
    calibration = calibrate(graph, models.digits(100, True), progress=False)
    model = quantize(graph, calibration, 8, per_channel=False)
    nodes = {node.name: node for node in graph.nodes}
    before, end = nodes[pair.firsts[0]].outputs[0], nodes[pair.through[-1]].outputs[0]
    code = model.codes[before]
    assert code.low == 0
    np.testing.assert_allclose(code.high / code.scale, calibration.stats[end].max_abs,
                               rtol=1e-6)
    assert calibration.stats[before].max_abs > 1.5 * calibration.stats[end].max_abs


@pytest.mark.parametrize("per_channel", [True, False])
def test_a_split_clip_runs_on_stored_codes_in_qdq(per_channel, monkeypatch):
    """The Max and Min of a split ReLU6 read the 8-bit codes, their bounds stored as codes
    clipped to the tensor's code range (Lemma 3 of proofs/selections.md): bit for bit what
    the float form (DequantizeLinear, Max/Min, QuantizeLinear) gives, without its round trip
    (EfficientNet-Lite1 equalized: 11.1 -> 6.9 ms a crop)."""
    import importlib

    import onnxruntime as ort

    graph, pairs, _ = _equalized(_between([("Clip", {"_consts": [0.0, 6.0]})]))
    model = quantize(graph, calibrate(graph, models.digits(100, True), progress=False), 8,
                     per_channel=per_channel)
    on_codes = model.to_onnx("qdq")
    monkeypatch.setattr(importlib.import_module("ptq_verify.engine.lower.qdq"),
                        "is_lattice_selection", lambda op: False)
    in_float = model.to_onnx("qdq")

    def dequantized_inputs(export) -> int:
        made_by = {out: n.op_type for n in export.graph.node for out in n.output}
        return sum(made_by.get(name) == "DequantizeLinear" for n in export.graph.node
                   if n.op_type in ("Max", "Min") for name in n.input)

    assert dequantized_inputs(on_codes) == 0 < dequantized_inputs(in_float)
    test = {"input": models.digits(20, True, offset=500)}
    run = [ort.InferenceSession(m.SerializeToString()).run(None, test)[0]
           for m in (on_codes, in_float)]
    np.testing.assert_array_equal(*run)


def test_a_model_with_an_integer_input_is_equalized_on_its_calibration_data():
    """Random inputs cannot stand for integer ones (token ids index tables): with calibration
    data the before/after check and the strengths run on its samples, so a model with an
    integer input is equalized like any other."""
    model = _between([("Clip", {"_consts": [0.0, 6.0]})])
    model.graph.input.append(onnx.helper.make_tensor_value_info(
        "offset", onnx.TensorProto.INT64, ["batch", 1]))
    logits = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = ["logits:float" if out == logits else out for out in node.output]
    model.graph.node.extend([
        onnx.helper.make_node("Cast", ["offset"], ["offset:float"], to=onnx.TensorProto.FLOAT),
        onnx.helper.make_node("Add", ["logits:float", "offset:float"], [logits])])
    images = models.digits(100, True)
    data = {"input": images, "offset": np.arange(len(images), dtype=np.int64)[:, None] % 3}
    graph = prepare(graph_from_onnx(model))
    assert equalize(graph) == []  # no random integer inputs
    graph = prepare(graph_from_onnx(model))
    before = run_graph(graph, data, OperatorTable())
    assert equalize(graph, data=data, per_channel=False)
    after = run_graph(graph, data, OperatorTable())
    np.testing.assert_allclose(after[logits], before[logits], rtol=1e-4,
                               atol=1e-5 * np.abs(before[logits]).max())


# -- a split that took no per-channel value is put back ---------------------------------------

def _two_relu6() -> onnx.ModelProto:
    """conv(1->4) -> ReLU6 -> conv(4->4) -> ReLU6 -> conv(4->4) -> Relu -> dense: two Clip
    links; the two ReLU6 share one pair of bound constants, as the dynamo exporter writes."""
    b = models.Builder(31, image=True)
    low, high = b.const(np.float32(0.0), "lo"), b.const(np.float32(6.0), "hi")
    h = b.add("Clip", [b.conv("input", 1, 4), low, high])
    h = b.add("Clip", [b.conv(h, 4, 4), low, high])
    h = b.add("Relu", [b.conv(h, 4, 4)])
    return b.model(b.dense(b.flatten(h), 256, 10), "two_relu6")


def test_rejoin_puts_back_a_split_whose_bounds_took_no_per_channel_value():
    """A split Clip whose bounds still hold one value in every channel is the same function
    as the Clip: it is put back, as it was, with its shared bounds; a split whose bound
    varies per channel stays split."""
    from ptq_verify.engine.split import rejoin, split

    graph = prepare(graph_from_onnx(_two_relu6()))
    original = [(node.name, node.op_type, list(node.inputs)) for node in graph.nodes]
    weights = dict(graph.initializers)
    table = OperatorTable()
    clips = [node for node in graph.nodes if node.op_type == "Clip"]
    first, second = (split(graph, table, node, table.require(node, graph)) for node in clips)
    assert not any(node.op_type == "Clip" for node in graph.nodes)
    changed = first[-1].inputs[1]
    graph.initializers[changed] = np.float32([5.0, 6.0, 6.0, 6.0]).reshape(1, 4, 1, 1)
    untouched = second[-1].inputs[1]
    graph.initializers[untouched] = np.full((1, 4, 1, 1), 6.0, np.float32)  # factors of 1

    assert rejoin(graph) == 1
    assert [node.op_type for node in graph.nodes].count("Clip") == 1
    assert all(step in graph.nodes for step in first)
    assert not any(step in graph.nodes for step in second)
    assert [(n.name, n.op_type, list(n.inputs)) for n in graph.nodes
            if n.name not in {step.name for step in first}] == [
        entry for entry in original if entry[0] != clips[0].name]
    assert rejoin(graph) == 0  # the first split keeps its per-channel bound

    graph.initializers[changed] = np.full((1, 4, 1, 1), 6.0, np.float32)
    assert rejoin(graph) == 1
    assert [(n.name, n.op_type, list(n.inputs)) for n in graph.nodes] == original
    assert graph.initializers.keys() == weights.keys()
    assert graph.undo == []


def test_equalization_and_absorption_leave_no_split_that_holds_one_value_per_channel():
    """After the CLI's passes (measured equalization, then bias absorption) every Max/Min a
    split left bounds its tensor per channel; every other Clip is a Clip again, and the float
    function is unchanged."""
    from ptq_verify.engine.absorb import absorb

    graph = prepare(graph_from_onnx(_two_relu6()))
    data = {"input": models.digits(100, True)}
    before = run_graph(graph, data, OperatorTable())
    equalize(graph, data=data, per_channel=False)
    absorb(graph, data)
    for record in graph.undo:
        assert any(np.ptp(graph.initializers[step.inputs[1]]) > 0 for step, _ in record.steps)
    split_steps = sum(len(record.steps) for record in graph.undo)
    ops = [node.op_type for node in graph.nodes]
    assert ops.count("Clip") == 2 - len(graph.undo)
    assert ops.count("Max") + ops.count("Min") == split_steps
    after = run_graph(graph, data, OperatorTable())
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-4,
                                   atol=1e-5 * np.abs(value).max())


def test_the_strength_search_runs_large_layers_in_onnxruntime_as_the_kernels_do():
    """Equalization measures each group at every strength on a calibration sample; its large
    convolutions go to onnxruntime (ResNet-50's search took 11.7 s in the numpy kernels), one
    session per node for every weight tried, with the kernels' results; small runs stay in
    the kernels, where a session would cost more than the run."""
    from onnx import TensorProto, helper

    from ptq_verify.graph import run_node
    from ptq_verify.graph.ort_runner import NodeSessions

    rng = np.random.default_rng(0)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])
    graph = graph_from_onnx(helper.make_model(helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8, 32, 32])],
        [onnx.numpy_helper.from_array(np.zeros((8, 16, 3, 3), np.float32), "w"),
         onnx.numpy_helper.from_array(np.zeros(8, np.float32), "b")]),
        opset_imports=[helper.make_opsetid("", 17)]))
    conv, sessions = graph.nodes[0], NodeSessions(graph)
    small = [rng.normal(size=(1, 16, 32, 32)).astype(np.float32)]
    large = [rng.normal(size=(32, 16, 32, 32)).astype(np.float32)]
    for x in (small, large):
        for _ in range(2):  # two weights, one session
            values = [*x, rng.normal(size=(8, 16, 3, 3)).astype(np.float32),
                      rng.normal(size=8).astype(np.float32)]
            ran = sessions.run(conv, values)
            assert (ran is None) == (x is small)
            if ran is not None:
                expected = run_node(conv, OperatorTable.of(None), values, graph)[0]
                np.testing.assert_allclose(ran[0], expected, rtol=1e-4, atol=1e-4)
    assert list(sessions.sessions) == ["conv"]


@pytest.mark.parametrize("chunk", [1, 7, 1 << 16])
def test_the_group_errors_sum_of_squares_is_the_whole_float64_sum(chunk):
    """Chunked through a float64 buffer (no float64 copy of a whole output), the sum is the
    one float64 sum gives, to its rounding; without ``minus`` the values stay as they were."""
    from ptq_verify.engine.metrics import sum_of_squares

    rng = np.random.default_rng(8)
    exact = rng.normal(size=(3, 5, 11)).astype(np.float32)
    rounded = exact + rng.normal(scale=1e-3, size=exact.shape).astype(np.float32)
    expected = float(np.sum((rounded.astype(np.float64) - exact) ** 2))
    assert sum_of_squares(rounded.copy(), exact, chunk=chunk) == pytest.approx(expected,
                                                                                rel=1e-6)
    kept = exact.copy()
    assert sum_of_squares(kept, chunk=chunk, total=2.0) == pytest.approx(
        2.0 + float(np.sum(exact.astype(np.float64) ** 2)), rel=1e-12)
    assert np.array_equal(kept, exact)
