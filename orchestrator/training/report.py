"""The human report in an artifact: ``report.md`` with the metrics, and its two PNG plots.

Rendering the Markdown is pure (:func:`render_markdown`); the plots use matplotlib's Agg canvas
directly, never pyplot, so no global backend or figure registry is touched. Nothing in the report
depends on the clock, so the same training writes the same report bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["CONFUSION_PNG", "REPORT_MD", "ROC_PNG", "render_markdown", "write_report"]

REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc_ovr.png"
# Above this many classes the per-cell counts in the confusion matrix become unreadable.
_MAX_ANNOTATED_CLASSES = 20
_DPI = 100
_LINE_STYLES = ("-", "--", "-.", ":")

_SUMMARY_METRICS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("precision_macro", "Precision (macro)"),
    ("recall_macro", "Recall (macro)"),
    ("f1_macro", "F1 (macro)"),
    ("precision_weighted", "Precision (weighted)"),
    ("recall_weighted", "Recall (weighted)"),
    ("f1_weighted", "F1 (weighted)"),
    ("roc_auc_ovr_macro", "ROC AUC (one-vs-rest, macro)"),
    ("cohen_kappa", "Cohen's kappa"),
)


def write_report(
    directory: Path,
    manifest_fields: Mapping[str, Any],
    y_true: NDArray[np.int64],
    y_proba: NDArray[np.float64],
) -> None:
    """Write report.md and its plots into ``directory`` for a manifest-to-be and its test outputs."""
    classes: list[str] = list(manifest_fields["classes"])
    metrics = manifest_fields["metrics"]
    (directory / REPORT_MD).write_text(render_markdown(manifest_fields), encoding="utf-8")
    _plot_confusion(directory / CONFUSION_PNG, metrics["confusion_matrix"]["matrix"], classes)
    _plot_roc(directory / ROC_PNG, y_true, y_proba, classes)


def render_markdown(manifest_fields: Mapping[str, Any]) -> str:
    """report.md for a manifest-to-be: the data, the model, the test-set metrics, per class, the
    cross-validated search (train) or the packaging check (package), and the plots."""
    m = manifest_fields
    metrics, split, training = m["metrics"], m["split"], m["training"]
    cv = metrics.get("cv")
    lines = [f"# {m['name']} {m['version']}", ""]
    if cv is not None:
        weights = " with balanced class weights" if training.get("class_weight") == "balanced" else ""
        lines += [
            f"Dataset `{split['dataset']}`: {m['features']['count']} features, {len(m['classes'])} classes; "
            f"{split['n_train']} training rows, {split['n_test']} test rows "
            f"(stratified, seed {split['seed']}).",
            f"Model: {training['estimator']}{weights}, {_params(cv['best_params'])} chosen by "
            f"{cv['folds']}-fold stratified cross-validation on macro F1.",
        ]
    else:
        lines += [
            f"Packaged model: {training['estimator']} ({training['source_format']}), "
            f"{m['features']['count']} features, {len(m['classes'])} classes.",
            f"Evaluated on `{split['dataset']}`: {split['n_test']} rows, labels in column "
            f"`{split['target']}`.",
        ]
    lines += [
        "",
        "## Test-set metrics",
        "",
        "| Metric | Value |",
        "|---|---:|",
        *(f"| {label} | {_num(metrics[key])} |" for key, label in _SUMMARY_METRICS),
        "",
        "## Per class",
        "",
        "| Class | Precision | Recall | F1 | Support |",
        "|---|---:|---:|---:|---:|",
        *(_per_class_row(name, row) for name, row in metrics["per_class"].items()),
        "",
    ]
    if cv is not None:
        keys = [k for k in cv["grid"][0] if k not in ("mean", "std")]
        lines += [
            "## Cross-validation (macro F1)",
            "",
            f"Best: {_num(cv['f1_macro_mean'])} ± {_num(cv['f1_macro_std'])} "
            f"at {_params(cv['best_params'])}.",
            "",
            "| " + " | ".join([*keys, "Mean", "Std"]) + " |",
            "|" + "---:|" * (len(keys) + 2),
            *(
                "| "
                + " | ".join([*(_value(row.get(k)) for k in keys), _num(row["mean"]), _num(row["std"])])
                + " |"
                for row in cv["grid"]
            ),
            "",
        ]
    lines += [
        "## Plots",
        "",
        f"![Confusion matrix]({CONFUSION_PNG})",
        "",
        f"![One-vs-rest ROC curves]({ROC_PNG})",
        "",
    ]
    return "\n".join(lines)


def _value(value: object) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {_value(v)}" for k, v in params.items())


def _per_class_row(name: str, row: Mapping[str, Any]) -> str:
    scores = " | ".join(_num(row[k]) for k in ("precision", "recall", "f1"))
    # A pipe in a class name would split the Markdown table cell.
    cell = name.replace("|", r"\|")
    return f"| {cell} | {scores} | {row['support']} |"


def _num(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 10 else f"{value:.4f}"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plot_confusion(path: Path, matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> None:
    counts = np.asarray(matrix)
    size = max(4.0, 0.5 * len(classes) + 2.5)
    fig = _figure(size + 1, size)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(classes))
    ax.set_xticks(ticks, labels=classes, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=classes)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title("Confusion matrix (test set)")
    if len(classes) <= _MAX_ANNOTATED_CLASSES:
        # Dark text on light cells, light on dark, so every count stays legible.
        threshold = counts.max() / 2
        for (row, col), n in np.ndenumerate(counts):
            ax.text(col, row, str(n), ha="center", va="center", color="white" if n > threshold else "black")
    fig.savefig(path)


def _plot_roc(
    path: Path, y_true: NDArray[np.int64], y_proba: NDArray[np.float64], classes: Sequence[str]
) -> None:
    from sklearn.metrics import auc, roc_curve

    fig = _figure(6, 5)
    ax = fig.add_subplot()
    for index, name in enumerate(classes):
        fpr, tpr, _ = roc_curve(y_true == index, y_proba[:, index])
        # The default colour cycle has ten colours; the line style tells classes 11+ apart.
        style = _LINE_STYLES[index // 10 % len(_LINE_STYLES)]
        ax.plot(fpr, tpr, linestyle=style, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title("One-vs-rest ROC (test set)")
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path)
