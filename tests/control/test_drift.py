"""Drift repair: every `--apply` round reads back what each backend holds and rewrites it when it
differs from the committed decision, whatever made it differ.

File backend: the routing file deleted, corrupted, or edited by hand. Route 53: a weight changed by
hand, a record deleted (re-created with the configured health check), records created by the dns
stack (their health check, TTL and target survive every repair). And a backend added to the
configuration is written by the next round, though the decision did not change.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.control.conftest import RECORD, Fleet, run_cli

CLOUDS = ("aws", "gcp", "azure")


def records(fleet: Fleet) -> dict[str, dict[str, Any]]:
    client = boto3.client("route53", endpoint_url=fleet.moto.endpoint, region_name="us-east-1")
    found = client.list_resource_record_sets(HostedZoneId=fleet.zone_id)["ResourceRecordSets"]
    return {r["SetIdentifier"]: r for r in found if r.get("SetIdentifier")}


def change(fleet: Fleet, action: str, record: dict[str, Any]) -> None:
    client = boto3.client("route53", endpoint_url=fleet.moto.endpoint, region_name="us-east-1")
    client.change_resource_record_sets(
        HostedZoneId=fleet.zone_id, ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": record}]}
    )


def round_(fleet: Fleet, config: Path) -> dict[str, Any]:
    """One `health --once --apply --json` round, as a fresh control plane in this process (the
    same code and the same JSON document as the command; `status` below is run as the command)."""
    from orchestrator.render.control import round_json

    report = fleet.plane(config).health_round(apply=True)
    assert report.exit_code == 0, [b.error for b in report.backends]
    return round_json(report)


def backend(document: dict[str, Any], kind: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(b for b in document["backends"] if b["kind"] == kind)
    return entry


@pytest.mark.slow
def test_every_apply_round_repairs_drift_in_each_backend(fleet: Fleet, tmp_path: Path) -> None:
    client = boto3.client("route53", endpoint_url=fleet.moto.endpoint, region_name="us-east-1")
    checks = {
        cloud: client.create_health_check(
            CallerReference=uuid.uuid4().hex,
            HealthCheckConfig={
                "Type": "HTTP",
                "FullyQualifiedDomainName": f"{cloud}.example",
                "ResourcePath": "/readyz",
            },
        )["HealthCheck"]["Id"]
        for cloud in CLOUDS
    }
    for cloud in CLOUDS:  # what `pulumi up -s dns` creates
        stack_made = {"Name": RECORD, "Type": "CNAME", "SetIdentifier": cloud, "Weight": 10, "TTL": 30}
        target = [{"Value": f"{cloud}.stack.example"}]
        change(fleet, "CREATE", {**stack_made, "ResourceRecords": target, "HealthCheckId": checks[cloud]})
    routing = tmp_path / "routing.json"
    route53 = {"hosted_zone_id": fleet.zone_id, "record_name": RECORD, "endpoint_url": fleet.moto.endpoint,
               "health_check_ids": checks}  # fmt: skip
    only_dns = fleet.config(routing={"backend": "route53", "route53": route53})
    both = fleet.config(
        routing={"backend": ["route53", "file"], "route53": route53, "file": {"path": str(routing)}}
    )

    first = round_(fleet, only_dns)
    decided = first["weights"]
    assert {c: r["Weight"] for c, r in records(fleet).items()} == decided
    assert backend(first, "route53")["wrote"] is True

    # A backend added to the configuration: written by the next round, the decision unchanged.
    added = round_(fleet, both)
    assert added["weights"] == decided
    assert (backend(added, "route53")["wrote"], backend(added, "file")["wrote"]) == (False, True)
    assert backend(added, "file")["differences"] == ["no routing table"]
    assert json.loads(routing.read_text())["weights"] == decided

    # The routing file deleted, corrupted, edited by hand.
    for damage, found in (
        (routing.unlink, "no routing table"),
        (lambda: routing.write_text('{"version": 9, "weigh'), "unreadable: not a routing table"),
        (lambda: routing.write_text(json.dumps({"weights": {**decided, "gcp": 77}})), "gcp: weight 77"),
    ):
        damage()
        repaired = round_(fleet, both)
        file_result = backend(repaired, "file")
        assert file_result["wrote"] is True
        assert found in "; ".join(file_result["differences"])
        assert json.loads(routing.read_text())["weights"] == decided
        assert backend(repaired, "route53")["wrote"] is False, "the other backend was in sync: left alone"

    # A Route 53 weight changed by hand; `status` sees it before the next round repairs it.
    aws = records(fleet)["aws"]
    change(fleet, "UPSERT", {**aws, "Weight": 3})
    status = run_cli("status", "--config", str(both), "--json")
    assert status.returncode == 4
    stale = next(b for b in json.loads(status.stdout)["backends"] if b["kind"] == "route53")
    assert stale["in_sync"] is False
    assert stale["differences"] == [f"aws: weight 3, decided {decided['aws']}"]
    assert backend(round_(fleet, both), "route53")["wrote"] is True
    assert records(fleet)["aws"]["Weight"] == decided["aws"]

    # A record deleted: re-created from the configuration, with the group's TTL and its health check.
    change(fleet, "DELETE", records(fleet)["gcp"])
    assert "gcp: no record" in backend(round_(fleet, both), "route53")["differences"]
    # Whatever the repairs did, the stack's attributes are still there: only weights changed.
    now = records(fleet)
    assert {c: r["Weight"] for c, r in now.items()} == decided
    assert {c: r["HealthCheckId"] for c, r in now.items()} == checks
    assert {r["TTL"] for r in now.values()} == {30}
    assert now["aws"]["ResourceRecords"] == [{"Value": "aws.stack.example"}]
    assert now["gcp"]["ResourceRecords"] == [{"Value": "127.0.0.1"}], (
        "re-created from the configured endpoint"
    )
    assert run_cli("status", "--config", str(both)).returncode == 0


def test_a_routing_file_that_cannot_be_written_does_not_stop_route53(tmp_path: Path, moto_server) -> None:
    """The other way round from the Route 53 outage (test_incident.py): the file backend fails."""
    from orchestrator.control.health.machine import Machine
    from orchestrator.control.health.record import CloudRecord
    from orchestrator.control.store import open_state
    from orchestrator.control.types import HealthState

    client = boto3.client("route53", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    zone = client.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)["HostedZone"][
        "Id"
    ]
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the routing file's directory should be")
    config = tmp_path / "orchestrator.yaml"
    config.write_text(
        json.dumps(
            {
                "model": {"name": "iris"},
                "clouds": {c: {"endpoint": f"http://{c}.invalid"} for c in CLOUDS},
                "routing": {
                    "backend": ["file", "route53"],
                    "file": {"path": str(blocker / "routing.json")},
                    "route53": {"hosted_zone_id": zone.rsplit("/", 1)[-1], "record_name": RECORD,
                                "endpoint_url": moto_server.endpoint},
                },
                "state": {"path": str(tmp_path / "state.db")},
            }
        )
    )  # fmt: skip
    with open_state(tmp_path / "state.db") as state:
        healthy = CloudRecord(Machine(state=HealthState.HEALTHY, first_seen=0.0, probed=True)).to_dict()
        state.save_machines(dict.fromkeys(CLOUDS, healthy))
    result = run_cli("route", "--apply", "--config", str(config), "--json")
    assert result.returncode == 4, result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1
    assert errors[0].startswith(f"error: routing backend stale: routing file {blocker / 'routing.json'}")
    decided = json.loads(result.stdout)["weights"]
    found = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    assert {r["SetIdentifier"]: r["Weight"] for r in found if r.get("SetIdentifier")} == decided


def test_a_cloud_removed_from_the_configuration_loses_its_weight_in_every_backend(
    tmp_path: Path, moto_server
) -> None:
    """azure carried everything; the operator removes it from the configuration (decommissioned,
    or dead): the backends hold entries for it that the orchestrator wrote, and the next decision
    takes them to 0 instead of leaving azure its share beside the clouds still configured."""
    from orchestrator.control.health.machine import Machine
    from orchestrator.control.health.record import CloudRecord
    from orchestrator.control.store import open_state
    from orchestrator.control.types import HealthState

    client = boto3.client("route53", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    zone = client.create_hosted_zone(Name="example.com.", CallerReference=uuid.uuid4().hex)
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    routing = tmp_path / "routing.json"

    def config(clouds: tuple[str, ...]) -> Path:
        path = tmp_path / f"{'-'.join(clouds)}.yaml"
        path.write_text(
            json.dumps(
                {
                    "model": {"name": "iris"},
                    "clouds": {c: {"endpoint": f"http://{c}.invalid"} for c in clouds},
                    "routing": {"backend": ["route53", "file"], "file": {"path": str(routing)},
                                "route53": {"hosted_zone_id": zone_id, "record_name": RECORD,
                                            "endpoint_url": moto_server.endpoint}},
                    "state": {"path": str(tmp_path / "state.db")},
                }
            )
        )  # fmt: skip
        return path

    def machines(healthy: set[str]) -> None:
        with open_state(tmp_path / "state.db") as state:
            state.save_machines(
                {
                    c: CloudRecord(
                        Machine(
                            state=HealthState.HEALTHY if c in healthy else HealthState.UNHEALTHY,
                            first_seen=0.0,
                            probed=True,
                        )
                    ).to_dict()
                    for c in CLOUDS
                }
            )

    def weights_held() -> tuple[dict[str, int], dict[str, int]]:
        found = client.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        route53 = {r["SetIdentifier"]: r["Weight"] for r in found if r.get("SetIdentifier")}
        return route53, json.loads(routing.read_text())["weights"]

    machines({"azure"})
    assert run_cli("route", "--apply", "--config", str(config(CLOUDS))).returncode == 0
    assert weights_held() == ({"aws": 0, "gcp": 0, "azure": 100},) * 2

    machines({"aws", "gcp"})
    without_azure = config(("aws", "gcp"))
    result = run_cli("route", "--apply", "--config", str(without_azure))
    assert result.returncode == 0, result.stderr
    for held in weights_held():
        assert held["azure"] == 0, held
        assert held["aws"] + held["gcp"] == 100
    status = run_cli("status", "--config", str(without_azure), "--json")
    assert status.returncode == 0, status.stdout
