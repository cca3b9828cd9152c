"""The state in one SQLite file: the default backend, for a control plane run from one machine.

    with open_state() as state:                         # .orchestrator/state.db by default
        with state.transaction() as tx:                 # read, decide, write: one atomic step
            if "aws" not in tx.drained():
                tx.set_override("aws", drained=True, reason="maintenance", actor="alice")
                tx.record_flips([Flip("aws", now, HealthState.HEALTHY, HealthState.DRAINED, ...)])

Concurrency. Two commands (separate processes, e.g. a cron run of ``health --once --apply`` and
an operator's ``failover``) must not lose each other's writes. Every write happens inside
:meth:`StateStore.transaction`; in SQLite that is ``BEGIN IMMEDIATE``, which takes the database's
single write lock before the first read, so a read-modify-write cannot interleave with another
one: the second waits (up to the busy timeout) and then reads what the first committed. A
deferred ``BEGIN`` would not do: in WAL mode a transaction that read an older snapshot and then
tries to write fails with SQLITE_BUSY at once, without waiting. WAL lets readers (``status``)
proceed while a writer holds the lock. Each method outside an explicit transaction is its own
transaction. Waiting longer than the busy timeout raises TransientError; another SQLite failure,
StorageError naming the file. WAL needs a local filesystem (not NFS or SMB); state shared by jobs
in the cloud lives in object storage instead (:mod:`.objectstore`).

Schema (version :data:`SCHEMA_VERSION`, recorded in ``schema_version``): see :data:`MIGRATIONS`,
applied in order by whichever process opens the file first; a file written by a newer
orchestrator is refused rather than misread. Times are unix seconds; JSON columns hold UTF-8
text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from orchestrator.control.store.base import (
    DEFAULT_FLIP_LIMIT,
    BackendStatus,
    DesiredWeights,
    Lease,
    Override,
    check_cloud,
    check_rollout,
    check_weights,
    finite,
    parse_backend,
    parse_lease,
    text,
)
from orchestrator.control.store.sqlite_file import DEFAULT_STATE_PATH, SQLiteFile
from orchestrator.control.store.sqlite_schema import MIGRATIONS, SCHEMA_VERSION, Migration
from orchestrator.control.types import Flip, HealthState

__all__ = ["DEFAULT_STATE_PATH", "MIGRATIONS", "SCHEMA_VERSION", "Migration", "SQLiteStateStore"]


class SQLiteStateStore(SQLiteFile):
    """The state in one SQLite file (:class:`~orchestrator.control.store.sqlite_file.SQLiteFile`: WAL,
    transactions, migrations): one table per part of the state. Safe to share between threads."""

    # --- flips ---------------------------------------------------------------------------

    def record_flips(self, flips: Iterable[Flip]) -> None:
        rows = [
            (
                check_cloud(flip.cloud),
                float(flip.at),
                HealthState(flip.old).value,
                HealthState(flip.new).value,
                flip.reason,
                flip.actor,
                _dumps(flip.details),
            )
            for flip in flips
        ]
        with self.transaction(), self._errors():
            self._db.executemany(
                "INSERT INTO flips (cloud, at, old, new, reason, actor, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def recent_flips(self, limit: int | None = DEFAULT_FLIP_LIMIT, cloud: str | None = None) -> list[Flip]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        where, params = ("WHERE cloud = ?", [cloud]) if cloud is not None else ("", [])
        rows = self._query(
            f"SELECT cloud, at, old, new, reason, actor, details FROM flips {where} "  # noqa: S608  # fixed fragments
            "ORDER BY at DESC, id DESC LIMIT ?",
            (*params, -1 if limit is None else limit),  # SQLite: LIMIT -1 is no limit
        )
        flips = []
        for row in rows:
            with self._corrupt("flips"):
                details = orjson.loads(row[6])
                if not isinstance(details, dict):
                    raise TypeError("details: expected an object")
                flips.append(
                    Flip(
                        cloud=check_cloud(row[0]),
                        at=finite(row[1], "at"),
                        old=HealthState(row[2]),
                        new=HealthState(row[3]),
                        reason=text(row[4], "reason"),
                        actor=text(row[5], "actor"),
                        details=details,
                    )
                )
        return flips

    # --- overrides -----------------------------------------------------------------------

    def set_override(
        self, cloud: str, *, drained: bool, reason: str, actor: str, at: float | None = None
    ) -> Override:
        override = Override(
            cloud=check_cloud(cloud),
            drained=bool(drained),
            reason=reason,
            actor=actor,
            at=self._clock() if at is None else finite(at, "at"),
        )
        with self.transaction():
            self._run(
                "INSERT INTO overrides (cloud, drained, reason, actor, at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (cloud) DO UPDATE SET drained = excluded.drained, reason = excluded.reason, "
                "actor = excluded.actor, at = excluded.at",
                (override.cloud, int(override.drained), override.reason, override.actor, override.at),
            )
        return override

    def overrides(self) -> dict[str, Override]:
        rows = self._query("SELECT cloud, drained, reason, actor, at FROM overrides ORDER BY cloud")
        overrides = {}
        for row in rows:
            with self._corrupt(f"overrides.{row[0]}"):
                overrides[row[0]] = Override(
                    cloud=check_cloud(row[0]),
                    drained=bool(row[1]),
                    reason=text(row[2], "reason"),
                    actor=text(row[3], "actor"),
                    at=finite(row[4], "at"),
                )
        return overrides

    # --- rollouts ----------------------------------------------------------------------------

    def rollout(self) -> dict[str, Any] | None:
        rows = self._query("SELECT record FROM rollouts WHERE name = 'current'")
        if not rows:
            return None
        with self._corrupt("rollouts.current"):
            parsed = orjson.loads(rows[0][0])
            return check_rollout(parsed)

    def save_rollout(self, record: Mapping[str, Any]) -> None:
        row = check_rollout(record)
        with self.transaction():
            self._run(
                "INSERT INTO rollouts (name, record, at) VALUES ('current', ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET record = excluded.record, at = excluded.at",
                (_dumps(row), self._clock()),
            )

    # --- weights and backends ---------------------------------------------------------------

    def save_desired(self, weights: Mapping[str, int], reason: str) -> DesiredWeights:
        desired = DesiredWeights(weights=check_weights(weights), at=self._clock(), reason=reason)
        with self.transaction():
            self._run(
                "INSERT INTO desired_weights (at, weights, reason) VALUES (?, ?, ?)",
                (desired.at, _dumps(desired.weights), desired.reason),
            )
        return desired

    def desired(self) -> DesiredWeights | None:
        rows = self._query("SELECT at, weights, reason FROM desired_weights ORDER BY id DESC LIMIT 1")
        if not rows:
            return None
        at, weights, reason = rows[0]
        with self._corrupt("desired_weights[-1]"):
            parsed = orjson.loads(weights)
            if not isinstance(parsed, dict):
                raise TypeError("weights: expected an object")
            return DesiredWeights(
                weights=check_weights(parsed), at=finite(at, "at"), reason=text(reason, "reason")
            )

    def record_backends(self, statuses: Iterable[BackendStatus]) -> None:
        rows = [
            (
                s.location,
                s.kind,
                int(s.ok),
                None if s.in_effect is None else _dumps(check_weights(s.in_effect)),
                s.error,
                float(s.at),
            )
            for s in statuses
        ]
        with self.transaction(), self._errors():
            self._db.executemany(
                "INSERT INTO backends (location, kind, ok, in_effect, error, at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (location) DO UPDATE SET kind = excluded.kind, ok = excluded.ok, "
                "in_effect = excluded.in_effect, error = excluded.error, at = excluded.at",
                rows,
            )

    def backends(self) -> dict[str, BackendStatus]:
        rows = self._query("SELECT location, kind, ok, in_effect, error, at FROM backends ORDER BY location")
        statuses = {}
        for location, kind, ok, in_effect, error, at in rows:
            with self._corrupt("backends"):
                row = {"kind": kind, "ok": bool(ok), "error": error, "at": at}
                row["in_effect"] = None if in_effect is None else orjson.loads(in_effect)
                statuses[location] = parse_backend(location, row)
        return statuses

    # --- leases --------------------------------------------------------------------------

    def lease(self, name: str) -> Lease | None:
        rows = self._query(
            "SELECT holder, acquired_at, expires_at, epoch FROM leases WHERE name = ?", (name,)
        )
        if not rows:
            return None
        holder, acquired_at, expires_at, epoch = rows[0]
        with self._corrupt("leases"):
            return parse_lease(
                name, {"holder": holder, "acquired_at": acquired_at, "expires_at": expires_at, "epoch": epoch}
            )

    def put_lease(self, lease: Lease) -> None:
        with self.transaction():
            self._run(
                "INSERT INTO leases (name, holder, acquired_at, expires_at, epoch) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "acquired_at = excluded.acquired_at, expires_at = excluded.expires_at, "
                "epoch = excluded.epoch",
                (lease.name, lease.holder, lease.acquired_at, lease.expires_at, lease.epoch),
            )

    # --- health machines -----------------------------------------------------------------

    def load_machines(self) -> dict[str, dict[str, Any]]:
        rows = self._query("SELECT cloud, state FROM health_machines ORDER BY cloud")
        machines = {}
        for cloud, state in rows:
            with self._corrupt(f"machines.{cloud}"):
                parsed = orjson.loads(state)
                if not isinstance(parsed, dict):
                    raise TypeError("expected an object")
                machines[check_cloud(cloud)] = parsed
        return machines

    def save_machines(self, machines: Mapping[str, Mapping[str, Any]]) -> None:
        now = self._clock()
        rows = [(check_cloud(cloud), _dumps(dict(state)), now) for cloud, state in machines.items()]
        with self.transaction(), self._errors():
            self._db.executemany(
                "INSERT INTO health_machines (cloud, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (cloud) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                rows,
            )


def _dumps(value: Mapping[str, Any]) -> str:
    # Sorted keys: equal state is stored as equal text, which keeps diffs and debugging simple.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
