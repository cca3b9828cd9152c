"""Expected cost per request on each cloud: the packaged price table and the cost model.

This module owns ``orchestrator/control/routing/prices.json`` (reading it, and overriding its figures from the
configuration's ``clouds.<cloud>.price``) and the model that turns prices, an instance size and a
traffic profile into USD per request. The router (:mod:`orchestrator.control.routing`) takes the totals as
given; nothing here decides anything.

    prices = load_prices({"gcp": {"egress_usd_per_gib": 0.085}})    # Standard Tier egress
    cost = cost_per_request("gcp", prices, Load(50, 600, 400, 0.0003), 1.0, 2.0, 80)
    cost.total, cost.per_million()          # USD per request; the breakdown per million requests

The model, in USD per request::

    request_fee = request_million_usd / 1e6
    egress      = response_bytes * egress price per byte          (GB = 10**9 bytes, GiB = 2**30)
    compute     = billed_instance_s * (vcpu * vcpu_second_usd + memory_gib * gib_second_usd)

Request bytes are inbound, which all three clouds carry free, so they cost nothing; responses go
to clients on the internet at the first egress tier. Free tiers are ignored.

``billed_instance_s`` is the instance time one request adds to the bill. A one-row prediction does
no I/O, so a request is in flight for its CPU time on one core: ``s = cpu_s / min(vcpu, 1)``. One
instance then completes at most ``r = min(vcpu / cpu_s, concurrency / s)`` requests per second
(CPU-bound, or concurrency-bound when concurrency is below the vCPU count).

- ``task`` billing (Fargate): tasks run, and are billed, whether or not requests arrive, so their
  cost is fixed and routing does not change it. What routing one more request there adds is the
  task time its CPU uses: ``1 / r`` (as if tasks were scaled with load at full CPU; a fleet scaled
  to a 50-70 % CPU target pays 1.4-2 times that, still far below a request fee). The one-minute
  minimum applies per task start, which a long-running service rarely pays.
- ``in_flight`` billing (Cloud Run request-based, Container Apps consumption): an instance is
  billed while at least one request is in flight, in slots of ``g`` seconds (Cloud Run rounds up
  to 100 ms; Container Apps bills per second). Traffic arrives as a Poisson stream and fills one
  instance before another starts, so an instance sees ``a = min(requests_per_s, r)`` requests per
  second. A slot is billed if some request is in flight during it, that is if one arrived in the
  ``g + s`` seconds before the slot ends: probability ``1 - exp(-a (g + s))``, which is also the
  billed seconds per second. Per request: ``(1 - exp(-a (g + s))) / a``, and never less than
  ``1 / r`` (a full instance is billed all the time). Sparse traffic pays a whole slot per request
  (``g + s``); dense traffic shares one continuously billed instance (``1 / a``).

So the rounding makes compute depend on the rate. Worked example, the digits one-row request
(0.3 ms CPU, 600 bytes in, 400 bytes out) on 1 vCPU, 2 GiB, concurrency 80, USD per million::

                       compute   request fee   egress    total
    1000 requests/s
      aws (Fargate)     0.0041      0          0.0360    0.0401   0.3 ms of a task
      gcp (Cloud Run)   0.0290      0.40       0.0447    0.4737   1.0 ms: the instance is always billed
      azure (ACA)       0.0300      0.40       0.0348    0.4648
    50 requests/s
      gcp (Cloud Run)   0.5762      0.40       0.0447    1.0209   (1 - e^-5.015) / 50 = 19.87 ms
      azure (ACA)       0.6000      0.40       0.0348    1.0348   (1 - e^-50.015) / 50 = 20.00 ms

Check a figure: Cloud Run at 1000 requests/s bills 1 instance-second per second, 1 ms per request,
at 1 * 0.000024 + 2 * 0.0000025 = 0.000029 USD per second: 0.029 USD per million; 400 bytes at
0.12 USD per GiB is 400 / 2**30 * 0.12 * 1e6 = 0.0447. Where an instance is busy, the request fee
and egress dominate compute by an order of magnitude, and a model that priced only vCPU time would
rank Cloud Run and Container Apps as cheap as Fargate; where it is nearly idle (tens of requests
per second), the billed slots dominate instead. The model prices one cloud at the rate it is given,
while its cost per request falls as its share grows: callers price each cloud at the expected
total rate, which favours request-billed clouds slightly when traffic is split.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from importlib import resources
from typing import Any, Literal, cast

from orchestrator.core.errors import ConfigError

__all__ = [
    "PRICE_FIELDS",
    "Billing",
    "CloudPrices",
    "CostBreakdown",
    "Load",
    "PriceTable",
    "Provenance",
    "billed_instance_seconds",
    "cost_per_request",
    "load_prices",
    "parse_prices",
]

Billing = Literal["task", "in_flight"]
EgressUnit = Literal["GB", "GiB"]

SCHEMA = 1
_BILLINGS: tuple[Billing, ...] = ("task", "in_flight")
# Internet egress is published per GB (10**9 bytes: AWS, Azure) or per GiB (2**30 bytes: Google);
# the field name says which, so an override cannot be read in the wrong unit.
_EGRESS_FIELDS: Mapping[str, EgressUnit] = {"egress_usd_per_gb": "GB", "egress_usd_per_gib": "GiB"}
_BYTES_PER: Mapping[EgressUnit, int] = {"GB": 10**9, "GiB": 2**30}
_NUMBER_FIELDS = (
    "vcpu_second_usd",
    "gib_second_usd",
    "request_million_usd",
    *_EGRESS_FIELDS,
    "billing_granularity_s",
)
# What `clouds.<cloud>.price` may set: the price file's field names, nothing else.
PRICE_FIELDS: tuple[str, ...] = ("billing", *_NUMBER_FIELDS)
_RESOURCE = "orchestrator/control/routing/prices.json"


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where one figure comes from: a vendor page and the date it was read, or the configuration."""

    source: str
    as_of: str | None  # ISO date; None for a figure set by configuration


@dataclass(frozen=True, slots=True)
class CloudPrices:
    """One cloud's figures, in the units their names say; ``provenance`` maps each field to its source."""

    cloud: str
    service: str
    billing: Billing
    vcpu_second_usd: float
    gib_second_usd: float
    request_million_usd: float
    egress_usd: float  # per egress_unit of internet egress
    egress_unit: EgressUnit
    billing_granularity_s: float
    provenance: Mapping[str, Provenance] = field(default_factory=dict)

    @property
    def egress_field(self) -> str:
        return f"egress_usd_per_{self.egress_unit.lower()}"

    @property
    def egress_usd_per_byte(self) -> float:
        return self.egress_usd / _BYTES_PER[self.egress_unit]


@dataclass(frozen=True, slots=True)
class PriceTable:
    """The packaged prices (with any overrides applied), tagged with the data's ``version``."""

    version: str
    clouds: Mapping[str, CloudPrices]

    def __getitem__(self, cloud: str) -> CloudPrices:
        if cloud not in self.clouds:
            raise ConfigError(f"no prices for cloud {cloud!r} (priced: {', '.join(self.clouds)})")
        return self.clouds[cloud]


@dataclass(frozen=True, slots=True)
class Load:
    """The expected load on a cloud: its request rate, mean bytes each way, and CPU per request."""

    requests_per_s: float
    request_bytes: float
    response_bytes: float
    cpu_seconds_per_request: float

    def __post_init__(self) -> None:
        for name in ("requests_per_s", "request_bytes", "response_bytes", "cpu_seconds_per_request"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"Load.{name} must be a finite number >= 0, not {value!r}")


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Expected USD per request on one cloud, by line item (see the module docstring for the model).

    ``billed_instance_s`` is the instance time charged per request, so ``compute`` can be checked:
    ``billed_instance_s * (vcpu * vcpu_second_usd + memory_gib * gib_second_usd)``.
    """

    cloud: str
    compute: float
    request_fee: float
    egress: float
    billed_instance_s: float

    @property
    def total(self) -> float:
        return self.compute + self.request_fee + self.egress

    def per_million(self) -> dict[str, float]:
        """The line items and total in USD per million requests, the unit price tables quote."""
        return {
            "compute": self.compute * 1e6,
            "request_fee": self.request_fee * 1e6,
            "egress": self.egress * 1e6,
            "total": self.total * 1e6,
        }


def load_prices(overrides: Mapping[str, Mapping[str, object]] | None = None) -> PriceTable:
    """Read the packaged price table and apply per-cloud overrides from the configuration.

    ``overrides`` maps a cloud to ``{field: value}`` with the price file's field names
    (:data:`PRICE_FIELDS`); a field or cloud that does not exist is a ConfigError naming it.
    """
    text = (resources.files("orchestrator.control.routing") / "prices.json").read_text(encoding="utf-8")
    table = parse_prices(json.loads(text), origin=_RESOURCE)
    if not overrides:
        return table
    clouds = dict(table.clouds)
    for cloud, fields in overrides.items():
        if cloud not in clouds:
            raise ConfigError(
                f"clouds.{cloud}.price: there are no packaged prices for {cloud!r} to override "
                f"(priced: {', '.join(table.clouds)})"
            )
        clouds[cloud] = _override(clouds[cloud], fields)
    return replace(table, clouds=clouds)


def billed_instance_seconds(
    billing: Billing, granularity_s: float, traffic: Load, vcpu: float, concurrency: int
) -> float:
    """Instance seconds billed per request under ``billing`` (the module docstring derives it)."""
    if not (vcpu > 0 and concurrency >= 1 and granularity_s >= 0):
        raise ValueError(
            f"need vcpu > 0, concurrency >= 1, granularity >= 0; got {vcpu}, {concurrency}, {granularity_s}"
        )
    cpu_s = traffic.cpu_seconds_per_request
    in_flight_s = cpu_s / min(vcpu, 1.0)  # one core per request; a fractional vCPU runs it slower
    per_instance_rps = min(vcpu / cpu_s, concurrency / in_flight_s) if cpu_s > 0 else math.inf
    full = 1.0 / per_instance_rps  # a saturated instance: 0.0 when requests cost no CPU
    if billing == "task":
        return full
    rate = min(traffic.requests_per_s, per_instance_rps)
    window = granularity_s + in_flight_s
    # -expm1(-x) is 1 - e^-x without cancellation when a slot is rarely billed.
    slot = window if rate == 0 else -math.expm1(-rate * window) / rate
    return max(full, slot)


def cost_per_request(
    cloud: str, prices: PriceTable, traffic: Load, vcpu: float, memory_gib: float, concurrency: int
) -> CostBreakdown:
    """Expected USD per request on ``cloud`` for instances of ``vcpu``/``memory_gib``/``concurrency``."""
    if memory_gib < 0:
        raise ValueError(f"memory_gib must be >= 0, not {memory_gib}")
    p = prices[cloud]
    billed = billed_instance_seconds(p.billing, p.billing_granularity_s, traffic, vcpu, concurrency)
    return CostBreakdown(
        cloud=cloud,
        compute=billed * (vcpu * p.vcpu_second_usd + memory_gib * p.gib_second_usd),
        request_fee=p.request_million_usd / 1e6,
        egress=traffic.response_bytes * p.egress_usd_per_byte,
        billed_instance_s=billed,
    )


# -- reading and overriding --------------------------------------------------------------------


def _override(prices: CloudPrices, fields: Mapping[str, object]) -> CloudPrices:
    cloud = prices.cloud
    for key in fields:
        if key not in PRICE_FIELDS:
            raise ConfigError(
                f"clouds.{cloud}.price.{key}: unknown price field (known: {', '.join(PRICE_FIELDS)})"
            )
    if len(_EGRESS_FIELDS.keys() & fields.keys()) > 1:
        raise ConfigError(f"clouds.{cloud}.price: give egress_usd_per_gb or egress_usd_per_gib, not both")
    changes: dict[str, Any] = {}
    provenance = dict(prices.provenance)
    for key, value in fields.items():
        where = f"clouds.{cloud}.price.{key}"
        if key == "billing":
            changes["billing"] = _billing(value, where)
        else:
            number = _number(value, where)
            if key in _EGRESS_FIELDS:
                provenance.pop(prices.egress_field, None)
                changes["egress_usd"], changes["egress_unit"] = number, _EGRESS_FIELDS[key]
            else:
                changes[key] = number
        provenance[key] = Provenance(source=f"configuration ({where})", as_of=None)
    return replace(prices, provenance=provenance, **changes)


def parse_prices(raw: Any, *, origin: str) -> PriceTable:
    """Validate a decoded price table (the shape of ``prices.json``); errors name ``origin`` and the key."""
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ConfigError(f"{origin}: not a price table of schema {SCHEMA}")
    version = raw.get("version")
    if not isinstance(version, str) or not version:
        raise ConfigError(f"{origin}: version: missing")
    clouds = raw.get("clouds")
    if not isinstance(clouds, dict) or not clouds:
        raise ConfigError(f"{origin}: clouds: missing")
    return PriceTable(
        version=version,
        clouds={
            name: _parse_cloud(name, entry, f"{origin}: clouds.{name}") for name, entry in clouds.items()
        },
    )


def _parse_cloud(cloud: str, entry: Any, where: str) -> CloudPrices:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: not a mapping")
    known = {"service", *PRICE_FIELDS}
    if unknown := sorted(entry.keys() - known):
        raise ConfigError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
    egress = [key for key in _EGRESS_FIELDS if key in entry]
    if len(egress) != 1:
        raise ConfigError(f"{where}: needs exactly one of egress_usd_per_gb, egress_usd_per_gib")
    provenance: dict[str, Provenance] = {}
    values: dict[str, object] = {}
    for key in ("billing", *(k for k in _NUMBER_FIELDS if k not in _EGRESS_FIELDS), egress[0]):
        figure = entry.get(key)
        if not isinstance(figure, dict) or "value" not in figure:
            raise ConfigError(f"{where}.{key}: missing (a mapping with value, source and as_of)")
        source, as_of = figure.get("source"), figure.get("as_of")
        if not isinstance(source, str) or not source:
            raise ConfigError(f"{where}.{key}.source: missing")
        try:
            date.fromisoformat(cast(str, as_of))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.{key}.as_of: {as_of!r} is not an ISO date") from None
        provenance[key] = Provenance(source=source, as_of=cast(str, as_of))
        values[key] = figure["value"]
    service = entry.get("service")
    return CloudPrices(
        cloud=cloud,
        service=service if isinstance(service, str) else cloud,
        billing=_billing(values["billing"], f"{where}.billing"),
        vcpu_second_usd=_number(values["vcpu_second_usd"], f"{where}.vcpu_second_usd"),
        gib_second_usd=_number(values["gib_second_usd"], f"{where}.gib_second_usd"),
        request_million_usd=_number(values["request_million_usd"], f"{where}.request_million_usd"),
        egress_usd=_number(values[egress[0]], f"{where}.{egress[0]}"),
        egress_unit=_EGRESS_FIELDS[egress[0]],
        billing_granularity_s=_number(values["billing_granularity_s"], f"{where}.billing_granularity_s"),
        provenance=provenance,
    )


def _number(value: object, where: str) -> float:
    # bool is an int to Python, but `true` as a price is a typo, not 1 USD.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: must be a finite number >= 0, not {value!r}")
    return float(value)


def _billing(value: object, where: str) -> Billing:
    if value not in _BILLINGS:
        raise ConfigError(f"{where}: must be one of {', '.join(_BILLINGS)}, not {value!r}")
    return value
