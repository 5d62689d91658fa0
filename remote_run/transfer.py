"""Moving files: the rsync helper, the guarded workspace sync, and pulling run logs back."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import Failure
from .shell import join, script
from .target import Target, ssh_failure

DEFAULT_EXCLUDES = (".git", "var", ".venv", "__pycache__", ".env", ".env.*")
# Never deleted from REMOTE_DIR by a sync: run outputs, the venv, our marker, dataset caches.
PROTECTED = ("/runs/***", "/.venv/***", "/.remote-run/***", "/data/***")
MARKER = ".remote-run/owner"
REFUSED = 97

# Runs on the remote before anything is written: refuses REMOTE_DIR if it is the remote $HOME
# or a parent of it, or a non-empty directory remote-run did not create; then claims it.
# $1 is REMOTE_DIR; the rest, if any, is the command to run afterwards (rsync's server side).
CLAIM_SCRIPT = r"""
dir=$1; shift
refuse() { echo "remote-run: $*" >&2; exit 97; }
home=$(cd ~ 2>/dev/null && pwd -P) || home=$HOME
real=$(realpath -m -- "$dir" 2>/dev/null) || real=$dir
case "$home/" in "$real"/*) refuse "REMOTE_DIR=$dir is the remote home directory ($home) or a parent of it; use a directory of its own such as /tmp/<project>_remote";; esac
if [ -e "$dir" ] && [ ! -d "$dir" ]; then refuse "REMOTE_DIR=$dir exists and is not a directory; choose another REMOTE_DIR"; fi
if [ -d "$dir" ] && [ ! -f "$dir/.remote-run/owner" ] && [ -n "$(ls -A -- "$dir" 2>/dev/null)" ]; then
  refuse "REMOTE_DIR=$dir is not empty and was not created by remote-run, so a sync with --delete could destroy its files; choose an empty or new REMOTE_DIR"
fi
if [ ! -f "$dir/.remote-run/owner" ]; then
  mkdir -p -- "$dir/.remote-run" || refuse "cannot create REMOTE_DIR=$dir (permission denied or disk full); choose a writable location"
  echo "created by remote-run; delete this directory with: inv clean --yes" > "$dir/.remote-run/owner" || refuse "cannot write to REMOTE_DIR=$dir; check free space and permissions"
fi
[ $# -eq 0 ] || exec "$@"
"""


def rsync(c: Target, source: str, target: str, *, filters=(), delete=False, progress=False, extra=(), claim: str | None = None):
    """rsync ``source`` to ``target`` (either may be remote, written as ``c.rsync_path(...)``).

    Symlinks are kept as symlinks (-a), paths are passed as arguments and never through a
    shell, and for an SSH host the remote side first runs CLAIM_SCRIPT on ``claim``.
    """
    argv = ["rsync", "-a", "--stats", *[f"--filter={f}" for f in filters]]
    if delete:
        argv.append("--delete")
    if progress:
        argv.append("--info=progress2")
    if not c.is_local:
        argv += ["-z", "-e", join(c.ssh_argv())]
        if claim:
            argv.append("--rsync-path=" + join(script(CLAIM_SCRIPT, claim) + ["rsync"]))
    argv += [*extra, source, target]
    return c.local(argv, hide="both" if not progress else "err")


@dataclass
class SyncSummary:
    files: int
    bytes: int
    seconds: float


def sync_filters(settings) -> list[str]:
    """rsync filter rules: protect our remote state, then the excludes, first match wins."""
    rules = [f"P {path}" for path in PROTECTED]
    rules.append("+ .env.example")
    rules += [f"- {pattern}" for pattern in (*DEFAULT_EXCLUDES, *settings.sync_exclude)]
    try:
        runs = settings.runs_dir.relative_to(settings.workspace)
        rules.append(f"- /{runs.as_posix()}/")
    except ValueError:
        pass
    ignore = settings.workspace / ".remoteignore"
    if ignore.is_file():
        rules.append(f"merge,- {ignore}")
    return rules


def sync(c: Target, *, progress: bool | None = None) -> SyncSummary:
    """Mirror the workspace into REMOTE_DIR with --delete, refusing directories we do not own."""
    s = c.settings
    if progress is None:
        progress = sys.stdout.isatty()
    if c.is_local:
        claimed = c.local(script(CLAIM_SCRIPT, s.remote_dir), hide=True)
        if claimed.exited:
            raise Failure(_claim_error(claimed.stderr) or f"cannot prepare {s.remote_dir}: {claimed.stderr.strip()}")
    started = time.perf_counter()
    result = rsync(c, f"{s.workspace}/", c.rsync_path(s.remote_dir + "/"), filters=sync_filters(s), delete=True, progress=progress, claim=s.remote_dir)
    seconds = time.perf_counter() - started
    if result.exited:
        raise Failure(rsync_error(c, result, f"sync of {s.workspace} to {c.label}:{s.remote_dir}"))
    return SyncSummary(_stat(result.stdout, "Number of regular files transferred"), _stat(result.stdout, "Total transferred file size"), seconds)


def pull_runs(c: Target, run_id: str | None = None) -> SyncSummary:
    """Copy REMOTE_DIR/runs/ (or one run) into RUNS_DIR; an existing local file is never replaced."""
    s = c.settings
    source = f"{s.remote_dir}/runs/" + (f"{run_id}/" if run_id else "")
    dest = s.runs_dir / run_id if run_id else s.runs_dir
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = rsync(c, c.rsync_path(source), f"{dest}/", extra=["--ignore-existing"])
    if result.exited:
        if "No such file or directory" in result.stderr or "change_dir" in result.stderr:
            what = f"run {run_id}" if run_id else "runs"
            raise Failure(f"no {what} in {c.label}:{s.remote_dir}/runs; see `inv status` or `ls {s.remote_dir}/runs` on the host")
        raise Failure(rsync_error(c, result, f"pulling logs from {c.label}:{source}"))
    return SyncSummary(_stat(result.stdout, "Number of regular files transferred"), _stat(result.stdout, "Total transferred file size"), time.perf_counter() - started)


def rsync_error(c: Target, result, what: str) -> str:
    stderr = result.stderr or ""
    claim = _claim_error(stderr)
    if claim:
        return claim
    if "No space left on device" in stderr:
        return f"{what} failed: the disk is full on {c.label} (No space left on device); free space there or choose another REMOTE_DIR"
    if not c.is_local:
        line = ssh_failure(c.host, stderr)
        if line:
            return line
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"{what} failed (rsync exit {result.exited}): {last[-1] if last else 'no error text'}"


def _claim_error(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if line.startswith("remote-run: "):
            return line[len("remote-run: "):]
    return None


def _stat(text: str, label: str) -> int:
    match = re.search(re.escape(label) + r":\s*([0-9,.]+)", text or "")
    return int(re.sub(r"[^0-9]", "", match.group(1))) if match else 0
