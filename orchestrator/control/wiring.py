"""Configuration → the parts the commands run on: the state store, the routing backends, the
buckets, the prober, and the control plane assembled from them (:func:`open_plane`).

The plane (:class:`~orchestrator.control.plane.ControlPlane`) opens nothing itself: what it talks
to is handed to it, so a test or a program can hand it other parts (a slow backend, a store in a
fake bucket). The publishing commands' buckets (:func:`resolve_targets`: clouds named in
``orchestrator.yaml``, or URIs given directly) come from here too: the configuration is the
control plane's, and publishing itself (:mod:`orchestrator.publish`) does not read it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import httpx

from orchestrator.control.config import Config
from orchestrator.control.health.prober import BUCKET_RETRY, BUCKET_SETTINGS, Prober
from orchestrator.control.plane import ControlPlane
from orchestrator.control.routing.backends import RoutingBackend, open_backend
from orchestrator.control.routing.pricing import CostBreakdown, Load, cost_per_request, load_prices
from orchestrator.control.store import StateStore
from orchestrator.control.vantage.coordinator import Coordinator
from orchestrator.core.errors import ConfigError
from orchestrator.core.storage import Storage, open_storage
from orchestrator.publish.sync import Target

__all__ = [
    "cost_table",
    "open_backends",
    "open_buckets",
    "open_plane",
    "open_prober",
    "open_store",
    "open_targets",
    "probe_buckets",
]


def open_store(config: Config) -> StateStore:
    """The state store at ``state.path`` (a SQLite file or an object-store URI), with its settings."""
    return StateStore.open(config.state.path, settings=config.state.settings or None)


def open_targets(config: Config) -> dict[str, Target]:
    """Every configured cloud's bucket (cloud -> Target); ConfigError naming a cloud without one."""
    out: dict[str, Target] = {}
    for name, cloud in config.clouds.items():
        if cloud.storage is None:
            raise ConfigError(f"{config.source or 'configuration'}: clouds.{name}.storage is missing")
        out[name] = Target(name, open_storage(cloud.storage, settings=cloud.storage_settings))
    return out


def open_backends(config: Config) -> list[RoutingBackend]:
    """The configured routing backends, in order; each is reconciled on its own."""
    routing = config.routing
    backends = []
    for kind in routing.backends:
        if kind == "route53" and routing.route53 is not None:
            backends.append(open_backend("route53", routing.route53.backend_settings()))
        else:
            backends.append(open_backend("file", {"path": str(routing.file.path)}))
    return backends


def open_buckets(config: Config) -> dict[str, Storage]:
    """Every configured cloud's bucket, opened with its settings (cloud -> Storage)."""
    return {
        name: open_storage(cloud.storage, settings=cloud.storage_settings)
        for name, cloud in config.clouds.items()
        if cloud.storage
    }


def probe_buckets(config: Config) -> dict[str, Storage]:
    """The buckets as the prober reads them: each cloud's settings with timeouts capped at
    :data:`~orchestrator.control.health.prober.BUCKET_SETTINGS` and the short
    :data:`~orchestrator.control.health.prober.BUCKET_RETRY` (cloud -> Storage)."""
    buckets: dict[str, Storage] = {}
    for name, cloud in config.clouds.items():
        if cloud.storage:
            settings = dict(cloud.storage_settings)
            for key, cap in BUCKET_SETTINGS.items():
                settings[key] = str(min(float(settings.get(key, cap)), cap))
            buckets[name] = open_storage(cloud.storage, settings=settings, retry=BUCKET_RETRY)
    return buckets


def open_prober(
    config: Config,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> Prober:
    """The prober of ``config``'s endpoints; it opens :func:`probe_buckets` on its first read."""
    return Prober(config, buckets=lambda: probe_buckets(config), transport=transport, clock=clock)


def cost_table(config: Config) -> dict[str, CostBreakdown]:
    """Each configured cloud's expected cost per request (cloud -> CostBreakdown), from the packaged
    prices with the configuration's overrides and ``routing.traffic`` (:mod:`.routing.pricing`)."""
    prices = load_prices({name: cloud.price for name, cloud in config.clouds.items() if cloud.price})
    t = config.routing.traffic
    load = Load(t.requests_per_s, t.request_bytes, t.response_bytes, t.cpu_ms_per_request / 1e3)
    return {
        name: cost_per_request(
            name, prices, load, cloud.size.vcpu, cloud.size.memory_gib, cloud.size.concurrency
        )
        for name, cloud in config.clouds.items()
    }


def open_plane(
    config: Config,
    *,
    store: StateStore | None = None,
    backends: Sequence[RoutingBackend] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> ControlPlane:
    """The control plane over ``config``: its state store (:func:`open_store` unless given), its
    routing backends (:func:`open_backends` unless given), its prober (over ``transport``, an
    httpx transport for tests) and its cost table. ``clock``, ``sleep``, ``monotonic`` and ``rng``
    as :class:`~orchestrator.control.plane.ControlPlane` takes them. What was opened here is
    closed again if a later part fails to open; the plane closes everything it was given."""
    opened: list[StateStore | RoutingBackend | Prober | Coordinator] = []
    try:
        if store is None:
            store = open_store(config)
            opened.append(store)
        if backends is None:
            backends = open_backends(config)
            opened.extend(backends)
        costs = cost_table(config)
        prober = open_prober(config, transport=transport, clock=clock)
        opened.append(prober)
        vantage = Coordinator(config.vantage, clock=clock) if config.vantage is not None else None
        if vantage is not None:
            opened.append(vantage)
        return ControlPlane(
            config,
            store=store,
            backends=backends,
            prober=prober,
            costs=costs,
            clock=clock,
            sleep=sleep,
            monotonic=monotonic,
            rng=rng,
            vantage=vantage,
        )
    except BaseException:
        for part in reversed(opened):
            part.close()
        raise
