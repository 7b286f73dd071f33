"""Find the declared operator that runs a node: extra operators first, then the catalog.

The engine never names operator types: a node is run and classified through the
:class:`~ptq_verify.catalog.operator.Operator` found here, so an operator declared by a user
(``operators={"MySwish": Operator(...)}``) flows through with no engine change.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np
import onnx

from ..catalog.operator import Operator, runtime_domain, runtime_schemas
from ..errors import UserError
from ..wording import first_few
from .branches import condition_hint
from .model import Graph, Node, holds_integers, subgraphs

_SUBGRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
# A loop's body (ONNX names a Loop's and a Scan's subgraph ``body``) stays whatever the shapes:
# both torch exporters write nn.EmbeddingBag as a Loop over its bags (a new-user trial's DLRM
# and two-tower models), so fixing shapes, the way forward for a branch, does not remove it.
_LOOP_HINT = ("; a loop's body stays at any shapes: torch writes nn.EmbeddingBag as a Loop "
              "over its bags, and nn.Embedding with a sum over the bag axis (padding masked "
              "by weights of 0, a mean divided by the count) exports without one")


class OperatorTable:
    """Node -> Operator lookup. ``extra`` maps an ONNX op type to an operator (any domain);
    ``source`` names where the extra declarations come from (an OPS.toml), for messages;
    ``unchecked``: extra declarations of standard op types that could not be compared with
    onnxruntime's kernel, each with why (graph/declared_kernels.py); ``float_types``: op
    types the user asks to keep in float (``--float-op``) although nothing declares them
    (a recurrent layer): their nodes run as onnxruntime runs them, on dequantized inputs, with
    no rule claimed (:meth:`kept_in_float`)."""

    def __init__(self, extra: Mapping[str, Operator] | None = None,
                 source: str | None = None, unchecked: Mapping[str, str] | None = None,
                 float_types: Iterable[str] = ()) -> None:
        # the Python API takes ``operators=`` from its user: a list of Operators, or a
        # formula where an Operator belongs, had failed later as a TypeError or an
        # AttributeError, or (a str) been kept and the node then refused as undeclared
        if extra is not None and not isinstance(extra, Mapping):
            raise UserError(
                f"operators: a dict of ONNX op type -> Operator, not {type(extra).__name__}"
                + (": {op.onnx_type or op.name: op for op in operators}"
                   if isinstance(extra, (list, tuple, set)) else ""))
        for key, op in (extra or {}).items():
            if not isinstance(key, str) or not isinstance(op, Operator):
                raise UserError(
                    f"operators: {key!r}: {type(op).__name__} {op!r:.60}; each entry maps an "
                    "ONNX op type (str) to an Operator(name, inputs, expr, params, "
                    "onnx_type=...)")
            if op.onnx_type is not None and key not in (op.onnx_type,
                                                        op.onnx_type.rpartition(":")[2]):
                # (the key is what nodes are matched by: {"Hardswish": HardSwish's
                # declaration} had matched no node and left the catalog's in its place)
                raise UserError(
                    f"operators: key {key!r} holds operator {op.name!r} of onnx_type "
                    f"{op.onnx_type!r}: nodes are matched by the key, so key it by its "
                    f"onnx_type ({{op.onnx_type: op}})")
        self.extra = dict(extra or {})
        if source is None:  # (a file's are compared where it is read, cli/models.py)
            _require_onnx_semantics(self.extra)
        self.source = source
        self.unchecked = dict(unchecked or {})
        self.float_types = _op_types(float_types)
        for op_type in sorted(self.float_types):
            if op_type in self.extra:
                raise UserError(f"--float-op {op_type}: the op type is declared "
                                f"({self.source or 'operators='}); a declared node is "
                                "quantized by its rule, so keep it in float or declare it, "
                                "not both")

    def kept_in_float(self, node: Node, graph: Graph | None = None) -> bool:
        """Whether ``node`` runs in float at the user's request (``float_types``): its op
        type is listed and no declaration takes it. Only nodes nothing describes are kept so:
        a declared node keeps its proved rule (:func:`check_float_types` refuses listing
        one)."""
        return node.op_type in self.float_types and self._undeclared(node, graph)

    def on_integers_only(self, node: Node, graph: Graph | None = None) -> bool:
        """Whether ``node``, which no declaration describes, reads and writes only integers
        or booleans of the types the graph states (a BitwiseAnd of token ids, a BitShift in
        a hash): no scale reaches such tensors (the model's integer inputs are not
        quantized), so the node needs no scaling rule and runs as exported, exactly, as a
        static node (:func:`_on_integers`)."""
        return _on_integers(node, graph) and self._undeclared(node, graph)

    def runs_as_exported(self, node: Node, graph: Graph | None = None) -> bool:
        """Whether the engine runs ``node`` in onnxruntime as the file has it, with no
        declaration: :meth:`kept_in_float` or :meth:`on_integers_only`. (Per node and batch
        in a run on the catalog's kernels: the declarations are searched only for a node
        that passes the cheap tests first.)"""
        return ((node.op_type in self.float_types or _on_integers(node, graph))
                and self._undeclared(node, graph))

    def _undeclared(self, node: Node, graph: Graph | None) -> bool:
        """Whether no declaration, the user's or the catalog's, takes ``node``."""
        return self.declaration_key(node) is None and self.lookup(node, graph)[0] is None

    @classmethod
    def of(cls, operators: Mapping[str, Operator] | OperatorTable | None) -> OperatorTable:
        """``operators`` as a table: a table as it is, a dict of declarations (what the
        Python API documents for ``operators=``, docs/engine.md) or None made one. The steps
        that take ``table=`` (equalize, absorb, smooth, costliest) had used a dict as a
        table, an AttributeError at its first lookup."""
        return operators if isinstance(operators, OperatorTable) else cls(operators)

    def find(self, node: Node, graph: Graph | None = None) -> Operator | None:
        """The node's operator: its declaration, if the node's inputs and outputs fit it (see
        :meth:`unfit`); None otherwise, so that the engine treats the node as unknown."""
        op, misfit = self.lookup(node, graph)
        return op if misfit is None else None

    def lookup(self, node: Node, graph: Graph | None = None
               ) -> tuple[Operator | None, tuple[Operator, str] | None]:
        """(:meth:`find`, :meth:`unfit`) of the node from one search of the declarations."""
        key = self.declaration_key(node)
        op = self.extra[key] if key is not None else self._in_catalog(node, graph)
        if op is None:
            return None, None
        extra = key is not None
        where = (self.source or "an extra declaration") if extra else "the built-in catalog"
        declaration = f"its declaration {op.name!r} ({where})"
        if (why := _misfit(node, op)) is not None:
            # a file's declaration binds its tensors to the node's inputs in order: a
            # new-user trial declared a Pow by 1.7 with the exponent as a parameter
            count = _used(node.inputs)
            order = (f" (a file's declaration takes the node's inputs as its tensors, in "
                     f"order: inputs = \"{_tensor_names(count)}\" for "
                     f"{_plural(count, 'input')})"
                     if extra and not op.onnx_variadic and count > len(op.onnx_inputs) else "")
            return None, (op, f"{why}; {declaration} {_capacity(op)}{order}")
        if extra and (why := _untaken_attribute(node, op)) is not None:
            return None, (op, f"{why}; {declaration} computes the node by its expression")
        if (why := _unrunnable(node, op)) is not None:
            return None, (op, f"{why}; {declaration} computes the node by its expression")
        if extra and (why := _unlike_runtime(node, op)) is not None:
            return None, (op, f"{why}; {declaration} was compared with onnxruntime's "
                          "kernel at its sample values alone: correct the expression for "
                          "every value the attributes take")
        return op, None

    def declaration_key(self, node: Node) -> str | None:
        """The key of :attr:`extra` that declares the node: ``domain:op_type`` for a node of
        that domain (a custom op named as a standard one, ``com.example:Relu``, leaves the
        standard op to the catalog), else its op type (any domain); None when none does."""
        qualified = f"{node.domain}:{node.op_type}"
        if not node.in_onnx_domain and qualified in self.extra:
            return qualified
        return node.op_type if node.op_type in self.extra else None

    def assumed_attributes(self, nodes: Iterable[Node]) -> list[str]:
        """Each attribute a node leaves out that its file declaration binds to a parameter,
        where no ONNX schema gives its default (a custom domain's op type), as ``node 'n'
        (T): attr = value``: the declaration's sample value then stands for the node's (its
        declaration is its schema, :meth:`Operator.attribute`), which the node's own kernel
        may not share. A trial's SwishBeta declared ``gamma*x*sigmoid(beta*x)`` with gamma = 2
        on nodes without a gamma was calibrated on twice the outputs its kernel writes, with
        no word said; quantize's notes and audit's summary now name them. An attribute a
        standard op type's schema does not have is not listed: no node can carry it, and the
        declaration's sample value was compared with onnxruntime's kernel (declared_kernels;
        a newcomer trial's HardSwish with a slope 'a' was told to write 'a' on its nodes)."""
        from ..catalog.operator import attribute_default
        from .declared_kernels import schema_lacks

        assumed = []
        for node in nodes:
            key = self.declaration_key(node)
            op = self.extra.get(key) if key is not None else None
            if op is None or not op.runs_expression:
                continue
            assumed += [(node, attr, op.params[param]) for attr, param in op.onnx_attrs.items()
                        if attr not in node.attrs and attribute_default(op.onnx_type, attr)
                        is None and not schema_lacks(op.onnx_type, attr)]
        if not assumed:  # (rules.literals loads sympy: not for a quantize of stored verdicts)
            return []
        from ..rules.literals import decimal  # (1e400, not its 401 digits: a hostile hunt)

        return [f"node {node.name!r} ({node.op_type}): {attr} = {decimal(value)}"
                for node, attr, value in assumed]

    def unused(self, nodes: Iterable[Node]) -> list[str]:
        """Each extra declaration no node of ``nodes`` takes, as ``'name' (onnx_type)``: a
        declaration whose ``onnx_type`` names no node (a typo the nodes' refusal does not
        meet where none of them is undeclared, a catalog op the model lacks) or whose nodes
        the model defines itself, in ``model.functions``, inlined at load: a new-user trial's
        declarations of custom:QuickGELU beside the model's own QuickGELU function were left
        unused, unsaid."""
        taken = {self.declaration_key(node) for node in nodes}
        return [f"{op.name!r} ({key})" for key, op in self.extra.items() if key not in taken]

    def _in_catalog(self, node: Node, graph: Graph | None) -> Operator | None:
        """The catalog's declaration of the node's op type (a node no extra declaration
        takes); the graph's constants select among declarations of one type (Pow's exponent,
        Clip's bounds)."""
        if not node.in_onnx_domain:
            return None
        from ..catalog import operator_for_onnx_type, typed_input_slots

        constants = {}
        if graph is not None:
            constants = {slot: graph.initializers[name] for slot, name in enumerate(node.inputs)
                         if name in graph.initializers}
        return operator_for_onnx_type(node.op_type, node.attrs, constants, arity=len(node.inputs),
                                      empty={slot for slot, name in enumerate(node.inputs)
                                             if not name},
                                      types=_element_types(node, graph,
                                                           typed_input_slots(node.op_type)))

    def unfit(self, node: Node, graph: Graph | None = None) -> tuple[Operator, str] | None:
        """A declaration of the node's op type that the node does not fit, and what does not
        fit: an input beyond the slots it binds (unless variadic) or an output beyond those it
        describes. Running the declaration there would compute something else than the node
        (an LSTM declared as ``tanh(x)`` would be tanh of its first input)."""
        return self.lookup(node, graph)[1]

    def require_all(self, nodes: Iterable[Node], graph: Graph | None = None) -> None:
        """:meth:`require` of every node of ``nodes``, in one UserError for all that fail: the
        first's line, a node that no declaration can take first (declaring the others would
        not help), and how many others lack a declaration, the first few named (a new-user
        trial declared the one node named, a Size, only to meet the Loop after it)."""
        failures = []
        for node in nodes:
            if self.runs_as_exported(node, graph):
                continue
            try:
                self.require(node, graph)
            except UserError as error:
                failures.append((node, error))
        if not failures:
            return
        failures.sort(key=lambda failure: not _beyond_declaration(failure[0]))
        first = failures[0][1]
        if len(failures) == 1:
            raise first
        others = [node.label for node, _ in failures[1:]]
        raise UserError(f"{first}; {len(others)} other node(s) lack a declaration too: "
                        f"{first_few(others)} "
                        "(`ptq-verify audit` lists every node)") from None

    def drop_unread_outputs(self, graph: Graph) -> None:
        """Leave unnamed, on each node that its declaration does not fit, the outputs nothing
        reads (no node, a subgraph's included, nor a graph output) that the node's ONNX schema
        makes optional beside a first output it requires, where the node then fits (the
        unnamed slots at the end dropped): it computes the same. onnx-caffe2's Dropout
        writes its mask, which nothing reads, and the catalog's Dropout describes one output:
        the ONNX Model Zoo's AlexNet, VGG-19, SqueezeNet and Inception v1 that the onnx wheel
        ships had been refused (a new-user trial). An undeclared node keeps its outputs, so
        that its refusal says what it writes."""
        read = set(graph.output_names) | {name for node in graph.nodes for name in node.inputs}
        read |= {name for node in graph.nodes for value in node.attrs.values()
                 for inner in subgraphs(value) for proto in inner.node for name in proto.input}
        for node in graph.nodes:
            if (all(name in read for name in node.outputs if name)
                    or self.lookup(node, graph)[1] is None):
                continue
            optional = _optional_output_slots(node, graph.opsets)
            names = ["" if slot in optional and name not in read else name
                     for slot, name in enumerate(node.outputs)]
            while names and not names[-1]:
                names.pop()
            if names and self.lookup(replace(node, outputs=names), graph)[1] is None:
                node.outputs[:] = names

    def require_calibrated(self, graph: Graph,
                           ranges: Mapping[str, tuple[float, float]]) -> None:
        """A UserError naming the first node whose declaration of a standard op type (or of
        one of onnxruntime's own) differs from onnxruntime's kernel on values across its
        inputs' calibrated ``ranges`` (tensor -> (least, largest); a constant input's values'
        reach): it was compared on a standard normal's values (:mod:`.declared_kernels`),
        and its integer file tabulates the declaration over the whole range. A trial's Relu
        declared as ``min(max(x, 0), 6)`` agreed there; on inputs reaching 20 its integer
        file gave 7 dB, the qdq file, which runs onnxruntime's Relu, 40."""
        from .declared_kernels import comparison

        for node in graph.nodes:
            key = self.declaration_key(node)
            op = self.extra[key] if key is not None else None
            if op is None or runtime_domain(op.onnx_type) is None:
                continue
            spans = []
            for tensor in op.inputs:
                slot = (op.onnx_inputs.index(tensor.name) if tensor.name in op.onnx_inputs
                        else None)
                name = node.inputs[slot] if slot is not None and slot < len(node.inputs) else ""
                span = ranges.get(name)
                if span is None and name in graph.initializers and np.size(
                        constant := np.asarray(graph.initializers[name], np.float64)):
                    span = (constant.min(), constant.max())  # (a constant: its values' reach)
                if span is None or not np.all(np.isfinite(span)):
                    break  # (an unseen input: compared on the normal's values)
                spans.append((float(span[0]), float(span[1])))
            else:
                differs, _ = comparison(op, _attribute_values(node, op), tuple(spans))
                if differs is not None:
                    shown = ", ".join(f"[{low:.4g}, {high:.4g}]" for low, high in spans)
                    raise UserError(
                        f"{graph.source or 'the graph'}: {node.label}: on its calibrated "
                        f"input range{'s' if len(spans) > 1 else ''} {shown} the declared "
                        f"expression {differs}; its "
                        f"declaration {op.name!r} ({self.source or 'operators='}) was compared "
                        "with onnxruntime's kernel on a standard normal's values alone: "
                        "correct the expression for every value its inputs take")

    def require(self, node: Node, graph: Graph | None = None) -> Operator:
        """The node's operator, or a UserError naming the node and its op type."""
        op, unfit = self.lookup(node, graph)
        if op is not None:
            return op
        where = f"{graph.source}: " if graph is not None else ""
        if unfit is not None:
            raise UserError(f"{where}{node.label} {unfit[1]}")
        domain = "" if node.in_onnx_domain else f" in domain {node.domain!r}"
        if not domain and self.declaration_key(node) is None:
            from ..catalog import declared_forms

            if forms := declared_forms(node.op_type):
                raise UserError(
                    f"{where}{node.label}: op type {node.op_type!r} is declared only for other "
                    f"attribute values or inputs than this node's ({forms}): export the node in "
                    "one of those forms, declare its own in a TOML file given with "
                    f"--operators (docs/catalog.md), or keep it in float with --float-op "
                    f"{node.op_type} (nodes of the declared forms keep their rule)")
        hint = quantized_hint(node, graph)
        raise UserError(
            f"{where}{node.label}: no declared operator for op type {node.op_type!r}{domain}"
            + (f" ({near})" if (near := self.near_declaration(node)) else "")
            + (f" ({hint}: give it the float model this one was made from)" if hint
               else _way_forward(node) + (condition_hint(graph, node) if graph else ""))
        )

    def near_declaration(self, node: Node) -> str:
        """Where an extra declaration's ``onnx_type`` is a near miss of the node's (the same
        op type in another domain, or a close op type in the node's domain: a typo, a case
        slip), the words that name it; '' otherwise. A new-user trial's ``custom:SwishBta``
        beside nodes of ``custom:SwishBeta`` had been told to declare what the file
        declared."""
        written = node.op_type if node.in_onnx_domain else f"{node.domain}:{node.op_type}"
        for key in self.extra:
            domain, _, op_type = key.rpartition(":")
            if op_type.lower() == node.op_type.lower() or (domain == node.domain and (
                    difflib.SequenceMatcher(None, op_type.lower(),
                                            node.op_type.lower()).ratio() >= 0.8)):
                return (f"{self.source or 'operators='} declares {key!r}, a near miss: to "
                        f"declare this node, onnx_type = \"{written}\"")
        return ""


def _op_types(float_types: object) -> frozenset[str]:
    """``OperatorTable(float_types=...)`` as a set of op types, or a UserError naming what is
    wrong: None, a number or a nested list had failed as a TypeError, and an element that is
    no op type as written (bytes, '', ' LSTM ') was kept, matched no node, and the refusal
    the option was meant to lift followed, pointing at the option."""
    if isinstance(float_types, (str, bytes)):  # (a str is iterated letter by letter)
        raise UserError(f"float_types={float_types!r}: a list of op types, "
                        f"[{float_types!r}] for one")
    if not isinstance(float_types, Iterable):
        raise UserError(f"float_types={float_types!r:.60}: a list of op types (str), "
                        "such as ['LSTM']")
    types = list(float_types)
    for op_type in types:
        if not isinstance(op_type, str) or not op_type or op_type != op_type.strip():
            raise UserError(f"float_types: {op_type!r:.60} is no op type; each is an ONNX op "
                            "type as a str, spelt as ONNX spells it (such as 'LSTM')")
    return frozenset(types)


def check_float_types(graph: Graph, table: OperatorTable, loaded: Graph | None = None) -> None:
    """Refuse, in one line, an op type of ``table.float_types`` (``--float-op``) that keeps no
    node of the prepared ``graph`` in float: none of the model's nodes has it (a misspelt
    ``Lstm`` would otherwise change nothing, and the refusal it was meant to lift would
    follow), the catalog declares its nodes (they keep their proved rule;
    ``--keep-float-tensor`` keeps a tensor in float), or its node runs subgraphs or ONNX
    sequences, which onnxruntime cannot run as a node alone. ``loaded``: the file as read,
    before preparing, where it holds nodes of a type the prepared graph lacks: those were
    dropped (read by no output, or folded as a BatchNorm into its Conv) and are checked
    there, refused only where declared. Checking only the file as read had refused a type
    found in the branch an If of a constant condition is replaced by; checking only the
    prepared graph, an LSTM no output reads, as 'no node of that op type'."""
    for op_type in sorted(table.float_types):
        nodes, where = [node for node in graph.nodes if node.op_type == op_type], graph
        if not nodes and loaded is not None:
            nodes, where = [node for node in loaded.nodes if node.op_type == op_type], loaded
        if not nodes and (holder := _holding_subgraph(graph, op_type)) is not None:
            # (silero-vad's LSTMs, inside its If on the sample rate: 'no node of that op
            # type' had been said of a file holding two, a new-user trial)
            raise UserError(
                f"--float-op {op_type}: {graph.source} holds its {op_type} nodes only inside "
                f"the subgraphs of {holder.label}, which stays as control flow: make its "
                "condition a constant first (quantize's refusal of it says how), and the "
                "branch it takes replaces it at load")
        if not nodes:
            present = sorted({node.op_type for node in graph.nodes
                              if table.lookup(node, graph)[0] is None})
            raise UserError(
                f"--float-op {op_type}: {graph.source} holds no node of that op type (op "
                "types are case-sensitive, as ONNX spells them"
                + (f"; its undeclared ones: {', '.join(present)})" if present else
                   "; every node of it is declared)"))
        _check_kept(op_type, nodes, where, table)


def _holding_subgraph(graph: Graph, op_type: str) -> Node | None:
    """The first node whose subgraphs (an If's branches, a Loop's body, at any depth) hold a
    node of ``op_type``, or None."""
    return next((node for node in graph.nodes if any(
        proto.op_type == op_type for value in node.attrs.values()
        for sub in subgraphs(value) for proto in sub.node)), None)


def _check_kept(op_type: str, nodes: list[Node], graph: Graph, table: OperatorTable) -> None:
    """Refuse ``--float-op op_type`` where every one of ``nodes`` (of ``graph``) is declared
    (the option would keep none in float), or one it keeps runs subgraphs or ONNX sequences
    (:func:`check_float_types`). Where some are declared and others not (a Pow by 2, Pow2,
    beside a Pow by 0.49999976, which torch's legacy export of ``torch.cdist`` writes for
    1/p: a new-user trial), the option keeps the undeclared ones in float and the declared
    keep their proved rule, :meth:`OperatorTable.kept_in_float` node by node; refusing the
    option there had left such a model no way to be quantized."""
    kept = [node for node in nodes if table.kept_in_float(node, graph)]
    if not kept:
        declared = nodes[0]
        op = table.lookup(declared, graph)[0]
        where = ("the built-in catalog" if table.declaration_key(declared) is None
                 else table.source or "operators=")
        raise UserError(
            f"--float-op {op_type}: {declared.label} of {graph.source} is declared "
            f"({op.name if op is not None else op_type}, {where}): "
            "the option keeps in float only nodes no declaration describes, and every node "
            "of that op type has one; "
            "--keep-float-tensor keeps a declared node's output in float")
    for node in kept:
        if _runs_subgraphs(node) or (
                node.in_onnx_domain and _sequences(node.op_type)):
            raise UserError(
                f"--float-op {op_type}: {node.label} of {graph.source} runs subgraphs or "
                "ONNX sequences, which ptq-verify cannot run as a node alone")


def _beyond_declaration(node: Node) -> str:
    """Why no declaration can take the node, as :func:`_way_forward` words it: it runs
    subgraphs (an If's branches, a Loop's body: attributes no parameter of an expression can
    take), writes more outputs than a file's declaration describes, or holds an attribute
    that is not one number (several values, text), which no parameter takes
    (:func:`_untaken_attribute`: a trial's skl2onnx Scaler, told to declare it, then refused
    its declaration for that; its Normalizer's norm 'L2' failed in the kernel); "" when one
    could."""
    from ..catalog.toml_file import OUTPUTS_DESCRIBED

    subgraphs = [name for name, kind in node.attr_types.items() if kind in _SUBGRAPH_TYPES]
    if subgraphs:
        return (f"; it runs subgraphs (attribute {', '.join(subgraphs)}: control flow), which "
                "a declaration given with --operators (one expression) cannot describe, so "
                "ptq-verify cannot take this node: export the model without it (exporters "
                "resolve many branches when the input shapes are fixed)" + _LOOP_HINT * (
                    "body" in subgraphs))
    if node.in_onnx_domain and _sequences(node.op_type):
        return ("; it reads or writes an ONNX sequence (a list of tensors, by its schema), "
                "which no declaration (an expression of tensors) describes, so ptq-verify "
                "cannot take this node: export the model so that it splits into tensors (a "
                "legacy torch export wrote SplitToSequence and SequenceAt for a split that "
                "torch's dynamo exporter writes as one Split)")
    if node.in_onnx_domain and _recurrent(node.op_type):
        return ("; it is a recurrent layer (its ONNX schema takes an initial hidden state, "
                "initial_h): each step of its output depends on every earlier step, which no "
                "declaration (a formula of a few input elements) describes; "
                f"--float-op {node.op_type} keeps it in float (its inputs dequantized, its "
                "outputs requantized, as onnxruntime's quantize_static leaves it) and "
                "quantizes the rest (docs/engine.md)")
    if node.in_onnx_domain and _draws_random(node.op_type):
        return ("; its ONNX schema takes a random seed: it draws random values, which no "
                "declaration (an expression of its inputs) describes, so ptq-verify cannot take "
                "this node: export the model again after model.eval(), or with the other torch "
                "exporter (a drop-path or dropout left in an inference graph); where the model "
                "samples by design (a VAE encoder's latent_dist.sample()), export what the "
                "draw is made from (latent_dist.mean, latent_dist.std) and draw the noise "
                "outside the file")
    if _used(node.outputs) > OUTPUTS_DESCRIBED:
        return (f"; it writes {_written(node.outputs)}, and a declaration (the catalog's, or "
                f"one given with --operators) describes {OUTPUTS_DESCRIBED} (docs/catalog.md), so "
                "ptq-verify cannot quantize this node: " + _float_op_hint(node)
                + "remove it or export the model without it")
    held = next((f"{name!r} holds {what}" for name, value in sorted(node.attrs.items())
                 if (what := _not_one_number(value))), None)
    if held is not None:
        return (f"; its attribute {held}, and a parameter of a declaration given with "
                "--operators takes one number, so none describes this node: "
                + _float_op_hint(node) + "remove it or export the model without it")
    return ""


def _not_one_number(value: object) -> str:
    """What an attribute's value holds where it is not one number ('10 values', 'text'),
    '' where it is one."""
    if isinstance(value, str | bytes) or (isinstance(value, list | tuple) and any(
            isinstance(item, str | bytes) for item in value)):
        return "text"
    return f"{np.size(value)} values" if np.size(value) != 1 else ""


def _float_op_hint(node: Node) -> str:
    """``--float-op``'s advice for a node whose op type ONNX defines (its own domain or its
    ML domain, ai.onnx.ml: onnxruntime has their kernels), '' for any other. A new-user trial's
    skl2onnx exports hold ai.onnx.ml's Scaler and Normalizer before an MLP, which --float-op
    keeps in float (49.4 dB on the rest); their refusal had not named the option."""
    domain = "" if node.in_onnx_domain else node.domain
    return (f"keep it in float with --float-op {node.op_type}, "
            if onnx.defs.has(node.op_type, domain) else "")


def way_forward_hint(node: Node) -> str:
    """:func:`_way_forward` as audit's summary line takes it (no leading '; '): a new user's
    audit of a CRNN listed its LSTMs as 'unknown op type ... (not in the catalog)' with no
    way forward, where quantize's refusal of them names ``--float-op LSTM``; and a trial's
    detection head ending in a NonMaxSuppression (an op type no schema rule singles out) was
    listed so too, where quantize's refusal names ``--float-op NonMaxSuppression``."""
    return _way_forward(node).removeprefix("; ")


def _optional_output_slots(node: Node, opsets: Mapping[str, int]) -> set[int]:
    """The output slots of ``node`` that its ONNX schema (at the model's opset) makes
    optional beside a first output it requires; none for an op no schema describes."""
    domain = "" if node.in_onnx_domain else node.domain
    version = opsets.get(domain)
    try:
        formals = (onnx.defs.get_schema(node.op_type, version, domain) if version
                   else onnx.defs.get_schema(node.op_type, domain)).outputs
    except onnx.defs.SchemaError:
        return set()
    optional = onnx.defs.OpSchema.FormalParameterOption.Optional
    if not formals or formals[0].option == optional:  # (an LSTM's: which it writes is its form)
        return set()
    return {slot for slot, formal in enumerate(formals) if formal.option == optional}


def _draws_random(op_type: str) -> bool:
    """Whether the ONNX schema of ``op_type`` takes a ``seed`` attribute: the op draws random
    values (RandomUniformLike, Bernoulli; a torch dynamo export held one where the model's
    drop-path was). Dropout has one too, but the catalog declares it (inference: identity),
    so it never reaches here."""
    try:
        return "seed" in onnx.defs.get_schema(op_type).attributes
    except onnx.defs.SchemaError:
        return False


def _recurrent(op_type: str) -> bool:
    """Whether the ONNX schema of ``op_type`` takes an initial hidden state ``initial_h``: a
    recurrent layer (RNN, GRU, LSTM). A new-user trial's torch exports were told to declare
    it (dynamo: one output) or to "remove it or export the model without it" (legacy: three
    outputs), advice a model built around such a layer cannot follow; both now say what it
    is and that no declaration takes it."""
    try:
        return any(formal.name == "initial_h" for formal in onnx.defs.get_schema(op_type).inputs)
    except onnx.defs.SchemaError:
        return False


def _sequences(op_type: str) -> bool:
    """Whether the ONNX schema of ``op_type`` has an input or output that only a sequence
    type fits (SplitToSequence's output, SequenceAt's input; a new-user trial's Mamba, as
    torch's legacy exporter writes it with transformers 5)."""
    try:
        schema = onnx.defs.get_schema(op_type)
    except onnx.defs.SchemaError:
        return False
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    return any(all(kind.startswith("seq(") for kind in allowed.get(formal.type_str,
                                                                      [formal.type_str]))
               for formal in (*schema.inputs, *schema.outputs))


def _way_forward(node: Node) -> str:
    """What a user can do about an undeclared node: declare it in a file or, for an ONNX op
    that onnxruntime runs, keep it in float (``--float-op``), unless no
    declaration can take it (:func:`_beyond_declaration`), where that advice would only lead
    to the refusals of :meth:`OperatorTable.unfit`, or one of onnxruntime's own operators,
    which the model before onnxruntime's optimizations did without
    (:func:`runtime_operator_hint`)."""
    if hint := runtime_operator_hint(node):
        return f"; it is {hint}"
    return _beyond_declaration(node) or (
        "; declare it in a TOML file given with --operators (from Python: an Operator in "
        "operators= of load_model, calibrate and quantize) when one output element is a "
        "formula of a few input elements (docs/catalog.md; a recurrence over a sequence is "
        "not one), "
        + _float_op_hint(node) + "or remove the node")


def runtime_operator_hint(node: Node) -> str:
    """What to do with a node of one of onnxruntime's own operators (its contrib domains,
    ``com.microsoft``'s SkipLayerNormalization, BiasGelu, FusedConv), '' for any other:
    onnxruntime's transformer optimizer and a session that saves its optimized graph write them
    in place of standard ONNX nodes, so the model as exported holds none. A new-user trial's
    optimized BERT and GPT-2 were sent to declare them with --operators, which a fused
    normalization (a whole row's statistics) or a node of several outputs cannot be."""
    if (node.domain, node.op_type) not in runtime_schemas():
        return ""
    # (a model a user wrote with such a node, an element-wise com.microsoft:Gelu, is no
    # optimizer's: a declaration takes it as it is, and onnxruntime then checks it against
    # its own kernel; a new-user trial's had been sent back to an export it never had)
    declared = (f"; or, where each output element follows from the inputs' elements at its "
                f"position (Gelu, QuickGelu, BiasGelu), declare it with --operators, "
                f"onnx_type = \"{node.domain}:{node.op_type}\" (docs/catalog.md)"
                if len(node.outputs) == 1 else "")
    return ("one of onnxruntime's own operators, which it writes in place of standard ONNX "
            "nodes when it optimizes a model (its transformer optimizer, optimize_model; a "
            "session's optimized_model_filepath): quantize the model as exported, before that "
            "optimization" + declared)


def quantized_hint(node: Node, graph: Graph | None, model_hint: str | None = None) -> str:
    """Why an undeclared node may be there: one that reads or writes 8-bit integer tensors
    (QuantizeLinear's codes, ConvInteger's weights) most likely belongs to a model that is
    quantized already, which a user passes by mistake for the float one; empty otherwise.
    A node without such a tensor of its own (onnxruntime's quantize_static dequantizes each
    bias from int32, and that node may be the first refused) gets :func:`model_codes_hint`
    (``model_hint``, where the caller asks for many nodes and took it once)."""
    if graph is None:
        return ""
    return (_codes_hint((*node.inputs, *node.outputs), graph, "its tensor")
            or (model_codes_hint(graph) if model_hint is None else model_hint))


def model_codes_hint(graph: Graph) -> str:
    """:func:`quantized_hint` for the model as a whole: some node of it computes 8-bit codes
    (a float model takes 8-bit data as an input, pixels; it does not compute them)."""
    return _codes_hint((name for node in graph.nodes for name in node.outputs), graph,
                       "the model's tensor")


def _on_integers(node: Node, graph: Graph | None) -> bool:
    """Whether every tensor ``node`` reads or writes is of a type ``graph`` states that holds
    integers or booleans, none of them 8-bit codes (which say the model is quantized
    already: :func:`quantized_hint`), and the node runs no subgraph."""
    if graph is None or _runs_subgraphs(node):
        return False
    dtypes = [graph.dtype_of(name) for name in (*node.inputs, *node.outputs) if name]
    return bool(dtypes) and all(dtype is not None and holds_integers(dtype)
                                and not _holds_codes(dtype) for dtype in dtypes)


def _runs_subgraphs(node: Node) -> bool:
    """Whether ``node`` has a graph attribute (an If's branches, a Loop's body)."""
    return any(kind in _SUBGRAPH_TYPES for kind in node.attr_types.values())


def _holds_codes(dtype: np.dtype) -> bool:
    """Whether ``dtype`` is an 8-bit integer, the type of a quantized model's codes."""
    return np.issubdtype(dtype, np.integer) and dtype.itemsize == 1


def _codes_hint(names: Iterable[str], graph: Graph, whose: str) -> str:
    """The hint naming the first of ``names`` that holds 8-bit integer codes, or ''."""
    for name in names:
        dtype = graph.dtype_of(name) if name else None
        if dtype is not None and _holds_codes(dtype):
            return (f"{whose} {name!r} holds {dtype} codes: is the model quantized "
                    "already? ptq-verify takes the float model")
    return ""


def _used(names: list[str]) -> int:
    """The number of slots up to the last non-empty name (an empty name is an absent
    optional input or output)."""
    return max((slot + 1 for slot, name in enumerate(names) if name), default=0)


def _written(names: list[str]) -> str:
    """How many outputs a node writes, with their slots where an absent one lies between
    (onnxruntime's SkipLayerNormalization writing slots 0 and 3 had been said to write 4)."""
    slots = [slot for slot, name in enumerate(names) if name]
    if len(slots) == _used(names):
        return _plural(len(slots), "output")
    return f"{_plural(len(slots), 'output')} (slots {', '.join(map(str, slots))})"


def _tensor_names(count: int) -> str:
    """``count`` tensor names for a declaration's ``inputs`` (``x0, x1``)."""
    return ", ".join(f"x{i}" for i in range(count))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _require_onnx_semantics(extra: Mapping[str, Operator]) -> None:
    """A UserError for a declaration of a standard ONNX op type whose expression is not what
    onnxruntime's kernel of that type computes (:mod:`.declared_kernels`). A file given with
    ``--operators`` was compared so, but not the Python API's ``operators=``: a library
    user's HardSwish declared with x/5 for x/6 quantized every HardSwish by the rule of
    another function, with no word said."""
    from .declared_kernels import comparison, mismatch

    for key, op in extra.items():
        differs, _ = comparison(op)
        if differs is not None:
            raise UserError(
                f"operators: {key!r}: operator {op.name!r} {mismatch(op, differs, False)}")


def _misfit(node: Node, op: Operator) -> str | None:
    """What of the node its declaration does not describe, or None if it fits."""
    inputs, outputs = _used(node.inputs), _used(node.outputs)
    if (inputs <= len(op.onnx_inputs) or op.onnx_variadic) and (
        op.onnx_outputs is None or outputs <= op.onnx_outputs
    ):
        return None
    return f"has {_plural(inputs, 'input')} and {_plural(outputs, 'output')}"


def _untaken_attribute(node: Node, op: Operator) -> str | None:
    """An attribute of the node that a declaration computed by its expression cannot take:
    one it does not bind (its value would be ignored), or a list bound to a one-number
    parameter. The catalog's declarations are tested against onnxruntime instead."""
    if not op.runs_expression:
        return None
    for name, value in sorted(node.attrs.items()):
        if name not in op.onnx_attrs and name not in op.onnx_match:
            if name in op.params:  # (an Operator(...) binds by onnx_attrs alone)
                unbound = {p: p for p in op.params if p not in op.onnx_attrs.values()}
                return (f"has attribute {name!r} that its declaration does not bind: its "
                        f"parameter {name!r} takes the attribute's value only if "
                        f"Operator(..., onnx_attrs={unbound!r}) says so (a file's "
                        "declaration binds its parameters by name)")
            return (f"has attribute {name!r} that its declaration does not bind (a "
                    "parameter takes the value of the node's attribute of its name; its "
                    f"parameters: {', '.join(op.params) or 'none'})")
        if name in op.onnx_attrs and np.size(value) != 1:
            return (f"has attribute {name!r} of {np.size(value)} values where its "
                    f"parameter {op.onnx_attrs[name]!r} takes one number")
        kind = node.attr_type(name)
        if name in op.onnx_attrs and kind not in _NUMBER_ATTRIBUTES:
            # (a string or a tensor had been read as the number and written back as a float
            # where the rule rescales it: an internal error, a new-user trial)
            return (f"has attribute {name!r} of type "
                    f"{onnx.AttributeProto.AttributeType.Name(kind) if kind else 'unknown'} "
                    f"where its parameter {op.onnx_attrs[name]!r} takes one number (a float "
                    "or an int attribute)")
    return None


_NUMBER_ATTRIBUTES = (onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT)


def _attribute_values(node: Node, op: Operator) -> dict[str, object]:
    """Each attribute ``op``'s declaration binds, at its value on ``node`` (its own, else the
    schema's default: :meth:`.catalog.operator.Operator.attribute`)."""
    return {attr: op.attribute(attr, node.attrs) for attr in op.onnx_attrs}


def _unlike_runtime(node: Node, op: Operator) -> str | None:
    """How a declaration of a standard op type (or one of onnxruntime's own) differs from
    onnxruntime's kernel at the node's attribute values, where they are not the sample
    values it was compared at (:mod:`.declared_kernels`), or None. A trial's LeakyRelu
    declared as ``max(x, alpha*x)`` agreed at alpha = 0.01 and was another function on a
    node of alpha = 2: the integer format's table of it lost the model (4 dB)."""
    from .declared_kernels import comparison

    if runtime_domain(op.onnx_type) is None:
        return None
    values = _attribute_values(node, op)
    if all(isinstance(value, (int, float)) and value == float(op.params[op.onnx_attrs[attr]])
           for attr, value in values.items()):
        return None
    differs, _ = comparison(op, values)
    if differs is None:
        return None
    shown = ", ".join(f"{attr} = {value:.6g}" for attr, value in values.items())
    return f"at its {shown} the declared expression {differs}"


def _unrunnable(node: Node, op: Operator) -> str | None:
    """What keeps a declaration computed by its expression from running the node, or None.

    Its expression gives one output element from one element of each tensor, so a tensor of
    several elements (``inputs = "x0 x1 x2"``, a window or a reduction) has no kernel there,
    and each tensor needs the node's input of its slot: a trial's file declarations passed
    ``audit`` with a verdict and then failed in ``quantize`` with "no ONNX tensor
    implementation" and "kernel of ...: missing c"."""
    if not op.runs_expression:  # an ONNX kernel of its own (the catalog's)
        return None
    wide = next((t for t in op.inputs if len(t.elements) != 1), None)
    if wide is not None:
        return (f"takes whole tensors, but its declaration's tensor {wide.name!r} holds "
                f"{len(wide.elements)} elements ({' '.join(wide.elements)}): an expression "
                "computes a node one element of each tensor at a time (inputs = \"x\" or "
                "\"a, b\"; a window or a reduction cannot be declared in a file)")
    tensors = tensor_names(op)
    fed = {slot for slot, name in enumerate(node.inputs) if name}
    unfed = [carried for slot, carried in enumerate(op.onnx_inputs)
             if carried in tensors and slot not in fed]
    if not unfed:
        return None
    many = len(unfed) > 1
    slots = ", ".join(str(op.onnx_inputs.index(t)) for t in unfed)
    return (f"has {_plural(_used(node.inputs), 'input')}, but its declaration's "
            f"tensor{'s' if many else ''} {', '.join(map(repr, unfed))} "
            f"take{'' if many else 's'} input slot{'s' if many else ''} {slots} that the node "
            "leaves empty (a file's declaration takes the node's inputs as its tensors, in "
            "order)")


def _capacity(op: Operator) -> str:
    takes = "any number of inputs" if op.onnx_variadic else (
        f"at most {_plural(len(op.onnx_inputs), 'input')}")
    gives = "any number of outputs" if op.onnx_outputs is None else (
        f"{_plural(op.onnx_outputs, 'output')}")
    return f"takes {takes} and gives {gives}"


def slot_binding(op: Operator, slot: int) -> str | None:
    """What ONNX input ``slot`` carries: a tensor name, parameter names, or None (static).

    Variadic inputs (Concat, Sum, Max: ``onnx_variadic``) repeat the binding of the last
    declared slot; a node with further inputs to another declaration has no operator.
    """
    bindings = op.onnx_inputs
    if not bindings:
        return None
    return bindings[slot] if slot < len(bindings) else bindings[-1]


def tensor_names(op: Operator) -> set[str]:
    return {t.name for t in op.inputs}


def _element_types(node: Node, graph: Graph | None, slots: Iterable[int]) -> dict[int, int]:
    """The ONNX element type of each input of ``node`` among ``slots`` that ``graph`` knows
    (CastLike's target, which its declaration is matched on)."""
    from onnx.helper import np_dtype_to_tensor_dtype

    types = {}
    for slot in slots:
        name = node.inputs[slot] if slot < len(node.inputs) else ""
        dtype = graph.dtype_of(name) if graph is not None and name else None
        if dtype is not None:
            try:
                types[slot] = np_dtype_to_tensor_dtype(np.dtype(dtype))
            except (KeyError, TypeError, ValueError):  # a type ONNX has no number for
                continue
    return types
