"""The task collection driven through the real CLI against a real sshd on loopback (alias l1)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import pytest
from support.cli import REPO, cli, latest_record, no_secret_files, one_line_error, remote_exists, remote_read
from support.workspace import make_workspace, unique_remote_dir

from remote_run.errors import Kind
from remote_run.runner_files import template


@pytest.fixture(scope="module")
def shared(sshd, offline_pip, tmp_path_factory):
    """One workspace and REMOTE_DIR for the happy-path tests (bootstrapped once)."""
    ws = make_workspace(tmp_path_factory.mktemp("ws"))
    remote = unique_remote_dir("rrt_shared")
    yield ws, remote
    sshd.cleanup_remote(remote)


@pytest.fixture
def fresh(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir()
    yield ws, remote
    sshd.cleanup_remote(remote)


def test_train_hlb_chain_writes_result_record_and_remote_log(sshd, shared):
    ws, remote = shared
    done = cli(sshd, ws, "train-hlb", "--epochs", "2.5", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "hlb stand-in training for 2.5 epochs" in done.stdout
    assert "RESULT_HLB" in done.stdout and "train_epochs=2.5 ema_val_acc=0.9375" in done.stdout
    assert "NVIDIA H100" in done.stdout  # the gpu-check table
    records = sorted((ws / "var" / "runs").glob("*_train-hlb"))
    assert len(records) == 1
    data = json.loads((records[0] / "result.json").read_text())
    assert data["outcome"] == "finished" and data["exit_status"] == 0 and data["host"] == "l1"
    assert data["result"]["metrics"]["ema_val_acc"] == 0.9375
    assert data["options"]["epochs"] == 2.5 and data["gpu"][0]["name"].startswith("NVIDIA H100")
    assert data["runner"] == template("hlb_workspace.py")  # unchanged: the options went as flags
    assert ("/python scripts/run_hlb.py --epochs 2.5"
            " --hlb-module cvlization.torch.training_pipeline.image_classification.hlb  [run " in done.stderr)
    log_md = (records[0] / "log.md").read_text()
    assert "RESULT_HLB" in log_md and "rsync" in log_md and "- `epochs`: 2.5" in log_md
    run_id = records[0].name
    remote_log = remote_read(sshd, f"{remote}/.remote-run/runs/{run_id}/run.log")
    assert (records[0] / "run.log").read_text() == remote_log
    # written into the run's snapshot
    assert data["runner_path"] == f"{remote}/.remote-run/runs/{run_id}/work/scripts/run_hlb.py"
    assert remote_read(sshd, data["runner_path"]) == data["runner"]
    assert not remote_exists(sshd, f"{remote}/scripts/run_hlb.py")
    assert len(data["snapshot"]["tree"]) > 8 and data["snapshot"]["files"] > 0
    assert remote_exists(sshd, f"{remote}/.venv/bin/python")


def test_train_david_workspace_runner(sshd, shared):
    ws, remote = shared
    done = cli(sshd, ws, "train-david", "--epochs", "3", "--batch-size", "256", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "david stand-in 3 epochs, batch 256 half" in done.stdout
    assert "RESULT_DAVID" in done.stdout and "epochs=3 batch_size=256" in done.stdout


def test_a_warm_run_is_one_command_and_no_handshake(sshd, shared):
    ws, remote = shared
    assert cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote).returncode == 0  # warm up
    mark = sshd.mark()
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "environment is up to date" in done.stderr and "(no changes; checked on the host)" in done.stderr
    assert sshd.count("Accepted publickey", mark) == 0  # the ControlMaster of the warm-up is still up
    assert sshd.count("Starting session:", mark) == 1  # sync check, environment, GPUs and the run: one command
    assert "rsync" not in (latest_record(ws, "run") / "log.md").read_text()


def test_a_changed_file_travels_with_the_run_command(sshd, shared):
    ws, remote = shared
    assert cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote).returncode == 0
    (ws / "scripts" / "changed.py").write_text("print('RESULT_CHANGED v=1')\n")
    try:
        mark = sshd.mark()
        done = cli(sshd, ws, "run", "scripts/changed.py", REMOTE_DIR=remote)
        assert done.returncode == 0, done.stderr
        assert "RESULT_CHANGED v=1" in done.stdout and "bytes sent with the command" in done.stderr
        assert sshd.count("Starting session:", mark) == 1
        (ws / "scripts" / "changed.py").write_text("print('RESULT_CHANGED v=22')\n")
        done = cli(sshd, ws, "run", "scripts/changed.py", REMOTE_DIR=remote)
        assert "RESULT_CHANGED v=22" in done.stdout, done.stderr
    finally:
        (ws / "scripts" / "changed.py").unlink()
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    assert not remote_exists(sshd, f"{remote}/scripts/changed.py")  # and a deletion travels the same way


def test_a_change_made_on_the_host_is_seen_and_the_sync_is_exact_again(sshd, shared):
    ws, remote = shared
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    sshd.as_user(["sh", "-c", 'printf "%s\\n" "$1" > "$2/scripts/hello.py"; touch "$2/stray.txt"',
                  "sh", "print('RESULT_HELLO answer=0')", remote])
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "RESULT_HELLO answer=42" in done.stdout  # the host's edit did not run: a full rsync put the workspace back
    assert not remote_exists(sshd, f"{remote}/stray.txt")


def test_chained_tasks_run_each_step_once(sshd, shared):
    ws, remote = shared
    mark = sshd.mark()
    done = cli(sshd, ws, "sync", "bootstrap", "gpu-check", "run", "scripts/hello.py", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("remote-run: synced") == 1
    assert done.stderr.count("environment is up to date") == 1
    assert done.stdout.count("NVIDIA H100") == 1
    assert sshd.count("Starting session:", mark) == 1  # named or not, the steps ride with the run


def test_run_passes_arguments_literally_and_no_canary_appears(sshd, shared, tmp_path):
    ws, remote = shared
    canary = tmp_path / "canary"
    args = f"'$(touch {canary})' '`touch {canary}`' '; touch {canary}' 'a b' naïve -x"
    done = cli(sshd, ws, "run", "scripts/hello.py", "--args", args, REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    expected = [f"$(touch {canary})", f"`touch {canary}`", f"; touch {canary}", "a b", "naïve", "-x"]
    assert f"argv {expected!r}" in done.stdout
    assert not canary.exists()


def test_run_module_and_exit_status_becomes_ours(sshd, shared):
    ws, remote = shared
    done = cli(sshd, ws, "run", "--module", "scripts.exit3", REMOTE_DIR=remote)
    assert done.returncode == 3, done.stderr
    assert "RESULT_EXIT code=3" in done.stdout
    record = json.loads((latest_record(ws, "run") / "result.json").read_text())
    assert record["outcome"] == "failed" and record["exit_status"] == 3


def test_failed_run_gets_a_hint(sshd, shared):
    ws, remote = shared
    done = cli(sshd, ws, "run", "scripts/fail_import.py", REMOTE_DIR=remote)
    assert done.returncode == 1
    assert "hint: module 'not_a_real_module_xyz' is missing" in done.stderr


def test_forwarded_secret_reaches_only_the_process_environment(sshd, shared):
    ws, remote = shared
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote, REMOTE_ENV="MY_TOKEN", CUDA_VISIBLE_DEVICES="0")
    assert done.returncode == 0, done.stderr
    import hashlib

    assert f"token-sha {hashlib.sha256(b'tok-s3cret-value').hexdigest()[:12]}" in done.stdout
    assert "cuda 0" in done.stdout
    assert "tok-s3cret-value" not in done.stdout + done.stderr
    assert no_secret_files(sshd, remote, "tok-s3cret-value")
    assert no_secret_files(sshd, remote, "secret-too")
    for path in (ws / "var" / "runs").rglob("*"):
        if path.is_file():
            assert "tok-s3cret-value" not in path.read_text(errors="replace"), path


def test_pull_logs_never_overwrites_local_files(sshd, shared):
    ws, remote = shared
    assert cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote).returncode == 0
    record = latest_record(ws, "run")
    (record / "run.log").write_text("edited locally")
    done = cli(sshd, ws, "pull-logs", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert (record / "run.log").read_text() == "edited locally"
    assert (record / "meta.json").exists() and (record / "exit_code").read_text().strip() == "0"
    done = cli(sshd, ws, "pull-logs", "--run", record.name, REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "no run" in one_line_error(cli(sshd, ws, "pull-logs", "--run", "20990101T000000Z_nope", REMOTE_DIR=remote))


def test_bootstrap_is_one_command_when_nothing_changed_and_force_rebuilds(sshd, shared):
    ws, remote = shared
    assert cli(sshd, ws, "bootstrap", REMOTE_DIR=remote).returncode == 0
    mark = sshd.mark()
    done = cli(sshd, ws, "bootstrap", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "environment is up to date" in done.stderr
    assert sshd.count("Starting session:", mark) == 1  # the sync check asks for the environment stamp too
    (ws / "requirements.txt").write_text("")
    try:
        done = cli(sshd, ws, "bootstrap", REMOTE_DIR=remote)
        assert done.returncode == 0, done.stderr
        assert "installing requirements.txt" in done.stderr and "environment ready" in done.stderr
    finally:
        (ws / "requirements.txt").unlink()
    stamp = remote_read(sshd, f"{remote}/.remote-run/venv-stamp")
    done = cli(sshd, ws, "bootstrap", "--force", REMOTE_DIR=remote)
    assert done.returncode == 0 and "environment ready" in done.stderr, done.stderr
    # rebuilt for the workspace without requirements.txt
    assert remote_read(sshd, f"{remote}/.remote-run/venv-stamp") != stamp


def test_sync_excludes_secrets_and_keeps_symlinks(sshd, fresh):
    ws, remote = fresh
    (ws / ".remoteignore").write_text("# comment\n*.ckpt\n")
    done = cli(sshd, ws, "sync", REMOTE_DIR=remote, SYNC_EXCLUDE="data/raw")
    assert done.returncode == 0, done.stderr
    assert remote_exists(sshd, f"{remote}/scripts/hello.py")
    assert remote_exists(sshd, f"{remote}/.env.example")
    for gone in (".env", ".env.local", ".git", "var", "pkg/__pycache__", "model.ckpt", "data/raw/big.bin"):
        assert not remote_exists(sshd, f"{remote}/{gone}"), gone
    link = sshd.as_user(["readlink", f"{remote}/hello_link.py"])
    assert link.stdout.strip() == "scripts/hello.py"


def test_sync_deletes_stale_files_but_never_the_venv_runs_or_the_dataset_cache(sshd, fresh):
    ws, remote = fresh
    (ws / "runs").mkdir()  # a workspace's own runs/ and data/ (code) are synced like any folder
    (ws / "runs" / "speedrun.sh").write_text("python train.py\n")
    (ws / "data" / "cached_fineweb10B.py").write_text("URL = 1\n")
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    assert remote_read(sshd, f"{remote}/runs/speedrun.sh") == "python train.py\n"
    for rel in (".remote-run/runs/old/run.log", ".venv/keep", ".remote-run/data/cifar10/cache.pt"):
        sshd.as_user(["sh", "-c", f'mkdir -p "$(dirname {remote}/{rel})" && echo x > {remote}/{rel}'])
    (ws / "README.md").unlink()
    (ws / "data" / "cached_fineweb10B.py").unlink()  # deleted here: deleted on the host
    (ws / "runs" / "speedrun.sh").unlink()
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    for gone in ("README.md", "data/cached_fineweb10B.py", "runs/speedrun.sh"):
        assert not remote_exists(sshd, f"{remote}/{gone}"), gone
    for rel in (".remote-run/runs/old/run.log", ".venv/keep", ".remote-run/data/cifar10/cache.pt", ".remote-run/owner"):
        assert remote_exists(sshd, f"{remote}/{rel}"), rel


def test_sync_refuses_a_non_empty_directory_it_does_not_own(sshd, fresh):
    ws, remote = fresh
    sshd.as_user(["sh", "-c", f"mkdir -p {remote} && echo precious > {remote}/thesis.tex"])
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=remote))
    assert "not empty and was not created by remote-run" in line and remote in line
    assert remote_read(sshd, f"{remote}/thesis.tex") == "precious\n"
    assert not remote_exists(sshd, f"{remote}/scripts")


@pytest.mark.parametrize("which", ["home", "parent", "dotdot"])
def test_sync_refuses_the_remote_home_and_its_parents(sshd, fresh, which):
    ws, _ = fresh
    home = sshd.remote_home
    remote = {"home": str(home), "parent": str(home.parent), "dotdot": f"{home}/../{home.name}"}[which]
    sshd.as_user(["touch", f"{home}/keepme"])
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=remote))
    assert "REMOTE_DIR" in line
    assert remote_exists(sshd, f"{home}/keepme") and not remote_exists(sshd, f"{home}/scripts")


def test_gpu_check_states(sshd, fresh, gpu):
    ws, remote = fresh
    done = cli(sshd, ws, "gpu-check", REMOTE_DIR=remote)
    assert done.returncode == 0 and "NVIDIA H100" in done.stdout and "none" in done.stdout
    gpu("busy")
    line = one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
    assert "in use by another job" in line and "4242" in line and "--allow-busy" in line
    assert cli(sshd, ws, "gpu-check", "--allow-busy", REMOTE_DIR=remote).returncode == 0
    gpu("two")
    done = cli(sshd, ws, "gpu-check", REMOTE_DIR=remote, CUDA_VISIBLE_DEVICES="1")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == ["0", "1"]  # the table lists both
    assert "matches none" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote, CUDA_VISIBLE_DEVICES="5"))
    gpu("nodriver")
    assert "cannot talk to the NVIDIA driver" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
    gpu("absent")
    assert "nvidia-smi is not installed" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
    done = cli(sshd, ws, "gpu-check", "--cpu-ok", REMOTE_DIR=remote)
    assert done.returncode == 0 and "going on without a GPU" in done.stderr
    assert not remote_exists(sshd, remote)  # gpu-check needs no sync


def test_busy_gpu_stops_a_train_before_it_starts(sshd, fresh, gpu):
    ws, remote = fresh
    gpu("busy")
    line = one_line_error(cli(sshd, ws, "train-hlb", "--epochs", "1", REMOTE_DIR=remote))
    assert "in use by another job" in line
    assert not remote_exists(sshd, f"{remote}/.remote-run/runs")


def test_clean_needs_yes_and_only_removes_our_directory(sshd, fresh):
    ws, remote = fresh
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    sshd.as_user(["sh", "-c", f"mkdir -p {remote}/.remote-run/data/cifar10 && "
                              f"echo x > {remote}/.remote-run/data/cifar10/c.pt"])
    assert "--yes" in one_line_error(cli(sshd, ws, "clean", REMOTE_DIR=remote))
    assert remote_exists(sshd, f"{remote}/scripts")
    assert cli(sshd, ws, "clean", "--yes", REMOTE_DIR=remote).returncode == 0
    assert not remote_exists(sshd, f"{remote}/scripts")
    assert remote_exists(sshd, f"{remote}/.remote-run/data/cifar10/c.pt")
    assert cli(sshd, ws, "clean", "--yes", "--data", REMOTE_DIR=remote).returncode == 0
    assert not remote_exists(sshd, remote)
    other = unique_remote_dir("rrt_unowned")
    sshd.as_user(["sh", "-c", f"mkdir -p {other} && echo keep > {other}/f"])
    try:
        assert "not created by remote-run" in one_line_error(cli(sshd, ws, "clean", "--yes", REMOTE_DIR=other))
        assert remote_exists(sshd, f"{other}/f")
    finally:
        sshd.cleanup_remote(other)


def test_unknown_alias_unreachable_host_and_refused_key(sshd, fresh, tmp_path):
    ws, remote = fresh

    def unreachable(task, **env):
        """The one line of a task that cannot reach the host: OpenSSH's problem, exit 69."""
        done = cli(sshd, ws, task, REMOTE_DIR=remote, **env)
        line = one_line_error(done)
        assert done.returncode == Kind.UNREACHABLE.status, line
        return line

    assert "cannot resolve host 'no-such-alias'" in unreachable("gpu-check", REMOTE_HOST="no-such-alias")
    assert "cannot resolve host" in unreachable("sync", REMOTE_HOST="no-such-alias")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    sshd.add_alias("deadbox", closed_port)
    assert "connection refused" in unreachable("gpu-check", REMOTE_HOST="deadbox")
    assert "connection refused" in unreachable("sync", REMOTE_HOST="deadbox")
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with open(sshd.ssh_config, "a") as config:
        config.write(f"\nHost wrongkey\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User {sshd.user}\n"
                     f"    IdentityFile {key}\n    IdentitiesOnly yes\n    UserKnownHostsFile {sshd.known_hosts}\n")
    # Control directories of their own: OpenSSH would otherwise reuse l1's authenticated master
    # (ControlPath %C: same host, port and user), as it does for the user's own ssh.
    for task in ("gpu-check", "sync"):
        own_control = tempfile.mkdtemp(prefix="rr-cm-", dir="/tmp")
        assert "refused our SSH key" in unreachable(task, REMOTE_HOST="wrongkey", REMOTE_RUN_CONTROL_DIR=own_control)
    assert not remote_exists(sshd, remote)


def test_changed_host_key_is_refused(sshd, fresh):
    ws, remote = fresh
    sshd.regenerate_host_key()
    sshd.end_masters()  # a live master verified the old key when it connected
    try:
        assert "CHANGED" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
        assert "CHANGED" in one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=remote))
        assert not remote_exists(sshd, remote)
    finally:
        sshd.trust_host_key()


NAP = "import time\nprint('napping', flush=True)\ntime.sleep(60)\n"


def test_an_alias_defined_only_in_an_included_file_works_for_every_ssh_task(sshd, fresh):
    """SkyPilot adds its clusters to ~/.ssh/config through `Include`: a cluster name is a REMOTE_HOST."""
    ws, remote = fresh
    (ws / "scripts" / "nap.py").write_text(NAP)
    included = sshd.home / ".sky" / "generated" / "ssh" / "rr-cluster"
    included.parent.mkdir(parents=True, exist_ok=True)
    included.write_text(f"Host rr-cluster\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User {sshd.user}\n"
                        f"    IdentityFile {sshd.client_key}\n    IdentitiesOnly yes\n"
                        f"    UserKnownHostsFile {sshd.known_hosts}\n")
    config = sshd.ssh_config.read_text()
    assert "rr-cluster" not in config
    sshd.ssh_config.write_text(f"Include {included.parent}/*\n\n{config}")
    env = {"REMOTE_HOST": "rr-cluster", "REMOTE_DIR": remote}
    try:
        for args in (["gpu-check"], ["sync"], ["run", "scripts/hello.py"], ["status"], ["logs"], ["pull-logs"]):
            done = cli(sshd, ws, *args, **env)
            assert done.returncode == 0, (args, done.stderr)
        assert "RESULT_HELLO answer=42" in (latest_record(ws, "run") / "run.log").read_text()
        assert cli(sshd, ws, "run", "scripts/nap.py", "--detach", **env).returncode == 0
        done = cli(sshd, ws, "kill", **env)
        assert done.returncode == 0 and "stopped" in done.stderr, done.stderr
        assert json.loads((latest_record(ws, "run") / "result.json").read_text())["outcome"] == "killed"
    finally:
        sshd.ssh_config.write_text(config)


def test_user_at_host_port_form(sshd, fresh):
    ws, remote = fresh
    done = cli(sshd, ws, "sync", REMOTE_HOST=f"{sshd.user}@127.0.0.1:{sshd.port}", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert remote_exists(sshd, f"{remote}/scripts/hello.py")


def test_env_file_and_remote_run_program(sshd, fresh):
    ws, remote = fresh
    (ws / "box.env").write_text(f"REMOTE_HOST=l1\nREMOTE_DIR={remote}\n")
    done = cli(sshd, ws, "--env-file", "box.env", "sync", program="remote-run", REMOTE_HOST=None, REMOTE_DIR=None)
    assert done.returncode == 0, done.stderr
    assert remote_exists(sshd, f"{remote}/scripts/hello.py")
    (ws / "bad.env").write_text("REMOTE_HOST=l1\nnot valid at all\n")
    assert "line 2" in one_line_error(cli(sshd, ws, "sync", REMOTE_RUN_ENV_FILE=str(ws / "bad.env")))


def test_inv_list_shows_every_task_with_one_sentence():
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), "-l"],
                          capture_output=True, text=True)
    for name in ("sync", "bootstrap", "gpu-check", "train-david", "train-hlb", "run", "pull-logs", "clean", "logs",
                 "status", "kill"):
        assert f"\n  {name} " in done.stdout, name
    helped = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), "--help", "train-hlb"],
                            capture_output=True, text=True)
    assert "--epochs" in helped.stdout and "fractions" in helped.stdout


def test_the_host_keeps_the_launcher_and_refuses_a_copy_another_user_could_have_written(sshd, fresh):
    """A warm command carries a 1 KB loader, not the 64 KB launcher: the host keeps the launcher,
    compiled, in ~/.cache/remote-run (mode 600 in a 700 folder), and uses a kept copy only if no
    one else could have written it; otherwise it is sent again (one more command) and replaced."""
    ws, remote = fresh
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    cache = sshd.remote_home / ".cache" / "remote-run"
    sshd.as_user(["rm", "-rf", str(cache)])

    def status() -> int:
        mark = sshd.mark()
        done = cli(sshd, ws, "status", REMOTE_DIR=remote)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        return sshd.count("Starting session:", mark)

    assert status() == 2  # asked for it, then sent it
    [kept] = [path for path in cache.iterdir() if path.name.startswith("host-")]
    assert oct(kept.stat().st_mode & 0o777) == "0o600" and oct(cache.stat().st_mode & 0o777) == "0o700"
    assert status() == 1 and status() == 1

    sshd.as_user(["chmod", "g+w", str(kept)])  # as if someone else could have changed it
    assert status() == 2
    assert oct(kept.stat().st_mode & 0o777) == "0o600"  # a fresh copy, ours alone
    sshd.as_user(["sh", "-c", f"printf 'not a program' > {kept}"])
    assert status() == 2 and status() == 1
