"""A rollout's plan: the order of the clouds, the canary weight, the bake time, the gates' bounds.

Given as a YAML file (``rollout --plan FILE``) and/or options (``--order``, ``--canary-weight``,
``--bake``), which win over the file. The default order is the cheapest cloud first, by the
router's cost per request (:mod:`orchestrator.control.routing.pricing`): the stage that risks the
least money and traffic comes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestrator.core.contract import CloudName
from orchestrator.core.errors import ConfigError

__all__ = ["GateBounds", "RolloutPlan", "load_plan"]

# A day: a stage baking longer is a typo, and the rollout's record would hold the lease-free
# continuation rule (docs/operating.md) for that long.
MAX_BAKE_S = 86_400.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GateBounds(_Strict):
    """When a stage's gates fail (:mod:`orchestrator.control.rollout.gates`)."""

    # One percentage point more 5xx than the old version: above the noise of a few hundred requests,
    # far below a broken version (which fails most requests).
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    # Fewer requests than this in a bake time say nothing about an error rate or a p95: no-data.
    min_requests: int = Field(default=20, ge=1, le=1_000_000)
    # Half again the old version's p95, and at least 50 ms more: a real regression, not jitter.
    max_p95_ratio: float = Field(default=1.5, ge=1, le=100)
    p95_slack_ms: float = Field(default=50.0, ge=0, le=60_000)
    # JS distance (base 2) of predicted-class distributions: 0.1 is well above the sampling noise of
    # a few hundred rows over ten classes (~0.03), well below a shifted model (a class swapped: >0.3).
    max_js_distance: float = Field(default=0.1, gt=0, le=1)
    # Rows a drift window needs before its distribution means anything (issue 16's minimum).
    min_rows: int = Field(default=200, ge=1, le=10_000_000)


class RolloutPlan(_Strict):
    """The plan of one rollout. ``order`` None: the cheapest cloud first. Times in seconds."""

    order: tuple[CloudName, ...] | None = None
    # The first stage's share (of 100): enough traffic to judge in one bake time, little harm if bad.
    canary_weight: int = Field(default=10, ge=1, le=100)
    # Five minutes per stage: several health rounds and a few hundred requests at modest traffic.
    bake_s: float = Field(default=300.0, ge=0, le=MAX_BAKE_S)
    # The longest an endpoint may take to load the new version after its pointer moved (it reloads
    # every MODEL_RELOAD_INTERVAL, 30 s by default, and downloads the version once).
    serve_timeout_s: float = Field(default=180.0, gt=0, le=3600)
    # How often the moved cloud is probed (canary) during its bake time.
    probe_interval_s: float = Field(default=5.0, gt=0, le=600)
    # How long the rollout's record may go unwritten before the health job presumes its command dead
    # and takes it over. The holder writes it at every step (every probe_interval_s); a minute
    # exceeds the longest step with the default bounds (24 s: see takeover.longest_step_s)
    # plus an interval. More than three intervals (checked below), and more than the longest step
    # (checked against the configuration when a rollout starts).
    takeover_after_s: float = Field(default=60.0, gt=0, le=MAX_BAKE_S)
    gates: GateBounds = Field(default_factory=GateBounds)

    @model_validator(mode="after")
    def _takeover_after_heartbeats(self) -> RolloutPlan:
        if self.takeover_after_s <= 3 * self.probe_interval_s:
            raise ValueError(
                f"takeover_after_s ({self.takeover_after_s:g}) must exceed three probe intervals "
                f"({3 * self.probe_interval_s:g} s): the command writes the record once per interval"
            )
        return self

    def resolved_order(self, clouds: Sequence[str], costs: Mapping[str, float]) -> list[str]:
        """The clouds in stage order: the plan's (each configured cloud exactly once), or by cost per
        request, the cheapest first (ties by name). ConfigError naming the cloud otherwise."""
        if self.order is None:
            return sorted(clouds, key=lambda c: (costs.get(c, float("inf")), c))
        order: list[str] = list(self.order)
        unknown = [c for c in order if c not in clouds]
        if unknown:
            raise ConfigError(
                f"rollout order: {', '.join(unknown)} not configured (configured: {', '.join(clouds)})"
            )
        if len(set(order)) != len(order) or set(order) != set(clouds):
            raise ConfigError(f"rollout order: name each configured cloud once ({', '.join(clouds)})")
        return order


def load_plan(path: str | None, overrides: Mapping[str, Any]) -> RolloutPlan:
    """The plan from ``path`` (YAML; None: the defaults) with ``overrides`` (options given, not None)
    on top. ConfigError naming the file or the option and the key at fault."""
    data: dict[str, Any] = {}
    where = "rollout options"
    if path is not None:
        from orchestrator.control.config_file import parse_yaml, read_text

        where = path
        if "://" not in path and not Path(path).is_file():
            raise ConfigError(f"{path}: rollout plan (--plan) not found")
        parsed = parse_yaml(read_text(path), path)
        if parsed is not None and not isinstance(parsed, dict):
            raise ConfigError(f"{path}: a rollout plan is a mapping (order, canary_weight, bake_s, gates)")
        data = dict(parsed or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RolloutPlan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(plan)"
        raise ConfigError(f"{where}: {key}: {first['msg']}") from None
