"""`inv report`'s view of an A/B (remote_run.against): a section per A/B with its table, its lines
and a figure per gated metric, from records made as a real A/B makes them (against.finish)."""

from __future__ import annotations

import html.parser
import json
import random
import shutil

import pytest

from remote_run import against, groups, records, report

pytest.importorskip("matplotlib")

AB = "20261208T100000Z_train-hlb-ab6"


def write_run(runs_dir, run_id, metrics, *, group, started):
    record = records.RunRecord(run_id=run_id, task="train-hlb", host="l1", group=group, started=started,
                               git={"commit": "c" * 40, "dirty": False}, options={"epochs": 1.0})
    log = "RESULT_HLB " + " ".join(f"{k}={v}" for k, v in metrics.items()) + "\n"
    record.finish(log, 0, 1.0, "finished")
    record.write(runs_dir / run_id, log)
    return record


def make_ab(runs_dir, ab_id=AB, *, slower=0.0, pairs=6, recorded=None, finish=True):
    """An A/B of train-hlb with B ``slower`` (a share of A's time); ``recorded`` runs of it written."""
    plan = against.Plan(id=ab_id, task="train-hlb", ref="main", commit="c" * 40, pairs=pairs,
                        order=against.interleaved(pairs), started="2026-12-08T10:00:00+00:00")
    against.save_plan(runs_dir, plan)
    rng = random.Random(3)
    found = []
    for i, (side, _pair) in enumerate(plan.members[:recorded], start=1):
        seconds = 3.0 * (1 + (slower if side == "B" else 0.0)) + rng.gauss(0, 0.01)
        metrics = {"ema_val_acc": round(0.94 + rng.gauss(0, 0.0005), 5), "elapsed_seconds": round(seconds, 4),
                   "images_per_second": round(50000 / seconds, 1), "train_epochs": 1}
        found.append(write_run(runs_dir, f"{ab_id}.{i}", metrics, group=ab_id,
                               started=f"2026-12-08T10:00:{i:02d}+00:00"))
    if finish:
        against.finish(runs_dir, plan, found)
    return plan


class Page(html.parser.HTMLParser):
    """The page's sections (h2), charts (data-chart), captions, run rows and A/B lines, as text."""

    def __init__(self):
        super().__init__()
        self.sections, self.charts, self.captions, self.runs, self.unfinished = [], [], [], [], []
        self.table_rows, self._into, self._row = [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self._into = self.sections
            self.sections.append("")
        elif tag == "figure":
            self.charts.append(attrs["data-chart"])
        elif tag == "figcaption":
            self._into = self.captions
            self.captions.append("")
        elif tag == "p" and attrs.get("class") == "unfinished":
            self._into = self.unfinished
            self.unfinished.append("")
        elif tag == "tr" and "data-run" in attrs:
            self.runs.append(attrs["data-run"])
        elif tag == "table" and attrs.get("class") == "ab":
            self._row = []
        elif tag == "tr" and self._row is not None:
            self.table_rows.append((attrs.get("class"), []))

    def handle_endtag(self, tag):
        if tag in ("h2", "figcaption", "p"):
            self._into = None
        if tag == "table":
            self._row = None

    def handle_data(self, data):
        if self._into is not None:
            self._into[-1] += data
        if self._row is not None and self.table_rows and data.strip():
            self.table_rows[-1][1].append(data.strip())


def read(path) -> tuple[Page, str]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return page, text


def test_a_planted_slowdown_is_drawn_pair_by_pair_with_its_interval_tolerance_and_verdict(tmp_path):
    runs = tmp_path / "runs"
    make_ab(runs, slower=0.03)
    result = json.loads((runs / AB / against.RESULT).read_text())
    rows = {r["metric"]: r for r in result["rows"]}
    slow = rows["elapsed_seconds"]
    assert slow["regression"] and slow["verdict"] == "worse"  # the planted 3 % is beyond the 2 % tolerance

    page, text = read(report.write(runs, [AB]))
    assert page.sections[0] == f"A/B {AB}"
    # one figure per gated metric (train-hlb's accuracy and time), then the others smaller; no echoed option
    assert page.charts == [f"ab:{AB}:ema_val_acc", f"ab:{AB}:elapsed_seconds", f"ab-other:{AB}:images_per_second"]
    assert sorted(page.runs) == sorted(f"{AB}.{i}" for i in range(1, 13))  # the members, as runs
    caption = page.captions[1]
    assert caption.startswith("elapsed_seconds: worse; ")
    assert f"[{slow['low']:+.4g}, {slow['high']:+.4g}] (95 % CI)" in caption
    assert f"p = {slow['p']:.3g} (paired t)" in caption
    assert f"tolerance 2 % (default): ±{slow['tolerance']:.4g}; higher is worse" in caption
    assert "elapsed_seconds: worse (a regression)" in text  # the figure's title, kept as SVG text
    # the table: every row, the regression marked, with its interval as against.table writes it
    assert [cells for _, cells in page.table_rows[1:]] == [list(row) for row in against.table(result)[1:]]
    assert ("regression", list(against.table(result)[2])) in page.table_rows
    assert f"+{slow['diff']:.4g} [{slow['low']:+.3g}, {slow['high']:+.3g}]" in text
    for line in against.lines(result) + result["regressions"]:
        assert html.escape(line, quote=False) in text
    assert "in the order A B B A A B B A A B B A" in text


def test_an_a_a_like_run_says_no_change_and_is_the_default_when_it_is_the_latest(tmp_path):
    runs = tmp_path / "runs"
    members = [write_run(runs, f"G.{i}", {"ema_val_acc": 0.9, "elapsed_seconds": 3.0 + i}, group="G",
                         started="2026-12-07T10:00:00+00:00") for i in (1, 2)]
    groups.write(runs / "G", groups.summarize("G", members))  # an older group: not shown by default
    make_ab(runs)
    page, text = read(report.write(runs, []))
    assert [s for s in page.sections if s.startswith(("A/B", "Group"))] == [f"A/B {AB}"]
    assert [c for c in page.charts if c.startswith("ab:")] == [f"ab:{AB}:ema_val_acc", f"ab:{AB}:elapsed_seconds"]
    assert [c.split(";")[0] for c in page.captions] == [
        "ema_val_acc: no significant change", "elapsed_seconds: no significant change",
        "images_per_second: no significant change (not gated)"]
    assert "class='regression'" not in text and "(a regression)" not in text  # no line, row or title says so

    page, _ = read(report.write(runs, ["G", AB]))  # both asked for: the group's view stays as it was
    assert page.sections[0] == f"A/B {AB}" and "Group G" in page.sections
    assert "group:G:ema_val_acc" in page.charts and set(page.runs) >= {"G.1", "G.2"}


def test_an_unfinished_ab_is_one_line_and_its_recorded_runs(tmp_path):
    runs = tmp_path / "runs"
    make_ab(runs, pairs=5, recorded=3, finish=False)
    page, _ = read(report.write(runs, [AB]))
    assert page.unfinished == [f"A/B {AB} has not ended here: 3 of its 10 runs recorded, no comparison yet; "
                               f"follow it with `inv logs --follow --run {AB}`"]
    assert not [c for c in page.charts if c.startswith("ab")]
    assert page.runs == [f"{AB}.1", f"{AB}.2", f"{AB}.3"]

    for i in (1, 2, 3):
        shutil.rmtree(runs / f"{AB}.{i}")
    page, text = read(report.write(runs, []))  # the plan alone, and the latest record: no run table, no crash
    assert page.unfinished[0].startswith(f"A/B {AB} has not ended here: 0 of its 10 runs")
    assert "<h2>Runs</h2>" not in text
