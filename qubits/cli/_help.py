"""Every verb's ``--help`` shows its defaults and one example.

One table of examples (``EXAMPLES``) and one formatter, applied to the whole parser tree after the verb
modules registered their options, so no verb can forget either: a test walks the tree and fails on a
verb without an example.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

EXAMPLES: dict[str, str] = {
    "submit": "qubits submit --commands jobs.txt --requires gpu --max-attempts 1",
    "status": "qubits status --watch",
    "wait": "qubits wait JOB --timeout 3600",
    "logs": "qubits logs JOB t000001 -F",
    "cancel": "qubits cancel JOB",
    "retry": "qubits retry JOB --failed",
    "jobs": "qubits jobs --json",
    "last": "qubits last",
    "nodes": "qubits nodes --all",
    "agent": "qubits agent --jobspace s3://bucket/work --slots 4 --capability gpu --gpus 1",
    "agent pause": "qubits agent pause --for 1h30m",
    "agent resume": "qubits agent resume",
    "agent systemd": "qubits agent systemd --jobspace s3://bucket/work --slots 8 -o qubits-agent.service",
    "doctor": "qubits doctor s3://bucket/work?endpoint=http://127.0.0.1:9000",
    "conf": "qubits conf -p dist",
    "qubits": "qubits qubits report --json",
    "make": "qubits make report -C examples/pipeline",
    "timeline": "qubits timeline -o job.html",
    "batch": "qubits batch submit batch.yaml --dry-run",
    "batch submit": "qubits batch submit batch.yaml --wait",
    "batch template": "qubits batch template -o batch.yaml",
    "pull": "qubits pull lab/sweep results/ --include 'metrics\\.json$'",
    "why": "qubits why JOB t000001",
    "slurm": "qubits slurm batch.yaml -o slurm/",
    "run": "qubits run report -p dist --node gpu1 --node gpu2",
    "pssh": "qubits pssh -p dist -- nvidia-smi",
    "kill": "qubits kill all -p dist --signal TERM",
    "top": "qubits top --interval 2",
    "gc": "qubits gc --older-than 30d --dry-run",
    "rm": "qubits rm JOB --yes",
    "schedule": "qubits schedule list",
    "schedule add": "qubits schedule add nightly --cron '0 3 * * *' --command 'python report.py'",
    "schedule list": "qubits schedule list --json",
    "schedule rm": "qubits schedule rm nightly",
    "dashboard": "qubits dashboard --jobspace s3://bucket/work --port 8265",
}
"""One runnable example per verb, by its path below ``qubits`` (``"agent systemd"``)."""


def _name_default(action: argparse.Action) -> None:
    """Append ``(default: …)`` to an option's help, unless it names its default already.

    Options whose default comes from the environment say so in their help (``env QUBITS_JOBSPACE``) and
    are left alone: the value may carry a secret, and --help must never print one.
    """
    text = action.help or ""
    if (
        action.option_strings
        and action.default not in (None, False, [], argparse.SUPPRESS)
        and text != argparse.SUPPRESS
        and "default" not in text
        and "env " not in text
    ):
        action.help = f"{text} (default: %(default)s)".lstrip()


def verbs(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every verb below ``parser``, depth first, as (path, parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                here = f"{path} {name}".strip()
                yield here, sub
                yield from verbs(sub, here)


def decorate(parser: argparse.ArgumentParser) -> None:
    """Give every verb below ``parser`` the defaults-showing formatter and its example."""
    for path, sub in verbs(parser):
        sub.formatter_class = argparse.RawDescriptionHelpFormatter  # keeps the example's line breaks
        for action in sub._actions:
            _name_default(action)
        example = EXAMPLES.get(path)
        if example and "example:" not in (sub.epilog or ""):
            sub.epilog = ((sub.epilog or "") + "\n\n" if sub.epilog else "") + f"example:\n  {example}"
