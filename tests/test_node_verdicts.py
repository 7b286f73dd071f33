"""The differential trial of node verdicts (benchmarks/node_verdicts.py) on fixed forms: what
``audit`` claims for a node must hold in onnxruntime, the harness must catch a claim that does
not, and the forms the trial found wrong stay right."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from ptq_verify.errors import UserError
from ptq_verify.report.audit import audit_model

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "node_verdicts.py"
_SPEC = importlib.util.spec_from_file_location("node_verdicts", _PATH)
nv = importlib.util.module_from_spec(_SPEC)
sys.modules["node_verdicts"] = nv  # (its dataclasses look their module up)
_SPEC.loader.exec_module(nv)

X = nv.values(np.random.default_rng(0), (2, 3, 4, 4))


def _case(nodes, constants=None, opset=17) -> nv.Case:
    return nv.Case("test", opset, nodes, constants or {}, {"x": X})


def _judged(case: nv.Case, tmp_path: Path, edit=None) -> list:
    """Each node's outcome; ``edit`` changes the audit's JSON first (a wrong claim)."""
    path = tmp_path / "model.onnx"
    nv.onnx.save(case.model(), path)
    audit = audit_model(path).to_json()
    if edit is not None:
        audit = copy.deepcopy(audit)
        edit(audit["nodes"][-1])
    return nv.judge(case, audit, nv.all_values(case))


def _kinds(outcomes) -> list[str]:
    return [o.kind for o in outcomes]


CLIP = ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="n")],
        {"lo": nv.f32(-1.5), "hi": nv.f32(2.0)})
POW2 = ([helper.make_node("Pow", ["x", "p"], ["y"], name="n")], {"p": nv.f32(2.0)})
LAYER_NORM = ([helper.make_node("LayerNormalization", ["x", "g"], ["y"], name="n", epsilon=0.01)],
              {"g": nv.values(np.random.default_rng(1), (4,))})


PAD = ([helper.make_node("Pad", ["x", "pads", "value"], ["y"], name="n", mode="constant")],
       {"pads": nv.i64(0, 0, 1, 1, 0, 0, 1, 1), "value": nv.f32(1.5)})


@pytest.mark.parametrize("nodes, constants", [CLIP, POW2, LAYER_NORM, PAD])
def test_true_claims_pass(nodes, constants, tmp_path):
    assert _kinds(_judged(_case(nodes, constants), tmp_path)) == ["checked"]


@pytest.mark.parametrize("nodes, constants, rule", [
    (*CLIP, "pass_through"),                       # the bounds left as they are
    (*CLIP, "param_rescale hi->s*hi"),             # one bound rescaled
    (*POW2, "homogeneous 3"),                      # a wrong degree
    (*LAYER_NORM, "scale_invariant"),              # epsilon left as it is
    (*LAYER_NORM, "scale_invariant eps->s*eps"),   # epsilon rescaled by a wrong power
    (*PAD, "pass_through"),                        # the pad value left as it is
])
def test_a_wrong_claim_is_caught(nodes, constants, rule, tmp_path):
    def claim(entry):
        entry["rule"] = rule

    assert _kinds(_judged(_case(nodes, constants), tmp_path, claim)) == ["WRONG"]


def test_a_wrong_aligned_claim_is_caught(tmp_path):
    """Two inputs claimed to share a scale where one is a product's: the harness scales both
    tensors as the rule says and sees the output off."""
    nodes = [helper.make_node("Mul", ["x", "c"], ["y"], name="n")]

    def claim(entry):
        entry["rule"], entry["action"] = "aligned", "align"

    outcomes = _judged(_case(nodes, {"c": nv.values(np.random.default_rng(2), (4,))}),
                       tmp_path, claim)
    assert _kinds(outcomes) == ["WRONG"]


@pytest.mark.parametrize("nodes, constants, opset", [
    # a product over 4 (or 48) elements: its witness of 3 had been proved degree 3
    ([helper.make_node("ReduceProd", ["x"], ["y"], name="n", axes=[3])], {}, 17),
    ([helper.make_node("ReduceProd", ["x"], ["y"], name="n", keepdims=0)], {}, 17),
    # CastLike to an integer target truncates: it had been said to pass the scale through
    ([helper.make_node("CastLike", ["x", "t"], ["y"], name="n")],
     {"t": np.zeros((1,), np.int32)}, 17),
    # tf_crop_and_resize writes its extrapolation value, not scaled, outside the crop
    ([helper.make_node("Resize", ["x", "roi", "scales"], ["y"], name="n", mode="linear",
                       coordinate_transformation_mode="tf_crop_and_resize",
                       extrapolation_value=2.0)],
     {"roi": nv.f32(0, 0, 0.1, -0.2, 1, 1, 0.8, 1.3), "scales": nv.f32(1, 1, 2, 2)}, 17),
    # Range from an activation with a constant limit: a scaled start and delta count another
    # number of elements below the same limit
    ([helper.make_node("ReduceMax", ["x"], ["m"], name="max", axes=[0, 1, 2, 3], keepdims=0),
      helper.make_node("Abs", ["m"], ["a"], name="abs"),
      helper.make_node("Range", ["a", "limit", "delta"], ["y"], name="n")],
     {"limit": nv.f32(3000.0), "delta": nv.f32(250.0)}, 17),
])
def test_forms_the_trial_found_wrong(nodes, constants, opset, tmp_path):
    outcomes = _judged(_case(nodes, constants, opset), tmp_path)
    assert "WRONG" not in _kinds(outcomes), [(o.node, o.rule, o.detail) for o in outcomes]


def test_a_random_sample(tmp_path):
    """A few random models of the trial, each node's claim against onnxruntime."""
    rng = np.random.default_rng(7)
    for _ in range(6):
        case = nv.random_case(rng)
        try:
            outcomes = _judged(case, tmp_path)
        except UserError:  # (a model the audit refuses in one line)
            continue
        assert "WRONG" not in _kinds(outcomes), (case.form, [(o.node, o.detail)
                                                             for o in outcomes])
