"""Two checkouts with the same folder name share the default REMOTE_DIR: it knows which checkout it
mirrors, and the other one is refused in one line, with nothing changed on the host, until it takes
REMOTE_DIR over. The real CLI against the loopback sshd."""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from pathlib import Path

import pytest
from support.cli import cli, one_line_error, released, remote_exists, remote_run_lines, tree
from support.workspace import make_workspace

from remote_run.errors import Kind
from remote_run.settings import default_remote_dir

REFUSED = Kind.ENVIRONMENT.status  # the exit status of a refused REMOTE_DIR (remote_run.errors.Kind.of)


@pytest.fixture
def two(sshd, tmp_path):
    """Checkouts a and b of one project, in different places, with the same folder name: both get
    the default REMOTE_DIR (nothing sets it)."""
    name = f"proj_{uuid.uuid4().hex[:8]}"
    a = make_workspace(tmp_path / "laptop", name)
    b = make_workspace(tmp_path / "elsewhere", name)
    remote = default_remote_dir(a)
    assert remote == default_remote_dir(b)
    yield a, b, remote
    sshd.cleanup_remote(remote)


def inv(sshd, ws: Path, *args: str, **env):
    return cli(sshd, ws, *args, venv=False, **env)


def ok(done):
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def where(ws: Path) -> str:
    return f"{socket.gethostname()}:{ws}"


def record(remote: str) -> dict:
    return json.loads((Path(remote) / ".remote-run" / "checkout").read_text())


def refused(done, ws: Path) -> str:
    """The one line refusing a REMOTE_DIR that mirrors checkout ``ws``."""
    line = one_line_error(done)
    assert done.returncode == REFUSED, (done.returncode, done.stderr)
    assert "mirrors another checkout" in line and f"({where(ws)}, synced " in line, line
    assert "--take-over" in line and "set REMOTE_DIR to another path" in line, line
    assert [each for each in remote_run_lines(done.stderr) if "checkout" in each] == [line], done.stderr
    return line


def test_the_second_checkout_is_refused_and_nothing_changes_on_the_host(sshd, two):
    a, b, remote = two
    ok(inv(sshd, a, "sync"))
    ok(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok"))
    assert record(remote)["from"] == where(a)
    released(remote)  # the run's snapshot goes after its exit status: not while we look
    before = tree(Path(remote), skip=())  # everything, the stamp and the record included
    (b / "scripts" / "hello.py").write_text("print('the other checkout')\n")  # b's tree differs from a's

    line = refused(inv(sshd, b, "sync"), a)
    assert line.startswith(f"remote-run: REMOTE_DIR={remote} on l1 mirrors another checkout"), line
    refused(inv(sshd, b, "run", "scripts/hello.py", "--cpu-ok"), a)
    refused(inv(sshd, b, "train-hlb", "--epochs", "1", "--cpu-ok"), a)
    dry = inv(sshd, b, "sync", "--dry-run")
    assert "a sync would refuse it" in one_line_error(dry) and where(a) in one_line_error(dry)
    assert tree(Path(remote), skip=()) == before

    # Whose runs: status, pull-logs and clean say so; clean --yes refuses another checkout's.
    mine, theirs = ok(inv(sshd, a, "status")), ok(inv(sshd, b, "status"))
    assert mine.stdout == theirs.stdout and "hello.py" not in theirs.stderr  # the table as it was, on stdout
    assert f"runs of this checkout (REMOTE_DIR={remote} on l1)" in mine.stderr, mine.stderr
    assert f"REMOTE_DIR={remote} on l1 mirrors another checkout ({where(a)}, synced " in theirs.stderr
    assert "these are its runs" in theirs.stderr, theirs.stderr
    pulled = ok(inv(sshd, b, "pull-logs"))
    assert f"mirrors another checkout ({where(a)}" in pulled.stderr and "these are its runs" in pulled.stderr
    line = one_line_error(inv(sshd, b, "clean"))
    assert f"1 run of another checkout ({where(a)}" in line and "--yes --take-over" in line, line
    line = one_line_error(inv(sshd, a, "clean"))
    assert "the 1 run of this checkout" in line and "--take-over" not in line, line
    done = inv(sshd, b, "clean", "--yes")
    line = one_line_error(done)
    assert done.returncode == REFUSED and "mirrors another checkout" in line and "holds 1 of its runs" in line, line
    assert "--take-over" in line, line
    assert tree(Path(remote), skip=()) == before


def test_an_identical_copy_elsewhere_is_refused_like_any_other_checkout(sshd, two, tmp_path):
    """Checkout c is a copy of a elsewhere that made itself a new checkout: the same files, the
    same times, the same default REMOTE_DIR. The host refuses c's identity on the run and on a
    small change."""
    a, _, remote = two
    ok(inv(sshd, a, "sync"))
    c = tmp_path / "copy" / a.name  # the same folder name: the same default REMOTE_DIR
    shutil.copytree(a, c, symlinks=True)  # same files, same times: the fast path's manifest matches
    (c / "var" / "runs" / ".checkout").unlink()  # a copy made a new checkout
    before = tree(Path(remote), skip=())
    refused(inv(sshd, c, "run", "scripts/hello.py", "--cpu-ok"), a)
    (c / "README.md").write_text("a small change\n")
    refused(inv(sshd, c, "sync"), a)
    assert tree(Path(remote), skip=()) == before
    ok(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok"))  # a still mirrors it
    assert record(remote)["from"] == where(a)


def test_a_checkout_cloned_again_in_the_same_place_takes_over_with_a_note(sshd, two, tmp_path):
    """A checkout deleted and cloned again where it was (or whose local state was deleted) is a new
    checkout in the same machine:path. Two checkouts cannot stand in one place, so the new one
    mirrors REMOTE_DIR from its first sync, says so once, and keeps the earlier one's runs."""
    a, b, remote = two
    ok(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok"))
    [earlier] = [p.name for p in (Path(remote) / ".remote-run" / "runs").iterdir()]
    old_id = record(remote)["id"]
    shutil.rmtree(a / "var")  # as a fresh clone has it: no local state, no checkout id
    time.sleep(1)  # a run id is its starting second: a clash with the earlier checkout's is refused (test_host)
    assert "runs of this checkout" in ok(inv(sshd, a, "status")).stderr
    first = ok(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok"))
    notes = [line for line in remote_run_lines(first.stderr) if "earlier checkout" in line]
    assert notes == [f"remote-run: REMOTE_DIR={remote} mirrored an earlier checkout in this same place "
                     f"({where(a)}, synced " + notes[0].split(", synced ", 1)[1]], first.stderr
    assert notes[0].endswith("; it mirrors this one now, with that one's runs"), notes
    assert record(remote)["id"] != old_id and record(remote)["from"] == where(a)
    assert (Path(remote) / ".remote-run" / "runs" / earlier / "run.log").is_file()
    again = ok(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok"))
    assert "earlier checkout" not in again.stderr  # said once
    refused(inv(sshd, b, "sync"), a)  # another place is still another checkout


def test_take_over_makes_remote_dir_this_checkouts_and_keeps_the_others_runs(sshd, two):
    a, b, remote = two
    ok(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok"))
    [theirs] = [p.name for p in (Path(remote) / ".remote-run" / "runs").iterdir()]
    ok(inv(sshd, b, "sync", "--take-over"))
    assert record(remote)["from"] == where(b)
    assert (Path(remote) / ".remote-run" / "runs" / theirs / "run.log").is_file()  # a's run stays
    refused(inv(sshd, a, "sync"), b)
    refused(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok"), b)
    ok(inv(sshd, a, "run", "scripts/hello.py", "--cpu-ok", "--take-over"))  # the run tasks take the flag too
    assert record(remote)["from"] == where(a) and len(list((Path(remote) / ".remote-run" / "runs").iterdir())) == 2
    ok(inv(sshd, b, "clean", "--yes", "--take-over"))  # deletes a's REMOTE_DIR, runs and all, on request
    assert not remote_exists(sshd, f"{remote}/runs")


def test_a_moved_checkout_keeps_syncing_and_its_record_follows_it(sshd, two, tmp_path):
    a, _, remote = two
    ok(inv(sshd, a, "sync"))
    moved = tmp_path / "new" / "place" / a.name  # the same folder name: the same default REMOTE_DIR
    moved.parent.mkdir(parents=True)
    shutil.move(a, moved)
    ok(inv(sshd, moved, "sync"))
    assert record(remote)["from"] == where(moved)
    ok(inv(sshd, moved, "run", "scripts/hello.py", "--cpu-ok"))
    assert "runs of this checkout" in ok(inv(sshd, moved, "status")).stderr


def test_a_remote_dir_synced_before_checkouts_were_recorded_is_adopted_by_the_first_to_sync(sshd, two):
    a, b, remote = two
    ok(inv(sshd, a, "sync"))
    sshd.as_user(["rm", f"{remote}/.remote-run/checkout"])  # as an older remote-run left it
    assert "does not say which checkout it mirrors" in ok(inv(sshd, b, "status")).stderr
    ok(inv(sshd, b, "sync"))  # adopted silently
    assert record(remote)["from"] == where(b)
    refused(inv(sshd, a, "sync"), b)
