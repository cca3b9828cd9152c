"""The state as one versioned JSON document in object storage, for jobs that run in the cloud.

    state = open_state("s3://ops-bucket/prod")          # or gs://, az://: any URI open_storage takes
    state.set_override("aws", drained=True, reason="maintenance", actor="alice")

The scheduled health job runs in a container without a local disk, possibly in two clouds at
once, so its memory lives in a bucket: the document ``orchestrator/state.json`` under the URI's
prefix (or the object itself when the URI ends in ``.json``). Settings are those of
:func:`~orchestrator.core.storage.open_storage` (``endpoint_url``, ``region``, ``connection_string``...).

The document (schema :data:`DOCUMENT_SCHEMA_VERSION`; keys sorted, times in unix seconds)::

    {"kind": "orchestrator-state", "schema": 2,
     "version": 42,                  # +1 per commit: a reader can tell a new state from one it saw
     "updated_at": 1767225600.0, "commit": "5f0c...",   # random: every write is unique (below)
     "flips": [{"cloud", "at", "old", "new", "reason", "actor", "details"}, ...],   # recording order
     "overrides": {"aws": {"drained", "reason", "actor", "at"}, ...},
     "desired_weights": [{"weights": {"aws": 70, ...}, "at", "reason"}, ...],      # commit order
     "machines": {"aws": {"state": {...}, "updated_at"}, ...},
     "backends": {"<location>": {"kind", "ok", "in_effect", "error", "at"}, ...},
     "leases": {"health-job": {"holder", "acquired_at", "expires_at", "epoch"}},
     "rollouts": {"current": {"version", "baseline", "plan", "stage", "status", ...}}}

Flips and desired weights are bounded histories (:data:`MAX_FLIPS`, :data:`MAX_DESIRED_WEIGHTS`):
the oldest entries fall off, so the document stays small enough to read and rewrite whole on
every commit. A document of a newer schema, or one that is not an orchestrator state document, is
refused rather than misread, and one whose values no orchestrator writes (a health state
``"bogus"``, a weight that is not an integer) raises :class:`~orchestrator.control.errors.StateCorrupt`
naming the key. Schema 1 documents (``applied_weights``, no ``backends`` or ``leases``) are read
as schema 2 and written back as schema 2 at their next commit.

Transactions are optimistic, with conditional writes: :mod:`.objectstore_tx` explains the protocol
and why no command's write is lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from orchestrator.control.store.base import (
    BUSY_TIMEOUT,
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
)
from orchestrator.control.store.document import (
    DOCUMENT_KIND,
    DOCUMENT_SCHEMA_VERSION,
    Document,
    Section,
    desired_from_row,
    flip_from_row,
    json_copy,
    override_from_row,
)
from orchestrator.control.store.objectstore_tx import COMMIT_ATTEMPTS, DOCUMENT_KEY, OptimisticDocument
from orchestrator.control.types import Flip, HealthState
from orchestrator.core.errors import ConfigError
from orchestrator.core.storage import RetryPolicy, open_storage, parse_uri

__all__ = [
    "COMMIT_ATTEMPTS",
    "DOCUMENT_KEY",
    "DOCUMENT_KIND",
    "DOCUMENT_SCHEMA_VERSION",
    "MAX_DESIRED_WEIGHTS",
    "MAX_FLIPS",
    "OBJECT_STORE_SCHEMES",
    "STATE_RETRY",
    "STATE_SETTINGS",
    "ObjectStoreStateStore",
    "Section",
    "split_location",
]

# The schemes whose state lives here; file:// and plain paths are SQLite files (see open_state).
OBJECT_STORE_SCHEMES: Final = ("s3", "gs", "az")
# Every commit reads and rewrites the whole document, so the histories are bounded. A flip is
# about 200-400 bytes (more with probe details), so 1000 keep the document around 0.3 MB: one
# read plus one write stay within tens of milliseconds in-region, while covering months of flips
# at any sane rate (hold-downs double per flap, so even a flapping cloud flips a few times an hour).
# `orchestrator status` shows 20.
MAX_FLIPS = 1000
# Only the last entry is used (what every backend must hold); the rest is an audit trail of the
# recent routing decisions, about 100 bytes each.
MAX_DESIRED_WEIGHTS = 100

# A state request moves one document of a few hundred kilobytes at most: tens of milliseconds
# in-region. These caps on the storage settings (the storage defaults wait up to 60 s for a silent
# server) and this retry budget make a state bucket that does not answer, black-holed or in a
# region in trouble, fail a command in about 5 s per request with a clear error, instead of
# holding an operator's failover for a minute; a brief throttle is still ridden out.
STATE_SETTINGS = {"connect_timeout": 2.0, "read_timeout": 5.0}
STATE_RETRY = RetryPolicy(attempts=3, timeout=5.0, wait_initial=0.1, wait_max=0.5, wait_jitter=0.1)


def split_location(location: str) -> tuple[str, str]:
    """``(storage URI, key)`` of the state document at ``location``: a URI ending in ``.json``
    names the object itself; any other names the prefix that holds :data:`DOCUMENT_KEY`."""
    parsed = parse_uri(location)  # ConfigError for a malformed URI, naming it
    if parsed.scheme not in OBJECT_STORE_SCHEMES:
        raise ConfigError(
            f"state location {location!r}: object-storage state needs one of "
            f"{', '.join(f'{s}://' for s in OBJECT_STORE_SCHEMES)}"
        )
    parent, _, last = parsed.prefix.rpartition("/")
    if last.endswith(".json"):
        base = f"{parsed.scheme}://{parsed.bucket}"
        return (f"{base}/{parent}" if parent else base), last
    return str(parsed), DOCUMENT_KEY


class ObjectStoreStateStore(OptimisticDocument):
    """The state in one object (see the module docstring). Safe to share between threads, which
    take turns; separate processes and machines coordinate through conditional writes."""

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
        commit_attempts: int = COMMIT_ATTEMPTS,
    ) -> ObjectStoreStateStore:
        """Open the state document at ``location`` (``s3://``, ``gs://`` or ``az://``; see
        :func:`split_location`) with storage ``settings`` (their timeouts capped by
        :data:`STATE_SETTINGS`) and ``retry`` (default :data:`STATE_RETRY`); ``busy_timeout`` and
        ``commit_attempts`` bound the replays of a lost race (:class:`OptimisticDocument`). Sends no request:
        the bucket must exist, and the document is created by the first write."""
        if location is None:
            raise ConfigError("object-storage state needs a location (s3://, gs:// or az://)")
        uri, key = split_location(os.fspath(location))
        capped = dict(settings or {})
        for name, cap in STATE_SETTINGS.items():
            capped[name] = str(min(float(capped.get(name, cap)), cap))
        storage = open_storage(uri, settings=capped, retry=retry or STATE_RETRY)
        return cls(storage, key, busy_timeout=busy_timeout, clock=clock, commit_attempts=commit_attempts)

    # --- flips ---------------------------------------------------------------------------

    def record_flips(self, flips: Iterable[Flip]) -> None:
        rows = [
            {
                "cloud": check_cloud(flip.cloud),
                "at": float(flip.at),
                "old": HealthState(flip.old).value,
                "new": HealthState(flip.new).value,
                "reason": flip.reason,
                "actor": flip.actor,
                "details": json_copy(dict(flip.details)),
            }
            for flip in flips
        ]
        if not rows:
            return  # no write, and no read to find that out

        def append(document: Document) -> None:
            document.flips.extend(json_copy(rows))
            del document.flips[:-MAX_FLIPS]

        self._write(append)

    def recent_flips(self, limit: int | None = DEFAULT_FLIP_LIMIT, cloud: str | None = None) -> list[Flip]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, not {limit}")
        with self._lock:
            rows = list(enumerate(self._view("flips").flips))
            # Newest first; among equal times the one recorded later (list order is commit order).
            rows.sort(key=lambda item: (item[1]["at"], item[0]), reverse=True)
            chosen = [row for _, row in rows if cloud is None or row["cloud"] == cloud]
            return [flip_from_row(row) for row in (chosen if limit is None else chosen[:limit])]

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
        row = {"drained": override.drained, "reason": reason, "actor": actor, "at": override.at}

        def put(document: Document) -> None:
            document.overrides[override.cloud] = dict(row)

        self._write(put)
        return override

    def overrides(self) -> dict[str, Override]:
        with self._lock:
            stored = self._view("overrides").overrides
            return {cloud: override_from_row(cloud, stored[cloud]) for cloud in sorted(stored)}

    # --- weights and backends ---------------------------------------------------------------

    def save_desired(self, weights: Mapping[str, int], reason: str) -> DesiredWeights:
        desired = DesiredWeights(weights=check_weights(weights), at=self._clock(), reason=reason)
        row = {"weights": desired.weights, "at": desired.at, "reason": reason}

        def append(document: Document) -> None:
            document.desired_weights.append(json_copy(row))
            del document.desired_weights[:-MAX_DESIRED_WEIGHTS]

        self._write(append)
        return desired

    def desired(self) -> DesiredWeights | None:
        with self._lock:
            history = self._view("desired_weights").desired_weights
            return desired_from_row(history[-1]) if history else None

    def record_backends(self, statuses: Iterable[BackendStatus]) -> None:
        rows = {
            s.location: {
                "kind": s.kind,
                "ok": s.ok,
                "in_effect": None if s.in_effect is None else check_weights(s.in_effect),
                "error": s.error,
                "at": float(s.at),
            }
            for s in statuses
        }
        if not rows:
            return

        def put(document: Document) -> None:
            document.backends.update(json_copy(rows))

        self._write(put)

    def backends(self) -> dict[str, BackendStatus]:
        with self._lock:
            stored = self._view("backends").backends
            return {location: parse_backend(location, stored[location]) for location in sorted(stored)}

    # --- leases --------------------------------------------------------------------------

    def lease(self, name: str) -> Lease | None:
        with self._lock:
            stored = self._view("leases").leases
            return parse_lease(name, stored[name]) if name in stored else None

    def put_lease(self, lease: Lease) -> None:
        row = {
            "holder": lease.holder,
            "acquired_at": lease.acquired_at,
            "expires_at": lease.expires_at,
            "epoch": lease.epoch,
        }

        def put(document: Document) -> None:
            document.leases[lease.name] = dict(row)

        self._write(put)

    # --- rollouts -----------------------------------------------------------------------

    def rollout(self) -> dict[str, Any] | None:
        with self._lock:
            stored = self._view("rollouts").rollouts
            return json_copy(stored["current"]) if "current" in stored else None

    def save_rollout(self, record: Mapping[str, Any]) -> None:
        row = check_rollout(record)

        def put(document: Document) -> None:
            document.rollouts["current"] = json_copy(row)

        self._write(put)

    # --- health machines -----------------------------------------------------------------

    def load_machines(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            stored = self._view("machines").machines
            return {cloud: json_copy(stored[cloud]["state"]) for cloud in sorted(stored)}

    def save_machines(self, machines: Mapping[str, Mapping[str, Any]]) -> None:
        now = self._clock()
        rows = {
            check_cloud(cloud): {"state": json_copy(dict(state)), "updated_at": now}
            for cloud, state in machines.items()
        }
        if not rows:
            return

        def put(document: Document) -> None:
            document.machines.update(json_copy(rows))

        self._write(put)
