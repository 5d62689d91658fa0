"""The sync leaves out what git ignores, through the real CLI against the loopback sshd: a large
ignored checkpoint is never uploaded, `.remoteignore`'s `!` brings a file back from an ignored
folder, a path that leaves .gitignore's reach is sent at the next run, SYNC_GITIGNORE=0 sends it
all, dry-run and doctor say what was left out, a workspace outside git is as before, and `inv
init` leaves the tree a run records clean."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from support.cli import cli as run_cli
from support.cli import latest_record, remote_exists
from support.workspace import make_workspace, unique_remote_dir

BIG = 6_000_000


def cli(sshd, ws, *args, **env):
    return run_cli(sshd, ws, *args, venv=False, **env)


def git(ws, *args):
    return subprocess.run(["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(sshd, tmp_path):
    """The fixture workspace as a real git checkout with a large ignored checkpoint and an ignored
    folder of checkpoints, one of which .remoteignore brings back."""
    ws = make_workspace(tmp_path)
    shutil.rmtree(ws / ".git")
    (ws / ".gitignore").write_text("*.ckpt\nckpt/\n.env*\n")
    (ws / "big.ckpt").write_bytes(b"\0" * BIG)
    for rel in ("ckpt/keep.pt", "ckpt/other.pt", "ckpt/old/x.pt"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(rel)
    (ws / ".remoteignore").write_text("!ckpt/keep.pt\n")
    (ws / "scripts" / "peek.py").write_text("import pathlib\nprint('PEEK', pathlib.Path('late.ckpt').read_text())\n")
    git(ws, "init", "-q")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "the workspace")
    remote = unique_remote_dir("rrt_gitignore")
    yield ws, remote
    sshd.cleanup_remote(remote)


def test_ignored_files_stay_here_and_come_along_once_git_stops_ignoring_them(sshd, repo):
    ws, remote = repo
    dry = cli(sshd, ws, "sync", "--dry-run", REMOTE_DIR=remote)
    assert dry.returncode == 0, dry.stderr
    said = [line for line in dry.stdout.splitlines() if "that git ignores" in line]
    assert said == ["left out 4 files (6.0 MB) that git ignores: big.ckpt (6.0 MB), ckpt/old/ (1 file, 13 bytes), "
                    "ckpt/other.pt (13 bytes) and 1 more; SYNC_GITIGNORE=0 or a `!path` line in .remoteignore sends "
                    "them"], dry.stdout
    assert "big.ckpt" not in dry.stdout.split("largest uploads:")[1].split("left out")[0]

    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stdout[-800:] + done.stderr
    for gone in ("big.ckpt", "model.ckpt", "ckpt/other.pt", "ckpt/old"):
        assert not remote_exists(sshd, f"{remote}/{gone}"), gone
    assert remote_exists(sshd, f"{remote}/ckpt/keep.pt") and remote_exists(sshd, f"{remote}/scripts/hello.py")
    record = json.loads((latest_record(ws, "run") / "result.json").read_text())
    assert record["synced"]["bytes"] < BIG and record["git"]["dirty"] is False, record["synced"]

    # A new ignored checkpoint changes git's answer but nothing to send: the fast path holds. The
    # host's own file of that name is neither replaced nor deleted, and a run sees it.
    (ws / "late.ckpt").write_bytes(b"\0" * BIG)
    sshd.as_user(["sh", "-c", f"echo host > {remote}/late.ckpt"])
    done = cli(sshd, ws, "run", "scripts/peek.py", REMOTE_DIR=remote)
    assert done.returncode == 0 and "PEEK host" in done.stdout, done.stdout[-800:] + done.stderr
    synced = json.loads((latest_record(ws, "run") / "result.json").read_text())["synced"]
    assert synced["how"] == "unchanged", synced

    # The checkpoint leaves .gitignore's reach: the next run sends it (the rules changed, so a full sync).
    (ws / ".gitignore").write_text("ckpt/\n.env*\n")
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stdout[-800:] + done.stderr
    assert remote_exists(sshd, f"{remote}/big.ckpt") and not remote_exists(sshd, f"{remote}/ckpt/other.pt")
    synced = json.loads((latest_record(ws, "run") / "result.json").read_text())["synced"]
    assert synced["how"] == "rsync" and synced["bytes"] > BIG, synced
    again = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote)  # and then the fast path holds
    assert json.loads((latest_record(ws, "run") / "result.json").read_text())["synced"]["how"] == "unchanged", \
        again.stderr


def test_switched_off_everything_is_sent_and_doctor_says_which(sshd, repo):
    ws, remote = repo
    from test_doctor import doctor

    _, checks = doctor(sshd, ws, REMOTE_DIR=remote)
    assert checks["local gitignore"]["status"] == "ok"
    assert checks["local gitignore"]["text"].startswith("left out 4 files (6.0 MB) that git ignores: big.ckpt")
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote, SYNC_GITIGNORE="0")
    assert done.returncode == 0, done.stderr
    for sent in ("big.ckpt", "model.ckpt", "ckpt/other.pt", "ckpt/old/x.pt", "ckpt/keep.pt"):
        assert remote_exists(sshd, f"{remote}/{sent}"), sent
    _, checks = doctor(sshd, ws, REMOTE_DIR=remote, SYNC_GITIGNORE="0")
    assert checks["local gitignore"]["text"] == "SYNC_GITIGNORE=0: files git ignores are synced like any other"


def test_a_workspace_outside_git_is_synced_as_before(sshd, tmp_path):
    ws = make_workspace(tmp_path)  # its .git holds only HEAD: git sees no repository
    (ws / ".gitignore").write_text("*.ckpt\n")
    remote = unique_remote_dir("rrt_gitignore")
    try:
        done = cli(sshd, ws, "sync", REMOTE_DIR=remote)
        assert done.returncode == 0, done.stderr
        assert remote_exists(sshd, f"{remote}/model.ckpt")
        dry = cli(sshd, ws, "sync", "--dry-run", REMOTE_DIR=remote)
        assert dry.returncode == 0 and "git ignores" not in dry.stdout, dry.stdout
    finally:
        sshd.cleanup_remote(remote)


def test_init_in_a_git_checkout_leaves_the_recorded_tree_clean(sshd, repo):
    ws, remote = repo
    (ws / ".gitignore").write_text("*.ckpt\nckpt/\n")
    git(ws, "commit", "-qam", "no .env in .gitignore")
    done = cli(sshd, ws, "init", "--yes", "--force", "--host", "l1", "--remote-dir", remote, REMOTE_HOST=None,
               timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert f"added /.env, /.cluster_name_* to {ws / '.git' / 'info' / 'exclude'}" in done.stderr
    assert (ws / ".gitignore").read_text() == "*.ckpt\nckpt/\n" and git(ws, "status", "--porcelain", "-uno") == ""
    assert git(ws, "check-ignore", ".env").strip() == ".env"
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_HOST=None, REMOTE_DIR=None)
    assert done.returncode == 0, done.stdout[-800:] + done.stderr
    record = json.loads((latest_record(ws, "run") / "result.json").read_text())
    assert record["git"]["dirty"] is False and record["git"]["commit"] == git(ws, "rev-parse", "HEAD").strip()
