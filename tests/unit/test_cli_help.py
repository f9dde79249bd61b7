"""Every verb's --help names its defaults and shows one example that parses."""

from __future__ import annotations

import argparse
import shlex

import pytest

from qubits.cli import build_parser
from qubits.cli._help import EXAMPLES, verbs

_PARSER = build_parser()
_VERBS = dict(verbs(_PARSER))


@pytest.mark.parametrize("path", sorted(_VERBS))
def test_every_verb_has_an_example_that_parses(path: str) -> None:
    sub = _VERBS[path]
    text = sub.format_help()
    assert "example:" in text, f"`qubits {path} --help` shows no example: add one to qubits/cli/_help.py EXAMPLES"
    words = shlex.split(EXAMPLES[path])
    assert words[0] == "qubits" and " ".join(words[1 : 1 + len(path.split())]) == path
    args = build_parser().parse_args(words[1:])  # an example that no longer parses fails here (exit 2)
    assert args.verb == path.split()[0]


@pytest.mark.parametrize("path", sorted(_VERBS))
def test_every_option_with_a_default_names_it(path: str) -> None:
    sub = _VERBS[path]
    text = " ".join(sub.format_help().split())
    for action in sub._actions:
        if not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS):
            continue
        helped = " ".join((action.help or "").split())
        if "env " in helped:
            continue  # an environment default may carry a secret: its help names the variable instead
        assert "default" in text and (str(action.default) in text or "default" in helped), (
            f"`qubits {path} --help` does not show the default of {action.option_strings[0]}"
        )


def test_an_environment_default_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUBITS_JOBSPACE", "s3://bucket/work?secret=hunter2")
    text = build_parser()._subparsers._group_actions[0].choices["status"].format_help()  # type: ignore[union-attr]
    assert "hunter2" not in text


def test_a_letter_means_one_option_across_every_verb() -> None:
    meanings: dict[str, dict[str, list[str]]] = {}
    for path, sub in _VERBS.items():
        for action in sub._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            for short in (o for o in action.option_strings if len(o) == 2 and o != "-h"):
                meanings.setdefault(short, {}).setdefault(longs[0] if longs else short, []).append(path)
    clashes = {letter: uses for letter, uses in meanings.items() if len(uses) > 1}
    assert not clashes, f"one letter, several options: {clashes}"
