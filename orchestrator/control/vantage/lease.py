"""The cross-cloud leader lease: one copy per lease point, held by whoever holds a strict majority.

Each copy is a small object (``orchestrator/leader-lease.json`` under a point's location)::

    {"kind": "orchestrator-leader-lease", "holder": "gcp", "epoch": 7,
     "expires_at": 1767225750.0, "renewed_at": 1767225600.0}

written only with conditional writes (S3 If-Match / If-None-Match, GCS ifGenerationMatch, Azure
If-Match) on the version read. Every round, :meth:`LeaderLease.acquire`:

1. reads every copy (in parallel, within ``deadline_s``; one that cannot be read is unavailable);
2. picks the epoch: the highest epoch seen if its copies are this holder's (a renewal), else one
   more than the highest seen (a new term);
3. writes, conditionally, each copy that is free, expired, or already this holder's;
4. leads when a strict majority of the copies now hold its entry; otherwise it gives back
   (expires) the copies it wrote, so a split does not block the next round.

Why this is safe: two majorities of the same copies always share one, and each copy changes only
by a conditional write on the version its writer read, so two holders cannot both win a majority
of live copies at once; and a new holder reads, among the copies it writes, at least one written
by the previous majority, so its epoch is higher than every epoch that ever led. Losing any one
lease point (a cloud down) leaves a majority of the others for the survivors (2 of 3).

Expiry is wall-clock time: it assumes the vantage points' clocks agree to within a small fraction
of the lease's length (NTP keeps them within milliseconds; the design note gives the bound). A
holder with a slow clock, or one paused past its expiry, can believe it leads for a while: the
epoch carried by every routing write (fencing) is what stops such a stale holder from
overwriting a newer decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import orjson

from orchestrator.control.store.base import MAX_LEASE_S
from orchestrator.control.vantage.observation import LEASE_KEY
from orchestrator.core.errors import NotFound, OrchestratorError, PreconditionFailed
from orchestrator.core.storage import Storage

__all__ = ["LEASE_KIND", "LeaderLease", "Leadership", "LeaseCopy"]

LEASE_KIND = "orchestrator-leader-lease"
MAX_LEASE_BYTES = 4096
# The highest epoch a copy may carry (JSON's safe integers, as the LATEST pointer's sequence): one
# term a second for 285 million years. A copy past it is corrupted or forged, and is treated as no
# lease (taken over): its next term would not fit a JSON integer, every candidate's write would
# fail, and nobody would ever lead again.
MAX_EPOCH = 2**53 - 1
_HELD = "another vantage point holds the lease (or too few copies were free to take it)"
_RACE = "lost a race for the lease, or could not write a majority of its copies"
# A copy's error when its conditional write lost to another writer: a race, not a fault of the point.
_CHANGED = "changed since read (another vantage point wrote it)"


@dataclass(frozen=True, slots=True)
class LeaseCopy:
    """One lease point's copy as read: holder (None: never taken), epoch, expiry (unix seconds),
    the version token for the conditional write, or the error that made it unavailable."""

    point: str
    holder: str | None = None
    epoch: int = 0
    expires_at: float = 0.0
    renewed_at: float = 0.0
    token: str | None = None
    error: str | None = None

    def live(self, now: float) -> bool:
        """Held at ``now``: not expired, and not expiring later than any lease is taken for (such
        an expiry comes from a clock that has stepped since)."""
        return self.holder is not None and now < self.expires_at <= now + MAX_LEASE_S

    def as_dict(self) -> dict[str, Any]:
        """For status and JSON output."""
        return {
            "holder": self.holder,
            "epoch": self.epoch,
            "expires_at": self.expires_at or None,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Leadership:
    """The outcome of one :meth:`LeaderLease.acquire` (or a read): whether this holder leads, the
    epoch it leads with, who holds a live majority otherwise (None: nobody), and every copy."""

    leader: bool
    epoch: int | None
    holder: str | None
    expires_at: float | None
    copies: dict[str, LeaseCopy] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """For status and JSON output."""
        return {
            "holder": self.holder,
            "epoch": self.epoch,
            "expires_at": self.expires_at,
            "copies": {p: c.as_dict() for p, c in self.copies.items()},
            "note": self.note or None,
        }


class LeaderLease:
    """The lease over ``points`` (point -> the Storage of its location), taken by ``holder`` for
    ``ttl_s`` seconds at a time; each round's reads and writes wait at most ``deadline_s``."""

    def __init__(
        self,
        points: Mapping[str, Storage],
        *,
        holder: str,
        ttl_s: float,
        deadline_s: float,
        clock: Callable[[], float],
    ) -> None:
        if not 0 < ttl_s <= MAX_LEASE_S:
            raise ValueError(f"a lease's ttl must be in (0, {MAX_LEASE_S:g}] s, not {ttl_s!r}")
        self.points = dict(points)
        self.holder = holder
        self.ttl_s = ttl_s
        self.deadline_s = deadline_s
        self.clock = clock
        self.majority = len(self.points) // 2 + 1
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.points)), thread_name_prefix="lease")

    def close(self) -> None:
        """Stop the worker threads (a call still in flight finishes on its own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def read(self) -> Leadership:
        """Every copy as stored now, and who holds a live majority (no write)."""
        copies = self._each(self._read_one)
        return self._outcome(copies, leader=False, epoch=None)

    def acquire(self) -> Leadership:
        """Take or renew the lease (the module docstring's steps); never raises for a point's
        failure: an unavailable point is one copy fewer."""
        copies = self._each(self._read_one)
        now = self.clock()
        readable = [c for c in copies.values() if c.error is None]
        top = max((c.epoch for c in readable), default=0)
        ours = [c for c in readable if c.epoch == top and c.holder == self.holder]
        epoch = top if ours and top > 0 else top + 1
        writable = {
            p: c
            for p, c in copies.items()
            if c.error is None and (not c.live(now) or c.holder == self.holder)
        }
        if len(writable) < self.majority:
            return self._outcome(copies, leader=False, epoch=None, note=_why_not(copies, _HELD))
        entry = {"holder": self.holder, "epoch": epoch, "expires_at": now + self.ttl_s, "renewed_at": now}
        written = self._each(lambda p: self._write_one(p, writable[p], entry), only=list(writable))
        won = {p: c for p, c in written.items() if c.error is None}
        merged = {**copies, **written}
        if len(won) >= self.majority:
            return self._outcome(merged, leader=True, epoch=epoch)
        # A split (another candidate won some copies, or some could not be written): give back
        # ours, so the next round is clean. The copies that failed keep their error, so the
        # outcome says why (a home that does not exist, no permission to write) instead of
        # passing a misconfigured point off as a lost race.
        give_back = {**entry, "expires_at": now}
        self._each(lambda p: self._write_one(p, won[p], give_back), only=list(won))
        failed = {p: c for p, c in written.items() if c.error is not None}
        return self._outcome(
            {**copies, **failed}, leader=False, epoch=None, note=_why_not({**copies, **failed}, _RACE)
        )

    def release(self) -> None:
        """Expire this holder's copies now (at the end of a watch), so another point takes over
        at its next round instead of after the expiry."""
        copies = self._each(self._read_one)
        now = self.clock()
        mine = {
            p: c for p, c in copies.items() if c.error is None and c.holder == self.holder and c.live(now)
        }

        def give_back(point: str) -> LeaseCopy:
            copy = mine[point]
            entry = {"holder": copy.holder, "epoch": copy.epoch, "expires_at": now, "renewed_at": now}
            return self._write_one(point, copy, entry)

        self._each(give_back, only=list(mine))

    # --- internals -----------------------------------------------------------------------

    def _outcome(
        self, copies: dict[str, LeaseCopy], *, leader: bool, epoch: int | None, note: str = ""
    ) -> Leadership:
        now = self.clock()
        live: dict[tuple[str, int], list[LeaseCopy]] = {}
        for copy in copies.values():
            if copy.error is None and copy.live(now) and copy.holder is not None:
                live.setdefault((copy.holder, copy.epoch), []).append(copy)
        holder, held_epoch, expires = None, None, None
        for (name, term), held in live.items():
            if len(held) >= self.majority:
                # The lease ends when fewer than a majority of its copies are live.
                ends = sorted((c.expires_at for c in held), reverse=True)[self.majority - 1]
                holder, held_epoch, expires = name, term, ends
        return Leadership(
            leader=leader,
            epoch=epoch if leader else held_epoch,
            holder=holder,
            expires_at=expires,
            copies=dict(sorted(copies.items())),
            note=note,
        )

    def _each(self, fn: Callable[[str], LeaseCopy], *, only: list[str] | None = None) -> dict[str, LeaseCopy]:
        names = list(self.points) if only is None else only
        futures = {name: self._pool.submit(fn, name) for name in names}
        wait(futures.values(), timeout=self.deadline_s)
        results = {}
        for name, future in futures.items():
            if not future.done():
                future.cancel()
                results[name] = LeaseCopy(name, error=f"no answer within {self.deadline_s:g} s")
                continue
            try:
                results[name] = future.result()
            except Exception as exc:  # one point's failure is one copy fewer
                results[name] = LeaseCopy(name, error=f"{type(exc).__name__}: {exc}")
        return results

    def _read_one(self, point: str) -> LeaseCopy:
        storage = self.points[point]
        try:
            # The token first, then the content: a newer content than the token only makes the
            # conditional write fail; the reverse order could pair old content with a new token.
            info = storage.stat(LEASE_KEY)
            token = info.token
            # Sized before it is read: anyone who can write a point's home could put gigabytes
            # where a lease belongs, and a download would hold them in memory past the deadline.
            data = storage.get(LEASE_KEY) if info.size <= MAX_LEASE_BYTES else b""
        except NotFound:
            return LeaseCopy(point)
        except OrchestratorError as exc:
            return LeaseCopy(point, error=str(exc))
        parsed = _parse(data)
        if parsed is None:
            # Not written by an orchestrator: free to be taken over (conditionally, on its token).
            return LeaseCopy(point, token=token)
        holder, epoch, expires_at, renewed_at = parsed
        return LeaseCopy(point, holder, epoch, expires_at, renewed_at, token)

    def _write_one(self, point: str, read: LeaseCopy, entry: Mapping[str, Any]) -> LeaseCopy:
        data = orjson.dumps({"kind": LEASE_KIND, **entry}, option=orjson.OPT_SORT_KEYS)
        try:
            info = self.points[point].put_if(LEASE_KEY, data, token=read.token)
        except PreconditionFailed:
            return LeaseCopy(point, error=_CHANGED)
        except OrchestratorError as exc:
            return LeaseCopy(point, error=str(exc))
        return LeaseCopy(
            point,
            str(entry["holder"]),
            int(entry["epoch"]),
            float(entry["expires_at"]),
            float(entry["renewed_at"]),
            info.token,
        )


def _why_not(copies: Mapping[str, LeaseCopy], why: str) -> str:
    """Why a candidate did not take the lease: ``why`` (another vantage point holds it, or lost a
    race), followed by the copies it could not read or write, each with its error (what is wrong
    with a point: a home that does not exist, no permission), so that a misconfigured point is
    not passed off as a held lease or a lost race."""
    failed = [
        f"{point}: {copy.error}"
        for point, copy in sorted(copies.items())
        if copy.error is not None and copy.error != _CHANGED
    ]
    return f"{why}; copies not read or written: {'; '.join(failed)}" if failed else why


def _parse(data: bytes) -> tuple[str, int, float, float] | None:
    """(holder, epoch, expires_at, renewed_at) of a stored copy, None if it is not one."""
    if len(data) > MAX_LEASE_BYTES:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("kind") != LEASE_KIND:
        return None
    holder, epoch = doc.get("holder"), doc.get("epoch")
    expires_at, renewed_at = doc.get("expires_at"), doc.get("renewed_at")
    if (
        not isinstance(holder, str)
        or isinstance(epoch, bool)
        or not isinstance(epoch, int)
        or not 1 <= epoch < MAX_EPOCH  # below: its successor must fit too
    ):
        return None
    times = (expires_at, renewed_at)
    if any(isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) for t in times):
        return None
    return holder, epoch, float(expires_at), float(renewed_at)  # type: ignore[arg-type]
