"""The per-cloud health state machine: pure, with the clock passed in.

Each probe yields one :class:`Observation`: ``ok``, ``degraded`` (answers correctly, but over the
latency SLO or with the wrong model version) or ``fail`` (no answer, not ready, a wrong answer).
The machine turns streams of observations into :class:`~orchestrator.control.types.HealthState` changes:

- going down needs ``unhealthy_threshold`` consecutive bad observations; coming back needs
  ``healthy_threshold`` consecutive good ones *and* the hold-down to have passed (hysteresis);
- every fall to unhealthy counts as a flap and starts a hold-down of ``hold_down_s * 2**(flaps-1)``
  (capped at ``max_hold_down_s``), so a cloud that keeps flapping stays out longer each time. The
  hold-down doubles: Envoy's outlier ejection, which has the same aim, grows linearly instead
  (``base_ejection_time`` times the number of ejections, capped by ``max_ejection_time``); ours
  reaches its cap after a few flaps rather than many. A cloud that stays healthy for
  ``max_hold_down_s`` is forgiven;
- ``drained`` belongs to the operator: observations keep the counters current (failback needs
  them) but never move a drained cloud;
- during ``startup_grace_s`` after a cloud is first seen, "not ready" is not held against it.

Every change is returned as a :class:`~orchestrator.control.types.Flip` with its reason; nothing else is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from orchestrator.control.types import Flip, HealthState

__all__ = ["Machine", "MachineConfig", "Observation", "Verdict", "drain", "observe", "undrain"]


class Verdict(StrEnum):
    """One probe's conclusion (see the module docstring)."""

    OK = "ok"
    DEGRADED = "degraded"
    FAIL = "fail"


@dataclass(frozen=True)
class Observation:
    """One probe's verdict as the machine takes it."""

    verdict: Verdict
    reason: str
    not_ready: bool = False  # a failure that startup grace may excuse


@dataclass(frozen=True)
class MachineConfig:
    """The thresholds and periods of ``health`` in the configuration (README, their reasons)."""

    unhealthy_threshold: int = 2
    healthy_threshold: int = 3
    hold_down_s: float = 30.0
    max_hold_down_s: float = 600.0
    startup_grace_s: float = 30.0


@dataclass(frozen=True)
class Machine:
    """One cloud's health memory; persisted between runs as a plain dict (:meth:`to_dict`)."""

    state: HealthState = HealthState.UNHEALTHY
    first_seen: float | None = None
    fails: int = 0  # consecutive FAIL observations
    degraded: int = 0  # consecutive DEGRADED observations
    oks: int = 0  # consecutive OK observations
    goods: int = 0  # consecutive OK or DEGRADED observations
    flaps: int = 0
    hold_until: float = 0.0
    last_up: float | None = None  # when it last came back into service
    probed: bool = False  # False until the first observation: "unhealthy" then means "unknown"
    last_reason: str = "not probed yet"

    def to_dict(self) -> dict[str, Any]:
        """The machine as the state stores it (read back by :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        """The machine :meth:`to_dict` saved. Unknown keys are ignored (a newer orchestrator may add
        some); a known key with a value no machine has raises ValueError naming it."""
        fields: dict[str, Any] = {}
        for key, value in data.items():
            if key in cls.__dataclass_fields__:
                fields[key] = _field(key, value)
        return cls(**fields)


_COUNTERS = frozenset({"fails", "degraded", "oks", "goods", "flaps"})
_OPTIONAL_TIMES = frozenset({"first_seen", "last_up"})


def _field(key: str, value: Any) -> Any:
    """``value`` checked for the Machine field ``key`` (ValueError naming the key otherwise)."""
    if key == "state":
        try:
            return HealthState(value)
        except ValueError:
            raise ValueError(f"state: {_shown(value)} is not a health state") from None
    if key in _COUNTERS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key}: expected a non-negative integer, not {_shown(value)}")
        return value
    if key == "probed":
        if not isinstance(value, bool):
            raise ValueError(f"probed: expected true or false, not {_shown(value)}")
        return value
    if key == "last_reason":
        if not isinstance(value, str):
            raise ValueError(f"last_reason: expected a string, not {_shown(value)}")
        return value
    if value is None and key in _OPTIONAL_TIMES:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a finite number, not {_shown(value)}")
    return float(value)


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def observe(
    machine: Machine, obs: Observation, now: float, cfg: MachineConfig, cloud: str
) -> tuple[Machine, Flip | None]:
    """Feed one observation; return the new machine and the flip it caused, if any."""
    m = replace(machine, first_seen=machine.first_seen if machine.first_seen is not None else now)
    in_grace = now - m.first_seen < cfg.startup_grace_s if m.first_seen is not None else False
    if obs.verdict is Verdict.FAIL and obs.not_ready and in_grace:
        return replace(m, last_reason=f"{obs.reason} (startup grace)"), None
    m = _count(m, obs)
    if m.state is HealthState.DRAINED:
        return m, None
    new, why = _next_state(m, obs, now, cfg)
    if new is m.state:
        return m, None
    m = _enter(m, new, now, cfg)
    return m, Flip(cloud=cloud, at=now, old=machine.state, new=new, reason=why)


def _count(m: Machine, obs: Observation) -> Machine:
    bad = obs.verdict is Verdict.FAIL
    return replace(
        m,
        probed=True,
        last_reason=obs.reason,
        fails=m.fails + 1 if bad else 0,
        degraded=m.degraded + 1 if obs.verdict is Verdict.DEGRADED else 0,
        oks=m.oks + 1 if obs.verdict is Verdict.OK else 0,
        goods=0 if bad else m.goods + 1,
    )


def _next_state(  # noqa: PLR0911  # the transition table, one return per edge
    m: Machine, obs: Observation, now: float, cfg: MachineConfig
) -> tuple[HealthState, str]:
    if m.state is not HealthState.UNHEALTHY and m.fails >= cfg.unhealthy_threshold:
        return HealthState.UNHEALTHY, f"{m.fails} consecutive failures: {obs.reason}"
    if m.state is HealthState.HEALTHY and m.degraded >= cfg.unhealthy_threshold:
        return HealthState.DEGRADED, f"{m.degraded} consecutive degraded probes: {obs.reason}"
    if m.state is HealthState.DEGRADED and m.oks >= cfg.healthy_threshold:
        return HealthState.HEALTHY, f"{m.oks} consecutive good probes"
    if m.state is HealthState.UNHEALTHY and m.goods >= cfg.healthy_threshold:
        if now < m.hold_until:
            return m.state, ""
        if obs.verdict is Verdict.OK:
            return HealthState.HEALTHY, f"{m.goods} consecutive answering probes"
        return HealthState.DEGRADED, f"{m.goods} consecutive answering probes; degraded: {obs.reason}"
    return m.state, ""


def _enter(m: Machine, new: HealthState, now: float, cfg: MachineConfig) -> Machine:
    if new is HealthState.UNHEALTHY:
        # A cloud that stayed up for a full max hold-down since its last return is forgiven.
        stable = m.last_up is not None and now - m.last_up >= cfg.max_hold_down_s
        flaps = 1 if stable else m.flaps + 1
        hold = min(cfg.hold_down_s * 2 ** (flaps - 1), cfg.max_hold_down_s)
        return replace(m, state=new, flaps=flaps, hold_until=now + hold)
    if m.state is HealthState.UNHEALTHY:
        return replace(m, state=new, last_up=now)
    return replace(m, state=new)


def drain(machine: Machine, now: float, cloud: str, reason: str, actor: str) -> tuple[Machine, Flip | None]:
    """An operator takes the cloud out of rotation; draining twice changes nothing."""
    if machine.state is HealthState.DRAINED:
        return machine, None
    flip = Flip(cloud=cloud, at=now, old=machine.state, new=HealthState.DRAINED, reason=reason, actor=actor)
    return replace(machine, state=HealthState.DRAINED), flip


def undrain(machine: Machine, now: float, cloud: str, reason: str, actor: str) -> tuple[Machine, Flip | None]:
    """An operator returns a drained cloud, which the caller has just probed healthy."""
    if machine.state is not HealthState.DRAINED:
        return machine, None
    flip = Flip(
        cloud=cloud, at=now, old=HealthState.DRAINED, new=HealthState.HEALTHY, reason=reason, actor=actor
    )
    return replace(machine, state=HealthState.HEALTHY, last_up=now, hold_until=0.0), flip
