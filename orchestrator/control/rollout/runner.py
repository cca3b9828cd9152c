"""A progressive rollout across clouds, as a sequence of small steps on the recorded state.

Stages follow the plan's order (:mod:`.plan`). Each stage has three phases, and :meth:`Rollout.step`
advances by at most one of them, so that the ``rollout`` command (a loop of steps) and the health
job (one step per round, :mod:`.takeover`) run the same code:

1. ``move``: the cloud is recorded as moved (intent first: a crash after the pointer moved still
   rolls it back) with a weight cap of 0, then its channel pointer is moved to the new version
   (``moved_by: rollout``; the version was verified in every cloud when the rollout started).
   After the write the record is checked again: if the rollout was aborted or taken over and is
   no longer running meanwhile, the move is undone (the pointer back to the baseline if it still
   names the version).
2. ``serve``: the endpoint is probed against the new version's canary. Serving it and passing: the
   endpoints' ``/metrics`` are recorded (the gates' baseline), the cloud gets its weight (the plan's
   canary weight in the first stage, the router's afterwards) and the bake starts. Serving it and
   failing the canary: the canary gate fails. Not serving it within ``serve_timeout_s``: the
   ``serve`` gate fails. The cloud has no weight until it passes.
3. ``bake``: the cloud is probed every ``probe_interval_s``; ``health.unhealthy_threshold`` failed
   probes in a row fail at once. At the end of ``bake_s`` the gates (:mod:`.gates`) judge it
   against the clouds still on the old version; all passing (or without data) moves on to the
   next stage (the passed cloud's cap lifted), or ends the rollout (``succeeded``:
   every cloud on the new version, the caps lifted, the router's weights).

A failed gate (or ``--abort``) rolls back: the moved clouds' caps drop to 0 at once (committed and
put into effect before anything else), each moved cloud's pointer that still names the rollout's
version goes back to the baseline (``moved_by: rollback``; a pointer naming a third version was
moved by someone else and is left alone), then one transaction records a flip per moved cloud with the gate's
reason and ends the rollout (``rolled-back``), and the router's weights are restored. A rollback
that fails half way stays ``rolling-back`` and the next step retries it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.control.health.machine import Verdict as ProbeVerdict
from orchestrator.control.health.probe import Expectation, short
from orchestrator.control.rollout import gates
from orchestrator.control.rollout.judge import DRIFT_PATH, fetch_metrics, sample_dict, stage_verdicts
from orchestrator.control.rollout.plan import RolloutPlan
from orchestrator.control.rollout.record import ACTIVE, RolloutTakenOver
from orchestrator.control.types import Flip
from orchestrator.core.errors import OrchestratorError
from orchestrator.publish.channels import move_channel
from orchestrator.publish.sync import Target

if TYPE_CHECKING:
    from orchestrator.control.plane import ControlPlane

__all__ = ["DRIFT_PATH", "MAX_FAILED_STEPS", "Rollout"]

# Steps failing in a row before the command gives the rollout up to the health job: at the default
# 5 s interval, a minute and a half of a bucket or the state being unreachable.
MAX_FAILED_STEPS = 20
# Probe failures kept in the record (the first ones say what went wrong; the count says how often).
MAX_KEPT_FAILURES = 5


class Rollout:
    """One rollout as recorded, advanced by :meth:`step` by ``holder`` (this process)."""

    def __init__(
        self,
        plane: ControlPlane,
        *,
        holder: str,
        record: Mapping[str, Any],
        targets: Mapping[str, Target] | None = None,
        on_event: Callable[[str, Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.plane = plane
        self.holder = holder
        self.record: dict[str, Any] = dict(record)
        self.plan = RolloutPlan.model_validate(record["plan"])
        if targets is None:
            from orchestrator.control.wiring import open_targets

            targets = open_targets(plane.config)
        self.targets = dict(targets)
        self.on_event = on_event or (lambda _what, _record: None)
        self._expect: Expectation | None = None

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, *, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Step until the rollout ends (or ``should_stop``); the final record. A step that fails
        (storage, network, anything) is reported to ``on_event("error")`` and retried at the next
        interval: each step is bounded, and the rollout's state is in the record, so nothing is
        lost. After :data:`MAX_FAILED_STEPS` failures in a row the last error is raised (the
        rollout stays active: the health job or ``--abort`` takes it from there)."""
        failures = 0
        while self.record["status"] in ACTIVE and not should_stop():
            started = self.plane.monotonic()
            try:
                self.step()
                failures = 0
            except RolloutTakenOver:
                raise
            except Exception as exc:  # a loop survives any one step, and says so
                failures += 1
                text = str(exc) if isinstance(exc, OrchestratorError) else f"{type(exc).__name__}: {exc}"
                self.on_event("error", {"error": short(text)})
                if failures >= MAX_FAILED_STEPS:
                    raise OrchestratorError(
                        f"rollout of {self.record['version']}: {failures} steps failed in a row, the "
                        f"last: {short(text)}; it stays {self.record['status']} for the health job "
                        "(or `rollout --abort`)"
                    ) from exc
            if self.record["status"] in ACTIVE:
                elapsed = self.plane.monotonic() - started
                self.plane.sleep(max(0.0, self.plan.probe_interval_s - elapsed))
        return self.record

    def close(self) -> None:
        """Close the buckets this rollout opened."""
        for target in self.targets.values():
            target.storage.close()

    def step(self) -> dict[str, Any]:
        """Advance by at most one phase (module docstring); the record after it. A step that raises
        (a bucket, an endpoint, a key unreadable) is recorded (``failing_since``); once steps have
        kept failing for ``serve_timeout_s`` the rollout is rolled back (gate ``step``) instead
        of raising again: no rollout stays running forever on an error."""
        status, phase = self.record["status"], self.record["phase"]
        try:
            if status == "rolling-back":
                self._roll_back_pointers()
            elif status != "running":
                pass
            elif phase == "move":
                self._move()
            elif phase == "serve":
                self._serve()
            elif phase == "bake":
                self._bake()
        except RolloutTakenOver:
            raise
        except Exception as exc:
            if not self._count_failed_step(exc):
                raise
            return self.record
        if self.record["status"] == "running" and self.record.get("failing_since") is not None:
            self._save(lambda r: r.pop("failing_since", None))
        return self.record

    def _count_failed_step(self, exc: Exception) -> bool:
        """Record that a step failed; roll back when steps have failed for longer than the step
        budget (``serve_timeout_s``). Whether it rolled back (else the caller raises ``exc``)."""
        if self.record["status"] != "running":
            return False  # a rollback is retried until it is done: there is nothing to fall back to
        now = self.plane.clock()
        since = self.record.get("failing_since")
        if not isinstance(since, int | float) or isinstance(since, bool):
            try:
                self._save(lambda r: r.update(failing_since=now))
            except RolloutTakenOver:
                raise
            except Exception:  # noqa: S110 - the state itself may be what fails: the step's error says it
                pass
            return False
        if now - since <= self.plan.serve_timeout_s:
            return False
        text = str(exc) if isinstance(exc, OrchestratorError) else f"{type(exc).__name__}: {exc}"
        self._fail(
            "step",
            f"{self.cloud}: steps kept failing for {now - since:.0f} s (over serve_timeout_s "
            f"{self.plan.serve_timeout_s:g} s), the last: {text}",
        )
        return True

    def abort(self, reason: str) -> dict[str, Any]:
        """Roll back at once (``rollout --abort``), whatever the phase; the final record."""
        if self.record["status"] == "running":
            self._fail("abort", reason)
        if self.record["status"] == "rolling-back":
            self._roll_back_pointers()
        return self.record

    # -- phases ------------------------------------------------------------------------------------
    @property
    def cloud(self) -> str:
        return str(self.record["order"][self.record["stage"]])

    def _move(self) -> None:
        cloud = self.cloud

        def intent(r: dict[str, Any]) -> None:
            if cloud not in r["moved"]:
                r["moved"].append(cloud)
            r["caps"][cloud] = 0

        self._save(intent, route=True)
        target = self.targets[cloud]
        result = move_channel(
            [target],
            self.record["model"],
            self.record["version"],
            channel=self.record["channel"],
            moved_by="rollout",
            allow_back=True,
        )[0]
        if not result.ok:
            self._fail("move", f"{cloud}: the pointer could not be moved: {result.error}")
            return
        try:
            self._save(lambda r: r.update(phase="serve", phase_started_at=self.plane.clock()))
        except RolloutTakenOver:
            self._undo_if_disowned(cloud)
            raise
        self.on_event("moved", self.record)

    def _undo_if_disowned(self, cloud: str) -> None:
        """After this process moved ``cloud``'s pointer, the record turned out not to be its own any
        more (an abort, or the health job, took it over while the write was in flight). Unless the
        rollout is still running (its new holder then owns the move and will judge it), the move
        is undone: the pointer goes back to the baseline if it still names this rollout's version,
        so an aborted version is never left live and unwatched."""
        record = self.record
        stored = self.plane.store.atomically(self.plane.store.rollout)
        if stored is not None and stored.get("id") == record["id"] and stored.get("status") == "running":
            return
        _move_back(self.targets[cloud], record)

    def _serve(self) -> None:
        cloud, version = self.cloud, self.record["version"]
        result = self.plane.prober.probe_against([cloud], self._expectation())[cloud]
        if result.served_version == version and result.verdict is not ProbeVerdict.FAIL:
            before = {c: fetch_metrics(self.plane, c) for c in self.plane.endpoints}
            stage = self.record["stage"]

            def bake(r: dict[str, Any]) -> None:
                r.update(
                    phase="bake",
                    phase_started_at=self.plane.clock(),
                    probes=1,
                    probe_failures=[],
                    failed_probes=0,
                    failed_in_row=0,
                )
                r["before"] = {c: sample_dict(s) for c, s in before.items() if s is not None}
                if stage == 0:
                    r["caps"][cloud] = self.plan.canary_weight
                else:
                    r["caps"].pop(cloud, None)

            self._save(bake, route=True)
            self.on_event("serving", self.record)
        elif result.served_version == version:
            self._fail("canary", f"{cloud} serves {version} but fails its canary: {result.reason}")
        elif self.plane.clock() - self.record["phase_started_at"] > self.plan.serve_timeout_s:
            self._fail(
                "serve",
                f"{cloud} did not serve {version} within {self.plan.serve_timeout_s:g} s: {result.reason}",
            )
        else:
            self._save(lambda r: None)  # the heartbeat: still waiting, still alive

    def _bake(self) -> None:
        cloud, version = self.cloud, self.record["version"]
        result = self.plane.prober.probe_against([cloud], self._expectation())[cloud]
        failed = result.verdict is ProbeVerdict.FAIL or result.served_version != version
        reason = result.reason if result.served_version == version else f"serves {result.served_version}"

        def count(r: dict[str, Any]) -> None:
            r["probes"] += 1
            if failed:
                r["probe_failures"] = [*r["probe_failures"], short(reason)][:MAX_KEPT_FAILURES]
                r["failed_probes"] = int(r.get("failed_probes", 0)) + 1
                r["failed_in_row"] = int(r.get("failed_in_row", 0)) + 1
            else:
                r["failed_in_row"] = 0

        self._save(count)
        # A probe failure fails the stage at once only when unhealthy_threshold probes in a row
        # failed (the health state machine's tolerance): one lost probe is noise, not a bad version.
        if failed and self.record["failed_in_row"] >= self.plane.config.health.unhealthy_threshold:
            verdict = gates.canary_gate(
                self.record["probe_failures"], self.record["probes"], failed=self.record["failed_probes"]
            )
            self._judged([verdict])
            return
        if self.plane.clock() < self.record["phase_started_at"] + self.plan.bake_s:
            return
        verdicts = self._gates()
        self._judged(verdicts)

    def _gates(self) -> list[gates.Verdict]:
        """The stage's gates at the end of its bake time (:func:`.judge.stage_verdicts`)."""
        return stage_verdicts(self.plane, self.record, self.plan)

    def _judged(self, verdicts: Sequence[gates.Verdict]) -> None:
        stage, cloud = self.record["stage"], self.cloud
        rows = [{"stage": stage, "cloud": cloud, **v.as_dict()} for v in verdicts]
        self._save(lambda r: r.update(verdicts=[*r["verdicts"], *rows]))
        failed = next((v for v in verdicts if v.status == "fail"), None)
        if failed is not None:
            self._fail(failed.gate, f"{cloud}: {failed.reason}")
            return
        last = stage + 1 >= len(self.record["order"])

        def advance(r: dict[str, Any]) -> None:
            now = self.plane.clock()
            if last:
                r.update(status="succeeded", phase="done", caps={}, finished_at=now)
            else:
                # The stage passed: its cloud serves the new version with the router's weight (the
                # first stage's canary cap is lifted) while the next cloud is moved and baked.
                r["caps"].pop(cloud, None)
                r.update(stage=stage + 1, phase="move", phase_started_at=now, before={})

        self._save(advance, route=True)
        self.on_event("succeeded" if last else "stage passed", self.record)

    # -- rollback ----------------------------------------------------------------------------------
    def _fail(self, gate: str, reason: str) -> None:
        """A gate failed: the moved clouds lose their weight at once, then their pointers go back."""
        moved = list(self.record["moved"])

        def fail(r: dict[str, Any]) -> None:
            r.update(status="rolling-back", reason=f"{gate}: {short(reason)}", failed_at=self.plane.clock())
            r["caps"] = dict.fromkeys(moved, 0)

        self._save(fail, route=True)
        self.on_event("gate failed", self.record)
        self._roll_back_pointers()

    def _roll_back_pointers(self) -> None:
        record = self.record
        moved = list(record["moved"])
        errors = []
        for cloud in reversed(moved):
            # Only a pointer that still names this rollout's version is moved back: one naming
            # another version was moved by someone else since, and is theirs.
            result = _move_back(self.targets[cloud], record)
            if result.pointer == "left":
                left = f"{cloud}: its pointer names {result.previous}, not {record['version']}: left alone"
                self.on_event("error", {"error": left})
            elif not result.ok:
                errors.append(f"{cloud}: {result.error}")
        if errors:
            self.on_event("error", {"error": short("rollback incomplete: " + "; ".join(errors))})
            return  # still rolling-back: the next step tries again
        now = self.plane.clock()
        reason = f"rollout of {record['version']} rolled back: {record['reason']}"

        def done(r: dict[str, Any]) -> None:
            r.update(status="rolled-back", phase="done", caps={}, rolled_back_at=now, finished_at=now)
            records = self.plane.records()
            self.plane.store.record_flips(
                Flip(
                    cloud=c,
                    at=now,
                    old=records[c].machine.state,
                    new=records[c].machine.state,
                    reason=short(reason),
                    actor="rollout",
                    details={"rollout": r["id"], "from": r["version"], "to": r["baseline"]},
                )
                for c in moved
                if c in records
            )

        self._save(done, route=True)
        self.on_event("rolled back", self.record)

    # -- the record, the weights, the endpoints ------------------------------------------------------
    def _save(self, change: Callable[[dict[str, Any]], None], *, route: bool = False) -> None:
        """Apply ``change`` to the stored record in one short transaction (RolloutTakenOver when it
        is no longer this holder's); with ``route``, commit the router's decision under the new
        caps in it and bring the backends to it (after the transaction)."""
        mine = self.record["id"]

        def step() -> dict[str, Any]:
            stored = self.plane.store.rollout()
            if stored is None or stored.get("id") != mine or stored.get("holder") != self.holder:
                raise RolloutTakenOver(f"rollout {mine} is no longer this process's to run (see `status`)")
            change(stored)
            stored["heartbeat_at"] = self.plane.clock()
            self.plane.store.save_rollout(stored)
            if route:
                decision = self.plane.decide(self.plane.records())
                self.plane.commit_decision(
                    decision.weights, f"rollout {stored['version']}: {stored['phase']}"
                )
            return stored

        self.record = self.plane.store.atomically(step)
        if route:
            self.plane.reconcile_as_operator()

    def _expectation(self) -> Expectation:
        if self._expect is None:
            from orchestrator.control.health.expect import expectation_of, signature_verifier

            self._expect = expectation_of(
                self.plane.config,
                [t.storage for t in self.targets.values()],
                self.record["version"],
                signature_verifier(self.plane.config),
            )
        return self._expect


def _move_back(target: Any, record: Mapping[str, Any]) -> Any:
    """Move ``target``'s channel pointer back to the rollout's baseline, only if it still names the
    rollout's version (one naming another version was moved by someone else since, and is theirs);
    :func:`~orchestrator.publish.channels.move_channel`'s result for that target."""
    return move_channel(
        [target],
        record["model"],
        record["baseline"],
        channel=record["channel"],
        moved_by="rollback",
        allow_back=True,
        only_from=record["version"],
    )[0]
