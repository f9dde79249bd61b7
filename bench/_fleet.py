"""Real ``qubits agent`` processes for the benchmark, each counting its requests (QUBITS_COUNT_REQUESTS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jobspaces
from qubits.protocol import layout

from ._util import kill_tree, rss_mb, stop_process


class Fleet:
    """``count`` agents with ``slots`` each on one jobspace; ``stop()`` drains them and reads their counts."""

    def __init__(self, url: str, count: int, *, slots: int = 1, ttl: float = 30.0, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, name: str = "bench") -> None:
        self.url = url
        self.dir = Path(tempfile.mkdtemp(prefix="qubits-bench-fleet-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.counts: dict[str, dict[str, Any]] = {}
        for k in range(count):
            node = f"{name}-{k}"
            cache = self.dir / node
            cache.mkdir()
            argv = [sys.executable, "-m", "qubits.cli", "--log-level", "WARNING", "agent", "--jobspace", url,
                    "--slots", str(slots), "--ttl", str(ttl), "--allow-root", "--name", node, *(extra or [])]
            full_env = {**os.environ, "QUBITS_CACHE": str(cache), "QUBITS_COUNT_REQUESTS": str(self.dir / f"{node}.json"),
                        **(env or {})}
            full_env.pop("QUBITS_SECRET", None)
            with (self.dir / f"{node}.log").open("wb") as log:
                self.procs[node] = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every agent has written its presence object."""
        js = jobspaces.SyncJobspace(jobspaces.open_jobspace(self.url))
        deadline = time.monotonic() + timeout
        missing = set(self.procs)
        while missing and time.monotonic() < deadline:
            for node in list(missing):
                if js.exists(layout.node(node)):
                    missing.discard(node)
                elif self.procs[node].poll() is not None:
                    raise RuntimeError(f"agent {node} exited with {self.procs[node].returncode}: {self.log(node)[-1500:]}")
            time.sleep(0.1)
        if missing:
            raise RuntimeError(f"agents not up after {timeout:.0f}s: {sorted(missing)}")

    def log(self, node: str) -> str:
        return (self.dir / f"{node}.log").read_text(errors="replace")

    def pid(self, node: str) -> int:
        return self.procs[node].pid

    def rss(self) -> dict[str, float | None]:
        return {node: rss_mb(p.pid) for node, p in self.procs.items()}

    def kill9(self, node: str) -> None:
        """SIGKILL an agent and its tasks, as a machine dying would."""
        kill_tree(self.procs[node].pid)
        self.procs[node].wait(10)

    def stop(self, timeout: float = 30.0) -> Counter[str]:
        """SIGTERM every agent (drain), wait, and return the sum of their request counts."""
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            stop_process(p, timeout)
        total: Counter[str] = Counter()
        for node in self.procs:
            path = self.dir / f"{node}.json"
            if path.is_file():
                raw = json.loads(path.read_text())
                self.counts[node] = raw
                total.update(raw.get("counts", {}))
        return total

    def agent_counters(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for raw in self.counts.values():
            out.update(raw.get("agent", {}))
        return out

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
