"""Peers in the same run: Celery, RQ (fork and SimpleWorker), Dramatiq, Huey and arq on one Redis server
beside qubits on a local directory; buquet beside qubits on the same moto server (and SeaweedFS).

Method (from the earlier side-by-side measurements, shared/reference/peers-measured.md): every system runs
W worker "nodes", each one process (or one main process and one child) doing one task at a time. The
no-op task appends ``task start-time node`` to a marker file, from the worker's own process (a Python
callable) or through bash (a shell command). Workers start and run one warm-up task, sit idle for a few
seconds, then ``t0`` is taken by the producer just before it enqueues N tasks with the library's normal
one-call-per-task API; wall = last task start - t0. Dispatch latency: the same idle workers, a random
0.1-1.1 s pause, then one task; latency = its start - the time just before it was enqueued. kill -9: two
nodes, one task that sleeps 5 s after it starts; one second in, the node running it is killed with
SIGKILL (the whole process tree); we watch whether and when the task starts again.

The peers run from their own virtualenvs (``bench/setup.sh`` makes them), never from qubits' own.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jobspaces

from ._servers import Moto, Redis, Seaweed, request_total
from ._util import BenchError, check_exactly_once, kill_tree, read_marker, stop_process, summary_ms, wait_for_marker
from ._work import submit

KIT = Path(__file__).parent / "peerkit"
CACHE = Path(os.environ.get("BENCH_VENVS", "~/.cache/qubits-bench")).expanduser()
PEERS_PY = CACHE / "peers" / "bin" / "python"
ARQ_PY = CACHE / "arq" / "bin" / "python"
REDIS_PEERS = ["celery", "rq", "rq-simple", "dramatiq", "huey", "arq"]
LABELS = {"celery": "Celery (prefork)", "rq": "RQ (fork per job)", "rq-simple": "RQ (SimpleWorker)", "dramatiq": "Dramatiq",
          "huey": "Huey", "arq": "arq", "buquet": "buquet", "qubits": "qubits"}


class Setup:
    """One system's worker nodes on one store."""

    def __init__(self, system: str, store: str, target: dict[str, str], kind: str, marker: Path, sleep: float = 0) -> None:
        self.system, self.store, self.target, self.kind, self.marker, self.sleep = system, store, target, kind, marker, sleep
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.client_counts: dict[str, int] = {}
        self._ex: Any = None
        self._js: Any = None
        self._maps: list[Any] = []
        self.dir = Path(tempfile.mkdtemp(prefix=f"qubits-bench-{system}-"))

    def env(self, node: str) -> dict[str, str]:
        env = {**os.environ, "BENCH_MARKER": str(self.marker), "BENCH_KIND": self.kind, "BENCH_NODE": node,
               "BENCH_SLEEP": str(self.sleep), "PYTHONPATH": str(KIT), "C_FORCE_ROOT": "1", **self.target}
        if self.system == "buquet":
            env.update(S3_REGION="us-east-1", BUQUET_ALLOW_NO_VERSIONING="1")
        return env

    def argv(self, node: str) -> list[str]:
        bin_dir = PEERS_PY.parent
        s = self.system
        if s == "celery":
            return [str(bin_dir / "celery"), "-A", "tasks_celery", "worker", "--pool=prefork", "--concurrency=1",
                    "-n", f"{node}@%h", "--loglevel=WARNING"]
        if s in ("rq", "rq-simple"):
            extra = ["-w", "rq.worker.SimpleWorker"] if s == "rq-simple" else []
            return [str(bin_dir / "rq"), "worker", "-u", self.target["BENCH_REDIS"], *extra]
        if s == "dramatiq":
            return [str(bin_dir / "dramatiq"), "tasks_dramatiq", "--processes", "1", "--threads", "1"]
        if s == "huey":
            return [str(bin_dir / "huey_consumer"), "tasks_huey.huey", "-w", "1", "-k", "process"]
        if s == "arq":
            return [str(ARQ_PY.parent / "arq"), "tasks_arq.WorkerSettings"]
        if s == "buquet":
            return [str(PEERS_PY), "buquet_worker.py", node]
        if s == "qubits":
            return [sys.executable, "-m", "qubits.cli", "--log-level", "WARNING", "agent", "--jobspace", self.target["url"],
                    "--slots", "1", "--allow-root", "--name", node]
        raise ValueError(s)

    def start(self, count: int) -> None:
        for k in range(count):
            node = f"n{k}"
            env = self.env(node)
            if self.system == "qubits":
                env.update(QUBITS_CACHE=str(self.dir / node), QUBITS_COUNT_REQUESTS=str(self.dir / f"{node}.json"))
            with (self.dir / f"{node}.log").open("wb") as log:
                self.nodes[node] = subprocess.Popen(self.argv(node), cwd=KIT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def kill9(self, node: str) -> None:
        kill_tree(self.nodes[node].pid)
        self.nodes[node].wait(10)

    def stop(self) -> None:
        for p in self.nodes.values():
            stop_process(p, timeout=10)
        for p in self.nodes.values():
            kill_tree(p.pid)  # leftovers of a pool (children that outlived their parent)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-800:]}" for p in self.dir.glob("*.log"))

    # -- producing ------------------------------------------------------------------------------------
    def produce(self, n: int, prefix: str = "t") -> float:
        """Enqueue n tasks; return t0 (taken just before the first enqueue)."""
        if self.system == "qubits" and self.kind == "python":
            return self._map(n, prefix)
        if self.system == "qubits":
            js = jobspaces.CountingJobspace(jobspaces.open_jobspace(self.target["url"]))
            t0 = time.time()
            cmd = ["/bin/bash", "-c", f'echo "{prefix}${{QUBITS_TASK:1}} $EPOCHREALTIME $QUBITS_NODE" >> {self.marker}'
                   + (f"; exec sleep {self.sleep:g}" if self.sleep else "")]
            asyncio.run(submit(js, n, command=cmd))
            for k, v in js.counts().items():
                self.client_counts[k] = self.client_counts.get(k, 0) + v
            return t0
        py = ARQ_PY if self.system == "arq" else PEERS_PY
        out = subprocess.run([str(py), "producer.py", self.system, str(n), prefix], cwd=KIT, env=self.env("producer"),
                             capture_output=True, text=True, timeout=3600)
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                return float(json.loads(line)["t0"])
        raise BenchError(f"{self.system} producer failed ({out.returncode}): {out.stderr[-1500:]}")

    def _executor(self) -> Any:
        import qubits

        if self._ex is None:
            self._js = jobspaces.CountingJobspace(jobspaces.open_jobspace(self.target["url"]))
            self._ex = qubits.Executor(self._js)
        return self._ex

    def _map(self, n: int, prefix: str) -> float:
        """qubits.map of the no-op callable over n items, one item per task; t0 before the call."""
        from ._maptask import noop

        ex = self._executor()
        items = [f"{prefix}{i:06d}" for i in range(n)]
        t0 = time.time()
        m = ex.map(noop, items, params={"marker": str(self.marker), "sleep": self.sleep})
        self._maps.append(m)
        return t0

    def finish_maps(self, timeout: float = 120.0) -> None:
        """Wait for every map's results (all must succeed), and fold its client's requests in."""
        for m in self._maps:
            m.results(timeout=timeout, progress=False)
        self._maps.clear()
        if self._js is not None:
            self.client_counts = dict(self._js.counts())

    def latency(self, tries: int) -> list[float]:
        """Dispatch latency of single tasks into the idle workers."""
        out: list[float] = []
        if self.system == "qubits" and self.kind == "python":
            from ._maptask import noop

            ex = self._executor()
            for j in range(tries):
                time.sleep(random.uniform(0.1, 1.1))
                t = time.time()
                f = ex.submit(noop, f"d{j:06d}", {"marker": str(self.marker)})
                out.append(self._started(f"d{j:06d}") - t)
                f.result(timeout=60)
            return out
        if self.system == "qubits":
            js = jobspaces.open_jobspace(self.target["url"])
            for j in range(tries):
                time.sleep(random.uniform(0.1, 1.1))
                cmd = ["/bin/bash", "-c", f'echo "d{j:06d} $EPOCHREALTIME $QUBITS_NODE" >> {self.marker}']
                t = time.time()
                asyncio.run(submit(js, 1, command=cmd))
                out.append(self._started(f"d{j:06d}") - t)
            return out
        py = ARQ_PY if self.system == "arq" else PEERS_PY
        proc = subprocess.Popen([str(py), "producer.py", self.system, "--stdin"], cwd=KIT, env=self.env("producer"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise BenchError(f"{self.system}: the latency producer did not start")
            for j in range(tries):
                time.sleep(random.uniform(0.1, 1.1))
                proc.stdin.write(f"d{j:06d}\n")
                proc.stdin.flush()
                t = float(json.loads(proc.stdout.readline())["t"])
                out.append(self._started(f"d{j:06d}") - t)
        finally:
            proc.stdin.close()
            stop_process(proc, 5)
        return out

    def _started(self, tag: str, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for task, t in read_marker(self.marker):
                if task == tag:
                    return t
            time.sleep(0.002)
        raise BenchError(f"{self.system}: task {tag} did not start within {timeout:.0f}s\n{self.logs()}")

    def qubits_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for path in self.dir.glob("n*.json"):
            for k, v in json.loads(path.read_text()).get("counts", {}).items():
                total[k] = total.get(k, 0) + v
        return total


def _settle(setup: Setup) -> None:
    setup.produce(1, prefix="w")
    if not wait_for_marker(setup.marker, 1, 90):
        raise BenchError(f"{setup.system} on {setup.store}: the warm-up task never ran\n{setup.logs()}")
    time.sleep(3.0 if setup.store == "redis" else 2.0)


def e2e(system: str, store: str, target: dict[str, str], kind: str, tasks: int, workers: int, reps: int,
        latency_tries: int, moto: Moto | None = None, bucket: Any = None) -> dict[str, Any]:
    """reps end-to-end runs (fresh state each) and one dispatch-latency series."""
    walls: list[float] = []
    reqs: list[float] = []
    lat: list[float] = []
    for _rep in range(reps):
        tgt = dict(target() if callable(target) else target)
        work = Path(tempfile.mkdtemp(prefix="qubits-bench-peer-"))
        setup = Setup(system, store, tgt, kind, work / "marker")
        setup.start(workers)
        try:
            _settle(setup)
            offset = moto.log_offset() if moto else 0
            t0 = setup.produce(tasks)
            lines = [x for x in wait_for_marker(setup.marker, tasks + 1, timeout=max(300.0, tasks / 2)) if x[0].startswith("t")]
            if len(lines) < tasks:
                raise BenchError(f"{system} on {store}: {len(lines)} of {tasks} tasks started\n{setup.logs()}")
            check_exactly_once(lines, {f"t{i:06d}" for i in range(tasks)}, f"{system} on {store}")
            walls.append(max(t for _, t in lines) - t0)
            setup.finish_maps()
            time.sleep(2.0)
            if moto:
                reqs.append(request_total(moto.requests(tgt["S3_BUCKET"] if "S3_BUCKET" in tgt else tgt["bucket"], offset,
                                                        prefix=tgt.get("prefix", ""))) / tasks)
        finally:
            setup.stop()
        if system == "qubits" and not moto:
            counts = setup.qubits_counts()
            for k, v in setup.client_counts.items():
                counts[k] = counts.get(k, 0) + v
            reqs.append(request_total(counts) / tasks)
    if latency_tries:
        tgt = dict(target() if callable(target) else target)
        setup = Setup(system, store, tgt, kind, Path(tempfile.mkdtemp(prefix="qubits-bench-lat-")) / "marker")
        setup.start(workers)
        try:
            _settle(setup)
            lat = setup.latency(latency_tries)
        finally:
            setup.stop()
    med = statistics.median(walls)
    return {
        "system": LABELS[system], "key": system, "store": store, "task": kind, "tasks": tasks, "workers": workers,
        "wall_s": {"min": round(min(walls), 3), "median": round(med, 3), "max": round(max(walls), 3)},
        "tasks_per_s": {"min": round(tasks / max(walls), 1), "median": round(tasks / med, 1), "max": round(tasks / min(walls), 1)},
        "dispatch_ms": summary_ms(lat) if lat else None,
        "requests_per_task": round(statistics.median(reqs), 2) if reqs else None,
    }


def kill9(system: str, store: str, target: dict[str, str], kind: str, window: float) -> str:
    """Kill the node running a 5 s task one second in; say whether and when the task started again."""
    work = Path(tempfile.mkdtemp(prefix="qubits-bench-kill-"))
    setup = Setup(system, store, dict(target), kind, work / "marker", sleep=5.0)
    setup.start(2)
    try:
        _settle(setup)
        setup.produce(1, prefix="k")
        first = [x for x in wait_for_marker(setup.marker, 2, 60) if x[0].startswith("k")]
        if not first:
            return "the task never started"
        lines = setup.marker.read_text().splitlines()
        node = next(line.split()[2] for line in lines if line.startswith("k"))
        time.sleep(1.0)
        killed = time.time()
        setup.kill9(node)
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            again = [x for x in read_marker(setup.marker) if x[0].startswith("k")]
            if len(again) >= 2:
                return f"re-run after {again[1][1] - killed:.1f} s"
            time.sleep(0.05)
        return f"not re-run within {window:.0f} s (lost, or waiting for a timeout)"
    finally:
        setup.stop()


def run(bench_run: Any) -> dict[str, Any]:
    """The peers scenario; rows for every system and both task kinds, and the ratios of qubits to each."""
    from ._stores import use_dummy_aws

    use_dummy_aws()
    p = bench_run.plan.peers
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    missing = [str(x) for x in (PEERS_PY, ARQ_PY) if not x.exists()]
    kinds = ["python", "shell"]
    qubits_python = _qubits_python_available()
    if not qubits_python:
        notes.append("qubits Python-callable tasks: not measured, qubits.map and its worker pool have not landed in this "
                     "tree yet; qubits runs shell-command tasks (one bash per task) in every row.")
    if missing:
        notes.append(f"Redis peers and buquet skipped: run bench/setup.sh first (missing {', '.join(missing)})")
    only = set(p.get("only") or [])
    local_root = Path(tempfile.mkdtemp(prefix="qubits-bench-peers-local-"))
    counter = iter(range(10**6))

    def local_target() -> dict[str, str]:
        return {"url": f"file://{local_root / f'js{next(counter)}'}"}

    # -- Redis peers beside qubits on a local directory ------------------------------------------------
    if not missing and (not only or only & set(REDIS_PEERS)):
        with Redis() as redis:
            for system in [x for x in REDIS_PEERS if not only or x in only]:
                for kind in kinds:
                    try:
                        row = e2e(system, "redis", {"BENCH_REDIS": redis.url}, kind, p["redis_tasks"], p["workers"], p["reps"],
                                  p["latency_tries"])
                        if p.get("kill") and kind == "python":
                            redis.flushall()
                            row["kill9"] = kill9(system, "redis", {"BENCH_REDIS": redis.url}, kind, p.get("kill_window", 90))
                        rows.append(row)
                    except BenchError as exc:
                        if "duplicate" in str(exc):
                            raise
                        rows.append({"system": LABELS[system], "key": system, "store": "redis", "task": kind, "error": str(exc)[:200]})
                    redis.flushall()
    qk = "python" if qubits_python else "shell"
    for kind in (kinds if qubits_python else ["shell"]) if not only or "qubits" in only else []:
        row = e2e("qubits", "local", local_target, kind, p["redis_tasks"], p["workers"], p["reps"], p["latency_tries"])
        if p.get("kill") and kind == qk:
            row["kill9"] = kill9("qubits", "local", local_target(), kind, p.get("kill_window", 90))
        rows.append(row)
    # -- buquet beside qubits on the same S3 servers ----------------------------------------------------
    servers: list[tuple[str, Any]] = [("moto", Moto)]
    if p.get("seaweed", True):
        servers.append(("seaweed", Seaweed))
    for store, cls in servers if not only or only & {"buquet", "qubits-s3"} else []:
        try:
            server = cls().start()
        except Exception as exc:  # noqa: BLE001 - a server that cannot start here is reported
            notes.append(f"{store} did not start: {str(exc)[-200:]}")
            continue
        try:
            rows += _s3_pair(store, server, p, kinds, qubits_python, missing, notes)
        finally:
            server.stop()
    _ratios(rows)
    return {"rows": rows, "notes": notes, "targets": peer_targets(rows), "method": __doc__}


def _s3_pair(store: str, server: Any, p: dict[str, Any], kinds: list[str], qubits_python: bool, missing: list[str],
             notes: list[str]) -> list[dict[str, Any]]:
    rows = []
    moto = server if isinstance(server, Moto) else None
    counter = iter(range(10**6))

    def buquet_target() -> dict[str, str]:
        bucket = server.create_bucket(f"bq-{os.getpid()}-{next(counter)}", versioning=True)
        return {"S3_ENDPOINT": server.endpoint, "S3_BUCKET": bucket}

    def qubits_target() -> dict[str, str]:
        n = next(counter)
        if moto:
            bucket = moto.create_bucket(f"qb-{os.getpid()}-{n}")
            return {"url": moto.url(bucket, "js"), "bucket": bucket, "prefix": "js"}
        return {"url": server.url(f"qb{n}")}

    only = set(p.get("only") or [])
    if not missing and (not only or "buquet" in only):
        for kind in kinds:
            try:
                row = e2e("buquet", store, buquet_target, kind, p["s3_tasks"], p["workers"], p["reps"], p["latency_tries"], moto=moto)
                if p.get("kill") and kind == "python":
                    row["kill9"] = kill9("buquet", store, buquet_target(), kind, p.get("kill_window", 90))
                rows.append(row)
            except BenchError as exc:
                if "duplicate" in str(exc):
                    raise
                rows.append({"system": "buquet", "key": "buquet", "store": store, "task": kind, "error": str(exc)[:200]})
    for kind in (kinds if qubits_python else ["shell"]) if not only or "qubits-s3" in only else []:
        row = e2e("qubits", store, qubits_target, kind, p["s3_tasks"], p["workers"], p["reps"], p["latency_tries"], moto=moto)
        if p.get("kill") and kind == ("python" if qubits_python else "shell"):
            row["kill9"] = kill9("qubits", store, qubits_target(), kind, p.get("kill_window", 90))
        rows.append(row)
    return rows


def _qubits_python_available() -> bool:
    import qubits

    return hasattr(qubits, "map")


def _ratios(rows: list[dict[str, Any]]) -> None:
    """qubits tasks/s divided by each peer's, against qubits on the same store family (local for Redis)."""
    def ours(store: str, kind: str) -> dict[str, Any] | None:
        fam = "local" if store == "redis" else store
        for r in rows:
            if r.get("key") == "qubits" and r["store"] == fam and r["task"] == kind and "tasks_per_s" in r:
                return r
        for r in rows:  # no qubits row of this kind: compare with its shell row, and say so
            if r.get("key") == "qubits" and r["store"] == fam and "tasks_per_s" in r:
                return r
        return None

    for r in rows:
        if r.get("key") == "qubits" or "tasks_per_s" not in r:
            continue
        q = ours(r["store"], r["task"])
        if q:
            r["qubits_ratio"] = round(q["tasks_per_s"]["median"] / r["tasks_per_s"]["median"], 2)
            r["compared_with"] = f"qubits {q['task']} on {q['store']}"
            if r.get("dispatch_ms") and q.get("dispatch_ms"):
                r["dispatch_p50_ratio"] = round(q["dispatch_ms"]["p50"] / r["dispatch_ms"]["p50"], 2)


def peer_targets(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    out = []
    for r in rows:
        if r.get("key") == "buquet" and "qubits_ratio" in r:
            q = next((x for x in rows if x.get("key") == "qubits" and x["store"] == r["store"] and x["task"] == r["task"]
                      and "tasks_per_s" in x), None)
            reqs = q.get("requests_per_task") if q else None
            ok = r["qubits_ratio"] >= 3 and (reqs is None or reqs <= 8)
            out.append((f">= 3x buquet's throughput at <= 8 requests/task ({r['store']}, {r['task']} task)",
                        f"{r['qubits_ratio']:.2f}x, {reqs if reqs is not None else '?'} requests/task", "met" if ok else "missed"))
        if r.get("key") == "celery" and r["task"] == "python" and "qubits_ratio" in r:
            out.append(("Python tasks ahead of Celery on a local directory", f"{r['qubits_ratio']:.2f}x ({r['compared_with']})",
                        "met" if r["qubits_ratio"] > 1 and "python" in r["compared_with"] else "missed"))
    return out
