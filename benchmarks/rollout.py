"""Progressive rollouts on real endpoints: what a bad version costs, how fast it is undone, and how
long a good three-stage rollout takes.

Three `orchestrator serve` endpoints (aws, gcp, azure) follow ``models/iris/STABLE`` in their own
bucket on the three emulators (moto, the GCS emulator, Azurite), each behind a front that answers
the drift route of issue 16's contract (tests/rollout_world.py). A client sends prediction
requests at a steady rate, each to a cloud drawn by the weights of the routing file (as a load
balancer driven by the file backend would), and records which version answered.

1. A bad version: its canary passes, but the drift answers show its predicted classes shifted on
   traffic. It is rolled out (canary weight 10, bake ``--bake`` s); the drift gate fails at the end
   of the first stage. Printed: the share of all requests sent during the rollout (its start to its
   record's ``rolled-back``) that the bad version answered, ÷ the canary weight's share (10 %: the
   most a first stage can expose, target <= 1.0); and the time from the gate's failure to every
   cloud back on the old version (pointers moved back, and every endpoint serving it), ÷ the
   endpoint's reload interval plus one probe interval (the bound of the reload alone).
2. A good version through all three stages. Printed: its duration, the bake times it contains, and
   the duration ÷ the sum of the bake times (the overhead of moving, loading and judging each
   stage; target <= 2.0 at these short bakes).

    python benchmarks/rollout.py [--bake 3] [--rate 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.control.rollout.plan import GateBounds, RolloutPlan
from orchestrator.control.rollout.start import start_rollout
from orchestrator.demo.emulators import scrubbed_environ, start_azurite, start_gcs, start_moto
from tests.rollout_world import CLOUDS, DriftFront, World, make_versions, running_world

RELOAD_S = 0.5  # the endpoints' --reload-interval in tests/rollout_world.py
PROBE_S = 0.2


class Client:
    """Requests at ``rate``/s, each to a cloud drawn by the routing file's weights; (time, version)."""

    def __init__(self, world: World, routing: Path, rate: float) -> None:
        self.world, self.routing, self.rate = world, routing, rate
        self.answers: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.rows = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}

    def _weights(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.routing.read_text())["weights"].items()}
        except (OSError, ValueError, KeyError):
            return {}

    def _run(self) -> None:
        rng = random.Random(7)  # a load generator's draw, not cryptography
        with httpx.Client(timeout=2) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                weights = {c: w for c, w in self._weights().items() if w > 0 and c in self.world.fronts}
                if weights:
                    cloud = rng.choices(list(weights), weights=list(weights.values()))[0]
                    try:
                        answer = http.post(f"{self.world.fronts[cloud]}/v1/predict", json=self.rows)
                        self.answers.append((time.time(), answer.json().get("version")))
                    except (httpx.HTTPError, ValueError):
                        self.answers.append((time.time(), None))
                self._stop.wait(max(0.0, 1 / self.rate - (time.monotonic() - started)))

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _plan(bake: float) -> RolloutPlan:
    return RolloutPlan(
        canary_weight=10,
        bake_s=bake,
        probe_interval_s=PROBE_S,
        serve_timeout_s=30,
        gates=GateBounds(min_requests=3),
    )


def bad_rollout(world: World, bake: float, rate: float) -> dict[str, Any]:
    v1, v2 = world.names["v1"], world.names["v2"]
    fronts = {c: DriftFront(world.endpoints[c].url, shifted=v2) for c in CLOUDS}
    world.fronts = {c: f.url for c, f in fronts.items()}
    try:
        plane = world.plane()
        plane.health_round(apply=True)
        with Client(world, world.root / "routing.json", rate) as client:
            time.sleep(1.0)
            start = time.time()
            final = start_rollout(plane, v2, _plan(bake), holder=plane.holder).run()
            end = time.time()
            while set(world.served().values()) != {v1}:
                time.sleep(0.02)
            all_back = time.time()
        assert final["status"] == "rolled-back", final
        during = [v for t, v in client.answers if start <= t <= end]
        bad = sum(1 for v in during if v == v2)
        return {
            "reason": final["reason"],
            "requests": len(during),
            "bad_requests": bad,
            "bad_share": bad / len(during) if during else 0.0,
            "canary_share": final["plan"]["canary_weight"] / 100,
            "pointers_back_s": final["rolled_back_at"] - final["failed_at"],
            "all_serving_old_s": all_back - final["failed_at"],
        }
    finally:
        for front in fronts.values():
            front.stop()
        world.fronts = {}


def good_rollout(world: World, bake: float) -> dict[str, Any]:
    v2 = world.names["v2"]
    fronts = {c: DriftFront(world.endpoints[c].url, shifted="none") for c in CLOUDS}
    world.fronts = {c: f.url for c, f in fronts.items()}
    try:
        plane = world.plane()
        plane.health_round(apply=True)
        final = start_rollout(plane, v2, _plan(bake), holder=plane.holder).run()
        assert final["status"] == "succeeded", final
        return {
            "stages": len(final["order"]),
            "bake_s": bake,
            "duration_s": final["finished_at"] - final["started_at"],
        }
    finally:
        for front in fronts.values():
            front.stop()
        world.fronts = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bake", type=float, default=3.0, help="seconds per stage")
    parser.add_argument("--rate", type=float, default=40.0, help="client requests per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    remove, setting = scrubbed_environ(os.environ)
    for name in remove:
        os.environ.pop(name, None)
    os.environ.update(setting)
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        root = Path(tmp)
        logs = root / "logs"
        logs.mkdir()
        emulators = {"aws": start_moto(logs), "gcp": start_gcs(logs), "azure": start_azurite(logs)}
        os.environ.update(emulators["azure"].env)
        try:
            versions = make_versions(root / "models")
            with running_world(root / "bad", versions, emulators) as world:
                bad = bad_rollout(world, args.bake, args.rate)
            with running_world(root / "good", versions, emulators) as world:
                good = good_rollout(world, args.bake)
        finally:
            for emulator in emulators.values():
                emulator.stop()
    bound = RELOAD_S + PROBE_S
    results = {
        "bad_version": {**bad, "bad_share_vs_canary_share": bad["bad_share"] / bad["canary_share"]},
        "rollback": {"bound_s": bound, "all_serving_old_vs_bound": bad["all_serving_old_s"] / bound},
        "good_rollout": {**good, "duration_vs_bakes": good["duration_s"] / (good["stages"] * good["bake_s"])},
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"bad version (rolled back: {bad['reason']})")
    print(
        f"  requests answered by the bad version during the rollout: {bad['bad_requests']} of "
        f"{bad['requests']} = {bad['bad_share']:.1%}; ÷ canary weight share {bad['canary_share']:.0%} = "
        f"{results['bad_version']['bad_share_vs_canary_share']:.2f} (target <= 1.0)"
    )
    print(
        f"  gate failure -> every pointer back on the old version: {bad['pointers_back_s']:.2f} s; "
        f"-> every endpoint serving it: {bad['all_serving_old_s']:.2f} s; ÷ reload + probe interval "
        f"{bound:.1f} s = {results['rollback']['all_serving_old_vs_bound']:.2f}"
    )
    print(
        f"good rollout: {good['stages']} stages with {good['bake_s']:g} s bakes in "
        f"{good['duration_s']:.1f} s; ÷ the bakes' {good['stages'] * good['bake_s']:g} s = "
        f"{results['good_rollout']['duration_vs_bakes']:.2f} (target <= 2.0)"
    )


if __name__ == "__main__":
    main()
