"""The endpoint's cold start: process start to the first ``/readyz`` 200, against a baseline command.

Starts ``python -m serving`` (the image's entry point) on a local artifact directory and polls
``/readyz`` every 2 ms; the figure is the time from just before the process is spawned to the first
200 (imports, settings, the model verified and its canary reproduced, the server listening). The
baseline command, given with ``--baseline``, is started the same way, in interleaved runs so a noisy
neighbour hits both alike; each figure is the median over runs.

Prints both medians and their ratio, ``python -m serving`` over the baseline (target <= 1.0: not
slower). Without ``--baseline`` the baseline is ``orchestrator serve`` from this checkout (which
execs ``python -m serving``: the ratio then shows what the extra exec costs).

    python benchmarks/cold_start.py [--model ARTIFACT_DIR] [--runs 15] [--json]
        [--baseline "/path/to/other/checkout/.venv/bin/orchestrator serve"]

Every variable the command reads is set from this process's environment plus MODEL_URI and PORT.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.0
POLL_S = 0.002  # finer than the differences measured (tens of ms), coarse enough not to steal a core
TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ready(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def cold_start(argv: list[str], model: str) -> float:
    """Seconds from spawning ``argv`` (serving ``model``) to its first /readyz 200; stops it."""
    port = free_port()
    env = {**os.environ, "MODEL_URI": model, "PORT": str(port), "HOST": "127.0.0.1"}
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not ready(port):
            if process.poll() is not None:
                raise RuntimeError(f"{shlex.join(argv)} exited with {process.returncode} before it was ready")
            if time.perf_counter() - started > TIMEOUT_S:
                raise TimeoutError(f"{shlex.join(argv)} not ready within {TIMEOUT_S:.0f} s")
            time.sleep(POLL_S)
        return time.perf_counter() - started
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="artifact directory (default: train digits into a temporary one)")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", help="the command to compare with (default: orchestrator serve, here)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if model is None:
            from orchestrator.training.pipeline import TrainOptions, train

            model = str(train(TrainOptions(dataset="digits", out=Path(scratch))).path)
        candidate = [sys.executable, "-m", "serving"]
        baseline = (
            shlex.split(args.baseline) if args.baseline else [sys.executable, "-m", "orchestrator", "serve"]
        )
        cold_start(candidate, model)  # warm the page cache for both before measuring
        cold_start(baseline, model)
        times: dict[str, list[float]] = {"candidate": [], "baseline": []}
        for _ in range(args.runs):
            times["candidate"].append(cold_start(candidate, model))
            times["baseline"].append(cold_start(baseline, model))

    new, old = statistics.median(times["candidate"]), statistics.median(times["baseline"])
    result = {
        "candidate": shlex.join(candidate),
        "baseline": shlex.join(baseline),
        "runs": args.runs,
        "candidate_median_ms": round(new * 1e3, 1),
        "baseline_median_ms": round(old * 1e3, 1),
        "ratio": round(new / old, 3),
        "target_ratio_at_most": TARGET_RATIO,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"cold start to /readyz 200, median of {args.runs} interleaved runs")
    print(f"  python -m serving : {result['candidate_median_ms']:7.1f} ms")
    print(f"  baseline          : {result['baseline_median_ms']:7.1f} ms   ({result['baseline']})")
    verdict = "ok" if new / old <= TARGET_RATIO else "SLOWER"
    print(f"  ratio             : {result['ratio']:.3f}  (target <= {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()
