"""`inv run` of any workspace file from any workspace folder (the playbook's `cd examples/x &&
./train.sh`), and `gpu-check --docker`: the real CLI against the loopback sshd."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from support import fake_docker
from support.cli import Background, cli, log_has, one_line_error, processes, wait_for, wait_for_started_run
from support.workspace import make_workspace, unique_remote_dir

TRAIN_SH = """#!/bin/sh
# Relative paths resolve from the example's folder, as after `cd examples/x`.
echo "pwd $(basename "$PWD")"
cat config/params.txt
python3 ../../lib/helper.py
echo "RESULT_SH ok=1"
"""


@pytest.fixture
def fresh(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    (ws / "examples" / "x" / "config").mkdir(parents=True)
    (ws / "examples" / "x" / "config" / "params.txt").write_text("lr=0.1\n")
    (ws / "lib").mkdir()
    (ws / "lib" / "helper.py").write_text("print('helper from lib')\n")
    remote = unique_remote_dir("rrt_anyprog")
    yield ws, remote
    sshd.cleanup_remote(remote)


def test_an_executable_script_runs_by_its_shebang_from_its_folder(sshd, fresh):
    ws, remote = fresh
    script = ws / "examples" / "x" / "train.sh"
    script.write_text(TRAIN_SH)
    script.chmod(0o755)
    done = cli(sshd, ws, "run", "examples/x/train.sh", "--cwd", "examples/x", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    assert "pwd x\nlr=0.1\nhelper from lib\nRESULT_SH ok=1" in done.stdout
    [record] = [json.loads(p.read_text()) for p in (ws / "var" / "runs").glob("*_run/result.json")]
    assert record["options"]["cwd"] == "examples/x" and record["result"]["metrics"]["ok"] == 1
    assert "./train.sh" in " ".join(record["commands"]) or "./train.sh" in done.stderr


def test_a_sh_file_without_the_execute_bit_runs_through_bash_and_its_status_is_ours(sshd, fresh):
    ws, remote = fresh
    (ws / "examples" / "x" / "fail.sh").write_text("echo \"in $(basename \"$PWD\")\"\nexit 7\n")
    done = cli(sshd, ws, "run", "examples/x/fail.sh", "--cwd", "examples", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 7 and "in examples" in done.stdout, done.stderr
    (ws / "notes.txt").write_text("not a program\n")
    line = one_line_error(cli(sshd, ws, "run", "notes.txt", REMOTE_DIR=remote, venv=False))
    assert "chmod +x" in line
    assert "not a folder" in one_line_error(cli(sshd, ws, "run", "examples/x/fail.sh", "--cwd", "nope",
                                                REMOTE_DIR=remote, venv=False))


def test_ctrl_c_stops_the_script_and_what_it_started(sshd, fresh, tmp_path):
    ws, remote = fresh
    tag = uuid.uuid4().hex[:12]
    script = ws / "examples" / "x" / "spawn.sh"
    # A child the script starts in the background, with a name to find it by (bash's exec -a).
    script.write_text(f"#!/bin/bash\n( exec -a 'rr-child-{tag}' sleep 300 ) &\necho spawned\nwait\n")
    script.chmod(0o755)
    bg = Background(sshd, ws, tmp_path / "bg", "run", "examples/x/spawn.sh", "--cwd", "examples/x",
                    REMOTE_DIR=remote, venv=False)
    try:
        run = wait_for_started_run(remote, bg=bg)
        wait_for(lambda: log_has(run, "spawned") and any(f"rr-child-{tag}" in row[4] for row in processes()),
                 15, "the child process")
        bg.ctrl_c()
        code = bg.wait(30)
    finally:
        bg.kill()
    assert code == 130, bg.stderr
    wait_for(lambda: not any(f"rr-child-{tag}" in row[4] for row in processes()), 10, "the child to be gone")


@pytest.mark.parametrize("case", ["nvidia", "runc-only", "daemon-down", "absent"])
def test_gpu_check_docker_says_whether_containers_reach_the_gpus(sshd, fresh, case):
    ws, remote = fresh
    if case == "absent" and shutil.which("docker", path=sshd.remote_path):
        pytest.skip("Docker is installed on this machine: its absence cannot be shown here")
    bodies = {"nvidia": fake_docker.script("nvidia"), "runc-only": fake_docker.script("runc-only"),
              "daemon-down": fake_docker.script(daemon=False)}
    try:
        if case in bodies:
            fake_docker.install(sshd, bodies[case])
        done = cli(sshd, ws, "gpu-check", "--docker", REMOTE_DIR=remote, venv=False)
        if case == "nvidia":
            assert done.returncode == 0, done.stderr
            assert "can reach the GPUs (runtimes: io.containerd.runc.v2, nvidia, runc)" in done.stderr, done.stderr
            return
        line = one_line_error(done)
        expected = {"runc-only": "nvidia-ctk runtime configure", "daemon-down": "Cannot connect to the Docker daemon",
                    "absent": "Docker is not installed"}[case]
        assert expected in line, line
    finally:
        fake_docker.remove(sshd)
