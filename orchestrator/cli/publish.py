"""`orchestrator sync`, `verify` and `sign`: publish artifacts to every cloud, check them, sign them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from orchestrator.cli import app

CLOUDS_HELP = "Comma-separated clouds from the configuration (default: all configured)."
TO_HELP = "A target bucket URI (s3://, gs://, az://, file://); repeatable. Replaces --clouds."
CONFIG_HELP = "Configuration file (default: $ORCHESTRATOR_CONFIG or ./orchestrator.yaml)."
PUBLIC_KEY_ENV = "MODEL_SIGNING_PUBLIC_KEY"
PUBLIC_KEY_HELP = "PEM public key (text or a path): the artifact's signature must verify with it."
SIGNING_KEY_ENV = "ORCHESTRATOR_SIGNING_KEY"


def _verifier(public_key: str | None, config: Any = None) -> object:
    """The signature verifier of ``--signing-public-key`` (or its environment variable), else of
    the configuration's ``signing.public_key`` (``config``, a Config or None); None without
    either. ConfigError naming the key when it cannot be loaded."""
    if not public_key:
        if config is not None and config.signing is not None and config.signing.public_key:
            from orchestrator.control.health.expect import signature_verifier

            return signature_verifier(config)
        return None
    from orchestrator.core.artifact.signing import SignatureVerifier, load_public_key

    return SignatureVerifier(load_public_key(public_key, where=f"--signing-public-key ({PUBLIC_KEY_ENV})"))


@app.command()
def sync(
    model: Path = typer.Option(..., "--model", help="The local artifact directory to publish."),
    clouds: str = typer.Option(None, "--clouds", help=CLOUDS_HELP),
    to: list[str] = typer.Option(None, "--to", help=TO_HELP),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be uploaded; change nothing."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Allow moving LATEST back to a version it pointed at before, or replacing an unreadable LATEST.",
    ),
    deep: bool = typer.Option(
        False, "--deep", help="Download and hash what is in each bucket; re-upload what differs."
    ),
    signing_public_key: str = typer.Option(
        None, "--signing-public-key", envvar=PUBLIC_KEY_ENV, help=PUBLIC_KEY_HELP
    ),
    channel: str = typer.Option(
        "LATEST",
        "--channel",
        help="The channel whose pointer moves last (e.g. CANDIDATE: nothing serves it yet).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document for automation."),
) -> None:
    """Publish an artifact to every cloud's bucket, verify it landed, then move LATEST (or --channel)."""
    from orchestrator.control.rollout.guard import refuse_during_rollout
    from orchestrator.control.targets import resolve_targets
    from orchestrator.core.artifact.manifest import load_manifest
    from orchestrator.core.errors import ConfigError, OrchestratorError
    from orchestrator.core.names import check_channel
    from orchestrator.publish.sync import sync_artifact, ungated_warnings
    from orchestrator.render.output import console, emit_json, err_console, shown
    from orchestrator.render.publish import sync_progress, sync_table

    check_channel(channel, where="--channel", error=ConfigError)
    targets, cfg = resolve_targets(config_path=config, clouds=clouds, to=to)
    try:
        verifier: Any = _verifier(signing_public_key, cfg)
        if not dry_run and cfg is not None:
            try:
                name = load_manifest(model).name
            except OrchestratorError:
                name = None  # sync_artifact reports the unreadable artifact, naming it
            if name is not None:
                refuse_during_rollout(cfg, "sync", model=name, channel=channel)
    except BaseException:
        for target in targets:
            target.storage.close()
        raise
    with sync_progress(model, targets, enabled=console.is_terminal and not json_out) as on_event:
        results = sync_artifact(
            model,
            targets,
            force=force,
            dry_run=dry_run,
            deep=deep,
            verifier=verifier,
            on_event=on_event,
            channel=channel,
        )
    if json_out:
        emit_json(
            {
                "ok": all(r.ok for r in results),
                "dry_run": dry_run,
                "targets": _keyed(r.as_dict() for r in results),
            }
        )
    else:
        sync_table(results, dry_run=dry_run)
    # One line, not an error: publishing a version no gate compared with what it replaces is allowed.
    for warning in ungated_warnings(load_manifest(model), results):
        err_console.print(f"[yellow]warning:[/] {shown(warning)}", soft_wrap=True)
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command()
def verify(
    model: str = typer.Option(
        None, "--model", help="NAME or NAME@VERSION (default: the configured model, LATEST)."
    ),
    clouds: str = typer.Option(None, "--clouds", help=CLOUDS_HELP),
    to: list[str] = typer.Option(None, "--to", help=TO_HELP),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    deep: bool = typer.Option(
        False, "--deep", help="Download and hash every object instead of trusting metadata."
    ),
    signing_public_key: str = typer.Option(
        None, "--signing-public-key", envvar=PUBLIC_KEY_ENV, help=PUBLIC_KEY_HELP
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document for automation."),
) -> None:
    """Check that every cloud holds exactly the manifest's files and that LATEST agrees everywhere."""
    from orchestrator.control.targets import resolve_targets
    from orchestrator.core.errors import ConfigError
    from orchestrator.core.names import check_model_name, check_version
    from orchestrator.publish.verify import verify_targets
    from orchestrator.render.output import emit_json
    from orchestrator.render.publish import verify_table

    targets, cfg = resolve_targets(config_path=config, clouds=clouds, to=to)
    verifier: Any = _verifier(signing_public_key, cfg)
    name, _, version = (model or "").partition("@")
    name = name or (cfg.model.name if cfg else "")
    if not name:
        raise ConfigError("no model named: pass --model NAME[@VERSION] or configure model.name")
    check_model_name(name, where="--model", error=ConfigError)
    if version:
        check_version(version, where="--model", error=ConfigError)
    results, disagreements = verify_targets(targets, name, version or None, deep=deep, verifier=verifier)
    ok = all(r.ok for r in results) and not disagreements
    if json_out:
        emit_json(
            {
                "ok": ok,
                "model": name,
                "deep": deep,
                "targets": _keyed(r.as_dict() for r in results),
                "disagreements": [str(d) for d in disagreements],
            }
        )
    else:
        verify_table(results, disagreements, deep=deep)
    if not ok:
        raise typer.Exit(1)


@app.command()
def sign(
    model: Path = typer.Option(..., "--model", help="The local artifact directory to sign."),
    key: Path = typer.Option(
        ...,
        "--key",
        envvar=SIGNING_KEY_ENV,
        help="EC private key (PEM), e.g. mounted from a secret store.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document for automation."),
) -> None:
    """Sign an artifact (OpenSSF model signing): writes model.sig inside it, covering every file."""
    from orchestrator.publish.sign import sign_verified
    from orchestrator.render.output import console, emit_json

    manifest, signature = sign_verified(model, key)
    if json_out:
        emit_json({"model": manifest.name, "version": manifest.version, "signature": str(signature)})
        return
    console.print(f"signed {manifest.name} {manifest.version}: {signature}", soft_wrap=True, highlight=False)


def _keyed(results: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-target results as one object keyed by the target (the cloud, or the ``--to`` URI), the
    shape every ``--json`` document gives a cloud (docs/cli.md)."""
    return {str(r["target"]): {k: v for k, v in r.items() if k != "target"} for r in results}
