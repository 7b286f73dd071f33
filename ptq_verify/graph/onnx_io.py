"""ONNX in and out: ``onnx.ModelProto`` <-> :class:`~ptq_verify.graph.model.Graph`."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import math
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper, serialization

from ..errors import UserError
from ..input_files import file_kind, require_file, torch_archive
from ..wording import first_few
from .model import Graph, Node, TensorInfo
from .provenance import written_quantized


@dataclass(frozen=True)
class ParsedFile:
    """An ONNX file as read (``data``) and parsed (``model``, its external tensors not read):
    what :func:`external_data_files` and :func:`read_model` both start from, for a caller
    that needs both to read and parse it once (all-MiniLM-L6-v2's 90 MB: 0.18 s a parse).
    The bytes let the checker take the model from memory (0.035 s) where it would read and
    parse the file again (0.10-0.11 s)."""

    model: onnx.ModelProto
    data: bytes


def parsed_file(path: str | os.PathLike) -> ParsedFile | None:
    """The ONNX file read and parsed (:class:`ParsedFile`); None when it cannot be (read_model
    says why)."""
    if _text_format(path) is not None:
        return None
    try:
        data = Path(path).read_bytes()
        with warnings.catch_warnings():  # read_model reports what they say
            warnings.simplefilter("ignore")
            return ParsedFile(onnx.load_model_from_string(data), data)
    except Exception:  # noqa: BLE001 - read_model reports a bad file in one line
        return None


def _text_format(path: str | os.PathLike) -> str | None:
    """The text format onnx.load would read ``path`` in, by its extension (``.onnxtxt``,
    ``.txtpb``, ``.json``), or None for the binary one. Such a file is refused in one line:
    onnx's checker and onnxruntime read binary files only (the checker had called a valid
    textproto model an invalid protobuf, and a malformed one had been an internal error)."""
    found = serialization.registry.get_format_from_file_extension(os.path.splitext(path)[1])
    return None if found in (None, "protobuf") else found


def external_data_files(path: str | os.PathLike,
                        parsed: ParsedFile | None = None) -> list[Path]:
    """The files a model keeps its external tensors in (``model.onnx.data`` of torch's dynamo
    exporter), so that no output is written over them; [] when there are none or the model
    cannot be read (reading it later says why). ``parsed``: the file as :func:`parsed_file`
    gave it, where the caller has it."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    source = Path(path)
    parsed = parsed if parsed is not None else parsed_file(source)
    if parsed is None:
        return []
    model = parsed.model
    try:
        with warnings.catch_warnings():  # an unknown key: read_model refuses it
            warnings.simplefilter("ignore")
            return sorted({source.parent / ExternalDataInfo(tensor).location
                           for tensor in _get_all_tensors(model) if uses_external_data(tensor)})
    except ValueError:  # a length or offset that is not a number >= 0: read_model says so
        return []


PROTOBUF_LIMIT = 2**31 - 1
"""The largest message protobuf serialises: a model past it lives only with external data."""


def _tensor_bytes(model: onnx.ModelProto) -> int:
    """About the bytes of the graph's initializers (their raw data's length: a tensor of 2 GB
    or more has no ByteSize either)."""
    return sum(len(t.raw_data) if t.HasField("raw_data") else t.ByteSize()
               for t in model.graph.initializer)


_EXPORT = "export the model to ONNX first (torch.onnx.export), and give that file"
_SWAPPED = ("calibration data? Give the ONNX model here; the data goes after quantize's "
            "--calib, or to calibrate(graph, data) in Python")  # (load_model says it too)


def not_onnx_kind(source: Path) -> str | None:
    """What a file protobuf cannot parse is, where its first bytes say, with the step to take:
    a newcomer gives the PyTorch checkpoint, or swaps the model and --calib, and was told
    'Wire format was corrupt'. None for any other file."""
    import zipfile

    with source.open("rb") as handle:
        start = handle.read(16)
    if zipfile.is_zipfile(source):
        with contextlib.suppress(zipfile.BadZipFile, OSError):
            with zipfile.ZipFile(source) as archive:
                names = archive.namelist()
            if torch_kind := torch_archive(names):
                return f"{torch_kind}, not an ONNX model: {_EXPORT}"
            if names and all(name.endswith(".npy") for name in names):
                return f"numpy arrays (.npz), not an ONNX model: {_SWAPPED}"
    if start.startswith(b"\x93NUMPY"):
        return f"a numpy array (.npy), not an ONNX model: {_SWAPPED}"
    if start.startswith(b"\x80"):
        return f"a pickle (torch.save's legacy form?), not an ONNX model: {_EXPORT}"
    if len(start) > 8 and start[8:9] == b"{":
        return f"a safetensors file (weights without the graph), not an ONNX model: {_EXPORT}"
    if (kind := file_kind(start)) is not None:  # (a Keras, TensorFlow Lite or GGUF model)
        return (f"{kind}, not an ONNX model: convert the model to ONNX first (tf2onnx takes "
                "Keras and TensorFlow Lite models), and give that file")
    return None


def _refuse_missing_data(source: Path) -> None:
    """Refuse a model whose external data file is not there by its name: onnx says the file
    'is not regular file', which for a model copied without its ``.data`` (or the two moved
    apart) names neither the cause nor the step."""
    missing = next((path for path in external_data_files(source)
                    if not os.path.lexists(path)), None)
    if missing is not None:
        where = os.path.relpath(missing, source.parent)
        raise UserError(f"{source}: its external data file {where!r} is missing (the model "
                        "keeps its weights there, beside it: copy or move the two files "
                        "together)")


def read_model(path: str | os.PathLike, parsed: ParsedFile | None = None) -> onnx.ModelProto:
    """Read and check an ONNX file; any defect is a one-line :class:`UserError`. ``parsed``:
    the file as :func:`parsed_file` gave it, where the caller has it (taken over: its
    external tensors are read into it)."""
    source = require_file(path, "model file")
    if (text := _text_format(source)) is not None:
        raise UserError(f"{source}: by its extension, a model in onnx's {text} text format; "
                        "ptq-verify reads binary ONNX files: save it as one with "
                        "onnx.save(onnx.load(PATH), 'model.onnx')")
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    try:  # onnx.load's two steps, to learn whether the file keeps tensors outside it
        # onnx's warnings are caught, not printed (an unknown external data key had spilled
        # ten lines of UserWarning on stderr): those about the external data are the error
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parsed = parsed if parsed is not None else parsed_file(source)
            # (onnx.load again where it could not be parsed: for the error it raises)
            model = parsed.model if parsed is not None else onnx.load(
                str(source), load_external_data=False)
            external = any(uses_external_data(tensor) for tensor in _get_all_tensors(model))
            onnx.load_external_data_for_model(model, os.path.dirname(os.path.abspath(source)))
    except onnx.checker.ValidationError as err:  # external data outside the model's folder
        _refuse_missing_data(source)
        why = _first_line(err)
        # a Hugging Face cache keeps every file of a snapshot as a link into its blobs
        hint = ("; onnx reads external data through no link: copy the model's folder with "
                "its links followed (cp -rL) and give the copy") if "symbolic link" in why else ""
        raise UserError(f"{source}: unsafe or missing external data ({why}){hint}") from None
    except (DecodeError, ValueError, OSError, RuntimeError, MemoryError) as err:
        kind = not_onnx_kind(source)
        if kind is not None:
            raise UserError(f"{source}: {kind}") from None
        raise UserError(f"{source}: not a readable ONNX model ({_first_line(err)})") from None
    about_data = [w for w in caught if "external_data" in Path(w.filename).name]
    if about_data:  # onnx ignores what it warns of; onnxruntime refuses the model
        more = f" (and {len(about_data) - 1} more such warnings)" if len(about_data) > 1 else ""
        raise UserError(f"{source}: invalid external data, which onnxruntime refuses (onnx: "
                        f"{_first_line(about_data[0].message)}{more})")
    if not model.graph.node:
        raise UserError(f"{source}: the ONNX model has no nodes (corrupt or truncated file?)")
    bad = _non_utf8_string(model)
    if bad is not None:
        raise UserError(f"{source}: invalid ONNX model (a {bad} is not UTF-8 text)")
    checked = _with_io_shapes(model)
    # a model whose external tensors make it 2 GB or more cannot be serialised for the
    # checker (protobuf's limit: an internal error, EncodeError); its file, which holds the
    # tensors' places and not their values, is checked instead, as onnx advises
    huge = external and checked is model and _tensor_bytes(model) >= PROTOBUF_LIMIT
    try:
        # the file itself where it holds the very model checked, from its bytes where they
        # were read (all-MiniLM-L6-v2: 0.035 s; from the file 0.10-0.17 s, where serialising
        # the loaded model for the checker took 0.33 s)
        with _stdout_to_stderr():
            onnx.checker.check_model(str(source) if huge else checked
                                     if checked is not model or external
                                     else parsed.data if parsed is not None else str(source))
    except onnx.checker.ValidationError as err:
        raise UserError(f"{source}: invalid ONNX model ({_checker_message(err)})") from None
    except UnicodeDecodeError:  # the checker's message quotes a name that is not UTF-8
        raise UserError(f"{source}: invalid ONNX model (a name or string is not UTF-8)") from None
    _densify_sparse_initializers(model.graph, str(source))
    return model


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what C++ code writes on the process's standard output to its standard error for
    the block. onnx's checker prints `Warning: Model contains experimental ops: ImageScaler`
    on standard output (an old model's ImageScaler, the zoo's tiny-yolov2), which made
    `audit --json` and `quantize --json` print something that is not JSON (a new-user trial).
    Nothing is redirected where standard output has no file descriptor (a test's capture)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    """fflush(NULL): C++ iostreams synced with C stdio leave their text in stdio's buffer,
    which would reach standard output after it is restored."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library to ask (not on this platform)
        pass


def _non_utf8_string(message) -> str | None:
    """The name of the first string field that is not UTF-8 (protobuf hands such a field over
    as bytes, and every name of the model ends up in messages and tables), or None. Only
    string and message fields are read: ``ListFields`` would also hand over every tensor's
    ``raw_data`` as a fresh bytes copy (all-MiniLM-L6-v2: 90 MB, 0.04 s)."""
    stack = [message]
    while stack:
        current = stack.pop()
        for field, repeated in _text_fields(current.DESCRIPTOR):
            if not repeated and not current.HasField(field.name):
                continue
            value = getattr(current, field.name)
            values = value if repeated else [value]
            if field.type == field.TYPE_MESSAGE:
                stack.extend(values)
            elif any(not isinstance(v, str) for v in values):
                return f"{current.DESCRIPTOR.name}.{field.name}"
    return None


@functools.cache
def _text_fields(descriptor) -> tuple:
    """A message type's string and message fields, each with whether it is repeated."""
    return tuple((field, _repeated(field)) for field in descriptor.fields
                 if field.type in (field.TYPE_STRING, field.TYPE_MESSAGE))


def _repeated(field) -> bool:
    """Whether a protobuf field is repeated (protobuf 6 has ``label``, 7 ``is_repeated``
    only)."""
    return field.is_repeated if hasattr(field, "is_repeated") else (
        field.label == field.LABEL_REPEATED)


def _checker_message(err: BaseException, limit: int = 400) -> str:
    """onnx's checker message on one line: its later lines say where (a node unsorted or
    reading a tensor nobody computes: "input 'ghost' of node: / name: relu OpType: Add / is
    not output of any previous nodes"; the first line alone ended at "of node:")."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo | None:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return None
    tensor = value.type.tensor_type
    try:
        dtype = (
            np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))
            if tensor.elem_type
            else np.dtype(np.float32)
        )
    except (KeyError, TypeError):
        raise UserError(f"tensor {value.name!r}: unknown element type {tensor.elem_type}") from None
    shape = None
    if tensor.HasField("shape"):
        shape = tuple(declared_dimension(d) for d in tensor.shape.dim)
    return TensorInfo(value.name, shape, dtype)


def declared_dimension(dim: onnx.TensorShapeProto.Dimension) -> int | str | None:
    """A stated dimension as the graph holds it: its length, its name, or None where the
    file states it unknown. paddle2onnx writes an unknown length as -1 and an unknown name as
    '?' (ONNX's printers' mark for it), both of which onnxruntime runs as free: read as a
    length, -1 had made a fixed batch of -1 that split the data into no batch (audit's
    internal error on PP-OCR's classifier), and read as a name, '?' on height and width had
    bound them to one length (quantize refused 48x192 text lines). A name without a letter
    or digit names nothing."""
    if dim.HasField("dim_value"):
        return dim.dim_value if dim.dim_value >= 0 else None
    return dim.dim_param if any(c.isalnum() for c in dim.dim_param) else None


def _attribute(attr: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return _array(value)
    return value


def _dense(sparse: onnx.SparseTensorProto, what: str = "sparse tensor") -> np.ndarray:
    """A sparse tensor's dense value (indices linear [n] or coordinates [n, rank]); a
    UserError naming ``what`` when it is malformed, or larger dense than constant folding's
    bound (a few bytes may claim dims of (10**6, 10**6))."""
    from .static import MAX_FOLDED_ELEMENTS  # (it imports this module)

    shape = tuple(sparse.dims)
    elements = math.prod(shape)
    if any(d < 0 for d in shape) or elements > MAX_FOLDED_ELEMENTS:
        raise UserError(f"{what} of shape {shape}: holds {elements} elements dense, more than "
                        f"the {MAX_FOLDED_ELEMENTS} a constant may hold" if elements > 0 else
                        f"{what}: a negative dimension in shape {shape}")
    try:
        values = numpy_helper.to_array(sparse.values).reshape(-1)
        indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
        flat = (indices.reshape(-1) if indices.ndim <= 1
                else np.ravel_multi_index(tuple(indices.T), shape))
        dense = np.zeros(elements, dtype=values.dtype)
        dense[flat] = values
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise UserError(f"{what}: its indices and values do not fit shape {shape} "
                        f"({_first_line(err)})") from None
    return dense.reshape(shape)


def _densify_sparse_initializers(graph: onnx.GraphProto, source: str) -> None:
    """Move each sparse initializer of ``graph`` (and of its subgraphs) into its dense
    initializers, in place: onnxruntime takes them alike, and every step of the engine reads
    initializers (a weight stored sparse had been missing from the kernels' run: KeyError,
    exit 3)."""
    stack = [graph]
    while stack:
        current = stack.pop()
        for sparse in current.sparse_initializer:
            name = sparse.values.name
            dense = _dense(sparse, f"{source}: sparse initializer {name!r}")
            current.initializer.append(numpy_helper.from_array(dense, name))
        del current.sparse_initializer[:]
        for node in current.node:
            for attr in node.attribute:
                stack.extend([attr.g] if attr.HasField("g") else [])
                stack.extend(attr.graphs)


def _attributes(proto: onnx.NodeProto) -> tuple[dict[str, Any], dict[str, int]]:
    """A node's attributes as plain values, with their ONNX types. A Constant's
    ``sparse_value`` is read as the equivalent dense ``value`` (the ONNX spec makes the forms
    interchangeable; onnx's reference evaluator, which folds constants, has no sparse form)."""
    if proto.op_type == "Constant" and len(proto.attribute) == 1 and (
            proto.attribute[0].type == onnx.AttributeProto.SPARSE_TENSOR):
        return {"value": _dense(proto.attribute[0].sparse_tensor,
                                f"node {proto.name!r}: sparse_value")}, {
            "value": onnx.AttributeProto.TENSOR}
    return ({a.name: _attribute(a) for a in proto.attribute},
            {a.name: a.type for a in proto.attribute})


def node_proto(node: Node, inputs: list[str] | None = None,
               outputs: list[str] | None = None) -> onnx.NodeProto:
    """The node as ONNX (``inputs``, ``outputs`` rename its tensors). Tensor attributes, held
    as numpy arrays (a Constant's ``value``, a ConstantOfShape's ``value``, 0-d included), go
    back as TensorProto: ``helper.make_node`` would read a numpy array as a list of values."""
    proto = helper.make_node(node.op_type, node.inputs if inputs is None else inputs,
                             node.outputs if outputs is None else outputs, name=node.name,
                             domain=node.domain or None)
    for key, value in node.attrs.items():
        if isinstance(value, np.ndarray):
            value = numpy_helper.from_array(value)
        proto.attribute.append(
            helper.make_attribute(key, value, attr_type=node.attr_types.get(key))
        )
    return proto


def _with_io_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model to check: where a graph input or output states its element type but no
    shape (tf2onnx writes such an output after a Reshape whose rank it does not know), a copy
    with an empty shape there, which the checker requires and onnxruntime does not: the rank
    stays unknown to the engine, as shape inference leaves it."""
    def shapeless(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
        return [v for v in (*graph.input, *graph.output) if v.type.HasField("tensor_type")
                and not v.type.tensor_type.HasField("shape")]

    if not shapeless(model.graph):
        return model
    checked = onnx.ModelProto()
    checked.CopyFrom(model)
    for value in shapeless(checked.graph):
        value.type.tensor_type.shape.SetInParent()
    return checked


def graph_from_onnx(model: onnx.ModelProto, source: str = "model",
                    tensors_only: bool = True) -> Graph:
    """Convert a model to a :class:`Graph`, with shape inference for tensor types; unless
    ``tensors_only`` is False (the audit lists such a model's nodes), a graph input or output
    that is not a tensor is refused (:func:`_check_tensor_interface`), else left out, and so
    is an output the quantized model cannot hold (:func:`_check_outputs`), else kept."""
    g = _inferred(model).graph
    try:
        initializers = {t.name: _array(t) for t in model.graph.initializer}
    except UserError as err:
        raise UserError(f"{source}: invalid ONNX model ({err})") from None
    if tensors_only:
        if written := written_quantized(model.doc_string):
            raise UserError(f"{source}: written by ptq-verify quantize ({written} model): "
                            "the model is quantized already; ptq-verify takes the float model "
                            "it was made from")
        _check_tensor_interface(model.graph, source)
        _check_outputs(model.graph, initializers, source)
        _check_unnamed_outputs(model, source)
    try:
        return _graph(model, g, initializers, source)
    except UserError as err:
        raise UserError(f"{source}: invalid ONNX model ({err})") from None


_NOT_TENSORS = {"sequence_type": "a sequence", "map_type": "a map",
                "optional_type": "an optional value", "sparse_tensor_type": "a sparse tensor"}
# a sequence of maps is how ONNX-ML's ZipMap gives a classifier's probabilities per class: a
# new-user trial's skl2onnx exports (its default) were told only to export without it
_MAPS_HINT = (": skl2onnx writes a classifier's probabilities so, by a ZipMap, unless "
              "converted with to_onnx(model, X, options={id(classifier): {'zipmap': False}})")


def _check_tensor_interface(g: onnx.GraphProto, source: str) -> None:
    """Refuse a graph input or output that is not a tensor (a SplitToSequence's list, a
    scikit-learn classifier's ZipMap of probabilities, an Optional): the quantized model
    holds tensors only, and such an output was dropped from it without a word, such an input
    reported as missing from the data."""
    initializers = {t.name for t in g.initializer}
    for role, values in (("input", [v for v in g.input if v.name not in initializers]),
                         ("output", g.output)):
        for value in values:
            kind = value.type.WhichOneof("value")
            if kind in _NOT_TENSORS:
                what, how = _NOT_TENSORS[kind], ""
                if kind == "sequence_type":  # (scikit-learn's ZipMap: a sequence of maps)
                    element = value.type.sequence_type.elem_type.WhichOneof("value")
                    what += " of maps" if element == "map_type" else " of tensors"
                    how = _MAPS_HINT if element == "map_type" else ""
                raise UserError(
                    f"{source}: graph {role} {value.name!r} is {what}, not a "
                    "tensor; ptq-verify takes models whose inputs and outputs are tensors "
                    f"(export the model without it, or with that {role} as a tensor{how})")


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with the shapes ONNX shape inference finds, its data propagation on (it
    follows ``x.reshape(x.shape[0], 8, 8)`` of torch's legacy export, where a dimension it did
    not know had cost the Linear after it its per-channel weights and output-aware rounding),
    and, where it leaves a node's output without a shape, those onnxruntime's symbolic shape
    inference finds, which then also replace dimensions ONNX's left unknown. The second follows
    shape arithmetic the first does not: torch's legacy exporter writes transformers' attention
    mask at opset 13 as a Reshape to a shape computed from another tensor's Shape, and ONNX
    inference leaves every tensor after it without a rank (the tests' tiny BERT: 99 of its
    372 node outputs), so probes and smoothing find nothing there. It imports sympy (0.3 s of
    a run), so it is not run for unknown dimensions alone. Neither is a requirement: a model
    they fail on keeps the shapes it states."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_typed_only(model), strict_mode=False,
                                                     data_prop=True)
    except Exception:  # noqa: BLE001 - inference is a help, never a requirement
        return model
    _replace_contradicted(inferred, model)
    shaped = _shaped(inferred.graph)
    missing = {name for proto in inferred.graph.node for name in proto.output
               if name and name not in shaped}
    if not missing:
        return inferred
    known = {v.name: _static_dims(v) for v in inferred.graph.value_info}
    found = [value for value in _symbolic_value_info(model)
             if value.type.tensor_type.HasField("shape")
             and (value.name in missing or _better(value, known.get(value.name)))]
    if found:
        names = {value.name for value in found}
        kept = [v for v in inferred.graph.value_info if v.name not in names]
        del inferred.graph.value_info[:]
        inferred.graph.value_info.extend([*kept, *found])
        _shape_outputs(inferred.graph, found)
    return inferred


def _replace_contradicted(inferred: onnx.ModelProto, model: onnx.ModelProto) -> None:
    """In ``inferred`` (in place), each tensor shape the file states that contradicts what
    ONNX inference finds from the graph's inputs and nodes alone (another rank, or another
    length on an axis) replaced by the latter, which onnxruntime holds the model to: it merges
    a wrong stated shape leniently and runs the model. Inference keeps a stated shape where
    its own disagrees, and jax2onnx 0.17 states a Relu's output between two NCHW Convs in
    NHWC order: the audit then found no equalization pair where quantize, on real values,
    equalized the two Convs (a new-user trial). A stated shape inference cannot find stays."""
    if not model.graph.value_info:
        return
    bare = _copy_without(model, "graph")
    bare.graph.CopyFrom(_copy_without(_typed_only(model).graph, "value_info"))
    try:
        found = onnx.shape_inference.infer_shapes(bare, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is a help, never a requirement
        return
    own = {v.name: v for v in found.graph.value_info if v.type.tensor_type.HasField("shape")}
    for value in inferred.graph.value_info:
        other = own.get(value.name)
        if other is not None and _contradict(value, other):
            value.CopyFrom(other)


def _contradict(stated: onnx.ValueInfoProto, found: onnx.ValueInfoProto) -> bool:
    """Whether two shapes of one tensor cannot both hold: ranks or known lengths differ."""
    if not stated.type.tensor_type.HasField("shape"):
        return False
    first, second = stated.type.tensor_type.shape.dim, found.type.tensor_type.shape.dim
    return len(first) != len(second) or any(
        a.HasField("dim_value") and b.HasField("dim_value") and a.dim_value != b.dim_value
        for a, b in zip(first, second))


def _shape_outputs(g: onnx.GraphProto, found: list[onnx.ValueInfoProto]) -> None:
    """Give each graph output of ``g`` that states a type with no shape the shape symbolic
    inference ``found`` for it, in place. tf2onnx writes an output whose shape it does not
    know so; onnxruntime runs such a model, but the ONNX checker refuses it, and every file
    quantize wrote from it stated the source's outputs as they were and was refused too (a
    deployment trial: the masked_pool fixture in all three formats)."""
    shapes = {value.name: value.type.tensor_type.shape for value in found}
    for output in g.output:
        tensor = output.type.tensor_type
        if (output.type.HasField("tensor_type") and not tensor.HasField("shape")
                and output.name in shapes):
            tensor.shape.CopyFrom(shapes[output.name])


def _static_dims(value: onnx.ValueInfoProto) -> int | None:
    """How many dimensions of a tensor's stated shape are numbers, where some are unknown
    (an ``unk__N`` that ONNX inference names where it cannot follow a Reshape to a shape
    computed from ``x.shape[0]``, or no name at all); None where none is, or it states no
    shape. A dimension the model names (``batch``) is known: symbolic inference cannot say
    more of it."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = tensor.shape.dim
    if all(d.HasField("dim_value") or (d.dim_param and not d.dim_param.startswith("unk__"))
           for d in dims):
        return None
    return sum(d.HasField("dim_value") for d in dims)


def _better(value: onnx.ValueInfoProto, static: int | None) -> bool:
    """Whether symbolic inference's ``value`` states more numeric dimensions than the
    ``static`` of ONNX's (:func:`_static_dims`), where symbolic inference runs anyway (an
    output ONNX's left without a shape): a dimension no probe knows costs the weight layer
    after it its per-channel weights and output-aware rounding."""
    dims = value.type.tensor_type.shape.dim
    return static is not None and sum(d.HasField("dim_value") for d in dims) > static


def _shaped(g: onnx.GraphProto) -> set[str]:
    """The tensors of ``g`` whose shape (at least their rank) is known."""
    return {v.name for v in (*g.input, *g.output, *g.value_info)
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}


def _symbolic_value_info(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """What onnxruntime's symbolic shape inference finds for the model's tensors (its log
    silenced: what it cannot infer is no concern of the user's); [] when it fails.

    This is the loop of ``SymbolicShapeInference.infer_shapes``, which, where some shape stays
    unknown, saves the model into the working directory (``sym_shape_infer_temp.onnx`` and its
    external data) and raises: the user's folder is not a scratch space, and the shapes found
    are still wanted then."""
    try:
        symbolic = _symbolic_shape_inference()
    except Exception:  # noqa: BLE001 - inference is a help, never a requirement
        return []
    log = logging.getLogger(symbolic.__module__)
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        inference = symbolic(2**31 - 1, True, False, 0)
        inference._preprocess(_typed_only(model))
        while inference.run_:
            inference._infer_impl()
        values = list(inference.known_vi_.values())
        _canonical_merges(values, getattr(inference, "suggested_merge_", {}), model)
        return values
    except Exception:  # noqa: BLE001 - inference is a help, never a requirement
        return []
    finally:
        log.setLevel(level)


def _canonical_merges(values: list[onnx.ValueInfoProto], merges: Mapping[str, object],
                      model: onnx.ModelProto) -> None:
    """In place: each dimension that symbolic inference found equal to others (``merges``, a
    name to the name it took for them all) named as the first of them the model's inputs
    state (input by input, axis by axis), else the least name. Why: inference picks that name
    in a set's order, which Python's string hashing changes from one process to the next: the
    masked_pool fixture (tf2onnx), whose inputs name their batch ``unk__89`` and ``unk__90``,
    was written with either name on its output, so one command wrote different files."""
    groups: dict[str, set[str]] = {}
    for name, taken in merges.items():
        if isinstance(taken, str):
            groups.setdefault(taken, {taken}).add(name)
    if not groups:
        return
    stated = [d.dim_param for value in model.graph.input
              for d in value.type.tensor_type.shape.dim if d.dim_param]
    first = {name: position for position, name in reversed(list(enumerate(stated)))}
    named = {name: min(group, key=lambda n: (first.get(n, len(stated)), n))
             for group in groups.values() for name in group}
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in named:
                dim.dim_param = named[dim.dim_param]


_SYMBOLIC_MODULE = "ptq_verify._symbolic_shape_infer"


def _symbolic_shape_inference() -> type:
    """onnxruntime's ``SymbolicShapeInference``, loaded from its file: imported as
    ``onnxruntime.tools.symbolic_shape_infer`` it runs the package's ``__init__``, which
    imports torch wherever torch is installed (4.2 s on the 2-core AMD EPYC; a new-user trial
    found every opset-13 BERT export 3x slower to quantize and audit for it). The module itself
    needs numpy, onnx, sympy and packaging."""
    module = sys.modules.get(_SYMBOLIC_MODULE)
    if module is None:
        package = importlib.util.find_spec("onnxruntime")
        folder = Path(package.submodule_search_locations[0]) / "tools"
        spec = importlib.util.spec_from_file_location(_SYMBOLIC_MODULE,
                                                      folder / "symbolic_shape_infer.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[_SYMBOLIC_MODULE] = module
    return module.SymbolicShapeInference


def infer_shapes_again(graph: Graph, given: Iterable[str] = ()) -> None:
    """Run ONNX shape inference on ``graph`` as it is now and take every shape it knows better.

    Exports compute a Pad's pads or a Reshape's shape from Constant nodes: inference on the
    source model leaves what follows with unknown dimensions, which become known once those
    constants are folded into initializers (the probes that give per-channel weight scales and
    BatchNorm folding need them). ``given``: tensors whose shapes in ``graph.value_info``
    inference takes as they are, the outputs of nodes it cannot see into (a custom op's,
    engine/declared_shapes.py)."""
    for name, info in (inferred_shapes(graph, given) or {}).items():
        old = graph.value_info.get(name)
        if info.shape is not None and (
                old is None or old.shape is None or _known(info.shape) > _known(old.shape)):
            graph.value_info[name] = info


def inferred_shapes(graph: Graph, given: Iterable[str] = ()) -> dict[str, TensorInfo] | None:
    """What ONNX shape inference finds for ``graph``'s tensors from its inputs' declared
    shapes and its nodes alone (and ``given``'s shapes in ``graph.value_info``), not from the
    shapes the model file states for its other tensors, its outputs included, which
    onnxruntime does not hold it to (it merges a wrong one leniently and runs the model);
    None where inference fails."""
    rest, large = without_large_constants(graph)
    typed = replace(rest, inputs=[*graph.inputs, *(TensorInfo(k, v.shape, v.dtype)
                                                   for k, v in large.items())],
                    outputs=[replace(info, shape=None) for info in graph.outputs])
    model = graph_to_onnx(typed)
    model.graph.value_info.extend(_value_info(graph.value_info[name]) for name in given
                                  if name in graph.value_info)
    try:  # (data propagation: as at load, _inferred)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is a help, never a requirement
        return None
    return {value.name: info for value in inferred.graph.value_info
            if (info := _tensor_info(value)) is not None}


def trusted_shape(graph: Graph, name: str, inferred: Mapping[str, TensorInfo]) -> tuple | None:
    """The shape of tensor ``name`` that onnxruntime holds the model to: a constant's or a
    graph input's own, else the one ``inferred`` (:func:`inferred_shapes`) finds from the
    graph's inputs and nodes; None where unknown. A shape the file states for another tensor
    is not one: onnxruntime merges a wrong one leniently and runs the model."""
    if name in graph.initializers or name in graph.input_names:
        return graph.shape_of(name)
    return inferred[name].shape if name in inferred else None


SHAPE_FREE_ELEMENTS = 1024
"""A float constant of more elements goes to ONNX shape inference as a typed input, without
its values: the constants an output shape depends on (a Reshape's shape, pads, axes, a
Resize's scales or sizes, a Range's bounds) hold a few numbers per axis. Inference then no
longer serialises a transformer's weights (MiniLM: 0.36 -> 0.05 s a call, value_info
unchanged)."""


def without_large_constants(graph: Graph) -> tuple[Graph, dict[str, np.ndarray]]:
    """(``graph`` without its large float constants (:data:`SHAPE_FREE_ELEMENTS`), those
    constants by name), for tools that take them apart from the model proto."""
    large = {k: v for k, v in graph.initializers.items()
             if v.size > SHAPE_FREE_ELEMENTS and np.issubdtype(v.dtype, np.floating)}
    rest = {k: v for k, v in graph.initializers.items() if k not in large}
    return replace(graph, initializers=rest), large


def _typed_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its large float initializers (:data:`SHAPE_FREE_ELEMENTS`) as typed
    graph inputs, for shape inference."""
    large = [t for t in model.graph.initializer if t.data_type in _FLOAT_TYPES
             and math.prod(t.dims) > SHAPE_FREE_ELEMENTS]
    if not large:
        return model
    names = {t.name for t in large}
    typed = _copy_without(model, "graph")  # (a whole copy took all-MiniLM-L6-v2 0.08 s)
    typed.graph.CopyFrom(_copy_without(model.graph, "initializer"))
    typed.graph.initializer.extend(t for t in model.graph.initializer if t.name not in names)
    declared = {v.name for v in typed.graph.input}
    typed.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in large if t.name not in declared)
    return typed


def _copy_without(message, name: str):
    """A copy of the protobuf ``message`` without its field ``name``, which is not copied."""
    copy = type(message)()
    for field, value in message.ListFields():  # (a message's fields, not their copies)
        if field.name == name:
            continue
        if _repeated(field):
            getattr(copy, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(copy, field.name).CopyFrom(value)
        else:
            setattr(copy, field.name, value)
    return copy


_FLOAT_TYPES = frozenset(
    helper.np_dtype_to_tensor_dtype(np.dtype(t)) for t in (np.float16, np.float32, np.float64))


def _known(shape: tuple) -> int:
    return sum(isinstance(d, int) and d > 0 for d in shape)


def _array(tensor: onnx.TensorProto) -> np.ndarray:
    """An initializer's values; UserError when its data does not fit its shape or type."""
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"initializer {tensor.name!r}: {_first_line(err)}") from None


def _graph(model: onnx.ModelProto, g: onnx.GraphProto, initializers: dict, source: str) -> Graph:
    """The Graph of an (inferred) graph proto whose initializers are already read."""
    inputs = [
        info for v in g.input if v.name not in initializers and (info := _tensor_info(v))
    ]
    outputs = [info for v in g.output if (info := _tensor_info(v))]
    value_info = {info.name: info for v in g.value_info if (info := _tensor_info(v))}
    nodes = nodes_of(g.node)
    opsets = {o.domain: o.version for o in model.opset_import}
    return Graph(nodes, inputs, outputs, initializers, value_info, opsets, g.name, source)


def nodes_of(protos: Iterable[onnx.NodeProto], seen: set[str] | None = None,
             unnamed: str = "") -> list[Node]:
    """The nodes of a graph proto (or of a subgraph taken into its graph, whose nodes' names
    must not repeat those in ``seen``, updated), each with a name of its own."""
    nodes = []
    seen = set() if seen is None else seen
    for position, proto in enumerate(protos):
        # a node the file leaves unnamed (many converters do) gets a name that says so and
        # where it is (graph.node[position]): one that looked like the file's own sent users
        # searching the model for a name it does not hold
        name = proto.name or f"#{position} (unnamed {proto.op_type}{unnamed})"
        while name in seen:
            name = f"{name}_{position}"
        seen.add(name)
        attrs, types = _attributes(proto)
        nodes.append(
            Node(
                name=name,
                op_type=proto.op_type,
                inputs=list(proto.input),
                outputs=list(proto.output),
                attrs=attrs,
                domain=proto.domain,
                attr_types=types,
            )
        )
    return nodes


def _check_outputs(g: onnx.GraphProto, initializers: dict, source: str) -> None:
    """Every graph output named once and computed by a node: onnxruntime runs a model that
    lists an output twice or returns a graph input or a constant as it is, but refuses such a
    model once its outputs are rewritten (the quantized model computes each from codes). Such
    a model is valid ONNX, and the refusal says so: it had read 'invalid ONNX model (...)'
    (a new-user trial), which sent users to onnx's checker, which passes it."""
    names = [v.name for v in g.output]
    producers = {name: proto for proto in g.node for name in proto.output}
    computed = set(producers)
    for name in names:
        if names.count(name) > 1:
            node = producers.get(name)
            made = (f" (node {node.name!r} ({node.op_type}) computes it)" if node is not None
                    else "")
            raise UserError(f"{source}: graph output {name!r} is listed {names.count(name)} "
                            f"times{made}, which ONNX allows but the quantized model cannot "
                            "hold; list it once (a model returning one tensor twice, as "
                            "`return y, y`: return it once)")
        if name not in computed:
            what = ("a graph input" if any(v.name == name for v in g.input)
                    and name not in initializers else "a constant" if name in initializers
                    else "computed by no node")
            raise UserError(f"{source}: graph output {name!r} is {what}, not computed by a "
                            "node, which ONNX allows but the quantized model cannot hold: it "
                            "computes every output from a node (drop it from the outputs)")


def _check_unnamed_outputs(model: onnx.ModelProto, source: str) -> None:
    """No node (its subgraphs' included) leaves an output slot unnamed that its ONNX schema
    does not mark optional: ONNX allows an empty name only for an optional output, the checker
    passes one anywhere, and onnxruntime 1.32 crashes (SIGSEGV) running such a model (a
    Split's second output, an If's), which took the quantize command with it, with no
    message. An op no schema describes (a custom domain's) is left to onnxruntime."""
    from .model import subgraphs

    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    graphs = [model.graph]
    graphs += [inner for proto in model.graph.node for attr in proto.attribute
               for inner in subgraphs(onnx.helper.get_attribute_value(attr))]
    for graph in graphs:
        for proto in graph.node:
            if "" not in proto.output:
                continue
            domain = proto.domain or "ai.onnx"
            try:
                formals = onnx.defs.get_schema(proto.op_type, opsets.get(domain, 1),
                                               proto.domain).outputs
            except onnx.defs.SchemaError:
                continue
            for slot, name in enumerate(proto.output):
                if name or not formals:
                    continue
                formal = formals[min(slot, len(formals) - 1)]
                if formal.option != onnx.defs.OpSchema.FormalParameterOption.Optional:
                    raise UserError(
                        f"{source}: node {proto.name or proto.op_type!r} ({proto.op_type}) "
                        f"leaves output {slot} ({formal.name}) unnamed, which ONNX allows for "
                        "an optional output only (onnxruntime crashes running it): name it")


def load_graph(path: str | os.PathLike, parsed: ParsedFile | None = None,
               tensors_only: bool = True) -> Graph:
    """Read an ONNX file into a :class:`Graph` (nothing is folded or resolved yet), at
    opset :data:`LEAST_OPSET` at least (:func:`upgraded`); ``parsed``: see :func:`read_model`;
    ``tensors_only``: see :func:`graph_from_onnx`."""
    model, inlined = inlined_functions(read_model(path, parsed), path)
    model, loaded = upgraded(model)
    graph = graph_from_onnx(model, source=str(path), tensors_only=tensors_only)
    graph.loaded = "; ".join(filter(None, (inlined, loaded)))
    return graph


def inlined_functions(model: onnx.ModelProto, source: str | os.PathLike
                      ) -> tuple[onnx.ModelProto, str]:
    """``model`` with the calls of its own functions (``model.functions``: torch's
    ``export_modules_as_functions``, a hand-made model's helper) replaced by their bodies,
    by onnx's inliner, and what was done in one line ("" where the model defines none).
    Each call had been refused as an op type no declaration takes, with the advice to
    declare it or remove it, where its body holds the standard nodes the engine reads (a
    hostile-input hunt)."""
    if not model.functions:
        return model, ""
    import onnx.inliner

    defined = {(function.domain, function.name) for function in model.functions}
    called = sorted({node.op_type for node in model.graph.node
                     if (node.domain, node.op_type) in defined})
    try:
        inlined = onnx.inliner.inline_local_functions(model)
    except Exception as err:  # noqa: BLE001 - onnx's C++ inliner: any defect of the file
        raise UserError(f"{source}: the model's own functions cannot be "
                        f"inlined ({_first_line(err)})") from None
    return inlined, (f"the model's own functions inlined ({first_few(called)}): the nodes "
                     "listed are their bodies'" if called else "")


LEAST_OPSET = 13
"""The least opset of ONNX's domain the engine works at. The catalog's kernels have opset 13's
semantics (Softmax over one axis, where opset 11 flattened every axis from ``axis`` on), and
the simulation and integer formats write opset 11 and 13, where attributes of older forms
became inputs (Clip-6's min and max, Pad-2's pads, Slice-1's starts, Squeeze-11's axes):
written as they were, onnxruntime refused the file, or ran a Softmax-11 as a Softmax-13."""


def onnx_opset(model: onnx.ModelProto) -> int | None:
    """The model's opset of ONNX's own domain; None where it imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def upgraded(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """``model`` converted to :data:`LEAST_OPSET` by onnx's version converter when its opset of
    ONNX's domain is older and onnxruntime computes the same outputs with both on random
    inputs (a Resize an Upsample or a Resize-10 became given the asymmetric coordinates the
    converter drops, where without them it computes another function:
    :func:`_old_resize_coordinates`); as it is otherwise (the converter cannot take it, or
    changes what it computes). Where the model as it is does not convert so, the nodes whose
    function changed at opset 13 (a Softmax, LogSoftmax or Hardmax over more than the last axis) are
    spelt so that both opsets read them alike
    (:func:`ptq_verify.catalog.upgrades.before_conversion`) and the converter tried again, the
    spelt model kept at its opset if that fails too. Spelling first, always, had cost a legacy
    GPT-2 export at opset 11 21 dB (a new-user trial): with no rank known for its attention
    scores, a Softmax already over the last axis was spelt too, and the Flatten between the
    mask's Add and the Softmax put the Add on codes. The formats that keep the source's opset
    still apply to a model left so, and the written file is compared with the user's own in
    onnxruntime either way.

    With the model, what was done, in one line for the audit's and quantize's notes ("" for
    a model at :data:`LEAST_OPSET` or later): the nodes a user reads in the audit and the
    report are then not all the file's own, or not of its opset."""
    version = onnx_opset(model)
    if version is None or version >= LEAST_OPSET:
        return model, ""
    from ..catalog.upgrades import before_conversion, without_image_scalers

    done = f"opset {version}: converted to opset {LEAST_OPSET} by onnx's version converter"
    kept = (f"opset {version}: kept at opset {version} (onnx's version converter could not bring "
            f"it to opset {LEAST_OPSET} with the same outputs)")
    original = model
    model, scalers = without_image_scalers(model)  # removed at opset 10: no converter schema
    after = ([f"{len(scalers)} ImageScaler node{'s' if len(scalers) > 1 else ''} (removed at "
              f"opset 10; {', '.join(scalers)}) spelt as Mul -> Add (the same function; the "
              "added Constant, Mul and Add nodes are listed as the model's)"] if scalers else [])

    def account(head: str, spelt: list[str]) -> str:
        return f"{head}, after {' and '.join(spelt)}" if spelt else head

    converted = _converted(model, original)
    if converted is not None:
        return converted[0], account(f"{done} ({converted[1]})", after)
    spelt, names = before_conversion(model)  # the same function, read alike at both opsets
    if not names:
        return model, account(kept, after)
    after.append(f"{len(names)} node{'s' if len(names) > 1 else ''} that opset {LEAST_OPSET} "
                 f"reads another way ({', '.join(names)}) spelt as Flatten -> node -> Reshape "
                 "(the same function at both opsets; the added Flatten, Shape and Reshape "
                 "nodes are listed as the model's)")
    converted = _converted(spelt, original)
    return ((converted[0], account(f"{done} ({converted[1]})", after))
            if converted is not None else (spelt, account(kept, after)))


def _converted(model: onnx.ModelProto, reference: onnx.ModelProto | None = None
               ) -> tuple[onnx.ModelProto, str] | None:
    """``model`` at :data:`LEAST_OPSET` by onnx's version converter where onnxruntime computes
    with it what ``reference`` (the model itself by default) computes on random inputs, with
    how that was checked (:func:`_same_outputs`); None where the converter or that check
    fails."""
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, LEAST_OPSET)
        if checked := _same_outputs(reference or model, converted):
            return converted, checked
        repaired = _old_resize_coordinates(model, converted)
        checked = "" if repaired is None else _same_outputs(reference or model, repaired)
        return (repaired, checked) if checked else None
    except Exception:  # noqa: BLE001 - any converter or runtime failure: not converted
        return None


def _old_resize_coordinates(model: onnx.ModelProto,
                            converted: onnx.ModelProto) -> onnx.ModelProto | None:
    """``converted`` (``model`` at :data:`LEAST_OPSET` by onnx's version converter) with each
    Resize that an Upsample (opsets 7 to 9) or a Resize-10 became given the coordinates those
    computed with, which the converter (1.23) leaves to Resize-11's defaults: asymmetric
    (``x_in = x_out / scale``) where opset 11 reads half_pixel, and for nearest mode the
    rounding onnxruntime's older kernels use (floor when upsampling, ceil when downsampling)
    where opset 11 rounds to nearest. A bilinear Upsample-9 (torch's legacy export of
    ``F.interpolate(mode="bilinear")`` at opsets 9 and 10, as the zoo's old detection and
    segmentation models hold) had stayed at its opset, where the catalog has no Upsample: it
    was refused as an undeclared op type at opsets 7 to 9, and at opset 10 per-channel qdq and
    the integer format were refused (a new-user trial). None where the source's opset is 11 or
    later or no Resize lacks the attribute; the caller checks the outputs either way."""
    if (onnx_opset(model) or LEAST_OPSET) >= 11:
        return None
    repaired = onnx.ModelProto()
    repaired.CopyFrom(converted)
    constants = {t.name: t for t in repaired.graph.initializer}
    constants.update({n.output[0]: n.attribute[0].t for n in repaired.graph.node
                      if n.op_type == "Constant" and n.attribute
                      and n.attribute[0].name == "value"})
    changed = False
    for node in repaired.graph.node:
        if node.op_type != "Resize" or node.domain not in ("", "ai.onnx"):
            continue
        names = {a.name for a in node.attribute}
        if "coordinate_transformation_mode" in names:
            continue
        node.attribute.append(helper.make_attribute("coordinate_transformation_mode", "asymmetric"))
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "nearest")
        if mode == "nearest" and "nearest_mode" not in names:
            scales = (numpy_helper.to_array(constants[node.input[2]])
                      if len(node.input) > 2 and node.input[2] in constants else None)
            down = scales is not None and scales.size > 0 and bool(np.all(scales <= 1))
            node.attribute.append(helper.make_attribute("nearest_mode",
                                                        "ceil" if down else "floor"))
        changed = True
    return repaired if changed else None


def _same_outputs(model: onnx.ModelProto, other: onnx.ModelProto) -> str:
    """How it was found that onnxruntime computes with ``other`` the outputs (to 1e-4,
    relative) that ``model`` computes on one random input (floats standard normal, other
    types zeros; unknown dims 1, or 2 where ``model`` itself fails at 1: hummingbird-ml's
    trees end in a Squeeze without axes, which takes a batch of 1 away and fails the Transpose
    after it, so its opset-11 export had been kept at 11 and the integer format refused it,
    where the converted file computes the same); "" where it does not, or that cannot be told.
    ``model`` runs in onnxruntime, or where onnxruntime has no kernel for one of its nodes
    (opset 6's Add, Mul, Gemm, BatchNormalization and AveragePool-1, which onnxruntime 1.32
    dropped) in onnx's reference evaluator, which implements each opset's own form: the torch
    exports at opset 6 that the onnx wheel ships had all been refused as models onnxruntime
    cannot load, where the converted model computes their reference outputs (a new-user
    trial)."""
    from .ort_runner import ort_session  # (it imports this module)

    found_by = ort_session(other.SerializeToString())[0]
    if found_by is None:
        return ""
    expected_by, how = ort_session(model.SerializeToString())[0], (
        "onnxruntime computes the same outputs with both on a random input")
    if expected_by is None:
        expected_by, how = _reference_evaluator(model), (
            "onnxruntime has no kernel for a node of the file's opset: onnx's reference "
            "evaluator on the file and onnxruntime on the converted model compute the same "
            "outputs on a random input, and quantize checks the written model against the "
            "converted one")
    if expected_by is None:
        return ""
    for free in (1, 2):
        feeds = _random_feeds(model, free)
        if feeds is None:
            return ""
        try:
            with warnings.catch_warnings():  # (the reference evaluator's, never printed)
                warnings.simplefilter("ignore")
                expected = expected_by.run(None, feeds)
        except Exception:  # noqa: BLE001 - the model's own failure there: try another length
            continue
        try:
            found = found_by.run(None, feeds)
        except Exception:  # noqa: BLE001 - the other fails where the model runs: not the same
            return ""
        # NaN where both give it is the same output (a Sqrt or Log of the random input: the
        # model had stayed at its opset, its tolerance NaN), and so is the same infinity
        return how if all(np.shape(a) == np.shape(b) and np.allclose(
            a, b, rtol=1e-4, equal_nan=True, atol=1e-5 * (_finite_peak(a) + 1e-30))
            for a, b in zip(expected, found)) else ""
    return ""


def _reference_evaluator(model: onnx.ModelProto):
    """onnx's reference evaluator (``onnx.reference``) on ``model``; None where it does not
    take it (an op type it does not implement, a custom domain)."""
    from onnx.reference import ReferenceEvaluator

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ReferenceEvaluator(model)
    except Exception:  # noqa: BLE001 - any refusal: no reference to compare with
        return None


def _random_feeds(model: onnx.ModelProto, free: int) -> dict[str, np.ndarray] | None:
    """One random input of ``model`` for :func:`_same_outputs`, its unknown dims ``free``
    long; None where one would be too large to compare on."""
    from .static import MAX_FOLDED_ELEMENTS  # (it imports this module)

    rng = np.random.default_rng(0)
    constants = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in constants:
            continue
        tensor = value.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        shape = [d.dim_value if d.dim_value > 0 else free for d in tensor.shape.dim]
        if math.prod(shape) > MAX_FOLDED_ELEMENTS:  # a declared (1, 10**15): no comparison
            return None
        feeds[value.name] = (rng.standard_normal(shape).astype(dtype)
                             if np.issubdtype(dtype, np.floating) else np.zeros(shape, dtype))
    return feeds


def _finite_peak(values) -> float:
    """The largest finite magnitude in ``values`` (0 where none is finite; non-float arrays
    as they are)."""
    array = np.abs(np.asarray(values, dtype=np.float64))
    return float(np.max(array[np.isfinite(array)], initial=0.0))


def _value_info(info: TensorInfo) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
    shape = None if info.shape is None else list(info.shape)
    return helper.make_tensor_value_info(info.name, elem, shape)


def graph_to_onnx(graph: Graph, *, producer: str = "ptq-verify") -> onnx.ModelProto:
    """Write a :class:`Graph` as an ONNX model (the opsets of the source model)."""
    nodes = [node_proto(n) for n in graph.nodes]
    initializers = [
        numpy_helper.from_array(np.asarray(v), k) for k, v in graph.initializers.items()
    ]
    proto = helper.make_graph(
        nodes,
        graph.name,
        [_value_info(t) for t in graph.inputs],
        [_value_info(t) for t in graph.outputs],
        initializers,
    )
    opsets = [helper.make_opsetid(domain, version) for domain, version in graph.opsets.items()]
    model = helper.make_model(proto, opset_imports=opsets, producer_name=producer)
    model.ir_version = min(model.ir_version, 8)
    return model
