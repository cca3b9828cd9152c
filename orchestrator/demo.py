"""The local demo: the whole story on one machine, with nothing but loopback ports.

Today it trains the digits model, starts one endpoint on it, sends it real predictions of held-out
rows and prints what came back, then shuts everything down (also on Ctrl-C: every process is
started through :mod:`orchestrator.processes` and stopped in ``finally``).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from orchestrator.processes import Endpoint, start_endpoint

__all__ = ["DemoResult", "run_demo"]

# Rows sent one request at a time, then all together as one batch: enough to show both paths.
SINGLE_REQUESTS = 8


@dataclass
class DemoResult:
    artifact: str = ""
    model: str = ""
    version: str = ""
    test_f1_macro: float = 0.0
    endpoint: str = ""
    requests: int = 0
    errors: int = 0
    batch_rows: int = 0
    batch_accuracy: float = 0.0
    single: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


def run_demo(*, workdir: Path | None = None, console: Console | None = None) -> DemoResult:
    console = console or Console(stderr=True)
    result = DemoResult()
    with tempfile.TemporaryDirectory(prefix="orchestrator-demo-") as tmp:
        root = workdir or Path(tmp)
        artifact, rows, truth = _train(root, console, result)
        endpoint: Endpoint | None = None
        try:
            started = time.monotonic()
            with console.status("starting the endpoint (verifying every file against the manifest)"):
                endpoint = start_endpoint(str(artifact), log_path=root / "endpoint.log").wait_ready()
            result.timings_s["endpoint_ready"] = round(time.monotonic() - started, 2)
            result.endpoint = endpoint.url
            console.print(
                f"[green]✓[/] endpoint ready at {endpoint.url} in {result.timings_s['endpoint_ready']} s"
            )
            _predict(endpoint, rows, truth, console, result)
        finally:
            if endpoint is not None:
                with console.status("shutting down"):
                    endpoint.stop()
                console.print("[green]✓[/] endpoint stopped")
    return result


def _train(root: Path, console: Console, result: DemoResult) -> tuple[Path, list[list[float]], list[str]]:
    from sklearn.datasets import load_digits

    from serving.train import TrainOptions, train

    started = time.monotonic()
    with console.status("training the digits classifier (grid search over C, 5-fold CV)"):
        trained = train(TrainOptions(dataset="digits", out=root / "artifacts"))
    result.timings_s["train"] = round(time.monotonic() - started, 2)
    manifest = trained.manifest
    result.artifact, result.model, result.version = str(trained.path), manifest.name, manifest.version
    result.test_f1_macro = round(float(manifest.metrics["f1_macro"]), 4)
    console.print(
        f"[green]✓[/] trained {manifest.name} version {manifest.version} in {result.timings_s['train']} s: "
        f"test macro-F1 {result.test_f1_macro}, accuracy {manifest.metrics['accuracy']:.4f}, "
        f"kappa {manifest.metrics['cohen_kappa']:.4f}"
    )
    digits = load_digits()
    test_rows = manifest.split["test_indices"]
    return (
        trained.path,
        [digits.data[i].tolist() for i in test_rows],
        [manifest.classes[int(digits.target[i])] for i in test_rows],
    )


def _predict(
    endpoint: Endpoint, rows: list[list[float]], truth: list[str], console: Console, result: DemoResult
) -> None:
    table = Table(title=f"{SINGLE_REQUESTS} held-out digits, one request each")
    for column in ("row", "true", "predicted", "confidence", "latency"):
        table.add_column(column, justify="right")
    with httpx.Client(base_url=endpoint.url, timeout=10) as client:
        for i in range(SINGLE_REQUESTS):
            started = time.perf_counter()
            response = client.post("/v1/predict", json={"instances": [rows[i]]})
            latency_ms = (time.perf_counter() - started) * 1e3
            result.requests += 1
            if response.status_code != 200:
                result.errors += 1
                continue
            body = response.json()
            label, confidence = body["predictions"][0], max(body["probabilities"][0])
            result.single.append({"true": truth[i], "predicted": label, "confidence": round(confidence, 4)})
            mark = "[green]" if label == truth[i] else "[red]"
            table.add_row(str(i), truth[i], f"{mark}{label}[/]", f"{confidence:.3f}", f"{latency_ms:.1f} ms")
        console.print(table)

        started = time.perf_counter()
        response = client.post("/v1/predict", json={"instances": rows})
        result.timings_s["batch"] = round(time.perf_counter() - started, 4)
        result.requests += 1
        response.raise_for_status()
        predicted = response.json()["predictions"]
        result.batch_rows = len(rows)
        correct = sum(p == t for p, t in zip(predicted, truth, strict=True))
        result.batch_accuracy = round(correct / len(rows), 4)
        batch_ms = result.timings_s["batch"] * 1e3
        console.print(
            f"[green]✓[/] one batch of {len(rows)} held-out rows in {batch_ms:.0f} ms: "
            f"accuracy {result.batch_accuracy:.4f} (manifest: macro-F1 {result.test_f1_macro})"
        )
