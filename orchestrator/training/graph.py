"""Graph surgery with the ``onnx`` helper API: any classifier graph to the serving contract.

The contract (:mod:`.export`): outputs ``label`` (int64 ``[N]``, an index into the manifest's
``classes``) and ``probabilities`` (float64 ``[N, K]``, columns in class order), and inputs in the
manifest's layout. skl2onnx graphs (train's and a packaged scikit-learn model's) and graphs
converted elsewhere (float32 ``float_input``, ZipMap, string or integer labels) differ from it only
at the edges, so the surgery is at the edges too:

- :func:`to_contract_outputs`: the probability tensor (ZipMap's input when a ZipMap turned it into
  a list of maps) cast to float64; the model's own label mapped to its class index by an
  ``ai.onnx.ml`` ``LabelEncoder`` (so the label stays the model's ``predict``, which need not be the
  arg-max of its probabilities), or ``ArgMax`` of the probabilities when the graph has no label; every
  other output and the nodes only they needed dropped.
- :func:`to_contract_inputs`: each original input fed from a contract input (float64 or string)
  through a ``Cast`` to the type the graph was built for, or directly when the types agree.

Nothing here decides whether the result is right: callers compare the new graph with the original
model on reference rows and refuse any difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.core.artifact.manifest import MODEL_FILE
from orchestrator.core.errors import ArtifactError

__all__ = [
    "LABEL_OUTPUT",
    "ML_OPSET",
    "PROBABILITIES_OUTPUT",
    "ContractInput",
    "prune",
    "to_contract_inputs",
    "to_contract_outputs",
]

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
# ai.onnx.ml 3: tree ensembles with float64 thresholds (nodes_values_as_tensor) and LabelEncoder
# with int64 keys (version 2); onnxruntime has run both since 1.10, older than the serving minimum.
ML_OPSET = 3
_ML_DOMAIN = "ai.onnx.ml"


class ContractInput:
    """A contract input: its ``name``, element type (``"double"`` or ``"string"``) and width
    (``[N, width]``), fed into the original graph input ``source``."""

    def __init__(self, name: str, dtype: str, width: int, source: str) -> None:
        self.name, self.dtype, self.width, self.source = name, dtype, width, source


def _fail(message: str) -> ArtifactError:
    return ArtifactError(message, path=MODEL_FILE)


def _rename_everywhere(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for info in (*graph.output, *graph.value_info):
        if info.name == old:
            info.name = new


def _ensure_ml_opset(model: Any, version: int) -> None:
    for opset in model.opset_import:
        if opset.domain == _ML_DOMAIN:
            opset.version = max(opset.version, version)
            return
    model.opset_import.append(_opsetid(_ML_DOMAIN, version))


def _opsetid(domain: str, version: int) -> Any:
    from onnx import helper

    return helper.make_opsetid(domain, version)


def to_contract_outputs(
    model: Any, *, probabilities: str, label: str | None, class_keys: Sequence[int | str] | None
) -> Any:
    """Replace ``model``'s outputs (in place; returned) by the contract's ``label`` and
    ``probabilities``.

    ``probabilities`` names the graph tensor holding ``[N, K]`` probabilities (float or double);
    ``label`` the tensor holding the model's predicted class values (int64 or string ``[N]``), or
    None to take the arg-max of the probabilities; ``class_keys`` the class values in probability
    column order (the label's keys), None when the label already is the class index.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    source_proba, source_label = f"{probabilities}__source", f"{label}__source"
    _rename_everywhere(graph, probabilities, source_proba)
    if label is not None:
        _rename_everywhere(graph, label, source_label)
    for name in (LABEL_OUTPUT, PROBABILITIES_OUTPUT):  # an inner tensor already called so
        if any(name in (*node.input, *node.output) for node in graph.node):
            _rename_everywhere(graph, name, f"{name}__inner")
    nodes = [helper.make_node("Cast", [source_proba], [PROBABILITIES_OUTPUT], to=TensorProto.DOUBLE)]
    if label is None:
        nodes.append(helper.make_node("ArgMax", [PROBABILITIES_OUTPUT], [LABEL_OUTPUT], axis=1, keepdims=0))
    elif class_keys is None:
        nodes.append(helper.make_node("Cast", [source_label], [LABEL_OUTPUT], to=TensorProto.INT64))
    else:
        keys = "keys_strings" if all(isinstance(k, str) for k in class_keys) else "keys_int64s"
        typed: list[Any] = (
            [str(k) for k in class_keys] if keys == "keys_strings" else [int(k) for k in class_keys]
        )
        # A label outside the keys maps to -1: no class, which the callers' check refuses.
        attributes: dict[str, Any] = {
            "default_int64": -1,
            "values_int64s": list(range(len(typed))),
            keys: typed,
        }
        nodes.append(
            helper.make_node("LabelEncoder", [source_label], [LABEL_OUTPUT], domain=_ML_DOMAIN, **attributes)
        )
        _ensure_ml_opset(model, 2)
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(LABEL_OUTPUT, TensorProto.INT64, [None]),
            helper.make_tensor_value_info(PROBABILITIES_OUTPUT, TensorProto.DOUBLE, [None, None]),
        ]
    )
    prune(graph)
    return model


def to_contract_inputs(model: Any, inputs: Sequence[ContractInput]) -> Any:
    """Feed each original graph input from its contract input (in place; returned). The contract
    inputs replace the originals, in the given order; an original input left without a contract
    input is an ArtifactError."""
    from onnx import TensorProto, helper

    graph = model.graph
    originals = {i.name: i for i in graph.input}
    fed = {c.source for c in inputs}
    if missing := sorted(set(originals) - fed):
        raise _fail(f"the ONNX graph has inputs no feature column feeds: {', '.join(missing)}")
    nodes = []
    for contract in inputs:
        original = originals[contract.source]
        elem = original.type.tensor_type.elem_type
        want = TensorProto.DOUBLE if contract.dtype == "double" else TensorProto.STRING
        if contract.name == contract.source and elem == want:
            continue
        inner = f"{contract.source}__original"
        _rename_input(graph, contract.source, inner)
        if elem == want:
            nodes.append(helper.make_node("Identity", [contract.name], [inner]))
        else:
            nodes.append(helper.make_node("Cast", [contract.name], [inner], to=elem))
    del graph.input[:]
    graph.input.extend(
        helper.make_tensor_value_info(
            c.name,
            TensorProto.DOUBLE if c.dtype == "double" else TensorProto.STRING,
            [None, c.width],
        )
        for c in inputs
    )
    for node in reversed(nodes):  # ahead of every node that reads them
        graph.node.insert(0, node)
    return model


def _rename_input(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def prune(graph: Any) -> None:
    """Drop the nodes no graph output depends on (e.g. a ZipMap whose output was replaced)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(n for n in node.input if n)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    used = {n for node in kept for n in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    infos = [v for v in graph.value_info if v.name in used or v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)
