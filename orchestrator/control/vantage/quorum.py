"""The quorum rule: from every vantage point's latest observation to one view of each cloud.

The rule (docs/design/quorum.md). For each cloud, the *voters* are the vantage points whose
observation

- could be read and checked (an unreadable one is unreachable),
- is fresh: taken at most ``freshness_s`` ago, and not more than ``freshness_s`` ahead of this
  point's clock (a clock that far off is not trusted either way),
- reached at least one endpoint (``seeing``: a point cut off from everything is unreachable, not
  a vote that everything is down),
- and has an entry for the cloud.

With fewer than ``min_voters`` voters the cloud has **no quorum**: its state is left as it is
(no flip either way). Otherwise it is **failing** when a strict majority of the voters see it
failing (their last probe failed), and **serving** otherwise. A tie is serving: taking a cloud out
needs more than half of the places that can see, so one point's partition (its network, not the
cloud, failing) never outvotes the others, and with two voters both must agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from orchestrator.control.health.machine import Verdict
from orchestrator.control.health.probe import ProbeResult
from orchestrator.control.vantage.observation import VantageObservation

__all__ = ["CloudView", "Quorum", "adjust", "quorum_view", "voters"]


class Quorum(StrEnum):
    """A cloud's standing in the quorum view."""

    SERVING = "serving"
    FAILING = "failing"
    NO_QUORUM = "no-quorum"


@dataclass(frozen=True, slots=True)
class CloudView:
    """The quorum's view of one cloud: its standing, the points that voted, those among them that
    see it failing, and the verdict most of the serving votes gave (ok or degraded)."""

    cloud: str
    quorum: Quorum
    voters: tuple[str, ...]
    failing: tuple[str, ...]
    serving_verdict: Verdict
    reason: str

    def as_dict(self) -> dict[str, object]:
        """For status and JSON output."""
        return {
            "quorum": self.quorum.value,
            "voters": list(self.voters),
            "failing": list(self.failing),
            "reason": self.reason,
        }


def voters(
    observations: Mapping[str, VantageObservation | None], *, now: float, freshness_s: float
) -> dict[str, VantageObservation]:
    """The observations that may vote: readable, fresh (within ``freshness_s`` of ``now`` either
    way) and seeing (vantage id -> observation)."""
    return {
        name: obs
        for name, obs in observations.items()
        if obs is not None and obs.seeing and abs(now - obs.at) <= freshness_s
    }


def quorum_view(
    observations: Mapping[str, VantageObservation | None],
    clouds: Iterable[str],
    *,
    now: float,
    freshness_s: float,
    min_voters: int,
) -> dict[str, CloudView]:
    """Each cloud's :class:`CloudView` under the rule in the module docstring. ``observations``:
    vantage id -> its latest observation (None: unreadable). ``now`` and ``freshness_s`` in
    seconds; ``min_voters`` >= 1 (ValueError otherwise)."""
    if min_voters < 1:
        raise ValueError(f"min_voters must be at least 1, not {min_voters}")
    fresh = voters(observations, now=now, freshness_s=freshness_s)
    view: dict[str, CloudView] = {}
    for cloud in clouds:
        seen = {name: obs.clouds[cloud] for name, obs in sorted(fresh.items()) if cloud in obs.clouds}
        failing = tuple(name for name, s in seen.items() if s.failing)
        serving = Counter(s.verdict for s in seen.values() if not s.failing)
        # Degraded over ok only when more serving voters say so (ties: ok).
        verdict = Verdict.DEGRADED if serving[Verdict.DEGRADED] > serving[Verdict.OK] else Verdict.OK
        names = tuple(seen)
        if len(names) < min_voters:
            quorum = Quorum.NO_QUORUM
            reason = f"no quorum: {len(names)} of {min_voters} needed vantage point(s) fresh and seeing"
        elif 2 * len(failing) > len(names):
            quorum = Quorum.FAILING
            first = seen[failing[0]].reason
            reason = f"{len(failing)} of {len(names)} vantage points see it failing ({failing[0]}: {first})"
        else:
            quorum = Quorum.SERVING
            reason = f"{len(names) - len(failing)} of {len(names)} vantage points see it serving"
        view[cloud] = CloudView(cloud, quorum, names, failing, verdict, reason)
    return view


def adjust(
    probes: Mapping[str, list[ProbeResult]], view: Mapping[str, CloudView]
) -> dict[str, list[ProbeResult]]:
    """This point's samples as the state machine takes them under the quorum: a cloud without a
    quorum gets no sample (its state holds); a sample that disagrees with the quorum (failed here
    while the quorum sees the cloud serving, or the reverse) is replaced by the quorum's verdict,
    with its reason; a sample that agrees is kept as probed (its latency feeds the p95)."""
    adjusted: dict[str, list[ProbeResult]] = {}
    for cloud, samples in probes.items():
        standing = view.get(cloud)
        if standing is None or standing.quorum is Quorum.NO_QUORUM:
            continue
        failing = standing.quorum is Quorum.FAILING
        out = []
        for sample in samples:
            if (sample.verdict is Verdict.FAIL) == failing:
                out.append(sample)
                continue
            verdict = Verdict.FAIL if failing else standing.serving_verdict
            reason = standing.reason if failing else f"{standing.reason}; here: {sample.reason}"
            out.append(
                replace(
                    sample,
                    verdict=verdict,
                    reason=reason,
                    not_ready=False,
                    latency_ms={},
                )
            )
        adjusted[cloud] = out
    return adjusted
