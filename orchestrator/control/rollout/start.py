"""Starting a rollout: the checks before anything moves, and its first record (:mod:`.runner` runs it)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from orchestrator.control.rollout.plan import RolloutPlan
from orchestrator.control.rollout.record import is_active
from orchestrator.control.rollout.runner import Rollout
from orchestrator.control.rollout.takeover import longest_step_s
from orchestrator.control.wiring import open_targets
from orchestrator.core.errors import ConfigError
from orchestrator.publish.channels import current_versions, verified_everywhere
from orchestrator.publish.sync import Target

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane

__all__ = ["start_rollout"]


def start_rollout(
    plane: ControlPlane,
    version: str,
    plan: RolloutPlan,
    *,
    holder: str,
    deep: bool = False,
    verifier: Any = None,
) -> Rollout:
    """Record a new rollout of ``version`` (stage 0, ``move``) after checking: no rollout is active,
    every cloud's channel names one same version (the baseline) other than ``version``, and
    ``version`` is complete and verified in every cloud (VersionRefused, exit 6, otherwise).
    ConfigError (exit 2) for the others, naming the clouds, and for a plan whose
    ``takeover_after_s`` does not exceed a probe interval plus the longest step this configuration
    allows (the health job would take over a live command)."""
    step = longest_step_s(plane.config.health.timeout_s, len(plane.config.clouds))
    if plan.takeover_after_s <= plan.probe_interval_s + step:
        raise ConfigError(
            f"rollout plan: takeover_after_s ({plan.takeover_after_s:g}) must exceed probe_interval_s "
            f"plus the longest step with health.timeout_s {plane.config.health.timeout_s:g} and "
            f"{len(plane.config.clouds)} clouds ({plan.probe_interval_s + step:g} s): the health job "
            "would take over a command still running"
        )
    targets = open_targets(plane.config)
    try:
        record = _new_record(plane, targets, version, plan, holder=holder, deep=deep, verifier=verifier)
    except BaseException:
        for target in targets.values():
            target.storage.close()
        raise
    return Rollout(plane, holder=holder, targets=targets, record=record)


def _new_record(
    plane: ControlPlane,
    targets: dict[str, Target],
    version: str,
    plan: RolloutPlan,
    *,
    holder: str,
    deep: bool,
    verifier: Any,
) -> dict[str, Any]:
    config = plane.config
    name, channel = config.model.name, config.model.channel
    current = plane.store.atomically(plane.store.rollout)
    if is_active(current):
        assert current is not None
        raise ConfigError(
            f"a rollout of {current.get('version')} is in progress (status {current.get('status')}); "
            "wait for it, or `orchestrator rollout --abort`"
        )
    pointers = current_versions(list(targets.values()), name, channel=channel)
    versions = {c: (p.version if p else None) for c, p in pointers.items()}
    if len(set(versions.values())) != 1 or None in versions.values():
        shown = ", ".join(f"{c}: {v or 'none'}" for c, v in versions.items())
        raise ConfigError(
            f"the clouds' {channel} pointers must name one version to roll out from ({shown}); "
            "`orchestrator promote` or `rollback --to` first"
        )
    baseline = next(iter(versions.values()))
    assert baseline is not None
    if baseline == version:
        raise ConfigError(f"every cloud's {channel} already names {version}: nothing to roll out")
    verified_everywhere(list(targets.values()), name, version, deep=deep, verifier=verifier)
    order = plan.resolved_order(list(targets), {c: b.total for c, b in plane.costs.items()})
    now = plane.clock()
    record: dict[str, Any] = {
        "id": secrets.token_hex(6),
        "model": name,
        "channel": channel,
        "version": version,
        "baseline": baseline,
        "order": order,
        "plan": plan.model_dump(mode="json"),
        "status": "running",
        "stage": 0,
        "phase": "move",
        "moved": [],
        "caps": {},
        "before": {},
        "probes": 0,
        "probe_failures": [],
        "verdicts": [],
        "holder": holder,
        "heartbeat_at": now,
        "started_at": now,
        "phase_started_at": now,
        "finished_at": None,
        "reason": None,
        "failed_at": None,
        "rolled_back_at": None,
    }

    def create() -> None:
        if is_active(plane.store.rollout()):
            raise ConfigError("another rollout started meanwhile; see `orchestrator status`")
        plane.store.save_rollout(record)

    plane.store.atomically(create)
    return record
