"""Any other protocol fsspec knows, for the data plane only.

fsspec's generic create is check-then-write, so these jobspaces refuse conditional writes: they can
hold datasets and results, never leases.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ._base import Jobspace, ObjectMeta, Timing
from ._errors import ConditionalWritesUnsupported, InvalidURL, JobspaceError, NotFound


class FsspecJobspace(Jobspace):
    """Unconditional reads and writes through an fsspec filesystem."""

    conditional_writes = False

    def __init__(self, url: str, timing: Timing | None = None, **storage_options: Any) -> None:
        super().__init__(timing)
        import fsspec

        try:
            self._fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except (ImportError, ValueError) as exc:
            raise InvalidURL(f"{url}: {exc}") from None
        except OSError as exc:  # a server named in the URL that does not answer (ftp://, sftp:// …)
            raise JobspaceError(f"{url}: unreachable; check the host and the network ({exc})") from None
        self._root = root.rstrip("/")
        self.url = url

    def _p(self, key: str) -> str:
        return f"{self._root}/{key}" if self._root else key

    async def _get(self, key: str) -> tuple[bytes, str]:
        try:
            data = await asyncio.to_thread(self._fs.cat_file, self._p(key))
            info = await asyncio.to_thread(self._fs.info, self._p(key))
        except FileNotFoundError:
            raise NotFound(key=key) from None
        return bytes(data), str(info.get("ETag") or info.get("mtime") or len(data))

    async def _head(self, key: str) -> ObjectMeta:
        try:
            info = await asyncio.to_thread(self._fs.info, self._p(key))
        except FileNotFoundError:
            raise NotFound(key=key) from None
        return ObjectMeta(key, str(info.get("ETag") or info.get("mtime") or ""), int(info.get("size") or 0), 0.0)

    async def _put(self, key: str, data: bytes, *, if_absent: bool, if_match: str | None) -> str:
        if if_absent or if_match is not None:
            raise ConditionalWritesUnsupported(
                f"{self.url}: fsspec cannot write conditionally here, so it cannot hold leases; "
                "use it for data only, or use s3://, gs://, az:// or a local directory as the jobspace"
            )
        await asyncio.to_thread(self._fs.pipe_file, self._p(key), data)
        return (await self._head(key)).etag

    async def _delete(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._fs.rm_file, self._p(key))
        except FileNotFoundError:
            return

    async def _list(self, prefix: str, start_after: str | None) -> AsyncIterator[ObjectMeta]:
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            found = await asyncio.to_thread(self._fs.find, self._p(folder) if folder else self._root, detail=True)
        except FileNotFoundError:
            return
        cut = len(self._root) + 1 if self._root else 0
        for path in sorted(found):
            key = path[cut:]
            if key.startswith(prefix) and (start_after is None or key > start_after):
                info = found[path]
                yield ObjectMeta(key, str(info.get("ETag") or ""), int(info.get("size") or 0), 0.0)
