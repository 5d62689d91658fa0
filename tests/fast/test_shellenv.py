"""Runs behave like a shell with the run's Python environment activated: PATH and VIRTUAL_ENV, an
executable without #! run by /bin/sh, torchrun's process count, --env, and the 126/127 hints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from remote_run.errors import Failure
from remote_run.host import shellenv
from remote_run.options import RunOptions, run_variables
from remote_run.records import RunRecord, hints
from remote_run.sky import cli as sky_cli
from remote_run.trainers import under_torchrun


def _venv(root: Path) -> Path:
    """A venv's shape: bin/python and pyvenv.cfg beside bin."""
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "bin" / "python").symlink_to(sys.executable)
    return root / "bin" / "python"


def test_a_venvs_bin_folder_goes_first_on_path_and_virtual_env_names_it(tmp_path):
    python = _venv(tmp_path / "venv")
    env = shellenv.activated({"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": "/old", "PYTHONHOME": "/x"}, str(python))
    assert env["PATH"].split(os.pathsep) == [str(tmp_path / "venv" / "bin"), "/usr/bin", "/bin"]
    assert env["VIRTUAL_ENV"] == str(tmp_path / "venv")
    assert "PYTHONHOME" not in env


def test_an_interpreter_that_is_no_venv_puts_its_folder_first_and_no_virtual_env(tmp_path):
    (tmp_path / "opt" / "bin").mkdir(parents=True)
    env = shellenv.activated({"PATH": "/bin", "VIRTUAL_ENV": "/stale"}, str(tmp_path / "opt" / "bin" / "python3"))
    assert env["PATH"] == f"{tmp_path / 'opt' / 'bin'}:/bin" and "VIRTUAL_ENV" not in env


def test_an_interpreter_given_by_name_is_found_on_the_runs_path(tmp_path):
    python = _venv(tmp_path / "v")
    env = shellenv.activated({"PATH": f"/nonexistent:{python.parent}"}, "python")
    assert env["PATH"].split(os.pathsep)[0] == str(python.parent) and env["VIRTUAL_ENV"] == str(tmp_path / "v")
    assert shellenv.activated({"PATH": "/nonexistent"}, "no-such-python") == {"PATH": "/nonexistent"}


def test_an_executable_without_a_shebang_runs_through_sh_and_a_binary_one_does_not(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text('echo "args $*"\n')
    script.chmod(0o755)
    proc = shellenv.start(subprocess.Popen, ["./run.sh", "a b", "c"], cwd=str(tmp_path), stdout=subprocess.PIPE)
    assert proc.communicate()[0] == b"args a b c\n" and proc.returncode == 0
    binary = tmp_path / "blob"
    binary.write_bytes(b"\x7fELF\0\0\0garbage")
    binary.chmod(0o755)
    with pytest.raises(OSError) as raised:
        shellenv.start(subprocess.Popen, ["./blob"], cwd=str(tmp_path))
    assert shellenv.status_of(raised.value, "./blob", str(tmp_path)) == 126
    with pytest.raises(OSError) as raised:
        shellenv.start(subprocess.Popen, ["./missing"], cwd=str(tmp_path))
    assert shellenv.status_of(raised.value, "./missing", str(tmp_path)) == 127
    (tmp_path / "bad-interpreter").write_text("#!/nonexistent/python\n")
    (tmp_path / "bad-interpreter").chmod(0o755)
    with pytest.raises(OSError) as raised:
        shellenv.start(subprocess.Popen, ["./bad-interpreter"], cwd=str(tmp_path))
    assert shellenv.status_of(raised.value, "./bad-interpreter", str(tmp_path)) == 126  # found, cannot run


def test_torchrun_wraps_a_python_file_a_module_and_an_executable():
    argv, at = under_torchrun("/v/bin/python", ["/v/bin/python", "train.py"], 0)
    assert argv == ["/v/bin/python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=gpu", "train.py"]
    assert shellenv.with_nproc(argv, at, 2)[at] == "--nproc_per_node=2"
    assert shellenv.with_nproc(argv, at, 0)[at] == "--nproc_per_node=1"  # --cpu-ok without a GPU: one process
    argv, at = under_torchrun("py", ["py", "-m", "pkg.train"], 3)
    assert argv[4:] == ["--nproc_per_node=3", "-m", "pkg.train"] and at is None
    argv, _ = under_torchrun("py", ["./train.sh"], 0)
    assert argv[5:] == ["--no-python", "./train.sh"]


@pytest.mark.parametrize("given, needle", [
    ("EPOCHS", "KEY=VALUE"), ("=3", "KEY=VALUE"), ("1X=3", "KEY=VALUE"), ("A-B=1", "KEY=VALUE"),
    ("CUDA_VISIBLE_DEVICES=0", "--gpus"), ("PATH=/x", "set by remote-run"), ("REMOTE_RUN_DATA=/d", "remote-run"),
    ("HF_TOKEN=abc", "REMOTE_ENV=HF_TOKEN"), ("WANDB_API_KEY=abc", "REMOTE_ENV"), ("db_password=x", "REMOTE_ENV"),
    ("MY_TOKEN=x", "also forwarded"),
])
def test_bad_env_flags_are_refused_with_the_fix(given, needle):
    with pytest.raises(Failure) as refused:
        run_variables([given], forwarded=("MY_TOKEN",))
    assert needle in refused.value.line


def test_env_flags_keep_their_values_and_the_last_of_a_name_wins():
    assert run_variables(["EPOCHS=3", "PIPELINE=a=b", "EMPTY=", "EPOCHS=4", "TOKENIZERS_PARALLELISM=false"]) == (
        ("EPOCHS", "4"), ("PIPELINE", "a=b"), ("EMPTY", ""), ("TOKENIZERS_PARALLELISM", "false"))


def test_nproc_needs_torchrun_and_rerun_replays_torchrun_nproc_and_env():
    class S:
        remote_env = ()
        workspace = Path(".")

    with pytest.raises(Failure, match="--nproc only applies with --torchrun"):
        RunOptions(nproc="2").check(S())
    with pytest.raises(Failure, match="--nproc"):
        RunOptions(torchrun=True, nproc="0").check(S())
    checked = RunOptions(torchrun=True, nproc="2", env=("A=1",)).check(S())
    assert checked.processes == 2 and checked.variables == (("A", "1"),)
    replayed = RunOptions(torchrun=True, nproc="2", env=("A=1",)).invocation(["torchrun", "nproc", "env"])
    assert replayed == {"torchrun": True, "nproc": "2", "env": ["A=1"]}


def test_127_and_126_get_hints_naming_the_command():
    [hint] = hints("./run.sh: line 1: torchrun: command not found\n", 127)
    assert "(torchrun)" in hint and "REMOTE_DIR/.venv/bin" in hint and "TORCH_PACKAGES" in hint
    [hint] = hints("./run.sh: 1: accelerate: not found\n", 127)
    assert "(accelerate)" in hint
    found = hints("remote-run: cannot start ./train.sh: Permission denied\n", 126)
    assert any("126" in h and "(./train.sh)" in h and "chmod +x" in h for h in found)
    assert hints("a: not found\n", 1) == [] and hints("", 127)[0].startswith("exit status 127")


def test_the_record_keeps_env_and_shows_it_in_log_md(tmp_path):
    record = RunRecord(run_id="r", task="run", host="h", env={"EPOCHS": "3", "NAME": "a b"})
    record.finish("", 0, 1.0, "finished")
    record.write(tmp_path)
    assert RunRecord.load(tmp_path).env == {"EPOCHS": "3", "NAME": "a b"}
    assert "- **Variables (--env):** `EPOCHS=3 'NAME=a b'`" in (tmp_path / "log.md").read_text()


def test_sky_exec_passes_env_values_and_forwards_secrets_by_name():
    argv = sky_cli.exec_argv("c", "/w", "cmd", forward=("HF_TOKEN",), variables={"EPOCHS": "3"})
    assert argv == ["sky", "exec", "c", "--workdir", "/w", "--env", "HF_TOKEN", "--env", "EPOCHS=3", "cmd"]
