"""``health --watch --apply`` in a background thread, and questions about what it has seen.

The watch has a control plane of its own (a ``ControlPlane`` is not thread-safe) and keeps every
round's report with the wall-clock time it arrived, so the story can ask when a cloud flipped,
when a set of weights was applied, and when the canaries first passed on a version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from orchestrator.control.config import Config
from orchestrator.control.reports import RoundReport
from orchestrator.control.store import StateStore
from orchestrator.control.types import Flip, HealthState
from orchestrator.control.wiring import open_plane
from orchestrator.core.errors import OrchestratorError

__all__ = ["Watch"]


class Watch:
    def __init__(
        self, config: Config, *, on_flip: Callable[[Flip], None], on_error: Callable[[str], None]
    ) -> None:
        self.config = config
        self.on_flip = on_flip
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rounds: list[tuple[float, RoundReport]] = []
        self._lock = threading.Lock()

    def start(self) -> Watch:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="health-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    @property
    def died(self) -> bool:
        """Started, not stopped, and yet no longer running."""
        return self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        plane = open_plane(self.config, store=StateStore.open(Path(self.config.state.path)))
        try:
            while not self._stop.is_set():
                try:
                    # A failed round is reported to on_error and the loop goes on; what ends it
                    # (another holder of the health-job lease) is said here, and retried.
                    plane.watch(
                        apply=True, stop=self._stop.is_set, on_round=self._on_round, on_error=self.on_error
                    )
                except OrchestratorError as exc:
                    self.on_error(f"health round failed: {exc}")
                    self._stop.wait(self.config.health.interval_s)
        finally:
            plane.close()

    def _on_round(self, report: RoundReport) -> None:
        with self._lock:
            self._rounds.append((time.time(), report))
        for flip in report.flips:
            self.on_flip(flip)

    def _since(self, since: float) -> list[tuple[float, RoundReport]]:
        with self._lock:
            return [(at, report) for at, report in self._rounds if at >= since]

    # -- what it saw (wall-clock times) ----------------------------------------------------------
    def flip_after(self, cloud: str, state: HealthState, since: float) -> tuple[float, float] | None:
        """(when ``cloud`` flipped to ``state`` after ``since``, its hold-down's end), or None."""
        for _, report in self._since(since):
            for flip in report.flips:
                if flip.cloud == cloud and flip.new is state and flip.at >= since:
                    return flip.at, report.records[cloud].machine.hold_until
        return None

    def applied_after(
        self, since: float, accept: Callable[[dict[str, int]], bool]
    ) -> tuple[float, dict[str, int]] | None:
        """(when, weights) of the first weights applied after ``since`` that ``accept`` likes."""
        for at, report in self._since(since):
            if report.applied and report.weights and accept(report.weights):
                return at, report.weights
        return None

    def canary_ok_after(self, since: float, version: str) -> float | None:
        """When a round first found every cloud serving ``version`` with its canary right."""
        for at, report in self._since(since):
            probes = [p[-1] for p in report.probes.values() if p]
            if (
                report.expected_version == version
                and len(probes) == len(report.records)
                and all(p.verdict.value == "ok" and p.served_version == version for p in probes)
            ):
                return at
        return None
