"""One vantage point's observation: what it saw of every cloud, written to its home, read by the others.

The document (``orchestrator/vantage/<id>.json`` under the point's location; one writer, a plain put)::

    {"kind": "orchestrator-vantage", "schema": 1, "vantage": "gcp", "at": 1767225600.0,
     "seeing": true,                        # it reached at least one endpoint
     "clouds": {"aws": {"verdict": "ok", "reason": "ok", "at": 1767225599.2}, ...},
     "overrides": {"azure": {"drained": true, "reason": "...", "actor": "alice", "at": ...}}}

A document that cannot be read, parsed or checked is reported as an error string and counts as
no observation (unreachable), never as a vote.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from orchestrator.control.health.machine import Verdict
from orchestrator.control.health.probe import ProbeResult, short
from orchestrator.control.store.base import Override, check_cloud
from orchestrator.core.contract import LEASE_OBJECT, VANTAGE_PREFIX
from orchestrator.core.storage import Storage

__all__ = [
    "LEASE_KEY",
    "OBSERVATION_KIND",
    "CloudSeen",
    "VantageObservation",
    "decode_observation",
    "observation_key",
    "publish",
    "reached",
]

OBSERVATION_KIND = "orchestrator-vantage"
OBSERVATION_SCHEMA = 1
# Beside the state document (orchestrator/state.json) under the same location.
OBSERVATION_PREFIX = VANTAGE_PREFIX
LEASE_KEY = LEASE_OBJECT
# An observation is a few hundred bytes; anything far larger was not written by an orchestrator.
MAX_OBSERVATION_BYTES = 64 * 1024
# Probe reasons that mean no answer came back at all (orchestrator.control.health.probe): the
# network, not the endpoint, is what failed, so the probe says nothing about the cloud's health.
NO_ANSWER_PREFIXES = ("unreachable", "timed out")


def observation_key(vantage: str) -> str:
    """The key of ``vantage``'s observation under its point's location."""
    return f"{OBSERVATION_PREFIX}{vantage}.json"


def reached(result: ProbeResult) -> bool:
    """The probe got an answer from the endpoint (any answer, good or bad)."""
    return not (result.verdict is Verdict.FAIL and result.reason.startswith(NO_ANSWER_PREFIXES))


@dataclass(frozen=True, slots=True)
class CloudSeen:
    """What one vantage point saw of one cloud: the verdict of its last probe, why, when."""

    verdict: Verdict
    reason: str
    at: float

    @property
    def failing(self) -> bool:
        """The probe failed (a degraded cloud is serving, slowly or another version)."""
        return self.verdict is Verdict.FAIL


@dataclass(frozen=True, slots=True)
class VantageObservation:
    """One vantage point's latest round (see the module docstring)."""

    vantage: str
    at: float
    seeing: bool
    clouds: dict[str, CloudSeen]
    overrides: dict[str, Override] = field(default_factory=dict)

    @classmethod
    def from_round(
        cls,
        vantage: str,
        at: float,
        probes: Mapping[str, Sequence[ProbeResult]],
        overrides: Mapping[str, Override],
    ) -> VantageObservation:
        """The observation of a round: each cloud's last sample; ``seeing`` if any sample of any
        cloud got an answer."""
        last = {cloud: results[-1] for cloud, results in probes.items() if results}
        seeing = any(reached(r) for results in probes.values() for r in results)
        clouds = {c: CloudSeen(r.verdict, short(r.reason), r.at) for c, r in last.items()}
        return cls(vantage, at, seeing, clouds, dict(overrides))

    def to_json(self) -> bytes:
        """The document as stored (keys sorted)."""
        return orjson.dumps(
            {
                "kind": OBSERVATION_KIND,
                "schema": OBSERVATION_SCHEMA,
                "vantage": self.vantage,
                "at": self.at,
                "seeing": self.seeing,
                "clouds": {
                    c: {"verdict": s.verdict.value, "reason": s.reason, "at": s.at}
                    for c, s in self.clouds.items()
                },
                "overrides": {
                    c: {"drained": o.drained, "reason": o.reason, "actor": o.actor, "at": o.at}
                    for c, o in self.overrides.items()
                },
            },
            option=orjson.OPT_SORT_KEYS,
        )


def decode_observation(data: bytes, vantage: str) -> VantageObservation:
    """Parse and check an observation written by ``vantage``; ValueError naming what is wrong."""
    if len(data) > MAX_OBSERVATION_BYTES:
        raise ValueError(f"{len(data)} bytes, more than any observation ({MAX_OBSERVATION_BYTES})")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != OBSERVATION_KIND:
        raise ValueError("not a vantage observation")
    if doc.get("schema") != OBSERVATION_SCHEMA:
        raise ValueError(f"schema {doc.get('schema')!r}, this orchestrator reads {OBSERVATION_SCHEMA}")
    if doc.get("vantage") != vantage:
        raise ValueError(f"written as {doc.get('vantage')!r}, read as {vantage!r}")
    seeing = doc.get("seeing")
    if not isinstance(seeing, bool):
        raise ValueError("seeing: expected true or false")
    clouds_raw, overrides_raw = doc.get("clouds"), doc.get("overrides", {})
    if not isinstance(clouds_raw, dict) or not isinstance(overrides_raw, dict):
        raise ValueError("clouds and overrides must be objects")
    clouds: dict[str, CloudSeen] = {}
    for cloud, raw in clouds_raw.items():
        row = _object(raw, f"clouds.{cloud}")
        clouds[check_cloud(cloud)] = CloudSeen(
            Verdict(_text(row.get("verdict"), "verdict")),
            _text(row.get("reason"), "reason"),
            _time(row.get("at"), "at"),
        )
    overrides: dict[str, Override] = {}
    for cloud, raw in overrides_raw.items():
        row = _object(raw, f"overrides.{cloud}")
        drained = row.get("drained")
        if not isinstance(drained, bool):
            raise ValueError(f"overrides.{cloud}.drained: expected true or false")
        overrides[check_cloud(cloud)] = Override(
            cloud,
            drained,
            _text(row.get("reason"), "reason"),
            _text(row.get("actor"), "actor"),
            _time(row.get("at"), "at"),
        )
    return VantageObservation(vantage, _time(doc.get("at"), "at"), seeing, clouds, overrides)


def publish(storage: Storage, observation: VantageObservation) -> None:
    """Write ``observation`` to its point's home (one writer per object: a plain put)."""
    data = observation.to_json()
    storage.put(
        observation_key(observation.vantage),
        data,
        sha256=hashlib.sha256(data).hexdigest(),
        content_type="application/json",
    )


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected an object")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > 1000:
        raise ValueError(f"{what}: expected a short string")
    return value


def _time(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what}: expected a time in unix seconds")
    return float(value)
