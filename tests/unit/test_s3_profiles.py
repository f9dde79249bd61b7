"""s3:// profiles: which URL picks S3 Express or R2, and the settings each implies (docs/stores.md)."""

from __future__ import annotations

from typing import Any

import pytest

from jobspaces import InvalidURL, open_jobspace
from jobspaces._obstore import ObstoreJobspace
from jobspaces._profiles import EXPRESS, R2, S3, s3_profile


def opened(url: str) -> tuple[ObstoreJobspace, dict[str, Any]]:
    js = open_jobspace(url)
    assert isinstance(js, ObstoreJobspace)
    return js, dict(js._store.config)


def test_plain_s3_lists_in_order_and_repeats_etags() -> None:
    js, config = opened("s3://bucket/p?region=eu-west-1")
    assert js.profile is S3 and S3.sorted_listing and S3.etag_repeats and js.min_write_interval == 0.0
    assert "s3_express" not in config


def test_directory_bucket_name_picks_express() -> None:
    js, config = opened("s3://logs--usw2-az1--x-s3/p?region=us-west-2")
    assert js.profile is EXPRESS and not EXPRESS.sorted_listing and not EXPRESS.etag_repeats
    assert config["s3_express"] == "true" and config["region"] == "us-west-2"
    assert "endpoint" not in config, "obstore derives the zonal endpoint BUCKET.s3express-ZONE.REGION.amazonaws.com"


def test_express_needs_a_directory_bucket_name() -> None:
    with pytest.raises(InvalidURL, match="BASE--ZONE_ID--x-s3"):
        open_jobspace("s3://plain-bucket/p?profile=express")


def test_r2_from_account() -> None:
    js, config = opened("s3://bucket/p?account=0123abcd")
    assert js.profile is R2 and js.min_write_interval == 1.0
    assert config["endpoint"] == "https://0123abcd.r2.cloudflarestorage.com" and config["region"] == "auto"
    _, eu = opened("s3://bucket/p?account=0123abcd&jurisdiction=eu")
    assert eu["endpoint"] == "https://0123abcd.eu.r2.cloudflarestorage.com"


def test_r2_from_its_endpoint_host() -> None:
    js, config = opened("s3://bucket/p?endpoint=https://0123abcd.r2.cloudflarestorage.com")
    assert js.profile is R2 and config["region"] == "auto"


def test_r2_needs_an_account_or_endpoint() -> None:
    with pytest.raises(InvalidURL, match="account=ACCOUNT_ID"):
        open_jobspace("s3://bucket/p?profile=r2")


def test_r2_keys_without_r2_and_unknown_profiles_are_refused() -> None:
    with pytest.raises(InvalidURL, match="profile=r2"):
        s3_profile("bucket", {"profile": "s3", "account": "x"}, None)
    with pytest.raises(InvalidURL, match="profile must be one of"):
        open_jobspace("s3://bucket/p?profile=minio")


def test_url_keys_still_override_a_profile() -> None:
    _, config = opened("s3://logs--usw2-az1--x-s3/p?region=us-west-2&endpoint=http://127.0.0.1:9&s3_express=false")
    assert config["s3_express"] == "false" and config["endpoint"] == "http://127.0.0.1:9"
