"""``qubits doctor`` as a real subprocess against a local directory and moto server processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobspaces.testing.servers import FakeGcsServer, MotoServer, free_port

POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m qubits.cli doctor ARGS`` and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "qubits.cli", "doctor", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def one_line(text: str) -> str:
    """The only line of ``text`` (fails if there are more)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def test_local_directory_is_safe_and_left_clean(tmp_path: Path) -> None:
    root = tmp_path / "js"
    result = doctor(str(root), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["safe"] is True and report["fatal"] is None
    names = [c["name"] for c in report["checks"]]
    for expected in ("reachable", "create-only", "stale CAS", "CAS on missing key", "list after write", "delete"):
        assert expected in names
    assert any(n.startswith("race: 16 creators") for n in names)
    assert [p.name for p in root.iterdir()] == [".qubits-local"], "probe objects were left behind"


def test_table_on_stderr_and_verdict(tmp_path: Path) -> None:
    result = doctor(f"file://{tmp_path / 'js'}", "--rounds", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "stale CAS" in result.stderr and "safe for leases" in result.stderr


def test_moto_bucket_is_safe_and_left_clean(moto_process: MotoServer, s3_url: str) -> None:
    result = doctor(s3_url, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["safe"] is True
    bucket = s3_url.split("/")[2]
    assert moto_process.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_missing_bucket_exits_3_with_one_line(moto_server: str) -> None:
    result = doctor(f"s3://no-such-bucket-here/p?endpoint={moto_server}")
    assert result.returncode == 3
    assert "does not exist" in one_line(result.stderr)


def test_fake_gcs_bucket_is_safe_and_left_clean(gcs_server: FakeGcsServer, gcs_url: str) -> None:
    """gs:// speaks GCS's JSON API with generation preconditions; fake-gcs-server honours them."""
    result = doctor(gcs_url, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["safe"] is True, report
    prefix = gcs_url.split("?")[0].split("/", 3)[3]
    assert json.loads(gcs_server.list_objects(prefix)).get("items", []) == [], "probe objects were left behind"


def test_missing_gcs_bucket_exits_3_with_one_line(gcs_server: FakeGcsServer) -> None:
    result = doctor(f"gs://no-such-bucket-here/p?endpoint={gcs_server.endpoint}")
    assert result.returncode == 3
    assert "does not exist" in one_line(result.stderr)


def test_unreachable_store_exits_3_with_one_line() -> None:
    result = doctor(f"s3://bucket/p?endpoint=http://127.0.0.1:{free_port()}")
    assert result.returncode == 3
    assert "unreachable" in one_line(result.stderr)


def test_store_without_conditional_writes_is_not_safe(tmp_path: Path) -> None:
    result = doctor(f"dir::file://{tmp_path}", "--json")
    assert result.returncode == 3
    report = json.loads(result.stdout)
    assert report["safe"] is False
    assert "NOT safe" in one_line(result.stderr)


@pytest.fixture(scope="module")
def moto_with_auth() -> Iterator[tuple[MotoServer, dict[str, str]]]:
    """A moto server that checks credentials after its first four requests, which create a bucket and
    an IAM user allowed s3:*; yields the server and that user's access key."""
    server = MotoServer(auth_after=4)
    server.start()
    try:
        server.create_bucket("authbucket")
        iam = server.client("iam")
        iam.create_user(UserName="doctor")
        key = iam.create_access_key(UserName="doctor")["AccessKey"]
        iam.put_user_policy(UserName="doctor", PolicyName="s3", PolicyDocument=POLICY)
        yield server, {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    finally:
        server.stop()


def test_valid_credentials_pass_when_moto_checks_them(moto_with_auth: tuple[MotoServer, dict[str, str]]) -> None:
    server, creds = moto_with_auth
    result = doctor(server.url("authbucket", "p"), env=creds)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("creds", [
    {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000", "AWS_SECRET_ACCESS_KEY": "whatever"},
    {"AWS_SECRET_ACCESS_KEY": "wrong-secret"},
], ids=["unknown-key", "wrong-secret"])
def test_wrong_credentials_exit_3_with_one_line(
    moto_with_auth: tuple[MotoServer, dict[str, str]], creds: dict[str, str]
) -> None:
    server, good = moto_with_auth
    result = doctor(server.url("authbucket", "p"), env={**good, **creds})
    assert result.returncode == 3
    assert "access denied" in one_line(result.stderr).lower()
