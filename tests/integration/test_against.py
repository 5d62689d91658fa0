"""--against REF: an A/B of a git revision and the working tree, in pairs interleaved on one GPU
that the A/B holds throughout, with a paired verdict. The real CLI against the loopback sshd, a
real git repository, the stand-in GPU and the host's GPU queue."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support.cli import cli, log_has, one_line_error, remote_exists, run_dirs, wait_for
from support.workspace import unique_remote_dir

from remote_run.errors import Kind

AB = """import os, random, time
VERSION = {version}
extra = open("extra.txt").read().strip() if os.path.exists("extra.txt") else "none"
print("version", VERSION, "extra", extra, "cuda", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
print("started %r" % time.time(), flush=True)
time.sleep(float(os.environ.get("HOLD", "0")))
print("ended %r" % time.time(), flush=True)
if os.environ.get("NO_RESULT"):
    raise SystemExit(int(os.environ["NO_RESULT"]))
print("RESULT_AB seconds=%.6f" % (VERSION * (1 + random.gauss(0, 0.003))))
"""


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(ws), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(sshd, tmp_path):
    """A git workspace: scripts/ab.py committed as version 1, then changed to 1.1 (10 % slower) in the
    working tree; extra.txt untracked (a sync sends it, so A gets it too)."""
    ws = tmp_path / "abproj"
    (ws / "scripts").mkdir(parents=True)
    (ws / "scripts" / "ab.py").write_text(AB.format(version=1))
    (ws / ".gitignore").write_text("var/\n")
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "version 1")
    (ws / "scripts" / "ab.py").write_text(AB.format(version=1.1))
    (ws / "extra.txt").write_text("untracked-notes\n")
    remote = unique_remote_dir("rrt_ab")
    yield ws, remote
    sshd.cleanup_remote(remote)
    subprocess.run(["rm", "-rf", remote], check=False)


def inv(sshd, ws, remote, *args, **env):
    return cli(sshd, ws, *args, REMOTE_DIR=remote, venv=False, **env)


def comparison(ws: Path) -> dict:
    [found] = [p for p in (ws / "var" / "runs").glob("*/comparison.json")]
    return json.loads(found.read_text())


def test_an_ab_runs_both_versions_interleaved_and_gives_a_paired_verdict(sshd, repo):
    ws, remote = repo
    head = git(ws, "rev-parse", "HEAD")
    done = inv(sshd, ws, remote, "run", "scripts/ab.py", "--against", "main", "--repeat", "3", "--fail-on-regression")
    assert done.returncode == Kind.REGRESSION.status, done.stderr
    assert "Traceback" not in done.stderr
    result = comparison(ws)
    ab = result["id"]
    assert result["order"] == ["A", "B", "B", "A", "A", "B"] and result["commit"] == head and result["ref"] == "main"
    assert result["pairs"] == [[f"{ab}.1", f"{ab}.2"], [f"{ab}.4", f"{ab}.3"], [f"{ab}.5", f"{ab}.6"]]
    runs = ws / "var" / "runs"
    for i, side in enumerate(result["order"], 1):
        log = (runs / f"{ab}.{i}" / "run.log").read_text()
        version = "1" if side == "A" else "1.1"
        assert f"version {version} extra untracked-notes cuda 0" in log, (side, log)  # A: REF plus the untracked file
        record = json.loads((runs / f"{ab}.{i}" / "result.json").read_text())
        assert record["group"] == ab and record["git"]["commit"] == head
        assert record["git"]["dirty"] is (side == "B")
    [row] = result["rows"]
    assert row["metric"] == "seconds" and row["test"] == "paired t" and row["regression"]
    assert row["low"] < row["diff"] < row["high"] and 0.08 < row["diff"] < 0.12, row  # B is 0.1 s (10 %) slower
    assert row["verdict"] == "worse" and row["tolerance_text"] == "2 % (default)"
    assert one_line_error(done) == (f"remote-run: 1 metric of the working tree regressed against main (A/B {ab})")
    assert "A = main (" in done.stderr and "and 1 untracked file" in done.stderr
    assert "with 3 pairs and this spread, a change smaller than" in done.stderr
    # The sides are groups; comparing them again pairs them, with the same verdict.
    again = inv(sshd, ws, remote, "compare", f"{ab}-A", f"{ab}-B", "--fail-on-regression")
    assert again.returncode == Kind.REGRESSION.status and "(paired t)" in again.stdout, again.stderr
    assert "is an A/B of two versions, compared pair by pair" in one_line_error(
        inv(sshd, ws, remote, "compare", ab, f"{ab}.1"))
    loose = inv(sshd, ws, remote, "compare", f"{ab}-A", f"{ab}-B", "--tolerance", "seconds=20%", "--fail-on-regression")
    assert loose.returncode == 0 and "worse, within its tolerance" in loose.stdout, loose.stdout + loose.stderr
    # A second A/B of the same revision reuses its tree on the host: nothing is sent again.
    second = inv(sshd, ws, remote, "run", "scripts/ab.py", "--against", head[:10], "--repeat", "1",
                 "--committed-only")
    assert second.returncode == 0, second.stderr
    assert "A = " + head[:10] in second.stderr and "untracked" not in second.stderr.split("A = ")[1].split("\n")[0]
    newest = sorted(p for p in runs.iterdir() if p.name.endswith("-ab1"))[-1].name
    assert "extra none" in (runs / f"{newest}.1" / "run.log").read_text()  # --committed-only: REF's files alone
    on_host = Path(remote) / ".remote-run"
    assert (on_host / "runs" / f"{ab}.1" / "run.log").is_file()  # REF's tree synced with --delete beside them
    assert [p.name for p in (on_host / "revisions").iterdir()] == [head]
    assert "one run a side cannot tell noise from change" in second.stdout, second.stdout


def test_a_detached_ab_holds_the_gpu_from_its_first_run_to_its_last(sshd, repo, gpu):
    """A --wait run submitted while the A/B runs gets the GPU only after the A/B's last run, not
    between two of its runs; `logs --follow` then completes the A/B and its comparison."""
    ws, remote = repo
    started = inv(sshd, ws, remote, "run", "scripts/ab.py", "--against", "HEAD", "--repeat", "2", "--detach",
                  "--wait", "--env", "HOLD=0.6")
    assert started.returncode == 0, started.stderr
    ab = started.stderr.split(" goes on detached")[0].rsplit("A/B ", 1)[1]
    assert "goes on detached (4 runs, one after another)" in started.stderr
    first = Path(remote) / ".remote-run" / "runs" / f"{ab}.1"
    wait_for(lambda: log_has(first, "started"), 20, "the A/B's first run")
    waiter = inv(sshd, ws, remote, "run", "scripts/ab.py", "--wait", "--detach")
    assert waiter.returncode == 0, waiter.stderr
    other = sorted(p for p in run_dirs(remote) if "-ab" not in p.name and (p / "meta.json").exists())[-1]
    status = inv(sshd, ws, remote, "status")
    assert ab in status.stdout and "run scripts/ab.py (A/B against HEAD, 2 pairs)" in status.stdout, status.stdout
    followed = inv(sshd, ws, remote, "logs", "--follow", "--run", ab)
    assert followed.returncode == 0, followed.stderr
    assert comparison(ws)["pairs"] == [[f"{ab}.1", f"{ab}.2"], [f"{ab}.4", f"{ab}.3"]]
    assert f"again: `inv compare {ab}-A {ab}-B`" in followed.stderr
    inv(sshd, ws, remote, "logs", "--follow", "--run", other.name)
    last_end = float((Path(remote) / ".remote-run" / "runs" / f"{ab}.4" / "run.log").read_text()
                     .split("ended ")[1].split()[0])
    other_start = float((other / "run.log").read_text().split("started ")[1].split()[0])
    assert other_start >= last_end  # it waited for the whole A/B


def test_killing_an_ab_stops_its_runs_and_keeps_what_finished(sshd, repo, gpu):
    ws, remote = repo
    started = inv(sshd, ws, remote, "run", "scripts/ab.py", "--against", "HEAD", "--repeat", "2", "--detach",
                  "--env", "HOLD=30")
    assert started.returncode == 0, started.stderr
    ab = started.stderr.split(" goes on detached")[0].rsplit("A/B ", 1)[1]
    wait_for(lambda: log_has(Path(remote) / ".remote-run" / "runs" / f"{ab}.1", "started"), 20, "the first run")
    killed = inv(sshd, ws, remote, "kill", "--run", ab)
    assert killed.returncode == 0 and f"group {ab} stopped" in killed.stderr, killed.stderr
    result = comparison(ws)
    assert result["pairs"] == [] and result["rows"] == [] and len(result["left_out"]) == 4
    assert "no pair of runs finished with a RESULT on both sides" in killed.stderr


@pytest.mark.parametrize("status", [0, 3])
def test_fail_on_regression_cannot_pass_an_ab_that_compared_no_pair(sshd, repo, status):
    ws, remote = repo
    done = inv(sshd, ws, remote, "run", "scripts/ab.py", "--against", "HEAD", "--repeat", "1", "--fail-on-regression",
               "--env", f"NO_RESULT={status}")
    assert done.returncode == (status or Kind.RUN.status), done.stderr
    assert "compared no pair (no pair of runs finished with a RESULT on both sides)" in done.stderr, done.stderr
    assert "no regression" not in done.stderr


@pytest.mark.parametrize("args, needle", [
    (["--against", "no-such-branch"], "--against 'no-such-branch' is not a commit of this repository"),
    (["--against", "HEAD", "--compare-to", "x"], "--against and --compare-to are two ways to compare"),
    (["--committed-only"], "--committed-only only applies with --against REF"),
    (["--against", "HEAD", "--detach", "--fail-on-regression"], "--fail-on-regression gates the finished A/B"),
    (["--against", "HEAD", "--repeat", "51"], "--repeat"),
])
def test_bad_against_input_is_one_line_and_changes_nothing_on_the_host(sshd, repo, args, needle):
    ws, remote = repo
    done = inv(sshd, ws, remote, "run", "scripts/ab.py", *args)
    assert needle in one_line_error(done), done.stderr
    assert not remote_exists(sshd, remote)
    assert not any((ws / "var" / "runs").glob("*/plan.json")) if (ws / "var" / "runs").is_dir() else True


def test_against_needs_a_git_repository(sshd, tmp_path):
    ws = tmp_path / "plain"
    (ws / "scripts").mkdir(parents=True)
    (ws / "scripts" / "ab.py").write_text(AB.format(version=1))
    remote = unique_remote_dir("rrt_ab")
    done = inv(sshd, ws, remote, "run", "scripts/ab.py", "--against", "HEAD")
    assert f"--against HEAD needs a git repository, and {ws} is not in one" in one_line_error(done)
    assert not remote_exists(sshd, remote)
