"""The reconciler's workers: each backend on its own, a slow one reported pending without holding
the others or the caller, and once free it ends on the decision committed last. Fake backends
(the real ones are exercised in tests/control)."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from orchestrator.control.routing.backends import AppliedRouting, Comparison
from orchestrator.control.routing.reconcile import Reconciler
from orchestrator.control.store import DesiredWeights

TARGETS = {"aws": "http://aws", "gcp": "http://gcp", "azure": "http://azure"}


class Backend:
    """Holds weights in memory; ``gate`` (when given) holds every read until it is set."""

    kind = "fake"

    def __init__(self, name: str, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.location = name
        self.held: dict[str, int] = {}
        self.gate, self.fail = gate, fail
        self.applied: list[dict[str, int]] = []

    def compare(self, weights: Mapping[str, int], targets: Mapping[str, str]) -> Comparison:
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail:
            raise OSError("disk full")
        differences = tuple(f"{c}: {self.held.get(c)}" for c, w in weights.items() if self.held.get(c) != w)
        return Comparison(dict(self.held), differences)

    def apply(
        self, weights: Mapping[str, int], targets: Mapping[str, str], *, reason: str = ""
    ) -> AppliedRouting:
        self.held.update(weights)
        self.applied.append(dict(weights))
        return AppliedRouting(self.kind, self.location, dict(weights), {}, "1", 0.0)

    def current(self) -> dict[str, int]:
        return dict(self.held)

    def close(self) -> None:
        pass


def test_a_slow_backend_is_pending_while_the_others_are_written_and_finishes_later() -> None:
    gate = threading.Event()
    slow, fast, broken = Backend("slow", gate), Backend("fast"), Backend("broken", fail=True)
    desired = [DesiredWeights({"aws": 100, "gcp": 0}, 1.0, "first")]
    reconciler = Reconciler([slow, fast, broken], TARGETS, lambda: desired[-1])
    try:
        first = {r.location: r for r in reconciler.run(wait=0.2)}
        assert first["fast"].ok
        assert first["fast"].wrote
        assert fast.held == {"aws": 100, "gcp": 0}
        assert first["broken"].stale
        assert "disk full" in (first["broken"].error or "")
        assert first["slow"].pending
        assert not first["slow"].ok

        desired.append(DesiredWeights({"aws": 0, "gcp": 100}, 2.0, "second"))
        reconciler.run(wait=0.0)  # asked again while busy: one more run, with the newest decision
        reconciler.run(wait=0.0)
        gate.set()
        last = {r.location: r for r in reconciler.run()}
        assert last["slow"].ok
        assert slow.held == {"aws": 0, "gcp": 100}, "it ends on the decision committed last"
        assert fast.applied == [{"aws": 100, "gcp": 0}, {"aws": 0, "gcp": 100}]
    finally:
        gate.set()
        reconciler.close()


def test_nothing_is_written_before_a_decision_is_committed() -> None:
    backend = Backend("b")
    reconciler = Reconciler([backend], TARGETS, lambda: None)
    try:
        assert reconciler.run() == []
        assert backend.applied == []
    finally:
        reconciler.close()
