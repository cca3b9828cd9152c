"""Vantage points, quorum, the leader lease and fencing, part by part (the processes are in
``test_vantage_processes.py``).

- the quorum rule: each kind of vote that must not count (stale, from the future, blind,
  unreadable), the strict majority and its ties, ``min_voters``, and what the state machine is fed;
- observations: written and read back; hostile or broken documents are no vote;
- the leader lease over three copies on three emulators: one holder at a time, renewal keeps the
  epoch, takeover after expiry raises it, any one point lost still leaves a majority, two lost
  leave no leader, a lost race gives its copies back, a clock step does not block forever;
- fencing: the file backend and Route 53 (through ``tests/route53_rules.py``, since moto does not
  enforce Route 53's batch rules) refuse a write older than the last leader's;
- the ``vantage`` configuration section: bounds and cross-checks, one line naming the key.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from orchestrator.control.config import load_config
from orchestrator.control.errors import Fenced
from orchestrator.control.health.machine import Verdict
from orchestrator.control.health.probe import ProbeResult
from orchestrator.control.routing.backends.file import FileBackend
from orchestrator.control.routing.backends.route53 import Route53Backend
from orchestrator.control.store.base import Override
from orchestrator.control.vantage.coordinator import Coordinator, newest_overrides
from orchestrator.control.vantage.lease import LeaderLease
from orchestrator.control.vantage.observation import (
    CloudSeen,
    VantageObservation,
    decode_observation,
)
from orchestrator.control.vantage.quorum import Quorum, adjust, quorum_view
from orchestrator.core.errors import ConfigError
from orchestrator.core.storage import RetryPolicy, Storage, open_storage
from orchestrator.demo.emulators import Azurite, MotoServer, closed_port
from tests.route53_rules import Route53Rules

NOW = 1_800_000_000.0
CLOUDS = ("aws", "gcp", "azure")


def obs(name: str, *, at: float = NOW, seeing: bool = True, **verdicts: str) -> VantageObservation:
    clouds = {c: CloudSeen(Verdict(verdicts.get(c, "ok")), verdicts.get(c, "ok"), at) for c in CLOUDS}
    return VantageObservation(name, at, seeing, clouds)


def view(*observations: VantageObservation | None, min_voters: int = 2, freshness_s: float = 60) -> Any:
    named = {f"p{i}": o for i, o in enumerate(observations)}
    return quorum_view(named, CLOUDS, now=NOW, freshness_s=freshness_s, min_voters=min_voters)


# --- the quorum rule -------------------------------------------------------------------------


def test_one_point_seeing_a_cloud_fail_is_outvoted() -> None:
    """A partition: one point cannot reach gcp, the two others see it serving."""
    result = view(obs("a", gcp="fail"), obs("b"), obs("c"))
    assert result["gcp"].quorum is Quorum.SERVING
    assert result["gcp"].failing == ("p0",)


def test_a_strict_majority_takes_a_cloud_out() -> None:
    result = view(obs("a", gcp="fail"), obs("b", gcp="fail"), obs("c"))
    assert result["gcp"].quorum is Quorum.FAILING
    assert result["aws"].quorum is Quorum.SERVING


def test_a_tie_is_serving() -> None:
    assert view(obs("a", gcp="fail"), obs("b"))["gcp"].quorum is Quorum.SERVING
    assert view(obs("a", gcp="fail"), obs("b", gcp="fail"))["gcp"].quorum is Quorum.FAILING


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(None, id="unreadable"),
        pytest.param(obs("b", at=NOW - 61, gcp="fail"), id="stale"),
        pytest.param(obs("b", at=NOW + 61, gcp="fail"), id="from-the-future"),
        pytest.param(obs("b", seeing=False, aws="fail", gcp="fail", azure="fail"), id="blind"),
    ],
)
def test_votes_that_do_not_count(other: VantageObservation | None) -> None:
    """With min_voters 2, one good vote and one that does not count: no quorum, nothing moves."""
    result = view(obs("a", gcp="fail"), other)
    assert all(v.quorum is Quorum.NO_QUORUM for v in result.values())
    assert result["gcp"].voters == ("p0",)


def test_a_blind_point_is_unreachable_not_a_vote_that_everything_is_down() -> None:
    result = view(obs("a", seeing=False, aws="fail", gcp="fail", azure="fail"), obs("b"), obs("c"))
    assert all(v.quorum is Quorum.SERVING and v.voters == ("p1", "p2") for v in result.values())


def test_min_voters_one_lets_a_lone_point_decide() -> None:
    assert view(obs("a", gcp="fail"), None, None, min_voters=1)["gcp"].quorum is Quorum.FAILING


def test_degraded_is_serving_and_its_verdict_carried() -> None:
    result = view(obs("a", gcp="degraded"), obs("b", gcp="degraded"), obs("c"))
    assert result["gcp"].quorum is Quorum.SERVING
    assert result["gcp"].serving_verdict is Verdict.DEGRADED


def probe(cloud: str, verdict: Verdict, reason: str = "x") -> ProbeResult:
    return ProbeResult(cloud, NOW, verdict, reason, latency_ms={"predict": 3.0})


def test_the_state_machine_is_fed_the_quorum_view() -> None:
    probes = {
        "aws": [probe("aws", Verdict.OK)],
        "gcp": [probe("gcp", Verdict.FAIL, "unreachable (/readyz): ConnectError")],
        "azure": [probe("azure", Verdict.OK), probe("azure", Verdict.OK)],
    }
    quorum = view(
        obs("a", gcp="fail", azure="fail"), obs("b"), obs("c", azure="fail"), obs("d", azure="fail")
    )
    adjusted = adjust(probes, quorum)
    assert adjusted["aws"] == probes["aws"]  # agrees: kept as probed, latency and all
    assert adjusted["gcp"][0].verdict is Verdict.OK  # outvoted here: serving, and said why
    assert "see it serving" in adjusted["gcp"][0].reason
    assert "ConnectError" in adjusted["gcp"][0].reason
    assert [r.verdict for r in adjusted["azure"]] == [Verdict.FAIL, Verdict.FAIL]
    no_quorum = view(obs("a", gcp="fail"), None)
    assert adjust(probes, no_quorum) == {}  # no sample at all: every state holds


def test_min_voters_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_voters"):
        view(obs("a"), min_voters=0)


# --- observations ----------------------------------------------------------------------------


def test_an_observation_round_trips_with_its_overrides() -> None:
    override = Override("gcp", True, "maintenance", "alice", NOW - 5)
    probes = {c: [probe(c, Verdict.OK)] for c in CLOUDS}
    probes["azure"] = [probe("azure", Verdict.FAIL, "timed out after 2 s (waiting for /readyz)")]
    mine = VantageObservation.from_round("gcp-job", NOW, probes, {"gcp": override})
    back = decode_observation(mine.to_json(), "gcp-job")
    assert back == mine
    assert back.seeing
    blind = {c: [probe(c, Verdict.FAIL, "unreachable (/readyz): ConnectError")] for c in CLOUDS}
    assert not VantageObservation.from_round("x", NOW, blind, {}).seeing


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "not a vantage observation"),
        (b'{"kind": "orchestrator-vantage", "schema": 9}', "schema"),
        (b'{"kind": "orchestrator-vantage", "schema": 1, "vantage": "aws"}', "written as"),
        (
            b'{"kind": "orchestrator-vantage", "schema": 1, "vantage": "gcp", "at": 1, "seeing": true,'
            b' "clouds": {"aws": {"verdict": "bogus", "reason": "", "at": 1}}}',
            "bogus",
        ),
        (
            b'{"kind": "orchestrator-vantage", "schema": 1, "vantage": "gcp", "at": 1, "seeing": true,'
            b' "clouds": {"ibm": {"verdict": "ok", "reason": "", "at": 1}}}',
            "ibm",
        ),
        (
            b'{"kind": "orchestrator-vantage", "schema": 1, "vantage": "gcp", "at": "now", "seeing": true,'
            b' "clouds": {}}',
            "at: expected a time",
        ),
        (b" " * 70_000, "bytes"),
    ],
)
def test_a_broken_or_hostile_observation_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_observation(data, "gcp")


def test_the_newest_override_wins_wherever_it_was_made() -> None:
    old = Override("gcp", True, "drill", "alice", NOW - 100)
    new = Override("gcp", False, "failback", "bob", NOW - 10)
    a = VantageObservation("a", NOW, True, {}, {"gcp": new})
    b = VantageObservation("b", NOW, True, {}, {"gcp": old})
    assert newest_overrides({"a": a, "b": b, "c": None}, {"gcp": old}) == [new]
    assert newest_overrides({"a": a, "b": b}, {"gcp": new}) == []


# --- the leader lease ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lease_points(moto_server: MotoServer, azurite: Azurite, tmp_path: Path) -> Iterator[dict[str, Storage]]:
    """Three lease points on three kinds of storage: S3 (moto), Azure Blob (Azurite), a local
    directory. (gcp-storage-emulator ignores preconditions, so it cannot hold a copy under test.)"""
    (tmp_path / "lease").mkdir()
    points = {
        "aws": open_storage(moto_server.uri(moto_server.create_bucket()), settings=moto_server.settings),
        "azure": open_storage(azurite.uri(azurite.create_bucket()), settings=azurite.settings),
        "local": open_storage(f"file://{tmp_path / 'lease'}"),
    }
    yield points
    for storage in points.values():
        storage.close()


def lease(points: dict[str, Storage], holder: str, clock: Clock, ttl: float = 30) -> LeaderLease:
    return LeaderLease(points, holder=holder, ttl_s=ttl, deadline_s=5, clock=clock)


def test_one_holder_at_a_time_and_takeover_after_expiry(lease_points: dict[str, Storage]) -> None:
    clock = Clock()
    a, b = lease(lease_points, "a", clock), lease(lease_points, "b", clock)
    first = a.acquire()
    assert first.leader
    assert first.epoch == 1
    assert first.holder == "a"
    refused = b.acquire()
    assert not refused.leader
    assert refused.holder == "a"
    assert refused.epoch == 1
    clock.now += 20
    renewed = a.acquire()
    assert renewed.leader
    assert renewed.epoch == 1  # a renewal keeps the epoch
    clock.now += 31  # a stopped renewing: its copies expired
    taken = b.acquire()
    assert taken.leader
    assert taken.epoch == 2
    assert taken.holder == "b"
    back = a.acquire()  # the old holder, resumed: it does not lead
    assert not back.leader
    assert back.holder == "b"
    b.release()
    again = a.acquire()  # released: taken at once, in a new term
    assert again.leader
    assert again.epoch == 3


def test_any_one_point_lost_leaves_a_majority(lease_points: dict[str, Storage], tmp_path: Path) -> None:
    clock = Clock()
    a = lease(lease_points, "a", clock)
    assert a.acquire().epoch == 1
    dead = open_storage(
        f"s3://gone-{uuid.uuid4().hex[:8]}",
        settings={"endpoint_url": f"http://127.0.0.1:{closed_port()}", "connect_timeout": "0.5"},
        retry=RetryPolicy(attempts=1, timeout=1.0, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0),
    )
    for lost in lease_points:
        survivors = {**lease_points, lost: dead}
        clock.now += 31
        b = lease(survivors, "b", clock).acquire()
        assert b.leader, f"losing {lost} lost the lease"
        assert b.copies[lost].error is not None
        assert lease(survivors, "c", clock).acquire().holder == "b"
    two_lost = {"aws": dead, "azure": dead, "local": lease_points["local"]}
    clock.now += 31
    alone = lease(two_lost, "b", clock).acquire()
    assert not alone.leader
    assert alone.holder is None


def test_a_lost_race_gives_its_copies_back(lease_points: dict[str, Storage]) -> None:
    clock = Clock()
    # "b" holds one copy only (a split left by a race): "a" can take the other two, and "b" none.
    lease({"aws": lease_points["aws"]}, "b", clock).acquire()
    a = lease(lease_points, "a", clock).acquire()
    assert a.leader
    assert a.epoch == 2
    assert a.copies["aws"].holder == "b"
    # Now a candidate that wins one copy of three gives it back rather than block the others.
    clock.now += 31
    c = lease(lease_points, "c", clock)
    fresh = lease({"local": lease_points["local"]}, "d", clock)
    assert fresh.acquire().leader  # d takes the local copy first
    outcome = c.acquire()
    assert outcome.leader  # two of three (aws, azure) are enough
    assert lease(lease_points, "e", clock).read().holder == "c"


class _Reads:
    """A real storage that remembers which keys were downloaded whole (``get``)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.got: list[str] = []

    def get(self, key: str) -> bytes:
        self.got.append(key)
        return self.storage.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)


def test_a_huge_lease_copy_or_observation_is_never_downloaded(
    lease_points: dict[str, Storage], tmp_path: Path
) -> None:
    # Anyone who can write a point's home can put gigabytes where a 200-byte lease or a few-KiB
    # observation belongs: the size is known from the stat, before any download.
    home = tmp_path / "lease"
    (home / "orchestrator").mkdir()
    with (home / "orchestrator" / "leader-lease.json").open("wb") as handle:
        handle.truncate(8 << 30)  # 8 GiB, sparse: nothing is written to the disk
    (home / "orchestrator" / "vantage").mkdir()
    with (home / "orchestrator" / "vantage" / "local.json").open("wb") as handle:
        handle.truncate(8 << 30)
    reads = _Reads(lease_points["local"])
    points: dict[str, Any] = {**lease_points, "local": reads}
    outcome = lease(points, "a", Clock()).acquire()
    assert outcome.leader  # the oversized copy is no lease: taken over, conditionally
    assert outcome.copies["local"].holder == "a"
    assert reads.got == []
    coordinator = Coordinator(
        load_config(
            write_config(tmp_path, {"points": {"local": {"storage": home.as_uri()}}, "min_voters": 1})
        ).vantage,  # type: ignore[arg-type]
        open_point=lambda _uri, _settings: reads,  # type: ignore[arg-type,return-value]
    )
    try:
        round_ = coordinator.survey(["aws"])
    finally:
        coordinator.close()
    assert "bytes, more than" in round_.errors["local"]
    assert "orchestrator/vantage/local.json" not in reads.got  # (the lease, now ours, is small)


def test_a_copy_that_is_not_a_lease_is_taken_over(lease_points: dict[str, Storage]) -> None:
    junk = b'{"kind": "something else", "epoch": "x"}'
    lease_points["aws"].put("orchestrator/leader-lease.json", junk, sha256=hashlib.sha256(junk).hexdigest())
    outcome = lease(lease_points, "a", Clock()).acquire()
    assert outcome.leader
    assert outcome.copies["aws"].holder == "a"


@pytest.mark.parametrize("epoch", [2**64 - 1, 2**53])
def test_a_copy_with_an_epoch_past_any_real_term_does_not_wedge_the_lease(
    lease_points: dict[str, Storage], epoch: int
) -> None:
    # A corrupted copy (or one written by hand) with an epoch no sequence of terms reaches: the
    # next term would not fit a JSON integer (orjson refuses past 64 bits; consumers lose
    # precision past 2^53), so every candidate's write would fail and nobody would ever lead.
    data = json.dumps(
        {
            "kind": "orchestrator-leader-lease",
            "holder": "x",
            "epoch": epoch,
            "expires_at": 1.0,
            "renewed_at": 1.0,
        }
    ).encode()
    lease_points["aws"].put("orchestrator/leader-lease.json", data, sha256=hashlib.sha256(data).hexdigest())
    outcome = lease(lease_points, "a", Clock()).acquire()
    assert outcome.leader, outcome.note
    assert outcome.epoch == 1
    assert outcome.copies["aws"].holder == "a"


def test_an_expiry_far_in_the_future_is_a_stepped_clock(lease_points: dict[str, Storage]) -> None:
    clock = Clock()
    clock.now += 10_000  # a holder whose clock ran hours ahead
    lease(lease_points, "a", clock, ttl=900).acquire()
    clock.now -= 10_000
    assert lease(lease_points, "b", clock).acquire().leader


def test_copies_that_cannot_be_written_say_why_and_are_no_lost_race(
    lease_points: dict[str, Storage], tmp_path: Path
) -> None:
    # Readable but not writable (a home that does not exist yet reads as empty; a job's identity
    # with read but no write permission): the lease is not taken, and the outcome says why
    # instead of "lost a race", in its copies and in its note (shown by status and --json).
    missing = {name: open_storage(f"file://{tmp_path / ('missing-' + name)}") for name in ("aws", "azure")}
    points = {**lease_points, **missing}
    outcome = lease(points, "a", Clock()).acquire()
    assert not outcome.leader
    for name in missing:
        error = outcome.copies[name].error
        assert error is not None
        assert "does not exist" in error
    assert "copies not read or written: aws: " in outcome.note
    assert "does not exist" in outcome.note
    assert outcome.as_dict()["note"] == outcome.note
    # The one copy that was written is given back: nobody holds the lease.
    assert lease(lease_points, "b", Clock()).acquire().leader


# --- fencing ---------------------------------------------------------------------------------

TARGETS = {c: f"https://{c}.example.net" for c in CLOUDS}


def test_the_file_backend_refuses_an_older_epoch(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "routing.json")
    backend.apply({"aws": 50, "gcp": 50, "azure": 0}, TARGETS, fence=3)
    backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS, fence=4)
    with pytest.raises(Fenced, match="epoch 4"):
        backend.apply({"aws": 0, "gcp": 100, "azure": 0}, TARGETS, fence=3)
    assert backend.current() == {"aws": 100, "gcp": 0, "azure": 0}
    assert backend.read()["epoch"] == 4
    backend.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS)  # unfenced: the epoch stays
    assert backend.read()["epoch"] == 4
    assert backend.compare({"aws": 100, "gcp": 0, "azure": 0}, TARGETS, fence=5).differences == (
        "leader epoch 4, now 5",
    )
    assert "fenced" in backend.compare({"aws": 100, "gcp": 0, "azure": 0}, TARGETS, fence=2).differences[0]


@pytest.fixture
def route53_rules(moto_server: MotoServer) -> Iterator[Route53Rules]:
    rules = Route53Rules(moto_server.endpoint).start()
    yield rules
    rules.stop()


def new_zone(endpoint: str) -> str:
    route53 = boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1")
    zone = route53.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)
    return str(zone["HostedZone"]["Id"]).rsplit("/", 1)[-1]


class Interleaved(Route53Backend):
    """A backend that lets ``between`` run after it read the fence and before it sends its batch:
    a writer paused at the worst moment (SIGSTOP), with a newer leader writing meanwhile."""

    between: Any = None

    def records(self) -> dict[str, dict[str, Any]]:
        if self.between is not None:
            step, self.between = self.between, None
            step()
        return super().records()


def test_route53_refuses_a_stale_leader_whose_batch_was_in_flight(route53_rules: Route53Rules) -> None:
    zone = new_zone(route53_rules.endpoint)
    settings: dict[str, Any] = {"hosted_zone_id": zone, "record_name": "model.example.com."}
    old = Interleaved(**settings, endpoint_url=route53_rules.endpoint)
    new = Route53Backend(**settings, endpoint_url=route53_rules.endpoint)
    old.apply({"aws": 50, "gcp": 50, "azure": 0}, TARGETS, fence=3)
    old.between = lambda: new.apply({"aws": 0, "gcp": 100, "azure": 0}, TARGETS, fence=4)
    with pytest.raises(Fenced, match="epoch 4"):
        old.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS, fence=3)
    assert route53_rules.refused == 1  # sent, and refused as a whole by the DELETE of the old fence
    assert new.current() == {"aws": 0, "gcp": 100, "azure": 0}
    # Once the fence reads newer, a stale writer is refused before sending anything.
    with pytest.raises(Fenced):
        old.apply({"aws": 100, "gcp": 0, "azure": 0}, TARGETS, fence=3)
    assert route53_rules.refused == 1
    fence = new.fence()
    assert fence is not None
    assert fence[0] == 4


def test_a_new_leader_advances_the_fence_even_with_nothing_to_change(route53_rules: Route53Rules) -> None:
    zone = new_zone(route53_rules.endpoint)
    backend = Route53Backend(
        hosted_zone_id=zone, record_name="m.example.com.", endpoint_url=route53_rules.endpoint
    )
    weights = {"aws": 60, "gcp": 40, "azure": 0}
    backend.apply(weights, TARGETS, fence=1)
    assert backend.compare(weights, TARGETS, fence=2).differences == ("leader epoch 1, now 2",)
    backend.apply(weights, TARGETS, fence=2)
    assert backend.compare(weights, TARGETS, fence=2).in_sync
    assert backend.current() == weights


def test_moto_alone_does_not_enforce_route53_batch_rules(moto_server: MotoServer) -> None:
    """Why ``Route53Rules`` exists: moto accepts a batch whose DELETE names a value the record no
    longer holds (a stale writer's), and applies it. If this starts failing, moto enforces the
    rule itself and the proxy can go."""
    zone = new_zone(moto_server.endpoint)
    route53 = boto3.client("route53", endpoint_url=moto_server.endpoint, region_name="us-east-1")

    def txt(value: str) -> dict[str, Any]:
        return {"Name": "f.example.com.", "Type": "TXT", "TTL": 60, "ResourceRecords": [{"Value": value}]}

    def swap(old: str | None, new: str) -> None:
        changes = [{"Action": "DELETE", "ResourceRecordSet": txt(old)}] if old else []
        a_record = {
            "Name": "w.example.com.",
            "Type": "A",
            "TTL": 60,
            "ResourceRecords": [{"Value": "192.0.2.1"}],
        }
        changes += [
            {"Action": "CREATE", "ResourceRecordSet": txt(new)},
            {"Action": "UPSERT", "ResourceRecordSet": a_record},
        ]
        route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})

    swap(None, '"epoch=3 n0"')
    swap('"epoch=3 n0"', '"epoch=4 n1"')  # the new leader
    swap('"epoch=3 n0"', '"epoch=3 n2"')  # the stale one, with the value it read before: accepted
    held = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    assert [r["ResourceRecords"] for r in held if r["Type"] == "TXT"] == [[{"Value": '"epoch=3 n2"'}]]


# --- configuration ---------------------------------------------------------------------------


def write_config(tmp_path: Path, vantage: dict[str, Any]) -> Path:
    path = tmp_path / "orchestrator.yaml"
    data = {
        "model": {"name": "iris"},
        "clouds": {"aws": {"endpoint": "https://aws.example.net"}},
        "vantage": vantage,
    }
    path.write_text(yaml.safe_dump(data))
    return path


POINTS = {
    "aws": {"storage": "s3://ops-aws/o"},
    "gcp": {"storage": "gs://ops-gcp/o"},
    "azure": {"storage": "az://ops-azure/o"},
}


@pytest.mark.parametrize(
    ("vantage", "message"),
    [
        ({"points": POINTS, "min_voters": 4}, "vantage: Value error, min_voters 4 is more than the 3"),
        ({"points": POINTS, "id": "ibm"}, "id 'ibm' is not one of the points"),
        ({"points": POINTS, "freshness_s": 0}, "vantage.freshness_s"),
        ({"points": POINTS, "lease_ttl_s": 901}, "vantage.lease_ttl_s"),
        ({"points": POINTS, "read_timeout_s": ".inf"}, "vantage.read_timeout_s"),
        ({"points": POINTS, "lease_at": ["aws", "oci"]}, "lease_at: 'oci'"),
        # One or two copies among three points: losing one copy's cloud loses the lease.
        ({"points": POINTS, "lease_at": ["aws"]}, "lease_at: 1 copy"),
        ({"points": POINTS, "lease_at": ["aws", "gcp"]}, "lease_at: 2 copies"),
        # Two points sharing one home share one lease copy and one state: one object counted twice.
        ({"points": {**POINTS, "gcp": {"storage": "s3://ops-aws/o/"}}}, "gcp: the same home as aws"),
        (
            {"points": {**POINTS, "oci": {"storage": "file:///srv/o"}}, "lease_at": [*POINTS, "oci"]},
            "lease_at: 4 copies",
        ),
        ({"points": {"AWS!": {"storage": "s3://ops-b"}}}, "a vantage id is"),
        ({"points": {"aws": {"storage": "http://b"}}}, "vantage.points.aws.storage"),
        ({"points": {}}, "vantage.points"),
        ({"points": POINTS, "quorum": 2}, "vantage.quorum: Extra inputs"),
    ],
)
def test_the_vantage_section_is_validated(tmp_path: Path, vantage: dict[str, Any], message: str) -> None:
    path = write_config(tmp_path, vantage)
    text = path.read_text().replace("'.inf'", ".inf")
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as caught:
        load_config(path)
    assert str(caught.value).startswith(str(path))


def test_the_vantage_id_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, {"points": POINTS, "id": "aws"})
    assert load_config(path).vantage.id == "aws"  # type: ignore[union-attr]
    monkeypatch.setenv("ORCHESTRATOR_VANTAGE", "gcp")
    config = load_config(path)
    assert config.vantage is not None
    assert config.vantage.id == "gcp"
    assert config.vantage.lease_majority == 2
    monkeypatch.setenv("ORCHESTRATOR_VANTAGE", "oci")
    with pytest.raises(ConfigError, match=r"\$ORCHESTRATOR_VANTAGE: 'oci' is not one of vantage.points"):
        load_config(path)


def test_without_a_vantage_section_there_is_none(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"name": "iris"}, "clouds": {"aws": {"endpoint": "https://a.b"}}})
    )
    assert load_config(path).vantage is None


# --- the plane: status and replicated overrides ----------------------------------------------


@pytest.fixture
def vantage_config(tmp_path: Path, moto_server: MotoServer) -> Path:
    """Two vantage points with their homes in two moto buckets; endpoints that do not answer."""
    buckets = {name: moto_server.uri(moto_server.create_bucket()) for name in ("east", "west")}
    data = {
        "model": {"name": "iris"},
        "clouds": {c: {"endpoint": f"http://127.0.0.1:{closed_port()}"} for c in CLOUDS},
        "routing": {"backend": "file", "file": {"path": str(tmp_path / "routing.json")}},
        "state": {"path": buckets["east"], "settings": moto_server.settings},
        "vantage": {
            "id": "east",
            "points": {n: {"storage": b, "settings": moto_server.settings} for n, b in buckets.items()},
            "min_voters": 1,
        },
    }
    path = tmp_path / "orchestrator.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_status_shows_each_point_the_quorum_and_the_lease(vantage_config: Path) -> None:
    from orchestrator.control.wiring import open_plane

    with open_plane(load_config(vantage_config)) as plane:
        assert plane.vantage is not None
        probes = {c: [probe(c, Verdict.OK)] for c in CLOUDS}
        plane.vantage.exchange(probes, {})
        held = plane.vantage.lead()
        assert held.leader
        report = plane.status()
    vantage = report["vantage"]
    assert vantage["points"]["east"]["age_s"] is not None
    assert vantage["points"]["east"]["clouds"]["aws"]["verdict"] == "ok"
    assert vantage["points"]["west"]["error"] == "no observation yet"
    assert vantage["quorum"]["aws"]["quorum"] == "serving"
    assert vantage["quorum"]["aws"]["voters"] == ["east"]
    assert vantage["lease"]["holder"] == "east"
    assert vantage["lease"]["epoch"] == held.epoch
    assert vantage["lease"]["expires_at"] > time.time()


def test_a_drain_is_written_to_every_point(vantage_config: Path, tmp_path: Path) -> None:
    from orchestrator.control.store import StateStore
    from orchestrator.control.wiring import open_plane

    config = load_config(vantage_config)
    with open_plane(config) as plane:
        plane.store.save_desired({"aws": 0, "gcp": 60, "azure": 40}, "a decision in force")
        result = plane.failover(
            "aws", to=None, actor="alice", reason="maintenance", dry_run=False, force=True
        )
        here = plane.store.overrides()["aws"]
    # The operator's command applies (under the current epoch: none led yet, 0), not as a leader.
    assert result.applied
    table = json.loads((tmp_path / "routing.json").read_text())
    assert table["epoch"] == 0
    assert table["weights"] == {"aws": 0, "gcp": 60, "azure": 40}
    assert config.vantage is not None
    west = config.vantage.points["west"]
    with StateStore.open(west.storage, settings=west.settings) as store:
        there = store.overrides()["aws"]
    assert there == here  # the same override, made at the same time: the newest wins everywhere
    assert there.drained
