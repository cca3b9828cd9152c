"""Three emulated clouds on loopback ports: storage emulators, buckets, Route 53, endpoints, config.

``LocalClouds`` owns every process the demo starts (moto for S3 and Route 53, gcp-storage-emulator,
Azurite, and one ``orchestrator serve`` per cloud) and stops them all in :meth:`LocalClouds.stop`,
which is safe to call at any point of a half-finished start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.storage import Storage, open_storage
from orchestrator.demo.emulators import (
    Emulator,
    MotoServer,
    scrubbed_environ,
    start_azurite,
    start_gcs,
    start_moto,
)
from orchestrator.demo.processes import Endpoint, free_port, start_endpoint
from orchestrator.publish.sync import Target

__all__ = ["CLOUDS", "DOMAIN", "RECORD", "LocalClouds", "emulator_environment"]

CLOUDS = ("aws", "gcp", "azure")
DOMAIN = "demo.example."
RECORD = f"model.{DOMAIN}"
# Informational, as in a real configuration (the packaged price table has one row per cloud).
REGIONS = {"aws": "us-east-1", "gcp": "us-central1", "azure": "eastus"}
# Each deployment carries less than the whole expected load, so the cheapest cloud alone cannot
# take everything and the router spreads traffic by cost (see ``routing.traffic`` below).
CAPACITY_RPS = {"aws": 30.0, "gcp": 30.0, "azure": 30.0}
# Endpoints look for a moved LATEST pointer this often: the hot swap is visible within a second.
RELOAD_INTERVAL_S = 0.5


@contextmanager
def emulator_environment() -> Iterator[None]:
    """While inside: no variable that could reach a real cloud account (fake AWS credentials,
    no profiles, no metadata service), so the demo can only ever talk to its emulators."""
    remove, setting = scrubbed_environ(os.environ)
    saved = dict(os.environ)
    for name in remove:
        os.environ.pop(name, None)
    os.environ.update(setting)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class LocalClouds:
    root: Path
    model: str = "digits"
    emulators: dict[str, Emulator] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    zone_id: str = ""
    # The public half of the demo's signing key: every endpoint serves only versions it verifies.
    signing_public_key: Path | None = None

    @property
    def moto(self) -> MotoServer:
        emulator = self.emulators["aws"]
        assert isinstance(emulator, MotoServer)
        return emulator

    # -- storage ---------------------------------------------------------------------------------
    def start_emulators(self) -> None:
        """Start the three storage emulators at once; moto also serves Route 53."""
        logs = self.root / "logs"
        starters: dict[str, Callable[[Path], Emulator]] = {
            "aws": start_moto,
            "gcp": start_gcs,
            "azure": start_azurite,
        }
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="emulator") as pool:
            futures = {cloud: pool.submit(start, logs) for cloud, start in starters.items()}
            errors = []
            for cloud, future in futures.items():
                try:
                    self.emulators[cloud] = future.result()
                except Exception as exc:  # report every emulator, then raise
                    errors.append(exc)
        if errors:
            raise errors[0]
        for cloud, emulator in self.emulators.items():
            self.buckets[cloud] = emulator.create_bucket(f"demo-models-{cloud}")
        self.zone_id = self.moto.create_zone(DOMAIN)

    def storage_uri(self, cloud: str) -> str:
        return self.emulators[cloud].uri(self.buckets[cloud])

    def storage(self, cloud: str) -> Storage:
        emulator = self.emulators[cloud]
        return open_storage(self.storage_uri(cloud), settings=_public(emulator.settings))

    def targets(self) -> list[Target]:
        return [Target(cloud, self.storage(cloud)) for cloud in CLOUDS]

    # -- endpoints -------------------------------------------------------------------------------
    def model_uri(self, cloud: str) -> str:
        return f"{self.storage_uri(cloud)}/models/{self.model}/LATEST"

    def start_endpoint(self, cloud: str) -> Endpoint:
        """``orchestrator serve`` following this cloud's LATEST pointer, reading its own bucket with
        the standard variables (AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST, the Azure connection
        string). A restart reuses the cloud's port, as a restarted service keeps its address."""
        old = self.endpoints.pop(cloud, None)
        if old is not None:
            old.stop()
        port = self.ports.setdefault(cloud, free_port())
        endpoint = start_endpoint(
            self.model_uri(cloud),
            port=port,
            name=f"{cloud} endpoint",
            log_path=self.root / "logs" / f"endpoint-{cloud}.log",
            extra_args=["--reload-interval", str(RELOAD_INTERVAL_S)],
            env={
                **self.emulators[cloud].env,
                "MODEL_CACHE_DIR": str(self.root / "cache" / cloud),
                **(
                    {"MODEL_SIGNING_PUBLIC_KEY": str(self.signing_public_key)}
                    if self.signing_public_key is not None
                    else {}
                ),
            },
        )
        self.endpoints[cloud] = endpoint
        return endpoint

    def start_endpoints(self) -> None:
        for cloud in CLOUDS:
            self.start_endpoint(cloud)
        for endpoint in self.endpoints.values():
            endpoint.wait_ready(timeout=60)

    def url(self, cloud: str) -> str:
        return f"http://127.0.0.1:{self.ports[cloud]}"

    # -- configuration ---------------------------------------------------------------------------
    def write_config(self, *, latency_slo_ms: float, requests_per_s: float) -> Path:
        """The orchestrator.yaml every command of the demo uses (and `--keep-running` prints)."""
        data: dict[str, Any] = {
            "model": {"name": self.model},
            "clouds": {
                cloud: {
                    "endpoint": self.url(cloud),
                    "storage": self.storage_uri(cloud),
                    "storage_settings": _public(self.emulators[cloud].settings),
                    "region": REGIONS[cloud],
                    "capacity_rps": CAPACITY_RPS[cloud],
                }
                for cloud in CLOUDS
            },
            # Seconds, not the production defaults' tens of seconds: the story fits in two minutes.
            "health": {
                "interval_s": 0.25,
                "timeout_s": 0.5,
                "unhealthy_threshold": 2,
                "healthy_threshold": 3,
                "jitter": 0.1,
                "startup_grace_s": 2.0,
                "hold_down_s": 3.0,
                "max_hold_down_s": 16.0,
                "rollout_grace_s": 30.0,
            },
            "routing": {
                "backend": ["route53", "file"],
                "route53": {
                    "hosted_zone_id": self.zone_id,
                    "record_name": RECORD,
                    "ttl": 1,
                    "endpoint_url": self.moto.endpoint,
                    "region": "us-east-1",
                },
                "file": {"path": str(self.root / "routing.json")},
                "latency_slo_ms": latency_slo_ms,
                "traffic": {"requests_per_s": requests_per_s},
            },
            "state": {"path": str(self.root / "state.db")},
        }
        path = self.root / "orchestrator.yaml"
        header = (
            "# Written by `orchestrator demo`: three emulated clouds on loopback ports.\n"
            "# Emulator credentials come from the environment the demo prints (never from this file).\n"
        )
        path.write_text(header + yaml.safe_dump(data, sort_keys=False))
        return path

    def environment(self) -> dict[str, str]:
        """What another shell needs to use the config while the demo keeps running."""
        env = {"ORCHESTRATOR_CONFIG": str(self.root / "orchestrator.yaml")}
        azure = self.emulators.get("azure")
        if azure is not None:
            env.update(azure.env)
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        if self.signing_public_key is not None:  # `verify` then checks signatures too
            env["MODEL_SIGNING_PUBLIC_KEY"] = str(self.signing_public_key)
        return env

    # -- teardown --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every endpoint, then every emulator; safe to call twice or after a partial start."""
        for endpoint in self.endpoints.values():
            endpoint.stop()
        for emulator in self.emulators.values():
            emulator.stop()


def _public(settings: dict[str, str]) -> dict[str, str]:
    """Storage settings without secrets (the Azure connection string comes from the environment)."""
    return {k: v for k, v in settings.items() if k != "connection_string"}
