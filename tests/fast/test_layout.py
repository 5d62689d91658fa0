"""REMOTE_DIR's layout: remote-run's own folders under .remote-run/, and the older layout
(runs/ and data/ at the top) moved there once, never while one of its runs is live."""

import os

from remote_run.host import layout


def old_layout(root, *, live=False):
    """A REMOTE_DIR as an earlier remote-run left it: runs/<id> records and the dataset cache data/."""
    (root / ".remote-run").mkdir(parents=True)
    run = root / "runs" / "20261201T000000Z_train-hlb"
    run.mkdir(parents=True)
    (run / "meta.json").write_text("{}")
    (run / "run.log").write_text("RESULT_HLB ema_val_acc=0.9\n")
    if live:
        (run / "pid").write_text("%d\n" % os.getpid())
    else:
        (run / "exit_code").write_text("0\n")
    (root / "data" / "cifar10").mkdir(parents=True)
    (root / "data" / "cifar10" / "cifar10_uint8.pt").write_bytes(b"cache")
    return run.name


def test_the_older_layout_is_moved_once_into_remote_run(tmp_path, capsys):
    root = tmp_path / "remote"
    name = old_layout(root)
    assert layout.runs_dir(str(root)) == str(root / "runs")  # not moved yet: readers find the runs there
    assert layout.settle(str(root)) == ""
    assert (root / layout.RUNS / name / "run.log").read_text().startswith("RESULT_HLB")
    assert (root / layout.DATA / "cifar10" / "cifar10_uint8.pt").read_bytes() == b"cache"
    assert not (root / "runs").exists() and not (root / "data").exists()
    assert layout.runs_dir(str(root)) == str(root / layout.RUNS)
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 2 and all(line.startswith("remote-run: moved ") for line in said)
    (root / "runs").mkdir()  # the workspace's own runs/ arrives with the next sync: never moved again
    (root / "runs" / "x").mkdir()
    (root / "runs" / "x" / "run.log").write_text("the workspace's file\n")
    assert layout.settle(str(root)) == "" and (root / "runs" / "x" / "run.log").exists()
    assert layout.runs_dir(str(root)) == str(root / layout.RUNS) and capsys.readouterr().err == ""


def test_a_live_run_of_the_older_layout_keeps_it_until_it_ends(tmp_path):
    root = tmp_path / "remote"
    name = old_layout(root, live=True)
    line = layout.settle(str(root))
    assert name in line and "still live" in line and f"inv kill --run {name}" in line
    assert (root / "runs" / name / "meta.json").exists() and (root / "data").is_dir()
    assert not (root / layout.MOVED).exists() and layout.runs_dir(str(root)) == str(root / "runs")
    (root / "runs" / name / "pid").unlink()
    (root / "runs" / name / "exit_code").write_text("0\n")
    assert layout.settle(str(root)) == "" and (root / layout.RUNS / name).is_dir()


def test_a_workspace_runs_folder_without_run_records_is_not_taken_for_the_older_layout(tmp_path):
    root = tmp_path / "remote"
    (root / ".remote-run").mkdir(parents=True)
    (root / "runs").mkdir()
    (root / "runs" / "speedrun.sh").write_text("torchrun train.py\n")
    (root / "data").mkdir()
    (root / "data" / "cached_fineweb10B.py").write_text("URL = 1\n")
    assert layout.settle(str(root)) == ""
    assert (root / "runs" / "speedrun.sh").exists()
    assert (root / layout.DATA / "cached_fineweb10B.py").exists()  # an older remote-run's data/ was its cache
    assert (root / layout.MOVED).read_text() == layout.VERSION + "\n"


def test_the_root_of_a_run_folder_in_either_layout(tmp_path):
    assert layout.root_of(str(tmp_path / layout.RUNS / "r1")) == str(tmp_path)
    assert layout.root_of(str(tmp_path / "runs" / "r1")) == str(tmp_path)
