"""Runs that survive: dropped connections, Ctrl+C, --detach, kill, and faults of the host itself.

Everything goes through the real CLI against the loopback sshd (alias l1); "the host" is this
machine as the user rrtest, so the tests check REMOTE_DIR and the process list directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from support import cli as support
from support.cli import (
    group_alive,
    log_has,
    no_traceback,
    one_line_error,
    processes,
    read_pid,
    record_of,
    remote_exists,
    remote_run_lines,
    run_dirs,
    stop_runs,
    tree,
    wait_for,
    wait_for_started_run,
)
from support.workspace import make_workspace, unique_remote_dir


def cli(*args, **env):
    """Runs here use the host's own Python: starting, following and stopping them is the same, and
    no venv has to be built first."""
    return support.cli(*args, venv=False, **env)


def Background(*args, **env):  # noqa: N802 - a class in support; the same choice of Python as cli()
    return support.Background(*args, venv=False, **env)

# About 4 s of output, then a RESULT line.
SLOW = """import time
for i in range(20):
    print("tick", i, flush=True)
    time.sleep(0.4)  # 8 s: the tests act after tick 1 and need the run still going, even on a loaded machine
print("RESULT_SLOW ticks=20 answer=42")
"""

# A long run with a child process in its process group.
LONG = """import subprocess, time
child = subprocess.Popen(["sleep", "60"])
print("child", child.pid, flush=True)
time.sleep(60)
"""

# A long run whose child ignores SIGINT: only the SIGTERM/SIGKILL escalation stops it.
STUBBORN = """import subprocess, time
child = subprocess.Popen(["sh", "-c", "trap '' INT; exec sleep 60"])
print("child", child.pid, flush=True)
time.sleep(60)
"""

# Prints hashes of the forwarded values, then waits (while the test looks around) for a file.
SECRET_PROBE = """import hashlib, os, time
for name in ("MY_SECRET", "OTHER_SECRET"):
    print(name, hashlib.sha256(os.environ.get(name, "<unset>").encode()).hexdigest()[:16], flush=True)
print("waiting", flush=True)
deadline = time.time() + 30
while not os.path.exists("release-secret-probe") and time.time() < deadline:
    time.sleep(0.05)
print("RESULT_SECRET seen=1")
"""

# Fills the disk REMOTE_DIR is on.
FILL = """with open("filler.bin", "wb") as out:
    out.write(b"x" * (3 * 1024 * 1024))
print("RESULT_FILL wrote=3")
"""


@pytest.fixture
def box(sshd, offline_pip, tmp_path):
    """A fresh workspace with the test scripts, and a REMOTE_DIR that is cleaned up (runs killed)."""
    ws = make_workspace(tmp_path)
    for name, text in {"slow.py": SLOW, "long.py": LONG, "stubborn.py": STUBBORN, "secret_probe.py": SECRET_PROBE,
                       "fill.py": FILL}.items():
        (ws / "scripts" / name).write_text(text)
    remote = unique_remote_dir("rrt_faults")
    yield ws, remote
    stop_runs(sshd, remote)
    sshd.cleanup_remote(remote)


def status_row(sshd, ws: Path, remote: str, run_id: str) -> str:
    done = cli(sshd, ws, "status", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(run_id)]
    assert len(rows) == 1, done.stdout
    return rows[0]


# --------------------------------------------------------------- runs outlive the connection

def test_run_outlives_a_killed_client_and_logs_follow_completes_the_record(sshd, box, tmp_path):
    ws, remote = box
    bg = Background(sshd, ws, tmp_path / "bg", "run", "scripts/slow.py", REMOTE_DIR=remote)
    try:
        run = wait_for_started_run(remote, bg=bg)
        wait_for(lambda: log_has(run, "tick 1"), 10, "the run's first ticks")
        os.kill(bg.pid, 9)  # the client dies without a word: a dropped connection
        bg.wait(10)
    finally:
        bg.kill()
    pgid = read_pid(run)
    time.sleep(0.5)  # time for sshd to tear the session down
    assert group_alive(pgid), f"the run died with its client: {(run / 'run.log').read_text()}"
    assert not (run / "exit_code").exists()
    assert "running" in status_row(sshd, ws, remote, run.name).split()

    wait_for(lambda: (run / "exit_code").exists(), 20, "the run to finish on its own")
    assert (run / "exit_code").read_text().strip() == "0"
    assert not group_alive(pgid)

    done = cli(sshd, ws, "logs", "--follow", REMOTE_DIR=remote)  # default: the latest run
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    assert "tick 19" in done.stdout and "RESULT_SLOW ticks=20 answer=42" in done.stdout
    record = record_of(ws, run.name)
    assert record["outcome"] == "finished" and record["exit_status"] == 0, record
    assert record["result"] == {"name": "RESULT_SLOW", "metrics": {"ticks": 20, "answer": 42}}
    assert (ws / "var" / "runs" / run.name / "run.log").read_text() == (run / "run.log").read_text()

    row = status_row(sshd, ws, remote, run.name)
    assert "finished" in row.split() and "ticks=20 answer=42" in row, row


def test_connection_dropped_by_the_host_mid_run_is_one_line_and_the_run_goes_on(sshd, box, tmp_path):
    ws, remote = box
    bg = Background(sshd, ws, tmp_path / "bg", "run", "scripts/slow.py", REMOTE_DIR=remote)
    try:
        run = wait_for_started_run(remote, bg=bg)
        wait_for(lambda: log_has(run, "tick 1"), 10, "the run's first ticks")
        sshd.stop(kill_sessions=True)  # sshd goes away with every connection
        try:
            code = bg.wait(30)
        finally:
            sshd.start()
    finally:
        bg.kill()
    assert code is not None, "the CLI kept waiting after its connection was gone"
    assert code != 0
    assert "Traceback" not in bg.stderr, bg.stderr
    lines = remote_run_lines(bg.stderr)
    # Expected: "... the connection to l1 dropped ...; the run goes on: see it with `inv logs --follow --run ID`"
    assert lines and f"inv logs --follow --run {run.name}" in lines[-1], (
        f"exit {code}; a dropped connection must be reported as such, with how to re-attach, not as a failed run:\n"
        f"{bg.stderr}")
    assert record_of(ws, run.name)["outcome"] == "connection lost"
    assert group_alive(read_pid(run)) and not (run / "exit_code").exists()  # the run goes on (it has seconds to go)

    done = cli(sshd, ws, "logs", "--follow", "--run", run.name, REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    record = record_of(ws, run.name)
    assert record["outcome"] == "finished" and record["result"]["metrics"] == {"ticks": 20, "answer": 42}
    assert (ws / "var" / "runs" / run.name / "run.log").read_text() == (run / "run.log").read_text()


def test_runs_started_in_the_same_second_get_their_own_ids_and_records(sshd, box, tmp_path):
    ws, remote = box
    (ws / "scripts" / "nap.py").write_text("import sys, time\ntime.sleep(1)\nprint('RESULT_NAP n=' + sys.argv[1])\n")
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    # Three runs at once on one GPU: --allow-busy, since each holds GPU 0 for the others.
    bgs = [Background(sshd, ws, tmp_path / "bg", "run", "scripts/nap.py", "--args", str(n), "--allow-busy",
                      REMOTE_DIR=remote) for n in range(3)]
    try:
        codes = [bg.wait(60) for bg in bgs]
    finally:
        for bg in bgs:
            bg.kill()
    assert codes == [0, 0, 0], "\n".join(bg.stderr for bg in bgs)
    assert len(run_dirs(remote)) == 3
    records = [p for p in (ws / "var" / "runs").iterdir() if p.is_dir()]  # (beside them: the checkout's id)
    seen = sorted(record_of(ws, p.name)["result"]["metrics"]["n"] for p in records)
    assert seen == [0, 1, 2]


# ------------------------------------------------------------------------------ stopping runs

def test_ctrl_c_stops_the_remote_run_and_its_whole_process_group(sshd, box, tmp_path):
    ws, remote = box
    bg = Background(sshd, ws, tmp_path / "bg", "run", "scripts/long.py", REMOTE_DIR=remote)
    try:
        run = wait_for_started_run(remote, bg=bg)
        wait_for(lambda: log_has(run, "child"), 10, "the run's child process")
        pgid = read_pid(run)
        assert len(group_alive(pgid)) >= 2  # the script and its `sleep 60`
        bg.ctrl_c()
        code = bg.wait(20)
        left = group_alive(pgid)
    finally:
        bg.kill()
    assert code is not None, f"inv still waiting 20 s after Ctrl+C; the run's processes: {left}\n{bg.stderr}"
    assert code == 130, bg.stderr
    assert "Traceback" not in bg.stderr, bg.stderr
    assert not left, left
    assert (run / "killed").exists() and (run / "exit_code").exists()
    assert record_of(ws, run.name)["outcome"] == "killed"


def test_detach_returns_at_once_and_ctrl_c_on_logs_follow_only_stops_following(sshd, box, tmp_path):
    ws, remote = box
    started = time.monotonic()
    done = cli(sshd, ws, "run", "scripts/long.py", "--detach", REMOTE_DIR=remote)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(remote)
    assert took < 20 and group_alive(read_pid(run)), took  # the run sleeps 60 s
    assert f"inv logs --follow --run {run.name}" in done.stderr and f"inv kill --run {run.name}" in done.stderr
    assert record_of(ws, run.name)["outcome"] == "detached"

    follower = Background(sshd, ws, tmp_path / "bg", "logs", "--follow", REMOTE_DIR=remote)
    try:
        wait_for(lambda: "child" in follower.stdout, 15, "logs --follow to show the run's output")
        follower.ctrl_c()
        code = follower.wait(10)
    finally:
        follower.kill()
    assert code is not None, f"`inv logs --follow` still following 10 s after Ctrl+C:\n{follower.stderr}"
    assert code != 0 and "Traceback" not in follower.stderr, follower.stderr
    assert group_alive(read_pid(run)), "Ctrl+C while following a detached run stopped the run"
    assert "running" in status_row(sshd, ws, remote, run.name).split()

    done = cli(sshd, ws, "kill", REMOTE_DIR=remote)  # default: the latest running run
    assert done.returncode == 0, done.stderr
    assert "killed" in status_row(sshd, ws, remote, run.name).split()
    assert not group_alive(read_pid(run))


def test_kill_from_another_terminal_escalates_and_ends_the_follower(sshd, box, tmp_path):
    ws, remote = box
    done = cli(sshd, ws, "run", "scripts/stubborn.py", "--detach", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    [run] = run_dirs(remote)
    wait_for(lambda: log_has(run, "child"), 10, "the run's child process")
    pgid = read_pid(run)
    follower = Background(sshd, ws, tmp_path / "bg", "logs", "--follow", "--run", run.name, REMOTE_DIR=remote)
    try:
        wait_for(lambda: "child" in follower.stdout, 15, "logs --follow to show the run's output")
        killed = cli(sshd, ws, "kill", "--run", run.name, REMOTE_DIR=remote, timeout=60)
        code = follower.wait(15)
    finally:
        follower.kill()
    assert killed.returncode == 0, killed.stderr
    assert f"run {run.name} stopped" in killed.stderr
    assert not group_alive(pgid), group_alive(pgid)  # the SIGINT-proof child went at SIGTERM
    assert code not in (None, 0), follower.stderr
    assert "Traceback" not in follower.stderr, follower.stderr
    assert record_of(ws, run.name)["outcome"] == "killed"
    assert "killed" in status_row(sshd, ws, remote, run.name).split()
    assert "not running" in one_line_error(cli(sshd, ws, "kill", "--run", run.name, REMOTE_DIR=remote))


# -------------------------------------------------------------------- faults of the host

def test_sshd_stopping_mid_sync_is_one_line_and_the_next_sync_is_exact(sshd, tmp_path):
    ws = tmp_path / "bigws"
    (ws / "weights").mkdir(parents=True)
    for i in range(40):  # 160 MB of incompressible data: the transfer takes a while (2 s here), on a loaded machine too
        (ws / "weights" / f"blob{i:02d}.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    (ws / "train.py").write_text("print('hi')\n")
    (ws / "notes with spaces.txt").write_text("n\n")
    remote = unique_remote_dir("rrt_midsync")
    state = {}

    def stop_when_data_arrives():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "stopped" not in state:
            folder = Path(remote) / "weights"
            if folder.is_dir() and any("blob" in name for name in os.listdir(folder)):
                sshd.stop(kill_sessions=True)
                state["stopped"] = time.monotonic()
                return
            time.sleep(0.002)

    killer = threading.Thread(target=stop_when_data_arrives)
    killer.start()
    try:
        done = cli(sshd, ws, "sync", REMOTE_DIR=remote)
        state.setdefault("stopped", None)
        killer.join()
    finally:
        sshd.start()
    try:
        assert state["stopped"], "the transfer never reached the host"
        line = one_line_error(done)
        assert "l1" in line and ("dropped" in line or "connection" in line), line
        complete = [p for p in (Path(remote) / "weights").glob("blob*.bin") if p.stat().st_size == 4 * 1024 * 1024]
        assert len(complete) < 40, "the sync had finished before sshd stopped: the test did not interrupt it"

        again = cli(sshd, ws, "sync", REMOTE_DIR=remote)
        assert again.returncode == 0, again.stderr
        assert tree(Path(remote)) == tree(ws, skip=("var",))  # var/runs: this checkout's id, never synced
    finally:
        sshd.cleanup_remote(remote)


def test_disk_full_during_sync_is_one_line_naming_the_disk(sshd, small_disk, tmp_path):
    ws = make_workspace(tmp_path)
    (ws / "weights.bin").write_bytes(os.urandom(5 * 1024 * 1024))
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=f"{small_disk}/remote"))
    assert "disk is full" in line and "l1" in line, line


def test_disk_full_during_a_run_names_the_disk(sshd, small_disk, box):
    ws, _ = box
    remote = f"{small_disk}/remote"
    try:
        done = cli(sshd, ws, "run", "scripts/fill.py", REMOTE_DIR=remote, timeout=60)
        assert done.returncode != 0, done.stdout
        no_traceback(done)
        assert "disk is full" in done.stderr, f"a run that fills the disk must be reported as such:\n{done.stderr}"
        assert "supervisor killed" not in done.stderr, done.stderr
    finally:
        stop_runs(sshd, remote)


HANG_GUARD_S = 40


def test_a_hung_nvidia_smi_is_bounded_and_starts_no_run(sshd, box, gpu):
    ws, remote = box
    release = Path(unique_remote_dir("rrt_release_smi"))
    fake = sshd.remote_bin / "nvidia-smi"
    # A wedged driver: nvidia-smi never answers (until the test releases it, at most 60 s).
    fake.write_text(f"#!/bin/sh\ni=0\nwhile [ ! -e {release} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
                    "exit 9\n")
    fake.chmod(0o755)
    try:
        for args in (["gpu-check"], ["run", "scripts/hello.py"]):
            started = time.monotonic()
            try:
                # REMOTE_RUN_CHECK_TIMEOUT bounds the quick remote checks (default 60 s); the guard is well above 3 s.
                done = cli(sshd, ws, *args, REMOTE_DIR=remote, REMOTE_RUN_CHECK_TIMEOUT="3", timeout=HANG_GUARD_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`inv {' '.join(args)}` still waiting after {HANG_GUARD_S} s on a hung nvidia-smi:"
                            " no timeout")
            line = one_line_error(done)
            assert "did not finish within" in line or "did not answer" in line, line
            assert time.monotonic() - started < 20
            assert not remote_exists(sshd, f"{remote}/runs")
    finally:
        release.touch()
        time.sleep(0.3)
        gpu("idle")
        release.unlink()


# ------------------------------------------------------------------------------------ secrets

def test_env_files_never_reach_the_host_at_any_depth(sshd, box):
    ws, remote = box
    secrets = {
        ".env.production": "PROD_KEY=prod-s3cret\n",
        "sub/.env": "SUB_KEY=sub-s3cret\n",
        "sub/.env.local": "SUB_LOCAL=sublocal-s3cret\n",
        "sub/deep/.env.staging": "STAGE=stage-s3cret\n",
    }
    for rel, text in secrets.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)
    (ws / "sub" / ".env.example").write_text("SUB_KEY=\n")
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    for rel in (*secrets, ".env", ".env.local"):
        assert not remote_exists(sshd, f"{remote}/{rel}"), rel
    assert remote_exists(sshd, f"{remote}/.env.example") and remote_exists(sshd, f"{remote}/sub/.env.example")
    assert remote_exists(sshd, f"{remote}/sub/deep")  # the directory itself is synced, only the secret is not
    found = subprocess.run(["grep", "-rlE", "s3cret", remote], capture_output=True, text=True)
    assert found.stdout == "", found.stdout


def test_forwarded_values_reach_only_the_run_environment(sshd, box):
    ws, remote = box
    tag = uuid.uuid4().hex
    from_env_file = f"sec1-{tag} with 'quotes' $(not run) `nor this`;"
    from_process = f"sec2-{tag}\nsecond line"
    (ws / ".env").write_text(f'MY_SECRET="{from_env_file}"\n')
    bg_dir = ws.parent / "bg"
    bg = Background(sshd, ws, bg_dir, "run", "scripts/secret_probe.py", REMOTE_DIR=remote,
                    REMOTE_ENV="MY_SECRET,OTHER_SECRET", OTHER_SECRET=from_process)
    try:
        run = wait_for_started_run(remote, bg=bg)
        wait_for(lambda: log_has(run, "waiting"), 15, "the run to print its hashes")
        # While the run is running: not in any process's command line, not in any file under REMOTE_DIR.
        leaks = [row for row in processes() if tag in row[4]]
        assert not leaks, leaks
        in_files = subprocess.run(["grep", "-rl", "--", tag, remote], capture_output=True, text=True).stdout
        assert in_files == "", in_files
        (run / "work" / "release-secret-probe").touch()  # in the run's snapshot, its working directory
        code = bg.wait(30)
    finally:
        bg.kill()
    assert code == 0, bg.stderr
    expected = {
        "MY_SECRET": hashlib.sha256(from_env_file.encode()).hexdigest()[:16],
        "OTHER_SECRET": hashlib.sha256(from_process.encode()).hexdigest()[:16],
    }
    for name, digest in expected.items():
        assert f"{name} {digest}" in bg.stdout, f"{name} did not reach the run intact:\n{bg.stdout}"
    assert tag not in bg.stdout + bg.stderr
    in_files = subprocess.run(["grep", "-rl", "--", tag, remote], capture_output=True, text=True).stdout
    assert in_files == "", in_files
    meta = json.loads((run / "meta.json").read_text())
    assert sorted(meta["forwarded"]) == ["MY_SECRET", "OTHER_SECRET"]
    record = ws / "var" / "runs" / run.name
    for path in record.rglob("*"):
        if path.is_file():
            assert tag not in path.read_text(errors="replace"), path
    assert "scripts/secret_probe.py" in (record / "log.md").read_text()
    assert tag not in sshd.log_text()
