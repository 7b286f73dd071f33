"""Mixed precision by float fallback (engine/sensitivity.py, quantize(float_tensors=...),
`ptq-verify quantize --keep-float N`), on a real torch export of the digits CNN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ptq_verify.cli import main
from ptq_verify.engine import calibrate, load_model, plan_model, quantize, sqnr_db
from ptq_verify.engine.float_region import FloatRegions
from ptq_verify.engine.float_run import run_float, sample_count
from ptq_verify.engine.quantized import Code
from ptq_verify.engine.rules import tensor_weight_slot
from ptq_verify.engine.sensitivity import (
    RANK_SAMPLES,
    _gated,
    _rounded,
    candidates,
    costliest,
    rank_activations,
)
from ptq_verify.errors import UserError
from ptq_verify.graph import OperatorTable, activation_tensors
from ptq_verify.graph.ort_runner import ort_runner
from ptq_verify.rules import RuleKind

FIXTURES = Path(__file__).parent / "fixtures" / "torch"
MODEL = FIXTURES / "digits_cnn.legacy.opset17.onnx"
CALIB = FIXTURES / "digits_image.calib.npz"


def _data(split: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"digits_image.{split}.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def prepared():
    graph = load_model(str(MODEL))
    return graph, calibrate(graph, _data("calib"), progress=False)


def _qdq_output(model, feeds) -> np.ndarray:
    session = ort.InferenceSession(model.to_onnx("qdq").SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _codes(graph, calibration, bits):
    return quantize(graph, calibration, bits, weight_rounding="nearest",
                    bias_correction=False).codes


def test_every_candidate_is_ranked_costliest_first(prepared):
    graph, calibration = prepared
    codes = _codes(graph, calibration, 4)
    ranked = rank_activations(graph, calibration, codes)
    assert {item.tensor for item in ranked} == set(candidates(graph, calibration, codes))
    assert graph.input_names[0] in {item.tensor for item in ranked}
    costs = [item.sqnr for item in ranked]
    assert costs == sorted(costs) and np.isfinite(costs[0])


def test_candidates_come_in_graph_order_whatever_the_hash_seed(prepared):
    """Equal costs keep the candidates' order, so that order must not follow a set's."""
    graph, calibration = prepared
    order = [*graph.input_names, *(o for node in graph.nodes for o in node.outputs)]
    found = candidates(graph, calibration, _codes(graph, calibration, 8))
    assert found == sorted(found, key=order.index)


def test_the_ranking_measures_the_rounding_of_that_tensor_alone(prepared):
    """At 2 bits a tensor's rounding costs far more than at 8: the ranking is a measurement
    of the grid, not a fixed order."""
    graph, calibration = prepared
    coarse = {item.tensor: item.sqnr
              for item in rank_activations(graph, calibration, _codes(graph, calibration, 2))}
    fine = {item.tensor: item.sqnr
            for item in rank_activations(graph, calibration, _codes(graph, calibration, 8))}
    assert coarse.keys() == fine.keys()
    assert all(coarse[name] < fine[name] for name in coarse)


def test_the_rounded_graphs_run_in_onnxruntime(prepared):
    """Not in the numpy kernels, which the runner falls back to silently (10x slower on
    EfficientNet-Lite: duplicate node names once made onnxruntime refuse every copy)."""
    graph, calibration = prepared
    codes = _codes(graph, calibration, 8)
    for name in candidates(graph, calibration, codes):
        assert ort_runner(_rounded(graph, name, codes[name]), graph.output_names), name


def test_one_gated_session_ranks_as_a_copy_per_candidate_does(prepared):
    """The ranking runs one onnxruntime session with an If per candidate; a model onnxruntime
    cannot load gets a copy of the graph per candidate instead. Both give the same costs."""
    graph, calibration = prepared
    codes = _codes(graph, calibration, 4)
    names = candidates(graph, calibration, codes)
    assert ort_runner(_gated(graph, names, codes), graph.output_names) is not None
    feeds = {k: v[:sample_count(graph, RANK_SAMPLES)] for k, v in calibration.sample.items()}
    reference = run_float(graph, OperatorTable(), feeds, graph.output_names)["output"]
    for item in rank_activations(graph, calibration, codes):
        copy = _rounded(graph, item.tensor, codes[item.tensor])
        out = run_float(copy, OperatorTable(), feeds, graph.output_names)["output"]
        assert abs(sqnr_db(reference, out) - item.sqnr) < 1e-3, item.tensor


def test_a_kept_tensor_is_exact_up_to_the_weight_layers_around_it(prepared):
    """Its float region: the nodes that only pass it on (ReLU, pooling, reshaping) run in
    float up and down to the weight layers, which run in float too; past them, codes."""
    graph, calibration = prepared
    worst = costliest(graph, calibration, 4, 1)[0].tensor
    model = quantize(graph, calibration, 4, float_tensors=[worst])
    floats = {r.name for r in model.records if "mixed precision" in r.why}
    assert worst not in model.codes and floats
    assert all(r.kind == "compensated" for r in model.records if r.name in floats)
    producers, consumers = graph.producers(), graph.consumers()
    for name in floats:  # every float node touches the kept tensor or another float node
        node = next(n for n in graph.nodes if n.name == name)
        near = {producers[i].name for i in node.inputs if i in producers}
        near |= {c.name for o in node.outputs for c in consumers.get(o, [])}
        assert worst in node.inputs + node.outputs or near & floats
    assert model.counts()["integer"] > 0


def _regions(fixture: str):
    """A fixture's graph with its operator table, plans, activations and float regions."""
    graph = load_model(str(FIXTURES / fixture))
    table = OperatorTable()
    plans = {plan.name: plan for plan in plan_model(graph, table)}
    active = activation_tensors(graph, table)
    return graph, table, plans, active, FloatRegions(graph, table, list(plans.values()), active)


def test_a_float_region_stops_at_a_matmul_with_a_constant_matrix():
    """On a BERT export, keeping a projection's output exact runs that MatMul in float, but
    not what feeds it: its matrix mixes the input's rounding, so the input keeps its codes
    (before, a MatMul counted as passing its input on and the region took the GELU before it)."""
    graph, table, plans, active, regions = _regions("tiny_bert.legacy.opset17.onnx")
    producers = graph.producers()
    projections = [node for node in _constant_products(graph, table, plans, active)
                   if table.find(node, graph).mixes_channels]
    assert len(projections) >= 4
    for node in projections:
        nodes, _ = regions.of(node.outputs[0])
        assert node.name in nodes
        feeding = {producers[i].name for i in node.inputs if i in producers}
        assert not feeding & nodes, node.name


def _constant_products(graph, table, plans, active):
    """The nodes with a constant of degree 1 in a product on their activation."""
    return [node for node in graph.nodes if node.outputs[0] in active
            and plans[node.name].rule is not None
            and plans[node.name].rule.kind is not RuleKind.ALIGNED
            and tensor_weight_slot(graph, node, table.find(node, graph),
                                   plans[node.name].rule) is not None]


def test_a_float_region_passes_through_a_product_by_a_constant_element_by_element():
    """The legacy exporter writes GELU as x*(1+erf(x/sqrt 2)) then *0.5. The Mul by 0.5 is
    a constant in a product, but one that mixes nothing: its output is the input's rounding
    scaled, so the region goes on through it (it stopped there: keeping the GELU's product
    exact rounded it again at the Mul's output, and --keep-float 1 gave the same model
    output as 0)."""
    graph, table, plans, active, regions = _regions("digits_gelu_mlp.legacy.opset17.onnx")
    scalings = [node for node in _constant_products(graph, table, plans, active)
                if not table.find(node, graph).mixes_channels]
    assert scalings
    with np.load(FIXTURES / "digits.calib.npz") as data:
        feeds = dict(data)
    calibration = calibrate(graph, feeds, progress=False)
    plain = _qdq_output(quantize(graph, calibration, 4), feeds)
    for node in scalings:
        source = next(i for i in node.inputs if i in active)
        nodes, tensors = regions.of(source)
        assert node.name in nodes and node.outputs[0] in tensors, node.name
        kept = _qdq_output(quantize(graph, calibration, 4, float_tensors=[source]), feeds)
        assert not np.array_equal(kept, plain), node.name


def test_keeping_the_costliest_tensors_in_float_lowers_the_error(prepared):
    graph, calibration = prepared
    test = _data("test")
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    reference = session.run(None, test)[0]
    kept = costliest(graph, calibration, 4, 2)
    assert len(kept) == 2
    every = sqnr_db(reference, _qdq_output(quantize(graph, calibration, 4), test))
    mixed = quantize(graph, calibration, 4, float_tensors=[item.tensor for item in kept])
    assert sqnr_db(reference, _qdq_output(mixed, test)) > every + 1


def test_a_name_that_is_no_activation_is_refused(prepared):
    graph, calibration = prepared
    with pytest.raises(UserError, match="'no such tensor' is not an activation"):
        quantize(graph, calibration, 8, float_tensors=["no such tensor"])


def test_keeping_every_activation_in_float_is_refused_in_one_line(prepared):
    graph, calibration = prepared
    everything = candidates(graph, calibration, _codes(graph, calibration, 8))
    with pytest.raises(UserError, match=f"{len(everything)} activations kept in float leave"):
        quantize(graph, calibration, 8, float_tensors=everything)


def test_the_integer_format_says_which_float_nodes_mixed_precision_chose(prepared):
    graph, calibration = prepared
    worst = costliest(graph, calibration, 8, 1)[0].tensor
    model = quantize(graph, calibration, 8, float_tensors=[worst])
    chosen = {r.name for r in model.records if "mixed precision" in r.why}
    listed = {e.key: e.value for e in model.to_onnx("integer").metadata_props}["float_nodes"]
    entries = dict(item.split(": ", 1) for item in listed.split("; "))
    assert chosen and all("mixed precision" in entries[name] for name in chosen if name in entries)
    assert chosen & entries.keys()


def test_cli_keep_float_names_what_it_kept(tmp_path, capsys):
    assert main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(tmp_path / "q.onnx"),
                 "--keep-float", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "note: mixed precision (--keep-float 1): kept in float, each with" in out
    assert "mixed precision: an activation kept in float" in out  # the nodes' reason


def test_cli_keep_float_that_keeps_none_says_why(tmp_path, capsys):
    """cnn_relu with relu1 named: no candidate left raises the whole model's SQNR (8 bits),
    so none is kept; the note said "no activation to keep in float", as if the model had
    none, where it has candidates that were tried and did not help."""
    assert main(["quantize", "cnn_relu", "-o", str(tmp_path / "q.onnx"), "--keep-float", "1",
                 "--keep-float-tensor", "relu1", "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    note = next(n for n in summary["notes"] if n.startswith("mixed precision (--keep-float 1)"))
    assert summary["kept_float"] == [{"tensor": "relu1", "sqnr_db": None}]
    assert "none kept in float (the candidates tried did not raise" in note


def test_cli_json_lists_the_kept_tensors_with_their_costs(tmp_path, capsys):
    """A script reads what --keep-float kept from the JSON, not from the note's prose."""
    assert main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(tmp_path / "q.onnx"),
                 "--keep-float", "2", "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    kept = summary["kept_float"]
    assert len(kept) == 2 and kept[0]["sqnr_db"] <= kept[1]["sqnr_db"]
    note = next(n for n in summary["notes"] if n.startswith("mixed precision"))
    assert all(f"{item['tensor']} (" in note for item in kept)


def test_a_named_tensor_is_kept_and_the_ranking_chooses_around_it(prepared):
    graph, calibration = prepared
    first, second = costliest(graph, calibration, 4, 2)
    again = costliest(graph, calibration, 4, 1, kept=[first.tensor])
    assert again == [second]


def test_cli_keeps_a_named_tensor_without_ranking(tmp_path, capsys):
    graph = load_model(str(MODEL))
    name = graph.nodes[0].outputs[0]
    assert main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(tmp_path / "q.onnx"),
                 "--keep-float-tensor", name, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"kept in float as named: {name}" in out
    assert "mixed precision: an activation kept in float" in out
    assert "--keep-float " not in out  # no ranking note


def test_cli_refuses_an_unknown_tensor_name_before_any_work(tmp_path, capsys):
    target = tmp_path / "q.onnx"
    assert main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(target),
                 "--keep-float-tensor", "no such tensor"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'no such tensor'" in err and "has no tensor" in err
    assert not target.exists()


def test_cli_says_a_tensor_folded_at_load_is_no_activation(tmp_path, capsys):
    # a legacy export's Constant node: in the file, gone once the model is prepared
    model = FIXTURES / "tiny_bert.legacy.opset17.onnx"
    target = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "--calib", str(FIXTURES / "tiny_bert.calib.npz"),
                 "-o", str(target), "--keep-float-tensor", "/bert/Constant_18_output_0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "folded at load" in err and "has no tensor" not in err
    assert not target.exists()


def test_cli_refuses_a_negative_count_before_any_work(tmp_path, capsys):
    target = tmp_path / "q.onnx"
    assert main(["quantize", str(MODEL), "--calib", str(CALIB), "-o", str(target),
                 "--keep-float", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--keep-float -1" in err
    assert not target.exists()


def test_a_tensor_is_kept_for_what_it_gains_the_whole_model_not_its_cost_alone():
    """The digits MLP (dynamo export) at 4 bits: its GELU's output costs most alone as codes,
    but kept in float the model gains 0.5 dB on held-out data (26.7 against 26.1 with none),
    where its input in float gains 6 dB (32.0): each candidate is kept only where the whole
    quantized model then does better (a new-user trial's decoder had lost 4 dB to
    --keep-float 1). Measured on the test split, which the choice never saw."""
    name = FIXTURES / "digits_mlp.dynamo.opset20.onnx"
    graph = load_model(str(name))
    with np.load(FIXTURES / "digits.calib.npz") as data:
        calibration = calibrate(graph, dict(data), progress=False)
    with np.load(FIXTURES / "digits.test.npz") as data:
        test = dict(data)
    reference = ort.InferenceSession(str(name), providers=["CPUExecutionProvider"]).run(
        None, test)[0]

    def held_out(kept: list[str]) -> float:
        return sqnr_db(reference, _qdq_output(quantize(graph, calibration, 4,
                                                       float_tensors=kept), test))

    alone = rank_activations(graph, calibration, _codes(graph, calibration, 4))[0]
    chosen = costliest(graph, calibration, 4, 1)
    assert len(chosen) == 1
    assert chosen[0].tensor != alone.tensor
    assert held_out([chosen[0].tensor]) > max(held_out([alone.tensor]), held_out([])) + 1
    assert "the quantized model" in chosen[0].describe()  # (the note says what it gained)


def test_keep_float_works_above_eight_bits(mlp_files, capsys):
    """A new-user check: --bits 12 --format simulation --keep-float 2 was refused saying to
    use the format simulation: the whole-model check wrote a qdq file, which holds 8 bits."""
    from ptq_verify.cli import main

    tmp, model, calib = mlp_files
    code = main(["quantize", str(model), "--calib", str(calib), "-o", str(tmp / "q.onnx"),
                 "--bits", "12", "--format", "simulation", "--keep-float", "1",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (tmp / "q.onnx").exists()


def test_codes_held_wide_are_rounded_not_clipped_by_the_ranking(prepared):
    """A wide sum's [low, high] bounds its integers without the static operands it may add
    (a YOLOv8 head's anchor grid): the file holds it exactly in 32 bits, so the ranking
    rounds it to its scale and clips nothing (the box sum had ranked at 2.7 dB alone where
    the written file gave 26 dB)."""
    graph, calibration = prepared
    name = candidates(graph, calibration, _codes(graph, calibration, 8))[0]
    feeds = {k: v[:8] for k, v in calibration.sample.items()}
    peaks = {}
    for wide in (False, True):
        code = Code(name, 4.0, -1.0, 1.0, wide=wide)
        copy = _rounded(graph, name, code)
        stem = f"{name}~rounded"
        peaks[wide] = float(np.abs(run_float(copy, OperatorTable(), feeds, [stem])[stem]).max())
    assert peaks[False] <= 0.25 < peaks[True]


def _prenorm_attention_input(path: Path) -> None:
    """The digits as 8 tokens of 8 pixels -> MatMul + Add (a token embedding, its sum held
    wide with per-channel codes) -> LayerNormalization -> Transpose (1, 0, 2), as torch's
    nn.MultiheadAttention takes a batch-first query -> MatMul (the input projection) ->
    ReduceMean -> Gemm to 10 logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def const(name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)

    nodes = [helper.make_node("MatMul", ["tokens", "embed"], ["embedded"], name="embed_mm"),
             helper.make_node("Add", ["embedded", "embed_b"], ["summed"], name="embed_add"),
             helper.make_node("LayerNormalization", ["summed", "gamma", "beta"], ["normed"],
                              name="norm", axis=-1),
             helper.make_node("Transpose", ["normed"], ["seq_first"], name="transpose",
                              perm=[1, 0, 2]),
             helper.make_node("MatMul", ["seq_first", "in_proj"], ["projected"], name="in_proj"),
             helper.make_node("ReduceMean", ["projected"], ["pooled"], name="pool", axes=[0],
                              keepdims=0),
             helper.make_node("Gemm", ["pooled", "head", "head_b"], ["logits"], name="head")]
    inits = [const("embed", 8, 16), const("embed_b", 16, scale=0.1),
             numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(16, np.float32), "beta"),
             const("in_proj", 16, 24), const("head", 24, 10), const("head_b", 10, scale=0.1)]
    graph = helper.make_graph(
        nodes, "prenorm", [helper.make_tensor_value_info("tokens", TensorProto.FLOAT,
                                                         ["batch", 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_copy_between_a_late_float_node_and_a_kept_one_moves_no_codes(tmp_path, capsys):
    """A new-user trial's pre-norm encoder: its LayerNorm runs in float for its per-channel
    input codes, decided as the walk reaches it, and ``--keep-float`` kept the attention's
    input projection after a Transpose in float; the Transpose moved 8-bit codes between
    the two, and the integer file (Transpose of codes -> Cast -> MatMul) crashed
    onnxruntime 1.32's default session at load (SIGSEGV: exit 3, nothing written)."""
    model, calib = tmp_path / "prenorm.onnx", tmp_path / "calib.npz"
    _prenorm_attention_input(model)
    from sklearn.datasets import load_digits

    np.savez(calib, tokens=(load_digits().data[:96] / 16).astype(np.float32).reshape(-1, 8, 8))
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out), "--format",
                 "integer", "--keep-float-tensor", "projected", "--json",
                 "--no-progress"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["nodes"]}
    assert "per-channel input codes" in rows["norm"]["note"]
    assert "a copy between float ends" in rows["transpose"]["note"]
    assert out.is_file()
