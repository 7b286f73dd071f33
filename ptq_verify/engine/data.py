"""Calibration and inference data: reading .npz/.npy files, checking them against the model,
and running a graph batch by batch (sample by sample when the model fixes batch size 1)."""

from __future__ import annotations

import itertools
import keyword
import math
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from tokenize import TokenError

import numpy as np

from ..errors import UserError
from ..graph import Graph, TensorInfo, holds_integers
from ..input_files import file_kind, require_file, torch_archive
from ..wording import first_few, tensor_label

Feeds = dict[str, np.ndarray]


CALIB_FORM = ("calibration data is one .npz holding one array per model input, keyed by its "
              "name, batch first, after the model's own preprocessing (an .npy for a "
              "one-input model): make it with numpy.savez (docs/engine.md, making the "
              "calibration file)")
"""What a calibration file is, for a refusal of a path that is not one (a folder of images,
an image, a torch or pickle file): a newcomer's data comes in those forms."""


MAX_DATA_BYTES = 1 << 30
"""Largest calibration or inference data file, in bytes once decompressed (1 GiB): an .npz
whose members claim more (a zip bomb, a header claiming 10**12 elements) is refused before
anything is read."""


class DataTooLarge(ValueError):
    """Arrays that hold more than MAX_DATA_BYTES once read (``nbytes``): a file that is
    readable but over the limit, refused as such, not as unreadable."""

    def __init__(self, nbytes: int) -> None:
        super().__init__(nbytes)
        self.nbytes = nbytes


def read_data_file(path: str | os.PathLike, graph: Graph) -> Feeds:
    """Read ``.npz`` (one array per model input, keyed by input name, batch first) or ``.npy``
    (a one-input model), checked against the model's inputs (:func:`check_feeds`), so that a
    refusal names the file."""
    if os.path.isdir(path):
        raise UserError(f"{path}: a folder, not a calibration file; {CALIB_FORM}")
    source = require_file(path, "calibration file")
    if _same_file(source, graph.source):
        raise UserError(f"{source}: the model file itself, given as its calibration data; "
                        f"{CALIB_FORM}")
    try:
        loaded = _load_arrays(source)
    except DataTooLarge as large:  # (EfficientNet-Lite1's 1600 crops of 240 x 240 had been
        # 'not a readable .npy/.npz file', their count in bytes beside the limit's)
        raise UserError(
            f"{source}: its arrays hold {large.nbytes:,} bytes once decompressed, more than "
            f"the {MAX_DATA_BYTES:,} ptq-verify reads (docs/limits.md); save fewer samples: "
            "the ranges settle on a few hundred, and output-aware rounding reads the first "
            "256") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error,
            RuntimeError, NotImplementedError) as err:  # (a member encrypted, or compressed
        # by a method zipfile lacks)
        raise UserError(f"{source}: not a readable .npy/.npz file ({_first_line(err)})") from None
    if isinstance(loaded, np.ndarray):
        if len(graph.inputs) != 1:
            names = ", ".join(graph.input_names)
            raise UserError(
                f"{source}: a single .npy array only fits a one-input model; this one has "
                f"inputs {names}: use an .npz keyed by input name"
            )
        loaded = {graph.inputs[0].name: loaded}
    return check_feeds(loaded, graph, str(source), in_file=True)


def _same_file(path: Path, other: str) -> bool:
    """Whether ``path`` is the file ``other`` names (a model's source: a path, or an
    example's name); the data file given as the model's own had been refused as 'the model
    and --calib swapped', which they were not."""
    try:
        return os.path.isfile(other) and os.path.samefile(path, other)
    except (OSError, ValueError):
        return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _load_arrays(source: Path) -> np.ndarray | Feeds:
    """An .npy array, or the arrays of an .npz keyed by member name (without ``.npy``), read
    without pickles and within MAX_DATA_BYTES. numpy's own ``np.load`` trusts the sizes an
    archive and its headers claim; here each is checked against what the file holds."""
    if not zipfile.is_zipfile(source):
        with source.open("rb") as handle:
            if handle.read(4) == b"PK\x03\x04":  # a zip's first member, but no directory
                raise ValueError("a truncated or damaged .npz: it starts as a zip archive, "
                                 "but the directory of its arrays at the end is missing")
            handle.seek(0)
            _require_npy_magic(handle.read(8), source)
            handle.seek(0)
            return _read_npy(handle, source.stat().st_size, "the array")
    arrays: Feeds = {}
    with zipfile.ZipFile(source) as archive:
        members = archive.infolist()
        _refuse_torch_archive(members, source)
        total = sum(info.file_size for info in members)
        if total > MAX_DATA_BYTES:
            raise DataTooLarge(total)
        for info in members:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename!r} is not an .npy array")
            name = info.filename[: -len(".npy")]
            if name in arrays:  # (zip allows it; numpy would keep one of them unsaid)
                raise ValueError(f"member {info.filename!r} appears twice")
            with archive.open(info) as member:
                arrays[name] = _read_npy(member, info.file_size, f"member {name!r}")
    return arrays


def _refuse_torch_archive(members: list[zipfile.ZipInfo], source: Path) -> None:
    """Refuse a zip torch wrote (``torch.save``'s, a TorchScript model, a .pt2 program:
    :func:`torch_archive`) by what it is: it had been refused as an .npz whose member
    'calib/data.pkl' is not an .npy array, which tells a newcomer neither what nor how."""
    if torch_kind := torch_archive([info.filename for info in members]):
        raise UserError(f"{source}: {torch_kind}, not calibration data; {CALIB_FORM} "
                        "(a tensor: np.savez(file, name=tensor.numpy()))")


def _require_npy_magic(start: bytes, source: Path) -> None:
    """Refuse a file that is neither .npy nor zip by what it is, when its first bytes say
    (a UserError: the advice is longer than the line a reader's error is cut to)."""
    if start.startswith(b"\x93NUMPY"):
        return
    if source.suffix.lower() == ".onnx":  # (the model and --calib swapped)
        raise UserError(f"{source}: by its extension an ONNX model, not calibration data: the "
                        f"model comes first, its data after --calib; {CALIB_FORM}")
    kind = file_kind(start) or "neither .npy nor .npz"
    raise UserError(f"{source}: {kind}, not calibration data; {CALIB_FORM}")


def _read_npy(handle, size: int, what: str) -> np.ndarray:
    """One .npy array from an open file of ``size`` bytes; no object arrays."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        # numpy parses the header with Python's own parser: an unclosed bracket or string
        # ends in tokenize's TokenError, 9,000 minus signs in the parser's MemoryError (both
        # had been internal errors, exit 3), and a Python 2 header ('4L') is read with a
        # UserWarning that had been printed on stderr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shape, fortran, dtype = header(handle)
    except (ValueError, SyntaxError, TokenError, MemoryError, RecursionError):
        # (numpy's words for it quote a parser's objects)
        raise ValueError(f"{what}: its .npy header is not a plain shape, dtype and order "
                         "(not written by numpy.save)") from None
    if dtype.hasobject:
        raise ValueError(f"{what} holds Python objects (pickles are never loaded)")
    if any(length < 0 for length in shape):  # (numpy's own words: "negative count")
        raise ValueError(f"{what}: its .npy header claims shape {shape}, with a negative "
                         "length")
    if dtype.subdtype is not None:  # ('<f4', (64,)) over shape (4,): numpy reads (4, 64)
        if fortran:  # (which numpy itself cannot reshape)
            raise ValueError(f"{what}: its .npy header gives a dtype of fixed-size arrays "
                             f"({dtype}) in Fortran order (not written by numpy.save)")
        dtype, shape = dtype.base, (*shape, *dtype.shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if size >= nbytes > MAX_DATA_BYTES:
        raise DataTooLarge(nbytes)
    if nbytes > min(size, MAX_DATA_BYTES):
        raise ValueError(f"{what} claims {nbytes} bytes of data, more than the file holds "
                         f"or than {MAX_DATA_BYTES}")
    buffer = bytearray(nbytes)
    view, filled = memoryview(buffer), 0
    while filled < nbytes:
        count = handle.readinto(view[filled:])
        if not count:
            raise ValueError(f"{what} is truncated ({filled} of {nbytes} bytes)")
        filled += count
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _check_named_dimensions(graph: Graph, feeds: Feeds, what: str) -> None:
    """Inputs whose shapes name the same symbolic dimension (input_ids and attention_mask
    both [batch, sequence]) must have one length along it: texts padded to 20 tokens with a
    mask of 24 would otherwise stop deep in the model, at the first node they meet."""
    seen: dict[str, tuple[str, int, int]] = {}  # dimension name -> (input, axis, length)
    for info in graph.inputs:
        for axis, dim in enumerate(info.shape or ()):
            if not isinstance(dim, str) or not dim or axis >= feeds[info.name].ndim:
                continue
            length = feeds[info.name].shape[axis]
            first = seen.setdefault(dim, (info.name, axis, length))
            if first[2] != length:
                raise UserError(
                    f"{what}: input {info.name!r} has {length} along {dim!r} (axis {axis}), "
                    f"input {first[0]!r} {first[2]} (axis {first[1]}); the model names both "
                    "axes alike, so they take one length")


def calibrated_lengths(graph: Graph, feeds: Feeds) -> str | None:
    """A note naming each axis past the batch that the model leaves free (a sequence, a KV
    cache's past length), with the one length the calibration data give it (an .npz holds
    one shape per input): the ranges hold for data like it. A new-user trial's GPT-2 and
    Llama exports calibrated at past length 8 gave 31-35 dB there and 3-19 dB at past
    lengths 3 and 0; a third trial's, calibrated in one file on pasts left-padded to 8 with
    the padding masked (past lengths 0 to 8 in effect), gave 24.5-35.6 dB at 0, 3, 8 and
    20 (Llama 0.5 -> 33.2 dB at 0), hence the way the note gives (a second --calib file is
    refused). Where the model also fixes axis 0, the note says the batch may be one of the
    free axes (a sequence-first model given batch-first data passes every check when its
    sample count is a multiple of T: a new-user check). None when the model fixes every such
    axis."""
    free: dict[str, tuple[int, list[str]]] = {}  # axis -> (length, inputs)
    batch = sample_axes(graph)
    for info in graph.inputs:
        for axis, dim in enumerate(info.shape or ()):
            if (axis == batch[info.name] or isinstance(dim, int)
                    or axis >= np.ndim(feeds.get(info.name))):
                continue
            name = repr(dim) if isinstance(dim, str) and dim else f"axis {axis}"
            free.setdefault(name, (feeds[info.name].shape[axis], []))[1].append(info.name)
    if not free:
        return None
    axes = "; ".join(
        f"{name} {length} ({first_few(inputs)})"
        for name, (length, inputs) in free.items())
    fixed = fixed_batch(graph)
    elsewhere = (f"; the model fixes axis 0 at {fixed}{_batch_elsewhere_hint(graph)}"
                 if fixed else named_batch_hint(graph))
    return (f"calibrated at one length per free axis: {axes}; the ranges hold for data of "
            "those lengths: calibrate at the lengths the model will see, the shortest "
            "included, in the one file by padding shorter samples to its length (masking "
            "the padding where the model takes a mask, as an attention_mask of 0 does; an "
            "image model takes none, and padding changes what its convolutions compute: "
            "calibrate it at the size it will see most); "
            f"docs/limits.md, calibration data{elsewhere}")


def named_batch_hint(graph: Graph) -> str:
    """Advice for a model that names an axis past 0 its batch while axis 0 is free and named
    otherwise: a sequence-first layer (torch's ``batch_first=False``), whose data in its own
    layout passes every check, and whose axis 0, its steps, ptq-verify takes for samples. A
    new-user trial's GRU over (seq, batch, 8) was calibrated on slices of each sequence, and
    the output note said 13.6 dB where the written file gave 50.6 on whole held-out
    sequences; the note had called its batch 'a length'. A name is the user's own word (the
    exporters write dynamic_axes' and Dim's names), so this only advises. "" otherwise, and
    where :func:`batch_dimension` found the batch."""
    if batch_dimension(graph) is not None:
        return ""
    for info in graph.inputs:
        shape = info.shape or ()
        if not shape or isinstance(shape[0], int) or "batch" in str(shape[0]).lower():
            continue
        named = [axis for axis, dim in enumerate(shape)
                 if axis and isinstance(dim, str) and "batch" in dim.lower()]
        if named:
            return (f"; but axis {named[0]} of input {info.name!r} is named "
                    f"{shape[named[0]]!r}: if that is the model's batch (a sequence-first "
                    "model, as torch's batch_first=False), ptq-verify took axis 0 "
                    f"({shape[0]!r}) for its samples, calibrated on slices along it and "
                    "measured the output note so: export the model with every input batch "
                    "first (batch_first=True, or a wrapper that transposes)")
    return ""


def check_feeds(data: Mapping[str, np.ndarray] | np.ndarray, graph: Graph, what: str, *,
                in_file: bool = False, calibrating: bool = True) -> Feeds:
    """Check names, dtypes, shapes and finiteness; return arrays cast to the input dtypes.
    ``in_file``: the data came from a file, so advice on naming arrays is an np.savez call;
    else (the Python API) the dict to pass. ``calibrating``: the data calibrate; else they
    are a simulation's inputs (``QuantizedModel.run``), whose refusals had spoken of a
    calibration set.

    ``data`` is a mapping of input name -> array (anything ``np.asarray`` takes), or one
    array for a one-input model; another container (a list of arrays, whose order says
    nothing of which input each is) is a UserError, not numpy's truth-value ValueError."""
    if not isinstance(data, (Mapping, np.ndarray)) and hasattr(data, "__array__"):
        data = _numpy_of(data, what)
    if not isinstance(data, (Mapping, np.ndarray)):
        raise UserError(f"{what}: a dict of input name -> array (batch first), or one array "
                        f"for a one-input model, not {type_name(data)}; the model takes "
                        f"{', '.join(map(repr, graph.input_names))}" + _batches_hint(data, graph)
                        + _path_hint(data))
    if isinstance(data, np.ndarray):
        if len(graph.inputs) != 1:
            raise UserError(f"{what}: the model has {len(graph.inputs)} inputs; pass a dict")
        data = {graph.inputs[0].name: data}
    if not data:  # (np.savez failing part-way, on ragged token lists, leaves such a file)
        raise UserError(f"{what}: holds no arrays; the model takes "
                        f"{', '.join(map(repr, graph.input_names))}, one array each")
    missing = [n for n in graph.input_names if n not in data]
    extra = [n for n in data if n not in graph.input_names]
    if missing or extra:
        raise UserError(
            f"{what}: arrays {sorted(data)} do not match the model inputs {graph.input_names}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unknown {extra})" if extra else "")
            + _unnamed_hint(extra, missing, in_file)
            + _unread_hint(extra, missing, graph)
            + (_weights_as_inputs_hint(graph, data, missing)
               or _missing_hint(extra, missing, graph))
            + _overridable_hint(graph, extra)
        )
    feeds: Feeds = {}
    sizes = set()
    axes = sample_axes(graph)
    for info in graph.inputs:
        where = f"{what}: input {info.name!r}"
        batch_axis = axes[info.name]
        array = _numpy_of(data[info.name], where)
        kind_ok = (
            np.issubdtype(array.dtype, np.floating)
            if info.is_float
            else holds_integers(array.dtype)
        )
        if not kind_ok:
            hint = (_whole_floats_hint(info.dtype)
                    if np.issubdtype(array.dtype, np.floating) and array.size
                    and np.all(np.isfinite(array)) and np.all(array == np.round(array))
                    else _integers_for_floats_hint(info.dtype, array.dtype)
                    if info.is_float and holds_integers(array.dtype) else "")
            raise UserError(f"{where}: dtype {array.dtype} does not fit the model's "
                            f"{info.dtype}{hint}")
        if info.shape is not None and len(info.shape) == 0:
            raise UserError(
                f"{where}: the model takes a scalar there (shape ()), one value for a whole "
                "batch; calibration data holds one row per sample along each input's batch "
                "axis, so ptq-verify cannot feed it: where the model is used with one value "
                "there (a sample rate, a temperature), make that input a constant of the file "
                "(an initializer of that value, the input removed); else export it with a "
                "batch axis")
        if info.shape is not None:
            if array.ndim != len(info.shape):
                raise UserError(
                    f"{where}: shape {array.shape} has {array.ndim} "
                    f"{'axis' if array.ndim == 1 else 'axes'}, the model expects "
                    f"{len(info.shape)} ({_shape_text(info.shape)}), "
                    + _batch_axis_text(info, batch_axis)
                    + ((_unbatched_hint(array.shape, info.shape) if not batch_axis else "")
                       or _axis_count_hint(array.shape, info.shape, batch_axis)
                       or _no_batch_hint(graph))
                )
            for axis, (got, want) in enumerate(zip(array.shape, info.shape)):
                if axis != batch_axis and isinstance(want, int) and want > 0 and got != want:
                    raise UserError(
                        f"{where}: shape {array.shape} does not fit the model's "
                        f"{_shape_text(info.shape)} (axis {axis})"
                        + (_moved_batch_hint(array.shape, info, batch_axis) if batch_axis
                           else _axis_hint(array.shape, info.shape, axis))
                    )
        if array.ndim == 0 or array.shape[batch_axis] == 0:
            raise UserError(f"{where}: no samples"
                            + (" (empty calibration set)" if calibrating else ""))
        if info.is_float and np.isnan(array).any():
            raise UserError(f"{where}: {_nan_text(np.moveaxis(array, batch_axis, 0), calibrating)}")
        sizes.add(array.shape[batch_axis])
        feeds[info.name] = _cast_exactly(array, info.dtype, where)
    moved = any(axes.values())  # a batch off axis 0 (sample_axes)
    if len(sizes) > 1:
        raise UserError(f"{what}: inputs hold different numbers of samples along their "
                        f"{'batch axes' if moved else 'first axis'} "
                        f"({_first_axes(graph, feeds)}); every input holds one row per "
                        f"sample, {'along its batch axis' if moved else 'batch first'}"
                        + (batch_not_first(graph) or _unnamed_batch_hint(graph)
                           or _shared_input_hint(graph) or _no_batch_hint(graph)))
    _check_named_dimensions(graph, feeds, what)
    empty = next((info for info in graph.inputs
                  if info.shape and info.shape[axes[info.name]] == 0), None)
    if empty is not None:
        raise UserError(f"{what}: the model fixes axis {axes[empty.name]} of input "
                        f"{empty.name!r} at 0 "
                        f"({_shape_text(empty.shape)}): it takes no samples, so nothing can "
                        "calibrate it; export it with a batch axis")
    disagreeing = batch_sizes_disagree(graph)
    if disagreeing:
        raise UserError(f"{what}: {disagreeing}")
    fixed = fixed_batch(graph)
    if fixed and sizes and sizes.pop() % fixed:
        count = samples_in(feeds, graph)
        raise UserError(f"{what}: {count} samples do not make whole batches of {fixed}, the "
                        f"batch size the model fixes "
                        f"({'the batch axes' if moved else 'axis 0'} of its inputs); "
                        "give a multiple "
                        f"of {fixed}" + _batch_elsewhere_hint(graph))
    return feeds


def _numpy_of(data: object, what: str) -> np.ndarray:
    """An input's array as numpy reads it, another library's tensor (torch, jax: anything with
    ``__array__``) included: a newcomer's calibration batch is often a torch tensor, and one
    that requires grad (or a ragged list) is refused in one line, not numpy's traceback."""
    try:
        return np.asarray(data)
    except (TypeError, ValueError, RuntimeError) as err:  # torch: a tensor that requires grad
        raise UserError(f"{what}: {type_name(data)} cannot be read as a numpy array "
                        f"({_first_line(err)}); pass a numpy array (torch: "
                        f"{_torch_to_numpy(data)})") from None


def _torch_to_numpy(data: object) -> str:
    """torch's call that makes a tensor numpy reads: detached, on the CPU, and for a float
    tensor cast to float32 (``.float()``), since numpy has no bfloat16 or float8 and a
    trial's bfloat16 tensor was told ``tensor.detach().cpu().numpy()``, which fails alike."""
    floating = getattr(data, "is_floating_point", None)
    cast = ".float()" if callable(floating) and floating() else ""
    return f"tensor.detach().cpu(){cast}.numpy()"


def _batches_hint(data: object, graph: Graph) -> str:
    """For a list, tuple or iterator (a DataLoader's batches): the dict to give instead, and
    how batches become one array per input."""
    if not isinstance(data, Iterable) or isinstance(data, (str, bytes)):
        return ""
    return (f": {_placeholder_dict(graph.input_names)}; batches (a DataLoader's, as numpy "
            f"arrays) are joined along the batch axis with np.concatenate(batches), one array "
            f"per input")


def _path_hint(data: object) -> str:
    """For a file's path (the command line's ``--calib`` given to the Python API, as a
    newcomer trial did): the call that reads the file."""
    if not isinstance(data, (str, os.PathLike)):
        return ""
    return (f"; an .npz or .npy file's path is read with "
            f"ptq_verify.engine.read_data_file({os.fspath(data)!r}, graph)")


def _placeholder_dict(names: list[str]) -> str:
    """A dict literal keyed by ``names``, its values to fill in: ``{'input_ids': ...}``."""
    return "{" + ", ".join(f"{name!r}: ..." for name in names) + "}"


def _whole_floats_hint(dtype: np.dtype) -> str:
    """Advice for whole numbers held as floats given to an integer or bool input: the cast to
    make. A bool input is a mask, not ids, and ``np.bool`` (what ``np.{dtype}`` spelled) is
    no name in numpy 1.24 to 1.26, which the project supports: a new-user trial's float 0/1
    padding mask for a bool ``memory_key_padding_mask`` was told 'ids held as floats: save
    them with .astype(np.bool)'. An integer input need not hold ids either (Hugging Face's
    int64 attention_mask; the newcomer trial's float 0/1 mask was told 'ids held as floats'),
    so the hint names whole numbers."""
    if np.dtype(dtype) == np.bool_:
        return " (a mask held as floats: save it with .astype(bool))"
    return f" (whole numbers held as floats: save them with .astype(np.{np.dtype(dtype).name}))"


def _integers_for_floats_hint(dtype: np.dtype, dtype_given: np.dtype) -> str:
    """Advice for integer data (``dtype_given``) given to a float input of ``dtype``: it is not
    cast, since integers there are most often raw data the model's preprocessing had not yet
    turned into its inputs (uint8 pixels, 0-255, where the model takes normalised floats: cast
    as they are, the model would calibrate on values it never sees). Bool data is a mask, not
    raw values: a new-user trial's PatchTST export takes its observed-values mask as floats
    (1.0 and 0.0), and True/False data had been told to preprocess raw 0-255 pixels."""
    if np.dtype(dtype_given) == np.bool_:
        return (" (a mask of True/False given to a float input: where the model takes it as "
                f"1.0 and 0.0, save it with .astype(np.{dtype}))")
    return (" (integer data is not cast to a float input: raw values, as 0-255 uint8 "
            "pixels, have not had the model's preprocessing; apply it (scale, normalise, as "
            f"in training) and save the result with .astype(np.{dtype}))")


def _unbatched_hint(got: tuple[int, ...], want: tuple) -> str:
    """Advice for one sample given without its batch axis: every axis fits the model's past
    its first."""
    if len(got) + 1 != len(want) or not _fits(got, want[1:]):
        return ""
    return "; one sample without its batch axis? add one: array[None]"


def _axis_count_hint(got: tuple[int, ...], want: tuple, batch_axis: int) -> str:
    """Advice for samples given with one axis of length 1 too many or too few: a per-sample
    value (N,) for a model taking (batch, 1), a recorded state stacked as (N, layers, 1,
    hidden) for (layers, batch, hidden); the numpy call that gives the model's layout, the
    samples moved to its batch axis where that is not the first. A streaming trial's both
    had been told only how many axes the model expects. "" where no such call fits."""
    calls = []
    if len(got) + 1 == len(want):
        calls = [f"np.expand_dims(array, {k})" for k in range(1, len(want))
                 if _fits_samples_first((*got[:k], 1, *got[k:]), want, batch_axis)]
    elif len(got) == len(want) + 1:
        calls = [f"np.squeeze(array, {k})" for k in range(1, len(got))
                 if got[k] == 1
                 and _fits_samples_first((*got[:k], *got[k + 1:]), want, batch_axis)]
    if not calls:
        return ""
    call = calls[0] if not batch_axis else f"np.moveaxis({calls[0]}, 0, {batch_axis})"
    which = "missing" if len(got) < len(want) else "too many"
    return f"; the samples first with an axis of length 1 {which}? {call} gives its layout"


def _batch_axis_text(info: TensorInfo, axis: int) -> str:
    """Where an input's samples go: 'batch first', or the axis :func:`sample_axes` found."""
    if not axis:
        return "batch first"
    return f"its samples along axis {axis} ({info.shape[axis]!r}), as the model takes them"


def _moved_batch_hint(got: tuple[int, ...], info: TensorInfo, axis: int) -> str:
    """Advice for an input whose batch lies on ``axis`` > 0 (an LSTM state (1, batch, 16))
    given with its samples first, as every other input takes them: the np.moveaxis call
    that gives the model's layout."""
    where = f"the model takes its samples along axis {axis} ({info.shape[axis]!r})"
    if _fits_samples_first(got, info.shape, axis):
        return f"; {where}: np.moveaxis(array, 0, {axis}) gives its layout"
    return f"; {where}, every other axis as its shape says"


def _fits_samples_first(got: tuple[int, ...], want, axis: int) -> bool:
    """``got``, its samples on axis 0, fits ``want`` once they are moved to ``axis`` (the
    input's batch axis: np.moveaxis(array, 0, axis)). The count of samples is not compared
    with a batch the model fixes, which the data hold in whole multiples: an export's fixed
    batch of 2 had kept a diffusion trial's timesteps given as a column, (128, 1) for (2,),
    from the np.squeeze call."""
    return len(got) == len(want) and _fits(got[1:], (*want[:axis], *want[axis + 1:]))


def _fits(got: tuple[int, ...], want) -> bool:
    """``got`` fits ``want`` axis by axis (a free axis takes any length)."""
    return len(got) == len(want) and all(
        not isinstance(w, int) or w <= 0 or g == w for g, w in zip(got, want))


def _axis_hint(got: tuple[int, ...], want: tuple, axis: int) -> str:
    """Advice for an axis past the batch whose length the model fixes otherwise: the axes in
    another order (images height, width, channels for a model taking channels first), a size
    of the model where another axis past the batch is free (a new-user trial's KV cache of 4
    heads for a Llama export's 2 key/value heads had been told to pad texts to 2 tokens and
    to export that axis dynamic), or a length the data must take (texts padded to another
    length than the export's)."""
    if len(got) <= 7:  # (at most 720 orders to try)
        for order in itertools.permutations(range(1, len(got))):
            if _fits(tuple(got[i] for i in order), want[1:]):
                spelled = ", ".join(map(str, (0, *order)))
                return (f"; the axes after the first are in another order than the model's: "
                        f"array.transpose({spelled}) gives its layout")
    if any(not isinstance(w, int) or w <= 0 for w in want[1:]):
        return (f"; the model fixes that axis at {want[axis]} where it leaves another past "
                "the batch free, so it is a size of the model itself (its channels, or a KV "
                "cache's key/value heads), not a length: data made for another configuration "
                "of the model?")
    state = _fixed_state_hint(got, want, axis)
    return (state + f"; {'else ' if state else ''}the model was exported with that axis fixed "
            f"at {want[axis]}: give data of "
            f"that length there (texts padded or truncated to {want[axis]} tokens, images "
            "resized), or export the model with that axis dynamic")


def _fixed_state_hint(got: tuple[int, ...], want: tuple, axis: int) -> str:
    """For :func:`_axis_hint`: where the model fixes that axis at 1 and the data hold more
    there, it may be the batch of a recurrent state the export fixes (torch's h0 (layers, 1,
    hidden) without dynamic axes), given as docs/engine.md records states, along the batch
    axis. Such a model names no batch, and its samples go along axis 0 of every input, which
    for one layer is np.moveaxis(array, axis, 0); with more layers no layout holds them. A
    streaming trial's (1, 512, 16) state had been told to pad texts to 1 token. "" where the
    model leaves an axis free or fixes that one at another size."""
    fixed = all(isinstance(w, int) and w > 0 for w in want)
    if not fixed or want[axis] != 1 or got[axis] == 1:
        return ""
    where = (f"; if axis {axis} is the model's batch (a recurrent state (layers, batch, "
             "hidden) of an export that fixes its batch at 1), the model names none, and its "
             "samples go along axis 0 of every input")
    if _fits((*got[:axis], *got[axis + 1:]), want[1:]):
        return f"{where}: np.moveaxis(array, {axis}, 0) gives that layout"
    return (f"{where}, where this input holds {want[0]} (its layers): no layout holds more "
            "than one sample; export the model with that batch dynamic, named alike on every "
            "input")


def _nan_text(array: np.ndarray, calibrating: bool = True) -> str:
    """How many NaN values an input holds and in which samples (axis 0), so that they can be
    found and the samples dropped or mended."""
    samples = np.flatnonzero(np.isnan(array).reshape(len(array), -1).any(axis=1))
    count = int(np.count_nonzero(np.isnan(array)))
    return (f"{count} NaN value{'s' if count > 1 else ''} in {len(samples)} of its "
            f"{len(array)} samples, the first in sample {samples[0]}; mend or drop those "
            "samples " + ("(NaN is no value to calibrate on)" if calibrating
                          else "(integer codes hold no NaN)"))


def _unread_hint(extra: list[str], missing: list[str], graph: Graph) -> str:
    """Advice for arrays the model has no input for while none is missing: a tokenizer's
    output holds keys the exported model may not read (token_type_ids, special_tokens_mask);
    they are refused rather than dropped, since a misnamed array must not go unsaid."""
    if missing or not extra:
        return ""
    return (f": the model takes no input of {'that name' if len(extra) == 1 else 'those names'}"
            f"; leave {'it' if len(extra) == 1 else 'them'} out of the file, as "
            f"{_inputs_only_call(extra, graph)}")


_TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask",
                      "offset_mapping", "length", "overflow_to_sample_mapping")
"""Keys a Hugging Face tokenizer returns: an .npz holding one is a tokenizer's output."""


def _inputs_only_call(extra: list[str], graph: Graph) -> str:
    """The np.savez call that keeps the model's inputs alone: from a tokenizer's output
    (``encoded``) where the arrays are one, else naming the inputs (an image dataset's
    ``labels`` saved beside its ``images`` had been told to filter ``encoded.items()``)."""
    names = graph.input_names
    if any(name in _TOKENIZER_OUTPUTS for name in (*extra, *names)):
        keep = ", ".join(repr(name) for name in names)
        return f"np.savez(file, **{{k: v for k, v in encoded.items() if k in ({keep},)}})"
    if len(names) == 1:
        return savez_call(names[0])
    return f"np.savez(file, **{_placeholder_dict(names)})"


# the keys a Hugging Face tokenizer returns on request (return_attention_mask=True, ...)
_TOKENIZER_KEYS = ("attention_mask", "token_type_ids")


def _missing_hint(extra: list[str], missing: list[str], graph: Graph) -> str:
    """Advice for a file that lacks inputs and holds nothing else: every input is fed on
    every sample. A tokenizer leaves out the mask or the segment ids unless asked (and some
    never give token_type_ids), which a BERT export still takes."""
    if extra or not missing:
        return ""
    asked = [name for name in missing if name in _TOKENIZER_KEYS]
    tokenizer = (f" (a tokenizer gives {' and '.join(asked)} when asked: tokenizer(texts, "
                 + ", ".join(f"return_{name}=True" for name in asked) + ", ...))"
                 if asked else "")
    keys = ", ".join(repr(name) for name in graph.input_names)
    # (a tokenizer's ``encoded`` only where the model takes its outputs: an image model
    # missing an input had been told to save encoded[k], which it has not got)
    call = (f"np.savez(file, **{{k: encoded[k] for k in ({keys},)}})"
            if any(name in _TOKENIZER_OUTPUTS for name in graph.input_names)
            else savez_of(graph.input_names))
    read = graph.consumers()
    unread = [name for name in missing if name not in read]
    unused = (f" (no node reads {first_few([repr(name) for name in unread])}: any array of "
              "its shape and type will do, or export the model without it)" if unread else "")
    return (f": the model takes every input on every sample; save each{tokenizer}, as "
            f"{call}{unused}")


def _batch_elsewhere_hint(graph: Graph) -> str:
    """Advice for a model that fixes axis 0 and leaves another axis free: its batch may be
    that axis (torch's sequence-first layers, ``batch_first=False``: (T, N, D)), and then
    axis 0 is no batch at all. "" where :func:`batch_dimension` found the batch."""
    if batch_dimension(graph) is not None:
        return ""
    for info in graph.inputs:
        free = [axis for axis, dim in enumerate(info.shape or ()) if axis and
                not isinstance(dim, int)]
        if free:
            axis = free[0]
            name = info.shape[axis]
            return (f"; but axis {axis} of input {info.name!r} is free"
                    f"{f' ({name!r})' if name else ''}: if that is the model's batch (a "
                    "sequence-first model), give each input in the model's own layout, "
                    f"axis 0 of length {info.shape[0]}, every sample along axis {axis}")
    return ""


def fixed_batch_hint(graph: Graph) -> str:
    """Advice for a model that fixes its batch (axis 0 of every input at one size): the file
    holds the samples along that axis all the same, run that many at a time. Why: the audit
    printed such an input's shape as it is, ``image float32 (1, 3, 800, 608)`` (a new-user
    trial's paddle2onnx layout detector), which reads as one sample; calibrated on one, the
    ranges miss what other inputs reach. "" where the batch is free, or where some input
    leaves axis 0 free (faster-whisper's silero-vad: audio chunks (seq_len, 576) beside an
    LSTM state (1, 1, 128), whose axis 0 is no batch)."""
    from .float_run import SAMPLES  # (float_run imports this module)

    fixed = fixed_batch(graph)
    if not fixed or not all(info.shape and info.shape[0] == fixed for info in graph.inputs):
        return ""
    first = graph.inputs[0]
    shape = ", ".join(map(str, ("N", *first.shape[1:])))
    count = "any number of" if fixed == 1 else f"any multiple of {fixed}"
    # SAMPLES or more in whole batches (it had said 32 beside a batch fixed at 64, which no
    # multiple of 64 is: a text-encoder trial's dynamo exports)
    least = -(-SAMPLES // fixed) * fixed
    return (f"; the model fixes its batch at {fixed} (axis 0): the file holds {count} samples "
            f"along that axis all the same, run {fixed} at a time ({tensor_label(first.name)} "
            f"({shape}), N {least} or more){_batch_elsewhere_hint(graph)}")


def _overridable_hint(graph: Graph, extra: list[str]) -> str:
    """Advice for arrays named after constants of the model: an initializer a model also lists
    as a graph input (a default a runtime may override) is quantized as the value it holds."""
    constants = [name for name in extra if name in graph.initializers]
    if not constants:
        return ""
    return (f"; {constants[0]!r} is a constant of the model (an initializer it also lists as "
            "an input, a default a runtime may override): ptq-verify quantizes it as the "
            "value it holds, so give no array for it")


def _first_axes(graph: Graph, feeds: Feeds) -> str:
    """Each input's length along its batch axis, with the model's name for that axis."""
    parts = []
    axes = sample_axes(graph)
    for info in graph.inputs:
        axis = axes[info.name]
        declared = info.shape[axis] if info.shape else None
        named = f", the model's {declared!r}" if declared not in (None, "") else ""
        at = f" along axis {axis}" if axis else ""
        parts.append(f"{info.name!r} {feeds[info.name].shape[axis]}{at}{named}")
    return "; ".join(parts)


def batch_not_first(graph: Graph) -> str:
    """Advice for a model whose inputs all name one dimension alike, away from axis 0 of one
    of them, while their axes 0 differ: that dimension is its batch (a sequence-first GRU,
    torch's ``batch_first=False``, with its initial state as a second input: x (seq, batch,
    D), h0 (1, batch, H)), and no layout of the data makes one row per sample along every
    axis 0. A new-user trial's such export was refused with 'batch first' only, and the
    audit asked for 'batch first' data in the (seq, batch, 8) it printed. "" otherwise, and
    where :func:`batch_dimension` settles the batch (the one name all inputs share), whose
    axes :func:`sample_axes` takes the samples along."""
    if batch_dimension(graph) is not None:
        return ""
    shaped = [info for info in graph.inputs if info.shape]
    if len(shaped) < 2 or len({info.shape[0] for info in shaped}) == 1:
        return ""
    shared = set.intersection(*({d for d in info.shape if isinstance(d, str) and d}
                                for info in shaped))
    for name in sorted(shared):
        axes = [(info.name, info.shape.index(name)) for info in shaped]
        if any(axis for _, axis in axes):
            where = " and ".join(f"axis {axis} of {input_name!r}" for input_name, axis in axes)
            return (f"; the model names {where} alike, {name!r}: that is its batch, not axis 0 (a "
                    "sequence-first model, as torch's batch_first=False with an initial state "
                    "as an input), and ptq-verify takes every sample along axis 0 of every "
                    "input: export the model with every input batch first (batch_first=True, "
                    "or a wrapper whose forward takes each input batch first and transposes "
                    "it)")
    return ""


def _unnamed_batch_hint(graph: Graph) -> str:
    """Advice for a model whose inputs leave their batch unnamed where one input fixes axis 0
    and leaves one other axis free (an LSTM state (2, ?, 128) beside audio (?, 576): spox's
    export of silero-vad names no dimension; torch's legacy export given unnamed dynamic
    axes names each input's apart, 'x_dynamic_axes_1', 'h0_dynamic_axes_1'): naming that axis
    and the others' axis 0 alike in the file lets :func:`sample_axes` take the samples there.
    The outputs are named too (:func:`_batch_axes_to_name`), so that :func:`join` finds the
    final state's batch axis; the code is one Python statement that runs as given (a
    streaming trial's hint had put a ``for`` after a ``;``, a SyntaxError, and named the
    inputs alone: followed, the Python API joined 300 samples' final state (1, batch, 16)
    along axis 0, in batches of 256 and 44, into (2, 256, 16)). "" otherwise."""
    if batch_dimension(graph) is not None:
        return ""
    inputs = _batch_axes_to_name(graph.inputs)
    if inputs is None:
        return ""
    moved = [(name, axis) for name, axis in inputs if axis]
    if not moved or len(moved) == len(inputs):
        return ""
    where = inputs + (_batch_axes_to_name(graph.outputs) or [])
    spelled = " and ".join(f"axis {axis} of {name!r}" for name, axis in moved)
    return (f"; if the model's batch is {spelled} (an LSTM state (layers, batch, hidden)), "
            "name it and axis 0 of the other inputs and outputs alike in the file, and the "
            "samples go there in the model's own layout: "
            f"for name, axis in {where}: {{v.name: v for v in [*model.graph.input, "
            "*model.graph.output]}[name].type.tensor_type.shape.dim[axis].dim_param = 'batch'")


def _batch_axes_to_name(values: list[TensorInfo]) -> list[tuple[str, int]] | None:
    """For :func:`_unnamed_batch_hint`: each tensor's axis that may be the batch, axis 0 where
    it is free, else its one free axis; None where a tensor's shape is unknown or leaves no
    such axis."""
    axes = []
    for info in values:
        if not info.shape:
            return None
        free = [axis for axis, dim in enumerate(info.shape) if not isinstance(dim, int)]
        if not free or (free[0] != 0 and len(free) > 1):
            return None
        axes.append((info.name, free[0]))
    return axes


def _shared_input_hint(graph: Graph) -> str:
    """Advice for an input whose every axis the model fixes beside inputs with a free batch
    axis: one tensor for all samples (an (L, S) causal mask), which calibration data cannot
    hold one row per sample. Where that axis 0 is 1 (a past length of shape (1,)) the model
    runs sample by sample, and one row per sample feeds it (a new-user trial had been told
    it could not be fed)."""
    free = any(info.shape and not isinstance(info.shape[0], int) for info in graph.inputs)
    shared = [info for info in graph.inputs if info.shape
              and all(isinstance(d, int) and d > 0 for d in info.shape)]
    if not free or not shared:
        return ""
    if fixed_batch(graph) == 1:  # (a past length of shape (1,)): each sample runs alone
        return (f"; the model fixes axis 0 of input {shared[0].name!r} at 1, so it runs "
                "one sample at a time: give that "
                "input one row per sample too (np.repeat(array, samples, axis=0)), the row "
                "each sample runs with")
    return (f"; the model fixes input {shared[0].name!r} at {tuple(shared[0].shape)}, one "
            "tensor for every sample, which ptq-verify cannot feed: export it as a constant "
            "of the model")


def _no_batch_hint(graph: Graph) -> str:
    """Advice for a model with no batch axis: it fixes every input whole and their first
    axes differ, so one run takes one whole feed (a graph network exported with its shapes
    fixed: node features (1024, 3) beside an edge_index (2, 3584), the graphs of a batch
    joined into one). Calibration data hold samples along a batch axis, which such a model
    lacks; a new-user trial had been told to give one row per sample, batch first, which no
    layout of its data does. The integer inputs are named as the structure to make constant
    (where every sample shares it, as a fixed grid does), the rest then batching along axis
    0 in whole runs. "" otherwise."""
    shapes = [info.shape for info in graph.inputs]
    if (len(shapes) < 2 or not all(shape and all(isinstance(d, int) and d > 0 for d in shape)
                                   for shape in shapes)
            or len({shape[0] for shape in shapes}) == 1):
        return ""
    structure = [info.name for info in graph.inputs if not info.is_float]
    named = (f" ({', '.join(map(repr, structure))}: a graph network's edge_index)"
             if structure and len(structure) < len(shapes) else "")
    return ("; the model fixes every input whole and their first axes differ, so it has no "
            "batch axis to hold samples along: export the inputs every sample shares as "
            f"constants of the file{named}, so that the others hold samples along axis 0 in "
            "whole runs, or export every input with a batch axis")


def _cast_exactly(array: np.ndarray, dtype: np.dtype, where: str) -> np.ndarray:
    """``array`` in the model input's ``dtype``, refused where the cast would change a value
    rather than round it: a float64 beyond float32's range (it becomes inf), an integer
    beyond the input type's (uint64 ids of 2^63 and more wrap to negative int64 ids). Any
    integer is a bool (non-zero is true)."""
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):
        cast = array.astype(dtype, copy=False)
    if np.issubdtype(dtype, np.floating) and cast is not array:
        overflowed = np.isinf(cast) & np.isfinite(array)
        if overflowed.any():
            raise UserError(f"{where}: values up to {np.abs(array[overflowed]).max():.4g} in "
                            f"magnitude lie beyond the model's {dtype} (at most "
                            f"{np.finfo(dtype).max:.4g})")
    if np.issubdtype(dtype, np.integer) and array.size:
        low, high = array.min(), array.max()
        info = np.iinfo(dtype)
        if int(low) < info.min or int(high) > info.max:
            raise UserError(f"{where}: values from {low} to {high} lie beyond the model's "
                            f"{dtype} ({info.min} to {info.max})")
    return cast


def savez_call(name: str) -> str:
    """The np.savez call that stores one array under the input ``name``, as Python takes it:
    torch's legacy exporter names an unnamed input ``input.1``, and the hint
    ``np.savez(file, input.1=array)`` was a SyntaxError to whoever pasted it."""
    if keyword_name(name):
        return f"np.savez(file, {name}=array)"
    return f"np.savez(file, **{{{name!r}: array}})"


def keyword_name(name: str) -> bool:
    """Whether Python takes ``name`` as a keyword argument (``np.savez(file, name=...)``)."""
    return name.isidentifier() and not keyword.iskeyword(name)


def savez_of(names: list[str]) -> str:
    """The np.savez call that stores one array under each of ``names``, keyword arguments
    where Python takes them, else a dict unpacked."""
    if all(keyword_name(name) for name in names):
        return f"np.savez(file, {', '.join(f'{name}=...' for name in names)})"
    return f"np.savez(file, **{_placeholder_dict(names)})"


def _unnamed_hint(extra: list[str], missing: list[str], in_file: bool = True) -> str:
    """How to name arrays that ``np.savez(file, array)`` stored by position (``arr_0``,
    ``arr_1``, ...): numpy's names, which no model input has; or the one array given under
    another name than the one input missing (``images`` for ``pixel_values``)."""
    if not missing or not extra:
        return ""
    if len(missing) == 1 and len(extra) == 1 and not re.fullmatch(r"arr_\d+", extra[0]):
        # (a one-input model's images saved under a name of the user's own: 'images')
        return (f"; if {extra[0]!r} holds what the model takes as {missing[0]!r}, "
                + (f"save it under that name: {savez_call(missing[0])}" if in_file else
                   f"key it by that name: {{{missing[0]!r}: array}}"))
    if not all(re.fullmatch(r"arr_\d+", name) for name in extra):
        return ""
    return (f"; np.savez(file, array) names its arrays arr_0, arr_1, ...: key each by its "
            f"model input, {savez_call(missing[0])}")


def _weights_as_inputs_hint(graph: Graph, data: Mapping, missing: list[str]) -> str:
    """Why a model may want arrays no calibration set holds: the inputs the data names take a
    batch axis (a symbolic first dimension), the missing ones none (every dimension fixed), as
    when an export keeps its weights out of the file (torch.onnx.export(...,
    export_params=False); Keras 3.15's ``model.export(format="onnx")`` writes a Normalization
    layer's mean and variance so, adapted or given, and onnxruntime cannot run the file: an
    exporters trial read the torch advice alone)."""
    given = [info for info in graph.inputs if info.name in data]
    absent = [info for info in graph.inputs if info.name in missing]
    if not given or not absent or not all(
            info.shape and not isinstance(info.shape[0], int) for info in given):
        return ""
    if not all(info.shape is not None and all(isinstance(d, int) for d in info.shape)
               for info in absent):
        return ""
    return ("; the missing inputs have no batch axis: weights exported as inputs "
            "(torch.onnx.export(..., export_params=False), or a Keras Normalization layer, "
            "whose mean and variance Keras's ONNX export writes as inputs)? Export the model "
            "with its weights")


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) if d not in (None, "") else "?" for d in shape) + ")"


def fixed_batch(graph: Graph) -> int | None:
    """The batch size the model fixes on its inputs' batch axes (None when it is dynamic)."""
    fixed = set(_fixed_batch_sizes(graph).values())
    return fixed.pop() if len(fixed) == 1 else None


def _fixed_batch_sizes(graph: Graph) -> dict[str, int]:
    """Each input's length along its batch axis (:func:`sample_axes`), for the inputs whose
    shape fixes it."""
    axes = sample_axes(graph)
    return {t.name: t.shape[axes[t.name]] for t in graph.inputs
            if t.shape and isinstance(t.shape[axes[t.name]], int) and t.shape[axes[t.name]]}


def batch_sizes_disagree(graph: Graph) -> str:
    """Why no data feed a model whose inputs fix their batch axes at different sizes, and the
    way forward; "" otherwise. Every run feeds each input the same samples, so no run fits
    them all. A new-user trial's diffusion UNet exported with a timestep of shape (1,) beside
    latents of batch 2 (one timestep for the whole batch) passed every check of its data, one
    row per sample each, and failed on the first run inside the model, an Expand's shapes (4,)
    and (2,) named with onnxruntime's 'Got: 4 Expected: 2', which says nothing of the
    timestep; its audit had asked for those very data."""
    sizes = _fixed_batch_sizes(graph)
    if len(set(sizes.values())) < 2:
        return ""
    moved = any(sample_axes(graph).values())
    listed = ", ".join(f"{name!r} {size}" for name, size in sizes.items())
    shared = [name for name, size in sizes.items() if size == 1]
    advice = (f": {' and '.join(map(repr, shared))} {'takes' if len(shared) == 1 else 'take'} "
              "one row for the whole batch (as a diffusion timestep of shape (1,) beside "
              "latents of batch 2), which calibration data, one row per sample, cannot "
              "feed: export every input with the same batch (one row per sample), or the "
              "shared inputs as constants of the file" if shared
              else _no_batch_hint(graph) or "; export every input with the same batch")
    return (f"the model fixes its inputs' {'batch axes' if moved else 'axis 0'} at different "
            f"sizes ({listed}), and a run feeds every input the same samples, so no run fits "
            f"them all{advice}")


def batch_dimension(graph: Graph) -> str | None:
    """The name of the model's batch dimension where it lies on another axis than the first
    of some input: the one name every input's shape holds once, where their first axes
    differ. torch's nn.LSTM and nn.GRU take their initial state as (layers, batch, hidden)
    whatever ``batch_first`` says, so an export taking the state as an input (a streaming
    model: silero-vad's audio (batch, samples) beside its state (2, batch, 128)) names its
    batch on axis 1 there, as a sequence-first model does on every input. None where the
    first axes agree, or no single name settles it (the batch is then axis 0, and the
    refusals of :func:`check_feeds` say what does not fit)."""
    shaped = [info.shape for info in graph.inputs if info.shape]
    if len(shaped) < 2 or len({shape[0] for shape in shaped}) == 1:
        return None
    once = [{dim for dim in shape if isinstance(dim, str) and dim and shape.count(dim) == 1}
            for shape in shaped]
    shared = set.intersection(*once)
    if len(shared) != 1:
        return None
    name = shared.pop()
    return None if all(shape[0] == name for shape in shaped) else name


def sample_axes(graph: Graph) -> dict[str, int]:
    """Each input's batch axis, along which calibration data hold its samples: axis 0, or
    where :func:`batch_dimension` names the batch, that dimension's axis (the data take the
    model's own layout there: an LSTM state (1, N, 16) for N samples)."""
    name = batch_dimension(graph)
    return {info.name: info.shape.index(name) if name is not None and info.shape else 0
            for info in graph.inputs}


def moved_batch_note(graph: Graph) -> str:
    """Where the samples lie for inputs whose batch axis is not their first
    (:func:`sample_axes`), for a line that says 'batch first' of the others; "" otherwise."""
    moved = [(name, axis) for name, axis in sample_axes(graph).items() if axis]
    if not moved:
        return ""
    where = " and ".join(f"axis {axis} of {name!r}" for name, axis in moved)
    return (f"; the model's batch, {batch_dimension(graph)!r}, lies on {where}: "
            f"{'that array holds' if len(moved) == 1 else 'those arrays hold'} the samples "
            "there, in the model's own layout")


def batch_axis_of(graph: Graph, tensor: str) -> int:
    """The batch axis of any tensor of ``graph``: where its stated shape holds the batch's
    name once (:func:`batch_dimension`, else the name every input gives its axis 0): an
    LSTM's final state (1, batch, 16) as an output, whether the model takes a state or not;
    else 0. (Batches of a model taking (batch, T, D) to a (T, batch, D) output had been
    joined along axis 0: the Python API's outputs of 300 samples failed to join, the
    batches being 256 and 44, and equal batches would have joined into another layout.)"""
    name = batch_dimension(graph)
    if name is None:
        firsts = {info.shape[0] for info in graph.inputs if info.shape}
        name = firsts.pop() if len(firsts) == 1 else None
    shape = graph.shape_of(tensor) if isinstance(name, str) and name else None
    return shape.index(name) if shape and shape.count(name) == 1 else 0


def slice_along(axis: int, start: int, stop: int) -> tuple[slice, ...]:
    """The index taking ``start:stop`` along ``axis`` (a view, as a slice of axis 0 is)."""
    return (slice(None),) * axis + (slice(start, stop),)


def take(feeds: Feeds, graph: Graph, start: int, stop: int) -> Feeds:
    """Samples ``start:stop`` of every input, each along its batch axis."""
    axes = sample_axes(graph)
    return {name: array[slice_along(axes.get(name, 0), start, stop)]
            for name, array in feeds.items()}


def samples_in(feeds: Feeds, graph: Graph) -> int:
    """How many samples ``feeds`` hold (along the first input's batch axis)."""
    name, array = next(iter(feeds.items()))
    return array.shape[sample_axes(graph).get(name, 0)]


def join(graph: Graph, name: str, values: list[np.ndarray]) -> np.ndarray:
    """Batches' values of tensor ``name`` joined along its batch axis: where their lengths
    differ along one axis alone as batches cut from the samples do (equal but the last,
    which is shorter), that axis, else the stated one (:func:`batch_axis_of`). Why: an
    output whose stated shape names its batch otherwise than the inputs (torch's legacy
    export given unnamed dynamic axes names each tensor's apart) had been joined along axis
    0, and 320 samples, batches of 256 and 64, failed in numpy (a streaming trial's final
    state (1, batch, 16)). Lengths that vary otherwise (rows a selection keeps, which the
    data decide) leave the stated axis."""
    arrays = [np.asarray(v) for v in values]
    axis = batch_axis_of(graph, name)
    if len({array.ndim for array in arrays}) == 1 and len(arrays) > 1:
        differing = [k for k in range(arrays[0].ndim)
                     if len({array.shape[k] for array in arrays}) > 1]
        lengths = [array.shape[differing[0]] for array in arrays] if differing else []
        if (len(differing) == 1 and len(set(lengths[:-1])) == 1
                and lengths[-1] < lengths[0]):
            axis = differing[0]
    return np.concatenate(arrays, axis=axis)


def batches(feeds: Feeds, graph: Graph, batch_size: int) -> Iterator[Feeds]:
    """Split feeds along the batch axis (into the model's fixed batch size when it has one)."""
    size = fixed_batch(graph) or batch_size
    total = samples_in(feeds, graph)
    for start in range(0, total, size):
        yield take(feeds, graph, start, start + size)


class BudgetBatches:
    """Batches along the batch axis sized to a memory budget: the first holds ``first``
    samples; after each batch the caller reports the bytes its observed tensors took
    (:meth:`held`), and later batches hold as many samples as fit in ``budget`` (at least
    one, at most ``batch_size``). A model that fixes its batch size gets that size."""

    def __init__(self, feeds: Feeds, graph: Graph, batch_size: int, budget: int,
                 first: int = 4) -> None:
        self.feeds, self.graph, self.budget, self.batch_size = feeds, graph, budget, batch_size
        self.fixed = fixed_batch(graph)
        self.size = self.fixed or min(first, batch_size)

    def __iter__(self) -> Iterator[Feeds]:
        total = samples_in(self.feeds, self.graph)
        start = 0
        while start < total:
            size = self.size
            yield take(self.feeds, self.graph, start, start + size)
            start += size

    def held(self, nbytes: int, samples: int) -> None:
        """``samples`` samples took ``nbytes`` of observed tensors (0: unknown, take the
        largest size)."""
        if self.fixed:
            return
        fit = self.budget * samples // nbytes if nbytes > 0 else self.batch_size
        self.size = max(1, min(self.batch_size, fit))

    def at_most(self, size: int) -> None:
        """Hold the next batch to ``size`` samples at most (a fixed batch size stays)."""
        if not self.fixed:
            self.size = min(self.size, size)


def run_batched(run: Callable[[Feeds], dict], feeds: Feeds, graph: Graph,
                batch_size: int = 256) -> dict[str, np.ndarray]:
    """Run ``run`` batch by batch and concatenate each output along the batch axis."""
    parts: dict[str, list] = {}
    for batch in batches(feeds, graph, batch_size):
        for name, value in run(batch).items():
            parts.setdefault(name, []).append(value)
    return {name: join(graph, name, values) for name, values in parts.items()}


def type_name(value: object) -> str:
    """``value``'s type as a message names it: ``list``, ``onnx.onnx_ml_pb2.ModelProto``."""
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
