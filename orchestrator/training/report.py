"""The human report in an artifact: ``report.md`` with the metrics, and its PNG plots.

One Markdown file readable on GitHub: the headline metrics beside the majority-class baseline and
their 95 % bootstrap intervals, calibration, per class scores with average precision, the
cross-validated search, the champion–challenger comparison, interpretation, and the plots
(:mod:`.plots`). Rendering the Markdown is pure (:func:`render_markdown`). Nothing in the report
depends on the clock, so the same training writes the same report bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "COEFFICIENTS_PNG",
    "CONFUSION_PNG",
    "IMPORTANCE_PNG",
    "PARTIAL_DEPENDENCE_PNG",
    "PR_PNG",
    "RELIABILITY_PNG",
    "REPORT_MD",
    "ROC_PNG",
    "render_markdown",
    "write_report",
]

REPORT_MD = "report.md"
CONFUSION_PNG = "confusion_matrix.png"
ROC_PNG = "roc_ovr.png"
PR_PNG = "precision_recall.png"
RELIABILITY_PNG = "reliability.png"
IMPORTANCE_PNG = "permutation_importance.png"
COEFFICIENTS_PNG = "coefficients.png"
PARTIAL_DEPENDENCE_PNG = "partial_dependence.png"
# Rows of the importance table in the report (the manifest keeps every column).
_IMPORTANCE_ROWS = 15

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
    from orchestrator.training import plots

    classes: list[str] = list(manifest_fields["classes"])
    metrics = manifest_fields["metrics"]
    (directory / REPORT_MD).write_text(render_markdown(manifest_fields), encoding="utf-8")
    confusion = metrics["confusion_matrix"]
    plots.plot_confusion(directory / CONFUSION_PNG, confusion["matrix"], confusion["normalized"], classes)
    plots.plot_roc(directory / ROC_PNG, y_true, y_proba, classes)
    plots.plot_pr(directory / PR_PNG, y_true, y_proba, classes, metrics["average_precision"]["per_class"])
    plots.plot_reliability(directory / RELIABILITY_PNG, metrics["calibration"], classes)
    explained = manifest_fields.get("interpretation")
    if explained:
        plots.plot_importance(directory / IMPORTANCE_PNG, explained["permutation_importance"])
        if explained.get("coefficients"):
            plots.plot_coefficients(directory / COEFFICIENTS_PNG, explained["coefficients"])
        if explained.get("partial_dependence"):
            plots.plot_partial_dependence(directory / PARTIAL_DEPENDENCE_PNG, explained["partial_dependence"])


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
    lines += ["", *_metrics_section(metrics, m["classes"])]
    lines += [
        "## Per class",
        "",
        "| Class | Precision | Recall | F1 | Average precision | Support |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            _per_class_row(name, row, metrics["average_precision"]["per_class"][name])
            for name, row in metrics["per_class"].items()
        ),
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
    if m.get("gate"):
        lines += _gate_section(m["gate"])
    lines += [
        "## Plots",
        "",
        f"![Confusion matrix: counts and row-normalised]({CONFUSION_PNG})",
        "",
        f"![One-vs-rest ROC curves]({ROC_PNG})",
        "",
        f"![One-vs-rest precision-recall curves]({PR_PNG})",
        "",
        f"![Reliability diagram per class]({RELIABILITY_PNG})",
        "",
    ]
    if m.get("interpretation"):
        lines += _interpretation_section(m["interpretation"])
    return "\n".join(lines)


def _value(value: object) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} = {_value(v)}" for k, v in params.items())


def _per_class_row(name: str, row: Mapping[str, Any], average_precision: float) -> str:
    scores = " | ".join([*(_num(row[k]) for k in ("precision", "recall", "f1")), _num(average_precision)])
    # A pipe in a class name would split the Markdown table cell.
    cell = name.replace("|", r"\|")
    return f"| {cell} | {scores} | {row['support']} |"


def _num(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 10 else f"{value:.4f}"


def _cell(text: object) -> str:
    # A pipe in a name would split the Markdown table cell.
    return str(text).replace("|", r"\|")


def _metrics_section(metrics: Mapping[str, Any], classes: Sequence[str]) -> list[str]:
    baseline, intervals, calibration = metrics["baseline"], metrics["intervals"], metrics["calibration"]
    level = f"{intervals['confidence']:.0%}"

    def interval(key: str) -> str:
        limits = intervals.get(key)
        if not limits:
            return ""
        if limits["low"] is None or limits["high"] is None:
            return "n/a"
        return f"{_num(limits['low'])} – {_num(limits['high'])}"

    def base(key: str) -> str:
        return _num(baseline[key]) if key in baseline else ""

    rows = [
        f"| {label} | {_num(metrics[key])} | {interval(key)} | {base(key)} |"
        for key, label in _SUMMARY_METRICS
    ]
    rows += [
        f"| Log loss (lower is better) | {_num(metrics['log_loss'])} | | {base('log_loss')} |",
        f"| Brier score (multiclass, 0 to 2, lower is better) | {_num(metrics['brier_score'])} | | "
        f"{base('brier_score')} |",
        f"| Expected calibration error | {_num(calibration['ece'])} | | |",
        f"| Average precision (macro) | {_num(metrics['average_precision']['macro'])} | | |",
    ]
    predicted = classes[baseline["predicts"]]
    return [
        "## Test-set metrics",
        "",
        f"| Metric | Value | {level} interval | Majority-class baseline |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"Intervals: percentile bootstrap over the test rows, {intervals['n_resamples']} resamples, "
        f"seed {intervals['seed']} (Efron & Tibshirani 1993). Baseline: always `{_cell(predicted)}`, the "
        f"most frequent class of {baseline['fitted_on']}, with the class frequencies as probabilities. "
        f"Calibration error: top-label confidence in {calibration['bins']} equal-width bins "
        "(Guo et al. 2017).",
        "",
    ]


def _gate_section(gate: Mapping[str, Any]) -> list[str]:
    against, delta, test = gate["against"], gate["delta_f1_macro"], gate["mcnemar"]
    lines = [
        "## Champion–challenger gate",
        "",
        f"Against `{against['name']} {against['version']}` ({_cell(against['source'])}), on "
        f"{gate['rows']['n']} rows of {gate['rows']['what']}: **{gate['decision']}**.",
        "",
        "| | This model | Champion |",
        "|---|---:|---:|",
        f"| F1 (macro) | {_num(gate['challenger']['f1_macro'])} | {_num(gate['champion']['f1_macro'])} |",
        f"| Accuracy | {_num(gate['challenger']['accuracy'])} | {_num(gate['champion']['accuracy'])} |",
        "",
        f"Difference in macro F1: {delta['estimate']:+.4f}, {delta['confidence']:.0%} interval "
        f"{delta['ci_low']:+.4f} to {delta['ci_high']:+.4f} (paired bootstrap, {delta['n_resamples']} "
        f"resamples, seed {delta['seed']}). McNemar's exact test: {test['champion_only_correct']} rows "
        f"only the champion gets right, {test['challenger_only_correct']} only this model, "
        f"p = {test['pvalue']:.3g}.",
        f"Rule: {gate['rule']}.",
        "",
    ]
    if gate.get("allow_worse"):
        lines += [f"Written with `--allow-worse`: {_cell(gate['allow_worse'])}", ""]
    return lines


def _interpretation_section(explained: Mapping[str, Any]) -> list[str]:
    importance = explained["permutation_importance"]
    items = list(importance["importances"].items())[:_IMPORTANCE_ROWS]
    lines = [
        "## Interpretation",
        "",
        f"Permutation importance on the test set: the drop in macro F1 when a column is shuffled "
        f"({importance['n_repeats']} shuffles per column, seed {importance['seed']}).",
        "",
        "| Column | Mean drop | Std |",
        "|---|---:|---:|",
        *(f"| {_cell(name)} | {_num(v['mean'])} | {_num(v['std'])} |" for name, v in items),
        "",
        f"![Permutation importance]({IMPORTANCE_PNG})",
        "",
    ]
    if explained.get("coefficients"):
        lines += [
            "Logistic regression coefficients per class, on standardised inputs (log-odds per standard "
            "deviation; one-hot categories and missing-value indicators per unit):",
            "",
            f"![Coefficients per class]({COEFFICIENTS_PNG})",
            "",
        ]
    if explained.get("partial_dependence"):
        names = ", ".join(f"`{_cell(n)}`" for n in explained["partial_dependence"]["features"])
        lines += [
            f"Partial dependence of the most important columns ({names}): each class's mean predicted "
            "probability with the column set to each grid value.",
            "",
            f"![Partial dependence]({PARTIAL_DEPENDENCE_PNG})",
            "",
        ]
    return lines
