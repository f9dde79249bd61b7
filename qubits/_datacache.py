"""A node's cache of content-addressed blobs (dataset chunks, pickled functions, big params) on disk.

One file per blob, named by its sha256, under ``$QUBITS_CACHE/data`` (the agent's cache folder). It is
shared by the agent (which fetches a task's chunks before the task starts) and the task's own process
(which reads them, and fetches a chunk itself only if it is missing), across tasks and jobs.

Bounded by a size cap (``QUBITS_DATA_CACHE_BYTES``, default 2 GiB) and evicted least recently used
first: a read touches the file's mtime. A file used within the last ``PIN_SECONDS`` is never evicted,
so a running task can rely on its chunk staying put; the cache may run over its cap for that long.
Writes are atomic (a temporary file renamed into place), so concurrent writers of one blob are safe:
the bytes are equal, and a reader never sees a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from pathlib import Path

from . import _layout as layout

DATA_CACHE_BYTES = 2 << 30
"""The default size cap of a node's data cache (override: QUBITS_DATA_CACHE_BYTES, e.g. 500M, 4G)."""
PIN_SECONDS = 60.0
"""A blob used this recently is never evicted (a running task may still open it)."""

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"500M"`` → bytes; plain digits are bytes. ValueError names the accepted forms."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (use bytes, or a number with K, M, G or T, like 500M)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def cache_cap() -> int:
    """The size cap from QUBITS_DATA_CACHE_BYTES, or the default."""
    raw = os.environ.get("QUBITS_DATA_CACHE_BYTES")
    return parse_size(raw) if raw else DATA_CACHE_BYTES


def check_digest(digest: str) -> str:
    """A blob name is a lowercase hex sha256; anything else is refused (it becomes a file name)."""
    if not _DIGEST.match(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest


class DataCache:
    """Blobs by sha256 in one folder, bounded, least recently used evicted first."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = cache_cap() if max_bytes is None else max_bytes
        self._estimate: int | None = None
        self.version = 0
        """Bumped by this process's puts and evictions (what ``has`` answers may change then)."""

    def path(self, digest: str) -> Path:
        return self.root / check_digest(digest)

    def has(self, digest: str) -> bool:
        """Whether the blob is here (a stat; no read)."""
        return os.path.exists(self.root / digest)

    def touch(self, digest: str) -> bool:
        """Mark the blob used now (for LRU); False if it is not here."""
        try:
            os.utime(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def read(self, digest: str) -> bytes | None:
        """The blob's bytes, or None if it is not here (or was evicted just now)."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            return None
        self.touch(digest)
        return data

    def put(self, digest: str, data: bytes, *, verify: bool = True) -> Path:
        """Store a blob (atomically); with ``verify``, refuse bytes that do not match the digest."""
        if verify and hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{layout.data_chunk(digest)}: the bytes fetched do not match their digest (corrupt object?)")
        target = self.path(digest)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{digest}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
        self.version += 1
        if self._estimate is not None:
            self._estimate += len(data)
        if self._estimate is None or self._estimate > self.max_bytes:
            self.evict()
        return target

    def size(self) -> int:
        """Bytes held now."""
        return sum(size for _, size, _ in self._entries())

    def digests(self) -> list[str]:
        """Every blob held now."""
        return [name for name, _, _ in self._entries()]

    def evict(self) -> int:
        """Remove least recently used blobs until under the cap; returns bytes freed."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        freed = 0
        if total > self.max_bytes:
            pinned_after = time.time() - PIN_SECONDS
            for name, size, mtime in sorted(entries, key=lambda e: e[2]):
                if total - freed <= self.max_bytes:
                    break
                if mtime >= pinned_after:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    (self.root / name).unlink()
                    freed += size
                    self.version += 1
        self._estimate = total - freed
        return freed

    def _entries(self) -> list[tuple[str, int, float]]:
        out = []
        try:
            with os.scandir(self.root) as it:
                for entry in it:
                    if not _DIGEST.match(entry.name):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat()
                        out.append((entry.name, st.st_size, st.st_mtime))
        except FileNotFoundError:
            return []
        return out
