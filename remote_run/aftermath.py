"""The end of a run on this machine: the files it wrote back (--pull PATTERN) and NOTIFY_CMD.

`ended` is called wherever a record is completed (remote_run.pipeline: a followed run, a group's
runs, `logs --follow`, `kill`). While the run goes on (detached, connection lost) it only keeps
the --pull patterns in the record, so whoever completes the record later pulls them.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import notify
from .errors import Failure, Kind
from .host import layout, states
from .output import say

MAX_FILES = 10_000
# Top-level folders of a run's directory that are remote-run's own, which a pattern searches only
# when it names them: none since remote-run keeps its own things in .remote-run/ (hidden folders,
# .venv and .remote-run, are never matched by `*` or `**`); runs/ and data/ are the workspace's.
OWN = ()

def check_patterns(patterns) -> tuple[str, ...]:
    """--pull patterns: relative to the run's working directory on the host, never leaving it."""
    checked = []
    for pattern in patterns or ():
        text = str(pattern)
        parts = text.split("/")
        if (not text.strip() or text.startswith(("/", "-", "~")) or ".." in parts
                or any(ch in text for ch in "\0\n\r\\") or all(part in ("", ".") for part in parts)):
            raise Failure(f"--pull {text!r} is not valid",
                          "give a pattern relative to the run's directory on the host, such as "
                          "outputs/**/*.pt (no leading /, no `..`, no backslash)")
        checked.append("/".join(part for part in parts if part not in ("", ".")))
    return tuple(dict.fromkeys(checked))


def run_bases(settings, run_id: str) -> list[str]:
    """Where a run ran on the host, which --pull patterns are relative to: its own snapshot's
    working directory (.remote-run/runs/<id>/work, which keeps what the run wrote), or REMOTE_DIR for
    a run started before runs had snapshots. The first that exists is used."""
    return [f"{remote_run_dir(settings, run_id)}/work", settings.remote_dir]


def remote_run_dir(settings, run_id: str) -> str:
    """A run's folder on the host (remote_run.host.layout)."""
    return f"{settings.remote_dir}/{layout.RUNS}/{run_id}"


def pull(host, run_id: str, bases: list[str], patterns, dest: Path) -> dict:
    """Copy the files matching ``patterns`` under ``bases`` (the first directory of them) on the
    host that run ``run_id`` wrote
    into ``dest``; a local file is never replaced. Returns the record's ``pulled`` entry: the
    files now in ``dest`` as the host has them (path, size), how many came this time, and the
    local files kept because they differ from the host's."""
    s = host.settings
    argv, stdin = host.program_with("pulled", {"bases": list(bases), "run_dir": remote_run_dir(s, run_id),
                                               "patterns": list(patterns), "own": list(OWN), "limit": MAX_FILES})
    listed = host.run(argv, hide=True, stdin=stdin, timeout=max(s.check_timeout, 120))
    try:
        answer = json.loads(listed.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = (listed.stderr.strip().splitlines() or ["no answer"])[-1]
        raise Failure(f"--pull: cannot list the files of run {run_id} on {host.label} "
                      f"(exit {listed.exited}): {detail[:200]}",
                      kind=Kind.of(listed.exited)) from None
    base = answer["base"]
    if answer.get("cut"):
        say(f"--pull: more than {MAX_FILES} files match; pulling the first {MAX_FILES}")
    fresh, same, kept = [], [], []
    for rel, size, mtime in answer["files"]:
        local = dest / rel
        if not local.exists() and not local.is_symlink():
            fresh.append((rel, size))
        elif (local.is_file() and not local.is_symlink() and local.stat().st_size == size
              and int(local.stat().st_mtime) == int(mtime)):
            same.append((rel, size))  # pulled before and left as it was
        else:
            kept.append(rel)
    if fresh:
        import tempfile  # 5 ms with shutil and random: only when there is something to pull

        from . import sync

        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", prefix="remote-run-pull-") as listing:
            listing.write(b"\0".join(rel.encode("utf-8", "surrogateescape") for rel, _ in fresh))
            listing.flush()
            # --ignore-existing: a file that appeared here meanwhile is still never replaced
            result = sync.rsync(host, host.rsync_path(base.rstrip("/") + "/"), f"{dest}/",
                                extra=["--ignore-existing", "--from0", f"--files-from={listing.name}"])
        if result.exited:
            raise sync.rsync_error(host, result, f"--pull from {host.label}:{base}")
    files = sorted(fresh + same)
    return {"patterns": list(patterns), "from": f"{host.label}:{base}",
            "files": [{"path": rel, "size": size} for rel, size in files],
            "new": [rel for rel, _ in fresh], "kept": kept}


def size_text(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def describe(entry: dict, run_id: str, dest: Path) -> str:
    """One line: what --pull brought, what was already here, what was kept."""
    patterns = " ".join(entry["patterns"])
    files, new, kept = entry["files"], set(entry["new"]), entry["kept"]
    if not files and not kept:
        return f"--pull {patterns}: run {run_id} wrote no matching file in {entry['from']}"
    size = sum(f["size"] for f in files if f["path"] in new)
    text = f"pulled {len(new)} file{'s' if len(new) != 1 else ''} ({size_text(size)}) matching {patterns} into {dest}"
    if len(files) > len(new):
        text += f"; {len(files) - len(new)} already there"
    if kept:
        shown = ", ".join(kept[:5]) + (", ..." if len(kept) > 5 else "")
        text += (f"; kept {len(kept)} local file{'s' if len(kept) != 1 else ''} "
                 f"that {'differs' if len(kept) == 1 else 'differ'} "
                 f"from the host's (never overwritten): {shown}")
    return text


def ended(backend, record, folder: Path, patterns=()) -> None:
    """After a record was written: keep ``patterns`` in it; when the run has ended (finished,
    failed, killed), pull them and run NOTIFY_CMD (once per run). Problems are one line each
    and change neither the run's outcome nor its exit status."""
    if patterns:
        record.pulled = {**(record.pulled or {}), "patterns": list(patterns)}
    wanted = (record.pulled or {}).get("patterns") or []
    if record.outcome not in states.ENDED:
        if patterns:
            record.write(folder)
        return
    if wanted:
        host = backend.host
        dest = folder / "pulled"
        try:
            entry = pull(host, record.run_id, run_bases(host.settings, record.run_id), wanted, dest)
            say(describe(entry, record.run_id, dest))
        except Failure as exc:
            entry = {**(record.pulled or {}), "error": exc.line}
            say(entry["error"])
        record.pulled = entry
        record.write(folder)
    command = backend.host.settings.notify_cmd
    if command and notify.claim(folder):
        problem = notify.run_command(command, record, folder)
        if problem:
            say(problem)
