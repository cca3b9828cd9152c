"""Cloud emulators on free loopback ports, for the demo and the tests: started and stopped here.

    with start_moto(log_dir) as s3:                 # moto_server (S3); in_process=True for a thread
        bucket = s3.create_bucket()
        storage = open_storage(s3.uri(bucket, "prefix"), settings=s3.settings)

Each emulator is a subprocess by default, so a test can ``kill()`` it (SIGKILL) in the middle of
a sync. ``settings`` are explicit ``open_storage`` settings; ``env`` holds the standard variables
(``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``, ``AZURE_STORAGE_CONNECTION_STRING``) for tests
of the code paths that read them. ``client`` is the raw SDK client, independent of the code under
test: buckets are created with it, and ``tamper()`` changes an object behind our back.

Servers run in their own session, so a Ctrl-C at the terminal reaches only the caller, which stops
them in ``finally``. A missing emulator raises :class:`EmulatorUnavailable` saying how to install
it; the demo prints that, and the fixtures in ``tests/conftest.py`` turn it into a failure, never a
skip. The commands that install them and the known gaps of each emulator are in
``docs/development.md``.
"""

from __future__ import annotations

import abc
import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from orchestrator.core.contract import ENV_API_TOKENS
from orchestrator.demo.processes import free_port

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_COMMAND",
    "AZURITE_KEY",
    "Azurite",
    "Emulator",
    "EmulatorUnavailable",
    "GcsEmulator",
    "MotoServer",
    "azurite_binary",
    "closed_port",
    "free_port",
    "start_azurite",
    "start_gcs",
    "start_moto",
    "unique_bucket_name",
]

AZURITE_COMMAND = "azurite-blob"  # Azurite's blob service alone, as npm installs it
AZURITE_VERSION = "3.35.0"  # scripts/bootstrap.sh installs this one (3.37 needs Node.js 22)


def azurite_binary() -> Path | None:
    """Azurite's ``azurite-blob``: ``$AZURITE_BIN`` when set, else the one beside this Python's
    console scripts (scripts/bootstrap.sh links it into the virtualenv's ``bin``), else the first
    on ``PATH``; None when there is none (:meth:`Azurite.start` says how to get it)."""
    if os.environ.get("AZURITE_BIN"):
        return Path(os.environ["AZURITE_BIN"])
    beside = Path(sysconfig.get_path("scripts")) / AZURITE_COMMAND
    if beside.exists():
        return beside
    on_path = shutil.which(AZURITE_COMMAND)
    return Path(on_path) if on_path else None


NODE_MAJOR = 20
# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
HOST = "127.0.0.1"
# Each server is ready in under 1 s on these machines; 20 s allows a loaded CI runner.
READY_TIMEOUT = 20.0
_INSTALL_HINT = "run `make test` (or scripts/bootstrap.sh), which installs every emulator"


class EmulatorUnavailable(RuntimeError):
    """An emulator is not installed or did not start; the message says what to do."""


def closed_port() -> int:
    """A loopback port that refuses connections, for "endpoint down" tests."""
    return free_port()


def unique_bucket_name() -> str:
    """Valid on S3, GCS and Azure alike: lowercase letters, digits and '-', 3 to 63 characters."""
    return f"t-{uuid.uuid4().hex[:20]}"


class Emulator(abc.ABC):
    """One emulator server process (or thread) on a loopback port."""

    scheme: ClassVar[str]
    name: ClassVar[str]

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    @abc.abstractmethod
    def settings(self) -> dict[str, str]:
        """Explicit ``open_storage`` settings reaching this emulator."""

    @property
    @abc.abstractmethod
    def env(self) -> dict[str, str]:
        """The standard environment variables that point an SDK at this emulator."""

    @abc.abstractmethod
    def argv(self) -> list[str]: ...

    @abc.abstractmethod
    def _make_client(self) -> Any: ...

    @abc.abstractmethod
    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket or container (a fresh unique one by default); returns its name."""

    @abc.abstractmethod
    def tamper(self, bucket: str, name: str, data: bytes) -> None:
        """Replace an object's bytes behind the storage layer's back, keeping its metadata
        (so its recorded sha256 no longer matches): what ``verify --deep`` must catch."""

    @property
    def client(self) -> Any:
        """The raw SDK client for this emulator (not the code under test)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def uri(self, bucket: str, prefix: str = "") -> str:
        return f"{self.scheme}://{bucket}/{prefix}" if prefix else f"{self.scheme}://{bucket}"

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.log_path.parent,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def stop(self) -> None:
        """Stop the server and release the client; safe to call twice."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; the port then refuses connections."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running as a process; start it with in_process=False")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise EmulatorUnavailable(
                    f"{self.name} exited with status {self.process.returncode} before answering on "
                    f"{self.endpoint}; its output:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint}/", timeout=1):  # loopback http
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means it is serving
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmulatorUnavailable(
                        f"{self.name} did not answer on {self.endpoint} within {READY_TIMEOUT:.0f} s; "
                        f"its output:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"


class MotoServer(Emulator):
    """moto's S3 server: ``moto_server`` as a process, or ``ThreadedMotoServer`` in this one."""

    scheme = "s3"
    name = "moto (S3)"

    def __init__(self, port: int, log_path: Path, *, in_process: bool = False) -> None:
        super().__init__(port, log_path)
        self.in_process = in_process
        self._thread_server: Any = None

    @property
    def settings(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint, "region": "us-east-1"}

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint}

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)]

    def start(self) -> Self:
        if not self.in_process:
            return super().start()
        from moto.server import ThreadedMotoServer

        self._thread_server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._thread_server.start()
        self._wait_ready()
        return self

    def stop(self) -> None:
        super().stop()
        if self._thread_server is not None:
            self._thread_server.stop()
            self._thread_server = None

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # moto accepts any credentials
            # A few retries: this client sets the scene, and a loaded runner may drop a connection.
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 3}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_bucket_name()
        self.client.create_bucket(Bucket=name)
        return name

    def tamper(self, bucket: str, name: str, data: bytes) -> None:
        head = self.client.head_object(Bucket=bucket, Key=name)
        self.client.put_object(Bucket=bucket, Key=name, Body=data, Metadata=head["Metadata"])

    def create_zone(self, domain: str) -> str:
        """A Route 53 hosted zone for ``domain`` on this server; returns its id (without /hostedzone/)."""
        import boto3

        route53 = boto3.session.Session().client(
            "route53",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        zone = route53.create_hosted_zone(Name=domain, CallerReference=uuid.uuid4().hex)["HostedZone"]
        return str(zone["Id"]).rsplit("/", 1)[-1]

    def etag(self, bucket: str, name: str) -> str:
        etag: str = self.client.head_object(Bucket=bucket, Key=name)["ETag"]
        return etag


# gcp-storage-emulator serves one connection at a time (``http.server.HTTPServer``) and waits on
# it without a timeout, so one client that connects and then stalls (a job stopped with SIGSTOP, a
# process killed mid-request) blocks every other client until the emulator is restarted; real GCS
# does not. The launcher gives each connection an idle timeout (``socket.settimeout`` through
# ``StreamRequestHandler.timeout``, per read, so a slow upload that keeps sending is not cut): a
# stalled client then costs the others at most this long, a few of the control plane's rounds.
GCS_IDLE_TIMEOUT_S = 3.0
_GCS_LAUNCHER = (
    "import runpy, gcp_storage_emulator.server as s; "
    f"s.RequestHandler.timeout = {GCS_IDLE_TIMEOUT_S}; "
    "runpy.run_module('gcp_storage_emulator', run_name='__main__', alter_sys=True)"
)


class GcsEmulator(Emulator):
    """gcp-storage-emulator, in memory. It ignores preconditions and page sizes (docs/development.md)."""

    scheme = "gs"
    name = "gcp-storage-emulator (GCS)"

    @property
    def settings(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint, "project": "test"}

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def argv(self) -> list[str]:
        # The interpreter rather than the console script: works from any virtualenv layout.
        return [sys.executable, "-c", _GCS_LAUNCHER, "start", "--host", HOST,
                "--port", str(self.port), "--no-store-on-disk", "--quiet"]  # fmt: skip

    def _make_client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.endpoint},
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_bucket_name()
        self.client.create_bucket(name)
        return name

    def tamper(self, bucket: str, name: str, data: bytes) -> None:
        blob = self.client.bucket(bucket).get_blob(name)
        metadata = blob.metadata
        blob = self.client.bucket(bucket).blob(name)
        blob.metadata = metadata
        blob.upload_from_string(data)


class Azurite(Emulator):
    """Azurite's blob service (npm), persisting under ``location``."""

    scheme = "az"
    name = "Azurite (Azure Blob)"

    def __init__(self, port: int, log_path: Path, *, location: Path, binary: Path | None = None) -> None:
        """``binary``: Azurite's ``azurite-blob`` (default: :func:`azurite_binary`)."""
        super().__init__(port, log_path)
        self.location = location
        self.binary = binary if binary is not None else azurite_binary()

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};"
        )

    @property
    def settings(self) -> dict[str, str]:
        return {"connection_string": self.connection_string}

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def argv(self) -> list[str]:
        return [str(self.binary), "--blobHost", HOST, "--blobPort", str(self.port),
                "--location", str(self.location), "--skipApiVersionCheck", "--loose", "--silent",
                "--disableTelemetry"]  # fmt: skip

    def start(self) -> Self:
        if self.binary is None or not self.binary.exists():
            where = (
                f"no {self.binary}"
                if self.binary is not None
                else f"no {AZURITE_COMMAND} beside {sys.executable} nor on PATH, and AZURITE_BIN is not set"
            )
            raise EmulatorUnavailable(
                f"Azurite is not installed ({where}): {_INSTALL_HINT} (it installs azurite@{AZURITE_VERSION} "
                f"from npm and links {AZURITE_COMMAND} into the virtualenv; needs Node.js 20+), or install "
                f"it yourself (`npm install -g azurite@{AZURITE_VERSION}`) and put {AZURITE_COMMAND} on "
                "PATH or its path in AZURITE_BIN"
            )
        node = shutil.which("node")
        if node is None:
            raise EmulatorUnavailable(f"Azurite needs Node.js 20+ on PATH: install it, then {_INSTALL_HINT}")
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout
        major = version.strip().lstrip("v").split(".")[0]
        if major.isdigit() and int(major) < NODE_MAJOR:
            raise EmulatorUnavailable(
                f"Azurite {AZURITE_VERSION} needs Node.js {NODE_MAJOR}+, and {node} is {version.strip()}: "
                "install a newer Node.js"
            )
        self.location.mkdir(parents=True, exist_ok=True)
        return super().start()

    def _make_client(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        # A few quick retries (a dropped keep-alive connection on a loaded runner); this client
        # sets the scene, and the code under test brings its own retry policy.
        return BlobServiceClient.from_connection_string(
            self.connection_string, retry_total=3, retry_backoff_factor=0.1
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or unique_bucket_name()
        self.client.create_container(name)
        return name

    def tamper(self, bucket: str, name: str, data: bytes) -> None:
        blob = self.client.get_blob_client(bucket, name)
        metadata = blob.get_blob_properties().metadata
        blob.upload_blob(data, overwrite=True, metadata=metadata)

    def block_count(self, bucket: str, name: str) -> int:
        committed, _ = self.client.get_blob_client(bucket, name).get_block_list("committed")
        return len(committed)


def _require_module(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise EmulatorUnavailable(f"{package} is not installed in {sys.prefix}: {_INSTALL_HINT}")


def start_moto(log_dir: Path, *, in_process: bool = False, port: int | None = None) -> MotoServer:
    """Start moto's S3 server; a process (killable) unless ``in_process``."""
    _require_module("moto.server", "moto[server]")
    return MotoServer(port or free_port(), log_dir / "moto.log", in_process=in_process).start()


def start_gcs(log_dir: Path, *, port: int | None = None) -> GcsEmulator:
    """Start gcp-storage-emulator (in memory) as a process."""
    _require_module("gcp_storage_emulator", "gcp-storage-emulator")
    return GcsEmulator(port or free_port(), log_dir / "gcs.log").start()


def start_azurite(log_dir: Path, *, port: int | None = None, binary: Path | None = None) -> Azurite:
    """Start Azurite's blob service as a process, storing under ``log_dir/azurite``."""
    return Azurite(
        port or free_port(), log_dir / "azurite.log", location=log_dir / "azurite", binary=binary
    ).start()


def scrubbed_environ(environ: dict[str, str] | os._Environ[str]) -> tuple[list[str], dict[str, str]]:
    """What to remove from and set in ``environ`` so no SDK can reach a real cloud account:
    every cloud variable goes (credentials, profiles, endpoints, AWS_CA_BUNDLE), fake AWS
    credentials and a region come in, and loopback bypasses any proxy. The API tokens go too
    (``API_TOKEN``, which an operator may have exported to run ``orchestrator health``): the
    demo's endpoints are open and its probes send none."""
    prefixes = ("AWS_", "AZURE_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "BOTO_")
    remove = [name for name in environ if name.startswith(prefixes)]
    others = ("STORAGE_EMULATOR_HOST", "GCE_METADATA_HOST", *ENV_API_TOKENS)
    remove += [name for name in others if name in environ]
    no_proxy = ",".join(filter(None, [environ.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    setting = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # No ~/.aws files and no instance-metadata probing: only the variables above count.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }
    return remove, setting
