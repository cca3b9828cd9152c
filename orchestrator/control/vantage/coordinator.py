"""A vantage point's part of a health round: publish, read the others, the quorum view, the lease.

:class:`Coordinator` is what :class:`~orchestrator.control.plane.ControlPlane` calls when the
configuration has a ``vantage`` section (see :mod:`orchestrator.control.vantage` for the round).
Every read and write of another point's location is bounded: all of them run at once and the
round waits at most ``vantage.read_timeout_s`` for them; a point that has not answered by then
counts as unreachable this round (its request finishes, or fails, on its own).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from orchestrator.control.config_vantage import VantageConfig
from orchestrator.control.health.probe import ProbeResult, short
from orchestrator.control.store.base import Override
from orchestrator.control.vantage.lease import LeaderLease, Leadership
from orchestrator.control.vantage.observation import (
    MAX_OBSERVATION_BYTES,
    VantageObservation,
    decode_observation,
    observation_key,
    publish,
)
from orchestrator.control.vantage.quorum import CloudView, adjust, quorum_view
from orchestrator.core.errors import ConfigError, NotFound, OrchestratorError
from orchestrator.core.storage import RetryPolicy, Storage, open_storage

__all__ = ["VANTAGE_RETRY", "VANTAGE_SETTINGS", "Coordinator", "VantageRound", "newest_overrides"]

# One small object per request: tens of milliseconds in-region, a few hundred across clouds. Capped
# like the state store's requests, so that a black-holed point costs a round at most
# read_timeout_s (the round does not wait longer for it anyway).
VANTAGE_SETTINGS = {"connect_timeout": 2.0, "read_timeout": 3.0}
VANTAGE_RETRY = RetryPolicy(attempts=2, timeout=4.0, wait_initial=0.1, wait_max=0.3, wait_jitter=0.1)


@dataclass
class VantageRound:
    """What one round learned from the vantage points: every observation (None: unreadable, with
    the reason in ``errors``), the quorum view, the samples as the state machine takes them, the
    overrides newer than this point's, and (when it applies) the lease's outcome."""

    vantage: str
    observations: dict[str, VantageObservation | None]
    errors: dict[str, str]
    view: dict[str, CloudView]
    adjusted: dict[str, list[ProbeResult]]
    overrides: list[Override] = field(default_factory=list)
    leadership: Leadership | None = None

    @property
    def fence(self) -> int | None:
        """The epoch this point applies under: the lease's, if it leads; else None (no write)."""
        held = self.leadership
        return held.epoch if held is not None and held.leader else None

    def notes(self, *, apply: bool) -> list[str]:
        """One line per point that could not be read, and why nothing was applied if so."""
        lines = [f"vantage point {name}: {error}" for name, error in self.errors.items()]
        if apply and self.fence is None:
            held = self.leadership
            who = f"{held.holder} holds it (epoch {held.epoch})" if held and held.holder else "no majority"
            if held is not None and held.note and not held.holder:
                who = f"{who}: {held.note}"
            lines.append(f"not applied: this vantage point does not hold the leader lease; {who}")
        return lines

    def as_dict(self, now: float) -> dict[str, Any]:
        """For the round's JSON and for status: each point's observation and its age, the
        quorum view per cloud, the lease."""
        return {
            "vantage": self.vantage,
            "points": {
                name: _observation_dict(obs, self.errors.get(name), now)
                for name, obs in self.observations.items()
            },
            "quorum": {cloud: v.as_dict() for cloud, v in self.view.items()},
            "lease": self.leadership.as_dict() if self.leadership else None,
            "leader": bool(self.leadership and self.leadership.leader),
        }


class Coordinator:
    """The vantage points of ``config`` as seen from ``config.id`` (None for an operator's command,
    which only reads and replicates). ``clock``: unix seconds, shared with the other points."""

    def __init__(
        self,
        config: VantageConfig,
        *,
        clock: Callable[[], float] = time.time,
        open_point: Callable[[str, Mapping[str, str]], Storage] | None = None,
    ) -> None:
        self.config = config
        self.id = config.id
        self.clock = clock
        opener = open_point or _open_point
        self.storages = {name: opener(p.storage, p.settings) for name, p in config.points.items()}
        self._pool = ThreadPoolExecutor(max_workers=len(self.storages) + 1, thread_name_prefix="vantage")
        self.lease = LeaderLease(
            {name: self.storages[name] for name in config.lease_points},
            holder=config.id or "operator",
            ttl_s=config.lease_ttl_s,
            deadline_s=config.read_timeout_s,
            clock=clock,
        )

    def close(self) -> None:
        """Stop the worker threads and close the points' storage."""
        self.lease.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for storage in self.storages.values():
            with contextlib.suppress(Exception):
                storage.close()

    def require_id(self) -> str:
        """This job's vantage id; ConfigError when it has none (the health job needs one)."""
        if self.id is None:
            raise ConfigError(
                "vantage.id: missing; a health job must name its vantage point "
                "(vantage.id, or $ORCHESTRATOR_VANTAGE)"
            )
        return self.id

    def exchange(
        self, probes: Mapping[str, list[ProbeResult]], overrides: Mapping[str, Override]
    ) -> VantageRound:
        """Publish this round's observation to this point's home and read every other point's,
        all within ``read_timeout_s``; then the quorum view and the adjusted samples. Never
        raises for a point's failure (its observation is None, with the reason)."""
        me = self.require_id()
        mine = VantageObservation.from_round(me, self.clock(), probes, overrides)
        jobs: dict[str, Callable[[], VantageObservation | None]] = {
            name: partial(self._read, name) for name in self.storages if name != me
        }
        jobs[me] = partial(self._publish, mine)
        results, errors = self._run(jobs)
        observations: dict[str, VantageObservation | None] = {
            name: results.get(name) for name in self.storages
        }
        observations[me] = mine  # what this point saw counts whether or not its home took it
        if me in errors:
            errors[me] = f"not published: {errors[me]}"
        now = self.clock()
        view = quorum_view(
            observations,
            list(probes),
            now=now,
            freshness_s=self.config.freshness_s,
            min_voters=self.config.min_voters,
        )
        newer = newest_overrides(observations, overrides)
        return VantageRound(me, observations, errors, view, adjust(probes, view), newer)

    def round(
        self, probes: Mapping[str, list[ProbeResult]], overrides: Mapping[str, Override], *, apply: bool
    ) -> VantageRound:
        """A round's part: :meth:`exchange`, then (with ``apply``) :meth:`lead`."""
        result = self.exchange(probes, overrides)
        result.leadership = self.lead() if apply else None
        return result

    def lead(self) -> Leadership:
        """Take or renew the leader lease (:meth:`LeaderLease.acquire`)."""
        self.require_id()
        return self.lease.acquire()

    def release(self) -> None:
        """Give the lease back now, if this point holds it (end of a watch)."""
        if self.id is not None:
            with contextlib.suppress(Exception):
                self.lease.release()

    def operator_fence(self) -> int:
        """The epoch an operator's command writes the backends under: the current leader's, or
        with no leader the highest epoch any readable copy holds (0 before the first leader), so
        an operator neither is refused by nor fences out the leader."""
        held = self.lease.read()
        if held.epoch is not None:
            return held.epoch
        return max((c.epoch for c in held.copies.values() if c.error is None), default=0)

    def replicate_override(self, override: Override, *, skip: str) -> dict[str, str]:
        """Write ``override`` (with its own time) to every point's state but the one whose location
        is ``skip`` (already written), at once and within ``read_timeout_s``; point -> error for those that
        could not be written (they learn it from the others' observations at their next round)."""
        from orchestrator.control.store import StateStore

        def write(name: str) -> None:
            point = self.config.points[name]
            with StateStore.open(point.storage, settings=point.settings or None) as store:
                if store.location == skip:
                    return
                current = store.overrides().get(override.cloud)
                if current is None or current.at < override.at:
                    store.set_override(
                        override.cloud,
                        drained=override.drained,
                        reason=override.reason,
                        actor=override.actor,
                        at=override.at,
                    )

        _, errors = self._run({name: partial(write, name) for name in self.config.points})
        return errors

    def survey(self, clouds: list[str]) -> VantageRound:
        """Read every point's observation and the lease (no write): what ``status`` shows."""
        jobs: dict[str, Callable[[], VantageObservation | None]] = {
            name: partial(self._read, name) for name in self.storages
        }
        results, errors = self._run(jobs)
        observations = {name: results.get(name) for name in self.storages}
        view = quorum_view(
            observations,
            clouds,
            now=self.clock(),
            freshness_s=self.config.freshness_s,
            min_voters=self.config.min_voters,
        )
        leadership = self.lease.read()
        return VantageRound(self.id or "", observations, errors, view, {}, [], leadership)

    # --- internals -----------------------------------------------------------------------

    def _read(self, name: str) -> VantageObservation | None:
        storage, key = self.storages[name], observation_key(name)
        try:
            # Sized before it is read: a home's writer could put gigabytes there, which a download
            # would hold in memory (and keep reading past the round's deadline).
            size = storage.stat(key).size
            if size > MAX_OBSERVATION_BYTES:
                raise LookupError(
                    f"unreadable observation: {size} bytes, "
                    f"more than any observation ({MAX_OBSERVATION_BYTES})"
                )
            data = storage.get(key)
        except NotFound:
            raise LookupError("no observation yet") from None
        try:
            return decode_observation(data, name)
        except ValueError as exc:
            raise LookupError(f"unreadable observation: {exc}") from None

    def _publish(self, observation: VantageObservation) -> VantageObservation:
        publish(self.storages[observation.vantage], observation)
        return observation

    def _run(self, jobs: Mapping[str, Callable[[], Any]]) -> tuple[dict[str, Any], dict[str, str]]:
        futures = {name: self._pool.submit(job) for name, job in jobs.items()}
        wait(futures.values(), timeout=self.config.read_timeout_s)
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for name, future in futures.items():
            if not future.done():
                future.cancel()
                errors[name] = f"no answer within {self.config.read_timeout_s:g} s"
                continue
            try:
                results[name] = future.result()
            except LookupError as exc:
                errors[name] = str(exc)
            except OrchestratorError as exc:
                errors[name] = short(str(exc))
            except Exception as exc:  # one point's failure is that point unreachable, never the round's
                errors[name] = short(f"{type(exc).__name__}: {exc}")
        return results, errors


def newest_overrides(
    observations: Mapping[str, VantageObservation | None], local: Mapping[str, Override]
) -> list[Override]:
    """The overrides some point knows that are newer than this point's (per cloud, the newest by
    time, then actor: the last writer wins everywhere)."""
    best: dict[str, Override] = {}
    for obs in observations.values():
        for cloud, override in (obs.overrides if obs else {}).items():
            current = best.get(cloud)
            if current is None or (override.at, override.actor) > (current.at, current.actor):
                best[cloud] = override
    return [
        o
        for cloud, o in sorted(best.items())
        if cloud not in local or (o.at, o.actor) > (local[cloud].at, local[cloud].actor)
    ]


def _open_point(location: str, settings: Mapping[str, str]) -> Storage:
    capped = dict(settings)
    for key, cap in VANTAGE_SETTINGS.items():
        capped[key] = str(min(float(capped.get(key, cap)), cap))
    return open_storage(location, settings=capped, retry=VANTAGE_RETRY)


def _observation_dict(obs: VantageObservation | None, error: str | None, now: float) -> dict[str, Any]:
    if obs is None:
        return {"at": None, "age_s": None, "seeing": None, "clouds": {}, "error": error}
    return {
        "at": obs.at,
        "age_s": round(now - obs.at, 1),
        "seeing": obs.seeing,
        "clouds": {c: {"verdict": s.verdict.value, "reason": s.reason} for c, s in obs.clouds.items()},
        "error": error,
    }
