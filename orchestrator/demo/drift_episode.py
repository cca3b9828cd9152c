"""The demo's drift episode: one cloud's clients start sending shifted images, and the monitoring
names the cloud and the pixels.

gcp's clients (a new camera, say) send every digit one pixel to the right, with the left column
blank: the same digits, which the model still answers, but inputs that no longer look like its
training data. Batch clients in each region send :data:`ROWS` rows in calls of :data:`CALL_ROWS`
straight to their cloud's endpoint: shifted ones to gcp, unshifted held-out rows to aws and azure.
Each endpoint counts them into its drift window (``GET /v1/model/drift``); the health watch shows
drift per cloud, and ``orchestrator drift report`` (the operator's command, run here as a
separate process) writes ``drift.md`` and its plots into the demo's report directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

__all__ = ["CALL_ROWS", "ROWS", "SHIFTED", "drift_report", "send_rows", "shift_right"]

# Over the drift section's default min_rows (500), so every cloud's window is judged.
ROWS = 600
# Rows per call: a batch client's size, small enough that the endpoint counts every row's features.
CALL_ROWS = 50
# The cloud whose clients send shifted images.
SHIFTED = "gcp"
SIDE = 8  # digits are 8 x 8 images, one feature per pixel, row by row


def shift_right(rows: Sequence[Sequence[float]]) -> list[list[float]]:
    """Each 8 x 8 digit moved one pixel to the right, its left column blank (0): shape kept, [N, 64]."""
    shifted = []
    for row in rows:
        pixels = list(row)
        out = [0.0] * len(pixels)
        for r in range(SIDE):
            for c in range(1, SIDE):
                out[r * SIDE + c] = pixels[r * SIDE + c - 1]
        shifted.append(out)
    return shifted


def send_rows(url: str, rows: Sequence[Sequence[float]], count: int) -> int:
    """POST ``count`` rows (cycling through ``rows``) to ``url``/v1/predict in calls of
    :data:`CALL_ROWS`; the number answered 200. Each call has a 10 s deadline."""
    answered = 0
    with httpx.Client(timeout=10.0) as client:
        for start in range(0, count, CALL_ROWS):
            batch = [list(rows[(start + i) % len(rows)]) for i in range(min(CALL_ROWS, count - start))]
            response = client.post(f"{url}/v1/predict", json={"instances": batch})
            answered += len(batch) if response.status_code == 200 else 0
    return answered


def drift_report(config_path: Path, out: Path, env: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """``orchestrator drift report --out OUT --json`` as an operator runs it: (exit code, its JSON).
    Exit 0 is no drift, 1 drift (docs/cli.md); RuntimeError for anything else."""
    done = subprocess.run(  # our own CLI, fixed arguments
        [sys.executable, "-m", "orchestrator", "drift", "report", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "ORCHESTRATOR_CONFIG": str(config_path)},
        timeout=120,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(
            f"`orchestrator drift report` exited {done.returncode}: {done.stderr.strip()[-800:]}"
        )
    data = json.loads(done.stdout)
    return done.returncode, data if isinstance(data, dict) else {}
