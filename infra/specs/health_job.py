"""The scheduled health job a cloud stack may run beside its endpoint (``ml-orchestrator:health_job``).

:class:`HealthJobSpec` says whether the job exists, when it runs (in the cloud's own scheduler
dialect, :mod:`infra.specs.schedule`), whether it moves Route 53 weights (``--apply``), where its
configuration and state live in its own control bucket, the weighted record it may change (AWS)
or the secret holding AWS credentials for that (GCP, Azure), and the other clouds' endpoints it
may probe. The components ``AwsHealthJob``, ``GcpHealthJob`` and ``AzureHealthJob`` deploy it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import pulumi

from infra.specs import schedule
from infra.specs.federation import DEFAULT_AZURE_AUDIENCE, FederationSpec, check_role_arn, parse_federation
from infra.specs.fields import ConfigError, ConfigObject, check_cloud, check_hostname, check_zone_id
from orchestrator.core.contract import (
    ENV_AWS_AUDIENCE,
    ENV_AWS_ROLE_ARN,
    ENV_AWS_WEB_IDENTITY,
    ENV_CONFIG,
    ENV_ENDPOINTS,
    ENV_STATE,
    ENV_VANTAGE,
    MODELS,
    CloudName,
)

__all__ = [
    "AWS_CREDENTIALS_DIR",
    "AWS_CREDENTIALS_ENV",
    "AWS_CREDENTIALS_FILE",
    "AWS_CREDENTIALS_NAME",
    "JOB_TIMEOUT_S",
    "HealthJobSpec",
    "Route53Target",
    "parse_health_job_spec",
]

# Every minute by default: the finest grain all three schedulers offer, and the orchestrator's
# thresholds (a few failed probes in one round) then bound detection at about a minute. The same
# schedule in each cloud's own dialect (infra/specs/schedule.py).
DEFAULT_JOB_SCHEDULES: Final[Mapping[CloudName, str]] = MappingProxyType(
    {"aws": "rate(1 minute)", "gcp": "* * * * *", "azure": "* * * * *"}
)
HEALTH_COMMAND: Final = ("orchestrator", "health", "--once")
APPLY_FLAG: Final = "--apply"
# Where the job's configuration and state live in its own control bucket (the job reads the
# configuration and writes the state object only; operators upload the configuration). Not the
# model bucket: whoever publishes models must not be able to change what the job probes and routes.
DEFAULT_JOB_CONFIG_PATH: Final = "orchestrator/orchestrator.yaml"
DEFAULT_JOB_STATE_PATH: Final = "orchestrator/state.json"
_MODELS_PREFIX: Final = f"{MODELS}/"
# A round that has not finished in two minutes is stuck (probes time out in seconds): Cloud Run
# and Container Apps kill it rather than let runs pile up. ECS has no task timeout; there the
# orchestrator's own probe timeouts bound a round.
JOB_TIMEOUT_S: Final = 120
_ENDPOINT_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?")
# GCP and Azure jobs that apply routing read AWS credentials for Route 53 from their secret
# store, mounted as a shared-credentials file (boto3 reads AWS_SHARED_CREDENTIALS_FILE).
AWS_CREDENTIALS_DIR: Final = "/secrets/aws"
AWS_CREDENTIALS_NAME: Final = "credentials"
AWS_CREDENTIALS_FILE: Final = f"{AWS_CREDENTIALS_DIR}/{AWS_CREDENTIALS_NAME}"
AWS_CREDENTIALS_ENV: Final = "AWS_SHARED_CREDENTIALS_FILE"
# An addr-spec without quoting or comments (what the three notification services accept).
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_OBJECT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_GCP_SECRET = re.compile(r"(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/secrets/)?[A-Za-z0-9_-]{1,255}")
_KEY_VAULT_SECRET = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[\w().-]{1,90}"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<vault>[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9])"
    r"/secrets/(?P<secret>[A-Za-z0-9-]{1,127})",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route53Target:
    """The weighted record the AWS health job may change: its zone and name, nothing else."""

    zone_id: str
    record_name: str  # without the trailing dot, lowercase (as Route 53 normalizes it)


@dataclass(frozen=True)
class HealthJobSpec:
    """The scheduled health job of one cloud stack (``ml-orchestrator:health_job``)."""

    cloud: CloudName
    enabled: bool = False
    schedule: str = "* * * * *"  # in this cloud's scheduler's dialect, as deployed
    # --apply: the job moves Route 53 weights. The AWS job does with its own role; GCP and Azure
    # jobs need AWS credentials from their secret store (aws_credentials_secret).
    apply: bool = False
    config_path: str = DEFAULT_JOB_CONFIG_PATH
    state_path: str = DEFAULT_JOB_STATE_PATH
    route53: Route53Target | None = None  # AWS only: what the job role may change
    # GCP and Azure with apply: the AWS role to assume by identity federation (the AWS stack's
    # health_job.federated_roles output): short-lived credentials, no stored key. The preferred way.
    aws_role_arn: str | None = None
    # The fallback where federation cannot be set up: GCP, a Secret Manager secret (NAME or
    # projects/P/secrets/NAME); Azure, a Key Vault secret's resource id. Holds an AWS
    # shared-credentials file ([default] with a key pair), which must be rotated by hand.
    aws_credentials_secret: str | None = None
    # AWS: the GCP and Azure jobs allowed to assume a role of this stack (infra/specs/federation.py).
    federation: FederationSpec | None = None
    # Azure: the Application ID URI the job requests its token for (the AWS stack's trust pins it).
    azure_audience: str = DEFAULT_AZURE_AUDIENCE
    # The other clouds' endpoint URLs (their stacks' endpoint_url outputs); the job's own cloud's
    # comes from its own stack. Together: ORCHESTRATOR_ENDPOINTS, the only endpoints it accepts.
    endpoints: Mapping[CloudName, str] = field(default_factory=lambda: MappingProxyType({}))
    # Who is told when the job fails, cannot run or finds no healthy cloud: the addresses
    # subscribed to the stack's notification target (SNS topic, notification channel, action group).
    alert_emails: tuple[str, ...] = ()

    @property
    def command(self) -> tuple[str, ...]:
        """The container's full argv (entrypoint and arguments: the image's own are replaced)."""
        return (*HEALTH_COMMAND, APPLY_FLAG) if self.apply else HEALTH_COMMAND

    @property
    def key_vault_secret_url(self) -> str | None:
        """Azure: the versionless Key Vault URL of ``aws_credentials_secret`` (the latest version
        is read whenever a replica starts), in the public cloud's vault DNS zone."""
        match = _KEY_VAULT_SECRET.fullmatch(self.aws_credentials_secret or "")
        if match is None:
            return None
        return f"https://{match['vault'].lower()}.vault.azure.net/secrets/{match['secret']}"

    def uris(self, control_root: pulumi.Input[str]) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """``(config URI, state URI)`` under the job's own control bucket root (``s3://bucket``):
        not the model bucket, which publishers write."""
        return (
            pulumi.Output.concat(control_root, "/", self.config_path),
            pulumi.Output.concat(control_root, "/", self.state_path),
        )

    def allowed_endpoints(self, own_endpoint: pulumi.Input[str]) -> pulumi.Output[str]:
        """``ORCHESTRATOR_ENDPOINTS``: JSON ``{cloud: URL}``, this stack's endpoint plus the others."""
        return pulumi.Output.from_input(own_endpoint).apply(
            lambda url: json.dumps({**dict(self.endpoints), self.cloud: url}, sort_keys=True)
        )

    def container_env(
        self, control_root: pulumi.Input[str], own_endpoint: pulumi.Input[str]
    ) -> dict[str, pulumi.Input[str]]:
        """``ORCHESTRATOR_CONFIG`` and ``ORCHESTRATOR_STATE`` (URIs in the control bucket) and
        ``ORCHESTRATOR_ENDPOINTS``; clouds add only what their identity needs (documented there)."""
        config_uri, state_uri = self.uris(control_root)
        env: dict[str, pulumi.Input[str]] = {
            ENV_CONFIG: config_uri,
            ENV_STATE: state_uri,
            ENV_ENDPOINTS: self.allowed_endpoints(own_endpoint),
            # Its vantage point id, should the configuration list several (docs/design/quorum.md).
            ENV_VANTAGE: self.cloud,
        }
        if self.aws_role_arn is not None:
            env[ENV_AWS_ROLE_ARN] = self.aws_role_arn
            env[ENV_AWS_WEB_IDENTITY] = self.cloud
            if self.cloud == "azure":
                env[ENV_AWS_AUDIENCE] = self.azure_audience
        return env

    def export(self, control_root: pulumi.Input[str] | None) -> dict[str, Any]:
        """The stack's ``health_job`` output: whether the job exists (enabled, and an image to run
        is configured: its control bucket is then ``control_root``), where config and state live,
        and what runs when (None while it does not exist)."""
        exists = control_root is not None
        config_uri, state_uri = self.uris(control_root) if control_root is not None else (None, None)
        return {
            "enabled": exists,
            "schedule": self.schedule if exists else None,
            "command": list(self.command) if exists else None,
            "config_uri": config_uri,
            "state_uri": state_uri,
            # Set by the component when the job exists: the job's identity (AWS: its task role's
            # ARN; GCP: its service account's unique id; Azure: its managed identity's principal
            # id) and, on AWS, the roles other clouds' jobs assume by federation.
            "identity": None,
            "federated_roles": {},
        }


def _object_key(key: str, value: str) -> str:
    if not _OBJECT_KEY.fullmatch(value):
        raise ConfigError(key, f"{value!r} is not an object key such as orchestrator/state.json")
    if value.startswith(_MODELS_PREFIX):
        raise ConfigError(
            key, f"{value!r} is under {_MODELS_PREFIX}: the job must not touch where models live"
        )
    return value


def _job_schedule(cloud: CloudName, key: str, value: str) -> str:
    try:
        if cloud == "aws":
            return schedule.aws_expression(value)
        schedule.unix_cron(value)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return value


def _route53_target(key: str, raw: object) -> Route53Target:
    obj = ConfigObject(key, raw)
    zone_id = check_zone_id(obj.sub("zone_id"), obj.required("zone_id"))
    record_name = check_hostname(obj.sub("record_name"), obj.required("record_name"))
    obj.done()
    return Route53Target(zone_id=zone_id, record_name=record_name)


def _job_endpoints(cloud: CloudName, key: str, raw: Mapping[str, Any]) -> dict[CloudName, str]:
    """``health_job.endpoints``: the other clouds' endpoint URLs, as their stacks export them."""
    endpoints: dict[CloudName, str] = {}
    for name, url in raw.items():
        sub = f"{key}.{name}"
        other = check_cloud(sub, name)
        if other == cloud:
            raise ConfigError(sub, "is this stack's own endpoint: it comes from the stack itself")
        if not isinstance(url, str) or not _ENDPOINT_URL.fullmatch(url):
            raise ConfigError(sub, f"{url!r} is not an endpoint URL (the other stack's endpoint_url output)")
        endpoints[other] = url.rstrip("/")
    return endpoints


def parse_health_job_spec(cloud: CloudName, raw: object, *, namespace: str) -> HealthJobSpec:
    """The health job of the ``cloud`` stack from ``ml-orchestrator:health_job``; pure.

    Defaults: disabled; every minute; ``--apply`` on AWS only (the one cloud whose own identity
    can be granted Route 53 rights), so GCP and Azure jobs apply routing only when given AWS
    credentials through their secret store.
    """
    obj = ConfigObject(f"{namespace}:health_job", raw)
    enabled = obj.boolean("enabled", False)
    job_schedule = _job_schedule(
        cloud, obj.sub("schedule"), obj.string("schedule", DEFAULT_JOB_SCHEDULES[cloud])
    )
    apply = obj.boolean("apply", cloud == "aws")
    config_path = _object_key(obj.sub("config_path"), obj.string("config_path", DEFAULT_JOB_CONFIG_PATH))
    state_path = _object_key(obj.sub("state_path"), obj.string("state_path", DEFAULT_JOB_STATE_PATH))
    raw_route53 = obj.mapping("route53")
    secret = obj.optional("aws_credentials_secret")
    role_arn = obj.optional("aws_role_arn")
    audience = (
        obj.string("aws_audience", DEFAULT_AZURE_AUDIENCE) if cloud == "azure" else DEFAULT_AZURE_AUDIENCE
    )
    federation = parse_federation(obj.sub("federation"), obj.mapping("federation"))
    raw_endpoints = obj.mapping("endpoints")
    alert_emails = obj.strings("alert_emails", ())
    obj.done()
    for address in alert_emails:
        if not _EMAIL.fullmatch(address):
            raise ConfigError(obj.sub("alert_emails"), f"{address!r} is not an email address")
    endpoints = _job_endpoints(cloud, obj.sub("endpoints"), raw_endpoints)
    if state_path == config_path:
        raise ConfigError(
            obj.sub("state_path"), "must differ from config_path: the job may write its state only"
        )
    route53 = None
    if cloud == "aws":
        if secret is not None or role_arn is not None:
            which = "aws_credentials_secret" if secret is not None else "aws_role_arn"
            raise ConfigError(obj.sub(which), "is for gcp and azure: the AWS job uses its task role")
        if raw_route53:
            route53 = _route53_target(obj.sub("route53"), raw_route53)
        elif enabled and apply:
            raise ConfigError(
                obj.sub("route53"),
                "is required with apply: the zone_id and record_name the job's role may change",
            )
    else:
        _aws_access(
            cloud,
            obj,
            enabled=enabled,
            apply=apply,
            secret=secret,
            role_arn=role_arn,
            federation=federation,
            raw_route53=raw_route53,
        )
    return HealthJobSpec(
        cloud=cloud,
        enabled=enabled,
        schedule=job_schedule,
        apply=apply,
        config_path=config_path,
        state_path=state_path,
        route53=route53,
        aws_role_arn=role_arn,
        aws_credentials_secret=secret,
        federation=federation,
        azure_audience=audience,
        endpoints=MappingProxyType(endpoints),
        alert_emails=alert_emails,
    )


def _aws_access(
    cloud: CloudName,
    obj: ConfigObject,
    *,
    enabled: bool,
    apply: bool,
    secret: str | None,
    role_arn: str | None,
    federation: FederationSpec | None,
    raw_route53: Mapping[str, Any],
) -> None:
    """The GCP and Azure jobs' way to Route 53: a federated role (preferred) or a stored secret."""
    if federation is not None:
        raise ConfigError(obj.sub("federation"), "is for aws: the AWS stack creates the federated roles")
    if role_arn is not None:
        check_role_arn(obj.sub("aws_role_arn"), role_arn)
        if not apply:
            raise ConfigError(obj.sub("aws_role_arn"), "is only used with apply: true")
        if secret is not None:
            raise ConfigError(
                obj.sub("aws_credentials_secret"),
                "and aws_role_arn: choose one (aws_role_arn: federation, no stored key)",
            )
    if raw_route53:
        raise ConfigError(
            obj.sub("route53"),
            f"is for aws only: a {cloud} job changes Route 53 with the AWS credentials in "
            "aws_credentials_secret, whose own policy limits them",
        )
    if secret is not None and not apply:
        raise ConfigError(obj.sub("aws_credentials_secret"), "is only used with apply: true")
    if enabled and apply and secret is None and role_arn is None:
        raise ConfigError(
            obj.sub("aws_role_arn"),
            f"is required with apply on {cloud}: Route 53 is in AWS, so the job assumes an AWS "
            "role by identity federation (the AWS stack's health_job.federated_roles; or, as a "
            "fallback, aws_credentials_secret), or leave apply false: probe and record only",
        )
    pattern = _GCP_SECRET if cloud == "gcp" else _KEY_VAULT_SECRET
    if secret is not None and not pattern.fullmatch(secret):
        expected = (
            "a Secret Manager secret (NAME or projects/PROJECT/secrets/NAME)"
            if cloud == "gcp"
            else "a Key Vault secret's resource id (/subscriptions/.../vaults/VAULT/secrets/NAME)"
        )
        raise ConfigError(obj.sub("aws_credentials_secret"), f"{secret!r} is not {expected}")
