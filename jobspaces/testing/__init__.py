"""What a jobspace backend needs to prove itself: the conformance suite (``JobspaceConformance``), to
subclass in a test module with a ``jobspace`` fixture. Needs pytest (the ``test`` extra)."""

from .abstract import BAD_KEYS, JobspaceConformance, MiB, reads_only

__all__ = ["BAD_KEYS", "JobspaceConformance", "MiB", "reads_only"]
