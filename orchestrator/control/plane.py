"""The control plane's commands over one configuration, one state store and its routing backends.

See :mod:`orchestrator.control` for the shape every command has (probe, commit, reconcile).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from orchestrator.control import steps
from orchestrator.control.config import Config
from orchestrator.control.errors import LeaseHeld, StateCorrupt
from orchestrator.control.health.machine import MachineConfig, Verdict, drain
from orchestrator.control.health.probe import ProbeResult, short
from orchestrator.control.health.prober import EXPECTATION_DEADLINE_S, Prober
from orchestrator.control.health.record import CloudRecord
from orchestrator.control.reports import FailoverRefused, OperatorResult, RoundReport
from orchestrator.control.rollout.record import weight_caps
from orchestrator.control.rollout.takeover import continue_rollout
from orchestrator.control.routing import CloudInput, Decision, Demand, decide
from orchestrator.control.routing.backends import RoutingBackend
from orchestrator.control.routing.pricing import CostBreakdown
from orchestrator.control.routing.reconcile import BackendResult, Reconciler
from orchestrator.control.status import status_report
from orchestrator.control.store import HEALTH_JOB_LEASE, DesiredWeights, Lease, StateStore
from orchestrator.control.types import Flip, HealthState
from orchestrator.control.vantage.coordinator import Coordinator, VantageRound
from orchestrator.core.contract import CLOUDS
from orchestrator.core.errors import ConfigError, OrchestratorError

__all__ = ["LEASE_SLACK_S", "MAX_ONCE_SPACING_S", "ControlPlane"]

# Rounds of `health --once` are spaced like the watch loop's probes, but never longer than this:
# a cron job with a 30 s interval should still finish its round in seconds.
MAX_ONCE_SPACING_S = 1.0
# What the health-job lease covers beyond probing: the commit (the state's busy timeout) and the
# routing writes (a Route 53 call is bounded by its retry budget, about 10 s, and a reconciliation
# makes a few). Generous on purpose: the lease matters only when its holder died, and then the
# next scheduled run starts at most this much later than it could have.
LEASE_SLACK_S = 60.0
# An operator's --reason is a line in a table, in the flip history (kept in the state, which an
# object store rewrites whole at every commit) and in a Route 53 change comment (256 characters).
MAX_OPERATOR_REASON = 500


class ControlPlane:
    """The commands over one configuration, one state store and its routing backends. Not for
    use from several threads at once (give each thread its own); :meth:`close` when done."""

    def __init__(
        self,
        config: Config,
        *,
        store: StateStore,
        backends: Sequence[RoutingBackend],
        prober: Prober,
        costs: Mapping[str, CostBreakdown],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        vantage: Coordinator | None = None,
    ) -> None:
        """The plane over what it is given (:func:`orchestrator.control.wiring.open_plane` opens
        them from the configuration): the state ``store``, the routing ``backends``, the ``prober``
        of the configured endpoints and each cloud's expected cost per request (``costs``, cloud ->
        CostBreakdown); :meth:`close` closes the store, the backends and the prober. ``clock``
        stamps what is stored (unix seconds, shared with other processes); the waits between
        rounds are measured on ``monotonic``, which no clock step can move. ``vantage``: the
        vantage points (configuration's ``vantage`` section), or None for a lone health job."""
        self.config = config
        self.endpoints = config.endpoints()
        self.store = store
        self.backends = list(backends)
        self.vantage = vantage
        # The leader epoch backend writes carry (vantage points only; None: not leading, no write).
        self.fence: int | None = None
        self.reconciler = Reconciler(
            self.backends,
            self.endpoints,
            self.desired_for_backends,
            clock=clock,
            read_fence=lambda: self.fence,
        )
        self.prober = prober
        # The staged-rollout expectation applies only while the rollout record says one is active.
        self.prober.rollout_source = lambda: self.store.atomically(self.store.rollout)
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.rng = rng or random.Random()  # noqa: S311  # probe jitter, not cryptography
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        h = config.health
        self.machine_config = MachineConfig(
            unhealthy_threshold=h.unhealthy_threshold,
            healthy_threshold=h.healthy_threshold,
            hold_down_s=h.hold_down_s,
            max_hold_down_s=h.max_hold_down_s,
            startup_grace_s=h.startup_grace_s,
        )
        self.costs: dict[str, CostBreakdown] = dict(costs)

    def close(self) -> None:
        """Close the prober, the backends' workers and connections, and the state store."""
        self.prober.close()
        self.reconciler.close()
        if self.vantage is not None:
            self.vantage.close()
        for backend in self.backends:
            backend.close()
        self.store.close()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- state (inside a transaction) ------------------------------------------------------------
    def records(self) -> dict[str, CloudRecord]:
        """Every configured cloud's record as stored (drains applied); call inside a transaction."""
        stored = self.store.load_machines()
        records = {}
        for name in self.endpoints:
            try:
                records[name] = CloudRecord.from_dict(stored.get(name, {}))
            except ValueError as exc:
                raise StateCorrupt(
                    f"malformed state at machines.{name}.{exc}", uri=self.store.location
                ) from None
        for name, override in self.store.overrides().items():
            if (
                name in records
                and override.drained
                and records[name].machine.state is not HealthState.DRAINED
            ):
                records[name].machine, _ = drain(
                    records[name].machine, self.clock(), name, override.reason, override.actor
                )
        return records

    def save_records(self, records: dict[str, CloudRecord]) -> None:
        """Save every cloud's record; call inside a transaction."""
        self.store.save_machines({name: record.to_dict() for name, record in records.items()})

    def observe(self, records: dict[str, CloudRecord], results: dict[str, ProbeResult]) -> list[Flip]:
        """Feed one probe result per cloud into ``records`` (in place); the flips it caused."""
        window = self.config.health.latency_window
        flips = [records[n].observe(n, r, self.machine_config, window) for n, r in results.items()]
        return [flip for flip in flips if flip is not None]

    def commit_decision(self, weights: dict[str, int] | None, reason: str) -> dict[str, int] | None:
        """Save ``weights`` as the desired weights if they differ from the last; a panic (None)
        keeps the last ones, whatever they route to, rather than sending traffic nowhere.
        Returns the desired weights in force."""
        desired = self.store.desired()
        if weights is None:
            return desired.weights if desired else None
        if desired is None or desired.weights != weights:
            self.store.save_desired(weights, reason)
        return weights

    # -- routing -------------------------------------------------------------------------------
    def decide(self, records: dict[str, CloudRecord]) -> Decision:
        """The router's decision for these records (states, p95 latencies) and the configured
        capacities, bounds, costs and demand, with an active rollout's weight caps; see
        :func:`orchestrator.control.routing.decide`. Call inside a transaction."""
        inputs = []
        # A rollout in progress caps the clouds it is moving (orchestrator.control.rollout).
        caps = weight_caps(self.store.rollout())
        for name, record in sorted(records.items()):
            cloud = self.config.cloud(name)
            cap = caps.get(name, cloud.max_weight)
            inputs.append(
                CloudInput(
                    cloud=name,
                    state=record.machine.state,
                    p95_ms=record.p95_ms,
                    capacity_rps=cloud.capacity_rps,
                    cost_per_request=self.costs[name].total,
                    min_weight=min(cloud.min_weight, cap),
                    max_weight=min(cloud.max_weight, cap),
                )
            )
        traffic = self.config.routing.traffic
        return decide(inputs, Demand(traffic.requests_per_s, self.config.routing.latency_slo_ms))

    def reconcile(self, *, wait: float | None = None) -> list[BackendResult]:
        """Bring every backend to the committed decision (after the commit, never inside it), and
        record what each holds; see :mod:`orchestrator.control.routing.reconcile`. ``wait``: the longest
        to wait for the backends (None: until each is done); one still at work is reported
        pending, and recorded by the reconciliation that sees it finished."""
        results = self.reconciler.run(wait=wait)
        finished = [r.status() for r in results if not r.pending]
        if finished:
            # The statuses are for `status`; if they cannot be recorded, the next reconciliation will.
            with contextlib.suppress(OrchestratorError):
                self.store.record_backends(finished)
        return results

    def desired_for_backends(self) -> DesiredWeights | None:
        """The committed decision as every backend must hold it: the configured clouds' weights,
        and 0 for every other cloud key. A decision made before a cloud was removed from the
        configuration must not route to it, nor fail for want of its URL; and a backend that still
        holds a weight for a cloud no longer configured (decommissioned, or dead) is taken to 0."""
        if self.vantage is not None and self.fence is None:
            return None  # only the leader writes, and only under its epoch
        return self.routable_desired()

    def routable_desired(self) -> DesiredWeights | None:
        """:meth:`desired_for_backends` whoever asks (``status`` compares the backends with it)."""
        desired = self.store.desired()
        if desired is None:
            return None
        weights = {c: w for c, w in desired.weights.items() if c in self.endpoints}
        weights.update({c: 0 for c in CLOUDS if c not in self.endpoints})
        return replace(desired, weights=weights)

    # -- the health job --------------------------------------------------------------------------
    def lease_ttl(self, samples: int, *, watch: bool = False) -> float:
        """How long the health-job lease is taken for: the longest probing of ``samples`` samples
        (each within timeout_s, spaced as `health --once` spaces them, plus one wait for the
        buckets and one re-probe) and :data:`LEASE_SLACK_S` for the commit and the routing writes;
        for the watch, which renews it every round, also the longest wait between two rounds."""
        h = self.config.health
        spacing = min(h.interval_s, MAX_ONCE_SPACING_S) * (1 + h.jitter)
        probing = (samples + 1) * h.timeout_s + (samples - 1) * spacing + EXPECTATION_DEADLINE_S
        between = h.interval_s * (1 + h.jitter) if watch else 0.0
        return probing + between + LEASE_SLACK_S

    def health_round(self, *, apply: bool, samples: int | None = None) -> RoundReport:
        """``health --once``: take the job's lease, collect enough samples to apply the thresholds
        (no state transaction open), commit them in one short transaction, then (with ``apply``)
        reconcile the backends. LeaseHeld (exit 75) while another run holds the lease."""
        h = self.config.health
        samples = samples or max(h.unhealthy_threshold, h.healthy_threshold)
        if self.vantage is not None:
            self.vantage.require_id()
        lease = self.store.acquire_lease(HEALTH_JOB_LEASE, self.holder, self.lease_ttl(samples))
        try:
            self.store.atomically(self.records)  # a corrupt state fails before probing
            probes: dict[str, list[ProbeResult]] = {name: [] for name in self.endpoints}
            for i in range(samples):
                if i:
                    self.sleep(self._spacing(MAX_ONCE_SPACING_S))
                for name, result in self.prober.probe().items():
                    probes[name].append(result)
            report = self._commit(probes, lease, self.lease_ttl(1), "health check", apply=apply)
            return self._finish(report, apply=apply)
        finally:
            self._release(lease)

    def watch(
        self,
        *,
        apply: bool,
        stop: Callable[[], bool],
        on_round: Callable[[RoundReport], None],
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """``health --watch``: one probe per cloud every interval (with jitter), acting on every
        flip, holding the job's lease (LeaseHeld at once if another run holds it, or later if
        another took it over). A round that fails for any other reason is reported to
        ``on_error`` and the loop goes on."""
        ttl = self.lease_ttl(1, watch=True)
        if self.vantage is not None:
            self.vantage.require_id()
        lease = self.store.acquire_lease(HEALTH_JOB_LEASE, self.holder, ttl)
        try:
            self.store.atomically(self.records)  # a corrupt state fails now, not every round
            while not stop():
                started = self.monotonic()
                try:
                    probes = {name: [result] for name, result in self.prober.probe().items()}
                    report = self._commit(probes, lease, ttl, "health watch", apply=apply)
                    # The backends are waited for until the next round is due, no longer: one
                    # still at work goes on in the background, and a later round reports it.
                    due = max(0.0, self.config.health.interval_s - (self.monotonic() - started))
                    on_round(self._finish(report, apply=apply, wait=due))
                except LeaseHeld:
                    raise  # another run holds the job now: this one stops
                except OrchestratorError as exc:
                    (on_error or _ignore)(f"health round failed: {exc}")
                except Exception as exc:  # a loop survives any one round
                    (on_error or _ignore)(f"health round failed: {type(exc).__name__}: {short(str(exc))}")
                self.sleep(max(0.0, self._spacing() - (self.monotonic() - started)))
        finally:
            if self.vantage is not None and apply:
                self.vantage.release()
            self._release(lease)

    def _commit(
        self, probes: dict[str, list[ProbeResult]], lease: Lease, ttl: float, reason: str, *, apply: bool
    ) -> RoundReport:
        vantage: VantageRound | None = None
        if self.vantage is not None:  # outside any transaction: publish, read, the quorum, the lease
            vantage = self.vantage.round(probes, self.store.atomically(self.store.overrides), apply=apply)
            self.fence = vantage.fence
        seen = vantage.adjusted if vantage is not None else probes
        merged = vantage.overrides if vantage is not None else []
        report = self.store.atomically(lambda: steps.health_round(self, seen, lease, ttl, reason, merged))
        report.probes = probes  # what this point saw; the state machine took the quorum's view
        if vantage is not None:
            report.vantage = vantage.as_dict(self.clock())
            report.notes += vantage.notes(apply=apply)
        return report

    def _finish(self, report: RoundReport, *, apply: bool, wait: float | None = None) -> RoundReport:
        report.expected_version = self.prober.expected.version if self.prober.expected else None
        if self.prober.note:
            report.notes.append(self.prober.note)
        if apply and (self.vantage is None or self.fence is not None):
            report.backends = self.reconcile(wait=wait)
            report.applied = any(b.wrote for b in report.backends)
            # A rollout whose command died is finished or undone here (its continuation rule).
            if note := continue_rollout(self):
                report.notes.append(note)
        return report

    def _release(self, lease: Lease) -> None:
        with contextlib.suppress(OrchestratorError):  # it expires on its own
            self.store.release_lease(lease)

    def _spacing(self, cap: float | None = None) -> float:
        h = self.config.health
        base = h.interval_s if cap is None else min(h.interval_s, cap)
        return max(0.0, base * (1 + self.rng.uniform(-h.jitter, h.jitter)))

    # -- operator commands -----------------------------------------------------------------------
    def failover(
        self, cloud: str, *, to: str | None, reason: str, actor: str, dry_run: bool, force: bool
    ) -> OperatorResult:
        """Drain ``cloud``; refuse to drain the last cloud in rotation unless forced. Idempotent.

        Its share goes where the router sends it (the cost-optimal mix of the others), or with
        ``to`` entirely to that cloud, on top of the weights in effect. The next health round with
        ``--apply`` re-optimises by cost again. One short transaction, then the backends.
        ConfigError (a usage error) for an unknown cloud, ``to`` naming ``cloud`` itself, or a
        ``reason`` that is not one short printable line."""
        self._known(cloud, to)
        if to == cloud:
            raise ConfigError(f"--to {to}: that is the cloud being drained; name another, or leave --to out")
        if not (reason.isprintable() and 0 < len(reason) <= MAX_OPERATOR_REASON):
            raise ConfigError(
                f"--reason: one line of printable text, at most {MAX_OPERATOR_REASON} characters "
                f"(it is stored with the flip and shown in every status)"
            )
        result = self.store.atomically(
            lambda: steps.failover(
                self, cloud, to=to, reason=reason, actor=actor, dry_run=dry_run, force=force
            )
        )
        if dry_run:
            return result
        self._replicate(cloud)
        backends = self.reconcile_as_operator()
        return OperatorResult(
            result.flips, result.decision, result.weights, any(b.wrote for b in backends), backends
        )

    def failback(self, cloud: str, *, actor: str, reason: str = "failback") -> OperatorResult:
        """Return a drained cloud to rotation only if it passes ``healthy_threshold`` probes now.
        The probes run before the transaction, which checks the cloud is still drained."""
        self._known(cloud)
        if not self._drained(cloud):
            decision = self.store.atomically(lambda: self.decide(self.records()))
            return OperatorResult([], decision, decision.weights, applied=False)
        results = []
        for i in range(self.config.health.healthy_threshold):
            if i:
                self.sleep(self._spacing(MAX_ONCE_SPACING_S))
            result = self.prober.probe([cloud])[cloud]
            if result.verdict is not Verdict.OK:
                raise FailoverRefused(f"{cloud} is not healthy now, so it stays drained: {result.reason}")
            results.append(result)
        outcome = self.store.atomically(
            lambda: steps.failback(self, cloud, results, actor=actor, reason=reason)
        )
        if not outcome.flips:
            return outcome
        self._replicate(cloud)
        backends = self.reconcile_as_operator()
        return OperatorResult(
            outcome.flips, outcome.decision, outcome.weights, any(b.wrote for b in backends), backends
        )

    def route(self, *, apply: bool) -> tuple[Decision, bool, list[BackendResult]]:
        """The decision from the recorded state (no probe); with ``apply``, committed and put into
        effect: (decision, whether a backend was rewritten, the backends' results)."""

        def step() -> Decision:
            decision = self.decide(self.records())
            if apply:
                self.commit_decision(decision.weights, "orchestrator route")
            return decision

        decision = self.store.atomically(step)
        if not apply:
            return decision, False, []
        backends = self.reconcile_as_operator()
        return decision, any(b.wrote for b in backends), backends

    def reconcile_as_operator(self) -> list[BackendResult]:
        """An operator's reconciliation: with vantage points, under the current leader's epoch
        (:meth:`~orchestrator.control.vantage.coordinator.Coordinator.operator_fence`)."""
        if self.vantage is not None:
            self.fence = self.vantage.operator_fence()
        return self.reconcile()

    def _replicate(self, cloud: str) -> None:
        """With vantage points, copy ``cloud``'s override to every point's state (best effort:
        the others also learn it from the observations)."""
        if self.vantage is not None:
            override = self.store.atomically(self.store.overrides).get(cloud)
            if override is not None:
                self.vantage.replicate_override(override, skip=self.store.location)

    def status(self) -> dict[str, Any]:
        """What `orchestrator status` prints (see :func:`orchestrator.control.status.status_report`)."""
        return status_report(self)

    def _drained(self, cloud: str) -> bool:
        return self.store.atomically(lambda: self.records()[cloud].machine.state is HealthState.DRAINED)

    def _known(self, *clouds: str | None) -> None:
        for cloud in clouds:
            if cloud is not None and cloud not in self.endpoints:
                raise ConfigError(
                    f"unknown cloud {cloud!r}; configured: {', '.join(self.endpoints)}"
                    + (f" ({self.config.source})" if self.config.source else "")
                )


def _ignore(_: str) -> None:
    pass
