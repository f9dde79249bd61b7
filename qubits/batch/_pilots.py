"""Pilots: SLURM jobs that each run ``qubits agent --exit-when-idle`` against a jobspace, lending SLURM
nodes to it for a while (HTCondor's glide-ins). ``qubits slurm agents N``.

Each pilot asks SLURM for a SIGTERM ``lead`` seconds before its time limit (``--signal=B:TERM@lead``):
the agent (the batch shell itself, by exec) then drains — no more claims; running tasks get
``lead - DRAIN_MARGIN`` seconds to finish, then their leases are released for other agents — and exits
before SLURM's own kill. Credentials are never written into the script: sbatch exports the submitter's
environment to the job (its default), where the agent reads them as it always does.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

DRAIN_MARGIN = 30
"""Seconds between a drained pilot releasing the leases it still holds and SLURM's kill."""


@dataclass
class Pilots:
    """What to ask SLURM for, and how each pilot's agent runs."""

    count: int
    jobspace: str
    time: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    lead: int = 120
    """Seconds before the time limit at which SLURM sends SIGTERM."""
    idle: float = 300.0
    """Seconds a pilot waits with nothing to do before it exits (giving its node back)."""
    slots: int = 1
    cpus: int | None = None
    memory: str | None = None
    """SLURM's --mem (e.g. 8G)."""
    gpus: int | None = None
    capabilities: list[str] = field(default_factory=list)
    ttl: float | None = None
    log_dir: Path = field(default_factory=lambda: Path("qubits-pilots"))

    def check(self) -> None:
        if self.count < 1:
            raise UsageError("qubits slurm agents N: N must be at least 1")
        if self.lead <= DRAIN_MARGIN:
            raise UsageError(f"--lead must be more than {DRAIN_MARGIN} seconds (the drain needs time before SLURM's kill)")

    def agent_argv(self) -> list[str]:
        exe = shutil.which("qubits")
        argv = [exe] if exe else [sys.executable, "-m", "qubits.cli"]
        argv += ["--log-level", "INFO", "agent", "--jobspace", self.jobspace, "--exit-when-idle", f"{self.idle:g}",
                 "--stop-timeout", str(self.lead - DRAIN_MARGIN), "--slots", str(self.slots)]
        if self.ttl is not None:
            argv += ["--ttl", f"{self.ttl:g}"]
        if self.cpus:
            argv += ["--cpus", str(self.cpus)]
        if self.gpus:
            argv += ["--gpus", str(self.gpus)]
        for cap in [*self.capabilities, "slurm"]:
            argv += ["--capability", cap]
        return argv

    def script(self) -> str:
        """The sbatch script: a job array of ``count`` pilots."""
        lines = [
            "#!/bin/bash",
            "#SBATCH --job-name=qubits-pilot",
            f"#SBATCH --array=1-{self.count}",
            f"#SBATCH --time={self.time}",
            f"#SBATCH --signal=B:TERM@{self.lead}",
            f"#SBATCH --output={self.log_dir.resolve()}/pilot-%A_%a.log",
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks=1",
        ]
        if self.partition:
            lines.append(f"#SBATCH --partition={self.partition}")
        if self.account:
            lines.append(f"#SBATCH --account={self.account}")
        if self.cpus:
            lines.append(f"#SBATCH --cpus-per-task={self.cpus}")
        if self.memory:
            lines.append(f"#SBATCH --mem={self.memory}")
        if self.gpus:
            lines.append(f"#SBATCH --gres=gpu:{self.gpus}")
        lines += [
            "# The agent replaces this shell, so SLURM's SIGTERM reaches it: it drains and exits in time.",
            f"exec {shlex.join(self.agent_argv())} --name \"slurm-${{SLURM_ARRAY_JOB_ID}}-${{SLURM_ARRAY_TASK_ID}}\"",
            "",
        ]
        return "\n".join(lines)


def submit_pilots(pilots: Pilots) -> tuple[str, Path]:
    """Write the script into ``log_dir`` and submit it; (SLURM's array job id, the script)."""
    pilots.check()
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError("sbatch is not on PATH: run qubits slurm agents on a SLURM login node")
    pilots.log_dir.mkdir(parents=True, exist_ok=True)
    path = pilots.log_dir / "pilots.sbatch"
    path.write_text(pilots.script())
    proc = subprocess.run([sbatch, "--parsable", str(path)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise UsageError(f"sbatch refused the pilots: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip().split(";", 1)[0], path
