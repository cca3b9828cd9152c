"""Several vantage points on the emulators: failover when the leader's cloud is lost, and a partition.

Three real endpoints on loopback (aws, gcp, azure: `orchestrator serve`), Route 53 on moto behind
tests/route53_rules.py (Route 53's batch rules, which moto does not enforce), and three
`orchestrator health --watch --apply` processes, one per vantage point, with their homes on a moto
of their own (aws: killable), gcp-storage-emulator (gcp) and Azurite (azure). Health settings as
benchmarks/failover.py (interval 0.5 s, unhealthy threshold 2, timeout 0.5 s, no jitter);
vantage: freshness 3 s, lease 3 s, read timeout 1 s, min_voters 2. Printed:

1. the single-job baseline, measured in the same run: one job without a `vantage` section; the
   aws endpoint (which carries the traffic: the cheapest) is killed; the time until Route 53 shows
   aws at 0 (polled as a client would), and the bound unhealthy_threshold × interval + timeout +
   interval;
2. the leader's cloud lost: the aws job (the leader), its home (its moto) and the aws endpoint are
   killed at once; the time until another point applies as leader (its first round leading, with
   every backend holding its decision: "the next applied decision"), and until Route 53 shows aws
   at 0; that failover time ÷ the single-job median, and ÷ the single-job bound;
3. a partition: the gcp job's connections to the aws endpoint dropped for ``--partition-s``
   (60 s) while the others see it serving: the number of Route 53 weight changes (target 0) and
   the rounds in which the cut job saw aws fail.

    python benchmarks/vantage.py [--trials 3] [--partition-s 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import yaml  # noqa: E402

from orchestrator.demo.emulators import (  # noqa: E402
    MotoServer,
    scrubbed_environ,
    start_azurite,
    start_gcs,
    start_moto,
)
from orchestrator.training.pipeline import TrainOptions, train  # noqa: E402
from tests.control.conftest import CLOUDS, RECORD, Fleet, WatchProcess, running_fleet  # noqa: E402
from tests.faults import DelayProxy  # noqa: E402
from tests.route53_rules import Route53Rules  # noqa: E402

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
VANTAGE = {"freshness_s": 3, "lease_ttl_s": 3, "min_voters": 2, "read_timeout_s": 1}
BOUND_S = HEALTH["unhealthy_threshold"] * HEALTH["interval_s"] + HEALTH["timeout_s"] + HEALTH["interval_s"]


def wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll every 20 ms; the monotonic time the condition first held."""
    ends = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > ends:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic()


class Bench:
    def __init__(self, root: Path, fleet: Fleet, route53_moto: MotoServer, rules: Route53Rules) -> None:
        self.root = root
        self.fleet = fleet
        self.moto = route53_moto
        self.rules = rules
        self.gcs = start_gcs(root)
        self.azurite = start_azurite(root)
        self.jobs: list[WatchProcess] = []

    def zone(self) -> str:
        route53 = boto3.client("route53", endpoint_url=self.moto.endpoint, region_name="us-east-1")
        zone = route53.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)
        return str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1]

    def weights(self, zone: str) -> dict[str, int]:
        return self.fleet.route53_weights(zone)

    def config(
        self, zone: str, state: dict[str, Any], vantage: dict[str, Any] | None, urls: dict[str, str]
    ) -> Path:
        data: dict[str, Any] = {
            "model": {"name": "iris"},
            "clouds": {
                c: {
                    "endpoint": urls.get(c, self.fleet.url(c)),
                    "storage": f"file://{self.root / 'buckets' / c}",
                    "capacity_rps": 100,
                }
                for c in CLOUDS
            },
            "health": HEALTH,
            "routing": {
                "backend": "route53",
                "route53": {
                    "hosted_zone_id": zone,
                    "record_name": RECORD,
                    "endpoint_url": self.rules.endpoint,
                },
            },
            "state": state,
        }
        if vantage is not None:
            data["vantage"] = vantage
        path = self.root / f"o-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def job(self, config: Path, vantage: str | None = None) -> WatchProcess:
        env = dict(self.azurite.env)
        if vantage:
            env["ORCHESTRATOR_VANTAGE"] = vantage
        job = WatchProcess(config, user=f"bench-{vantage or 'lone'}", env=env)
        self.jobs.append(job)
        return job

    def stop_jobs(self) -> None:
        for job in self.jobs:
            job.stop()
        self.jobs.clear()

    def restore(self) -> None:
        for cloud in CLOUDS:
            if not self.fleet.endpoints[cloud].process.alive():
                self.fleet.start(cloud).wait_ready()

    # --- 1. the single-job baseline ---------------------------------------------------------
    def single_job(self) -> float:
        zone = self.zone()
        state = {"path": str(self.root / f"state-{uuid.uuid4().hex[:6]}.db")}
        self.job(self.config(zone, state, None, {}))
        wait(lambda: self.weights(zone).get("aws", 0) > 0, 60, "the lone job to route to aws")
        time.sleep(1.0)
        killed = time.monotonic()
        self.fleet.endpoints["aws"].process.signal(signal.SIGKILL)
        done = wait(lambda: self.weights(zone).get("aws") == 0, 60, "the lone job to fail aws over")
        self.stop_jobs()
        self.restore()
        return done - killed

    # --- the three points -----------------------------------------------------------------------
    def three(
        self, aws_home: MotoServer, urls: dict[str, dict[str, str]] | None = None
    ) -> tuple[str, dict[str, WatchProcess]]:
        zone = self.zone()
        homes = {
            "aws": (aws_home.uri(aws_home.create_bucket()), aws_home.settings),
            "gcp": (self.gcs.uri(self.gcs.create_bucket()), self.gcs.settings),
            "azure": (self.azurite.uri(self.azurite.create_bucket()), {}),
        }
        vantage = {"points": {n: {"storage": u, "settings": s} for n, (u, s) in homes.items()}, **VANTAGE}
        jobs: dict[str, WatchProcess] = {}
        for name in ("aws", "gcp", "azure"):
            uri, settings = homes[name]
            config = self.config(
                zone, {"path": uri, "settings": settings}, vantage, (urls or {}).get(name, {})
            )
            jobs[name] = self.job(config, name)
            if name == "aws":  # it leads: the one whose cloud is then lost
                wait(lambda: leading(jobs["aws"]), 60, "the aws job to lead")
        wait(lambda: all(len(j.reports()) >= 4 for j in jobs.values()), 60, "rounds of every job")
        wait(lambda: self.weights(zone).get("aws", 0) > 0, 30, "the leader to route to aws")
        return zone, jobs

    # --- 2. the leader's cloud lost ---------------------------------------------------------------
    def leader_lost(self) -> tuple[float, float]:
        own = start_moto(self.root / f"moto-{uuid.uuid4().hex[:6]}")
        try:
            zone, jobs = self.three(own)
            marks = {n: len(j.reports()) for n, j in jobs.items()}
            lost = time.monotonic()
            jobs["aws"].popen.kill()
            own.kill()
            self.fleet.endpoints["aws"].process.signal(signal.SIGKILL)
            applied = wait(
                lambda: any(applied_as_leader(jobs[n], marks[n]) for n in ("gcp", "azure")),
                60,
                "another point to apply as leader",
            )
            failed_over = wait(lambda: self.weights(zone).get("aws") == 0, 60, "aws failed over")
            return applied - lost, failed_over - lost
        finally:
            self.stop_jobs()
            own.stop()
            self.restore()

    # --- 3. a partition -------------------------------------------------------------------------
    def partition(self, seconds: float) -> dict[str, Any]:
        proxy = DelayProxy(self.fleet.endpoints["aws"].port).start()
        try:
            zone, jobs = self.three(self.moto, {"gcp": {"aws": proxy.url}})
            before = self.weights(zone)
            mark = len(jobs["gcp"].reports())
            proxy.drop()
            changes, polls, last = 0, 0, before
            ends = time.monotonic() + seconds
            while time.monotonic() < ends:
                now = self.weights(zone)
                changes += now != last
                last, polls = now, polls + 1
                time.sleep(0.2)
            proxy.drop(False)
            during = [r for r in jobs["gcp"].reports()[mark:] if "vantage" in r]
            cut = sum(r["clouds"]["aws"]["probes"][0]["verdict"] == "fail" for r in during)
            return {"weight_changes": changes, "polls": polls, "cut_rounds": cut, "rounds": len(during)}
        finally:
            self.stop_jobs()
            proxy.stop()

    def close(self) -> None:
        self.stop_jobs()
        self.gcs.stop()
        self.azurite.stop()


def leading(job: WatchProcess) -> bool:
    reports = [r for r in job.reports() if "vantage" in r]
    return bool(reports) and bool(reports[-1]["vantage"]["leader"])


def applied_as_leader(job: WatchProcess, mark: int) -> bool:
    """A round after ``mark`` in which the job led and every backend held its decision."""
    for report in job.reports()[mark:]:
        backends = report.get("backends") or []
        if report.get("vantage", {}).get("leader") and backends and all(b["ok"] for b in backends):
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--partition-s", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    remove, setting = scrubbed_environ(os.environ)
    for name in remove:
        os.environ.pop(name, None)
    os.environ.update(setting)
    with tempfile.TemporaryDirectory(prefix="bench-vantage-") as tmp:
        root = Path(tmp)
        models = {"v1": train(TrainOptions(dataset="iris", out=root / "model"))}
        moto = start_moto(root / "moto-route53")
        rules = Route53Rules(moto.endpoint).start()
        fleet_root = root / "fleet"
        fleet_root.mkdir()
        try:
            with running_fleet(fleet_root, models, moto) as fleet:
                bench = Bench(fleet_root, fleet, moto, rules)
                try:
                    single = [bench.single_job() for _ in range(args.trials)]
                    lost = [bench.leader_lost() for _ in range(args.trials)]
                    part = bench.partition(args.partition_s)
                finally:
                    bench.close()
        finally:
            rules.stop()
            moto.stop()
    single_median = statistics.median(single)
    applied = [a for a, _ in lost]
    failover = [f for _, f in lost]
    result = {
        "single_job_failover_s": single,
        "single_job_bound_s": BOUND_S,
        "leader_loss_to_next_applied_decision_s": applied,
        "failover_with_leaders_cloud_down_s": failover,
        "failover_ratio_to_single_job_median": statistics.median(failover) / single_median,
        "failover_ratio_to_single_job_bound": statistics.median(failover) / BOUND_S,
        "partition": {"seconds": args.partition_s, **part},
        "settings": {"health": HEALTH, "vantage": VANTAGE},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    fmt = ", ".join
    print(
        f"settings: interval {HEALTH['interval_s']} s, unhealthy_threshold {HEALTH['unhealthy_threshold']}, "
        f"timeout {HEALTH['timeout_s']} s; vantage: lease {VANTAGE['lease_ttl_s']} s, freshness "
        f"{VANTAGE['freshness_s']} s, min_voters {VANTAGE['min_voters']}, {args.trials} trials"
    )
    print(
        f"1. single job, endpoint killed -> Route 53 at 0: {fmt(f'{s:.2f}' for s in single)} s "
        f"(median {single_median:.2f} s; bound {BOUND_S:.2f} s)"
    )
    print(
        f"2. leader's cloud lost (job, home, endpoint) -> next applied decision: "
        f"{fmt(f'{s:.2f}' for s in applied)} s (median {statistics.median(applied):.2f} s)"
    )
    print(
        f"   -> Route 53 shows it at 0: {fmt(f'{s:.2f}' for s in failover)} s (median "
        f"{statistics.median(failover):.2f} s) = {result['failover_ratio_to_single_job_median']:.2f} x the "
        f"single job's median, {result['failover_ratio_to_single_job_bound']:.2f} x the single-job bound"
    )
    print(
        f"3. partition {args.partition_s:.0f} s (gcp job cut from aws): {part['weight_changes']} weight "
        f"changes in {part['polls']} polls of Route 53 (target 0); the cut job saw aws fail in "
        f"{part['cut_rounds']} of {part['rounds']} rounds"
    )


if __name__ == "__main__":
    main()
