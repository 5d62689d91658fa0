"""remote_run.gitignored: what git ignores becomes exclude rules that rsync and the walk agree on,
escaped, per folder, from nested .gitignore files, for a workspace below its repository's root;
`.remoteignore`'s `!` still wins; SYNC_GITIGNORE=0 and a workspace outside git change nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_tree import rsync_list

from remote_run import gitignored, sync
from remote_run import settings as settings_mod
from remote_run.errors import Failure
from remote_run.host import tree


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout


def make(root: Path, files: dict, *, repo: bool = True) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if repo:
        git(root, "init", "-q")
    return root


def load(ws: Path, **environ) -> settings_mod.Settings:
    return settings_mod.load(environ={"WORKSPACE": str(ws), "REMOTE_HOST": "local", **environ})


def sent(ws: Path, s) -> set[str]:
    found = sync.rules(s)
    walked = set(tree.walk(str(ws), tree.compile_rules(found)))
    assert walked == rsync_list(ws, found)  # rsync itself reads the rules as the walk does
    return walked


def git_rules(s) -> list[str]:
    return [pattern for (kind, pattern), origin in zip(sync.rules(s), sync.plan(s).origins) if origin == ".gitignore"]


def test_ignored_files_and_folders_are_left_out_and_tracked_ones_never(tmp_path):
    ws = make(tmp_path / "ws", {".gitignore": "*.ckpt\noutputs/\nwandb\n", "train.py": "x", "model.ckpt": "w" * 100,
                                "outputs/a/log.txt": "x", "wandb/run/x": "x", "tracked.ckpt": "t", "keep/x.py": "x"})
    git(ws, "add", "-f", "tracked.ckpt", ".gitignore", "train.py")
    names = sent(ws, load(ws))
    assert {"train.py", "tracked.ckpt", "keep", "keep/x.py", ".gitignore"} <= names
    assert not names & {"model.ckpt", "outputs", "outputs/a/log.txt", "wandb", "wandb/run/x"}
    assert git_rules(load(ws)) == ["/model.ckpt", "/outputs/", "/wandb/"]


def test_odd_names_are_escaped_for_rsync(tmp_path):
    odd = ["a[1].ckpt", "st*r.ckpt", "q?.ckpt", "back\\slash.ckpt", "sp ace.ckpt", "dir[x]/f.ckpt", "bra]ce.ckpt"]
    ws = make(tmp_path / "ws", {".gitignore": "*.ckpt\n", **{rel: "w" for rel in odd}, "a1.ckpt.py": "x",
                                "a[1].py": "x", "str.ckpt.py": "x", "backslash.py": "x",
                                "dir[x]/g.py": "x"})
    s = load(ws)
    names = sent(ws, s)
    assert not names & set(odd)
    assert {"a1.ckpt.py", "a[1].py", "str.ckpt.py", "backslash.py", "dir[x]/g.py"} <= names
    assert "/a\\[1].ckpt" in git_rules(s) and "/back\\slash.ckpt" in git_rules(s)  # no wildcard: as it is


def test_nested_gitignores_and_negations_mean_what_git_says(tmp_path):
    ws = make(tmp_path / "ws", {".gitignore": "*.tmp\n", "sub/.gitignore": "!keep.tmp\n*.bin\n", "a.tmp": "x",
                                "sub/b.tmp": "x", "sub/keep.tmp": "x", "sub/c.bin": "x", "d.bin": "x",
                                "sub/deeper/e.bin": "x"})
    names = sent(ws, load(ws))
    assert {"sub/keep.tmp", "d.bin", "sub/.gitignore"} <= names
    assert not names & {"a.tmp", "sub/b.tmp", "sub/c.bin", "sub/deeper/e.bin", "sub/deeper"}


def test_a_workspace_below_the_repository_root_gets_its_own_paths(tmp_path):
    repo = make(tmp_path / "repo", {".gitignore": "*.ckpt\n/proj/out/\n", "top.ckpt": "x", "proj/m.ckpt": "x",
                                    "proj/out/x": "x", "proj/train.py": "x", "proj/sub/n.ckpt": "x",
                                    "proj/sub/s.py": "x", "other/o.ckpt": "x"})
    ws = repo / "proj"
    s = load(ws)
    assert git_rules(s) == ["/m.ckpt", "/out/", "/sub/n.ckpt"]
    assert sent(ws, s) == {"train.py", "sub", "sub/s.py"}


def test_a_workspace_in_a_folder_its_repository_ignores_is_sent_whole(tmp_path):
    repo = make(tmp_path / "repo", {".gitignore": "build/\n", "build/proj/a.py": "x", "build/proj/b.ckpt": "x"})
    ws = repo / "build" / "proj"
    assert sent(ws, load(ws)) == {"a.py", "b.ckpt"}


def test_outside_git_or_switched_off_nothing_changes(tmp_path):
    files = {".gitignore": "*.ckpt\n", "m.ckpt": "x", "a.py": "x"}
    plain = make(tmp_path / "plain", files, repo=False)
    assert gitignored.listed(plain) is None
    assert sent(plain, load(plain)) == {".gitignore", "m.ckpt", "a.py"}
    ws = make(tmp_path / "ws", files)
    assert sent(ws, load(ws, SYNC_GITIGNORE="0")) == {".gitignore", "m.ckpt", "a.py"}
    assert sent(ws, load(ws, SYNC_GITIGNORE="1")) == {".gitignore", "a.py"}
    with pytest.raises(Failure) as info:
        load(ws, SYNC_GITIGNORE="maybe")
    assert info.value.problem == "SYNC_GITIGNORE='maybe' is not valid" and info.value.fix == "give 1 (on) or 0 (off)"


def test_remoteignore_reincludes_win_even_inside_an_ignored_folder(tmp_path):
    ws = make(tmp_path / "ws", {".gitignore": "ckpt/\n*.log\nlogs/\n", "ckpt/keep.pt": "k", "ckpt/other.pt": "o",
                                "ckpt/deep/best.pt": "b", "ckpt/deep/last.pt": "l", "ckpt/old/x.pt": "x",
                                "ckpt/.env": "SECRET=1", "a.log": "x", "keep.log": "x", "logs/l.txt": "x",
                                ".remoteignore": "!ckpt/keep.pt\n!/ckpt/deep/best.pt\n!keep.log\n!/logs/\n"})
    s = load(ws)
    names = sent(ws, s)
    assert {"ckpt", "ckpt/keep.pt", "ckpt/deep", "ckpt/deep/best.pt", "keep.log", "logs", "logs/l.txt"} <= names
    assert not names & {"ckpt/other.pt", "ckpt/deep/last.pt", "ckpt/old", "ckpt/old/x.pt", "ckpt/.env", "a.log"}
    assert "/ckpt/old/" in git_rules(s)  # a folder with nothing brought back stays one rule


def test_only_still_scopes_and_refuses_an_ignored_path_with_the_fix(tmp_path):
    ws = make(tmp_path / "ws", {".gitignore": "*.ckpt\nresults/\n", "ex/a.py": "x", "ex/m.ckpt": "x",
                                "results/r.txt": "x", "lib/l.py": "x"})
    s = load(ws)
    assert set(sync.plan(s, only=("ex",)).entries) == {"ex", "ex/a.py"}
    with pytest.raises(Failure) as info:
        sync.plan(s, only=("results",))
    assert info.value.problem == "--only results: git ignores results, so the sync leaves it out"
    assert info.value.fix == "add `!/results` to .remoteignore, or set SYNC_GITIGNORE=0, to sync it"


def test_a_plan_asks_git_again_and_only_a_sent_file_now_ignored_needs_a_full_sync(tmp_path):
    ws = make(tmp_path / "ws", {".gitignore": "*.ckpt\n", "a.py": "x", "m.ckpt": "w", "b.py": "x"})
    s = load(ws, REMOTE_DIR=str(tmp_path / "remote"))
    first = sync.plan(s)
    assert "m.ckpt" not in first.entries
    sync.save(first)
    assert sync.plan(s).kind == "clean"
    (ws / "new.ckpt").write_text("n")  # a new ignored file: git's answer changes, nothing to send
    quiet = sync.plan(s)
    assert quiet.kind == "clean" and "/new.ckpt" in [rule[1] for rule in quiet.rules]
    (ws / ".gitignore").write_text("*.pt\n")  # the checkpoints are no longer in .gitignore's reach
    again = sync.plan(s)
    assert again.kind == "delta" and {f[0] for f in again.delta["files"]} == {".gitignore", "m.ckpt", "new.ckpt"}
    assert again.delta["delete"] == []
    assert "m.ckpt" in set(tree.walk(str(ws), tree.compile_rules(sync.rules(s))))  # the run's snapshot too
    (ws / ".gitignore").write_text("*.ckpt\nb.py\n")  # b.py was sent: a delta would delete it, rsync keeps it
    later = sync.plan(s)
    assert later.kind == "full" and later.reason == "the sync rules changed"
    (ws / ".gitignore").write_text("*.ckpt\n")
    (ws / ".remoteignore").write_text("new.ckpt\n")  # any other rule that changes: a full rsync, as before
    assert sync.plan(s).reason == "the sync rules changed"


def test_what_gitignore_left_out_is_counted_where_the_sync_would_reach(tmp_path):
    ws = make(tmp_path / "ws", {".gitignore": "*.ckpt\nout/\n", "big.ckpt": "w" * 5000, "out/a": "x" * 300,
                                "out/b/c": "y" * 200, "skipped/s.ckpt": "z" * 999, "a.py": "x",
                                ".remoteignore": "skipped/\n"})
    plan = sync.plan(load(ws))
    files, size, largest = gitignored.left_out(plan, ws)
    assert (files, size) == (3, 5500)
    assert largest == [("big.ckpt", 1, 5000), ("out/", 2, 500)]
    assert sync.gitignored_text(plan, ws) == (
        "left out 3 files (5.5 kB) that git ignores: big.ckpt (5.0 kB), out/ (2 files, 500 bytes); "
        "SYNC_GITIGNORE=0 or a `!path` line in .remoteignore sends them")
    assert sync.gitignored_text(sync.plan(load(ws, SYNC_GITIGNORE="0")), ws) == ""


def test_init_keeps_its_files_out_of_git_without_dirtying_the_tree(tmp_path):
    from remote_run import envfile

    repo = make(tmp_path / "repo", {".gitignore": "__pycache__/\n", "proj [1]/a.py": "x", "b.py": "x"})
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    said = envfile.ignore(repo / ".env", repo)
    exclude = repo / ".git" / "info" / "exclude"
    assert said == [f"added /.env, /.cluster_name_* to {exclude} (git's ignore list that is never committed: "
                    "the tree a run records stays clean)"]
    assert git(repo, "status", "--porcelain") == "" and (repo / ".gitignore").read_text() == "__pycache__/\n"
    (repo / ".env").write_text("A=1\n")
    (repo / ".cluster_name_gpu").write_text("c\n")
    assert git(repo, "status", "--porcelain", "--ignored") == "!! .cluster_name_gpu\n!! .env\n"
    assert envfile.ignore(repo / ".env", repo) == []  # git already ignores them: nothing added twice
    ws = repo / "proj [1]"
    envfile.ignore(ws / ".env.l1", ws)
    assert exclude.read_text().endswith("/.env\n/.cluster_name_*\n/proj \\[1]/.env.l1\n/proj \\[1]/.cluster_name_*\n")
    (ws / ".env.l1").write_text("A=1\n")
    assert git(repo, "check-ignore", "proj [1]/.env.l1").strip() == "proj [1]/.env.l1"
    assert git(repo, "status", "--porcelain") == ""


def test_looked_up_names_keep_rsyncs_first_match_order(tmp_path):
    found = [("-", "/a"), ("+", "*.py"), ("-", "/x.py"), ("-", "/d/"), ("-", "/d"), ("+", "/e/"), ("-", "/e"),
             ("-", "/w\\[1]"), ("-", "/n/***")]
    rules = tree.compile_rules(found)
    assert [len(s) if isinstance(s, dict) else s.pattern for s in rules.segments] == [1, "*.py", 3, "/w\\[1]", "/n/***"]
    for rel, is_dir, pattern in [("a", False, "/a"), ("a", True, "/a"), ("x.py", False, "*.py"), ("d", True, "/d/"),
                                 ("d", False, "/d"), ("e", True, "/e/"), ("e", False, "/e"), ("w[1]", False, "/w\\[1]"),
                                 ("n/z", False, "/n/***"), ("c/b", False, None), ("z", False, None)]:
        rule = tree.deciding(rules, rel, is_dir)
        assert (rule.pattern if rule else None) == pattern, rel
    root = tmp_path / "ws"
    for rel in ("a", "x.py", "e", "w[1]", "n/z", "c/b", "z", "d/f"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    assert set(tree.walk(str(root), rules)) == rsync_list(root, found) == {"x.py", "z", "c", "c/b"}


def test_too_many_separate_paths_are_sent_with_one_line_that_says_so(tmp_path, monkeypatch, capsys):
    ws = make(tmp_path / "ws", {".gitignore": "*.o\n", **{f"src/keep{i}.c": "x" for i in range(4)},
                                **{f"src/f{i}.o": "x" for i in range(4)}})
    s = load(ws)
    assert len(git_rules(s)) == 4
    monkeypatch.setattr(gitignored, "MAX_RULES", 3)
    plan = sync.plan(s)
    assert {f"src/f{i}.o" for i in range(4)} <= set(plan.entries)
    assert capsys.readouterr().err == (
        f"remote-run: git ignores 4 separate paths in {ws}, more than the sync passes on (3), so it sends them: "
        "name them with patterns in .remoteignore (such as *.o), or set SYNC_GITIGNORE=0 to be quiet\n")


def test_an_ignored_folder_is_looked_into_only_for_a_rule_that_can_reach_inside(tmp_path):
    ws = make(tmp_path / "ws", {".gitignore": "data/\nckpt/\n", **{f"data/d{i}/f": "x" for i in range(5)},
                                "ckpt/run1/best.pt": "b", "ckpt/run1/last.pt": "l", "ckpt/run2/best.pt": "b",
                                ".remoteignore": "!/ckpt/run1/best.pt\n!/var/config/\n"})
    s = load(ws)
    assert git_rules(s) == ["/ckpt/run1/last.pt", "/ckpt/run2/", "/data/"]
    assert {"ckpt/run1/best.pt"} == {rel for rel in sync.plan(s).entries if rel.endswith(".pt")}


def test_without_git_nothing_changes_and_a_broken_repository_is_one_line_with_the_way_out(tmp_path, monkeypatch):
    ws = make(tmp_path / "ws", {".gitignore": "*.ckpt\n", "m.ckpt": "x", "a.py": "x"})
    (ws / ".git" / "index").write_text("garbage")
    with pytest.raises(Failure) as info:
        sync.plan(load(ws))
    assert info.value.problem == (f"git cannot list what it ignores in {ws}: "
                                  "fatal: .git/index: index file smaller than expected")
    assert "SYNC_GITIGNORE=0" in info.value.fix
    assert "m.ckpt" in sync.plan(load(ws, SYNC_GITIGNORE="0")).entries
    from remote_run import doctor

    [size, *_] = doctor.check_sync(load(ws))
    assert (size.status, size.text, size.fix) == ("fail", info.value.problem, info.value.fix)
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert gitignored.listed(ws) is None and "m.ckpt" in sync.plan(load(ws)).entries
