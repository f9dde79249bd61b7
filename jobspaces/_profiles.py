"""What differs between S3-compatible stores, and how an ``s3://`` URL picks the profile.

- **s3** (AWS general purpose buckets, SeaweedFS, MinIO, moto): ETag = MD5 of a single-part body, so equal
  bytes give equal ETags (the ABA case the protocol's nonces cover); ListObjectsV2 in key order, with
  ``start-after``.
- **express** (S3 Express One Zone directory buckets, named ``BASE--ZONE--x-s3``): the ETag is a random
  string, new on every write; ListObjectsV2 is *not* in key order and takes no ``start-after`` (AWS
  s3-express-differences; API_ListObjectsV2), so a listing reads the folder whole and sorts it here; the
  zonal endpoint ``https://BUCKET.s3express-ZONE.REGION.amazonaws.com`` and session auth (CreateSession)
  come from obstore's ``s3_express``. Picked by the bucket name's ``--x-s3`` suffix or ``profile=express``.
- **r2** (Cloudflare R2): endpoint ``https://ACCOUNT.r2.cloudflarestorage.com`` (``ACCOUNT.JURISDICTION.…``
  for ``jurisdiction=eu|fedramp``), region ``auto``; at most one write per second to one key, 429 past it
  (developers.cloudflare.com/r2/platform/limits), so writers of one object space their writes by 1 s;
  conditional PUTs answer 412. Picked by ``account=ID``, an ``*.r2.cloudflarestorage.com`` endpoint, or
  ``profile=r2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._errors import InvalidURL

R2_HOST = "r2.cloudflarestorage.com"


@dataclass(frozen=True)
class S3Profile:
    """The behaviour of one kind of S3-compatible store that the jobspace must know about."""

    name: str
    sorted_listing: bool = True
    """ListObjectsV2 answers in key order and takes ``start-after`` (false on directory buckets)."""
    etag_repeats: bool = True
    """Rewriting equal bytes gives the same ETag again (an MD5; Express ETags are random)."""
    min_write_interval: float = 0.0
    """Seconds the store wants between two writes of one key (R2: 1 s, 429 past it)."""


S3 = S3Profile("s3")
EXPRESS = S3Profile("express", sorted_listing=False, etag_repeats=False)
R2 = S3Profile("r2", min_write_interval=1.0)
PROFILES = {p.name: p for p in (S3, EXPRESS, R2)}


def s3_profile(bucket: str, query: dict[str, str], endpoint: str | None) -> tuple[S3Profile, str | None, dict[str, Any]]:
    """The profile an ``s3://`` URL asks for, its endpoint, and the obstore settings it implies.

    Takes the ``profile``, ``account`` and ``jurisdiction`` keys out of ``query``; the caller's other
    keys (``region``, ``s3_express`` …) still override the settings returned."""
    name = query.pop("profile", None)
    account = query.pop("account", None)
    jurisdiction = query.pop("jurisdiction", None)
    host = urlsplit(endpoint).hostname or "" if endpoint else ""
    if name is None:
        if bucket.endswith("--x-s3"):
            name = "express"
        elif account or host.endswith(R2_HOST):
            name = "r2"
        else:
            name = "s3"
    profile = PROFILES.get(name)
    if profile is None:
        raise InvalidURL(f"s3://{bucket}: profile must be one of {sorted(PROFILES)}, not {name!r}")
    settings: dict[str, Any] = {}
    if profile is R2:
        if account and not endpoint:
            region_part = f"{jurisdiction}." if jurisdiction else ""
            endpoint = f"https://{account}.{region_part}{R2_HOST}"
        if not endpoint:
            raise InvalidURL(f"s3://{bucket}: R2 needs account=ACCOUNT_ID (or endpoint=https://ACCOUNT_ID.{R2_HOST})")
        settings["region"] = "auto"  # "the region for an R2 bucket is auto" (R2's S3 API compatibility page)
    elif account or jurisdiction:
        raise InvalidURL(f"s3://{bucket}: account and jurisdiction are R2 keys; add profile=r2")
    if profile is EXPRESS:
        if bucket.count("--") < 2 or not bucket.endswith("--x-s3"):
            raise InvalidURL(f"s3://{bucket}: a directory bucket is named BASE--ZONE_ID--x-s3 (S3 Express One Zone)")
        settings["s3_express"] = True
    return profile, endpoint, settings
