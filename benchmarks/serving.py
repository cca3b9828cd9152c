"""Serving throughput, as ratios against a baseline measured in the same run.

Starts one endpoint worker (pinned to core 0) serving the digits model and drives it with wrk
(pinned to core 1) at 32 concurrent connections:

- A: ``GET /healthz``                           requests/s (the baseline: the framework's floor)
- B: ``POST /v1/predict`` with one digits row   requests/s
- C: ``POST /v1/predict`` with 1,000-row batches rows/s
- E: ``POST /v2/models/digits/infer`` with one row (JSON)   requests/s
- F: the same with 1,000-row batches, JSON and binary (the binary tensor data extension both ways,
  tritonclient's default)                                  rows/s
- D: ``GET /healthz`` latency (p50, p99) while another client sends maximum-size bodies back to
  back: alternately a valid 10,000-row request (~13 MB) and a 30 MiB body just under the 32 MiB
  limit (more rows than allowed: parsed, then refused 413), against the same probe on an idle
  endpoint measured in the same run

- E: ``POST /v1/predict`` with one digits row and ``Authorization: Bearer``, against a second
  endpoint (same model, same core) that requires the token (``API_TOKEN``)
- G: B and C against a third endpoint (same model, same core) with drift monitoring off
  (``DRIFT_WINDOW_ROWS=0``): the first endpoint monitors, as every endpoint does by default

Prints B ÷ A (target >= 0.7), C ÷ B-in-rows/s (target >= 50), F binary ÷ F JSON (target > 1),
D's p99 (target < 50 ms) and E ÷ B (target >= 0.95: checking the token must not cost one-row
predictions) and B ÷ G-one-row and C ÷ G-1,000-rows (target >= 0.9: drift monitoring on ÷ off). The
throughput loads run in interleaved rounds and each figure is the median over rounds, so a noisy
neighbour hits all of them alike.

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
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.demo.processes import start_endpoint  # noqa: E402

CONNECTIONS = 32
BATCH_CONNECTIONS = 8  # 1,000-row bodies are ~275 kB: 8 in flight already saturate one worker
TARGET_PREDICT_OVER_HEALTH = 0.7
TARGET_BATCH_OVER_SINGLE = 50.0
TARGET_PROBE_P99_MS = 50.0
# The token check is a header scan, a SHA-256 and two constant-time compares (~2 us) against a
# one-row request's ~500 us: anything under 0.95 is a regression, not noise between rounds.
TARGET_AUTH_OVER_OPEN = 0.95
# Issue 16: drift monitoring (on by default) may cost at most a tenth of the serving rate.
TARGET_DRIFT_ON_OVER_OFF = 0.9
# A benchmark's own token (44 characters, as `openssl rand -base64 32` prints).
BENCH_TOKEN = "benchmark-token-0123456789abcdefghijklmnopqr"  # not a secret
# Probes are sent one after another, this far apart, so they measure waiting, not queueing.
PROBE_GAP_S = 0.005


def probe_latencies(url: str, seconds: float) -> list[float]:
    """Milliseconds of sequential ``GET /healthz`` requests for ``seconds``."""
    import httpx

    latencies = []
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            client.get(f"{url}/healthz").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1e3)
            time.sleep(PROBE_GAP_S)
    return latencies


def under_large_bodies(
    url: str, seconds: float, bodies: list[bytes]
) -> tuple[list[float], int, dict[int, int]]:
    """Probe latencies while a second client sends ``bodies`` back to back; also the number of
    bodies sent and their statuses."""
    import httpx

    stop = threading.Event()
    statuses: dict[int, int] = {}
    sent = 0

    def flood() -> None:
        nonlocal sent
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                body = bodies[sent % len(bodies)]
                status = client.post(
                    f"{url}/v1/predict", content=body, headers={"content-type": "application/json"}
                ).status_code
                statuses[status] = statuses.get(status, 0) + 1
                sent += 1

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    time.sleep(0.5)  # the first body is on its way
    try:
        latencies = probe_latencies(url, seconds)
    finally:
        stop.set()
        thread.join(timeout=120)
    return latencies, sent, statuses


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]


def wrk(
    url: str,
    seconds: float,
    connections: int,
    body: str | bytes | None,
    workdir: Path,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> float:
    """Requests/s that wrk measured; non-2xx answers make the run invalid. A body (JSON text, or the
    bytes of a binary tensor request) is read by the Lua script from a file: Lua strings are
    binary-safe. ``token`` is sent as ``Authorization: Bearer``."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    if token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        data = body.encode() if isinstance(body, str) else body
        key = abs(hash((data, tuple(sorted((headers or {}).items())))))
        body_file = workdir / f"body-{key}.bin"
        body_file.write_bytes(data)
        lines = ['wrk.method = "POST"']
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            lines.append(f'wrk.headers["{name}"] = "{value}"')
        lines.append(f'local f = assert(io.open("{body_file}", "rb")); wrk.body = f:read("*a"); f:close()')
        script = workdir / f"post-{key}.lua"
        script.write_text("\n".join(lines) + "\n")
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


def v2_json(x: Any, request_id: str | None = None) -> str:
    """An Open Inference Protocol infer body with ``x`` as JSON data."""
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}
    return json.dumps({"inputs": [tensor], **({"id": request_id} if request_id else {})})


def v2_binary(x: Any, request_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The same request with the binary tensor data extension both ways (tritonclient's default)."""
    raw = x.astype("<f8").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
            **({"id": request_id} if request_id else {}),
        }
    ).encode()
    return head + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }


def train_digits(out: Path) -> Path:
    from orchestrator.training.pipeline import TrainOptions, train

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
    batch_rows = rows[rng.integers(0, len(rows), 1000)]
    batch = json.dumps({"instances": batch_rows.tolist()})
    v2_one_row = v2_json(rows[:1])
    v2_batch_json = v2_json(batch_rows)
    v2_batch_binary, binary_headers = v2_binary(batch_rows)
    max_rows = json.dumps({"instances": rows[rng.integers(0, len(rows), 10_000)].tolist()}).encode()
    row = json.dumps(rows[0].tolist())
    huge = ('{"instances": [' + ", ".join([row] * (30 * 1024 * 1024 // (len(row) + 2))) + "]}").encode()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = args.model or train_digits(workdir / "artifacts")
        endpoint = start_endpoint(str(model), cpu=0, log_path=workdir / "serve.log")
        secured = start_endpoint(
            str(model),
            cpu=0,
            name="secured",
            log_path=workdir / "secured.log",
            env={"API_TOKEN": BENCH_TOKEN},
        )
        unmonitored = start_endpoint(
            str(model),
            cpu=0,
            name="unmonitored",
            log_path=workdir / "unmonitored.log",
            env={"DRIFT_WINDOW_ROWS": "0"},
        )
        try:
            endpoint.wait_ready()
            secured.wait_ready()
            unmonitored.wait_ready()
            import httpx

            # The binary tensor data extension, where the server has it (run against older code
            # for a before/after comparison, it is left out).
            binary = "binary_tensor_data" in httpx.get(f"{endpoint.url}/v2").json()["extensions"]
            infer = f"{endpoint.url}/v2/models/digits/infer"
            health, single, batched, authed = [], [], [], []
            single_off, batched_off = [], []
            v2_single, v2_batched, v2_binary_batched = [], [], []
            wrk(f"{endpoint.url}/healthz", 1, CONNECTIONS, None, workdir)  # warm-up
            wrk(f"{endpoint.url}/v1/predict", 1, CONNECTIONS, one_row, workdir)
            wrk(f"{secured.url}/v1/predict", 1, CONNECTIONS, one_row, workdir, token=BENCH_TOKEN)
            wrk(f"{unmonitored.url}/v1/predict", 1, CONNECTIONS, one_row, workdir)
            wrk(infer, 1, CONNECTIONS, v2_one_row, workdir)
            for round_ in range(args.rounds):
                health.append(wrk(f"{endpoint.url}/healthz", args.seconds, CONNECTIONS, None, workdir))
                # B and E alternate which goes first, so that neither always follows the same load.
                pair = [
                    (single, endpoint.url, None),
                    (authed, secured.url, BENCH_TOKEN),
                    (single_off, unmonitored.url, None),
                ]
                for figures_, url, token in pair if round_ % 2 == 0 else pair[::-1]:
                    figures_.append(
                        wrk(f"{url}/v1/predict", args.seconds, CONNECTIONS, one_row, workdir, token=token)
                    )
                v2_single.append(wrk(infer, args.seconds, CONNECTIONS, v2_one_row, workdir))
                batches = [(batched, endpoint.url), (batched_off, unmonitored.url)]
                for figures_, url in batches if round_ % 2 == 0 else batches[::-1]:
                    figures_.append(
                        1000 * wrk(f"{url}/v1/predict", args.seconds, BATCH_CONNECTIONS, batch, workdir)
                    )
                v2_batched.append(1000 * wrk(infer, args.seconds, BATCH_CONNECTIONS, v2_batch_json, workdir))
                if binary:
                    v2_binary_batched.append(
                        1000
                        * wrk(
                            infer, args.seconds, BATCH_CONNECTIONS, v2_batch_binary, workdir, binary_headers
                        )
                    )
            idle = probe_latencies(endpoint.url, args.seconds)
            loaded, sent, statuses = under_large_bodies(endpoint.url, args.seconds * 2, [max_rows, huge])
        finally:
            endpoint.stop()
            secured.stop()
            unmonitored.stop()

    figures = {
        "healthz_rps": statistics.median(health),
        "predict_1row_rps": statistics.median(single),
        "predict_1000row_rows_per_s": statistics.median(batched),
        "predict_1row_bearer_rps": statistics.median(authed),
    }
    figures["v2_infer_1row_rps"] = statistics.median(v2_single)
    figures["v2_infer_1000row_json_rows_per_s"] = statistics.median(v2_batched)
    if v2_binary_batched:
        figures["v2_infer_1000row_binary_rows_per_s"] = statistics.median(v2_binary_batched)
        figures["v2_binary_over_json"] = (
            figures["v2_infer_1000row_binary_rows_per_s"] / figures["v2_infer_1000row_json_rows_per_s"]
        )
    figures["bearer_over_open"] = figures["predict_1row_bearer_rps"] / figures["predict_1row_rps"]
    figures["drift_on_over_off_1row"] = figures["predict_1row_rps"] / statistics.median(single_off)
    figures["drift_on_over_off_1000rows"] = figures["predict_1000row_rows_per_s"] / statistics.median(
        batched_off
    )
    figures["predict_over_healthz"] = figures["predict_1row_rps"] / figures["healthz_rps"]
    figures["batch_rows_over_single_rows"] = (
        figures["predict_1000row_rows_per_s"] / figures["predict_1row_rps"]
    )
    figures["healthz_idle_p50_ms"] = p(idle, 50)
    figures["healthz_idle_p99_ms"] = p(idle, 99)
    figures["healthz_under_max_bodies_p50_ms"] = p(loaded, 50)
    figures["healthz_under_max_bodies_p99_ms"] = p(loaded, 99)
    figures["healthz_under_max_bodies_max_ms"] = max(loaded)
    figures["max_bodies_sent"] = sent
    figures["max_bodies_statuses"] = {str(k): v for k, v in sorted(statuses.items())}
    figures["max_body_bytes"] = [len(max_rows), len(huge)]
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"GET /healthz                  {figures['healthz_rps']:10.0f} req/s   "
        f"(baseline, {CONNECTIONS} connections)"
    )
    print(f"POST /v1/predict, 1 row       {figures['predict_1row_rps']:10.0f} req/s")
    print(f"POST /v1/predict, 1,000 rows  {figures['predict_1000row_rows_per_s']:10.0f} rows/s")
    print(f"V2 infer, 1 row (JSON)        {figures['v2_infer_1row_rps']:10.0f} req/s")
    print(f"V2 infer, 1,000 rows, JSON    {figures['v2_infer_1000row_json_rows_per_s']:10.0f} rows/s")
    if "v2_binary_over_json" in figures:
        print(f"V2 infer, 1,000 rows, binary  {figures['v2_infer_1000row_binary_rows_per_s']:10.0f} rows/s")
        ok = figures["v2_binary_over_json"] > 1
        print(
            f"V2 1,000 rows binary ÷ JSON       {figures['v2_binary_over_json']:6.2f}   "
            f"(target > 1: {'met' if ok else 'MISSED'})"
        )
    print(f"POST /v1/predict, 1 row, token {figures['predict_1row_bearer_rps']:9.0f} req/s   (API_TOKEN set)")
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
    ok4 = figures["bearer_over_open"] >= TARGET_AUTH_OVER_OPEN
    print(
        f"one-row predict, token ÷ open     {figures['bearer_over_open']:6.2f}   "
        f"(target >= {TARGET_AUTH_OVER_OPEN}: {'met' if ok4 else 'MISSED'})"
    )
    for key, what in (("drift_on_over_off_1row", "one-row"), ("drift_on_over_off_1000rows", "1,000-row")):
        ok = figures[key] >= TARGET_DRIFT_ON_OVER_OFF
        print(
            f"{what + ' predict, drift on ÷ off':33} {figures[key]:6.2f}   "
            f"(target >= {TARGET_DRIFT_ON_OVER_OFF}: {'met' if ok else 'MISSED'})"
        )
    ok3 = figures["healthz_under_max_bodies_p99_ms"] < TARGET_PROBE_P99_MS
    mb = [f"{n / 2**20:.1f} MiB" for n in figures["max_body_bytes"]]
    print(
        f"GET /healthz idle                 p50 {figures['healthz_idle_p50_ms']:6.2f} ms   "
        f"p99 {figures['healthz_idle_p99_ms']:6.2f} ms"
    )
    print(
        f"GET /healthz under max bodies     p50 {figures['healthz_under_max_bodies_p50_ms']:6.2f} ms   "
        f"p99 {figures['healthz_under_max_bodies_p99_ms']:6.2f} ms   "
        f"max {figures['healthz_under_max_bodies_max_ms']:.1f} ms   "
        f"(target p99 < {TARGET_PROBE_P99_MS:.0f} ms: {'met' if ok3 else 'MISSED'})"
    )
    print(
        f"  bodies of {' and '.join(mb)} sent back to back: {figures['max_bodies_sent']}, "
        f"answers {figures['max_bodies_statuses']}"
    )


if __name__ == "__main__":
    main()
