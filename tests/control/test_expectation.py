"""What the probes check against when the buckets cannot tell: never a crash of the round, and never
one endpoint's word against the others.

With buckets the expected version and canary come from LATEST; when no bucket is configured, or none
answers, each endpoint is checked against the canary its own /v1/model reports, so an endpoint
answering wrongly fails only itself. A bucket that stops answering later leaves the last expectation
in use. Real endpoints, a real misbehaving one, local buckets and an S3 endpoint that refuses.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from orchestrator.control.health.machine import Verdict
from orchestrator.control.health.prober import EXPECTATION_DEADLINE_S, EXPECTATION_MIN_AGE_S
from orchestrator.control.types import HealthState
from orchestrator.demo.emulators import closed_port
from tests.control.conftest import CLOUDS, Fleet
from tests.faults import MisbehavingEndpoint


def clouds(fleet: Fleet, storage: dict[str, str] | None = None, **extra: dict[str, str]) -> dict[str, dict]:
    return {
        cloud: {
            "endpoint": fleet.url(cloud),
            **({"storage": storage[cloud]} if storage else {}),
            **extra.get(cloud, {}),
        }
        for cloud in CLOUDS
    }


def test_without_buckets_each_endpoint_is_checked_against_its_own_canary(
    fleet: Fleet, tmp_path: Path
) -> None:
    bad = MisbehavingEndpoint(fleet.endpoints["aws"].url, log_path=tmp_path / "bad.log").start()
    try:
        fleet.fronts["aws"] = bad.url
        plane = fleet.plane(fleet.config(clouds=clouds(fleet)))
        report = plane.health_round(apply=True)
        assert report.exit_code == 0, [r.machine.last_reason for r in report.records.values()]
        assert report.expected_version is None
        assert "each endpoint is checked against the canary it reports" in report.notes[0]

        bad.mode("null_probabilities")  # aws lies: it fails alone, the others are not judged by it
        report = plane.health_round(apply=True)
        assert report.records["aws"].machine.state is HealthState.UNHEALTHY
        assert "not all numbers" in report.records["aws"].machine.last_reason
        assert {report.records[c].machine.state for c in ("gcp", "azure")} == {HealthState.HEALTHY}
        assert fleet.route53_weights()["aws"] == 0
    finally:
        fleet.fronts.pop("aws", None)
        bad.stop()


def test_buckets_that_do_not_answer_never_stop_the_round(fleet: Fleet) -> None:
    refusing = f"s3://models-{closed_port()}"
    settings = {"endpoint_url": f"http://127.0.0.1:{closed_port()}"}
    plane = fleet.plane(
        fleet.config(
            clouds=clouds(
                fleet,
                dict.fromkeys(CLOUDS, refusing),
                **{cloud: {"storage_settings": settings} for cloud in CLOUDS},
            )
        )
    )
    report = plane.health_round(apply=True)
    assert report.exit_code == 0
    assert all(p.verdict is Verdict.OK for probes in report.probes.values() for p in probes)
    # Read failed, or still trying past the deadline: either way the round went on without it.
    assert "buckets" in report.notes[0]
    assert "each endpoint is checked against the canary it reports" in report.notes[0]


def test_a_bucket_gone_later_leaves_the_last_expectation_in_use(fleet: Fleet) -> None:
    plane = fleet.plane()
    first = plane.health_round(apply=True)
    version = fleet.models["v1"].manifest.version
    assert first.expected_version == version
    for cloud in CLOUDS:
        shutil.rmtree(fleet.root / "buckets" / cloud)
    time.sleep(EXPECTATION_MIN_AGE_S)
    kept = plane.prober.expectation(refresh=True)  # as when an endpoint serves an unknown version
    assert kept.version == version
    assert plane.prober.note is not None
    assert f"still checking against version {version}" in plane.prober.note
    again = plane.health_round(apply=True)
    assert again.exit_code == 0
    assert again.expected_version == version, "still checking against the version read before"


class _Stalled:
    """A bucket whose reads hang until ``gate`` is set (a black-holed storage API)."""

    def __init__(self, storage: object, gate: threading.Event) -> None:
        self._storage, self._gate = storage, gate

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._storage, name)
        if name not in ("get", "stat", "list", "get_range"):
            return attribute

        def stalled(*args: object, **kwargs: object) -> object:
            self._gate.wait(60)
            return attribute(*args, **kwargs)

        return stalled


def test_a_bucket_that_hangs_never_stretches_a_round(fleet: Fleet, tmp_path: Path) -> None:
    """An endpoint serving a version the expectation does not know makes the prober re-read the
    buckets; when they hang, the round goes on with the expectation it has (the endpoint is
    judged against it) instead of waiting for them, round after round."""
    bad = MisbehavingEndpoint(fleet.endpoints["aws"].url, log_path=tmp_path / "bad.log").start()
    gate = threading.Event()
    try:
        fleet.fronts["aws"] = bad.url
        plane = fleet.plane(fleet.config())
        assert plane.health_round(apply=False).expected_version == fleet.models["v1"].manifest.version
        prober = plane.prober
        prober._buckets = {name: _Stalled(s, gate) for name, s in prober._storages().items()}  # type: ignore[misc]
        bad.mode("wrong_version")
        time.sleep(EXPECTATION_MIN_AGE_S)
        results: dict = {}
        thread = threading.Thread(target=lambda: results.update(prober.probe()), daemon=True)
        thread.start()
        thread.join(timeout=EXPECTATION_DEADLINE_S - 1)
        finished = not thread.is_alive()
        gate.set()
        thread.join(30)
    finally:
        gate.set()
        fleet.fronts.pop("aws", None)
        bad.stop()
    assert finished, "the round waited for the hanging buckets"
    assert results["aws"].verdict is Verdict.DEGRADED
    assert "serves version 0000not-deployed" in results["aws"].reason
    assert {results[c].verdict for c in ("gcp", "azure")} == {Verdict.OK}
