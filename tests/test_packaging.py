"""The wheel works on its own: console script, task collection and runner templates."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, text=True)
    wheel = next(out.glob("remote_run-*.whl"))
    env_dir = tmp_path_factory.mktemp("venv")
    # System site-packages provide fabric/invoke/dotenv without a network; the wheel itself is
    # installed into the venv, which shadows the editable checkout.
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    return env_dir


def test_console_script_from_the_wheel(installed, tmp_path):
    done = subprocess.run([str(installed / "bin" / "remote-run"), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("sync", "bootstrap", "gpu-check", "train-hlb", "train-david", "run", "pull-logs", "clean"):
        assert name in done.stdout
    assert "--env-file" in done.stdout


def test_runner_templates_ship_inside_the_wheel(installed, tmp_path):
    code = "from remote_run.render import runners_dir; print(runners_dir())"
    done = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    where = Path(done.stdout.strip())
    assert str(installed) in str(where) and (where / "hlb_workspace.py").is_file() and (where / "hlb_cifar.py").is_file()
