"""A verified, loaded model: the only way the endpoint gets something to predict with.

:func:`load_verified` hashes every file of an artifact against its manifest, builds the ONNX Runtime
session from the very bytes it hashed (so a file swapped between check and use is never loaded), and
replays the manifest's canary rows: a model that does not reproduce its own canary is refused. Only
then does the endpoint consider itself ready.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator.core.artifact.integrity import hash_file, verify_artifact, verify_bytes
from orchestrator.core.artifact.manifest import CANARY_TOLERANCE, MANIFEST_NAME, Manifest
from orchestrator.core.errors import ArtifactError
from serving.columns import ColumnBatch, canary_batch
from serving.inputs import InputError

if TYPE_CHECKING:
    import onnxruntime as ort

    from orchestrator.core.artifact.signing import SignatureVerifier

__all__ = ["Predictor", "invalid_rows", "load_verified"]

INPUT_NAME = "input"
OUTPUTS = ("label", "probabilities")


@dataclass(frozen=True)
class Predictor:
    """An ONNX Runtime session plus the manifest that describes it. Thread-safe for ``predict``."""

    manifest: Manifest
    session: ort.InferenceSession = field(repr=False)
    source: str
    loaded_at: float
    classes: np.ndarray[Any, np.dtype[np.str_]] = field(repr=False)
    manifest_sha256: str = ""  # of the manifest.json bytes it was loaded from
    # Per categorical column of a ``columns`` model: (name, ONNX input, the categories seen in training).
    categorical: tuple[tuple[str, str, frozenset[str]], ...] = field(default=(), repr=False)

    @property
    def columns_layout(self) -> bool:
        """True for a ``columns`` model: rows are objects keyed by column, one ONNX input per column."""
        return self.manifest.features.layout == "columns"

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def n_features(self) -> int:
        return self.manifest.features.count

    def predict(
        self, x: np.ndarray[Any, np.dtype[np.float64]] | ColumnBatch
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Return (class indices [rows], probabilities [rows, classes]) for a float64 matrix of
        shape (rows, n_features) (``matrix`` model) or a :class:`~serving.columns.ColumnBatch`
        (``columns`` model)."""
        feeds = x.feeds if isinstance(x, ColumnBatch) else {INPUT_NAME: x}
        labels, probabilities = self.session.run(OUTPUTS, feeds)
        return labels, probabilities

    def unknown_categories(self, batch: ColumnBatch) -> list[tuple[str, int]]:
        """(column name, count) of the values of ``batch`` outside each categorical column's
        training categories (the graph's one-hot encoder ignores them), for columns with any."""
        counts = []
        for name, onnx_input, known in self.categorical:
            unknown = sum(1 for v in batch.feeds[onnx_input][:, 0] if v not in known)
            if unknown:
                counts.append((name, unknown))
        return counts


def _session(model_bytes: bytes, source: str) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per request path: the container scales out by replicas, and intra-op threads only
    # add synchronisation cost for a model this small (measured: 3x slower per one-row call).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors for malformed graphs
        raise ArtifactError(f"{source}: model file is not a loadable ONNX model ({exc})") from exc


def _check_signature(session: ort.InferenceSession, manifest: Manifest, source: str) -> None:
    """The graph's interface is exactly what the endpoint feeds and reads: one float64 input of
    shape [rows, features] (``matrix``) or one [rows, 1] input per column (``columns``), an
    int64 ``label`` of shape [rows] and a float64 ``probabilities`` of
    shape [rows, classes] (symbolic dimensions allowed), and no other output."""
    inputs = session.get_inputs()
    if manifest.features.layout == "columns":
        _check_column_inputs(inputs, manifest, source)
    else:
        _check_matrix_input(inputs, manifest, source)
    _check_outputs(session, manifest, source)


def _check_column_inputs(inputs: list[Any], manifest: Manifest, source: str) -> None:
    """A ``columns`` graph takes exactly one ``[rows, 1]`` input per manifest column, named by
    ``columns[i].input``: float64 for numeric columns, string for categorical ones."""
    expected = {str(c.input): c for c in manifest.features.columns}
    got = {i.name: i for i in inputs}
    if set(got) != set(expected):
        raise ArtifactError(
            f"{source}: model inputs are {sorted(got)}; the manifest's columns need {sorted(expected)}",
            path="manifest.json",
        )
    for name, column in expected.items():
        kind = "tensor(double)" if column.kind == "numeric" else "tensor(string)"
        shape = got[name].shape
        if got[name].type != kind or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != 1):
            raise ArtifactError(
                f"{source}: model input {name!r} (column {column.name!r}, {column.kind}) must be a "
                f"{kind} of shape [rows, 1], not {got[name].type} {shape}"
            )


def _check_matrix_input(inputs: list[Any], manifest: Manifest, source: str) -> None:
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ArtifactError(f"{source}: model must have exactly one input named {INPUT_NAME!r}")
    shape, kind = inputs[0].shape, inputs[0].type
    if kind != "tensor(double)" or len(shape) != 2:
        raise ArtifactError(f"{source}: model input must be a 2-D float64 tensor, not {kind} {shape}")
    width = shape[-1]
    if width != manifest.features.count:
        raise ArtifactError(
            f"{source}: model takes {width} features, manifest says {manifest.features.count}",
            path="manifest.json",
        )


def _check_outputs(session: ort.InferenceSession, manifest: Manifest, source: str) -> None:
    outputs = {o.name: o for o in session.get_outputs()}
    if set(outputs) != set(OUTPUTS):
        raise ArtifactError(
            f"{source}: model outputs are {sorted(outputs)}; expected exactly {list(OUTPUTS)}"
        )
    label, proba = outputs["label"], outputs["probabilities"]
    if label.type != "tensor(int64)" or len(label.shape) != 1:
        raise ArtifactError(
            f"{source}: output 'label' must be a 1-D int64 tensor, not {label.type} {label.shape}"
        )
    if proba.type != "tensor(double)" or len(proba.shape) != 2:
        raise ArtifactError(
            f"{source}: output 'probabilities' must be a 2-D float64 tensor, not {proba.type} {proba.shape}"
        )
    if isinstance(proba.shape[1], int) and proba.shape[1] != len(manifest.classes):
        raise ArtifactError(
            f"{source}: model gives {proba.shape[1]} probabilities per row, manifest lists "
            f"{len(manifest.classes)} classes",
            path="manifest.json",
        )


def invalid_rows(
    labels: np.ndarray[Any, Any], probabilities: np.ndarray[Any, Any], n_classes: int
) -> np.ndarray[Any, np.dtype[np.intp]]:
    """Indices of rows whose outputs cannot be returned as a prediction: a probability that is not
    finite (inputs so large that scaling overflows, e.g. 1e308) or a label outside the classes.
    Shapes: labels [rows], probabilities [rows, n_classes]."""
    # The common case in three reductions (a sum of values in [0, 1] is finite iff each is).
    if len(labels) and np.isfinite(probabilities.sum()) and labels.min() >= 0 and labels.max() < n_classes:
        return _NONE
    bad = ~np.isfinite(probabilities).all(axis=1)
    bad |= (labels < 0) | (labels >= n_classes)
    return np.flatnonzero(bad)


_NONE: np.ndarray[Any, np.dtype[np.intp]] = np.empty(0, dtype=np.intp)


def _check_canary(predictor: Predictor) -> None:
    canary = predictor.manifest.canary
    n_classes = len(predictor.classes)
    try:
        if predictor.columns_layout:
            x: Any = canary_batch(canary.instances, predictor.manifest.features.columns)
        else:
            x = np.asarray(canary.instances, dtype=np.float64)
    except (InputError, ValueError, TypeError) as exc:
        raise ArtifactError(
            f"{predictor.source}: canary instances do not fit the model's input ({exc})", path="manifest.json"
        ) from exc
    try:
        labels, probabilities = predictor.predict(x)
    except Exception as exc:  # ORT's own errors: a graph that fails on well-formed input
        raise ArtifactError(f"{predictor.source}: model fails on its canary rows ({exc})") from exc
    if probabilities.shape != (len(canary.instances), n_classes) or labels.shape != (len(canary.instances),):
        raise ArtifactError(
            f"{predictor.source}: model gives outputs of shapes {labels.shape} and {probabilities.shape} "
            f"for {len(canary.instances)} canary rows and {n_classes} classes",
            path="manifest.json",
        )
    if len(invalid_rows(labels, probabilities, n_classes)):
        raise ArtifactError(f"{predictor.source}: model gives invalid outputs on its canary rows")
    got = predictor.classes[labels].tolist()
    if got != canary.labels:
        raise ArtifactError(f"{predictor.source}: canary labels {got} differ from manifest {canary.labels}")
    diff = float(np.max(np.abs(probabilities - np.asarray(canary.probabilities))))
    if diff > CANARY_TOLERANCE:
        raise ArtifactError(
            f"{predictor.source}: canary probabilities differ from manifest by {diff:.2e} "
            f"(> {CANARY_TOLERANCE})"
        )


def load_verified(
    root: Path, *, source: str | None = None, verifier: SignatureVerifier | None = None
) -> Predictor:
    """Verify an artifact directory and load its model; raise ArtifactError naming ``source`` (a
    bucket object, default ``root``) and what is wrong.

    With a ``verifier``, the directory's signature must verify with its public key first
    (SignatureError otherwise). Then every file's sha256, the graph's interface, and the canary.
    """
    source = source or str(root)
    manifest = verify_artifact(root, source=source)
    if verifier is not None:
        verifier.verify(root, source=source)
    manifest_sha256, _ = hash_file(root / MANIFEST_NAME)
    model_bytes = (root / manifest.model_file).read_bytes()
    # Re-check the bytes we are about to load: the file may have changed since it was hashed.
    verify_bytes(manifest.file(manifest.model_file), model_bytes, source=source)
    session = _session(model_bytes, source)
    _check_signature(session, manifest, source)
    predictor = Predictor(
        manifest=manifest,
        session=session,
        source=source,
        loaded_at=time.time(),
        classes=np.asarray(manifest.classes, dtype=np.str_),
        manifest_sha256=manifest_sha256,
        categorical=tuple(
            (c.name, str(c.input), frozenset(c.categories))
            for c in manifest.features.columns
            if manifest.features.layout == "columns" and c.kind == "categorical"
        ),
    )
    _check_canary(predictor)
    return predictor
