"""The soak harness: a DAG workload, a fleet of agents as real processes, a fault schedule, and the
invariants of DESIGN.md §4 checked over the whole jobspace at the end.

    plan = Plan(tasks=600, agents=4)
    run = ChaosRun(url, tmp_path, plan, upstream=("127.0.0.1", moto_port))   # upstream: a server's port
    figures = run.run()
    figures.assert_safe()
    print(figures.line())

Every task appends ``job task attempt node`` to a side-effect log when it starts and writes the same line
to ``$QUBITS_OUTPUT/out.txt``, so executions are counted outside the jobspace and each output says which
attempt wrote it. Faults act on the fleet from this process (kill -9 and restart, SIGSTOP for longer than
the ttl and SIGCONT, a TCP proxy per agent that delays, resets or black-holes its connections) and inside
each agent (QUBITS_FAULTS: 5xx, 503 SlowDown, 409 conflicts, timeouts, slow responses, writes that land
but report failure); some agents run with their wall clock an hour ahead or behind (libfaketime).
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobspaces
import qubits
from qubits import _layout as layout
from qubits._defaults import TOMBSTONE_LINGER
from qubits._records import Lease, TaskSpec
from tests.agents import AgentProcess
from tests.chaos.invariants import check_invariants
from tests.chaos.proxy import TcpProxy

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
"""libfaketime from Debian's ``faketime`` package (apt-get install -y faketime)."""

STORE_FAULTS = ("5xx", "503", "409", "timeout", "landed_but_failed")
"""Kinds the fault-injecting jobspace counts (jobspaces.Faults)."""
PROXY_FAULTS = ("delay", "reset", "blackhole")
FLEET_FAULTS = ("kill9", "freeze")


@dataclass
class Plan:
    """How big the workload is and how hard the schedule hits it."""

    tasks: int = 600
    agents: int = 4
    slots: int = 3
    ttl: float = 2.0
    long_fraction: float = 0.05
    """Share of tasks that sleep long enough (1-2.5 s) to be caught running by a kill or a freeze."""
    store_faults: dict[str, Any] = field(
        default_factory=lambda: {
            "error_5xx": 0.01,
            "slow_down_503": 0.01,
            "conflict_409": 0.005,
            "timeout": 0.005,
            "landed_but_failed": 0.01,
            "latency": [0.0, 0.01],
        }
    )
    kill_every: float = 6.0
    """Mean seconds between kill -9s (each victim is restarted 1-3 s later)."""
    freeze_every: float = 8.0
    """Mean seconds between freezes (SIGSTOP for 1.5-3 ttl, then SIGCONT)."""
    proxy_every: float = 6.0
    """Mean seconds between misbehaviours of each kind (delay, reset, black hole) on one agent's link (S3 only)."""
    skews: tuple[str, ...] = ("+1h", "-1h")
    """Wall-clock offsets given to the first agents (libfaketime); the others keep the true time."""
    chaos_until: float = 0.8
    """Fleet and network faults stop when this share of tasks is done (store faults never stop)."""
    budget: float = 240.0
    """Seconds the job may take before the run counts as stuck (a liveness failure)."""
    seed: int = 1


def build_tasks(plan: Plan, side: Path, rng: random.Random) -> list[TaskSpec]:
    """A DAG: 1/8 roots, then tasks that wait for one to three earlier tasks at least 20 back."""
    tasks = []
    line = '"$QUBITS_JOB $QUBITS_TASK $QUBITS_ATTEMPT $QUBITS_NODE"'
    for i in range(plan.tasks):
        deps: list[str] = []
        if i >= max(20, plan.tasks // 8):
            window = range(max(0, i - 250), i - 20)
            deps = sorted({f"t{j:05d}" for j in rng.sample(window, min(len(window), rng.randint(1, 3)))})
        sleep = f"; sleep {rng.uniform(1.0, 2.5):.2f}" if rng.random() < plan.long_fraction else ""
        command = f'echo {line} >> {side}; echo {line} > "$QUBITS_OUTPUT/out.txt"{sleep}'
        tasks.append(TaskSpec(id=f"t{i:05d}", command=command, deps=deps, max_attempts=25, backoff=0.2))
    return tasks


@dataclass
class Figures:
    """What a run did and what it proved."""

    store: str
    tasks: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    duplicated_tasks: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    freezes: int = 0
    restarts: int = 0
    takeovers: int = 0
    lease_lost: int = 0
    skewed: list[str] = field(default_factory=list)
    skewed_commits: int = 0
    lost: int = 0
    double_commits: int = 0
    superseded_commits: int = 0
    claim_collisions: int = 0
    bad_outputs: int = 0
    stray_leases: int = 0
    leftovers: int = 0
    """Leases or ready entries of the job still there a linger after it finished (nothing may be)."""
    elapsed: float = 0.0
    latency: tuple[float, float] = (0.0, 0.0)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        faults = " ".join(f"{k}={v}" for k, v in sorted(self.faults.items()))
        if self.latency:
            faults += f" slow_responses=every_request+{self.latency[0]:g}-{self.latency[1]:g}s"
        outcomes = ",".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"chaos[{self.store}]: tasks={self.tasks} outcomes({outcomes}) executions={self.executions} "
            f"duplicated={self.duplicated_tasks} faults({faults}) kills={self.kills} freezes={self.freezes} "
            f"takeovers={self.takeovers} leases_lost={self.lease_lost} skewed={','.join(self.skewed) or '-'} "
            f"skewed_commits={self.skewed_commits} "
            f"lost={self.lost} double_commits={self.double_commits} "
            f"commits_from_superseded_attempts={self.superseded_commits} claim_collisions={self.claim_collisions} "
            f"bad_outputs={self.bad_outputs} stray_leases={self.stray_leases} leftovers={self.leftovers} "
            f"elapsed={self.elapsed:.0f}s"
        )

    def assert_safe(self) -> None:
        assert not self.problems, "\n".join(self.problems[:40])
        assert self.lost == 0 and self.double_commits == 0 and self.superseded_commits == 0
        assert self.claim_collisions == 0 and self.bad_outputs == 0 and self.stray_leases == 0 and self.leftovers == 0


class ChaosRun:
    """One workload under one fault schedule, on one jobspace."""

    def __init__(self, url: str, workdir: Path, plan: Plan, *, upstream: tuple[str, int] | None = None) -> None:
        self.url = url
        self.dir = workdir
        self.plan = plan
        self.upstream = upstream
        self.rng = random.Random(plan.seed)
        self.side = workdir / "side-effects.log"
        self.reports = workdir / "faults"
        self.reports.mkdir(parents=True, exist_ok=True)
        store = {"": "local", "file": "local"}.get(urllib.parse.urlsplit(url).scheme, urllib.parse.urlsplit(url).scheme)
        self.fig = Figures(f"{store}+proxy" if upstream else store)
        lo, hi = plan.store_faults.get("latency", (0.0, 0.0))
        self.fig.latency = (float(lo), float(hi))
        self.agents: list[AgentProcess | None] = [None] * plan.agents
        self.incarnation = [0] * plan.agents
        self.proxies: list[TcpProxy] = []
        self.logs: list[Path] = []
        self.frozen: dict[int, float] = {}
        self.restart_at: dict[int, float] = {}
        self.proxy_until: dict[int, float] = {}
        self.events: list[tuple[float, str]] = []

    # -- the fleet ------------------------------------------------------------------------------------
    def _agent_url(self, i: int) -> str:
        if not self.proxies:
            return self.url
        parts = urllib.parse.urlsplit(self.url)
        query = urllib.parse.parse_qs(parts.query)
        query["endpoint"] = [f"http://{self.proxies[i].host}:{self.proxies[i].port}"]
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))

    def _start_agent(self, i: int) -> None:
        self.incarnation[i] += 1
        name = f"a{i}-{self.incarnation[i]}"
        report = self.reports / f"{name}.json"
        env = {
            "QUBITS_FAULTS": json.dumps({**self.plan.store_faults, "seed": self.rng.randrange(1 << 30), "report": str(report)}),
            "QUBITS_LOG_JSON": "1",
        }
        preload = None
        if i < len(self.plan.skews):
            env.update(FAKETIME=self.plan.skews[i], FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_DONT_RESET="1")
            preload = FAKETIME
            if self.incarnation[i] == 1:
                self.fig.skewed.append(f"{name}{self.plan.skews[i]}")
        log = self.dir / "logs" / f"{name}.log"
        self.logs.append(log)
        self.agents[i] = AgentProcess(
            self._agent_url(i), cache=self.dir / "cache" / name, slots=self.plan.slots, ttl=self.plan.ttl,
            name=name, env=env, log=log, preload=preload,
        )

    # -- the schedule ---------------------------------------------------------------------------------
    def _note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))

    def _pick(self, *, allow_frozen: bool = False) -> int | None:
        alive = [i for i, a in enumerate(self.agents) if a is not None and a.alive() and (allow_frozen or i not in self.frozen)]
        return self.rng.choice(alive) if alive else None

    def _kill(self, now: float) -> None:
        i = self._pick()
        if i is None:
            return
        agent = self.agents[i]
        assert agent is not None
        agent.kill9()
        self.fig.kills += 1
        self.restart_at[i] = now + self.rng.uniform(1.0, 3.0)
        self._note(f"kill -9 {agent.name}")

    def _freeze(self, now: float) -> None:
        i = self._pick()
        if i is None:
            return
        agent = self.agents[i]
        assert agent is not None
        agent.freeze()
        self.fig.freezes += 1
        self.frozen[i] = now + self.rng.uniform(1.5, 3.0) * self.plan.ttl
        self._note(f"SIGSTOP {agent.name}")

    def _misroute(self, now: float, mode: str | None = None) -> None:
        free = [i for i in range(len(self.proxies)) if i not in self.proxy_until]
        if not free:
            return
        i = self.rng.choice(free)
        mode = mode or self.rng.choice(PROXY_FAULTS)
        ttl = self.plan.ttl
        duration = {"delay": self.rng.uniform(1.0, 3.0), "reset": self.rng.uniform(0.2, 1.0), "blackhole": self.rng.uniform(0.5, 2.0) * ttl}[mode]
        self.proxies[i].set(mode, delay=self.rng.uniform(0.05, 0.4))
        self.proxy_until[i] = now + duration
        self._note(f"proxy {mode} a{i} for {duration:.1f}s")

    def _tick(self, now: float, chaos: bool) -> None:
        for i, until in list(self.frozen.items()):
            if now >= until or not chaos:
                agent = self.agents[i]
                if agent is not None:
                    agent.thaw()
                    self._note(f"SIGCONT {agent.name}")
                del self.frozen[i]
        for i, at in list(self.restart_at.items()):
            if now >= at:
                self._start_agent(i)
                self.fig.restarts += 1
                del self.restart_at[i]
        for i, until in list(self.proxy_until.items()):
            if now >= until or not chaos:
                self.proxies[i].set("pass")
                del self.proxy_until[i]

    def _stop_fleet(self) -> None:
        for i in list(self.frozen):
            agent = self.agents[i]
            if agent is not None:
                agent.thaw()
        self.frozen.clear()
        for agent in self.agents:
            if agent is not None:
                agent.stop(timeout=15)

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> Figures:
        plan = self.plan
        started = time.monotonic()
        client = qubits.connect(self.url)
        tasks = build_tasks(plan, self.side, self.rng)
        self.fig.tasks = len(tasks)
        job = client.submit(tasks, dag=True, name="chaos")
        self.job = job.id
        if self.upstream is not None:
            self.proxies = [TcpProxy(self.upstream).start() for _ in range(plan.agents)]
        try:
            for i in range(plan.agents):
                self._start_agent(i)
            self._drive(client, started)
        finally:
            self._stop_fleet()
            for p in self.proxies:
                self.fig.faults.update({f"proxy_{k}": v for k, v in p.injected.items()})
                p.stop()
        self.fig.elapsed = time.monotonic() - started
        self._collect_fault_reports()
        check_invariants(self, client)
        client.close()
        return self.fig

    def _drive(self, client: qubits.Client, started: float) -> None:
        plan = self.plan
        # Every kind of fault acts early at least once; then they come at random.
        due = {"kill9": started + 3.0, "freeze": started + 5.0}
        if self.proxies:
            due.update({"delay": started + 2.0, "reset": started + 4.0, "blackhole": started + 6.0})
        firsts = set(due)
        done = 0
        next_count = 0.0
        while True:
            now = time.monotonic()
            if now >= next_count:
                done = len(client.aio_list(layout.done_prefix(self.job)))
                next_count = now + 1.0
                if done >= plan.tasks:
                    break
            if now - started > plan.budget:
                raise AssertionError(f"stuck: {done}/{plan.tasks} done after {plan.budget:.0f}s\n{self._tail()}\n{self._stuck(client)}")
            chaos = done < plan.chaos_until * plan.tasks
            self._tick(now, chaos)
            if chaos:
                for kind, at in list(due.items()):
                    if now < at:
                        continue
                    if kind == "kill9":
                        self._kill(now)
                        due[kind] = now + self.rng.expovariate(1 / plan.kill_every)
                    elif kind == "freeze":
                        self._freeze(now)
                        due[kind] = now + self.rng.expovariate(1 / plan.freeze_every)
                    else:
                        self._misroute(now, kind if kind in firsts else None)
                        firsts.discard(kind)
                        due[kind] = now + self.rng.expovariate(1 / plan.proxy_every)
            time.sleep(0.1)
        # Zombies get their chance: thawed agents try to finish what they held (their commits must fail).
        self._tick(time.monotonic(), chaos=False)
        for i in list(self.restart_at):
            self._start_agent(i)
            del self.restart_at[i]
        time.sleep(plan.ttl + 1.0)
        # Nothing left behind: the live fleet buries every decided lease after the linger (those of killed
        # committers included) and with it any ready entry, so no hint can run a finished task again.
        deadline = time.monotonic() + TOMBSTONE_LINGER + 6 * plan.ttl + 10.0
        while time.monotonic() < deadline:
            leases, ready = self._leftovers(client)
            if not leases and not ready:
                break
            time.sleep(0.5)
        leases, ready = self._leftovers(client)
        self.fig.leftovers = len(leases) + len(ready)
        if self.fig.leftovers:
            self.fig.problems.append(f"left behind after the linger: leases {leases[:10]}, ready entries {ready[:10]}")

    def _leftovers(self, client: qubits.Client) -> tuple[list[str], list[str]]:
        leases = [m.key for m in client.aio_list(f"leases/{self.job}/")]
        ready = [m.key for m in client.aio_list("ready/") if f"/{self.job}/" in m.key]
        return leases, ready

    def _tail(self) -> str:
        events = "\n".join(f"{t:.1f} {w}" for t, w in self.events[-15:])
        logs = "".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:] for p in self.logs[-2:] if p.exists())
        return f"last events:\n{events}\n{logs}"

    def _stuck(self, client: qubits.Client) -> str:
        """What the undecided tasks look like: their leases, their dependencies, their ready entries."""
        specs = jobspaces.run_sync(client.specs.all_tasks(self.job))
        decided = {m.key.rsplit("/", 1)[1].removesuffix(".json") for m in client.aio_list(layout.done_prefix(self.job))}
        ready = {layout.parse_ready(m.key)[3] for m in client.aio_list("ready/")}
        out = []
        for task in sorted(set(specs) - decided)[:12]:
            try:
                lease: Any = Lease.from_json(jobspaces.run_sync(client.aio.get(layout.lease(self.job, task)))[0])
                lease = f"{lease.state.value} by {lease.holder} attempt {lease.attempt} failures {lease.failures}"
            except jobspaces.NotFound:
                lease = "no lease"
            deps = {d: d in decided for d in specs[task][1].deps}
            out.append(f"{task}: {lease}; ready entry {task in ready}; deps decided {deps}")
        return "undecided:\n" + "\n".join(out)

    def _collect_fault_reports(self) -> None:
        for path in self.reports.glob("*.json"):
            try:
                self.fig.faults.update(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        self.fig.faults["kill9"] = self.fig.kills
        self.fig.faults["freeze"] = self.fig.freezes

def faketime_missing() -> str | None:
    """Why wall clocks cannot be skewed here, or None."""
    if not os.path.exists(FAKETIME):
        return f"libfaketime not installed ({FAKETIME}); apt-get install -y faketime (see .ci/run)"
    return None
