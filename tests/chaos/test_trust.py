"""Trust: the jobspace is the trust boundary.

With QUBITS_SECRET set, clients sign job specs (HMAC over the spec and its chunks' digests; tasks added
while a job runs carry their own HMAC) and agents refuse unsigned or tampered work, saying so. Credentials
never end up in objects, logs or error messages. Agents do not run as root unless told.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

import qubits
from jobspaces import run_sync
from jobspaces.testing.servers import MotoServer
from qubits import _layout as layout
from qubits._records import JobSpec, TaskSpec
from tests.agents import AgentProcess, run_cli
from tests.tools import require_tools

SECRET = "correct horse battery staple"


def _until(what: str, cond, timeout: float, agent: AgentProcess) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{agent.log()[-4000:]}"
        time.sleep(0.1)


def _quarantined(client: qubits.Client, job: str, task: str) -> str | None:
    try:
        return str(json.loads(run_sync(client.aio.get(layout.quarantine(job, task)))[0])["reason"])
    except Exception:  # noqa: BLE001 - not there yet
        return None


def test_agents_with_a_secret_refuse_unsigned_and_tampered_work_and_say_so(
    local_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pwned = tmp_path / "pwned"
    ran = tmp_path / "ran"
    evil = f"touch {pwned}"
    client = qubits.connect(local_url)

    unsigned = client.submit([TaskSpec(id="u", command=evil)], name="unsigned")  # no QUBITS_SECRET here
    monkeypatch.setenv("QUBITS_SECRET", SECRET)
    signed = client.submit([TaskSpec(id="s", command=f"echo s >> {ran}")], name="signed")
    chunk_tampered = client.submit([TaskSpec(id="c", command="echo harmless")], name="chunk")
    key = layout.task_chunk(chunk_tampered.id, "000000")
    run_sync(client.aio.put(key, run_sync(client.aio.get(key))[0].replace(b"echo harmless", evil.encode())))
    spec_tampered = client.submit([TaskSpec(id="j", command=f"echo j >> {ran}")], name="spec")
    key = layout.job_spec(spec_tampered.id)
    forged = JobSpec.from_json(run_sync(client.aio.get(key))[0])
    run_sync(client.aio.put(key, JobSpec(**{**forged.__dict__, "name": "forged", "config": {"x": 1}}).to_json()))
    # A signed job with two added tasks: one added by a holder of the secret, one forged into the jobspace.
    grown = client.submit([TaskSpec(id="root", command=f"echo root >> {ran}")], name="grown")
    run_sync(client.specs.add_task(grown.id, TaskSpec(id="added", command=f"echo added >> {ran}")))
    run_sync(client.aio.put(layout.dynamic_task(grown.id, "forged"), TaskSpec(id="forged", command=evil).to_json()))
    for tid in ("added", "forged"):
        run_sync(client.aio.put(layout.ready(grown.id, "x", tid), b""))

    agent = AgentProcess(local_url, cache=tmp_path / "cache", slots=2, ttl=2.0, name="trusting", env={"QUBITS_SECRET": SECRET})
    try:
        assert signed.wait(timeout=60).ok, agent.log()[-3000:]
        _until("the signed added task", lambda: "added" in grown.results(), 60, agent)
        expect = {
            (unsigned.id, "u"): "signature missing or wrong",
            (chunk_tampered.id, "c"): "does not match its signed digest",
            (spec_tampered.id, "j"): "signature missing or wrong",
            (grown.id, "forged"): "added task 'forged' is unsigned",
        }
        for (job, task), words in expect.items():
            _until(f"{job}/{task} refused", lambda j=job, t=task: _quarantined(client, j, t) is not None, 30, agent)
            assert words in str(_quarantined(client, job, task)), _quarantined(client, job, task)
            assert "refusing to run it" in str(_quarantined(client, job, task))
            assert client.done_record(job, task) is None, "refused, not decided: an agent with the right secret may run it"
        time.sleep(1.0)
        assert not pwned.exists(), "a tampered or unsigned command ran"
        assert sorted(ran.read_text().split()) == ["added", "root", "s"]
        assert agent.log().count("quarantine: job") >= 4 and agent.alive()
    finally:
        agent.stop()


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Recognisable fake credentials, in this process and in every process it starts."""
    creds = {
        "AWS_ACCESS_KEY_ID": "AKIAQUBITSCANARY7777",
        "AWS_SECRET_ACCESS_KEY": "qubitsCanarySecret/Do+Not+Leak/0123456789",
        "QUBITS_SECRET": "qubits-canary-hmac-secret-4242",
    }
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    yield creds


@pytest.mark.s3
def test_credentials_never_reach_objects_logs_or_error_messages(
    moto_process: MotoServer, s3_url: str, tmp_path: Path, canary: dict[str, str]
) -> None:
    client = qubits.connect(s3_url)
    job = client.submit(
        [
            TaskSpec(id="ok", command="echo fine; mkdir -p $QUBITS_OUTPUT; echo out > $QUBITS_OUTPUT/o.txt"),
            TaskSpec(id="bad", command="echo broken >&2; exit 3", max_attempts=2, backoff=0.1),
            TaskSpec(id="after", command="echo after", deps=["ok"]),
        ],
        name="canary",
        dag=True,
    )
    agent = AgentProcess(s3_url, cache=tmp_path / "cache", slots=2, ttl=2.0, name="canary", env={"QUBITS_LOG_JSON": "1"})
    outputs: list[str] = []
    agent_log = ""
    try:
        status = job.wait(timeout=90)
        assert status.counts == {"succeeded": 2, "failed": 1, "pending": 0}, status.summary()
        for args in (["status", job.id, "--json"], ["status", job.id], ["logs", job.id, "bad", "--stream", "stderr"], ["jobs"], ["nodes"]):
            done = run_cli(*args, "--jobspace", s3_url)
            outputs += [done.stdout, done.stderr]
        done = run_cli("doctor", s3_url)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    finally:
        agent.stop()
        agent_log = agent.log_path.read_text(errors="replace")
    # Errors: a missing bucket, a store that does not answer, and credentials the store refuses.
    endpoint = moto_process.endpoint
    for url in (s3_url.replace("s3://", "s3://no-such-bucket-x"), "s3://b/p?endpoint=http://127.0.0.1:9"):
        done = run_cli("status", "--jobspace", url)
        assert done.returncode != 0
        outputs += [done.stdout, done.stderr]
    strict = MotoServer(auth_after=0).start()
    try:
        done = run_cli("doctor", f"s3://b/p?endpoint={strict.endpoint}")
        assert done.returncode != 0 and "credentials" in done.stderr
        outputs += [done.stdout, done.stderr]
    finally:
        strict.stop()

    bucket = s3_url.split("/")[2]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            objects[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    assert any(k.endswith("/done/" + job.id + "/ok.json") for k in objects) and len(objects) > 10
    everything = {**{f"object {k}": v for k, v in objects.items()}, "agent log": agent_log.encode()}
    everything.update({f"cli output {i}": o.encode() for i, o in enumerate(outputs)})
    for name, body in everything.items():
        for cred, value in canary.items():
            assert value.encode() not in body, f"{cred} leaked into {name}"


def test_an_agent_runs_as_root_only_when_told_and_refuses_before_touching_the_store(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the refusal is about running as root, and this test runs as an ordinary user")
    require_tools("setpriv", install="util-linux: the test drops to an ordinary user with it")
    shared = Path(tempfile.mkdtemp(prefix="qubits-root-"))
    try:
        shared.chmod(0o777)
        url = f"file://{shared / 'js'}"
        client = qubits.connect(url)
        job = client.submit_commands(['echo "uid=$(id -u)"'])
        os.chmod(shared / "js", 0o777)
        for path in (shared / "js").rglob("*"):
            path.chmod(0o777)
        refused = run_cli("agent", "--jobspace", url, "--exit-when-idle", "1", env={"QUBITS_CACHE": str(shared / "c0")})
        assert refused.returncode == 2 and "refusing to run tasks as root" in refused.stderr and "--allow-root" in refused.stderr  # a usage error (README exit codes)
        assert client.aio_list("nodes/") == [] and client.aio_list("leases/") == [], "it refused before touching the store"
        # An ordinary user needs no flag.
        env = {**os.environ, "QUBITS_CACHE": str(shared / "c1"), "HOME": str(shared)}
        ordinary = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable, "-m", "qubits.cli",
             "agent", "--jobspace", url, "--exit-when-idle", "2", "--ttl", "2"],
            env=env, capture_output=True, text=True, timeout=60, cwd=shared,
        )
        assert ordinary.returncode == 0, ordinary.stderr
        assert job.wait(timeout=10).ok
        assert job.logs("t000001").strip() == b"uid=65534"
    finally:
        shutil.rmtree(shared, ignore_errors=True)
