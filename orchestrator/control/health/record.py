"""One cloud as the control plane remembers it between runs: its machine, canary latencies, last probe.

The state store keeps each record as an opaque JSON object (:meth:`CloudRecord.to_dict`);
:meth:`CloudRecord.from_dict` reads it back strictly, so a value no orchestrator writes (a state
``"bogus"``, a negative counter, a latency that is not a number) is a ValueError naming the key,
which the control plane reports as :class:`~orchestrator.control.errors.StateCorrupt`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.control.health.machine import Machine, MachineConfig, observe
from orchestrator.control.health.probe import ProbeResult
from orchestrator.control.types import Flip

__all__ = ["CloudRecord"]


@dataclass
class CloudRecord:
    """One cloud as the control plane remembers it between runs."""

    machine: Machine = field(default_factory=Machine)
    latencies_ms: list[float] = field(default_factory=list)
    last_probe: dict[str, Any] | None = None

    @property
    def p95_ms(self) -> float | None:
        """The 95th percentile of the recent canary latencies (nearest rank), None before any."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def observe(self, cloud: str, result: ProbeResult, cfg: MachineConfig, window: int) -> Flip | None:
        """Feed one probe result: the machine moves (maybe flipping), the latency window slides."""
        self.machine, flip = observe(self.machine, result.observation, result.at, cfg, cloud)
        if result.canary_ms is not None:
            self.latencies_ms = [*self.latencies_ms, result.canary_ms][-window:]
        self.last_probe = {
            "at": result.at,
            "verdict": result.verdict.value,
            "reason": result.reason,
            "served_version": result.served_version,
            "latency_ms": result.latency_ms,
        }
        if result.drift is not None:
            self.last_probe["drift"] = result.drift
        return flip

    def to_dict(self) -> dict[str, Any]:
        """The record as the state stores it (read back by :meth:`from_dict`)."""
        return {
            "machine": self.machine.to_dict(),
            "latencies_ms": self.latencies_ms,
            "last_probe": self.last_probe,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CloudRecord:
        """The record :meth:`to_dict` saved; ValueError naming the key if it holds something else."""
        machine = data.get("machine", {})
        if not isinstance(machine, dict):
            raise ValueError("machine: expected an object")
        try:
            parsed = Machine.from_dict(machine)
        except ValueError as exc:
            raise ValueError(f"machine.{exc}") from None
        latencies = data.get("latencies_ms", [])
        if not isinstance(latencies, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
            for x in latencies
        ):
            raise ValueError("latencies_ms: expected a list of non-negative numbers")
        last_probe = data.get("last_probe")
        if last_probe is not None and not isinstance(last_probe, dict):
            raise ValueError("last_probe: expected an object or null")
        return cls(machine=parsed, latencies_ms=[float(x) for x in latencies], last_probe=last_probe)
