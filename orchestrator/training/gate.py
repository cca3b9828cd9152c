"""The gates a model passes before it is written: the metric gate and the champion–challenger gate.

**Metric gate** (``--min-f1-macro``): a test-set macro F1 below the threshold is refused.

**Champion–challenger gate** (``--against URI``): the new model (the challenger) and the model the
URI names (the champion, verified as the endpoint verifies it: :mod:`.champion`) are scored on the
same labelled rows: the challenger's test split, or the ``--eval`` table when the champion takes
columns the challenger's data does not have. When the champion was trained on the same table, only
the test rows neither model trained on are used (:func:`champion_held_out`): a champion scored on
rows it was fitted on looks better than it is, and would refuse a model as good as itself.
:mod:`.compare` gives the paired bootstrap interval of the macro F1 difference and McNemar's
exact test. The rule: the challenger is **significantly worse**, and refused, when

- the upper limit of the 95 % interval of ΔF1 = F1(challenger) − F1(champion) is below 0, or
- McNemar's exact two-sided p is below :data:`ALPHA` and the champion alone is right on more rows
  than the challenger alone (``b > c``).

A refusal writes nothing (:class:`ChallengerRefused`, exit code 5), unless ``--allow-worse REASON``
is given: the model is then written, and the reason recorded in the manifest's ``gate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from orchestrator.core.errors import ConfigError, OrchestratorError
from orchestrator.training.compare import macro_f1, mcnemar_exact, paired_delta_f1
from orchestrator.training.tables import DatasetError, TypedColumn

if TYPE_CHECKING:
    from orchestrator.training.champion import Champion

__all__ = [
    "ALPHA",
    "ChallengerRefused",
    "GateError",
    "GateRows",
    "challenger_gate",
    "champion_for",
    "champion_held_out",
    "check_classes",
    "check_gate",
    "check_gate_options",
    "eval_rows",
]

# McNemar's significance level: the conventional 5 %, matching the 95 % interval beside it.
ALPHA = 0.05
RULE = (
    "refused when the upper limit of the 95 % paired bootstrap interval of macro-F1 difference "
    f"(challenger - champion) is below 0, or McNemar's exact p < {ALPHA} with more rows only the "
    "champion gets right"
)


class GateError(OrchestratorError):
    """A model scored below the configured metric gate; nothing was written."""

    def __init__(self, metric: str, value: float, threshold: float) -> None:
        self.metric, self.value, self.threshold = metric, value, threshold
        super().__init__(
            f"metric gate failed: {metric} = {value:.4f} is below the threshold {threshold:.4f}; "
            "no artifact was written"
        )


class ChallengerRefused(OrchestratorError):
    """The new model is significantly worse than the champion (see the module's rule); nothing
    was written. ``record`` is the comparison, as the manifest would have held it."""

    # Apart from 1 (any failure) so that a pipeline can tell "worse than production" from a crash.
    exit_code = 5

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        self.record = record
        super().__init__(message)


def check_gate_options(against: str | None, eval_table: Path | None, allow_worse: str | None) -> None:
    """ConfigError for ``--eval`` or ``--allow-worse`` without ``--against``, an empty reason, or an
    ``--eval`` table that is not a file."""
    if against is None and eval_table is not None:
        raise ConfigError("--eval: only with --against (the table both models are scored on)")
    if against is None and allow_worse is not None:
        raise ConfigError("--allow-worse: only with --against (it overrides the champion-challenger gate)")
    if allow_worse is not None and not allow_worse.strip():
        raise ConfigError("--allow-worse: give the reason (it is recorded in the manifest)")
    if eval_table is not None and not eval_table.is_file():
        raise ConfigError(f"--eval {eval_table}: file not found")


def champion_for(against: str | None, public_key: str | None) -> Champion | None:
    """The verified champion ``against`` names (None without one); a remote one is downloaded to
    a temporary directory, removed once its model is in memory. With ``public_key`` (PEM text or a
    path) its signature must verify (SignatureError otherwise)."""
    if against is None:
        return None
    import tempfile

    from orchestrator.core.artifact.signing import SignatureVerifier, load_public_key
    from orchestrator.training.champion import load_champion

    verifier = None
    if public_key:
        key = load_public_key(public_key, where="--signing-public-key (MODEL_SIGNING_PUBLIC_KEY)")
        verifier = SignatureVerifier(key)
    with tempfile.TemporaryDirectory(prefix="champion-") as workdir:
        return load_champion(against, Path(workdir), verifier=verifier)


def check_gate(metrics: dict[str, Any], threshold: float | None) -> None:
    """GateError if the test-set macro F1 (``metrics["f1_macro"]``, in [0, 1]) is below
    ``threshold``; no gate when ``threshold`` is None."""
    if threshold is not None and metrics["f1_macro"] < threshold:
        raise GateError("f1_macro", metrics["f1_macro"], threshold)


@dataclass(frozen=True, eq=False)
class GateRows:
    """The labelled rows both models are scored on: their columns by name, the true class indices
    (into the challenger's classes) and the challenger's predicted indices; ``what`` names them."""

    what: str
    by_name: Mapping[str, TypedColumn]
    y_true: NDArray[np.int64]
    challenger: NDArray[np.int64]


def eval_rows(
    path: Path,
    target: str | None,
    categorical: Sequence[str],
    classes: Sequence[str],
    predict: Any,
) -> GateRows:
    """The ``--eval`` table as gate rows: its labels mapped to ``classes`` (DatasetError naming a
    label that is not one), the challenger's predictions from ``predict(by_name)``."""
    from orchestrator.training.datasets import load_dataset

    if not path.is_file():
        raise ConfigError(f"--eval {path}: file not found")
    table = load_dataset(str(path), target, categorical)
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(table.classes) - set(index))
    if unknown:
        raise DatasetError(
            f"--eval {path}: label {unknown[0]!r} is not a class of the model ({len(classes)} classes)"
        )
    y_true = np.array([index[table.classes[i]] for i in table.y], dtype=np.int64)
    by_name = {c.name: c for c in table.columns}
    challenger = np.asarray(predict(by_name), dtype=np.int64)
    return GateRows(what=f"--eval {path.name}", by_name=by_name, y_true=y_true, challenger=challenger)


def challenger_gate(
    champion: Champion,
    rows: GateRows,
    classes: Sequence[str],
    *,
    seed: int,
    allow_worse: str | None = None,
) -> dict[str, Any]:
    """Compare the challenger with ``champion`` on ``rows`` and apply the rule; the manifest's
    ``gate`` record: ``{against, rows, rule, champion, challenger, delta_f1_macro, mcnemar,
    significantly_worse, decision, allow_worse}``. ChallengerRefused when it is significantly worse
    and ``allow_worse`` is None; ConfigError when the champion's classes are not the challenger's."""
    manifest = champion.manifest
    check_classes(champion, classes)
    champion_index, _ = champion.predict(rows.by_name)
    to_ours = np.array([list(classes).index(c) for c in manifest.classes], dtype=np.int64)
    champion_pred = to_ours[champion_index]
    k = len(classes)
    delta = paired_delta_f1(rows.y_true, champion_pred, rows.challenger, k, seed=seed)
    test = mcnemar_exact(rows.y_true, champion_pred, rows.challenger)
    worse_interval = delta["ci_high"] < 0
    worse_mcnemar = test["pvalue"] < ALPHA and test["champion_only_correct"] > test["challenger_only_correct"]
    worse = bool(worse_interval or worse_mcnemar)
    record: dict[str, Any] = {
        "against": {
            "uri": champion.uri,
            "source": champion.source,
            "name": manifest.name,
            "version": manifest.version,
            "manifest_sha256": champion.manifest_sha256,
        },
        "rows": {"what": rows.what, "n": len(rows.y_true)},
        "rule": RULE,
        "alpha": ALPHA,
        "champion": _scores(rows.y_true, champion_pred, k),
        "challenger": _scores(rows.y_true, rows.challenger, k),
        "delta_f1_macro": delta,
        "mcnemar": test,
        "significantly_worse": worse,
        "decision": "accepted" if not worse else "allowed-worse",
        "allow_worse": allow_worse,
    }
    if worse and allow_worse is None:
        raise ChallengerRefused(_refusal(record), record)
    return record


def champion_held_out(champion: Champion, dataset: Any) -> NDArray[np.intp] | None:
    """The rows of ``dataset`` the champion did not train on (sorted row indices), or None when
    that is not known.

    Known when the champion was made by ``train`` on the same table (its manifest's
    ``split.dataset_sha256`` equals ``dataset.sha256``): its test split is read from
    ``split.test_indices`` or drawn again from its recorded seed, test fraction and folds (the split
    is deterministic: :func:`orchestrator.training.datasets.split`). Not known for a packaged
    champion (trained elsewhere, on rows nobody recorded) or one trained on another table."""
    from orchestrator.training import datasets

    recorded = champion.manifest.split or {}
    if recorded.get("dataset_sha256") != getattr(dataset, "sha256", None):
        return None
    if isinstance(recorded.get("test_indices"), list):
        return np.unique(np.asarray(recorded["test_indices"], dtype=np.intp))
    training = champion.manifest.training or {}
    try:
        split = datasets.split(
            dataset,
            test_size=float(recorded["test_size"]),
            seed=int(recorded["seed"]),
            cv_folds=int(training.get("cv_folds", 5)),
        )
    except (KeyError, TypeError, ValueError, DatasetError):
        return None
    return split.test


def check_classes(champion: Champion, classes: Sequence[str]) -> None:
    """ConfigError unless the champion has exactly these classes (in any order)."""
    theirs = champion.manifest.classes
    if sorted(theirs) != sorted(classes):
        raise ConfigError(
            f"--against {champion.uri}: the champion's classes ({_few(theirs)}) are not the new "
            f"model's ({_few(classes)}); the two cannot be compared"
        )


def _scores(y_true: NDArray[np.int64], pred: NDArray[np.int64], k: int) -> dict[str, float]:
    return {"f1_macro": float(macro_f1(y_true, pred, k)), "accuracy": float(np.mean(y_true == pred))}


def _few(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _refusal(record: Mapping[str, Any]) -> str:
    against, delta, test = record["against"], record["delta_f1_macro"], record["mcnemar"]
    rows = record["rows"]
    return (
        f"champion-challenger gate: the new model is significantly worse than {against['name']} "
        f"{against['version']} ({against['source']}) on {rows['n']} rows of {rows['what']}: "
        f"macro F1 {record['challenger']['f1_macro']:.4f} vs {record['champion']['f1_macro']:.4f}, "
        f"difference {delta['estimate']:+.4f} (95 % CI {delta['ci_low']:+.4f} to {delta['ci_high']:+.4f}), "
        f"McNemar exact p = {test['pvalue']:.3g} ({test['champion_only_correct']} rows only the champion "
        f"gets right, {test['challenger_only_correct']} only the new model); no artifact was written "
        "(--allow-worse REASON writes it anyway)"
    )
