"""A --repeat group's record: RUNS_DIR/<group-id>/summary.json and summary.md, the spread of every
RESULT metric over the group's runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import stats
from .host.files import write_text
from .records import RunRecord, markdown_table


def metrics_of(record: RunRecord) -> dict:
    """The numeric RESULT metrics of a run (NaN and text left out)."""
    found = (record.result or {}).get("metrics", {})
    return {k: float(v) for k, v in found.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def summarize(group_id: str, records: list[RunRecord]) -> dict:
    """n, mean, standard deviation, min, max and the runs of every RESULT metric of the group."""
    values: dict[str, list[tuple[str, float]]] = {}
    for record in records:
        for name, value in metrics_of(record).items():
            values.setdefault(name, []).append((record.run_id, value))
    metrics = {}
    for name, pairs in values.items():
        summary = stats.summarize(v for _, v in pairs)
        metrics[name] = {"n": summary.n, "mean": summary.mean, "std": summary.std, "min": summary.min,
                         "max": summary.max, "runs": [run_id for run_id, _ in pairs]}
    first = records[0] if records else None
    outcomes: dict[str, int] = {}
    for record in records:
        outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
    return {
        "group": group_id, "task": first.task if first else "", "host": first.host if first else "",
        "runs": [r.run_id for r in records], "outcomes": outcomes, "metrics": metrics,
        "git": first.git if first else {}, "options": first.options if first else {},
        "started": first.started if first else "", "ended": records[-1].ended if records else "",
    }


def write(folder: Path, summary: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text(folder / "summary.md", markdown(summary))
    return folder


def load(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def table(summary: dict) -> list[tuple]:
    rows = [("metric", "n", "mean", "std", "min", "max")]
    for name, m in summary["metrics"].items():
        rows.append((name, str(m["n"]), f"{m['mean']:.6g}", "—" if m["std"] is None else f"{m['std']:.3g}",
                     f"{m['min']:.6g}", f"{m['max']:.6g}"))
    return rows


def markdown(summary: dict) -> str:
    commit = summary["git"].get("commit") or "not a git checkout"
    dirty = {True: " (dirty)", False: " (clean)"}.get(summary["git"].get("dirty"), "")
    rows = table(summary)
    lines = [
        f"# {summary['task']} x{len(summary['runs'])} — group {summary['group']}",
        "",
        f"- **Host:** {summary['host']}",
        f"- **Workspace commit:** {commit}{dirty}",
        "- **Outcomes:** " + ", ".join(f"{n} {o}" for o, n in summary["outcomes"].items()),
        f"- **Started / ended (UTC):** {summary['started']} / {summary['ended']}",
        "",
        "## Metrics",
        "",
        *markdown_table(rows),
        "",
        "## Runs",
        "",
        *[f"- [{run_id}](../{run_id}/log.md)" for run_id in summary["runs"]],
        "",
        "## Options (of the first run; seeds count up from it)",
        "",
        *[f"- `{k}`: {v!r}" for k, v in summary["options"].items()],
        "",
    ]
    return "\n".join(lines)
