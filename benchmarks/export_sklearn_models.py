"""scikit-learn models exported by skl2onnx, as scikit-learn users export them: the test
fixtures, and (``--measure``) the new-user trial's table.

skl2onnx writes graphs no other exporter writes: operators of the ``ai.onnx.ml`` domain
(Scaler, Normalizer, LinearClassifier, LinearRegressor, TreeEnsembleClassifier, SVMClassifier)
for float32 inputs, the same models in standard ONNX ops (Sub, Div, Mul, MatMul, Softmax) for
float64 inputs, and by default a ZipMap whose output is a sequence of maps, not a tensor
(``options={id(model): {"zipmap": False}}`` leaves the probabilities a tensor). Data: the
datasets bundled with scikit-learn (digits, iris, wine, breast cancer, diabetes; nothing is
downloaded), 70% to train and calibrate on, 30% held out.

Fixtures (``tests/fixtures/sklearn/``, used by tests/test_sklearn_exports.py):

    wine_minmax_logreg.skl2onnx.f64.onnx    MinMaxScaler -> LogisticRegression on the raw
                                            wine features (proline up to 1680 beside hue
                                            0.5-1.7), float64 input: Cast, Mul, Add, MatMul
    wine_standard_logreg.skl2onnx.f64.onnx  StandardScaler -> LogisticRegression, the same
                                            data: Cast, Sub, Div, MatMul
    digits_mlp.skl2onnx.f32.onnx            MLPClassifier (64 relu units) on the digits'
                                            0-16 pixels, float32, no ZipMap
    iris_logreg.skl2onnx.f32.zipmap.onnx    LogisticRegression with skl2onnx's defaults:
                                            LinearClassifier, Normalizer, ZipMap
    iris_svc.skl2onnx.f64.onnx              StandardScaler -> SVC (RBF), float64 input: Sub,
                                            Div, ai.onnx.ml's SVMClassifier (float scores),
                                            a Cast to double, comparisons, and
                                            ArrayFeatureExtractor of the votes
    wine.{calib,test}.npz, digits_raw.{calib,test}.npz, iris.{calib,test}.npz
                                            input ``X`` (float32 for the digits, float64
                                            else), labels ``y`` in the test files

``--measure [--keep DIR]``: trains every model of the trial (MLPClassifier relu / tanh /
logistic, MLPRegressor, LogisticRegression, SGDClassifier, LinearSVC, Ridge, scaler and PCA
pipelines, KNeighborsClassifier, SVC, DecisionTree, RandomForest), exports each at skl2onnx's
default opset with float32 and float64 inputs, with and without ZipMap, and runs ``ptq-verify
audit``, ``ptq-verify quantize`` (qdq and integer) and onnxruntime's quantize_static
(``benchmarks/ort_peer.py --per-channel``) on it, each in its own process; prints one row a file:
label agreement with the float model and SQNR of the probabilities (scores, predictions) on the
held-out split, or the one line a refusal gave. A few minutes on 2 cores.

skl2onnx is not among the bench extra's packages; install it beside them, without its
dependencies (scikit-learn, onnx, numpy and protobuf are there already):

    pip install --no-deps --target /tmp/skl2onnx-pkgs skl2onnx==1.20.0 onnxconverter-common==1.16.0
    PYTHONPATH=/tmp/skl2onnx-pkgs python benchmarks/export_sklearn_models.py [--measure]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from fixture_files import save_model, save_npz
from skl2onnx import to_onnx
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
)
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, Normalizer, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sklearn"
PEER = Path(__file__).resolve().parent / "ort_peer.py"
LOADERS = {"digits": load_digits, "iris": load_iris, "wine": load_wine,
           "cancer": load_breast_cancer, "diabetes": load_diabetes}
REGRESSION = ("diabetes",)
ADVICE_ROUNDS = 4  # refusals followed, each naming one more op type for --float-op


def split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train X, held-out X, train y, held-out y) of a bundled dataset: 30% held out."""
    x, y = LOADERS[name](return_X_y=True)
    return train_test_split(x, y, test_size=0.3, random_state=0,
                            stratify=None if name in REGRESSION else y)


def trial_models() -> dict[str, tuple[str, object]]:
    """The trial's estimators by name, each with the dataset it is trained on."""
    def mlp(activation: str, units: int = 64) -> MLPClassifier:
        return MLPClassifier((units,), activation=activation, max_iter=800, random_state=0)

    def regressor(activation: str) -> Pipeline:
        return make_pipeline(StandardScaler(), MLPRegressor(
            hidden_layer_sizes=(32,), activation=activation, max_iter=800, random_state=0))

    return {
        "digits_mlp_relu": ("digits", mlp("relu")),
        "digits_mlp_tanh": ("digits", mlp("tanh")),
        "digits_mlp_logistic": ("digits", mlp("logistic")),
        "iris_mlp_relu": ("iris", mlp("relu", 16)),
        "diabetes_mlpreg_relu": ("diabetes", regressor("relu")),
        "diabetes_mlpreg_tanh": ("diabetes", regressor("tanh")),
        "diabetes_mlpreg_logistic": ("diabetes", regressor("logistic")),
        "digits_logreg": ("digits", LogisticRegression(max_iter=2000)),
        "iris_logreg": ("iris", LogisticRegression(max_iter=2000)),
        "digits_sgd": ("digits", SGDClassifier(random_state=0)),
        "wine_linearsvc": ("wine", make_pipeline(StandardScaler(), LinearSVC())),
        "diabetes_ridge": ("diabetes", Ridge()),
        "digits_scaler_pca_mlp": ("digits", Pipeline([("scale", StandardScaler()),
                                                      ("pca", PCA(30)), ("mlp", mlp("relu"))])),
        "wine_minmax_logreg": ("wine", make_pipeline(MinMaxScaler(),
                                                     LogisticRegression(max_iter=2000))),
        "wine_standard_logreg": ("wine", make_pipeline(StandardScaler(),
                                                       LogisticRegression(max_iter=2000))),
        "cancer_standard_mlp": ("cancer", make_pipeline(StandardScaler(), mlp("relu", 32))),
        "cancer_minmax_mlp": ("cancer", make_pipeline(MinMaxScaler(), mlp("tanh", 32))),
        "digits_normalizer_mlp": ("digits", make_pipeline(Normalizer(), mlp("relu"))),
        "iris_knn": ("iris", KNeighborsClassifier(5)),
        "iris_svc_rbf": ("iris", make_pipeline(StandardScaler(), SVC())),
        "iris_tree": ("iris", DecisionTreeClassifier(max_depth=4, random_state=0)),
        "digits_forest": ("digits", RandomForestClassifier(20, max_depth=8, random_state=0)),
    }


def fitted(dataset: str, estimator):
    """The estimator fitted on the training split (warnings of slow convergence muted)."""
    x, _, y, _ = split(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(x, y)


def export(estimator, sample: np.ndarray, zipmap: bool | None) -> onnx.ModelProto:
    """skl2onnx's export at its default opset for inputs of ``sample``'s type; without ZipMap
    on the final classifier when ``zipmap`` is False (None: a regressor, which has none)."""
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    options = None if zipmap in (True, None) else {id(final): {"zipmap": False}}
    return to_onnx(estimator, sample[:1], options=options)


def write_fixtures() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    models = trial_models()
    wine_train, wine_test, _, wine_y = split("wine")
    for name in ("wine_minmax_logreg", "wine_standard_logreg"):
        model = export(fitted(*models[name]), wine_train, zipmap=False)
        save_model(model, FIXTURES / f"{name}.skl2onnx.f64.onnx")
    save_npz(FIXTURES / "wine.calib.npz", X=wine_train)
    save_npz(FIXTURES / "wine.test.npz", X=wine_test, y=wine_y)
    digits_train, digits_test, _, digits_y = split("digits")
    digits_train, digits_test = digits_train.astype(np.float32), digits_test.astype(np.float32)
    model = export(fitted(*models["digits_mlp_relu"]), digits_train, zipmap=False)
    save_model(model, FIXTURES / "digits_mlp.skl2onnx.f32.onnx")
    save_npz(FIXTURES / "digits_raw.calib.npz", X=digits_train[:256])
    save_npz(FIXTURES / "digits_raw.test.npz", X=digits_test, y=digits_y)
    iris_train, iris_test, _, iris_y = split("iris")
    model = export(fitted(*models["iris_logreg"]), iris_train.astype(np.float32), zipmap=True)
    save_model(model, FIXTURES / "iris_logreg.skl2onnx.f32.zipmap.onnx")
    model = export(fitted(*models["iris_svc_rbf"]), iris_train, zipmap=False)
    save_model(model, FIXTURES / "iris_svc.skl2onnx.f64.onnx")
    save_npz(FIXTURES / "iris.calib.npz", X=iris_train)
    save_npz(FIXTURES / "iris.test.npz", X=iris_test, y=iris_y)


def _outputs(model: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    x = x.astype(np.float64 if feed.type == "tensor(double)" else np.float32)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {feed.name: x})))


def _compare(reference: dict[str, np.ndarray], quantized: dict[str, np.ndarray]) -> str:
    """Label agreement for integer outputs, SQNR for float ones."""
    figures = []
    for name, value in reference.items():
        got = np.asarray(quantized[name])
        if value.dtype.kind in "iu":
            figures.append(f"{100 * np.mean(value == got):.1f}%")
            continue
        noise = float(np.sum((value.astype(np.float64) - got) ** 2))
        power = float(np.sum(value.astype(np.float64) ** 2))
        figures.append("exact" if noise == 0 else f"{10 * np.log10(power / noise):.1f} dB")
    return ", ".join(figures)


def _run(command: list[str]) -> tuple[int, str]:
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    return done.returncode, (f"[{len(lines)} lines] " if len(lines) > 1 else "") + (
        lines[-1] if lines else "")


def _cell(code: int, message: str, model: Path, out: Path, test: np.ndarray) -> str:
    """A refusal's line (without the command and the file's path), or the figures; a file
    with no quantization node (quantize_static leaves float64 models as they are) is said so."""
    if code != 0:
        reason = message.split(": error: ")[-1].replace(f"{model}: ", "")
        return f"exit {code}: {reason[:100]}"
    if not any(node.op_type in ("QuantizeLinear", "DequantizeLinear", "MatMulInteger")
               for node in onnx.load(str(out)).graph.node):
        return "nothing quantized"
    return _compare(_outputs(model, test), _outputs(out, test))


def _float_op_advised(cli: list[str], model: Path, calib: Path, out: Path,
                      test: np.ndarray) -> str:
    """qdq with ``--float-op`` for each op type the refusals name, one run per refusal, as a
    user follows them: the figures and the op types kept in float, or '' where the first
    refusal names no such option."""
    kept: list[str] = []
    for _ in range(ADVICE_ROUNDS):
        code, message = _run([*cli, "quantize", str(model), "--calib", str(calib), "-o",
                              str(out), *(["--float-op", ",".join(kept)] if kept else [])])
        advised = re.search(r"--float-op (\w+)", message) if code else None
        if advised is None or advised.group(1) in kept:
            break
        kept.append(advised.group(1))
    if not kept:
        return ""
    return f"{','.join(kept)}: {_cell(code, message, model, out, test)}"


def measure(folder: Path) -> None:
    """The trial's table: one row per exported file."""
    cli = [sys.executable, "-m", "ptq_verify"]
    print("| file | audit | qdq | integer | qdq, --float-op as refusals advise | quantize_static |")
    print("|---|---|---|---|---|---|")
    for name, (dataset, estimator) in trial_models().items():
        train, test, _, _ = split(dataset)
        estimator = fitted(dataset, estimator)
        forms = [(dtype, zipmap) for dtype in (np.float32, np.float64)
                 for zipmap in ((None,) if dataset in REGRESSION else (True, False))]
        for dtype, zipmap in forms:
            stem = f"{name}.{np.dtype(dtype).name}" + ("" if dataset in REGRESSION else (
                ".zipmap" if zipmap else ".tensors"))
            path = folder / f"{stem}.onnx"
            try:
                onnx.save(export(estimator, train.astype(dtype), zipmap), path)
            except Exception as error:  # noqa: BLE001 (skl2onnx's own failure, reported)
                print(f"| {stem} | skl2onnx fails: {type(error).__name__}: "
                      f"{str(error)[:90]} | | | | |")
                continue
            calib = folder / f"{stem}.calib.npz"
            np.savez(calib, X=train.astype(dtype))
            code, message = _run([*cli, "audit", str(path)])
            cells = ["ok" if code == 0 else f"exit {code}"]
            for form in ("qdq", "integer"):
                out = folder / f"{stem}.{form}.onnx"
                code, message = _run([*cli, "quantize", str(path), "--calib", str(calib),
                                      "-o", str(out), "--format", form])
                cells.append(_cell(code, message, path, out, test))
            cells.append(_float_op_advised(cli, path, calib, folder / f"{stem}.float-op.onnx",
                                           test))
            out = folder / f"{stem}.peer.onnx"
            code, message = _run([sys.executable, str(PEER), str(path), str(calib), str(out),
                                  "--per-channel"])
            cells.append(_cell(code, message, path, out, test))
            print(f"| {stem} | " + " | ".join(cells) + " |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", action="store_true",
                        help="export every trial model and print the table (no fixtures)")
    parser.add_argument("--keep", type=Path, help="with --measure: the folder for the files")
    args = parser.parse_args()
    if not args.measure:
        write_fixtures()
        return 0
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        measure(args.keep)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        measure(Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
