"""Tasks that move files: sync, pull-logs, clean."""

from __future__ import annotations

import re

from invoke import task

from .. import transfer
from ..errors import Failure
from ..shell import script
from ..target import Target, current

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")

CLEAN_SCRIPT = r"""
dir=$1 data=$2
[ -d "$dir" ] || { echo "remote-run: nothing to clean: $dir does not exist"; exit 0; }
[ -f "$dir/.remote-run/owner" ] || { echo "remote-run: REMOTE_DIR=$dir was not created by remote-run (no .remote-run/owner marker); refusing to delete it" >&2; exit 97; }
for run in "$dir"/runs/*/; do
  [ -f "$run/pid" ] && [ ! -f "$run/exit_code" ] && kill -0 "$(cat "$run/pid")" 2>/dev/null &&
    { echo "remote-run: run $(basename "$run") is still running in $dir; stop it with inv kill first" >&2; exit 97; }
done
if [ "$data" = 1 ] || [ ! -d "$dir/data" ]; then
  rm -rf -- "$dir" && echo "remote-run: removed $dir"
else
  find "$dir" -mindepth 1 -maxdepth 1 ! -name data ! -name .remote-run -exec rm -rf -- {} + &&
    echo "remote-run: removed $dir except the dataset cache $dir/data (add --data to remove it too)"
fi
"""


def sync_once(t: Target) -> None:
    """Sync at most once per invocation, however many tasks ask for it."""
    if "sync" in t.done:
        return
    summary = transfer.sync(t)
    t.done["sync"] = summary
    print(f"remote-run: synced {t.settings.workspace} -> {t.label}:{t.settings.remote_dir} ({summary.files} files, {summary.bytes} bytes sent, {summary.seconds:.2f} s)")


@task
def sync(c):
    """Mirror the workspace into REMOTE_DIR with rsync --delete (runs/, .venv and data/ are never deleted)."""
    sync_once(current(c))


def check_run_id(run: str) -> str:
    if run and not RUN_ID.match(run):
        raise Failure(f"--run {run!r} is not a run id; run ids look like 20261122T101500Z_train-hlb (see `inv status`)")
    return run


@task(name="pull-logs", help={"run": "pull only this run id (default: every run)"})
def pull_logs(c, run=""):
    """Copy REMOTE_DIR/runs/ into RUNS_DIR; files that already exist locally are never overwritten."""
    t = current(c)
    summary = transfer.pull_runs(t, check_run_id(run) or None)
    print(f"remote-run: pulled {summary.files} new files ({summary.bytes} bytes) from {t.label}:{t.settings.remote_dir}/runs into {t.settings.runs_dir}")


@task(name="clean", help={"yes": "really delete (without it, only say what would be deleted)", "data": "also delete the dataset cache REMOTE_DIR/data"})
def clean(c, yes=False, data=False):
    """Delete REMOTE_DIR on the host (only a directory remote-run created); keeps data/ unless --data."""
    t = current(c)
    what = f"{t.label}:{t.settings.remote_dir}" + ("" if data else " (keeping its data/ dataset cache)")
    if not yes:
        raise Failure(f"this would delete {what}; run again with --yes to do it", code=1)
    result = t.run(script(CLEAN_SCRIPT, t.settings.remote_dir, "1" if data else "0"), hide=True)
    for line in result.stderr.splitlines():
        if line.startswith("remote-run: "):
            raise Failure(line[len("remote-run: "):])
    if result.exited:
        raise Failure(f"cleaning {what} failed (exit {result.exited}): {result.stderr.strip()[-300:]}")
    print(result.stdout.strip())
