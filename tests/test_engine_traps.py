"""Trap graphs: discontinuous operators between layers, and bool or integer graph outputs."""

from __future__ import annotations

import importlib

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify import Operator
from ptq_verify.engine import calibrate, prepare, quantize, relative_error
from ptq_verify.engine.quantize import MAX_BITS
from ptq_verify.engine.rules import jumps
from ptq_verify.graph import OperatorTable, graph_from_onnx, run_graph

quantize_module = importlib.import_module("ptq_verify.engine.quantize")  # not the function


def _quantized(model, bits: int = 8):
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, models.digits(150), progress=False), bits)
    test = models.digits(60, offset=500)
    reference = run_graph(graph, {"input": test}, OperatorTable())[graph.output_names[0]]
    session = ort.InferenceSession(quantized.to_onnx().SerializeToString())
    exported = session.run(None, {"input": test})[0]
    return quantized, quantized.run(test)[graph.output_names[0]], exported, reference


@pytest.mark.parametrize(("text", "inputs", "expected"), [
    ("sign(x)", "x", True),
    ("round(x)", "x", True),
    ("where(x > 1, x, 0)", "x", True),  # a threshold: the branches differ at x = 1
    ("where(a > b, 1, 0)", "a, b", True),
    ("heaviside(x - 1)", "x", True),  # sympy's Heaviside, no Piecewise: it had read False
    ("x*heaviside(p - 1)", "x", False),  # a step of a parameter only
    ("where(x >= 0, x, 0.1*x)", "x", False),  # LeakyRelu: the branches meet at 0
    # they meet at pi/4, the one solution sympy's solve gives for tan(x) = 1, and at no other
    # (5 pi/4): only a polynomial boundary's solutions are taken as all of them
    ("where(tan(x) > 1, x, pi/4)", "x", True),
    ("atan((x - pi/4)/(tan(x) - 1))", "x", True),  # removable at pi/4, a jump at 5 pi/4
    ("atan((abs(x) - pi/4)/(tan(abs(x)) - 1))", "x", True),  # the same in |x|
    ("where(x > 0, x, exp(x) - 1)", "x", False),  # Elu
    ("where(k > 0, x, v)", "x", False),  # a static selection (Pad): no jump in x
    ("x*floor(k)", "x", False),  # a step of a parameter only
    ("max(x, 0) + abs(x)", "x", False),
    # jumps written without a step function: a quotient whose one-sided limits differ where
    # its divisor is 0; a pole (left to the divisor screen) and a removable point are not
    ("x/abs(x)", "x", True),
    ("max(x, 0)/x", "x", True),
    ("(a - b)/abs(a - b)", "a, b", True),
    ("a/b", "a, b", False),
    # a bounded function of a pole jumps (-pi/2 and pi/2 either side of 0; 0 and 1): the
    # pole's own product 1/x, infinite on a side, had been all that was looked at
    ("atan(1/x)", "x", True),
    ("sigmoid(a/b)", "a, b", True),
    ("atan(1/x**2)", "x", False),  # pi/2 on both sides: removable
    ("exp(1/x)", "x", False),  # a side infinite: a pole
    ("sin(x)/x", "x", False),
])
def test_jumps_are_read_off_the_expression(text, inputs, expected):
    params = {p: 1 for p in ("k", "v", "p") if p in text}
    assert jumps(Operator("t", inputs, text, params=params)) is expected


def test_discontinuous_nodes_reading_one_layer_are_one_note():
    """Four Signs (and a Round) reading one layer's output: one note names a few of them and
    the input held for them, where each had written a note of its own (a keypoint head's 68
    Signs: 104 notes in a new-user trial)."""
    b = models.Builder(23)
    h = b.dense("input", 64, 16)
    steps = [b.add(op_type, [h]) for op_type in ("Sign", "Sign", "Sign", "Sign", "Round")]
    total = steps[0]
    for step in steps[1:]:
        total = b.add("Add", [total, step])
    quantized = _quantized(b.model(b.dense(total, 16, 10), "steps"))[0]
    said = [n for n in quantized.notes if "discontinuous" in n]
    assert len(said) == 1, said
    assert "and 2 more are discontinuous" in said[0] and f"held at {MAX_BITS} bits" in said[0]
    noted = [r for r in quantized.records if "discontinuous" in r.note]
    assert len(noted) == 5  # each node's own record still says it


@pytest.mark.parametrize("op_type", ["Sign", "Round"])
def test_discontinuous_node_between_layers_is_held_precisely_and_said(op_type):
    quantized, simulated, exported, reference = _quantized(models.step_between(op_type))
    assert np.array_equal(simulated, exported)
    node = f"{op_type.lower()}1"
    said = [n for n in quantized.notes if node in n and "discontinuous" in n]
    records = {r.name: r for r in quantized.records}
    if op_type == "Sign":
        # scale-invariant, so it runs in float on the layer's integer accumulator held wide:
        # exact, no note of codes (9.4 % with an 8-bit input)
        assert "held wide" in records["gemm1"].note and not said
        assert relative_error(reference, simulated) < 0.02
    else:  # a table of codes: its input held at 16 bits
        assert said and f"{MAX_BITS} bits" in said[0]
        assert "discontinuous" in records[node].note


def test_comparison_output_keeps_its_bool_type_in_onnxruntime():
    _, simulated, exported, reference = _quantized(models.comparison_output())
    assert exported.dtype == simulated.dtype == reference.dtype == np.bool_
    assert np.array_equal(exported, simulated)
    assert np.mean(exported != reference) < 0.01


def test_integer_output_keeps_its_type_in_onnxruntime():
    _, simulated, exported, reference = _quantized(models.argmax_output())
    assert exported.dtype == simulated.dtype == reference.dtype == np.int64
    assert np.array_equal(exported, simulated)
    assert np.mean(exported != reference) < 0.05


def _dead_channel_model():
    """A Gemm whose output channel 3 has near-zero weights and a real bias (a pruned or
    BatchNorm-folded channel): a per-channel weight scale from its weights alone would put its
    bias, at the accumulator's scale, beyond int32."""
    b = models.Builder(seed=7)
    hidden = b.add("Relu", [b.dense("input", 64, 32)])
    w = b.weight(10, 32, fan_in=32)
    w[3] = 1e-9
    bias = (b.rng.standard_normal(10) * 0.1).astype(np.float32)
    bias[3] = 2.0
    out = b.add("Gemm", [hidden, b.const(w, "W"), b.const(bias, "b")], transB=1)
    return prepare(graph_from_onnx(b.model(out, "dead_channel")))


def _close_in_every_format(graph, quantized) -> None:
    test = models.digits(100, offset=300)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    for form in ("simulation", "qdq", "integer"):
        session = ort.InferenceSession(quantized.to_onnx(form).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": test})[0]
        assert np.abs(got - reference).max() < 0.05, form


def test_a_near_dead_channel_caps_its_weight_scale_so_its_bias_fits_int32():
    """The channel's weight scale is capped where its bias reaches int32 (a qdq file used to
    cast such a bias, wrapped, to garbage): the layer stays on integers, every bias fits."""
    graph = _dead_channel_model()
    quantized = quantize(graph, calibrate(graph, models.digits(200), progress=False), 8)
    record = [r for r in quantized.records if r.op_type == "Gemm"][-1]
    assert not record.action.startswith("compensate")
    biases = [step.constants[name] for step in quantized.steps
              for name, p in getattr(step, "params", {}).items() if p.kind == "bias"]
    assert biases and max(np.abs(v).max() for v in biases) <= quantize_module.BIAS_LIMIT
    _close_in_every_format(graph, quantized)


def test_a_bias_still_beyond_int32_runs_the_layer_in_float(monkeypatch):
    """Without the cap (or where it cannot apply: one scale per tensor), a bias beyond int32
    makes the layer run in float, with the reason in its note, never a wrapped cast."""
    monkeypatch.setattr(quantize_module, "BIAS_HEADROOM", np.inf)
    graph = _dead_channel_model()
    quantized = quantize(graph, calibrate(graph, models.digits(200), progress=False), 8)
    record = [r for r in quantized.records if r.op_type == "Gemm"][-1]
    assert record.action.startswith("compensate") and "32-bit" in record.note + record.why
    _close_in_every_format(graph, quantized)


@pytest.mark.parametrize(("op_type", "attrs", "bounds"), [
    ("Clip", {}, (-5.0, 5.0)), ("ThresholdedRelu", {"alpha": 5.0}, None),
    ("Shrink", {"lambd": 5.0}, None)])
def test_a_node_affine_only_on_a_probe_is_not_folded_into_its_layer(op_type, attrs, bounds):
    """A probe's random values (|x| < 4) see Clip(-5, 5) as the identity and ThresholdedRelu
    or Shrink at 5 as 0: a fold on the probe's word merged them into the layer before, and the
    written model computed another function (a new-user trial: -8 to 0 dB). Folding needs
    the node proved affine; against the model as given, the written one stays close."""
    b = models.Builder(30)
    inputs = [b.dense("input", 64, 16)]
    if bounds:
        inputs += [b.const(np.array(bound, np.float32)) for bound in bounds]
    h = b.add(op_type, inputs, **attrs)
    model = b.model(b.dense(h, 16, 10), "probe_trap")
    data, test = 10 * models.digits(150), 10 * models.digits(60, offset=500)
    graph = prepare(graph_from_onnx(model))
    assert any(node.op_type == op_type for node in graph.nodes)
    quantized = quantize(graph, calibrate(graph, data, progress=False), 8)
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"input": test})[0]
    exported = ort.InferenceSession(quantized.to_onnx().SerializeToString()).run(
        None, {"input": test})[0]
    assert relative_error(reference, exported) < 0.05


def test_a_declared_parameter_an_absent_attribute_binds_takes_the_onnx_default(tmp_path):
    """ThresholdedRelu declared with sample alpha = 3 on a node without the attribute: the
    node runs with the ONNX default, 1, in onnxruntime, and the engine must compute and
    rescale that, not 3 (a new-user trial: -0.2 dB, the activation called 0 everywhere)."""
    from ptq_verify.cli import main

    b = models.Builder(31)
    h = b.add("ThresholdedRelu", [b.dense("input", 64, 16)])
    model = b.model(b.dense(h, 16, 10), "threshold")
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    data, test = 4 * models.digits(150), 4 * models.digits(60, offset=500)
    np.save(tmp_path / "calib.npy", data)
    (tmp_path / "ops.toml").write_text('[[operator]]\nname = "MyThr"\nparams = { alpha = 3 }\n'
                                       'expr = "where(x > alpha, x, 0)"\n'
                                       'onnx_type = "ThresholdedRelu"\n')
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npy"),
                 "-o", str(tmp_path / "q.onnx"), "--operators", str(tmp_path / "ops.toml"),
                 "--no-progress"]) == 0
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"input": test})[0]
    exported = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"input": test})[0]
    assert relative_error(reference, exported) < 0.05


def test_the_fidelity_note_measures_against_the_model_as_given(tmp_path, monkeypatch, capsys):
    """The written model is compared with the user's file, not with the graph the engine
    prepared from it: a preparation that changed the function (here a fold made to accept a
    ThresholdedRelu) shows in the note instead of measuring 38 dB against itself."""
    from ptq_verify.cli import main
    from ptq_verify.engine import fold

    monkeypatch.setattr(fold, "stored_proved_affine", lambda op, tensor: True)
    b = models.Builder(30)
    h = b.add("ThresholdedRelu", [b.dense("input", 64, 16)], alpha=5.0)
    model = b.model(b.dense(h, 16, 10), "probe_trap")
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    np.save(tmp_path / "calib.npy", 10 * models.digits(150))
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npy"),
                 "-o", str(tmp_path / "q.onnx"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    note = next(line for line in (captured.out + captured.err).splitlines()
                if "output SQNR" in line)
    assert float(note.split("): logits ")[1].split(" dB")[0]) < 10, note


def test_a_constant_divisor_far_below_its_largest_value_runs_in_float():
    """Div by the constant [0.01, 1, ..., 5]: one 8-bit code array for it made 0.01 code 0,
    and its channel saturated (a new-user trial: -8.7 dB, where onnxruntime's quantizer gets
    25 dB); a constant divisor within MIN_DIVISOR_CODES of 0 now leaves the node in float."""
    b = models.Builder(32)
    divisor = np.concatenate([[0.01], np.linspace(1, 5, 15)]).astype(np.float32)
    h = b.add("Div", [b.dense("input", 64, 16), b.const(divisor)])
    model = b.model(b.dense(h, 16, 10), "divided")
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, models.digits(150), progress=False), 8)
    test = models.digits(60, offset=500)
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"input": test})[0]
    exported = ort.InferenceSession(quantized.to_onnx().SerializeToString()).run(
        None, {"input": test})[0]
    assert relative_error(reference, exported) < 0.1  # 26 dB; the quotient's range is wide
    record = next(r for r in quantized.records if r.op_type == "Div")
    assert "constant divisor" in record.note


def test_a_divisor_whose_values_straddle_zero_far_from_it_runs_on_integers():
    """1 / x with x in +-[2, 5]: its codes stay 51 or more from 0, so it runs on integers.
    The least |x| of a range that straddles 0 takes a pass of its own over the values, which
    calibration makes only for divisors; were it 0 (its bound) here, the node would be kept
    in float as a divisor near 0."""
    rng = np.random.default_rng(3)
    x = (rng.choice([-1.0, 1.0], (150, 64)) * rng.uniform(2, 5, (150, 64))).astype(np.float32)
    b = models.Builder(33)
    h = b.add("Div", [b.const(np.array(1.0, dtype=np.float32)), "input"])
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 64, 10), "reciprocal")))
    calibration = calibrate(graph, x, bits=8, progress=False)  # (no histogram: bits given)
    assert 2 <= calibration.stats["input"].min_abs < 2.01
    quantized = quantize(graph, calibration, 8)
    record = next(r for r in quantized.records if r.op_type == "Div")
    assert record.kind != "compensated", record
    assert not any("divisor" in note for note in quantized.notes)


def _attention_error(model: onnx.ModelProto, form: str) -> float:
    """The written ``form``'s relative error against the float model, held out, once the
    Attention node is checked to run on integers."""
    graph = prepare(graph_from_onnx(model))
    x = np.random.default_rng(8).normal(size=(64, 6, 8)).astype(np.float32)
    quantized = quantize(graph, calibrate(graph, x[:48], bits=8, progress=False), 8)
    record = next(r for r in quantized.records if r.op_type == "Attention")
    assert record.kind != "compensated", record
    reference = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x[48:]})[0]
    written = ort.InferenceSession(quantized.to_onnx(form).SerializeToString()).run(
        None, {"x": x[48:]})[0]
    return relative_error(reference, written)


def _attention_model(scale: float | None) -> onnx.ModelProto:
    """Three projections of x into (batch, 2 heads, 6 positions, 4) and an ONNX Attention
    (opset 23) over them, with ``scale`` as its attribute (None: absent, 1/sqrt(4) then),
    projected back: the form torch's dynamo exporter writes at opset 23."""
    rng = np.random.default_rng(7)
    init = [numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32) * 0.5, name)
            for name in ("wq", "wk", "wv", "wo")]
    init.append(numpy_helper.from_array(np.array([0, 6, 2, 4], np.int64), "heads"))
    init.append(numpy_helper.from_array(np.array([0, 6, 8], np.int64), "flat"))
    nodes = []
    for name in ("q", "k", "v"):
        nodes += [helper.make_node("MatMul", ["x", f"w{name}"], [f"{name}_flat"]),
                  helper.make_node("Reshape", [f"{name}_flat", "heads"], [f"{name}_split"]),
                  helper.make_node("Transpose", [f"{name}_split"], [name], perm=[0, 2, 1, 3])]
    attrs = {} if scale is None else {"scale": scale}
    nodes += [helper.make_node("Attention", ["q", "k", "v"], ["a"], name="attention", **attrs),
              helper.make_node("Transpose", ["a"], ["a_t"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["a_t", "flat"], ["a_flat"]),
              helper.make_node("MatMul", ["a_flat", "wo"], ["y"])]
    graph = helper.make_graph(
        nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 6, 8])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


@pytest.mark.parametrize("form", ["qdq", "simulation"])
def test_an_attention_with_its_scale_runs_on_integers_with_the_scale_rescaled(form):
    """A new-user trial at opset 23: every Attention node of a dynamo export ran in float,
    'the rule rescales c, which no input or attribute of the node carries', although each
    holds its scale as an attribute. Its rule (aligned, c -> s^-2 c) now rescales it."""
    assert _attention_error(_attention_model(0.4), form) < 0.03  # 30 dB


@pytest.mark.parametrize("form", ["qdq", "simulation"])
def test_an_attention_without_its_scale_runs_on_integers_at_its_head_size(form):
    """Absent, an Attention's scale is 1/sqrt of the head size, which the declaration's
    sample value (1/4) is not: a scale rescaled from it had made the simulation format wrong
    (relative error 0.32), so such a node ran in float. The declaration now computes it from
    Q's shape (``onnx_defaults``), and the node runs on integers."""
    assert _attention_error(_attention_model(None), form) < 0.03


def _bare_attention(q_shape: list, attrs: dict, stated: list | None = None) -> onnx.ModelProto:
    """An ONNX Attention (opset 23) without a scale over Relu(x) as Q and the inputs k and v
    (Q's shape ``q_shape``, K's and V's the same but for a last axis of the head size 8 (4-D)
    or 16 (3-D)); ``stated``: a shape the file states for Q, which onnxruntime does not hold
    the model to."""
    kv = [*q_shape[:-1], 8 if len(q_shape) == 4 else 16]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, q_shape)]
    inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, kv) for name in "kv"]
    nodes = [helper.make_node("Relu", ["x"], ["q"]),
             helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attention", **attrs)]
    graph = helper.make_graph(
        nodes, "bare", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        value_info=[helper.make_tensor_value_info("q", TensorProto.FLOAT, stated)]
        if stated else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def _attention_feeds(shape: tuple, count: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: 2 * rng.normal(size=(count, *shape)).astype(np.float32) for name in "xkv"}


@pytest.mark.parametrize(("q_shape", "attrs", "shape"), [
    (["b", 2, 3, 8], {}, (2, 3, 8)),  # (batch, heads, length, head size 8)
    (["b", 3, 16], {"q_num_heads": 2, "kv_num_heads": 2}, (3, 16)),  # 16 wide over 2 heads
])
def test_an_attention_without_a_scale_writes_1_over_sqrt_of_q_s_head_size(q_shape, attrs,
                                                                          shape):
    """The head size comes from Q's shape (4-D: its last axis; 3-D: its width over
    q_num_heads), both 8 here (1/sqrt(8) is no power of 2: the float32 value onnxruntime
    uses); the written node holds that scale explicitly, rescaled to the codes, and its
    output codes are the simulation's, close to the float model."""
    model = _bare_attention(q_shape, attrs)
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, _attention_feeds(shape, 32, 1),
                                          progress=False), 8)
    record = next(r for r in quantized.records if r.op_type == "Attention")
    assert record.kind != "compensated", record
    test = _attention_feeds(shape, 16, 2)
    reference = ort.InferenceSession(model.SerializeToString()).run(None, test)[0]
    simulated = quantized.run(test)["y"]
    scale = np.asarray(quantized.output_scales["y"])
    for form in ("simulation", "integer"):
        written = quantized.to_onnx(form)
        node = next(n for n in written.graph.node if n.op_type == "Attention")
        assert "scale" in {a.name for a in node.attribute}, form
        exported = ort.InferenceSession(written.SerializeToString()).run(None, test)[0]
        assert np.max(np.abs(exported - simulated) * scale) <= 0.5, form  # the same codes
    assert relative_error(reference, simulated) < 0.03


@pytest.mark.parametrize("stated", [None, ["b", 2, 3, 4]])
def test_an_attention_whose_head_size_is_unknown_runs_in_float_and_says_why(stated):
    """Where ONNX inference does not tell Q's head size (a symbolic last axis), the scale
    is unknown and the node runs in float, saying why. A head size the file states for Q
    (4, where the model computes 8) is not taken: onnxruntime runs the model on 8 (1/sqrt(4)
    had been written: 21 dB against 38)."""
    model = _bare_attention(["b", 2, 3, "d"], {}, stated)
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, _attention_feeds((2, 3, 8), 32, 1),
                                          progress=False), 8)
    record = next(r for r in quantized.records if r.op_type == "Attention")
    assert record.kind == "compensated" and "no default in the ONNX schema" in record.why
    test = _attention_feeds((2, 3, 8), 16, 2)
    reference = ort.InferenceSession(model.SerializeToString()).run(None, test)[0]
    written = ort.InferenceSession(quantized.to_onnx().SerializeToString()).run(None, test)[0]
    assert relative_error(reference, written) < 0.03


@pytest.mark.parametrize("magnitude", [1e-23, 1e25])
def test_a_parameter_beyond_float32_at_the_codes_scale_runs_in_float(magnitude):
    """A LayerNorm's epsilon rescales with the square of its input's scale: activations near
    1e-22 put it at inf in float32 (every output 0), near 1e26 at 0 (a row of zeros then
    divides 0 by 0). Seen in a new-user trial (SAM's vision encoder with Hugging Face's own
    initialisation). The node runs in float on its dequantized input instead."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["input", "w"], ["m"], name="mm"),
             helper.make_node("LayerNormalization", ["m", "g", "b"], ["y"], axis=-1,
                              epsilon=1e-6, name="ln")]
    weights = [numpy_helper.from_array(value.astype(np.float32), name) for name, value in (
        ("w", rng.standard_normal((16, 16)) * magnitude), ("g", np.ones(16)),
        ("b", np.zeros(16)))]
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])], weights),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = prepare(graph_from_onnx(model))
    data = rng.standard_normal((48, 16)).astype(np.float32)
    quantized = quantize(graph, calibrate(graph, {"input": data}, progress=False), 8,
                         per_channel=False, wide_sums=False)
    (record,) = [r for r in quantized.records if r.name == "ln"]
    assert "float32's range" in record.note
    test = np.concatenate([data[:8], np.zeros((1, 16), np.float32)])
    reference = run_graph(graph, {"input": test}, OperatorTable())["y"]
    assert relative_error(quantized.run({"input": test})["y"], reference) < 0.05


def _two_level_top_k() -> onnx.ModelProto:
    """A detector's head over two levels: each level's Gemm -> Sigmoid scores (the second at a
    finer range, so the two levels' codes have different scales), the levels' scores joined
    by a Concat, and a TopK of them: positions and values are the outputs."""
    rng = np.random.default_rng(3)
    weights = [numpy_helper.from_array((rng.standard_normal((64, 24)) * s).astype(np.float32),
                                       f"w{i}") for i, s in enumerate((0.05, 0.02))]
    nodes = [helper.make_node("Gemm", ["input", "w0"], ["g0"], name="head0"),
             helper.make_node("Sigmoid", ["g0"], ["s0"], name="sig0"),
             helper.make_node("Gemm", ["input", "w1"], ["g1"], name="head1"),
             helper.make_node("Sigmoid", ["g1"], ["s1"], name="sig1"),
             helper.make_node("Concat", ["s0", "s1"], ["scores"], name="levels", axis=1),
             helper.make_node("TopK", ["scores", "k"], ["values", "positions"], name="top")]
    graph = helper.make_graph(
        nodes, "two_level_top_k",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("positions", TensorProto.INT64, ["n", 8]),
         helper.make_tensor_value_info("values", TensorProto.FLOAT, ["n", 8])],
        [*weights, numpy_helper.from_array(np.array([8], np.int64), "k")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_top_k_over_a_concat_of_levels_reads_them_finely():
    """A trial's two-level detection head: its TopK read the Concat of the levels' scores
    as 8-bit codes (a Concat is a selection of several inputs, which had no 16-bit codes
    made again), ties among the top reordering the boxes gathered by its positions. The
    Concat runs again on the levels' 16-bit codes, brought to one scale: at 6 bits the
    positions match the float model's 76% of the time (55% before). Held wide, as a TopK's
    values output takes it, the Concat had been taken for exact integers: the TopK read
    its n-bit codes with no note."""
    model = _two_level_top_k()
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, models.digits(150), progress=False), 6)
    test = models.digits(60, offset=500)
    reference = run_graph(graph, {"input": test}, OperatorTable())["positions"]
    for form in ("qdq", "integer", "simulation"):
        session = ort.InferenceSession(quantized.to_onnx(form).SerializeToString())
        positions = session.run(["positions"], {"input": test})[0]
        assert np.mean(positions == reference) > 0.68, form
    assert [note for note in quantized.notes if "input scores held at 16 bits" in note]


def test_an_equal_of_codes_and_constants_holds_where_the_values_are_equal():
    """hummingbird-ml writes a random forest as Equal(path counts, each leaf's count): an
    activation and a constant compared for equality. The constant had been brought to 16x the
    activation's scale (a sum's headroom), where a value equal to the activation's took
    another code than the activation's codes times 16, and at the activation's scale it was
    rounded in float64 where the activation's step is float32 (3 at 32767/6 lies on a tie):
    Equal failed at most matches (0.5 dB, 53% of the labels). A comparison's inputs now meet
    on the activation's grid, the constant rounded as the step rounds."""
    values = np.array([0, 1, 2, 3, 4, 5, 6, -3], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Equal", ["input", "leaves"], ["hit"], name="equal")], "equal",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("hit", TensorProto.BOOL, ["batch", 8])],
        [numpy_helper.from_array(values, "leaves")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    data = rng.integers(-6, 7, size=(200, 8)).astype(np.float32)
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, data[:150], progress=False), 8)
    test = data[150:]
    reference = test == values
    assert np.array_equal(quantized.run(test)["hit"], reference)
    session = ort.InferenceSession(quantized.to_onnx("integer").SerializeToString())
    assert np.array_equal(session.run(None, {"input": test})[0], reference)
