"""Secret references (``auth.token``): the forms accepted, and each store read for real where an
emulator exists (AWS Secrets Manager on moto, the environment); Google Secret Manager and Azure
Key Vault have no emulator here, so their readers are tested for their failures only (no
credentials: a ConfigError naming the reference, within the deadline)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import boto3
import pytest

from orchestrator.control.secrets import parse_secret_ref, read_secret
from orchestrator.core.errors import ConfigError
from orchestrator.demo.emulators import MotoServer

VALUE = "stored-token-0123456789abcdefghijklmnopqrstuvw"


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("aws-sm://ml-endpoint-api-token", ("ml-endpoint-api-token", None)),
        (
            "aws-sm://arn:aws:secretsmanager:eu-west-1:123456789012:secret:ml/api-token-AbCdEf",
            ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:ml/api-token-AbCdEf", "eu-west-1"),
        ),
        ("gcp-sm://projects/p-1/secrets/api-token", ("projects/p-1/secrets/api-token/versions/latest",)),
        (
            "gcp-sm://projects/p-1/secrets/api-token/versions/3",
            ("projects/p-1/secrets/api-token/versions/3",),
        ),
        ("azure-kv://MyVault/api-token", ("https://myvault.vault.azure.net", "api-token", None)),
        (
            "azure-kv://my-vault/api-token/0123456789abcdef0123456789abcdef",
            ("https://my-vault.vault.azure.net", "api-token", "0123456789abcdef0123456789abcdef"),
        ),
        ("env://API_TOKEN", ("API_TOKEN",)),
    ],
)
def test_each_form_of_reference_parses(text: str, parts: tuple[str | None, ...]) -> None:
    ref = parse_secret_ref(text)
    assert ref.parts == parts
    assert ref.text == text


@pytest.mark.parametrize(
    "text",
    [
        VALUE,  # the token itself, pasted in
        "https://vault.example/secret",
        "aws-sm://",
        "aws-sm://has space",
        "gcp-sm://my-secret",
        "gcp-sm://projects/p/secrets/s/versions/0",
        "gcp-sm://projects/p/secrets/s/versions/../../x",
        "azure-kv://vault",
        "azure-kv://v/s",  # a vault name of one character
        "azure-kv://vault/secret/not-a-version",
        "azure-kv://vault.evil.example/secret",
        "env://",
        "env://1ABC",
        "env://A-B",
    ],
)
def test_what_is_not_a_reference_is_refused_without_being_quoted(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_secret_ref(text)
    assert VALUE not in str(caught.value)


def test_an_environment_variable_is_read_and_an_unset_one_named() -> None:
    assert read_secret(parse_secret_ref("env://T"), environ={"T": VALUE}) == VALUE
    for environ in ({}, {"T": ""}):
        with pytest.raises(ConfigError, match="env://T: the environment variable is not set"):
            read_secret(parse_secret_ref("env://T"), environ=environ)


@pytest.fixture
def secrets_manager(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Secrets Manager on moto, found the way the reader finds it (botocore's per-service endpoint
    variable), with a region."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client("secretsmanager", endpoint_url=moto_server.endpoint, region_name="us-east-1")


def test_a_secrets_manager_secret_is_read_by_name_and_by_arn(secrets_manager: object) -> None:
    client: object = secrets_manager
    created = client.create_secret(Name="api-token-by-name", SecretString=VALUE)  # type: ignore[attr-defined]
    assert read_secret(parse_secret_ref("aws-sm://api-token-by-name")) == VALUE
    assert read_secret(parse_secret_ref(f"aws-sm://{created['ARN']}")) == VALUE
    # A rotation: the reference reads the current version.
    client.put_secret_value(SecretId="api-token-by-name", SecretString=VALUE[::-1])  # type: ignore[attr-defined]
    assert read_secret(parse_secret_ref("aws-sm://api-token-by-name")) == VALUE[::-1]


def test_a_missing_or_binary_secret_is_a_configuration_error_naming_it(secrets_manager: object) -> None:
    with pytest.raises(
        ConfigError, match=r"secret aws-sm://no-such-secret: cannot read it: ResourceNotFound"
    ):
        read_secret(parse_secret_ref("aws-sm://no-such-secret"))
    secrets_manager.create_secret(Name="binary-token", SecretBinary=VALUE.encode())  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="binary data") as caught:
        read_secret(parse_secret_ref("aws-sm://binary-token"))
    assert VALUE not in str(caught.value)


def test_a_store_that_never_answers_is_given_up_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the backlog) and never answers
    stop = threading.Event()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        with pytest.raises(ConfigError, match=r"did not answer within 0\.5 s"):
            read_secret(parse_secret_ref("aws-sm://api-token"), deadline_s=0.5)
    finally:
        stop.set()
        silent.close()


def test_google_secret_manager_without_credentials_names_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No emulator of Secret Manager exists: this checks the reader's failure path only.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    with pytest.raises(ConfigError, match=r"secret gcp-sm://projects/p-1/secrets/api-token: "):
        read_secret(parse_secret_ref("gcp-sm://projects/p-1/secrets/api-token"))


def test_azure_key_vault_without_credentials_names_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # No emulator of Key Vault exists here: this checks the reader's failure path only. Managed
    # identity's metadata endpoint is pointed at a closed port so that no real one is asked.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/token")
    monkeypatch.setenv("IMDS_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PATH", "/nonexistent")  # no `az`, no `azd`, no PowerShell
    with pytest.raises(ConfigError, match=r"secret azure-kv://my-vault/api-token: "):
        read_secret(parse_secret_ref("azure-kv://my-vault/api-token"))
