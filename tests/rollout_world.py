"""Three emulated clouds with real endpoints following a channel, for the rollout's tests and
benchmarks/rollout.py: each cloud's bucket on its emulator (moto, the GCS emulator, Azurite), an
`orchestrator serve` following ``models/iris/STABLE`` there (reloading every half second), and a
configuration with a SQLite state and the routing file. :class:`DriftFront` stands in front of an
endpoint to answer the drift route of issue 16's contract.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from orchestrator.control.config import load_config
from orchestrator.control.plane import ControlPlane
from orchestrator.control.wiring import open_plane
from orchestrator.core.artifact.layout import read_pointer
from orchestrator.core.storage import NO_WAIT_RETRY, open_storage
from orchestrator.demo.emulators import Emulator
from orchestrator.demo.processes import Endpoint, start_endpoint
from orchestrator.publish.channels import move_channel
from orchestrator.publish.sync import Target, sync_artifact
from orchestrator.training.pipeline import TrainOptions, TrainResult, train

CLOUDS = ("aws", "gcp", "azure")


def make_versions(out: Path) -> dict[str, Path]:
    """v1, v2 (another seed) and a copy of v2 renamed whose manifest's canary labels are rotated:
    the endpoint refuses it at load (its canary fails), and it verifies in every bucket."""
    v1: TrainResult = train(TrainOptions(dataset="iris", out=out / "v1"))
    v2: TrainResult = train(TrainOptions(dataset="iris", seed=1, out=out / "v2"))
    bad = out / "bad" / "bad-canary"
    shutil.copytree(v2.path, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["version"] = "bad-canary"
    labels = manifest["canary"]["labels"]
    classes = sorted(set(labels)) or ["x"]
    manifest["canary"]["labels"] = [classes[(classes.index(x) + 1) % len(classes)] for x in labels]
    (bad / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return {"v1": v1.path, "v2": v2.path, "bad-canary": bad}


@dataclass
class World:
    root: Path
    emulators: dict[str, Emulator]
    buckets: dict[str, str]
    names: dict[str, str]  # v1/v2/bad-canary -> version
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    planes: list[ControlPlane] = field(default_factory=list)
    fronts: dict[str, str] = field(default_factory=dict)  # cloud -> what the control plane calls

    def uri(self, cloud: str) -> str:
        return self.emulators[cloud].uri(self.buckets[cloud])

    def target(self, cloud: str) -> Target:
        em = self.emulators[cloud]
        return Target(cloud, open_storage(self.uri(cloud), settings=em.settings, retry=NO_WAIT_RETRY))

    def targets(self) -> list[Target]:
        return [self.target(c) for c in CLOUDS]

    def channel(self) -> dict[str, tuple[str, str]]:
        out = {}
        for t in self.targets():
            pointer, _ = read_pointer(t.storage, "iris", "STABLE")
            assert pointer is not None
            out[t.name] = (pointer.version, pointer.moved_by)
        return out

    def served(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for cloud, endpoint in self.endpoints.items():
            try:
                out[cloud] = httpx.get(f"{endpoint.url}/v1/model", timeout=2).json().get("version")
            except (httpx.HTTPError, ValueError):
                out[cloud] = None
        return out

    def wait_served(self, version: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(self.served().values()) == {version}:
                return
            time.sleep(0.2)
        raise AssertionError(f"not every endpoint serves {version}: {self.served()}")

    def config(self, **plan: Any) -> Path:
        data = {
            "model": {"name": "iris", "channel": "STABLE"},
            "clouds": {
                c: {
                    "endpoint": self.fronts.get(c, self.endpoints[c].url),
                    "storage": self.uri(c),
                    "storage_settings": {
                        k: v for k, v in self.emulators[c].settings.items() if k != "connection_string"
                    },
                    "capacity_rps": 100,
                }
                for c in CLOUDS
            },
            "health": {
                "interval_s": 0.25,
                "timeout_s": 1.0,
                "unhealthy_threshold": 2,
                "healthy_threshold": 2,
                "jitter": 0.0,
                "startup_grace_s": 0,
                "hold_down_s": 1.0,
                "max_hold_down_s": 8.0,
            },
            "routing": {"backend": "file", "file": {"path": str(self.root / "routing.json")}},
            "state": {"path": str(self.root / "state.db")},
        }
        path = self.root / "orchestrator.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def plane(self) -> ControlPlane:
        plane = open_plane(load_config(str(self.config())))
        self.planes.append(plane)
        return plane


class DriftFront:
    """A real HTTP server in front of an endpoint: everything is forwarded, except
    ``GET /v1/model/drift`` (issue 16's contract, which these endpoints do not serve yet), answered
    with balanced predicted-class counts, or with shifted ones once the endpoint serves ``shifted``:
    a version whose canary passes but whose predictions on traffic are not the old version's."""

    def __init__(self, upstream: str, shifted: str) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if method == "GET" and self.path == "/v1/model/drift":
                    served = httpx.get(f"{upstream}/v1/model", timeout=2).json().get("version")
                    counts = SHIFTED_COUNTS if served == shifted else BALANCED_COUNTS
                    data = json.dumps(
                        {
                            "model_name": "iris",
                            "model_version": served,
                            "window": {"rows": sum(counts.values()), "capacity_rows": 2000},
                            "features": {},
                            "prediction": {
                                "counts": counts,
                                "reference": None,
                                "psi": None,
                                "js_distance": None,
                            },
                            "confidence": {"mean": 0.9, "reference_mean": None},
                            "estimated_accuracy": None,
                        }
                    ).encode()
                    status, headers = 200, {"content-type": "application/json"}
                else:
                    headers_in = {
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                    }
                    answer = httpx.request(
                        method, f"{upstream}{self.path}", content=body, headers=headers_in, timeout=5
                    )
                    status, data = answer.status_code, answer.content
                    headers = {"content-type": answer.headers.get("content-type", "application/json")}
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # http.server's naming
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


BALANCED_COUNTS = {"setosa": 100, "versicolor": 100, "virginica": 100}
SHIFTED_COUNTS = {"setosa": 10, "versicolor": 20, "virginica": 270}


@contextlib.contextmanager
def running_world(root: Path, versions: dict[str, Path], emulators: dict[str, Emulator]) -> Iterator[World]:
    """A fresh bucket per emulator with every version published (LATEST moved by sync) and STABLE
    promoted to v1, and the three endpoints following STABLE, ready; stopped at the end."""
    root.mkdir(parents=True, exist_ok=True)
    w = World(root, emulators, {c: e.create_bucket() for c, e in emulators.items()}, {})
    for key, path in versions.items():
        assert all(r.ok for r in sync_artifact(path, w.targets())), key
        w.names[key] = json.loads((path / "manifest.json").read_text())["version"]
    move_channel(w.targets(), "iris", w.names["v1"], channel="STABLE", moved_by="promote")
    try:
        for cloud in CLOUDS:
            w.endpoints[cloud] = start_endpoint(
                f"{w.uri(cloud)}/models/iris/STABLE",
                name=cloud,
                log_path=root / f"{cloud}.log",
                extra_args=["--reload-interval", "0.5"],
                env={**emulators[cloud].env, "MODEL_CACHE_DIR": str(root / "cache" / cloud)},
            )
        for endpoint in w.endpoints.values():
            endpoint.wait_ready(timeout=60)
        yield w
    finally:
        for plane in w.planes:
            plane.close()
        for endpoint in w.endpoints.values():
            endpoint.stop()
