"""`orchestrator promote` and `rollback`: move a channel in every cloud from the buckets alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from orchestrator.cli import app
from orchestrator.cli.publish import CLOUDS_HELP, CONFIG_HELP, PUBLIC_KEY_ENV, PUBLIC_KEY_HELP, _verifier

if TYPE_CHECKING:
    from orchestrator.control.config import Config
    from orchestrator.publish.channels import ChannelResult
    from orchestrator.publish.sync import Target

CHANNEL_HELP = "The channel to move (default: the configured model.channel, else LATEST)."
MODEL_HELP = "The model's name (default: the configured model.name)."
BUCKET_HELP = "A target bucket URI (s3://, gs://, az://, file://); repeatable. Replaces --clouds."
DEEP_HELP = "Download and hash every object of the version instead of trusting metadata."


def _targets(
    config: str | None,
    clouds: str | None,
    to: list[str] | None,
    model: str | None,
    channel: str | None,
    *,
    what: str,
) -> tuple[list[Target], str, str, Config | None]:
    from orchestrator.control.rollout.guard import refuse_during_rollout
    from orchestrator.control.targets import resolve_targets
    from orchestrator.core.contract import POINTER
    from orchestrator.core.errors import ConfigError
    from orchestrator.core.names import check_channel, check_model_name

    targets, cfg = resolve_targets(config_path=config, clouds=clouds, to=to)
    name = model or (cfg.model.name if cfg else "")
    if not name:
        raise ConfigError("no model named: pass --model NAME or configure model.name")
    check_model_name(name, where="--model", error=ConfigError)
    chosen = channel or (cfg.model.channel if cfg else POINTER)
    check_channel(chosen, where="--channel", error=ConfigError)
    try:
        refuse_during_rollout(cfg, what, model=name, channel=chosen)
    except BaseException:
        for target in targets:
            target.storage.close()
        raise
    return targets, name, chosen, cfg


def _report(results: list[ChannelResult], *, json_out: bool, what: str) -> None:
    from orchestrator.render.output import console, emit_json, shown

    if json_out:
        emit_json(
            {
                "ok": all(r.ok for r in results),
                "command": what,
                "targets": {
                    r.target: {k: v for k, v in r.as_dict().items() if k != "target"} for r in results
                },
            }
        )
    else:
        for r in results:
            line = f"{r.target}: {r.channel} {r.pointer}"
            if r.ok:
                line += f" → {r.version}" + (
                    f" (was {r.previous})" if r.previous and r.previous != r.version else ""
                )
                line += f", sequence {r.sequence}"
            else:
                line += f": {r.error}"
            console.print(shown(line), soft_wrap=True, highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def promote(
    version: str = typer.Argument(..., help="The version to serve, already published in every target."),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    channel: str = typer.Option(None, "--channel", help=CHANNEL_HELP),
    clouds: str = typer.Option(None, "--clouds", help=CLOUDS_HELP),
    to: list[str] = typer.Option(None, "--bucket", help=BUCKET_HELP),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    deep: bool = typer.Option(False, "--deep", help=DEEP_HELP),
    signing_public_key: str = typer.Option(
        None, "--signing-public-key", envvar=PUBLIC_KEY_ENV, help=PUBLIC_KEY_HELP
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document for automation."),
) -> None:
    """Move the channel in every cloud to VERSION, after verifying it there (no local artifact)."""
    from orchestrator.core.errors import ConfigError
    from orchestrator.core.names import check_version
    from orchestrator.publish.channels import move_channel

    check_version(version, where="VERSION", error=ConfigError)
    targets, name, chosen, cfg = _targets(config, clouds, to, model, channel, what="promote")
    verifier: Any = _verifier(signing_public_key, cfg)
    results = move_channel(
        targets, name, version, channel=chosen, moved_by="promote", deep=deep, verifier=verifier
    )
    _report(results, json_out=json_out, what="promote")


@app.command()
def rollback(
    to_version: str = typer.Option(
        None, "--to", help="The version to go back to (default: the one every pointer names as its previous)."
    ),
    model: str = typer.Option(None, "--model", help=MODEL_HELP),
    channel: str = typer.Option(None, "--channel", help=CHANNEL_HELP),
    clouds: str = typer.Option(None, "--clouds", help=CLOUDS_HELP),
    to: list[str] = typer.Option(None, "--bucket", help=BUCKET_HELP),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    deep: bool = typer.Option(False, "--deep", help=DEEP_HELP),
    signing_public_key: str = typer.Option(
        None, "--signing-public-key", envvar=PUBLIC_KEY_ENV, help=PUBLIC_KEY_HELP
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document for automation."),
) -> None:
    """Move the channel in every cloud back to its previous version (or --to), verified first."""
    from orchestrator.core.errors import ConfigError
    from orchestrator.core.names import check_version
    from orchestrator.publish.channels import move_channel, rollback_version

    targets, name, chosen, cfg = _targets(config, clouds, to, model, channel, what="rollback")
    verifier: Any = _verifier(signing_public_key, cfg)
    if to_version:
        check_version(to_version, where="--to", error=ConfigError)
    version = to_version or rollback_version(targets, name, channel=chosen)
    results = move_channel(
        targets,
        name,
        version,
        channel=chosen,
        moved_by="rollback",
        allow_back=True,
        deep=deep,
        verifier=verifier,
    )
    _report(results, json_out=json_out, what="rollback")
