"""A shared GPU box: REMOTE_DIR belongs to us alone, each run keeps its own code, runs wait for a
free GPU in one queue for every user of the host, and `auto` picks idle GPUs. The real CLI against
the loopback sshd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.cli import Background, cli, log_has, one_line_error, remote_exists, run_dirs, wait_for, wait_for_started_run
from support.sshd import ROOT_MODE
from support.workspace import make_workspace, unique_remote_dir

another_user = pytest.mark.skipif(not ROOT_MODE, reason="a second user of the box needs root to exist (the suite's sshd user is rrtest)")


@pytest.fixture
def fresh(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir("rrt_shared")
    yield ws, remote
    sshd.cleanup_remote(remote)
    subprocess.run(["rm", "-rf", remote, remote + "_theirs"], check=False)


@another_user
@pytest.mark.parametrize("how", ["world-writable", "symlink", "owned-by-them", "inside-their-dir"])
def test_a_remote_dir_another_user_prepared_gets_nothing_of_ours(sshd, fresh, how):
    ws, remote = fresh
    theirs = remote + "_theirs"
    os.mkdir(theirs, 0o755)  # root plays the other user of the box
    target = remote
    if how == "world-writable":
        os.mkdir(remote)
        os.chmod(remote, 0o777)
    elif how == "symlink":
        os.symlink(theirs, remote)
    elif how == "owned-by-them":
        os.mkdir(remote, 0o755)
    else:
        os.chmod(theirs, 0o777)
        target = f"{theirs}/ours"
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=target))
    expected = {"world-writable": "belongs to root", "symlink": "symbolic link", "owned-by-them": "belongs to root",
                "inside-their-dir": "writable by other users"}[how]
    assert expected in line and "choose a" in line and "REMOTE_DIR" in line, line
    assert os.listdir(theirs) == [] and (how == "symlink" or os.listdir(target if os.path.isdir(target) else theirs) == [])
    line = one_line_error(cli(sshd, ws, "run", "scripts/hello.py", "--cpu-ok", REMOTE_DIR=target, venv=False))
    assert expected in line, line
    assert os.listdir(theirs) == []


def test_remote_run_creates_remote_dir_private_and_refuses_one_made_writable(sshd, fresh):
    ws, remote = fresh
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    mode = sshd.as_user(["stat", "-c", "%a", remote]).stdout.strip()
    assert mode == "700"
    sshd.as_user(["chmod", "777", remote])
    line = one_line_error(cli(sshd, ws, "run", "scripts/hello.py", "--cpu-ok", REMOTE_DIR=remote, venv=False))
    assert "mode 777" in line and "chmod go-w" in line, line
    assert not remote_exists(sshd, f"{remote}/runs")
