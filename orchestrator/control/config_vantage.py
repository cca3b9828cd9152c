"""``vantage``: the health jobs that watch the clouds from several places and decide by quorum.

Without this section a health job is alone (one vantage point, no quorum, no cross-cloud lease),
as it always was. With it, every job names itself (``vantage.id``, or ``$ORCHESTRATOR_VANTAGE``,
which wins) and finds every other one's home location under ``vantage.points``; the rule, the
lease and their parameters are explained in docs/design/quorum.md and
:mod:`orchestrator.control.vantage`.

    vantage:
      id: aws                       # or $ORCHESTRATOR_VANTAGE
      points:                       # each vantage point's home location (its own cloud's bucket)
        aws:   {storage: s3://ops-aws/orchestrator, settings: {region: us-east-1}}
        gcp:   {storage: gs://ops-gcp/orchestrator}
        azure: {storage: az://opsazure/ops/orchestrator}
      freshness_s: 180              # an observation older than this is not a vote
      lease_ttl_s: 90               # the leader lease's length (renewed every round)
      min_voters: 2                 # fewer fresh, seeing vantage points: no quorum, no change
      read_timeout_s: 5             # the longest a round waits for the other points' objects
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.control.config_checks import check_settings
from orchestrator.core.contract import ENV_VANTAGE

if TYPE_CHECKING:
    from orchestrator.control.config import Config

__all__ = [
    "MAX_FRESHNESS_S",
    "MAX_POINTS",
    "VANTAGE_ID_PATTERN",
    "VantageConfig",
    "VantagePoint",
    "resolve_vantage",
]

# A vantage id is part of an object name (orchestrator/vantage/<id>.json) and of a lease holder.
VANTAGE_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"
# Three clouds, plus a few jobs elsewhere (cron, Kubernetes); every round reads every point's
# observation, so the number is bounded to keep a round's reads few.
MAX_POINTS = 9
# An hour: an observation older than that says nothing about an incident happening now.
MAX_FRESHNESS_S = 3600.0
# The leader lease is renewed every round; a one-minute schedule needs more than 60 s, and the
# state's own lease bound (MAX_LEASE_S, 15 minutes) caps how long a dead leader blocks the others.
MAX_LEASE_TTL_S = 900.0
# Reading a few small objects: a second in-region, seconds across clouds; more than 30 s would
# let one black-holed bucket stall every round.
MAX_READ_TIMEOUT_S = 30.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VantagePoint(_Strict):
    """``vantage.points.<id>``: where one vantage point keeps what the others read (its
    observation, its copy of the leader lease): an object-store location in its own cloud."""

    storage: str = Field(description="a location: s3://, gs://, az:// (or file:// on one machine)")
    settings: dict[str, str] = Field(default_factory=dict, description="storage settings (endpoint_url...)")

    @field_validator("storage")
    @classmethod
    def _location(cls, value: str) -> str:
        from orchestrator.core.errors import ConfigError
        from orchestrator.core.storage import parse_uri

        if not value.startswith(("s3://", "gs://", "az://", "file://")):
            raise ValueError(f"{value!r} is not a location (s3://, gs://, az:// or file://)")
        try:
            parse_uri(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, str]) -> dict[str, str]:
        return check_settings(value)


class VantageConfig(_Strict):
    """``vantage``: the vantage points, the quorum's and the lease's parameters (module docstring)."""

    id: str | None = Field(default=None, pattern=VANTAGE_ID_PATTERN, description="this job's vantage id")
    points: dict[str, VantagePoint] = Field(min_length=1, max_length=MAX_POINTS)
    # Three rounds of a one-minute schedule: one late or skipped run still counts.
    freshness_s: float = Field(default=180.0, gt=0, le=MAX_FRESHNESS_S)
    # A round and a half of a one-minute schedule: a leader's next run (60 s later, plus its
    # jitter and a round's seconds) renews it in time; one that stops loses it within 90 s, and
    # the next run of a survivor takes over.
    lease_ttl_s: float = Field(default=90.0, gt=0, le=MAX_LEASE_TTL_S)
    # Two: a cloud counts as down only when at least two places see it down, so no single
    # vantage's network (a partition) can take a cloud out; with one vantage left, nothing changes
    # until another returns (Route 53's own health checks remain: docs/design/quorum.md).
    min_voters: int = Field(default=2, ge=1, le=MAX_POINTS)
    read_timeout_s: float = Field(default=5.0, gt=0, le=MAX_READ_TIMEOUT_S)
    # Which points keep a copy of the leader lease (default: every point). An odd number, so that
    # the loss of any one still leaves a majority.
    lease_at: list[str] | None = Field(default=None, min_length=1, max_length=MAX_POINTS)

    @field_validator("points")
    @classmethod
    def _ids(cls, value: dict[str, VantagePoint]) -> dict[str, VantagePoint]:
        import re

        for name in value:
            if not re.fullmatch(VANTAGE_ID_PATTERN, name):
                raise ValueError(f"{name!r}: a vantage id is 1-32 lower-case letters, digits or '-'")
        return value

    @model_validator(mode="after")
    def _together(self) -> VantageConfig:
        if self.id is not None and self.id not in self.points:
            raise ValueError(f"id {self.id!r} is not one of the points ({', '.join(self.points)})")
        _check_distinct_homes(self.points)
        if self.min_voters > len(self.points):
            raise ValueError(
                f"min_voters {self.min_voters} is more than the {len(self.points)} point(s) configured"
            )
        for name in self.lease_at or []:
            if name not in self.points:
                raise ValueError(f"lease_at: {name!r} is not one of the points ({', '.join(self.points)})")
        if self.lease_at is not None and len(set(self.lease_at)) != len(self.lease_at):
            raise ValueError("lease_at names a point twice")
        if self.lease_at is not None:
            _check_lease_copies(len(self.lease_at), len(self.points))
        return self

    @property
    def lease_points(self) -> list[str]:
        """The points that keep a copy of the leader lease, in order."""
        return list(self.lease_at) if self.lease_at is not None else list(self.points)

    @property
    def lease_majority(self) -> int:
        """How many lease copies a leader must hold: a strict majority of :attr:`lease_points`."""
        return len(self.lease_points) // 2 + 1


def resolve_vantage(config: Config, source: str) -> Config:
    """``config`` with ``vantage.id`` taken from ``$ORCHESTRATOR_VANTAGE`` when it is set; a
    ConfigError naming the variable when it is not one of the points. Without either, the id
    stays None: ``status`` and the operator's commands need none; the health job refuses to run."""
    from orchestrator.core.errors import ConfigError

    vantage = config.vantage
    if vantage is None:
        return config
    chosen = os.environ.get(ENV_VANTAGE) or vantage.id
    if not chosen:
        return config  # status and the operator's commands need no id; the health job does
    if chosen not in vantage.points:
        raise ConfigError(
            f"${ENV_VANTAGE}: {chosen!r} is not one of vantage.points "
            f"({', '.join(vantage.points)}) in {source}"
        )
    return config.model_copy(update={"vantage": vantage.model_copy(update={"id": chosen})})


def _check_lease_copies(copies: int, points: int) -> None:
    """ValueError when ``copies`` lease copies (``lease_at``, among ``points`` points) cannot
    outlive the loss of one copy's cloud: the lease is held by a strict majority of its copies
    (docs/design/quorum.md), so one or two copies are lost with one cloud whenever a third point
    could have held one, and an even number needs as many survivors as the next odd one while
    costing a write more."""
    word = "copy" if copies == 1 else "copies"
    if copies < 3 <= points:
        raise ValueError(
            f"lease_at: {copies} {word}: losing the cloud of one loses the lease (a strict majority "
            "of the copies holds it); name at least 3 points, an odd number"
        )
    if copies % 2 == 0:
        raise ValueError(
            f"lease_at: {copies} {word}: name an odd number of points (a strict majority of "
            f"{copies} survives no more losses than one of {copies - 1})"
        )


def _check_distinct_homes(points: dict[str, VantagePoint]) -> None:
    """ValueError when two points name one home (the same bucket and prefix on the same account or
    endpoint): their lease copies would be one object counted twice towards the majority, lost
    together with that one cloud, and their states one state."""
    from orchestrator.core.storage import parse_uri

    seen: dict[tuple[str, ...], str] = {}
    for name, point in points.items():
        uri = parse_uri(point.storage)
        where = tuple(point.settings.get(k, "") for k in ("account_url", "endpoint_url"))
        home = (uri.scheme, uri.bucket, uri.prefix, *where)
        if home in seen:
            raise ValueError(
                f"points.{name}: the same home as {seen[home]} ({point.storage}): each point needs its "
                "own (its lease copy and its state live there)"
            )
        seen[home] = name
