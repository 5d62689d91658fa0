"""`inv report`: one self-contained HTML page (RUNS_DIR/report.html) to look at runs: the runs
table, each per-epoch metric against epoch and against wall time (a line per run), the spread of
each group's RESULT metrics, each A/B's pairs and its verdict (remote_run.against), and each run's
GPU utilisation and memory over time.

Charts are drawn with matplotlib (the `report` extra) and inlined as SVG with their text kept as
text: the page needs no network and no other file.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

from . import against, compare, groups
from .errors import Failure, Kind
from .records import RunRecord

DEFAULT_RUNS = 10
NOT_CURVES = {"epoch", "wall_s", "time_s"}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
figure.ab { display: inline-table; } figure.ab figcaption { display: table-caption; caption-side: bottom; }
.finished { color: #176f2c; } .failed, .killed, .connection.lost { color: #a11; }
.regression { color: #a11; font-weight: bold; }
"""
WORSE, BETTER, SIDE_A, SIDE_B = "#c0392b", "#1e8449", "#1f77b4", "#e67e22"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise Failure("the report needs matplotlib", "pip install 'remote-run[report]'", Kind.ENVIRONMENT) from None
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable, no font files
    import matplotlib.pyplot as plt

    return plt


def select(runs_dir: Path, refs: list[str]) -> tuple[list[RunRecord], list[dict], list[str]]:
    """(run records, group summaries, A/B ids) for the refs, or by default the latest group or A/B,
    or the latest ten runs. An A/B brings its runs that have a record."""
    records: dict[str, RunRecord] = {}
    summaries: dict[str, dict] = {}
    comparisons: list[str] = []
    if not refs:
        latest = compare.resolve(runs_dir, "latest")
        if latest.kind in ("group", "comparison"):
            refs = [latest.name]
        else:
            known = compare._records(runs_dir)
            runs = sorted((i for i, kind in known.items() if kind == "run"),
                          key=lambda i: (compare._started(runs_dir, i, "run"), i))
            refs = runs[-DEFAULT_RUNS:]
    for ref in refs:
        side = compare.resolve(runs_dir, ref)
        if side.kind == "group":
            summaries[side.name] = groups.load(runs_dir / side.name)
        ids = [run["id"] for run in side.runs]
        if side.kind == "comparison":
            comparisons += [side.name] if side.name not in comparisons else []
            plan = against.load_plan(runs_dir, side.name)
            ids = [f"{side.name}.{i}" for i in range(1, len(plan.order) + 1)] if plan else []
        for run_id in ids:
            record = RunRecord.load(runs_dir / run_id)
            if record is not None:
                records.setdefault(record.run_id, record)
    return list(records.values()), [s for s in summaries.values() if s], comparisons


def write(runs_dir: Path, refs: list[str]) -> Path:
    plt = _pyplot()
    records, summaries, comparisons = select(runs_dir, refs)
    if not records and not comparisons:
        raise Failure(f"nothing to report: no run records for {', '.join(refs) if refs else 'the latest runs'} "
                      f"in {runs_dir}")
    parts = [f"<h1>remote-run report</h1><p>{len(records)} run{'s' if len(records) != 1 else ''}"
             f"{', ' + str(len(summaries)) + ' group' + ('s' if len(summaries) != 1 else '') if summaries else ''}"
             f"{', ' + str(len(comparisons)) + ' A/B' + ('s' if len(comparisons) != 1 else '') if comparisons else ''}"
             f" from {html.escape(str(runs_dir))}</p>"]
    for ab_id in comparisons:
        parts.append(ab_section(plt, runs_dir, ab_id))
    if records:
        parts += ["<h2>Runs</h2>", runs_table(records)]
    curves = [name for name in dict.fromkeys(k for r in records for e in r.epochs for k in e) if name not in NOT_CURVES]
    if curves:
        parts.append("<h2>Per-epoch metrics</h2>")
        for name in curves:
            parts.append(_figure(plt, f"epoch:{name}", f"{name} by epoch",
                                 _curve(plt, records, name, "epoch", "epoch")))
            if any(any("wall_s" in e and name in e for e in r.epochs) for r in records):
                parts.append(_figure(plt, f"wall:{name}", f"{name} over wall time",
                                     _curve(plt, records, name, "wall_s", "wall time (s)")))
    for summary in summaries:
        parts.append(f"<h2>Group {html.escape(summary['group'])}</h2>")
        parts.append(group_table(summary))
        for name in [m for m in summary["metrics"] if compare.direction(m) != 0]:  # not the options echoed back
            parts.append(_figure(plt, f"group:{summary['group']}:{name}", f"{name}: each run, mean ± std",
                                 _spread(plt, summary, name, {r.run_id: r for r in records})))
    timelines = [(r, _gpu_rows(runs_dir / r.run_id / "gpu.csv")) for r in records]
    timelines = [(r, rows) for r, rows in timelines if rows]
    if timelines:
        parts.append("<h2>GPU use</h2>")
        for record, rows in timelines:
            parts.append(_figure(plt, f"gpu:{record.run_id}", f"GPU of {record.run_id}", _gpu_chart(plt, record, rows)))
    path = runs_dir / "report.html"
    path.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><title>remote-run report</title>"
                    f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n", encoding="utf-8")
    return path


def runs_table(records: list[RunRecord]) -> str:
    head = ["run", "task", "host", "GPU", "commit", "options", "outcome", "RESULT"]
    rows = []
    for r in records:
        gpu = ", ".join(str(g.get("name")) for g in r.gpu) or "—"
        commit = (r.git.get("commit") or "no git")[:12] + (" (dirty)" if r.git.get("dirty") else "")
        options = ", ".join(f"{k}={v}" for k, v in r.options.items())
        metrics = " ".join(f"{k}={v}" for k, v in ((r.result or {}).get("metrics") or {}).items())
        rows.append([r.run_id, r.task, r.host, gpu, commit, options, r.outcome, metrics])
    body = "".join("<tr data-run='" + html.escape(row[0]) + "'>" + "".join(
        f"<td class='{html.escape(cell) if i == 6 else ''}'>{html.escape(str(cell))}</td>"
        for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return "<table id='runs'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + body + "</table>"


def group_table(summary: dict) -> str:
    rows = groups.table(summary)
    return ("<table class='group' data-group='" + html.escape(summary["group"]) + "'><tr>"
            + "".join(f"<th>{h}</th>" for h in rows[0]) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
            + "</table>")


def ab_section(plt, runs_dir: Path, ab_id: str) -> str:
    """An A/B: what it ran (against.lines), its regressions, the table of its rows, and a figure per
    gated metric (the others smaller); one line when it has not ended."""
    head = f"<h2>A/B {html.escape(ab_id)}</h2>"
    try:
        result = against.load(runs_dir, ab_id)
    except Failure as failure:
        plan = against.load_plan(runs_dir, ab_id)
        line = failure.line
        if plan is not None and not (runs_dir / ab_id / against.RESULT).exists():
            done = sum((runs_dir / f"{ab_id}.{i}" / "result.json").is_file() for i in range(1, len(plan.order) + 1))
            line = (f"A/B {ab_id} has not ended here: {done} of its {len(plan.order)} runs recorded, no comparison "
                    f"yet; follow it with `inv logs --follow --run {ab_id}`")
        return f"{head}<p class='unfinished' data-ab='{html.escape(ab_id)}'>{html.escape(line)}</p>"
    parts = [head, "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in against.lines(result))
             + "".join(f"<li class='regression'>{html.escape(line)}</li>" for line in result["regressions"]) + "</ul>"]
    if not result["rows"]:
        parts.append("<p>no pair of runs finished with a RESULT on both sides: nothing to compare</p>")
        return "".join(parts)
    rows = against.table(result)
    parts.append("<table class='ab' data-ab='" + html.escape(ab_id) + "'><tr>"
                 + "".join(f"<th>{html.escape(h)}</th>" for h in rows[0]) + "</tr>"
                 + "".join(f"<tr class='{'regression' if r['regression'] else ''}'>"
                           + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                           for r, row in zip(result["rows"], rows[1:])) + "</table>")
    parts.append("<p>Each figure: left, each pair's A and B joined by a line (red where B is worse, green where "
                 "better), the sides' means in black; right, B − A of each pair and their mean with its 95 % interval, "
                 "the tolerance around 0 in grey, the worse side beyond it in red.</p>")
    gated = [r for r in result["rows"] if r["gated"]]
    others = [r for r in result["rows"] if not r["gated"] and r["direction"] != 0]  # not the options echoed back
    for r in gated + others:
        key = f"ab:{ab_id}:{r['metric']}" if r["gated"] else f"ab-other:{ab_id}:{r['metric']}"
        parts.append(_figure(plt, key, _ab_caption(r), _pairs(plt, r, small=not r["gated"]), "ab"))
    return "".join(parts)


def _ab_caption(r: dict) -> str:
    said = [f"{r['metric']}: {r['verdict']}",
            f"B − A {r['diff']:+.4g}" + (f" [{r['low']:+.4g}, {r['high']:+.4g}] (95 % CI)" if r["low"] is not None
                                         else "")]
    if r["p"] is not None:
        said.append(f"p = {r['p']:.3g} ({r['test']})")
    if r["direction"] in (1, -1):
        said.append(f"tolerance {r['tolerance_text']}: ±{r['tolerance']:.4g}; "
                    f"{'lower' if r['direction'] == 1 else 'higher'} is worse")
    return "; ".join(said)


def _pairs(plt, r: dict, small: bool = False):
    """Left: each pair's A and B joined by a line. Right: B − A per pair, their mean with its 95 %
    interval, the tolerance band around 0 and, shaded red, the worse side beyond it."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(4.6, 2.5) if small else (6.2, 3.1))
    for a, b in zip(r["a"], r["b"]):
        worse = r["direction"] in (1, -1) and (b - a) * r["direction"] < 0
        left.plot([0, 1], [a, b], color=WORSE if worse else BETTER if r["direction"] in (1, -1) else "grey",
                  alpha=0.6, linewidth=1)
    left.scatter([0] * len(r["a"]), r["a"], color=SIDE_A, zorder=3, s=18)
    left.scatter([1] * len(r["b"]), r["b"], color=SIDE_B, zorder=3, s=18)
    for x, mean in ((0, r["a_mean"]), (1, r["b_mean"])):
        left.plot([x - 0.15, x + 0.15], [mean, mean], color="black", linewidth=2, zorder=4)
    left.set_xticks([0, 1], ["A (ref)", "B (tree)"])
    left.set_xlim(-0.4, 1.4)
    left.set_ylabel(r["metric"])
    left.grid(alpha=0.3, axis="y")

    diffs = [b - a for a, b in zip(r["a"], r["b"])]
    tolerance, low, high = r["tolerance"] or 0.0, r["low"], r["high"]
    span = [0.0, r["diff"], *diffs, *((low, high) if low is not None else ()), tolerance, -tolerance]
    pad = (max(span) - min(span)) * 0.12 or abs(r["diff"]) or 1.0
    bottom, top = min(span) - pad, max(span) + pad
    if tolerance:
        right.axhspan(-tolerance, tolerance, color="grey", alpha=0.25, label=f"tolerance ±{tolerance:.3g}")
    if r["direction"] in (1, -1):
        worse_side = (tolerance, top) if r["direction"] == -1 else (bottom, -tolerance)
        right.axhspan(*worse_side, color=WORSE, alpha=0.12, label="worse beyond it")
    right.axhline(0, color="black", linewidth=0.8)
    right.scatter([-0.5] * len(diffs), diffs, color="grey", s=14, zorder=2, label="B − A of each pair")
    if low is not None:
        right.errorbar([0.3], [r["diff"]], yerr=[[r["diff"] - low], [high - r["diff"]]], fmt="o", color="black",
                       capsize=6, zorder=3, label="mean, 95 % CI")
    else:
        right.scatter([0.3], [r["diff"]], color="black", zorder=3, label="mean")
    right.set_ylim(bottom, top)
    right.set_xlim(-1, 1)
    right.set_xticks([])
    right.set_ylabel("B − A")
    right.grid(alpha=0.3, axis="y")
    if r["a_mean"]:
        scale = 100 / abs(r["a_mean"])
        right.secondary_yaxis("right", functions=(lambda d: d * scale, lambda q: q / scale)).set_ylabel("% of A")
    if not small:  # a small one's legend is wider than its panel: the paragraph above the figures says it
        right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.03), ncol=2, frameon=False)
    title = (f"{r['metric']}: {r['verdict']}{' (a regression)' if r['regression'] else ''}"
             + (f"\np = {r['p']:.3g} ({r['test']})" if r["p"] is not None else ""))
    colour = WORSE if r["regression"] else BETTER if r["verdict"] == "better" else "black"
    fig.suptitle(title, fontsize=9 if small else 11, color=colour)
    fig.tight_layout()
    return fig


def _figure(plt, key: str, caption: str, fig, css: str = "") -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prologue: the SVG sits inside the HTML
    css = f" class='{css}'" if css else ""
    return f"<figure{css} data-chart='{html.escape(key)}'>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _curve(plt, records: list[RunRecord], name: str, x_key: str, x_label: str):
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in records:
        points = [(e[x_key], e[name]) for e in r.epochs
                  if isinstance(e.get(x_key), (int, float)) and isinstance(e.get(name), (int, float))]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, label=r.run_id)
    ax.set_xlabel(x_label)
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _spread(plt, summary: dict, name: str, by_id: dict):
    metric = summary["metrics"][name]
    values = [groups.metrics_of(by_id[run_id])[name] for run_id in metric["runs"] if run_id in by_id]
    fig, ax = plt.subplots(figsize=(4, 3.2))
    ax.scatter(range(1, len(values) + 1), values, label="runs", zorder=3)
    ax.axhline(metric["mean"], color="black", linewidth=1, label=f"mean {metric['mean']:.4g}")
    if metric["std"] is not None:
        ax.axhspan(metric["mean"] - metric["std"], metric["mean"] + metric["std"], alpha=0.15,
                   label=f"± std {metric['std']:.2g}")
    ax.set_xticks(range(1, len(values) + 1))
    ax.set_xlabel("run of the group")
    ax.set_ylabel(name)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def _gpu_rows(path: Path) -> list[dict]:
    """The host's samples: seconds since the first one, GPU index, utilisation, memory used."""
    from datetime import datetime

    from .records import GPU_COLUMNS, _float

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows, first = [], None
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(GPU_COLUMNS):
            continue
        try:
            moment = datetime.strptime(cells[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        first = moment if first is None else first
        rows.append({"t": moment - first, "index": cells[1], "utilization": _float(cells[3]),
                     "memory_used": _float(cells[4])})
    return rows


def _gpu_chart(plt, record: RunRecord, rows: list[dict]):
    fig, (util, memory) = plt.subplots(2, 1, figsize=(6, 3.6), sharex=True)
    for index in dict.fromkeys(r["index"] for r in rows):
        mine = [r for r in rows if r["index"] == index]
        util.plot([r["t"] for r in mine], [r["utilization"] for r in mine], label=f"GPU {index}")
        memory.plot([r["t"] for r in mine], [r["memory_used"] for r in mine], label=f"GPU {index}")
    util.set_ylabel("utilisation %")
    util.set_ylim(0, 100)
    memory.set_ylabel("memory MiB")
    memory.set_xlabel("seconds since the run started")
    util.legend(fontsize=7)
    util.grid(alpha=0.3)
    memory.grid(alpha=0.3)
    return fig
