"""The early check of a warm run, through the real CLI against the loopback sshd: the host walks
REMOTE_DIR under the last sync's rules while this machine walks the workspace, and takes this
machine's verdict from a second line of stdin. A verdict with other rules is walked again under
them; a plan that needs a full rsync calls the check off before the host writes anything; a plan
the guardrails stop leaves the host as it was."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from support.cli import cli as run_cli
from support.cli import one_line_error, remote_exists, remote_read
from support.workspace import make_workspace, unique_remote_dir


def cli(sshd, ws, *args, **env):
    return run_cli(sshd, ws, *args, venv=False, **env)


@pytest.fixture
def repo(sshd, tmp_path):
    """The fixture workspace as a git checkout that ignores *.log, synced once and run warm once."""
    ws = make_workspace(tmp_path)
    shutil.rmtree(ws / ".git", ignore_errors=True)
    (ws / ".gitignore").write_text("*.log\n.env*\n")
    (ws / "scripts" / "count.py").write_text("import os\nprint('RESULT_COUNT files=%d' % len(os.listdir('many')))\n")
    (ws / "many").mkdir()
    (ws / "many" / "0.txt").write_text("0\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "the workspace"]):
        subprocess.run(["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                       capture_output=True)
    remote = unique_remote_dir("rrt_early")
    for _ in range(2):
        done = cli(sshd, ws, "run", "scripts/count.py", "--cpu-ok", REMOTE_DIR=remote)
        assert done.returncode == 0 and "RESULT_COUNT files=1" in done.stdout, done.stderr
    yield ws, remote
    sshd.cleanup_remote(remote)


def test_a_verdict_under_other_rules_is_walked_again_under_them(sshd, repo):
    """A file git starts ignoring changes the rules, not the workspace's files. The host's own file
    at that path makes REMOTE_DIR differ from the last sync under its rules, not under the new ones:
    the early walk (old rules) would call for a full rsync, the check under the new rules does not."""
    ws, remote = repo
    sshd.as_user(["sh", "-c", 'echo "the host\'s own" > "$1/notes.log"', "sh", remote])
    (ws / "notes.log").write_text("this machine's, ignored\n")
    mark = sshd.mark()
    done = cli(sshd, ws, "run", "scripts/count.py", "--cpu-ok", REMOTE_DIR=remote)
    assert done.returncode == 0 and "RESULT_COUNT files=1" in done.stdout, done.stderr
    assert "(no changes; checked on the host)" in done.stderr, done.stderr
    assert sshd.count("Starting session:", mark) == 1
    assert remote_read(sshd, f"{remote}/notes.log") == "the host's own\n"


def test_a_plan_that_needs_a_full_rsync_calls_the_check_off_and_the_run_goes_on(sshd, repo):
    ws, remote = repo
    for i in range(1, 300):  # past what a delta carries
        (ws / "many" / f"{i}.txt").write_text(f"{i}\n")
    done = cli(sshd, ws, "run", "scripts/count.py", "--cpu-ok", REMOTE_DIR=remote)
    assert done.returncode == 0 and "RESULT_COUNT files=300" in done.stdout, done.stderr
    assert "checked on the host" not in done.stderr and "299 files" in done.stderr, done.stderr
    done = cli(sshd, ws, "run", "scripts/count.py", "--cpu-ok", REMOTE_DIR=remote)  # and warm again
    assert "RESULT_COUNT files=300" in done.stdout and "(no changes; checked on the host)" in done.stderr


def test_a_plan_the_guardrails_stop_leaves_the_host_as_it_was(sshd, repo):
    ws, remote = repo
    runs = sorted(sshd.as_user(["ls", f"{remote}/.remote-run/runs"]).stdout.split())
    for i in range(1, 11):
        (ws / "many" / f"{i}.txt").write_text(f"{i}\n")
    done = cli(sshd, ws, "run", "scripts/count.py", "--cpu-ok", REMOTE_DIR=remote, SYNC_MAX_FILES="5")
    assert "SYNC_MAX_FILES=5" in one_line_error(done)
    assert not remote_exists(sshd, f"{remote}/many/1.txt")
    assert sorted(sshd.as_user(["ls", f"{remote}/.remote-run/runs"]).stdout.split()) == runs  # no run started


@pytest.mark.parametrize("task", [["run", "scripts/count.py", "--cpu-ok"], ["sync"]], ids=["run", "sync"])
def test_an_early_check_goes_on_when_the_host_has_lost_its_kept_program(sshd, repo, task):
    """The first command then only asks for the program and is sent again carrying it: the second
    line on stdin must reach that one too."""
    ws, remote = repo
    sshd.as_user(["rm", "-rf", str(sshd.remote_home / ".cache" / "remote-run")])
    mark = sshd.mark()
    done = cli(sshd, ws, *task, REMOTE_DIR=remote)
    assert done.returncode == 0 and "(no changes; checked on the host)" in done.stderr, done.stderr
    assert task[0] == "sync" or "RESULT_COUNT files=1" in done.stdout
    assert sshd.count("Starting session:", mark) == 2  # asked for the program, then sent again with it
