"""remote_run.tree: our reading of rsync's filter rules agrees with rsync itself, the fingerprint
sees what rsync's quick check sees, and a delta turns the old tree into the new one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_run import tree

NAMES = ["a", "b", "var", ".git", "x.py", "y.ckpt", "data", "raw", ".env", ".env.x", ".env.example", "d d", "c[1]", "q?", "]a", "*", "ab"]
PATTERNS = ["*.ckpt", "data/", "/data", "raw", "data/raw", "a/**", "**/x.py", "/**/x.py", "/a/b/", "b/***", "/a/***", "*", "?", "[ab]",
            "[!a]*", "[]a]*", ".env.*", "var", "/x.py", "a/*/x.py", "**.py", "d d", "c\\[1]", "q\\?", "a/**/b", "*/", "/*", "**",
            "x.py/", "**/a/", "a*/b", "?/?", ".*", "[a-c]", "/d d/***"]


def rsync_list(src: Path, rules) -> set[str]:
    """What rsync itself would send from ``src`` under ``rules``."""
    out = subprocess.run(["rsync", "-a", "--list-only", *[f"--filter={k} {p}" for k, p in rules], f"{src}/"],
                         capture_output=True, text=True, check=True)
    names = {line.split(None, 4)[4] for line in out.stdout.splitlines()}
    return names - {"."}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.tuples(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), st.booleans()), min_size=1, max_size=10),
       rules=st.lists(st.tuples(st.sampled_from("+-"), st.sampled_from(PATTERNS)), max_size=5))
def test_the_walk_sends_exactly_what_rsync_sends(tmp_path_factory, paths, rules):
    src = tmp_path_factory.mktemp("src")
    for parts, is_dir in paths:
        path = src.joinpath(*parts)
        try:
            if is_dir:
                path.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("x")
        except (FileExistsError, NotADirectoryError):
            pass
    assert set(tree.walk(str(src), tree.compile_rules(rules))) == rsync_list(src, rules)


def test_walk_keeps_symlinks_as_entries_and_never_follows_them(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("x")
    (tmp_path / "link").symlink_to("real")
    entries = tree.walk(str(tmp_path), [])
    assert entries["link"][0] == tree.LINK and entries["link"][4] == "real"
    assert "link/f" not in entries and "real/f" in entries


def test_the_fingerprint_changes_with_what_rsync_compares_and_nothing_else(tmp_path):
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f.py"
    f.write_text("one")
    os.utime(f, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))

    def fp():
        return tree.fingerprint(tree.walk(str(tmp_path), []))

    first = fp()
    os.utime(f, ns=(1_700_000_000_000_000_000, 1_700_000_000_500_000_000))
    assert fp() == first  # half a second: an older rsync keeps whole seconds
    os.utime(tmp_path / "d", ns=(1, 1))
    assert fp() == first  # a folder's mtime moves whenever a run writes into it
    f.write_text("two")
    os.utime(f, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert fp() == first  # same size, same mtime: rsync's quick check would not look either
    f.write_text("three")
    assert fp() != first
    f.chmod(0o700)
    second = fp()
    f.chmod(0o644)
    assert fp() != second


def test_host_fingerprint_leaves_out_protected_names_and_rendered_runners(tmp_path):
    (tmp_path / "a.py").write_text("a")
    base = tree.host_fingerprint(str(tmp_path), [], {})
    for name in tree.PROTECTED:
        (tmp_path / name).mkdir()
        (tmp_path / name / "out").write_text("written by a run")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run_hlb.py").write_text("rendered")
    assert tree.host_fingerprint(str(tmp_path), [], {}) != base  # scripts/ is not known as rendered yet
    (tmp_path / tree.RENDERED).write_text("scripts\0scripts/run_hlb.py")
    assert tree.host_fingerprint(str(tmp_path), [], {}) == base
    mine = tree.walk(str(tmp_path), [])["data/out"]
    assert tree.host_fingerprint(str(tmp_path), [], {"data/out": mine}) == base
    assert tree.host_fingerprint(str(tmp_path), [], {"data/gone": mine}) is None


def test_a_delta_turns_the_old_tree_into_the_new_one(tmp_path):
    from remote_run import sync

    old, new, host = tmp_path / "old", tmp_path / "new", tmp_path / "host"
    for root in (old, new):
        (root / "keep").mkdir(parents=True)
        (root / "keep" / "same.txt").write_text("same")
    (old / "gone.txt").write_text("bye")
    (old / "was_dir").mkdir()
    (old / "was_dir" / "inner").write_text("i")
    (old / "runs").mkdir()
    (old / "runs" / "local.txt").write_text("protected")
    (new / "was_dir").write_text("now a file")
    (new / "new dir" / "deep").mkdir(parents=True)
    (new / "new dir" / "deep" / "n\tame.bin").write_bytes(bytes(range(256)))
    (new / "link").symlink_to("keep/same.txt")
    (new / "keep" / "same.txt").chmod(0o600)
    shutil.copytree(old, host, symlinks=True)
    before, now = tree.walk(str(old), []), tree.walk(str(new), [])
    delta = sync._delta(new, before, now, "base", "target", {})
    tree.apply_delta(str(host), delta)
    after = tree.walk(str(host), [])
    assert after.pop("runs/local.txt") and after.pop("runs")  # rsync's P rules: never deleted
    assert {rel: tree._line(rel, e) for rel, e in after.items()} == {rel: tree._line(rel, e) for rel, e in now.items()}
    assert (host / "new dir" / "deep" / "n\tame.bin").read_bytes() == bytes(range(256))
