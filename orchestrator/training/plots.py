"""The report's PNG plots, drawn with matplotlib's Agg canvas directly (never pyplot, so no global
backend or figure registry is touched). Each function takes numbers (the manifest's, or the test
set's probabilities) and writes one file; nothing depends on the clock, so the bytes repeat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_PANELS",
    "plot_coefficients",
    "plot_confusion",
    "plot_importance",
    "plot_partial_dependence",
    "plot_pr",
    "plot_reliability",
    "plot_roc",
]

# Above this many classes the per-cell counts in the confusion matrix become unreadable.
_MAX_ANNOTATED_CLASSES = 20
# Reliability panels drawn (one per class): beyond 20 the figure is unreadable; the manifest keeps
# every class's numbers.
MAX_PANELS = 20
# Bars in the importance plot and columns in the coefficient heat map.
_MAX_BARS = 15
_DPI = 100
_LINE_STYLES = ("-", "--", "-.", ":")


def _figure(width: float, height: float, *, constrained: bool = True) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The constrained layout solver fits labels and colour bars, at about twice the drawing time of
    # a figure of many small panels; those (reliability) set their margins by hand instead.
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _style(index: int) -> str:
    # The default colour cycle has ten colours; the line style tells classes 11+ apart.
    return _LINE_STYLES[index // 10 % len(_LINE_STYLES)]


def _matrix(fig: Any, ax: Any, values: NDArray[Any], classes: Sequence[str], title: str, fmt: str) -> None:
    image = ax.imshow(values, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = range(len(classes))
    ax.set_xticks(ticks, labels=classes, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=classes)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    if len(classes) <= _MAX_ANNOTATED_CLASSES:
        # Dark text on light cells, light on dark, so every value stays legible.
        threshold = values.max() / 2
        for (row, col), n in np.ndenumerate(values):
            colour = "white" if n > threshold else "black"
            ax.text(col, row, format(n, fmt), ha="center", va="center", color=colour, fontsize="small")


def plot_confusion(
    path: Path, matrix: Sequence[Sequence[int]], normalized: Sequence[Sequence[float]], classes: Sequence[str]
) -> None:
    """The confusion matrix of counts beside the row-normalised one (each true class sums to 1)."""
    size = max(4.0, 0.5 * len(classes) + 2.5)
    fig = _figure(2 * size + 1.5, size)
    first, second = fig.subplots(1, 2)
    _matrix(fig, first, np.asarray(matrix), classes, "Confusion matrix: counts (test set)", "d")
    _matrix(fig, second, np.asarray(normalized), classes, "Row-normalised (recall on the diagonal)", ".2f")
    fig.savefig(path)


def plot_roc(
    path: Path, y_true: NDArray[np.int64], y_proba: NDArray[np.float64], classes: Sequence[str]
) -> None:
    """One-vs-rest ROC curve per class, with its AUC."""
    from sklearn.metrics import auc, roc_curve

    fig = _figure(6, 5)
    ax = fig.add_subplot()
    for index, name in enumerate(classes):
        fpr, tpr, _ = roc_curve(y_true == index, y_proba[:, index])
        ax.plot(fpr, tpr, linestyle=_style(index), label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_title("One-vs-rest ROC (test set)")
    ax.legend(loc="lower right", fontsize="small")
    fig.savefig(path)


def plot_pr(
    path: Path,
    y_true: NDArray[np.int64],
    y_proba: NDArray[np.float64],
    classes: Sequence[str],
    average_precision: Mapping[str, float],
) -> None:
    """One-vs-rest precision-recall curve per class, with its average precision and prevalence."""
    from sklearn.metrics import precision_recall_curve

    fig = _figure(6, 5)
    ax = fig.add_subplot()
    for index, name in enumerate(classes):
        precision, recall, _ = precision_recall_curve(y_true == index, y_proba[:, index])
        ax.step(
            recall,
            precision,
            where="post",
            linestyle=_style(index),
            label=f"{name} (AP {average_precision[name]:.3f})",
        )
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.05)
    ax.set_title("One-vs-rest precision-recall (test set)")
    ax.legend(loc="lower left", fontsize="small")
    fig.savefig(path)


def plot_reliability(path: Path, calibration: Mapping[str, Any], classes: Sequence[str]) -> None:
    """A reliability diagram per class (at most :data:`MAX_PANELS`): mean predicted probability
    against the observed fraction of the class, per non-empty bin, the diagonal being perfect."""
    shown = list(classes)[:MAX_PANELS]
    columns = min(5, len(shown))
    rows = -(-len(shown) // columns)
    width, height = 2.4 * columns + 0.9, 2.4 * rows + 0.8
    fig = _figure(width, height, constrained=False)
    fig.subplots_adjust(
        left=0.9 / width, right=0.98, bottom=0.55 / height, top=1 - 0.5 / height, wspace=0.15, hspace=0.3
    )
    axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)).ravel()
    for ax, name in zip(axes, shown, strict=False):
        curve = calibration["per_class"][name]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.plot(curve["mean_predicted"], curve["fraction_positive"], marker="o", markersize=3)
        ax.set_title(str(name), fontsize="small")
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    fig.supxlabel("Mean predicted probability")
    fig.supylabel("Fraction of the class")
    fig.suptitle(
        f"Reliability per class ({calibration['bins']} equal-width bins); ECE {calibration['ece']:.4f}"
    )
    fig.savefig(path)


def plot_importance(path: Path, importance: Mapping[str, Any]) -> None:
    """The :data:`_MAX_BARS` largest permutation importances, mean ± std over the repeats."""
    items = list(importance["importances"].items())[:_MAX_BARS]
    fig = _figure(6, 0.3 * len(items) + 1.5)
    ax = fig.add_subplot()
    names = [str(n) for n, _ in items][::-1]
    ax.barh(
        names, [v["mean"] for _, v in items][::-1], xerr=[v["std"] for _, v in items][::-1], color="tab:blue"
    )
    ax.set_xlabel(f"Drop in macro F1 when shuffled (mean ± std of {importance['n_repeats']})")
    ax.set_title("Permutation importance (test set)")
    fig.savefig(path)


def plot_coefficients(path: Path, coefficients: Mapping[str, Any]) -> None:
    """Heat map of the coefficients per class for the inputs largest in magnitude across classes."""
    per_class = coefficients["per_class"]
    weight: dict[str, float] = {}
    for row in per_class.values():
        for name, value in row["coefficients"].items():
            weight[name] = max(weight.get(name, 0.0), abs(value))
    inputs = sorted(weight, key=lambda n: -weight[n])[:_MAX_BARS]
    values = np.array([[row["coefficients"].get(n, np.nan) for n in inputs] for row in per_class.values()])
    fig = _figure(0.45 * len(inputs) + 3, 0.35 * len(per_class) + 2.5)
    ax = fig.add_subplot()
    limit = float(np.nanmax(np.abs(values))) or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    fig.colorbar(image, ax=ax, label="coefficient (log-odds per unit of input)")
    ax.set_xticks(range(len(inputs)), labels=inputs, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(range(len(per_class)), labels=list(per_class))
    ax.set_title("Logistic regression coefficients per class (blank: not in the class's top)")
    fig.savefig(path)


def plot_partial_dependence(path: Path, partial: Mapping[str, Any]) -> None:
    """One panel per feature: each class's mean predicted probability over the feature's grid."""
    features = partial["features"]
    fig = _figure(4.2 * len(features), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(features), squeeze=False)).ravel()
    for ax, (name, curve) in zip(axes, features.items(), strict=True):
        grid = curve["grid"]
        x = range(len(grid)) if curve["kind"] == "categorical" else grid
        for index, (label, values) in enumerate(curve["per_class"].items()):
            ax.plot(x, values, linestyle=_style(index), label=str(label))
        if curve["kind"] == "categorical":
            ax.set_xticks(range(len(grid)), labels=grid, rotation=45, ha="right")
        ax.set_xlabel(str(name))
    axes[0].set_ylabel("Mean predicted probability")
    axes[-1].legend(fontsize="x-small", loc="best")
    fig.suptitle("Partial dependence of the most important features (test set)")
    fig.savefig(path)
