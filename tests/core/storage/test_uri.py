"""Storage URIs and ``open_storage``: parsing, bad input, settings, lazy SDK imports, and the
standard environment variables that point each SDK at an endpoint."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.core.errors import ConfigError
from orchestrator.core.storage import NO_WAIT_RETRY, StorageURI, open_storage, parse_uri
from orchestrator.core.storage.aws import S3Storage
from orchestrator.core.storage.azure import AzureStorage
from orchestrator.core.storage.gcp import GCSStorage
from orchestrator.core.storage.local import LocalStorage
from orchestrator.demo.emulators import Azurite, GcsEmulator, MotoServer


@pytest.mark.parametrize(
    ("uri", "parsed", "text"),
    [
        ("s3://bucket/a/b", StorageURI("s3", "bucket", "a/b"), "s3://bucket/a/b"),
        ("s3://bucket/a/b/", StorageURI("s3", "bucket", "a/b"), "s3://bucket/a/b"),
        ("s3://bucket", StorageURI("s3", "bucket", ""), "s3://bucket"),
        ("s3://bucket/", StorageURI("s3", "bucket", ""), "s3://bucket"),
        ("gs://my-bucket.example/models", StorageURI("gs", "my-bucket.example", "models"), None),
        ("az://container/x", StorageURI("az", "container", "x"), None),
        ("S3://bucket/x", StorageURI("s3", "bucket", "x"), "s3://bucket/x"),
        ("file:///srv/store", StorageURI("file", "", "/srv/store"), "file:///srv/store"),
        ("file://localhost/srv/store/", StorageURI("file", "", "/srv/store"), "file:///srv/store"),
        ("file:///srv/with%20space", StorageURI("file", "", "/srv/with space"), None),
        ("/srv/a/../store", StorageURI("file", "", "/srv/store"), "file:///srv/store"),
    ],
)
def test_parse(uri: str, parsed: StorageURI, text: str | None) -> None:
    assert parse_uri(uri) == parsed
    assert str(parsed) == (text or uri)


def test_a_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_uri("store/sub") == StorageURI("file", "", f"{tmp_path}/store/sub")


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("", "empty"),
        (" s3://bucket", "whitespace"),
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("ftp://host/x", "scheme 'ftp'"),
        ("s3:bucket/x", "expected SCHEME://"),
        ("s3://Bucket/x", "not a bucket"),
        ("s3://user@bucket/x", "not a bucket"),
        ("s3://bucket:9000/x", "not a bucket"),
        ("s3://bucket/a//b", "empty, '.' or '..'"),
        ("gs://bucket/../x", "empty, '.' or '..'"),
        ("s3://bucket/x?versionId=1", "'?' and '#'"),
        ("az://container/x#frag", "'?' and '#'"),
        ("file://server/share", "no host"),
        ("file:relative", "expected SCHEME://"),
    ],
)
def test_bad_uris_are_config_errors_naming_the_uri(uri: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_storage(uri)
    assert repr(uri) in str(caught.value)
    assert why in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "settings", "why"),
    [
        ("s3://ab", {}, "not a valid S3 bucket name"),
        ("s3://xn--bucket", {}, "not a valid S3 bucket name"),
        ("gs://goog-bucket", {}, "not a valid GCS bucket name"),
        ("az://under_score", {"connection_string": "AccountName=a"}, "not a valid Azure container name"),
        ("az://dou--ble", {"connection_string": "AccountName=a"}, "not a valid Azure container name"),
        ("s3://bucket", {"endpoint_url": "localhost:9000"}, "must start with http"),
        ("s3://bucket", {"part_size": str(1024 * 1024)}, "at least 5 MiB"),
        ("gs://bucket", {"part_size": str(5 * 1024 * 1024 + 1)}, "multiple of 256 KiB"),
        ("s3://bucket", {"page_size": "many"}, "page_size='many' is not a number"),
        ("s3://bucket", {"read_timeout": "-1"}, "must be positive"),
        ("s3://bucket", {"endpoint": "http://x"}, "unknown setting(s) endpoint"),
        ("file:///tmp", {"region": "eu-west-1"}, "unknown setting(s) region"),
    ],
)
def test_bad_settings_are_config_errors(uri: str, settings: dict[str, str], why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_storage(uri, settings=settings)
    assert why in str(caught.value)
    assert uri in str(caught.value)


def test_each_scheme_opens_its_backend_without_sending_anything() -> None:
    conn = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/a;"
    opened = [
        open_storage("file:///nonexistent/dir"),
        open_storage("s3://bucket/p"),
        open_storage("gs://bucket/p"),
        open_storage("az://container/p", settings={"connection_string": conn}),
    ]
    assert [type(s) for s in opened] == [LocalStorage, S3Storage, GCSStorage, AzureStorage]
    assert [s.uri for s in opened] == [
        "file:///nonexistent/dir",
        "s3://bucket/p",
        "gs://bucket/p",
        "az://container/p",
    ]
    assert all(sum(s.stats.values()) == 0 for s in opened)
    for storage in opened:
        storage.close()


def test_azure_without_an_account_names_what_to_set() -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING") as caught:
        open_storage("az://container")
    assert "az://container" in str(caught.value)


def test_azure_account_url_without_azure_identity_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if not installed
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "myaccount")
    with pytest.raises(ConfigError, match="azure-identity") as caught:
        open_storage("az://container")
    assert "https://myaccount.blob.core.windows.net" in str(caught.value)
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "module", "extra"), [("s3://b-1", "boto3", "aws"), ("gs://b-1", "google.cloud.storage", "gcp")]
)
def test_a_missing_sdk_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, uri: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError, match=rf"pip install 'ml-orchestrator\[{extra}\]'"):
        open_storage(uri)


def test_importing_the_package_imports_no_cloud_sdk(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import orchestrator.core.storage
        from orchestrator.core.storage import open_storage
        with open_storage({str(tmp_path)!r}) as storage:
            storage.put("k", b"v", sha256={hashlib.sha256(b"v").hexdigest()!r})
            assert [i.key for i in storage.list()] == ["k"]
        sdks = ("boto3", "botocore", "s3transfer", "google", "azure")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in sdks)
        assert not loaded, loaded
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --- the standard environment variables (each SDK's own way of finding an endpoint) ---------


def _round_trip(uri: str) -> None:
    with open_storage(uri, retry=NO_WAIT_RETRY) as storage:
        storage.put("k", b"v", sha256=hashlib.sha256(b"v").hexdigest())
        assert storage.get("k") == b"v"


@pytest.mark.emulator
@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
def test_aws_endpoint_variables(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, moto_server.endpoint)
    _round_trip(f"s3://{moto_server.create_bucket()}/p")


@pytest.mark.emulator
@pytest.mark.parametrize("with_scheme", [True, False])
def test_storage_emulator_host(
    gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch, with_scheme: bool
) -> None:
    host = gcs_emulator.endpoint if with_scheme else gcs_emulator.endpoint.removeprefix("http://")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    _round_trip(f"gs://{gcs_emulator.create_bucket()}/p")


@pytest.mark.emulator
def test_azure_connection_string_variable(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    _round_trip(f"az://{azurite.create_bucket()}/p")


@pytest.mark.parametrize("uri", ["s3://b-1/a/b", "file:///srv/with%20space/%2541", "az://c-1"])
def test_str_round_trips(uri: str) -> None:
    assert str(parse_uri(str(parse_uri(uri)))) == uri
    assert parse_uri(str(parse_uri(uri))) == parse_uri(uri)


def test_azure_account_from_the_environment_uses_the_managed_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How the endpoint runs in Azure: an account name and an identity, no key (nothing is sent)."""
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "mlartifacts")
    storage = open_storage("az://models")
    assert storage.endpoint == "https://mlartifacts.blob.core.windows.net"
