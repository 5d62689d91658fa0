"""Shared fixtures: a loopback sshd for integration tests, and isolation of
every test from the developer's own HOME, environment and working directory."""

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sshd import SshServer  # noqa: E402

# Settings the CLI under test reads from the environment; a developer's own
# values must never reach a test.
ISOLATED_ENV_VARS = (
    "REMOTE_HOST", "REMOTE_DIR", "WORKSPACE", "REMOTE_RUN_ENV_FILE", "RUNS_DIR",
    "REMOTE_ENV", "REMOTE_PYTHON", "TORCH_INDEX_URL", "TORCH_PACKAGES",
    "PIP_PACKAGES", "CUDA_VISIBLE_DEVICES", "SYNC_EXCLUDE", "TRAIN_IMPL",
    "HLB_MODULE", "DAVID_NET_MODULE", "DAVID_TRAINER_MODULE", "SSH_AUTH_SOCK",
)


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Fresh HOME and cwd per test; no remote-run settings from outside."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ISOLATED_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _missing_requirements():
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root (the sshd harness creates a user and starts sshd)")
    if not os.access("/usr/sbin/sshd", os.X_OK):
        problems.append("/usr/sbin/sshd missing")
    for tool in ("ssh", "ssh-keygen", "rsync", "runuser", "useradd"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} missing")
    return problems


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A running loopback ``SshServer`` shared by the whole session.

    Integration tests fail (never skip) when the machine cannot run it: CI
    must not pass by silently skipping them.
    """
    problems = _missing_requirements()
    if problems:
        pytest.fail(
            "integration tests need root, OpenSSH server and rsync: "
            + "; ".join(problems)
            + " -- .ci/run installs them with `apt-get install -y openssh-server rsync`",
            pytrace=False,
        )
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def offline_pip(sshd):
    """The host's pip never goes to the network (a realistic offline GPU box)."""
    conf = sshd.remote_home / ".config" / "pip" / "pip.conf"
    sshd.as_user(["mkdir", "-p", str(conf.parent)])
    sshd.as_user(["sh", "-c", f"printf '[global]\\nno-index = true\\n' > {conf}"])
    yield
    sshd.as_user(["rm", "-f", str(conf)])


@pytest.fixture
def gpu(sshd):
    """``gpu("busy")`` sets the fake nvidia-smi state; back to idle afterwards."""
    yield sshd.set_gpu
    sshd.set_gpu("idle")
