"""A run's own copy of the synced tree, .remote-run/runs/<id>/work: taken before it starts, released after.

A later sync replaces files (rsync writes a new file and renames it; so does a delta) and never
writes into one, so hard links keep the code a run started with. What the run writes there stays:
releasing removes only the links the snapshot made that still hold what it linked.

A hard link per file is the run's one cost that grows with the tree (about 17 µs a file on a
container's overlay filesystem: half a second at 30,000 files). So after each start a detached,
niced process makes spare snapshots of the tree as it is (SPARES/<stamp>.<generation>#<n>), up to
RESERVE of them, and the next run of the same tree takes one with two renames: two, so that a run
that comes while the last one's replacement is still being made finds one too. A delta is
applied to each spare as well (its cost is the delta's). A spare is used only while the tree is
provably the one it was made of: the sync's stamp (which the host's check has just compared with
the tree, file by file as rsync's quick check does) and the generation, which remote-run changes
before anything of its own writes the tree (a sync, a delta) and so makes every spare stale. A file
replaced outside remote-run changes what the check sees: the run is refused the fast path, the
tree is synced again, and that sync makes the spares stale.
"""

import os
import time

from . import layout, states, tree
from .files import read_text, remove, write_text

WORK = "work"  # RUNS/<id>/work: the run's own copy of the synced tree, and its working directory
LINKED = "work.linked"  # what the snapshot hard-linked: "path\0inode\0" pairs, to tell code from outputs
RELEASING = "work.releasing"  # LINKED, once a niced process of its own is releasing the snapshot
OWN = (layout.OWN,)  # REMOTE_DIR's own top-level names: never in a snapshot
SHARED = (".venv",)  # linked as symbolic links: shared by every run, not copied
REVISIONS = os.path.join(layout.OWN, "revisions")  # REVISIONS/<sha>: the trees of git revisions A/B runs compare
SPARES = os.path.join(layout.OWN, "spares")  # SPARES/<stamp>.<generation>#<n>: snapshots made ahead of the next runs
GENERATION = os.path.join(layout.OWN, "generation")  # changed before remote-run writes the synced tree
RESERVE = 2  # spares of the tree as it is, made ahead


class SnapshotError(Exception):
    pass


def take(root, run_dir, rules, revision=None):
    """Hard-link the synced tree into run_dir/work (or take a spare of it). .venv and the top-level
    paths the sync leaves alone are linked as symlinks. Returns {"tree": the sync stamp, "files",
    "seconds", "spare"}.

    ``revision`` (an A/B's side A): the tree of a git revision synced into REMOTE_DIR/REVISIONS/<name>
    instead; it shares .venv and the paths the sync leaves alone, never the workspace's own files."""
    began = time.time()
    stamp_path = os.path.join(root, tree.STAMP)
    before = read_text(stamp_path)
    work = os.path.join(run_dir, WORK)
    files = None if revision or before is None else _from_spare(root, run_dir)
    spare = files is not None
    if not spare:
        files = _link(root, work, os.path.join(run_dir, LINKED), rules, revision)
    _link_top(root, work, tree.compile_rules(rules or []) if revision else None)
    if revision:
        return {"tree": "revision " + revision, "files": files, "seconds": round(time.time() - began, 3)}
    if before is None:
        raise SnapshotError("REMOTE_DIR has no sync stamp, so the run's snapshot cannot be checked; "
                            "run `inv sync` and then the run again")
    if read_text(stamp_path) != before:
        raise SnapshotError("REMOTE_DIR changed while the run's snapshot was taken (a sync from another terminal?); "
                            "run again")
    return {"tree": before, "files": files, "seconds": round(time.time() - began, 3), "spare": spare}


def _link(root, work, linked_path, rules, revision=None):
    """Hard-link the tree (or a revision's) into ``work``; what was linked into ``linked_path``; the count."""
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
    with open(linked_path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write("".join(linked))
    return len(linked)


def _link_top(root, work, revision_rules=None):
    """Symbolic links to the top-level names of REMOTE_DIR the snapshot does not hold (.venv, what
    the sync leaves alone, such as a dataset folder kept on the host): looked at when the run starts,
    so a folder made on the host after a spare was made is there too. ``revision_rules``: a
    revision's snapshot, which never gets the workspace's own files (those the rules send)."""
    skip = set(tree.read_rendered(root)) | set(tree.PROTECTED)
    for name in os.listdir(root):
        if name in OWN or name in skip - set(SHARED) or os.path.lexists(os.path.join(work, name)):
            continue
        if (revision_rules is not None and name not in SHARED
                and tree.included(revision_rules, name, os.path.isdir(os.path.join(root, name)))):
            continue
        os.symlink(os.path.join(root, name), os.path.join(work, name))


def invalidate(root):
    """The synced tree is about to be written by remote-run: no spare made before may be used.
    They are moved out of the way at once and removed by a niced process of their own."""
    write_text(os.path.join(root, GENERATION), "%d.%d\n" % (time.time() * 1e6, os.getpid()))
    trash = os.path.join(root, layout.OWN, "spares-stale-%d-%d" % (os.getpid(), time.time() * 1e6))
    try:
        os.rename(os.path.join(root, SPARES), trash)
    except OSError:
        return
    _behind(rmtree, trash, True)


def rmtree(path, ignore_errors=False):
    """shutil.rmtree, imported where a tree is removed: shutil (and the bz2 and lzma it imports)
    cost every run's start 3 ms on the host."""
    import shutil

    shutil.rmtree(path, ignore_errors)


def _behind(fn, *args):
    """fn(*args) in a niced process of its own, detached from this one (which goes on at once)."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        if os.fork():
            os._exit(0)
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 65536)
        os.nice(19)
        try:  # Linux: a CPU only when nothing else wants it (nice 19 still takes a share of a busy one)
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            pass
        fn(*args)
    finally:
        os._exit(0)


def _key(root):
    """What a spare of the tree as it is now is named: its sync stamp and generation (None: no stamp)."""
    stamp = read_text(os.path.join(root, tree.STAMP))
    return None if stamp is None else "%s.%s" % (stamp, read_text(os.path.join(root, GENERATION)) or "0")


def _ready(root, key):
    """The names of the spares of the tree as it is now (``key``), ready to be taken."""
    try:
        return sorted(name for name in os.listdir(os.path.join(root, SPARES)) if name.startswith(key + "#"))
    except OSError:
        return []


def _from_spare(root, run_dir):
    """Move a spare of the tree as it is now into run_dir; its file count, or None when there is none."""
    key = _key(root)
    spares = os.path.join(root, SPARES)
    mine = os.path.join(spares, ".taken-%d" % os.getpid())
    for name in _ready(root, key):
        try:
            os.rename(os.path.join(spares, name), mine)  # one run takes it, whoever else tries
            break
        except OSError:
            continue
    else:
        return None
    try:
        files = int(read_text(os.path.join(mine, "files")) or "")
        if _key(root) != key:
            raise ValueError("the tree changed")
        os.rename(os.path.join(mine, LINKED), os.path.join(run_dir, LINKED))
        os.rename(os.path.join(mine, WORK), os.path.join(run_dir, WORK))
    except (OSError, ValueError):
        remove(os.path.join(run_dir, LINKED))
        return None
    finally:
        rmtree(mine, ignore_errors=True)
    return files


def set_aside(root):
    """Before a delta is applied: move the spares of the tree as it is out of invalidate()'s way,
    to be brought up to date by carry(); their folders."""
    key = _key(root)
    if key is None:
        return []
    asides = []
    for n, name in enumerate(_ready(root, key)):
        aside = os.path.join(root, layout.OWN, "carried-%d-%d" % (os.getpid(), n))
        try:
            os.rename(os.path.join(root, SPARES, name), aside)
        except OSError:
            continue
        asides.append(aside)
    return asides


def carry(root, asides, delta, files=0):
    """After a delta was applied and the tree checked: apply the same changes to each spare set
    aside (new files linked, deleted ones gone), so it is a spare of the tree as it is now, named
    for it. Its cost is the delta's, not the tree's; on any error the spare is dropped (and with no
    delta, the delta failed: the tree is synced again, and spares made of it). ``files``: how the
    number of files changed."""
    for n, aside in enumerate(asides):
        if delta is None:
            rmtree(aside, ignore_errors=True)
        else:
            _carry(root, aside, delta, n, files)


def _carry(root, aside, delta, n, files):
    # The new links are added to the end of LINKED, not written into it: release() unlinks a path
    # only while it is the inode listed with it, so the older pair of a replaced or deleted file
    # matches nothing.
    work = os.path.join(aside, WORK)
    try:
        added = []
        gone = [rel for rel in delta.get("delete", []) if rel.split("/", 1)[0] not in tree.PROTECTED]
        for rel in sorted(gone, key=lambda r: -r.count("/")):
            _clear(os.path.join(work, rel))
        for rel, mode in delta.get("dirs", []):
            path = os.path.join(work, rel)
            if not os.path.isdir(path) or os.path.islink(path):
                _clear(path)
                os.makedirs(path, 0o700)
            os.chmod(path, mode)
        for entry in delta.get("files", []):
            path = os.path.join(work, entry[0])
            _clear(path)
            os.link(os.path.join(root, entry[0]), path)
            added.append("%s\0%d\0" % (entry[0], os.lstat(path).st_ino))
        for rel, target in delta.get("links", []):
            path = os.path.join(work, rel)
            _clear(path)
            os.symlink(target, path)
        with open(os.path.join(aside, LINKED), "a", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write("".join(added))
        write_text(os.path.join(aside, "files"), "%d\n" % (int(read_text(os.path.join(aside, "files")) or "0") + files))
        os.makedirs(os.path.join(root, SPARES), mode=0o700, exist_ok=True)
        os.rename(aside, os.path.join(root, SPARES, "%s#c%d-%d" % (_key(root), os.getpid(), n)))
    except (OSError, TypeError):
        pass
    finally:
        rmtree(aside, ignore_errors=True)


def _clear(path):
    if os.path.isdir(path) and not os.path.islink(path):
        rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def make_spare(root, rules):
    """Make the next runs' snapshots now (up to RESERVE), in a detached, niced process of its own
    that holds none of this command's descriptors (an SSH session ends without waiting for it);
    not while another one is at it."""
    key = _key(root)
    if key is None or len(_ready(root, key)) >= RESERVE or _making(root):
        return
    _behind(_top_up, root, rules, key)


def _making(root):
    """Whether a live process is making a spare (its .making-<pid> folder)."""
    try:
        names = os.listdir(os.path.join(root, SPARES))
    except OSError:
        return False
    for name in names:
        if name.startswith(".making-"):
            try:
                os.kill(int(name[len(".making-"):]), 0)
                return True
            except (ValueError, ProcessLookupError):
                continue
            except OSError:
                return True
    return False


def _top_up(root, rules, key):
    while len(_ready(root, key)) < RESERVE and _key(root) == key:
        if not _make(root, rules, key):
            return


def _make(root, rules, key):
    """One spare of the tree as it is (``key``); whether it was made."""
    spares = os.path.join(root, SPARES)
    os.makedirs(spares, mode=0o700, exist_ok=True)
    making = os.path.join(spares, ".making-%d" % os.getpid())
    try:
        os.mkdir(making, 0o700)
        files = _link(root, os.path.join(making, WORK), os.path.join(making, LINKED), rules)
        write_text(os.path.join(making, "files"), "%d\n" % files)
        for name in os.listdir(spares):  # those of older trees go
            if not name.startswith(".") and not name.startswith(key + "#"):
                rmtree(os.path.join(spares, name), ignore_errors=True)
        if _key(root) != key:  # made of a tree that changed meanwhile: never used
            return False
        os.rename(making, os.path.join(spares, "%s#%d-%d" % (key, time.time() * 1e6, os.getpid())))
        return True
    except OSError:
        return False
    finally:
        rmtree(making, ignore_errors=True)


def release(run_dir, linked=LINKED):
    """After the run: remove the code the snapshot linked, unless the run changed it, and the
    folders and links left empty, so that work/ keeps only what the run wrote (its outputs).
    ``linked``: the list of links (LINKED, or RELEASING for release_behind)."""
    work = os.path.join(run_dir, WORK)
    parts = (read_text(os.path.join(run_dir, linked), strip=False) or "").split("\0")
    if not os.path.exists(os.path.join(run_dir, linked)):
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
    remove(os.path.join(run_dir, linked))


def release_behind(run_dir):
    """release() in a niced process of its own: the supervisor goes on at once (a group's next run,
    its own end), and the release (0.4 s of a core at 50,000 files) yields to the host's work. The
    list of links is renamed first, so that release_ended() leaves a release under way alone."""
    releasing = os.path.join(run_dir, RELEASING)
    try:
        os.rename(os.path.join(run_dir, LINKED), releasing)
        os.utime(releasing)  # the release's start: a rename keeps the time the snapshot was taken
    except OSError:
        return
    _behind(release, run_dir, RELEASING)


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
        releasing = os.path.join(run_dir, RELEASING)
        try:  # a release under way for long: its process was killed
            if time.time() - os.lstat(releasing).st_mtime > 600:
                release(run_dir, RELEASING)
        except OSError:
            pass
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
