"""The self-contained trainers through the real task chain (sync, bootstrap with torch, gpu-check, run) over SSH."""

from __future__ import annotations

import json

import pytest
from support.cli import LOCAL_INDEX_PIP, cli, latest_record, remote_exists, remote_read, write_pip_conf
from support.workspace import make_workspace, unique_remote_dir

from remote_run.records import parse_result
from remote_run.runner_files import template

TORCH = {"TRAIN_IMPL": "builtin", "TORCH_PACKAGES": "torch==2.13.0", "TORCH_INDEX_URL": ""}


@pytest.fixture(scope="module")
def torch_host(sshd, tmp_path_factory):
    """A host whose venv has torch, installed from this machine's local package indexes (no network)."""
    remove = write_pip_conf(sshd, LOCAL_INDEX_PIP)
    ws = make_workspace(tmp_path_factory.mktemp("ws"))
    remote = unique_remote_dir("rrt_torch")
    done = cli(sshd, ws, "bootstrap", REMOTE_DIR=remote, timeout=900, **TORCH)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield ws, remote
    remove()
    sshd.cleanup_remote(remote)


def test_hlb_trainer_runs_a_fraction_of_an_epoch_over_ssh(sshd, torch_host):
    ws, remote = torch_host
    done = cli(sshd, ws, "train-hlb", "--synthetic", "--subset", "512", "--batch-size", "128", "--epochs", "0.5",
               REMOTE_DIR=remote, timeout=900, **TORCH)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = parse_result(done.stdout)
    assert "environment is up to date" in done.stderr  # bootstrapped once, by the fixture
    assert result["name"] == "RESULT_HLB"
    assert result["metrics"]["train_epochs"] == 0.5 and result["metrics"]["device"] == "cpu"
    assert 0 <= result["metrics"]["ema_val_acc"] <= 1 and result["metrics"]["elapsed_seconds"] > 0
    record = json.loads((latest_record(ws, "train-hlb") / "result.json").read_text())
    assert record["outcome"] == "finished" and record["result"] == result
    assert record["options"]["synthetic"] is True and record["options"]["subset"] == 512
    assert record["runner"] == template("hlb_cifar.py")  # unchanged: the options went as flags
    # --compile is off: no flag
    assert "/python scripts/run_hlb.py --epochs 0.5 --synthetic --subset 512 --batch-size 128  [run " in done.stderr
    # the run's snapshot keeps the files it was given
    work = f"{remote}/.remote-run/runs/{latest_record(ws, 'train-hlb').name}/work"
    assert remote_read(sshd, f"{work}/scripts/run_hlb.py") == template("hlb_cifar.py")
    assert remote_read(sshd, f"{work}/scripts/cifar10_data.py") == template("cifar10_data.py")
    # the dataset cache is shared
    assert remote_exists(sshd, f"{remote}/.remote-run/data/cifar10") or record["options"]["synthetic"]


def test_david_trainer_runs_one_small_epoch_over_ssh(sshd, torch_host):
    ws, remote = torch_host
    done = cli(sshd, ws, "train-david", "--synthetic", "--subset", "256", "--batch-size", "64", "--epochs", "1",
               REMOTE_DIR=remote, timeout=600, **TORCH)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = parse_result(done.stdout)
    assert result["name"] == "RESULT_DAVID"
    assert result["metrics"]["epochs"] == 1 and result["metrics"]["batch_size"] == 64
    assert "environment is up to date" in done.stderr  # bootstrapped once, by the fixture
    assert ("/python scripts/run_david_trainer.py --epochs 1 --batch-size 64 --synthetic --subset 256  [run "
            in done.stderr)
    record = json.loads((latest_record(ws, "train-david") / "result.json").read_text())
    assert record["outcome"] == "finished" and record["result"] == result
    assert record["runner"] == template("david_cifar.py")
