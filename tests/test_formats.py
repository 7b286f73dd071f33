"""Output formats: every format of the one plan runs in onnxruntime and matches the plan's
simulation (the qdq form to within onnxruntime's own requantization rounding)."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ptq_verify.engine import calibrate, load_model, prepare, quantize, sqnr_db
from ptq_verify.engine.lower import DEFAULT_ENCODING, ENCODINGS
from ptq_verify.engine.lower.kernel_probe import encoding_error, saturates_here
from ptq_verify.engine.probe import mean_count
from ptq_verify.engine.steps import ScaleStep
from ptq_verify.errors import UserError
from ptq_verify.graph import OperatorTable, activation_tensors, graph_from_onnx, run_graph

ALL = {**models.TOPOLOGIES, **models.TRICKY}
BITS = (4, 6, 8)


@functools.cache
def _quantized(name: str, bits: int):
    """(model, test inputs, float logits), made once per model and width for all tests."""
    build, image = ALL[name]
    graph = prepare(graph_from_onnx(build()))
    calibration = calibrate(graph, models.digits(150, image), progress=False)
    test = models.digits(60, image, offset=500)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    try:
        model = quantize(graph, calibration, bits)
    except UserError:  # refused with a reason (a divisor near 0 at 4 bits): nothing to export
        return None, test, reference
    return model, test, reference


def _session(proto: onnx.ModelProto, optimized: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()  # default optimizations, as a user gets them
    options.log_severity_level = 3
    if optimized:
        options.optimized_model_filepath = optimized
    return ort.InferenceSession(proto.SerializeToString(), options)


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("name", sorted(ALL))
def test_every_format_runs_and_matches_its_simulation(name, bits):
    model, test, reference = _quantized(name, bits)
    if model is None:
        pytest.skip(f"{name} is refused at {bits} bits (a divisor near 0)")
    simulated = model.run(test)["logits"]
    exact = _session(model.to_onnx("simulation")).run(None, {"input": test})[0]
    codes = np.abs(exact - simulated) * model.output_scales["logits"]
    assert codes.max() < 0.5, "the simulation format computes the simulated codes"
    integer = _session(model.to_onnx("integer")).run(None, {"input": test})[0]
    codes = np.abs(integer - simulated) * model.output_scales["logits"]
    assert codes.max() < 0.5, "the integer format computes the simulated codes"
    for encoding in ENCODINGS:
        qdq = _session(model.to_onnx("qdq", encoding=encoding)).run(None, {"input": test})[0]
        if saturates_here(encoding):
            continue  # this CPU's kernels for it are wrong (no VNNI): it only has to run
        # onnxruntime requantizes with its own float32 multipliers: a code may differ by one
        # at a rounding tie, and the difference propagates; the accuracy must not. (Top-1 is
        # measured against the float model: at 6 bits the lopsided GELU codes leave digits
        # whose two best logits are 0.1-20% of the median margin apart, which flip either way.)
        assert abs(sqnr_db(reference, qdq) - sqnr_db(reference, simulated)) <= 0.5
        assert sqnr_db(simulated, qdq) > 25
        top = reference.argmax(1)
        assert np.mean(qdq.argmax(1) == top) >= np.mean(simulated.argmax(1) == top) - 0.05


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_node_written_has_a_name_of_its_own_that_says_its_layer(name):
    """onnxruntime's errors and profiles and viewers name a node by its name: the integer
    format's ConvInteger for conv1 must say conv1, and no two nodes may share one."""
    model, _, _ = _quantized(name, 8)
    layers = {node.name for node in model.graph.nodes}
    for form in ("simulation", "qdq", "integer"):
        nodes = model.to_onnx(form).graph.node
        names = [node.name for node in nodes]
        assert all(names) and len(set(names)) == len(names), form
        products = [node for node in nodes if node.op_type in ("ConvInteger", "MatMulInteger")]
        assert all(node.name.split(":")[0] in layers for node in products), form


@pytest.mark.parametrize("naming", ["after_outputs", "unnamed"])
def test_nodes_named_after_their_outputs_or_unnamed_are_written_with_names_of_their_own(naming):
    """Some converters name a node after its output: the integer format's last step, which
    writes that output, must not take the name of the node it computes."""
    source = models.TOPOLOGIES["mlp_relu"][0]()
    for node in source.graph.node:
        node.name = node.output[0] if naming == "after_outputs" else ""
    graph = prepare(graph_from_onnx(source))
    model = quantize(graph, calibrate(graph, models.digits(40, False), progress=False), 8)
    for form in ("simulation", "qdq", "integer"):
        written = [node.name for node in model.to_onnx(form).graph.node]
        assert all(written) and len(set(written)) == len(written), form


@pytest.mark.parametrize("name", ["cnn", "mlp_relu", "cnn_sigmoid", "residual",
                                  "squeeze_excite"])
def test_qdq_runs_on_integer_kernels_at_8_bits(name, tmp_path):
    """In the default encoding every product and aligned sum fuses into an integer kernel, a
    tensor read by two ops (a residual's skip, a gate's input) included."""
    model, test, _ = _quantized(name, 8)
    proto = model.to_onnx("qdq")
    scales = {node.input[1] for node in proto.graph.node
              if node.op_type in ("QuantizeLinear", "DequantizeLinear")}
    floats = {init.name for init in proto.graph.initializer
              if init.data_type == onnx.TensorProto.FLOAT}
    assert floats <= scales, "every parameter but the scales is stored as integers"
    optimized = tmp_path / "optimized.onnx"
    _session(proto, str(optimized))
    ops = {node.op_type for node in onnx.load(optimized).graph.node}
    assert not ops & {"Conv", "Gemm", "MatMul", "Add"}, f"float ops left: {sorted(ops)}"
    assert ops & {"QLinearConv", "QGemm", "MatMulIntegerToFloat", "QLinearMatMul"}


def test_qdq_weights_are_per_channel_where_the_engine_chose_it():
    model, _, _ = _quantized("cnn", 8)
    proto = model.to_onnx("qdq")
    axes = [a.i for node in proto.graph.node if node.op_type == "DequantizeLinear"
            for a in node.attribute if a.name == "axis"]
    assert axes, "per-channel weights need an axis on their DequantizeLinear"


def test_the_format_help_names_the_weights_container_the_default_encoding_writes(capsys):
    """A newcomer trial: `quantize --help` said qdq writes int8 weights; the default encoding
    (u8u8) writes uint8 ones, as the README says."""
    from ptq_verify.cli import main

    model, _, _ = _quantized("cnn", 8)
    proto = model.to_onnx("qdq")
    weights = {i.name: i.data_type for i in proto.graph.initializer}
    read = [weights[node.input[0]] for node in proto.graph.node
            if node.op_type == "DequantizeLinear" and node.input[0] in weights]
    assert DEFAULT_ENCODING == "u8u8" and onnx.TensorProto.UINT8 in read
    assert onnx.TensorProto.INT8 not in read
    assert main(["quantize", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "8-bit weights (uint8 by default, int8 by --encoding)" in help_text
    assert "int8 weights" not in help_text


def test_qdq_refuses_more_than_8_bits():
    model = dataclasses.replace(_quantized("mlp_relu", 4)[0], bits=12)
    with pytest.raises(UserError, match="8-bit containers"):
        model.to_onnx("qdq")
    with pytest.raises(UserError, match="format 'float'"):
        model.to_onnx("float")


def _float_nodes(proto: onnx.ModelProto) -> dict[str, str]:
    listed = {entry.key: entry.value for entry in proto.metadata_props}["float_nodes"]
    return dict(item.split(": ", 1) for item in listed.split("; ") if item)


# The ops the integer emitter writes around a listed float node and at the model's boundary
# (dequantize: Cast, Mul; quantize: Mul, Round, Clip, Cast).
BOUNDARY_OPS = {"Cast", "Mul", "Round", "Clip", "Identity"}
FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}


def float_islands(proto: onnx.ModelProto, listed: set[str]) -> list[str]:
    """Nodes outside ``listed`` that compute on a float activation without being part of the
    quantization at the model's inputs and outputs or around a listed node."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    constants = {init.name for init in proto.graph.initializer}
    nodes = list(proto.graph.node)
    floating = [n for n in nodes if n.name not in listed and any(
        i and i not in constants and types.get(i) in FLOATS for i in n.input)]
    anchors = {i.name for i in proto.graph.input} | {o.name for o in proto.graph.output}
    for node in nodes:
        if node.name in listed:
            anchors.update(node.input)
            anchors.update(node.output)
    bad = [n.name for n in floating if n.op_type not in BOUNDARY_OPS]
    # every float chain must reach an anchor through float tensors
    reach = set(anchors)
    while True:
        grown = reach | {t for n in floating if (set(n.input) | set(n.output)) & reach
                         for t in (*n.input, *n.output)
                         if types.get(t) in FLOATS and t not in constants}
        if grown == reach:
            break
        reach = grown
    return bad + [n.name for n in floating if not (set(n.input) | set(n.output)) & reach]


@pytest.mark.parametrize("name", sorted(ALL))
def test_integer_format_computes_on_floats_only_where_it_says(name):
    model, _, _ = _quantized(name, 8)
    proto = model.to_onnx("integer")
    listed = _float_nodes(proto)
    assert not float_islands(proto, set(listed))
    compensated = {r.name for r in model.records if r.action.startswith("compensate")}
    for node in compensated - set(listed):  # a compensated node not listed is a table
        assert node not in {n.name for n in proto.graph.node}


def test_the_float_island_check_can_fail():
    model, _, _ = _quantized("cnn_sigmoid", 8)
    proto = model.to_onnx("integer")
    assert float_islands(proto, set()) == [], "cnn_sigmoid is integer-only"
    simulation = model.to_onnx("simulation")
    assert float_islands(simulation, set()), "the simulation format computes in float"


@pytest.mark.parametrize("name", ["mlp_sigmoid", "mlp_tanh", "cnn_sigmoid", "gelu_decomposed",
                                  "sigmoid_last", "squeeze_excite"])
def test_compensated_unary_nodes_become_tables(name):
    model, _, _ = _quantized(name, 8)
    proto = model.to_onnx("integer")
    listed = _float_nodes(proto)
    tables = [n for n in proto.graph.node if n.op_type == "Gather"]
    unary = [r for r in model.records if r.action.startswith("compensate")
             and r.name not in listed]
    assert unary and len(tables) == len(unary)


@pytest.mark.parametrize(("argv", "kind"), [
    ([], "qdq"), (["--format", "integer"], "integer"), (["--format", "simulation"], "simulation"),
    (["--format", "qdq", "--encoding", "u8u8"], "qdq")])
def test_cli_writes_the_chosen_format(tmp_path, capsys, argv, kind):
    from ptq_verify.cli import main

    model, calib, out = tmp_path / "m.onnx", tmp_path / "c.npy", tmp_path / "q.onnx"
    onnx.save(models.softmax_middle(), model)
    np.save(calib, models.digits(40))
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--no-progress", *argv]) == 0
    printed = capsys.readouterr().out
    written = onnx.load(out)
    assert f"({kind})" in written.doc_string and f"8-bit {kind}," in printed
    if kind == "integer":
        assert "nodes left in float: softmax1: compensated" in printed


def test_the_default_encoding_is_exact_on_this_cpu():
    """On an x86 CPU without VNNI onnxruntime's u8 x s8 kernels saturate at 16 bits (the
    probe measures 4,096,384 off on an AMD EPYC); the default must be exact on every CPU."""
    assert encoding_error(DEFAULT_ENCODING) == 0


@pytest.mark.parametrize("saturating", [True, False])
def test_cli_says_when_the_chosen_encoding_saturates_on_this_cpu(tmp_path, capsys,
                                                                 monkeypatch, saturating):
    from ptq_verify.cli import main
    from ptq_verify.engine.lower import kernel_probe

    monkeypatch.setattr(kernel_probe, "saturates_here", lambda encoding: saturating)
    model, calib, out = tmp_path / "m.onnx", tmp_path / "c.npy", tmp_path / "q.onnx"
    onnx.save(models.softmax_middle(), model)
    np.save(calib, models.digits(40))
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--no-progress", "--encoding", "u8s8"]) == 0
    said = "--encoding u8s8: this CPU's onnxruntime saturates" in capsys.readouterr().out
    assert said == saturating


@pytest.mark.parametrize(("argv", "message"), [
    (["--format", "float"], "format 'float': choose one of"),
    (["--bits", "12"], "8-bit containers"),
    (["--encoding", "u4u4"], "encoding 'u4u4'"),
    (["--format", "integer", "--encoding", "s8s8"], "applies to --format qdq only")])
def test_cli_refuses_a_format_it_cannot_write(tmp_path, capsys, argv, message):
    from ptq_verify.cli import main

    model, calib, out = tmp_path / "m.onnx", tmp_path / "c.npy", tmp_path / "q.onnx"
    onnx.save(models.mlp("Relu"), model)
    np.save(calib, models.digits(40))
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--no-progress", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("first", ["Relu", "Max"])
def test_integer_min_bound_above_the_calibrated_range_is_not_wrapped(first):
    """Relu -> Min(x, 6) on unsigned codes: the bound's code (above 255 when the activations
    stay below 6) must not be cast to uint8 with wrap-around; the integer model equals the
    simulation."""
    b = models.Builder(30, image=True)
    h = b.conv("input", 1, 4)
    h = b.add(first, [h] + ([b.const(np.float32(0))] if first == "Max" else []))
    h = b.add("Min", [h, b.const(np.float32(6))])
    h = b.add("Relu", [b.conv(h, 4, 4)])
    graph = prepare(graph_from_onnx(b.model(b.dense(b.flatten(h), 256, 10))))
    model = quantize(graph, calibrate(graph, models.digits(100, True), progress=False), 8,
                     per_channel=False)
    test = models.digits(20, True, offset=500)
    session = ort.InferenceSession(model.to_onnx("integer").SerializeToString())
    np.testing.assert_array_equal(session.run(None, {"input": test})[0],
                                  model.run({"input": test})["logits"])


def test_integer_comparison_with_a_constant_bound_reads_one_type():
    """A new-user trial: Mamba's softplus compares an activation with a constant threshold
    (Greater(x, 20), then Where). The comparison makes a mask, no codes, so it ran on the
    activation's integer codes with the bound left float32 on the codes' grid: onnxruntime
    refused the integer file (Greater bound to int32 and float), an internal error."""
    b = models.Builder(31)
    h = b.dense("input", 64, 16)
    mask = b.add("Greater", [h, b.const(np.float32(0.5))])
    h = b.add("Where", [mask, h, b.add("Relu", [h])])
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 16, 10))))
    model = quantize(graph, calibrate(graph, models.digits(100), progress=False), 8)
    test = models.digits(20, offset=500)
    session = ort.InferenceSession(model.to_onnx("integer").SerializeToString())
    codes = np.abs(session.run(None, {"input": test})[0] - model.run({"input": test})["logits"])
    assert (codes * model.output_scales["logits"]).max() < 0.5


def test_codes_reaching_the_float32_maximum_dequantize_to_finite_values():
    """A new-user trial: CANINE's additive attention mask holds finfo(float32).min, so its
    127 signed codes had a factor 1/scale that float32 rounds up, and the extreme code times
    it overflowed to -inf: the Softmax after it computed NaN in the simulation (numpy and
    --format simulation, which quantize then refused as overflowing), where the float model
    is finite."""
    b = models.Builder(32)
    h = b.add("Clip", [b.dense("input", 64, 16), b.const(np.float32(-1)), b.const(np.float32(1))])
    h = b.add("Mul", [h, b.const(np.finfo(np.float32).max)])
    graph = prepare(graph_from_onnx(b.model(b.dense(b.add("Softmax", [h], axis=-1), 16, 10))))
    model = quantize(graph, calibrate(graph, models.digits(100), progress=False), 8)
    test = models.digits(20, offset=500)
    assert np.isfinite(model.run({"input": test})["logits"]).all()
    for form in ("simulation", "integer", "qdq"):
        output = _session(model.to_onnx(form)).run(None, {"input": test})[0]
        assert np.isfinite(output).all(), form


@pytest.mark.parametrize("per_channel", [True, False])
def test_a_weight_on_the_left_of_a_matmul_runs_in_every_encoding(per_channel):
    """MatMul(W, x) + b with W constant (a Mamba's and a DETR's exports have it): onnxruntime
    fused the DequantizeLinear of its uint8 per-channel weights (u8u8) and the MatMul, whose
    wide output has no QuantizeLinear, into a MatMulIntegerToFloat that failed at run time
    ("input a zero point must be a scalar"); such a weight stays int8, a per-tensor one (a
    scalar zero point) takes the encoding's type, and every encoding runs and keeps the
    simulation's accuracy."""
    from onnx import TensorProto, helper, numpy_helper

    from ptq_verify.graph import graph_from_onnx

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(32, 16)).astype(np.float32)
    weight[3] *= 20  # rows far apart: per-channel scales
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["W", "t"], ["y"], name="left"),
             helper.make_node("Add", ["y", "b"], ["z"], name="bias"),  # takes it wide
             helper.make_node("Relu", ["z"], ["logits"], name="relu")]
    graph = helper.make_graph(
        nodes, "left_weight", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["n", 8, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 32, 8])],
        [numpy_helper.from_array(weight, "W"),
         numpy_helper.from_array(rng.normal(size=(32, 1)).astype(np.float32), "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = prepare(graph_from_onnx(proto))
    data = {"x": rng.normal(size=(64, 8, 16)).astype(np.float32)}
    quantized = quantize(model, calibrate(model, data, progress=False), 8,
                         per_channel=per_channel)
    test = {"x": rng.normal(size=(16, 8, 16)).astype(np.float32)}
    simulated = quantized.run(test)["logits"]
    for encoding in ENCODINGS:
        got = _session(quantized.to_onnx("qdq", encoding=encoding)).run(None, test)[0]
        if not saturates_here(encoding):
            assert sqnr_db(simulated, got) > 30, encoding


def test_a_constant_on_the_left_of_a_mul_fuses_with_its_activation(tmp_path):
    """Mul(0.5, x), the constant first (a dynamo export's GELU writes it so): its one scale
    was held int8 beside uint8 activation codes, like a per-channel MatMul(W, x) weight, and
    onnxruntime, whose QLinearMul takes two inputs of one type, left the Mul in float between
    a DequantizeLinear and a QuantizeLinear. A per-tensor constant takes the encoding's type:
    the Mul fuses, and the file still runs in every encoding with the simulation's accuracy."""
    b = models.Builder()
    h = b.add("Relu", [b.dense("input", 64, 32)])
    h = b.add("Mul", [b.const(np.float32(0.5)), h])
    graph = prepare(graph_from_onnx(b.model(b.dense(h, 32, 10))))
    model = quantize(graph, calibrate(graph, models.digits(100), progress=False), 8)
    test = models.digits(20, offset=500)
    optimized = tmp_path / "optimized.onnx"
    _session(model.to_onnx("qdq"), str(optimized))
    ops = [node.op_type for node in onnx.load(optimized).graph.node]
    assert "Mul" not in ops and "QLinearMul" in ops, f"ops: {ops}"
    simulated = model.run({"input": test})["logits"]
    for encoding in ENCODINGS:
        got = _session(model.to_onnx("qdq", encoding=encoding)).run(None, {"input": test})[0]
        if not saturates_here(encoding):
            assert sqnr_db(simulated, got) > 30, encoding


@pytest.mark.parametrize("format", ["qdq", "integer", "simulation"])
def test_integer_outputs_carry_their_scales_in_every_format(format):
    """--integer-outputs writes codes; ``scale:<output>`` in the metadata turns them back into
    values (code / scale), whatever the format (on a real torch export of the digits CNN)."""
    fixtures = Path(__file__).parent / "fixtures" / "torch"
    graph = load_model(str(fixtures / "digits_cnn.legacy.opset17.onnx"))
    with np.load(fixtures / "digits_image.calib.npz") as archive:
        data = {key: archive[key] for key in archive}
    with np.load(fixtures / "digits_image.test.npz") as archive:
        test = {key: archive[key] for key in archive}
    model = quantize(graph, calibrate(graph, data, progress=False), 8, integer_outputs=True)
    proto = model.to_onnx(format)
    scales = {p.key: p.value for p in proto.metadata_props if p.key.startswith("scale:")}
    assert scales.keys() == {f"scale:{name}" for name in graph.output_names}
    reference = run_graph(graph, test, OperatorTable())
    written = dict(zip(graph.output_names, _session(proto).run(None, test)))
    for name in graph.output_names:
        codes = written[name]
        assert np.array_equal(codes, np.round(codes)), "the outputs are codes"
        scale = np.asarray(json.loads(scales[f"scale:{name}"]))
        assert sqnr_db(reference[name], codes / scale) > 25


def _pool_model(kernel: int, stride: int, size: int, include_pad: int,
                pad: int = 0) -> onnx.ModelProto:
    """input (N, 4, size, size) -> AveragePool(ceil_mode=1) -> Flatten -> Gemm, as torch
    exports nn.AvgPool2d(kernel, stride, pad, ceil_mode=True) (a Hugging Face EfficientNet's
    pooler: its hidden size as the kernel, on a 1 x 1
    map)."""
    rng = np.random.default_rng(kernel * 100 + stride * 10 + size)
    out = -(-max(size + 2 * pad - kernel, 0) // stride) + 1
    if (out - 1) * stride >= size + pad:  # no window starts in the end padding
        out -= 1
    pads = {"pads": [pad] * 4} if pad else {}
    pool = onnx.helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[kernel] * 2,
                                 strides=[stride] * 2, ceil_mode=1,
                                 count_include_pad=include_pad, **pads)
    return _pooled_classifier(pool, size, out, rng.standard_normal((10, 4 * out * out)) / 4, 17)


def _pooled_classifier(pool: onnx.NodeProto, size: int, out: int, weight: np.ndarray,
                       opset: int) -> onnx.ModelProto:
    """input (N, 4, size, size) -> ``pool`` (to ``p``, out x out) -> Flatten -> Gemm by
    ``weight`` (10 logits)."""
    nodes = [pool, onnx.helper.make_node("Flatten", ["p"], ["f"]),
             onnx.helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1)]
    weights = [onnx.numpy_helper.from_array(value.astype(np.float32), name)
               for name, value in (("w", weight), ("b", np.zeros(10)))]
    graph = onnx.helper.make_graph(
        nodes, "pool", [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                           ["N", 4, size, size])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 10])],
        weights)
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])


@pytest.mark.parametrize(("kernel", "stride", "size"), [(3, 3, 4), (2, 2, 7), (5, 5, 1),
                                                        (3, 2, 6)])
def test_an_average_pool_past_the_input_is_written_so_its_fused_kernel_is_right(
        kernel, stride, size):
    """onnxruntime fuses DQ -> AveragePool -> Q into QLinearAveragePool, which under
    count_include_pad=1 divides a ceil_mode window that runs past the input by the whole
    kernel (a new-user trial: 2.9 dB in a default session, 42 dB with optimizations off).
    With no pads both settings are one function in onnxruntime's float kernel, so the qdq
    file writes count_include_pad=0, which the fused kernel computes right."""
    rng = np.random.default_rng(0)
    data = np.abs(rng.standard_normal((48, 4, size, size))).astype(np.float32)
    model = _pool_model(kernel, stride, size, include_pad=1)
    floats = [_session(_pool_model(kernel, stride, size, flag)).run(None, {"input": data})[0]
              for flag in (1, 0)]
    np.testing.assert_allclose(*floats, rtol=1e-5, atol=1e-6)  # the sums' order may differ
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, {"input": data}, progress=False), 8)
    simulated = quantized.run({"input": data})["logits"]
    qdq = _session(quantized.to_onnx("qdq")).run(None, {"input": data})[0]
    assert sqnr_db(simulated, qdq) > 30


def _one_pool(size: int, kernel: int, stride: int, begin: int, end: int,
              explicit: bool) -> ort.InferenceSession:
    """x (1, 2, size) -> AveragePool(ceil_mode=1, count_include_pad=1, pads) in onnxruntime's
    float kernel, or (``explicit``) Pad by zeros -> AveragePool(count_include_pad=0)."""
    helper = onnx.helper
    pool = dict(kernel_shape=[kernel], strides=[stride], ceil_mode=1)
    if explicit:
        nodes = [helper.make_node("Pad", ["x", "pads"], ["padded"]),
                 helper.make_node("AveragePool", ["padded"], ["y"], count_include_pad=0, **pool)]
        inits = [onnx.numpy_helper.from_array(np.array([0, 0, begin, 0, 0, end]), "pads")]
    else:
        nodes = [helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=1,
                                  pads=[begin, end], **pool)]
        inits = []
    graph = helper.make_graph(
        nodes, "pool", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, size])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return _session(model)


def test_a_padded_average_pool_is_written_as_pad_then_pool_only_where_that_is_its_function():
    """qdq.py writes AveragePool(pads, ceil_mode=1, count_include_pad=1) as a Pad by zeros
    then AveragePool(count_include_pad=0) where pads_end + stride <= kernel (_pads_to_write):
    there the two agree in onnxruntime's float kernel, shapes and values, on every size
    tried; elsewhere the explicit Pad can add a window that starts in the end padding, which
    onnxruntime drops, and the node must be written as it is."""
    from ptq_verify.engine.lower.qdq import _pads_to_write
    from ptq_verify.graph import Node

    rng = np.random.default_rng(0)
    differ = 0
    for kernel in range(1, 5):
        for stride in range(1, 4):
            for begin in range(kernel):
                for end in range(kernel):
                    if not begin + end:
                        continue
                    node = Node("pool", "AveragePool", ["x"], ["y"], {
                        "kernel_shape": [kernel], "strides": [stride], "pads": [begin, end],
                        "ceil_mode": 1, "count_include_pad": 1})
                    rewritten = _pads_to_write(node) is not None
                    for size in range(max(kernel - begin - end, 1), 10):
                        x = rng.standard_normal((1, 2, size)).astype(np.float32)
                        got = [_one_pool(size, kernel, stride, begin, end, explicit).run(
                            None, {"x": x})[0] for explicit in (False, True)]
                        same = got[0].shape == got[1].shape and np.allclose(*got, atol=1e-6)
                        assert same or not rewritten, (kernel, stride, begin, end, size)
                        differ += not same
    assert differ  # the condition is needed


@pytest.mark.parametrize(("kernel", "stride", "size", "pad"), [(3, 2, 8, 1), (3, 2, 6, 1),
                                                               (4, 2, 7, 1), (5, 3, 9, 2)])
def test_a_padded_average_pool_past_the_padding_computes_right_in_a_default_session(
        kernel, stride, size, pad, tmp_path):
    """torch's AvgPool2d(3, 2, padding=1, ceil_mode=True) (count_include_pad=True): onnxruntime
    fuses DQ -> AveragePool -> Q into QLinearAveragePool, which divided the last window, that
    runs past the padding, by the whole kernel (a new-user trial: 28.8 dB in a default session
    against 46.5 with optimizations off, no word said). The qdq file now pads explicitly and
    pools with count_include_pad=0: the simulation's codes in a default session, and the
    fused kernel runs (QLinearAveragePool in the optimized graph)."""
    rng = np.random.default_rng(1)
    data = np.abs(rng.standard_normal((48, 4, size, size))).astype(np.float32)
    model = _pool_model(kernel, stride, size, include_pad=1, pad=pad)
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, {"input": data}, progress=False), 8)
    simulated = quantized.run({"input": data})["logits"]
    proto = quantized.to_onnx("qdq")
    assert "fused_wrong" not in {p.key for p in proto.metadata_props}  # qdq.FUSED_WRONG
    optimized = str(tmp_path / "optimized.onnx")
    qdq = _session(proto, optimized).run(None, {"input": data})[0]
    assert sqnr_db(simulated, qdq) > 40
    assert "QLinearAveragePool" in {n.op_type for n in onnx.load(optimized).graph.node}


def test_a_padded_average_pool_no_spelling_keeps_is_named_in_a_note(tmp_path, capsys):
    """AvgPool2d(3, 3, padding=1, ceil_mode=True) on 6 x 6: the explicit Pad would add a
    window onnxruntime drops, so the node is written as it is, and the summary says that a
    default session computes it wrong and which formats compute it right."""
    from ptq_verify.cli import main

    source, out, calib = tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "c.npy"
    model = _pool_model(3, 3, 6, include_pad=1, pad=1)
    model.graph.node[0].name = "pool"
    onnx.save(model, source)
    np.save(calib, np.abs(np.random.default_rng(2).standard_normal((32, 4, 6, 6)))
            .astype(np.float32))
    assert main(["quantize", str(source), "--calib", str(calib), "-o", str(out),
                 "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines()
             if "AveragePool 'pool' wrong" in line]
    assert len(notes) == 1 and "--format simulation and integer" in notes[0]


@pytest.mark.parametrize("dilation", [1, 2])
def test_a_dilated_average_pool_loads_in_a_default_session(dilation, tmp_path):
    """AveragePool with ``dilations`` (opset 19), even all 1 as some exporters write every
    attribute: onnxruntime (1.32) fused DQ -> AveragePool -> Q into QLinearAveragePool, which
    has no such attribute, and refused to load the file (exit 3; a hunt for attribute forms).
    Dilations of 1 are dropped, so the fused kernel runs; wider ones keep the node apart from
    its QuantizeLinear, and the qdq file computes the simulation's codes."""
    size = 9
    out = size - 2 * dilation  # kernel 3, stride 1, no pads
    rng = np.random.default_rng(dilation)
    pool = onnx.helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[3, 3],
                                 dilations=[dilation] * 2)
    model = _pooled_classifier(pool, size, out, rng.standard_normal((10, 4 * out * out)) / 8, 19)
    data = rng.standard_normal((48, 4, size, size)).astype(np.float32)
    graph = prepare(graph_from_onnx(model))
    quantized = quantize(graph, calibrate(graph, {"input": data}, progress=False), 8)
    simulated = quantized.run({"input": data})["logits"]
    optimized = str(tmp_path / "optimized.onnx")
    qdq = _session(quantized.to_onnx("qdq"), optimized).run(None, {"input": data})[0]
    assert sqnr_db(simulated, qdq) > 40
    fused = "QLinearAveragePool" in {n.op_type for n in onnx.load(optimized).graph.node}
    assert fused == (dilation == 1)


def test_a_matmul_by_a_batch_of_weight_matrices_runs_in_every_encoding():
    """MatMul(x, W) with W constant of rank 3 (a batch of matrices, one per head) and
    per-channel scales, its product an output: onnxruntime (1.32) fused the per-axis
    DequantizeLinear of W and the MatMul into a MatMulIntegerToFloat that failed at run time
    ("IsBQuantParamSupported"; exit 3 before the file was written). Such a weight is now the
    codes at scale 1 times its scales, and every encoding computes the simulation."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 8, 6)).astype(np.float32)
    weight[:, :, 2] *= 20  # columns far apart: per-channel scales
    left = rng.normal(size=(1, 4, 3, 8)).astype(np.float32)
    left[:, :, 1] *= 20
    nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"], name="right"),
             helper.make_node("MatMul", ["L", "x"], ["other"], name="left")]
    graph = helper.make_graph(
        nodes, "batched_weight", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                ["n", 4, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4, 8, 6]),
         helper.make_tensor_value_info("other", TensorProto.FLOAT, ["n", 4, 3, 8])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(left, "L")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = prepare(graph_from_onnx(proto))
    data = {"x": rng.normal(size=(64, 4, 8, 8)).astype(np.float32)}
    quantized = quantize(model, calibrate(model, data, progress=False), 8)
    test = {"x": rng.normal(size=(16, 4, 8, 8)).astype(np.float32)}
    simulated = quantized.run(test)
    for encoding in ENCODINGS:
        got = _session(quantized.to_onnx("qdq", encoding=encoding)).run(None, test)
        if not saturates_here(encoding):
            for name, value in zip(("logits", "other"), got):
                assert sqnr_db(simulated[name], value) > 30, (encoding, name)


def _at_opset(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    proto.opset_import[0].version = opset
    return proto


def test_a_model_of_an_opset_without_onnxruntime_qdq_nodes_is_written_at_its_nodes_opset():
    """onnx 1.23 writes opset 28, and onnxruntime 1.32 runs such a model of older nodes
    (Gemm, Relu) but has no QuantizeLinear of opset 28: the qdq file, written at its source's
    opset, had been an internal error (exit 3). It is now written at the newest version its
    source's nodes resolve to, where each keeps its schema, and runs the simulation."""
    proto = _at_opset(models.mlp("Relu"), 28)
    graph = prepare(graph_from_onnx(proto))
    quantized = quantize(graph, calibrate(graph, models.digits(100), progress=False), 8)
    written = quantized.to_onnx("qdq")
    schemas = {n.op_type: onnx.defs.get_schema(n.op_type, 28).since_version
               for n in proto.graph.node}
    assert written.opset_import[0].version == max(schemas.values()) < 28
    test = models.digits(20, offset=500)
    assert sqnr_db(quantized.run({"input": test})["logits"],
                   _session(written).run(None, {"input": test})[0]) > 40


def test_a_node_of_an_opset_without_onnxruntime_qdq_nodes_is_refused_by_name():
    """An Einsum of version 28 keeps the file at opset 28, where onnxruntime 1.32 has no
    QuantizeLinear: one line naming the node and the formats that write it."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["x", "W"], ["y"], name="mix", equation="nd,de->ne")],
        "einsum28", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "W")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 28)])
    model = prepare(graph_from_onnx(proto))
    data = {"x": rng.normal(size=(64, 8)).astype(np.float32)}
    quantized = quantize(model, calibrate(model, data, progress=False), 8)
    _session(quantized.to_onnx("simulation"))
    with pytest.raises(UserError, match=r"opset 28: .*QuantizeLinear.*'mix' \(Einsum\)"):
        quantized.to_onnx("qdq")


@pytest.mark.parametrize("interleaved", [0, 1])
def test_a_rotary_embedding_passes_the_scale_and_runs_in_every_format(interleaved):
    """RotaryEmbedding (opset 23) between two weight layers, its cos and sin caches read at
    an int64 position_ids input: the node had no declaration (refused as undeclared in a
    trial of the newest opsets); now the scale passes through it, and every format stays
    close to the float model in onnxruntime."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    angles = np.arange(16)[:, None] / 10000 ** (np.arange(2) / 2)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="in"),
             helper.make_node("RotaryEmbedding", ["h", "cos", "sin", "ids"], ["r"],
                              name="rope", num_heads=4, interleaved=interleaved),
             helper.make_node("MatMul", ["r", "V"], ["y"], name="out")]
    graph = helper.make_graph(
        nodes, "rope", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 16]),
                        helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, 4])],
        [numpy_helper.from_array(rng.normal(size=(16, 16)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "V"),
         numpy_helper.from_array(np.cos(angles).astype(np.float32), "cos"),
         numpy_helper.from_array(np.sin(angles).astype(np.float32), "sin")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])
    model = prepare(graph_from_onnx(proto))

    def data(count: int) -> dict[str, np.ndarray]:
        ids = np.arange(8)[None] + rng.integers(0, 8, (count, 1))
        return {"x": rng.normal(size=(count, 8, 16)).astype(np.float32), "ids": ids}

    quantized = quantize(model, calibrate(model, data(64), progress=False), 8)
    assert {r.name: r.kind for r in quantized.records}["rope"] != "compensated"
    test = data(16)
    reference = _session(proto).run(None, test)[0]
    assert sqnr_db(reference, quantized.run(test)["y"]) > 30  # the catalog's kernel
    for form in ("qdq", "integer", "simulation"):
        got = _session(quantized.to_onnx(form)).run(None, test)[0]
        assert sqnr_db(reference, got) > 30, form


@pytest.mark.parametrize("form", ["qdq", "integer", "simulation"])
def test_a_float_node_writing_a_graph_output_gives_it_in_float(form):
    """A compensated node no format makes a table of (a LogSoftmax: not element-wise) runs in
    float in every format; its graph output, which nothing reads, is dequantized at once, so
    n-bit codes there only round it. A CRNN's CTC head (LogSoftmax over 11 classes, outputs
    in [-2.57, -2.21]) had been requantized at steps of 0.02 where its top two classes lay
    0.01 apart: 34% frame agreement with the float model (onnxruntime's quantize_static,
    which leaves it in float, 98%)."""
    graph = prepare(graph_from_onnx(models.log_softmax_last()))
    calibration, test = models.digits(128), models.digits(64, offset=128)
    model = quantize(graph, calibrate(graph, calibration, progress=False), 8)
    reference = run_graph(graph, {"input": test}, OperatorTable())["logits"]
    spread = np.ptp(reference)
    written = _session(model.to_onnx(form)).run(None, {"input": test})[0]
    # the 8-bit step of a range that takes 0 in is |min| / 255: too coarse for these classes
    assert np.abs(written - reference).max() < 0.25 * np.abs(reference).max() / 255
    assert np.mean(written.argmax(1) == reference.argmax(1)) >= 0.95, spread


def _between_convs(middle: onnx.NodeProto, size: int, seed: int,
                   extra: tuple = ()) -> onnx.ModelProto:
    """Conv -> ``middle`` (reading c1, writing act; ``extra``: its constants) -> Conv, on
    8x8 images, the output ``size`` x ``size``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    init = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.normal(size=(2, 4, 3, 3)).astype(np.float32), "w2"),
            *extra]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1] * 4),
             middle,
             helper.make_node("Conv", ["act", "w2"], ["out"], name="conv2", pads=[1] * 4)]
    graph = helper.make_graph(
        nodes, "between_convs", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                               ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2, size, size])], init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _upsampling_model() -> onnx.ModelProto:
    """Conv -> nearest Resize by 2 as torch's exporters write it (no roi, float scales,
    cubic_coeff_a=-0.75 beside mode nearest) -> Conv: a UNet's or a VAE decoder's upsampling."""
    from onnx import helper, numpy_helper

    resize = helper.make_node("Resize", ["c1", "", "scales"], ["act"], name="upsample",
                              mode="nearest", coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor", cubic_coeff_a=-0.75)
    return _between_convs(resize, 16, 0,
                          (numpy_helper.from_array(np.float32([1, 1, 2, 2]), "scales"),))


def test_integer_format_runs_a_nearest_upsampling_on_integers():
    """A trial's UNet and VAE decoder (torch, both exporters): in the integer format every
    nearest Resize ran in float, and the Conv after it too ('its input is float'): its
    float attribute cubic_coeff_a, which a copy's values never depend on, was taken for a
    real-valued parameter; its float scales, static layout, were cast to the codes' uint8,
    and the kernel probe put them in the absent roi's place. Both now run on integers."""
    graph = prepare(graph_from_onnx(_upsampling_model()))
    model = quantize(graph, calibrate(graph, models.digits(100, image=True), progress=False), 8)
    proto = model.to_onnx("integer")
    assert "upsample" not in _float_nodes(proto) and "conv2" not in _float_nodes(proto)
    assert not float_islands(proto, set(_float_nodes(proto)))
    assert _integer_against_simulation(model, proto) > 60


def _integer_against_simulation(model, integer: onnx.ModelProto) -> float:
    """The SQNR of the ``integer`` file of ``model`` against its simulation file, both run
    in onnxruntime on 20 digit images no calibration saw."""
    test = models.digits(20, image=True, offset=300)
    got = ort.InferenceSession(integer.SerializeToString()).run(None, {"input": test})[0]
    simulated = ort.InferenceSession(model.to_onnx("simulation").SerializeToString()).run(
        None, {"input": test})[0]
    return sqnr_db(simulated, got)


def _unary_between_convs(op_type: str, **attrs) -> onnx.ModelProto:
    """Conv -> ``op_type`` (one activation, scalar real-valued attributes) -> Conv."""
    from onnx import helper

    return _between_convs(helper.make_node(op_type, ["c1"], ["act"], name="act", **attrs), 8, 1)


@pytest.mark.parametrize(("op_type", "attrs"), [("HardSigmoid", {"alpha": 0.2, "beta": 0.5}),
                                                ("LeakyRelu", {"alpha": 0.1})])
def test_integer_format_makes_a_table_of_a_unary_node_on_codes_with_real_parameters(
        op_type, attrs):
    """A trial's MobileNetV3 squeeze-excite gates (torch, both exporters) with --no-wide-sums:
    each HardSigmoid, rule proved (alpha -> alpha/s) and so run on the codes themselves,
    stayed float in the integer format ('its declaration does not map integers to integers'),
    where a compensated one became a table of codes: the same table applies, its input codes
    fed straight to the node."""
    graph = prepare(graph_from_onnx(_unary_between_convs(op_type, **attrs)))
    data = calibrate(graph, models.digits(100, image=True), progress=False)
    model = quantize(graph, data, 8, wide_sums=False)
    assert not model.records[1].action.startswith("compensate"), "the rule runs on codes"
    proto = model.to_onnx("integer")
    assert "act" not in _float_nodes(proto)
    assert op_type not in {n.op_type for n in proto.graph.node}
    assert not float_islands(proto, set(_float_nodes(proto)))
    test = models.digits(20, image=True, offset=300)
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"input": test})[0]
    simulated = model.run(test)["out"]
    scale = np.asarray(model.output_scales["out"])  # codes per unit: one, or per channel
    scale = scale.reshape(1, -1, 1, 1) if scale.size > 1 else scale
    assert (np.abs(got - simulated) * scale).max() < 0.5, "the simulated codes"


def test_integer_format_makes_a_table_per_channel_of_a_unary_node_on_per_channel_codes():
    """A compensated unary node whose input holds one scale per channel (all-MiniLM-L6-v2's
    GELU Erfs after its smoothed MatMuls' per-channel sums) stayed float in the integer format
    ('per-channel input codes'): one table of codes cannot serve every channel. Each channel
    has its table now, the plan's steps simulated on every code of every channel, a code
    looked up at its channel's offset: no node in float, the file equal to the simulation."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    spread = np.ones((32, 1, 1, 1), np.float32)
    spread[0] = 64  # one loud channel: one scale would leave the others a few codes
    weights = [numpy_helper.from_array(rng.normal(size=(32, 1, 3, 3)).astype(np.float32)
                                       * spread / 64, "w1"),
               numpy_helper.from_array(rng.normal(size=(2, 32, 1, 1)).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1] * 4),
             helper.make_node("Tanh", ["c1"], ["act"], name="act"),
             helper.make_node("Conv", ["act", "w2"], ["out"], name="conv2")]
    proto = helper.make_model(helper.make_graph(
        nodes, "tanh_channels", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                               ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 2, 8, 8])], weights),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = prepare(graph_from_onnx(proto))
    model = quantize(graph, calibrate(graph, models.digits(100, image=True), progress=False), 8,
                     wide_sums=False)
    assert np.ndim(model.codes["c1"].scale), "per-channel codes into the Tanh"
    assert model.records[1].action.startswith("compensate")
    integer = model.to_onnx("integer")
    assert "act" not in _float_nodes(integer) and "Tanh" not in {
        n.op_type for n in integer.graph.node}
    assert not float_islands(integer, set(_float_nodes(integer)))
    assert _integer_against_simulation(model, integer) > 60


@pytest.mark.parametrize("top", [16.5, 15.5])
def test_a_comparison_of_a_selection_with_table_thresholds_is_the_plan_s_in_qdq(top):
    """hummingbird-ml's trees compare a Gather of the input (made again at 16 bits for the
    comparison) with thresholds a Gather selects from a table (8-bit codes), the first
    brought to the second's scale. qdq had written that rounding as none: the selection's
    16-bit codes were not among the codes it knew, and where the aligned codes span more than
    255 (thresholds up to 15.5, inputs up to 16) no 8-bit container holds them. An input equal
    to a threshold then compared above it (30.8 dB held out against 64.4 in the integer
    format); the plan's rounding is written, by QuantizeLinear or in float ops."""
    table = np.array([5.0, 2.5, 9.0, top], np.float32)
    nodes = [
        helper.make_node("Gather", ["input", "order"], ["picked"], name="pick", axis=1),
        helper.make_node("Greater", ["input", "eight"], ["high"], name="split"),
        helper.make_node("Cast", ["high"], ["index"], name="index", to=TensorProto.INT64),
        helper.make_node("Add", ["index", "offset"], ["slot"], name="slot"),
        helper.make_node("Gather", ["table", "slot"], ["threshold"], name="threshold", axis=0),
        helper.make_node("Greater", ["picked", "threshold"], ["logits"], name="compare")]
    graph = helper.make_graph(
        nodes, "trees", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.BOOL, ["N", 4])],
        [onnx.numpy_helper.from_array(np.array([2, 0, 3, 1], np.int64), "order"),
         onnx.numpy_helper.from_array(np.float32(8.0), "eight"),
         onnx.numpy_helper.from_array(np.array([0, 2, 0, 2], np.int64), "offset"),
         onnx.numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    data = np.random.default_rng(0).integers(0, 17, size=(400, 4)).astype(np.float32)
    data[0] = 16
    built = prepare(graph_from_onnx(model))
    quantized = quantize(built, calibrate(built, data[:200], progress=False), 8)
    test = data[200:]
    planned = quantized.run(test)["logits"]
    session = ort.InferenceSession(quantized.to_onnx("qdq").SerializeToString())
    assert np.array_equal(session.run(None, {"input": test})[0], planned)


def _mean_model(op_type: str, opset: int = 17, spatial=(8, 8), **attrs) -> onnx.ModelProto:
    """Conv -> Relu -> a mean over the 8 x 8 positions (``op_type``; ReduceMean's axes an
    input from opset 18) -> Flatten -> Gemm, on digit images."""
    from onnx import numpy_helper

    rng = np.random.default_rng(4)
    weights = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "w2")]
    inputs = ["r"]
    if op_type == "ReduceMean" and opset >= 18:
        weights.append(numpy_helper.from_array(np.array(attrs.pop("axes"), np.int64), "axes"))
        inputs.append("axes")
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node(op_type, inputs, ["m"], name="mean", **attrs),
             helper.make_node("Flatten", ["m"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w2"], ["out"], name="gemm", transB=1)]
    return helper.make_model(helper.make_graph(
        nodes, "mean", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                      ["n", 1, *spatial])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3])], weights),
        opset_imports=[helper.make_opsetid("", opset)])


def _simulated_codes_apart(model, proto: onnx.ModelProto) -> float:
    """The largest distance, in output codes, between ``proto`` and the simulation of
    ``model`` on 20 digit images no calibration saw."""
    test = models.digits(20, image=True, offset=300)
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"input": test})[0]
    return float((np.abs(got - model.run(test)["out"]) * model.output_scales["out"]).max())


@pytest.mark.parametrize(("op_type", "opset", "attrs"), [
    ("GlobalAveragePool", 17, {}), ("ReduceMean", 17, {"axes": [2, 3]}),
    ("ReduceMean", 18, {"axes": [2, 3], "keepdims": 0})])
def test_integer_format_sums_a_mean_on_integers(op_type, opset, attrs):
    """A mean of codes (every CNN's global average pool, a squeeze-excite's) had run in float
    in the integer format ('its declaration does not map integers to integers'): the mean of
    integers is not one. Its requantization now multiplies the mean back to the sum of its
    64 codes first, exactly, and applies its factor to that sum; the integer format computes
    the sum itself (ReduceSum on int32) and requantizes it with the same factor: no node in
    float, the file equal to the simulation, which the simulation file computes too."""
    graph = prepare(graph_from_onnx(_mean_model(op_type, opset, **attrs)))
    model = quantize(graph, calibrate(graph, models.digits(100, image=True), progress=False), 8)
    assert [s.divided_by for s in model.steps
            if isinstance(s, ScaleStep) and s.divided_by != 1] == [64]
    integer = model.to_onnx("integer")
    assert _float_nodes(integer) == {}
    assert "ReduceSum" in {n.op_type for n in integer.graph.node}
    assert not float_islands(integer, set())
    assert _simulated_codes_apart(model, integer) < 0.5
    assert _simulated_codes_apart(model, model.to_onnx("simulation")) < 0.5


@pytest.mark.parametrize(("strides", "count"), [(2, 2), (3, None)])
def test_a_mean_count_is_the_windows_not_the_ratio_of_sizes(strides, count):
    """An average pool of kernel 2 over 6 positions: at stride 2 each output is the mean of
    its own pair (N 2); at stride 3 the input's 6 elements over the output's 2 give N 3,
    and 3 times a pair's mean is 1.5 times its sum, an integer for half the draws: the
    seeded probe had taken it as a sum of 3 codes (trial checker4). Every output times N
    must be a sum of whole codes, over enough outputs, and their total the input's."""
    pool = helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[1, 2],
                            strides=[1, strides])
    graph = prepare(graph_from_onnx(helper.make_model(helper.make_graph(
        [pool], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)])))
    table = OperatorTable()
    (node,) = graph.nodes
    op = table.lookup(node, graph)[0]
    assert mean_count(graph, node, op, activation_tensors(graph, table)) == count


def test_a_mean_over_free_positions_stays_float_in_the_integer_format():
    """The count of a mean over axes the graph leaves free is known only at run time: its
    requantization reads the mean as it is, and the integer format keeps it in float."""
    graph = prepare(graph_from_onnx(_mean_model("GlobalAveragePool", spatial=("h", "w"))))
    model = quantize(graph, calibrate(graph, models.digits(100, image=True), progress=False), 8)
    assert all(s.divided_by == 1 for s in model.steps if isinstance(s, ScaleStep))
    integer = model.to_onnx("integer")
    assert "mean" in _float_nodes(integer)
    assert _simulated_codes_apart(model, integer) < 0.5


@pytest.mark.parametrize("value", [None, 0.0, 0.37])
def test_integer_format_pads_codes_on_integers_where_the_pad_value_is_a_code(value):
    """A constant Pad between two convolutions (EfficientNet-Lite's static padding, torch's
    ZeroPad2d) had stayed float in the integer format ('its declaration does not map integers
    to integers': 22 of EfficientNet-Lite1's raw export): its output elements are its input's
    or the pad value, chosen by position, so with the pad value a code (0) it pads the codes
    themselves. A pad value the codes do not hold exactly (0.37 times the scale) keeps it in
    float. Either way the file equals the simulation."""
    extra, inputs = (numpy_helper.from_array(np.int64([0, 0, 1, 1, 0, 0, 1, 1]), "pads"),), [
        "c1", "pads"]
    if value is not None:
        extra += (numpy_helper.from_array(np.float32(value), "value"),)
        inputs.append("value")
    pad = helper.make_node("Pad", inputs, ["act"], name="pad", mode="constant")
    graph = prepare(graph_from_onnx(_between_convs(pad, 10, 3, extra)))
    model = quantize(graph, calibrate(graph, models.digits(100, image=True), progress=False), 8)
    integer = model.to_onnx("integer")
    assert ("pad" in _float_nodes(integer)) == bool(value)
    assert not float_islands(integer, set(_float_nodes(integer)))
    assert _simulated_codes_apart(model, integer) < 0.5


@pytest.mark.parametrize("change, clip, shift, dtype", [
    (None, False, 0.0, np.int8), (None, False, 128.0, np.uint8),
    (0.5, False, 0.0, np.int8),  # not an integer
    (300.0, False, 0.0, np.int8), (300.0, True, 0.0, np.int8),  # beyond the codes
    (np.nan, True, 0.0, np.int8), (None, False, 0.5, np.uint8),  # a fractional shift
    (100.0, False, 30.0, np.int8), (None, False, 200.0, np.uint8),  # beyond the container
])
def test_stored_integers_take_a_table_a_chunk_at_a_time_as_whole(change, clip, shift, dtype):
    """A table's codes stored as integers chunk by chunk (qdq._stored_integers) give what the
    whole table taken at once gives, for a value in its last chunk that is no integer, lies
    beyond the codes, or ends beyond the container once shifted."""
    from ptq_verify.engine.lower.qdq import _CHUNK, _stored_integers

    values = np.random.default_rng(0).integers(-60, 60, 2 * _CHUNK + 7).astype(np.float32)
    if change is not None:
        values[-3] = change

    def whole(values):
        if not np.array_equal(values, np.round(values)):
            return None
        values = np.clip(values, -127, 127) if clip else values
        if not (-127 <= values.min() and values.max() <= 127):
            return None
        values = values + shift
        if not np.array_equal(values, np.round(values)):
            return None
        info = np.iinfo(dtype)
        return values.astype(dtype) if info.min <= values.min() and values.max() <= info.max \
            else None

    expected, found = whole(values), _stored_integers(values, -127, 127, clip, shift, dtype)
    assert (found is None) == (expected is None)
    if expected is not None:
        assert found.dtype == expected.dtype and np.array_equal(found, expected)
