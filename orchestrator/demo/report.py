"""What the demo leaves behind: a timeline of events, a summary table, and a report with a plot.

The plot shows, second by second, the share of answered predictions each cloud served, with the
story's events (kill, failover, failback, manual drain, rollout) as vertical lines.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["Timeline", "summary_table", "write_report"]

COLORS = {"aws": "#ff9900", "gcp": "#34a853", "azure": "#0078d4"}
# Events drawn on the plot (the others are in the timeline only).
MARKED = {
    "kill",
    "failover",
    "restart",
    "failback",
    "manual_failover",
    "manual_failback",
    "rollout",
    "bad_rollout",
    "rolled_back",
    "drift",
}


class Timeline:
    """Events in seconds since the demo started, printed as they happen."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.time()
        self.events: list[dict[str, Any]] = []

    def now(self) -> float:
        return self.at(time.time())

    def at(self, wall: float) -> float:
        """A wall-clock time (``time.time()``) as seconds since the start."""
        return round(wall - self.started, 3)

    def event(self, kind: str, message: str, *, at: float | None = None, **data: Any) -> dict[str, Any]:
        entry = {"t": self.now() if at is None else at, "kind": kind, "message": message, **data}
        self.events.append(entry)
        self.console.print(f"[dim]{entry['t']:6.1f}s[/]  {escape(message)}", soft_wrap=True)
        return entry

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["kind"] == kind), None)


def summary_table(result: Mapping[str, Any]) -> Table:
    traffic = result["traffic"]
    v1, v2 = result["versions"]["v1"], result["versions"].get("v2")
    table = Table(title="Traffic per cloud (clients pick by the weights they resolve; one retry)")
    for column in ("cloud", "sent first", "errors", "answered", f"by {v1[:8]}", f"by {(v2 or '-')[:8]}"):
        table.add_column(column, justify="left" if column == "cloud" else "right")
    for cloud, row in traffic["per_cloud"].items():
        versions = row["versions"]
        table.add_row(
            cloud,
            str(row["requests"]),
            str(row["errors"]),
            str(row["served"]),
            str(versions.get(v1, 0)),
            str(versions.get(v2, 0)) if v2 else "-",
        )
    table.add_row(
        "all",
        str(traffic["total"]),
        str(sum(r["errors"] for r in traffic["per_cloud"].values())),
        str(traffic["total"] - traffic["failed"]),
        "",
        "",
        style="bold",
    )
    return table


def write_report(
    directory: Path, result: Mapping[str, Any], series: Sequence[Mapping[str, float]]
) -> dict[str, str]:
    """``report.md`` and ``traffic.png`` in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    plot = directory / "traffic.png"
    _plot(plot, result, series)
    markdown = directory / "report.md"
    markdown.write_text(_markdown(result, plot.name))
    return {"markdown": str(markdown), "plot": str(plot)}


def _plot(path: Path, result: Mapping[str, Any], series: Sequence[Mapping[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clouds = list(result["traffic"]["per_cloud"])
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=110)
    try:
        if series:
            t = [row["t"] for row in series]
            ax.stackplot(
                t,
                *[[row.get(c, 0.0) * 100 for row in series] for c in clouds],
                labels=clouds,
                colors=[COLORS.get(c, "#888888") for c in clouds],
                alpha=0.85,
                step="post",
            )
        for i, event in enumerate(e for e in result["events"] if e["kind"] in MARKED):
            ax.axvline(event["t"], color="black", linewidth=0.8, linestyle="--")
            ax.annotate(
                event.get("label", event["kind"]),
                (event["t"], 100 - (i % 4) * 9),
                xytext=(3, -2),
                textcoords="offset points",
                fontsize=7,
                va="top",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.8, "lw": 0},
            )
        ax.set_xlabel("seconds since the demo started")
        ax.set_ylabel("share of answered predictions (%)")
        ax.set_ylim(0, 100)
        ax.set_title("Traffic share per cloud, with the demo's events")
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def _markdown(result: Mapping[str, Any], plot: str) -> str:
    traffic, failover, failback = result["traffic"], result["failover"], result["failback"]
    lines = [
        "# `orchestrator demo` report",
        "",
        f"Model `{result['model']}`: version `{result['versions']['v1']}`, "
        f"then `{result['versions'].get('v2')}`.",
        f"Finished in {result['duration_s']:.1f} s.",
        "",
        f"![traffic share per cloud]({plot})",
        "",
        "## Figures",
        "",
        f"- Requests: {traffic['total']} at {traffic['rate_per_s']:g}/s; failed after one retry: "
        f"{traffic['failed']}; retried: {traffic['retried']}; correct digits: {traffic['accuracy']:.1%}.",
        f"- aws killed at {failover['killed_at']:.1f} s: "
        f"detected after {failover['detected_after_s']:.2f} s, "
        f"weights applied after {failover['applied_after_s']:.2f} s (bound {failover['bound_s']:.2f} s); "
        f"failed requests after that: {failover['failed_after_applied']}.",
        f"- aws restarted at {failback['restarted_at']:.1f} s: back in rotation after "
        f"{failback['readmitted_after_s']:.2f} s (healthy threshold {failback['healthy_threshold']} probes, "
        f"hold-down {failback['hold_down_s']:g} s).",
        "",
        "| cloud | sent first | errors | answered | by version |",
        "|---|---:|---:|---:|---|",
    ]
    for cloud, row in traffic["per_cloud"].items():
        versions = ", ".join(f"{v[:12]}: {n}" for v, n in row["versions"].items())
        lines.append(f"| {cloud} | {row['requests']} | {row['errors']} | {row['served']} | {versions} |")
    if drift := result.get("drift"):
        worst = drift.get("worst") or {}
        lines += [
            "",
            f"Drift: {drift['shifted']}'s inputs shifted; the drift report judged "
            + ", ".join(f"{c} {s}" for c, s in drift["status"].items())
            + f" (worst feature {worst.get('feature')}, PSI {float(worst.get('psi') or 0):.2f}): "
            "[drift/drift.md](drift/drift.md).",
        ]
    lines += ["", "## Timeline", "", "| t (s) | event |", "|---:|---|"]
    lines += [f"| {e['t']:.1f} | {e['message']} |" for e in result["events"]]
    return "\n".join(lines) + "\n"
