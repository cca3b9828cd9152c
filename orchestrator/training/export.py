"""ONNX export of a fitted scikit-learn model, and the proof that the export agrees with it.

The served format is ONNX because loading it executes no code (a pickle would). This module owns
the contract the endpoint relies on (one decision for ``train``, ``package`` and the endpoint):

- ``matrix`` layout (every feature numeric): one input ``input``, float64 ``[N, n_features]``;
- ``columns`` layout: one input per column, ``[N, 1]``, float64 for a numeric column (NaN: missing)
  and string for a categorical one (``""``: missing), named by the manifest's ``columns[i].input``;
- outputs ``label`` (int64 ``[N]``, class index into the manifest's ``classes``) and
  ``probabilities`` (float64 ``[N, K]``, columns in class-index order).

:func:`export` converts any fitted classifier or pipeline (train's, or one a user packages) with
the same skl2onnx call and converters (:mod:`.converters`), brings its outputs to the contract
(:mod:`.graph`), and refuses a graph whose outputs differ from scikit-learn's on the given rows:
labels on 100 % of rows and probabilities within :data:`MAX_PROBABILITY_DIFF`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.artifact.manifest import MODEL_FILE, Column
from orchestrator.core.errors import ArtifactError
from orchestrator.training.graph import LABEL_OUTPUT, ML_OPSET, PROBABILITIES_OUTPUT, to_contract_outputs

__all__ = [
    "INPUT_NAME",
    "LABEL_OUTPUT",
    "MAX_PROBABILITY_DIFF",
    "ML_OPSET",
    "OPSET",
    "PROBABILITIES_OUTPUT",
    "Exported",
    "OnnxModel",
    "agreement",
    "export",
    "feeds",
    "input_name",
    "to_onnx",
]

INPUT_NAME = "input"
# Opset 17 (IR version 8) loads in every onnxruntime since 1.13, older than the serving extra's
# minimum; nothing these pipelines need is newer.
OPSET = 17
# The bound. float64 end to end measures ~1e-15 for linear models; tree ensembles sum
# their leaves in float32 and measure up to ~4e-7 (see orchestrator.training.converters).
MAX_PROBABILITY_DIFF = 1e-6
# Graph name recorded in the model; fixed so that identical training gives identical bytes.
_GRAPH_NAME = "orchestrator_classifier"
_INVALID = re.compile(r"[^A-Za-z0-9_]")

Layout = Literal["matrix", "columns"]


def input_name(column: str, taken: set[str]) -> str:
    """A valid ONNX input name for ``column`` not in ``taken`` (which it is added to): characters
    outside ``[A-Za-z0-9_]`` become ``_``, a leading digit gets a ``c_`` prefix, 64 characters at
    most, and a clash gets ``_2``, ``_3``..."""
    base = _INVALID.sub("_", column)[:64] or "column"
    if base[0].isdigit():
        base = f"c_{base}"[:64]
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[: 64 - len(str(n)) - 1]}_{n}"
    taken.add(name)
    return name


def feeds(columns: Sequence[Column], features: Any) -> dict[str, NDArray[Any]]:
    """ONNX Runtime inputs for ``features`` (a DataFrame or mapping keyed by column name, or the
    float64 matrix when ``columns`` is empty or has no inputs: the matrix layout)."""
    if not columns or columns[0].input is None:
        return {INPUT_NAME: np.ascontiguousarray(features, dtype=np.float64)}
    result: dict[str, NDArray[Any]] = {}
    for column in columns:
        assert column.input is not None
        values = np.asarray(features[column.name])
        if column.kind == "numeric":
            result[column.input] = np.ascontiguousarray(values, dtype=np.float64).reshape(-1, 1)
        else:
            result[column.input] = np.array(
                ["" if v is None else str(v) for v in values], dtype=object
            ).reshape(-1, 1)
    return result


class OnnxModel:
    """An onnxruntime session over contract model bytes, single-threaded so results do not depend
    on the host. ``columns``: the manifest's columns (empty for the matrix layout)."""

    def __init__(self, model: bytes, columns: Sequence[Column] = ()) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.columns = list(columns)

    def predict(self, features: Any) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Class indices ``[N]`` and probabilities ``[N, K]`` for ``features`` (see :func:`feeds`)."""
        labels, probabilities = self._session.run(
            [LABEL_OUTPUT, PROBABILITIES_OUTPUT], feeds(self.columns, features)
        )
        return np.asarray(labels, dtype=np.int64), np.asarray(probabilities, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Exported:
    """The ONNX model, its input columns, its outputs on the checked rows, and the manifest's
    ``export`` record."""

    model: bytes
    columns: list[Column]
    labels: NDArray[np.int64]
    probabilities: NDArray[np.float64]
    info: dict[str, Any]


def agreement(
    labels: NDArray[np.int64],
    probabilities: NDArray[np.float64],
    expected_labels: NDArray[np.int64],
    expected_probabilities: NDArray[np.float64],
    *,
    what: str,
) -> tuple[float, float]:
    """(share of identical labels, max probability difference); ArtifactError naming ``what``
    (e.g. "the ONNX export disagrees with scikit-learn on the test set") unless labels agree on
    every row and probabilities within :data:`MAX_PROBABILITY_DIFF`."""
    if probabilities.shape != expected_probabilities.shape:
        raise ArtifactError(
            f"{what}: probabilities have shape {list(probabilities.shape)}, expected "
            f"{list(expected_probabilities.shape)}",
            path=MODEL_FILE,
        )
    labels_agree = float(np.mean(labels == expected_labels))
    max_diff = float(np.max(np.abs(probabilities - expected_probabilities)))
    if labels_agree != 1.0 or not max_diff <= MAX_PROBABILITY_DIFF:
        raise ArtifactError(
            f"{what}: labels agree on {labels_agree:.2%} of rows (need 100%), max probability "
            f"difference {max_diff:.3g} (need <= {MAX_PROBABILITY_DIFF:g})",
            path=MODEL_FILE,
        )
    return labels_agree, max_diff


def export(
    estimator: Any,
    features: Any,
    columns: Sequence[Column] = (),
    *,
    rows: str = "test set",
    class_keys: Sequence[Any] | None = None,
    layout: Layout | None = None,
) -> Exported:
    """Convert a fitted classifier or pipeline and check it against scikit-learn on ``features``.

    ``columns``: the model's input columns (names, kinds) for the columns layout, empty for the
    matrix layout (``features`` then a float64 matrix). ``class_keys``: ``estimator.classes_`` when
    they are not the class indices 0..K-1 (a packaged model's labels). ``rows`` names the rows in
    messages. ``layout`` forces the layout (a model fitted on a DataFrame takes its columns by
    name even when all are numeric), else it follows the columns' kinds. ArtifactError if skl2onnx
    cannot convert it or the outputs disagree.
    """
    model, columns = to_onnx(estimator, columns, features, class_keys=class_keys, layout=layout)
    labels, probabilities = OnnxModel(model, columns).predict(features)
    expected_proba = np.asarray(estimator.predict_proba(features), dtype=np.float64)
    predicted = np.asarray(estimator.predict(features))
    if class_keys is None:
        expected_labels = predicted.astype(np.int64)
    else:
        index = {key: i for i, key in enumerate(class_keys)}
        expected_labels = np.array([index.get(p, -1) for p in predicted.tolist()], dtype=np.int64)
    labels_agree, max_diff = agreement(
        labels,
        probabilities,
        expected_labels,
        expected_proba,
        what=f"the ONNX export disagrees with scikit-learn on the {rows}",
    )
    info = {
        "format": "onnx",
        "opset": OPSET,
        "ml_opset": ML_OPSET,
        "layout": "columns" if columns and columns[0].input else "matrix",
        "input_name": INPUT_NAME if not columns or not columns[0].input else None,
        "input_dtype": "float64",
        "checked_rows": rows,
        "test_rows": len(labels),
        "labels_agree": labels_agree,
        "max_probability_diff": max_diff,
        "tolerance": MAX_PROBABILITY_DIFF,
    }
    return Exported(model=model, columns=list(columns), labels=labels, probabilities=probabilities, info=info)


def _final_estimator(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def to_onnx(
    estimator: Any,
    columns: Sequence[Column],
    features: Any,
    *,
    class_keys: Sequence[Any] | None = None,
    layout: Layout | None = None,
) -> tuple[bytes, list[Column]]:
    """The contract graph of a fitted estimator, and its columns with their ONNX input names.

    The matrix layout (``columns`` empty or all numeric without ``input``) gets one float64 input
    ``input``; the columns layout one ``[N, 1]`` input per column, named by :func:`input_name`.
    ArtifactError if skl2onnx cannot convert the estimator or the result breaks the contract.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    from orchestrator.training.converters import register_converters

    register_converters()
    if layout is None:
        layout = "columns" if any(c.kind == "categorical" or c.input for c in columns) else "matrix"
    if layout == "matrix":
        width = int(np.shape(features)[1])
        initial: list[tuple[str, Any]] = [(INPUT_NAME, DoubleTensorType([None, width]))]
        named = [c.model_copy(update={"input": None}) for c in columns]
    else:
        taken: set[str] = set()
        named = [c.model_copy(update={"input": input_name(c.name, taken)}) for c in columns]
        # skl2onnx finds a ColumnTransformer's columns by the initial types' names, so these are
        # the columns' own names; the graph's inputs are renamed to the contract's names below.
        initial = [
            (c.name, DoubleTensorType([None, 1]) if c.kind == "numeric" else StringTensorType([None, 1]))
            for c in columns
        ]
    final = _final_estimator(estimator)
    try:
        onx = convert_sklearn(
            estimator,
            initial_types=initial,
            # Without zipmap the probabilities are a plain [N, K] tensor instead of a list of dicts.
            options={id(final): {"zipmap": False}},
            target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
            name=_GRAPH_NAME,
        )
    except Exception as exc:  # skl2onnx raises RuntimeError, NotImplementedError, MissingShapeCalculator...
        raise ArtifactError(
            f"skl2onnx cannot convert {type(final).__name__} to ONNX ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:300]})",
            path=MODEL_FILE,
        ) from exc
    if layout == "columns":
        for graph_input, column in zip(onx.graph.input, named, strict=True):
            if graph_input.name != column.input:
                _rename_graph_input(onx.graph, graph_input.name, str(column.input))
    keys = None if class_keys is None else list(class_keys)
    to_contract_outputs(onx, probabilities=PROBABILITIES_OUTPUT, label=LABEL_OUTPUT, class_keys=keys)
    _check_contract(onx, layout, named)
    data: bytes = onx.SerializeToString()
    return data, named


def _rename_graph_input(graph: Any, old: str, new: str) -> None:
    for graph_input in graph.input:
        if graph_input.name == old:
            graph_input.name = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _check_contract(onx: Any, layout: Layout, columns: Sequence[Column]) -> None:
    """Fail here, not in the endpoint, if a skl2onnx upgrade (or a surgery) changes names or types."""
    from onnx import TensorProto

    inputs = [(i.name, i.type.tensor_type.elem_type) for i in onx.graph.input]
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in onx.graph.input]
    outputs = {o.name: o.type.tensor_type.elem_type for o in onx.graph.output}
    if layout == "matrix":
        width = [d[1:] for d in dims]
        expected_inputs = [(INPUT_NAME, TensorProto.DOUBLE)]
        ok_dims = len(width) == 1 and (not columns or width[0] == [len(columns)])
    else:
        expected_inputs = [
            (str(c.input), TensorProto.DOUBLE if c.kind == "numeric" else TensorProto.STRING) for c in columns
        ]
        ok_dims = all(d[1:] == [1] for d in dims)
    expected_outputs = {LABEL_OUTPUT: TensorProto.INT64, PROBABILITIES_OUTPUT: TensorProto.DOUBLE}
    if inputs != expected_inputs or not ok_dims or outputs != expected_outputs:
        raise ArtifactError(
            f"the ONNX graph breaks the serving contract: inputs {inputs} with dims {dims}, "
            f"outputs {outputs}",
            path=MODEL_FILE,
        )
