"""--against's parts, imported and tested directly: the order of the runs, REF's tree (extracted
once, staged with the sync's rules and the untracked files), side A's snapshot on the host, the
comparison of finished pairs, and the flags."""

from __future__ import annotations

import os
import subprocess

import pytest

from remote_run import against, settings
from remote_run.errors import Failure
from remote_run.host import layout, snapshot, tree
from remote_run.options import RunOptions
from remote_run.records import RunRecord


class Done:
    def __init__(self, done):
        self.exited, self.stdout, self.stderr = done.returncode, done.stdout, done.stderr


def run_local(calls=None):
    def run(argv, hide=True, timeout=None):
        if calls is not None:
            calls.append(argv)
        return Done(subprocess.run(argv, capture_output=True, text=True, timeout=timeout))

    return run


def git(ws, *args):
    return subprocess.run(["git", "-C", str(ws), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "model.py").write_text("V = 1\n")
    (ws / "train.py").write_text("print(1)\n")
    (ws / "build").mkdir()
    (ws / "build" / "out.o").write_text("object\n")  # tracked, but the sync's rules leave build/ out
    (ws / "link.py").symlink_to("train.py")
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", ".")
    git(ws, "commit", "-qm", "one")
    return ws


@pytest.mark.parametrize("pairs, order", [
    (1, "AB"), (2, "ABBA"), (3, "ABBAAB"), (4, "ABBAABBA"),
])
def test_each_side_goes_first_in_every_other_pair(pairs, order):
    assert "".join(against.interleaved(pairs)) == order
    plan = against.Plan("x", "run", "main", "c" * 40, pairs, order=against.interleaved(pairs))
    assert [pair for _, pair in plan.members] == [i // 2 for i in range(2 * pairs)]
    assert all(sorted(side for side, pair in plan.members if pair == i) == ["A", "B"] for i in range(pairs))


def test_resolve_names_the_commit_or_says_why_not(repo, tmp_path):
    head = git(repo, "rev-parse", "HEAD")
    assert against.resolve(run_local(), repo, "main") == head
    assert against.resolve(run_local(), repo, head[:8]) == head
    for bad, words in [("nope", "is not a commit of this repository"), ("--output=x", "is not a git revision"),
                       ("main:train.py", "is not a commit")]:
        with pytest.raises(Failure, match=words):
            against.resolve(run_local(), repo, bad)
    (tmp_path / "plain").mkdir()
    with pytest.raises(Failure, match="needs a git repository"):
        against.resolve(run_local(), tmp_path / "plain", "HEAD")


def test_refs_tree_is_extracted_once_and_staged_with_the_rules_and_the_untracked_files(repo):
    head = git(repo, "rev-parse", "HEAD")
    calls = []
    committed = against.extracted(run_local(calls), repo, head)
    assert against.extracted(run_local(calls), repo, head) == committed
    assert [c for c in calls if "archive" in c] and len([c for c in calls if "archive" in c]) == 1  # reused
    (repo / "pkg" / "model.py").write_text("V = 2\n")  # the working tree changed: REF's file is staged
    (repo / "notes.txt").write_text("untracked\n")
    (repo / "train.py").write_text("print(2)\n")
    top, files = against.stage(committed, repo, ["notes.txt", "train.py"], [("-", "/build/")], head)
    staged = top / snapshot.REVISIONS / head
    try:
        assert (staged / "pkg" / "model.py").read_text() == "V = 1\n"
        assert (staged / "notes.txt").read_text() == "untracked\n"
        assert (staged / "train.py").read_text() == "print(1)\n"  # REF's own file wins over the working tree's
        assert os.readlink(staged / "link.py") == "train.py"
        assert not (staged / "build").exists()  # the sync's rules apply to REF's files too
        assert files == 3
    finally:
        import shutil

        shutil.rmtree(top)


def test_side_a_snapshots_the_revision_and_shares_only_the_venv_and_what_the_sync_leaves_alone(tmp_path):
    root = tmp_path / "remote"
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / "train.py").write_text("B\n")
    (root / "new_in_b.py").write_text("only B has it\n")
    (root / "datasets").mkdir()  # left out by the sync: on the host only, shared by every run
    (root / tree.STAMP).parent.mkdir(parents=True, exist_ok=True)
    (root / tree.STAMP).write_text("stamp\n")
    revision = root / snapshot.REVISIONS / "abc"
    revision.mkdir(parents=True)
    (revision / "train.py").write_text("A\n")
    run_dir = root / layout.RUNS / "r1"
    run_dir.mkdir(parents=True)
    taken = snapshot.take(str(root), str(run_dir), [("-", "/datasets/")], "abc")
    work = run_dir / snapshot.WORK
    assert (work / "train.py").read_text() == "A\n" and not (work / "new_in_b.py").exists()
    assert os.readlink(work / ".venv") == str(root / ".venv")
    assert os.readlink(work / "datasets") == str(root / "datasets")
    assert not (work / ".remote-run").exists()
    assert taken["tree"] == "revision abc" and taken["files"] == 1


def record(run_id, value, outcome="finished"):
    found = RunRecord(run_id=run_id, task="run", host="l1", outcome=outcome, ended="2026-12-07T10:00:00")
    found.result = {"name": "RESULT_X", "metrics": {"seconds": value}} if value is not None else None
    return found


def test_a_pair_with_a_failed_run_is_left_out_and_the_rest_compared_pair_by_pair():
    plan = against.Plan("ab", "run", "main", "c" * 40, 4, order=against.interleaved(4))
    values = {"A": [1.00, 1.01, 0.99, 1.00], "B": [1.10, 1.11, None, 1.09]}
    seen = {"A": 0, "B": 0}
    found = []
    for i, (side, pair) in enumerate(plan.members, 1):
        value = values[side][pair]
        found.append(record(f"ab.{i}", value, "finished" if value is not None else "failed"))
        seen[side] += 1
    result = against.result_of(plan, found)
    assert result["pairs"] == [["ab.1", "ab.2"], ["ab.4", "ab.3"], ["ab.8", "ab.7"]]
    assert result["left_out"] == ["ab.5", "ab.6"]
    [row] = result["rows"]
    assert row["a"] == [1.00, 1.01, 1.00] and row["b"] == [1.10, 1.11, 1.09]
    assert row["regression"] and row["low"] < row["diff"] < row["high"] and row["test"] == "paired t"
    text = against.markdown(result)
    assert "left out, with their pairs" in text and "**regression: seconds is worse" in text


def test_against_flags_are_checked_before_anything_runs(tmp_path):
    loaded = settings.load(environ={"WORKSPACE": str(tmp_path), "REMOTE_HOST": "l1"})
    assert RunOptions(against="main").check(loaded).runs == 5
    assert RunOptions(against="main", repeat="3").check(loaded).runs == 3
    assert RunOptions().check(loaded).runs == 1
    with pytest.raises(Failure, match="--repeat"):
        RunOptions(against="main", repeat="51").check(loaded)
    with pytest.raises(Failure, match="--tolerance only applies with --compare-to NAME or --against REF"):
        RunOptions(tolerance=("seconds=1%",)).check(loaded)
    assert RunOptions(against="main", tolerance=("seconds=1%",)).check(loaded).tolerance == ("seconds=1%",)
    with pytest.raises(Failure, match="drop --sky"):
        RunOptions(against="main", sky="gpu").check(loaded)
    for given in ({"committed_only": True}, {"fail_on_regression": True}):
        with pytest.raises(Failure, match="only applies with --against REF"):
            RunOptions(**given).check(loaded)
    assert "against" not in RunOptions(against="main").invocation(["against", "cpu_ok"])  # rerun runs one run


def test_side_a_gets_refs_runner_where_runners_are_part_of_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from remote_run import runner_files

    ws = tmp_path / "ws"
    (ws / "runners").mkdir(parents=True)
    (ws / "runners" / "hlb_cifar.py").write_text("new runner\n")
    monkeypatch.setattr(runner_files, "runners_dir", lambda: ws / "runners")
    committed = against.cache() / ("c" * 40) / "runners"
    committed.mkdir(parents=True)
    (committed / "hlb_cifar.py").write_text("old runner\n")
    loaded = settings.load(environ={"WORKSPACE": str(ws), "REMOTE_HOST": "l1"})
    files = {"scripts/run_hlb.py": "new runner\n", "scripts/other.py": "mine\n"}
    assert against.revision_files(loaded, files, "c" * 40) == {"scripts/run_hlb.py": "old runner\n",
                                                              "scripts/other.py": "mine\n"}
    monkeypatch.setattr(runner_files, "runners_dir", lambda: tmp_path / "installed")  # a wheel: not the workspace's
    assert against.revision_files(loaded, files, "c" * 40) == files
