"""The Route 53 routing backend: one weighted CNAME record per cloud under one name.

For ``record_name`` (say ``model.example.com.``) in hosted zone ``hosted_zone_id`` there is one
record per cloud: SetIdentifier = the cloud key, Weight = the router's weight. Route 53 answers
each query with one record, chosen with probability weight / sum of weights.

The records belong to the ``dns`` stack (``infra/components/weighted_dns.py``, configured by
``infra/specs/weighted_dns.py``), which creates them with their target (the host of the cloud's
endpoint URL), TTL and health check; the orchestrator owns the Weight only.
:meth:`Route53Backend.apply` therefore reads the group (ListResourceRecordSets) and UPSERTs each
record whose weight differs with every attribute as read (HealthCheckId, TTL,
ResourceRecords, and anything else the stack set) but the Weight, all in ONE change batch, which
Route 53 applies atomically: resolvers never see a half-moved split. A record that does not exist
is created from the configuration (target from the endpoint URL, the group's TTL or ``ttl``,
``health_check_ids``). Re-applying the same decision sends no change at all. The batch's Comment
says what decided it.

Names are compared as Route 53 returns them (:func:`~orchestrator.control.routing.dnsname.route53_name`:
absolute, lower case, ``\\052`` for ``*`` and octal escapes for other special characters), so
``Model.Example.com`` in the configuration finds ``model.example.com.`` in the zone.

Weight 0. A record with weight 0 stays in the zone and gets no answers, which is how a drained
or unhealthy cloud is taken out: its record is kept, ready for failback by a weight change
alone. Two Route 53 rules make 0 less absolute, and both meet the router's "never all zero":
- if every record of the group has weight 0, Route 53 answers with all of them in equal shares.
  The router never produces that while a cloud is healthy, and when none is, the panic rule keeps
  the last applied weights; this backend refuses all-zero weights outright.
- with health checks attached (``health_check_ids``), if every record with a non-zero weight is
  unhealthy by Route 53's own checks, Route 53 falls back to the zero-weight records whose checks
  pass. That is Route 53's own panic mode: it only picks clouds that its checks find serving, so
  a cloud an operator drained (still up) may get traffic then; drain by removing its health
  check association too if that is unacceptable.
Every record of a weighted group should have the same TTL, so a created record takes the TTL of
the records already there.

Fencing. A write made under the leader lease (``fence``: its epoch) carries a compare-and-swap on a
TXT record beside the group, ``_fence.<record_name>``, holding ``"epoch=<n> nonce=<random>"``:
the same change batch DELETEs the value read and CREATEs the new one. Route 53 applies a batch
all or nothing and refuses a DELETE whose values do not match the record exactly
(InvalidChangeBatch), so a batch built on a fence value that changed since it was read (a newer
leader wrote in between) changes nothing; a fence read with a higher epoch than ours is refused
before sending (:class:`~orchestrator.control.errors.Fenced`). A new leader advances the fence even
when the weights are already right, so a stale leader's later batch cannot match it.

Only the host of an endpoint URL can go into DNS: clients must reach every cloud with the same
scheme, port and path. Records of this name with other SetIdentifiers (added by hand) are left
alone and still take their share; :meth:`Route53Backend.current` reports our clouds only.

Settings: ``hosted_zone_id`` (``Z123...`` or ``/hostedzone/Z123...``), ``record_name``, ``ttl``
(seconds, default 10: for records it creates), ``health_check_ids`` (``aws=ID,gcp=ID``; the DNS
stack creates them: attached to records it creates),
``endpoint_url`` (moto), ``region``, ``connect_timeout``, ``read_timeout``. Credentials come
from the standard AWS chain. Errors: no such zone → NotFound naming it; throttling, 5xx and
connection failures → TransientError, retried briefly (:data:`ROUTING_RETRY`); access denied
or missing credentials → PermissionDenied; a change Route 53 refuses (name outside the zone, a
CNAME at the apex, an unknown health check) → ConfigError with Route 53's reason.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from orchestrator.control.errors import Fenced
from orchestrator.control.routing.backends import (
    AppliedRouting,
    Comparison,
    check_settings,
    checked_weights,
    fence_difference,
    untargeted_zero,
)
from orchestrator.control.routing.backends.route53_errors import translate_error
from orchestrator.control.routing.dnsname import route53_name
from orchestrator.core.contract import CLOUDS
from orchestrator.core.errors import ConfigError, OrchestratorError, StorageError
from orchestrator.core.lazy import LazyClient
from orchestrator.core.storage.aws import boto3_client
from orchestrator.core.storage.retry import RetryPolicy, call_with_retry

__all__ = [
    "DEFAULT_TTL",
    "ROUTING_RETRY",
    "Route53Backend",
    "endpoint_host",
    "open_from_settings",
    "parse_health_check_ids",
    "translate_error",
]

T = TypeVar("T")

# Resolvers cache an answer for the TTL, so a weight change reaches clients within about TTL
# seconds of Route 53 propagating it (typically under 60 s). 10 s keeps failover close to the
# control plane's own detection time (seconds) while bounding query volume, which Route 53
# bills per million: each resolver asks at most 6 times a minute. AWS advises 60 s or less for
# records with health checks; some resolvers raise very low TTLs to their own floor anyway.
DEFAULT_TTL = 10
# Route 53 refuses TTLs above 2^31 - 1.
MAX_TTL = 2**31 - 1
# Route 53 allows five ChangeResourceRecordSets requests per second per account and answers
# Throttling or PriorRequestNotComplete beyond that; two quick retries ride that out. A longer
# budget would only delay the health loop, which applies a fresh decision on its next round.
ROUTING_RETRY = RetryPolicy(attempts=3, timeout=5.0, wait_initial=0.2, wait_max=1.0, wait_jitter=0.2)
# Route 53's API answers in well under a second; botocore's defaults (60 s read) would let a
# black-holed connection stall a failover for a minute. Worst case: connect + read once, since
# no retry starts after ROUTING_RETRY.timeout.
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 5.0
# The longest Comment a change batch may carry.
MAX_COMMENT = 256
RECORD_TYPE = "CNAME"
# The fence record: a TXT record beside the weighted group (see the module docstring). Its TTL does
# not matter to clients (nobody resolves it); a minute keeps it ordinary.
FENCE_PREFIX = "_fence."
FENCE_TTL = 60

_REQUIRED = {"hosted_zone_id", "record_name"}
_OPTIONAL = {"ttl", "health_check_ids", "endpoint_url", "region", "connect_timeout", "read_timeout"}


def open_from_settings(settings: Mapping[str, str]) -> Route53Backend:
    """The backend described by ``settings`` (see the module docstring); validates them all."""
    check_settings("route53", settings, required=_REQUIRED, optional=_OPTIONAL)
    endpoint_url = settings.get("endpoint_url") or None
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise ConfigError("route53 routing backend: endpoint_url must start with http:// or https://")
    return Route53Backend(
        hosted_zone_id=settings["hosted_zone_id"],
        record_name=settings["record_name"],
        ttl=_int_setting(settings, "ttl", DEFAULT_TTL, 0, MAX_TTL),
        health_check_ids=parse_health_check_ids(settings.get("health_check_ids", "")),
        endpoint_url=endpoint_url,
        region=settings.get("region") or None,
        connect_timeout=_float_setting(settings, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        read_timeout=_float_setting(settings, "read_timeout", DEFAULT_READ_TIMEOUT),
    )


def parse_health_check_ids(raw: str) -> dict[str, str]:
    """``"aws=ID,gcp=ID"`` → {"aws": "ID", "gcp": "ID"}; empty → {}."""
    ids: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        cloud, sep, check_id = (s.strip() for s in item.partition("="))
        if not sep or not check_id or cloud not in CLOUDS:
            raise ConfigError(
                f"route53 routing backend: health_check_ids entry {item!r} is not CLOUD=ID "
                f"with CLOUD one of {', '.join(CLOUDS)}"
            )
        ids[cloud] = check_id
    return ids


class Route53Backend:
    """Weighted CNAME records, one per cloud, under one name in one hosted zone."""

    kind = "route53"

    def __init__(
        self,
        *,
        hosted_zone_id: str,
        record_name: str,
        ttl: int = DEFAULT_TTL,
        health_check_ids: Mapping[str, str] | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        retry: RetryPolicy = ROUTING_RETRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            import boto3  # noqa: F401  # fail at open time, with advice, if the extra is missing
        except ImportError:
            raise ConfigError(
                "the route53 routing backend needs boto3: pip install 'ml-orchestrator[aws]'"
            ) from None
        # Route 53 answers with the bare id, and accepts both forms.
        self.zone_id = hosted_zone_id.strip().removeprefix("/hostedzone/")
        # Route 53 returns names absolute, lower case and escaped; compare in that form.
        try:
            self.record_name = route53_name(record_name)
        except ValueError as exc:
            raise ConfigError(f"route53 routing backend: record_name is not a DNS name: {exc}") from None
        self.ttl = ttl
        self.health_check_ids = dict(health_check_ids or {})
        self.location = f"route53 zone {self.zone_id} record {self.record_name}"
        self._endpoint_url = endpoint_url
        self._region = region
        self._timeouts = (connect_timeout, read_timeout)
        self._retry = retry
        self._clock = clock
        self._endpoint = endpoint_url or "the Route 53 API"
        self._clients = LazyClient(self._make_client)

    def __repr__(self) -> str:
        return f"Route53Backend({self.location!r})"

    def __enter__(self) -> Route53Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._clients.close()

    def apply(
        self,
        weights: Mapping[str, int],
        targets: Mapping[str, str],
        *,
        reason: str = "",
        fence: int | None = None,
    ) -> AppliedRouting:
        checked = checked_weights(weights, targets, kind=self.kind)
        hosts = {cloud: endpoint_host(targets[cloud], cloud) for cloud in checked if targets.get(cloud)}
        held_fence = self.fence() if fence is not None else None
        if fence is not None and held_fence is not None and held_fence[0] > fence:
            raise self._fenced(held_fence[0], fence)
        existing = self.records()
        ttls = [r["TTL"] for r in existing.values() if isinstance(r.get("TTL"), int)]
        changes = []
        for cloud, weight in checked.items():
            record = existing.get(cloud)
            if record is None and untargeted_zero(cloud, weight, targets):
                continue  # a cloud no longer configured, and no record of it: nothing to take to 0
            if record is None:  # created from the configuration; the stack normally made it
                record = self._record(cloud, weight, hosts[cloud], ttl=ttls[0] if ttls else self.ttl)
            elif record.get("Weight") == weight:
                continue
            changes.append({"Action": "UPSERT", "ResourceRecordSet": {**record, "Weight": weight}})
        change_id = ""
        if fence is not None and (changes or held_fence is None or held_fence[0] != fence):
            changes = [*self._fence_changes(held_fence, fence), *changes]
        if changes:
            split = " ".join(f"{cloud}={weight}" for cloud, weight in checked.items())
            comment = f"orchestrator: {split}" + (f"; {reason}" if reason else "")
            try:
                response = self._call(
                    lambda: self._client.change_resource_record_sets(
                        HostedZoneId=self.zone_id,
                        ChangeBatch={"Comment": _truncate(comment, MAX_COMMENT), "Changes": changes},
                    )
                )
            except ConfigError:
                if fence is None:
                    raise
                # Refused: if the fence moved on, a newer leader wrote; say so rather than
                # blaming the change.
                now = self.fence()
                if now is not None and now != held_fence:
                    if now[0] > fence:
                        raise self._fenced(now[0], fence) from None
                    raise StorageError(
                        "the fence record changed while this change was sent (another writer of the "
                        "same epoch); nothing was changed, the next reconciliation retries",
                        uri=self.location,
                    ) from None
                raise
            change_id = str(response["ChangeInfo"]["Id"]).removeprefix("/change/")
        return AppliedRouting(
            backend=self.kind,
            location=self.location,
            weights=checked,
            targets={
                c: _target(existing[c]) if c in existing else hosts[c]
                for c in checked
                if c in existing or c in hosts
            },
            change_id=change_id,
            at=self._clock(),
        )

    def current(self) -> dict[str, int]:
        return {cloud: int(record["Weight"]) for cloud, record in self.records().items()}

    def compare(
        self, weights: Mapping[str, int], targets: Mapping[str, str], *, fence: int | None = None
    ) -> Comparison:
        records = self.records()
        held = {cloud: int(record["Weight"]) for cloud, record in records.items()}
        differences = []
        for cloud, weight in weights.items():
            if cloud not in held and untargeted_zero(cloud, weight, targets):
                continue
            if cloud not in held:
                differences.append(f"{cloud}: no record")
            elif held[cloud] != weight:
                differences.append(f"{cloud}: weight {held[cloud]}, decided {weight}")
        if fence is not None:
            held_fence = self.fence()
            differences.extend(fence_difference(held_fence[0] if held_fence else 0, fence))
        return Comparison(held, tuple(differences))

    def fence(self) -> tuple[int, str, int] | None:
        """The fence record as read: (epoch, the exact value stored, its TTL), None when there is
        none. A value that is not ours reads as epoch 0: the first fenced write replaces it."""
        cursor = {"StartRecordName": self.fence_name, "StartRecordType": "TXT", "MaxItems": "1"}
        page = self._call(lambda: self._client.list_resource_record_sets(HostedZoneId=self.zone_id, **cursor))
        for record in page.get("ResourceRecordSets", [])[:1]:
            if _name(record) != self.fence_name or record.get("Type") != "TXT":
                return None
            value = _target(record)
            parts = dict(p.partition("=")[::2] for p in value.strip('"').split())
            epoch = parts.get("epoch", "")
            ttl = record.get("TTL")
            return (int(epoch) if epoch.isdigit() else 0), value, ttl if isinstance(ttl, int) else FENCE_TTL
        return None

    def records(self) -> dict[str, dict[str, Any]]:
        """Our records as Route 53 returns them, by cloud (for status and diagnostics)."""
        found: dict[str, dict[str, Any]] = {}
        cursor: dict[str, str] = {"StartRecordName": self.record_name, "StartRecordType": RECORD_TYPE}
        seen: set[tuple[tuple[str, str], ...]] = set()
        while True:
            # Starting at our name, our group comes first; the loop stops at the next name or
            # type, so a zone's size does not matter. A group larger than a page (Route 53
            # returns up to 300) continues at NextRecordIdentifier.
            key = tuple(sorted(cursor.items()))
            if key in seen:
                raise StorageError(
                    "Route 53 listing did not advance (repeated page cursor)", uri=self.location
                )
            seen.add(key)
            page = self._call(self._lister(cursor))
            for record in page.get("ResourceRecordSets", []):
                if _name(record) != self.record_name or record.get("Type") != RECORD_TYPE:
                    return found
                cloud = record.get("SetIdentifier")
                if cloud in CLOUDS and "Weight" in record:
                    found[cloud] = record
            if not page.get("IsTruncated"):
                return found
            cursor = {"StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"]}
            if page.get("NextRecordIdentifier"):
                cursor["StartRecordIdentifier"] = page["NextRecordIdentifier"]

    # --- internals -----------------------------------------------------------------------

    @property
    def fence_name(self) -> str:
        """The fence record's name, beside the weighted group."""
        return f"{FENCE_PREFIX}{self.record_name}"

    def _fence_changes(self, held: tuple[int, str, int] | None, fence: int) -> list[dict[str, Any]]:
        """DELETE the record exactly as read (so the batch fails if it changed) and CREATE ours."""

        def txt(value: str, ttl: int) -> dict[str, Any]:
            return {"Name": self.fence_name, "Type": "TXT", "TTL": ttl, "ResourceRecords": [{"Value": value}]}

        value = f'"epoch={fence} nonce={secrets.token_hex(6)}"'
        changes = [{"Action": "DELETE", "ResourceRecordSet": txt(held[1], held[2])}] if held else []
        return [*changes, {"Action": "CREATE", "ResourceRecordSet": txt(value, FENCE_TTL)}]

    def _fenced(self, held: int, fence: int) -> Fenced:
        return Fenced(
            f"{self.location}: a newer leader (epoch {held}) wrote it; this write carries epoch "
            f"{fence} and is refused",
            held=held,
            offered=fence,
        )

    def _record(self, cloud: str, weight: int, host: str, *, ttl: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            "Name": self.record_name,
            "Type": RECORD_TYPE,
            "SetIdentifier": cloud,
            "Weight": weight,
            "TTL": ttl,
            "ResourceRecords": [{"Value": host}],
        }
        if cloud in self.health_check_ids:
            record["HealthCheckId"] = self.health_check_ids[cloud]
        return record

    def _lister(self, cursor: Mapping[str, str]) -> Callable[[], Any]:
        return lambda: self._client.list_resource_record_sets(HostedZoneId=self.zone_id, **cursor)

    @property
    def _client(self) -> Any:
        return self._clients.get()

    def _make_client(self) -> Any:
        from botocore.config import Config

        config = Config(
            # One attempt: ROUTING_RETRY alone decides, so its time bound holds.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
        )
        client = boto3_client(
            "route53", endpoint_url=self._endpoint_url, region_name=self._region, config=config
        )
        self._endpoint = client.meta.endpoint_url
        return client

    def _call(self, request: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return request()
            except OrchestratorError:
                raise
            except Exception as exc:
                translated = translate_error(
                    exc, zone_id=self.zone_id, target=self.location, endpoint=self._endpoint
                )
                if translated is None:
                    raise
                raise translated from exc

        return call_with_retry(self._retry, attempt, target=self.location)


def _name(record: Mapping[str, Any]) -> str:
    """A listed record's name in Route 53's returned form (a name we cannot read matches nothing)."""
    try:
        return route53_name(str(record.get("Name", "")))
    except ValueError:
        return ""


def _target(record: Mapping[str, Any]) -> str:
    values = record.get("ResourceRecords") or [{}]
    return str(values[0].get("Value", "")) if isinstance(values[0], dict) else ""


def endpoint_host(url: str, cloud: str) -> str:
    """The host name of an endpoint URL: what a CNAME can point at (no scheme, port or path)."""
    host = urlsplit(url if "://" in url else f"//{url}").hostname
    if not host:
        raise ConfigError(f"route53 routing backend: endpoint {url!r} of {cloud} has no host name")
    return host


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_setting(settings: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = settings.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"route53 routing backend: setting {key}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"route53 routing backend: setting {key}={raw!r} must be in {low}..{high}")
    return value


def _float_setting(settings: Mapping[str, str], key: str, default: float) -> float:
    raw = settings.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"route53 routing backend: setting {key}={raw!r} is not a number") from None
    if not value > 0:
        raise ConfigError(f"route53 routing backend: setting {key}={raw!r} must be positive")
    return value
