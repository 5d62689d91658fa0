"""Pure helpers: quoting, RESULT parsing, nvidia-smi parsing, records, sync rules."""

import json
import subprocess
import threading

import pytest

from remote_run import gpu, records, settings, shell, sync
from remote_run.host import gpus as gpus_host

NASTY = ["a b", "it's", '"q"', "$(touch /tmp/canary)", "`id`", "x;y", "new\nline", "-rf", "naïve", "*"]


@pytest.mark.parametrize("arg", NASTY)
def test_join_round_trips_through_a_real_shell(arg):
    out = subprocess.run(["sh", "-c", shell.join(["printf", "%s", arg])], capture_output=True, text=True)
    assert out.stdout == arg


def test_script_passes_values_as_positional_parameters():
    argv = shell.script('printf "%s|" "$@"', *NASTY)
    out = subprocess.run(["sh", "-c", shell.join(argv)], capture_output=True, text=True)
    assert out.stdout == "|".join(NASTY) + "|"


def test_summary_shortens_inline_scripts():
    assert shell.summary(["sh", "-c", "a\nb\nc", "x y"]) == "sh -c '<3-line script>' 'x y'"


def test_parse_result_takes_the_last_line_and_types_values():
    text = ("noise\nRESULT_HLB elapsed_seconds=1.0 train_epochs=1 ema_val_acc=0.5\n"
            "RESULT_HLB elapsed_seconds=12.34 train_epochs=11.5 ema_val_acc=None\ntrailer\n")
    assert records.parse_result(text) == {
        "name": "RESULT_HLB", "metrics": {"elapsed_seconds": 12.34, "train_epochs": 11.5, "ema_val_acc": None}}
    assert records.parse_result("no result here") is None
    assert records.parse_result("RESULT_DAVID epochs=12 batch_size=512")["metrics"] == {"epochs": 12, "batch_size": 512}


def test_warnings_and_hints_recognise_known_signatures():
    log = (
        "/x.py:3: FutureWarning: You are using `torch.load` with `weights_only=False`\n"
        "DeprecationWarning: `np.float` is a deprecated alias for the builtin `float`\n"
        "ModuleNotFoundError: No module named 'cvlization'\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
        "OSError: [Errno 28] No space left on device\n"
    )
    kinds = [w.split(":")[0] for w in records.notable_warnings(log)]
    assert "torch.load FutureWarning" in kinds and "numpy alias" in kinds
    found = " ".join(records.hints(log))
    assert "'cvlization'" in found and "--batch-size" in found and "disk is full" in found
    assert records.hints("all good") == []


GPUS = "0, NVIDIA H100 80GB HBM3, GPU-aaa, 12000, 81559, 97\n1, NVIDIA H100 80GB HBM3, GPU-bbb, 1, 81559, 0\n"
APPS = "GPU-aaa, 4242, python train.py, 11990\n"


def test_nvidia_smi_parsing_and_busy_detection():
    gpus = gpus_host.parse(GPUS, APPS)
    assert [(g["index"], g["memory_used"], g["utilization"]) for g in gpus] == [(0, 12000, 97), (1, 1, 0)]
    assert gpus[0]["processes"] == [{"pid": 4242, "name": "python train.py", "memory": 11990}]
    assert gpus[1]["processes"] == []
    assert [g["index"] for g in gpus_host.visible(gpus, "1")] == [1]
    assert [g["index"] for g in gpus_host.visible(gpus, "GPU-bbb")] == [1]
    assert [g["index"] for g in gpus_host.visible(gpus, "")] == [0, 1]
    assert "4242 python train.py (11990 MiB)" in gpu.show_table(gpus)


def test_nvidia_smi_na_fields_and_commas_in_names():
    [one] = gpus_host.parse("0, Tesla T4, rev, A, GPU-x, [N/A], 15360, [Not Supported]\n", "")
    assert one["name"] == "Tesla T4, rev, A" and one["memory_used"] is None and one["utilization"] is None


def test_record_writes_markdown_and_json_without_overwriting_a_log(tmp_path):
    rec = records.RunRecord(run_id="20260101T000000Z_train-hlb", task="train-hlb", host="l1", options={"epochs": 1.0},
                            git={"commit": "abc", "dirty": True}, runner="print(1)\n",
                            runner_path="/tmp/x/scripts/run_hlb.py")
    rec.finish("RESULT_HLB elapsed_seconds=3.5 train_epochs=1 ema_val_acc=0.9\n", 0, 4.0, "finished")
    (tmp_path / "run.log").write_text("older")
    rec.write(tmp_path, "new text")
    assert (tmp_path / "run.log").read_text() == "older"
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["outcome"] == "finished" and data["result"]["metrics"]["ema_val_acc"] == 0.9
    md = (tmp_path / "log.md").read_text()
    assert "abc (dirty" in md and "RESULT_HLB" in md and "print(1)" in md
    assert records.RunRecord.load(tmp_path) == rec


def test_a_failed_record_names_the_fix_and_a_finished_one_has_no_hints(tmp_path):
    rec = records.RunRecord(run_id="r", task="run", host="l1")
    rec.finish("Traceback ...\nModuleNotFoundError: No module named 'foo'\n", 1, 1.0, "failed")
    assert rec.outcome == "failed"
    assert rec.hints == [records.HINTS[0][1].format("foo")]
    rec.finish("ModuleNotFoundError: No module named 'foo'\n", 0, 1.0, "finished")
    assert rec.hints == []  # a run that succeeded needs no fix, whatever it printed


def test_concurrent_claims_never_share_a_run_id(tmp_path):
    runs = tmp_path / "runs"
    claimed = []
    threads = [threading.Thread(target=lambda: claimed.append(records.claim_run_id("train-hlb", runs)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(claimed)) == 8 and all((runs / run_id).is_dir() for run_id in claimed)
    assert sorted(p.name for p in runs.iterdir()) == sorted(claimed)


def test_sync_rules_protect_remote_state_and_exclude_secrets_in_rsync_order(tmp_path):
    (tmp_path / ".remoteignore").write_text("# comment\n; also a comment\n*.ckpt\n  data/raw/  \n\n")
    s = settings.load(environ={"WORKSPACE": str(tmp_path), "SYNC_EXCLUDE": "data/raw,*.bin"})
    rules = sync.rsync_filters(s)
    assert rules[:2] == ["P /.venv/***", "P /.remote-run/***"]  # runs/ and data/ are the workspace's
    assert rules.index("+ .env.example") < rules.index("- .env") < rules.index("- .env.*")
    assert rules[5:] == ["- /var/runs/", "- data/raw/", "- *.ckpt", "- data/raw", "- *.bin", "- .git", "- var",
                         "- .venv", "- __pycache__"]
