"""The self-contained trainers through the real task chain (sync, bootstrap with torch, gpu-check, run) over SSH."""

from __future__ import annotations

import json

import pytest

from integration import cli, latest_record, make_workspace, remote_exists, unique_remote_dir
from remote_run.records import parse_result

# The host installs torch from this machine's local package indexes: no network in tests.
PIP_CONF = "[global]\nindex-url = file:///opt/pypi/simple\nextra-index-url = file:///opt/pypi-more/simple\nfind-links = /opt/wheels\n"
TORCH = {"TRAIN_IMPL": "builtin", "TORCH_PACKAGES": "torch==2.13.0", "TORCH_INDEX_URL": ""}


@pytest.fixture(scope="module")
def torch_host(sshd, tmp_path_factory):
    conf = sshd.remote_home / ".config" / "pip" / "pip.conf"
    sshd.as_user(["mkdir", "-p", str(conf.parent)])
    sshd.as_user(["sh", "-c", f"printf '{PIP_CONF}' > {conf}"])
    ws = make_workspace(tmp_path_factory.mktemp("ws"))
    remote = unique_remote_dir("rrt_torch")
    yield ws, remote
    sshd.as_user(["rm", "-f", str(conf)])
    sshd.cleanup_remote(remote)


def test_hlb_trainer_runs_a_fraction_of_an_epoch_over_ssh(sshd, torch_host):
    ws, remote = torch_host
    done = cli(sshd, ws, "train-hlb", "--synthetic", "--subset", "512", "--batch-size", "128", "--epochs", "0.5",
               REMOTE_DIR=remote, timeout=900, **TORCH)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = parse_result(done.stdout)
    assert result["name"] == "RESULT_HLB"
    assert result["metrics"]["train_epochs"] == 0.5 and result["metrics"]["device"] == "cpu"
    assert 0 <= result["metrics"]["ema_val_acc"] <= 1 and result["metrics"]["elapsed_seconds"] > 0
    record = json.loads((latest_record(ws, "train-hlb") / "result.json").read_text())
    assert record["outcome"] == "finished" and record["result"] == result
    assert record["options"]["synthetic"] is True and "SUBSET = 512" in record["runner"]
    assert remote_exists(sshd, f"{remote}/scripts/run_hlb.py") and remote_exists(sshd, f"{remote}/scripts/cifar10_data.py")


def test_david_trainer_runs_one_small_epoch_over_ssh(sshd, torch_host):
    ws, remote = torch_host
    done = cli(sshd, ws, "train-david", "--synthetic", "--subset", "256", "--batch-size", "64", "--epochs", "1",
               REMOTE_DIR=remote, timeout=600, **TORCH)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = parse_result(done.stdout)
    assert result["name"] == "RESULT_DAVID"
    assert result["metrics"]["epochs"] == 1 and result["metrics"]["batch_size"] == 64
    assert "environment is up to date" in done.stdout  # bootstrapped once, by the hlb test
    record = json.loads((latest_record(ws, "train-david") / "result.json").read_text())
    assert record["outcome"] == "finished" and record["result"] == result


@pytest.mark.parametrize("args,needle", [
    (["train-hlb", "--epochs", "0"], "--epochs"),
    (["train-hlb", "--batch-size", "0"], "--batch-size"),
    (["train-david", "--batch-size", "0"], "--batch-size"),
    (["train-david", "--epochs", "0"], "--epochs"),
    (["train-hlb", "--subset", "0"], "--subset"),
    (["train-hlb", "--impl", "workspace", "--synthetic"], "only apply to the builtin trainer"),
])
def test_bad_trainer_options_are_one_line_errors(sshd, tmp_path, args, needle):
    from integration import one_line_error

    ws = make_workspace(tmp_path)
    remote = unique_remote_dir()
    assert needle in one_line_error(cli(sshd, ws, *args, REMOTE_DIR=remote, TRAIN_IMPL="builtin"))
    assert not remote_exists(sshd, remote)
