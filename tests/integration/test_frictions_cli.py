"""Smaller frictions met running real repositories, through the real CLI over the loopback sshd:
`logs` of a finished run, `status` naming the script, each run of a detached group timed on its
own, and --gpus beyond the host's GPUs."""

from __future__ import annotations

import json

import pytest
from support.cli import cli, one_line_error
from support.workspace import make_workspace, unique_remote_dir

NAP = "import sys, time\nprint('napping', sys.argv[1:], flush=True)\ntime.sleep(1.0)\nprint('RESULT_NAP slept=1')\n"


@pytest.fixture
def box(sshd, offline_pip, tmp_path):
    ws = make_workspace(tmp_path)
    (ws / "scripts" / "nap.py").write_text(NAP)
    remote = unique_remote_dir("rrt_frictions")
    yield ws, remote
    sshd.cleanup_remote(remote)


def result_of(ws, run_id):
    return json.loads((ws / "var" / "runs" / run_id / "result.json").read_text())


def test_each_run_of_a_detached_group_has_its_own_wall_time_and_status_names_the_script(sshd, box):
    ws, remote = box
    done = cli(sshd, ws, "run", "scripts/nap.py", "--repeat", "2", "--detach", venv=False, REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    [group] = [p.name for p in (ws / "var" / "runs").iterdir() if (p / "summary.json").exists()]
    followed = cli(sshd, ws, "logs", "--follow", "--run", group, venv=False, REMOTE_DIR=remote)
    assert followed.returncode == 0, followed.stderr
    first, second = (result_of(ws, f"{group}.{i}") for i in (1, 2))
    # each slept 1 s; the second used to be timed from the group's start (both runs, and more)
    assert 1.0 <= first["elapsed_seconds"] < 1.8 and 1.0 <= second["elapsed_seconds"] < 1.8, (first, second)
    assert [first["outcome"], second["outcome"]] == ["finished", "finished"]

    module = cli(sshd, ws, "run", "--module", "scripts.nap", venv=False, REMOTE_DIR=remote)
    assert module.returncode == 0, module.stderr
    status = cli(sshd, ws, "status", venv=False, REMOTE_DIR=remote)
    assert status.returncode == 0, status.stderr
    tasks = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    assert "run scripts/nap.py (group of 2)" in tasks[group]
    assert "run scripts/nap.py" in tasks[f"{group}.1"] and "run scripts/nap.py" in tasks[f"{group}.2"]
    [module_run] = [line for line in tasks.values() if "run -m scripts.nap" in line]
    assert "finished" in module_run


def test_logs_of_a_finished_run_shows_its_log(sshd, box):
    ws, remote = box
    done = cli(sshd, ws, "run", "scripts/nap.py", "--args", "--once", venv=False, REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    [run_id] = [p.name for p in (ws / "var" / "runs").iterdir() if (p / "result.json").exists()]
    for args in (["logs", "--run", run_id], ["logs"], ["logs", "--follow", "--run", run_id]):
        shown = cli(sshd, ws, *args, venv=False, REMOTE_DIR=remote)
        assert shown.returncode == 0, shown.stderr
        # all of it, once: the part recorded here, and nothing more from the host
        assert shown.stdout == (ws / "var" / "runs" / run_id / "run.log").read_text(), (args, shown.stdout)
        assert shown.stdout.count("napping ['--once']") == 1 and "RESULT_NAP slept=1" in shown.stdout


def test_more_gpus_than_the_host_has_names_how_many_it_has(sshd, box, gpu):
    ws, remote = box
    gpu("two")
    for extra in ([], ["--wait"]):
        line = one_line_error(cli(sshd, ws, "run", "scripts/nap.py", "--gpus", "8", *extra, venv=False,
                                  REMOTE_DIR=remote))
        assert line == ("remote-run: l1 has 2 GPUs, fewer than --gpus 8 asks for; "
                        "pass --gpus 2 or fewer, or pick a host with more GPUs (REMOTE_HOST)"), line
    assert not list((ws / "var" / "runs").glob("*/result.json"))  # nothing ran
    done = cli(sshd, ws, "run", "scripts/nap.py", "--gpus", "2", venv=False, REMOTE_DIR=remote)
    assert done.returncode == 0 and "napping" in done.stdout, done.stderr


USES_TASKS = "from tasks.data import VALUE\nprint(f'RESULT_TASKS value={VALUE}')\n"


def test_remote_run_works_in_a_repository_with_its_own_tasks_package(sshd, box):
    """The `remote-run` program adds no file to the repository, so its `tasks/` package stays what
    its code imports. The README's old way, a tasks.py for `inv`, hides a namespace package (one
    without __init__.py, as in many repositories), and the hint now says so."""
    ws, remote = box
    (ws / "tasks").mkdir()
    (ws / "tasks" / "__init__.py").write_text("")
    (ws / "tasks" / "data.py").write_text("VALUE = 7\n")
    (ws / "scripts" / "uses_tasks.py").write_text(USES_TASKS)
    listed = cli(sshd, ws, "-l", program="remote-run", venv=False, REMOTE_DIR=remote)
    assert listed.returncode == 0 and "train-hlb" in listed.stdout and "status" in listed.stdout, listed.stderr
    done = cli(sshd, ws, "run", "scripts/uses_tasks.py", program="remote-run", venv=False, REMOTE_DIR=remote)
    assert done.returncode == 0 and "RESULT_TASKS value=7" in done.stdout, done.stderr

    (ws / "tasks" / "__init__.py").unlink()
    (ws / "tasks.py").write_text("from remote_run.tasks import ns  # noqa: F401\n")
    shadowed = cli(sshd, ws, "run", "scripts/uses_tasks.py", program="remote-run", venv=False, REMOTE_DIR=remote)
    assert shadowed.returncode == 1, shadowed.stderr
    [record] = [json.loads(p.read_text()) for p in sorted((ws / "var" / "runs").glob("*/result.json"))][-1:]
    [hint] = record["hints"]
    assert hint.startswith("the run imports remote-run, which is not for the host: most likely a tasks.py added for "
                           "`inv` hides the workspace's tasks/ package; remove that tasks.py"), hint
    assert hint in shadowed.stderr
    assert "PIP_PACKAGES" not in shadowed.stderr  # the wrong fix it used to name
