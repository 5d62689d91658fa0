"""The wheel works on its own: `remote-run` and `inv` (with a two-line tasks.py) both run tasks."""

import email
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TASKS = ("sync", "bootstrap", "gpu-check", "train-hlb", "train-david", "run", "pull-logs", "clean", "logs", "status",
         "kill", "sky-up", "sky-exec", "sky-status", "sky-down", "compare", "report", "rerun", "baseline.save",
         "baseline.list", "baseline.rm", "tunnel", "doctor", "init")


@pytest.fixture(autouse=True)
def _the_wheel_not_this_checkout(monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)  # tests/conftest.py points it at this checkout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, text=True)
    return next(out.glob("remote_run-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    # invoke and python-dotenv come from the environment running the tests (no network here): their
    # directories go on the new venv's path after its own site-packages, so the wheel's remote_run
    # wins over this checkout, and no .pth file of that environment (the editable install) runs.
    import dotenv
    import invoke

    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    outer = {str(Path(module.__file__).resolve().parents[1]) for module in (invoke, dotenv)}
    Path(purelib, "outer_site.pth").write_text("".join(f"{path}\n" for path in sorted(outer)))
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    return env_dir


@pytest.fixture
def project(tmp_path):
    """A user's project on a machine with the wheel installed: one script, and (for `inv`) the two
    lines that bring the tasks in."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "hello.py").write_text("print('RESULT_HELLO answer=42')\n")
    yield tmp_path
    for remote in (f"/tmp/rrt_wheel_{tmp_path.name}", f"/tmp/rrt_wheel_inv_{tmp_path.name}"):
        shutil.rmtree(remote, ignore_errors=True)


def run(installed, project, *argv, **env):
    return subprocess.run([str(installed / "bin" / argv[0]), *argv[1:]], cwd=project, capture_output=True,
                          text=True, timeout=120,
                          env={"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(project),
                               "REMOTE_HOST": "local", "REMOTE_DIR": f"/tmp/rrt_wheel_{project.name}", **env})


def test_the_wheel_needs_neither_fabric_nor_paramiko(wheel):
    with zipfile.ZipFile(wheel) as archive:
        metadata = email.message_from_bytes(archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))))
    required = [r for r in metadata.get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(re.split(r"[<>=!~;\s]", r)[0].lower() for r in required) == ["invoke", "python-dotenv", "tomli"]
    [tomli] = [r.replace("'", '"') for r in required if r.startswith("tomli")]
    assert 'python_version < "3.11"' in tomli  # Python 3.10 has no tomllib


def test_remote_run_from_the_wheel_lists_every_task_and_runs_one(installed, project):
    helped = run(installed, project, "remote-run", "--help")
    assert helped.returncode == 0, helped.stderr
    listed = re.findall(r"^  ([a-z.-]+)\s", helped.stdout.split("Subcommands:")[1], re.M)
    assert sorted(listed) == sorted(TASKS) and "--env-file" in helped.stdout
    done = run(installed, project, "remote-run", "run", "scripts/hello.py", "--cpu-ok")
    assert done.returncode == 0, done.stderr
    assert "RESULT_HELLO answer=42" in done.stdout
    assert len(list((project / "var" / "runs").glob("*_run/result.json"))) == 1


def test_inv_from_the_wheel_with_a_two_line_tasks_file_runs_the_chain(installed, project):
    (project / "tasks.py").write_text("from remote_run.tasks import ns  # noqa: F401\n")
    (project / "invoke.yaml").write_text("tasks:\n  executor_class: remote_run.chain.Chain\n")
    listed = subprocess.run([str(installed / "bin" / "python"), "-m", "invoke", "-l"], cwd=project, capture_output=True,
                            text=True)
    assert all(f"\n  {name} " in listed.stdout for name in TASKS), listed.stdout
    # gpu-check runs once, as a step of `run`, with run's --cpu-ok (this machine has no GPU).
    done = subprocess.run([str(installed / "bin" / "python"), "-m", "invoke", "gpu-check", "run", "scripts/hello.py",
                           "--cpu-ok"],
                          cwd=project, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(project), "REMOTE_HOST": "local",
                               "REMOTE_DIR": f"/tmp/rrt_wheel_inv_{project.name}"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("going on without a GPU (--cpu-ok)") == 1 and "RESULT_HELLO answer=42" in done.stdout


def test_runner_files_ship_inside_the_wheel(installed, tmp_path):
    code = "from remote_run.runner_files import runners_dir; print(runners_dir())"
    done = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    where = Path(done.stdout.strip())
    assert str(installed) in str(where)
    assert (where / "hlb_workspace.py").is_file() and (where / "hlb_cifar.py").is_file()
    # as in the checkout
    assert (where / "hlb_cifar.py").read_bytes() == (REPO / "runners" / "hlb_cifar.py").read_bytes()
