"""Three health jobs as three processes, each with its home on a different emulator, deciding by
quorum and applying through one leader (docs/design/quorum.md).

The jobs are ``orchestrator health --watch --apply --json`` with ``$ORCHESTRATOR_VANTAGE`` set;
their homes (observation, lease copy, state) are on moto (S3), gcp-storage-emulator (GCS) and
Azurite (Azure Blob); the endpoints are real processes on loopback; Route 53 is moto behind
``tests/route53_rules.py`` (Route 53's batch rules, which moto does not enforce). Short intervals,
freshness and lease (seconds) keep each case to seconds. Cases:

- three jobs agree and exactly one applies;
- a partition (one job's connections to one endpoint dropped by a proxy) changes no weight, while
  that job sees the endpoint failing and the others see it serving;
- the leader frozen (SIGSTOP): another takes over and fails over; resumed (SIGCONT), the old
  leader does not overwrite the new leader's weights;
- the leader's emulator and process killed: another takes the lease and keeps failing over.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from orchestrator.demo.emulators import Azurite, GcsEmulator, MotoServer, start_moto
from orchestrator.training.pipeline import TrainResult
from tests.control.conftest import CLOUDS, RECORD, Fleet, WatchProcess, running_fleet, wait_until
from tests.faults import DelayProxy
from tests.route53_rules import Route53Rules

VANTAGE = {"freshness_s": 3, "lease_ttl_s": 3, "min_voters": 2, "read_timeout_s": 1}
HEALTH = {
    "interval_s": 0.5,
    "timeout_s": 0.5,
    "unhealthy_threshold": 2,
    "healthy_threshold": 2,
    "jitter": 0.0,
    "startup_grace_s": 0,
    "hold_down_s": 1.0,
    "max_hold_down_s": 4.0,
}


@dataclass
class World:
    fleet: Fleet
    rules: Route53Rules
    moto: MotoServer
    gcs: GcsEmulator
    azurite: Azurite
    root: Path
    jobs: list[WatchProcess] = field(default_factory=list)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    models: dict[str, TrainResult],
    moto_server: MotoServer,
    gcs_emulator: GcsEmulator,
    azurite: Azurite,
) -> Iterator[World]:
    root = tmp_path_factory.mktemp("vantage")
    with running_fleet(root, models, moto_server) as fleet:
        rules = Route53Rules(moto_server.endpoint).start()
        try:
            yield World(fleet, rules, moto_server, gcs_emulator, azurite, root)
        finally:
            rules.stop()


@dataclass
class Homes:
    """One home per vantage point, fresh for each case: (storage URI, settings)."""

    points: dict[str, tuple[str, dict[str, str]]]
    zone: str


def homes_on(world: World, aws_home: MotoServer) -> Homes:
    points = {
        "aws": (aws_home.uri(aws_home.create_bucket()), aws_home.settings),
        "gcp": (world.gcs.uri(world.gcs.create_bucket()), world.gcs.settings),
        # A connection string is a credential: the job reads it from its environment, never the file.
        "azure": (world.azurite.uri(world.azurite.create_bucket()), {}),
    }
    route53 = boto3.client("route53", endpoint_url=world.moto.endpoint, region_name="us-east-1")
    zone = route53.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)
    return Homes(points, str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1])


@pytest.fixture
def homes(world: World) -> Iterator[Homes]:
    yield homes_on(world, world.moto)
    for job in world.jobs:
        job.stop()
    world.jobs.clear()
    for cloud in CLOUDS:  # a case that killed an endpoint leaves the fleet whole again
        endpoint = world.fleet.endpoints[cloud]
        if not endpoint.process.alive():
            world.fleet.start(cloud).wait_ready()


def start_job(
    world: World, homes: Homes, vantage: str, *, urls: dict[str, str] | None = None
) -> WatchProcess:
    home, settings = homes.points[vantage]
    data = {
        "model": {"name": "iris"},
        "clouds": {
            cloud: {
                "endpoint": (urls or {}).get(cloud, world.fleet.url(cloud)),
                "storage": f"file://{world.root / 'buckets' / cloud}",
                "capacity_rps": 100,
            }
            for cloud in CLOUDS
        },
        "health": HEALTH,
        "routing": {
            "backend": "route53",
            "route53": {
                "hosted_zone_id": homes.zone,
                "record_name": RECORD,
                "endpoint_url": world.rules.endpoint,
            },
        },
        "state": {"path": home, "settings": settings},
        "vantage": {
            "points": {name: {"storage": uri, "settings": s} for name, (uri, s) in homes.points.items()},
            **VANTAGE,
        },
    }
    path = world.root / f"{vantage}-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {"ORCHESTRATOR_VANTAGE": vantage, **world.azurite.env}
    job = WatchProcess(path, user=f"job-{vantage}", env=env)
    world.jobs.append(job)
    return job


def leading(job: WatchProcess) -> dict[str, Any] | None:
    """The job's last report if it led that round (with the lease's epoch), else None."""
    reports = [r for r in job.reports() if "vantage" in r]
    if reports and reports[-1]["vantage"]["leader"]:
        return dict(reports[-1])
    return None


def weights(world: World, homes: Homes) -> dict[str, int]:
    return world.fleet.route53_weights(homes.zone)


def fence_epoch(world: World, homes: Homes) -> int | None:
    route53 = boto3.client("route53", endpoint_url=world.moto.endpoint, region_name="us-east-1")
    for record in route53.list_resource_record_sets(HostedZoneId=homes.zone)["ResourceRecordSets"]:
        if record["Type"] == "TXT" and record["Name"].startswith("_fence."):
            value = record["ResourceRecords"][0]["Value"].strip('"')
            return int(value.split()[0].removeprefix("epoch="))
    return None


def three_jobs(world: World, homes: Homes, **urls: dict[str, str]) -> dict[str, WatchProcess]:
    """The aws job first (so it leads), then the two others once it applied."""
    jobs = {"aws": start_job(world, homes, "aws", urls=urls.get("aws"))}
    waiting(world, lambda: leading(jobs["aws"]) is not None, 60, "the first job to lead")
    for vantage in ("gcp", "azure"):
        jobs[vantage] = start_job(world, homes, vantage, urls=urls.get(vantage))
    wait_until(
        lambda: all(len([r for r in j.reports() if "vantage" in r]) >= 3 for j in jobs.values()),
        60,
        "three rounds of every job",
    )
    waiting(world, lambda: weights(world, homes) == last(jobs["aws"])["weights"], 30, "the leader's weights")
    return jobs


def waiting(world: World, condition: Any, timeout: float, what: str) -> None:
    """:func:`wait_until`, and on a timeout the jobs' stderr in the failure."""
    try:
        wait_until(condition, timeout, what)
    except AssertionError:
        for job in world.jobs:
            job.stop()
        tails = "\n".join(
            f"--- job {i} (exit {j.popen.returncode}):\n{j.stderr[-2000:]}" for i, j in enumerate(world.jobs)
        )
        world.jobs.clear()
        raise AssertionError(f"timed out waiting for {what}\n{tails}") from None


def last(job: WatchProcess) -> dict[str, Any]:
    return [r for r in job.reports() if "vantage" in r][-1]


def test_three_jobs_agree_and_one_applies(world: World, homes: Homes) -> None:
    jobs = three_jobs(world, homes)
    finals = {name: last(job) for name, job in jobs.items()}
    leaders = [name for name, report in finals.items() if report["vantage"]["leader"]]
    assert leaders == ["aws"]
    for name, report in finals.items():
        assert all(v["quorum"] == "serving" for v in report["vantage"]["quorum"].values()), name
        assert set(report["vantage"]["quorum"]["aws"]["voters"]) == {"aws", "gcp", "azure"}, name
        assert report["vantage"]["lease"]["holder"] == "aws", name
    decided = {name: report["weights"] for name, report in finals.items()}
    assert decided["gcp"] == decided["aws"] == decided["azure"]
    assert weights(world, homes) == decided["aws"]
    followers = [r for name in ("gcp", "azure") for r in jobs[name].reports()]
    assert not any(r["applied"] or r["backends"] for r in followers)
    assert any("does not hold the leader lease; aws holds it" in n for n in finals["gcp"]["notes"])
    assert fence_epoch(world, homes) == finals["aws"]["vantage"]["lease"]["epoch"]


def test_a_partition_changes_no_weight(world: World, homes: Homes) -> None:
    """The gcp job's connections to the aws endpoint (the cheapest, so it carries the traffic) are
    dropped: it sees aws failing, the two others see it serving; by the quorum nobody takes aws
    out, and Route 53 never changes."""
    proxy = DelayProxy(world.fleet.endpoints["aws"].port).start()
    try:
        jobs = three_jobs(world, homes, gcp={"aws": proxy.url})
        before = weights(world, homes)
        assert before["aws"] > 0
        seen = len(jobs["gcp"].reports())
        marks = {name: len(job.reports()) for name, job in jobs.items()}
        proxy.drop()
        changes = 0
        ends = time.monotonic() + 5.0  # 10 rounds: more than the thresholds, the freshness, the lease
        while time.monotonic() < ends:
            changes += weights(world, homes) != before
            time.sleep(0.1)
        proxy.drop(False)
    finally:
        proxy.stop()
    assert changes == 0
    during = [r for r in jobs["gcp"].reports()[seen:] if "vantage" in r]
    cut = [r for r in during if r["clouds"]["aws"]["probes"][0]["verdict"] == "fail"]
    assert len(cut) >= 4, "the partition did not reach the gcp job"
    assert all(r["clouds"]["aws"]["state"] == "healthy" for r in during)
    assert any(r["vantage"]["quorum"]["aws"]["failing"] == ["gcp"] for r in cut)
    assert all(r["vantage"]["quorum"]["aws"]["quorum"] == "serving" for r in during)
    for name, job in jobs.items():  # nobody decided otherwise, leader or not
        assert all(r["weights"] == before for r in job.reports()[marks[name] :] if "vantage" in r)


def test_a_stale_leader_resumed_cannot_overwrite(world: World, homes: Homes) -> None:
    jobs = three_jobs(world, homes)
    old = last(jobs["aws"])["vantage"]["lease"]["epoch"]
    os.kill(jobs["aws"].popen.pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: any(leading(jobs[n]) for n in ("gcp", "azure")), 30, "another job to take the lease"
        )
        new = next(leading(jobs[n]) for n in ("gcp", "azure") if leading(jobs[n]))
        assert new is not None
        assert new["vantage"]["lease"]["epoch"] > old
        world.fleet.endpoints["aws"].process.signal(signal.SIGKILL)
        waiting(world, lambda: weights(world, homes).get("aws") == 0, 30, "the new leader to fail over")
        after = weights(world, homes)
    finally:
        if jobs["aws"].popen.poll() is None:  # ``waiting`` stops every job when it times out
            os.kill(jobs["aws"].popen.pid, signal.SIGCONT)
    resumed = len(jobs["aws"].reports())
    waiting(world, lambda: len(jobs["aws"].reports()) >= resumed + 4, 30, "the old leader's rounds")
    assert weights(world, homes) == after
    assert (fence_epoch(world, homes) or 0) >= new["vantage"]["lease"]["epoch"]
    back = [r for r in jobs["aws"].reports()[resumed:] if "vantage" in r]
    assert back
    assert not any(r["vantage"]["leader"] for r in back[1:])  # at most its in-flight round
    for report in back:  # whatever it tried, a backend refused it or it did not write
        assert not report["applied"] or report["weights"] == after


def test_the_leaders_cloud_lost(world: World, tmp_path: Path) -> None:
    """The aws cloud is lost: the aws job, which leads, its home (its own moto) and the aws
    endpoint. Another job takes the lease from the two remaining copies and fails aws over."""
    own = start_moto(tmp_path)
    try:
        homes = homes_on(world, own)
        jobs = three_jobs(world, homes)
        epoch = last(jobs["aws"])["vantage"]["lease"]["epoch"]
        own.kill()
        jobs["aws"].popen.kill()
        wait_until(
            lambda: any(leading(jobs[n]) for n in ("gcp", "azure")), 30, "another job to take the lease"
        )
        new = next(leading(jobs[n]) for n in ("gcp", "azure") if leading(jobs[n]))
        assert new is not None
        assert new["vantage"]["lease"]["epoch"] > epoch
        assert new["vantage"]["points"]["aws"]["error"]  # unreachable, not a vote
        world.fleet.endpoints["aws"].process.signal(signal.SIGKILL)
        waiting(world, lambda: weights(world, homes).get("aws") == 0, 30, "failover with the aws cloud gone")
        assert weights(world, homes)["gcp"] + weights(world, homes)["azure"] > 0
    finally:
        for job in world.jobs:
            job.stop()
        world.jobs.clear()
        own.stop()
        for cloud in CLOUDS:
            if not world.fleet.endpoints[cloud].process.alive():
                world.fleet.start(cloud).wait_ready()
