"""The release, in a module of its own so that every floor can name it without importing the package's face."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("qubits")
    """The installed distribution's version (its package metadata)."""
except _metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
    __version__ = "0+unknown"
