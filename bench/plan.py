"""Planning cost of a no-op ``make``: a Qfile of N targets (``t-0`` … and ``default`` needing them all),
every one made already, on a local-directory jobspace; ``qubits.qfile.make(["default"], agents=0)``
timed end to end (load the Qfile, plan the graph, pack and upload the code, find each target's
identity in the index) until it says nothing is to be made.

Making N targets for real would take hours of process starts on this machine, so the jobspace is seeded
with what N made targets leave for planning: each target's index entry (``targets/{identity}.json``)
and the job's manifest, written by the runner's and ``make``'s own ``record`` and ``write_manifest`` from
identities computed by the runner's own ``Identities``. A
comment is then added to the Qfile (a new code bundle: no earlier job of the same code can be reused
as a whole; each target is judged by its identity), and the no-op make is timed again.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import jobspaces

QFILE = '''
from qubits.qfile import rule

N = {n}

@rule(r"t-(\\d+)")
def t(ctx, i):
    ctx.out("x").write_text(i)

rule("default", deps=[f"t-{{i}}" for i in range(N)])
'''


def _seed(folder: Path, n: int) -> None:
    from qubits import connect
    from qubits.qfile import load_qfile
    from qubits.qfile._fresh import Identities, identity_of, output_digest
    from qubits.qfile._index import record, write_manifest
    from qubits.qfile._tasks import root_spec, target_task_id

    qf = load_qfile(folder / "Qfile")
    config = qf.resolve()
    client = connect(config["jobspace"])
    job = client.submit([root_spec(["default"])], kind="qfile", name="seed", config={"targets": ["default"]}, dag=True)
    js = jobspaces.SyncJobspace(client.aio)
    ids = Identities(qf.project, config)
    outputs: dict[str, str] = {}
    entries = []
    for i in range(n):
        name = f"t-{i}"
        comps = ids.components(qf.match(name), {})
        outputs[name] = output_digest([("x", str(i).encode())], {})
        made = {"target": name, "identity": identity_of(comps), "components": comps, "output": outputs[name]}
        entries.append(record(js, made, (job.id, target_task_id(name), 1)))
    comps = ids.components(qf.match("default"), outputs)
    made = {"target": "default", "identity": identity_of(comps), "components": comps, "output": output_digest([], outputs)}
    entries.append(record(js, made, (job.id, target_task_id("default"), 1)))
    write_manifest(js, job.id, [e for e in entries if e is not None])  # as make's record_job does


def _noop(folder: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one no-op make (CPU: this process's, which tells the cost on a machine
    whose other load stretches the wall time)."""
    from qubits.qfile import make

    t, c = time.perf_counter(), time.process_time()
    result = make(["default"], project=folder, agents=0)
    took = (time.perf_counter() - t, time.process_time() - c)
    if result.submitted or not result.ok:
        raise RuntimeError(f"the no-op make submitted a job or found a target not made: {result.outputs[:3]}")
    return took


def _stats(runs: list[tuple[float, float]]) -> dict[str, Any]:
    return {"median": round(statistics.median(w for w, _ in runs), 3), "all": [round(w, 3) for w, _ in runs],
            "cpu_median": round(statistics.median(c for _, c in runs), 3)}


def run(targets: int = 10_000, reps: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qubits-bench-plan-") as tmp:
        folder = Path(tmp)
        (folder / "Qfile").write_text(QFILE.format(n=targets))
        t = time.perf_counter()
        _seed(folder, targets)
        seeded = time.perf_counter() - t
        same = [_noop(folder) for _ in range(reps)]
        (folder / "Qfile").write_text("# an edited comment\n" + QFILE.format(n=targets))
        edited = [_noop(folder) for _ in range(reps)]
    return {
        "targets": targets,
        "store": "local",
        "seed_s": round(seeded, 2),
        "noop_make_s": _stats(same),
        "after_comment_edit_s": _stats(edited),
        "loadavg": round(os.getloadavg()[0], 2),
        "method": __doc__,
    }
