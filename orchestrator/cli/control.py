"""`orchestrator health | failover | failback | route | status | config check`: the control plane."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from orchestrator.cli import app

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane
    from orchestrator.control.reports import RoundReport

CONFIG_HELP = "Configuration file (default: $ORCHESTRATOR_CONFIG or ./orchestrator.yaml)."
JSON_HELP = "Print one JSON document for automation."

config_app = typer.Typer(help="Validate and inspect orchestrator.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _plane(config: str | None) -> ControlPlane:
    from orchestrator.control.config import load_config
    from orchestrator.control.wiring import open_plane

    return open_plane(load_config(config))


@app.command()
def health(
    once: bool = typer.Option(False, "--once", help="One round of probes, then exit (the scheduled job)."),
    watch: bool = typer.Option(False, "--watch", help="Probe continuously and act on every flip."),
    apply: bool = typer.Option(False, "--apply", help="Update routing from the result."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Probe every cloud (readiness, model version, canary, latency) and update their health.

    Exit code with --once: 0 all healthy, 1 degraded but serving, 2 no healthy cloud, 4 a routing
    backend is stale (named on stderr), 75 another health job holds the lease (nothing done).
    With --watch --json, one JSON document per line per round (JSON Lines).
    """
    from orchestrator.core.errors import ConfigError
    from orchestrator.render.control import health_table, report_stale, round_json
    from orchestrator.render.output import emit_json, error

    if once == watch:
        raise ConfigError("choose one of --once (a single round, for schedulers) or --watch (continuous)")
    stopped = _exit_on_termination()
    with _plane(config) as plane:
        if once:
            report = plane.health_round(apply=apply)
            emit_json(round_json(report)) if json_out else health_table(report)
            report_stale(report.backends)
            raise typer.Exit(report.exit_code)

        def on_round(report: RoundReport) -> None:  # with --json: one line per round (JSON Lines)
            emit_json(round_json(report), line=True) if json_out else health_table(report, compact=True)
            report_stale(report.backends)

        try:
            plane.watch(apply=apply, stop=lambda: bool(stopped), on_round=on_round, on_error=error)
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        # The watch saw the signal's flag: its exception was swallowed where it landed.
        raise typer.Exit(0 if stopped == [signal.SIGINT] else 128 + stopped[0])


def _exit_on_termination() -> list[int]:
    """Make SIGTERM (a container or service stop) and SIGHUP (a closed terminal) end the command
    the way Ctrl-C does, running its cleanup, instead of killing it where it stands: the health
    job's lease is released (the next run need not wait for it to expire), an open state
    transaction is rolled back. The exit code is 128 + the signal's number, as a shell reports.

    Returns the signals received (SIGINT included), for loops to check between rounds: an
    exception raised while Python runs a finalizer (an HTTP response's body iterator collected
    mid-round) is printed and swallowed, so the flag is what reliably stops a watch."""
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    def terminate(signum: int, _frame: object) -> None:
        received.append(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, interrupt)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, terminate)
    return received


@app.command()
def failover(
    from_: str = typer.Option(..., "--from", help="The cloud to drain."),
    to: str = typer.Option(
        None, "--to", help="Send its share to this cloud (default: the cost-optimal mix)."
    ),
    reason: str = typer.Option("manual failover", "--reason", help="Recorded with the flip."),
    force: bool = typer.Option(False, "--force", help="Drain even the last cloud in rotation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the new weights; change nothing."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Drain a cloud and re-route its traffic to the healthy others. Idempotent."""
    from orchestrator.control.reports import current_user
    from orchestrator.render.control import decision_table, operator_json, report_stale
    from orchestrator.render.output import console, emit_json

    with _plane(config) as plane:
        result = plane.failover(
            from_, to=to, reason=reason, actor=current_user(), dry_run=dry_run, force=force
        )
    if json_out:
        emit_json(operator_json("failover", result, dry_run=dry_run))
    else:
        if not result.flips:
            console.print(f"{from_} is already drained: nothing changed")
        title = f"failover from {from_}" + (" (dry run)" if dry_run else "")
        decision_table(result.decision, result.weights, title=title)
    report_stale(result.backends, exit_code=True)


@app.command()
def failback(
    to: str = typer.Option(..., "--to", help="The drained cloud to return to rotation."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Return a drained cloud to rotation, only if it passes health checks now."""
    from orchestrator.control.reports import current_user
    from orchestrator.render.control import decision_table, operator_json, report_stale
    from orchestrator.render.output import console, emit_json

    with _plane(config) as plane:
        result = plane.failback(to, actor=current_user())
    if json_out:
        emit_json(operator_json("failback", result, dry_run=False))
    else:
        if not result.flips:
            console.print(f"{to} is not drained: nothing changed")
        decision_table(result.decision, result.weights, title=f"failback to {to}")
    report_stale(result.backends, exit_code=True)


@app.command()
def route(
    apply: bool = typer.Option(False, "--apply", help="Apply the weights to the routing backend."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Compute the cost-optimal traffic weights under the latency SLO, and explain them."""
    from orchestrator.render.control import backend_json, decision_table, report_stale
    from orchestrator.render.output import emit_json

    with _plane(config) as plane:
        decision, applied, backends = plane.route(apply=apply)
    if json_out:
        emit_json({**decision.as_dict(), "applied": applied, "backends": [backend_json(b) for b in backends]})
    else:
        decision_table(
            decision, decision.weights, title="routing decision" + (" (applied)" if applied else "")
        )
    if decision.weights is None:
        raise typer.Exit(2)
    report_stale(backends, exit_code=True)


@app.command()
def status(
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Each cloud's state, last probe, latency, version, weight and cost; the desired weights and
    what each routing backend holds; the recent flips. Exit 4 when a backend is stale."""
    from orchestrator.render.control import status_table
    from orchestrator.render.output import emit_json

    with _plane(config) as plane:
        report = plane.status()
    emit_json(report) if json_out else status_table(report)
    if any(not b["in_sync"] for b in report["backends"]) and report["desired"] is not None:
        raise typer.Exit(4)


@config_app.command("check")
def config_check(
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Validate a configuration file and print the effective configuration (defaults filled in):
    a header on stderr, the YAML alone on stdout (or JSON with --json)."""
    from orchestrator.control.config import load_config
    from orchestrator.render.output import emit_json, emit_text, err_console, shown

    cfg = load_config(config)
    effective = cfg.model_dump(mode="json")
    if json_out:
        emit_json(effective)
    else:
        err_console.print(
            f"[green]✓[/] {shown(cfg.source)} is valid. Effective configuration:", soft_wrap=True
        )
        emit_text(_yaml(effective))


@config_app.command("from-stacks")
def config_from_stacks(
    outputs: list[Path] = typer.Argument(..., help="`pulumi stack output --json` files, one per stack."),
    out: Path | None = typer.Option(None, "--out", help="Write the configuration here (default: print it)."),
) -> None:
    """Turn Pulumi stack outputs (aws, gcp, azure, and optionally dns) into orchestrator.yaml
    (printed plain on stdout without --out: `> orchestrator.yaml` works)."""
    from orchestrator.control.stacks import config_from_outputs, load_outputs
    from orchestrator.render.output import emit_text, err_console, shown

    text = _yaml(config_from_outputs(load_outputs(outputs)))
    if out is None:
        emit_text(text)
        return
    from orchestrator.core.errors import ConfigError

    try:
        out.write_text(text)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write the configuration: {exc.strerror or exc}") from None
    err_console.print(
        f"[green]✓[/] wrote {shown(out)}; check it with `orchestrator config check --config {shown(out)}`",
        soft_wrap=True,
    )


def _yaml(data: object) -> str:
    """``data`` as block YAML in key order, no line folded (PyYAML folds long scalars at 80)."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, width=float("inf"), allow_unicode=True)
