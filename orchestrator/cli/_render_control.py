"""Rich tables and JSON documents for the control-plane commands."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.cli._output import console, err_console
from orchestrator.control import OperatorResult, RoundReport, flip_dict
from orchestrator.routing import Decision
from orchestrator.types import HealthState

__all__ = ["decision_table", "health_table", "operator_json", "round_json", "status_table"]

_STYLE = {
    HealthState.HEALTHY: "green",
    HealthState.DEGRADED: "yellow",
    HealthState.UNHEALTHY: "red",
    HealthState.DRAINED: "magenta",
}


def _state(state: HealthState | str) -> str:
    state = HealthState(state)
    return f"[{_STYLE[state]}]{state.value}[/]"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def decision_table(
    decision: Decision, weights: dict[str, int] | None, *, title: str, out: Console | None = None
) -> None:
    """The routing decision, one row per cloud, with what the router knew and why it chose."""
    out = out or console
    if decision.panic:
        err_console.print(
            "[bold red]PANIC:[/] no cloud is routable; the last applied weights stay in effect",
            soft_wrap=True,
        )
    table = Table(title=title)
    for column in ("cloud", "state", "p95", "capacity", "cost / M req", "weight", "why"):
        table.add_column(column, justify="right" if column not in ("cloud", "state", "why") else "left")
    for row in decision.rows:
        weight = (weights or {}).get(row.cloud)
        table.add_row(
            row.cloud,
            _state(row.state),
            _ms(row.p95_ms),
            f"{row.capacity_rps:g} rps",
            f"${row.cost_per_million:.4f}",
            "-" if weight is None else str(weight),
            escape(row.why),
        )
    out.print(table)
    if decision.expected_cost_per_million is not None:
        out.print(f"expected cost: ${decision.expected_cost_per_million:.4f} per million requests")
    if decision.shortfall_rps:
        out.print(f"[yellow]shortfall:[/] {decision.shortfall_rps:.1f} requests/s beyond capacity")
    for note in decision.notes:
        out.print(f"note: {escape(note)}", soft_wrap=True)


def health_table(report: RoundReport, *, compact: bool = False) -> None:
    if compact:
        stamp = time.strftime("%H:%M:%S")
        states = "  ".join(f"{n} {_state(r.machine.state)}" for n, r in report.records.items())
        weights = report.weights or {}
        console.print(
            f"{stamp}  {states}  weights {weights}" + ("  [bold]applied[/]" if report.applied else "")
        )
        for flip in report.flips:
            console.print(f"  [bold]flip[/] {flip.cloud}: {flip.old} → {flip.new} ({escape(flip.reason)})")
        return
    table = Table(title=f"health (expected version {report.expected_version or 'any'})")
    for column in ("cloud", "state", "last probe", "canary", "p95", "served version"):
        table.add_column(column)
    for name, record in report.records.items():
        last = report.probes[name][-1] if report.probes.get(name) else None
        table.add_row(
            name,
            _state(record.machine.state),
            escape(last.reason) if last else "-",
            _ms(last.canary_ms if last else None),
            _ms(record.p95_ms),
            (last.served_version if last else None) or "-",
        )
    console.print(table)
    for flip in report.flips:
        console.print(f"[bold]flip[/] {flip.cloud}: {flip.old} → {flip.new} ({escape(flip.reason)})")
    decision_table(
        report.decision, report.weights, title="routing" + (" (applied)" if report.applied else "")
    )


def round_json(report: RoundReport) -> dict[str, Any]:
    return {
        "exit_code": report.exit_code,
        "expected_version": report.expected_version,
        "clouds": {
            name: {
                "state": record.machine.state.value,
                "reason": record.machine.last_reason,
                "p95_ms": record.p95_ms,
                "probes": [
                    {
                        "at": p.at,
                        "verdict": p.verdict.value,
                        "reason": p.reason,
                        "served_version": p.served_version,
                        "latency_ms": p.latency_ms,
                    }
                    for p in report.probes.get(name, [])
                ],
            }
            for name, record in report.records.items()
        },
        "flips": [flip_dict(f) for f in report.flips],
        "decision": report.decision.as_dict(),
        "weights": report.weights,
        "applied": report.applied,
    }


def operator_json(action: str, result: OperatorResult, *, dry_run: bool) -> dict[str, Any]:
    return {
        "action": action,
        "changed": bool(result.flips),
        "dry_run": dry_run,
        "flips": [flip_dict(f) for f in result.flips],
        "weights": result.weights,
        "applied": result.applied,
        "decision": result.decision.as_dict(),
    }


def status_table(report: dict[str, Any]) -> None:
    table = Table(title="status")
    for column in ("cloud", "state", "last probe", "p95", "version", "weight", "cost / M req"):
        table.add_column(column)
    for name, cloud in report["clouds"].items():
        probe = cloud["last_probe"] or {}
        ago = f" ({time.time() - probe['at']:.0f} s ago)" if probe.get("at") else ""
        table.add_row(
            name,
            _state(cloud["state"]),
            escape(f"{probe.get('reason', 'never probed')}{ago}"),
            _ms(cloud["p95_ms"]),
            cloud["served_version"] or "-",
            "-" if cloud["weight"] is None else str(cloud["weight"]),
            f"${cloud['cost_per_million_usd']:.4f}",
        )
    console.print(table)
    in_effect = report["in_effect"]
    console.print(f"weights in effect at the routing backend: {in_effect}")
    if report["flips"]:
        flips = Table(title="recent flips")
        for column in ("when", "cloud", "from", "to", "reason", "by"):
            flips.add_column(column)
        for flip in report["flips"]:
            flips.add_row(
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(flip["at"])),
                flip["cloud"],
                _state(flip["old"]),
                _state(flip["new"]),
                escape(flip["reason"]),
                escape(flip["actor"]),
            )
        console.print(flips)
