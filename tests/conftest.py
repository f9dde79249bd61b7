"""Fixtures shared by every test: a clean environment, and jobspace URLs on real servers.

Stable names for everyone's tests: ``memory_url``, ``local_url``, ``moto_server`` (the endpoint of a moto
server process), ``s3_url`` (a fresh bucket on it), and for the stores that start where their program is
installed: ``seaweed_url``, ``gcs_url``, ``azurite_url`` (a fresh prefix each; they skip, with the reason,
only when the server's program cannot be installed here).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from jobspaces import MemoryJobspace
from jobspaces.testing.servers import (
    AzuriteServer,
    FakeGcsServer,
    MotoServer,
    SeaweedServer,
    ServerProcess,
    ServerUnavailable,
)
from tests.tools import tool_missing

_DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
_UNSET_AWS = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
              "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No QUBITS_* setting leaks into a test; AWS credentials are dummies that only local servers accept."""
    for name in list(os.environ):
        if name.startswith("QUBITS_"):
            monkeypatch.delenv(name)
    for name in _UNSET_AWS:
        monkeypatch.delenv(name, raising=False)
    for name, value in _DUMMY_AWS.items():
        monkeypatch.setenv(name, value)


def unique(stem: str = "t") -> str:
    """A short name no other test uses (valid as a bucket name and as a key part)."""
    return f"{stem}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def memory_url() -> Iterator[str]:
    """``memory://NAME``, a store of its own, forgotten after the test."""
    name = unique("mem")
    yield f"memory://{name}"
    MemoryJobspace.forget(name)


@pytest.fixture
def local_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``file://DIR`` for a fresh directory (created by the jobspace on open)."""
    return f"file://{tmp_path_factory.mktemp('jobspace') / 'js'}"


def _start(server: ServerProcess) -> ServerProcess:
    try:
        return server.start()
    except ServerUnavailable as exc:
        tool_missing(f"{server.name} unavailable: {exc}")


@pytest.fixture(scope="session")
def moto_process() -> Iterator[MotoServer]:
    """The session's moto server process (``moto[server]`` is in the test extra: it must start)."""
    server = MotoServer()
    try:
        server.start()
    except ServerUnavailable as exc:
        pytest.fail(f"moto is part of the test extra and must run: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server(moto_process: MotoServer) -> str:
    """The endpoint URL of the session's moto server, e.g. ``http://127.0.0.1:PORT``."""
    return moto_process.endpoint


@pytest.fixture
def s3_url(moto_process: MotoServer) -> str:
    """``s3://BUCKET/prefix?endpoint=http://127.0.0.1:PORT`` for a bucket created for this test."""
    bucket = unique("b")
    moto_process.create_bucket(bucket)
    return moto_process.url(bucket, "prefix")


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedServer]:
    """A SeaweedFS ``weed mini`` process with one bucket (skips if ``weed`` is not installed)."""
    server = SeaweedServer()
    _start(server)
    yield server
    server.stop()


@pytest.fixture
def seaweed_url(seaweed_server: SeaweedServer) -> str:
    """An ``s3://`` URL of a fresh prefix on SeaweedFS (request timeouts above its 1 s lock retries)."""
    return seaweed_server.url(unique("p"))


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[FakeGcsServer]:
    """A fake-gcs-server process with one bucket (skips if its wheel is not installed)."""
    server = FakeGcsServer()
    _start(server)
    yield server
    server.stop()


@pytest.fixture
def gcs_url(gcs_server: FakeGcsServer) -> str:
    """A ``gs://`` URL of a fresh prefix on fake-gcs-server."""
    return gcs_server.url(unique("p"))


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """An Azurite blob process with one container (skips if npm's ``azurite`` is not installed)."""
    server = AzuriteServer()
    _start(server)
    yield server
    server.stop()


@pytest.fixture
def azurite_url(azurite_server: AzuriteServer) -> str:
    """An ``az://`` URL of a fresh prefix on Azurite."""
    return azurite_server.url(unique("p"))
