"""The batch runner's init step on one node: once, cached by batch and digest, image pulled, failures kept."""

from __future__ import annotations

from pathlib import Path

import pytest

import jobspaces
from nodeagent._batchrun import InitFailed, run_init


def _cfg(digest: str, *, image: str | None = None, command: str | None = None) -> dict:  # type: ignore[type-arg]
    return {"namespace": "lab", "batch": "b", "init": {"digest": digest, "image": image, "command": command, "files": [], "timeout": None}}


def test_init_pulls_the_image_and_runs_the_script_once(tmp_path: Path, local_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "apptainer"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ntouch "$3"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(local_url))
    cfg = _cfg("d1", image="python:3.11-slim", command='test -f "$QUBITS_IMAGE" && echo ok > made.txt')
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    work, image = run_init(js, cfg, tmp_path / "cache", "n1", env)
    again, image2 = run_init(js, cfg, tmp_path / "cache", "n1", env)
    assert again == work and image2 == image and image is not None and image.endswith("image.sif")
    assert (work / "made.txt").read_text() == "ok\n"
    assert calls.read_text().splitlines() == [f"pull --force {image} docker://python:3.11-slim"], "pulled once"
    assert b"exited 0" in js.get("archive/lab/b/_init/n1.log")[0]


def test_a_failed_init_is_reported_with_its_log_and_tried_again_next_time(tmp_path: Path, local_url: str) -> None:
    js = jobspaces.SyncJobspace(jobspaces.open_jobspace(local_url))
    flag = tmp_path / "flag"
    cfg = _cfg("d2", command=f'echo building; test -f {flag} || exit 4')
    with pytest.raises(InitFailed, match=r"failed on n1 \(exit 4\); its output: archive/lab/b/_init/n1.log"):
        run_init(js, cfg, tmp_path / "cache", "n1", {"PATH": "/usr/bin:/bin"})
    assert b"building" in js.get("archive/lab/b/_init/n1.log")[0]
    flag.write_text("")
    work, _ = run_init(js, cfg, tmp_path / "cache", "n1", {"PATH": "/usr/bin:/bin"})
    assert (work.parent / "ok").is_file()


def test_racing_senders_of_one_event_send_it_once(memory_url: str) -> None:
    import asyncio
    import json

    from jobspaces import run_sync
    from qubits import _layout as layout
    from qubits._records import Done, JobSpec
    from qubits.batch._commit import decided_counts, send_once
    from qubits.batch._notify import batch_event
    from tests.recorder import recording_server

    js = jobspaces.open_jobspace(memory_url)
    cfg = {"namespace": "lab", "batch": "b", "events": ["batch"]}
    with recording_server() as rec:
        spec = JobSpec(id="j1", kind="batch", name="lab/b", config={"batch": cfg}, notify=[{"kind": "webhook", "url": rec.url}], task_count=2)
        run_sync(js.put(layout.done("j1", "a"), Done("j1", "a", "succeeded", 1).to_json()))
        assert run_sync(decided_counts(js, spec)) is None, "one task still undecided"
        run_sync(js.put(layout.done("j1", "b"), Done("j1", "b", "failed", 2).to_json()))
        counts, failed = run_sync(decided_counts(js, spec))  # type: ignore[misc]
        assert counts == {"succeeded": 1, "failed": 1} and failed == ["b"]
        event = batch_event(cfg, "j1", counts, failed)

        async def race() -> list[bool]:
            return list(await asyncio.gather(*(send_once(js, spec, "batch", event, f"node{i}") for i in range(6))))

        assert sorted(run_sync(race())) == [False] * 5 + [True]
        (req,) = rec.accepted()
        assert req.json()["event"] == "batch.failed" and "failed: b" in req.json()["text"]
        state = json.loads(run_sync(js.get(layout.notified("j1", "batch")))[0])
        assert state["state"] == "sent" and state["errors"] == []
