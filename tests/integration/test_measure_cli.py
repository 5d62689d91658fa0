"""Measuring regressions through the real CLI, over the loopback sshd and on `local`: --repeat
groups, compare and its gate, baselines, GPU samples, the code of a run, rerun and the report."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from support.cli import Background, cli, log_has, run_dirs, wait_for, wait_for_started_run
from support.workspace import make_workspace, unique_remote_dir

from remote_run.host import exits

# Prints three epochs and a RESULT line; its accuracy is what level.txt says (0.9 if none), with noise.
METRIC = """import os, random, sys, time
random.seed(os.getpid())
level = float(open("level.txt").read()) if os.path.exists("level.txt") else 0.9
for epoch in range(1, 4):
    print(f"EPOCH epoch={epoch} loss={1 / epoch:.3f} acc={level * epoch / 3:.4f}", flush=True)
    time.sleep(float(os.environ.get("NAP", "0.02")))
print(f"RESULT_M acc={level + random.gauss(0, 0.002):.5f} elapsed_seconds={1 + random.random() / 100:.5f}")
"""


@pytest.fixture
def box(sshd, offline_pip, tmp_path):
    ws = make_workspace(tmp_path)
    (ws / "scripts" / "metric.py").write_text(METRIC)
    remote = unique_remote_dir("rrt_measure")
    yield ws, remote
    sshd.cleanup_remote(remote)


def records_of(ws, pattern="*"):
    return {p.name: json.loads((p / "result.json").read_text())
            for p in sorted((ws / "var" / "runs").glob(pattern)) if (p / "result.json").exists()}


def test_repeat_runs_a_group_with_a_summary_and_per_epoch_curves(sshd, box):
    ws, remote = box
    # the host keeps the host program: counted below is what a run costs
    cli(sshd, ws, "status", venv=False, REMOTE_DIR=remote)
    mark = sshd.mark()
    done = cli(sshd, ws, "run", "scripts/metric.py", "--repeat", "3", venv=False, REMOTE_DIR=remote,
               GPU_SAMPLE_SECONDS="0.1")
    assert done.returncode == 0, done.stderr
    [group] = [p for p in (ws / "var" / "runs").iterdir() if (p / "summary.json").exists()]
    summary = json.loads((group / "summary.json").read_text())
    assert summary["runs"] == [f"{group.name}.{i}" for i in (1, 2, 3)] and summary["outcomes"] == {"finished": 3}
    acc = summary["metrics"]["acc"]
    assert acc["n"] == 3 and acc["min"] <= acc["mean"] <= acc["max"] and acc["std"] > 0
    assert acc["runs"] == summary["runs"]
    assert "acc" in done.stdout and "mean" in done.stdout and f"summary: {group}/summary.md" in done.stderr
    members = records_of(ws, f"{group.name}.*")
    assert all(r["group"] == group.name and r["outcome"] == "finished" for r in members.values())
    assert [e["epoch"] for e in members[f"{group.name}.1"]["epochs"]] == [1, 2, 3]
    # One sync and one check for the whole group (a cold tree: the rsync and the check run side by
    # side), one start, then one follow per run; three single runs would pay sync+check+start thrice.
    assert sshd.count("Starting session:", mark) <= 1 + 1 + 1 + 3
    first = members[f"{group.name}.1"]
    assert first["gpu_usage"]["samples"] >= 1 and (group.parent / f"{group.name}.1" / "gpu.csv").exists()
    # a run of a second says nothing about how busy its GPU keeps (records.IDLE_MIN_SECONDS)
    assert not [w for w in first["warnings"] if w.startswith("GPU idle")], first["warnings"]


def test_compare_to_a_baseline_gates_on_a_forced_regression(sshd, box):
    ws, remote = box
    assert cli(sshd, ws, "run", "scripts/metric.py", "--repeat", "3", venv=False, REMOTE_DIR=remote).returncode == 0
    saved = cli(sshd, ws, "baseline.save", "main", "latest", venv=False, REMOTE_DIR=remote)
    assert saved.returncode == 0 and "baseline main = group" in saved.stderr, saved.stderr
    same = cli(sshd, ws, "run", "scripts/metric.py", "--repeat", "3", "--compare-to", "main", "--tolerance", "acc=0.02",
               "--tolerance", "elapsed_seconds=50%", venv=False, REMOTE_DIR=remote)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no regression of" in same.stderr and "p (Welch)" in same.stdout
    (ws / "level.txt").write_text("0.7\n")
    worse = cli(sshd, ws, "run", "scripts/metric.py", "--repeat", "3", "--compare-to", "main", venv=False,
                REMOTE_DIR=remote)
    assert worse.returncode == exits.REGRESSION, worse.stdout + worse.stderr
    by = re.search(r"regression: acc is worse by ([0-9.]+) \(", worse.stderr)
    assert by and abs(float(by.group(1)) - 0.2) < 0.01 and "beyond its tolerance 0" in worse.stderr, worse.stderr
    assert "Traceback" not in worse.stderr
    table = cli(sshd, ws, "compare", "main", "latest", venv=False, REMOTE_DIR=remote)
    # no gate without the flag
    assert table.returncode == 0 and "worse" in table.stdout and "A: baseline main" in table.stdout, table.stdout
    gated = cli(sshd, ws, "compare", "main", "latest", "--fail-on-regression", "--tolerance", "acc=0.3", venv=False,
                REMOTE_DIR=remote)
    assert gated.returncode == 0, gated.stderr  # within its tolerance


def test_a_detached_group_runs_on_the_host_and_logs_follow_completes_it(sshd, box, tmp_path):
    ws, remote = box
    started = time.monotonic()
    done = cli(sshd, ws, "run", "scripts/metric.py", "--repeat", "2", "--detach", venv=False, REMOTE_DIR=remote,
               NAP="0.5", REMOTE_ENV="NAP")
    assert done.returncode == 0 and time.monotonic() - started < 20, done.stderr
    [group] = [p.name for p in (ws / "var" / "runs").iterdir() if (p / "summary.json").exists()]
    assert f"inv logs --follow --run {group}" in done.stderr
    status = cli(sshd, ws, "status", venv=False, REMOTE_DIR=remote)
    assert f"{group}" in status.stdout and "(group of 2)" in status.stdout
    followed = cli(sshd, ws, "logs", "--follow", "--run", group, venv=False, REMOTE_DIR=remote)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.count("RESULT_M acc=") == 2
    assert [r["outcome"] for r in records_of(ws, f"{group}.*").values()] == ["finished", "finished"]
    assert json.loads((ws / "var" / "runs" / group / "summary.json").read_text())["metrics"]["acc"]["n"] == 2


def test_ctrl_c_stops_the_run_going_on_and_the_ones_waiting(sshd, box, tmp_path):
    ws, remote = box
    bg = Background(sshd, ws, tmp_path / "bg", "run", "scripts/metric.py", "--repeat", "3", venv=False,
                    REMOTE_DIR=remote, NAP="5", REMOTE_ENV="NAP")
    try:
        wait_for_started_run(remote, bg=bg)  # the group's supervisor
        wait_for(lambda: next((p for p in run_dirs(remote) if p.name.endswith(".1") and log_has(p, "epoch=1")), None),
                 15, "the first run's output")
        bg.ctrl_c()
        code = bg.wait(30)
    finally:
        bg.kill()
    assert code == 130, bg.stderr
    states = {p.name: sorted(f.name for f in p.iterdir()) for p in run_dirs(remote) if (p / "meta.json").exists()}
    assert len(states) == 3 and sum("killed" in files for files in states.values()) == 1
    assert sum("skipped" in files for files in states.values()) == 2  # never started
    outcomes = [r["outcome"] for r in records_of(ws, "*.*").values()]
    assert outcomes == ["killed", "killed", "killed"]


def test_the_record_keeps_the_diff_and_the_untracked_files_and_rerun_warns(sshd, box):
    ws, remote = box

    def git(*args):
        subprocess.run(["git", "-C", str(ws), *args], check=True, capture_output=True)

    (ws / ".git").rename(ws / "not-git")  # the fixture's fake .git/HEAD
    git("init", "-q")
    git("-c", "user.email=t@example.org", "-c", "user.name=t", "add", "scripts", "README.md")
    git("-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "first")
    (ws / "scripts" / "metric.py").write_text(METRIC + "# an uncommitted edit\n")
    (ws / "notes.txt").write_text("untracked and synced\n")
    done = cli(sshd, ws, "run", "scripts/metric.py", venv=False, REMOTE_DIR=remote)
    assert done.returncode == 0, done.stderr
    [run_id] = [name for name, r in records_of(ws).items() if r["task"] == "run"]
    record = records_of(ws)[run_id]
    assert record["code"]["dirty"] is True and record["code"]["diff_bytes"] > 0
    assert "+# an uncommitted edit" in (ws / "var" / "runs" / run_id / "code.diff").read_text()
    assert {"path": "notes.txt", "size": 21} in [{k: u[k] for k in ("path", "size")}
                                                 for u in record["code"]["untracked"]]
    assert record["invocation"]["task"] == "run" and record["invocation"]["args"]["target"] == "scripts/metric.py"
    (ws / "notes.txt").write_text("changed\n")
    again = cli(sshd, ws, "rerun", run_id, venv=False, REMOTE_DIR=remote)
    assert again.returncode == 0, again.stderr
    assert f"the workspace differs from what run {run_id} used: untracked notes.txt changed" in again.stderr
    assert len([r for r in records_of(ws).values() if r["task"] == "run"]) == 2


def test_report_on_local_writes_one_page(tmp_path):
    pytest.importorskip("matplotlib")
    ws = tmp_path / "ws"
    (ws / "scripts").mkdir(parents=True)
    (ws / "scripts" / "metric.py").write_text(METRIC)
    env = {"REMOTE_HOST": "local", "REMOTE_DIR": f"/tmp/rrt_report_{tmp_path.name}"}
    import os
    import sys

    from support.cli import REPO

    def inv(*args):
        return subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), *args], cwd=ws,
                              capture_output=True, text=True, env={**os.environ, **env}, timeout=120)

    try:
        assert inv("run", "scripts/metric.py", "--repeat", "2", "--cpu-ok").returncode == 0
        done = inv("report")
        assert done.returncode == 0, done.stderr
        page = (ws / "var" / "runs" / "report.html").read_text()
        assert done.stdout.strip() == str(ws / "var" / "runs" / "report.html")
        assert page.count("<figure") == 6 and "data-chart='epoch:acc'" in page and page.count("<tr data-run=") == 2
    finally:
        import shutil

        shutil.rmtree(env["REMOTE_DIR"], ignore_errors=True)
