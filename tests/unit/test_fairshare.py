"""How an agent orders waiting tasks between submitters."""

from __future__ import annotations

import pytest

from nodeagent._fairshare import FairShare, parse_weights
from qubits._records import JobSpec
from qubits._scan import ReadyEntry
from qubits._shares import person


class _Specs:
    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners

    def cached_job(self, job: str) -> JobSpec | None:
        return JobSpec(job, submitter=self.owners[job])


def _entries(job: str, n: int, priority: int = 0) -> list[ReadyEntry]:
    return [ReadyEntry(f"k{job}{i}", job, "0", f"{job}{i}", priority, 0) for i in range(n)]


def _share(weights: dict[str, float] | None = None) -> FairShare:
    return FairShare(_Specs({"ja": "alice@laptop", "jb": "bob@hpc", "jb2": "bob@laptop"}), weights)  # type: ignore[arg-type]


def test_submitters_alternate_and_keep_their_own_order() -> None:
    fair = _share()
    entries = _entries("ja", 6) + _entries("jb", 2, priority=5) + _entries("jb2", 1)
    fair.order(entries)
    assert [e.task for e in entries] == ["ja0", "jb0", "ja1", "jb1", "ja2", "jb20", "ja3", "ja4", "ja5"]


def test_what_runs_already_counts_and_weights_scale_it() -> None:
    fair = _share({"alice": 2})
    fair.started("bob@hpc")
    entries = _entries("ja", 4) + _entries("jb", 4)
    fair.order(entries)
    assert [e.job for e in entries][:5] == ["ja", "ja", "ja", "jb", "ja"]


def test_weights_are_user_equals_positive_number() -> None:
    assert parse_weights(["alice=2", "bob=0.5"]) == {"alice": 2.0, "bob": 0.5}
    for bad in ("alice", "alice=0", "=2", "alice=x", "alice=inf"):
        with pytest.raises(ValueError, match="USER=WEIGHT"):
            parse_weights([bad])
    assert person("alice@laptop") == "alice" and person("svc") == "svc"


def test_running_shares_count_people_not_hosts() -> None:
    from qubits._records import NodeInfo
    from qubits._shares import running_by_person

    nodes = [NodeInfo("a", "h", 1, "v", running=["j1/t1", "j2/t1"]), NodeInfo("b", "h", 2, "v", running=["j3/t9", "j9/t1"])]
    owner = {"j1": "alice@laptop", "j2": "alice@hpc", "j3": "bob@laptop"}
    assert running_by_person(nodes, owner) == {"alice": 2, "bob": 1, "?": 1}
