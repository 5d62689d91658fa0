"""A host command started before its payload is known (remote_run.transport.Host.prestart), against
the loopback sshd: the command that then runs is that very one (no second session), and one that
nothing takes over ends on the host without having done anything."""

from __future__ import annotations

import json
import time

import pytest
from invoke import Context
from support.cli import remote_exists
from support.workspace import unique_remote_dir

from remote_run import settings
from remote_run.transport import Host


def wait_for(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(0.05)


@pytest.fixture
def host(sshd, monkeypatch):
    """A Host for the loopback sshd whose REMOTE_PYTHON is a name of this test's own (a link to the
    host's python3): the host is shared, and its processes are told apart by it. Its REMOTE_DIR
    does not exist."""
    folder = unique_remote_dir("rrt_prestart")
    python = f"{folder}/python3"
    assert sshd.as_user(["sh", "-c", 'mkdir -m 755 "$1" && ln -s /usr/bin/python3 "$1/python3"', "sh",
                         folder]).returncode == 0
    for name, value in sshd.env(REMOTE_HOST="l1", REMOTE_DIR=f"{folder}/remote", REMOTE_PYTHON=python).items():
        monkeypatch.setenv(name, value)
    made = Host(settings.load(), Context())
    argv, stdin = made.program_with("check", {"root": made.settings.remote_dir})
    assert made.quick(argv, stdin=stdin).exited == 0  # the host keeps the program: one session per command
    yield made, python
    made.close_prestarted()
    sshd.cleanup_remote(folder)


def host_programs(sshd, python: str) -> list[str]:
    """The host's processes started as ``python -I ...`` (the host program), with their command lines."""
    found = sshd.as_user(["pgrep", "-a", "-f", f"^{python} -I"])
    return found.stdout.splitlines()


def test_the_command_started_early_is_the_one_that_runs(sshd, host):
    made, python = host
    mark = sshd.mark()
    made.prestart("check")
    wait_for(lambda: host_programs(sshd, python), "the host program to start before its payload")
    argv, stdin = made.program_with("check", {"root": made.settings.remote_dir})
    assert stdin is not None and json.loads(stdin)["root"] == made.settings.remote_dir  # on the early one's stdin
    result = made.quick(argv, stdin=stdin)
    assert result.exited == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ok": True}
    assert sshd.count("Starting session:", mark) == 1
    assert not host_programs(sshd, python)


def test_a_command_nothing_takes_over_ends_on_the_host_having_done_nothing(sshd, host):
    made, python = host
    mark = sshd.mark()
    made.prestart("start", own_session=True)
    wait_for(lambda: host_programs(sshd, python), "the host program to start before its payload")
    made.close_prestarted()
    wait_for(lambda: not host_programs(sshd, python), "the host program to end at the end of its stdin")
    assert sshd.count("Starting session:", mark) == 1
    assert not remote_exists(sshd, made.settings.remote_dir)
    # the next command of that mode is a command of its own, payload and all
    argv, stdin = made.program_with("check", {"root": made.settings.remote_dir})
    assert stdin is None and made.quick(argv).exited == 0


def test_a_command_started_for_another_mode_is_not_taken_over(sshd, host):
    made, python = host
    mark = sshd.mark()
    made.prestart("start", own_session=True)
    wait_for(lambda: host_programs(sshd, python), "the host program to start before its payload")
    argv, stdin = made.program_with("check", {"root": made.settings.remote_dir})
    assert stdin is None  # not the command started early: the payload goes on its command line
    assert made.quick(argv).exited == 0
    assert sshd.count("Starting session:", mark) == 2  # the early `start`, and the `check` of its own
    assert len(host_programs(sshd, python)) == 1  # the early `start`, still waiting for its payload
    made.close_prestarted()
    wait_for(lambda: not host_programs(sshd, python), "the host program to end at the end of its stdin")
