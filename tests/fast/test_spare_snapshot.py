"""Spare snapshots (remote_run.host.snapshot): the next run's copy of the tree, made ahead, is used
only while the tree is the one it was made of. A spare used after the tree changed would run old
code: each way the tree can change is tried here, on the host program's own functions."""

from __future__ import annotations

import os

import pytest

from remote_run.host import layout, owner, snapshot, tree

RULES = [("-", "/datasets/")]


@pytest.fixture
def root(tmp_path):
    """A synced REMOTE_DIR: two files in a package, a stamp, a runs folder."""
    found = tmp_path / "remote"
    (found / "pkg").mkdir(parents=True)
    (found / "pkg" / "model.py").write_text("V = 1\n")
    (found / "train.py").write_text("print(1)\n")
    (found / ".venv").mkdir()
    (found / tree.STAMP).parent.mkdir(parents=True)
    (found / tree.STAMP).write_text("stamp-1\n")
    (found / owner.MARKER).write_text("ours\n")
    (found / layout.RUNS).mkdir(parents=True)
    return found


def run_dir(root, name):
    found = root / layout.RUNS / name
    found.mkdir()
    return found


def spare(root):
    """Make the spare as make_spare's detached child does, here in this process."""
    snapshot._make(str(root), RULES, snapshot._key(str(root)))
    return [p.name for p in (root / snapshot.SPARES).iterdir()]


def test_the_next_run_takes_the_spare_and_sees_the_tree(root):
    made = spare(root)
    assert len(made) == 1 and made[0].startswith("stamp-1.0#")  # <stamp>.<generation>#<which>
    taken = snapshot.take(str(root), str(run_dir(root, "r1")), RULES)
    work = root / layout.RUNS / "r1" / snapshot.WORK
    assert taken["spare"] is True and taken["files"] == 2 and taken["tree"] == "stamp-1"
    assert (work / "pkg" / "model.py").read_text() == "V = 1\n"
    assert os.readlink(work / ".venv") == str(root / ".venv")
    assert not os.listdir(root / snapshot.SPARES)  # taken: the next one makes its own
    again = snapshot.take(str(root), str(run_dir(root, "r2")), RULES)
    assert again["spare"] is False
    assert (root / layout.RUNS / "r2" / snapshot.WORK / "train.py").read_text() == "print(1)\n"
    snapshot.release(str(root / layout.RUNS / "r1"))  # the spare's links are released as any snapshot's
    assert not (work / "pkg" / "model.py").exists() and (root / "pkg" / "model.py").exists()


def test_a_sync_makes_every_spare_stale_even_one_that_ends_with_the_same_stamp(root):
    """A file edited in place on the host is the same inode in the spare: the check sees it, the
    tree is synced again (rsync replaces the file) and may end with the very same stamp. The spare
    must not be used then: it still holds the edited inode."""
    spare(root)
    with open(root / "train.py", "w") as handle:
        handle.write("print('edited on the host')\n")  # in place: the spare's link sees it too
    restore = ["sh", "-c", f"printf 'print(1)\\n' > {root}/train.new && mv {root}/train.new {root}/train.py"]
    assert owner.claim(str(root), "stamp-1", False, restore, None) == 0  # as a sync does: same stamp after
    taken = snapshot.take(str(root), str(run_dir(root, "r1")), RULES)
    assert taken["spare"] is False
    assert (root / layout.RUNS / "r1" / snapshot.WORK / "train.py").read_text() == "print(1)\n"


def test_a_spare_of_another_stamp_or_generation_is_never_used(root):
    spare(root)
    (root / tree.STAMP).write_text("stamp-2\n")  # a delta was applied, say
    assert snapshot.take(str(root), str(run_dir(root, "r1")), RULES)["spare"] is False
    (root / tree.STAMP).write_text("stamp-1\n")
    snapshot.invalidate(str(root))
    assert not (root / snapshot.SPARES).exists()
    spare(root)
    (root / snapshot.GENERATION).write_text("another\n")  # something of ours wrote the tree meanwhile
    assert snapshot.take(str(root), str(run_dir(root, "r2")), RULES)["spare"] is False


def test_a_spare_made_while_the_tree_changed_is_never_named_for_it(root, monkeypatch):
    made = snapshot._key(str(root))
    original = snapshot._link

    def link_then_change(*args, **kwargs):
        found = original(*args, **kwargs)
        snapshot.invalidate(str(root))  # a sync lands while the spare is being made
        return found

    monkeypatch.setattr(snapshot, "_link", link_then_change)
    snapshot._make(str(root), RULES, made)
    assert not (root / snapshot.SPARES).exists() or not os.listdir(root / snapshot.SPARES)
    assert snapshot.take(str(root), str(run_dir(root, "r1")), RULES)["spare"] is False


def test_a_folder_made_on_the_host_after_the_spare_is_in_the_run(root):
    spare(root)
    (root / "datasets").mkdir()  # left out by the sync, kept on the host
    snapshot.take(str(root), str(run_dir(root, "r1")), RULES)
    assert os.readlink(root / layout.RUNS / "r1" / snapshot.WORK / "datasets") == str(root / "datasets")


def ready(root):
    return sorted(p for p in (root / snapshot.SPARES).glob("stamp-1.0#*"))


def wait_for_spares(root, count):
    import time

    deadline = time.time() + 90  # niced: a loaded machine (the suite in parallel) gives it little time
    while time.time() < deadline and (len(ready(root)) < count or snapshot._making(str(root))):
        time.sleep(0.05)
    return ready(root)


def test_make_spare_returns_at_once_and_its_process_holds_none_of_our_descriptors(root):
    read, write = os.pipe()
    os.set_inheritable(write, True)
    snapshot.make_spare(str(root), RULES)
    os.close(write)
    assert os.read(read, 1) == b""  # EOF at once: the spare's process does not hold the pipe
    os.close(read)
    made = wait_for_spares(root, snapshot.RESERVE)
    assert len(made) == snapshot.RESERVE == 2  # a run that comes before the next one is made finds one too
    assert all((spare / snapshot.WORK / "train.py").read_text() == "print(1)\n" for spare in made)


def test_two_runs_in_a_row_both_take_a_spare_and_the_reserve_is_made_again(root):
    key = snapshot._key(str(root))
    snapshot._top_up(str(root), RULES, key)  # what make_spare's detached, niced process does
    assert len(ready(root)) == snapshot.RESERVE
    first = snapshot.take(str(root), str(run_dir(root, "r1")), RULES)
    second = snapshot.take(str(root), str(run_dir(root, "r2")), RULES)  # before the first's replacement is made
    assert first["spare"] is True and second["spare"] is True and not ready(root)
    snapshot._top_up(str(root), RULES, key)
    assert len(ready(root)) == snapshot.RESERVE


def test_a_delta_brings_every_spare_up_to_date(root):
    import base64

    from remote_run.host import checks

    (root / layout.MOVED).write_text("")
    before = tree.host_fingerprint(str(root), tree.compile_rules(RULES), {})
    (root / tree.STAMP).write_text(before + "\n")
    snapshot.invalidate(str(root))
    spare(root)
    spare(root)
    delta = {"files": [["pkg/model.py", base64.b64encode(b"V = 3\n").decode(), 0o644, 1_700_000_000 * 10**9]],
             "dirs": [], "links": [], "delete": [], "protected": {}}
    expected = root.parent / "expected"
    import shutil

    shutil.copytree(root, expected, symlinks=True, ignore=shutil.ignore_patterns(".remote-run"))
    tree.apply_delta(str(expected), delta)
    delta["target"] = tree.host_fingerprint(str(expected), tree.compile_rules(RULES), {})
    assert checks.check_sync(str(root), {"expect": before, "rules": RULES, "delta": delta})["state"] == "applied"
    for name in ("r1", "r2"):
        taken = snapshot.take(str(root), str(run_dir(root, name)), RULES)
        assert taken["spare"] is True
        assert (root / layout.RUNS / name / snapshot.WORK / "pkg" / "model.py").read_text() == "V = 3\n"


def test_a_delta_brings_the_spare_up_to_date_and_the_run_sees_the_new_tree(root):
    """One file changed: the host's check applies the delta to the tree and the same changes to the
    spare (its cost is the delta's), which the run then takes."""
    import base64

    from remote_run.host import checks

    spare(root)
    (root / "pkg" / "gone.py").write_text("x\n")  # a delta deletes it below
    (root / layout.MOVED).write_text("")
    rules = RULES
    before = tree.host_fingerprint(str(root), tree.compile_rules(rules), {})
    (root / tree.STAMP).write_text(before + "\n")
    snapshot.invalidate(str(root))
    spare(root)
    mtime = 1_700_000_000 * 10**9
    delta = {"files": [["pkg/model.py", base64.b64encode(b"V = 2\n").decode(), 0o644, mtime],
                       ["new/extra.py", base64.b64encode(b"E = 1\n").decode(), 0o644, mtime]],
             "dirs": [["new", 0o755]], "links": [["link.py", "train.py"]], "delete": ["pkg/gone.py"], "protected": {}}
    # the delta's target: the tree as the client will have it
    expected = root.parent / "expected"
    import shutil

    shutil.copytree(root, expected, symlinks=True, ignore=shutil.ignore_patterns(".remote-run"))
    tree.apply_delta(str(expected), delta)
    delta["target"] = tree.host_fingerprint(str(expected), tree.compile_rules(rules), {})
    report = checks.check_sync(str(root), {"expect": before, "rules": rules, "delta": delta})
    assert report["state"] == "applied"
    taken = snapshot.take(str(root), str(run_dir(root, "r1")), rules)
    work = root / layout.RUNS / "r1" / snapshot.WORK
    assert taken["spare"] is True
    assert (work / "pkg" / "model.py").read_text() == "V = 2\n" and (work / "new" / "extra.py").read_text() == "E = 1\n"
    assert not (work / "pkg" / "gone.py").exists() and os.readlink(work / "link.py") == "train.py"
    assert taken["files"] == 3  # model.py, train.py, new/extra.py
    snapshot.release(str(root / layout.RUNS / "r1"))
    assert not (work / "new" / "extra.py").exists() and (root / "new" / "extra.py").read_text() == "E = 1\n"
