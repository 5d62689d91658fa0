"""Runs behave like a shell with the run's Python environment activated, over the loopback sshd: a
launcher without #! calling `python` and a console script, the 127/126 hints, `--torchrun` with
two stand-in GPUs (torch's gloo backend, 2 ranks on the CPU), and `--env` kept by the record and
by `rerun`."""

from __future__ import annotations

import json
import re
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from support.cli import cli, latest_record, no_traceback, write_pip_conf
from support.sshd import ROOT_MODE
from support.wheels import ensure_uv_wheel, make_wheel, readable_tree, simple_index
from support.workspace import make_workspace, unique_remote_dir

from remote_run.errors import Failure

LAUNCHER = """\
python -c 'import sys; print("python", sys.prefix)'
hello-tool --from-launcher
echo "venv $VIRTUAL_ENV"
echo "first on PATH ${PATH%%:*}"
"""

# What pip writes into a venv's bin for a console script: a #! line naming the venv's python.
CONSOLE_SCRIPT = """#!{python}
import sys
print("console script", sys.argv[1:], "from", sys.prefix)
"""

RANKS = """\
import os
import torch.distributed as dist

dist.init_process_group("gloo")
# one write per line: print() writes the text and its newline apart, and the two ranks share the log
os.write(1, f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} gpus {os.environ.get('CUDA_VISIBLE_DEVICES')}\\n"
         .encode())
dist.barrier()
dist.destroy_process_group()
"""


@pytest.fixture
def fresh(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir("rrt_shellenv")
    yield ws, remote
    sshd.cleanup_remote(remote)


def make_venv(sshd, folder: str, python: str = "/usr/bin/python3") -> str:
    """A venv on the test host, made by the remote user; its python's path."""
    done = sshd.as_user([python, "-m", "venv", "--without-pip", folder])
    assert done.returncode == 0, done.stderr
    return f"{folder}/bin/python"


def torch_python(sshd, folder: str) -> str:
    """An interpreter on the test host that imports this checkout's torch: its own .venv's python;
    as root the remote user cannot run that (/root is private), so a venv of the host's python3
    that sees the checkout's site-packages through a .pth file."""
    if not ROOT_MODE:
        return sys.executable
    version = sshd.as_user(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    if version.stdout.strip() != "%d.%d" % sys.version_info[:2]:
        pytest.skip(f"the host's python3 is {version.stdout.strip()}, this checkout's torch is for "
                    f"{sys.version_info[0]}.{sys.version_info[1]}")
    python = make_venv(sshd, folder)
    site = sshd.as_user([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    done = sshd.as_user(["sh", "-c", 'echo "$1" > "$2/checkout.pth"', "sh", sysconfig.get_paths()["purelib"], site])
    assert done.returncode == 0, done.stderr
    return python


def record_of(ws: Path, run_id: str | None = None) -> dict:
    folder = ws / "var" / "runs" / run_id if run_id else latest_record(ws, "run")
    return json.loads((folder / "result.json").read_text())


def test_a_launcher_without_a_shebang_runs_with_the_environment_first_on_path(sshd, fresh):
    ws, remote = fresh
    venv = f"{remote}_venv"
    python = make_venv(sshd, venv)
    tool = sshd.as_user(["sh", "-c", 'printf "%s" "$1" > "$2" && chmod +x "$2"', "sh",
                         CONSOLE_SCRIPT.format(python=python), f"{venv}/bin/hello-tool"])
    assert tool.returncode == 0, tool.stderr
    (ws / "run.sh").write_text(LAUNCHER)
    (ws / "run.sh").chmod(0o755)
    done = cli(sshd, ws, "run", "run.sh", REMOTE_DIR=remote, REMOTE_PYTHON=python)
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    assert f"python {venv}\n" in done.stdout  # `python` is the venv's, though the host has only python3
    assert f"console script ['--from-launcher'] from {venv}\n" in done.stdout
    assert f"venv {venv}\n" in done.stdout and f"first on PATH {venv}/bin\n" in done.stdout
    assert re.search(r"run \S+ started \(pid [0-9]+\)", done.stderr) and "pid None" not in done.stderr


def test_the_venv_bootstrap_makes_is_the_runs_environment(sshd, fresh):
    ws, remote = fresh
    try:
        uv = ensure_uv_wheel()
    except Failure as exc:
        pytest.skip(exc.line)
    root = Path(tempfile.mkdtemp(prefix="rr-wheels-", dir="/tmp"))
    index = simple_index(root / "index", [make_wheel(root / "built", "rrtiny-a"), uv])
    readable_tree(root)
    remove = write_pip_conf(sshd, f"[global]\nindex-url = file://{index}\n")
    (ws / "run.sh").write_text('python -c "import rrtiny_a, sys; print(sys.prefix, rrtiny_a.VERSION)"\n'
                               'echo "venv $VIRTUAL_ENV"\n')
    (ws / "run.sh").chmod(0o755)
    try:
        done = cli(sshd, ws, "run", "run.sh", REMOTE_DIR=remote, PIP_PACKAGES="rrtiny-a", TORCH_INDEX_URL="",
                   timeout=300)
    finally:
        remove()
        shutil.rmtree(root, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert f"{remote}/.venv 1.0\nvenv {remote}/.venv\n" in done.stdout


def test_command_not_found_and_cannot_run_get_hints_and_never_pid_none(sshd, fresh):
    ws, remote = fresh
    (ws / "missing.sh").write_text("echo before\nno-such-tool-xyz --go\n")
    (ws / "missing.sh").chmod(0o755)
    done = cli(sshd, ws, "run", "missing.sh", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 127, done.stderr
    [hint] = [h for h in record_of(ws)["hints"] if h.startswith("exit status 127")]
    assert "(no-such-tool-xyz)" in hint and "TORCH_PACKAGES" in hint and "PIP_PACKAGES" in hint
    assert f"hint: {hint}" in done.stderr

    (ws / "notes.txt").write_text("not a program\n")
    (ws / "calls.sh").write_text("./notes.txt\n")  # a file without the execute bit, run as a command
    (ws / "calls.sh").chmod(0o755)
    done = cli(sshd, ws, "run", "calls.sh", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 126, done.stderr
    assert any(h.startswith("exit status 126") and "(./notes.txt)" in h and "chmod +x" in h
               for h in record_of(ws)["hints"])

    (ws / "blob").write_bytes(b"\x7fELF\x02\x01\x01\0\0\0not for this host")  # exec refuses it; so would sh
    (ws / "blob").chmod(0o755)
    done = cli(sshd, ws, "run", "blob", "--detach", REMOTE_DIR=remote, venv=False)
    no_traceback(done)
    assert "pid None" not in done.stderr and "started (pid" not in done.stderr
    assert re.search(r"run \S+ could not start: cannot start \./blob: Exec format error", done.stderr), done.stderr
    done = cli(sshd, ws, "logs", REMOTE_DIR=remote, venv=False)
    assert "remote-run: cannot start ./blob: Exec format error" in done.stdout
    done = cli(sshd, ws, "run", "blob", "--repeat", "2", REMOTE_DIR=remote, venv=False)  # a group names its run
    assert done.returncode == 126 and "pid None" not in done.stderr, done.stderr
    assert re.search(r"run \S+\.1 could not start: cannot start \./blob: Exec format error", done.stderr), done.stderr


def test_torchrun_starts_one_rank_per_gpu_the_run_is_given(sshd, fresh):
    ws, remote = fresh
    sshd.set_gpu("two")
    python = torch_python(sshd, f"{remote}_torch")
    (ws / "ranks.py").write_text(RANKS)
    done = cli(sshd, ws, "run", "ranks.py", "--torchrun", "--gpus", "2", REMOTE_DIR=remote, REMOTE_PYTHON=python,
               timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    ranks = sorted(re.findall(r"^rank (\d) of (\d) gpus (\S*)$", done.stdout, re.M))
    assert ranks == [("0", "2", "0,1"), ("1", "2", "0,1")], done.stdout
    record = record_of(ws)
    assert record["argv"][1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=gpu"]
    assert record["invocation"]["args"]["torchrun"] is True and record["devices"] == "0,1"
    # CUDA_VISIBLE_DEVICES=0 (the default): one GPU, one rank
    done = cli(sshd, ws, "run", "ranks.py", "--torchrun", REMOTE_DIR=remote, REMOTE_PYTHON=python, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.findall(r"^rank (\d) of (\d) gpus (\S*)$", done.stdout, re.M) == [("0", "1", "0")]


def test_env_sets_run_variables_kept_in_the_record_and_by_rerun(sshd, fresh):
    ws, remote = fresh
    (ws / "show_env.py").write_text("import os\nprint('EPOCHS', os.environ['EPOCHS'], 'PIPELINE', "
                                    "repr(os.environ['PIPELINE']))\n")
    done = cli(sshd, ws, "run", "show_env.py", "--env", "EPOCHS=3", "--env", "PIPELINE=a b;c", REMOTE_DIR=remote,
               venv=False)
    assert done.returncode == 0, done.stderr
    assert "EPOCHS 3 PIPELINE 'a b;c'\n" in done.stdout
    first = record_of(ws)
    assert first["env"] == {"EPOCHS": "3", "PIPELINE": "a b;c"}
    log_md = (ws / "var" / "runs" / first["run_id"] / "log.md").read_text()
    assert "- **Variables (--env):** `EPOCHS=3 'PIPELINE=a b;c'`" in log_md
    done = cli(sshd, ws, "rerun", first["run_id"], REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    assert "EPOCHS 3 PIPELINE 'a b;c'\n" in done.stdout
    again = record_of(ws)
    assert again["run_id"] != first["run_id"] and again["env"] == first["env"]
