"""Wake hints: one UDP datagram that tells an idle agent "look at the store now".

A hint carries no task data and no authority: the store stays the only truth, and an agent that gets one
only lists the ready index sooner than its idle poll would (at most once per HINT_MIN_GAP, however many
hints arrive). With QUBITS_SECRET set, a hint is ``MAGIC ts nonce hmac`` (HMAC-SHA256 over the rest);
an agent with the secret ignores unsigned hints, wrong signatures, and signed ones older than
HINT_MAX_AGE or replayed within it. The timestamp is a wall clock, but only to bound replay: agents whose
clocks disagree by more than HINT_MAX_AGE ignore each other's hints and are woken by their polls.

Sending never waits and never fails: a non-blocking ``sendto`` per address, errors ignored (a dead agent's
address, a firewall), because polling remains the fallback.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Iterable

import jobspaces
from jobspaces import Jobspace

from ._defaults import HINT_MAX_AGE, HINT_PEERS_TTL
from ._records import NodeInfo

log = logging.getLogger("qubits.hints")

MAGIC = b"qubits-hint/1"


def secret() -> bytes | None:
    """QUBITS_SECRET as bytes, or None when unset (the secret that signs jobs signs hints too)."""
    value = os.environ.get("QUBITS_SECRET")
    return value.encode() if value else None


def make_hint(key: bytes | None) -> bytes:
    """A hint datagram: bare without a secret, signed (with a timestamp and a nonce) with one."""
    if key is None:
        return MAGIC
    body = b"%s %.3f %s" % (MAGIC, time.time(), os.urandom(8).hex().encode())
    return body + b" " + hmac.new(key, body, hashlib.sha256).hexdigest().encode()


class HintCheck:
    """Decides whether a received datagram is a hint this agent honours."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self._nonces: dict[bytes, float] = {}

    def accept(self, data: bytes) -> bool:
        if self.key is None:
            return data.startswith(MAGIC)
        parts = data.split(b" ")
        if len(parts) != 4 or parts[0] != MAGIC:
            return False
        body = b" ".join(parts[:3])
        if not hmac.compare_digest(hmac.new(self.key, body, hashlib.sha256).hexdigest().encode(), parts[3]):
            return False
        try:
            sent = float(parts[1])
        except ValueError:
            return False
        now = time.time()
        if abs(now - sent) > HINT_MAX_AGE:
            return False
        for nonce, seen in list(self._nonces.items()):
            if now - seen > 2 * HINT_MAX_AGE:
                del self._nonces[nonce]
        if parts[2] in self._nonces:
            return False  # a replay
        self._nonces[parts[2]] = now
        return True


def parse_address(text: str) -> tuple[str, int] | None:
    """``ip:port`` or ``[ipv6]:port`` as published in a presence record; None if it is not one (no DNS
    lookups on a submit's path)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        return None
    return (host, number) if 0 < number < 65536 else None


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def send_hints(addresses: Iterable[tuple[str, int]], payload: bytes) -> int:
    """Send ``payload`` to each address without waiting; return how many sends the kernel took."""
    sent = 0
    socks: dict[int, socket.socket] = {}
    try:
        for host, port in addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socks.get(family)
            if sock is None:
                sock = socks[family] = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
            with contextlib.suppress(OSError):  # unreachable, refused, buffer full: polling covers it
                sock.sendto(payload, (host, port))
                sent += 1
    finally:
        for sock in socks.values():
            sock.close()
    return sent


def hintable(info: NodeInfo, age: float) -> bool:
    """Whether a presence record describes a live agent that takes work and hints. Its running tasks do
    not count: a busy agent's record is up to 15 s old (a task that took a second is long over), and a
    hint to an agent whose slots are full waits until one frees, then lists at once."""
    return bool(info.hint) and not info.draining and not info.paused and info.live(age)


class Hinter:
    """Finds the live agents of a jobspace that take hints (nodes/, cached HINT_PEERS_TTL) and hints each."""

    def __init__(self, js: Jobspace, exclude: str = "") -> None:
        self.js = js
        self.exclude = exclude
        """An agent's own name: it does not hint itself."""
        self._peers: list[tuple[str, int]] = []
        self._listed_at = float("-inf")
        self.sent = 0

    async def refresh(self, force: bool = False) -> None:
        """Read the agents' presence records again if the cached ones are old (or ``force``)."""
        if not force and time.monotonic() - self._listed_at < HINT_PEERS_TTL:
            return
        peers: list[tuple[str, int]] = []
        now = time.time()
        async for meta in self.js.list("nodes/"):
            try:
                data, _ = await self.js.get(meta.key)
                info = NodeInfo.from_json(data, meta.key)
            except jobspaces.NotFound:
                continue
            except Exception:  # noqa: BLE001 - a bad presence object costs its agent its hints, nothing more
                continue
            address = parse_address(info.hint) if info.hint else None
            if address is not None and info.name != self.exclude and hintable(info, max(0.0, now - meta.mtime)):
                peers.append(address)
        self._peers, self._listed_at = peers, time.monotonic()

    async def hint_idle(self) -> int:
        """Hint every live agent found (the idle ones list at once); never raises (hints are best effort)."""
        try:
            await self.refresh()
        except jobspaces.JobspaceError as exc:
            log.debug("could not read nodes/ for hints: %s", exc, extra={"action": "hint"})
            return 0
        if not self._peers:
            return 0
        n = send_hints(self._peers, make_hint(secret()))
        self.sent += n
        log.debug("hinted %d agents", n, extra={"action": "hint", "count": n})
        return n
