"""A run's own copy of the synced tree, .remote-run/runs/<id>/work: taken before it starts, released after.

A later sync replaces files (rsync writes a new file and renames it; so does a delta) and never
writes into one, so hard links keep the code a run started with. What the run writes there stays:
releasing removes only the links the snapshot made that still hold what it linked.
"""

import os
import time

from . import layout, states, tree
from .files import read_text, remove, write_text

WORK = "work"  # RUNS/<id>/work: the run's own copy of the synced tree, and its working directory
LINKED = "work.linked"  # what the snapshot hard-linked: "path\0inode\0" pairs, to tell code from outputs
OWN = (layout.OWN,)  # REMOTE_DIR's own top-level names: never in a snapshot
SHARED = (".venv",)  # linked as symbolic links: shared by every run, not copied
REVISIONS = os.path.join(layout.OWN, "revisions")  # REVISIONS/<sha>: the trees of git revisions A/B runs compare


class SnapshotError(Exception):
    pass


def take(root, run_dir, rules, revision=None):
    """Hard-link the synced tree into run_dir/work. .venv and the top-level paths the sync leaves
    alone are linked as symlinks. Returns {"tree": the sync stamp, "files", "seconds"}.

    ``revision`` (an A/B's side A): the tree of a git revision synced into REMOTE_DIR/REVISIONS/<name>
    instead; it shares .venv and the paths the sync leaves alone, never the workspace's own files."""
    began = time.time()
    stamp_path = os.path.join(root, tree.STAMP)
    before = read_text(stamp_path)
    work = os.path.join(run_dir, WORK)
    os.mkdir(work, 0o700)
    compiled = tree.compile_rules(rules or [])
    skip = set(tree.read_rendered(root)) | set(tree.PROTECTED)
    base = os.path.join(root, REVISIONS, revision) if revision else root
    entries = tree.walk(base, compiled, () if revision else skip)
    linked = []
    for rel in sorted(entries):  # a folder sorts before what is in it
        kind, _size, _mtime, mode, target = entries[rel]
        source, dest = os.path.join(base, rel), os.path.join(work, rel)
        if kind == tree.DIR:
            os.mkdir(dest, 0o700)
        elif kind == tree.FILE:
            os.link(source, dest)
            linked.append("%s\0%d\0" % (rel, os.lstat(dest).st_ino))
        elif kind == tree.LINK:
            os.symlink(target, dest)
    for rel in sorted(entries, reverse=True):  # the folders' own modes, once their contents are in
        if entries[rel][0] == tree.DIR:
            os.chmod(os.path.join(work, rel), entries[rel][3])
    for name in os.listdir(root):
        if name in entries or name in OWN or name in skip - set(SHARED):
            continue
        if revision and name not in SHARED and tree.included(compiled, name, os.path.isdir(os.path.join(root, name))):
            continue  # the workspace's own file: the revision has its own, or none
        os.symlink(os.path.join(root, name), os.path.join(work, name))
    with open(os.path.join(run_dir, LINKED), "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write("".join(linked))
    if revision:
        return {"tree": "revision " + revision, "files": len(linked), "seconds": round(time.time() - began, 3)}
    if before is None:
        raise SnapshotError("REMOTE_DIR has no sync stamp, so the run's snapshot cannot be checked; "
                            "run `inv sync` and then the run again")
    if read_text(stamp_path) != before:
        raise SnapshotError("REMOTE_DIR changed while the run's snapshot was taken (a sync from another terminal?); "
                            "run again")
    return {"tree": before, "files": len(linked), "seconds": round(time.time() - began, 3)}


def release(run_dir):
    """After the run: remove the code the snapshot linked, unless the run changed it, and the
    folders and links left empty, so that work/ keeps only what the run wrote (its outputs)."""
    work = os.path.join(run_dir, WORK)
    parts = (read_text(os.path.join(run_dir, LINKED), strip=False) or "").split("\0")
    if not os.path.exists(os.path.join(run_dir, LINKED)):
        return
    for rel, inode in zip(parts[0::2], parts[1::2]):
        path = os.path.join(work, rel)
        try:
            if os.lstat(path).st_ino == int(inode):
                os.unlink(path)
        except (OSError, ValueError):
            pass
    root = layout.root_of(run_dir)
    for folder, dirs, files in os.walk(work, topdown=False):
        for name in files + dirs:
            path = os.path.join(folder, name)
            if (os.path.islink(path) and os.path.isabs(os.readlink(path))
                    and os.readlink(path).startswith(root + os.sep)):
                os.unlink(path)  # a link into REMOTE_DIR the snapshot made (.venv, ...)
        try:
            if folder != work:
                os.rmdir(folder)
        except OSError:
            pass
    remove(os.path.join(run_dir, LINKED))


def release_ended(root):
    """Release the snapshots of runs that ended without doing it (a supervisor that was killed)."""
    from .runs import meta_age, state_of

    runs = layout.runs_dir(root)
    try:
        names = os.listdir(runs)
    except OSError:
        return
    for name in names:
        run_dir = os.path.join(runs, name)
        if not os.path.exists(os.path.join(run_dir, LINKED)):
            continue
        state = state_of(run_dir)[0]
        # "lost" also reads a run being prepared by another terminal this moment: give it a minute
        if (state in (states.FINISHED, states.FAILED, states.KILLED, states.SKIPPED)
                or (state == states.LOST and meta_age(run_dir) > 60)):
            release(run_dir)


def write_files(work, files):
    """Write the files a run brings (a trainer's runner files) into its snapshot."""
    for rel, text in files.items():
        write_text(os.path.join(work, rel), text)
