"""An ONNX classifier converted elsewhere: what it takes, what it answers, and its contract twin.

Converters differ at the edges (skl2onnx's defaults: a float32 ``float_input``, ``output_label``
and ``output_probability`` as a ZipMap's list of maps; other tools: int64 inputs, probability
tensors, no label at all). :func:`read_onnx` finds, by type rather than by name:

- the inputs: one ``[N, F]`` tensor (the ``matrix`` layout) or one ``[N, 1]`` tensor per column
  (the ``columns`` layout: string inputs are categorical columns, numeric ones numeric);
- the probabilities: a float tensor ``[N, K]``, or the tensor a ``ZipMap`` turns into maps;
- the label: an int64 or string tensor ``[N]`` (optional);
- the classes: the ZipMap's or the classifier node's ``classlabels_*`` attribute, if any.

:func:`adapt` then builds the contract graph by surgery (:mod:`orchestrator.training.graph`), and
:func:`run_original` runs the unmodified model, so the caller can compare the two on the reference
rows. Anything that is not a classifier with probabilities is an ArtifactError naming the outputs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.artifact.manifest import Column
from orchestrator.core.errors import ArtifactError
from orchestrator.training.graph import ContractInput, to_contract_inputs, to_contract_outputs

__all__ = ["OnnxInput", "OnnxSource", "adapt", "read_onnx", "run_original"]

# Largest ONNX file read whole: 2 GiB is protobuf's own limit for one message.
MAX_ONNX_BYTES = 2**31 - 1
_CLASS_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s")


@dataclass(frozen=True)
class OnnxInput:
    """A graph input: its name, numpy dtype (``object`` for strings) and width (None: any)."""

    name: str
    dtype: Any
    width: int | None


@dataclass(frozen=True, eq=False)
class OnnxSource:
    """An ONNX classifier as found in the file (see the module docstring)."""

    path: Path
    model: Any
    """The parsed ModelProto, unmodified."""
    inputs: list[OnnxInput]
    layout: Literal["matrix", "columns"]
    probabilities: str
    """The graph tensor holding the ``[N, K]`` probabilities."""
    probability_output: str
    """The graph output they are read from (the ZipMap's output, or the tensor itself)."""
    label: str | None
    class_keys: list[int | str] | None
    producer: str

    @property
    def classes(self) -> list[str] | None:
        """The class labels the graph carries, as text (None when it carries none)."""
        return None if self.class_keys is None else [str(k) for k in self.class_keys]


def _fail(path: Path, message: str) -> ArtifactError:
    return ArtifactError(f"{path}: {message}", path=str(path))


def _describe(value_info: Any) -> str:
    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        return f"{value_info.name} ({kind.replace('_type', '')})"
    from onnx import helper

    tensor = value_info.type.tensor_type
    dims = [d.dim_value or (d.dim_param or "?") for d in tensor.shape.dim]
    return f"{value_info.name} ({helper.tensor_dtype_to_np_dtype(tensor.elem_type)} {dims})"


def read_onnx(path: Path) -> OnnxSource:
    """Parse and inspect an ONNX classifier; ArtifactError naming the file and what is wrong (not
    ONNX, not loadable by onnxruntime, no probability output, no usable inputs)."""
    import onnx
    from onnx import TensorProto, helper

    try:
        if path.stat().st_size > MAX_ONNX_BYTES:
            raise _fail(path, "larger than the 2 GiB an ONNX protobuf can hold")
        model = onnx.load_model(path, load_external_data=False)
        onnx.checker.check_model(model)
    except (OSError, onnx.checker.ValidationError, ValueError) as exc:
        raise _fail(path, f"not a valid ONNX model ({' '.join(str(exc).split())[:300]})") from exc
    except Exception as exc:  # protobuf's DecodeError
        raise _fail(path, f"not an ONNX model ({type(exc).__name__})") from exc
    graph = model.graph
    initialisers = {t.name for t in graph.initializer}
    inputs = []
    for graph_input in graph.input:
        if graph_input.name in initialisers:
            continue
        tensor = graph_input.type.tensor_type
        dims = [d.dim_value or None for d in tensor.shape.dim]
        if graph_input.type.WhichOneof("value") != "tensor_type" or len(dims) != 2:
            raise _fail(path, f"input {_describe(graph_input)} is not a 2-D tensor [rows, features]")
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if tensor.elem_type != TensorProto.STRING and dtype.kind not in "fiub":
            raise _fail(path, f"input {_describe(graph_input)} takes neither numbers nor text")
        inputs.append(OnnxInput(graph_input.name, dtype, dims[1]))
    if not inputs:
        raise _fail(path, "the graph has no inputs")
    columns = len(inputs) > 1 or inputs[0].dtype == np.dtype(object)
    if columns and any(i.width not in (1, None) for i in inputs):
        raise _fail(path, "a graph with several inputs must take one column per input ([rows, 1])")
    probabilities, probability_output, keys = _probabilities(path, model)
    label = _label(model)
    if keys is None and label is not None:
        keys = _node_classes(model, label)
    return OnnxSource(
        path=path,
        model=model,
        inputs=inputs,
        layout="columns" if columns else "matrix",
        probabilities=probabilities,
        probability_output=probability_output,
        label=label,
        class_keys=keys,
        producer=f"{model.producer_name} {model.producer_version}".strip() or "unknown",
    )


def _attribute_classes(node: Any) -> list[int | str] | None:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name in _CLASS_ATTRIBUTES:
            values = helper.get_attribute_value(attribute)
            return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


def _probabilities(path: Path, model: Any) -> tuple[str, str, list[int | str] | None]:
    """(probability tensor, the output it is read from, ZipMap classes or None)."""
    from onnx import TensorProto

    producers = {name: node for node in model.graph.node for name in node.output}
    candidates = []
    for output in model.graph.output:
        kind = output.type.WhichOneof("value")
        if kind == "sequence_type":
            node = producers.get(output.name)
            if node is not None and node.op_type == "ZipMap":
                return node.input[0], output.name, _attribute_classes(node)
        elif kind == "tensor_type":
            tensor = output.type.tensor_type
            if tensor.elem_type in (TensorProto.FLOAT, TensorProto.DOUBLE) and len(tensor.shape.dim) == 2:
                candidates.append(output.name)
    if len(candidates) > 1:
        named = [c for c in candidates if "prob" in c.lower()]
        candidates = named if len(named) == 1 else candidates
    if len(candidates) != 1:
        outputs = ", ".join(_describe(o) for o in model.graph.output)
        problem = "no output holds" if not candidates else "several outputs could hold"
        raise _fail(
            path,
            f"{problem} class probabilities (a float tensor [rows, classes] or a ZipMap); outputs: "
            f"{outputs}. A model without probabilities cannot be packaged (a canary and the "
            "endpoint's answers need them)",
        )
    return candidates[0], candidates[0], None


def _label(model: Any) -> str | None:
    from onnx import TensorProto

    labels = []
    for output in model.graph.output:
        if output.type.WhichOneof("value") != "tensor_type":
            continue
        tensor = output.type.tensor_type
        if tensor.elem_type in (TensorProto.INT64, TensorProto.STRING) and len(tensor.shape.dim) in (1, 2):
            labels.append(output.name)
    if len(labels) > 1:
        named = [n for n in labels if "label" in n.lower()]
        labels = named if len(named) == 1 else []
    return labels[0] if len(labels) == 1 else None


def _node_classes(model: Any, label: str) -> list[int | str] | None:
    for node in model.graph.node:
        if label in node.output or any(a.name in _CLASS_ATTRIBUTES for a in node.attribute):
            classes = _attribute_classes(node)
            if classes is not None:
                return classes
    return None


def _session(model: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_original(
    source: OnnxSource, features: Any, columns: Sequence[Column]
) -> tuple[NDArray[Any] | None, NDArray[np.float64]]:
    """The unmodified model's label values (None without a label) and probabilities ``[N, K]``
    (a ZipMap's maps read in ``class_keys`` order) on ``features`` (the float64 matrix, or a
    mapping keyed by column name); ArtifactError naming the file if onnxruntime cannot run it."""
    feeds: dict[str, Any] = {}
    if source.layout == "matrix":
        feeds[source.inputs[0].name] = np.asarray(features, dtype=np.float64).astype(source.inputs[0].dtype)
    else:
        for graph_input, column in zip(source.inputs, columns, strict=True):
            values = np.asarray(features[column.name])
            if graph_input.dtype == np.dtype(object):
                feeds[graph_input.name] = np.array([str(v) for v in values], dtype=object).reshape(-1, 1)
            else:
                feeds[graph_input.name] = values.astype(np.float64).astype(graph_input.dtype).reshape(-1, 1)
    wanted = [source.probability_output] + ([source.label] if source.label else [])
    try:
        results = _session(source.model).run(wanted, feeds)
    except Exception as exc:  # onnxruntime's own error types
        raise _fail(
            source.path, f"onnxruntime cannot run the model ({' '.join(str(exc).split())[:300]})"
        ) from exc
    raw = results[0]
    if isinstance(raw, list):  # ZipMap: one {class: probability} per row
        keys = source.class_keys or sorted(raw[0]) if raw else []
        probabilities = np.array([[row[k] for k in keys] for row in raw], dtype=np.float64)
    else:
        probabilities = np.asarray(raw, dtype=np.float64)
    label = np.asarray(results[1]).reshape(-1) if source.label else None
    return label, probabilities


def adapt(source: OnnxSource, columns: Sequence[Column], class_keys: Sequence[int | str] | None) -> bytes:
    """The contract graph: ``columns``' inputs (float64 or string, cast to the original types),
    ``label`` (int64 class index) and ``probabilities`` (float64). ``class_keys``: the label
    values in class order (None: the label already is the index, or there is no label)."""
    import onnx
    from onnx import TensorProto, helper

    model = copy.deepcopy(source.model)
    label = source.label
    if label is not None:
        # Some converters give the label as [N, 1]: flatten it to the contract's [N].
        flat = f"{label}__flat"
        shape = f"{label}__shape"
        model.graph.initializer.append(helper.make_tensor(shape, TensorProto.INT64, [1], [-1]))
        model.graph.node.append(helper.make_node("Reshape", [label, shape], [flat]))
        label = flat
    to_contract_outputs(model, probabilities=source.probabilities, label=label, class_keys=class_keys)
    if source.layout == "matrix":
        width = (columns and len(columns)) or source.inputs[0].width or 0
        contract = [ContractInput("input", "double", width, source.inputs[0].name)]
    else:
        contract = [
            ContractInput(
                str(c.input), "string" if c.kind == "categorical" else "double", 1, graph_input.name
            )
            for c, graph_input in zip(columns, source.inputs, strict=True)
        ]
    to_contract_inputs(model, contract)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise _fail(
            source.path, f"the adapted graph is not valid ONNX ({' '.join(str(exc).split())[:300]})"
        ) from exc
    data: bytes = model.SerializeToString()
    return data
