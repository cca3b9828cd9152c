"""The training pipeline: from a dataset to a verified, versioned artifact, or a refusal writing nothing.

This module owns the training run (options, the order of the steps), the content-derived version
and the assembly of the manifest. The estimators and their search are :mod:`.models`'; loading
data, metrics, ONNX export, the canary, the metric gate, the report and the staged write live in
their own modules; the artifact format in :mod:`orchestrator.core.artifact`.

Order matters: everything is computed in memory (fit, export, agreement check, metrics, gate), and
only a model that passed is staged in a temporary directory beside its destination and moved into
``out/<name>/<version>`` in one rename. Any error removes the staging directory.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, get_args

import numpy as np

import orchestrator
from orchestrator.core.artifact.manifest import SCHEMA_VERSION, Column, Manifest
from orchestrator.core.errors import ConfigError
from orchestrator.core.names import check_model_name, is_valid_name
from orchestrator.training import datasets, models, report
from orchestrator.training.canary import synthetic_canary
from orchestrator.training.champion import Champion, model_input
from orchestrator.training.evaluate import cv_summary, evaluate
from orchestrator.training.export import ML_OPSET, OPSET, Exported, OnnxModel, export
from orchestrator.training.gate import (
    GateRows,
    challenger_gate,
    champion_for,
    champion_held_out,
    check_classes,
    check_gate,
    check_gate_options,
    eval_rows,
)
from orchestrator.training.interpret import explain
from orchestrator.training.models import C_GRID, MAX_ITER, ClassWeight, ModelChoice, Strategy
from orchestrator.training.profile import reference_profile
from orchestrator.training.staging import write_staged
from orchestrator.training.tables import TypedColumn

__all__ = [
    "C_GRID",
    "ModelChoice",
    "Strategy",
    "TrainOptions",
    "TrainResult",
    "artifact_name",
    "content_version",
    "train",
]


@dataclass(frozen=True)
class TrainOptions:
    dataset: str
    """``iris``, ``wine``, ``digits``, or a path to a CSV file."""
    target: str | None = None
    strategy: Strategy = "multinomial"
    out: Path = Path("artifacts")
    seed: int = 0
    min_f1_macro: float | None = None
    """The metric gate: a model whose test-set macro F1 is below it is not written."""
    name: str | None = None
    signing_key: Path | None = None
    """An EC private key (PEM): the artifact is signed with it (``model.sig``) before it is moved
    into place, so no unsigned copy of a signed version ever exists."""
    test_size: float = 0.25
    cv_folds: int = 5
    model: ModelChoice = "logreg"
    """``logreg`` (the default), ``random_forest``, ``hist_gradient_boosting``, or ``auto``: all
    three compared in one cross-validated search."""
    class_weight: ClassWeight = "none"
    """``balanced``: classes weighted inversely to their frequency (recorded in the manifest)."""
    categorical: tuple[str, ...] = field(default=())
    """Columns read as text categories even when every value is a number (codes, zip codes)."""
    against: str | None = None
    """The champion–challenger gate: the model to beat (a bucket's ``LATEST``, a version, or a
    local artifact directory; :mod:`.gate`)."""
    eval_table: Path | None = None
    """A labelled table both models are scored on, when the champion takes other columns."""
    allow_worse: str | None = None
    """Write a model the champion–challenger gate refuses; the reason is recorded in the manifest."""
    signing_public_key: str | None = None
    """PEM public key (text or a path): the champion's signature must verify with it."""

    def __post_init__(self) -> None:
        check_gate_options(self.against, self.eval_table, self.allow_worse)
        if self.strategy not in get_args(Strategy):
            raise ConfigError(f"strategy {self.strategy!r}: use one of {', '.join(get_args(Strategy))}")
        if self.model not in get_args(ModelChoice):
            raise ConfigError(f"--model {self.model!r}: use one of {', '.join(get_args(ModelChoice))}")
        if self.class_weight not in get_args(ClassWeight):
            raise ConfigError(
                f"--class-weight {self.class_weight!r}: use one of {', '.join(get_args(ClassWeight))}"
            )
        if not 0.0 < self.test_size < 1.0:
            raise ConfigError(f"test_size {self.test_size}: must be between 0 and 1 (exclusive)")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds {self.cv_folds}: cross-validation needs at least 2 folds")
        if self.min_f1_macro is not None and not 0.0 <= self.min_f1_macro <= 1.0:
            raise ConfigError(f"--min-f1-macro {self.min_f1_macro}: must be between 0 and 1")
        if self.name is not None:
            # The one grammar (orchestrator.core.names), checked before any work is done.
            check_model_name(self.name, where="--name", error=ConfigError)


@dataclass(frozen=True)
class TrainResult:
    path: Path
    """``out/<name>/<version>``."""
    manifest: Manifest
    signed: bool = False


def train(opts: TrainOptions) -> TrainResult:
    """Fit, evaluate, gate, export and write one artifact; raise an OrchestratorError otherwise.

    The champion of ``--against`` is read and verified first, so a bad URI fails before any fit."""
    champion = champion_for(opts.against, opts.signing_public_key)
    dataset = datasets.load_dataset(opts.dataset, opts.target, opts.categorical)
    name = artifact_name(opts, dataset)
    if champion is not None:
        check_classes(champion, dataset.classes)  # before the fit: a mismatch is known now
    split = datasets.split(dataset, test_size=opts.test_size, seed=opts.seed, cv_folds=opts.cv_folds)
    y_test = dataset.y[split.test]
    kinds = [c.kind for c in dataset.columns]

    search = models.search(
        dataset.features(split.train),
        dataset.y[split.train],
        kinds=kinds,
        names=dataset.feature_names,
        model=opts.model,
        strategy=opts.strategy,
        class_weight=opts.class_weight,
        seed=opts.seed,
        cv_folds=opts.cv_folds,
    )
    fitted = search.best_estimator_
    columns = _columns(dataset, fitted)
    exported = export(fitted, dataset.features(split.test), columns)
    # Metrics describe the model that is served: the ONNX outputs (whose labels equal sklearn's).
    metrics = evaluate(
        y_test,
        exported.labels,
        exported.probabilities,
        dataset.classes,
        prior_labels=dataset.y[split.train],
        seed=opts.seed,
    )
    describe = models.describe if opts.model == "auto" else _describe(opts)
    metrics["cv"] = cv_summary(
        search.cv_results_, int(search.best_index_), None, opts.cv_folds, describe=describe
    )
    check_gate(metrics, opts.min_f1_macro)
    gate = None
    if champion is not None:
        gate = challenger_gate(
            champion,
            _gate_rows(opts, dataset, split, exported, champion),
            dataset.classes,
            seed=opts.seed,
            allow_worse=opts.allow_worse,
        )

    fields = _manifest_fields(
        opts=opts, dataset=dataset, split=split, name=name, fitted=fitted, metrics=metrics, exported=exported
    )
    if gate is not None:
        fields["gate"] = gate
    served = OnnxModel(exported.model, exported.columns if dataset.layout == "columns" else [])
    fields["interpretation"] = explain(
        fitted=fitted,
        predict=lambda features: served.predict(features)[0],
        features=dataset.features(split.test),
        y_true=y_test,
        names=dataset.feature_names,
        kinds=kinds,
        classes=dataset.classes,
        seed=opts.seed,
    )

    def write_report(staging: Path) -> None:
        report.write_report(staging, fields, y_test, exported.probabilities)

    path, manifest = write_staged(
        opts.out, fields, exported.model, extra=write_report, signing_key=opts.signing_key
    )
    return TrainResult(path=path, manifest=manifest, signed=opts.signing_key is not None)


def _gate_rows(
    opts: TrainOptions,
    dataset: datasets.Dataset,
    split: datasets.Split,
    exported: Exported,
    champion: Champion,
) -> GateRows:
    """The test split, when the champion takes only columns of this dataset; else ``--eval``."""
    challenger = OnnxModel(exported.model, exported.columns if dataset.layout == "columns" else [])

    def predict(by_name: Mapping[str, Any]) -> Any:
        return challenger.predict(model_input(by_name, exported.columns, dataset.layout))[0]

    if opts.eval_table is not None:
        categorical = {*opts.categorical, *(c.name for c in champion.columns if c.kind == "categorical")}
        return eval_rows(opts.eval_table, opts.target, sorted(categorical), dataset.classes, predict)
    names = set(dataset.feature_names)
    if other := [c.name for c in champion.columns if c.name not in names]:
        raise ConfigError(
            f"--against {opts.against}: the champion takes column {other[0]!r}, which this dataset lacks; "
            "pass --eval TABLE, a labelled table with both models' columns"
        )
    rows, labels, what = split.test, exported.labels, "the test split"
    held_out = champion_held_out(champion, dataset)
    if held_out is not None:
        keep = np.isin(split.test, held_out)
        rows, labels = split.test[keep], exported.labels[keep]
        what = "the test rows neither model trained on"
        if len(rows) == 0:
            raise ConfigError(
                f"--against {opts.against}: the champion was trained on every row of this model's test "
                "split of the same table; pass --eval TABLE, labelled rows neither model trained on"
            )
    by_name = {c.name: TypedColumn(c.name, c.kind, c.values[rows]) for c in dataset.columns}
    return GateRows(what=what, by_name=by_name, y_true=dataset.y[rows], challenger=labels)


def _columns(dataset: datasets.Dataset, fitted: Any) -> list[Column]:
    """The manifest's columns: each feature's kind, and the categories one-hot encoded in training."""
    categories: dict[str, list[str]] = {}
    prepare = fitted.steps[0][1]
    if dataset.layout == "columns":
        encoder = prepare.named_transformers_["categorical"]
        names = [c.name for c in dataset.columns if c.kind == "categorical"]
        categories = {n: [str(v) for v in cats] for n, cats in zip(names, encoder.categories_, strict=True)}
    return [Column(name=c.name, kind=c.kind, categories=categories.get(c.name, [])) for c in dataset.columns]


def artifact_name(opts: TrainOptions, dataset: datasets.Dataset) -> str:
    """``--name``, else the dataset's name, else the CSV file's stem made safe for a path and URL."""
    if opts.name is not None:
        return opts.name
    if dataset.source == "builtin":
        return check_model_name(dataset.name, where="dataset", error=ConfigError)
    stem = re.sub(r"[^a-z0-9._-]+", "-", Path(dataset.name).stem.lower()).lstrip("._-")[:63].rstrip("._-")
    if not is_valid_name(stem):
        raise ConfigError(f"cannot derive an artifact name from {dataset.name!r}; pass --name")
    return stem


def content_version(opts: TrainOptions, dataset: datasets.Dataset) -> str:
    """First 12 hex digits of a hash over everything that determines the model's bytes.

    Same data, options and code give the same version; the clock and the output directory do not
    enter. ``orchestrator.__version__`` stands in for this code, the library versions for theirs.
    """
    payload = {
        "data_sha256": dataset.sha256,
        "features": dataset.feature_names,
        "kinds": [c.kind for c in dataset.columns],
        "classes": dataset.classes,
        "seed": opts.seed,
        "strategy": opts.strategy,
        "model": opts.model,
        "class_weight": opts.class_weight,
        "test_size": opts.test_size,
        "cv_folds": opts.cv_folds,
        "grid": [{k: [repr(v) for v in vs] for k, vs in g.items()} for g in _grids(opts)],
        "max_iter": MAX_ITER,
        "opset": [OPSET, ML_OPSET],
        "orchestrator": orchestrator.__version__,
        "scikit-learn": metadata.version("scikit-learn"),
        "skl2onnx": metadata.version("skl2onnx"),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _grids(opts: TrainOptions) -> list[dict[str, list[Any]]]:
    return models.grids(opts.model, opts.strategy, opts.class_weight, opts.seed)


def _param_key(opts: TrainOptions) -> str:
    if opts.model == "logreg":
        return f"{models.STEP}__C" if opts.strategy == "multinomial" else f"{models.STEP}__estimator__C"
    return next(iter(_grids(opts)[0]))


def _describe(opts: TrainOptions) -> Any:
    key = _param_key(opts)
    short = "C" if opts.model == "logreg" else key.rsplit("__", 1)[-1]

    def describe(params: dict[str, Any]) -> dict[str, Any]:
        value = params[key]
        return {short: float(value) if isinstance(value, float) else value}

    return describe


def _framework() -> dict[str, str]:
    packages = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")
    return {
        "python": platform.python_version(),
        **{p: metadata.version(p) for p in packages},
        "orchestrator": orchestrator.__version__,
    }


def _manifest_fields(
    *,
    opts: TrainOptions,
    dataset: datasets.Dataset,
    split: datasets.Split,
    name: str,
    fitted: Any,
    metrics: dict[str, Any],
    exported: Exported,
) -> dict[str, Any]:
    split_fields: dict[str, Any] = {
        "dataset": dataset.name,
        "source": dataset.source,
        "dataset_sha256": dataset.sha256,
        "seed": opts.seed,
        "test_size": opts.test_size,
        "stratified": True,
        "n_train": len(split.train),
        "n_test": len(split.test),
    }
    if dataset.source == "builtin":
        # Rows of the dataset as sklearn ships it, so anyone can recompute the test metrics.
        split_fields["test_indices"] = split.test.tolist()
    return {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": content_version(opts, dataset),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "framework": _framework(),
        "features": {
            "names": dataset.feature_names,
            "count": len(dataset.feature_names),
            "layout": dataset.layout,
            "columns": [c.model_dump() for c in exported.columns],
        },
        "classes": dataset.classes,
        "split": split_fields,
        "training": {
            "model": opts.model,
            "chosen": models.model_name(fitted.steps[-1][1]),
            "strategy": opts.strategy,
            "class_weight": opts.class_weight,
            "estimator": models.estimator_text(fitted),
            "cv_folds": opts.cv_folds,
            "scoring": "f1_macro",
            "grid": _grid_record(opts),
            "best_params": metrics["cv"]["best_params"],
            "max_iter": MAX_ITER,
            "converged": models.converged(fitted),
        },
        "metrics": metrics,
        "export": exported.info,
        "canary": synthetic_canary(
            dataset.columns, dataset.y, split.train, dataset.classes, exported.model, exported.columns
        ),
        "reference_profile": reference_profile(
            dataset.columns,
            split.train,
            exported.probabilities,
            source="features: the training split; prediction and confidence: the test split",
            y_true=dataset.y[split.test],
        ),
    }


def _grid_record(opts: TrainOptions) -> dict[str, Any]:
    """The searched values in the manifest: ``{"C": [...]}`` for logistic regression (as before),
    per model for ``auto``."""
    if opts.model == "logreg":
        return {"C": list(C_GRID)}
    if opts.model == "random_forest":
        return {k: list(v) for k, v in models.FOREST_GRID.items()}
    if opts.model == "hist_gradient_boosting":
        return {k: list(v) for k, v in models.HIST_GRID.items()}
    return {
        "logreg": {"C": list(C_GRID)},
        "random_forest": {k: list(v) for k, v in models.FOREST_GRID.items()},
        "hist_gradient_boosting": {k: list(v) for k, v in models.HIST_GRID.items()},
    }
