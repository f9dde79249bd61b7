"""The stores a run measures: fresh, empty jobspaces on demand, and the servers behind them."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from jobspaces import MemoryJobspace

from ._servers import DUMMY_AWS, Moto, Seaweed, Server, Unavailable

STORES = ("memory", "local", "moto", "seaweed")
"""Every store the benchmark knows, in the order they are run."""


def use_dummy_aws() -> None:
    """Local servers take any credentials; never send real ones to them (and never read them)."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ.update(DUMMY_AWS)


class Store:
    """One kind of store: ``fresh_url()`` gives an empty jobspace on it."""

    name = ""
    in_process_only = False
    """memory:// lives in one process: scenarios with agent processes skip it."""
    server: Server | None = None

    def fresh_url(self) -> str:
        raise NotImplementedError

    def discard(self, url: str) -> None:
        """Free what ``url`` holds (best effort)."""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class MemoryStore(Store):
    name = "memory"
    in_process_only = True

    def fresh_url(self) -> str:
        return f"memory://bench-{uuid.uuid4().hex[:10]}"

    def discard(self, url: str) -> None:
        MemoryJobspace.forget(url.removeprefix("memory://"))


class LocalStore(Store):
    name = "local"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="qubits-bench-local-"))

    def fresh_url(self) -> str:
        return f"file://{self.root / uuid.uuid4().hex[:10]}"

    def discard(self, url: str) -> None:
        shutil.rmtree(url.removeprefix("file://"), ignore_errors=True)

    def stop(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class MotoStore(Store):
    """moto_server; a fresh bucket per URL. ``restart()`` gives a fresh server (its memory only grows)."""

    name = "moto"

    def __init__(self) -> None:
        self.server: Moto | None = Moto().start()  # type: ignore[assignment]
        self.last_bucket = ""

    @property
    def moto(self) -> Moto:
        assert isinstance(self.server, Moto)
        return self.server

    def restart(self) -> None:
        self.stop()
        self.server = Moto().start()

    def fresh_url(self) -> str:
        self.last_bucket = self.moto.create_bucket(f"bench-{uuid.uuid4().hex[:10]}")
        return self.moto.url(self.last_bucket, "js")

    def discard(self, url: str) -> None:
        pass  # moto keeps it until the server stops; restart() frees it

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "endpoint": self.moto.endpoint}


class SeaweedStore(Store):
    """SeaweedFS ``weed mini``; a fresh prefix of its one bucket per URL."""

    name = "seaweed"

    def __init__(self) -> None:
        self.server = Seaweed().start()

    def fresh_url(self) -> str:
        assert isinstance(self.server, Seaweed)
        return self.server.url(f"bench-{uuid.uuid4().hex[:10]}")


def open_store(name: str) -> Store:
    """Start the store ``name``; Unavailable (with the reason) if it cannot run here."""
    use_dummy_aws()
    if name == "memory":
        return MemoryStore()
    if name == "local":
        return LocalStore()
    if name == "moto":
        return MotoStore()
    if name == "seaweed":
        try:
            return SeaweedStore()
        except RuntimeError as exc:
            raise Unavailable(f"weed mini did not start: {str(exc)[-300:]}") from None
    raise Unavailable(f"unknown store {name!r}; known: {', '.join(STORES)}")
