"""The demo's story, step by step, on three emulated clouds (see :mod:`orchestrator.demo`)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

from orchestrator.control.config import Config, load_config
from orchestrator.control.plane import ControlPlane
from orchestrator.control.reports import RoundReport
from orchestrator.control.routing.backends import open_backend
from orchestrator.control.store import StateStore
from orchestrator.control.types import Flip, HealthState
from orchestrator.control.wiring import open_plane
from orchestrator.core.errors import OrchestratorError
from orchestrator.demo.emulators import EmulatorUnavailable
from orchestrator.demo.report import Timeline, summary_table, write_report
from orchestrator.demo.traffic import TrafficGenerator, WeightsCache
from orchestrator.demo.watch import Watch
from orchestrator.demo.world import CLOUDS, LocalClouds, emulator_environment

__all__ = ["DemoError", "DemoOptions", "run_demo"]

# Expected load for the cost model, and the latency SLO the router keeps.
EXPECTED_RPS = 50.0
LATENCY_SLO_MS = 250.0
# How long each phase lets traffic flow, so the plot shows it.
STEADY_S = 4.0
OUTAGE_S = 1.0  # shorter than the hold-down: the comeback has to wait for it
DRAINED_S = 3.0
AFTER_ROLLOUT_S = 3.0


class DemoError(OrchestratorError):
    """A step of the demo did not happen as it should; the message says which and what was seen."""


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path | None = None  # default: a temporary directory, removed at the end
    report_dir: Path = Path("demo-report")
    keep_running: bool = False
    rate_per_s: float = 40.0


def run_demo(options: DemoOptions, console: Console) -> dict[str, Any]:
    """Run the whole story; return its figures (what ``--json`` writes). Everything started is
    stopped before this returns, Ctrl-C and SIGTERM included (``interrupted`` is then set)."""
    timeline = Timeline(console)
    result: dict[str, Any] = {"ok": False, "steps": [], "events": timeline.events}
    with _sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as tmp:
        root = (options.workdir or Path(tmp)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        with emulator_environment():
            clouds = LocalClouds(root)
            story = _Story(options, console, timeline, clouds, result)
            try:
                story.run()
                if options.keep_running:
                    story.keep_running()
            except KeyboardInterrupt:
                result["interrupted"] = True
                result["error"] = "interrupted"
                console.print("[yellow]interrupted[/]: stopping everything the demo started")
            except (OrchestratorError, EmulatorUnavailable) as exc:
                # The figures so far still go to --json; the message names the step and what it saw.
                result["error"] = f"{result['steps'][-1:] or 'start'}: {exc}"
                console.print(f"[bold red]demo failed:[/] {escape(str(exc))}", soft_wrap=True)
            finally:
                with _no_interrupts():  # a second Ctrl-C must not cut the cleanup short
                    story.shutdown()
        result["duration_s"] = timeline.now()
    return result


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM cleans up like Ctrl-C (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _no_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Story:
    def __init__(
        self,
        options: DemoOptions,
        console: Console,
        timeline: Timeline,
        clouds: LocalClouds,
        result: dict[str, Any],
    ) -> None:
        self.options = options
        self.console = console
        self.timeline = timeline
        self.clouds = clouds
        self.result = result
        self.config: Config | None = None
        self.config_path: Path | None = None
        self.plane: ControlPlane | None = None
        self.traffic: TrafficGenerator | None = None
        self.watch: Watch | None = None
        self.started_pids: list[int] = []
        self.hold_until = 0.0  # when aws may come back after its fall (wall clock)

    # -- the story -------------------------------------------------------------------------------
    def run(self) -> None:
        self.step("emulators", self.start_clouds)
        self.step("train", self.train_v1)
        self.step("sync", lambda: self.sync("v1"))
        self.step("endpoints", self.start_endpoints)
        self.step("route", self.first_route)
        self.step("traffic", self.start_traffic)
        self.step("failover", self.kill_and_fail_over)
        self.step("failback", self.restart_and_fail_back)
        self.step("manual", self.manual_failover_and_back)
        self.step("rollout", self.roll_out_v2)
        self.step("rollback", self.roll_out_a_bad_version)
        self.step("drift", self.shift_one_clouds_inputs)
        self.step("summary", self.summarise)
        self.result["ok"] = True

    def step(self, name: str, action: Callable[[], None]) -> None:
        self.console.rule(f"[bold]{name}")
        action()
        self.result["steps"].append(name)

    def start_clouds(self) -> None:
        with self.console.status("starting moto (S3 + Route 53), gcp-storage-emulator and Azurite"):
            self.clouds.start_emulators()
        os.environ.update(self.clouds.emulators["azure"].env)  # the connection string, for every SDK
        self.started_pids += [e.process.pid for e in self.clouds.emulators.values() if e.process]
        for cloud, emulator in self.clouds.emulators.items():
            self.timeline.event(
                "emulator",
                f"{cloud}: {emulator.name} on {emulator.endpoint}, bucket {self.clouds.storage_uri(cloud)}",
            )
        self.timeline.event("zone", f"Route 53 hosted zone {self.clouds.zone_id} on moto")

    def train_v1(self) -> None:
        from orchestrator.core.artifact.signing import SignatureVerifier, generate_key_pair, load_public_key
        from orchestrator.training.pipeline import TrainOptions, train

        # An ephemeral key pair in the work directory; in production the private key comes from a
        # secret store and only the public key is configuration.
        self.signing_key, public = generate_key_pair(self.clouds.root / "keys")
        self.clouds.signing_public_key = public
        self.verifier = SignatureVerifier(load_public_key(str(public), where="demo"))
        with self.console.status("training digits (grid search over C, stratified 5-fold CV)"):
            trained = train(
                TrainOptions(
                    dataset="digits", out=self.clouds.root / "artifacts", signing_key=self.signing_key
                )
            )
        m = trained.manifest
        self.artifacts = {"v1": trained.path}
        self.result["model"] = m.name
        self.result["versions"] = {"v1": m.version}
        self.result["metrics"] = {"v1": _headline(m.metrics)}
        self.timeline.event(
            "train", f"trained {m.name} {m.version}: F1 macro {m.metrics['f1_macro']:.3f} on held-out rows"
        )
        self.timeline.event(
            "sign", f"signed (OpenSSF model signing, P-256 key {self.verifier.key.fingerprint}): model.sig"
        )
        self.rows, self.labels = _held_out_rows(m)

    def sync(self, which: str) -> None:
        from orchestrator.publish.sync import sync_artifact
        from orchestrator.publish.verify import verify_targets

        targets = self.clouds.targets()
        try:
            with self.console.status(f"syncing {which} to S3, GCS and Azure Blob, then verifying"):
                results = sync_artifact(self.artifacts[which], targets, verifier=self.verifier)
                failed = [f"{r.target}: {r.error}" for r in results if not r.ok]
                if failed:
                    raise DemoError(f"sync of {which} failed: {'; '.join(failed)}")
                checked, drift = verify_targets(
                    targets, self.result["model"], deep=True, verifier=self.verifier
                )
        finally:
            for target in targets:
                target.storage.close()
        if drift or not all(c.ok for c in checked):
            raise DemoError(f"verify after syncing {which} found differences: {drift or checked}")
        version = self.result["versions"][which]
        uploaded = sum(len(r.uploaded) for r in results)
        self.timeline.event(
            f"sync_{which}",
            f"synced {version} to 3 clouds ({uploaded} objects), verified byte-identical and signed, "
            "LATEST moved",
        )

    def start_endpoints(self) -> None:
        with self.console.status("starting 3 endpoints, each verifying the model and its signature"):
            self.clouds.start_endpoints()
        self.started_pids += [e.process.pid for e in self.clouds.endpoints.values()]
        for cloud in CLOUDS:
            self.timeline.event(
                "endpoint", f"{cloud} endpoint {self.clouds.url(cloud)} serves {self.clouds.model_uri(cloud)}"
            )

    def first_route(self) -> None:
        from orchestrator.render.control import decision_table

        self.config_path = self.clouds.write_config(
            latency_slo_ms=LATENCY_SLO_MS, requests_per_s=EXPECTED_RPS
        )
        self.config = load_config(self.config_path)
        self.plane = open_plane(self.config, store=StateStore.open(Path(self.config.state.path)))
        report = self.plane.health_round(apply=True)
        if report.exit_code != 0:
            raise DemoError(f"not every cloud is healthy at the start: {_states(report)}")
        decision_table(
            report.decision, report.weights, title="Routing decision (cost under the SLO)", out=self.console
        )
        self.result["decision"] = report.decision.as_dict()
        self.timeline.event(
            "route",
            f"all healthy; weights applied to Route 53 and routing.json: {report.weights}",
            weights=report.weights,
        )
        if not report.weights or sum(1 for w in report.weights.values() if w) < 2:
            raise DemoError(f"the first decision should spread traffic: {report.weights}")

    def start_traffic(self) -> None:
        assert self.config is not None
        assert self.config.routing.route53 is not None
        route53 = self.config.routing.route53
        self.dns = open_backend("route53", route53.backend_settings())
        self.weights = WeightsCache(self.dns.current, ttl_s=route53.ttl, clock=time.time)
        self.traffic = TrafficGenerator(
            urls={c: self.clouds.url(c) for c in CLOUDS},
            weights=self.weights,
            rows=self.rows,
            labels=self.labels,
            rate_per_s=self.options.rate_per_s,
            clock=self.timeline.now,
        ).start()
        self.watch = Watch(self.config, on_flip=self._on_flip, on_error=self._on_watch_error).start()
        self.timeline.event(
            "traffic",
            f"health --watch --apply running; clients send {self.options.rate_per_s:g} predictions/s "
            "by the DNS weights",
        )
        self.pause(STEADY_S, "steady traffic")

    def kill_and_fail_over(self) -> None:
        watch = self._watch()
        assert self.config is not None
        assert self.traffic is not None
        h = self.config.health
        endpoint = self.clouds.endpoints["aws"]
        killed_wall = time.time()
        endpoint.process.signal(signal.SIGKILL)
        killed = self.timeline.event("kill", "aws endpoint killed (SIGKILL)", label="aws killed")
        detected, self.hold_until = self.wait_for(
            lambda: watch.flip_after("aws", HealthState.UNHEALTHY, killed_wall), 20, "aws marked unhealthy"
        )
        applied = self.wait_for(
            lambda: watch.applied_after(killed_wall, lambda w: w.get("aws") == 0), 20, "aws drained from DNS"
        )
        detected_s, applied_s = detected - killed_wall, applied[0] - killed_wall
        self.timeline.event(
            "detect", f"detected: aws unhealthy after {detected_s:.2f} s", at=self.timeline.at(detected)
        )
        self.timeline.event(
            "failover",
            f"failover applied after {applied_s:.2f} s: weights {applied[1]}",
            at=self.timeline.at(applied[0]),
            label="failover",
            weights=applied[1],
        )
        self.pause(OUTAGE_S, "traffic continues on gcp and azure")
        # Worst case: the kill lands just after a probe; `unhealthy_threshold` probes one jittered
        # interval apart, each failing within the timeout, then one change to the backends.
        bound = h.unhealthy_threshold * h.interval_s * (1 + h.jitter) + h.timeout_s + 1.0
        after = self.timeline.at(applied[0])
        requests = self.traffic.snapshot()
        self.result["failover"] = {
            "cloud": "aws",
            "killed_at": killed["t"],
            "detected_after_s": round(detected_s, 3),
            "applied_after_s": round(applied_s, 3),
            "bound_s": round(bound, 3),
            "within_bound": applied_s <= bound,
            "weights": applied[1],
            "errors_before_applied": sum(1 for r in requests if r.retried and killed["t"] <= r.at < after),
            "failed_before_applied": sum(
                1 for r in requests if r.served_by is None and killed["t"] <= r.at < after
            ),
            "failed_after_applied": sum(1 for r in requests if r.served_by is None and r.at >= after),
            "sent_to_aws_after_applied": sum(1 for r in requests if r.first == "aws" and r.at >= after),
        }

    def restart_and_fail_back(self) -> None:
        watch = self._watch()
        assert self.config is not None
        h = self.config.health
        restarted_wall = time.time()
        self.clouds.start_endpoint("aws")
        self.started_pids.append(self.clouds.endpoints["aws"].process.pid)
        restarted = self.timeline.event(
            "restart", "aws endpoint restarted (same address)", label="aws restarted"
        )
        back = self.wait_for(
            lambda: watch.applied_after(restarted_wall, lambda w: w.get("aws", 0) > 0), 40, "aws back in DNS"
        )
        self.timeline.event(
            "failback",
            f"failback: aws back in rotation {back[0] - restarted_wall:.2f} s after its restart, once "
            f"{h.healthy_threshold} probes passed and its hold-down ended "
            f"(at {self.timeline.at(self.hold_until):.1f} s): weights {back[1]}",
            at=self.timeline.at(back[0]),
            label="failback",
            weights=back[1],
        )
        self.result["failback"] = {
            "cloud": "aws",
            "restarted_at": restarted["t"],
            "readmitted_after_s": round(back[0] - restarted_wall, 3),
            "healthy_threshold": h.healthy_threshold,
            "hold_down_s": h.hold_down_s,
            "hold_until": self.timeline.at(self.hold_until),
            "readmitted_at": self.timeline.at(back[0]),
            "weights": back[1],
        }

    def manual_failover_and_back(self) -> None:
        out = self.cli("failover", "--from", "gcp", "--reason", "demo: planned maintenance")
        self.timeline.event(
            "manual_failover",
            f"gcp drained by the operator: weights {out.get('weights')}",
            label="failover --from gcp",
        )
        self.wait_for(lambda: self.dns.current().get("gcp") == 0, 10, "gcp drained from DNS")
        self.pause(DRAINED_S, "gcp drained")
        back = self.cli("failback", "--to", "gcp")
        self.timeline.event(
            "manual_failback",
            f"gcp back after its health checks: weights {back.get('weights')}",
            label="failback gcp",
        )
        self.result["manual"] = {"failover": out, "failback": back}

    def roll_out_v2(self) -> None:
        watch = self._watch()
        with self.console.status(
            "training version 2 with `orchestrator train` (another seed), gated against v1"
        ):
            trained = self.cli_json(
                "train",
                "--dataset",
                "digits",
                "--seed",
                "1",
                "--out",
                str(self.clouds.root / "artifacts"),
                "--signing-key",
                str(self.signing_key),
                "--against",
                str(self.artifacts["v1"]),
            )
        version = str(trained["version"])
        gate = trained.get("gate") or {}
        self.artifacts["v2"] = Path(trained["path"])
        self.result["versions"]["v2"] = version
        self.result["metrics"]["v2"] = _headline(trained.get("metrics", {}))
        if gate:
            delta = gate["delta_f1_macro"]
            self.result["gate"] = {
                "decision": gate["decision"],
                "rows": gate["rows"]["n"],
                "delta_f1_macro": delta["estimate"],
                "mcnemar_p": gate["mcnemar"]["pvalue"],
            }
            self.timeline.event(
                "gate",
                f"gate against v1: {gate['decision']} on {gate['rows']['n']} rows neither model trained on "
                f"(macro F1 difference {delta['estimate']:+.3f}, 95 % CI {delta['ci_low']:+.3f} to "
                f"{delta['ci_high']:+.3f}; McNemar p = {gate['mcnemar']['pvalue']:.2g})",
            )
        self.timeline.event("train_v2", f"trained {version}")
        self.sync("v2")
        published = time.time()
        self.timeline.event(
            "rollout", f"LATEST → {version}; endpoints reload on their own", label="v2 published"
        )
        swapped: dict[str, float] = {}
        with httpx.Client(timeout=1.0) as client:

            def all_swapped() -> bool:
                for cloud in CLOUDS:
                    if cloud in swapped:
                        continue
                    served, loaded_at = _served(client, self.clouds.url(cloud))
                    if served == version:
                        # The endpoint's own swap time, not when this poll noticed it (later on a
                        # busy machine, possibly after the health checks had already seen it).
                        swapped[cloud] = loaded_at or time.time()
                        self.timeline.event(
                            "hot_swap", f"{cloud} now serves {version} (verified, canary passed)"
                        )
                return len(swapped) == len(CLOUDS)

            self.wait_for(all_swapped, 30, f"every endpoint serving {version}")
        canary = self.wait_for(
            lambda: watch.canary_ok_after(published, version), 20, f"health checks passing on {version}"
        )
        self.timeline.event(
            "canary", f"health checks pass everywhere on {version} (canary rows answered right)"
        )
        self.pause(AFTER_ROLLOUT_S, f"serving {version}")
        self.result["rollout"] = {
            "version": version,
            "swapped_after_s": {c: round(t - published, 3) for c, t in swapped.items()},
            "canary_ok_after_s": round(canary - published, 3),
        }

    def roll_out_a_bad_version(self) -> None:
        from orchestrator.demo.bad_rollout import roll_out_bad_version

        assert self.config is not None
        with self.console.status("rolling out a bad version (its canary fails), cheapest cloud first"):
            outcome = roll_out_bad_version(
                self.config, self.clouds, self.timeline, self.artifacts["v2"], self.signing_key, self.verifier
            )
        self.result["bad_rollout"] = outcome
        if outcome["status"] != "rolled-back":
            raise DemoError(f"the bad version was not rolled back: {outcome}")
        first = outcome["moved"][0]
        # The clients see the weights again through DNS (its TTL), as before the rollout.
        self.wait_for(lambda: self.weights.get().get(first, 0) > 0, 15, f"clients routing to {first} again")
        self.pause(1.0, "serving the previous version everywhere")

    def shift_one_clouds_inputs(self) -> None:
        from orchestrator.demo.drift_episode import ROWS, SHIFTED, drift_report, send_rows, shift_right

        assert self.config_path is not None
        with self.console.status(f"{SHIFTED}'s clients send images shifted one pixel; the others as before"):
            for cloud in CLOUDS:
                rows = shift_right(self.rows) if cloud == SHIFTED else self.rows
                send_rows(self.clouds.url(cloud), rows, ROWS)
        self.timeline.event(
            "drift", f"{SHIFTED}'s clients now send every digit one pixel to the right", label="inputs shift"
        )
        self.console.print(
            f"[bold]$ orchestrator drift report --out {escape(str(self.options.report_dir))}/drift[/]"
        )
        code, report = drift_report(
            self.config_path, self.options.report_dir / "drift", {"ORCHESTRATOR_USER": "demo-operator"}
        )
        clouds = report.get("clouds", {})
        shifted = clouds.get(SHIFTED, {})
        worst = shifted.get("worst") or {}
        others = {c: clouds.get(c, {}).get("status") for c in CLOUDS if c != SHIFTED}
        if code != 1 or shifted.get("status") not in ("warn", "alarm") or "alarm" in others.values():
            raise DemoError(f"the drift report did not single out {SHIFTED}: exit {code}, {clouds}")
        self.result["drift"] = {
            "shifted": SHIFTED,
            "status": {c: clouds.get(c, {}).get("status") for c in CLOUDS},
            "worst": worst,
            "report": report.get("report"),
        }
        self.timeline.event(
            "drift_report",
            f"drift report: {SHIFTED} {shifted.get('status')} (worst {worst.get('feature')}, PSI "
            f"{float(worst.get('psi') or 0):.2f}); " + ", ".join(f"{c} {s}" for c, s in others.items()),
        )

    def summarise(self) -> None:
        assert self.traffic is not None
        self.traffic.stop()
        self._watch().stop()
        requests = self.traffic.snapshot()
        per_cloud = self.traffic.counts()
        self.result["traffic"] = {
            "rate_per_s": self.options.rate_per_s,
            "total": len(requests),
            "failed": sum(1 for r in requests if r.served_by is None),
            "retried": sum(1 for r in requests if r.retried),
            "accuracy": round(sum(r.correct for r in requests) / max(1, len(requests)), 4),
            "per_cloud": per_cloud,
        }
        self.result["weights_seen"] = [
            {"t": self.timeline.at(at), "weights": w} for at, w in self.weights.history
        ]
        self.result["duration_s"] = self.timeline.now()
        self.result["report"] = write_report(
            self.options.report_dir, self.result, self.traffic.series(bin_s=0.5)
        )
        self.console.print(summary_table(self.result))
        f, b = self.result["failover"], self.result["failback"]
        self.console.print(
            f"failover: detected in {f['detected_after_s']:.2f} s, applied in {f['applied_after_s']:.2f} s "
            f"(bound {f['bound_s']:.2f} s); failed requests after it: {f['failed_after_applied']}\n"
            f"failback: aws back {b['readmitted_after_s']:.2f} s after its restart\n"
            f"versions served: {', '.join(self.result['versions'].values())}\n"
            f"report: {self.result['report']['markdown']} (plot {self.result['report']['plot']})",
            soft_wrap=True,
        )

    def keep_running(self) -> None:
        assert self.config_path is not None
        self.result["config"] = str(self.config_path)
        env = self.clouds.environment()
        self.console.rule("[bold]still running")
        self.console.print("The three clouds stay up. In another shell:\n")
        for name, value in env.items():
            self.console.print(f"  export {name}='{value}'", soft_wrap=True, highlight=False)
        command = Path(sys.executable).with_name("orchestrator")
        cli = str(command) if command.exists() else "orchestrator"
        self.console.print(
            f"  {cli} status\n  {cli} route\n  {cli} failover --from azure\n"
            "\nPress Ctrl-C here to stop everything.",
            highlight=False,
            soft_wrap=True,
        )
        self._watch().start()
        while True:
            time.sleep(3600)

    # -- plumbing --------------------------------------------------------------------------------
    def cli(self, *args: str) -> dict[str, Any]:
        """Run ``orchestrator ARGS --json`` as an operator would (a separate process, the config
        from $ORCHESTRATOR_CONFIG), echoing the command; its JSON output, or DemoError."""
        self.console.print(f"[bold]$ orchestrator {escape(shlex.join(args))}[/]", highlight=False)
        return self.cli_json(*args)

    def cli_json(self, *args: str) -> dict[str, Any]:
        env = {
            **os.environ,
            "ORCHESTRATOR_CONFIG": str(self.config_path),
            "ORCHESTRATOR_USER": "demo-operator",
        }
        done = subprocess.run(  # our own CLI, fixed arguments
            [sys.executable, "-m", "orchestrator", *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise DemoError(
                f"`orchestrator {' '.join(args)}` exited {done.returncode}: {done.stderr.strip()[-800:]}"
            )
        data = json.loads(done.stdout)
        return data if isinstance(data, dict) else {"output": data}

    def pause(self, seconds: float, what: str) -> None:
        with self.console.status(f"{what} ({seconds:g} s)"):
            time.sleep(seconds)

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self.console.status(f"waiting: {what}"):
            while time.monotonic() < deadline:
                value = condition()
                if value:
                    return value
                if self.watch is not None and self.watch.died:
                    raise DemoError(f"the health watch stopped while waiting for {what}")
                time.sleep(0.05)
        raise DemoError(f"timed out after {timeout:g} s waiting for {what}")

    def _watch(self) -> Watch:
        assert self.watch is not None, "the watch starts with the traffic"
        return self.watch

    def _on_flip(self, flip: Flip) -> None:
        message = f"{flip.cloud}: {flip.old.value} → {flip.new.value} ({flip.reason})"
        self.timeline.event("flip", message, at=self.timeline.at(flip.at))

    def _on_watch_error(self, message: str) -> None:
        self.timeline.event("watch_error", message)

    def shutdown(self) -> None:
        """Stop everything this demo started, in reverse order; record what is left (nothing)."""
        with self.console.status("shutting down: traffic, health watch, endpoints, emulators"):
            if self.traffic is not None:
                self.traffic.stop()
            if self.watch is not None:
                self.watch.stop()
            if self.plane is not None:
                self.plane.close()
            if getattr(self, "dns", None) is not None:
                self.dns.close()
            self.clouds.stop()
        left = [pid for pid in self.started_pids if _alive(pid)]
        self.result["processes"] = {"started": self.started_pids, "left": left}
        self.timeline.event(
            "shutdown", f"stopped {len(self.started_pids)} processes; left running: {len(left)}"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _served(client: httpx.Client, url: str) -> tuple[str | None, float | None]:
    """(the version an endpoint serves, when it loaded it: unix seconds), or Nones if it does not say."""
    try:
        info = client.get(f"{url}/v1/model").json()
        version, loaded_at = info.get("version"), info.get("loaded_at")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None, None
    return (
        version if isinstance(version, str) else None,
        float(loaded_at) if isinstance(loaded_at, int | float) else None,
    )


def _states(report: RoundReport) -> str:
    return ", ".join(
        f"{n} {r.machine.state.value} ({r.machine.last_reason})" for n, r in report.records.items()
    )


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    keys = ("accuracy", "f1_macro", "roc_auc_ovr_macro", "cohen_kappa")
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics}


def _held_out_rows(manifest: Any) -> tuple[list[list[float]], list[str]]:
    """The digits rows the model never saw in training, and their true labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    indices = manifest.split["test_indices"]
    return [data.data[i].tolist() for i in indices], [manifest.classes[int(data.target[i])] for i in indices]
