"""The bodies of the control plane's transactions: what a command decides, with no I/O but the store's.

Each function here runs inside one :meth:`StateStore.atomically` step of
:class:`~orchestrator.control.plane.ControlPlane` (which probes before it and reconciles the
backends after it), so it may run more than once on an object store: it reads the state, decides
and writes the state, and nothing else. It raises to undo the whole step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.control.health.machine import drain, undrain
from orchestrator.control.health.probe import ProbeResult
from orchestrator.control.reports import FailoverRefused, OperatorResult, RoundReport, move_share
from orchestrator.control.store import Lease, Override
from orchestrator.control.types import Flip, HealthState

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane

__all__ = ["failback", "failover", "health_round"]


def health_round(
    plane: ControlPlane,
    probes: dict[str, list[ProbeResult]],
    lease: Lease,
    ttl: float,
    reason: str,
    overrides: Sequence[Override] = (),
) -> RoundReport:
    """The round's one transaction: fence on the lease, take in the ``overrides`` other vantage
    points know and this one does not (newer per cloud), feed the samples in order, record the
    flips, decide, commit the decision. No I/O but the store's."""
    plane.store.renew_lease(lease, ttl)
    local = plane.store.overrides()
    for o in overrides:  # the newest override of each cloud wins, wherever it was made
        if o.cloud in plane.endpoints and (o.cloud not in local or o.at > local[o.cloud].at):
            plane.store.set_override(o.cloud, drained=o.drained, reason=o.reason, actor=o.actor, at=o.at)
    records = plane.records()
    flips: list[Flip] = []
    for o in overrides:  # a failback made elsewhere (its probes passed there): back in rotation here
        record = records.get(o.cloud)
        if not o.drained and record is not None and record.machine.state is HealthState.DRAINED:
            record.machine, flip = undrain(record.machine, plane.clock(), o.cloud, o.reason, o.actor)
            flips += [flip] if flip else []
    for i in range(max((len(p) for p in probes.values()), default=0)):
        flips += plane.observe(records, {n: p[i] for n, p in probes.items() if i < len(p)})
    plane.store.record_flips(flips)
    plane.save_records(records)
    decision = plane.decide(records)
    weights = plane.commit_decision(decision.weights, _why(reason, flips))
    return RoundReport(records, probes, flips, decision, False, weights, None)


def failover(
    plane: ControlPlane, cloud: str, *, to: str | None, reason: str, actor: str, dry_run: bool, force: bool
) -> OperatorResult:
    """Drain ``cloud`` and commit the decision that follows (with ``to``, the drained share moved
    there on top of the weights in effect); with ``dry_run``, decide only. FailoverRefused for
    the last cloud in rotation (unless ``force``) or a ``to`` that is not in rotation."""
    records = plane.records()
    before = plane.store.desired()
    machine, flip = drain(records[cloud].machine, plane.clock(), cloud, reason, actor)
    records[cloud].machine = machine
    others = [n for n, r in records.items() if n != cloud and r.machine.state.routable]
    if flip is not None and not others and not force:
        raise FailoverRefused(
            f"refusing to drain {cloud}: it is the last cloud in rotation "
            f"({', '.join(f'{n} {r.machine.state}' for n, r in records.items() if n != cloud)}); "
            "pass --force to drain it anyway"
        )
    if to is not None and not records[to].machine.state.routable:
        raise FailoverRefused(f"--to {to}: {to} is {records[to].machine.state}, not in rotation")
    decision = plane.decide(records)
    weights = decision.weights
    if to is not None and flip is not None:
        weights = move_share(before.weights if before else decision.weights or {}, cloud, to)
    flips = [flip] if flip is not None else []
    if dry_run:
        return OperatorResult(flips, decision, weights, applied=False)
    if flip is not None:
        plane.store.set_override(cloud, drained=True, reason=reason, actor=actor)
        plane.store.record_flips(flips)
        plane.save_records(records)
    weights = plane.commit_decision(weights, f"failover from {cloud} by {actor}: {reason}")
    return OperatorResult(flips, decision, weights, applied=False)


def failback(
    plane: ControlPlane, cloud: str, results: list[ProbeResult], *, actor: str, reason: str
) -> OperatorResult:
    """Return ``cloud`` to rotation with the probes that passed (``results``, taken before the
    transaction) and commit the decision; nothing if someone else returned it meanwhile."""
    records = plane.records()
    if records[cloud].machine.state is not HealthState.DRAINED:  # someone else failed it back
        decision = plane.decide(records)
        return OperatorResult([], decision, decision.weights, applied=False)
    for result in results:
        plane.observe(records, {cloud: result})
    records[cloud].machine, flip = undrain(records[cloud].machine, plane.clock(), cloud, reason, actor)
    plane.store.set_override(cloud, drained=False, reason=reason, actor=actor)
    flips = [flip] if flip else []
    plane.store.record_flips(flips)
    plane.save_records(records)
    decision = plane.decide(records)
    weights = plane.commit_decision(decision.weights, f"failback of {cloud} by {actor}")
    return OperatorResult(flips, decision, weights, applied=False)


def _why(reason: str, flips: list[Flip]) -> str:
    if not flips:
        return reason
    return f"{reason}: " + "; ".join(f"{f.cloud} {f.old}→{f.new} ({f.reason})" for f in flips)
