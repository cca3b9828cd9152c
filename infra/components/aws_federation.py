"""What the health jobs may do in AWS as vantage points, and the roles the GCP and Azure jobs assume.

- :func:`route53_statements`: change the weighted record group's weights and its fence record
  (``_fence.<record>``, a TXT the orchestrator replaces with a DELETE of the exact value read and a
  CREATE, in the same batch as the weights: docs/design/quorum.md), and list the zone;
- :func:`vantage_statements`: in the AWS job's control bucket, read every point's observation
  (``orchestrator/vantage/*``) and the lease copy, write the lease copy (conditional writes need
  only PutObject) and, for the AWS job itself, its own observation;
- :func:`federated_roles`: one role per trusted job of ``health_job.federation``
  (:mod:`infra.specs.federation`), each allowed exactly the two lists above, assumable only with
  that job's platform identity token (``sts:AssumeRoleWithWebIdentity``), for an hour at most.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.aws_shared import policy
from infra.specs.health_job import HealthJobSpec
from orchestrator.core.contract import LEASE_OBJECT, VANTAGE_PREFIX

__all__ = ["FENCE_PREFIX", "federated_roles", "route53_statements", "vantage_statements"]

# The Route 53 backend's fence record: _fence.<record name> (control/routing/backends/route53.py).
FENCE_PREFIX = "_fence."
# GCP ID tokens and Entra tokens last an hour; the job asks for 15 minutes and refreshes.
MAX_SESSION_S = 3600


def route53_statements(job: HealthJobSpec, partition: pulumi.Input[str]) -> list[dict[str, Any]]:
    """Change the weighted record's weights and its fence record, list the zone (AWS and the
    federated roles alike); none without ``apply`` or a target."""
    if not job.apply or job.route53 is None:
        return []
    zone_arn = pulumi.Output.concat("arn:", partition, ":route53:::hostedzone/", job.route53.zone_id)
    record = job.route53.record_name
    return [
        {
            "Sid": "MoveTheWeightedRecord",
            "Effect": "Allow",
            "Action": "route53:ChangeResourceRecordSets",
            "Resource": zone_arn,
            # Only this name's CNAME records (UPSERTs of their weights) and its fence TXT record
            # (DELETE of the value read and CREATE of the next, in the same batch): no other record
            # of the zone can be touched. The condition keys cannot tie actions to types, so
            # DELETE/CREATE are allowed on the CNAMEs too, which the orchestrator never sends.
            "Condition": {
                "ForAllValues:StringEquals": {
                    "route53:ChangeResourceRecordSetsNormalizedRecordNames": [record, FENCE_PREFIX + record],
                    "route53:ChangeResourceRecordSetsRecordTypes": ["CNAME", "TXT"],
                    "route53:ChangeResourceRecordSetsActions": ["UPSERT", "CREATE", "DELETE"],
                }
            },
        },
        {
            "Sid": "ReadTheZone",
            "Effect": "Allow",
            "Action": "route53:ListResourceRecordSets",
            "Resource": zone_arn,
        },
    ]


def vantage_statements(control_arn: pulumi.Input[str], own: str | None) -> list[dict[str, Any]]:
    """In the AWS job's control bucket: read the observations and the lease copy, write the lease
    copy and (``own``: the AWS job's id) its own observation."""
    writes = [pulumi.Output.concat(control_arn, "/", LEASE_OBJECT)]
    if own is not None:
        writes.append(pulumi.Output.concat(control_arn, "/", VANTAGE_PREFIX, own, ".json"))
    return [
        {
            "Sid": "ReadTheVantageObjects",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": [
                pulumi.Output.concat(control_arn, "/", VANTAGE_PREFIX, "*"),
                pulumi.Output.concat(control_arn, "/", LEASE_OBJECT),
            ],
        },
        {"Sid": "WriteTheLeaseCopy", "Effect": "Allow", "Action": "s3:PutObject", "Resource": writes},
    ]


def federated_roles(
    name: str,
    parent: pulumi.Resource,
    job: HealthJobSpec,
    control_arn: pulumi.Output[str],
    partition: pulumi.Input[str],
) -> dict[str, aws.iam.Role]:
    """The roles of ``job.federation`` (cloud -> role), each with its policy; {} without it."""
    federation = job.federation
    if federation is None:
        return {}
    child = pulumi.ResourceOptions(parent=parent)
    statements = [
        # ListBucket: an observation not written yet answers 404, not 403.
        {"Sid": "ListTheControl", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": control_arn},
        *vantage_statements(control_arn, None),
        *route53_statements(job, partition),
    ]
    trusts: dict[str, pulumi.Input[str]] = {}
    if federation.gcp_service_account_id is not None:
        account = federation.gcp_service_account_id
        trusts["gcp"] = policy(
            {
                "Effect": "Allow",
                "Principal": {"Federated": "accounts.google.com"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                # aud = the token's azp (the service account), oaud = the audience it requested.
                "Condition": {
                    "StringEquals": {
                        "accounts.google.com:aud": account,
                        "accounts.google.com:sub": account,
                        "accounts.google.com:oaud": "sts.amazonaws.com",
                    }
                },
            }
        )
    if federation.azure_tenant_id is not None and federation.azure_principal_id is not None:
        issuer = f"sts.windows.net/{federation.azure_tenant_id}/"
        provider = aws.iam.OpenIdConnectProvider(
            f"{name}-entra",
            url=f"https://{issuer}",
            client_id_lists=[federation.azure_audience],
            opts=child,
        )
        audience, principal = federation.azure_audience, federation.azure_principal_id
        trusts["azure"] = provider.arn.apply(lambda arn: _azure_trust(arn, issuer, audience, principal))
    roles: dict[str, aws.iam.Role] = {}
    for cloud, trust in trusts.items():
        role = aws.iam.Role(
            f"{name}-from-{cloud}",
            description=f"The {cloud} health job: Route 53 weights and the vantage objects, by federation",
            assume_role_policy=trust,
            max_session_duration=MAX_SESSION_S,
            opts=child,
        )
        aws.iam.RolePolicy(f"{name}-from-{cloud}", role=role.id, policy=policy(*statements), opts=child)
        roles[cloud] = role
    return roles


def _azure_trust(provider_arn: str, issuer: str, audience: str, principal: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {f"{issuer}:aud": audience, f"{issuer}:sub": principal}},
                }
            ],
        },
        sort_keys=True,
    )
