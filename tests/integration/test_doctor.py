"""`inv doctor` and `inv init` through the real CLI against the loopback sshd: a healthy host passes
in one remote command and is left as it was; each broken prerequisite is a ✗ with its fix and exit
1; init writes the .env it should (and no secret), refuses to overwrite, asks on a terminal."""

from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from support.cli import argv, cli, environment, one_line_error
from support.net import free_port
from support.sshd import SshServer
from support.workspace import make_workspace, unique_remote_dir

from remote_run import envfile

FAKE_DOCKER = """#!/bin/sh
# Test stand-in for the docker CLI: a daemon with the NVIDIA runtime configured.
case "$1" in
  --version) echo "Docker version 27.3.1, build ce12230" ;;
  info) printf '%s%s\\n' '{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},' \\
                        '"runc":{"path":"runc"}}' ;;
  *) exit 1 ;;
esac
"""


def doctor(sshd, ws, *args, **env) -> tuple[subprocess.CompletedProcess, dict]:
    """`inv doctor --json`: the process and its report, by check name ("local NAME" for this machine's)."""
    done = cli(sshd, ws, "doctor", "--json", *args, timeout=60, **env)
    assert "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] == (done.returncode == 0), done.stderr
    checks = {c["name"] if c["group"] == "host" else f"local {c['name']}": c for c in report["checks"]}
    return done, checks | {"_report": report}


def failed(done, checks: dict, name: str) -> dict:
    """The check ``name`` failed, with a fix, and the exit status and last line say so."""
    check = checks[name]
    assert check["status"] == "fail" and check["fix"], check
    assert done.returncode == 1
    line = one_line_error(done)
    assert "checks failed" in line and name in line, line
    return check


def listing(sshd, *paths: str) -> str:
    """Everything under ``paths`` on the host (name, type, size, mode, mtime), as the remote user sees it."""
    done = sshd.as_user(["find", *paths, "-printf", "%p %y %s %m %T@\\n"])
    return done.stdout + done.stderr


@pytest.fixture
def fresh(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir("rrt_doc")
    yield ws, remote
    sshd.cleanup_remote(remote)


@pytest.fixture
def fake_docker(sshd):
    path = sshd.remote_home / "bin" / "docker"  # first on the sessions' PATH
    path.write_text(FAKE_DOCKER)
    path.chmod(0o755)
    yield
    path.unlink()


def test_a_healthy_host_passes_in_one_remote_command_and_is_left_as_it_was(sshd, fresh, fake_docker):
    ws, remote = fresh
    before = listing(sshd, str(sshd.remote_home), remote)
    mark = sshd.mark()
    done = cli(sshd, ws, "doctor", REMOTE_DIR=remote, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sshd.count("Starting session:", mark) == 1  # every host check in one remote command
    assert "nothing failed" in done.stderr and "✗" not in done.stdout
    assert "✓ GPU" in done.stdout and "NVIDIA H100 80GB HBM3, driver 550.54.15, CUDA 12.4" in done.stdout
    _, checks = doctor(sshd, ws, REMOTE_DIR=remote)
    assert listing(sshd, str(sshd.remote_home), remote) == before  # doctor only looks
    # Only what this machine may genuinely lack may warn: outbound internet to the package index
    # (nothing to install here, so not a failure).
    for name, check in checks.items():
        if name != "_report":
            assert check["status"] == "ok" or (check["status"] == "warn" and name == "package index"), check
    if shutil.which("uv", path=sshd.remote_path) is None:
        assert checks["uv"]["text"].startswith("not installed yet: the first bootstrap installs it")
    assert "not reachable" in checks["package index"]["text"] or checks["package index"]["status"] == "ok"
    assert checks["REMOTE_DIR"]["text"].endswith("the first sync creates it (in /tmp)")
    assert checks["docker"]["text"] == ("Docker version 27.3.1, build ce12230; Docker on l1 can reach the GPUs"
                                        " (runtimes: io.containerd.runc.v2, nvidia, runc)")
    assert checks["_report"]["suggested_torch_index_url"] == "https://download.pytorch.org/whl/cu124"
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    _, checks = doctor(sshd, ws, REMOTE_DIR=remote)
    assert checks["REMOTE_DIR"]["status"] == "ok" and "is remote-run's" in checks["REMOTE_DIR"]["text"]
    assert "synced before from here, nothing changed" in checks["local sync size"]["text"]


@pytest.mark.parametrize("state, needle", [("busy", "is in use by another job"),
                                           ("nodriver", "cannot talk to the NVIDIA driver"),
                                           ("absent", "nvidia-smi is not installed")])
def test_a_busy_gpu_or_no_driver_fails_with_its_fix(sshd, fresh, gpu, state, needle):
    ws, remote = fresh
    gpu(state)
    done, checks = doctor(sshd, ws, REMOTE_DIR=remote)
    check = failed(done, checks, "GPU")
    assert needle in check["text"], check
    if state == "busy":
        assert "pid 4242 python (11990 MiB" in check["text"] and "--allow-busy" in check["fix"]
    assert all(c["status"] != "fail" for name, c in checks.items() if name not in ("GPU", "_report"))


def test_too_little_free_space_fails(sshd, fresh):
    ws, remote = fresh
    done, checks = doctor(sshd, ws, REMOTE_DIR=remote, DOCTOR_MIN_FREE_GB="1000000")
    check = failed(done, checks, "disk")
    assert "less than DOCTOR_MIN_FREE_GB=1000000" in check["text"] and "bigger disk" in check["fix"]


def test_a_remote_dir_that_is_not_ours_fails_naming_owner_and_mode(sshd, fresh):
    ws, remote = fresh
    # As root the test's own directory belongs to someone else than the remote user; as a normal
    # user it is the remote user's, but writable by anyone: unsafe either way.
    os.mkdir(remote)
    os.chmod(remote, 0o777)
    done, checks = doctor(sshd, ws, REMOTE_DIR=remote)
    check = failed(done, checks, "REMOTE_DIR")
    assert "mode 0777" in check["text"] and "choose another REMOTE_DIR" in check["fix"], check
    assert ("someone else's" if sshd.is_root_mode else "can be written by other users") in check["text"]
    os.rmdir(remote)
    sshd.as_user(["sh", "-c", f"mkdir -p {remote} && echo precious > {remote}/thesis.tex"])
    done, checks = doctor(sshd, ws, REMOTE_DIR=remote)
    assert "was not created by remote-run" in failed(done, checks, "REMOTE_DIR")["text"]
    link = unique_remote_dir("rrt_doc_link")
    sshd.as_user(["ln", "-s", remote, link])
    try:
        done, checks = doctor(sshd, ws, REMOTE_DIR=link)
        assert "is a symlink to" in failed(done, checks, "REMOTE_DIR")["text"]
    finally:
        sshd.cleanup_remote(link)


def test_an_unreachable_host_fails_and_this_machine_is_still_checked(sshd, fresh):
    ws, remote = fresh
    sshd.add_alias("doc-deadbox", free_port())
    done, checks = doctor(sshd, ws, REMOTE_HOST="doc-deadbox", REMOTE_DIR=remote)
    check = failed(done, checks, "connection")
    assert "connection refused" in check["text"] and "ssh doc-deadbox" in check["fix"]
    assert [checks[f"local {name}"]["status"]
            for name in ("ssh", "rsync", "REMOTE_HOST", "workspace", "sync size")] == ["ok"] * 5
    done = cli(sshd, ws, "doctor", REMOTE_HOST="doc-deadbox", REMOTE_DIR=remote)
    assert "✗ connection" in done.stdout and "✓ workspace" in done.stdout and done.returncode == 1


def test_the_package_index_the_host_must_reach_and_the_torch_wheels_that_fit_the_driver(sshd, fresh):
    ws, remote = fresh
    with socket.socket() as index:  # an index that accepts connections
        index.bind(("127.0.0.1", 0))
        index.listen()
        url = f"http://127.0.0.1:{index.getsockname()[1]}/whl/cu121"
        done, checks = doctor(sshd, ws, REMOTE_DIR=remote, TORCH_PACKAGES="torch", TORCH_INDEX_URL=url)
        assert "torch 127.0.0.1:" in checks["package index"]["text"]
        assert "torch 127.0.0.1" not in checks["package index"].get("fix", "")
        assert checks["torch wheels"]["status"] == "ok"
        assert "CUDA 12.1 wheels; the driver supports CUDA 12.4" in checks["torch wheels"]["text"]
    closed = f"http://127.0.0.1:{free_port()}/whl/cu130"
    done, checks = doctor(sshd, ws, REMOTE_DIR=remote, TORCH_PACKAGES="torch", TORCH_INDEX_URL=closed)
    check = failed(done, checks, "package index")
    assert "refused" in check["text"] and "bootstrap installs torch and would fail" in check["text"], check
    assert checks["torch wheels"]["status"] == "fail"
    assert checks["torch wheels"]["fix"] == "set TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 in .env"


class BareServer(SshServer):
    """A loopback sshd whose sessions get a PATH with every system program except rsync and docker."""

    def __init__(self, root: Path, bin_dir: Path):
        super().__init__(root)
        self.bin_dir = bin_dir

    @property
    def remote_path(self) -> str:
        return f"{self.remote_home}/bin:{self.remote_bin}:{self.bin_dir}"


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    bin_dir = Path(tempfile.mkdtemp(prefix="rr-bare-bin-", dir="/tmp"))
    os.chmod(bin_dir, 0o755)
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for name in sorted(os.listdir(folder)):
            if name not in ("rsync", "docker") and not (bin_dir / name).exists() and not (bin_dir / name).is_symlink():
                (bin_dir / name).symlink_to(os.path.join(folder, name))
    server = BareServer(tmp_path_factory.mktemp("bare-sshd"), bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()
        shutil.rmtree(bin_dir, ignore_errors=True)


def test_no_rsync_on_the_host_s_path_fails_and_no_docker_is_no_error(bare, tmp_path):
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir("rrt_doc_bare")
    done, checks = doctor(bare, ws, REMOTE_DIR=remote)
    check = failed(done, checks, "rsync")
    assert check["group"] == "host" and "rsync is not on the PATH" in check["text"]
    assert "apt-get install rsync" in check["fix"]
    assert checks["docker"]["status"] == "skip" and "not installed" in checks["docker"]["text"]
    assert [c["name"] for c in checks["_report"]["checks"] if c["status"] == "fail"] == ["rsync"]


# ------------------------------------------------------------------------------------- init

EXPECTED_ENV = envfile.HEADER + ("REMOTE_HOST=l1\nWORKSPACE=.\nREMOTE_DIR={remote}\n"
                                 "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124\n")


def project(tmp_path) -> Path:
    ws = tmp_path / "proj"
    (ws / "scripts").mkdir(parents=True)
    (ws / "scripts" / "hello.py").write_text("print('RESULT_HELLO answer=42')\n")
    (ws / ".gitignore").write_text("__pycache__/")  # no newline at the end, no .env
    return ws


def test_init_writes_the_env_with_the_index_that_fits_the_driver_and_no_secret(sshd, tmp_path):
    ws, remote = project(tmp_path), unique_remote_dir("rrt_init")
    secrets = {"WANDB_API_KEY": "wandb-s3cret-value", "REMOTE_ENV": "WANDB_API_KEY", "HF_TOKEN": "hf-s3cret-value"}
    mark = sshd.mark()
    done = cli(sshd, ws, "init", "--yes", "--host", "l1", "--remote-dir", remote, REMOTE_HOST=None, TORCH_PACKAGES=None,
               **secrets, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    written = (ws / ".env").read_text()
    assert written == EXPECTED_ENV.format(remote=remote), written
    assert "s3cret" not in written and "WANDB" not in written
    assert (ws / ".env").stat().st_mode & 0o777 == 0o600
    assert (ws / ".gitignore").read_text() == "__pycache__/\n.env\n.cluster_name_*\n"
    assert f"added .env, .cluster_name_* to {ws / '.gitignore'}" in done.stderr
    assert "supports CUDA 12.4" in done.stderr
    # then doctor ran on the new .env: its lines, and its exit status
    assert "host l1" in done.stdout and "✓ GPU" in done.stdout and f"{remote} does not exist yet" in done.stdout
    assert done.returncode == (1 if "✗" in done.stdout else 0), done.stdout + done.stderr
    assert sshd.count("Starting session:", mark) == 2  # the look at the GPUs, then doctor
    assert not os.path.exists(remote)

    again = cli(sshd, ws, "init", "--yes", "--host", "local", REMOTE_HOST=None, timeout=60)
    assert "--force" in one_line_error(again)
    assert (ws / ".env").read_text() == written
    bad = cli(sshd, ws, "init", "--yes", "--force", "--host", "l1;touch x", REMOTE_HOST=None, timeout=60)
    assert "REMOTE_HOST" in one_line_error(bad) and (ws / ".env").read_text() == written
    assert (ws / ".gitignore").read_text() == "__pycache__/\n.env\n.cluster_name_*\n"  # covered: not added twice


def test_init_force_updates_its_keys_and_keeps_the_other_lines(sshd, tmp_path):
    ws = project(tmp_path)
    (ws / ".gitignore").write_text(".env*\n/.cluster_name_*\n")
    (ws / ".env").write_text("# mine\nMY_TOKEN=tok-s3cret\nREMOTE_HOST=old-box\n"
                             "TORCH_INDEX_URL=https://example.org/simple\n")
    remote = unique_remote_dir("rrt_init")
    done = cli(sshd, ws, "init", "--yes", "--force", "--host", "local", "--remote-dir", remote, REMOTE_HOST=None,
               timeout=60)
    assert "Traceback" not in done.stderr and "this machine" in done.stdout, done.stderr
    assert (ws / ".env").read_text() == ("# mine\nMY_TOKEN=tok-s3cret\nREMOTE_HOST=local\n"
                                         "TORCH_INDEX_URL=https://example.org/simple\n"
                                         f"WORKSPACE=.\nREMOTE_DIR={remote}\n")
    assert (ws / ".gitignore").read_text() == ".env*\n/.cluster_name_*\n" and "gitignore" not in done.stderr
    assert done.returncode == (1 if "✗" in done.stdout else 0)


def test_init_on_a_terminal_offers_the_ssh_aliases_and_asks(sshd, tmp_path):
    ws, remote = project(tmp_path), unique_remote_dir("rrt_init")
    (ws / ".gitignore").unlink()
    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(argv("init"), cwd=ws, env=environment(sshd, REMOTE_HOST=None, TORCH_PACKAGES=None),
                                stdin=child, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # REMOTE_HOST: the first alias (Enter); WORKSPACE: .; REMOTE_DIR: first a relative one (asked
        # again), then ours; TORCH_INDEX_URL: the suggestion (Enter).
        os.write(main, f"\n\nrelative/dir\n{remote}\n\n".encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(main)
        os.close(child)
    assert "Traceback" not in err, err
    assert "Host aliases in your ~/.ssh/config:" in err
    assert f"rrtest@127.0.0.1:{sshd.port}" in err.replace(sshd.user, "rrtest")
    assert "REMOTE_HOST (an alias, user@host[:port], or local) [l1]:" in err
    assert "REMOTE_DIR='relative/dir' is not valid" in err
    assert (ws / ".env").read_text() == EXPECTED_ENV.format(remote=remote)
    assert not (ws / ".gitignore").exists()  # none to add to: none is created
    assert "host l1" in out
