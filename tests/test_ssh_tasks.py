"""The task collection driven through the real CLI against a real sshd on loopback (alias l1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from integration import latest_record, cli, make_workspace, no_secret_files, one_line_error, remote_exists, remote_read, unique_remote_dir


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
    assert "EPOCHS = 2.5" in data["runner"]
    log_md = (records[0] / "log.md").read_text()
    assert "RESULT_HLB" in log_md and "rsync" in log_md and "EPOCHS = 2.5" in log_md
    run_id = records[0].name
    remote_log = remote_read(sshd, f"{remote}/runs/{run_id}/run.log")
    assert (records[0] / "run.log").read_text() == remote_log
    assert "EPOCHS = 2.5" in remote_read(sshd, f"{remote}/scripts/run_hlb.py")
    assert remote_exists(sshd, f"{remote}/.venv/bin/python")


def test_train_david_workspace_runner(sshd, shared):
    ws, remote = shared
    done = cli(sshd, ws, "train-david", "--epochs", "3", "--batch-size", "256", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "david stand-in 3 epochs, batch 256 half" in done.stdout
    assert "RESULT_DAVID" in done.stdout and "epochs=3 batch_size=256" in done.stdout


def test_warm_run_costs_one_handshake_and_three_commands(sshd, shared):
    ws, remote = shared
    assert cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote).returncode == 0  # warm up
    mark = sshd.mark()
    done = cli(sshd, ws, "run", "scripts/hello.py", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert "environment is up to date" in done.stdout
    assert sshd.count("Accepted publickey", mark) <= 1
    assert sshd.count("Starting session:", mark) <= 3  # rsync, the checks, the run


def test_chained_tasks_run_each_step_once(sshd, shared):
    ws, remote = shared
    mark = sshd.mark()
    done = cli(sshd, ws, "sync", "bootstrap", "gpu-check", "run", "scripts/hello.py", REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("remote-run: synced") == 1
    assert done.stdout.count("environment is up to date") == 1
    assert done.stdout.count("NVIDIA H100") == 1
    assert sshd.count("Starting session:", mark) <= 4


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

    assert f"token-sha {hashlib.sha256(b'tok-s3cret-value').hexdigest()[:12]}" in done.stdout and "cuda 0" in done.stdout
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
    cli(sshd, ws, "bootstrap", REMOTE_DIR=remote)
    mark = sshd.mark()
    done = cli(sshd, ws, "bootstrap", REMOTE_DIR=remote)
    assert "environment is up to date" in done.stdout
    assert sshd.count("Starting session:", mark) == 2  # rsync + the stamp check
    (ws / "requirements.txt").write_text("")
    try:
        done = cli(sshd, ws, "bootstrap", REMOTE_DIR=remote)
        assert "installing requirements.txt" in done.stdout and "environment ready" in done.stdout
    finally:
        (ws / "requirements.txt").unlink()


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


def test_sync_deletes_stale_files_but_never_runs_venv_or_data(sshd, fresh):
    ws, remote = fresh
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    (ws / "runs").mkdir()
    (ws / "runs" / "local.txt").write_text("x")
    for rel in ("runs/old/run.log", ".venv/keep", "data/cifar10/cache.pt"):
        sshd.as_user(["sh", "-c", f'mkdir -p "$(dirname {remote}/{rel})" && echo x > {remote}/{rel}'])
    (ws / "README.md").unlink()
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    assert not remote_exists(sshd, f"{remote}/README.md")
    for rel in ("runs/old/run.log", ".venv/keep", "data/cifar10/cache.pt", ".remote-run/owner"):
        assert remote_exists(sshd, f"{remote}/{rel}"), rel


def test_sync_refuses_a_non_empty_directory_it_does_not_own(sshd, fresh):
    ws, remote = fresh
    sshd.as_user(["sh", "-c", f"mkdir -p {remote} && echo precious > {remote}/thesis.tex"])
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=remote))
    assert "not empty and was not created by remote-run" in line and remote in line
    assert remote_read(sshd, f"{remote}/thesis.tex") == "precious\n"
    assert not remote_exists(sshd, f"{remote}/scripts")


@pytest.mark.parametrize("remote", ["/home/rrtest", "/home", "/home/rrtest/../rrtest"], ids=["home", "parent", "dotdot"])
def test_sync_refuses_the_remote_home_and_its_parents(sshd, fresh, remote):
    ws, _ = fresh
    sshd.as_user(["touch", "/home/rrtest/keepme"])
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=remote))
    assert "REMOTE_DIR" in line
    assert remote_exists(sshd, "/home/rrtest/keepme") and not remote_exists(sshd, "/home/rrtest/scripts")


def test_gpu_check_states(sshd, fresh, gpu):
    ws, remote = fresh
    done = cli(sshd, ws, "gpu-check", REMOTE_DIR=remote)
    assert done.returncode == 0 and "NVIDIA H100" in done.stdout and "none" in done.stdout
    gpu("busy")
    line = one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
    assert "in use by another job" in line and "4242" in line and "--allow-busy" in line
    assert cli(sshd, ws, "gpu-check", "--allow-busy", REMOTE_DIR=remote).returncode == 0
    gpu("two")
    assert "GPU 1" not in cli(sshd, ws, "gpu-check", REMOTE_DIR=remote, CUDA_VISIBLE_DEVICES="1").stderr
    assert "matches none" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote, CUDA_VISIBLE_DEVICES="5"))
    gpu("nodriver")
    assert "cannot talk to the NVIDIA driver" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
    gpu("absent")
    assert "nvidia-smi is not installed" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
    done = cli(sshd, ws, "gpu-check", "--cpu-ok", REMOTE_DIR=remote)
    assert done.returncode == 0 and "going on without a GPU" in done.stdout
    assert not remote_exists(sshd, remote)  # gpu-check needs no sync


def test_busy_gpu_stops_a_train_before_it_starts(sshd, fresh, gpu):
    ws, remote = fresh
    gpu("busy")
    line = one_line_error(cli(sshd, ws, "train-hlb", "--epochs", "1", REMOTE_DIR=remote))
    assert "in use by another job" in line
    assert not remote_exists(sshd, f"{remote}/runs")


def test_clean_needs_yes_and_only_removes_our_directory(sshd, fresh):
    ws, remote = fresh
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    sshd.as_user(["sh", "-c", f"mkdir -p {remote}/data/cifar10 && echo x > {remote}/data/cifar10/c.pt"])
    assert "--yes" in one_line_error(cli(sshd, ws, "clean", REMOTE_DIR=remote))
    assert remote_exists(sshd, f"{remote}/scripts")
    assert cli(sshd, ws, "clean", "--yes", REMOTE_DIR=remote).returncode == 0
    assert not remote_exists(sshd, f"{remote}/scripts") and remote_exists(sshd, f"{remote}/data/cifar10/c.pt")
    assert cli(sshd, ws, "clean", "--yes", "--data", REMOTE_DIR=remote).returncode == 0
    assert not remote_exists(sshd, remote)
    other = unique_remote_dir("rrt_unowned")
    sshd.as_user(["sh", "-c", f"mkdir -p {other} && echo keep > {other}/f"])
    try:
        assert "not created by remote-run" in one_line_error(cli(sshd, ws, "clean", "--yes", REMOTE_DIR=other))
        assert remote_exists(sshd, f"{other}/f")
    finally:
        sshd.cleanup_remote(other)


BAD_INPUTS = [
    (["train-hlb", "--epochs", "abc"], {}, "--epochs"),
    (["train-hlb", "--epochs", "-1"], {}, "--epochs"),
    (["train-hlb", "--epochs", "0"], {}, "--epochs"),
    (["train-hlb", "--epochs", "nan"], {}, "--epochs"),
    (["train-hlb", "--epochs", "inf"], {}, "--epochs"),
    (["train-david", "--batch-size", "0"], {}, "--batch-size"),
    (["train-david", "--batch-size", "99999999"], {}, "--batch-size"),
    (["train-david", "--epochs", "1.5"], {}, "--epochs"),
    (["sync"], {"REMOTE_DIR": "relative/dir"}, "REMOTE_DIR"),
    (["sync"], {"REMOTE_DIR": "/"}, "REMOTE_DIR"),
    (["sync"], {"REMOTE_DIR": "~"}, "REMOTE_DIR"),
    (["sync"], {"REMOTE_DIR": "/tmp/../etc"}, "REMOTE_DIR"),
    (["sync"], {"REMOTE_DIR": "/tmp/x;touch /tmp/rr_canary"}, "REMOTE_DIR"),
    (["sync"], {"WORKSPACE": "/nonexistent/ws"}, "WORKSPACE"),
    (["sync"], {"REMOTE_ENV": "NOT-A-NAME"}, "REMOTE_ENV"),
    (["run", "../outside.py"], {}, "outside the workspace"),
    (["run", "/etc/passwd"], {}, "outside the workspace"),
    (["run", "scripts/missing.py"], {}, "does not exist"),
    (["run", "--module", "os;id"], {}, "--module"),
    (["run", "--module", "-x"], {}, "--module"),
    (["run", "scripts/hello.py", "--args", "'unbalanced"], {}, "--args"),
    (["pull-logs", "--run", "../../etc"], {}, "--run"),
]


@pytest.mark.parametrize("args,env,needle", BAD_INPUTS, ids=[" ".join(a) + (f" {e}" if e else "") for a, e, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_changes_nothing_remotely(sshd, fresh, args, env, needle):
    ws, remote = fresh
    env = {"REMOTE_DIR": remote, **env}
    mark = sshd.mark()
    line = one_line_error(cli(sshd, ws, *args, **env))
    assert needle in line
    assert not remote_exists(sshd, remote)
    assert not Path("/tmp/rr_canary").exists()
    assert sshd.count("Starting session:", mark) == 0


def test_unknown_alias_unreachable_host_and_refused_key(sshd, fresh, tmp_path):
    ws, remote = fresh
    assert "cannot resolve host 'no-such-alias'" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_HOST="no-such-alias", REMOTE_DIR=remote))
    assert "cannot resolve host" in one_line_error(cli(sshd, ws, "sync", REMOTE_HOST="no-such-alias", REMOTE_DIR=remote))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    sshd.add_alias("deadbox", closed_port)
    assert "connection refused" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_HOST="deadbox", REMOTE_DIR=remote))
    assert "connection refused" in one_line_error(cli(sshd, ws, "sync", REMOTE_HOST="deadbox", REMOTE_DIR=remote))
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with open(sshd.ssh_config, "a") as config:
        config.write(f"\nHost wrongkey\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User rrtest\n    IdentityFile {key}\n    IdentitiesOnly yes\n    UserKnownHostsFile {sshd.known_hosts}\n")
    assert "refused our SSH key" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_HOST="wrongkey", REMOTE_DIR=remote))
    # A fresh control directory: OpenSSH would otherwise reuse l1's authenticated master (same host, port, user).
    own_control = str(tmp_path / "cm")
    assert "refused our SSH key" in one_line_error(cli(sshd, ws, "sync", REMOTE_HOST="wrongkey", REMOTE_DIR=remote, REMOTE_RUN_CONTROL_DIR=own_control))
    assert not remote_exists(sshd, remote)


def test_changed_host_key_is_refused(sshd, fresh):
    ws, remote = fresh
    sshd.regenerate_host_key()
    try:
        assert "CHANGED" in one_line_error(cli(sshd, ws, "gpu-check", REMOTE_DIR=remote))
        assert "CHANGED" in one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=remote, REMOTE_RUN_CONTROL_DIR=str(sshd.control_dir) + "_hk"))
        assert not remote_exists(sshd, remote)
    finally:
        sshd.trust_host_key()


def test_user_at_host_port_form(sshd, fresh):
    ws, remote = fresh
    done = cli(sshd, ws, "sync", REMOTE_HOST=f"rrtest@127.0.0.1:{sshd.port}", REMOTE_DIR=remote)
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
    from integration import REPO

    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), "-l"], capture_output=True, text=True)
    for name in ("sync", "bootstrap", "gpu-check", "train-david", "train-hlb", "run", "pull-logs", "clean", "logs", "status", "kill"):
        assert f"\n  {name} " in done.stdout, name
    helped = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), "--help", "train-hlb"], capture_output=True, text=True)
    assert "--epochs" in helped.stdout and "fractions" in helped.stdout
