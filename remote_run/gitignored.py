"""What git ignores in the workspace, as rsync exclude rules for the sync (SYNC_GITIGNORE).

git is asked (`git ls-files --others --ignored --exclude-standard --directory`), never imitated:
nested .gitignore files, .git/info/exclude, core.excludesFile and negations mean what git says
they mean, and files git tracks are never listed (--others). Each answer becomes one anchored
rule, `- /path` or `- /folder/`, escaped for rsync's wildcards.

rsync never looks inside a folder it leaves out, so a `.remoteignore` `!pattern` that re-includes
something inside an ignored folder would not work against `- /folder/`. Such a folder is looked
into here instead, and only what no rule re-includes is left out, one path at a time.
"""

from __future__ import annotations

import os
import re
import subprocess
import weakref
from pathlib import Path

from .errors import Failure, Kind
from .host import tree
from .output import say

ORIGIN = ".gitignore"
# The last answer for each Settings object: the rules this invocation's sync used, for the
# commands that follow it (a run's snapshot). A sync's plan always asks git again.
_answers: dict[int, tuple[weakref.ref, list]] = {}


GIT_TIMEOUT = 120
# Each path is an rsync argument and part of every run's command (on stdin): past this many, the
# command line and the check would grow past what they carry well (the kernel's argv is 2 MB).
MAX_RULES = 5000


class Asked:
    """git's answer on its way: ask() starts git, result() reads what it said (listed())."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.argv = ["git", "-C", str(workspace), "ls-files", "--others", "--ignored", "--exclude-standard",
                     "--directory", "-z"]
        try:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE)
        except FileNotFoundError:
            self.process = None

    def close(self) -> None:
        """Stop git when its answer is no longer wanted (the plan failed before reading it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate()

    def result(self) -> list[str] | None:
        """What git ignores under the workspace, relative to it (folders end in /), or None when it
        is not in a git work tree (or git is not installed)."""
        if self.process is None:
            return None
        try:
            out, err = self.process.communicate(timeout=GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise Failure(f"git took over {GIT_TIMEOUT} s to list what it ignores in {self.workspace}",
                          "set SYNC_GITIGNORE=0 to sync without asking git", Kind.ENVIRONMENT) from None
        if self.process.returncode:
            error = err.decode("utf-8", "replace").strip().splitlines()
            if any("not a git repository" in line for line in error):
                return None
            # A workspace in a folder its repository ignores (git 2.39 fails on it): git has nothing
            # to say about what is inside, so it is all sent, as it was before .gitignore counted.
            if subprocess.run([*self.argv[:3], "check-ignore", "-q", "."], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=GIT_TIMEOUT).returncode == 0:
                return None
            raise Failure(f"git cannot list what it ignores in {self.workspace}: "
                          f"{error[-1] if error else self.process.returncode}",
                          "fix what git says (try `git status` there), or set SYNC_GITIGNORE=0 to sync without "
                          "asking git", Kind.ENVIRONMENT)
        found = out.decode("utf-8", "surrogateescape").split("\0")
        return [rel for rel in found if rel and rel not in ("./", ".")]


def ask(workspace: Path) -> Asked:
    """Start git on the question, to read its answer later (git works while this process reads
    the sync's manifest)."""
    return Asked(workspace)


def listed(workspace: Path) -> list[str] | None:
    return ask(workspace).result()


def rules(settings, before: list, after: list, *, fresh: bool = True, asked: Asked | None = None
          ) -> list[tuple[str, str]]:
    """Exclude rules for what git ignores, to go between ``before`` and ``after`` (rules as
    (kind, pattern), first match wins): paths those already decide get no rule of their own.
    ``asked``: ask()'s answer, for this workspace, asked just now."""
    remembered = _answers.get(id(settings))
    if not fresh and asked is None and remembered and remembered[0]() is settings:
        return remembered[1]
    paths = asked.result() if asked is not None else listed(settings.workspace)
    found = build(settings.workspace, paths or [], before, after)
    if len(found) > MAX_RULES:
        if asked is not None:  # a sync's plan: said once per invocation
            say(f"git ignores {len(found):,} separate paths in {settings.workspace}, more than the sync passes on "
                f"({MAX_RULES:,}), so it sends them: name them with patterns in .remoteignore (such as *.o), "
                "or set SYNC_GITIGNORE=0 to be quiet")
        found = []
    for key in [key for key, (ref, _) in _answers.items() if ref() is None]:
        del _answers[key]
    _answers[id(settings)] = (weakref.ref(settings), found)
    return found


def build(workspace: Path, paths: list[str], before: list, after: list) -> list[tuple[str, str]]:
    """The rules for git's answer ``paths`` (folders end in /)."""
    first, last = tree.compile_rules(before), tree.compile_rules(after)
    reincludes = any(rule.include for rule in first)
    found, folders = [], set()
    for rel in sorted(paths):
        is_dir = rel.endswith("/")
        rel = rel.rstrip("/")
        parts = rel.split("/")
        if any("/".join(parts[:depth]) in folders for depth in range(1, len(parts))):
            continue  # git lists a folder whose every file it ignores, and then those files too
        if is_dir:
            folders.add(rel)
        if tree.deciding(first, rel, is_dir) or not tree.included(last, rel, is_dir):
            continue  # sent or left out by a rule that comes first, or left out anyway
        if is_dir and reincludes and _reaches(first, rel):
            found += _folder(workspace, rel, first)
        else:
            found.append(("-", "/" + tree.escape(rel) + ("/" if is_dir else "")))
    return found


def _folder(workspace: Path, rel: str, first) -> list[tuple[str, str]]:
    """Rules leaving out the ignored folder ``rel``: `- /rel/`, or, when a rule of ``first``
    re-includes something inside it, each path in it that leads to nothing re-included."""
    inside, kept = [], False
    try:
        with os.scandir(workspace / rel) as listing:
            items = sorted((item.name, item.is_dir(follow_symlinks=False)) for item in listing)
    except OSError:
        items = []
    for name, is_dir in items:
        path = f"{rel}/{name}"
        rule = tree.deciding(first, path, is_dir)
        if rule is not None:
            kept = kept or rule.include  # sent, with all it holds; or left out by that rule anyway
            continue
        if is_dir and _reaches(first, path):
            below = _folder(workspace, path, first)
            kept = kept or below != [("-", "/" + tree.escape(path) + "/")]
            inside += below
        else:
            inside.append(("-", "/" + tree.escape(path) + ("/" if is_dir else "")))
    return inside if kept else [("-", "/" + tree.escape(rel) + "/")]


def _reaches(first, rel: str) -> bool:
    """Whether an include rule of ``first`` may match something inside the folder ``rel`` (an
    anchored one only below the text before its first wildcard; any other one anywhere), so that
    a large ignored folder is looked into only for a rule that can bring something back from it."""
    for rule in first:
        if not rule.include:
            continue
        if not rule.pattern.startswith("/"):
            return True
        fixed = re.split(r"[*?[\\]", rule.pattern.lstrip("/"), maxsplit=1)[0]
        if fixed.startswith(rel + "/") or (rel + "/").startswith(fixed):
            return True
    return False


def left_out(plan, workspace: Path) -> tuple[int, int, list[tuple[str, int, int]]]:
    """What the .gitignore rules of ``plan`` (a sync Plan) leave out that the sync would otherwise
    reach: (files, bytes, [(path, files, bytes)] largest first); folders end in /."""
    compiled = tree.compile_rules(plan.rules)
    found = []
    for (kind, pattern), origin, rule in zip(plan.rules, plan.origins, compiled):
        if origin != ORIGIN or kind != "-":
            continue
        rel = _unescape(pattern.strip("/")) if any(ch in pattern for ch in "*?[") else pattern.strip("/")
        is_dir = pattern.endswith("/")
        parent = rel.rpartition("/")[0]
        if parent and parent not in plan.entries or tree.deciding(compiled, rel, is_dir) is not rule:
            continue  # in a folder the sync leaves out for another reason, or outside --only
        files, size = _size(workspace / rel, is_dir)
        found.append((rel + ("/" if is_dir else ""), files, size))
    found.sort(key=lambda item: (-item[2], item[0]))
    return sum(item[1] for item in found), sum(item[2] for item in found), found


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def _size(path: Path, is_dir: bool) -> tuple[int, int]:
    if not is_dir:
        try:
            return 1, os.lstat(path).st_size
        except OSError:
            return 0, 0
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size
