"""What the probes check against when the buckets cannot tell: never a crash of the round, and never
one endpoint's word against the others.

With buckets the expected version and canary come from LATEST; when no bucket is configured, or none
answers, each endpoint is checked against the canary its own /v1/model reports, so an endpoint
answering wrongly fails only itself. A bucket that stops answering later leaves the last expectation
in use. Real endpoints, a real misbehaving one, local buckets and an S3 endpoint that refuses.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from orchestrator.emulators import closed_port
from orchestrator.health.prober import EXPECTATION_MIN_AGE_S
from orchestrator.health.state import Verdict
from orchestrator.types import HealthState
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
