"""Failover speed on real endpoints, and routing cost on a replayed one-hour trace.

Part 1, live: three `orchestrator serve` endpoints on loopback ports (aws, gcp, azure), Route 53 on a
moto server, and the control plane's watch loop applying weights (interval 0.5 s, unhealthy
threshold 2, timeout 0.5 s). The cloud carrying the traffic is killed (SIGKILL) or frozen (SIGSTOP),
6 trials each; the time from the fault to Route 53 showing its weight at 0 is measured by polling
Route 53 as a client would. Printed: median and max ÷ the configured bound
(threshold × interval + timeout; target: max <= 1.0).

Part 2, replay: one hour of synthetic traffic (a daily-shaped rate with noise) with two outages,
fed second by second through the same health state machine and router (pure code, simulated
clock, probes every 0.5 s). Printed: the router's cost ÷ the hindsight-optimal cost (an oracle that
knows every outage the moment it starts and re-optimises every second; target <= 1.05), ÷ an equal
split over the three clouds, and the share of requests sent to a cloud that was up and within the
SLO at that second (target >= 99.9 %).

    python benchmarks/failover.py [--trials 6] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.health.state import Machine, MachineConfig, Observation, Verdict, observe  # noqa: E402
from orchestrator.pricing import Traffic, cost_per_request, load_prices  # noqa: E402
from orchestrator.routing import CloudInput, Demand, decide  # noqa: E402
from orchestrator.types import HealthState  # noqa: E402

CLOUDS = ("aws", "gcp", "azure")
INTERVAL_S, THRESHOLD, TIMEOUT_S = 0.5, 2, 0.5
BOUND_S = THRESHOLD * INTERVAL_S + TIMEOUT_S


# -- part 1: live ------------------------------------------------------------------------------
def live(trials: int, work: Path) -> dict[str, object]:
    import boto3
    import yaml

    from orchestrator.config import load_config
    from orchestrator.control import ControlPlane
    from orchestrator.emulators import scrubbed_environ, start_moto
    from orchestrator.processes import start_endpoint
    from orchestrator.state import StateStore
    from orchestrator.storage import open_storage
    from orchestrator.sync import Target, sync_artifact
    from serving.train import TrainOptions, train

    remove, setting = scrubbed_environ(os.environ)
    for name in remove:
        os.environ.pop(name, None)
    os.environ.update(setting)

    model = train(TrainOptions(dataset="iris", out=work / "artifacts"))
    moto = start_moto(work / "logs")
    route53 = boto3.client("route53", endpoint_url=moto.endpoint, region_name="us-east-1")
    zone = route53.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)["HostedZone"][
        "Id"
    ]
    zone_id = zone.rsplit("/", 1)[-1]
    endpoints = {}
    for cloud in CLOUDS:
        bucket = work / "buckets" / cloud
        bucket.mkdir(parents=True)
        sync_artifact(model.path, [Target(cloud, open_storage(f"file://{bucket}"))])
        endpoints[cloud] = start_endpoint(str(model.path), name=cloud, log_path=work / f"{cloud}.log")
    config_path = work / "orchestrator.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "model": {"name": "iris"},
                "clouds": {
                    c: {"endpoint": e.url, "storage": f"file://{work / 'buckets' / c}"}
                    for c, e in endpoints.items()
                },
                "health": {
                    "interval_s": INTERVAL_S,
                    "timeout_s": TIMEOUT_S,
                    "unhealthy_threshold": THRESHOLD,
                    "healthy_threshold": 2,
                    "jitter": 0.1,
                    "startup_grace_s": 0,
                    "hold_down_s": 0.5,
                    "max_hold_down_s": 1.0,
                },
                "routing": {
                    "backend": "route53",
                    "route53": {
                        "hosted_zone_id": zone_id,
                        "record_name": "m.example.com.",
                        "endpoint_url": moto.endpoint,
                    },
                },
                "state": {"path": str(work / "state.db")},
            }
        )
    )

    def weights() -> dict[str, int]:
        records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return {r["SetIdentifier"]: r["Weight"] for r in records if r.get("SetIdentifier")}

    def wait(condition, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for the fleet")
            time.sleep(0.01)
        return time.monotonic()

    cfg = load_config(config_path)
    plane = ControlPlane(cfg, store=StateStore.open(cfg.state.path))
    stop = threading.Event()
    watcher = threading.Thread(
        target=plane.watch, kwargs={"apply": True, "stop": stop.is_set, "on_round": lambda r: None}
    )
    times: dict[str, list[float]] = {"kill": [], "freeze": []}
    try:
        for endpoint in endpoints.values():
            endpoint.wait_ready()
        watcher.start()
        wait(lambda: len(weights()) == 3 and sum(weights().values()) == 100)
        for fault in ("kill", "freeze"):
            for _ in range(trials):
                current = weights()
                victim = max(current, key=current.__getitem__)
                wait(lambda c=current: weights() == c)
                time.sleep(random.uniform(0, INTERVAL_S))  # fall anywhere in the probe cycle
                started = time.monotonic()
                endpoints[victim].process.signal(signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
                detected = wait(lambda v=victim: weights().get(v) == 0)
                times[fault].append(detected - started)
                if fault == "kill":
                    endpoints[victim] = start_endpoint(
                        str(model.path),
                        port=endpoints[victim].port,
                        name=victim,
                        log_path=work / f"{victim}.log",
                    )
                    endpoints[victim].wait_ready()
                else:
                    endpoints[victim].process.signal(signal.SIGCONT)
                wait(lambda v=victim: weights().get(v, 0) > 0)  # readmitted: the next trial starts whole
    finally:
        stop.set()
        watcher.join(timeout=10)
        plane.close()
        for endpoint in endpoints.values():
            endpoint.stop()
        moto.stop()
    every = times["kill"] + times["freeze"]
    return {
        "bound_s": BOUND_S,
        "kill_s": times["kill"],
        "freeze_s": times["freeze"],
        "median_s": statistics.median(every),
        "max_s": max(every),
        "median_over_bound": statistics.median(every) / BOUND_S,
        "max_over_bound": max(every) / BOUND_S,
    }


# -- part 2: replay ----------------------------------------------------------------------------
HOUR = 3600
OUTAGES = {"aws": [(900, 1500)], "gcp": [(2400, 2700)]}  # seconds into the hour: down from, to
CAPACITY = {"aws": 120.0, "gcp": 120.0, "azure": 120.0}
SLO_MS = 250.0
P95_MS = {"aws": 40.0, "gcp": 35.0, "azure": 45.0}


def rate_at(second: int, rng: random.Random) -> float:
    """Requests/s: a daily shape compressed into the hour (40..100), plus 5 % noise."""
    base = 70 + 30 * math.sin(2 * math.pi * second / HOUR)
    return max(1.0, base * (1 + rng.gauss(0, 0.05)))


def replay(seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    prices = load_prices()
    traffic = Traffic(70.0, 600.0, 400.0, 0.0003)
    cost = {c: cost_per_request(c, prices, traffic, 1.0, 2.0, 80).total for c in CLOUDS}
    cfg = MachineConfig(
        unhealthy_threshold=THRESHOLD, healthy_threshold=3, hold_down_s=10.0, max_hold_down_s=120.0
    )
    machines = {c: Machine() for c in CLOUDS}
    probe_every = int(INTERVAL_S * 10)  # simulate in tenths of a second

    def up(cloud: str, t: float) -> bool:
        return not any(start <= t < end for start, end in OUTAGES.get(cloud, []))

    def weights_for(states: dict[str, HealthState], demand: float) -> dict[str, int]:
        inputs = [CloudInput(c, states[c], P95_MS[c], CAPACITY[c], cost[c]) for c in CLOUDS]
        decision = decide(inputs, Demand(demand, SLO_MS))
        return decision.weights or dict.fromkeys(CLOUDS, 0)

    ours = {"cost": 0.0, "good": 0.0, "total": 0.0}
    oracle_cost = equal_cost = 0.0
    weights = dict.fromkeys(CLOUDS, 0)
    for tenth in range(HOUR * 10):
        t = tenth / 10
        if tenth % probe_every == 0:
            changed = False
            for cloud in CLOUDS:
                obs = Observation(Verdict.OK, "ok") if up(cloud, t) else Observation(Verdict.FAIL, "down")
                machines[cloud], flip = observe(machines[cloud], obs, t, cfg, cloud)
                changed |= flip is not None
            if changed or tenth == 0:
                weights = weights_for({c: m.state for c, m in machines.items()}, 70.0)
        if tenth % 10:
            continue
        demand = rate_at(int(t), rng)
        for cloud, weight in weights.items():
            sent = demand * weight / 100
            ours["cost"] += sent * cost[cloud]
            ours["total"] += sent
            ours["good"] += sent if up(cloud, t) else 0.0
        truth = {c: HealthState.HEALTHY if up(c, t) else HealthState.UNHEALTHY for c in CLOUDS}
        best = weights_for(truth, demand)
        oracle_cost += sum(demand * w / 100 * cost[c] for c, w in best.items())
        equal_cost += sum(demand / 3 * cost[c] for c in CLOUDS)
    return {
        "cost_over_hindsight": ours["cost"] / oracle_cost,
        "cost_over_equal_split": ours["cost"] / equal_cost,
        "share_within_slo": ours["good"] / ours["total"],
        "cost_per_million_usd": {c: round(v * 1e6, 4) for c, v in cost.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--replay-only", action="store_true", help="skip the live part")
    args = parser.parse_args()
    figures: dict[str, object] = {"replay": replay()}
    if not args.replay_only:
        with tempfile.TemporaryDirectory() as tmp:
            figures["live"] = live(args.trials, Path(tmp))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    if "live" in figures:
        f = figures["live"]
        print(
            f"fault → Route 53 weight 0, {args.trials} kills + {args.trials} freezes, bound {BOUND_S:.2f} s"
        )
        print(f"  kill:   {', '.join(f'{s:.2f}' for s in f['kill_s'])} s")
        print(f"  freeze: {', '.join(f'{s:.2f}' for s in f['freeze_s'])} s")
        print(f"  median {f['median_s']:.2f} s = {f['median_over_bound']:.2f} × bound")
        print(f"  max    {f['max_s']:.2f} s = {f['max_over_bound']:.2f} × bound   (target <= 1.0)")
    r = figures["replay"]
    print(f"one-hour replay, two outages (cost per million: {r['cost_per_million_usd']})")
    print(f"  router cost ÷ hindsight-optimal   {r['cost_over_hindsight']:.4f}   (target <= 1.05)")
    print(f"  router cost ÷ equal split          {r['cost_over_equal_split']:.3f}")
    print(f"  requests to a cloud up and within SLO {100 * r['share_within_slo']:.3f} %   (target >= 99.9 %)")


if __name__ == "__main__":
    main()
