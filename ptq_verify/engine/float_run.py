"""The float graph on a calibration sample, batch by batch, for the steps that compare a
changed graph with the original on data (smoothing's strengths and check, mixed precision's
ranking): onnxruntime when it loads the graph, else the catalog's numpy kernels."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

import numpy as np

from ..graph import Graph, OperatorTable, run_graph
from ..graph.ort_runner import ort_runner
from ..progress import progress_bar
from .data import Feeds, batches, check_feeds, fixed_batch, join, samples_in, take

SAMPLES = 32  # calibration samples a comparison on data runs on
_TOLERANCE = 1e-4  # relative output change that counts as float rounding
_ULPS = 16  # the same, in units of a coarser constant type's precision (float16: 1.6e-2)


def sample_count(graph: Graph, samples: int = SAMPLES) -> int:
    """``samples``, made whole batches for a model that fixes its batch size."""
    fixed = fixed_batch(graph)
    return samples if not fixed else max(1, samples // fixed) * fixed


def few_samples_note(feeds: Feeds, graph: Graph) -> str | None:
    """A note where the calibration set holds fewer samples than the comparisons on data take
    (:func:`sample_count`), else None. A new-user trial calibrated a CNN on one image with no
    word said: 37.5 dB by the output note, measured on that image, against 31.8 dB on
    held-out data (39.8 dB calibrated on 192)."""
    count = samples_in(feeds, graph) if feeds else 0
    wanted = sample_count(graph)
    if count >= wanted:
        return None
    return (f"calibrated on {count} sample{'s' if count != 1 else ''}: ranges from so few miss "
            "values that other inputs reach, and the output SQNR note measures the file on "
            f"those same samples; calibrate on {wanted} or more samples like the model's inputs")


def first_samples(feeds: Feeds, graph: Graph) -> Feeds:
    """The first :func:`sample_count` samples of ``feeds``: those a changed graph is compared
    with the original on, and the written model is checked on."""
    return take(feeds, graph, 0, sample_count(graph))


def calibration_feeds(data, graph: Graph) -> tuple[Feeds, Feeds]:
    """The calibration data checked against ``graph``, and its :func:`first_samples`."""
    every = check_feeds(data, graph, "calibration data")
    return every, first_samples(every, graph)


def float_runner(graph: Graph, table: OperatorTable, want: list[str]
                 ) -> Callable[[Feeds], dict[str, np.ndarray] | None]:
    """A function of feeds giving the float graph's ``want`` tensors, or None when the graph
    cannot run here (one onnxruntime session for every call, else the numpy kernels)."""
    session = ort_runner(graph, want)

    def run(feeds: Feeds) -> dict[str, np.ndarray] | None:
        out = session.run(feeds) if session is not None else None
        if out is not None:
            return out
        try:
            return run_graph(graph, feeds, table, want=want)
        except Exception:  # noqa: BLE001 - a graph that cannot run here gives None
            return None

    return run


def streamed(graph: Graph, table: OperatorTable, feeds: Feeds, want: list[str], label: str,
             progress: bool = False) -> Iterator[tuple[int, dict[str, np.ndarray] | None]]:
    """(samples in the batch, the float graph's ``want`` tensors on it) batch by batch over
    ``feeds``, with a progress bar on stderr named ``label``; the tensors are None for a batch
    the graph cannot run here (the caller stops)."""
    run = float_runner(graph, table, want)
    with progress_bar(total=samples_in(feeds, graph), desc=label, unit="sample",
                      progress=progress) as bar:
        for batch in batches(feeds, graph, SAMPLES):
            count = samples_in(batch, graph)
            yield count, run(batch)
            bar.update(count)


def run_float(graph: Graph, table: OperatorTable, feeds: Feeds, want: list[str]
              ) -> dict[str, np.ndarray] | None:
    """The float graph's ``want`` tensors on ``feeds``, batch by batch (a model that fixes
    its batch size runs on nothing else); None when the graph cannot run here."""
    return run_in_batches(float_runner(graph, table, want), feeds, graph, want)


def run_in_batches(run: Callable[[Feeds], dict[str, np.ndarray] | None], feeds: Feeds,
                   graph: Graph, want: list[str]) -> dict[str, np.ndarray] | None:
    """``run`` on ``feeds`` batch by batch (``graph``'s fixed batch size, else SAMPLES), its
    ``want`` tensors joined; None as soon as a batch gives None."""
    parts = []
    for batch in batches(feeds, graph, SAMPLES):
        values = run(batch)
        if values is None:
            return None
        parts.append(values)
    return joined(graph, parts, want)


def joined(graph: Graph, parts: list[dict[str, np.ndarray]], names: list[str]
           ) -> dict[str, np.ndarray]:
    """Batches' tensors named ``names`` joined along their batch axes."""
    if len(parts) == 1:  # one batch: outputs as they are (a 0-d output has no batch axis)
        return {name: parts[0][name] for name in names}
    return {name: join(graph, name, [p[name] for p in parts]) for name in names}


def kept_if_same(graph: Graph, table: OperatorTable, feeds: Feeds,
                 reference: Mapping[str, np.ndarray] | None, change: Callable[[], list]) -> list:
    """Run ``change`` (it edits ``graph`` in place and returns what it did); keep the edit
    when the float graph's outputs on ``feeds`` still agree with ``reference`` (:func:`agrees`),
    else restore the graph and return [] (smoothing and bias absorption: a move the proofs call
    exact that is not, on data, is undone)."""
    before = (dict(graph.initializers), [replace(n, inputs=list(n.inputs)) for n in graph.nodes],
              dict(graph.value_info))
    done = change()
    after = run_float(graph, table, feeds, graph.output_names) if done else None
    if (not done or reference is None or after is None
            or not agrees(reference, after, rounding_tolerance(graph, before[0]))):
        graph.initializers, graph.nodes, graph.value_info = before
        return []
    return done


def rounding_tolerance(graph: Graph, before: Mapping[str, np.ndarray]) -> float:
    """The relative output change that counts as float rounding after a change that wrote
    the constants of ``graph`` not in ``before`` (the initializers it had, the same arrays):
    each is rounded to its own type, so constants coarser than float32 (a float16
    conversion's) change the outputs by that type's rounding, times :data:`_ULPS`. Why:
    all-MiniLM-L6-v2 converted to float16 (onnxruntime.transformers.float16) changed its
    output by 6.1e-3 of its largest value when smoothed, and every smoothing was undone
    (0.987 mean cosine, 0.996 for the float32 export)."""
    written = [value for name, value in graph.initializers.items()
               if before.get(name) is not value and np.issubdtype(value.dtype, np.floating)]
    return max(_TOLERANCE, _ULPS * max((float(np.finfo(value.dtype).eps) for value in written),
                                       default=0.0))


def agrees(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray],
           tolerance: float = _TOLERANCE) -> bool:
    """Whether every float output agrees to float rounding (relative to its largest value)
    and every other output (indices, flags) exactly."""
    return all(np.allclose(after[k], v, rtol=tolerance,
                           atol=tolerance * (np.abs(v).max(initial=0) + 1e-30))
               if np.issubdtype(np.asarray(v).dtype, np.floating)
               else np.array_equal(after[k], v) for k, v in before.items())
