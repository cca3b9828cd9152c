"""The control plane: probes, state machines, routing decisions, and the operator's overrides.

This module wires the pure parts (:mod:`orchestrator.health.state`, :mod:`orchestrator.routing`)
to the edges (HTTP probes, the state store, the routing backend). Every command (``health``,
``failover``, ``failback``, ``route``, ``status``) and the scheduled job are methods here; the CLI
only parses options and prints. The clock, the sleep, the HTTP client and the random source are
injected, so rounds are reproducible in tests.

State between runs lives in the store: each cloud's machine (counters, hold-down, flaps), its recent
canary latencies and last probe, the operator's drains, the flips, and the last applied weights.
Each round is one atomic step of the store (``StateStore.atomically``), from reading the machines
to writing them back. Two jobs running at once (cron overlap, two clouds' schedulers) never lose
each other's updates: with SQLite the second waits for the first; with an object store a job whose
reads went stale re-runs its whole step (probes included) on the fresh state. Re-running is safe
because applying a set of weights is idempotent, and given the same probes and state the decision
is deterministic.
"""

from __future__ import annotations

import getpass
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from orchestrator.config import Config
from orchestrator.errors import OrchestratorError
from orchestrator.health.expect import expected_model, storages
from orchestrator.health.probe import Expectation, ProbeResult, probe
from orchestrator.health.state import Machine, MachineConfig, drain, observe, undrain
from orchestrator.pricing import CostBreakdown, Traffic, cost_per_request, load_prices
from orchestrator.routing import CloudInput, Decision, Demand, decide
from orchestrator.routing.backends import FanOut, RoutingBackend, open_backend
from orchestrator.state import StateStore
from orchestrator.types import Flip, HealthState

__all__ = [
    "CloudRecord",
    "ControlPlane",
    "FailoverRefused",
    "OperatorResult",
    "RoundReport",
    "current_user",
    "flip_dict",
    "move_share",
]

# Rounds of `health --once` are spaced like the watch loop's probes, but never longer than this:
# a cron job with a 30 s interval should still finish its round in seconds.
MAX_ONCE_SPACING_S = 1.0
# How long an expectation (LATEST pointer + canary) is reused by the watch loop before re-reading
# the buckets: a rollout is noticed within this, without three bucket reads per probe. An endpoint
# serving a version the expectation does not know makes it re-read sooner, at most this often:
EXPECTATION_TTL_S = 10.0
EXPECTATION_MIN_AGE_S = 1.0


class FailoverRefused(OrchestratorError):
    """A failover or failback that would be unsafe; the message says why and what would allow it."""


def current_user() -> str:
    try:
        return os.environ.get("ORCHESTRATOR_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass
class CloudRecord:
    """One cloud as the control plane remembers it between runs."""

    machine: Machine = field(default_factory=Machine)
    latencies_ms: list[float] = field(default_factory=list)
    last_probe: dict[str, Any] | None = None

    @property
    def p95_ms(self) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine.to_dict(),
            "latencies_ms": self.latencies_ms,
            "last_probe": self.last_probe,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CloudRecord:
        return cls(
            machine=Machine.from_dict(data.get("machine", {})),
            latencies_ms=list(data.get("latencies_ms", [])),
            last_probe=data.get("last_probe"),
        )


@dataclass(frozen=True)
class OperatorResult:
    """What a failover or failback did: its flips, the router's view, the weights put into effect."""

    flips: list[Flip]
    decision: Decision
    weights: dict[str, int] | None
    applied: bool


def move_share(weights: dict[str, int], source: str, dest: str) -> dict[str, int]:
    """``weights`` with ``source``'s whole share added to ``dest`` (the total is unchanged)."""
    moved = dict(weights)
    moved[dest] = moved.get(dest, 0) + moved.get(source, 0)
    moved[source] = 0
    return moved


@dataclass
class RoundReport:
    records: dict[str, CloudRecord]
    probes: dict[str, list[ProbeResult]]
    flips: list[Flip]
    decision: Decision
    applied: bool
    weights: dict[str, int] | None
    expected_version: str | None

    @property
    def exit_code(self) -> int:
        """0: every cloud in rotation is healthy; 1: degraded but serving; 2: no healthy cloud."""
        states = [
            r.machine.state for r in self.records.values() if r.machine.state is not HealthState.DRAINED
        ]
        if not any(s is HealthState.HEALTHY for s in states):
            return 2
        return 0 if all(s is HealthState.HEALTHY for s in states) else 1


class ControlPlane:
    def __init__(
        self,
        config: Config,
        *,
        store: StateStore,
        backend: RoutingBackend | None = None,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.endpoints = config.endpoints()
        self.store = store
        self.backend = backend or _backend(config)
        self.client = client or httpx.Client()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311  # probe jitter, not cryptography
        self.buckets = storages(config)
        h = config.health
        self.machine_config = MachineConfig(
            unhealthy_threshold=h.unhealthy_threshold,
            healthy_threshold=h.healthy_threshold,
            hold_down_s=h.hold_down_s,
            max_hold_down_s=h.max_hold_down_s,
            startup_grace_s=h.startup_grace_s,
        )
        self._expectation: tuple[float, Expectation] | None = None
        prices = load_prices({name: cloud.price for name, cloud in config.clouds.items() if cloud.price})
        t = config.routing.traffic
        traffic = Traffic(t.requests_per_s, t.request_bytes, t.response_bytes, t.cpu_ms_per_request / 1e3)
        self.costs: dict[str, CostBreakdown] = {
            name: cost_per_request(
                name, prices, traffic, cloud.size.vcpu, cloud.size.memory_gib, cloud.size.concurrency
            )
            for name, cloud in config.clouds.items()
        }

    def close(self) -> None:
        self.client.close()
        self.backend.close()
        self.store.close()
        for bucket in self.buckets.values():
            bucket.close()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- probing -------------------------------------------------------------------------------
    def expectation(self, *, refresh: bool = False) -> Expectation:
        """What the endpoints must serve (a rollout's previous version included, see
        :mod:`orchestrator.health.expect`), re-read from the buckets every EXPECTATION_TTL_S, or
        now with ``refresh``."""
        now = self.clock()
        cached = self._expectation
        if cached is None or refresh or now - cached[0] > EXPECTATION_TTL_S:
            self._expectation = cached = (now, expected_model(self.config, self.buckets, self.client))
        return cached[1]

    def probe_all(self, clouds: list[str] | None = None) -> dict[str, ProbeResult]:
        names = clouds or list(self.endpoints)
        results = self._probe(names, self.expectation())
        # An endpoint serving a version we do not expect may have followed a pointer that moved
        # since we last read it: re-read (at most every EXPECTATION_MIN_AGE_S) and probe it again.
        unknown = [n for n, r in results.items() if _unexpected(r, self.expectation())]
        if unknown and self._expectation and self.clock() - self._expectation[0] >= EXPECTATION_MIN_AGE_S:
            before = self.expectation().version
            if self.expectation(refresh=True).version != before:
                results.update(self._probe(unknown, self.expectation()))
        return results

    def _probe(self, names: list[str], expect: Expectation) -> dict[str, ProbeResult]:
        timeout = self.config.health.timeout_s
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="probe") as pool:
            results = pool.map(
                lambda n: probe(
                    self.client, n, self.endpoints[n], expect, timeout_s=timeout, clock=self.clock
                ),
                names,
            )
            return dict(zip(names, results, strict=True))

    def _spacing(self, cap: float | None = None) -> float:
        h = self.config.health
        base = h.interval_s if cap is None else min(h.interval_s, cap)
        return max(0.0, base * (1 + self.rng.uniform(-h.jitter, h.jitter)))

    # -- state ---------------------------------------------------------------------------------
    def _records(self) -> dict[str, CloudRecord]:
        stored = self.store.load_machines()
        records = {name: CloudRecord.from_dict(stored.get(name, {})) for name in self.endpoints}
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

    def _save(self, records: dict[str, CloudRecord]) -> None:
        self.store.save_machines({name: record.to_dict() for name, record in records.items()})

    def _observe(self, records: dict[str, CloudRecord], results: dict[str, ProbeResult]) -> list[Flip]:
        flips = []
        window = self.config.health.latency_window
        for name, result in results.items():
            record = records[name]
            record.machine, flip = observe(
                record.machine, result.observation, result.at, self.machine_config, name
            )
            if result.canary_ms is not None:
                record.latencies_ms = [*record.latencies_ms, result.canary_ms][-window:]
            record.last_probe = {
                "at": result.at,
                "verdict": result.verdict.value,
                "reason": result.reason,
                "served_version": result.served_version,
                "latency_ms": result.latency_ms,
            }
            if flip is not None:
                flips.append(flip)
        return flips

    # -- routing -------------------------------------------------------------------------------
    def decide(self, records: dict[str, CloudRecord]) -> Decision:
        inputs = []
        for name, record in sorted(records.items()):
            cloud = self.config.cloud(name)
            inputs.append(
                CloudInput(
                    cloud=name,
                    state=record.machine.state,
                    p95_ms=record.p95_ms,
                    capacity_rps=cloud.capacity_rps,
                    cost_per_request=self.costs[name].total,
                    min_weight=cloud.min_weight,
                    max_weight=cloud.max_weight,
                )
            )
        traffic = self.config.routing.traffic
        return decide(inputs, Demand(traffic.requests_per_s, self.config.routing.latency_slo_ms))

    def apply(self, weights: dict[str, int] | None, reason: str) -> tuple[bool, dict[str, int] | None]:
        """Put ``weights`` into effect if they differ from the last applied; None (a panic) keeps
        the last applied weights, whatever they route to, rather than sending traffic nowhere."""
        last = self.store.last_weights()
        if weights is None:
            return False, last.weights if last else None
        if last is not None and last.weights == weights:
            return False, weights
        self.backend.apply(weights, self.endpoints, reason=reason)
        self.store.save_weights(weights, reason)
        return True, weights

    # -- commands ------------------------------------------------------------------------------
    def health_round(self, *, apply: bool, samples: int | None = None) -> RoundReport:
        """``health --once``: enough samples to apply the thresholds, then (optionally) re-route."""
        h = self.config.health
        samples = samples or max(h.unhealthy_threshold, h.healthy_threshold)
        return self.store.atomically(lambda _: self._health_round(apply=apply, samples=samples))

    def _health_round(self, *, apply: bool, samples: int) -> RoundReport:
        records = self._records()
        probes: dict[str, list[ProbeResult]] = {name: [] for name in records}
        flips: list[Flip] = []
        for i in range(samples):
            if i:
                self.sleep(self._spacing(MAX_ONCE_SPACING_S))
            results = self.probe_all()
            for name, result in results.items():
                probes[name].append(result)
            flips += self._observe(records, results)
        return self._finish(records, probes, flips, apply=apply, reason="health check")

    def _finish(
        self,
        records: dict[str, CloudRecord],
        probes: dict[str, list[ProbeResult]],
        flips: list[Flip],
        *,
        apply: bool,
        reason: str,
    ) -> RoundReport:
        self.store.record_flips(flips)
        self._save(records)
        decision = self.decide(records)
        applied, weights = (
            self.apply(decision.weights, _why(reason, flips)) if apply else (False, decision.weights)
        )
        return RoundReport(records, probes, flips, decision, applied, weights, self.expectation().version)

    def watch(
        self, *, apply: bool, stop: Callable[[], bool], on_round: Callable[[RoundReport], None]
    ) -> None:
        """``health --watch``: one probe per cloud every interval (with jitter), acting on every flip."""
        while not stop():
            started = self.clock()
            report = self.store.atomically(lambda _: self._watch_round(apply=apply))
            on_round(report)
            self.sleep(max(0.0, self._spacing() - (self.clock() - started)))

    def _watch_round(self, *, apply: bool) -> RoundReport:
        records = self._records()
        results = self.probe_all()
        flips = self._observe(records, results)
        # apply() calls the backend only when the weights change, so this is cheap per round.
        return self._finish(
            records, {n: [r] for n, r in results.items()}, flips, apply=apply, reason="health watch"
        )

    def failover(
        self, cloud: str, *, to: str | None, reason: str, actor: str, dry_run: bool, force: bool
    ) -> OperatorResult:
        """Drain ``cloud`` (see :meth:`_failover`), as one atomic step of the state."""
        return self.store.atomically(
            lambda _: self._failover(cloud, to=to, reason=reason, actor=actor, dry_run=dry_run, force=force)
        )

    def _failover(
        self, cloud: str, *, to: str | None, reason: str, actor: str, dry_run: bool, force: bool
    ) -> OperatorResult:
        """Drain ``cloud``; refuse to drain the last cloud in rotation unless forced. Idempotent.

        Its share goes where the router sends it (the cost-optimal mix of the others), or with
        ``to`` entirely to that cloud, on top of the weights in effect. The next health round with
        ``--apply`` re-optimises by cost again.
        """
        self._known(cloud, to)
        with self.store.transaction():
            records = self._records()
            before = self.store.last_weights()
            machine, flip = drain(records[cloud].machine, self.clock(), cloud, reason, actor)
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
            decision = self.decide(records)
            weights = decision.weights
            if to is not None and flip is not None:
                weights = move_share(before.weights if before else decision.weights or {}, cloud, to)
            flips = [flip] if flip is not None else []
            if dry_run:
                return OperatorResult(flips, decision, weights, applied=False)
            if flip is not None:
                self.store.set_override(cloud, drained=True, reason=reason, actor=actor)
                self.store.record_flips(flips)
                self._save(records)
            applied, _ = self.apply(weights, f"failover from {cloud} by {actor}: {reason}")
            return OperatorResult(flips, decision, weights, applied)

    def failback(self, cloud: str, *, actor: str, reason: str = "failback") -> OperatorResult:
        """Return a drained cloud to rotation (see :meth:`_failback`), as one atomic step of the state."""
        return self.store.atomically(lambda _: self._failback(cloud, actor=actor, reason=reason))

    def _failback(self, cloud: str, *, actor: str, reason: str) -> OperatorResult:
        """Return a drained cloud to rotation only if it passes ``healthy_threshold`` probes now."""
        self._known(cloud)
        h = self.config.health
        with self.store.transaction():
            records = self._records()
            if records[cloud].machine.state is not HealthState.DRAINED:
                decision = self.decide(records)
                return OperatorResult([], decision, decision.weights, applied=False)
            for i in range(h.healthy_threshold):
                if i:
                    self.sleep(self._spacing(MAX_ONCE_SPACING_S))
                result = self.probe_all([cloud])[cloud]
                self._observe(records, {cloud: result})
                if result.verdict.value != "ok":
                    raise FailoverRefused(f"{cloud} is not healthy now, so it stays drained: {result.reason}")
            records[cloud].machine, flip = undrain(records[cloud].machine, self.clock(), cloud, reason, actor)
            self.store.set_override(cloud, drained=False, reason=reason, actor=actor)
            flips = [flip] if flip else []
            self.store.record_flips(flips)
            self._save(records)
            decision = self.decide(records)
            applied, _ = self.apply(decision.weights, f"failback of {cloud} by {actor}")
            return OperatorResult(flips, decision, decision.weights, applied)

    def route(self, *, apply: bool) -> tuple[Decision, bool]:
        def step(_: StateStore) -> tuple[Decision, bool]:
            decision = self.decide(self._records())
            if not apply:
                return decision, False
            applied, _weights = self.apply(decision.weights, "orchestrator route")
            return decision, applied

        return self.store.atomically(step)

    def status(self) -> dict[str, Any]:
        records = self._records()
        decision = self.decide(records)
        last = self.store.last_weights()
        try:
            in_effect = self.backend.current()
        except OrchestratorError as exc:
            in_effect = {"error": str(exc)}  # type: ignore[dict-item]
        return {
            "clouds": {
                name: {
                    "state": record.machine.state.value,
                    "reason": record.machine.last_reason,
                    "hold_until": record.machine.hold_until or None,
                    "flaps": record.machine.flaps,
                    "last_probe": record.last_probe,
                    "p95_ms": record.p95_ms,
                    "served_version": (record.last_probe or {}).get("served_version"),
                    "weight": (last.weights.get(name) if last else None),
                    "cost_per_million_usd": round(self.costs[name].total * 1e6, 4),
                }
                for name, record in records.items()
            },
            "last_applied": {"weights": last.weights, "at": last.at, "reason": last.reason} if last else None,
            "in_effect": in_effect,
            "decision": decision.as_dict(),
            "flips": [flip_dict(f) for f in self.store.recent_flips(limit=20)],
        }

    def _known(self, *clouds: str | None) -> None:
        for cloud in clouds:
            if cloud is not None and cloud not in self.endpoints:
                raise FailoverRefused(f"unknown cloud {cloud!r}; configured: {', '.join(self.endpoints)}")


def _backend(config: Config) -> RoutingBackend:
    routing = config.routing
    backends = []
    for kind in routing.backends:
        if kind == "route53" and routing.route53 is not None:
            settings = {k: str(v) for k, v in routing.route53.model_dump(exclude_none=True).items()}
            backends.append(open_backend("route53", settings))
        else:
            backends.append(open_backend("file", {"path": str(routing.file.path)}))
    return backends[0] if len(backends) == 1 else FanOut(backends)


def _unexpected(result: ProbeResult, expect: Expectation) -> bool:
    """The endpoint answered with a version that ``expect`` neither wants nor tolerates."""
    served = result.served_version
    known = {expect.version, expect.previous.version if expect.previous else None}
    return served is not None and expect.version is not None and served not in known


def _why(reason: str, flips: list[Flip]) -> str:
    if not flips:
        return reason
    return f"{reason}: " + "; ".join(f"{f.cloud} {f.old}→{f.new} ({f.reason})" for f in flips)


def flip_dict(flip: Flip) -> dict[str, Any]:
    return {
        "cloud": flip.cloud,
        "at": flip.at,
        "old": flip.old.value,
        "new": flip.new.value,
        "reason": flip.reason,
        "actor": flip.actor,
    }
