"""``orchestrator drift report``: every cloud's drift now, as Markdown and PNG.

Each endpoint's ``GET /v1/model/drift`` is read once, all at once, within the health probes'
deadline and body cap and with their access (public name, token): :func:`collect`. The answers are
judged against the ``drift:`` configuration and compared across clouds exactly as a health round
does (:mod:`orchestrator.control.health.drift`). :func:`write_report` writes into ``out``:

- ``drift.md``: per cloud the status, the window, the label-free accuracy estimate, the mean
  confidence against the reference, the cross-cloud comparison, and a table of every feature's PSI
  and Jensen-Shannon distance (largest PSI first), with the warning and alarm levels;
- ``<cloud>.png``: that cloud's PSI per feature (the 30 largest), the two levels drawn;
- ``predictions.png``: each cloud's predicted-class shares beside the reference's.

Exit codes (:func:`exit_code`): 0 every cloud with data is ``ok`` (or has too few rows to judge),
1 a cloud is in ``warn`` or ``alarm`` or flagged by the cross-cloud comparison, 2 no cloud answered
with drift data (and the usual 2 for a configuration error).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.control.config import Config
from orchestrator.control.health.drift import DriftReading, cross_cloud, judge, read_drift_many

__all__ = ["CloudDrift", "collect", "exit_code", "write_report"]

# Features drawn per cloud's plot: the largest PSI first; the table lists them all.
MAX_PLOTTED = 30


@dataclass(frozen=True)
class CloudDrift:
    """One cloud's reading (None when it gave none) and its judged summary."""

    cloud: str
    reading: DriftReading | None
    summary: dict[str, Any]


def collect(config: Config) -> list[CloudDrift]:
    """Read every cloud's drift answer at once (each within ``health.timeout_s``) and judge it."""
    from orchestrator.control.health.access import ProbeAccess

    endpoints = config.endpoints()
    access = ProbeAccess(config)

    async def read() -> dict[str, tuple[DriftReading | None, str | None]]:
        async with access.client(None, config.health.timeout_s) as client:
            access.refresh(client)
            return await read_drift_many(client, endpoints, timeout_s=config.health.timeout_s)

    answers = asyncio.run(read())
    comparison = cross_cloud(
        {c: r for c, (r, _) in answers.items()}, config.drift, across_versions=not _rollout_active(config)
    )
    result = []
    for cloud, (reading, problem) in answers.items():
        summary = judge(reading, problem, config.drift)
        if cloud in comparison:
            summary["cross_cloud"] = comparison[cloud]
        result.append(CloudDrift(cloud, reading, summary))
    return result


def _rollout_active(config: Config) -> bool:
    """Whether the state store's rollout record is active (then clouds on different versions are not
    compared with each other: :func:`~orchestrator.control.health.drift.cross_cloud`). A store that
    cannot be read counts as active: the comparison then flags nobody for serving a new version."""
    from orchestrator.control.rollout.record import is_active
    from orchestrator.control.wiring import open_store

    try:
        store = open_store(config)
        try:
            return is_active(store.atomically(store.rollout))
        finally:
            store.close()
    except Exception:  # the report goes on without the store (its own commands report store faults)
        return True


def exit_code(clouds: list[CloudDrift]) -> int:
    """0 no drift, 1 drift (warn, alarm or a cross-cloud flag), 2 no cloud gave drift data."""
    if all(c.reading is None for c in clouds):
        return 2
    drifting = any(
        c.summary.get("status") in ("warn", "alarm") or c.summary.get("cross_cloud", {}).get("flagged")
        for c in clouds
    )
    return 1 if drifting else 0


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# Markdown's active punctuation (CommonMark lets a backslash escape any ASCII punctuation): links and
# images ([..](..), ![..](..): escaping the brackets is enough), emphasis, code, tables, HTML, entities.
_MARKDOWN_ACTIVE = frozenset("\\`*_[]!<>|~&#{}")


def _escape(text: str) -> str:
    """An endpoint-supplied name (feature, class label, reason) made inert in Markdown: every active
    punctuation character backslash-escaped, line breaks as spaces."""
    return "".join("\\" + ch if ch in _MARKDOWN_ACTIVE else ch for ch in " ".join(text.splitlines()))


def _markdown(clouds: list[CloudDrift], config: Config, plots: dict[str, str]) -> str:
    cfg = config.drift
    lines = [
        "# Drift report",
        "",
        f"PSI levels: warning {cfg.psi_warn:g}, alarm {cfg.psi_alarm:g} (the usual 0.1 / 0.25 reading); "
        f"judged from {cfg.min_rows} rows in an endpoint's window.",
        "",
    ]
    for c in clouds:
        s = c.summary
        lines += [f"## {c.cloud}: {s.get('status')}", "", _escape(str(s.get("reason", ""))), ""]
        if c.reading is None:
            continue
        r = c.reading
        crossed = s.get("cross_cloud")
        lines += [
            f"- model version: {_escape(r.version or '-')}",
            f"- rows in the window: {r.rows} of {r.capacity}",
            f"- estimated accuracy (label-free): {_cell(r.estimated_accuracy)}",
            f"- mean confidence: {_cell(r.confidence_mean)}",
            f"- predicted classes: PSI {_cell(r.prediction_psi)}",
            "- cross-cloud: "
            + (
                "not compared (fewer than three clouds with enough rows)"
                if not crossed
                else f"not compared: {crossed['not_compared']}"
                if crossed.get("not_compared")
                else f"JS distance to the consensus {crossed['js_distance']:.3f}, mean confidence gap "
                f"{_cell(crossed.get('confidence_gap'))}" + (" — **flagged**" if crossed["flagged"] else "")
            ),
            "",
        ]
        if c.cloud in plots:
            lines += [f"![{c.cloud}]({plots[c.cloud]})", ""]
        if r.features:
            lines += ["| feature | PSI | JS distance |", "|---|---:|---:|"]
            ordered = sorted(r.features.items(), key=lambda kv: -(kv[1] if kv[1] is not None else -1.0))
            for name, value in ordered:
                flag = " ⚠" if value is not None and value >= cfg.psi_warn else ""
                lines.append(f"| {_escape(name)} | {_cell(value)}{flag} | {_cell(r.js_distance.get(name))} |")
            lines.append("")
    if "predictions" in plots:
        lines += ["## Predicted classes per cloud", "", f"![predictions]({plots['predictions']})", ""]
    return "\n".join(lines)


def _plot_cloud(c: CloudDrift, config: Config, path: Path) -> None:
    import matplotlib.pyplot as plt

    assert c.reading is not None
    known = sorted(((v, k) for k, v in c.reading.features.items() if v is not None), reverse=True)[
        :MAX_PLOTTED
    ]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.25 * len(known) + 1)))
    ax.barh([k for _, k in known][::-1], [v for v, _ in known][::-1], color="tab:blue")
    ax.axvline(
        config.drift.psi_warn, color="orange", linestyle="--", label=f"warning {config.drift.psi_warn:g}"
    )
    ax.axvline(config.drift.psi_alarm, color="red", linestyle="--", label=f"alarm {config.drift.psi_alarm:g}")
    ax.set_xlabel("PSI (window vs reference)")
    ax.set_title(f"{c.cloud}: {c.reading.rows} rows, {c.summary.get('status')}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_predictions(clouds: list[CloudDrift], path: Path) -> bool:
    import matplotlib.pyplot as plt
    import numpy as np

    series = [
        (c.cloud, c.reading.counts)
        for c in clouds
        if c.reading is not None and any(c.reading.counts.values())
    ]
    if not series:
        return False
    classes = sorted({k for _, counts in series for k in counts})
    reference = next(
        (c.reading.reference for c in clouds if c.reading is not None and c.reading.reference), None
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(classes) * (len(series) + 1)), 3.5))
    width = 0.8 / (len(series) + (reference is not None))
    x = np.arange(len(classes))
    for i, (cloud, counts) in enumerate(series):
        total = sum(counts.values())
        ax.bar(x + i * width, [counts.get(k, 0) / total for k in classes], width, label=cloud)
    if reference is not None:
        ax.bar(
            x + len(series) * width,
            [reference.get(k, 0.0) for k in classes],
            width,
            label="reference",
            color="grey",
        )
    ax.set_xticks(x + 0.4 - width / 2, classes, rotation=45 if len(classes) > 6 else 0)
    ax.set_ylabel("share of predictions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be the report's directory before anything is read:
    ConfigError (exit 2) naming the path when it is an existing file (or anything but a directory)."""
    from orchestrator.core.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: not a directory (an existing file); name a directory for the report")


def write_report(clouds: list[CloudDrift], config: Config, out: Path) -> tuple[Path, list[str]]:
    """Write ``drift.md`` and the PNGs into ``out`` (created): the Markdown's path, and notes of
    one line each about what was left out (no matplotlib: no plots; a plot that could not be drawn).

    Endpoint-supplied names (features, class labels) are drawn as plain text (no mathtext: ``$``
    is a character) and escaped in the Markdown; a plot that fails is left out, never the report.
    Raises ConfigError (exit 2) for an ``out`` that is a file, OrchestratorError (exit 1) naming
    the path when the directory or a file cannot be written."""
    from orchestrator.core.errors import OrchestratorError

    check_out(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OrchestratorError(f"--out {out}: cannot create the directory: {exc.strerror or exc}") from None
    plots: dict[str, str] = {}
    notes: list[str] = []
    try:
        import matplotlib
    except ImportError:
        notes.append(
            "plots not drawn: matplotlib is not installed "
            "(pip install 'ml-orchestrator[train]'); drift.md has every figure as a table"
        )
    else:
        matplotlib.use("Agg")
        # Names come from endpoints: plain text, never mathtext ($...$) nor TeX.
        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            _plots(clouds, config, out, plots, notes)
    path = out / "drift.md"
    markdown = _markdown(clouds, config, plots)
    if notes:
        markdown = markdown.replace("\n\n", "\n\n" + "".join(f"_{_escape(n)}_\n\n" for n in notes), 1)
    try:
        path.write_text(markdown, encoding="utf-8")
    except OSError as exc:
        raise OrchestratorError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path, notes


def _plots(
    clouds: list[CloudDrift], config: Config, out: Path, plots: dict[str, str], notes: list[str]
) -> None:
    """Draw every plot it can; one that fails (whatever an endpoint's answer holds) becomes a note."""
    for c in clouds:
        if c.reading is not None and any(v is not None for v in c.reading.features.values()):
            try:
                _plot_cloud(c, config, out / f"{c.cloud}.png")
            except Exception as exc:  # one endpoint's answer never stops the report
                notes.append(f"{c.cloud}.png not drawn: {type(exc).__name__}")
            else:
                plots[c.cloud] = f"{c.cloud}.png"
    try:
        if _plot_predictions(clouds, out / "predictions.png"):
            plots["predictions"] = "predictions.png"
    except Exception as exc:  # as above
        notes.append(f"predictions.png not drawn: {type(exc).__name__}")
