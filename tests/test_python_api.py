"""The Python API as a library user calls it (docs/engine.md, "Pipeline"): what a programmer
plausibly gets wrong is a UserError saying what and where, never an AttributeError, KeyError,
TypeError or ValueError from deep inside, and never a silent wrong result. Each case was
found by a trial that used the API rather than the command line."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import models
import numpy as np
import onnx
import pytest

from ptq_verify import Operator
from ptq_verify.engine import calibrate, load_model, quantize, read_data_file
from ptq_verify.engine.equalize import equalize
from ptq_verify.engine.quantized import QuantizedModel
from ptq_verify.errors import UserError


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """An MLP's file, its data, its graph and its calibration (made once: a few seconds)."""
    path = tmp_path_factory.mktemp("api") / "mlp.onnx"
    onnx.save(models.mlp("Relu"), path)
    data = {"input": models.digits(40)}
    graph = load_model(path)
    return path, data, graph, calibrate(graph, data, progress=False)


@pytest.mark.parametrize("given", ["model", "bytes", "none"])
def test_load_model_takes_a_path_and_says_so(mlp, given):
    """A ModelProto reached os.stat as a TypeError; the file's bytes were refused with all of
    them repeated in the message."""
    path = mlp[0]
    value = {"model": onnx.load(path), "bytes": path.read_bytes(), "none": None}[given]
    with pytest.raises(UserError, match=r"^load_model: takes the path of an ONNX file") as err:
        load_model(value)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)


def test_load_model_takes_a_pathlib_path_and_a_str(mlp):
    path = mlp[0]
    assert [n.name for n in load_model(path).nodes] == [n.name for n in load_model(str(path)).nodes]


def test_calibration_data_as_a_list_is_refused_by_name(mlp):
    """A list of arrays says nothing of which input each is; it had raised numpy's "truth
    value of an array is ambiguous"."""
    _, data, graph, _ = mlp
    with pytest.raises(UserError, match=r"calibration data: a dict of input name -> array.*"
                                        r"not list.*\{'input': \.\.\.\}"):
        calibrate(graph, [data["input"]], progress=False)


@pytest.mark.parametrize("as_path", [str, Path])
def test_calibration_data_as_a_file_path_names_the_reader(mlp, tmp_path, as_path):
    """A newcomer trial passed the command line's calib.npz path to calibrate: told only
    'not str', then read with the call the refusal names."""
    _, data, graph, _ = mlp
    path = tmp_path / "calib.npz"
    np.savez(path, **data)
    with pytest.raises(UserError, match=r"not (str|[\w.]*Path).*read with ptq_verify\.engine\."
                                        r"read_data_file\('.*calib\.npz', graph\)$"):
        calibrate(graph, as_path(path), progress=False)
    assert calibrate(graph, read_data_file(path, graph), progress=False).sample


class _Tensor:
    """Another library's tensor as numpy sees it (a torch tensor: ``__array__``), without
    importing that library; ``grad``: its ``__array__`` raises as torch's does for a tensor
    that requires grad."""

    def __init__(self, array: np.ndarray, grad: bool = False):
        self.array, self.grad = array, grad

    def __array__(self, dtype=None, copy=None):
        if self.grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad.")
        return self.array


def test_calibration_data_as_another_library_s_tensor_is_read_as_an_array(mlp):
    """A newcomer trial: a torch tensor of the one input was refused as 'not Tensor' (while the
    same tensor in a dict was read), and one that requires grad raised torch's RuntimeError."""
    _, data, graph, calibration = mlp
    assert (calibrate(graph, _Tensor(data["input"]), progress=False).stats["input"].maximum
            == calibration.stats["input"].maximum)
    for given in (_Tensor(data["input"], grad=True), {"input": _Tensor(data["input"], True)}):
        with pytest.raises(UserError, match=r"_Tensor cannot be read as a numpy array \(Can't "
                                            r"call numpy.*\); pass a numpy array"):
            calibrate(graph, given, progress=False)


@pytest.mark.parametrize(("inputs", "said"), [
    (None, "inputs: None is NoneType"), (5, "inputs: 5 is int"),
    ([["a", 5]], "inputs: 5 is int, not a name"), ([5], "inputs: [5] is list")])
def test_an_operator_s_inputs_that_are_no_names_are_a_declaration_error(inputs, said):
    """A hostile-input hunt: Operator("A", None, "x") or inputs holding a number raised a
    TypeError from the name check, not the DeclarationError every other slip is."""
    from ptq_verify.catalog.operator import DeclarationError

    with pytest.raises(DeclarationError, match=f"^{re.escape(said)}"):
        Operator("A", inputs, "x")


@pytest.mark.parametrize(("onnx_type", "said"), [
    (5, "must be a string, not int"), ("a b", "is not an op type"),
    ("com.x:Relu:", "is not an op type"), ("Op\n", "does not print")])
def test_an_operator_s_onnx_type_is_checked_as_a_files_is(onnx_type, said):
    """A hostile-input hunt: Operator(..., onnx_type=5) or "a b" was taken, where a TOML
    file's declaration of it is refused; a declaration of no node failed where a model met
    it, or never matched."""
    from ptq_verify.catalog.operator import DeclarationError

    with pytest.raises(DeclarationError, match=f"^Shift: onnx_type .*{said}"):
        Operator("Shift", "x", "2*x", onnx_type=onnx_type)
    assert Operator("Shift", "x", "2*x", onnx_type="custom:Shift").onnx_type == "custom:Shift"


@pytest.mark.parametrize(("name", "said"), [
    (5, "an operator's name is text, not int"), (None, "an operator's name is text, not "
                                                  "NoneType"),
    ("", "an operator needs a non-empty name")])
def test_an_operator_s_name_that_is_no_text_is_told_so(name, said):
    """A library user's trial: Operator(5, "x", "x") was refused as needing "a non-empty
    name"."""
    from ptq_verify.catalog.operator import DeclarationError

    with pytest.raises(DeclarationError, match=f"^{re.escape(said)}$"):
        Operator(name, "x", "x")


@pytest.mark.parametrize(("options", "said"), [
    ({"params": "beta"}, "params 'beta' is text"),
    ({"kernel": 5}, "kernel must be a function, not int"),
    ({"onnx_kernel": "x"}, "onnx_kernel must be a function, not str"),
    ({"domain": "beta > 0"}, "domain: 'beta > 0' is str, not a sympy relation"),
    ({"domain": ["beta > 0"]}, "domain: 'beta > 0' is str, not a sympy relation")])
def test_a_declaration_s_params_kernel_and_domain_of_the_wrong_kind_are_refused(options,
                                                                                 said):
    """A library user's trial: params="beta" declared b, e, t and a (then "beta ... is
    neither an input nor a parameter"), kernel=5 failed only when run (a TypeError), and a
    domain as text reached sympy as an AttributeError."""
    from ptq_verify.catalog.operator import DeclarationError

    declared = {"params": {"beta": "2"}, **options}
    with pytest.raises(DeclarationError, match=f"^Scaled: {re.escape(said)}"):
        Operator("Scaled", "x", "beta*x", **declared)
    assert Operator("Scaled", "x", "beta*x", params=["beta"]).params == {"beta": 1}


@pytest.mark.parametrize(("overrides", "said"), [
    ({"Relu": "pass_through"}, "'Relu': str 'pass_through' is no Rule"),
    (["Relu"], "a dict of operator name -> Rule"),
    ({"Rleu": None}, "'Rleu' is no declared operator's name; did you mean 'Relu'")])
def test_override_rules_that_force_nothing_are_refused(mlp, overrides, said):
    """A library user's trial: a rule given as its name failed as an AttributeError at the
    first node of that operator, a list as a TypeError, and a misspelt operator name forced
    nothing, silently (an ablation then measures the model it meant to change)."""
    from ptq_verify.engine import plan_model

    _, _, graph, calibration = mlp
    for run in (lambda: plan_model(graph, override_rules=overrides),
                lambda: quantize(graph, calibration, override_rules=overrides)):
        with pytest.raises(UserError, match=f"^override_rules: {re.escape(said)}"):
            run()


def test_a_python_declaration_s_unbound_attribute_is_refused_naming_onnx_attrs(tmp_path):
    """A library user's trial: Operator("LeakyBias", ..., params={"alpha": .., "beta": ..},
    onnx_type="com.acme:LeakyBias") was refused at a node with attributes alpha and beta as
    "has attribute 'alpha' that its declaration does not bind (a parameter takes the value of
    the node's attribute of its name; its parameters: alpha, beta)": false of a Python
    declaration, which binds by onnx_attrs alone. The refusal names the onnx_attrs to give,
    and with them the node's values, not the samples, are the ones run."""
    from onnx import TensorProto, helper

    node = helper.make_node("LeakyBias", ["x"], ["y"], domain="com.acme", name="lb",
                            alpha=0.25, beta=-2.0)
    model = helper.make_model(
        helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)])
    onnx.save(model, tmp_path / "lb.onnx")
    x = np.linspace(-4, 4, 64, dtype=np.float32).reshape(16, 4)

    def declared(**binding):
        op = Operator("LeakyBias", "x", "where(x >= 0, x, alpha*x) + beta",
                      params={"alpha": "0.1", "beta": "0.5"}, onnx_type="com.acme:LeakyBias",
                      **binding)
        return {"com.acme:LeakyBias": op}

    operators = declared()
    said = ("has attribute 'alpha' that its declaration does not bind: its parameter 'alpha' "
            "takes the attribute's value only if Operator(..., onnx_attrs={'alpha': 'alpha', "
            "'beta': 'beta'}) says so")
    with pytest.raises(UserError, match=re.escape(said)):
        calibrate(load_model(tmp_path / "lb.onnx", operators), {"x": x}, operators=operators)
    operators = declared(onnx_attrs={"alpha": "alpha", "beta": "beta"})
    graph = load_model(tmp_path / "lb.onnx", operators)
    calibration = calibrate(graph, {"x": x}, operators=operators)
    quantized = quantize(graph, calibration, bits=16, operators=operators)
    expected = np.where(x >= 0, x, 0.25 * x) - 2.0
    assert np.allclose(quantized.run({"x": x})["y"], expected, atol=1e-2)


def test_calibrate_draws_no_bar_unless_asked(mlp, monkeypatch):
    """A library user's trial: calibrate was the one step whose progress defaulted to True,
    drawing a bar on a terminal's stderr from a library call nobody asked to report."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    _, data, graph, _ = mlp
    drawn = {}
    for asked in (False, True):
        monkeypatch.setattr(sys, "stderr", Terminal())
        calibrate(graph, data) if not asked else calibrate(graph, data, progress=True)
        drawn[asked] = sys.stderr.getvalue()
    assert drawn[False] == "" and "calibrating" in drawn[True]


def test_a_simulation_s_bad_inputs_are_not_called_calibration_data(mlp):
    """A library user's trial: QuantizedModel.run on an input holding NaN was refused as
    "NaN is no value to calibrate on", and an empty batch as an "empty calibration set"."""
    _, data, graph, calibration = mlp
    model = quantize(graph, calibration)
    bad = data["input"][:2].copy()
    bad[1, 0] = np.nan
    with pytest.raises(UserError, match=r"^inputs: .*NaN.*\(integer codes hold no NaN\)$"):
        model.run({"input": bad})
    with pytest.raises(UserError, match=r"^inputs: input 'input': no samples$"):
        model.run({"input": bad[:0]})
    with pytest.raises(UserError, match=r"calibrate on\)$"):
        calibrate(graph, {"input": bad})


def test_a_python_declaration_of_a_standard_op_type_is_compared_with_onnxruntime(mlp):
    """A library user's trial: operators={"Relu": Operator(..., onnx_type="Relu")} whose
    expression is another function quantized every Relu by that function's rule, with no
    word said, where `--operators` refuses such a file before any work."""
    path, data, _, _ = mlp
    wrong = {"Relu": Operator("MyRelu", "x", "max(0, x) + x/8", onnx_type="Relu")}
    said = ("operators: 'Relu': operator 'MyRelu' declares ONNX Relu, but its expression "
            "gives ")
    with pytest.raises(UserError, match=re.escape(said)):
        load_model(path, wrong)
    right = {"Relu": Operator("MyRelu", "x", "max(0, x)", onnx_type="Relu")}
    graph = load_model(path, right)
    assert quantize(graph, calibrate(graph, data, operators=right), operators=right)


def test_an_operator_keyed_by_another_op_type_than_its_own_is_refused(mlp):
    """A library user's trial: operators={"Rleu": Operator(..., onnx_type="Relu")} matched
    no node (nodes are matched by the key) and left the catalog's declaration in its place,
    with no word said; a key of the op type alone for a domain's declaration stays allowed."""
    path = mlp[0]
    op = Operator("MyRelu", "x", "max(0, x)", onnx_type="Relu")
    with pytest.raises(UserError, match=r"^operators: key 'Rleu' holds operator 'MyRelu' of "
                                        r"onnx_type 'Relu': nodes are matched by the key"):
        load_model(path, {"Rleu": op})
    custom = Operator("Mine", "x", "2*x", onnx_type="com.acme:Mine")
    assert load_model(path, {"Mine": custom, "com.acme:Mine": custom, "Relu": op})


def test_load_model_given_the_data_file_names_calibrate_too(tmp_path):
    """A library user's trial: load_model("calib.npz") was told the data go "after
    quantize's --calib", the command line's word alone."""
    np.savez(tmp_path / "calib.npz", x=np.zeros((2, 3), np.float32))
    with pytest.raises(UserError, match=r"--calib, or to calibrate\(graph, data\) in Python$"):
        load_model(tmp_path / "calib.npz")


def test_a_path_or_onnx_model_where_a_graph_goes_is_told_to_load_it(mlp):
    """A hostile-input hunt: calibrate, quantize, plan_model and prepare given the model's path
    (or its onnx.ModelProto) failed deep inside with AttributeError ('str' object has no
    attribute 'nodes')."""
    from ptq_verify.engine import plan_model, prepare

    path, data, _, calibration = mlp
    calls = {"calibrate": lambda g: calibrate(g, data, progress=False),
             "quantize": lambda g: quantize(g, calibration), "plan_model": plan_model,
             "prepare": prepare}
    for given, kind in ((str(path), "str"), (onnx.load(path), "ModelProto")):
        for name, call in calls.items():
            with pytest.raises(UserError, match=rf"^{name}: takes the Graph that "
                                                rf"load_model\(path\) returns, not {kind}"):
                call(given)


class _BFloat16Tensor:
    """A float tensor of a type numpy lacks, as torch's bfloat16 is to numpy."""

    def is_floating_point(self) -> bool:
        return True

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Got unsupported ScalarType BFloat16")


def test_a_float_tensor_numpy_has_no_type_for_is_told_to_cast_it(mlp):
    """A hostile-input hunt: a bfloat16 tensor was told to pass tensor.detach().cpu().numpy(),
    which fails as numpy has no bfloat16; float32 is what numpy reads."""
    _, _, graph, _ = mlp
    for given in (_BFloat16Tensor(), {"input": _BFloat16Tensor()}):
        with pytest.raises(UserError, match=r"ScalarType BFloat16\); pass a numpy array "
                                            r"\(torch: tensor\.detach\(\)\.cpu\(\)\.float\(\)"):
            calibrate(graph, given, progress=False)


def test_calibration_data_as_batches_says_how_to_join_them(mlp):
    """A newcomer trial: a DataLoader's batches (a generator here) were refused with no word
    of how to make the one array per input the API takes."""
    _, data, graph, _ = mlp
    with pytest.raises(UserError, match=r"not generator; the model takes 'input': \{'input': "
                                        r"\.\.\.\}; batches .* np\.concatenate\(batches\)"):
        calibrate(graph, (b for b in [data["input"][:20], data["input"][20:]]), progress=False)


def test_calibration_data_under_another_name_is_told_the_dict_to_pass(mlp):
    """A newcomer trial: calibrate(graph, {"images": array}) for a model whose input is
    'input' was told to np.savez a file, which the API does not read."""
    _, data, graph, _ = mlp
    with pytest.raises(UserError) as caught:
        calibrate(graph, {"images": data["input"]}, progress=False)
    assert str(caught.value).endswith("if 'images' holds what the model takes as 'input', "
                                      "key it by that name: {'input': array}")


@pytest.mark.parametrize(("option", "match"), [
    ({"bits": "8"}, r"bits '8': must be an integer"),
    ({"bits": 17}, r"bits 17: must be from 2 to 16"),
    ({"runtime": "tensorrt"}, r"runtime 'tensorrt': choose one of onnxruntime, numpy"),
    ({"batch_size": 0}, r"batch_size 0: must be an integer of 1 or more"),
])
def test_calibrate_refuses_bad_options(mlp, option, match):
    """bits="8" had raised a TypeError deep inside; bits=17, runtime="tensorrt" (run in
    onnxruntime, unsaid) and batch_size=0 had been taken."""
    _, data, graph, _ = mlp
    with pytest.raises(UserError, match=match):
        calibrate(graph, data, progress=False, **option)


def test_calibrate_keeps_the_tensors_named_and_refuses_a_name_the_model_lacks(mlp):
    """A hostile-input hunt: keep= with a misspelt name was dropped in silence, and one name
    given as a string was read as its letters."""
    _, data, graph, _ = mlp
    tensor = graph.nodes[0].outputs[0]
    assert tensor in calibrate(graph, data, progress=False, keep=tensor).kept
    with pytest.raises(UserError, match=r"keep names 'no_such_tensor', which is no input"):
        calibrate(graph, data, progress=False, keep=[tensor, "no_such_tensor"])


@pytest.mark.parametrize("calibration", [None, "data"])
def test_quantize_without_a_calibration_says_to_calibrate(mlp, calibration):
    _, data, graph, _ = mlp
    with pytest.raises(UserError, match=r"^quantize: calibration is (NoneType|dict), not the "
                                        r"Calibration .*calibrate first"):
        quantize(graph, data if calibration == "data" else None)


def test_a_calibration_of_another_model_is_refused(tmp_path, mlp):
    """A KeyError from the executor before (a CNN's calibration given with an MLP)."""
    path = tmp_path / "cnn.onnx"
    onnx.save(models.cnn("Relu"), path)
    cnn = load_model(path)
    other = calibrate(cnn, {"input": models.digits(8, image=True)}, progress=False)
    with pytest.raises(UserError, match=r"mlp.onnx: the calibration has no statistics of .*"
                                        r"made of another model"):
        quantize(mlp[2], other)


def test_a_calibration_without_the_histograms_a_width_reads_is_refused(mlp):
    """Calibrated at 8 bits (auto: max-abs, no histogram), quantized to 4 (auto: MSE
    clipping reads one): a ValueError from the clipping before."""
    _, data, graph, _ = mlp
    at_8 = calibrate(graph, data, bits=8, progress=False)
    with pytest.raises(UserError, match=r"calibrated for 8 bits.*quantized to 4 bits.*"
                                        r"calibrate\(\.\.\., bits=4\)"):
        quantize(graph, at_8, bits=4)
    assert quantize(graph, at_8, bits=8).bits == 8


def test_float_tensors_as_one_string_is_refused(mlp):
    """A str was iterated letter by letter ("'1' is not an activation")."""
    _, _, graph, calibration = mlp
    name = next(iter(calibration.stats))
    with pytest.raises(UserError, match=r"float_tensors=.*a list of tensor names"):
        quantize(graph, calibration, float_tensors=name)


def test_to_onnx_names_its_options(mlp):
    """It took **options: help() listed none, and a misspelt one was refused by an internal
    function's name (lower()); an encoding for another format than qdq was ignored."""
    _, _, graph, calibration = mlp
    model = quantize(graph, calibration)
    assert list(inspect.signature(QuantizedModel.to_onnx).parameters) == [
        "self", "format", "encoding"]
    with pytest.raises(TypeError, match=r"to_onnx\(\) got an unexpected keyword"):
        model.to_onnx("qdq", encodin="u8s8")
    with pytest.raises(UserError, match=r"encoding 's8s8': applies to format qdq only"):
        model.to_onnx("integer", encoding="s8s8")
    assert model.to_onnx("qdq", encoding="s8s8").graph.node


@pytest.mark.parametrize("operators", [
    [Operator("Twice", "x", "2*x", onnx_type="com.example:Twice")],
    {"com.example:Twice": "2*x"},
])
def test_operators_that_are_not_a_dict_of_operators_are_refused(mlp, operators):
    """A list had raised a TypeError in dict(); a formula where an Operator belongs was kept."""
    with pytest.raises(UserError, match=r"^operators: "):
        load_model(mlp[0], operators)


def test_equalize_takes_operators_as_a_dict(tmp_path):
    """docs/engine.md gives operators as a dict; equalize (and absorb, smooth, costliest) had
    used the dict as a table: an AttributeError."""
    path = tmp_path / "cnn.onnx"
    onnx.save(models.cnn("Relu"), path)
    graph = load_model(path)
    declared = {"com.example:Twice": Operator("Twice", "x", "2*x",
                                             onnx_type="com.example:Twice")}
    equalize(graph, declared, data={"input": models.digits(8, image=True)})


def test_recheck_takes_the_verdict_classify_returns():
    """recheck_certificate read only the verdict's JSON: given the Verdict, an
    AttributeError on .get."""
    from ptq_verify.rules import classify
    from ptq_verify.rules.recheck import recheck_certificate

    op = Operator("Leaky", "x", "where(x > 0, x, alpha*x)", params={"alpha": 0.1})
    verdict = classify(op)
    assert recheck_certificate(op, verdict) == recheck_certificate(op, verdict.to_json()) == []


def test_bits_given_as_a_numpy_integer_are_taken(mlp):
    _, _, graph, calibration = mlp
    assert quantize(graph, calibration, bits=np.int64(8)).bits == 8


def _documented(signature_text: str) -> list[tuple[str, str | None]]:
    """(name, default text or None) per parameter of ``f(a, b=1, *, c="x")`` as docs write it."""
    inside = signature_text[signature_text.index("(") + 1:signature_text.rindex(")")]
    parts, depth, current = [], 0, ""
    for char in inside:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return [(name.strip(), default.strip() if sep else None)
            for name, sep, default in (part.partition("=") for part in parts if part != "*")]


def test_the_pipeline_table_gives_the_signatures_the_code_has():
    """docs/engine.md's table had left out parameters (calibrate's batch_size and progress,
    to_onnx's encoding hidden in **options) and keyword-only markers; every parameter and
    default it names must be the code's, in order."""
    import ast
    import re
    from pathlib import Path

    from ptq_verify import engine
    from ptq_verify.engine import absorb, equalize, sensitivity, smooth, smoothed_calibration

    functions = {
        "load_model": engine.load_model, "equalize.equalize": equalize.equalize,
        "absorb.absorb": absorb.absorb, "smooth.smooth": smooth.smooth,
        "smoothed_calibration.smoothed_and_calibrated":
            smoothed_calibration.smoothed_and_calibrated,
        "plan_model": engine.plan_model, "calibrate": engine.calibrate,
        "sensitivity.costliest": sensitivity.costliest, "quantize": engine.quantize,
        "QuantizedModel.to_onnx": QuantizedModel.to_onnx,
    }
    text = (Path(__file__).parents[1] / "docs" / "engine.md").read_text()
    table = text[text.index("## Pipeline"):text.index("## Formulation")]
    for name, function in functions.items():
        # (in its own row's cell, or the smooth row's "through `...`", not where a row
        # mentions one of its parameters: `quantize(calibrated_unsigned=...)`)
        found = re.search(r"(?:\| |through )`" + re.escape(name) + r"(\([^`]*)`", table)
        assert found, name
        documented = _documented(found.group(1).split(" -> ")[0])
        actual = [p for p in inspect.signature(function).parameters.values()
                  if p.name != "self"]
        assert [n for n, _ in documented] == [p.name for p in actual], name
        for (_, default), parameter in zip(documented, actual):
            if default is None:
                assert parameter.default is inspect.Parameter.empty, (name, parameter.name)
                continue
            try:
                value = ast.literal_eval(default)
            except (ValueError, SyntaxError):  # (a name: None is literal, a table is not)
                continue
            assert value == parameter.default, (name, parameter.name)


@pytest.mark.parametrize(("call", "match"), [
    (lambda classify: classify("x*2"), r"^classify: takes an Operator, not str: Operator\("),
    (lambda classify: classify(Operator("Twice", "x", "2*x"), timeout="5"),
     r"^classify: timeout '5': a number of seconds above 0"),
    (lambda classify: classify(Operator("Twice", "x", "2*x"), timeout=0),
     r"^classify: timeout 0: a number of seconds above 0"),
    (lambda classify: classify(Operator("Twice", "x", "2*x"), timeout=1e300),
     r"^classify: timeout 1e\+300: a number of seconds above 0 and at most 1e\+06"),
    (lambda classify: classify(Operator("Twice", "x", "2*x"), timeout=float("inf")),
     r"^classify: timeout inf: a number of seconds above 0 and at most"),
    (lambda _: __import__("ptq_verify.rules.shift", fromlist=["shift_rule"]).shift_rule(
        Operator("Twice", "x", "2*x"), timeout=1e300), r"^shift_rule: timeout 1e\+300"),
])
def test_classify_refuses_what_is_not_an_operator_or_a_timeout(call, match):
    """A str raised a TypeError from the weak-reference cache, timeout="5" one from
    setitimer; timeout=0 ran with no bound (0 is falsy to the budget). A hostile-input hunt:
    1e300 or inf, which the command line bounds, raised an OverflowError from the alarm."""
    from ptq_verify.rules import classify

    with pytest.raises(UserError, match=match):
        call(classify)


def test_a_graph_equalized_after_calibrating_is_refused():
    """equalize changes the weights in place and keeps every tensor's name: quantize built
    the plan on the ranges of the graph as it was, in silence (weight rounding on the old
    graph's onnxruntime session too). The shipped cnn_relu equalizes conv1 -> conv2."""
    from pathlib import Path

    import ptq_verify

    examples = Path(ptq_verify.__file__).parent / "examples"
    data = {name: array[:48] for name, array in np.load(examples / "cnn_relu.calib.npz").items()}
    graph = load_model(examples / "cnn_relu.onnx")
    calibration = calibrate(graph, data, progress=False)
    assert equalize(graph, data=data), "cnn_relu's conv1 -> conv2 is equalized"
    with pytest.raises(UserError, match=r"constants changed since calibrate ran on this "
                                        r"graph \('.*'\): its calibrated ranges are stale"):
        quantize(graph, calibration)
    assert quantize(graph, calibrate(graph, data, progress=False)).bits == 8


def test_an_undeclared_op_says_how_to_declare_it_from_python(tmp_path):
    """The refusal of an op type with no declaration named only the command line's way
    (--operators), where a library user passes operators= (an API trial)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Swish2", ["x"], ["y"], name="act", domain="my.ops")], "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("my.ops", 1)]), path)
    with pytest.raises(UserError, match=r"node 'act' \(Swish2.*--operators \(from Python: an "
                                        r"Operator in operators= of load_model, calibrate"):
        calibrate(load_model(path), {"x": np.ones((2, 4), np.float32)}, progress=False)


@pytest.mark.parametrize("output_batch", ["batch", "y_batch"])
def test_an_output_with_its_batch_on_another_axis_is_joined_along_it(tmp_path, output_batch):
    """A model taking x (batch, 4, 8) to y (4, batch, 8) (a sequence-first output, as an
    LSTM's final state is): QuantizedModel.run on 300 samples runs batches of 256 and 44,
    which had been joined along axis 0, a ValueError; equal batches would have joined into
    another layout than the model's. With the output's batch named apart from the input's
    ('y_batch', as torch's legacy export names unnamed dynamic axes), the batches join along
    the one axis their lengths differ on (a streaming trial's final state)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Transpose", ["h"], ["y"], perm=[1, 0, 2])], "sequence_first_out",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, output_batch, 8])],
        [numpy_helper.from_array(weight, "w")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(1).standard_normal((300, 4, 8)).astype(np.float32)
    loaded = load_model(path)
    simulated = quantize(loaded, calibrate(loaded, {"x": x}, progress=False), 8).run({"x": x})
    expected = np.matmul(x, weight).transpose(1, 0, 2)
    assert simulated["y"].shape == expected.shape
    assert np.max(np.abs(simulated["y"] - expected)) < 0.05 * np.max(np.abs(expected))
