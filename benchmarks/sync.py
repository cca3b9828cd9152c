"""Sync fan-out, idempotence and efficiency against the three emulators, as ratios from one run.

The artifact set: one 50 MB file (the "model") and 100 small files. Measured, in one run:

- fan-out: a cold sync to S3 (moto), GCS (gcp-storage-emulator) and Azure Blob (Azurite) at once,
  divided by the slowest single-cloud cold sync of the same set (target <= 1.2);
- a no-change re-sync: requests it sends per cloud (target: no PUT, at most one LIST);
- one small file changed: bytes uploaded / bytes changed (target 1.0; the manifest is one of the
  changed files, since it records the new file's sha256);
- where rclone is installed (``apt-get install rclone``): our three-cloud time / ``rclone sync`` of
  the same set to the S3 emulator alone (target <= 1.0), and our S3-only time / rclone's.

On one machine the three "clouds" are local processes sharing its cores with the client, unlike
real clouds. So the fan-out phase also reports the CPU seconds each process spent, and the floor
they impose: total CPU seconds / cores. Fan-out wall time ÷ max(slowest single cloud, that floor)
says how close the fan-out comes to what this machine allows.

    python benchmarks/sync.py [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.core.artifact.write import write_artifact  # noqa: E402
from orchestrator.core.storage import open_storage  # noqa: E402
from orchestrator.demo.emulators import scrubbed_environ, start_azurite, start_gcs, start_moto  # noqa: E402
from orchestrator.publish.sync import Target, sync_artifact  # noqa: E402

BIG_BYTES = 50 * 1000 * 1000
SMALL_FILES = 100
SMALL_BYTES = 8 * 1024


def make_artifact(out: Path, seed: int = 0) -> Path:
    """An artifact directory with a valid manifest: 1 big file, 100 small ones."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out))
    rng = __import__("random").Random(seed)
    (staging / "model.onnx").write_bytes(rng.randbytes(BIG_BYTES))
    (staging / "extra").mkdir()
    for i in range(SMALL_FILES):
        (staging / "extra" / f"f{i:03d}.bin").write_bytes(rng.randbytes(SMALL_BYTES))
    path, _ = write_artifact(
        staging,
        {
            "name": "bench",
            "version": f"v{seed}",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "framework": {},
            "features": {"names": ["x"], "count": 1},
            "classes": ["a", "b"],
            "split": {},
            "metrics": {},
            "canary": {"instances": [], "labels": [], "probabilities": []},
        },
        out,
    )
    return path


def change_one_small_file(artifact: Path, dest: Path) -> tuple[Path, int]:
    """A copy with one small file changed and the manifest updated; returns it and bytes changed."""
    shutil.copytree(artifact, dest)
    before = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    data = b"changed " + os.urandom(SMALL_BYTES - 8)
    (dest / "extra" / "f042.bin").write_bytes(data)
    manifest = json.loads((dest / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "extra/f042.bin":
            entry["sha256"] = hashlib.sha256(data).hexdigest()
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    changed = sum(
        p.stat().st_size
        for p in dest.rglob("*")
        if p.is_file() and before.get(p.relative_to(dest)) != p.read_bytes()
    )
    return dest, changed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of each timing (median)")
    args = parser.parse_args()
    remove, setting = scrubbed_environ(os.environ)
    for name in remove:
        os.environ.pop(name, None)
    os.environ.update(setting)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        emulators = {
            "aws": start_moto(work / "logs"),
            "gcp": start_gcs(work / "logs"),
            "azure": start_azurite(work / "logs"),
        }
        try:
            figures = run(work, emulators, args.rounds)
        finally:
            for emulator in emulators.values():
                emulator.stop()
    report(figures, as_json=args.json)


def run(work: Path, emulators: dict, rounds: int) -> dict[str, float | int | str | dict]:
    artifact = make_artifact(work / "artifacts")

    def fresh(name: str) -> Target:
        emulator = emulators[name]
        uri = emulator.uri(emulator.create_bucket())
        return Target(name=name, storage=open_storage(uri, settings=emulator.settings))

    cpu_used: dict[str, float] = {}

    def timed(targets: list[Target]) -> float:
        with cpu_seconds(emulators) as used:
            started = time.perf_counter()
            results = sync_artifact(artifact, targets)
            elapsed = time.perf_counter() - started
        cpu_used.clear()
        cpu_used.update(used)
        failed = [f"{r.target}: {r.error}" for r in results if not r.ok]
        if failed:
            raise SystemExit(f"sync failed: {failed}")
        return elapsed

    timed([fresh(name) for name in emulators])  # warm-up: imports the three SDKs, opens connections
    fanout, single, fanout_cpu = [], {name: [] for name in emulators}, {}
    for _ in range(rounds):
        fanout.append(timed([fresh(name) for name in emulators]))
        fanout_cpu = dict(cpu_used)
        for name in emulators:
            single[name].append(timed([fresh(name)]))
    single_median = {name: statistics.median(times) for name, times in single.items()}
    slowest = max(single_median, key=single_median.__getitem__)

    targets = [fresh(name) for name in emulators]
    sync_artifact(artifact, targets)
    resync = {r.target: r.requests for r in sync_artifact(artifact, targets)}

    changed, changed_bytes = change_one_small_file(artifact, work / "changed")
    uploaded = sum(r.bytes_uploaded for r in sync_artifact(changed, targets)) / len(targets)

    cpu_floor = sum(fanout_cpu.values()) / (os.cpu_count() or 1)
    figures: dict[str, float | int | str | dict] = {
        "artifact_bytes": BIG_BYTES + SMALL_FILES * SMALL_BYTES,
        "fanout_s": statistics.median(fanout),
        "single_cloud_s": single_median,
        "slowest_single_cloud": slowest,
        "fanout_over_slowest": statistics.median(fanout) / single_median[slowest],
        "fanout_cpu_s": fanout_cpu,
        "cpu_floor_s": cpu_floor,
        "fanout_over_machine_floor": statistics.median(fanout) / max(single_median[slowest], cpu_floor),
        "resync_requests": resync,
        "bytes_uploaded_over_changed": uploaded / changed_bytes,
    }
    rclone = rclone_seconds(artifact, emulators["aws"], work)
    if rclone is not None:
        figures["rclone_s3_s"] = rclone
        figures["ours_three_clouds_over_rclone_one"] = statistics.median(fanout) / rclone
        figures["ours_s3_over_rclone_s3"] = single_median["aws"] / rclone
    return figures


@contextlib.contextmanager
def cpu_seconds(emulators: dict):
    """CPU seconds (user + system) spent by this process and by each emulator inside the block."""
    import psutil

    procs = {name: psutil.Process(e.process.pid) for name, e in emulators.items()}

    def sample() -> dict[str, float]:
        own = os.times()
        times = {"client": own.user + own.system}
        for name, proc in procs.items():
            t = proc.cpu_times()
            times[name] = (
                t.user
                + t.system
                + sum(c.cpu_times().user + c.cpu_times().system for c in proc.children(True))
            )
        return times

    used: dict[str, float] = {}
    before = sample()
    yield used
    after = sample()
    used.update({name: round(after[name] - before[name], 2) for name in before})


def rclone_seconds(artifact: Path, moto, work: Path) -> float | None:
    if not shutil.which("rclone"):
        return None
    bucket = moto.create_bucket()
    conf = work / "rclone.conf"
    conf.write_text(
        "[moto]\ntype = s3\nprovider = Other\naccess_key_id = testing\nsecret_access_key = testing\n"
        f"endpoint = {moto.endpoint}\nforce_path_style = true\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    started = time.perf_counter()
    subprocess.run(
        ["rclone", "--config", str(conf), "sync", str(artifact), f"moto:{bucket}/models/bench/v0"],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - started


def report(figures: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(figures, indent=2))
        return
    mb = figures["artifact_bytes"] / 1e6
    print(f"artifact set: {mb:.1f} MB (one 50 MB file + {SMALL_FILES} small files)")
    for name, seconds in figures["single_cloud_s"].items():
        print(f"  cold sync to {name:5s} alone      {seconds:6.2f} s")
    print(f"  cold sync to all three at once {figures['fanout_s']:6.2f} s")
    ratio = figures["fanout_over_slowest"]
    print(
        f"fan-out ÷ slowest single cloud ({figures['slowest_single_cloud']})   {ratio:.2f}   (target <= 1.2)"
    )
    print(
        f"  CPU seconds during the fan-out: {figures['fanout_cpu_s']}; "
        f"on {os.cpu_count()} cores that is a floor of {figures['cpu_floor_s']:.2f} s"
    )
    print(f"fan-out ÷ max(slowest single cloud, CPU floor)   {figures['fanout_over_machine_floor']:.2f}")
    for name, requests in figures["resync_requests"].items():
        print(f"no-change re-sync, {name:5s}: {dict(requests)}   (target: no put, list <= 1)")
    print(
        f"bytes uploaded ÷ bytes changed        {figures['bytes_uploaded_over_changed']:.2f}   (target 1.0)"
    )
    if "rclone_s3_s" in figures:
        print(
            f"ours, three clouds ÷ rclone, S3 only  {figures['ours_three_clouds_over_rclone_one']:.2f}   "
            f"(target <= 1.0; rclone {figures['rclone_s3_s']:.2f} s)"
        )
        print(f"ours, S3 only ÷ rclone, S3 only       {figures['ours_s3_over_rclone_s3']:.2f}")
    else:
        print("rclone not installed (apt-get install rclone): comparison skipped")


if __name__ == "__main__":
    main()
