"""Shared fixtures: a loopback sshd for the integration tier, and isolation of every test from the
developer's own HOME, environment and working directory."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli import OFFLINE_PIP, write_pip_conf
from support.sshd import ROOT_MODE, SshServer
from support.workspace import unique_remote_dir

from remote_run.settings import ENV_FILE_VARIABLE, KEYS

REPO = str(Path(__file__).resolve().parents[1])

# Settings the CLI under test reads from the environment: a developer's own values must never
# reach a test.
ISOLATED_ENV_VARS = (*(key.name for key in KEYS), ENV_FILE_VARIABLE, "SSH_AUTH_SOCK", "XDG_CACHE_HOME")

# Tests start many short-lived interpreters on the checkout; none of them writes byte code into it.
os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Fresh HOME and cwd per test; no remote-run settings from outside."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ISOLATED_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    # The CLI under test is this checkout, whatever else the interpreter has installed (the wheel
    # is tested on its own, in test_packaging.py).
    monkeypatch.setenv("PYTHONPATH", REPO)
    monkeypatch.chdir(tmp_path)


def _missing_requirements():
    problems = []
    if not os.access("/usr/sbin/sshd", os.X_OK):
        problems.append("/usr/sbin/sshd missing")
    tools = ("ssh", "ssh-keygen", "rsync", *(("runuser", "useradd") if ROOT_MODE else ()))
    for tool in tools:
        if shutil.which(tool) is None:
            problems.append(f"{tool} missing")
    return problems


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A running loopback ``SshServer`` shared by the whole session.

    Integration tests fail (never skip) when the machine cannot run it: CI must not pass by
    silently skipping them.
    """
    problems = _missing_requirements()
    if problems:
        pytest.fail(
            "integration tests need OpenSSH server (sshd) and rsync: " + "; ".join(problems)
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
    remove = write_pip_conf(sshd, OFFLINE_PIP)
    yield
    remove()


@pytest.fixture
def gpu(sshd):
    """``gpu("busy")`` sets the fake nvidia-smi state; back to idle afterwards."""
    yield sshd.set_gpu
    sshd.set_gpu("idle")


@pytest.fixture
def small_disk(sshd):
    """A 2 MiB tmpfs for REMOTE_DIR (root here may mount; else the test is skipped, saying why)."""
    mount = Path(unique_remote_dir("rrt_smalldisk"))
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=1777", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode:
        mount.rmdir()
        pytest.skip(f"cannot mount a 2 MiB tmpfs as REMOTE_DIR's disk here: {done.stderr.strip()}")
    yield str(mount)
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    shutil.rmtree(mount, ignore_errors=True)
