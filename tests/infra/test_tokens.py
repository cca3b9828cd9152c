"""The API tokens: Pulumi secrets stored in each cloud's secret store and given to the endpoint and
the health job by reference only (never a plain value in a container, a configuration input or
an output), both tokens of a rotation at once, each pinned to its secret's version.

What could break: a token passed as a plain environment variable, a reference built from an
output that carries the value (which would also mark the whole container definition secret and
hide every diff), a reference to the versionless secret (a new token would not reach running
instances), or a reader wider than the secrets themselves.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.conftest import ENDPOINT_COMPONENTS, TOKENS
from tests.infra.harness import StackRun

NS = "ml-orchestrator"
VALUES = list(TOKENS.values())
SECRET_VERSIONS = {
    "aws": ("aws:secretsmanager/secretVersion:SecretVersion", "secretString"),
    "gcp": ("gcp:secretmanager/secretVersion:SecretVersion", "secretData"),
    "azure": ("azure-native:keyvault:Secret", "properties.value"),
}


def _containers(run: StackRun) -> list[tuple[str, Any]]:
    """Every container the stack runs (endpoint and job), as (resource name, container)."""
    found: list[tuple[str, Any]] = []
    for task in run.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        found += [(task.name, c) for c in json.loads(task["containerDefinitions"])]
    for service in run.of_type("gcp:cloudrunv2/service:Service"):
        found += [(service.name, c) for c in service["template"]["containers"]]
    for job in run.of_type("gcp:cloudrunv2/job:Job"):
        found += [(job.name, c) for c in job["template"]["template"]["containers"]]
    for app in [*run.of_type("azure-native:app:ContainerApp"), *run.of_type("azure-native:app:Job")]:
        found += [(app.name, c) for c in app["template"]["containers"]]
    return found


@pytest.mark.parametrize("variant", ["aws", "gcp", "azure", "gcp_job_apply", "azure_job_apply"])
def test_the_token_values_live_only_in_the_secret_store_and_only_as_pulumi_secrets(
    runs: dict[str, StackRun], variant: str
) -> None:
    run = runs[variant].ok()
    store, path = SECRET_VERSIONS[run.stack]
    holders = []
    for resource in run.resources:
        text = json.dumps(resource.inputs)
        if any(value in text for value in VALUES):
            holders.append(resource)
            assert resource.type == store, f"{resource.name} holds a token value"
            # The value's own path, or a parent of it, is marked secret.
            assert any(path == marked or path.startswith(f"{marked}.") for marked in resource.secrets), (
                f"{resource.name}: the value is not a Pulumi secret"
            )
    assert len(holders) == 2  # current and previous, one secret each
    # No other input is secret-marked (a reference built from a secret output would be), so
    # every container, role and app stays diffable.
    marked = {r.name: r.secrets for r in run.resources if r.secrets and r.type != store}
    allowed = {"ml-endpoint-env"}  # the Container Apps environment's Log Analytics shared key
    assert set(marked) <= allowed, marked
    # And never in an output the stack exports.
    exports = json.dumps(run.exports)
    assert not any(value in exports for value in VALUES)


@pytest.mark.parametrize("variant", ["aws", "gcp_job_apply", "azure_job_apply"])
def test_every_container_gets_both_tokens_by_reference(runs: dict[str, StackRun], variant: str) -> None:
    run = runs[variant].ok()
    containers = _containers(run)
    assert len(containers) == 2  # the endpoint and the health job
    for name, container in containers:
        if run.stack == "aws":
            plain = {e["name"] for e in container["environment"]}
            references = {e["name"]: e["valueFrom"] for e in container["secrets"]}
        elif run.stack == "gcp":
            plain = {e["name"] for e in container["envs"] if "value" in e}
            references = {
                e["name"]: e["valueSource"]["secretKeyRef"] for e in container["envs"] if "valueSource" in e
            }
        else:
            plain = {e["name"] for e in container["env"] if "value" in e}
            references = {e["name"]: e["secretRef"] for e in container["env"] if "secretRef" in e}
        assert set(references) == {"API_TOKEN", "API_TOKEN_PREVIOUS"}, name
        assert not plain & {"API_TOKEN", "API_TOKEN_PREVIOUS"}, name


def test_aws_references_pin_each_secret_version_and_only_ecs_reads_them(runs: dict[str, StackRun]) -> None:
    run = runs["aws"].ok()
    secrets = {r.name: r.outputs["arn"] for r in run.of_type("aws:secretsmanager/secret:Secret")}
    versions = {r.name: r for r in run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    expected = {
        "API_TOKEN": f"{secrets['ml-endpoint-api-token-current']}:::"
        f"{versions['ml-endpoint-api-token-current'].outputs['versionId']}",
        "API_TOKEN_PREVIOUS": f"{secrets['ml-endpoint-api-token-previous']}:::"
        f"{versions['ml-endpoint-api-token-previous'].outputs['versionId']}",
    }
    for name, container in _containers(run):
        assert {e["name"]: e["valueFrom"] for e in container["secrets"]} == expected, name
    for name, version in versions.items():
        assert version["secretId"] == secrets[name]
    assert run.exports["api_token_secrets"] == {
        "current": secrets["ml-endpoint-api-token-current"],
        "previous": secrets["ml-endpoint-api-token-previous"],
    }
    # Only the execution role may read them (test_security checks its exact grants); the task
    # roles of the endpoint and the job never name a secret.
    for policy in run.of_type("aws:iam/rolePolicy:RolePolicy"):
        if "secretsmanager" in policy["policy"]:
            assert policy.name == "ml-endpoint-execution"


def test_gcp_references_pin_each_version_and_the_revision_waits_for_the_readers(
    runs: dict[str, StackRun],
) -> None:
    run = runs["gcp"].ok().within(ENDPOINT_COMPONENTS["gcp"])
    secrets = {r.name: r for r in run.of_type("gcp:secretmanager/secret:Secret")}
    versions = {r.name: r for r in run.of_type("gcp:secretmanager/secretVersion:SecretVersion")}
    service = run.one("gcp:cloudrunv2/service:Service")
    (container,) = service["template"]["containers"]
    references = {
        e["name"]: e["valueSource"]["secretKeyRef"] for e in container["envs"] if "valueSource" in e
    }
    for env, slot in (("API_TOKEN", "current"), ("API_TOKEN_PREVIOUS", "previous")):
        name = f"ml-endpoint-api-token-{slot}"
        assert references[env] == {
            "secret": secrets[name].outputs["secretId"],
            "version": versions[name].outputs["version"],  # a number, not "latest"
        }
        assert secrets[name]["replication"] == {"auto": {}}
    readers = run.of_type("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {r.urn for r in readers} <= set(service.depends_on)


def test_azure_references_are_key_vault_urls_read_with_the_identity(runs: dict[str, StackRun]) -> None:
    run = runs["azure"].ok().within(ENDPOINT_COMPONENTS["azure"])
    vault = run.one("azure-native:keyvault:Vault")
    properties = vault["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert properties["enablePurgeProtection"] is True
    assert properties["tenantId"] == "00000000-0000-4000-8000-000000000002"
    app = run.one("azure-native:app:ContainerApp")
    identity = run.one("azure-native:managedidentity:UserAssignedIdentity").outputs["id"]
    secrets = {r["secretName"]: r for r in run.of_type("azure-native:keyvault:Secret")}
    assert set(secrets) == {"api-token-current", "api-token-previous"}
    assert app["configuration"]["secrets"] == [
        {
            "name": name,
            "keyVaultUrl": secrets[name].outputs["properties"]["secretUriWithVersion"],
            "identity": identity,
        }
        for name in ("api-token-current", "api-token-previous")
    ]
    (container,) = app["template"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["API_TOKEN"] == {"name": "API_TOKEN", "secretRef": "api-token-current"}
    assert env["API_TOKEN_PREVIOUS"] == {"name": "API_TOKEN_PREVIOUS", "secretRef": "api-token-previous"}
    # A new token version changes the template, so Container Apps starts a new revision.
    # (By name: the mocks register the two secrets in either order.)
    uri = {n: r.outputs["properties"]["secretUriWithVersion"] for n, r in secrets.items()}
    version = {n: u.rsplit("/", 1)[1] for n, u in uri.items()}
    assert env["API_TOKEN_VERSIONS"]["value"] == (
        f"current={version['api-token-current']},previous={version['api-token-previous']}"
    )
    assignments = {a["scope"] for a in run.of_type("azure-native:authorization:RoleAssignment")}
    assert {s.outputs["id"] for s in secrets.values()} <= assignments
    assert vault.outputs["id"] not in assignments  # each secret, never the whole vault


def test_without_a_token_nothing_is_stored_and_the_stack_warns(runs: dict[str, StackRun]) -> None:
    for variant in ("aws_http", "gcp_job", "azure_job"):
        run = runs[variant].ok()
        assert not [r for r in run.resources if "secretmanager" in r.type or "keyvault" in r.type], variant
        assert run.exports["api_token_secrets"] == {}
        assert any("no API token" in m for m in run.warnings()), variant
