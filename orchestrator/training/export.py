"""ONNX export of a fitted pipeline, and the proof that the export agrees with scikit-learn.

The served format is ONNX because loading it executes no code (a pickle would). This module owns
the contract the endpoint relies on: one input named ``input``, float64 ``[None, n_features]``;
outputs ``label`` (int64 class index into the manifest's ``classes``) and ``probabilities``
(float64 ``[N, K]``, columns in class-index order). :func:`export` refuses a model whose ONNX
outputs differ from scikit-learn's on the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.artifact.manifest import MODEL_FILE
from orchestrator.core.errors import ArtifactError

__all__ = [
    "INPUT_NAME",
    "LABEL_OUTPUT",
    "MAX_PROBABILITY_DIFF",
    "OPSET",
    "PROBABILITIES_OUTPUT",
    "Exported",
    "OnnxModel",
    "export",
]

INPUT_NAME = "input"
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
# Opset 17 (IR version 8) loads in every onnxruntime since 1.13, older than the serving extra's
# minimum; nothing this pipeline needs is newer. ai.onnx.ml 1 is what skl2onnx emits for it.
OPSET = 17
ML_OPSET = 1
# The bound. float64 end to end measures ~1e-15 here; float32 input would give ~3e-6.
MAX_PROBABILITY_DIFF = 1e-5
# Graph name recorded in the model; fixed so that identical training gives identical bytes.
_GRAPH_NAME = "orchestrator_classifier"


class OnnxModel:
    """An onnxruntime session over model bytes, single-threaded so results do not depend on the host."""

    def __init__(self, model: bytes) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def predict(self, X: NDArray[np.float64]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Class indices and probabilities ``[N, K]`` for float64 rows."""
        labels, probabilities = self._session.run(
            [LABEL_OUTPUT, PROBABILITIES_OUTPUT], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float64)}
        )
        return np.asarray(labels, dtype=np.int64), np.asarray(probabilities, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Exported:
    """The ONNX model, its outputs on the test rows, and the manifest's ``export`` record."""

    model: bytes
    labels: NDArray[np.int64]
    probabilities: NDArray[np.float64]
    info: dict[str, Any]


def export(pipeline: Any, X_test: NDArray[np.float64]) -> Exported:
    """Convert a fitted pipeline (final step a classifier) and check it against sklearn on ``X_test``."""
    model = _to_onnx(pipeline, X_test.shape[1])
    onnx_model = OnnxModel(model)
    labels, probabilities = onnx_model.predict(X_test)
    expected_labels = np.asarray(pipeline.predict(X_test), dtype=np.int64)
    expected_proba = np.asarray(pipeline.predict_proba(X_test), dtype=np.float64)

    labels_agree = float(np.mean(labels == expected_labels))
    max_diff = float(np.max(np.abs(probabilities - expected_proba)))
    if labels_agree != 1.0 or not max_diff < MAX_PROBABILITY_DIFF:
        raise ArtifactError(
            f"the ONNX export disagrees with scikit-learn on the test set: labels agree on "
            f"{labels_agree:.2%} of rows (need 100%), max probability difference {max_diff:.3g} "
            f"(need < {MAX_PROBABILITY_DIFF:g})",
            path=MODEL_FILE,
        )
    info = {
        "format": "onnx",
        "opset": OPSET,
        "input_name": INPUT_NAME,
        "input_dtype": "float64",
        "test_rows": len(X_test),
        "labels_agree": labels_agree,
        "max_probability_diff": max_diff,
    }
    return Exported(model=model, labels=labels, probabilities=probabilities, info=info)


def _to_onnx(pipeline: Any, n_features: int) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType

    classifier = pipeline.steps[-1][1]
    onx = to_onnx(
        pipeline,
        # Naming the input here rather than renaming it afterwards keeps the graph consistent.
        initial_types=[(INPUT_NAME, DoubleTensorType([None, n_features]))],
        # Without zipmap the probabilities are a plain [N, K] tensor instead of a list of dicts.
        options={id(classifier): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
        name=_GRAPH_NAME,
    )
    _check_contract(onx, n_features)
    data: bytes = onx.SerializeToString()
    return data


def _check_contract(onx: Any, n_features: int) -> None:
    """Fail here, not in the endpoint, if a skl2onnx upgrade changes names or types."""
    from onnx import TensorProto

    inputs = [(i.name, i.type.tensor_type.elem_type) for i in onx.graph.input]
    outputs = {o.name: o.type.tensor_type.elem_type for o in onx.graph.output}
    dims = [d.dim_value for d in onx.graph.input[0].type.tensor_type.shape.dim] if inputs else []
    expected_outputs = {LABEL_OUTPUT: TensorProto.INT64, PROBABILITIES_OUTPUT: TensorProto.DOUBLE}
    if (
        inputs != [(INPUT_NAME, TensorProto.DOUBLE)]
        or dims[1:] != [n_features]
        or outputs != expected_outputs
    ):
        raise ArtifactError(
            f"the ONNX graph breaks the serving contract: "
            f"inputs {inputs} with dims {dims}, outputs {outputs}",
            path=MODEL_FILE,
        )
