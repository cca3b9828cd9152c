"""Image size and container cold start: the endpoint image against a bare FastAPI image.

Both images are built from the same base (``python:3.11-slim-bookworm``: the official image, or on
these machines the debootstrap stand-in that ``scripts/base-image.sh`` makes). The bare one is
FastAPI + uvicorn answering ``/healthz`` and nothing else. Cold start is measured the same way for
both: from ``docker run`` (container creation included) to the first 200 from the readiness path
(ours: ``/readyz``, which needs the model loaded, verified and its canary reproduced; bare:
``/healthz``), polled every 10 ms, median of several runs. Printed: both sizes, both medians, and
the ratios (target: cold start ratio <= 1.5).

    DOCKER_HOST=... python benchmarks/image.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.demo.processes import free_port  # noqa: E402
from orchestrator.image import build  # noqa: E402

BARE_DOCKERFILE = """\
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
RUN python -m venv /opt/venv && \\
    /opt/venv/bin/pip install --no-cache-dir fastapi==0.165.0 "uvicorn[standard]==0.54.0"
COPY app.py /app/app.py
USER 10001:10001
ENTRYPOINT ["/opt/venv/bin/uvicorn", "--app-dir", "/app", "app:app", "--host", "127.0.0.1"]
"""
BARE_APP = """\
from fastapi import FastAPI
app = FastAPI()

@app.get("/healthz")
async def healthz():
    return {"status": "ok"}
"""


def cold_start(client, image: str, path: str, *, port: int, run_kwargs: dict) -> float:
    started = time.perf_counter()
    container = client.containers.run(image, detach=True, network_mode="host", **run_kwargs)
    try:
        deadline = started + 120
        with httpx.Client(timeout=0.5) as http:
            while time.perf_counter() < deadline:
                try:
                    if http.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
        raise SystemExit(f"{image} never answered {path}:\n{container.logs().decode()[-2000:]}")
    finally:
        container.remove(force=True)


def main() -> None:
    import docker

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "Dockerfile").write_text(BARE_DOCKERFILE)
        (work / "app.py").write_text(BARE_APP)
        bare, _ = client.images.build(path=str(work), tag="bare-fastapi:bench", network_mode="host", rm=True)
        ours = build("ml-endpoint:bench")

        from orchestrator.training.pipeline import TrainOptions, train

        model = train(TrainOptions(dataset="digits", out=work / "artifacts"))
        ours_times, bare_times = [], []
        for _ in range(args.runs):
            port = free_port()
            ours_times.append(
                cold_start(
                    client, ours.tag, "/readyz", port=port,
                    run_kwargs={
                        "environment": {"MODEL_URI": "/model", "PORT": str(port), "HOST": "127.0.0.1"},
                        "volumes": {str(model.path): {"bind": "/model", "mode": "ro"}},
                    },
                )
            )  # fmt: skip
            port = free_port()
            bare_times.append(
                cold_start(
                    client, bare.tags[0], "/healthz", port=port, run_kwargs={"command": ["--port", str(port)]}
                )
            )
    base = client.images.get("python:3.11-slim-bookworm").attrs["Size"]
    figures = {
        "ours_image_mb": ours.size_bytes / 1e6,
        "bare_image_mb": bare.attrs["Size"] / 1e6,
        "base_image_mb": base / 1e6,
        "ours_cold_start_s": statistics.median(ours_times),
        "bare_cold_start_s": statistics.median(bare_times),
    }
    figures["size_ratio"] = figures["ours_image_mb"] / figures["bare_image_mb"]
    figures["cold_start_ratio"] = figures["ours_cold_start_s"] / figures["bare_cold_start_s"]
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    f = figures
    print(
        f"image size: ours {f['ours_image_mb']:.0f} MB, bare FastAPI {f['bare_image_mb']:.0f} MB "
        f"(base {f['base_image_mb']:.0f} MB): ratio {f['size_ratio']:.2f}"
    )
    print(
        f"cold start (docker run → ready), median of {args.runs}: ours {f['ours_cold_start_s']:.2f} s, "
        f"bare {f['bare_cold_start_s']:.2f} s: ratio {f['cold_start_ratio']:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
