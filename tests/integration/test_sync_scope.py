"""Syncing only what a run needs, and a sync that says what it will do, through the real CLI against
the loopback sshd: --only scopes, `!` re-includes, --dry-run, the guardrails and --checksum."""

from __future__ import annotations

import json
import os

import pytest
from support.cli import cli as run_cli
from support.cli import latest_record, one_line_error, remote_exists, remote_read
from support.workspace import make_workspace, unique_remote_dir

EXAMPLE = ("import cvlization, pathlib\n"
           "print('example', pathlib.Path('data.txt').read_text().strip()"
           " if pathlib.Path('data.txt').exists() else 'x')\n")


def cli(sshd, ws, *args, **env):
    return run_cli(sshd, ws, *args, venv=False, **env)


@pytest.fixture
def fresh(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    for rel, text in {"examples/x/train.py": EXAMPLE, "examples/x/notes.txt": "x notes\n",
                      "examples/y/train.py": EXAMPLE, "examples/y/big.txt": "y\n" * 100}.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)
    remote = unique_remote_dir("rrt_scope")
    yield ws, remote
    sshd.cleanup_remote(remote)


def listing(root: str) -> dict:
    """Everything under ``root`` with what a change would touch: type, size, mtime, mode, contents."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            data = b""
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    data = handle.read()
            found[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return found


def test_only_syncs_one_example_and_the_library_and_leaves_the_rest_of_remote_dir_alone(sshd, fresh):
    ws, remote = fresh
    done = cli(sshd, ws, "sync", "--only", "examples/y", REMOTE_DIR=remote)
    assert done.returncode == 0 and "only examples/y" in done.stderr, done.stderr
    sshd.as_user(["sh", "-c", f"mkdir -p {remote}/other && echo mine > {remote}/other/keep.txt"])
    done = cli(sshd, ws, "run", "examples/x/train.py", "--only", "cvlization", "--only", "examples/x",
               REMOTE_DIR=remote)
    assert done.returncode == 0, done.stdout[-800:] + done.stderr
    assert "example x" in done.stdout
    assert remote_exists(sshd, f"{remote}/examples/x/notes.txt")
    assert remote_exists(sshd, f"{remote}/cvlization/torch/__init__.py")
    assert remote_read(sshd, f"{remote}/examples/y/big.txt") == "y\n" * 100  # synced earlier, left alone
    assert remote_read(sshd, f"{remote}/other/keep.txt") == "mine\n"  # the host's own, left alone
    for never in ("scripts", "README.md", "numpy_alias_check.py"):  # outside every scope used
        assert not remote_exists(sshd, f"{remote}/{never}"), never
    synced = json.loads((latest_record(ws, "run") / "result.json").read_text())["synced"]
    assert synced["only"] == ["cvlization", "examples/x"] and synced["files"] == 13 and synced["how"] == "rsync", synced
    # Deletions happen inside the scope only; SYNC_ONLY is the same scope as a setting.
    (ws / "examples" / "x" / "notes.txt").unlink()
    (ws / "examples" / "y" / "big.txt").unlink()
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote, SYNC_ONLY="cvlization examples/x")
    assert done.returncode == 0, done.stderr
    assert not remote_exists(sshd, f"{remote}/examples/x/notes.txt")
    assert remote_exists(sshd, f"{remote}/examples/y/big.txt") and remote_exists(sshd, f"{remote}/other/keep.txt")
    assert remote_exists(sshd, f"{remote}/.remote-run/owner")  # claimed as before


def test_remoteignore_reincludes_with_bang_and_names_left_out_code_once(sshd, fresh):
    ws, remote = fresh
    (ws / "keep.ckpt").write_text("keep me")
    (ws / "examples" / "x" / "var").mkdir()
    (ws / "examples" / "x" / "var" / "helpers.py").write_text("needed = True\n")
    (ws / ".remoteignore").write_text("*.ckpt\n!keep.ckpt\n!.env\n!/var/runs/\n")
    first = cli(sshd, ws, "sync", REMOTE_DIR=remote)
    assert first.returncode == 0, first.stderr
    assert remote_exists(sshd, f"{remote}/keep.ckpt") and not remote_exists(sshd, f"{remote}/model.ckpt")
    assert not remote_exists(sshd, f"{remote}/.env")  # secrets are never re-included
    assert not remote_exists(sshd, f"{remote}/examples/x/var")
    notice = [line for line in first.stderr.splitlines() if "though it holds code" in line]
    assert len(notice) == 1 and "examples/x/var/" in notice[0], first.stderr
    assert "`var` (built-in)" in notice[0] and "!/examples/x/var/" in notice[0], first.stderr
    (ws / "model.ckpt").write_text("changed: the next sync is a full one")
    again = cli(sshd, ws, "sync", "--checksum", REMOTE_DIR=remote)
    assert again.returncode == 0 and "though it holds code" not in again.stderr, again.stderr  # said once
    (ws / ".remoteignore").write_text("*.ckpt\n!keep.ckpt\n!/examples/x/var/\n")
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    assert remote_read(sshd, f"{remote}/examples/x/var/helpers.py") == "needed = True\n"


def test_dry_run_says_what_would_change_and_changes_nothing(sshd, fresh):
    ws, remote = fresh
    cold = cli(sshd, ws, "sync", "--dry-run", REMOTE_DIR=remote)
    assert cold.returncode == 0, cold.stderr
    assert not remote_exists(sshd, remote), "a dry run created REMOTE_DIR"
    assert "would upload 23 files (2.0 kB)" in cold.stdout and "delete 0" in cold.stdout, cold.stdout
    lines = cold.stdout.splitlines()
    largest = lines[lines.index("largest uploads:") + 1:][:10]
    sizes = [int(line.split()[0]) for line in largest]
    assert sizes == sorted(sizes, reverse=True), cold.stdout
    assert "200 bytes  examples/y/big.txt" in cold.stdout and ".env" not in cold.stdout, cold.stdout
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    (ws / "README.md").unlink()
    (ws / "examples" / "x" / "new.py").write_text("n = 1\n")
    before = listing(remote)
    warm = cli(sshd, ws, "sync", "--dry-run", "--only", "examples/x", "--checksum", REMOTE_DIR=remote)
    assert warm.returncode == 0, warm.stderr
    # README.md is outside the scope
    assert "would upload 1 file (6 bytes)" in warm.stdout and "delete 0" in warm.stdout, warm.stdout
    full = cli(sshd, ws, "sync", "--dry-run", REMOTE_DIR=remote)
    assert "would delete:\n  README.md" in full.stdout, full.stdout
    assert listing(remote) == before
    assert remote_exists(sshd, f"{remote}/README.md")
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote)  # the dry runs left the fast path nothing stale to trust
    assert done.returncode == 0 and not remote_exists(sshd, f"{remote}/README.md")
    assert remote_exists(sshd, f"{remote}/examples/x/new.py")


def test_each_guardrail_stops_before_anything_is_sent_and_force_goes_on(sshd, fresh):
    ws, remote = fresh
    (ws / "data" / "big").mkdir(parents=True)
    (ws / "data" / "big" / "blob.bin").write_bytes(os.urandom(1_500_000))
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=remote, SYNC_MAX_MB="1"))
    assert "SYNC_MAX_MB=1" in line and "data/big/" in line, line
    assert "add /data/big/ to .remoteignore" in line and "--force" in line, line
    assert not remote_exists(sshd, remote)
    line = one_line_error(cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote, SYNC_MAX_FILES="5"))
    assert "would upload 24 files" in line and "SYNC_MAX_FILES=5" in line, line
    assert "most of it is in cvlization/torch/ (10 files" in line, line
    assert not remote_exists(sshd, remote) and not list((ws / "var" / "runs").glob("*_run"))
    done = cli(sshd, ws, "sync", "--force", REMOTE_DIR=remote, SYNC_MAX_MB="1")
    assert done.returncode == 0 and remote_exists(sshd, f"{remote}/data/big/blob.bin"), done.stderr
    (ws / "data" / "big" / "blob2.bin").write_bytes(os.urandom(1_200_000))
    assert "SYNC_MAX_MB=1" in one_line_error(cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote,
                                                 SYNC_MAX_MB="1"))
    done = cli(sshd, ws, "run", "scripts/hello.py", "--force-sync", REMOTE_DIR=remote, SYNC_MAX_MB="1")
    assert done.returncode == 0 and "RESULT_HELLO" in done.stdout, done.stderr
    assert remote_exists(sshd, f"{remote}/data/big/blob2.bin")
    # What the host already has does not count: with no record here (another machine synced it), rsync is asked.
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote, SYNC_MAX_MB="1", XDG_CACHE_HOME=str(ws.parent / "other-cache"))
    assert done.returncode == 0, done.stderr


def test_checksum_catches_a_same_size_same_mtime_change(sshd, fresh):
    ws, remote = fresh
    target = ws / "examples" / "x" / "data.txt"
    target.write_text("old\n")
    os.utime(target, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    target.write_text("new\n")  # same size
    # same mtime: a branch switch can do this
    os.utime(target, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    plain = cli(sshd, ws, "sync", REMOTE_DIR=remote)
    assert plain.returncode == 0 and "no changes" in plain.stderr, plain.stderr
    # size and time agree: rsync's quick check cannot tell
    assert remote_read(sshd, f"{remote}/examples/x/data.txt") == "old\n"
    done = cli(sshd, ws, "run", "examples/x/train.py", "--checksum", REMOTE_DIR=remote)
    assert done.returncode == 0 and "contents compared by checksum" in done.stderr, done.stderr
    assert remote_read(sshd, f"{remote}/examples/x/data.txt") == "new\n"
    assert json.loads((latest_record(ws, "run") / "result.json").read_text())["synced"]["how"] == "rsync --checksum"
