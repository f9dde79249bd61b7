"""Qfiles: targets, recipes and dependencies in Python, made by agents with no coordinator.

    from qubits.qfile import conf, rule

    @rule(r"part-(\\d+)", deps=lambda ctx, n: [f"raw-{n}"])
    def part(ctx, n): ...

Dependencies are evaluated on the node when a target runs (``_runner``), so the graph can grow while
the job runs; ``plan`` shows it as far as the client can know it; ``submit_targets`` and ``make`` run it
(``_api``); ``timeline_html`` draws a job (``_timeline``).
"""

from ._api import MakeResult, TargetOutput, explain, make, outputs, project_jobspace, submit_targets
from ._context import Context
from ._graph import Node, plan
from ._model import Config, Match, Qfile, Rule, conf, find_qfile, load_qfile, rule
from ._signals import Decline, MissingOutput
from ._timeline import timeline_html

__all__ = [
    "Config",
    "Context",
    "Decline",
    "MakeResult",
    "Match",
    "MissingOutput",
    "Node",
    "Qfile",
    "Rule",
    "TargetOutput",
    "conf",
    "explain",
    "find_qfile",
    "load_qfile",
    "make",
    "outputs",
    "plan",
    "project_jobspace",
    "rule",
    "submit_targets",
    "timeline_html",
]
