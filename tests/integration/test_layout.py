"""A workspace's own runs/ and data/ folders are the workspace's (synced, deleted, runnable), and an
REMOTE_DIR laid out by an earlier remote-run (runs/ and data/ at the top) is moved once: the real
CLI against the loopback sshd."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.cli import cli, remote_exists, remote_read
from support.workspace import make_workspace, unique_remote_dir

SPEEDRUN = """# the project's reference entry point, in its own runs/ folder
python3 data/cached_fineweb.py
ls data
echo "RESULT_SPEEDRUN ok=1"
"""


@pytest.fixture
def project(sshd, tmp_path):
    """A workspace whose runs/ holds its entry points and whose data/ holds code."""
    ws = make_workspace(tmp_path)
    (ws / "runs").mkdir()
    (ws / "runs" / "speedrun.sh").write_text(SPEEDRUN)
    (ws / "data" / "cached_fineweb.py").write_text("print('fetching shards')\n")
    (ws / "data" / "old_loader.py").write_text("print('old')\n")
    remote = unique_remote_dir("rrt_layout")
    yield ws, remote
    sshd.cleanup_remote(remote)


def test_a_workspaces_runs_and_data_folders_are_synced_run_and_deleted_like_any_folder(sshd, project):
    ws, remote = project
    done = cli(sshd, ws, "run", "runs/speedrun.sh", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    assert "fetching shards\ncached_fineweb.py\nold_loader.py\nraw\nRESULT_SPEEDRUN ok=1" in done.stdout
    (ws / "data" / "old_loader.py").unlink()  # deleted here: gone on the host, and from what runs see
    done = cli(sshd, ws, "run", "runs/speedrun.sh", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    assert "fetching shards\ncached_fineweb.py\nraw\nRESULT_SPEEDRUN" in done.stdout
    assert not remote_exists(sshd, f"{remote}/data/old_loader.py")
    assert remote_read(sshd, f"{remote}/runs/speedrun.sh") == SPEEDRUN
    assert cli(sshd, ws, "pull-logs", REMOTE_DIR=remote, venv=False).returncode == 0
    pulled = {p.name for p in (ws / "var" / "runs").rglob("*")}
    assert "speedrun.sh" not in pulled and "cached_fineweb.py" not in pulled  # only run records come back
    records = [json.loads(p.read_text()) for p in (ws / "var" / "runs").glob("*_run*/result.json")]  # _run-2 too
    assert len(records) == 2 and all(r["outcome"] == "finished" for r in records)


def test_an_older_layout_is_moved_once_and_its_runs_and_cache_stay(sshd, project):
    ws, remote = project
    (ws / "runs").rename(ws / "entry")  # the older layout could not hold a workspace runs/ at all
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    [run_id] = [p.name for p in (Path(remote) / ".remote-run" / "runs").iterdir() if p.is_dir()]
    # Lay it out as an earlier remote-run did: runs/<id> and the dataset cache data/ at the top.
    sshd.as_user(["sh", "-c", f"cd {remote} && rm .remote-run/layout && mv .remote-run/runs runs && "
                              f"mv .remote-run/data cache && mkdir -p data/cifar10 && echo x > data/cifar10/c.pt"])
    status = cli(sshd, ws, "status", REMOTE_DIR=remote, venv=False)
    assert status.returncode == 0 and run_id in status.stdout, status.stderr  # found where it is
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    moved = [line for line in done.stderr.splitlines() if line.startswith("remote-run: moved ")]
    assert len(moved) == 2 and f"{remote}/runs to {remote}/.remote-run/runs" in moved[0], done.stderr
    assert remote_read(sshd, f"{remote}/.remote-run/data/cifar10/c.pt") == "x\n"
    assert remote_exists(sshd, f"{remote}/.remote-run/runs/{run_id}/run.log")
    assert remote_read(sshd, f"{remote}/data/cached_fineweb.py") == "print('fetching shards')\n"  # synced again
    (ws / "var" / "runs" / run_id / "run.log").unlink()  # so that `logs` shows it from the host
    logs = cli(sshd, ws, "logs", "--run", run_id, REMOTE_DIR=remote, venv=False)
    assert logs.returncode == 0 and "RESULT_HELLO" in logs.stdout, logs.stderr
    again = cli(sshd, ws, "sync", REMOTE_DIR=remote, venv=False)
    assert again.returncode == 0 and "remote-run: moved" not in again.stderr, again.stderr


def test_a_live_run_of_the_older_layout_holds_the_sync_back_with_one_line(sshd, project):
    ws, remote = project
    (ws / "runs").rename(ws / "entry")
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote, venv=False).returncode == 0
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        sshd.as_user(["sh", "-c", f"cd {remote} && rm .remote-run/layout && mkdir -p runs/old && "
                                  f"echo '{{}}' > runs/old/meta.json && echo {sleeper.pid} > runs/old/pid"])
        done = cli(sshd, ws, "sync", REMOTE_DIR=remote, venv=False)
    finally:
        sleeper.kill()
    assert done.returncode != 0 and "Traceback" not in done.stderr
    line = [line for line in done.stderr.splitlines() if line.startswith("remote-run: ")][-1]
    assert "run old" in line and "still live" in line and "inv kill --run old" in line, line
    assert remote_exists(sshd, f"{remote}/runs/old/meta.json")
