"""Nothing outlives its supervisor: the GPU sampler it starts beside a run (`nvidia-smi -lms`) ends
when the run ends, and also when the supervisor itself is killed with kill -9; the run's own
process is not a helper and lives on. The real CLI against the loopback sshd and its fake GPU."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from support.cli import cli, log_has, read_pid, run_dirs, stop_runs, wait_for, wait_for_started_run
from support.workspace import make_workspace, unique_remote_dir

# Holds its GPU until HOLD seconds pass or the test touches .remote-run/runs/release.
HOLD = """import os, time
print("started", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
deadline = time.time() + float(os.environ.get("HOLD", "0"))
while time.time() < deadline and not os.path.exists("../../release"):
    time.sleep(0.05)
print("RESULT_HOLD ok=1")
"""


def stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (state, ppid, ...); None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent to reap it."""
    fields = stat(pid)
    return fields is not None and fields[0] != "Z"


def parent_of(pid: int) -> int:
    return int(stat(pid)[1])


def samplers_of(supervisor: int) -> list[int]:
    """The live children of ``supervisor`` that run nvidia-smi (the fake one: python3 .../nvidia-smi)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not alive(int(entry.name)):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if parent_of(int(entry.name)) == supervisor and any(os.path.basename(a) == b"nvidia-smi" for a in argv):
                found.append(int(entry.name))
        except (OSError, TypeError):
            pass  # it ended while we looked
    return found


def writers_of(path: Path) -> list[int]:
    """The live processes whose stdout is ``path`` (a run's gpu.csv: its sampler), whoever their parent."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and alive(int(entry.name)) and os.readlink(entry / "fd" / "1") == str(path):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def samples(run: Path) -> list[str]:
    try:
        return (run / "gpu.csv").read_text().splitlines()
    except FileNotFoundError:
        return []


@pytest.fixture
def box(sshd, tmp_path, gpu):
    ws = make_workspace(tmp_path)
    (ws / "scripts" / "hold.py").write_text(HOLD)
    remote = unique_remote_dir("rrt_death")
    yield ws, remote
    stop_runs(sshd, remote)
    left = [pid for run in run_dirs(remote) for pid in writers_of(run / "gpu.csv")]
    if left:  # a sampler a failed test left behind: not for the next test to find
        sshd.as_user(["kill", "-KILL", *map(str, left)])
    sshd.cleanup_remote(remote)


def start_holding(sshd, ws, remote) -> tuple[Path, int, int, int]:
    """A detached run that holds GPU 0, sampled every 0.2 s: (its folder, its pid, its supervisor's
    pid, the sampler's pid)."""
    done = cli(sshd, ws, "run", "scripts/hold.py", "--detach", REMOTE_DIR=remote, venv=False, HOLD="60",
               REMOTE_ENV="HOLD", GPU_SAMPLE_SECONDS="0.2")
    assert done.returncode == 0, done.stderr
    run = wait_for_started_run(remote)
    wait_for(lambda: log_has(run, "started 0"), 15, "the run to start on GPU 0")
    pid = read_pid(run)
    supervisor = parent_of(pid)
    [sampler] = wait_for(lambda: samplers_of(supervisor), 15, "the supervisor's nvidia-smi sampler")
    return run, pid, supervisor, sampler


def test_a_run_samples_its_gpu_and_the_sampler_stops_when_the_run_ends(sshd, box):
    ws, remote = box
    run, pid, supervisor, sampler = start_holding(sshd, ws, remote)
    wait_for(lambda: len(samples(run)) >= 3, 15, "three GPU samples in gpu.csv")
    assert all(line.split(", ")[1] == "0" and len(line.split(", ")) == 7 for line in samples(run)), samples(run)
    Path(f"{remote}/.remote-run/runs/release").touch()
    wait_for(lambda: (run / "exit_code").exists(), 20, "the run's exit status")
    assert (run / "exit_code").read_text().strip() == "0"
    assert not alive(sampler), "the sampler outlived its run"  # stopped (and reaped) before exit_code is written
    assert writers_of(run / "gpu.csv") == []
    assert "GPU sampling off" not in (run / "run.log").read_text()


def test_a_killed_supervisor_takes_its_sampler_with_it_and_the_run_lives_on(sshd, box):
    ws, remote = box
    run, pid, supervisor, sampler = start_holding(sshd, ws, remote)
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not alive(sampler), 5, "the sampler to end with its supervisor")
    assert alive(pid), "the run is not a helper: it outlives its supervisor"
    assert writers_of(run / "gpu.csv") == [], "no sampler of the run was left to init"
    Path(f"{remote}/.remote-run/runs/release").touch()
    wait_for(lambda: not alive(pid), 20, "the run's process to end")
