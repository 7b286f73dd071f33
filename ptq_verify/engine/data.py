"""Calibration and inference data: reading .npz/.npy files, checking them against the model,
and running a graph batch by batch (sample by sample when the model fixes batch size 1)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..graph import Graph

Feeds = dict[str, np.ndarray]


def read_data_file(path: str | os.PathLike, graph: Graph) -> Feeds:
    """Read ``.npz`` (one array per model input, keyed by input name, batch first) or ``.npy``
    (a one-input model)."""
    source = Path(path)
    if not source.is_file():
        raise UserError(f"{source}: no such calibration file")
    try:
        loaded = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{source}: not a readable .npy/.npz file ({err})") from None
    if isinstance(loaded, np.ndarray):
        if len(graph.inputs) != 1:
            names = ", ".join(graph.input_names)
            raise UserError(
                f"{source}: a single .npy array only fits a one-input model; this one has "
                f"inputs {names}: use an .npz keyed by input name"
            )
        return {graph.inputs[0].name: loaded}
    with loaded:
        return {key: loaded[key] for key in loaded.files}


def check_feeds(data: Mapping[str, np.ndarray] | np.ndarray, graph: Graph, what: str) -> Feeds:
    """Check names, dtypes, shapes and finiteness; return arrays cast to the input dtypes."""
    if isinstance(data, np.ndarray):
        if len(graph.inputs) != 1:
            raise UserError(f"{what}: the model has {len(graph.inputs)} inputs; pass a dict")
        data = {graph.inputs[0].name: data}
    missing = [n for n in graph.input_names if n not in data]
    extra = [n for n in data if n not in graph.input_names]
    if missing or extra:
        raise UserError(
            f"{what}: arrays {sorted(data)} do not match the model inputs {graph.input_names}"
            + (f" (missing {missing})" if missing else "")
            + (f" (unknown {extra})" if extra else "")
        )
    feeds: Feeds = {}
    sizes = set()
    for info in graph.inputs:
        array = np.asarray(data[info.name])
        where = f"{what}: input {info.name!r}"
        kind_ok = (
            np.issubdtype(array.dtype, np.floating)
            if info.is_float
            else np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)
        )
        if not kind_ok:
            raise UserError(f"{where}: dtype {array.dtype} does not fit the model's {info.dtype}")
        if info.shape is not None:
            if array.ndim != len(info.shape):
                raise UserError(
                    f"{where}: shape {array.shape} has {array.ndim} axes, the model expects "
                    f"{len(info.shape)} ({_shape_text(info.shape)}), batch first"
                )
            for axis, (got, want) in enumerate(zip(array.shape, info.shape)):
                if axis > 0 and isinstance(want, int) and want > 0 and got != want:
                    raise UserError(
                        f"{where}: shape {array.shape} does not fit the model's "
                        f"{_shape_text(info.shape)} (axis {axis})"
                    )
        if array.ndim == 0 or array.shape[0] == 0:
            raise UserError(f"{where}: no samples (empty calibration set)")
        if info.is_float and not np.all(np.isfinite(array)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            raise UserError(f"{where}: {bad} NaN or infinite values")
        sizes.add(array.shape[0])
        feeds[info.name] = array.astype(info.dtype, copy=False)
    if len(sizes) > 1:
        raise UserError(f"{what}: inputs have different numbers of samples {sorted(sizes)}")
    return feeds


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) if d not in (None, "") else "?" for d in shape) + ")"


def fixed_batch(graph: Graph) -> int | None:
    """The batch size the model fixes on its first input axis (None when it is dynamic)."""
    fixed = {
        t.shape[0] for t in graph.inputs if t.shape and isinstance(t.shape[0], int) and t.shape[0]
    }
    return fixed.pop() if len(fixed) == 1 else None


def batches(feeds: Feeds, graph: Graph, batch_size: int) -> Iterator[Feeds]:
    """Split feeds along the batch axis (into the model's fixed batch size when it has one)."""
    size = fixed_batch(graph) or batch_size
    total = next(iter(feeds.values())).shape[0]
    for start in range(0, total, size):
        yield {name: array[start : start + size] for name, array in feeds.items()}


def run_batched(run: Callable[[Feeds], dict], feeds: Feeds, graph: Graph,
                batch_size: int = 256) -> dict[str, np.ndarray]:
    """Run ``run`` batch by batch and concatenate each output along the batch axis."""
    parts: dict[str, list] = {}
    for batch in batches(feeds, graph, batch_size):
        for name, value in run(batch).items():
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values, axis=0) for name, values in parts.items()}
