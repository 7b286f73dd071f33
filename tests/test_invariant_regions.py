"""Normalizations exported in parts (engine/invariant_regions.py): a function of one activation
that the rules prove its scale does not change, made of weightless nodes, runs in float on
that activation as the LayerNormalization node it decomposes does, and a residual sum is held
wide into it. Real torch exports: the digits MLP's LayerNorm in parts (legacy, opset 13)
against the same model with the fused node (opset 17), and the tiny Llama's RMSNorms."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ptq_verify.engine import calibrate, load_model, quantize, sqnr_db
from ptq_verify.engine.invariant_regions import INVARIANT_REASON, invariant_regions
from ptq_verify.engine.plan import plan_model
from ptq_verify.engine.smoothed_calibration import smoothed_and_calibrated
from ptq_verify.graph import OperatorTable, activation_tensors
from ptq_verify.report.audit import audit_model

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
QUANTIZE = sys.modules["ptq_verify.engine.quantize"]
SMOOTH = sys.modules["ptq_verify.engine.smooth"]
LLAMA = FIXTURES / "tiny_llama_left.legacy.opset17.onnx"


def _data(name: str, split: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.{split}.npz") as data:
        return {key: data[key] for key in data.files}


def _regions(name: str):
    graph = load_model(FIXTURES / name)
    table = OperatorTable()
    return graph, invariant_regions(graph, table, plan_model(graph, table),
                                    activation_tensors(graph, table))


def _output(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    source = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _held_out_sqnr(name: str, data: str) -> float:
    graph = load_model(FIXTURES / name)
    model = quantize(graph, calibrate(graph, _data(data, "calib"), progress=False), 8)
    test = _data(data, "test")
    return sqnr_db(_output(str(FIXTURES / name), test), _output(model.to_onnx(), test))


def test_a_layernorm_in_parts_is_one_region_with_its_affine_part():
    graph, regions = _regions("digits_mlp.legacy.opset13.onnx")
    norm = {node.name for node in graph.nodes if node.name.startswith("/1/")}  # nn.LayerNorm
    assert len(norm) == 9 and set(regions) == norm
    assert set(regions.values()) == {"/0/Gemm_output_0"}


def test_the_audit_says_what_quantize_does_there():
    graph = load_model(LLAMA)
    model = quantize(graph, calibrate(graph, _data("tiny_llama", "calib"), progress=False), 8)
    in_parts = {record.name for record in model.records if INVARIANT_REASON in record.note}
    audited = {entry.node for entry in audit_model(LLAMA).entries
               if entry.reason == INVARIANT_REASON and entry.action == "compensate"}
    assert in_parts and audited == in_parts


def test_no_region_where_no_composition_is_free_of_the_scale():
    # the fused LayerNormalization node alone (it runs in float on wide input already), and
    # the exact GELU in parts beside it (Erf has no scaling rule)
    assert _regions("digits_mlp.legacy.opset17.onnx")[1] == {}


def test_the_layernorm_in_parts_quantizes_as_well_as_the_fused_node():
    # held out: 49.7 dB both, the first layer's accumulator held wide into either (it was
    # 48.2, every part rounded on codes; 50.2 against 49.4 with it rounded to 8 bits)
    parts = _held_out_sqnr("digits_mlp.legacy.opset13.onnx", "digits")
    assert parts >= _held_out_sqnr("digits_mlp.legacy.opset17.onnx", "digits") - 0.25


def test_rmsnorms_run_in_float_on_the_residual_sums_held_wide(monkeypatch):
    graph = load_model(LLAMA)
    calibration = calibrate(graph, _data("tiny_llama", "calib"), progress=False)
    model = quantize(graph, calibration, 8)
    records = {record.name: record for record in model.records}
    consumers = graph.consumers()
    roots = [node for node in graph.nodes if node.op_type == "Sqrt"]
    assert roots and all(INVARIANT_REASON in records[node.name].note
                         for node in roots)
    # each residual sum, and the Cast to float32 that passes it on to its RMSNorm and to the
    # next sum (per-channel codes after a feed-forward layer's per-channel weights), are held
    # wide; the last sum's Cast, read by the final norm alone, is part of its region
    casts = [reader.outputs[0] for node in graph.nodes if node.op_type == "Add"
             for reader in consumers.get(node.outputs[0], []) if reader.op_type == "Cast"
             and any(INVARIANT_REASON in records[user.name].note
                     for user in consumers[reader.outputs[0]])]
    sums = [graph.producers()[name].inputs[0] for name in casts]
    passed = [name for name in casts if name in model.codes]
    assert len(sums) >= 2 and all(model.codes[name].wide for name in sums + passed)
    assert any(np.ndim(model.codes[name].scale) for name in passed)
    test = _data("tiny_llama", "test")
    reference = _output(str(LLAMA), test)
    regions = sqnr_db(reference, _output(model.to_onnx(), test))
    monkeypatch.setattr(QUANTIZE, "invariant_regions", lambda *args: {})
    every_part_on_codes = sqnr_db(reference, _output(quantize(graph, calibration, 8).to_onnx(),
                                                     test))
    assert regions > every_part_on_codes + 2  # held out: 36.0 dB against 32.2


def test_a_cast_before_the_norm_passes_per_channel_codes_on():
    # Llama's RMSNorm starts with hidden_states.to(float32), a Cast the legacy exporter keeps:
    # with one embedding column 20x the rest (an outlier channel, as real LLMs have), the
    # embedding's codes take one scale per channel through that Cast into the norm, as they
    # do where the export has no Cast (a new-user trial's Qwen2-like repro: 24.2 -> 27.4 dB)
    for only_reader in (False, True):
        graph = load_model(LLAMA)
        name = next(node.inputs[0] for node in graph.nodes if node.op_type == "Gather"
                    and node.inputs[0] in graph.initializers)
        table = graph.initializers[name].copy()
        table[:, 3] *= 20
        graph.initializers[name] = table
        gathered = next(node.outputs[0] for node in graph.nodes if node.op_type == "Gather"
                        and node.inputs[0] == name)
        cast = next(node for node in graph.consumers()[gathered] if node.op_type == "Cast")
        if only_reader:  # torch's export when the residual reads the cast tensor: the Cast
            # is the embedding's one reader, whose range the codes take (selections.md)
            graph.nodes.remove(cast)
            graph.nodes.insert(graph.nodes.index(graph.producers()[gathered]) + 1, cast)
            for node in graph.nodes:
                if node is not cast:
                    node.inputs = [cast.outputs[0] if i == gathered else i for i in node.inputs]
        calibration = calibrate(graph, _data("tiny_llama", "calib"), progress=False)
        model = quantize(graph, calibration, 8)
        assert np.ndim(model.codes[gathered].scale), only_reader


def test_smoothing_models_a_norm_in_parts_as_quantize_runs_it(monkeypatch):
    # A norm's gamma Mul is a smoothing source whose output channels are its input's; on
    # codes its input is rounded before the factor applies, but at the end of a norm in parts
    # it runs in float on the exact normalized values, and so does its copy where smoothing
    # duplicates it (the copy is one more affine reader of the normalized tensor): the
    # strength search must model that, or it rejects the smoothing that helps (a new-user
    # trial's Qwen2 and Phi-3: +2.6 to +3.4 dB)
    seen = {}
    choose = SMOOTH._choose

    def recorded(graph, candidate, *args, **kwargs):
        seen[candidate.source.node.name] = (candidate.duplicate, kwargs["rounded_before"])
        return choose(graph, candidate, *args, **kwargs)

    monkeypatch.setattr(SMOOTH, "_choose", recorded)
    copies = []
    for name, data in (("tiny_qwen2_outliers.legacy.opset17.onnx", "tiny_llama"),
                       ("tiny_bert_outliers.legacy.opset14.onnx", "tiny_bert")):
        seen.clear()
        graph, regions = _regions(name)
        smoothed, _ = smoothed_and_calibrated(graph, _data(data, "calib"), 8, OperatorTable())
        in_parts = {node: flags for node, flags in seen.items() if node in regions}
        assert in_parts and not any(rounded for _, rounded in in_parts.values()), name
        table = OperatorTable()
        after = invariant_regions(graph, table, plan_model(graph, table),
                                  activation_tensors(graph, table))
        made = [f"{node}~smooth" for item in smoothed if item.duplicated
                and item.source in regions for node in (item.source, *item.carriers)]
        assert all(copy in after for copy in made), name
        copies += made
    assert copies  # the BERT's LayerNorm outputs are its residuals too: duplicated


def _siamese(path: Path) -> Path:
    """A shared tower (one Gemm) on two inputs, then torch's legacy export of
    ``F.cosine_similarity`` (x.y / max(sqrt(|x|^2 |y|^2), eps)) and a difference of the two
    embeddings beside it, as ``torch.cdist`` reads them."""
    from onnx import TensorProto, helper, numpy_helper, save
    rng = np.random.default_rng(0)
    const = [numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "W"),
             numpy_helper.from_array(np.array([1], np.int64), "axes"),
             numpy_helper.from_array(np.array(1e-8, np.float32), "eps")]
    node = helper.make_node
    nodes = [node("Gemm", ["x1", "W"], ["e1"], name="tower1", transB=1),
             node("Gemm", ["x2", "W"], ["e2"], name="tower2", transB=1),
             node("Mul", ["e1", "e2"], ["p"], name="dot_mul"),
             node("ReduceSum", ["p", "axes"], ["dot"], name="dot_sum", keepdims=0),
             node("Mul", ["e1", "e1"], ["p1"], name="sq1_mul"),
             node("ReduceSum", ["p1", "axes"], ["n1"], name="sq1_sum", keepdims=0),
             node("Mul", ["e2", "e2"], ["p2"], name="sq2_mul"),
             node("ReduceSum", ["p2", "axes"], ["n2"], name="sq2_sum", keepdims=0),
             node("Mul", ["n1", "n2"], ["n12"], name="norms"),
             node("Sqrt", ["n12"], ["root"], name="root"),
             node("Max", ["root", "eps"], ["den"], name="clamp"),
             node("Div", ["dot", "den"], ["cos"], name="cos"),
             node("Sub", ["e1", "e2"], ["diff"], name="diff")]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 16]) for n in ("x1", "x2")]
    outputs = [helper.make_tensor_value_info("cos", TensorProto.FLOAT, ["N"]),
               helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["N", 8])]
    graph = helper.make_graph(nodes, "siamese", inputs, outputs, const)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _pairs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)  # near pairs: cosines close to 1, as a Siamese net's
    x1 = rng.normal(size=(128, 16)).astype(np.float32)
    return {"x1": x1, "x2": x1 + 0.2 * rng.normal(size=x1.shape).astype(np.float32)}


def test_a_cosine_of_two_activations_is_one_region_beside_their_difference(tmp_path):
    # each tensor's exponent is one per source: x.y is 1 in each, the cosine 0 in both; the
    # Sub that a cdist takes of the same embeddings leads nowhere scale-free, and is pruned
    path = _siamese(tmp_path / "siamese.onnx")
    graph = load_model(path)
    table = OperatorTable()
    regions = invariant_regions(graph, table, plan_model(graph, table),
                                activation_tensors(graph, table))
    tail = {"dot_mul", "dot_sum", "sq1_mul", "sq1_sum", "sq2_mul", "sq2_sum", "norms", "root",
            "clamp", "cos"}
    assert set(regions) == tail


def test_a_cosine_in_float_on_its_embeddings_codes_beats_every_part_on_codes(tmp_path,
                                                                             monkeypatch):
    # the trial's Siamese network: 48.9 -> 74.8 dB held out (quantize_static 55.4); every
    # product, sum and root of the chain had been rounded to 8 bits where the cosines all
    # lay in 0.97-1.0
    path = _siamese(tmp_path / "siamese.onnx")
    graph = load_model(path)
    calibration = calibrate(graph, _pairs(1), progress=False)
    test = _pairs(2)
    reference = _output(str(path), test)
    regions = sqnr_db(reference, _output(quantize(graph, calibration, 8).to_onnx(), test))
    monkeypatch.setattr(QUANTIZE, "invariant_regions", lambda *args: {})
    every_part_on_codes = sqnr_db(reference, _output(quantize(graph, calibration, 8).to_onnx(),
                                                     test))
    assert regions > every_part_on_codes + 6
