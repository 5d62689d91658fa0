"""Tasks for runs already started: logs (re-attach), status, kill."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime, timezone

from invoke import task

from .. import records, runs
from ..errors import Failure
from ..target import CHECK_TIMEOUT, Target, current
from .train import _finish
from .workspace import check_run_id


def remote_runs(t: Target) -> list[dict]:
    """Every run under REMOTE_DIR/runs on the host, oldest first, as the launcher reports them."""
    result = t.run(runs.launcher(t, "status", t.settings.remote_dir), hide=True, timeout=CHECK_TIMEOUT)
    if result.exited:
        lines = [l for l in result.stderr.splitlines() if l.startswith("remote-run: ")]
        raise Failure(lines[-1][len("remote-run: "):] if lines else f"cannot list runs on {t.label}: {result.stderr.strip()[-200:]}")
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    return sorted(rows, key=lambda row: (row.get("started") or 0, row["id"]))


def pick(t: Target, run: str, want_running: bool = False) -> dict:
    found = remote_runs(t)
    if run:
        for row in found:
            if row["id"] == run:
                return row
        raise Failure(f"no run {run!r} on {t.label}:{t.settings.remote_dir}/runs; `inv status` lists them")
    if want_running:
        found = [row for row in found if row["state"] == "running"]
    if not found:
        raise Failure(f"no {'running ' if want_running else ''}run on {t.label}:{t.settings.remote_dir}/runs")
    return found[-1]


@task(help={"run": "the run id (default: the latest run)", "follow": "wait for the run to end, printing its output as it comes"})
def logs(c, run="", follow=False):
    """Show a run's log; with --follow re-attach to it and complete its local record when it ends."""
    t = current(c)
    row = pick(t, check_run_id(run))
    folder = t.settings.runs_dir / row["id"]
    log_path = folder / "run.log"
    seen = log_path.read_bytes() if log_path.exists() else b""
    if seen:
        print(f"remote-run: {len(seen)} bytes of run {row['id']} were already recorded in {log_path}; showing the rest", file=sys.stderr)
    output = runs.Tee()
    started = time.perf_counter()
    mode = "attach" if follow else "cat"
    if mode == "cat" and row["state"] == "running":
        print(f"remote-run: run {row['id']} is still running; add --follow to wait for it", file=sys.stderr)
    if mode == "cat":
        t.run(runs.launcher(t, mode, t.settings.remote_dir, f"runs/{row['id']}", str(len(seen))), stream=output)
        return

    def stop_following(signum, frame):
        # Ctrl+C here means "stop watching", never "stop the run" (that is `inv kill`).
        print(f"\nremote-run: stopped following; run {row['id']} goes on (`inv logs --follow --run {row['id']}`)", file=sys.stderr, flush=True)
        os._exit(130)

    previous = signal.signal(signal.SIGINT, stop_following)
    try:
        result = t.run(runs.launcher(t, mode, t.settings.remote_dir, f"runs/{row['id']}", str(len(seen))), stream=output)
    finally:
        signal.signal(signal.SIGINT, previous)
    text = seen.decode("utf-8", "replace") + output.getvalue()
    record = _load_record(folder, row, t)
    elapsed = time.time() - row["started"] if row.get("started") else time.perf_counter() - started
    record.finish(text, result.exited, elapsed)
    refreshed = remote_runs(t)
    if any(r["id"] == row["id"] and r["state"] == "killed" for r in refreshed):
        record.outcome = "killed"
    folder.mkdir(parents=True, exist_ok=True)
    log_path.write_text(text, encoding="utf-8")
    record.write(folder)
    runs.report(record, folder, row["id"])
    _finish(result.exited)


def _load_record(folder, row: dict, t: Target) -> records.RunRecord:
    path = folder / "result.json"
    if path.exists():
        data = json.loads(path.read_text(encoding="utf-8"))
        known = set(records.RunRecord.__dataclass_fields__)
        return records.RunRecord(**{k: v for k, v in data.items() if k in known})
    started = datetime.fromtimestamp(row["started"], timezone.utc).isoformat(timespec="seconds") if row.get("started") else ""
    return records.RunRecord(run_id=row["id"], task=row["task"], host=t.label, git=records.git_state(t.settings.workspace),
                             remote_log=f"{t.label}:{t.settings.remote_dir}/runs/{row['id']}/run.log", local_log=str(folder / "run.log"), started=started)


@task
def status(c):
    """List the runs on the host: id, task, started, state, exit code and RESULT metrics."""
    t = current(c)
    rows = remote_runs(t)
    if not rows:
        print(f"no runs in {t.label}:{t.settings.remote_dir}/runs")
        return
    table = [("run", "task", "started (UTC)", "state", "exit", "result")]
    for row in rows:
        when = datetime.fromtimestamp(row["started"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if row.get("started") else "?"
        parsed = records.parse_result(row.get("result") or "")
        metrics = " ".join(f"{k}={v}" for k, v in parsed["metrics"].items()) if parsed else ""
        table.append((row["id"], row["task"], when, row["state"], "" if row["exit_code"] is None else str(row["exit_code"]), metrics))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


@task(help={"run": "the run id (default: the latest running run)"})
def kill(c, run=""):
    """Stop a running run: SIGINT to its process group, then SIGTERM, then SIGKILL."""
    t = current(c)
    row = pick(t, check_run_id(run), want_running=not run)
    result = t.run(runs.launcher(t, "kill", t.settings.remote_dir, f"runs/{row['id']}"), hide=True)
    lines = [l for l in (result.stderr + result.stdout).splitlines() if l.startswith("remote-run: ")]
    if result.exited:
        raise Failure(lines[-1][len("remote-run: "):] if lines else f"cannot stop run {row['id']}: {result.stderr.strip()[-200:]}")
    print(lines[-1] if lines else f"remote-run: run {row['id']} stopped")
