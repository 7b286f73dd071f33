"""Nodes no activation of the model's data enters, run in float where only float nodes read them.

A node whose inputs are static tensors (shapes, positions, masks) and constants, one of them a
table, computes an activation (docs/engine.md, static tensors): rotary angles are int64
``position_ids`` times a table of inverse frequencies, Concatenated, then read by Cos and Sin,
which have no scaling rule and run in float. As codes those angles (0 to 500 radians, 4 a
code at 8 bits) gave 3.0 dB where float gave 33, so such nodes, and those reading only their
outputs, run in float, exactly, wherever every reader of their outputs runs in float. A weight
layer (constant weights of several values, mixing channels) stays on integers.

This follows from the rules and the graph, not from data: ``quantize`` and ``audit`` both take
it from here, so the audit lists the rotary angles in float as ``quantize`` runs them (it had
listed them on codes, ``output scale s^(1, 1)``, beside a Cos 'on the original range').
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, MutableMapping

import numpy as np

from ..catalog.operator import Operator
from ..graph import Graph, Node
from .plan import Action, NodeAction
from .rules import is_lattice_selection

STATIC_ALONE_REASON = ("computed from static tensors and constants alone, read only by nodes "
                       "in float")
"""Why such a node runs in float, as quantize's summary and the audit say it."""


def from_static_alone(graph: Graph, ops: Mapping[str, Operator | None],
                      plans: list[NodeAction]) -> set[str]:
    """The nodes no activation of the model's data enters: those that read no activation
    but a table (positions times frequencies), other than a selection from it (an
    embedding's rows are the model's data), and those reading only their outputs.
    ``plans`` follow ``graph.nodes``' order."""
    derived: set[str] = set()
    tensors: set[str] = set()
    for node, plan in zip(graph.nodes, plans):
        op = ops[node.name]
        if plan.action is Action.STATIC or op is None:
            continue
        reads = [node.inputs[slot] for slot in plan.activation_slots]
        if (all(name in tensors for name in reads) if reads
                else not is_lattice_selection(op)):
            derived.add(node.name)
            tensors.update(node.outputs)
    return derived


def mark_static_alone(graph: Graph, ops: Mapping[str, Operator | None],
                      plans: list[NodeAction], floats: MutableMapping[str, str],
                      consumers: Mapping[str, list[Node]] | None = None) -> None:
    """Add to ``floats`` (node -> why it runs in float) each node of
    :func:`from_static_alone` whose outputs only nodes in ``floats`` read, readers first, so
    a chain of them before a Cos runs in float as a whole; a weight layer stays on integers.
    ``consumers``: ``graph.consumers()``, where the caller holds it already."""
    consumers = graph.consumers() if consumers is None else consumers
    outputs = set(graph.output_names)
    derived = from_static_alone(graph, ops, plans)
    for node in reversed(graph.nodes):
        op = ops[node.name]
        if (node.name in derived and op is not None
                and not (op.mixes_channels and any(  # a weight layer stays on integers
                    np.size(graph.initializers.get(name, ())) > 1 for name in node.inputs))
                and all(read_in_float_only(out, consumers, outputs, floats)
                        for out in node.outputs)):
            floats.setdefault(node.name, STATIC_ALONE_REASON)


def read_in_float_only(tensor: str, consumers: Mapping[str, list[Node]],
                       outputs: Collection[str], floats: Collection[str]) -> bool:
    """Whether every reader of ``tensor`` runs in float (is in ``floats``, node names or a
    mapping keyed by them) and it is no graph
    output (``outputs``), so that codes for it would only add a rounding between two float
    nodes."""
    users = consumers.get(tensor, [])
    return bool(users) and tensor not in outputs and all(u.name in floats for u in users)
