"""Moving files: the rsync helper, the workspace sync (full, or a delta folded into the next
remote command, or nothing when unchanged), and pulling run logs back.

A sync keeps a manifest of what it last sent to (host, REMOTE_DIR) on this machine and a stamp
in REMOTE_DIR. The next invocation walks the workspace and compares: unchanged, the host checks
inside the same command that starts the run that REMOTE_DIR still fingerprints as sent; a few
small changes travel inside that command; anything else, or any doubt, is a full rsync.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import exits, tree
from .errors import Failure
from .shell import join, script
from .transport import Host, failure

DEFAULT_EXCLUDES = (".git", "var", ".venv", "__pycache__", ".env", ".env.*")
MARKER = ".remote-run/owner"
# A delta larger than this goes by rsync, which compresses and sends only changed blocks.
DELTA_MAX_BYTES = 1 << 20
DELTA_MAX_ENTRIES = 256
MANIFEST_FORMAT = 1

# Runs on the host before anything is written: refuses REMOTE_DIR if it is the remote $HOME or a
# parent of it, a symlink, a directory another user owns or can write to (on a shared box they
# could read or swap our files), under a directory such a user controls, or a non-empty
# directory remote-run did not create; creates it with mode 700 (mkdir is atomic: if someone
# else creates it first, the checks run on theirs and refuse); then claims it, runs the rest of
# its arguments (rsync's server side) and, when that succeeded, writes the sync stamp.
# $1 is REMOTE_DIR, $2 the stamp ("" for none).
CLAIM_SCRIPT = r"""
dir=$1 stamp=$2; shift 2
refuse() { echo "remote-run: $*" >&2; exit REFUSED; }
me=$(id -u)
home=$(cd ~ 2>/dev/null && pwd -P) || home=$HOME
real=$(realpath -m -- "$dir" 2>/dev/null) || real=$dir
case "$home/" in "$real"/*) refuse "REMOTE_DIR=$dir is the remote home directory ($home) or a parent of it; use a directory of its own such as /tmp/<project>_remote";; esac
writable() { case $1 in *[2367]?|*[2367]) return 0;; esac; return 1; }  # group or others may write
sticky() { case $1 in [1357]???) return 0;; esac; return 1; }
ancestor() {  # $1 an existing directory above REMOTE_DIR: only we or root may change what is in it
  set -- "$1" $(stat -Lc '%u %U %a' -- "$1")
  if [ "$2" != "$me" ] && [ "$2" != 0 ]; then why="owned by $3 (mode $4)"
  elif writable "$4" && ! sticky "$4"; then why="writable by other users (owner $3, mode $4)"
  else return 0; fi
  refuse "REMOTE_DIR=$dir is inside $1, which is $why, so another user could swap its files; choose a REMOTE_DIR under a directory only you (or root) can change, e.g. /tmp/<project>_remote"
}
ours() {  # $1 REMOTE_DIR, which exists: a real directory of ours that no one else may write to
  [ -L "$1" ] && refuse "REMOTE_DIR=$1 is a symbolic link (to $(readlink -- "$1")); remote-run only writes into a real directory it owns; choose another REMOTE_DIR"
  [ -d "$1" ] || refuse "REMOTE_DIR=$1 exists and is not a directory; choose another REMOTE_DIR"
  set -- "$1" $(stat -c '%u %U %a' -- "$1")
  [ "$2" = "$me" ] || refuse "REMOTE_DIR=$1 belongs to $3 (mode $4), not to you: another user created it; choose another REMOTE_DIR"
  writable "$4" && refuse "REMOTE_DIR=$1 is writable by other users (mode $4), so they could swap its files; run chmod go-w on it on the host if only you use it, or choose another REMOTE_DIR (remote-run creates its own with mode 700)"
  return 0
}
above=$(realpath -m -- "$(dirname -- "$dir")" 2>/dev/null) || above=$(dirname -- "$dir")
while [ ! -e "$above" ]; do above=$(dirname -- "$above"); done
while :; do ancestor "$above"; [ "$above" = / ] && break; above=$(dirname -- "$above"); done
if [ ! -e "$dir" ] && [ ! -L "$dir" ]; then
  mkdir -p -- "$(dirname -- "$dir")" && mkdir -m 700 -- "$dir" 2>/dev/null
  [ -e "$dir" ] || refuse "cannot create REMOTE_DIR=$dir (permission denied or disk full); choose a writable location"
fi
ours "$dir"
if [ -d "$dir" ] && [ ! -f "$dir/.remote-run/owner" ] && [ -n "$(ls -A -- "$dir" 2>/dev/null)" ]; then
  refuse "REMOTE_DIR=$dir is not empty and was not created by remote-run, so a sync with --delete could destroy its files; choose an empty or new REMOTE_DIR"
fi
if [ ! -f "$dir/.remote-run/owner" ]; then
  mkdir -p -- "$dir/.remote-run" || refuse "cannot create REMOTE_DIR=$dir (permission denied or disk full); choose a writable location"
  echo "created by remote-run; delete this directory with: inv clean --yes" > "$dir/.remote-run/owner" || refuse "cannot write to REMOTE_DIR=$dir; check free space and permissions"
fi
[ $# -eq 0 ] && exit 0
rm -f "$dir/.remote-run/synced"
"$@"
status=$?
chmod go-rwx -- "$dir"  # rsync -a gave it the workspace's mode
if [ $status -eq 0 ]; then
  rm -f "$dir/.remote-run/rendered"
  [ -z "$stamp" ] || { printf '%s\n' "$stamp" > "$dir/.remote-run/synced.tmp" && mv -f "$dir/.remote-run/synced.tmp" "$dir/.remote-run/synced"; }
fi
exit $status
""".replace("REFUSED", str(exits.REFUSED))


def rules(settings) -> list[tuple[str, str]]:
    """The workspace's filter rules, in rsync's order: first match wins."""
    found = [("+", ".env.example")]
    found += [("-", pattern) for pattern in (*DEFAULT_EXCLUDES, *settings.sync_exclude)]
    try:
        runs = settings.runs_dir.relative_to(settings.workspace)
        found.append(("-", f"/{runs.as_posix()}/"))
    except ValueError:
        pass
    found += [("-", pattern) for pattern in remoteignore(settings.workspace)]
    return found


def remoteignore(workspace: Path) -> list[str]:
    """Patterns of the workspace's .remoteignore: one per line; '#' or ';' starts a comment line."""
    path = workspace / ".remoteignore"
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and line.strip()[0] not in "#;"]


def rsync_filters(settings) -> list[str]:
    """rsync --filter values: protect REMOTE_DIR's own state from deletion, then the rules."""
    return [f"P /{name}/***" for name in tree.PROTECTED] + [f"{kind} {pattern}" for kind, pattern in rules(settings)]


def rsync(host: Host, source: str, target: str, *, filters=(), delete=False, progress=False, extra=(), claim: str | None = None, stamp: str = ""):
    """rsync ``source`` to ``target`` (either may be remote, written as ``host.rsync_path(...)``).

    Symlinks are kept as symlinks (-a) and paths are arguments, never shell text. For an SSH host
    rsync rides the host's ControlMaster, and the remote side first runs CLAIM_SCRIPT on ``claim``.
    """
    argv = ["rsync", "-a", "--stats", *[f"--filter={f}" for f in filters]]
    if delete:
        argv.append("--delete")
    if progress:
        argv.append("--info=progress2")
    if not host.is_local:
        argv += ["-z", "-e", join(host.ssh_argv())]
        if claim:
            argv.append("--rsync-path=" + join(script(CLAIM_SCRIPT, claim, stamp) + ["rsync"]))
    argv += [*extra, source, target]
    host.commands.append(join(argv))
    return host.local(argv, hide="both" if not progress else "err")


@dataclass
class SyncSummary:
    files: int
    bytes: int
    seconds: float


@dataclass
class Plan:
    """What the next sync of the workspace to (host, REMOTE_DIR) has to do."""

    kind: str  # "clean": nothing changed; "delta": a few small changes; "full": rsync
    rules: list
    entries: dict
    fingerprint: str
    protected: dict  # the workspace's own files inside tree.PROTECTED names
    reason: str = ""
    delta: dict | None = None
    delta_files: int = 0
    delta_bytes: int = 0
    manifest: Path | None = field(default=None, repr=False)

    def check(self) -> dict:
        """The launcher's "sync" check for this plan (clean and delta plans)."""
        spec = {"rules": self.rules, "expect": self.fingerprint, "protected": _jsonable(self.protected)}
        if self.kind == "delta":
            spec["expect"] = self.delta["base"]
            spec["delta"] = self.delta
        return spec


def _jsonable(entries: dict) -> dict:
    return {rel: list(entry) for rel, entry in entries.items()}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "remote-run"


def manifest_path(settings) -> Path:
    key = "\0".join((settings.host.spec, settings.remote_dir, str(settings.workspace)))
    return cache_dir() / "sync" / (hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".json")


def plan(settings) -> Plan:
    """Walk the workspace and compare it with the manifest of the last sync to this host."""
    found = rules(settings)
    entries = tree.walk(str(settings.workspace), tree.compile_rules(found))
    outside, inside = tree.split_protected(entries)
    fingerprint = tree.fingerprint(outside)
    path = manifest_path(settings)
    base = dict(rules=found, entries=entries, fingerprint=fingerprint, protected=inside, manifest=path)
    try:
        last = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return Plan("full", reason="no record of an earlier sync here", **base)
    if last.get("format") != MANIFEST_FORMAT or last.get("rules") != [list(r) for r in found]:
        return Plan("full", reason="the sync rules changed", **base)
    before = {rel: tuple(entry) for rel, entry in last["entries"].items()}
    if before == entries:
        return Plan("clean", **base)
    delta = _delta(settings.workspace, before, entries, last["fingerprint"], fingerprint, inside)
    if delta is None:
        return Plan("full", reason="many or large changes", **base)
    files = len(delta["files"]) + len(delta["links"]) + len(delta["dirs"]) + len(delta["delete"])
    size = sum(len(data) * 3 // 4 for _, data, _, _ in delta["files"])
    return Plan("delta", delta=delta, delta_files=files, delta_bytes=size, **base)


def _delta(workspace: Path, before: dict, now: dict, base: str, target: str, protected: dict) -> dict | None:
    """The changes from ``before`` to ``now`` with file contents, or None when rsync should do it."""
    delete = [rel for rel in before if rel not in now or before[rel][0] != now[rel][0]]
    changed = [rel for rel, entry in now.items() if before.get(rel) != entry]
    if len(delete) + len(changed) > DELTA_MAX_ENTRIES:
        return None
    files, links, dirs, size = [], [], [], 0
    for rel in sorted(changed):
        kind, length, mtime_ns, mode, target_path = now[rel]
        if kind == tree.FILE:
            size += length
            if size > DELTA_MAX_BYTES:
                return None
            try:
                data = (workspace / rel).read_bytes()
            except OSError:
                return None  # rsync will say what is wrong with it
            files.append([rel, base64.b64encode(data).decode("ascii"), mode, mtime_ns])
        elif kind == tree.LINK:
            links.append([rel, target_path])
        elif kind == tree.DIR:
            dirs.append([rel, mode])
        else:
            return None
    return {"base": base, "target": target, "delete": delete, "dirs": dirs, "files": files, "links": links,
            "protected": _jsonable(protected)}


def save(plan: Plan) -> None:
    """Remember what was sent, atomically (a concurrent invocation reads the old or the new one)."""
    data = {"format": MANIFEST_FORMAT, "rules": [list(r) for r in plan.rules], "fingerprint": plan.fingerprint,
            "entries": {rel: list(entry) for rel, entry in plan.entries.items()}}
    plan.manifest.parent.mkdir(parents=True, exist_ok=True)
    tree.write_atomic(str(plan.manifest), json.dumps(data).encode("utf-8", "surrogateescape"))


def forget(plan: Plan) -> None:
    plan.manifest.unlink(missing_ok=True)


def full(host: Host, plan: Plan, *, progress: bool | None = None) -> SyncSummary:
    """Mirror the workspace into REMOTE_DIR with rsync --delete, refusing directories we do not own."""
    s = host.settings
    if progress is None:
        progress = sys.stdout.isatty()
    forget(plan)  # until the host confirms the new state, no fast path may trust the old one
    if host.is_local:
        claimed = host.run(script(CLAIM_SCRIPT, s.remote_dir, ""), hide=True)
        if claimed.exited:
            raise Failure(_claim_error(claimed.stderr) or f"cannot prepare {s.remote_dir}: {claimed.stderr.strip()}")
    started = time.perf_counter()
    result = rsync(host, f"{s.workspace}/", host.rsync_path(s.remote_dir + "/"), filters=rsync_filters(s), delete=True,
                   progress=progress, claim=s.remote_dir, stamp=plan.fingerprint)
    seconds = time.perf_counter() - started
    if result.exited:
        raise Failure(rsync_error(host, result, f"sync of {s.workspace} to {host.label}:{s.remote_dir}"))
    if host.is_local:
        os.chmod(s.remote_dir, 0o700)  # rsync -a gave it the workspace's mode
        state = Path(s.remote_dir) / ".remote-run"
        (state / "rendered").unlink(missing_ok=True)
        tree.write_atomic(str(state / "synced"), (plan.fingerprint + "\n").encode())
    save(plan)
    return SyncSummary(_stat(result.stdout, "Number of regular files transferred"), _stat(result.stdout, "Total transferred file size"), seconds)


def checked(plan: Plan, report: dict) -> bool:
    """Take the host's answer to plan.check(): True when REMOTE_DIR is as sent (the delta applied)."""
    state = (report or {}).get("state")
    if state == "applied":
        save(plan)
    return state in ("ok", "applied")


def describe(host: Host, plan: Plan, summary: SyncSummary | None = None) -> str:
    where = f"{host.settings.workspace} -> {host.label}:{host.settings.remote_dir}"
    if summary is not None:
        return f"synced {where} ({summary.files} files, {summary.bytes} bytes sent, {summary.seconds:.2f} s)"
    if plan.kind == "delta":
        return f"synced {where} ({plan.delta_files} changed entries, {plan.delta_bytes} bytes sent with the command)"
    return f"synced {where} (no changes; checked on the host)"


def pull_runs(host: Host, run_id: str | None = None) -> SyncSummary:
    """Copy REMOTE_DIR/runs/ (or one run) into RUNS_DIR; an existing local file is never replaced."""
    s = host.settings
    source = f"{s.remote_dir}/runs/" + (f"{run_id}/" if run_id else "")
    dest = s.runs_dir / run_id if run_id else s.runs_dir
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = rsync(host, host.rsync_path(source), f"{dest}/", extra=["--ignore-existing"])
    if result.exited:
        if "No such file or directory" in result.stderr or "change_dir" in result.stderr:
            what = f"run {run_id}" if run_id else "runs"
            raise Failure(f"no {what} in {host.label}:{s.remote_dir}/runs; see `inv status` or `ls {s.remote_dir}/runs` on the host")
        raise Failure(rsync_error(host, result, f"pulling logs from {host.label}:{source}"))
    return SyncSummary(_stat(result.stdout, "Number of regular files transferred"), _stat(result.stdout, "Total transferred file size"), time.perf_counter() - started)


def rsync_error(host: Host, result, what: str) -> str:
    stderr = result.stderr or ""
    claim = _claim_error(stderr)
    if claim:
        return claim
    if "No space left on device" in stderr:
        return f"{what} failed: the disk is full on {host.label} (No space left on device); free space there or choose another REMOTE_DIR"
    if not host.is_local:
        line = failure(host.label, stderr)
        if line:
            return line + ("; run the command again (a sync resumes where it stopped)" if "dropped" in line else "")
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
