"""The loopback sshd harness itself (tests/support/sshd.py) works as the other tests assume, as root and as a
normal user."""

import os
import pwd
import re
import subprocess
import time

import pytest
from support.latency_proxy import LatencyProxy
from support.sshd import SshServer

REMOTE_TMP = f"/tmp/rrtest_harness_{os.getpid()}"  # unique: concurrent runs share the user
GPU_QUERY = ("nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu,uuid"
             " --format=csv,noheader,nounits")
APPS_QUERY = ("nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory"
              " --format=csv,noheader,nounits")
UUID0 = "GPU-5e5f3b1c-8d2a-4c6e-9f10-2b3c4d5e6f70"
UUID1 = "GPU-7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"


def ssh(sshd, command, alias="l1", **kw):
    return subprocess.run([*sshd.ssh_argv(alias), command], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30, **kw)


def test_ssh_logs_in_as_the_remote_user_in_a_home_of_its_own(sshd):
    r = ssh(sshd, "whoami; echo $PATH; cd ~ && pwd; echo $HOME")
    assert r.returncode == 0, r.stderr
    user, path, cwd, home = r.stdout.splitlines()  # (sshd still starts the session in the passwd home)
    assert user == sshd.user == ("rrtest" if os.geteuid() == 0 else pwd.getpwuid(os.getuid()).pw_name)
    assert path == f"{sshd.remote_home}/bin:{sshd.remote_bin}:/usr/local/bin:/usr/bin:/bin" == sshd.remote_path
    assert cwd == home == str(sshd.remote_home)
    assert str(sshd.remote_home).startswith("/tmp/rr-remote-home-")  # never a real home directory


def test_each_plain_ssh_is_one_handshake_and_one_session(sshd):
    mark = sshd.mark()
    assert ssh(sshd, "true").returncode == 0
    assert sshd.count("Accepted publickey", mark) == 1
    assert sshd.count("Starting session:", mark) == 1
    assert ssh(sshd, "true").returncode == 0
    assert sshd.count("Accepted publickey", mark) == 2
    assert sshd.count("Starting session: command", mark) == 2


@pytest.mark.parametrize("state, rc, gpus, apps", [
    ("idle", 0, [f"0, NVIDIA H100 80GB HBM3, 0, 81559, 0, {UUID0}"], []),
    ("busy", 0, [f"0, NVIDIA H100 80GB HBM3, 12000, 81559, 97, {UUID0}"],
     [f"{UUID0}, 4242, python, 11990"]),
    ("two", 0, [f"0, NVIDIA H100 80GB HBM3, 0, 81559, 0, {UUID0}",
                f"1, NVIDIA H100 80GB HBM3, 0, 81559, 0, {UUID1}"], []),
])
def test_fake_nvidia_smi_queries(sshd, gpu, state, rc, gpus, apps):
    gpu(state)
    r = ssh(sshd, GPU_QUERY + "; echo ---; " + APPS_QUERY)
    assert r.returncode == rc, r.stderr
    got_gpus, got_apps = r.stdout.split("---\n")
    assert got_gpus.splitlines() == gpus
    assert got_apps.splitlines() == apps


def test_fake_nvidia_smi_field_order_and_units(sshd, gpu):
    gpu("busy")
    r = ssh(sshd, "nvidia-smi --query-gpu=uuid,utilization.gpu,memory.used --format=csv"
                  " && nvidia-smi")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["uuid, utilization.gpu [%], memory.used [MiB]",
                         f"{UUID0}, 97 %, 12000 MiB"]
    assert "NVIDIA-SMI" in r.stdout and "4242" in r.stdout and "12000MiB / 81559MiB" in r.stdout


def test_fake_nvidia_smi_without_driver(sshd, gpu):
    gpu("nodriver")
    r = ssh(sshd, GPU_QUERY)
    assert r.returncode == 9
    assert r.stdout.startswith("NVIDIA-SMI has failed because it couldn't communicate "
                               "with the NVIDIA driver.")


def test_fake_nvidia_smi_absent(sshd, gpu):
    gpu("absent")
    r = ssh(sshd, GPU_QUERY)
    # The command runs in the user's login shell: bash says "command not found" and `command -v`
    # exits 1; dash (/bin/sh, useradd's default on Debian) says "not found" and exits 127.
    assert r.returncode == 127
    assert re.search(r"nvidia-smi: (command )?not found", r.stderr), r.stderr
    assert ssh(sshd, "command -v nvidia-smi").returncode in (1, 127)


def test_gpu_state_is_per_server(sshd, gpu, tmp_path_factory):
    """A second server (another test run on this machine) has its own fake GPU."""
    gpu("busy")
    with SshServer(tmp_path_factory.mktemp("sshd-other")) as other:
        other.set_gpu("absent")
        assert ssh(other, "command -v nvidia-smi").returncode in (1, 127)  # bash, dash (see above)
        r = ssh(sshd, APPS_QUERY)
        assert r.stdout == f"{UUID0}, 4242, python, 11990\n", r.stderr
        assert other.as_user(["bash", "-c", "command -v nvidia-smi"]).returncode == 1
    r = sshd.as_user(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader"])
    assert r.stdout == "97 %\n"


def test_rsync_over_ssh_config(sshd, tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text("print('a')\n")
    (src / "top.txt").write_text("top\n")
    try:
        r = subprocess.run(
            ["rsync", "-a", "-e", f"ssh -F {sshd.ssh_config}", f"{src}/", f"l1:{REMOTE_TMP}/"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
        assert r.returncode == 0, r.stderr
        r = sshd.as_user(["stat", "-c", "%U %n", f"{REMOTE_TMP}/pkg/a.py", f"{REMOTE_TMP}/top.txt"])
        assert r.stdout.split("\n")[:2] == [f"{sshd.user} {REMOTE_TMP}/pkg/a.py",
                                            f"{sshd.user} {REMOTE_TMP}/top.txt"]
    finally:
        sshd.cleanup_remote(REMOTE_TMP)
    assert not os.path.exists(REMOTE_TMP)


def test_env_makes_plain_ssh_and_rsync_use_the_fake_home(sshd, tmp_path, monkeypatch):
    """OpenSSH ignores $HOME; env() puts an `ssh -F <fake config>` wrapper first on PATH."""
    for name in ("REMOTE_HOST", "TORCH_INDEX_URL", "HLB_MODULE", "WORKSPACE", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(name, "from-outside")
    env = sshd.env(REMOTE_HOST="l1", EXTRA=1)
    assert env["HOME"] == str(sshd.home)
    assert env["REMOTE_HOST"] == "l1" and env["EXTRA"] == "1"
    assert env["REMOTE_RUN_CONTROL_DIR"] == str(sshd.control_dir)
    assert "REMOTE_RUN_CONTROL_DIR" not in sshd.env(REMOTE_RUN_CONTROL_DIR=None)
    assert not {"TORCH_INDEX_URL", "HLB_MODULE", "WORKSPACE", "XDG_RUNTIME_DIR",
                "SSH_AUTH_SOCK"} & set(env)
    r = subprocess.run(["ssh", "l1", "whoami"], env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    assert (r.returncode, r.stdout) == (0, f"{sshd.user}\n"), r.stderr
    (tmp_path / "f.txt").write_text("x")
    try:
        r = subprocess.run(["rsync", "-a", "f.txt", f"l1:{REMOTE_TMP}_env/"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert sshd.as_user(["cat", f"{REMOTE_TMP}_env/f.txt"]).stdout == "x"
    finally:
        sshd.cleanup_remote(REMOTE_TMP + "_env")


def test_as_user_runs_locally_as_the_remote_user_in_its_home(sshd):
    r = sshd.as_user(["sh", "-c", "id -un; echo $HOME; pwd"])
    assert r.stdout.split() == [sshd.user, str(sshd.remote_home), str(sshd.remote_home)]


def test_the_control_dir_is_short_and_private(sshd):
    # ssh appends a 40-character hash and a 17-character temporary suffix; a socket path holds 107 bytes.
    assert len(str(sshd.control_dir)) <= 40
    assert os.stat(sshd.control_dir).st_mode & 0o777 == 0o700


def test_alias_through_latency_proxy(sshd):
    with LatencyProxy(target=("127.0.0.1", sshd.port), delay=0.01) as proxy:
        sshd.add_alias("l1proxy", proxy.port)
        assert f"[127.0.0.1]:{proxy.port} ssh-ed25519 " in sshd.known_hosts.read_text()
        t0 = time.perf_counter()
        r = ssh(sshd, "whoami", alias="l1proxy")
        assert (r.returncode, r.stdout) == (0, f"{sshd.user}\n"), r.stderr
        assert time.perf_counter() - t0 > 4 * 2 * 0.01  # several round trips, each >= 20 ms
        assert proxy.connections == 1


def test_changed_host_key_is_refused_then_trusted_again(sshd):
    port = sshd.port
    sshd.regenerate_host_key()
    try:
        assert sshd.port == port and sshd.running
        r = ssh(sshd, "true")
        assert r.returncode == 255
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr, r.stderr
    finally:
        sshd.trust_host_key()
    assert ssh(sshd, "true").returncode == 0


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_end_masters_and_close_kill_leftover_control_masters(tmp_path_factory):
    server = SshServer(tmp_path_factory.mktemp("sshd-close"))
    masters = []
    try:
        server.start()
        ctl = server.control_dir
        r = subprocess.run(
            ["ssh", "-o", "ControlMaster=auto", "-o", f"ControlPath={ctl}/%C",
             "-o", "ControlPersist=60", "l1", "true"],
            env=server.env(), capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=30)
        assert r.returncode == 0, r.stderr
        masters = server._client_ssh_pids()
        assert masters, "the ControlPersist master should be running"
        server.end_masters()
        assert not server._client_ssh_pids()
        assert subprocess.run(["ssh", "-o", f"ControlPath={ctl}/%C", "-O", "check", "l1"], env=server.env(),
                              capture_output=True, timeout=30).returncode != 0
        r = subprocess.run(["ssh", "-o", "ControlMaster=auto", "-o", f"ControlPath={ctl}/%C", "-o", "ControlPersist=60",
                            "l1", "true"],
                           env=server.env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
        assert r.returncode == 0, r.stderr
        masters = server._client_ssh_pids()
    finally:
        server.close()
    deadline = time.monotonic() + 3
    while any(map(_alive, masters)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, masters))
    assert not server.running
