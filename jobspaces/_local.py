"""A jobspace in a local directory, safe across processes on one host.

Create-only writes are a hard link of a fully written temporary file (``link(2)`` fails with EEXIST), so
an object appears whole or not at all. Compare-and-swap takes an ``flock`` on one of a fixed set of lock
files (chosen by the key's hash), compares the ETag and renames a new file into place. An ETag is the
file's inode, modification time and size; every write sets a modification time unique to the
nanosecond, so rewriting equal bytes still changes the ETag.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

from ._base import Jobspace, ObjectMeta, Timing
from ._errors import InvalidKey, JobspaceMissing, NotFound, PreconditionFailed

_RESERVED = ".qubits-local"
_STRIPES = 64
_clock_lock = threading.Lock()
_last_ns = 0


def _unique_ns() -> int:
    """A wall-clock nanosecond stamp that this process never hands out twice."""
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'


class LocalJobspace(Jobspace):
    """Objects are files under ``root``; bookkeeping lives in ``root/.qubits-local``."""

    idle_poll = (0.02, 0.25)

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True, timing: Timing | None = None) -> None:
        super().__init__(timing)
        self.root = Path(root).expanduser().absolute()
        self.url = f"file://{self.root}"
        self.local_dir = self.root
        if not self.root.is_dir():
            if not create:
                raise JobspaceMissing(f"no directory {self.root}: create it, or let qubits create it")
            self.root.mkdir(parents=True, exist_ok=True)
        self._meta = self.root / _RESERVED
        (self._meta / "tmp").mkdir(parents=True, exist_ok=True)
        (self._meta / "locks").mkdir(parents=True, exist_ok=True)
        self._thread_locks = [threading.Lock() for _ in range(_STRIPES)]

    # -- helpers -----------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        if key.split("/", 1)[0] == _RESERVED:
            raise InvalidKey(f"keys under {_RESERVED}/ are reserved", key=key)
        return self.root / key

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        stripe = zlib.crc32(key.encode()) % _STRIPES
        with self._thread_locks[stripe]:
            fd = os.open(self._meta / "locks" / f"{stripe:02d}", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _write_temp(self, data: bytes) -> Path:
        tmp = self._meta / "tmp" / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        stamp = _unique_ns()
        os.utime(tmp, ns=(stamp, stamp))
        return tmp

    def _ensure_parent(self, path: Path, key: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InvalidKey("a key cannot be both an object and a folder on a local jobspace", key=key) from None

    # -- raw operations ----------------------------------------------------------------------------
    async def _get(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key=key) from None
        except IsADirectoryError:
            raise NotFound(key=key) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(key=key)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks), _etag(st)

    async def _head(self, key: str) -> ObjectMeta:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(key=key) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(key=key)
        return ObjectMeta(key, _etag(st), st.st_size, st.st_mtime_ns / 1e9)

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        path = self._path(key)
        tmp = self._write_temp(data)
        try:
            self._ensure_parent(path, key)
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise PreconditionFailed("object exists already", key=key) from None
                except FileNotFoundError:  # the parent was pruned by a concurrent delete
                    self._ensure_parent(path, key)
                    try:
                        os.link(tmp, path)
                    except FileExistsError:
                        raise PreconditionFailed("object exists already", key=key) from None
                return _etag(os.stat(tmp))
            with self._locked(key):
                if if_match is not None:
                    try:
                        current = _etag(os.stat(path))
                    except (FileNotFoundError, NotADirectoryError):
                        raise PreconditionFailed("object is gone", key=key) from None
                    if current != if_match:
                        raise PreconditionFailed("ETag changed", key=key)
                try:
                    os.replace(tmp, path)
                except IsADirectoryError:
                    raise InvalidKey("a key cannot be both an object and a folder on a local jobspace", key=key) from None
                return _etag(os.stat(path))
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    async def _delete(self, key: str) -> None:
        path = self._path(key)
        with self._locked(key):
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                return
            except IsADirectoryError:
                return
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise
            parent = parent.parent

    async def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        for meta in self._walk(base, prefix, start_after):
            yield meta

    def _walk(self, rel: str, prefix: str, start_after: str | None) -> Iterator[ObjectMeta]:
        """Depth first, in global key order: a folder sorts as its name plus '/'."""
        directory = self.root / rel if rel else self.root
        try:
            with os.scandir(directory) as it:
                entries = []
                for entry in it:
                    if not rel and entry.name == _RESERVED:
                        continue
                    is_dir = entry.is_dir(follow_symlinks=False)
                    entries.append((rel + entry.name + ("/" if is_dir else ""), is_dir, entry))
        except (FileNotFoundError, NotADirectoryError):
            return
        entries.sort(key=lambda e: e[0])
        for name, is_dir, entry in entries:
            if is_dir:
                # Skip a folder unless keys under it can both match the prefix and follow start_after.
                if not (name.startswith(prefix) or prefix.startswith(name)):
                    continue
                if start_after and name <= start_after and not start_after.startswith(name):
                    continue
                yield from self._walk(name, prefix, start_after)
            else:
                if not name.startswith(prefix) or (start_after is not None and name <= start_after):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield ObjectMeta(name, _etag(st), st.st_size, st.st_mtime_ns / 1e9)
