"""The demo's last episode: a bad version rolled out, caught in its first stage, rolled back on its own.

The bad version is version 2 with its manifest's canary labels rotated, signed again with the
demo's key: every check in the buckets passes (complete, byte-identical, signed), but an endpoint
that loads it finds its canary rows answered differently and refuses it, so the cloud it was
rolled out to keeps serving version 2. It is published to the ``CANDIDATE`` channel (which no
endpoint follows), then ``rollout`` moves ``LATEST`` in the cheapest cloud first: the cloud never
serves it, gets no weight, and when ``serve_timeout_s`` runs out the rollout moves the pointer back
and records the flip, with no operator involved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.control.rollout.plan import RolloutPlan
from orchestrator.control.rollout.start import start_rollout
from orchestrator.control.store import StateStore
from orchestrator.control.wiring import open_plane
from orchestrator.publish.sign import sign_verified
from orchestrator.publish.sync import sync_artifact

if TYPE_CHECKING:
    from orchestrator.control.config import Config
    from orchestrator.demo.report import Timeline
    from orchestrator.demo.world import LocalClouds

__all__ = ["BAD_PLAN", "bad_artifact", "roll_out_bad_version"]

# Seconds, for the demo: the endpoints reload every second, so 4 s is several chances to load it.
BAD_PLAN = RolloutPlan(canary_weight=10, bake_s=2.0, probe_interval_s=0.25, serve_timeout_s=4.0)


def bad_artifact(good: Path, out: Path, signing_key: Path) -> tuple[Path, str]:
    """A signed copy of the artifact ``good`` whose canary labels are rotated (each row's label is
    the next class's): (its directory, its version)."""
    manifest = json.loads((good / "manifest.json").read_text())
    version = f"bad-{manifest['version']}"[:63]
    root = out / version
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(good, root)
    (root / "model.sig").unlink(missing_ok=True)
    manifest["version"] = version
    labels = manifest["canary"]["labels"]
    classes = sorted(set(labels))
    manifest["canary"]["labels"] = [classes[(classes.index(x) + 1) % len(classes)] for x in labels]
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    sign_verified(root, signing_key)
    return root, version


def roll_out_bad_version(
    config: Config, clouds: LocalClouds, timeline: Timeline, good: Path, signing_key: Path, verifier: Any
) -> dict[str, Any]:
    """Publish the bad version to ``CANDIDATE`` and roll it out (:data:`BAD_PLAN`); what happened,
    for the demo's result. The demo's health watch runs beside it (the rollout's caps apply to
    its decisions too)."""
    root, version = bad_artifact(good, clouds.root / "artifacts" / "bad", signing_key)
    targets = clouds.targets()
    try:
        results = sync_artifact(root, targets, verifier=verifier, channel="CANDIDATE")
    finally:
        for target in targets:
            target.storage.close()
    failed = [f"{r.target}: {r.error}" for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"publishing {version} failed: {'; '.join(failed)}")
    timeline.event("bad_published", f"{version} published to CANDIDATE (canary rows rotated, signed)")
    weights: list[int] = []
    plane = open_plane(config, store=StateStore.open(Path(config.state.path)))
    try:
        rollout = start_rollout(plane, version, BAD_PLAN, holder=plane.holder)
        first = rollout.record["order"][0]
        timeline.event(
            "bad_rollout", f"rollout of {version}: {first} first (the cheapest)", label="bad rollout"
        )

        def on_event(what: str, record: Any) -> None:
            desired = plane.store.atomically(plane.store.desired)
            if what != "rolled back" and desired is not None:
                weights.append(desired.weights.get(first, 0))
            if what == "gate failed":
                timeline.event("gate_failed", f"{first}: {record['reason']}")

        rollout.on_event = on_event
        try:
            final = rollout.run()
        finally:
            rollout.close()
    finally:
        plane.close()
    timeline.event(
        "rolled_back",
        f"{version} rolled back on its own ({final['status']}); {first} back on the previous version",
        label="rolled back",
    )
    return {
        "version": version,
        "status": final["status"],
        "reason": final["reason"],
        "moved": final["moved"],
        "max_weight_given": max(weights, default=0),
        "rolled_back_after_s": round((final["rolled_back_at"] or 0) - final["started_at"], 3),
    }
