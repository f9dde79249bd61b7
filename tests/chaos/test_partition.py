"""A network partition between real hosts: an agent in its own network namespace reaches S3 (moto,
through a proxy on the private link) over a veth pair; the link is cut while it runs tasks and restored.

The cut agent must stop its tasks by itself within its ttl (self-fencing: no two attempts ever run at
once), the agent on the other side takes them over, and the cut agent comes back to work after the link
is restored. Runs where namespaces can be made (root and iproute2; CI is root); elsewhere it says why not.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

import qubits
from jobspaces.testing.servers import MotoServer
from qubits._records import TaskSpec
from tests.agents import AgentProcess
from tests.chaos.netns import NetnsLink, why_no_netns
from tests.chaos.proxy import TcpProxy
from tests.tools import require_tools

_WHY = why_no_netns()
pytestmark = [pytest.mark.netns, pytest.mark.s3]


@pytest.fixture(autouse=True)
def _namespaces() -> None:
    require_tools("ip", install="apt-get install -y iproute2 (see .ci/run)")
    if _WHY is not None:
        pytest.skip(f"no partition test: {_WHY}")  # root or the kernel's permission, not a tool

TTL = 3.0


def _beats(path: Path) -> dict[str, list[tuple[float, str, int]]]:
    """Heartbeats the tasks themselves wrote: task -> [(wall time, node, attempt)]."""
    out: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                out[parts[0]].append((float(parts[3]), parts[2], int(parts[1])))
    return out


def _wait(what: str, cond, timeout: float, *logs: AgentProcess) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(a.log()[-2500:] for a in logs))
        time.sleep(0.1)


def test_a_cut_agent_fences_itself_within_its_ttl_and_the_other_side_takes_over(
    moto_process: MotoServer, s3_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beats = tmp_path / "beats.log"
    beat = f'for i in $(seq 100); do echo "$QUBITS_TASK $QUBITS_ATTEMPT $QUBITS_NODE $(date +%s.%N)" >> {beats}; sleep 0.1; done'
    client = qubits.connect(s3_url)
    job = client.submit([TaskSpec(id=f"p{i}", command=beat, max_attempts=5) for i in range(3)], name="partition")
    agents: list[AgentProcess] = []
    with NetnsLink() as link:
        proxy = TcpProxy(("127.0.0.1", moto_process.port), listen=(link.host_addr, 0)).start()
        try:
            far_url = s3_url.replace(moto_process.endpoint, f"http://{link.host_addr}:{proxy.port}")
            far = AgentProcess(far_url, cache=tmp_path / "far", slots=3, ttl=TTL, name="far", capabilities=("far",),
                               wrapper=link.wrapper)
            agents.append(far)
            _wait("the far agent to run all three tasks", lambda: len(_beats(beats)) == 3, 60, far)
            near = AgentProcess(s3_url, cache=tmp_path / "near", slots=3, ttl=TTL, name="near")
            agents.append(near)
            time.sleep(1.0)
            link.cut()
            cut_at = time.time()
            status = job.wait(timeout=90)
            assert status.ok, status.summary() + far.log()[-3000:] + near.log()[-3000:]

            by_task = _beats(beats)
            stopped, taken = [], []
            for task, rows in by_task.items():
                far_rows = [t for t, node, _ in rows if node == "far"]
                near_rows = [t for t, node, _ in rows if node == "near"]
                assert far_rows and near_rows, f"{task}: ran on far, then on near: {rows[:3]}"
                # Self-fencing: the cut agent stopped its task within its ttl of losing the store...
                assert max(far_rows) < cut_at + TTL, f"{task}: far ran {max(far_rows) - cut_at:.2f}s past the cut (near from {min(near_rows) - cut_at:.2f}s)\n{far.log()[-6000:]}"
                # ...so the two attempts never ran at the same time.
                assert max(far_rows) < min(near_rows), f"{task}: attempts overlapped"
                stopped.append(max(far_rows) - cut_at)
                taken.append(min(near_rows) - cut_at)
            results = job.results()
            assert {d.holder for d in results.values()} == {"near"}
            assert {d.attempt for d in results.values()} == {2}
            assert all(d.attempts[0]["holder"] == "far" and d.attempts[0]["outcome"] == "lost" for d in results.values())
            assert "lease lost" in far.log(), far.log()[-3000:]
            assert far.alive(), "the cut agent rode out the partition instead of exiting"

            # Restored: the far agent serves again (only it has the capability these tasks need).
            link.restore()
            again = client.submit([TaskSpec(id="back", command="echo back", requires=["far"])], name="after")
            done = again.wait(timeout=60)
            assert done.ok and again.results()["back"].holder == "far", far.log()[-3000:]
            with capsys.disabled():
                print(
                    f"\npartition: ttl={TTL:g}s; the cut agent stopped its {len(stopped)} tasks "
                    f"{min(stopped):.2f}-{max(stopped):.2f}s after the cut; the other side took them over "
                    f"{min(taken):.2f}-{max(taken):.2f}s after it; no overlap; the cut agent served again once restored"
                )
        finally:
            for a in agents:
                a.stop()
            proxy.stop()
