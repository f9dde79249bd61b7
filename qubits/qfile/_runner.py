"""Making one target, in its task's own process on a node (``nodeagent._pyexec`` calls ``run_target``).

1. Load the Qfile from the code folder (``$QUBITS_CODE``) under the job's profile.
2. Evaluate the target's dependencies here, now (a function may read other targets' outputs).
3. If some are not made yet: write ``control.json`` {"kind": "needs", "tasks": [...]} and exit 75; the
   agent adds those tasks and parks this one until they are decided, then it runs again.
4. Otherwise run the recipe. ``Decline`` → {"kind": "decline"}; ``MissingOutput(dep)`` → the
   dependency's round is marked invalid and its next round is needed (made again, then this target
   runs again); a cycle or a Qfile that does not load → {"kind": "fail"} (retrying cannot help).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import jobspaces

from .._defaults import CONTROL_EXIT
from .._records import JobSpec, TaskSpec
from ..errors import CycleError, QfileError, UsageError
from ._context import Context, run_shell
from ._fresh import Identities, folder_files, identity_of, output_digest
from ._index import lookup, record
from ._jobview import DepState, JobView
from ._model import Match, Qfile, load_qfile
from ._signals import Decline, MissingOutput, NeedTargets
from ._tasks import MAX_ROUNDS, ROOT, target_spec


def _control(scratch: Path, control: dict[str, Any]) -> int:
    (scratch / "control.json").write_text(json.dumps(control))
    return CONTROL_EXIT


def _fail(scratch: Path, reason: str) -> int:
    """A failure no retry can mend (a cycle, a Qfile that does not load, a target no rule makes)."""
    print(f"qubits: {reason}", file=sys.stderr, flush=True)
    return _control(scratch, {"kind": "fail", "reason": reason})


class _Run:
    """One attempt at one target."""

    def __init__(self, spec: dict[str, Any], scratch: Path) -> None:
        self.task = TaskSpec.from_dict(spec["task"], "spec.json")
        self.job = JobSpec.from_dict(spec["job"], "spec.json")
        self.scratch = scratch
        self.code = Path(os.environ.get("QUBITS_CODE") or os.getcwd())
        self.profile: str | None = self.job.config.get("profile")
        self.qfile: Qfile | None = None
        self.config: dict[str, Any] = {}
        self.view: JobView | None = None

    def load(self) -> None:
        self.qfile = load_qfile(self.code / str(self.job.config.get("qfile") or "Qfile"), self.profile)
        self.config = self.qfile.resolve(self.profile)
        js = jobspaces.SyncJobspace(jobspaces.open_jobspace(os.environ["QUBITS_JOBSPACE"]))
        self.view = JobView(js, self.job)

    def needs(self, states: list[DepState]) -> int:
        """Ask for the dependencies not made yet (after checking they close no cycle), and park."""
        assert self.qfile is not None and self.view is not None
        specs = []
        for st in states:
            try:
                specs.append(target_spec(self.qfile, self.config, st.target, st.round).to_dict())
            except UsageError as exc:
                return _fail(self.scratch, f"{exc} (needed by {self.name})")
        self.view.check_cycle(self.task.id, [st.tid for st in states])
        shown = ", ".join(st.target for st in states[:5]) + (f" and {len(states) - 5} more" if len(states) > 5 else "")
        print(f"qubits: {self.name} waits for {shown}", flush=True)
        return _control(self.scratch, {"kind": "needs", "tasks": specs})

    @property
    def name(self) -> str:
        return str(self.task.payload.get("target") or self.task.name or self.task.id)

    def run(self) -> int:
        try:
            self.load()
        except QfileError as exc:
            return _fail(self.scratch, str(exc))
        assert self.qfile is not None and self.view is not None
        ctx: Context | None = None
        try:
            if self.task.id == ROOT:
                deps = [str(t) for t in self.task.payload.get("targets") or []]
                match = None
            else:
                match = self.qfile.match(self.name)
                ctx = self._context(match)
                deps = match.deps(ctx)
            if self.name in deps and match is not None:
                raise CycleError(f"dependency cycle: {self.name} -> {self.name}")
            states = [self.view.resolve(d) for d in deps]
            pending = [st for st in states if not st.succeeded]
            if pending:
                return self.needs(pending)
            for st in states:
                if st.job == self.job.id and st.src is None:
                    record(self.view.js, self.view.made(st), st.run)  # decided: reusable from now on
            # The result records what the target was made from (``outputs`` follows it through
            # targets that have no files of their own, like ``default``).
            made = {"target": self.name, "deps": deps, "from": {st.target: list(st.run) for st in states}}
            if match is None or ctx is None:
                (self.scratch / "result").write_text(json.dumps(made))
                print(f"qubits: made {', '.join(deps)}", flush=True)
                return 0
            ctx.deps = deps
            ctx._states.update({st.target: st for st in states})
            return self._make(ctx, match, states, made)
        except NeedTargets as exc:
            return self.needs([self.view.resolve(t) for t in exc.targets])
        except Decline as exc:
            print(f"qubits: {self.name} declined on this node: {exc.reason}", flush=True)
            return _control(self.scratch, {"kind": "decline", "reason": exc.reason})
        except MissingOutput as exc:
            return self._missing(exc)
        except (CycleError, QfileError) as exc:
            return _fail(self.scratch, str(exc))
        except UsageError as exc:
            return _fail(self.scratch, str(exc))

    def _context(self, match: Match) -> Context:
        return Context(
            match,
            config=self.config,
            profile=self.profile,
            code=self.code,
            output=Path(os.environ.get("QUBITS_OUTPUT") or self.scratch / "out"),
            scratch=self.scratch,
            job=self.job.id,
            task=self.task.id,
            attempt=int(os.environ.get("QUBITS_ATTEMPT") or 0),
            node=os.environ.get("QUBITS_NODE"),
            round_=int(self.task.payload.get("round") or 0),
            view=self.view,
        )

    def _forced(self, states: list[DepState]) -> bool:
        """Made again whatever its identity: ``-B``, ``--force`` it, or a dependency forced in this job."""
        force = self.job.config.get("force")
        if force is True or (isinstance(force, list) and self.name in force):
            return True
        assert self.view is not None
        return any(st.job == self.job.id and st.src is None and self.view.made(st).get("forced") for st in states)

    def _make(self, ctx: Context, match: Match, states: list[DepState], made: dict[str, Any]) -> int:
        """Reuse the run of an earlier job with this target's identity, or run the recipe."""
        assert self.view is not None
        outputs = {st.target: str(self.view.made(st).get("output") or "/".join(map(str, st.run))) for st in states}
        components = Identities(self.code, self.config).components(match, outputs)
        identity = identity_of(components)
        forced = self._forced(states)
        made.update(identity=identity, components=components, round=ctx.round)
        entry = None if forced or ctx.round > 0 else lookup(self.view.js, identity)
        if entry is not None:
            made.update(reused=[entry["job"], entry["task"], entry["attempt"]], output=entry.get("output"))
            (self.scratch / "result").write_text(json.dumps(made))
            print(f"qubits: {self.name} is made already (job {entry['job']}, identity {identity[:12]}): reused", flush=True)
            return 0
        code = self._recipe(ctx, match)
        if code == 0:
            made.update(output=output_digest(folder_files(ctx.output), outputs), forced=forced)
            (self.scratch / "result").write_text(json.dumps(made))
        return code

    def _recipe(self, ctx: Context, match: Match) -> int:
        recipe = match.rule.recipe
        if recipe is None:
            return 0
        if isinstance(recipe, str):
            code = run_shell(ctx, recipe, match)
            if code != 0:
                _error(self.scratch, f"{self.name}: the command exited with status {code}", "")
            return 0 if code == 0 else 1
        recipe(ctx, *match.groups, **match.named)
        return 0

    def _missing(self, exc: MissingOutput) -> int:
        assert self.view is not None
        state = self.view.resolve(exc.dep)
        if not state.succeeded:
            return self.needs([state])
        if state.round + 1 >= MAX_ROUNDS:
            return _fail(self.scratch, f"{exc} (made {MAX_ROUNDS} times in this job; its recipe may not write it)")
        print(f"qubits: {exc}: making {exc.dep} again", file=sys.stderr, flush=True)
        nxt = self.view.invalidate(state, f"{exc} (found by {self.name})")
        return self.needs([nxt])


def _error(scratch: Path, error: str, tb: str) -> None:
    (scratch / "error.json").write_text(json.dumps({"error": error[:2000], "traceback": tb}))


def run_target(spec: dict[str, Any], scratch: Path) -> int:
    """Make the target of ``spec`` ({"task": TaskSpec dict, "job": JobSpec dict}); the exit status."""
    run = _Run(spec, scratch)
    try:
        return run.run()
    except Exception as exc:  # noqa: BLE001 - a recipe's error fails the attempt, with its traceback
        tb = traceback.format_exc()
        sys.stderr.write(tb)
        _error(scratch, f"{type(exc).__name__}: {exc}", tb)
        return 1
