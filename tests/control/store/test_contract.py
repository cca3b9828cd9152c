"""The state store contract: every test here runs unchanged against SQLite and the object-store
backend (on a local directory, moto, gcp-storage-emulator and Azurite).

What the control plane relies on: round trips of flips, overrides, desired weights, backend
statuses and machines; ordering of flips; validation before anything is written; transactions that
commit together or not at all, nest, see their own writes, and that calls on the store itself join;
a second store (another command) seeing exactly what was committed; and a lease that one holder at
a time gets, with an epoch that moves on when another takes it over.
"""

from __future__ import annotations

import threading

import pytest

from orchestrator.control.errors import LeaseHeld
from orchestrator.control.store import (
    HEALTH_JOB_LEASE,
    MAX_LEASE_S,
    BackendStatus,
    DesiredWeights,
    Lease,
    Override,
    StateStore,
)
from orchestrator.control.types import Flip, HealthState
from tests.control.store.conftest import GCS_IGNORES_PRECONDITIONS, FakeClock, StateBackend

H, D, U, X = HealthState.HEALTHY, HealthState.DEGRADED, HealthState.UNHEALTHY, HealthState.DRAINED


# --- round trips -----------------------------------------------------------------------------


def test_a_new_state_is_empty(store: StateStore) -> None:
    assert store.recent_flips(limit=None) == []
    assert store.overrides() == {}
    assert store.drained() == set()
    assert store.desired() is None
    assert store.load_machines() == {}


def test_flips_round_trip(store: StateStore) -> None:
    flips = [
        Flip("aws", 100.5, H, U, "3 probes failed", details={"probes": [{"ok": False, "ms": None}]}),
        Flip("gcp", 101.0, D, H, "latency back under the SLO", actor="health-check"),
        Flip("azure", 102.25, H, X, "maintenance", actor="alice", details={"ticket": "OPS-1"}),
    ]
    store.record_flips(flips)
    assert store.recent_flips() == flips[::-1]
    assert store.recent_flips(cloud="azure") == [flips[2]]
    assert isinstance(store.recent_flips()[0].old, HealthState)


def test_recent_flips_newest_first_limited_ties_by_recording_order(store: StateStore) -> None:
    # Recorded out of time order, and two at the same instant.
    store.record_flips([Flip("aws", 30.0, H, U, "c"), Flip("aws", 10.0, H, D, "a")])
    store.record_flips([Flip("gcp", 20.0, H, U, "b"), Flip("aws", 30.0, U, H, "d")])
    assert [f.reason for f in store.recent_flips()] == ["d", "c", "b", "a"]
    assert [f.reason for f in store.recent_flips(limit=2)] == ["d", "c"]
    assert [f.reason for f in store.recent_flips(cloud="aws", limit=None)] == ["d", "c", "a"]
    assert store.recent_flips(limit=0) == []
    assert store.recent_flips(cloud="azure") == []
    with pytest.raises(ValueError, match="negative"):
        store.recent_flips(limit=-1)


def test_overrides_latest_per_cloud(state_backend: StateBackend) -> None:
    clock = FakeClock(1000.0)
    store = state_backend.open(clock=clock)
    first = store.set_override("aws", drained=True, reason="maintenance", actor="alice")
    assert first == Override("aws", True, "maintenance", "alice", 1000.0)
    clock.now = 2000.0
    store.set_override("gcp", drained=True, reason="bad version", actor="bob")
    store.set_override("aws", drained=False, reason="failback", actor="carol")
    assert store.overrides() == {
        "aws": Override("aws", False, "failback", "carol", 2000.0),
        "gcp": Override("gcp", True, "bad version", "bob", 2000.0),
    }
    assert store.drained() == {"gcp"}


def test_weights_round_trip_and_last_wins(state_backend: StateBackend) -> None:
    clock = FakeClock(5.0)
    store = state_backend.open(clock=clock)
    store.save_desired({"aws": 50, "gcp": 50}, "cost")
    clock.now = 4.0  # a clock that went backwards: commit order still decides what is last
    saved = store.save_desired({"aws": 0, "gcp": 100, "azure": 0}, "aws unhealthy")
    assert saved == DesiredWeights({"aws": 0, "gcp": 100, "azure": 0}, 4.0, "aws unhealthy")
    assert store.desired() == saved
    store.close()
    assert state_backend.open().desired() == saved


def test_machines_round_trip_per_cloud(store: StateStore) -> None:
    aws = {"state": "unhealthy", "consecutive_ok": 1, "hold_down_until": 12.5, "flaps": [1.0, 2.0]}
    store.save_machines({"aws": aws, "gcp": {"state": "healthy"}})
    store.save_machines({"gcp": {"state": "degraded", "nested": {"a": None}}})  # aws kept
    assert store.load_machines() == {"aws": aws, "gcp": {"state": "degraded", "nested": {"a": None}}}


def test_the_rollout_record_round_trips_and_is_replaced_whole(state_backend: StateBackend) -> None:
    store = state_backend.open()
    assert store.rollout() is None
    record = {"id": "a1", "status": "running", "caps": {"aws": 0}, "verdicts": [{"gate": "canary"}]}
    store.save_rollout(record)
    record["caps"]["aws"] = 10  # the caller's copy: not the stored one
    assert store.rollout() == {
        "id": "a1",
        "status": "running",
        "caps": {"aws": 0},
        "verdicts": [{"gate": "canary"}],
    }
    store.save_rollout({"id": "b2", "status": "succeeded"})
    assert state_backend.open().rollout() == {"id": "b2", "status": "succeeded"}  # another process sees it
    with store.transaction() as tx:
        tx.save_rollout({"id": "c3"})
        assert tx.rollout() == {"id": "c3"}
        tx.rollout()["id"] = "changed"  # type: ignore[index]  # a read is a copy
        assert tx.rollout() == {"id": "c3"}
    with pytest.raises(ValueError, match="at most"):
        store.save_rollout({"id": "x" * 70_000})
    with pytest.raises(TypeError):
        store.save_rollout(["not", "an", "object"])  # type: ignore[arg-type]
    assert store.rollout() == {"id": "c3"}


def test_what_a_read_returns_is_a_copy(store: StateStore) -> None:
    store.save_machines({"aws": {"flaps": [1.0]}})
    store.record_flips([Flip("aws", 1.0, H, U, "r", details={"n": [1]})])
    with store.transaction() as tx:
        tx.load_machines()["aws"]["flaps"].append(2.0)
        tx.recent_flips()[0].details["n"].append(2)
        assert tx.load_machines() == {"aws": {"flaps": [1.0]}}
        assert tx.recent_flips()[0].details == {"n": [1]}


def test_unknown_clouds_and_bad_values_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="unknown cloud"):
        store.set_override("oracle", drained=True, reason="", actor="")
    with pytest.raises(ValueError, match="unknown cloud"):
        store.record_flips([Flip("aw", 1.0, H, U, "typo")])
    with pytest.raises(ValueError, match="integer"):
        store.save_desired({"aws": 0.5}, "")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not a valid HealthState"):
        store.record_flips([Flip("aws", 1.0, "sick", U, "")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown cloud"):
        store.save_machines({"oracle": {}})
    with pytest.raises(TypeError):
        store.record_flips([Flip("aws", 1.0, H, U, "", details={"when": object()})])
    assert store.recent_flips() == []
    assert store.load_machines() == {}


def test_empty_writes_are_accepted(store: StateStore) -> None:
    store.record_flips([])
    store.save_machines({})
    assert store.recent_flips() == []
    assert store.load_machines() == {}


# --- transactions ----------------------------------------------------------------------------


def _drain_then_fail(store: StateStore, cloud: str) -> None:
    with store.transaction() as tx:
        tx.set_override(cloud, drained=True, reason="r", actor="a")
        tx.record_flips([Flip(cloud, 1.0, H, X, "r")])
        raise RuntimeError("decided not to")


def test_a_failed_transaction_writes_nothing(store: StateStore) -> None:
    with pytest.raises(RuntimeError, match="decided not to"):
        _drain_then_fail(store, "aws")
    assert store.overrides() == {}
    assert store.recent_flips() == []


def test_calls_on_the_store_itself_inside_a_transaction_join_it(store: StateStore) -> None:
    def drain_then_fail() -> None:
        with store.transaction():
            store.set_override("aws", drained=True, reason="r", actor="a")
            store.save_desired({"gcp": 100}, "r")
            raise RuntimeError("decided not to")

    with pytest.raises(RuntimeError, match="decided not to"):
        drain_then_fail()
    assert store.overrides() == {}
    assert store.desired() is None


def test_nested_transaction_undoes_only_itself(store: StateStore) -> None:
    with store.transaction() as tx:
        tx.set_override("aws", drained=True, reason="outer", actor="a")
        with pytest.raises(RuntimeError, match="decided not to"):
            _drain_then_fail(tx, "gcp")
        assert tx.drained() == {"aws"}
    assert store.drained() == {"aws"}
    assert store.recent_flips() == []


def test_reads_inside_a_transaction_see_its_own_writes(store: StateStore) -> None:
    with store.transaction() as tx:
        tx.save_desired({"aws": 100}, "first")
        tx.set_override("gcp", drained=True, reason="r", actor="a")
        tx.save_machines({"azure": {"n": 1}})
        tx.record_flips([Flip("gcp", 1.0, H, X, "r")])
        last = tx.desired()
        assert last is not None
        assert last.reason == "first"
        assert tx.drained() == {"gcp"}
        assert tx.load_machines() == {"azure": {"n": 1}}
        assert [f.reason for f in tx.recent_flips()] == ["r"]


def test_a_second_store_sees_commits_only(state_backend: StateBackend) -> None:
    writer, reader = state_backend.open(), state_backend.open()
    with writer.transaction() as tx:
        tx.set_override("aws", drained=True, reason="r", actor="a")
        assert reader.overrides() == {}  # not blocked, and sees the last commit only
    assert reader.drained() == {"aws"}


def test_atomically_returns_what_the_step_returns_and_commits_it(store: StateStore) -> None:
    def step() -> int:
        store.save_desired({"aws": 100}, "step")
        return 7

    assert store.atomically(step) == 7
    last = store.desired()
    assert last is not None
    assert last.reason == "step"
    with pytest.raises(ValueError, match="at least 1"):
        store.atomically(step, attempts=0)


def test_atomically_does_not_repeat_a_step_that_raises(store: StateStore) -> None:
    runs = []

    def step() -> None:
        runs.append(1)
        store.save_desired({"aws": 100}, "step")
        raise RuntimeError("decided not to")

    with pytest.raises(RuntimeError, match="decided not to"):
        store.atomically(step)
    assert runs == [1]
    assert store.desired() is None


# --- backends and leases ---------------------------------------------------------------------


def test_backend_statuses_round_trip_and_replace_per_location(store: StateStore) -> None:
    route53 = BackendStatus("route53 zone Z1 record m.example.com.", "route53", True, {"aws": 100}, None, 5.0)
    stale = BackendStatus("routing file /r.json", "file", False, None, "cannot write: disk full", 5.0)
    store.record_backends([route53, stale])
    assert store.backends() == {route53.location: route53, stale.location: stale}
    fixed = BackendStatus(stale.location, "file", True, {"aws": 100, "gcp": 0}, None, 6.0)
    store.record_backends([fixed])
    assert store.backends() == {route53.location: route53, stale.location: fixed}
    with pytest.raises(ValueError, match="weight of aws"):
        store.record_backends([BackendStatus("x", "file", True, {"aws": 300}, None, 1.0)])


def test_a_lease_is_held_until_it_expires_then_taken_over_with_a_new_epoch(
    state_backend: StateBackend,
) -> None:
    clock = FakeClock(1000.0)
    first, second = state_backend.open(clock=clock), state_backend.open(clock=clock)
    lease = first.acquire_lease(HEALTH_JOB_LEASE, "host-a:1", ttl_s=30.0)
    assert lease == Lease(HEALTH_JOB_LEASE, "host-a:1", 1000.0, 1030.0, 1)
    assert first.acquire_lease(HEALTH_JOB_LEASE, "host-a:1", ttl_s=30.0).epoch == 1, "re-entrant"

    with pytest.raises(LeaseHeld, match="host-a:1 holds the health-job lease") as held:
        second.acquire_lease(HEALTH_JOB_LEASE, "host-b:2", ttl_s=30.0)
    assert held.value.exit_code == 75
    assert (held.value.holder, held.value.expires_at) == ("host-a:1", 1030.0)

    clock.now = 1020.0
    renewed = first.renew_lease(lease, ttl_s=30.0)
    assert (renewed.expires_at, renewed.epoch, renewed.acquired_at) == (1050.0, 1, 1000.0)

    clock.now = 1051.0  # expired (the holder was frozen, say): another takes it over
    taken = second.acquire_lease(HEALTH_JOB_LEASE, "host-b:2", ttl_s=30.0)
    assert (taken.holder, taken.epoch, taken.acquired_at) == ("host-b:2", 2, 1051.0)
    with pytest.raises(LeaseHeld, match="lost the health-job lease: host-b:2 holds it now"):
        first.renew_lease(renewed, ttl_s=30.0)
    first.release_lease(renewed)  # no longer ours: changes nothing
    assert first.lease(HEALTH_JOB_LEASE) == taken

    second.release_lease(taken)
    released = first.lease(HEALTH_JOB_LEASE)
    assert released is not None
    assert not released.live(clock.now)
    again = first.acquire_lease(HEALTH_JOB_LEASE, "host-a:1", ttl_s=30.0)
    assert again.epoch == 3, "every change of holder moves the epoch on"


def test_a_lease_expiring_later_than_any_holder_could_take_it_is_expired(
    state_backend: StateBackend,
) -> None:
    """The wall clock stepped back an hour after the lease was taken (or the holder's clock runs an
    hour ahead): the lease claims to last longer than any holder ever takes one for, so it is
    treated as expired rather than block the job for that hour; its holder, if it lives, is fenced."""
    ahead = FakeClock(1_000_000.0)
    behind = FakeClock(ahead.now - 3600.0)
    first, second = state_backend.open(clock=ahead), state_backend.open(clock=behind)
    lease = first.acquire_lease(HEALTH_JOB_LEASE, "host-a:1", ttl_s=60.0)
    taken = second.acquire_lease(HEALTH_JOB_LEASE, "host-b:2", ttl_s=60.0)
    assert (taken.holder, taken.epoch) == ("host-b:2", 2)
    with pytest.raises(LeaseHeld):
        first.renew_lease(lease, ttl_s=60.0)
    with pytest.raises(ValueError, match="ttl"):
        first.acquire_lease(HEALTH_JOB_LEASE, "host-a:1", ttl_s=MAX_LEASE_S + 1)


def test_a_lease_gone_with_the_state_is_taken_again_by_its_holder(state_backend: StateBackend) -> None:
    """The state was deleted or replaced while a job ran (an operator resetting it): nobody holds
    the lease any more, so the job's next renewal takes it again instead of stopping the job."""
    clock = FakeClock(1000.0)
    store = state_backend.open(clock=clock)
    ghost = Lease(HEALTH_JOB_LEASE, "host-a:1", 900.0, 1010.0, 7)  # held in a state now gone
    renewed = store.renew_lease(ghost, ttl_s=30.0)
    assert (renewed.holder, renewed.expires_at) == ("host-a:1", 1030.0)
    assert store.lease(HEALTH_JOB_LEASE) == renewed
    with pytest.raises(LeaseHeld):
        state_backend.open(clock=clock).acquire_lease(HEALTH_JOB_LEASE, "host-b:2", ttl_s=30.0)


def test_renewing_inside_a_transaction_fences_its_commit(state_backend: StateBackend) -> None:
    clock = FakeClock(1000.0)
    ours, theirs = state_backend.open(clock=clock), state_backend.open(clock=clock)
    lease = ours.acquire_lease(HEALTH_JOB_LEASE, "ours", ttl_s=10.0)
    clock.now = 1011.0
    theirs.acquire_lease(HEALTH_JOB_LEASE, "theirs", ttl_s=10.0)

    def step() -> None:
        ours.save_desired({"aws": 100}, "decided by a job that lost its lease")
        ours.renew_lease(lease, ttl_s=10.0)

    with pytest.raises(LeaseHeld):
        ours.atomically(step)
    assert ours.desired() is None, "nothing of the step was committed"


def test_only_one_of_several_concurrent_acquirers_gets_the_lease(state_backend: StateBackend) -> None:
    if not state_backend.enforces_preconditions:
        pytest.skip(GCS_IGNORES_PRECONDITIONS)
    contenders = 4
    stores = [state_backend.open() for _ in range(contenders)]
    start = threading.Barrier(contenders, timeout=30)
    won: list[str] = []
    refused: list[str] = []

    def contend(n: int) -> None:
        start.wait()
        try:
            stores[n].acquire_lease(HEALTH_JOB_LEASE, f"job-{n}", ttl_s=60.0)
            won.append(f"job-{n}")
        except LeaseHeld as exc:
            refused.append(exc.holder)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(won) == 1, won
    assert refused == won * (contenders - 1)
    lease = stores[0].lease(HEALTH_JOB_LEASE)
    assert lease is not None
    assert lease.holder == won[0]
