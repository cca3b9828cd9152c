"""The champion of ``--against``: read and verified as the endpoint reads it, run with ONNX Runtime.

:func:`load_champion` goes through :func:`orchestrator.core.artifact.fetch.open_verified` (the
pointer, the manifest, sizes, the signature when a public key is configured, every sha256), then
re-checks the model bytes, builds an ONNX Runtime session and replays the champion's canary within
:data:`~orchestrator.core.artifact.manifest.CANARY_TOLERANCE`: the checks the endpoint makes before
it serves a version. :func:`model_input` builds either model's input from typed columns by name, so
both models are scored on the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.artifact.fetch import open_verified
from orchestrator.core.artifact.integrity import verify_bytes
from orchestrator.core.artifact.manifest import CANARY_TOLERANCE, Column, Manifest
from orchestrator.core.errors import ArtifactError
from orchestrator.training.export import OnnxModel
from orchestrator.training.tables import DatasetError, TypedColumn

if TYPE_CHECKING:
    from orchestrator.core.artifact.signing import SignatureVerifier

__all__ = ["Champion", "load_champion", "model_input"]


@dataclass(frozen=True, eq=False)
class Champion:
    """A verified champion: its manifest, the manifest's sha256, the URI given, where it was read
    from, and its ONNX Runtime session."""

    uri: str
    source: str
    manifest: Manifest
    manifest_sha256: str
    model: OnnxModel

    @property
    def columns(self) -> list[Column]:
        """Its input columns (the matrix layout's carry no ONNX input name)."""
        features = self.manifest.features
        if features.columns:
            return list(features.columns)
        return [Column(name=n, kind="numeric") for n in features.names]

    def predict(self, by_name: Mapping[str, TypedColumn]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Class indices (into its own ``classes``) and probabilities on the columns ``by_name``."""
        return self.model.predict(model_input(by_name, self.columns, self.manifest.features.layout))


def load_champion(
    uri: str, workdir: Path, *, verifier: SignatureVerifier | None = None, where: str = "--against"
) -> Champion:
    """The verified champion ``uri`` names (see :mod:`orchestrator.core.artifact.fetch` for the
    forms and errors); a remote one is downloaded under ``workdir``. ArtifactError naming the
    source if its graph does not load or its canary is not reproduced."""
    artifact = open_verified(uri, workdir, verifier=verifier, where=where)
    manifest, source = artifact.manifest, artifact.source
    model_bytes = (artifact.root / manifest.model_file).read_bytes()
    verify_bytes(manifest.file(manifest.model_file), model_bytes, source=source)
    columns = list(manifest.features.columns) if manifest.features.layout == "columns" else []
    try:
        model = OnnxModel(model_bytes, columns)
    except Exception as exc:  # onnxruntime raises its own exception types for any bad graph
        raise ArtifactError(
            f"{source}: {manifest.model_file} does not load in ONNX Runtime ({type(exc).__name__})",
            path=manifest.model_file,
        ) from exc
    champion = Champion(
        uri=uri, source=source, manifest=manifest, manifest_sha256=artifact.manifest_sha256, model=model
    )
    _replay_canary(champion)
    return champion


def _replay_canary(champion: Champion) -> None:
    manifest = champion.manifest
    canary = manifest.canary
    if manifest.features.layout == "matrix":
        features: Any = np.array(canary.instances, dtype=np.float64)
    else:
        features = {
            c.name: np.array(
                [
                    (np.nan if row[c.name] is None else row[c.name])
                    if c.kind == "numeric"
                    else (row[c.name] or "")
                    for row in canary.instances
                ],
                dtype=np.float64 if c.kind == "numeric" else object,
            )
            for c in manifest.features.columns
        }
    try:
        labels, probabilities = champion.model.predict(features)
    except Exception as exc:
        raise ArtifactError(
            f"{champion.source}: the canary does not run through the model ({type(exc).__name__})",
            path=manifest.model_file,
        ) from exc
    expected = np.asarray(canary.probabilities, dtype=np.float64)
    names = [manifest.classes[int(i)] for i in labels]
    if names != canary.labels or not np.allclose(probabilities, expected, rtol=0, atol=CANARY_TOLERANCE):
        raise ArtifactError(
            f"{champion.source}: the model does not reproduce its canary (labels or probabilities "
            f"beyond {CANARY_TOLERANCE:g})",
            path=manifest.model_file,
        )


def model_input(by_name: Mapping[str, TypedColumn], columns: Sequence[Column], layout: str) -> Any:
    """A model's ONNX input from typed columns by name: the float64 matrix of ``columns`` in order
    (the matrix layout), else a mapping of column name to values. DatasetError naming a column the
    rows lack, or a text column where the model takes numbers."""
    missing = [c.name for c in columns if c.name not in by_name]
    if missing:
        raise DatasetError(f"the rows have no column {missing[0]!r}, which the model takes")
    values: dict[str, NDArray[Any]] = {}
    for column in columns:
        typed = by_name[column.name]
        if column.kind == "numeric":
            if typed.kind != "numeric":
                raise DatasetError(f"column {column.name!r} holds text, and the model takes numbers")
            values[column.name] = np.asarray(typed.values, dtype=np.float64)
        else:
            text = typed.values if typed.kind == "categorical" else [_number_text(v) for v in typed.values]
            values[column.name] = np.asarray(text, dtype=object)
    if layout == "matrix":
        return np.column_stack([values[c.name] for c in columns]).astype(np.float64)
    return values


def _number_text(value: float) -> str:
    """A number read from a table as the text a categorical column would hold (``3.0`` → ``3``)."""
    if np.isnan(value):
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
