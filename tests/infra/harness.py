"""Run the real Pulumi program for one stack under mocks, each run in a fresh Python process.

Why a process per run: the program's modules (``infra.*``, the provider SDKs) and Pulumi's
runtime settings are module-level state; a second stack in the same interpreter would reuse the
first one's imports and root stack. A process per run is the robust isolation, and runs of
different stacks proceed in parallel.

Parent side: :func:`run_stack` builds the stack's configuration from the committed
``Pulumi.<stack>.yaml`` plus overrides, starts ``python -W error -m tests.infra.harness``, and
returns a :class:`StackRun` (every resource with its inputs, mocked outputs, URN, secret inputs,
``ignore_changes`` and dependencies; every invoke; the stack's exports; Pulumi's log; or the
error the program stopped with).

Child side (``__main__``): sets the configuration, then ``pulumi.runtime.set_mocks`` with
:class:`ProviderMocks`, *then* runs ``infra/`` exactly as Pulumi's Python host does
(``runpy.run_path("infra/", run_name="__main__")`` from the project root, with the project root
not on ``sys.path``: the language host's executor script's own directory is, and ``runpy`` puts
``infra/`` first), so ``infra`` and ``orchestrator`` are imported from the installed distribution,
and a module in ``infra/`` named like an importable package would shadow it; writes the result,
with the provider SDKs the run imported, as JSON. ``-W error`` keeps the suite's warnings-as-errors
rule inside the child.

:class:`ProviderMocks` answers what the real providers would: auto-names (with the provider's
suffix style and name rules, so a name the cloud would refuse fails here), ids, ARNs, ARM ids,
URLs and the outputs the program reads (azure-native's ``name`` from ``accountName``,
``containerAppName``...; a Container App's ingress FQDN; a Cloud Run URI).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import runpy
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "ml-orchestrator"
ORGANIZATION = "organization"  # what a self-managed backend calls every organization
ACCOUNT_ID = "123456789012"
SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"
TENANT_ID = "00000000-0000-4000-8000-000000000002"
DELETE = object()  # an override value that removes the key
# A run imports pulumi and one provider (1 to 3 s); generous for a loaded 2-core machine.
RUN_TIMEOUT_S = 120
PROVIDER_SDKS = frozenset({"pulumi_aws", "pulumi_gcp", "pulumi_azure_native"})


# --- parent side -----------------------------------------------------------------------------


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]  # secrets unwrapped; their paths are in `secrets`
    outputs: dict[str, Any]
    custom: bool
    urn: str
    secrets: list[str]
    # Resource options as the engine would receive them.
    ignore_changes: list[str]
    depends_on: list[str]  # URNs

    def __getitem__(self, key: str) -> Any:
        return self.inputs[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.inputs.get(key, default)


@dataclass
class StackRun:
    stack: str
    config: dict[str, Any]
    resources: list[Resource] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    providers: list[str] = field(default_factory=list)  # the provider SDKs the run imported

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.type == typ]

    def one(self, typ: str) -> Resource:
        found = self.of_type(typ)
        assert len(found) == 1, f"{self.stack}: expected one {typ}, found {[r.name for r in found]}"
        return found[0]

    def named(self, typ: str, name: str) -> Resource:
        """The one resource of ``typ`` whose Pulumi name is ``name``."""
        found = [r for r in self.of_type(typ) if r.name == name]
        assert len(found) == 1, f"{self.stack}: expected one {typ} named {name}, found {len(found)}"
        return found[0]

    def by_id(self, resource_id: str) -> Resource:
        found = [r for r in self.resources if r.outputs.get("id") == resource_id]
        assert len(found) == 1, f"{self.stack}: no single resource with id {resource_id}"
        return found[0]

    def within(self, component: str) -> StackRun:
        """The run narrowed to one component (by type) and its children; exports kept."""
        resources = [r for r in self.resources if r.type == component or f"{component}$" in r.urn]
        return StackRun(
            self.stack, self.config, resources, self.calls, self.exports, self.log, self.error, self.providers
        )

    def warnings(self) -> list[str]:
        return [entry["message"] for entry in self.log if entry["level"] in ("WARNING", "ERROR")]

    def ok(self) -> StackRun:
        assert self.error is None, f"stack {self.stack} failed: {self.error}"
        return self


def stack_config(stack: str) -> dict[str, Any]:
    """The committed stack file's ``config`` block."""
    import yaml

    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return dict(document.get("config") or {})


def apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"ml-orchestrator:endpoint.cpu": 2}`` sets a field of an object value; DELETE removes."""
    result: dict[str, Any] = json.loads(json.dumps(config))
    for dotted, value in overrides.items():
        namespace, _, rest = dotted.partition(":")
        top, *path = rest.split(".")
        key = f"{namespace}:{top}"
        if not path:
            if value is DELETE:
                result.pop(key, None)
            else:
                result[key] = value
            continue
        node = result.setdefault(key, {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return result


def run_stack(
    stack: str,
    overrides: Mapping[str, Any] | None = None,
    references: Mapping[str, Mapping[str, Any]] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> StackRun:
    """Run the program for ``stack`` under mocks in a new process; ``references`` are the
    exports StackReferences see, keyed by the referenced stack's short name; ``secrets`` are
    configuration values Pulumi holds as secrets (``pulumi config set --secret``)."""
    config = apply_overrides(stack_config(stack), overrides or {})
    secret_keys = sorted(secrets or {})
    config.update(secrets or {})
    with tempfile.TemporaryDirectory(prefix="infra-run-") as tmp:
        request, result = Path(tmp, "request.json"), Path(tmp, "result.json")
        request.write_text(
            json.dumps(
                {"stack": stack, "config": config, "references": references or {}, "secrets": secret_keys}
            )
        )
        proc = subprocess.run(
            [sys.executable, "-W", "error", "-m", "tests.infra.harness", str(request), str(result)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0 or not result.exists():
            raise RuntimeError(
                f"harness for stack {stack} crashed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            )
        data = json.loads(result.read_text())
    urns, options = data["urns"], data["options"]
    return StackRun(
        stack=stack,
        config=config,
        resources=[
            Resource(
                type=r["type"],
                name=r["name"],
                inputs=r["inputs"],
                outputs=r["outputs"],
                custom=r["custom"],
                urn=urns.get(f"{r['type']}::{r['name']}", ""),
                secrets=r["secrets"],
                ignore_changes=options.get(f"{r['type']}::{r['name']}", {}).get("ignoreChanges", []),
                depends_on=options.get(f"{r['type']}::{r['name']}", {}).get("dependencies", []),
            )
            for r in data["resources"]
        ],
        calls=data["calls"],
        exports=data["exports"],
        log=data["log"],
        error=data["error"],
        providers=data["providers"],
    )


# --- mocks (child side) ------------------------------------------------------------------------


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _uuid(seed: str) -> str:
    return str(uuid.UUID(_hex(seed, 32)))


# How the runtime marks a secret value inside resource inputs (pulumi.runtime.rpc).
_SIG_KEY, _SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secrets(value: Any, path: str = "", found: list[str] | None = None) -> tuple[Any, list[str]]:
    """The value with secret markers removed, and the paths that were secret."""
    found = [] if found is None else found
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            found.append(path)
            return unwrap_secrets(value["value"], path, found)[0], found
        return {k: unwrap_secrets(v, f"{path}.{k}" if path else k, found)[0] for k, v in value.items()}, found
    if isinstance(value, list):
        return [unwrap_secrets(v, f"{path}[{i}]", found)[0] for i, v in enumerate(value)], found
    return value, found


def _check(rule: re.Pattern[str], value: str, what: str) -> str:
    if not rule.fullmatch(value):
        raise ValueError(f"the cloud would refuse {what} {value!r}")
    return value


# Name rules the clouds enforce on names this program lets the provider generate.
_AWS_LB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?")
_AZURE_STORAGE_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_AZURE_REGISTRY = re.compile(r"[A-Za-z0-9]{5,50}")
_AZURE_CONTAINER_APP = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")  # apps and jobs alike
_AZURE_KEY_VAULT = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
_AZURE_ENVIRONMENT = re.compile(r"[a-z][a-z0-9-]{0,58}[a-z0-9]")
_GCP_ACCOUNT_ID = re.compile(r"[a-z]([-a-z0-9]{4,28}[a-z0-9])")
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]")

# azure-native: the input that holds a resource's name, per type.
_AZURE_NAME_INPUT = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:storage:BlobServiceProperties": "blobServicesName",
    "azure-native:containerregistry:Registry": "registryName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:authorization:RoleAssignment": "roleAssignmentName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
    "azure-native:app:ManagedEnvironment": "environmentName",
    "azure-native:app:ContainerApp": "containerAppName",
    "azure-native:app:Job": "jobName",
    "azure-native:authorization:RoleDefinition": "roleDefinitionId",
    "azure-native:keyvault:Vault": "vaultName",
    "azure-native:keyvault:Secret": "secretName",
    "azure-native:app:ManagedCertificate": "managedCertificateName",
    "azure-native:monitor:ActionGroup": "actionGroupName",
    "azure-native:monitor:MetricAlert": "ruleName",
    "azure-native:monitor:ScheduledQueryRule": "ruleName",
    "azure-native:monitor:DiagnosticSetting": "name",
}
_AZURE_PROVIDER_PATH = {
    "azure-native:storage:StorageAccount": "Microsoft.Storage/storageAccounts",
    "azure-native:containerregistry:Registry": "Microsoft.ContainerRegistry/registries",
    "azure-native:managedidentity:UserAssignedIdentity": "Microsoft.ManagedIdentity/userAssignedIdentities",
    "azure-native:operationalinsights:Workspace": "Microsoft.OperationalInsights/workspaces",
    "azure-native:app:ManagedEnvironment": "Microsoft.App/managedEnvironments",
    "azure-native:app:ContainerApp": "Microsoft.App/containerApps",
    "azure-native:app:Job": "Microsoft.App/jobs",
    "azure-native:keyvault:Vault": "Microsoft.KeyVault/vaults",
    "azure-native:monitor:ActionGroup": "Microsoft.Insights/actionGroups",
    "azure-native:monitor:MetricAlert": "Microsoft.Insights/metricAlerts",
    "azure-native:monitor:ScheduledQueryRule": "Microsoft.Insights/scheduledQueryRules",
}


class ProviderMocks:
    """A ``pulumi.runtime.Mocks`` answering like the aws, gcp and azure-native providers."""

    def __init__(self, config: Mapping[str, Any], references: Mapping[str, Mapping[str, Any]]) -> None:
        self.region = str(config.get("aws:region") or "us-east-1")
        self.project = str(config.get("gcp:project") or "test-project")
        self.references = references
        self.resources: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    # pulumi.runtime.Mocks' interface ----------------------------------------------------------

    def call(self, args: Any) -> dict[str, Any]:
        self.calls.append({"token": args.token, "args": args.args})
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/test",
                "userId": "AIDATEST",
                "id": ACCOUNT_ID,
            }
        if token == "aws:index/getPartition:getPartition":
            return {
                "partition": "aws",
                "dnsSuffix": "amazonaws.com",
                "reverseDnsPrefix": "com.amazonaws",
                "id": "aws",
            }
        if token == "aws:ec2/getVpc:getVpc":
            return {"id": "vpc-0default", "cidrBlock": "172.31.0.0/16", "default": True}
        if token == "aws:ec2/getSubnets:getSubnets":
            return {"id": self.region, "ids": ["subnet-0a", "subnet-0b", "subnet-0c"]}
        if token == "azure-native:authorization:getClientConfig":
            return {
                "clientId": _uuid("client"),
                "objectId": _uuid("object"),
                "subscriptionId": SUBSCRIPTION_ID,
                "tenantId": TENANT_ID,
            }
        if token == "azure-native:app:getCustomDomainVerificationId":
            return {"value": _hex("verification", 64).upper()}
        if token == "azure-native:operationalinsights:getSharedKeys":
            return {"primarySharedKey": "mock-primary-key", "secondarySharedKey": "mock-secondary-key"}
        raise NotImplementedError(f"no mock for invoke {token}")

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        inputs, secrets = unwrap_secrets(dict(args.inputs))
        outputs = dict(inputs)
        resource_id = f"{args.name}-id"
        typ = args.typ
        if typ == "pulumi:pulumi:StackReference":
            stack_name = args.inputs["name"]
            short = stack_name.rsplit("/", 1)[-1]
            if short not in self.references:
                raise ValueError(f"no exports given for stack reference {stack_name}")
            outputs = {"name": stack_name, "outputs": dict(self.references[short]), "secretOutputNames": []}
            resource_id = stack_name
        elif typ.startswith("aws:"):
            resource_id = self._aws(typ, args.name, outputs)
        elif typ.startswith("gcp:"):
            resource_id = self._gcp(typ, args.name, outputs)
        elif typ.startswith("azure-native:"):
            resource_id = self._azure(typ, args.name, outputs)
        outputs.setdefault("id", resource_id)
        self.resources.append(
            {
                "type": typ,
                "name": args.name,
                "inputs": inputs,
                "outputs": outputs,
                "custom": bool(args.custom),
                "secrets": secrets,
            }
        )
        return resource_id, outputs

    # per provider --------------------------------------------------------------------------

    def _aws(self, typ: str, name: str, out: dict[str, Any]) -> str:
        auto = f"{name}-{_hex(name, 7)}"  # Pulumi's AWS auto-name: name, dash, 7 random chars
        account, region = ACCOUNT_ID, self.region
        if typ == "aws:s3/bucket:Bucket":
            bucket = str(out.setdefault("bucket", auto))
            out.update(
                arn=f"arn:aws:s3:::{bucket}", bucketRegionalDomainName=f"{bucket}.s3.{region}.amazonaws.com"
            )
            return bucket
        if typ == "aws:ecr/repository:Repository":
            repo = str(out.setdefault("name", auto))
            out.update(
                arn=f"arn:aws:ecr:{region}:{account}:repository/{repo}",
                repositoryUrl=f"{account}.dkr.ecr.{region}.amazonaws.com/{repo}",
                registryId=account,
            )
            return repo
        if typ == "aws:iam/role:Role":
            role = str(out.setdefault("name", auto))
            out["arn"] = f"arn:aws:iam::{account}:role/{role}"
            return role
        if typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            # The provider's ARN is its URL without the scheme, under oidc-provider/.
            out["arn"] = f"arn:aws:iam::{account}:oidc-provider/{str(out['url']).removeprefix('https://')}"
            return str(out["arn"])
        if typ == "aws:iam/rolePolicy:RolePolicy":
            return f"{out['role']}:{out.setdefault('name', auto)}"
        if typ == "aws:cloudwatch/logGroup:LogGroup":
            group = str(out.setdefault("name", auto))
            out["arn"] = f"arn:aws:logs:{region}:{account}:log-group:{group}"
            return group
        if typ == "aws:ec2/securityGroup:SecurityGroup":
            return f"sg-{_hex(name, 17)}"
        if typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
            lb_name = _check(_AWS_LB_NAME, out.setdefault("name", auto), "load balancer/target group name")
            kind = "loadbalancer/app" if typ.endswith("LoadBalancer") else "targetgroup"
            suffix = f"{kind}/{lb_name}/{_hex(name, 16)}"
            arn = f"arn:aws:elasticloadbalancing:{region}:{account}:{suffix}"
            out.update(arn=arn, arnSuffix=suffix)
            if typ.endswith("LoadBalancer"):
                out.update(
                    dnsName=f"{lb_name}-{int(_hex(name, 8), 16)}.{region}.elb.amazonaws.com",
                    zoneId="Z35SXDOTRQ7X7K",
                )
            return arn
        if typ == "aws:lb/listener:Listener":
            arn = f"arn:aws:elasticloadbalancing:{region}:{account}:listener/app/{_hex(name, 16)}"
            out["arn"] = arn
            return arn
        if typ == "aws:ecs/cluster:Cluster":
            arn = f"arn:aws:ecs:{region}:{account}:cluster/{out.setdefault('name', auto)}"
            out["arn"] = arn
            return arn
        if typ == "aws:ecs/taskDefinition:TaskDefinition":
            family_arn = f"arn:aws:ecs:{region}:{account}:task-definition/{out['family']}"
            out.update(arn=f"{family_arn}:1", arnWithoutRevision=family_arn, revision=1)
            return str(out["family"])
        if typ == "aws:ecs/service:Service":
            service = out.setdefault("name", auto)
            return f"arn:aws:ecs:{region}:{account}:service/{service}"
        if typ == "aws:scheduler/schedule:Schedule":
            schedule = out.setdefault("name", auto)
            group = out.get("groupName") or "default"
            out["arn"] = f"arn:aws:scheduler:{region}:{account}:schedule/{group}/{schedule}"
            return str(schedule)
        if typ == "aws:route53/healthCheck:HealthCheck":
            return _uuid(name)
        if typ == "aws:route53/record:Record":
            out["fqdn"] = out["name"]
            return f"{out['zoneId']}_{out['name']}_{out['type']}_{out.get('setIdentifier', '')}"
        if typ == "aws:secretsmanager/secret:Secret":
            # Secrets Manager appends a dash and six random characters to the name in the ARN.
            secret = out.setdefault("name", auto)
            arn = f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}-{_hex(name, 6)}"
            out["arn"] = arn
            return arn
        if typ == "aws:secretsmanager/secretVersion:SecretVersion":
            version = _uuid(f"{name}-{out.get('secretString')}")  # a new value is a new version
            out.update(versionId=version, arn=out["secretId"])
            return f"{out['secretId']}|{version}"
        if typ == "aws:acm/certificate:Certificate":
            arn = f"arn:aws:acm:{region}:{account}:certificate/{_uuid(name)}"
            names = [out["domainName"], *(out.get("subjectAlternativeNames") or [])]
            out.update(
                arn=arn,
                status="PENDING_VALIDATION",
                domainValidationOptions=[
                    {
                        "domainName": domain,
                        "resourceRecordName": f"_{_hex(domain, 32)}.{domain}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": f"_{_hex(domain + 'v', 32)}.acm-validations.aws.",
                    }
                    for domain in names
                ],
            )
            return arn
        if typ == "aws:acm/certificateValidation:CertificateValidation":
            return str(out["certificateArn"])
        if typ == "aws:lb/listenerRule:ListenerRule":
            arn = f"arn:aws:elasticloadbalancing:{region}:{account}:listener-rule/app/{_hex(name, 16)}"
            out["arn"] = arn
            return arn
        if typ == "aws:sns/topic:Topic":
            arn = f"arn:aws:sns:{region}:{account}:{out.setdefault('name', auto)}"
            out["arn"] = arn
            return arn
        if typ == "aws:cloudwatch/eventRule:EventRule":
            rule = out.setdefault("name", auto)
            out["arn"] = f"arn:aws:events:{region}:{account}:rule/{rule}"
            return str(rule)
        if typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            alarm = out.setdefault("name", auto)
            out["arn"] = f"arn:aws:cloudwatch:{region}:{account}:alarm:{alarm}"
            return str(alarm)
        if typ == "aws:scheduler/scheduleGroup:ScheduleGroup":
            group = out.setdefault("name", auto)
            out["arn"] = f"arn:aws:scheduler:{region}:{account}:schedule-group/{group}"
            return str(group)
        return f"{name}-{_hex(name, 8)}"

    def _gcp(self, typ: str, name: str, out: dict[str, Any]) -> str:
        auto = f"{name}-{_hex(name, 7)}"
        project = out.get("project") or self.project
        if typ == "gcp:storage/bucket:Bucket":
            bucket = _check(_GCS_BUCKET, out.setdefault("name", auto), "bucket name")
            out.update(url=f"gs://{bucket}", selfLink=f"https://www.googleapis.com/storage/v1/b/{bucket}")
            return bucket
        if typ == "gcp:serviceaccount/account:Account":
            account_id = _check(_GCP_ACCOUNT_ID, out["accountId"], "service account id")
            email = f"{account_id}@{project}.iam.gserviceaccount.com"
            out.update(
                email=email,
                member=f"serviceAccount:{email}",
                name=f"projects/{project}/serviceAccounts/{email}",
                uniqueId=str(int(_hex(name, 12), 16)),
            )
            return str(out["name"])
        if typ == "gcp:artifactregistry/repository:Repository":
            location, repo = out["location"], out["repositoryId"]
            out.update(
                name=repo,
                registryUri=f"{location}-docker.pkg.dev/{project}/{repo}",
            )
            return f"projects/{project}/locations/{location}/repositories/{repo}"
        if typ == "gcp:cloudrunv2/service:Service":
            service = out.setdefault("name", auto)
            out.update(uri=f"https://{service}-{_hex(name, 10)}-uc.a.run.app", uid=_uuid(name))
            return f"projects/{project}/locations/{out['location']}/services/{service}"
        if typ == "gcp:cloudrunv2/job:Job":
            job = out.setdefault("name", auto)
            out["uid"] = _uuid(name)
            return f"projects/{project}/locations/{out['location']}/jobs/{job}"
        if typ == "gcp:cloudscheduler/job:Job":
            scheduler_job = out.setdefault("name", auto)
            return f"projects/{project}/locations/{out['region']}/jobs/{scheduler_job}"
        if typ == "gcp:secretmanager/secret:Secret":
            secret_id = out["secretId"]
            out["name"] = f"projects/{int(_hex(project, 10), 16)}/secrets/{secret_id}"
            return f"projects/{project}/secrets/{secret_id}"
        if typ == "gcp:secretmanager/secretVersion:SecretVersion":
            version = str(int(_hex(f"{name}-{out.get('secretData')}", 4), 16))  # a new value, a new version
            out.update(version=version, name=f"{out['secret']}/versions/{version}")
            return str(out["name"])
        if typ == "gcp:compute/globalAddress:GlobalAddress":
            octets = bytes.fromhex(_hex(name, 6))
            out["address"] = f"34.{octets[0]}.{octets[1]}.{octets[2]}"
            return f"projects/{project}/global/addresses/{out.setdefault('name', auto)}"
        if typ == "gcp:certificatemanager/dnsAuthorization:DnsAuthorization":
            domain = out["domain"]
            out["dnsResourceRecords"] = [
                {
                    "name": f"_acme-challenge.{domain}.",
                    "type": "CNAME",
                    "data": f"{_uuid(domain)}.{_hex(domain, 2)}.authorize.certificatemanager.goog.",
                }
            ]
            return f"projects/{project}/locations/global/dnsAuthorizations/{out.setdefault('name', auto)}"
        if typ.startswith("gcp:certificatemanager/"):
            kind = typ.rsplit(":", maxsplit=1)[-1]
            collection = f"{kind[0].lower() + kind[1:]}s"
            return f"projects/{project}/locations/global/{collection}/{out.setdefault('name', auto)}"
        if typ.startswith("gcp:compute/"):
            kind = typ.rsplit(":", maxsplit=1)[-1]
            scope = f"regions/{out['region']}" if "region" in out else "global"
            return f"projects/{project}/{scope}/{kind[0].lower() + kind[1:]}s/{out.setdefault('name', auto)}"
        if typ == "gcp:monitoring/notificationChannel:NotificationChannel":
            return f"projects/{project}/notificationChannels/{int(_hex(name, 8), 16)}"
        if typ == "gcp:monitoring/alertPolicy:AlertPolicy":
            return f"projects/{project}/alertPolicies/{int(_hex(name, 8), 16)}"
        return f"{name}-{_hex(name, 8)}"

    def _azure(self, typ: str, name: str, out: dict[str, Any]) -> str:
        name_input = _AZURE_NAME_INPUT.get(typ)
        # azure-native auto-names append 8 random characters with no separator.
        resource_name = (out.get(name_input) if name_input else None) or f"{name}{_hex(name, 8)}"
        if typ == "azure-native:authorization:RoleAssignment":
            resource_name = out.get("roleAssignmentName") or _uuid(name)
        out["name"] = resource_name
        group = out.get("resourceGroupName", "")
        base = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{group}"
        location = out.get("location", "westeurope")
        if typ == "azure-native:resources:ResourceGroup":
            return f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{resource_name}"
        if typ == "azure-native:storage:BlobServiceProperties":
            account = out["accountName"]
            return f"{base}/providers/Microsoft.Storage/storageAccounts/{account}/blobServices/default"
        if typ == "azure-native:storage:BlobContainer":
            return (
                f"{base}/providers/Microsoft.Storage/storageAccounts/{out['accountName']}"
                f"/blobServices/default/containers/{resource_name}"
            )
        if typ == "azure-native:authorization:RoleAssignment":
            return f"{out['scope']}/providers/Microsoft.Authorization/roleAssignments/{resource_name}"
        if typ == "azure-native:authorization:RoleDefinition":
            return f"{out['scope']}/providers/Microsoft.Authorization/roleDefinitions/{resource_name}"
        if typ == "azure-native:storage:StorageAccount":
            _check(_AZURE_STORAGE_ACCOUNT, resource_name, "storage account name")
            out["primaryEndpoints"] = {
                "blob": f"https://{resource_name}.blob.core.windows.net/",
                "dfs": f"https://{resource_name}.dfs.core.windows.net/",
            }
        elif typ == "azure-native:containerregistry:Registry":
            _check(_AZURE_REGISTRY, resource_name, "container registry name")
            out["loginServer"] = f"{resource_name.lower()}.azurecr.io"
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            out.update(
                clientId=_uuid(f"{name}-client"), principalId=_uuid(f"{name}-principal"), tenantId=TENANT_ID
            )
        elif typ == "azure-native:operationalinsights:Workspace":
            out["customerId"] = _uuid(f"{name}-customer")
        elif typ == "azure-native:app:ManagedEnvironment":
            _check(_AZURE_ENVIRONMENT, resource_name, "Container Apps environment name")
            out["defaultDomain"] = f"{_hex(resource_name, 10)}.{location}.azurecontainerapps.io"
            octets = bytes.fromhex(_hex(name, 6))
            out["staticIp"] = f"20.{octets[0]}.{octets[1]}.{octets[2]}"
        elif typ == "azure-native:keyvault:Vault":
            _check(_AZURE_KEY_VAULT, resource_name, "key vault name")
            out["properties"] = {**out["properties"], "vaultUri": f"https://{resource_name}.vault.azure.net/"}
        elif typ == "azure-native:keyvault:Secret":
            vault = out["vaultName"]
            version = _hex(f"{name}-{json.dumps(out.get('properties'), sort_keys=True)}", 32)
            out["properties"] = {
                **out["properties"],
                "secretUri": f"https://{vault}.vault.azure.net/secrets/{resource_name}",
                "secretUriWithVersion": f"https://{vault}.vault.azure.net/secrets/{resource_name}/{version}",
            }
            return f"{base}/providers/Microsoft.KeyVault/vaults/{vault}/secrets/{resource_name}"
        elif typ == "azure-native:app:ManagedCertificate":
            out["properties"] = {
                **out["properties"],
                "provisioningState": "Pending",
                "validationToken": _hex(f"{name}-token", 32),
            }
            environment = out["environmentName"]
            environment_id = f"{base}/providers/Microsoft.App/managedEnvironments/{environment}"
            return f"{environment_id}/managedCertificates/{resource_name}"
        elif typ == "azure-native:monitor:DiagnosticSetting":
            return f"{out['resourceUri']}/providers/Microsoft.Insights/diagnosticSettings/{resource_name}"
        elif typ == "azure-native:app:Job":
            _check(_AZURE_CONTAINER_APP, resource_name, "container apps job name")
        elif typ == "azure-native:app:ContainerApp":
            _check(_AZURE_CONTAINER_APP, resource_name, "container app name")
            environment = str(out["managedEnvironmentId"]).rsplit("/", 1)[-1]
            fqdn = f"{resource_name}.{_hex(environment, 10)}.{location}.azurecontainerapps.io"
            configuration = dict(out.get("configuration") or {})
            configuration["ingress"] = {**(configuration.get("ingress") or {}), "fqdn": fqdn}
            out.update(configuration=configuration, latestRevisionFqdn=fqdn)
        if isinstance((out.get("identity") or {}).get("userAssignedIdentities"), list):
            # Input: a list of identity ids; output: a map from id to the identity's ids.
            out["identity"] = {
                **out["identity"],
                "userAssignedIdentities": {
                    identity_id: {
                        "clientId": _uuid(f"{identity_id}-client"),
                        "principalId": _uuid(identity_id),
                    }
                    for identity_id in out["identity"]["userAssignedIdentities"]
                },
            }
        provider_path = _AZURE_PROVIDER_PATH.get(typ)
        if provider_path is None:
            return f"{base}/providers/unknown/{resource_name}"
        return f"{base}/providers/{provider_path}/{resource_name}"


def _config_value(value: Any) -> str:
    """How the Pulumi CLI hands configuration to a program: strings, objects as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


# Importing a provider module (pulumi_aws.s3, pulumi_aws.ec2, pulumi_gcp.storage...) imports every
# class of it, and the deprecated ones ("s3.BucketV2 has been deprecated in favor of s3.Bucket")
# warn at import time, at module level and in the class body, whether or not a program uses
# them. Only that import-time message is ignored, and only from those packages. Using a
# deprecated resource still shows: the provider then calls pulumi.log.warn("... is deprecated:
# ..."), which the tests assert never happens; deprecated arguments warn "... is deprecated."
# at use, which stays an error.
IMPORT_TIME_DEPRECATION = (r"[\w./]+ has been deprecated in favor of [\w./]+$", r"pulumi_(aws|gcp)\.")


def _child(request_path: Path, result_path: Path) -> None:
    request = json.loads(request_path.read_text())
    message, module = IMPORT_TIME_DEPRECATION
    warnings.filterwarnings("ignore", message=message, category=DeprecationWarning, module=module)
    config: dict[str, Any] = request["config"]

    import pulumi
    from pulumi.runtime.settings import get_root_resource
    from pulumi.runtime.stack import run_pulumi_func

    pulumi.runtime.set_all_config(
        {key: _config_value(value) for key, value in config.items()}, list(request["secrets"])
    )
    log_records: list[dict[str, str]] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log_records.append({"level": record.levelname, "message": record.getMessage()})

    logger = logging.getLogger("infra-harness")
    logger.propagate = False
    logger.setLevel(logging.INFO)  # the runtime's DEBUG chatter is noise here
    logger.addHandler(_Collect())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    mocks = ProviderMocks(config, request["references"])

    class _Mocks(pulumi.runtime.Mocks):
        def call(self, args: pulumi.runtime.MockCallArgs) -> Any:
            return mocks.call(args)

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> Any:
            return mocks.new_resource(args)

    options: dict[str, dict[str, list[str]]] = {}

    class _Monitor(pulumi.runtime.mocks.MockMonitor):
        """Also records the resource options the mock interface does not pass to Mocks."""

        def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
            options[f"{request.type}::{request.name}"] = {
                "ignoreChanges": list(request.ignoreChanges),
                "dependencies": list(request.dependencies),
            }
            return super().RegisterResource(request)

    provider_mocks = _Mocks()
    monitor = _Monitor(provider_mocks)
    # set_mocks before the program is imported: the program registers resources at import.
    pulumi.runtime.set_mocks(
        provider_mocks,
        project=PROJECT,
        stack=request["stack"],
        preview=False,
        logger=logger,
        monitor=monitor,
        organization=ORGANIZATION,
    )
    root = get_root_resource()
    exports: dict[str, Any] = {}

    async def program() -> None:
        # As under the language host: the project root is not on sys.path (python -m put it there).
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
        runpy.run_path(str(ROOT / "infra"), run_name="__main__")
        outputs = getattr(root, "outputs", {})
        exports.update(await pulumi.Output.from_input(dict(outputs)).future() or {})

    error: str | None = None
    try:
        loop.run_until_complete(run_pulumi_func(program))
    except Exception as exc:  # reported to the parent, which asserts on it
        error = f"{type(exc).__name__}: {exc}"
    finally:
        loop.close()
    urns = {}
    for urn in monitor.get_registered_resources():
        qualified_type, name = urn.split("::")[-2:]
        urns[f"{qualified_type.split('$')[-1]}::{name}"] = urn
    result_path.write_text(
        json.dumps(
            {
                "resources": mocks.resources,
                "calls": mocks.calls,
                "exports": exports,
                "log": log_records,
                "error": error,
                "providers": sorted({name.partition(".")[0] for name in sys.modules} & PROVIDER_SDKS),
                "urns": urns,
                "options": options,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
