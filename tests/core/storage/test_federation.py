"""Short-lived AWS credentials by web identity federation, for jobs in GCP and Azure.

Against moto's STS and S3: the session assumes the role with the token the platform's loader
returns (a Google ID token or an Entra access token in the clouds; a fixed string here, since no
metadata server exists on this machine), and the S3 client made from it works. moto accepts any
token, so what the trust policy checks (issuer, audience, subject) is asserted in
tests/infra/test_federation.py, not here.
"""

from __future__ import annotations

import pytest

from orchestrator.core.errors import ConfigError
from orchestrator.core.storage.federation import web_identity_session
from orchestrator.demo.emulators import MotoServer

ROLE = "arn:aws:iam::123456789012:role/route53-from-gcp"


def test_a_federated_session_assumes_the_role_with_the_platforms_token(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)  # STS and S3 on moto
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMTIyMzM0NDU1In0.c2lnbmF0dXJl"

    env = {"ORCHESTRATOR_AWS_WEB_IDENTITY": "gcp", "ORCHESTRATOR_AWS_ROLE_ARN": ROLE}
    session = web_identity_session(env, token_loader=token)
    credentials = session.get_credentials()
    assert credentials.method == "assume-role-with-web-identity"
    bucket = moto_server.create_bucket()
    s3 = session.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key="orchestrator/vantage/gcp.json", Body=b"{}")
    assert calls == [1]  # one token for the session, until botocore refreshes it
    frozen = credentials.get_frozen_credentials()
    assert frozen.access_key != "testing"  # the assumed role's keys, not the environment's
    assert frozen.token


def test_without_the_variable_the_standard_chain_applies() -> None:
    assert web_identity_session({}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ORCHESTRATOR_AWS_WEB_IDENTITY": "gcp"}, r"\$ORCHESTRATOR_AWS_ROLE_ARN"),
        (
            {"ORCHESTRATOR_AWS_WEB_IDENTITY": "oci", "ORCHESTRATOR_AWS_ROLE_ARN": ROLE},
            r"'oci' is not gcp or azure",
        ),
    ],
)
def test_a_half_configured_federation_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        web_identity_session(env)
