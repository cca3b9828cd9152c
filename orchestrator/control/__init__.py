"""The control plane: probes, state machines, routing decisions, and the operator's overrides.

This module wires the pure parts (:mod:`orchestrator.health.state`, :mod:`orchestrator.routing`)
to the edges (the prober, the state store, the routing backends). Every command (``health``,
``failover``, ``failback``, ``route``, ``status``) and the scheduled job are methods here; the CLI
only parses options and prints. The clock, the sleep and the HTTP transport are injected, so rounds
are reproducible in tests.

Every command has the same shape, so that one misbehaving cloud never stops the others' failover
and an operator never waits behind a probe:

1. **probe** with no state transaction open (:class:`~orchestrator.health.prober.Prober`: all
   clouds at once, each within ``health.timeout_s``, any answer a verdict);
2. **decide and commit** in one short transaction (:meth:`StateStore.atomically`, with a body
   from :mod:`orchestrator.control.steps`): read the machines and overrides, feed the
   observations, record the flips, decide, and commit the decision as the desired weights. No
   probe, SDK call or backend write happens inside it, so SQLite's write lock is held for
   milliseconds; an object store re-runs just this step (no probes) when another command
   committed in between;
3. **apply after commit** (:class:`~orchestrator.routing.reconcile.Reconciler`): each backend is
   read back and rewritten when it differs from the committed decision, independently of the
   others, each in its own worker (the watch waits for them only until its next round is due).
   A backend that fails is reported stale (exit code :data:`EXIT_STALE_BACKEND`) and retried by
   the next reconciliation; the round's health state is committed regardless.

``health --once`` and ``health --watch`` hold the state's health-job lease (:data:`HEALTH_JOB_LEASE`)
while they run, renewed inside every commit (so a run that lost it commits nothing), so scheduled
runs never pile up: a second one exits with :class:`~orchestrator.core.errors.LeaseHeld` (exit 75).
"""

from orchestrator.control.plane import LEASE_SLACK_S, MAX_ONCE_SPACING_S, ControlPlane, open_backends
from orchestrator.control.reports import (
    EXIT_STALE_BACKEND,
    FailoverRefused,
    OperatorResult,
    RoundReport,
    current_user,
    flip_dict,
    move_share,
)
from orchestrator.health.record import CloudRecord

__all__ = [
    "EXIT_STALE_BACKEND",
    "LEASE_SLACK_S",
    "MAX_ONCE_SPACING_S",
    "CloudRecord",
    "ControlPlane",
    "FailoverRefused",
    "OperatorResult",
    "RoundReport",
    "current_user",
    "flip_dict",
    "move_share",
    "open_backends",
]
