"""`orchestrator rollout`: a version cloud by cloud, each stage gated, rolled back if one fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from orchestrator.cli import app
from orchestrator.cli.channels import DEEP_HELP
from orchestrator.cli.publish import CONFIG_HELP, PUBLIC_KEY_ENV, PUBLIC_KEY_HELP, _verifier

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane


@app.command()
def rollout(
    version: str | None = typer.Argument(
        None, help="The version to roll out, already published in every cloud."
    ),
    plan_file: str = typer.Option(
        None, "--plan", help="A rollout plan (YAML): order, canary_weight, bake_s, gates."
    ),
    order: str = typer.Option(
        None, "--order", help="Comma-separated clouds, in stage order (default: cheapest first)."
    ),
    canary_weight: int = typer.Option(
        None, "--canary-weight", help="The first stage's weight, of 100 (default 10)."
    ),
    bake: float = typer.Option(
        None, "--bake", help="Seconds each stage is watched before the next (default 300)."
    ),
    abort: bool = typer.Option(False, "--abort", help="Roll the rollout in progress back now."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    deep: bool = typer.Option(False, "--deep", help=DEEP_HELP),
    signing_public_key: str = typer.Option(
        None, "--signing-public-key", envvar=PUBLIC_KEY_ENV, help=PUBLIC_KEY_HELP
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the final rollout record as JSON."),
) -> None:
    """Roll VERSION out cloud by cloud, watching each stage's gates; roll back everywhere if one fails.

    Exit codes: 0 every cloud serves VERSION; 6 VERSION is not complete and verified in every cloud
    (nothing moved); 7 a gate failed (or --abort) and every moved cloud was moved back; 2 a usage or
    configuration error (or another rollout in progress); 1 an error that left the rollout active
    (the scheduled health job finishes or undoes it).
    """
    from orchestrator.cli.control import _exit_on_termination, _plane
    from orchestrator.control.rollout.plan import load_plan
    from orchestrator.control.rollout.record import RolloutFailed
    from orchestrator.control.rollout.start import start_rollout
    from orchestrator.control.targets import parse_clouds
    from orchestrator.core.errors import ConfigError
    from orchestrator.core.names import check_version
    from orchestrator.render.output import console, emit_json, err_console, shown

    def event(what: str, record: Any) -> None:
        if json_out:
            return
        if what == "error":
            err_console.print(shown(f"warning: {record['error']}"), soft_wrap=True, highlight=False)
            return
        stage = record.get("stage", 0)
        cloud = record["order"][min(stage, len(record["order"]) - 1)]
        detail = f" ({record['reason']})" if what in ("gate failed", "rolled back") else ""
        console.print(shown(f"{record['version']}: {cloud}: {what}{detail}"), soft_wrap=True, highlight=False)

    stopped = _exit_on_termination()
    with _plane(config) as plane:
        if abort:
            if version is not None:
                raise ConfigError("--abort takes no VERSION: it rolls back the rollout in progress")
            final = _abort(plane, event)
        else:
            if version is None:
                raise ConfigError("name the VERSION to roll out (or --abort)")
            check_version(version, where="VERSION", error=ConfigError)
            verifier: Any = _verifier(signing_public_key, plane.config)
            overrides = {
                "order": parse_clouds(order),
                "canary_weight": canary_weight,
                "bake_s": bake,
            }
            plan = load_plan(plan_file, overrides)
            runner = start_rollout(plane, version, plan, holder=plane.holder, deep=deep, verifier=verifier)
            runner.on_event = event
            try:
                final = runner.run(should_stop=lambda: bool(stopped))
            finally:
                runner.close()
    if json_out:
        emit_json(final)
    if final["status"] == "succeeded":
        return
    if final["status"] == "rolled-back":
        raise RolloutFailed(f"rollout of {final['version']} rolled back: {final['reason']}")
    raise typer.Exit(1 if not stopped else 128 + stopped[0])


def _abort(plane: ControlPlane, event: Callable[[str, Any], None]) -> dict[str, Any]:
    """Take the active rollout over and roll it back now; its final record."""
    from orchestrator.control.rollout.record import is_active
    from orchestrator.control.rollout.runner import Rollout
    from orchestrator.core.errors import ConfigError

    record = plane.store.atomically(plane.store.rollout)
    if not is_active(record):
        raise ConfigError("no rollout in progress to abort (see `orchestrator status`)")
    assert record is not None

    def take() -> Any:
        current = plane.store.rollout()
        if current is None or current.get("id") != record["id"]:
            raise ConfigError("the rollout changed meanwhile; see `orchestrator status`")
        current["holder"] = plane.holder
        plane.store.save_rollout(current)
        return current

    runner = Rollout(plane, holder=plane.holder, record=plane.store.atomically(take), on_event=event)
    try:
        return runner.abort("aborted by an operator (rollout --abort)")
    finally:
        runner.close()
