"""What wakes an idle agent before its next poll: kernel file notifications, or wake hints over UDP.

On a local directory the agent watches the jobspace's root through inotify (``inotify_simple``): every
submit rewrites the ``wake`` object there, so the agent hears of it within a millisecond. Where the
kernel cannot see other writers (NFS, SMB, FUSE and other network or user-space file systems) or
inotify is missing, the agent polls, as it does when told ``--notify off``.

On object stores (and local directories that cannot notify) the agent listens for wake hints on a UDP
port where the operator says (``--hint-listen``; loopback by default) and publishes that address in its
presence record; submitters hint idle agents after writing their tasks (``qubits._hints``). A hint only
makes the agent list the ready index now, at most once per HINT_MIN_GAP.

Whatever wakes it, the agent decides everything from the store; a lost notification or hint only costs
latency, up to the idle poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qubits.protocol import HINT_LISTEN, HINT_MIN_GAP, HINT_PORT, HintCheck, format_address, layout, secret

log = logging.getLogger("qubits.agent")

NO_NOTIFY_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs",
    "beegfs", "ocfs2", "gfs2", "davfs", "sshfs", "virtiofs", "vboxsf", "vmhgfs",
})
"""File systems whose other writers (other hosts, a host's share) the local kernel does not see."""


def fs_type(path: Path, mounts: str | None = None) -> str:
    """The file system type of the mount holding ``path`` (from /proc/mounts), or '' if unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def notify_refusal(path: Path, mounts: str | None = None) -> str | None:
    """Why file notifications cannot be trusted for ``path``; None when they can."""
    if not sys.platform.startswith("linux"):
        return "file notifications are used on Linux only"
    kind = fs_type(path, mounts)
    if kind in NO_NOTIFY_FS or kind.startswith("fuse"):
        return f"{path} is on {kind}, where other hosts' writes raise no notification"
    return None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST[:PORT]``, ``[IPV6]:PORT`` or ``:PORT`` (loopback) into a bind address; ValueError if not."""
    host, port = text, str(HINT_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    number = int(port)
    if not 0 <= number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host or HINT_LISTEN, number


class _HintProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: WakeSources) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner.hint_received(data)


class WakeSources:
    """The wake sources of one agent; ``on_wake`` is called (from the event loop) when work may be there."""

    def __init__(self, on_wake: Callable[[], None], *, local_dir: Path | None, notify: bool = True,
                 hint_listen: str | None = HINT_LISTEN, count: Callable[[str], None] | None = None) -> None:
        self.on_wake = on_wake
        self.count = count or (lambda name: None)
        self.local_dir = local_dir
        self.notify_wanted = notify
        self.hint_listen = hint_listen
        self.mode = "poll"
        """'notify', 'hint' or 'poll': what the presence record and `qubits nodes` show."""
        self.hint_address = ""
        self.why_poll = ""
        self._check = HintCheck(secret())
        self._inotify: Any = None
        self._transport: asyncio.DatagramTransport | None = None
        self._last_hint = float("-inf")
        self._deferred: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        if self.local_dir is not None and self.notify_wanted and self._start_notify(self.local_dir):
            self.mode = "notify"
            return  # submitters' wake writes reach us through the kernel: no port needed
        if self.hint_listen:
            await self._start_hints(self.hint_listen)

    def _start_notify(self, root: Path) -> bool:
        refusal = notify_refusal(root)
        if refusal is None:
            try:
                from inotify_simple import INotify, flags
            except ImportError:
                refusal = "inotify_simple is not installed"
        if refusal is not None:
            self.why_poll = refusal
            log.info("polling for work: %s", refusal, extra={"action": "wake", "reason": refusal})
            return False
        try:
            ino = INotify()
            # Local puts rename a whole file into place (MOVED_TO); CLOSE_WRITE covers other writers.
            ino.add_watch(str(root), flags.MOVED_TO | flags.CLOSE_WRITE | flags.CREATE)
        except OSError as exc:  # out of watches or instances
            self.why_poll = f"inotify failed: {exc}"
            log.warning("polling for work: inotify failed: %s", exc, extra={"action": "wake"})
            return False
        self._inotify = ino
        asyncio.get_running_loop().add_reader(ino.fileno(), self._notified)
        return True

    def _notified(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            return
        if any(e.name == layout.WAKE for e in events):
            self.count("notifications")
            self.on_wake()

    async def _start_hints(self, listen: str) -> None:
        host, port = parse_listen(listen)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _HintProtocol(self), local_addr=(host, port))
        except OSError as exc:
            self.why_poll = f"cannot listen for hints on {listen}: {exc}"
            log.warning("polling for work: %s", self.why_poll, extra={"action": "wake"})
            return
        self._transport = transport
        bound_host, bound_port = transport.get_extra_info("sockname")[:2]
        if bound_host in ("0.0.0.0", "::"):  # every interface, as the operator asked: publish this host's address
            with contextlib.suppress(OSError):
                bound_host = socket.gethostbyname(socket.gethostname())
        self.hint_address = format_address(bound_host, bound_port)
        self.mode = "hint"
        log.info("listening for wake hints on %s", self.hint_address, extra={"action": "wake"})

    def hint_received(self, data: bytes) -> None:
        if not self._check.accept(data):
            self.count("hints_ignored")
            return
        self.count("hints_accepted")
        now = time.monotonic()
        if now - self._last_hint >= HINT_MIN_GAP:
            self._last_hint = now
            self.on_wake()
        elif self._deferred is None:
            # Within the gap: one wake at its end, so a hint for work written after the last listing
            # is not lost, and a flood still costs one listing per gap.
            self._deferred = asyncio.get_running_loop().call_at(
                asyncio.get_running_loop().time() + self._last_hint + HINT_MIN_GAP - now, self._deferred_wake)

    def _deferred_wake(self) -> None:
        self._deferred = None
        self._last_hint = time.monotonic()
        self.on_wake()

    def close(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
        if self._transport is not None:
            self._transport.close()
        if self._inotify is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._inotify.fileno())
            self._inotify.close()
