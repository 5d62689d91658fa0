"""A Docker-only example, the shape of CVlization's (`examples/x/train.sh` runs `docker run --gpus
all ...`), in a workspace whose pyproject.toml says `[tool.remote-run] environment = "docker"`: the
real CLI against the loopback sshd, with a stand-in `docker` on the host's PATH (tests/support/fake_docker.py)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from support import fake_docker
from support.cli import cli, one_line_error, remote_exists, run_dirs
from support.workspace import make_workspace, unique_remote_dir

# As in CVlization's examples: the presets are environment variables, the work is in the container.
TRAIN_SH = """#!/bin/sh
set -e
docker run --rm --gpus all -e EPOCHS="${EPOCHS:-3}" -v "$PWD/../..:/workspace:ro" cvl-x python train.py
"""


@pytest.fixture
def example(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    (ws / "pyproject.toml").write_text('[project]\nname = "cvl"\nversion = "0"\ndependencies = ["torch"]\n\n'
                                       '[tool.remote-run]\nenvironment = "docker"\n')
    (ws / "requirements.txt").write_text("torch\n")  # what bootstrap would install, were it asked to
    train = ws / "examples" / "x" / "train.sh"
    train.parent.mkdir(parents=True)
    train.write_text(TRAIN_SH)
    train.chmod(0o755)
    remote = unique_remote_dir("rrt_docker")
    yield ws, remote
    fake_docker.remove(sshd)
    sshd.cleanup_remote(remote)


def run_example(sshd, ws, remote, *flags, **env):
    # venv left on: without RUN_ENVIRONMENT=docker this host would get REMOTE_DIR/.venv and the requirements
    return cli(sshd, ws, "run", "examples/x/train.sh", "--cwd", "examples/x", *flags, REMOTE_DIR=remote, **env)


def records(ws) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((ws / "var" / "runs").glob("*/result.json"))]


def test_the_example_runs_its_container_with_no_environment_built(sshd, example):
    ws, remote = example
    fake_docker.install(sshd, fake_docker.script("nvidia"))
    done = run_example(sshd, ws, remote)
    assert done.returncode == 0, done.stderr
    assert "container ran: --rm --gpus all -e EPOCHS=3 -v" in done.stdout and "RESULT_DOCKER epochs=3" in done.stdout
    assert done.stderr.count("bootstrap: nothing to build, runs start their own containers") == 1, done.stderr
    assert "Docker on l1 can reach the GPUs (runtimes: io.containerd.runc.v2, nvidia, runc)" in done.stderr
    assert not remote_exists(sshd, f"{remote}/.venv") and not remote_exists(sshd, f"{remote}/.remote-run/uv")
    [record] = records(ws)
    assert record["outcome"] == "finished" and record["settings"]["RUN_ENVIRONMENT"] == "docker"
    assert record["hints"] == [] and not [w for w in record["warnings"] if w.startswith("GPU idle")]
    # gpu-check on its own checks Docker too: the workspace's runs need it
    checked = cli(sshd, ws, "gpu-check", REMOTE_DIR=remote)
    assert checked.returncode == 0 and "Docker on l1 can reach the GPUs" in checked.stderr, checked.stderr
    # a warm run: still nothing to build, and the container runs again
    again = run_example(sshd, ws, remote)
    assert again.returncode == 0 and "RESULT_DOCKER epochs=3" in again.stdout, again.stderr
    assert not remote_exists(sshd, f"{remote}/.venv")


def test_bootstrap_alone_builds_nothing_even_forced(sshd, example):
    ws, remote = example
    for args in (["bootstrap"], ["bootstrap", "--force"]):
        done = cli(sshd, ws, *args, REMOTE_DIR=remote)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("bootstrap: nothing to build") == 1, done.stderr
    assert remote_exists(sshd, remote) and not remote_exists(sshd, f"{remote}/.venv")


@pytest.mark.parametrize("case,needle", [
    ("runc-only", "has no NVIDIA runtime (runtimes: runc), so containers cannot reach the GPUs"),
    ("daemon-down", "did not answer (Cannot connect to the Docker daemon"),
])
@pytest.mark.parametrize("synced", [False, True], ids=["cold", "warm"])
def test_the_preflight_refuses_when_docker_cannot_reach_the_gpus(sshd, example, case, needle, synced):
    """Cold: checked beside the first rsync; warm: inside the run's own start command, on the host."""
    ws, remote = example
    if synced:
        assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    fake_docker.install(sshd, fake_docker.script("runc-only") if case == "runc-only"
                        else fake_docker.script(daemon=False))
    done = run_example(sshd, ws, remote)
    line = one_line_error(done)
    assert needle in line and "--cpu-ok" in line, line
    assert "container ran" not in done.stdout and run_dirs(remote) == [] and records(ws) == []
    assert not remote_exists(sshd, f"{remote}/.venv")
    if case == "runc-only":
        assert "nvidia-ctk runtime configure" in line
        # --cpu-ok: the run goes on, saying why it may not reach the GPUs
        ok = run_example(sshd, ws, remote, "--cpu-ok")
        assert ok.returncode == 0 and "RESULT_DOCKER epochs=3" in ok.stdout, ok.stderr
        assert f"{needle}; going on (--cpu-ok)" in ok.stderr


@pytest.mark.parametrize("docker", ["stand-in", "real client"])
def test_exit_125_with_the_daemon_message_gets_its_hint(sshd, example, docker):
    ws, remote = example
    if docker == "stand-in":
        fake_docker.install(sshd, fake_docker.script(daemon=False))
    else:  # the real docker client, when the host has one, and no daemon behind the socket it is given
        if not shutil.which("docker", path=sshd.remote_path):
            pytest.skip("no docker client on this machine")
        train = ws / "examples" / "x" / "train.sh"
        train.write_text(TRAIN_SH.replace("set -e\n", 'set -e\nexport DOCKER_HOST="unix://$PWD/no-daemon.sock"\n'))
    done = run_example(sshd, ws, remote, "--cpu-ok")  # past the preflight, as a daemon that stops mid-way
    assert done.returncode == 125, done.stderr
    assert "hint: `docker` could not reach its daemon on the host" in done.stderr
    [record] = records(ws)
    assert record["exit_status"] == 125 and record["outcome"] == "failed"
    assert len(record["hints"]) == 1 and "gpu-check --docker" in record["hints"][0]


def test_exit_125_of_any_other_docker_failure_gets_the_general_hint(sshd, example):
    ws, remote = example
    fake_docker.install(sshd, fake_docker.script("nvidia", run_error="invalid reference format."))
    done = run_example(sshd, ws, remote)
    assert done.returncode == 125, done.stderr
    [record] = records(ws)
    assert record["hints"] == ["exit status 125 is `docker run` failing before the container ran (its daemon, "
                               "the image or docker's own options; docker's message is above the end of the log), "
                               "not the program in it"]


def doctor(sshd, ws, remote) -> tuple[subprocess.CompletedProcess, dict]:
    done = cli(sshd, ws, "doctor", "--json", REMOTE_DIR=remote, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done, {c["name"]: c for c in json.loads(done.stdout)["checks"] if c["group"] == "host"}


def test_doctor_fails_when_docker_cannot_reach_the_gpus_and_passes_when_it_can(sshd, example):
    ws, remote = example
    fake_docker.install(sshd, fake_docker.script("runc-only"))
    done, checks = doctor(sshd, ws, remote)
    assert checks["docker"]["status"] == "fail" and "RUN_ENVIRONMENT=docker" in checks["docker"]["text"]
    assert "nvidia-ctk" in checks["docker"]["fix"]
    assert done.returncode == 1 and "docker" in one_line_error(done)
    fake_docker.install(sshd, fake_docker.script("nvidia"))
    done, checks = doctor(sshd, ws, remote)
    assert checks["docker"]["status"] == "ok", checks["docker"]
    assert checks["python"]["status"] == "ok" and "no venv is built" in checks["python"]["text"]
    assert not [c for c in checks.values() if c["status"] == "fail"], checks


def test_none_runs_with_the_host_s_python3_and_builds_nothing(sshd, example):
    ws, remote = example
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote, RUN_ENVIRONMENT="none")
    assert done.returncode == 0, done.stderr
    assert "RESULT_HELLO answer=42" in done.stdout
    assert done.stderr.count("bootstrap: nothing to build, runs use python3 as it is (RUN_ENVIRONMENT=none)") == 1
    assert "Docker" not in done.stderr  # none starts no containers: Docker is not asked
    assert not remote_exists(sshd, f"{remote}/.venv")
    [record] = records(ws)
    assert record["argv"][0] == "python3" and record["settings"]["RUN_ENVIRONMENT"] == "none"
