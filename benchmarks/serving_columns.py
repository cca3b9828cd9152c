"""Serving rows as objects keyed by column (a ``columns`` model), against a numeric matrix of the
same table, measured in the same run.

Trains two logistic regressions on one synthetic customer table (400 rows): the mixed one on
``age``, ``region`` (text), ``plan tier`` (text), ``noise`` (a ``columns`` artifact: one ONNX
input per column, one-hot encoding in the graph), and the numeric one on the same four columns
with the two text columns replaced by integer codes (a ``matrix`` artifact). Each is served by one
endpoint worker (pinned to core 0) and driven by wrk (pinned to core 1) with 1,000-row batches,
in interleaved rounds (each figure the median over rounds):

- mixed:   ``{"instances": [{"age": 41.2, "region": "EU", ...}, ...]}``  rows/s
- numeric: ``{"instances": [[41.2, 1, 0, 0.3], ...]}``                    rows/s

Prints mixed ÷ numeric (no target yet: the figure the columns path starts from).

    python benchmarks/serving_columns.py [--seconds 4] [--rounds 3] [--json]

Needs wrk (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.serving import BATCH_CONNECTIONS, wrk  # noqa: E402
from orchestrator.demo.processes import start_endpoint  # noqa: E402

ROWS = 1000
HEADER = ["age", "region", "plan tier", "noise", "segment"]


def table(n: int, seed: int = 0) -> list[list[object]]:
    """Rows of a mixed table: numeric age (10 % blank), text region and plan tier, numeric noise,
    a label of four classes that the other columns predict."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows: list[list[object]] = []
    for _ in range(n):
        k = int(rng.integers(0, 4))
        rows.append(
            [
                None if rng.random() < 0.1 else round(float(rng.normal(30 + 10 * k, 4)), 2),
                str(rng.choice(["EU", "US", "AS"] if k != 1 else ["EU", "NA"])),
                ["basic", "pro", "team", "basic"][k] if rng.random() < 0.8 else "team",
                round(float(rng.normal()), 3),
                f"s{k}",
            ]
        )
    return rows


CODES = {"EU": 0, "US": 1, "AS": 2, "NA": 3, "basic": 0, "pro": 1, "team": 2}


def numeric(row: list[object]) -> list[object]:
    return [row[0], CODES[str(row[1])], CODES[str(row[2])], row[3], row[4]]


def write(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    from orchestrator.training.pipeline import TrainOptions, train

    rows = table(400)
    sample = table(ROWS, seed=1)
    mixed_body = json.dumps({"instances": [dict(zip(HEADER[:4], row[:4], strict=True)) for row in sample]})
    numeric_body = json.dumps({"instances": [[None, *numeric(row)[1:4]] for row in sample]})
    # The matrix endpoint refuses null (NaN is no JSON number): blanks are sent as a mean age.
    numeric_body = numeric_body.replace("null", "35.0")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {}
        for kind, data in (("mixed", rows), ("numeric", [numeric(r) for r in rows])):
            path = write(work / f"{kind}.csv", data)
            models[kind] = train(
                TrainOptions(dataset=str(path), target="segment", model="logreg", out=work / kind)
            ).path
        figures: dict[str, list[float]] = {"mixed": [], "numeric": []}
        bodies = {"mixed": mixed_body, "numeric": numeric_body}
        # Both served at once (only one driven at a time), rounds interleaved: a noisy neighbour
        # hits both alike.
        endpoints = {k: start_endpoint(str(m), cpu=0, log_path=work / f"{k}.log") for k, m in models.items()}
        try:
            urls = {k: f"{ep.wait_ready().url}/v1/predict" for k, ep in endpoints.items()}
            for kind, url in urls.items():
                wrk(url, 1, BATCH_CONNECTIONS, bodies[kind], work)  # warm-up
            for _ in range(args.rounds):
                for kind, url in urls.items():
                    figures[kind].append(ROWS * wrk(url, args.seconds, BATCH_CONNECTIONS, bodies[kind], work))
        finally:
            for ep in endpoints.values():
                ep.stop()

    result = {f"{k}_rows_per_s": statistics.median(v) for k, v in figures.items()}
    result["mixed_over_numeric"] = result["mixed_rows_per_s"] / result["numeric_rows_per_s"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"POST /v1/predict, 1,000 objects keyed by column  {result['mixed_rows_per_s']:10.0f} rows/s")
    print(f"POST /v1/predict, 1,000 rows of numbers          {result['numeric_rows_per_s']:10.0f} rows/s")
    print(f"mixed ÷ numeric rows/s                           {result['mixed_over_numeric']:10.2f}")


if __name__ == "__main__":
    main()
