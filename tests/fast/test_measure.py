"""Measuring regressions in-process: the statistics, comparisons and their gate, baselines, epoch
curves, GPU summaries, the code of a run, and the report's HTML against the records."""

from __future__ import annotations

import html.parser
import random
import subprocess

import pytest

from remote_run import compare, groups, records, report, stats
from remote_run.errors import Failure, Kind


def test_welch_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for _ in range(200):
        a = [rng.gauss(0, 1 + 3 * rng.random()) for _ in range(rng.randint(2, 9))]
        b = [rng.gauss(2 * rng.random(), 1 + rng.random()) for _ in range(rng.randint(2, 9))]
        ours, theirs = stats.welch(a, b), scipy_stats.ttest_ind(b, a, equal_var=False)
        assert ours.p == pytest.approx(theirs.pvalue, abs=1e-10)
        assert ours.t == pytest.approx(theirs.statistic, abs=1e-10)


def test_welch_needs_two_runs_a_side_and_handles_no_spread():
    assert stats.welch([1.0], [2.0, 3.0]) is None
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert stats.welch([1.0, 1.0], [2.0, 2.0]).p == 0.0


@pytest.mark.parametrize("name, expected", [
    ("ema_val_acc", 1), ("images_per_second", 1), ("elapsed_seconds", -1), ("train_loss", -1), ("train_epochs", 0),
    ("top1_accuracy", 1), ("val_f1", 1), ("latency_ms", -1), ("peak_memory_mib", -1), ("answer", None),
])
def test_directions_builtin_and_guessed(name, expected):
    assert compare.direction(name) == expected


def test_overrides_win_over_names():
    assert compare.direction("val_loss", higher=["val_loss"]) == 1
    assert compare.direction("score", lower=["score"]) == -1


def side(name, kind, values: dict[str, list], commit="abc", options=None, task="train-hlb"):
    runs = []
    for i in range(max(len(v) for v in values.values())):
        runs.append({"id": f"{name}.{i}", "task": task,
                     "metrics": {k: v[i] for k, v in values.items() if i < len(v)},
                     "git": {"commit": commit, "dirty": False}, "options": options or {"epochs": 1.0, "seed": i},
                     "outcome": "finished"})
    return compare.Side(name, kind, name, runs)


def test_a_significant_drop_in_accuracy_is_worse_and_fails_the_gate():
    a = side("A", "group", {"ema_val_acc": [0.94, 0.941, 0.939, 0.94], "elapsed_seconds": [3.0, 3.1, 2.9, 3.0]})
    b = side("B", "group", {"ema_val_acc": [0.90, 0.901, 0.899, 0.9], "elapsed_seconds": [3.0, 2.9, 3.1, 3.05]})
    rows = {r.metric: r for r in compare.compare(a, b)}
    assert rows["ema_val_acc"].verdict == "worse" and rows["ema_val_acc"].regression
    assert rows["ema_val_acc"].test.p < 0.001
    assert rows["elapsed_seconds"].verdict == "no significant change" and not rows["elapsed_seconds"].regression
    lines = compare.regression_lines(list(rows.values()))
    assert lines == [lines[0]] and "ema_val_acc is worse by 0.04" in lines[0]


def test_tolerances_absolute_and_relative():
    a = side("A", "group", {"ema_val_acc": [0.94, 0.941, 0.939], "elapsed_seconds": [3.0, 3.05, 2.95]})
    b = side("B", "group", {"ema_val_acc": [0.93, 0.931, 0.929], "elapsed_seconds": [3.3, 3.35, 3.25]})
    tolerances = compare.parse_tolerances(["ema_val_acc=0.02", "elapsed_seconds=15%"])
    tolerant = {r.metric: r for r in compare.compare(a, b, tolerances=tolerances)}
    assert not tolerant["ema_val_acc"].regression and not tolerant["elapsed_seconds"].regression
    strict = {r.metric: r for r in compare.compare(a, b, tolerances=compare.parse_tolerances(["elapsed_seconds=5%"]))}
    assert strict["elapsed_seconds"].regression and strict["elapsed_seconds"].tolerance == pytest.approx(0.15)


def test_one_run_a_side_has_no_test_says_so_and_never_fails_the_gate():
    rows = compare.compare(side("A", "run", {"acc": [0.9]}, task="run"), side("B", "run", {"acc": [0.8]}, task="run"))
    assert rows[0].test is None and not rows[0].regression
    assert rows[0].verdict == ("worse, but one run a side cannot tell noise from change "
                               "(n=1: no test; --repeat 5 or more on each side would)")
    # one side with a spread says how many runs a side would see this difference
    rows = compare.compare(side("A", "group", {"acc": [0.90, 0.92, 0.91]}, task="run"),
                           side("B", "run", {"acc": [0.85]}, task="run"))
    assert not rows[0].regression and rows[0].needed == stats.pairs_needed(0.01 * 2 ** 0.5, 0.06)
    assert f"about {rows[0].needed} runs a side would" in rows[0].verdict


def test_the_gate_holds_false_alarms_across_metrics_with_holm():
    # Each alone would pass Welch at 0.05 (p about 0.03); as two gated metrics, Holm needs p <= 0.025.
    a = side("A", "group", {"acc": [0.90, 0.91, 0.92, 0.91, 0.90], "loss": [1.0, 1.1, 1.2, 1.1, 1.0]}, task="run")
    b = side("B", "group", {"acc": [0.889, 0.895, 0.907, 0.898, 0.886], "loss": [1.15, 1.21, 1.33, 1.24, 1.12]},
             task="run")
    rows = {r.metric: r for r in compare.compare(a, b)}
    assert all(0.025 < r.test.p < 0.05 for r in rows.values()), {m: r.test.p for m, r in rows.items()}
    assert not any(r.regression for r in rows.values())
    alone = compare.compare(side("A", "group", {"acc": [0.90, 0.91, 0.92, 0.91, 0.90]}, task="run"),
                            side("B", "group", {"acc": [0.889, 0.895, 0.907, 0.898, 0.886]}, task="run"))
    assert alone[0].regression  # one gated metric: its own test at 0.05


def test_the_builtin_trainers_gate_on_accuracy_and_time_with_default_tolerances():
    a = side("A", "group", {"ema_val_acc": [0.9400, 0.9402, 0.9398, 0.9401],
                            "elapsed_seconds": [3.0, 3.01, 2.99, 3.0], "images_per_second": [1e4, 1.01e4, 0.99e4, 1e4]})
    b = side("B", "group", {"ema_val_acc": [0.9395, 0.9397, 0.9393, 0.9396],
                            "elapsed_seconds": [3.04, 3.05, 3.03, 3.04],
                            "images_per_second": [0.9e4, 0.91e4, 0.89e4, 0.9e4]})
    rows = {r.metric: r for r in compare.compare(a, b)}
    assert rows["ema_val_acc"].verdict == "worse, within its tolerance" and rows["ema_val_acc"].tolerance == 0.001
    assert rows["elapsed_seconds"].verdict == "worse, within its tolerance"  # +1.3 % against 2 % of A's mean
    assert rows["elapsed_seconds"].tolerance == pytest.approx(0.06) and rows["elapsed_seconds"].gated
    assert rows["images_per_second"].verdict == "worse (not gated)" and not rows["images_per_second"].regression
    strict = {r.metric: r for r in compare.compare(a, b, tolerances=compare.parse_tolerances(["elapsed_seconds=0"]))}
    assert strict["elapsed_seconds"].regression and strict["elapsed_seconds"].tolerance_text == "0"
    assert compare.table(list(rows.values()))[1][6] == "0.001 (default)"


def test_each_compare_states_the_smallest_change_it_could_see_and_the_runs_for_the_tolerance():
    a = side("A", "group", {"ema_val_acc": [0.940, 0.942, 0.938, 0.941, 0.939]})
    b = side("B", "group", {"ema_val_acc": [0.939, 0.941, 0.940, 0.938, 0.942]})
    [row] = compare.compare(a, b, tolerances=compare.parse_tolerances(["ema_val_acc=0.001"]))
    error = (row.a.std ** 2 / 5 + row.b.std ** 2 / 5) ** 0.5
    assert row.detectable == pytest.approx(stats.detectable(error, row.test.df))
    [line] = compare.power_lines([row])
    assert line.startswith("ema_val_acc: with 5 and 5 runs and this spread, a change smaller than ")
    assert f"about {row.needed} runs a side" in line and row.needed > 5


def test_sides_measured_apart_say_that_drift_is_not_separated():
    a = side("A", "group", {"acc": [0.9, 0.91]})
    b = side("B", "group", {"acc": [0.9, 0.91]})
    for run in a.runs:
        run.update(started="2026-12-01T10:00:00+00:00", host="l1", gpus=["NVIDIA H100"])
    for run in b.runs:
        run.update(started="2026-12-01T10:30:00+00:00", host="l1", gpus=["NVIDIA H100"])
    assert compare.drift_lines(a, b) == []
    for run in b.runs:
        run.update(started="2026-12-01T13:00:00+00:00", host="l2")
    [line] = compare.drift_lines(a, b)
    assert "measured 3.0 h apart and on other hosts (l1 vs l2)" in line and "not separated" in line


@pytest.mark.parametrize("items", [["acc"], ["acc=x"], ["=1"], ["acc=-1"], ["acc=1%%"], ["a b=1"]])
def test_malformed_tolerances_are_refused(items):
    with pytest.raises(Failure, match="--tolerance"):
        compare.parse_tolerances(items)


def test_the_same_runs_and_no_common_metric_are_refused():
    a = side("A", "group", {"acc": [0.9, 0.91]})
    with pytest.raises(Failure, match="same runs"):
        compare.compare(a, a)
    with pytest.raises(Failure, match="no RESULT metric in common"):
        compare.compare(a, side("B", "group", {"loss": [0.1, 0.2]}))
    with pytest.raises(Failure, match="not a RESULT metric of both"):
        compare.compare(a, side("B", "group", {"acc": [0.9, 0.9]}), tolerances=compare.parse_tolerances(["loss=1"]))


def write_run(runs_dir, run_id, metrics, *, group=None, epochs_text="", gpu_csv="", started="2026-11-24T10:00:00+00:00",
              commit="abc"):
    record = records.RunRecord(run_id=run_id, task="train-hlb", host="l1", group=group, started=started,
                               git={"commit": commit, "dirty": False}, options={"epochs": 1.0})
    log = epochs_text + "RESULT_HLB " + " ".join(f"{k}={v}" for k, v in metrics.items()) + "\n"
    record.finish(log, 0, 1.0, "finished", gpu_csv)
    record.write(runs_dir / run_id, log, gpu_csv=gpu_csv)
    return record


def test_refs_resolve_runs_groups_prefixes_latest_and_baselines(tmp_path):
    runs = tmp_path / "runs"
    members = [write_run(runs, f"20261124T100000Z_train-hlb-x2.{i}", {"acc": 0.9 + i / 100},
                         group="20261124T100000Z_train-hlb-x2", started=f"2026-11-24T10:00:0{i}+00:00") for i in (1, 2)]
    groups.write(runs / "20261124T100000Z_train-hlb-x2", groups.summarize("20261124T100000Z_train-hlb-x2", members))
    write_run(runs, "20261124T090000Z_train-hlb", {"acc": 0.8}, started="2026-11-24T09:00:00+00:00")
    assert compare.resolve(runs, "20261124T09").ids == ["20261124T090000Z_train-hlb"]
    group = compare.resolve(runs, "20261124T10")  # the group, not its runs
    assert (group.kind, group.ids) == ("group", [m.run_id for m in members])
    assert compare.resolve(runs, "latest").name == "20261124T100000Z_train-hlb-x2"
    assert compare.resolve(runs, "20261124T100000Z_train-hlb-x2.1").kind == "run"
    with pytest.raises(Failure, match="ambiguous"):
        compare.resolve(runs, "2026")
    with pytest.raises(Failure, match="no run, group or baseline"):
        compare.resolve(runs, "nope")
    compare.save_baseline(runs, "main", "20261124T10")
    (runs / members[0].run_id / "result.json").write_text("{broken")
    baseline = compare.resolve(runs, "main")  # a snapshot: it needs no record any more
    assert baseline.kind == "baseline" and [r["metrics"]["acc"] for r in baseline.runs] == [0.91, 0.92]
    with pytest.raises(Failure, match="not valid JSON") as info:
        compare.resolve(runs, members[0].run_id)
    assert info.value.kind is Kind.ENVIRONMENT and info.value.fix == "delete that run's folder or restore the file"
    with pytest.raises(Failure, match="not valid"):
        compare.save_baseline(runs, "../escape", "latest")
    compare.remove_baseline(runs, "main")
    with pytest.raises(Failure) as info:
        compare.load_baseline(runs, "main")
    assert (info.value.problem, info.value.kind) == ("no baseline named 'main'", Kind.USAGE)


EPOCH_TABLE = """device: cpu
  epoch train_loss train_acc  val_acc  time_s
   0.50     1.7811    0.6553   0.9536    8.13
   1.00     1.1000    0.7000   0.9500    7.00
RESULT_HLB ema_val_acc=0.95
"""


def test_epochs_come_from_epoch_lines_or_the_trainers_table():
    table = records.parse_epochs(EPOCH_TABLE)
    assert [(e["epoch"], e["val_acc"], e["wall_s"]) for e in table] == [(0.5, 0.9536, 8.13), (1.0, 0.95, 15.13)]
    lines = records.parse_epochs("noise\nEPOCH epoch=1 loss=0.5 wall_s=3\nEPOCH epoch=2 loss=0.4\nEPOCH\n")
    assert lines == [{"epoch": 1, "loss": 0.5, "wall_s": 3}, {"epoch": 2, "loss": 0.4}]


GPU_CSV = "".join(f"2026/11/24 10:00:{i:02d}.000, 0, GPU-a, {u}, {m}, 81559, 70.0\n"
                  for i, (u, m) in enumerate([(10, 1000), (30, 5000), (29, 4000)]))


def test_gpu_use_is_summarised_and_a_short_run_not_called_idle():
    record = records.RunRecord(run_id="r", task="run", host="l1")
    record.finish("RESULT_X a=1\n", 0, 1.0, "finished", GPU_CSV)
    assert record.gpu_usage == {"samples": 3, "sample_times": 3, "mean_utilization": 23.0, "max_utilization": 30.0,
                                "peak_memory_mib": 5000.0, "mean_power_w": 70.0}
    assert not [w for w in record.warnings if w.startswith("GPU idle")]  # when it is: tests/fast/test_project.py
    assert records.gpu_usage("NVIDIA-SMI has failed\n") is None


def test_the_code_of_a_run_is_the_commit_the_diff_and_the_untracked_files_synced(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()

    def git(*args):
        return subprocess.run(["git", "-C", str(ws), *args], check=True, capture_output=True, text=True)

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (ws / "train.py").write_text("print(1)\n")
    git("add", "train.py")
    git("commit", "-qm", "first")
    (ws / "train.py").write_text("print(2)\n")
    (ws / "new.py").write_text("x = 1\n")
    (ws / "ignored.bin").write_bytes(b"\0" * 10)

    class Runner:
        def __call__(self, argv, **kwargs):
            done = subprocess.run(argv, capture_output=True, text=True, errors="surrogateescape")
            from invoke.runners import Result
            return Result(stdout=done.stdout, stderr=done.stderr, exited=done.returncode)

    state, diff = records.code_state(Runner(), ws, synced={"train.py", "new.py"})
    assert state["dirty"] is True and b"+print(2)" in diff and state["diff_bytes"] == len(diff)
    assert [u["path"] for u in state["untracked"]] == ["new.py"]  # ignored.bin is not synced
    (ws / "new.py").write_text("x = 2\n")
    later, _ = records.code_state(Runner(), ws, synced={"train.py", "new.py"})
    assert records.code_differences(state, later) == ["untracked new.py changed"]


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.charts, self.rows, self.text, self._cell = [], {}, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.charts.append(attrs["data-chart"])
        if tag == "tr" and "data-run" in attrs:
            self._cell = self.rows.setdefault(attrs["data-run"], [])

    def handle_endtag(self, tag):
        if tag == "tr":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None and data.strip():
            self._cell.append(data.strip())
        self.text.append(data)


def test_the_report_shows_the_records_tables_curves_spread_and_gpu(tmp_path):
    pytest.importorskip("matplotlib")
    runs = tmp_path / "runs"
    members = [write_run(runs, f"G.{i}", {"ema_val_acc": 0.9 + i / 100, "elapsed_seconds": 3 + i}, group="G",
                         epochs_text=EPOCH_TABLE.replace("RESULT_HLB ema_val_acc=0.95\n", ""),
                         gpu_csv=GPU_CSV if i == 1 else "",
                         started=f"2026-11-24T10:00:0{i}+00:00") for i in (1, 2)]
    groups.write(runs / "G", groups.summarize("G", members))
    path = report.write(runs, [])
    page = Page()
    page.feed(path.read_text())
    assert set(page.rows) == {"G.1", "G.2"}
    assert page.rows["G.1"][:3] == ["G.1", "train-hlb", "l1"]
    assert "ema_val_acc=0.91 elapsed_seconds=4" in page.rows["G.1"]
    assert page.charts == ["epoch:train_loss", "wall:train_loss", "epoch:train_acc", "wall:train_acc",
                           "epoch:val_acc", "wall:val_acc", "group:G:ema_val_acc", "group:G:elapsed_seconds", "gpu:G.1"]
    text = "".join(page.text)
    assert "G.1" in text and "G.2" in text  # the curves' legends name the runs
    assert "http" not in path.read_text().replace("http://www.w3.org", "").replace("http://purl.org", "").replace(
        "http://creativecommons.org", "").replace("https://matplotlib.org", "")  # nothing to fetch
