"""The training pipeline: from a dataset to a verified, versioned artifact, or a refusal writing nothing.

This module owns the pipeline (standard scaling, then logistic regression, multinomial or
one-vs-rest), the hyperparameter search, the content-derived version and the assembly of the
manifest. Loading data, metrics, ONNX export, the canary, the metric gate and the report live in
their own modules; the artifact format in :mod:`orchestrator.core.artifact`.

Order matters: everything is computed in memory (fit, export, agreement check, metrics, gate), and
only a model that passed is staged in a temporary directory beside its destination and moved into
``out/<name>/<version>`` in one rename. Any error removes the staging directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

import orchestrator
from orchestrator.core.artifact.manifest import MODEL_FILE, Manifest
from orchestrator.core.artifact.write import write_artifact
from orchestrator.core.errors import ConfigError
from orchestrator.core.names import check_model_name, is_valid_name
from orchestrator.training import datasets, report
from orchestrator.training.canary import synthetic_canary
from orchestrator.training.evaluate import cv_summary, evaluate
from orchestrator.training.export import OPSET, Exported, export
from orchestrator.training.gate import check_gate

__all__ = ["C_GRID", "Strategy", "TrainOptions", "TrainResult", "artifact_name", "content_version", "train"]

Strategy = Literal["multinomial", "ovr"]
# Regularisation strengths searched: four decades either side of sklearn's default C=1 covers
# under- and over-fitting for standardised features, at five fits per fold (digits trains in ~1 s).
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
# lbfgs on standardised features converges in well under 1,000 iterations on the built-in
# datasets; a run that does not is recorded in the manifest (training.converged), not hidden.
MAX_ITER = 1000
_STEP = "classifier"


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

    def __post_init__(self) -> None:
        if self.strategy not in get_args(Strategy):
            raise ConfigError(f"strategy {self.strategy!r}: use one of {', '.join(get_args(Strategy))}")
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
    """Fit, evaluate, gate, export and write one artifact; raise an OrchestratorError otherwise."""
    dataset = datasets.load_dataset(opts.dataset, opts.target)
    name = artifact_name(opts, dataset)
    split = datasets.split(dataset, test_size=opts.test_size, seed=opts.seed, cv_folds=opts.cv_folds)
    X_test, y_test = dataset.X[split.test], dataset.y[split.test]

    search = _search(dataset.X[split.train], dataset.y[split.train], opts)
    exported = export(search.best_estimator_, X_test)
    # Metrics describe the model that is served: the ONNX outputs (whose labels equal sklearn's).
    metrics = evaluate(y_test, exported.labels, exported.probabilities, dataset.classes)
    metrics["cv"] = cv_summary(
        search.cv_results_, int(search.best_index_), _param_key(opts.strategy), opts.cv_folds
    )
    check_gate(metrics, opts.min_f1_macro)

    fields = _manifest_fields(
        opts=opts,
        dataset=dataset,
        split=split,
        name=name,
        pipeline=search.best_estimator_,
        metrics=metrics,
        exported=exported,
    )
    path, manifest = _write(opts.out, fields, exported, y_test, signing_key=opts.signing_key)
    return TrainResult(path=path, manifest=manifest, signed=opts.signing_key is not None)


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
        "classes": dataset.classes,
        "seed": opts.seed,
        "strategy": opts.strategy,
        "test_size": opts.test_size,
        "cv_folds": opts.cv_folds,
        "grid": {"C": list(C_GRID)},
        "max_iter": MAX_ITER,
        "opset": OPSET,
        "orchestrator": orchestrator.__version__,
        "scikit-learn": metadata.version("scikit-learn"),
        "skl2onnx": metadata.version("skl2onnx"),
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _param_key(strategy: Strategy) -> str:
    return f"{_STEP}__C" if strategy == "multinomial" else f"{_STEP}__estimator__C"


def _pipeline(strategy: Strategy) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # With more than two classes and the lbfgs solver, LogisticRegression fits the multinomial
    # (softmax) model; sklearn 1.8+ has no multi_class parameter, so one-vs-rest is the wrapper.
    logistic = LogisticRegression(max_iter=MAX_ITER)
    classifier = logistic if strategy == "multinomial" else OneVsRestClassifier(logistic)
    return Pipeline([("scale", StandardScaler()), (_STEP, classifier)])


def _search(X: NDArray[np.float64], y: NDArray[np.int64], opts: TrainOptions) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    search = GridSearchCV(
        _pipeline(opts.strategy),
        {_param_key(opts.strategy): list(C_GRID)},
        scoring="f1_macro",
        cv=StratifiedKFold(opts.cv_folds, shuffle=True, random_state=opts.seed),
        # One process: the search is small, and worker start-up would cost more than it saves.
        n_jobs=1,
        # A failing fit is a bug to surface, not a grid point to score as NaN.
        error_score="raise",
    )
    with warnings.catch_warnings():
        # Extreme grid points may stop at max_iter; their CV score already reflects it, and the
        # chosen model's convergence is recorded in the manifest instead of warned about per fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    return search


def _converged(pipeline: Any) -> bool:
    classifier = pipeline.steps[-1][1]
    estimators = getattr(classifier, "estimators_", [classifier])
    return all(int(np.max(e.n_iter_)) < MAX_ITER for e in estimators)


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
    pipeline: Any,
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
    estimator = (
        "LogisticRegression" if opts.strategy == "multinomial" else "OneVsRestClassifier(LogisticRegression)"
    )
    return {
        "name": name,
        "version": content_version(opts, dataset),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "framework": _framework(),
        "features": {"names": dataset.feature_names, "count": len(dataset.feature_names)},
        "classes": dataset.classes,
        "split": split_fields,
        "training": {
            "strategy": opts.strategy,
            "estimator": f"StandardScaler + {estimator}",
            "cv_folds": opts.cv_folds,
            "scoring": "f1_macro",
            "grid": {"C": list(C_GRID)},
            "best_params": metrics["cv"]["best_params"],
            "max_iter": MAX_ITER,
            "converged": _converged(pipeline),
        },
        "metrics": metrics,
        "export": exported.info,
        "canary": synthetic_canary(dataset, split.train, exported.model),
    }


def _write(
    out: Path,
    fields: dict[str, Any],
    exported: Exported,
    y_test: NDArray[np.int64],
    *,
    signing_key: Path | None = None,
) -> tuple[Path, Manifest]:
    created = _make_dirs(out)
    # Staged inside `out` so the final move is a rename on one filesystem; the dot keeps it out
    # of listings of artifact names.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        # mkdtemp makes the directory private (0700); the artifact is meant to be read by others
        # (a serving user, a sync job), like any directory mkdir would create.
        staging.chmod(0o755)
        (staging / MODEL_FILE).write_bytes(exported.model)
        report.write_report(staging, fields, y_test, exported.probabilities)
        sign = None
        if signing_key is not None:
            from orchestrator.core.artifact.signing import sign_artifact

            key = signing_key

            def sign(root: Path) -> None:
                sign_artifact(root, key)

        return write_artifact(staging, fields, out, sign=sign)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in created:
            _remove_if_empty(directory)
        raise


def _make_dirs(path: Path) -> list[Path]:
    """mkdir -p, returning the directories it created, deepest first (for cleanup on failure)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_if_empty(directory: Path) -> None:
    # Not empty means something else wrote there meanwhile: leave it.
    with contextlib.suppress(OSError):
        directory.rmdir()
