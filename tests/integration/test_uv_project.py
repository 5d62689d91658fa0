"""The project's own environment over the loopback sshd: a uv project with a lock made here against
a flat index of tiny wheels (two conflicting extras, a dependency group, a console script) is its
own `uv sync --locked` on the host, chosen by settings and flags; an out-of-date lock, --frozen, a
pyproject.toml without a lock, a .python-version the host cannot meet, a torch pin named twice,
and doctor testing the project's own index. Only uv's wheel comes from var/wheels."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
from support.cli import cli, one_line_error, remote_run_lines, write_pip_conf
from support.wheels import BACKEND_TABLE, INLINE_BACKEND, ensure_uv_wheel, make_wheel, readable_tree
from support.workspace import make_workspace, unique_remote_dir

from remote_run.errors import Failure

SETTINGS = {"TORCH_PACKAGES": "", "TORCH_INDEX_URL": ""}
USE = """\
import os, subprocess, sys
import rraccel, rrtiny_a
print("accel", rraccel.VERSION)
tool = os.path.join(os.path.dirname(sys.executable), "rrhello")
print(subprocess.run([tool], capture_output=True, text=True).stdout.strip() if os.path.exists(tool) else "no rrhello")
print("RESULT_USE ok=1")
"""


def pyproject(flat: Path, deps=("rrtiny-a",), lock_index: bool = True) -> str:
    index = (f'\n[[tool.uv.index]]\nname = "local"\nurl = "{flat}"\nformat = "flat"\ndefault = true\n'
             if lock_index else "")
    return (f'[project]\nname = "rrproj"\nversion = "0.1"\nrequires-python = ">=3.8"\n'
            f'dependencies = [{", ".join(repr(d).replace(chr(39), chr(34)) for d in deps)}]\n\n'
            '[project.optional-dependencies]\ncpu = ["rraccel==1.0"]\ngpu = ["rraccel==2.0"]\n\n'
            '[dependency-groups]\ntools = ["rrdevtool"]\n\n'
            '[tool.uv]\nconflicts = [[{ extra = "cpu" }, { extra = "gpu" }]]\n' + index)


@pytest.fixture(scope="module")
def flat(sshd):
    """A flat index of tiny wheels both sides can read, and uv (from var/wheels) for `uv lock` here."""
    try:
        wheel = ensure_uv_wheel()
    except Failure as exc:
        pytest.skip(exc.line)
    root = Path(tempfile.mkdtemp(prefix="rr-flat-", dir="/tmp"))
    folder = root / "flat"
    make_wheel(folder, "rrtiny-a")
    make_wheel(folder, "rrtiny-b")
    make_wheel(folder, "rraccel", "1.0")
    make_wheel(folder, "rraccel", "2.0")
    make_wheel(folder, "rrdevtool", scripts={"rrhello": "hello from rrdevtool"})
    make_wheel(folder, "torch", "2.10")
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
        (root / "uv").write_bytes(archive.read(member))
    readable_tree(root)
    (root / "uv").chmod(0o755)
    yield {"folder": folder, "uv": root / "uv"}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def project(sshd, flat, tmp_path):
    """A workspace that is a uv project (locked here, offline), a REMOTE_DIR, and uv on the host's PATH."""
    ws = make_workspace(tmp_path)
    (ws / "pyproject.toml").write_text(pyproject(flat["folder"]))
    (ws / "scripts" / "use.py").write_text(USE)
    lock(flat, ws)
    target = sshd.remote_home / "bin" / "uv"
    assert sshd.as_user(["cp", str(flat["uv"]), str(target)]).returncode == 0
    remote = unique_remote_dir("rrt_proj")
    yield ws, remote
    sshd.as_user(["rm", "-f", str(target)])
    sshd.cleanup_remote(remote)


def lock(flat, ws: Path) -> None:
    done = subprocess.run([str(flat["uv"]), "lock", "--offline"], cwd=ws, capture_output=True, text=True,
                          env={**os.environ, "UV_CACHE_DIR": str(ws.parent / "uv-cache"),
                               "UV_PYTHON_DOWNLOADS": "never"})
    assert done.returncode == 0, done.stderr


def test_a_uv_project_is_its_own_locked_sync_with_the_extras_and_groups_chosen(sshd, project):
    ws, remote = project
    env = {**SETTINGS, "REMOTE_DIR": remote, "BOOTSTRAP_EXTRAS": "cpu"}
    done = cli(sshd, ws, "run", "scripts/use.py", "--cpu-ok", "--extra", "gpu", "--group", "tools", **env)
    assert done.returncode == 0, done.stderr
    assert "uv sync --locked --extra gpu --group tools" in done.stderr, done.stderr
    assert "accel 2.0\nhello from rrdevtool 1.0\nRESULT_USE ok=1" in done.stdout, done.stdout
    # The same choice again: the stamp matches inside the run's one command, nothing is installed.
    mark = sshd.mark()
    again = cli(sshd, ws, "bootstrap", "--extra", "gpu", "--group", "tools", **env)
    assert again.returncode == 0, again.stderr
    assert "uv sync" not in again.stderr and "environment is up to date" in again.stderr, again.stderr
    assert sshd.count("Starting session:", mark) == 1
    # The default of .env (BOOTSTRAP_EXTRAS=cpu), no group: the environment follows the lock exactly.
    plain = cli(sshd, ws, "run", "scripts/use.py", "--cpu-ok", **env)
    assert plain.returncode == 0, plain.stderr
    assert "uv sync --locked --extra cpu" in plain.stderr and "--group" not in plain.stderr
    assert "accel 1.0\nno rrhello\n" in plain.stdout, plain.stdout


def test_an_out_of_date_lock_is_one_line_and_frozen_installs_it_as_it_is(sshd, project):
    ws, remote = project
    text = (ws / "pyproject.toml").read_text().replace('dependencies = ["rrtiny-a"]',
                                                       'dependencies = ["rrtiny-a", "rrtiny-b"]')
    (ws / "pyproject.toml").write_text(text)
    env = {**SETTINGS, "REMOTE_DIR": remote}
    line = one_line_error(cli(sshd, ws, "bootstrap", **env))
    assert "uv.lock is out of date with pyproject.toml" in line and "uv lock" in line and "--frozen" in line, line
    done = cli(sshd, ws, "bootstrap", "--frozen", **env)
    assert done.returncode == 0, done.stderr
    assert "uv sync --frozen" in done.stderr


def test_unknown_extra_is_refused_before_anything_runs(sshd, project):
    ws, remote = project
    line = one_line_error(cli(sshd, ws, "bootstrap", "--extra", "tpu", REMOTE_DIR=remote, **SETTINGS))
    assert "has no extra tpu (it has: cpu, gpu)" in line, line
    assert sshd.as_user(["test", "-e", remote]).returncode != 0  # nothing synced


def test_python_version_the_host_lacks_is_one_line(sshd, project):
    ws, remote = project
    (ws / ".python-version").write_text("3.7\n")
    line = one_line_error(cli(sshd, ws, "bootstrap", REMOTE_DIR=remote, **SETTINGS))
    assert "Python 3.7 is wanted (.python-version); the host has 3." in line, line
    assert "BOOTSTRAP_PYTHON_DOWNLOADS=automatic" in line, line


def test_a_pyproject_without_a_lock_is_installed_editable_with_its_extras_and_said_unlocked(sshd, project, flat):
    ws, remote = project
    (ws / "uv.lock").unlink()
    (ws / "pyproject.toml").write_text(BACKEND_TABLE + (ws / "pyproject.toml").read_text())
    (ws / "_backend").mkdir()
    (ws / "_backend" / "rrbackend.py").write_text(INLINE_BACKEND)
    (ws / "requirements.txt").write_text("torch==2.10\n")
    env = {**SETTINGS, "REMOTE_DIR": remote, "TORCH_PACKAGES": "torch==2.13.0", "PIP_PACKAGES": "rrtiny-b"}
    done = cli(sshd, ws, "bootstrap", "--extra", "gpu", **env)
    assert done.returncode == 0, done.stderr
    ours = remote_run_lines(done.stderr)
    assert any("pyproject.toml has no uv.lock: installing the project unlocked" in line for line in ours), done.stderr
    assert any(line.startswith("remote-run: torch: the project names torch==2.10 (requirements.txt), "
                               "TORCH_PACKAGES in the environment torch==2.13.0") for line in ours), done.stderr
    listed = sshd.as_user([f"{remote}/.venv/bin/python", "-c",
                           "import rraccel, torch, rrtiny_b; print(rraccel.VERSION, torch.VERSION)"])
    assert listed.stdout.split() == ["2.0", "2.10"], listed.stderr


def test_doctor_tests_the_project_s_own_index(sshd, project, flat):
    ws, remote = project
    done = cli(sshd, ws, "doctor", REMOTE_DIR=remote, **SETTINGS)
    line = next(line for line in done.stdout.splitlines() if "package index" in line)
    assert f"project index {flat['folder']}" in line, done.stdout


def test_a_src_layout_project_installed_editable_runs_from_its_snapshot_and_a_sync_changes_it(sshd, project, flat):
    ws, remote = project
    (ws / "pyproject.toml").write_text(BACKEND_TABLE + (ws / "pyproject.toml").read_text())
    (ws / "_backend").mkdir()
    (ws / "_backend" / "rrbackend.py").write_text(INLINE_BACKEND)
    (ws / "src" / "rrproj").mkdir(parents=True)
    (ws / "src" / "rrproj" / "__init__.py").write_text("VALUE = 'one'\n")
    (ws / "scripts" / "which.py").write_text("import rrproj\nprint('value', rrproj.VALUE, rrproj.__file__)\n")
    lock(flat, ws)
    env = {**SETTINGS, "REMOTE_DIR": remote}
    first = cli(sshd, ws, "run", "scripts/which.py", "--cpu-ok", **env)
    assert first.returncode == 0, first.stderr
    # uv sync installed the project editable: REMOTE_DIR/src is on the venv's path, yet the run imports its snapshot.
    pth = sshd.as_user(["sh", "-c", f"cat {remote}/.venv/lib/python3*/site-packages/rrproj.pth"])
    assert pth.stdout.strip() == f"{remote}/src", pth.stderr
    value, where = first.stdout.split("value ", 1)[1].split()[:2]
    assert value == "one" and "/work/src/rrproj/__init__.py" in where, first.stdout
    (ws / "src" / "rrproj" / "__init__.py").write_text("VALUE = 'two'\n")
    second = cli(sshd, ws, "run", "scripts/which.py", "--cpu-ok", **env)
    assert second.returncode == 0, second.stderr
    assert "uv sync" not in second.stderr  # code is not the environment: no bootstrap
    value, where = second.stdout.split("value ", 1)[1].split()[:2]
    assert value == "two" and "/work/src/rrproj/__init__.py" in where, second.stdout


def test_with_pip_an_unlocked_project_installs_with_its_extras_and_a_lock_needs_uv(sshd, project, flat):
    ws, remote = project
    remove = write_pip_conf(sshd, f"[global]\nno-index = true\nfind-links = {flat['folder']}\n")
    try:
        env = {**SETTINGS, "REMOTE_DIR": remote, "BOOTSTRAP_INSTALLER": "pip"}
        line = one_line_error(cli(sshd, ws, "bootstrap", **env))
        assert "uv.lock is installed with uv sync" in line and "BOOTSTRAP_INSTALLER" in line, line
        (ws / "uv.lock").unlink()
        (ws / "pyproject.toml").write_text(BACKEND_TABLE + (ws / "pyproject.toml").read_text())
        (ws / "_backend").mkdir()
        (ws / "_backend" / "rrbackend.py").write_text(INLINE_BACKEND)
        done = cli(sshd, ws, "bootstrap", "--extra", "cpu", **env)
        assert done.returncode == 0, done.stderr
        assert "pyproject.toml has no uv.lock: installing the project unlocked" in done.stderr
        listed = sshd.as_user([f"{remote}/.venv/bin/python", "-c", "import rraccel; print(rraccel.VERSION)"])
        assert listed.stdout.split() == ["1.0"], listed.stderr
    finally:
        remove()


def test_a_conflict_names_the_setting_and_the_file_of_each_pin(sshd, project, flat):
    ws, remote = project
    (ws / "pyproject.toml").unlink()
    (ws / "uv.lock").unlink()
    (ws / "requirements.txt").write_text("torch==2.10\n")
    remove = write_pip_conf(sshd, f"[global]\nno-index = true\nfind-links = {flat['folder']}\n")
    try:
        line = one_line_error(cli(sshd, ws, "bootstrap", REMOTE_DIR=remote, TORCH_PACKAGES="", TORCH_INDEX_URL="",
                                  PIP_PACKAGES="torch==2.13.0"))
    finally:
        remove()
    assert "the requirements conflict" in line, line
    assert "(torch==2.13.0 from PIP_PACKAGES in the environment; torch==2.10 from requirements.txt)" in line, line
