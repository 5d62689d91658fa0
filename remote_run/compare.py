"""Did a change make a run better or worse, beyond noise? `inv compare A B`, named baselines, and
the gate that --fail-on-regression and --compare-to apply.

A side is a run, a --repeat group (its runs), or a saved baseline (a snapshot of runs' metrics).
Per RESULT metric present on both sides: mean ± standard deviation (n), the difference, Welch's
t-test when both sides have two runs or more, and a verdict that knows which way is better.

The gate's false alarms are held at ALPHA across every metric it gates on (those with a known
direction), by Holm–Bonferroni: one alarm among five noisy metrics is not five chances at 5 %. One
run a side has no test and never fails the gate: it cannot tell noise from change. Each compare
says the smallest change its runs could have seen (at 80 % power), and when the two sides were
measured apart (hours, hosts, GPUs) that the machine's drift is not separated from the change.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import groups, stats
from .errors import Failure, Kind
from .host.files import write_text
from .records import RunRecord

ALPHA = 0.05  # the gate's family-wise false-alarm rate over the metrics it gates on (Holm–Bonferroni)
POWER = 0.8  # for the smallest detectable change each compare states
DRIFT_SECONDS = 3600  # sides measured further apart than this: the machine's drift is not separated
# What the gate looks at: a task's own results, for the builtin trainers their accuracy and time
# (throughput is time seen the other way, the rest is shown, not gated); for any other task every
# metric whose direction is known. Options echoed back never count.
GATED = {"train-hlb": ("ema_val_acc", "elapsed_seconds"), "train-david": ("val_acc", "elapsed_seconds")}
# The practical threshold when --tolerance does not name a metric: a change this small is never a
# regression, significant or not. Times and rates: a share of A's mean; accuracies: points (a
# fraction's 0.001 is 0.1 point). NAME=0 gates on any significant change.
TIME_TOLERANCE = 2.0  # %
ACCURACY_TOLERANCE = 0.001  # of a fraction; 0.1 when the accuracy is given in percent
BASELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# +1: higher is better, -1: lower is better, 0: not a result (an option echoed back).
DIRECTIONS = {
    "ema_val_acc": 1, "val_acc": 1, "train_acc": 1, "images_per_second": 1, "elapsed_seconds": -1, "train_loss": -1,
    "train_epochs": 0, "epochs": 0, "batch_size": 0, "seed": 0,
}
# Words of a metric's name (split at "_") that tell its direction when no flag and no table does.
_UP = {"acc", "accuracy", "auc", "f1", "precision", "recall", "score", "throughput", "iou", "map", "bleu",
       "reward", "ips"}
_DOWN = {"loss", "error", "err", "time", "seconds", "sec", "s", "ms", "latency", "duration", "memory", "mib", "mb",
         "gb", "perplexity", "ppl", "wer", "cer"}
_RATE = re.compile(r"(^|_)per_(s|sec|second)($|_)")  # images_per_second: a rate, higher is better


def direction(name: str, higher=(), lower=()) -> int | None:
    """+1 when higher is better, -1 when lower is, 0 for an echoed option, None when unknown."""
    if name in higher:
        return 1
    if name in lower:
        return -1
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    if _RATE.search(name.lower()):
        return 1
    words = set(name.lower().split("_"))
    up, down = bool(words & _UP), bool(words & _DOWN)
    return 1 if up and not down else -1 if down and not up else None


@dataclass
class Side:
    """One side of a comparison: what the user named and the runs it stands for."""

    ref: str
    kind: str  # run, group or baseline
    name: str  # the run id, group id or baseline name
    runs: list = field(default_factory=list)  # [{"id", "task", "metrics", "git", "options"}]

    @property
    def ids(self) -> list[str]:
        return [run["id"] for run in self.runs]


def _run_entry(record: RunRecord) -> dict:
    return {"id": record.run_id, "task": record.task, "metrics": groups.metrics_of(record), "git": record.git,
            "options": record.options, "outcome": record.outcome, "host": record.host, "started": record.started,
            "gpus": sorted({str(g.get("name", "?")) for g in record.gpu or [] if isinstance(g, dict)})}


def _load_run(folder: Path) -> RunRecord:
    path = folder / "result.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Failure(f"cannot read {path}: {exc.strerror}", kind=Kind.ENVIRONMENT) from None
    except ValueError:
        raise Failure(f"{path} is not valid JSON (a corrupt record)", "delete that run's folder or restore the file",
                      Kind.ENVIRONMENT) from None
    record = RunRecord.load(folder)
    if record is None or not isinstance(data.get("result", {}) or {}, dict):
        raise Failure(f"{path} is not a run record remote-run can read", "delete that run's folder or restore the file",
                      Kind.ENVIRONMENT)
    return record


def _records(runs_dir: Path) -> dict[str, str]:
    """{id: "run" | "group" | "comparison"} of every record in RUNS_DIR (a comparison: an A/B,
    remote_run.against)."""
    found = {}
    if runs_dir.is_dir():
        for folder in runs_dir.iterdir():
            if (folder / "plan.json").is_file():
                found[folder.name] = "comparison"
            elif (folder / "summary.json").is_file():
                found[folder.name] = "group"
            elif (folder / "result.json").is_file():
                found[folder.name] = "run"
    return found


def resolve(runs_dir: Path, ref: str) -> Side:
    """A run id, a group id, a unique prefix of one, `latest`, or a saved baseline's name."""
    if not ref or "/" in ref or "\0" in ref or ref in (".", ".."):
        raise Failure(f"{ref!r} is not a run, group or baseline",
                      "give an id from `inv status`, `latest` or a name from `inv baseline.list`")
    known = _records(runs_dir)
    if ref == "latest":
        if not known:
            raise Failure(f"no runs recorded in {runs_dir} yet", "run something first")
        ref_id = max(known, key=lambda i: (_started(runs_dir, i, known[i]), i))
        member_of = _group_of(runs_dir, ref_id, known)
        return _side("latest", member_of or ref_id, runs_dir, known)
    baseline = baseline_path(runs_dir, ref)
    if BASELINE_NAME.match(ref) and baseline.is_file():
        return load_baseline(runs_dir, ref)
    if ref in known:
        return _side(ref, ref, runs_dir, known)
    matches = sorted(i for i in known if i.startswith(ref))
    groups_matched = [i for i in matches if known[i] == "group"]
    if groups_matched:  # a prefix of a group also matches its runs (GROUP.1, ...): the group is meant
        matches = [i for i in matches if known[i] == "group" or not any(i.startswith(g + ".") for g in groups_matched)]
    if len(matches) == 1:
        return _side(ref, matches[0], runs_dir, known)
    if matches:
        raise Failure(f"{ref!r} is ambiguous: it starts {len(matches)} records "
                      f"({', '.join(matches[:4])}{', ...' if len(matches) > 4 else ''})",
                      "give more of the id")
    raise Failure(f"no run, group or baseline named {ref!r} in {runs_dir}",
                  "see `inv status` (runs on the host) or `inv baseline.list`")


def _started(runs_dir: Path, record_id: str, kind: str) -> str:
    if kind == "comparison":
        from . import against

        plan = against.load_plan(runs_dir, record_id)
        return plan.started if plan else ""
    data = groups.load(runs_dir / record_id) if kind == "group" else None
    if data is not None:
        return data.get("started", "")
    record = RunRecord.load(runs_dir / record_id)
    return record.started if record else ""


def _group_of(runs_dir: Path, run_id: str, known: dict) -> str | None:
    record = RunRecord.load(runs_dir / run_id) if known.get(run_id) == "run" else None
    return record.group if record and record.group in known else None


def _side(ref: str, record_id: str, runs_dir: Path, known: dict) -> Side:
    if known[record_id] == "comparison":
        return Side(ref, "comparison", record_id)
    if known[record_id] == "group":
        summary = groups.load(runs_dir / record_id)
        if summary is None:
            raise Failure(f"{runs_dir / record_id / 'summary.json'} cannot be read (a corrupt record)",
                          "delete the group's folder", Kind.ENVIRONMENT)
        runs = [_run_entry(_load_run(runs_dir / run_id)) for run_id in summary["runs"] if (runs_dir / run_id).is_dir()]
        return Side(ref, "group", record_id, runs)
    return Side(ref, "run", record_id, [_run_entry(_load_run(runs_dir / record_id))])


# ------------------------------------------------------------------------------------ baselines

def baseline_path(runs_dir: Path, name: str) -> Path:
    return runs_dir / "baselines" / f"{name}.json"


def check_baseline_name(name: str) -> str:
    if not BASELINE_NAME.match(name or ""):
        raise Failure(f"baseline name {name!r} is not valid",
                      "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (no paths)")
    return name


def save_baseline(runs_dir: Path, name: str, ref: str) -> tuple[Side, bool]:
    """Keep a snapshot of what ``ref`` resolves to under ``name``; (the side, whether it replaced one)."""
    check_baseline_name(name)
    side = resolve(runs_dir, ref)
    path = baseline_path(runs_dir, name)
    replaced = path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "ref": ref, "kind": side.kind, "source": side.name, "runs": side.runs,
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_text(path, json.dumps(data, indent=2) + "\n")
    return side, replaced


def load_baseline(runs_dir: Path, name: str) -> Side:
    path = baseline_path(runs_dir, check_baseline_name(name))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Side(name, "baseline", f"{name} ({data['kind']} {data['source']})", data["runs"])
    except FileNotFoundError:
        raise Failure(f"no baseline named {name!r}",
                      f"save one with `inv baseline.save {name} REF` (see `inv baseline.list`)") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise Failure(f"{path} is not a baseline remote-run can read",
                      f"remove it with `inv baseline.rm {name}` and save it again", Kind.ENVIRONMENT) from None


def list_baselines(runs_dir: Path) -> list[dict]:
    found = []
    for path in sorted((runs_dir / "baselines").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            found.append({"name": data["name"], "kind": data["kind"], "source": data["source"], "n": len(data["runs"]),
                          "saved": data["saved"],
                          "commit": (data["runs"][0]["git"].get("commit") or "")[:12] if data["runs"] else ""})
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            found.append({"name": path.stem, "kind": "unreadable", "source": "", "n": 0, "saved": "", "commit": ""})
    return found


def remove_baseline(runs_dir: Path, name: str) -> None:
    path = baseline_path(runs_dir, check_baseline_name(name))
    if not path.is_file():
        raise Failure(f"no baseline named {name!r}", "`inv baseline.list` shows the saved ones")
    path.unlink()


# ----------------------------------------------------------------------------------- comparing

def parse_tolerances(items) -> dict[str, tuple[float, bool]]:
    """--tolerance NAME=0.2 (absolute) or NAME=5% (of A's mean): {name: (amount, relative)}."""
    found = {}
    for item in items or ():
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(%?)", item or "")
        if not match:
            raise Failure(f"--tolerance {item!r} is not valid",
                          "give NAME=AMOUNT or NAME=PERCENT%, e.g. ema_val_acc=0.2 or elapsed_seconds=5%")
        found[match[1]] = (float(match[2]), bool(match[3]))
    return found


def check_metric_names(flag: str, names) -> list[str]:
    for name in names or ():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name or ""):
            raise Failure(f"{flag} {name!r} is not a metric name (letters, digits and _ as in RESULT lines)")
    return list(names or ())


@dataclass
class Row:
    metric: str
    a: stats.Summary
    b: stats.Summary
    diff: float
    relative: float | None
    test: stats.Welch | None
    direction: int | None
    verdict: str
    tolerance: float
    regression: bool
    detectable: float | None = None  # the smallest change these runs would see at POWER (None for n = 1)
    needed: int | None = None  # runs a side to see a change of the tolerance (or, n = 1, of this difference)
    gated: bool = False  # the gate decides on it (GATED)
    tolerance_text: str = ""  # as given, or "(default)"


def default_tolerance(name: str, way, mean: float) -> tuple[float, bool]:
    """(amount, relative) for a metric no --tolerance names: see TIME_TOLERANCE, ACCURACY_TOLERANCE."""
    words = set(name.lower().split("_"))
    if way not in (1, -1):
        return 0.0, False
    if words & {"acc", "accuracy"}:
        return (ACCURACY_TOLERANCE if abs(mean) <= 1 else 100 * ACCURACY_TOLERANCE), False
    if _RATE.search(name.lower()) or words & {"time", "seconds", "sec", "s", "ms", "latency", "duration"}:
        return TIME_TOLERANCE, True
    return 0.0, False


def gated_names(a: Side, b: Side, names, higher=(), lower=()) -> list[str]:
    """The metrics among ``names`` the gate decides on (GATED)."""
    tasks = {run.get("task") for run in a.runs + b.runs}
    own = GATED.get(next(iter(tasks))) if len(tasks) == 1 else None
    return [n for n in names if direction(n, higher, lower) in (1, -1)
            and (own is None or n in own or n in higher or n in lower)]


def compare(a: Side, b: Side, *, higher=(), lower=(), tolerances=None) -> list[Row]:
    """A row per RESULT metric both sides have."""
    for side in (a, b):
        if side.kind == "comparison":
            raise Failure(f"{side.ref!r} is an A/B of two versions, compared pair by pair",
                          f"see it with `inv compare {side.name}-A {side.name}-B` (its two sides)")
    if set(a.ids) == set(b.ids):
        raise Failure(f"{a.ref!r} and {b.ref!r} are the same runs", "compare two different runs, groups or baselines")
    tolerances = tolerances or {}
    a_values, b_values = _values(a), _values(b)
    common = [name for name in a_values if name in b_values]
    unknown = [name for name in tolerances if name not in common]
    if unknown:
        raise Failure(f"--tolerance names {', '.join(unknown)}, which is not a RESULT metric of both sides "
                      f"({', '.join(common) or 'none'})")
    if not common:
        raise Failure(f"{a.ref!r} and {b.ref!r} have no RESULT metric in common "
                      f"({', '.join(a_values) or 'none'} vs {', '.join(b_values) or 'none'})")
    rows = []
    for name in common:
        sa, sb = stats.summarize(a_values[name]), stats.summarize(b_values[name])
        diff = sb.mean - sa.mean
        relative = diff / abs(sa.mean) if sa.mean else None
        test = stats.welch(a_values[name], b_values[name])
        way = direction(name, higher, lower)
        tolerance, shown = _tolerance(name, way, sa.mean, tolerances)
        row = Row(name, sa, sb, diff, relative, test, way, "", tolerance, False, *_power(sa, sb, test, diff, tolerance))
        row.tolerance_text = shown
        rows.append(row)
    return _gate(rows, gated_names(a, b, [r.metric for r in rows], higher, lower))


def _tolerance(name: str, way, mean: float, tolerances: dict) -> tuple[float, str]:
    """The metric's tolerance in its own unit, and as shown: given by --tolerance, or the default."""
    given = name in tolerances
    amount, is_relative = tolerances[name] if given else default_tolerance(name, way, mean)
    tolerance = amount / 100 * abs(mean) if is_relative else amount
    return tolerance, (f"{amount:g} %" if is_relative else f"{amount:g}") + ("" if given else " (default)")


def _gate(rows: list, gated) -> list:
    """Each row's verdict and whether the gate fails on it: Holm over the gated metrics' p-values."""
    gate = set(gated)
    significant = stats.holm({r.metric: r.test.p for r in rows if r.test is not None and r.metric in gate}, ALPHA)
    for r in rows:
        r.gated = r.metric in gate
        r.verdict, r.regression = _verdict(r.diff, r.test, r.direction, r.tolerance, significant.get(r.metric),
                                           r.needed)
        if not r.gated and r.direction in (1, -1):
            r.verdict, r.regression = r.verdict + " (not gated)", False
    return rows


def _power(sa: stats.Summary, sb: stats.Summary, test, diff: float, tolerance: float) -> tuple:
    """(the smallest change detectable at POWER with these runs, runs a side to see the tolerance),
    from the spread the runs had; with one run a side, the runs a side the other side's spread (if
    it has one) says it takes to see this difference."""
    spread = [s.std for s in (sa, sb) if s.std is not None]
    if test is None:
        return None, (stats.pairs_needed(spread[0] * math.sqrt(2), abs(diff), ALPHA, POWER) if spread and diff
                      else None)
    error = math.sqrt(sa.std ** 2 / sa.n + sb.std ** 2 / sb.n)
    found = stats.detectable(error, test.df, ALPHA, POWER) if error else 0.0
    # Welch with n a side is about a one-sample test of differences whose spread is sqrt(sa² + sb²)
    needed = stats.pairs_needed(math.sqrt(sa.std ** 2 + sb.std ** 2), tolerance, ALPHA, POWER) if tolerance else None
    return found, needed


def compare_pairs(pairs: list, *, task: str = "", higher=(), lower=(), tolerances=None) -> list[Row]:
    """A row per RESULT metric of runs measured in pairs, ``pairs``: [(A's metrics, B's metrics)],
    each pair side by side on one GPU, so that a drift of the machine falls on both alike. Compared
    by their differences: the paired t-test, or the Wilcoxon signed-rank test when an outlier makes
    the differences far from normal (``Row.test`` then holds its p). Gated as compare() gates."""
    tolerances = tolerances or {}
    names = [n for n in pairs[0][0] if all(n in a and n in b for a, b in pairs)] if pairs else []
    side = Side("A", "pairs", "A", [{"task": task, "metrics": a} for a, _ in pairs])
    rows = []
    for name in names:
        xs, ys = [a[name] for a, _ in pairs], [b[name] for _, b in pairs]
        sa, sb = stats.summarize(xs), stats.summarize(ys)
        test = stats.paired(xs, ys)
        if test is not None and _outlier([y - x for x, y in zip(xs, ys)]):
            test = replace_p(test, stats.signed_rank_p([y - x for x, y in zip(xs, ys)]))
        way = direction(name, higher, lower)
        tolerance, shown = _tolerance(name, way, sa.mean, tolerances)
        found = needed = None
        if test is not None:
            found = stats.detectable(test.std / math.sqrt(test.n), test.df, ALPHA, POWER) if test.std else 0.0
            needed = stats.pairs_needed(test.std, tolerance, ALPHA, POWER) if tolerance else None
        diff = sb.mean - sa.mean
        row = Row(name, sa, sb, diff, diff / abs(sa.mean) if sa.mean else None, test, way, "", tolerance, False,
                  found, needed)
        row.tolerance_text = shown
        rows.append(row)
    return _gate(rows, gated_names(side, side, names, higher, lower))


def _outlier(diffs) -> bool:
    """Whether a difference lies beyond 3.5 robust standard deviations (MAD) of their median: then
    the paired t-test's normal model does not hold, and the signed-rank test decides."""
    if len(diffs) < 6:
        return False
    import statistics

    middle = statistics.median(diffs)
    mad = statistics.median(abs(d - middle) for d in diffs) * 1.4826
    return mad > 0 and any(abs(d - middle) > 3.5 * mad for d in diffs)


def replace_p(test: stats.Paired, p: float | None) -> stats.Paired:
    from dataclasses import replace

    return replace(test, p=1.0 if p is None else p)


def _values(side: Side) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for run in side.runs:
        for name, value in run["metrics"].items():
            values.setdefault(name, []).append(value)
    return values


def _verdict(diff: float, test, way, tolerance: float, significant: bool | None = None,
             needed: int | None = None) -> tuple[str, bool]:
    """(verdict, whether it is a regression the gate fails on). ``significant``: the gate's answer
    for this metric (Holm over the gated metrics), else its own test at ALPHA. Without a test (a side
    with one run) nothing is significant and nothing fails: the verdict says so, and how many runs
    the spread seen suggests (``needed``)."""
    if way == 0:
        return "(an option, not compared)", False
    if test is None:
        if diff == 0:
            return "no change (n=1: no test)", False
        runs = f"about {needed} runs a side" if needed else "--repeat 5 or more on each side"
        word = ("higher" if diff > 0 else "lower") if not way else ("worse" if diff * way < 0 else "better")
        return f"{word}, but one run a side cannot tell noise from change (n=1: no test; {runs} would)", False
    significant = test.p < ALPHA if significant is None else significant
    if not significant or diff == 0:
        return "no significant change", False
    if way is None:
        return f"{'higher' if diff > 0 else 'lower'}; direction unknown (--higher-is-better/--lower-is-better)", False
    worse = diff * way < 0
    if worse and abs(diff) <= tolerance:
        return "worse, within its tolerance", False
    return "worse" if worse else "better", worse


def header(side: Side, letter: str) -> str:
    commits = sorted({(run["git"].get("commit") or "no git")[:12] + ("+dirty" if run["git"].get("dirty") else "")
                      for run in side.runs})
    tasks = sorted({run["task"] for run in side.runs})
    options = _common_options(side)
    shown = ", ".join(f"{k}={v}" for k, v in options.items() if k != "seed")
    return (f"{letter}: {side.kind} {side.name}, {len(side.runs)} run{'s' if len(side.runs) != 1 else ''} "
            f"of {'/'.join(tasks)} at {', '.join(commits)}; options: {shown or '-'}")


def _common_options(side: Side) -> dict:
    if not side.runs:
        return {}
    first = dict(side.runs[0]["options"])
    for run in side.runs[1:]:
        for key in list(first):
            if run["options"].get(key) != first[key]:
                first[key] = "(varies)"
    return first


def differing_options(a: Side, b: Side) -> list[str]:
    oa, ob = _common_options(a), _common_options(b)
    return [k for k in sorted(set(oa) | set(ob)) if k != "seed" and oa.get(k) != ob.get(k)]


def table(rows: list[Row]) -> list[tuple]:
    out = [("metric", "A mean ± std (n)", "B mean ± std (n)", "B - A", "%", "p (Welch)", "tolerance", "verdict")]
    for r in rows:
        p = f"{r.test.p:.3g}" if r.test else "—"
        pct = f"{100 * r.relative:+.2f}%" if r.relative is not None else "—"
        out.append((r.metric, _cell(r.a), _cell(r.b), f"{r.diff:+.4g}", pct, p,
                    r.tolerance_text if r.direction in (1, -1) else "—", r.verdict))
    return out


def _cell(s: stats.Summary) -> str:
    return f"{s.mean:.6g} ± {s.std:.2g} ({s.n})" if s.std is not None else f"{s.mean:.6g} ({s.n})"


def regression_lines(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.regression:
            p = f"p={r.test.p:.3g}, Holm over the gated metrics"
            lines.append(f"regression: {r.metric} is worse by {abs(r.diff):.4g} "
                         f"({r.b.mean:.6g} vs {r.a.mean:.6g}, {p}), "
                         f"beyond its tolerance {r.tolerance:.4g}")
    return lines


def report(a: Side, b: Side, rows: list[Row]) -> list[str]:
    """Show the comparison (the table on stdout, what to beware of on stderr); the regressions."""
    from .output import say, show
    from .output import table as columns

    show(header(a, "A"))
    show(header(b, "B"))
    show(columns(table(rows)))
    differing = differing_options(a, b)
    if differing:
        say(f"A and B ran with different options ({', '.join(differing)}): "
            "the difference may come from them, not from the code")
    lost = [run["id"] for run in a.runs + b.runs if run.get("outcome") not in (None, "finished")]
    if lost:
        say(f"runs that did not finish are compared with what they printed: {', '.join(lost[:4])}")
    for line in power_lines(rows) + drift_lines(a, b):
        say(line)
    return regression_lines(rows)


def power_lines(rows: list[Row]) -> list[str]:
    """Per gated metric, the smallest change the runs could have seen, and the runs to see the tolerance."""
    lines = []
    for r in rows:
        if r.direction not in (1, -1) or r.detectable is None:
            continue
        share = f" ({100 * r.detectable / abs(r.a.mean):.2g} % of it)" if r.a.mean else ""
        line = (f"{r.metric}: with {r.a.n} and {r.b.n} runs and this spread, a change smaller than "
                f"{r.detectable:.3g}{share} would likely go unseen (80 % power, false alarms at {ALPHA:g} for the "
                f"gate as a whole)")
        if r.tolerance and r.detectable > r.tolerance:
            line += (f"; to see a change of its tolerance {r.tolerance:.3g}, about {r.needed} runs a side"
                     if r.needed else f"; no practical number of runs sees a change of its tolerance {r.tolerance:.3g}")
        lines.append(line)
    return lines


def drift_lines(a: Side, b: Side) -> list[str]:
    """One line when the two sides were measured apart (more than an hour, other hosts or GPUs):
    a slow change of the machine then looks like a change of the code."""
    def span(side):
        times = []
        for run in side.runs:
            try:
                times.append(datetime.fromisoformat(str(run.get("started"))).timestamp())
            except ValueError:
                pass
        return (min(times), max(times)) if times else None

    why = []
    sa, sb = span(a), span(b)
    if sa and sb:
        gap = max(sb[0] - sa[1], sa[0] - sb[1])
        if gap > DRIFT_SECONDS:
            why.append(f"measured {gap / 3600:.1f} h apart")
    hosts = [{run.get("host") for run in side.runs if run.get("host")} for side in (a, b)]
    if all(hosts) and hosts[0] != hosts[1]:
        why.append(f"on other hosts ({', '.join(sorted(hosts[0]))} vs {', '.join(sorted(hosts[1]))})")
    gpus = [{g for run in side.runs for g in run.get("gpus") or []} for side in (a, b)]
    if all(gpus) and gpus[0] != gpus[1]:
        why.append(f"on other GPUs ({', '.join(sorted(gpus[0]))} vs {', '.join(sorted(gpus[1]))})")
    if not why:
        return []
    return [f"A and B were {' and '.join(why)}: a drift of the machine is not separated from the change of the code; "
            "runs of both versions interleaved on one GPU separate them (`--against REF`)"]
