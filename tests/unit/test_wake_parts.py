"""The parts of waking idle agents that need no process: hint signing, addresses, file system checks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nodeagent._wake import notify_refusal, parse_listen
from qubits._hints import HintCheck, hintable, make_hint, parse_address, send_hints
from qubits._records import NodeInfo

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/shared nfs4 rw,vers=4.2 0 0
sshfs#me@host: /home/me/remote fuse.sshfs rw 0 0
tmpfs /tmp tmpfs rw 0 0
"""


def test_without_a_secret_any_hint_wakes_and_garbage_does_not() -> None:
    check = HintCheck(None)
    assert check.accept(make_hint(None)) and check.accept(make_hint(b"k"))
    assert not check.accept(b"hello")


def test_with_a_secret_only_fresh_signed_hints_count_once() -> None:
    check = HintCheck(b"k")
    good = make_hint(b"k")
    assert check.accept(good)
    assert not check.accept(good), "a replay is ignored"
    assert not check.accept(make_hint(None)), "unsigned"
    assert not check.accept(make_hint(b"other")), "signed with another key"
    old = b"qubits-hint/1 %.3f abcd" % (time.time() - 120)
    import hashlib
    import hmac

    assert not check.accept(old + b" " + hmac.new(b"k", old, hashlib.sha256).hexdigest().encode()), "too old"
    assert not check.accept(good[:-1] + b"0"), "tampered"


def test_addresses_are_ip_literals_with_a_port() -> None:
    assert parse_address("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert parse_address("[::1]:4000") == ("::1", 4000)
    assert parse_address("example.com:4000") is None  # no DNS on a submit's path
    assert parse_address("127.0.0.1") is None and parse_address("127.0.0.1:0") is None
    assert parse_listen("10.0.0.5:7999") == ("10.0.0.5", 7999)
    assert parse_listen("127.0.0.1") == ("127.0.0.1", 0)
    assert parse_listen(":7999") == ("127.0.0.1", 7999), "no host: loopback, never every interface"
    assert parse_listen("[::1]:7999") == ("::1", 7999)
    with pytest.raises(ValueError):
        parse_listen("host:port")


def test_sending_to_dead_or_unreachable_addresses_returns_at_once() -> None:
    t = time.monotonic()
    send_hints([("127.0.0.1", 9), ("192.0.2.1", 9), ("::1", 9)], make_hint(None))
    assert time.monotonic() - t < 0.5


def test_only_live_agents_with_an_address_are_hinted() -> None:
    base = NodeInfo(name="n", host="h", pid=1, version="v", slots=2, hint="127.0.0.1:4000", report_every=1200)
    assert hintable(base, 60)
    assert not hintable(base, 3 * 1200 + 1), "lost"
    from dataclasses import replace

    assert not hintable(replace(base, hint=""), 0)
    assert hintable(replace(base, running=["j/a", "j/b"]), 0), "a busy agent's record is stale: it is hinted too"
    assert not hintable(replace(base, paused=True), 0)
    assert not hintable(replace(base, stopped=True), 0) and not hintable(replace(base, draining=True), 0)


@pytest.mark.parametrize(("path", "polls"), [("/mnt/shared/js", True), ("/home/me/remote/js", True), ("/srv/js", False),
                                            ("/tmp/js", False)])
def test_network_and_user_space_file_systems_poll(path: str, polls: bool) -> None:
    assert (notify_refusal(Path(path), MOUNTS) is not None) is polls
