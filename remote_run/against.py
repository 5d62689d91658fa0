"""--against REF: A/B runs of two versions of the code, interleaved on one GPU, and their paired verdict.

B is the working tree as a run syncs it; A is git revision REF: its committed tree, plus the
untracked files the working tree syncs (unless --committed-only), synced once into
REMOTE_DIR/.remote-run/revisions/<commit> and reused. The 2N runs are one group on the host, in the
order A B B A A B ... (pair i runs on seed + i on both sides), which holds its GPUs from the first
run to the last, so a drift of the machine falls on both sides alike.

The record, RUNS_DIR/<id>/: plan.json (written before anything starts), then comparison.json and
comparison.md; the two sides are groups of their own, <id>-A and <id>-B.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import compare, groups
from .errors import Failure, Kind
from .host import snapshot, tree
from .host.files import write_text
from .records import RunRecord, markdown_table

PLAN, RESULT, TEXT = "plan.json", "comparison.json", "comparison.md"


@dataclass
class Plan:
    """What an A/B is to run, kept before it starts (RUNS_DIR/<id>/plan.json)."""

    id: str  # its host group and its local record folder
    task: str
    ref: str  # as given
    commit: str  # REF's commit
    pairs: int
    untracked: bool = True  # A gets the untracked files the working tree syncs
    order: list = field(default_factory=list)  # "A" or "B", per run, in the order they run
    gating: dict = field(default_factory=dict)  # --tolerance, --higher-is-better, --lower-is-better
    fail: bool = False  # --fail-on-regression
    started: str = ""

    @property
    def members(self) -> list[tuple[str, int]]:
        """(side, pair) of each run, in order: pair i's two runs are runs 2i+1 and 2i+2."""
        return [(side, i // 2) for i, side in enumerate(self.order)]

    def side_id(self, side: str) -> str:
        return f"{self.id}-{side}"


def interleaved(pairs: int) -> list[str]:
    """A B, B A, A B, ...: each side goes first in every other pair, so a steady drift of the
    machine (warming up, another job's load) adds about as much to one side as to the other."""
    return [side for i in range(pairs) for side in (("A", "B") if i % 2 == 0 else ("B", "A"))]


def resolve(run_local, workspace: Path, ref: str) -> str:
    """REF's commit in the workspace's git repository, or one line saying why there is none."""
    if not ref or ref.startswith("-") or "\0" in ref:
        raise Failure(f"--against {ref!r} is not a git revision", "give a branch, tag or commit such as main or HEAD")
    inside = run_local(["git", "-C", str(workspace), "rev-parse", "--is-inside-work-tree"], hide=True, timeout=10)
    if inside.exited or inside.stdout.strip() != "true":
        raise Failure(f"--against {ref} needs a git repository, and {workspace} is not in one",
                      "commit the version to compare with, in git, or compare with a baseline (--compare-to)")
    found = run_local(["git", "-C", str(workspace), "rev-parse", "--verify", "--quiet", "--end-of-options",
                       f"{ref}^{{commit}}"], hide=True, timeout=10)
    if found.exited or not found.stdout.strip():
        raise Failure(f"--against {ref!r} is not a commit of this repository",
                      "give a branch, tag or commit: see `git log --oneline`")
    return found.stdout.strip()


def cache() -> Path:
    from .sync import cache_dir

    return cache_dir() / "revisions"


def extracted(run_local, workspace: Path, commit: str) -> Path:
    """REF's committed tree (`git archive`), extracted once into this machine's cache and reused."""
    done = cache() / commit
    if done.is_dir():
        return done
    cache().mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}-", dir=cache()))
    try:
        archive = temp / "tree.tar"
        got = run_local(["git", "-C", str(workspace), "archive", "--format=tar", "-o", str(archive), commit],
                        hide=True, timeout=600)
        if got.exited:
            raise Failure(f"git archive {commit[:12]} failed: {(got.stderr or '').strip()[-200:]}",
                          kind=Kind.ENVIRONMENT)
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "tar_filter"):  # no absolute paths or .. even from our own repository
                tar.extractall(temp / "tree", filter="tar")
            else:  # Python without extraction filters: git archive writes neither
                tar.extractall(temp / "tree")  # noqa: S202
        archive.unlink()
        try:
            os.rename(temp / "tree", done)
        except OSError:
            if not done.is_dir():  # another command of this user made it meanwhile otherwise
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return done


def stage(committed: Path, workspace: Path, untracked: list[str], rules: list, commit: str) -> tuple[Path, int]:
    """A folder holding REVISIONS/<commit>: REF's files the sync's rules keep (hard links into the
    cache) and the working tree's untracked files; (the folder, its file count)."""
    top = Path(tempfile.mkdtemp(prefix="stage-", dir=cache()))
    target = top / snapshot.REVISIONS / commit
    target.mkdir(parents=True, mode=0o700)
    entries = tree.walk(str(committed), tree.compile_rules(rules))
    files = 0
    for rel in sorted(entries):
        kind, _size, _mtime, _mode, link = entries[rel]
        if kind == tree.DIR:
            (target / rel).mkdir()
        elif kind == tree.FILE:
            os.link(committed / rel, target / rel)
            files += 1
        elif kind == tree.LINK:
            os.symlink(link, target / rel)
    for rel in untracked:
        if not (target / rel).exists() and not (target / rel).is_symlink():  # REF's own file wins
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(workspace / rel, target / rel, follow_symlinks=False)
            files += 1
    return top, files


def sync_revision(host, plan: Plan, untracked: list[str]) -> str:
    """Sync A's tree to REMOTE_DIR/REVISIONS/<commit> (rsync sends only what it lacks: a revision
    synced before costs one round trip); the line saying so."""
    from . import sync

    s = host.settings
    began = time.perf_counter()
    committed = extracted(host.local, s.workspace, plan.commit)
    top, files = stage(committed, s.workspace, untracked if plan.untracked else [], sync.rules(s), plan.commit)
    try:
        # --relative: the folders above <commit> are made on the host as needed, and --delete stays in it
        result = sync.rsync(host, f"{top}/./{snapshot.REVISIONS}/{plan.commit}/", host.rsync_path(s.remote_dir + "/"),
                            delete=True, extra=["--relative"])
    finally:
        shutil.rmtree(top, ignore_errors=True)
    if result.exited:
        raise sync.rsync_error(host, result, f"sync of {plan.ref} ({plan.commit[:12]}) to {host.label}")
    sent = sync._stat(result.stdout, "Number of regular files transferred")
    count = len(untracked) if plan.untracked else 0
    extra = f" and {count} untracked file{'s' if count != 1 else ''}" if count else ""
    return (f"A = {plan.ref} ({plan.commit[:12]}){extra}, {files} files: synced to {host.label}:{s.remote_dir}/"
            f"{snapshot.REVISIONS}, {sent} sent ({time.perf_counter() - began:.1f} s)")


def code_of_a(plan: Plan, code_b: Future) -> tuple[dict, bytes]:
    """What side A ran, for its runs' records (as records.code_state): REF's commit, clean, and
    the untracked files it got."""
    code, _diff = code_b.result()
    return ({"commit": plan.commit, "dirty": False, "revision": plan.ref, "diff_bytes": 0,
             "untracked": list(code.get("untracked") or []) if plan.untracked else []}, b"")


def save_plan(runs_dir: Path, plan: Plan) -> None:
    write_text(runs_dir / plan.id / PLAN, json.dumps(asdict(plan), indent=1) + "\n")


def load_plan(runs_dir: Path, ab_id: str) -> Plan | None:
    try:
        data = json.loads((runs_dir / ab_id / PLAN).read_text(encoding="utf-8"))
        return Plan(**{k: v for k, v in data.items() if k in Plan.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def sides_of(runs_dir: Path, a: str, b: str) -> str | None:
    """The A/B whose sides are ``a`` (A) and ``b`` (B), if they are: such a compare pairs them."""
    ab_id = a[:-2] if a.endswith("-A") else None
    return ab_id if ab_id and b == f"{ab_id}-B" and load_plan(runs_dir, ab_id) is not None else None


def again(runs_dir: Path, ab_id: str, gating: dict | None) -> dict:
    """An A/B's comparison from its runs' records, with the gate's flags ``gating`` (None: its own)."""
    plan = load_plan(runs_dir, ab_id)
    found = [RunRecord.load(runs_dir / f"{ab_id}.{i}") for i in range(1, len(plan.order) + 1)] if plan else []
    if plan is None or not all(r and r.outcome != "detached" for r in found):
        raise Failure(f"A/B {ab_id} has not ended here: its runs' records are not complete",
                      f"follow it to its end with `inv logs --follow --run {ab_id}`")
    if gating is not None:
        plan.gating = {k: list(v) for k, v in gating.items()}
    return result_of(plan, found)


def finish(runs_dir: Path, plan: Plan, finished: list[RunRecord]) -> dict:
    """The two sides' groups and the comparison of the pairs both of whose runs finished: written
    to the A/B's record and returned."""
    result = result_of(plan, finished)
    for side in ("A", "B"):
        found = [r for (s, _), r in zip(plan.members, finished) if s == side]
        groups.write(runs_dir / plan.side_id(side), groups.summarize(plan.side_id(side), found))
    write_text(runs_dir / plan.id / RESULT, json.dumps(result, indent=1) + "\n")
    write_text(runs_dir / plan.id / TEXT, markdown(result))
    return result


def result_of(plan: Plan, finished: list[RunRecord]) -> dict:
    """The comparison of the pairs both of whose runs finished with a RESULT."""
    by_side: dict[str, list[RunRecord]] = {"A": [], "B": []}
    pairs: dict[int, dict] = {}
    for (side, pair), record in zip(plan.members, finished):
        by_side[side].append(record)
        pairs.setdefault(pair, {})[side] = record
    whole = [p for _, p in sorted(pairs.items())
             if len(p) == 2 and all(r.outcome == "finished" and groups.metrics_of(r) for r in p.values())]
    result = {"id": plan.id, "task": plan.task, "ref": plan.ref, "commit": plan.commit, "order": plan.order,
              "sides": {"A": plan.side_id("A"), "B": plan.side_id("B")},
              "b_code": (by_side["B"][0].git if by_side["B"] else {}),
              "pairs": [[p["A"].run_id, p["B"].run_id] for p in whole],
              "left_out": sorted(r.run_id for r in finished if not any(r in p.values() for p in whole)),
              "host": finished[0].host if finished else "", "gpus": _gpus(finished),
              "started": plan.started, "ended": finished[-1].ended if finished else "", "rows": [],
              "regressions": []}
    if whole:
        rows = compare.compare_pairs([(groups.metrics_of(p["A"]), groups.metrics_of(p["B"])) for p in whole],
                                     task=plan.task, **_gate_args(plan.gating))
        result["rows"] = [_row(r, whole) for r in rows]
        result["regressions"] = compare.regression_lines(rows)
    return result


def _gpus(found: list[RunRecord]) -> list[str]:
    return sorted({str(g.get("name", "?")) for r in found for g in r.gpu or [] if isinstance(g, dict)})


def _gate_args(gating: dict) -> dict:
    return {"higher": tuple(gating.get("higher_is_better") or ()), "lower": tuple(gating.get("lower_is_better") or ()),
            "tolerances": compare.parse_tolerances(gating.get("tolerance") or ())}


def _row(r: compare.Row, whole: list) -> dict:
    test = r.test
    return {"metric": r.metric, "gated": r.gated, "direction": r.direction,
            "a": [groups.metrics_of(p["A"])[r.metric] for p in whole],
            "b": [groups.metrics_of(p["B"])[r.metric] for p in whole],
            "a_mean": r.a.mean, "b_mean": r.b.mean, "diff": r.diff, "relative": r.relative,
            "low": test.low if test else None, "high": test.high if test else None,
            "p": test.p if test else None, "test": _test_name(r, whole),
            "tolerance": r.tolerance, "tolerance_text": r.tolerance_text, "verdict": r.verdict,
            "regression": r.regression, "detectable": r.detectable, "needed": r.needed}


def _test_name(r: compare.Row, whole: list) -> str:
    if r.test is None:
        return ""
    diffs = [groups.metrics_of(p["B"])[r.metric] - groups.metrics_of(p["A"])[r.metric] for p in whole]
    return "Wilcoxon signed-rank" if compare._outlier(diffs) else "paired t"


def load(runs_dir: Path, ab_id: str) -> dict:
    """The comparison an A/B wrote when its runs ended, or one line saying why there is none yet."""
    try:
        return json.loads((runs_dir / ab_id / RESULT).read_text(encoding="utf-8"))
    except OSError:
        raise Failure(f"A/B {ab_id} has no comparison yet: its runs have not all ended here",
                      f"follow it to its end with `inv logs --follow --run {ab_id}`") from None
    except ValueError:
        raise Failure(f"{runs_dir / ab_id / RESULT} is not valid JSON (a corrupt record)",
                      "delete the folder or restore the file", Kind.ENVIRONMENT) from None


def table(result: dict) -> list[tuple]:
    rows = [("metric", "A mean", "B mean", "B - A [95 % CI]", "%", "p (test)", "tolerance", "verdict")]
    for r in result["rows"]:
        interval = f" [{r['low']:+.3g}, {r['high']:+.3g}]" if r["low"] is not None else ""
        pct = f"{100 * r['relative']:+.2f}%" if r["relative"] is not None else "—"
        if r["low"] is not None and r["a_mean"]:
            pct += f" [{100 * r['low'] / abs(r['a_mean']):+.2f}, {100 * r['high'] / abs(r['a_mean']):+.2f}]"
        p = f"{r['p']:.3g} ({r['test']})" if r["p"] is not None else "—"
        rows.append((r["metric"], f"{r['a_mean']:.6g}", f"{r['b_mean']:.6g}", f"{r['diff']:+.4g}{interval}", pct, p,
                     r["tolerance_text"] if r["direction"] in (1, -1) else "—", r["verdict"]))
    return rows


def lines(result: dict) -> list[str]:
    """What to say under the table: the pairs, what was left out, the smallest change it could see."""
    n = len(result["pairs"])
    said = [f"A/B {result['id']}: {n} pair{'s' if n != 1 else ''} of {result['task']}, A = {result['ref']} "
            f"({result['commit'][:12]}), B = the working tree, in the order {' '.join(result['order'])} on "
            f"{result['host']}{' (' + ', '.join(result['gpus']) + ')' if result['gpus'] else ''}; "
            f"false alarms at {compare.ALPHA:g} over the gated metrics (Holm-Bonferroni)"]
    if result["left_out"]:
        said.append(f"left out, with their pairs (they did not finish with a RESULT): {', '.join(result['left_out'])}")
    for r in result["rows"]:
        if r["direction"] not in (1, -1) or not r["detectable"] or not r["gated"]:
            continue
        share = f" ({100 * r['detectable'] / abs(r['a_mean']):.2g} % of it)" if r["a_mean"] else ""
        line = (f"{r['metric']}: with {n} pairs and this spread, a change smaller than {r['detectable']:.3g}{share} "
                f"would likely go unseen (80 % power)")
        if r["tolerance"] and r["detectable"] > r["tolerance"]:
            line += (f"; to see a change of its tolerance {r['tolerance']:.3g}, about {r['needed']} pairs"
                     if r["needed"] else "")
        said.append(line)
    return said


def show(result: dict) -> list[str]:
    """Print the comparison (the table on stdout, the rest on stderr); its regression lines."""
    from .output import say
    from .output import show as out
    from .output import table as columns

    if not result["rows"]:
        say(f"A/B {result['id']}: no pair of runs finished with a RESULT on both sides: nothing to compare")
        return []
    out(columns(table(result)))
    for line in lines(result):
        say(line)
    return list(result["regressions"])


def markdown(result: dict) -> str:
    rows = table(result) if result["rows"] else [("metric",)]
    return "\n".join([
        f"# A/B {result['id']}: {result['task']}, {result['ref']} ({result['commit'][:12]}) vs the working tree",
        "",
        *[f"- {line}" for line in lines(result)],
        *[f"- **{line}**" for line in result["regressions"]],
        "",
        *markdown_table(rows),
        "",
        "## Pairs (A, B)",
        "",
        *[f"- [{a}](../{a}/log.md), [{b}](../{b}/log.md)" for a, b in result["pairs"]],
        "",
        f"Sides as groups: [{result['sides']['A']}](../{result['sides']['A']}/summary.md), "
        f"[{result['sides']['B']}](../{result['sides']['B']}/summary.md)",
        "",
    ])



def revision_files(settings, files: dict, commit: str) -> dict:
    """Side A's copies of the runner files remote-run writes into a run (``files``, {path: text}):
    where runners/ is part of the workspace (remote-run's own repository), A gets REF's version of
    each, so that a change to a runner is what the A/B measures."""
    from .runner_files import runners_dir

    here = runners_dir()
    try:
        inside = here.relative_to(settings.workspace)
    except ValueError:
        return files
    committed = cache() / commit / inside
    names = {mine.read_text(encoding="utf-8"): mine.name for mine in here.glob("*.py")}  # a runner by its text
    chosen = dict(files)
    for path, text in files.items():
        theirs = committed / names[text] if text in names else None
        if theirs is not None and theirs.is_file():
            chosen[path] = theirs.read_text(encoding="utf-8")
    return chosen
