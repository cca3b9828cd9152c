"""Serving throughput, as ratios against a baseline measured in the same run.

Starts one endpoint worker (pinned to core 0) serving the digits model and drives it with wrk
(pinned to core 1) at 32 concurrent connections:

- A: ``GET /healthz``                           requests/s (the baseline: the framework's floor)
- B: ``POST /v1/predict`` with one digits row   requests/s
- C: ``POST /v1/predict`` with 1,000-row batches rows/s

Prints B ÷ A (target >= 0.7) and C ÷ B-in-rows/s (target >= 50). The three loads run in interleaved
rounds and each figure is the median over rounds, so a noisy neighbour hits all of them alike.

    python benchmarks/serving.py [--model ARTIFACT_DIR] [--seconds 4] [--rounds 3] [--json]

Needs wrk (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.processes import start_endpoint  # noqa: E402

CONNECTIONS = 32
BATCH_CONNECTIONS = 8  # 1,000-row bodies are ~275 kB: 8 in flight already saturate one worker
TARGET_PREDICT_OVER_HEALTH = 0.7
TARGET_BATCH_OVER_SINGLE = 50.0


def wrk(url: str, seconds: float, connections: int, body: str | None, workdir: Path) -> float:
    """Requests/s that wrk measured; non-2xx answers make the run invalid."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if body is not None:
        script = workdir / f"post-{abs(hash(body))}.lua"
        # A long bracket of level 3 cannot occur in JSON, which is full of "]]".
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [===[{body}]===]\n"
        )
        argv += ["-s", str(script)]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", "1", *argv]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw error responses from {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"could not read wrk output:\n{out}")
    return float(match.group(1))


def train_digits(out: Path) -> Path:
    from serving.train import TrainOptions, train

    return train(TrainOptions(dataset="digits", out=out)).path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="artifact directory (default: train digits)")
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    import numpy as np
    from sklearn.datasets import load_digits

    rows = load_digits().data
    rng = np.random.default_rng(0)
    one_row = json.dumps({"instances": rows[:1].tolist()})
    batch = json.dumps({"instances": rows[rng.integers(0, len(rows), 1000)].tolist()})

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = args.model or train_digits(workdir / "artifacts")
        endpoint = start_endpoint(str(model), cpu=0, log_path=workdir / "serve.log")
        try:
            endpoint.wait_ready()
            health, single, batched = [], [], []
            wrk(f"{endpoint.url}/healthz", 1, CONNECTIONS, None, workdir)  # warm-up
            wrk(f"{endpoint.url}/v1/predict", 1, CONNECTIONS, one_row, workdir)
            for _ in range(args.rounds):
                health.append(wrk(f"{endpoint.url}/healthz", args.seconds, CONNECTIONS, None, workdir))
                single.append(wrk(f"{endpoint.url}/v1/predict", args.seconds, CONNECTIONS, one_row, workdir))
                batched.append(
                    1000 * wrk(f"{endpoint.url}/v1/predict", args.seconds, BATCH_CONNECTIONS, batch, workdir)
                )
        finally:
            endpoint.stop()

    figures = {
        "healthz_rps": statistics.median(health),
        "predict_1row_rps": statistics.median(single),
        "predict_1000row_rows_per_s": statistics.median(batched),
    }
    figures["predict_over_healthz"] = figures["predict_1row_rps"] / figures["healthz_rps"]
    figures["batch_rows_over_single_rows"] = (
        figures["predict_1000row_rows_per_s"] / figures["predict_1row_rps"]
    )
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"GET /healthz                  {figures['healthz_rps']:10.0f} req/s   "
        f"(baseline, {CONNECTIONS} connections)"
    )
    print(f"POST /v1/predict, 1 row       {figures['predict_1row_rps']:10.0f} req/s")
    print(f"POST /v1/predict, 1,000 rows  {figures['predict_1000row_rows_per_s']:10.0f} rows/s")
    ok1 = figures["predict_over_healthz"] >= TARGET_PREDICT_OVER_HEALTH
    ok2 = figures["batch_rows_over_single_rows"] >= TARGET_BATCH_OVER_SINGLE
    print(
        f"one-row predict ÷ healthz         {figures['predict_over_healthz']:6.2f}   "
        f"(target >= {TARGET_PREDICT_OVER_HEALTH}: {'met' if ok1 else 'MISSED'})"
    )
    print(
        f"1,000-row rows/s ÷ one-row rows/s {figures['batch_rows_over_single_rows']:6.1f}   "
        f"(target >= {TARGET_BATCH_OVER_SINGLE:.0f}: {'met' if ok2 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
