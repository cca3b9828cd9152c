"""Which buckets a publishing command talks to: clouds named in ``orchestrator.yaml``, or URIs given
directly. The configuration is the control plane's; publishing (:mod:`orchestrator.publish`) itself
takes the targets, not the configuration."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.control.config import Config, load_config
from orchestrator.core.contract import CLOUDS
from orchestrator.core.errors import ConfigError
from orchestrator.core.storage import open_storage
from orchestrator.publish.sync import Target

__all__ = ["parse_clouds", "resolve_targets"]


def parse_clouds(value: str | None) -> list[str] | None:
    """``aws,gcp`` → ["aws", "gcp"]; an unknown name is a ConfigError naming it."""
    if not value:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if unknown := [n for n in names if n not in CLOUDS]:
        raise ConfigError(f"--clouds: unknown cloud(s) {', '.join(unknown)}; use {', '.join(CLOUDS)}")
    return names


def resolve_targets(
    *, config_path: str | None, clouds: str | None, to: Sequence[str] | None
) -> tuple[list[Target], Config | None]:
    """Targets from ``--to`` URIs (no config needed) or from the config's clouds (all, or ``--clouds``)."""
    if to and clouds:
        raise ConfigError("--to and --clouds are exclusive: name targets one way")
    if to:
        config = _maybe_config(config_path)
        return [Target(name=uri, storage=open_storage(uri)) for uri in to], config
    config = load_config(config_path)
    names = parse_clouds(clouds) or list(config.clouds)
    targets = []
    for name in names:
        cloud = config.cloud(name)
        if cloud.storage is None:
            raise ConfigError(f"{config.source or 'configuration'}: clouds.{name}.storage is missing")
        targets.append(
            Target(name=name, storage=open_storage(cloud.storage, settings=cloud.storage_settings))
        )
    return targets, config


def _maybe_config(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except ConfigError:
        if path is not None:  # asked for explicitly: its errors matter
            raise
        return None
