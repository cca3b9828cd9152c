"""``package``: a classifier trained elsewhere, and a reference table, into a verified artifact.

The steps, each a refusal that names the problem and writes nothing:

1. Read the model: an ``.onnx`` file (:mod:`.onnx_source`) or a scikit-learn estimator or pipeline
   saved with skops (:mod:`.trusted`). It must give class probabilities.
2. The classes: carried by the model (``classes_``, ``classlabels_*``, ZipMap), else ``--labels``;
   both given must agree (``--labels`` may name a model's integer codes 0..K-1).
3. The features: the model's names (``feature_names_in_``, per-column ONNX inputs), else
   ``--features``, else the reference table's columns; the table (without ``--target``) must hold
   exactly those columns, with values of the model's types.
4. The contract graph: scikit-learn models through train's export (:func:`orchestrator.training.
   export.export`), checked against ``predict``/``predict_proba`` on the reference rows; ONNX
   models by graph surgery, checked against the original graph on the reference rows. Labels must
   agree on every row and probabilities within 1e-6.
5. The canary (synthetic rows from the reference table, as train makes them), the evaluation with
   ``--target`` (train's metrics, report and plots), the manifest, the signature, the write.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

import orchestrator
from orchestrator.core.artifact.manifest import SCHEMA_VERSION, Column, Manifest
from orchestrator.core.errors import ArtifactError, ConfigError
from orchestrator.core.names import check_model_name, is_valid_name
from orchestrator.training import report
from orchestrator.training.canary import synthetic_canary
from orchestrator.training.evaluate import evaluate
from orchestrator.training.export import MAX_PROBABILITY_DIFF, OnnxModel, agreement, export, input_name
from orchestrator.training.gate import champion_for, check_gate_options
from orchestrator.training.packaging import checks
from orchestrator.training.packaging.assess import assessed
from orchestrator.training.profile import reference_profile
from orchestrator.training.staging import write_staged
from orchestrator.training.tables import (
    DatasetError,
    RawTable,
    TypedColumn,
    name_columns,
    read_table,
    type_column,
)

__all__ = ["PackageOptions", "PackageResult", "package"]


@dataclass(frozen=True)
class PackageOptions:
    """What ``orchestrator package`` takes (see the module docstring for each step)."""

    model: Path
    """An ``.onnx`` file or a ``.skops`` file."""
    reference: Path
    """A CSV or Parquet table of inputs (and, with ``target``, labels)."""
    target: str | None = None
    labels: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = field(default=())
    name: str | None = None
    out: Path = Path("artifacts")
    signing_key: Path | None = None
    against: str | None = None
    """The champion–challenger gate (:mod:`orchestrator.training.gate`): the model to beat."""
    eval_table: Path | None = None
    allow_worse: str | None = None
    signing_public_key: str | None = None

    def __post_init__(self) -> None:
        check_gate_options(self.against, self.eval_table, self.allow_worse)
        if self.against is not None and self.target is None and self.eval_table is None:
            raise ConfigError("--against: needs labelled rows to compare on: --target COLUMN or --eval TABLE")
        if self.name is not None:
            check_model_name(self.name, where="--name", error=ConfigError)
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"--labels {','.join(self.labels)}: every label must be distinct")
        if self.features is not None and len(set(self.features)) != len(self.features):
            raise ConfigError(f"--features {','.join(self.features)}: every feature must be distinct")


@dataclass(frozen=True)
class PackageResult:
    path: Path
    """``out/<name>/<version>``."""
    manifest: Manifest
    signed: bool = False


@dataclass(frozen=True, eq=False)
class _Packaged:
    """The contract model and what the checks found, before the canary and the manifest."""

    model: bytes
    columns: list[Column]
    typed: list[TypedColumn]
    classes: list[str]
    features: Any
    labels: NDArray[np.int64]
    probabilities: NDArray[np.float64]
    export: dict[str, Any]
    training: dict[str, Any]
    framework: tuple[str, ...]


def package(opts: PackageOptions) -> PackageResult:
    """Check and write the artifact; an OrchestratorError naming the problem otherwise (nothing
    written): ArtifactError for the model, DatasetError for the reference table, ConfigError
    for the options."""
    if not opts.model.is_file():
        raise ConfigError(f"--model {opts.model}: file not found")
    champion = champion_for(opts.against, opts.signing_public_key)
    table = read_table(opts.reference)
    if opts.target is not None and opts.target not in table.columns:
        raise DatasetError(
            f"{table.path}: target column {opts.target!r} not found; columns are: "
            f"{name_columns(list(table.columns))}"
        )
    from_source = _from_onnx if opts.model.suffix.lower() == ".onnx" else _from_sklearn
    packaged = from_source(opts, table)
    name = _artifact_name(opts)
    metrics: dict[str, Any] = {}
    y_true = None
    if opts.target is not None:
        y_true = checks.true_labels(table, opts.target, packaged.classes)
        metrics = evaluate(y_true, packaged.labels, packaged.probabilities, packaged.classes)
    fields = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": _version(packaged, table, opts.target),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "framework": _framework(packaged.framework),
        "features": {
            "names": [c.name for c in packaged.columns],
            "count": len(packaged.columns),
            "layout": "columns" if packaged.columns[0].input else "matrix",
            "columns": [c.model_dump() for c in packaged.columns],
        },
        "classes": packaged.classes,
        "split": {
            "dataset": table.name,
            "source": "reference",
            "format": table.format,
            "dataset_sha256": table.sha256,
            "n_reference": table.n_rows,
            "target": opts.target,
            "n_train": 0,
            "n_test": table.n_rows if opts.target is not None else 0,
        },
        "training": packaged.training,
        "metrics": metrics,
        "export": packaged.export,
        "canary": synthetic_canary(
            packaged.typed,
            packaged.labels,
            np.arange(table.n_rows),
            packaged.classes,
            packaged.model,
            packaged.columns,
        ),
        "reference_profile": reference_profile(
            packaged.typed,
            np.arange(table.n_rows),
            packaged.probabilities,
            source="the reference table",
            y_true=y_true,
        ),
    }
    fields.update(assessed(opts, packaged, y_true, champion))
    extra = None
    if y_true is not None:
        truth = y_true

        def extra(staging: Path) -> None:
            report.write_report(staging, fields, truth, packaged.probabilities)

    path, manifest = write_staged(opts.out, fields, packaged.model, extra=extra, signing_key=opts.signing_key)
    return PackageResult(path=path, manifest=manifest, signed=opts.signing_key is not None)


# --- the two sources ----------------------------------------------------------------------------


def _from_sklearn(opts: PackageOptions, table: RawTable) -> _Packaged:
    from sklearn.base import is_classifier

    from orchestrator.training.packaging.trusted import load_skops

    estimator = load_skops(opts.model)
    kind = type(estimator).__name__
    if not is_classifier(estimator) or not hasattr(estimator, "classes_"):
        raise ArtifactError(f"{opts.model}: {kind} is not a fitted classifier", path=str(opts.model))
    if not hasattr(estimator, "predict_proba"):
        raise ArtifactError(
            f"{opts.model}: {kind} gives no class probabilities (no predict_proba; e.g. SVC needs "
            "probability=True)",
            path=str(opts.model),
        )
    keys = estimator.classes_.tolist()
    classes = checks.classes(opts, [str(k) for k in keys], len(keys))
    names_in = getattr(estimator, "feature_names_in_", None)
    model_names = [str(n) for n in names_in] if names_in is not None else None
    names = checks.feature_names(opts, table, model_names, getattr(estimator, "n_features_in_", None))
    typed = [type_column(table.path, table.columns[n], categorical=opts.categorical) for n in names]
    layout: Literal["matrix", "columns"] = "columns" if model_names is not None else "matrix"
    if layout == "matrix" and any(c.kind == "categorical" for c in typed):
        text = [c.name for c in typed if c.kind == "categorical"]
        raise DatasetError(
            f"{table.path}: columns {name_columns(text)} hold text, but {kind} was fitted on a numeric "
            "matrix (no feature names)"
        )
    categories = checks.encoder_categories(estimator)
    columns = [Column(name=c.name, kind=c.kind, categories=categories.get(c.name, [])) for c in typed]
    features = checks.features(typed, layout)
    class_keys = None if keys == list(range(len(keys))) else keys
    try:
        exported = export(
            estimator, features, columns, rows="reference table", class_keys=class_keys, layout=layout
        )
    except (ValueError, TypeError) as exc:  # scikit-learn refusing the rows (a wrong type, a shape)
        raise DatasetError(
            f"{table.path}: {kind} cannot predict on the reference rows ({' '.join(str(exc).split())[:300]})"
        ) from exc
    training = {
        "packaged": True,
        "source_format": "skops",
        "source_file": opts.model.name,
        "source_sha256": _sha256(opts.model),
        "estimator": _estimator_text(estimator),
    }
    info = {**exported.info, "compared_with": "scikit-learn predict and predict_proba"}
    return _Packaged(
        model=exported.model,
        columns=exported.columns,
        typed=typed,
        classes=classes,
        features=features,
        labels=exported.labels,
        probabilities=exported.probabilities,
        export=info,
        training=training,
        framework=("scikit-learn", "skl2onnx", "skops"),
    )


def _from_onnx(opts: PackageOptions, table: RawTable) -> _Packaged:
    from orchestrator.training.packaging.onnx_source import adapt, read_onnx, run_original

    source = read_onnx(opts.model)
    carried = source.classes
    model_names = [i.name for i in source.inputs] if source.layout == "columns" else None
    width = source.inputs[0].width if source.layout == "matrix" else None
    names = checks.feature_names(opts, table, model_names, width)
    if source.layout == "matrix":
        kinds = ["numeric"] * len(names)
    else:
        kinds = ["categorical" if i.dtype == np.dtype(object) else "numeric" for i in source.inputs]
    typed = [
        type_column(table.path, table.columns[n], kind="categorical" if k == "categorical" else "numeric")
        for n, k in zip(names, kinds, strict=True)
    ]
    taken: set[str] = set()
    columns = [
        Column(
            name=c.name, kind=c.kind, input=input_name(c.name, taken) if source.layout == "columns" else None
        )
        for c in typed
    ]
    features = checks.features(typed, source.layout)
    original_labels, original_proba = run_original(source, features, columns)
    classes = checks.classes(opts, carried, original_proba.shape[1])
    checks.check_probabilities(opts.model, source.probability_output, original_proba)
    keys = source.class_keys
    if source.label is None:
        expected = np.argmax(original_proba, axis=1).astype(np.int64)
    elif keys is None:  # the label is the class index itself
        expected = np.asarray(original_labels, dtype=np.int64)
    else:
        index = {str(k): i for i, k in enumerate(keys)}
        assert original_labels is not None
        expected = np.array([index.get(str(v), -1) for v in original_labels.tolist()], dtype=np.int64)
    if np.any((expected < 0) | (expected >= len(classes))):
        row = int(np.flatnonzero((expected < 0) | (expected >= len(classes)))[0])
        shown = original_labels[row] if original_labels is not None else expected[row]
        raise ArtifactError(
            f"{opts.model}: label output {source.label!r} gives {shown!r} on reference row {row + 1}, "
            f"which is not one of the {len(classes)} classes",
            path=str(opts.model),
        )
    model = adapt(source, columns, keys if source.label is not None else None)
    labels, probabilities = OnnxModel(model, columns).predict(features)
    labels_agree, max_diff = agreement(
        labels,
        probabilities,
        expected,
        original_proba,
        what=f"{opts.model}: the adapted graph differs from the original on the reference table",
    )
    info = {
        "format": "onnx",
        "layout": source.layout,
        "input_name": "input" if source.layout == "matrix" else None,
        "input_dtype": "float64",
        "checked_rows": "reference table",
        "test_rows": len(labels),
        "labels_agree": labels_agree,
        "max_probability_diff": max_diff,
        "tolerance": MAX_PROBABILITY_DIFF,
        "compared_with": "the original ONNX graph",
        "adapted_from": {
            "inputs": [f"{i.name} ({i.dtype})" for i in source.inputs],
            "probabilities": source.probability_output,
            "label": source.label,
        },
    }
    training = {
        "packaged": True,
        "source_format": "onnx",
        "source_file": opts.model.name,
        "source_sha256": _sha256(opts.model),
        "estimator": f"ONNX ({source.producer})",
    }
    return _Packaged(
        model=model,
        columns=columns,
        typed=typed,
        classes=classes,
        features=features,
        labels=labels,
        probabilities=probabilities,
        export=info,
        training=training,
        framework=(),
    )


def _estimator_text(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    if steps:
        return " + ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__


def _artifact_name(opts: PackageOptions) -> str:
    if opts.name is not None:
        return opts.name
    stem = re.sub(r"[^a-z0-9._-]+", "-", opts.model.stem.lower()).lstrip("._-")[:63].rstrip("._-")
    if not is_valid_name(stem):
        raise ConfigError(f"cannot derive an artifact name from {opts.model.name!r}; pass --name")
    return stem


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _version(packaged: _Packaged, table: RawTable, target: str | None) -> str:
    """First 12 hex digits of a hash over the served model, its interface and the reference data."""
    payload = {
        "model_sha256": hashlib.sha256(packaged.model).hexdigest(),
        "classes": packaged.classes,
        "columns": [c.model_dump() for c in packaged.columns],
        "reference_sha256": table.sha256,
        "target": target,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _framework(extra: tuple[str, ...]) -> dict[str, str]:
    packages = ("onnx", "onnxruntime", "numpy", *extra)
    return {
        "python": platform.python_version(),
        **{p: metadata.version(p) for p in packages},
        "orchestrator": orchestrator.__version__,
    }
