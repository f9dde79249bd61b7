"""What a jobspace backend needs to prove itself, shipped with the package (as fsspec ships its abstract
tests): the conformance suite ``JobspaceConformance``, to subclass in a test module with a ``jobspace``
fixture (it needs pytest, the ``test`` extra), and the real server processes it can run against
(``jobspaces.testing.servers``: moto, SeaweedFS, fake-gcs-server, Azurite; the benchmark uses them too).

The suite loads on first use, so that importing ``jobspaces.testing.servers`` does not need pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .abstract import BAD_KEYS, JobspaceConformance, MiB, reads_only

__all__ = ["BAD_KEYS", "JobspaceConformance", "MiB", "reads_only"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import abstract

        return getattr(abstract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
