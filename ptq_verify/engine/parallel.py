"""Independent numpy work spread over the machine's cores, in threads.

numpy releases the GIL in its products, reductions and element-wise loops, so Python threads
that each run one BLAS thread use every core on work made of large arrays. This is preferred
over BLAS's own threads: those wait on each other, spinning, whenever another process holds a
core (measured on all-MiniLM-L6-v2's smoothing search, 2 cores: serial 7.4 s; BLAS's 2
threads 4.6 s idle but 10.8 s with one core busy elsewhere; two Python threads with one BLAS
thread each 3.9 s idle and 5.9 s with one core busy). Results do not depend on the threads:
each item's work is the same serial computation, and results come back in the items' order.
One more thread runs work in the background (:func:`in_background`): an onnxruntime run that
the caller overlaps with its own numpy work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import TypeVar

from threadpoolctl import ThreadpoolController

Item = TypeVar("Item")
Result = TypeVar("Result")

MIN_PARALLEL_BYTES = 4 << 20
"""Below this much data to go through, the items run in the calling thread: handing small
arrays between threads costs more than a second core gains (the digits CNN's calibration, 64
batches of 4 images: 0.14 s serial, 0.34 s on threads)."""


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def mapped(function: Callable[[Item], Result], items: Iterable[Item],
           nbytes: int | None = None) -> list[Result]:
    """``[function(item) for item in items]``, computed on :func:`cores` threads with one BLAS
    thread each; the first exception in the items' order is raised. ``nbytes``: how much data
    the items go through, when the caller knows (under MIN_PARALLEL_BYTES they run here)."""
    items = list(items)
    with _blas().limit(limits=1, user_api="blas"):
        if len(items) < 2 or cores() < 2 or (nbytes is not None
                                              and nbytes < MIN_PARALLEL_BYTES):
            return [function(item) for item in items]
        return list(_pool().map(function, items))


@cache
def _pool() -> ThreadPoolExecutor:
    """One pool for the process: starting threads for each call cost more than small calls.
    A process forked from this one makes its own (the threads stay with the parent: the
    child's copy of the pool would queue work that no thread takes)."""
    return ThreadPoolExecutor(max_workers=cores(), thread_name_prefix="ptq-verify")


def in_background(function: Callable[..., Result], *args) -> Future:
    """``function(*args)`` started on the process's one background thread, for work that
    lets Python go while it runs (an onnxruntime run) and that the caller overlaps with its
    own; calls queue behind each other, so at most one runs at a time."""
    return _background().submit(function, *args)


@cache
def _background() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="ptq-verify-background")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: (_pool.cache_clear(), _background.cache_clear()))


@cache
def _blas() -> ThreadpoolController:
    """The process's BLAS libraries, found once (each search reads every loaded library)."""
    return ThreadpoolController()
