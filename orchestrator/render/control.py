"""Rich tables and JSON documents for the control-plane commands."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.control.reports import EXIT_STALE_BACKEND, OperatorResult, RoundReport, flip_dict
from orchestrator.control.routing import Decision
from orchestrator.control.routing.reconcile import BackendResult
from orchestrator.control.types import HealthState
from orchestrator.render.output import console, err_console, error, shown

__all__ = [
    "backend_json",
    "decision_table",
    "drift_text",
    "health_table",
    "operator_json",
    "report_stale",
    "round_json",
    "status_table",
]

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


_DRIFT_STYLE = {"ok": "green", "warn": "yellow", "alarm": "red"}


def drift_text(summary: dict[str, Any] | None) -> str:
    """One cloud's drift (orchestrator.control.health.drift.judge) in a cell: the status, the
    features over threshold or the cross-cloud flag, the label-free accuracy estimate."""
    if not isinstance(summary, dict) or not isinstance(summary.get("status"), str):
        return "-"
    try:
        return _drift_cell(summary)
    except (TypeError, ValueError, AttributeError):  # a state edited by hand: shown as unknown
        return "?"


def _drift_cell(summary: dict[str, Any]) -> str:
    status = summary["status"]
    text = f"[{_DRIFT_STYLE.get(status, 'dim')}]{shown(status)}[/]"
    crossed = summary.get("cross_cloud") or {}
    if crossed.get("flagged"):
        text += f" [red]predictions diverge[/] (JS {crossed.get('js_distance', 0):.2f})"
    elif crossed.get("not_compared"):
        text += f" (not compared: {shown(str(crossed['not_compared']))})"
    over = summary.get("over") or {}
    if over:
        text += ": " + ", ".join(f"{shown(str(k))} PSI {v:.2f}" for k, v in list(over.items())[:2])
    elif status == "unavailable":
        text += f": {shown(str(summary.get('reason', '')))}"
    accuracy = summary.get("estimated_accuracy")
    if isinstance(accuracy, int | float):
        text += f"; est. accuracy {accuracy:.2f}"
    return text


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
            shown(row.why),
        )
    out.print(table)
    if decision.expected_cost_per_million is not None:
        out.print(f"expected cost: ${decision.expected_cost_per_million:.4f} per million requests")
    if decision.shortfall_rps:
        out.print(f"[yellow]shortfall:[/] {decision.shortfall_rps:.1f} requests/s beyond capacity")
    for note in decision.notes:
        out.print(f"note: {shown(note)}", soft_wrap=True)


def report_stale(backends: Sequence[BackendResult], *, exit_code: bool = False) -> None:
    """One ``error:`` line per routing backend that does not hold the decision; with ``exit_code``,
    then exit :data:`~orchestrator.control.reports.EXIT_STALE_BACKEND` if there was any."""
    stale = [b for b in backends if b.stale]
    for backend in stale:
        error(f"routing backend stale: {backend.location}: {backend.error}; the next round retries it")
    if stale and exit_code:
        raise typer.Exit(EXIT_STALE_BACKEND)


def backend_json(result: BackendResult) -> dict[str, Any]:
    """One backend's reconciliation as the JSON outputs show it."""
    return {
        "kind": result.kind,
        "location": result.location,
        "ok": result.ok,
        "wrote": result.wrote,
        "in_effect": result.in_effect,
        "differences": list(result.differences),
        "error": result.error,
        "at": result.at,
    }


def health_table(report: RoundReport, *, compact: bool = False) -> None:
    """A health round for a terminal: a table per round, or one line per round (``compact``,
    for the watch) with its flips and notes."""
    if compact:
        stamp = time.strftime("%H:%M:%S")
        states = "  ".join(f"{n} {_state(r.machine.state)}" for n, r in report.records.items())
        weights = report.weights or {}
        console.print(
            f"{stamp}  {states}  weights {weights}" + ("  [bold]applied[/]" if report.applied else "")
        )
        for flip in report.flips:
            console.print(f"  [bold]flip[/] {flip.cloud}: {flip.old} → {flip.new} ({shown(flip.reason)})")
        for note in report.notes:
            console.print(f"  note: {shown(note)}", soft_wrap=True)
        return
    table = Table(title=f"health (expected version {report.expected_version or 'any'})")
    for column in ("cloud", "state", "last probe", "canary", "p95", "served version", "drift"):
        table.add_column(column)
    for name, record in report.records.items():
        last = report.probes[name][-1] if report.probes.get(name) else None
        table.add_row(
            name,
            _state(record.machine.state),
            shown(last.reason) if last else "-",
            _ms(last.canary_ms if last else None),
            _ms(record.p95_ms),
            shown((last.served_version if last else None) or "-"),
            drift_text(last.drift if last else None),
        )
    console.print(table)
    for flip in report.flips:
        console.print(f"[bold]flip[/] {flip.cloud}: {flip.old} → {flip.new} ({shown(flip.reason)})")
    for note in report.notes:
        console.print(f"note: {shown(note)}", soft_wrap=True)
    decision_table(
        report.decision, report.weights, title="routing" + (" (applied)" if report.applied else "")
    )
    for backend in report.backends:
        if backend.ok:
            what = "rewritten" if backend.wrote else "in sync"
            drift = (
                f" (was: {shown('; '.join(backend.differences))})"
                if backend.wrote and backend.differences
                else ""
            )
            console.print(f"{shown(backend.location)}: {what}{drift}", soft_wrap=True)


def round_json(report: RoundReport) -> dict[str, Any]:
    """A health round as `health --json` prints it (README, "orchestrator health")."""
    return {
        "exit_code": report.exit_code,
        "expected_version": report.expected_version,
        "clouds": {
            name: {
                "state": record.machine.state.value,
                "reason": record.machine.last_reason,
                "p95_ms": record.p95_ms,
                "drift": report.probes[name][-1].drift if report.probes.get(name) else None,
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
        "backends": [backend_json(b) for b in report.backends],
        "notes": report.notes,
        **({"vantage": report.vantage} if report.vantage is not None else {}),
    }


def operator_json(action: str, result: OperatorResult, *, dry_run: bool) -> dict[str, Any]:
    """A failover or failback as `--json` prints it."""
    return {
        "action": action,
        "changed": bool(result.flips),
        "dry_run": dry_run,
        "flips": [flip_dict(f) for f in result.flips],
        "weights": result.weights,
        "applied": result.applied,
        "decision": result.decision.as_dict(),
        "backends": [backend_json(b) for b in result.backends],
    }


def status_table(report: dict[str, Any]) -> None:
    """`orchestrator status` for a terminal: the clouds, the desired weights, each backend against
    them, the recent flips. Whatever the state or a backend holds is printed inert (:func:`shown`)."""
    table = Table(title="status")
    for column in ("cloud", "state", "last probe", "p95", "version", "weight", "cost / M req", "drift"):
        table.add_column(column)
    for name, cloud in report["clouds"].items():
        probe = cloud["last_probe"] or {}
        ago = f" ({time.time() - probe['at']:.0f} s ago)" if probe.get("at") else ""
        table.add_row(
            name,
            _state(cloud["state"]),
            shown(f"{probe.get('reason', 'never probed')}{ago}"),
            _ms(cloud["p95_ms"]),
            shown(cloud["served_version"] or "-"),
            "-" if cloud["weight"] is None else str(cloud["weight"]),
            f"${cloud['cost_per_million_usd']:.4f}",
            drift_text(probe.get("drift")),
        )
    console.print(table)
    desired = report["desired"]
    if desired is None:
        console.print("desired weights: none committed yet (run `orchestrator health --once --apply`)")
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(desired["at"]))
        console.print(
            f"desired weights: {desired['weights']} (since {when}: {shown(desired['reason'])})",
            soft_wrap=True,
        )
    console.print(_backends_table(report["backends"], desired is not None))
    rollout = report.get("rollout")
    if rollout:
        where = ""
        if rollout.get("status") in ("running", "rolling-back"):
            order = rollout.get("order") or []
            stage = rollout.get("stage", 0)
            cloud = order[stage] if isinstance(stage, int) and 0 <= stage < len(order) else "?"
            number = stage + 1 if isinstance(stage, int) else "?"
            where = f", stage {number}/{len(order)} {cloud} {rollout.get('phase')}"
        why = f": {rollout['reason']}" if rollout.get("reason") else ""
        console.print(
            shown(
                f"rollout: {rollout.get('baseline')} -> {rollout.get('version')} {rollout.get('status')}"
                f"{where}{why} (moved: {', '.join(rollout.get('moved') or []) or 'none'})"
            ),
            soft_wrap=True,
            highlight=False,
        )
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
                shown(flip["reason"]),
                shown(flip["actor"]),
            )
        console.print(flips)
    if report.get("vantage"):
        from orchestrator.render.vantage import vantage_tables

        vantage_tables(report["vantage"])


def _backends_table(entries: list[dict[str, Any]], decided: bool) -> Table:
    backends = Table(title="routing backends")
    for column in ("backend", "in effect", "holds the desired weights", "last reconciled"):
        backends.add_column(column)
    for backend in entries:
        if backend["error"]:
            verdict = f"[red]unreadable:[/] {shown(backend['error'])}"
        elif backend["in_sync"] or not decided:
            verdict = "[green]yes[/]" if decided else "-"
        else:
            verdict = f"[red]no, stale:[/] {shown('; '.join(backend['differences']))}"
        last = backend.get("last_reconciled")
        last_text = "never"
        if last:
            last_text = time.strftime("%H:%M:%S", time.localtime(last["at"])) + (
                " ok" if last["ok"] else f" failed: {last['error']}"
            )
        backends.add_row(
            shown(backend["location"]),
            "-" if backend["in_effect"] is None else str(backend["in_effect"]),
            verdict,
            shown(last_text),
        )
    return backends
