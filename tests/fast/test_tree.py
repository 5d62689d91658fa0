"""remote_run.tree: our reading of rsync's filter rules agrees with rsync itself, the fingerprint
sees what rsync's quick check sees, and a delta turns the old tree into the new one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_run.errors import Failure
from remote_run.host import tree

NAMES = ["a", "b", "var", ".git", "x.py", "y.ckpt", "data", "raw", ".env", ".env.x", ".env.example", "d d", "c[1]",
         "q?", "]a", "*", "ab", "e\\f"]
PATTERNS = ["*.ckpt", "data/", "/data", "raw", "data/raw", "a/**", "**/x.py", "/**/x.py", "/a/b/", "b/***", "/a/***",
            "*", "?", "[ab]", "[!a]*", "[]a]*", ".env.*", "var", "/x.py", "a/*/x.py", "**.py", "d d", "c\\[1]", "q\\?",
            "a/**/b", "*/", "/*", "**", "x.py/", "**/a/", "a*/b", "?/?", ".*", "[a-c]", "/d d/***", "e\\f", "/e\\\\f*"]


def rsync_list(src: Path, rules) -> set[str]:
    """What rsync itself would send from ``src`` under ``rules``."""
    out = subprocess.run(["rsync", "-a", "--list-only", *[f"--filter={k} {p}" for k, p in rules], f"{src}/"],
                         capture_output=True, text=True, check=True)
    names = {line.split(None, 4)[4] for line in out.stdout.splitlines()}
    return names - {"."}


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.tuples(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), st.booleans()),
                      min_size=1, max_size=10),
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
    mine = tree.walk(str(tmp_path), [])[".venv/out"]
    assert tree.host_fingerprint(str(tmp_path), [], {".venv/out": mine}) == base
    assert tree.host_fingerprint(str(tmp_path), [], {".venv/gone": mine}) is None
    (tmp_path / "data").mkdir()  # the workspace's data/ is not protected: it counts
    assert tree.host_fingerprint(str(tmp_path), [], {}) != base


def test_a_delta_turns_the_old_tree_into_the_new_one(tmp_path):
    from remote_run import sync

    old, new, host = tmp_path / "old", tmp_path / "new", tmp_path / "host"
    for root in (old, new):
        (root / "keep").mkdir(parents=True)
        (root / "keep" / "same.txt").write_text("same")
    (old / "gone.txt").write_text("bye")
    (old / "was_dir").mkdir()
    (old / "was_dir" / "inner").write_text("i")
    (old / ".remote-run").mkdir()
    (old / ".remote-run" / "local.txt").write_text("protected")
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
    assert after.pop(".remote-run/local.txt") and after.pop(".remote-run")  # rsync's P rules: never deleted
    assert {rel: tree._line(rel, e) for rel, e in after.items()} == {rel: tree._line(rel, e) for rel, e in now.items()}
    assert (host / "new dir" / "deep" / "n\tame.bin").read_bytes() == bytes(range(256))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old_paths=st.lists(st.tuples(st.lists(st.sampled_from(NAMES[:8]), min_size=1, max_size=3), st.booleans()),
                          min_size=1, max_size=8),
       new_paths=st.lists(st.tuples(st.lists(st.sampled_from(NAMES[:8]), min_size=1, max_size=3), st.booleans()),
                          min_size=1, max_size=8))
def test_the_tree_after_a_delta_is_known_without_walking_it_again(tmp_path_factory, old_paths, new_paths):
    """The host checks a delta's result from its walk before the delta and a look at each path the
    delta names: that must be exactly what a second walk would find, or a delta that left the tree
    wrong could pass its check."""
    from remote_run import sync

    base = tmp_path_factory.mktemp("delta")
    old, new, host = base / "old", base / "new", base / "host"
    old.mkdir()
    new.mkdir()
    _make_tree(old, old_paths, "old")
    _make_tree(new, new_paths, "new, longer")
    shutil.copytree(old, host, symlinks=True)
    before, now = tree.walk(str(old), []), tree.walk(str(new), [])
    delta = sync._delta(new, before, now, "base", "target", {})
    if delta is None:
        return  # the client would send a full rsync instead
    entries = tree.host_entries(str(host), [], {})
    tree.apply_delta(str(host), delta)
    known, gone, new = tree.after_delta(str(host), entries, delta)
    assert tree.fingerprint(known) == tree.fingerprint(tree.walk(str(host), [], set(tree.PROTECTED)))
    assert tree.fingerprint(known) == tree.fingerprint(now)
    # and the fingerprint brought up to date from the changes alone is the whole tree's
    assert tree.fingerprint_update(tree.fingerprint(entries), gone, new) == tree.fingerprint(now)
    assert sync._updated(tree.fingerprint(before), before, now) == tree.fingerprint(now)


# ------------------------------------------------------------------ --only scopes and `!` re-includes

def _make_tree(root: Path, paths, seed_text: str = "x") -> None:
    for parts, is_dir in paths:
        path = root.joinpath(*parts)
        try:
            if is_dir:
                path.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(seed_text)
        except (FileExistsError, NotADirectoryError):
            pass


def _roots(src: Path, paths, picks) -> list[str]:
    """Workspace paths to sync (--only) drawn from what exists: prefixes of the generated paths."""
    roots = []
    for index, depth in picks:
        parts, _ = paths[index % len(paths)]
        rel = "/".join(parts[:1 + depth % len(parts)])
        if (src / rel).exists():
            roots.append(rel)
    return roots


TREES = st.lists(st.tuples(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), st.booleans()),
                 min_size=1, max_size=10)
RULES = st.lists(st.tuples(st.sampled_from("+-"), st.sampled_from(PATTERNS)), max_size=4)
PICKS = st.lists(st.tuples(st.integers(0, 20), st.integers(0, 2)), min_size=1, max_size=3)


@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=TREES, rules=RULES, picks=PICKS)
def test_an_only_scope_sends_exactly_what_rsync_sends(tmp_path_factory, paths, rules, picks):
    from remote_run import sync

    src = tmp_path_factory.mktemp("src")
    _make_tree(src, paths)
    roots = _roots(src, paths, picks)
    scoped = sync.scope_rules(roots) + rules
    walked = set(tree.walk(str(src), tree.compile_rules(scoped)))
    assert walked == rsync_list(src, scoped)
    for rel in walked:  # nothing outside the scope but the folders on the way to it
        assert any(rel == root or rel.startswith(root + "/") or root.startswith(rel + "/")
                   for root in roots), (rel, roots)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=TREES, extra=TREES, rules=RULES, picks=PICKS)
def test_an_only_sync_deletes_inside_its_scope_and_leaves_everything_else_alone(
        tmp_path_factory, paths, extra, rules, picks):
    """rsync --delete with the scope rules, into a host copy that has an older tree plus files of its own."""
    from remote_run import sync

    src, dst = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dst")
    _make_tree(src, paths)
    shutil.rmtree(dst)
    shutil.copytree(src, dst)
    _make_tree(dst, extra, seed_text="the host's own")
    roots = _roots(src, paths, picks)
    scoped = sync.scope_rules(roots) + rules
    compiled = tree.compile_rules(scoped)
    everything_before = tree.walk(str(dst), [])
    before_text = {rel: (dst / rel).read_text() for rel, entry in everything_before.items() if entry[0] == tree.FILE}
    sent_before = set(tree.walk(str(dst), compiled))
    subprocess.run(["rsync", "-a", "--delete", *[f"--filter={f}" for f in sync.filters(scoped)], f"{src}/", f"{dst}/"],
                   check=True, capture_output=True)

    def files(root):
        return {rel for rel, entry in tree.walk(str(root), compiled).items() if entry[0] != tree.DIR}

    assert files(dst) == files(src)  # inside the scope: an exact mirror, stale files deleted
    for rel, entry in everything_before.items():
        outside = not any(rel == root or rel.startswith(root + "/") for root in roots)
        # left out by the scope or the rules: untouched
        if entry[0] == tree.FILE and (outside or rel not in sent_before):
            assert (dst / rel).is_file() and (dst / rel).read_text() == before_text[rel], rel


def test_scope_rules_keep_the_folders_on_the_way_and_escape_odd_names():
    from remote_run import sync

    assert sync.scope_rules(["lib", "examples/x", "examples/x/sub", "pyproject.toml"]) == [
        ("+", "/examples"), ("+", "/lib"), ("+", "/pyproject.toml"), ("-", "/*"),
        ("+", "/examples/x"), ("-", "/examples/*"),
    ]
    assert sync.scope_rules(["c[1]/a b", "e\\f/g"]) == [
        ("+", "/c\\[1]"), ("+", "/e\\f"), ("-", "/*"), ("+", "/c\\[1]/a b"), ("-", "/c\\[1]/*"), ("+", "/e\\f/g"),
        ("-", "/e\\\\f/*"),
    ]


def test_remoteignore_reincludes_like_gitignore_and_never_secrets(tmp_path):
    """The last matching line wins; `!` re-includes what SYNC_EXCLUDE or a built-in left out, never .env or RUNS_DIR."""
    from remote_run import settings as settings_mod
    from remote_run import sync

    ws = tmp_path / "ws"
    for rel in ("a.log", "keep.log", "data/raw/x.bin", "data/raw/keep.bin", "data/keep/k.py", "var/keep/v.py",
                "var/other.txt", ".env", "sub/.env", "var/runs/r/log", "gone/x", "gone/y"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(rel)
    (ws / ".remoteignore").write_text("*.log\n!keep.log\ndata/*\n!data/keep/\ndata/raw/\n!data/raw/keep.bin\n"
                                      "!/var/\n/var/*\n!/var/keep/\n!.env\n!/var/runs/\n!gone/\n")
    s = settings_mod.load(environ={"WORKSPACE": str(ws), "SYNC_EXCLUDE": "gone"})
    found = sync.rules(s)
    sent = set(tree.walk(str(ws), tree.compile_rules(found)))
    assert sent == rsync_list(ws, found)
    assert {"keep.log", "data", "data/keep", "data/keep/k.py", "var", "var/keep", "var/keep/v.py",
            "gone", "gone/x", "gone/y"} <= sent
    assert not sent & {"a.log", "data/raw", "data/raw/keep.bin", "var/other.txt", ".env", "sub/.env", "var/runs"}
    (ws / ".remoteignore").write_text("# only a comment\n!\n")
    with pytest.raises(Failure) as info:
        sync.rules(s)
    assert info.value.problem.endswith("line 2: `!` needs a pattern after it") and "!data/keep.csv" in info.value.fix


def test_a_plan_for_one_scope_never_makes_another_look_unchanged(tmp_path):
    from remote_run import settings as settings_mod
    from remote_run import sync

    ws = tmp_path / "ws"
    for rel in ("lib/a.py", "examples/x/t.sh", "examples/y/t.sh"):
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(rel)
    s = settings_mod.load(environ={"WORKSPACE": str(ws), "REMOTE_HOST": "local",
                                   "REMOTE_DIR": str(tmp_path / "remote")})
    first = sync.plan(s, only=("lib", "examples/x"))
    assert set(first.entries) == {"lib", "lib/a.py", "examples", "examples/x", "examples/x/t.sh"}
    sync.save(first)
    assert sync.plan(s, only=("lib", "examples/x")).kind == "clean"
    assert sync.plan(s, only=("lib", "examples/y")).kind == "full"
    assert sync.plan(s).kind == "full"
    assert sync.plan(s, only=("lib", "examples/x"), checksum=True).kind == "full"  # sizes and times may lie
    with pytest.raises(Failure) as info:
        sync.plan(settings_mod.load(environ={"WORKSPACE": str(ws), "REMOTE_HOST": "local", "SYNC_EXCLUDE": "examples"}),
                  only=("examples/x/t.sh",))
    assert info.value.problem == "--only examples/x/t.sh: examples is left out by `examples` (SYNC_EXCLUDE)"
    assert info.value.fix == "drop that rule, or add `!/examples` to .remoteignore, to sync it"


def test_the_largest_folders_are_followed_down_to_where_the_bulk_is():
    from remote_run import sync

    files = [(f"data/raw/a/{i}", 1000) for i in range(90)] + [("data/small", 5), ("src/m.py", 10), ("big.bin", 50)]
    assert sync.heavy_folders(files, by_size=False) == [("data/raw/a", 90, 90_000)]
    files += [(f"node/{i}", 10_000) for i in range(20)]
    assert [folder for folder, _, _ in sync.heavy_folders(files, by_size=True)] == ["node", "data/raw/a"]


def test_progress_stays_one_updating_line():
    import io

    from remote_run import sync

    out = io.StringIO()
    line = sync.ProgressLine(out)
    for chunk in ["\r     32,768   0%    0.00kB/s    0:00:00",
                  "\r  1,234,567  52%   10.2MB/s    0:00:01 (xfr#3, to-chk=5/9)\r",
                  "  2,345,678 100%   11.0MB/s    0:00:02 (xfr#9, to-chk=0/9)\n",
                  "\nNumber of files: 9 (reg: 9)\n", "Total file size: 2,345,678 bytes\n"]:
        line.write(chunk)
    line.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and "Number of files" not in text
    assert text.split("\r")[-1].startswith("remote-run: sending 2,345,678 100%")


@settings(max_examples=600, deadline=None, derandomize=True)
@given(parts=st.lists(st.sampled_from(NAMES), min_size=1, max_size=4), is_dir=st.booleans(),
       rules=st.lists(st.tuples(st.sampled_from("+-"), st.sampled_from(PATTERNS)), max_size=8))
def test_the_one_regex_shortcut_never_misses_a_rule_that_matches(parts, is_dir, rules):
    """may_match answers "no rule matches" for most paths of a walk in one regex: it must never say
    so for a path some rule matches, or a file the rules leave out would be sent (and one they keep
    could be deleted)."""
    compiled = tree.compile_rules(rules)
    rel = "/".join(parts)
    in_order = next((rule for segment in compiled.segments
                     for rule in (segment.get(rel, ()) if isinstance(segment, dict) else [segment])
                     if rule.matches(rel, is_dir)), None)
    assert tree.deciding(compiled, rel, is_dir) is in_order
    if in_order is not None:
        assert compiled.may_match(rel, is_dir)


def synced_once(tmp_path):
    """A workspace with lib/a.py, its settings (REMOTE_HOST=local) and its first sync's plan, saved."""
    from remote_run import settings as settings_mod
    from remote_run import sync

    ws = tmp_path / "ws"
    (ws / "lib").mkdir(parents=True)
    (ws / "lib" / "a.py").write_text("A = 1\n")
    s = settings_mod.load(environ={"WORKSPACE": str(ws), "REMOTE_HOST": "local", "REMOTE_DIR": str(tmp_path / "r")})
    first = sync.plan(s)
    sync.save(first)
    return ws, s, first


def test_the_manifest_head_and_its_entries_are_used_only_together(tmp_path):
    """The manifest is two files, written one after the other: entries of another sync beside a
    head (a writer that came between the two) must never make a changed tree look unchanged."""
    import marshal

    from remote_run import sync

    ws, s, first = synced_once(tmp_path)
    assert sync.plan(s).kind == "clean"
    head = sync.manifest_path(s)
    assert sync.early(s) == {"rules": [list(rule) for rule in first.rules], "expect": first.fingerprint,
                             "protected": {}}
    assert sync.early(s, only=("lib",)) is None  # another scope: its own walk, its own verdict
    (ws / "lib" / "a.py").write_text("A = 22\n")
    changed = sync.plan(s)
    assert changed.kind == "delta"
    assert changed.fingerprint == tree.fingerprint(tree.split_protected(changed.entries)[0])  # brought up to date
    stored = marshal.loads(sync.entries_path(head).read_bytes())
    sync.entries_path(head).write_bytes(marshal.dumps({"id": "another", "entries": changed.entries}))
    assert sync.plan(s).kind == "full"  # not "clean": those entries are not the head's
    sync.entries_path(head).write_bytes(b"not marshal")
    assert sync.plan(s).kind == "full"
    sync.entries_path(head).write_bytes(marshal.dumps(stored))
    assert sync.plan(s).kind == "delta"


def test_a_manifest_head_without_a_valid_fingerprint_makes_the_plan_hash_the_tree(tmp_path):
    """A head written by hand or cut short: its fingerprint is never passed on, not even when
    nothing changed (the host would compare the tree with it and find it stale every time)."""
    import json

    from remote_run import sync

    ws, s, first = synced_once(tmp_path)
    head = sync.manifest_path(s)
    for bad in (None, "not hex", 7):
        json.dump(dict(json.loads(head.read_text()), fingerprint=bad), head.open("w"))
        again = sync.plan(s)
        assert again.kind == "clean" and again.fingerprint == first.fingerprint, bad
