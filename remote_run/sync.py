"""Moving files: the rsync helper, the workspace sync (full, or a delta folded into the next
remote command, or nothing when unchanged), and pulling run logs back.

A sync keeps a manifest of what it last sent to (host, REMOTE_DIR) on this machine and a stamp
in REMOTE_DIR. The next invocation walks the workspace and compares: unchanged, the host checks
inside the same command that starts the run that REMOTE_DIR still fingerprints as sent; a few
small changes travel inside that command; anything else, or any doubt, is a full rsync. The
host's walk needs only the manifest's head (early()): it starts with the command, beside this
machine's walk, and takes this machine's verdict from a second line on stdin.

What is sent follows one list of rsync filter rules (rules()), first match wins; `--only`/SYNC_ONLY
put scope rules in front of it (scope_rules()). A full rsync first checks the guardrails
(SYNC_MAX_MB, SYNC_MAX_FILES) against what it would upload; `sync --dry-run` asks rsync itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import marshal
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import gitignored, ship
from .errors import Failure, Kind
from .host import layout, tree
from .host.control import ours
from .host.files import Lines, write_atomic
from .output import say
from .shell import join
from .transport import Host, dropped, failure

SECRETS = (".env", ".env.*")  # never sent, whatever .remoteignore says (but .env.example is)
DEFAULT_EXCLUDES = (".git", "var", ".venv", "__pycache__")
# Left out everywhere without a second thought: never "important files excluded by a broad pattern".
JUNK = {".git", ".git/", ".venv", ".venv/", "__pycache__", "__pycache__/", *SECRETS}
CODE_SUFFIXES = (".py", ".sh", ".ipynb", ".toml", ".yaml", ".yml", ".cfg")
MB = 10**6
# A delta larger than this goes by rsync, which compresses and sends only changed blocks.
DELTA_MAX_BYTES = 1 << 20
DELTA_MAX_ENTRIES = 256
MANIFEST_FORMAT = 2  # the head (JSON) and its entries (marshal) in two files

def rules(settings) -> list[tuple[str, str]]:
    """The workspace's filter rules, in rsync's order: first match wins (git's part as the last
    sync of this invocation had it)."""
    return [(kind, pattern) for kind, pattern, _ in sourced_rules(settings, fresh=False)]


def sourced_rules(settings, *, fresh: bool = True, asked=None) -> list[tuple[str, str, str]]:
    """rules() with where each comes from. In gitignore's terms (the last match wins) the layers
    are: built-in excludes < what git ignores (SYNC_GITIGNORE) < SYNC_EXCLUDE < .remoteignore,
    whose `!pattern` re-includes what a layer before it left out; secrets and RUNS_DIR are always
    left out. rsync takes the first match, so the list runs the other way round. ``fresh``: ask
    git again rather than reuse this invocation's answer; ``asked``: git's answer on its way
    (gitignored.rules)."""
    found = [("+", ".env.example", "built-in"), *[("-", pattern, "secrets") for pattern in SECRETS]]
    try:
        runs = settings.runs_dir.relative_to(settings.workspace)
        found.append(("-", f"/{runs.as_posix()}/", "RUNS_DIR"))
    except ValueError:
        pass
    found += [(kind, pattern, f".remoteignore line {number}")
              for kind, pattern, number in reversed(remoteignore(settings.workspace))]
    found += [("-", pattern, "SYNC_EXCLUDE") for pattern in settings.sync_exclude]
    last = [("-", pattern) for pattern in DEFAULT_EXCLUDES]
    if settings.sync_gitignore:
        # the built-in `+ .env.example` is no re-include of .remoteignore's: git's folders stay whole
        before = [(kind, pattern) for kind, pattern, origin in found if origin != "built-in"]
        found += [(kind, pattern, gitignored.ORIGIN)
                  for kind, pattern in gitignored.rules(settings, before, last, fresh=fresh, asked=asked)]
    found += [(kind, pattern, "built-in") for kind, pattern in last]
    return found


def remoteignore(workspace: Path) -> list[tuple[str, str, int]]:
    """The rules of the workspace's .remoteignore, in file order: (kind, pattern, line number).

    One pattern per line, spaces around it dropped; '#' or ';' starts a comment line; `!pattern`
    re-includes (kind "+") what an earlier line, SYNC_EXCLUDE or a built-in exclude left out.
    """
    path = workspace / ".remoteignore"
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        kind, pattern = ("+", line[1:].strip()) if line.startswith("!") else ("-", line)
        if not pattern:
            raise Failure(f"{path} line {number}: `!` needs a pattern after it", "e.g. !data/keep.csv")
        found.append((kind, pattern, number))
    return found


def scope_rules(roots) -> list[tuple[str, str]]:
    """Rules, put before rules(), that leave out everything but ``roots`` (--only paths, checked by
    settings.sync_paths) and the folders above them. Each folder on the way keeps only its names
    on the way (`+ /examples`, `+ /examples/x`, `- /examples/*`); what is inside a root falls
    through to the rules after these. rsync's --delete never touches what a rule leaves out, so
    everything else in REMOTE_DIR stays as it is."""
    roots = sorted(set(roots))
    roots = [root for root in roots if not any(root.startswith(other + "/") for other in roots)]
    kept: dict[str, set] = {}
    for root in roots:
        parts = root.split("/")
        for depth in range(len(parts)):
            kept.setdefault("/".join(parts[:depth]), set()).add(parts[depth])
    found = []
    for folder in sorted(kept):
        above = folder + "/" if folder else ""
        found += [("+", "/" + tree.escape(above + name)) for name in sorted(kept[folder])]
        found.append(("-", "/" + (tree.escape(folder, wild=True) + "/" if folder else "") + "*"))
    return found


def rsync_filters(settings) -> list[str]:
    """rsync --filter values: protect REMOTE_DIR's own state from deletion, then the rules."""
    return filters(rules(settings))


def filters(found) -> list[str]:
    """rsync --filter values for rules ``found``, after the ``P`` rules protecting REMOTE_DIR's own state."""
    return [f"P /{name}/***" for name in tree.PROTECTED] + [f"{kind} {pattern}" for kind, pattern in found]


def rsync(host: Host, source: str, target: str, *, filters=(), delete=False, progress=False, extra=(),
          claim: str | None = None, stamp: str = "", checkout: dict | None = None):
    """rsync ``source`` to ``target`` (either may be remote, written as ``host.rsync_path(...)``).

    Symlinks are kept as symlinks (-a) and paths are arguments, never shell text. For an SSH host
    rsync rides the host's ControlMaster. ``claim`` (REMOTE_DIR) runs rsync inside the host
    program's claim of it (host.owner.claim: refused unless ours and mirroring ``checkout``, a
    remote_run.checkout.spec(), then stamped with ``stamp``; ``stamp=None``: only checked, for a
    dry run): on an SSH host around rsync's receiving side, on `local` around the whole rsync.
    ``progress``: one updating line on stderr.
    """
    argv = ["rsync", "-a", "--stats", *[f"--filter={f}" for f in filters]]
    if delete:
        argv.append("--delete")
    if progress:
        argv.append("--info=progress2")
    wrapper: list = []
    if claim:
        mirrored = json.dumps(checkout) if checkout else ""
        wrapper = host.program("claim-check" if stamp is None else "claim", claim, stamp or "", mirrored)
    if not host.is_local:
        argv += ["-z", "-e", join(host.ssh_argv())]
    argv += [*extra, source, target]
    for _ in range(2):  # as it is; again carrying the host program when the host has not kept it
        if host.is_local:
            command = [*wrapper, *argv]
        else:
            command = [*argv[:1], *([f"--rsync-path={join([*wrapper, 'rsync'])}"] if wrapper else []), *argv[1:]]
        host.commands.append(join(command))
        result = _rsync(host, command, progress)
        if not wrapper or host.is_local or not host.missed_program(result, wrapped=True):
            return result
        wrapper = ship.carrying(wrapper)
    return result


def _rsync(host: Host, argv: list, progress: bool):
    if not progress:
        return host.local(argv, hide="both")
    line = ProgressLine(sys.stderr)
    try:
        return host.local(argv, hide="err", stream=line)
    finally:
        line.close()


class ProgressLine:
    """rsync's --info=progress2 output as one line that updates in place (the --stats report and
    anything else on stdout is kept for the caller, not shown)."""

    PROGRESS = re.compile(r"\s*[0-9][0-9,.]*[KMGT]?B?\s+[0-9]+%")

    def __init__(self, out):
        self.out, self.lines, self.shown = out, Lines("\r\n"), False

    def write(self, text: str) -> int:
        progress = [part for part in self.lines.feed(text) if self.PROGRESS.match(part)]
        if progress:
            self.out.write("\rremote-run: sending " + progress[-1].strip()[:100] + "\033[K")
            self.out.flush()
            self.shown = True
        return len(text)

    def flush(self):
        self.out.flush()

    def close(self):
        if self.shown:
            self.out.write("\n")
            self.out.flush()
            self.shown = False


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
    only: tuple = ()  # the --only / SYNC_ONLY paths; empty: the whole workspace
    checksum: bool = False  # compare contents (rsync --checksum): always a full rsync
    force: bool = False  # past the guardrails (SYNC_MAX_MB, SYNC_MAX_FILES)
    before: dict | None = field(default=None, repr=False)  # what the last sync from here sent, under any rules
    excluded: dict = field(default_factory=dict, repr=False)  # folders the rules leave out: {rel: (pattern, origin)}
    how: str = ""  # what the sync did: "unchanged", "delta" or "rsync"
    # this checkout (remote_run.checkout.spec): the host refuses REMOTE_DIR if it mirrors another one
    checkout: dict | None = None
    origins: list = field(default_factory=list, repr=False)  # where each of rules comes from (sourced_rules)

    def check(self) -> dict:
        """The launcher's "sync" check for this plan (clean and delta plans)."""
        spec = {"rules": self.rules, "expect": self.fingerprint, "protected": _jsonable(self.protected)}
        if self.checkout:
            spec["checkout"] = self.checkout
        if self.kind == "delta":
            spec["expect"] = self.delta["base"]
            spec["delta"] = self.delta
        return spec


def _jsonable(entries: dict) -> dict:
    return {rel: list(entry) for rel, entry in entries.items()}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "remote-run"


def manifest_path(settings) -> Path:
    """The manifest's head (JSON: format, rules, fingerprint, the protected entries); its entries
    are beside it (entries_path), in marshal's format: read in a third of JSON's time."""
    key = "\0".join((settings.host.spec, settings.remote_dir, str(settings.workspace)))
    return cache_dir() / "sync" / (hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".json")


def entries_path(head: Path) -> Path:
    return head.with_suffix(".entries")


def read_head(head: Path) -> dict | None:
    try:
        last = json.loads(head.read_text(encoding="utf-8", errors="surrogateescape"))
    except (OSError, ValueError):
        return None
    return last if isinstance(last, dict) else None


def read_manifest(head: Path) -> tuple[dict | None, dict | None]:
    """(the head, the entries {rel: entry}) of the last sync; (None, None) when there is none, and
    entries None when they are not the head's (each file names the same id)."""
    last = read_head(head)
    if last is None or last.get("format") != MANIFEST_FORMAT:
        return last, None
    try:
        stored = marshal.loads(entries_path(head).read_bytes())
        if stored["id"] != last["id"] or not isinstance(stored["entries"], dict):
            return last, None
        return last, stored["entries"]
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return last, None


def early(settings, only=None) -> dict | None:
    """The host's part of the next sync check, known before this machine walks: REMOTE_DIR must
    fingerprint, under the rules of the last sync, as that sync left it (None: no usable manifest,
    or another scope)."""
    roots = tuple(settings.sync_only if only is None else only)
    last = read_head(manifest_path(settings))
    if last is None or last.get("format") != MANIFEST_FORMAT or list(last.get("only") or []) != list(roots):
        return None
    try:
        return {"rules": [list(rule) for rule in last["rules"]], "expect": str(last["fingerprint"]),
                "protected": dict(last["protected"])}
    except (KeyError, TypeError, ValueError):
        return None


def plan(settings, *, only=None, checksum: bool = False, force: bool = False) -> Plan:
    """Walk the workspace and compare it with the manifest of the last sync to this host.

    ``only``: workspace paths checked by settings.sync_paths (None: SYNC_ONLY); the manifest's
    rules include them, so what was sent for one scope never makes another look unchanged.
    ``checksum`` always plans a full rsync (size and time may lie); ``force`` passes the guardrails.
    """
    roots = tuple(settings.sync_only if only is None else only)
    asked = gitignored.ask(settings.workspace) if settings.sync_gitignore else None  # beside reading the manifest
    path = manifest_path(settings)
    last, before = read_manifest(path)
    if before is None:
        last = None
    try:
        sourced = sourced_rules(settings, asked=asked)
    finally:
        if asked is not None:
            asked.close()
    found = [(kind, pattern) for kind, pattern, _ in sourced]
    if roots:
        _check_roots(settings, roots, sourced, "--only" if only is not None else "SYNC_ONLY")
        found = scope_rules(roots) + found
    compiled = tree.compile_rules(found)
    origins = {id(rule): origin for rule, (_, _, origin) in zip(compiled[len(found) - len(sourced):], sourced)}
    left_out: dict = {}
    entries = tree.walk(str(settings.workspace), compiled, excluded=left_out)
    unchanged = before is not None and before == entries
    inside = tree.protected_part(entries)
    # The manifest's fingerprint brought up to date at the cost of what changed, not of the tree
    fingerprint = (_updated(last.get("fingerprint"), before, entries) if before is not None
                   else tree.fingerprint(tree.split_protected(entries)[0]))
    base = dict(rules=found, origins=["--only"] * (len(found) - len(sourced)) + [origin for _, _, origin in sourced],
                entries=entries, fingerprint=fingerprint, protected=inside, manifest=path, only=roots,
                checksum=checksum, force=force,
                excluded={rel: (rule.pattern, origins.get(id(rule), "--only")) for rel, rule in left_out.items()})
    if before is None:
        return Plan("full", reason="no record of an earlier sync here", **base)
    base["before"] = before
    same = _same_rules(last, base["origins"], found, compiled, before, entries)
    if not same:
        return Plan("full", reason="the sync rules changed", **base)
    if checksum:
        return Plan("full", reason="--checksum compares contents", **base)
    if unchanged:
        return Plan("clean", **base)
    delta = _delta(settings.workspace, before, entries, last.get("fingerprint"), fingerprint, inside)
    if delta is None:
        return Plan("full", reason="many or large changes", **base)
    size = sum(len(data) * 3 // 4 for _, data, _, _ in delta["files"])
    if over_limits(settings, len(delta["files"]), size) and not force:
        return Plan("full", reason="over the guardrails", **base)  # full() says so
    files = len(delta["files"]) + len(delta["links"]) + len(delta["dirs"]) + len(delta["delete"])
    return Plan("delta", delta=delta, delta_files=files, delta_bytes=size, **base)


def _updated(fingerprint: str, before: dict, now: dict) -> str:
    """The fingerprint of ``now`` (outside the PROTECTED names), from ``before``'s."""
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-f]{32}", fingerprint):
        return tree.fingerprint(tree.split_protected(now)[0])  # a manifest written by hand, or cut short
    if before == now:
        return fingerprint
    gone = {rel: entry for rel, entry in before.items() if now.get(rel) != entry}
    new = {rel: entry for rel, entry in now.items() if before.get(rel) != entry}
    keep = tree.split_protected
    return tree.fingerprint_update(fingerprint, keep(gone)[0], keep(new)[0])


def _same_rules(last: dict, origins: list, found: list, compiled, before: dict, entries: dict) -> bool:
    """Whether the manifest's rules are ``found``, or differ only in what git ignores without leaving
    out anything the last sync sent. A file git starts or stops ignoring then needs no full rsync:
    one that appears is a change like any other, and the host's fingerprint (under these rules)
    still catches a stale copy there. One the last sync sent and the rules now leave out does: rsync
    keeps it in REMOTE_DIR, where a delta would delete it."""
    old = [tuple(rule) for rule in last.get("rules", [])]
    if old == found:
        return True
    old_origins = last.get("origins") or []
    if len(old_origins) != len(old):
        return False
    if ([rule for rule, origin in zip(old, old_origins) if origin != gitignored.ORIGIN]
            != [rule for rule, origin in zip(found, origins) if origin != gitignored.ORIGIN]):
        return False
    for rel in before.keys() - entries.keys():
        parts = rel.split("/")
        for depth in range(1, len(parts) + 1):
            is_dir = depth < len(parts) or before[rel][0] == tree.DIR
            if not tree.included(compiled, "/".join(parts[:depth]), is_dir):
                return False
    return True


def _check_roots(settings, roots, sourced, what: str) -> None:
    """Refuse an --only path that the rules leave out (itself or a folder above it)."""
    compiled = tree.compile_rules([(kind, pattern) for kind, pattern, _ in sourced])
    for root in roots:
        parts = root.split("/")
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            path = settings.workspace / rel
            rule = tree.deciding(compiled, rel, path.is_dir() and not path.is_symlink())
            if rule is None or rule.include:
                continue
            origin = sourced[compiled.index(rule)][2]
            if origin in ("secrets", "RUNS_DIR"):
                why = ("secrets never leave this machine" if origin == "secrets"
                       else "RUNS_DIR holds this machine's run records")
                raise Failure(f"{what} {root}: {rel} is never synced ({why})", "choose another path")
            if origin == gitignored.ORIGIN:
                raise Failure(f"{what} {root}: git ignores {rel}, so the sync leaves it out",
                              f"add `!/{rel}` to .remoteignore, or set SYNC_GITIGNORE=0, to sync it")
            raise Failure(f"{what} {root}: {rel} is left out by `{rule.pattern}` ({origin})",
                          f"drop that rule, or add `!/{rel}` to .remoteignore, to sync it")


def over_limits(settings, files: int, size: int) -> str:
    """Which guardrail ``files`` files of ``size`` bytes go past ("" for none)."""
    over = []
    if settings.sync_max_mb and size > settings.sync_max_mb * MB:
        over.append(f"SYNC_MAX_MB={settings.sync_max_mb}")
    if settings.sync_max_files and files > settings.sync_max_files:
        over.append(f"SYNC_MAX_FILES={settings.sync_max_files}")
    return " and ".join(over)


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
    token = os.urandom(8).hex()  # the entries that go with this head (a reader may come between the writes)
    plan.manifest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(str(entries_path(plan.manifest)), marshal.dumps({"id": token, "entries": plan.entries}))
    head = {"format": MANIFEST_FORMAT, "id": token, "rules": [list(r) for r in plan.rules], "origins": plan.origins,
            "only": list(plan.only), "fingerprint": plan.fingerprint, "protected": _jsonable(plan.protected)}
    write_atomic(str(plan.manifest), json.dumps(head).encode("utf-8", "surrogateescape"))


def forget(plan: Plan) -> None:
    plan.manifest.unlink(missing_ok=True)
    entries_path(plan.manifest).unlink(missing_ok=True)


def full(host: Host, plan: Plan, *, progress: bool | None = None) -> SyncSummary:
    """Mirror the workspace (or plan.only) into REMOTE_DIR with rsync --delete, refusing directories
    we do not own and, unless plan.force, uploads past the guardrails."""
    s = host.settings
    if progress is None:
        progress = sys.stderr.isatty()
    if not plan.force:
        guard(host, plan)
    for line in notices(plan, s.workspace, once=True):
        say(line)
    forget(plan)  # until the host confirms the new state, no fast path may trust the old one
    started = time.perf_counter()
    result = rsync(host, f"{s.workspace}/", host.rsync_path(s.remote_dir + "/"), filters=filters(plan.rules),
                   delete=True, progress=progress, claim=s.remote_dir, stamp=plan.fingerprint, checkout=plan.checkout,
                   extra=["--checksum"] if plan.checksum else [])
    seconds = time.perf_counter() - started
    if result.exited:
        raise rsync_error(host, result, f"sync of {s.workspace} to {host.label}:{s.remote_dir}")
    for line in ours((result.stderr or "").splitlines()):
        say(line)  # the claim's own words: an older layout moved (remote_run.host.layout)
    save(plan)
    plan.how = "rsync"
    return SyncSummary(_stat(result.stdout, "Number of regular files transferred"),
                       _stat(result.stdout, "Total transferred file size"), seconds)


def guard(host: Host, plan: Plan) -> None:
    """Stop before anything is sent when the sync would upload more than SYNC_MAX_MB or
    SYNC_MAX_FILES, naming the folders that hold most of it and the pattern to leave each out.

    What would be uploaded is first taken from here (files new or changed since the last sync from
    this machine; all of them on a first sync); only when that is over a limit is rsync asked
    (--dry-run), so a host that already has the files is not refused.
    """
    s = host.settings
    before = plan.before or {}
    sending = [(rel, entry[1]) for rel, entry in plan.entries.items()
               if entry[0] == tree.FILE and not (rel in before and tree.same_entry(before[rel], entry))]
    if not over_limits(s, len(sending), sum(size for _, size in sending)):
        return
    sending = preview(host, plan).uploads
    size = sum(size for _, size in sending)
    over = over_limits(s, len(sending), size)
    if not over:
        return
    by_size = "SYNC_MAX_MB" in over
    folders = heavy_folders(sending, by_size)
    where = "; " + _most_of_it(folders) if folders else ""
    leave_out = (f"add /{folders[0][0]}/ to .remoteignore to leave it out, " if folders
                 else "leave folders out with .remoteignore or --only, ")
    raise Failure(f"the sync would upload {_count(len(sending))} ({_size(size)}) to {host.label}:{s.remote_dir}, "
                  f"over {over}{where}",
                  f"{leave_out}or go on with --force (train-*/run: --force-sync); `inv sync --dry-run` lists it all")


def heavy_folders(files, by_size: bool, count: int = 3) -> list[tuple[str, int, int]]:
    """The folders that hold most of ``files`` ([(rel, size)]): (folder, files, bytes) for the
    ``count`` largest top-level folders holding at least a tenth of it all (in bytes, or files),
    each followed down while one sub-folder holds 80 % of it."""
    totals: dict[str, list] = {}
    children: dict[str, set] = {}
    for rel, size in files:
        parts = rel.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            total = totals.setdefault(folder, [0, 0])
            total[0] += 1
            total[1] += size
            children.setdefault("/".join(parts[:depth - 1]), set()).add(folder)
    weight = (lambda folder: totals[folder][1]) if by_size else (lambda folder: totals[folder][0])
    everything = sum(size for _, size in files) if by_size else len(files)
    found = []
    for folder in sorted(children.get("", ()), key=weight, reverse=True)[:count]:
        if weight(folder) < everything / 10:
            break
        while children.get(folder):
            biggest = max(children[folder], key=weight)
            if weight(biggest) < 0.8 * weight(folder):
                break
            folder = biggest
        found.append((folder, *totals[folder]))
    return found


def notices(plan: Plan, workspace: Path, *, once: bool) -> list[str]:
    """One line for each folder that looks important but a broad pattern leaves out.

    Looks important: below the workspace's top level, holding code (CODE_SUFFIXES), and left out
    by a pattern that names no path (`var`, `data`; not `/var/`, `data/raw` or --only's scope)
    other than .git, .venv, __pycache__ and the secrets. ``once``: each is said once per workspace
    (remembered under ~/.cache/remote-run/sync).
    """
    found = []
    for rel, (pattern, origin) in sorted(plan.excluded.items()):
        if "/" not in rel or pattern in JUNK or "/" in pattern.rstrip("/") or origin == "--only":
            continue
        code = _code_files(workspace / rel)
        if code:
            found.append((rel, pattern, origin, code))
    if once and found:
        memory = cache_dir() / "sync" / (
            "noticed-" + hashlib.sha256(str(workspace).encode("utf-8", "surrogateescape")).hexdigest()[:24] + ".json")
        try:
            seen = set(json.loads(memory.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            seen = set()
        keys = {f"{rel}\0{pattern}" for rel, pattern, _, _ in found}
        found = [item for item in found if f"{item[0]}\0{item[1]}" not in seen]
        if found:
            memory.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(str(memory), json.dumps(sorted(seen | keys)).encode("utf-8", "surrogateescape"))
    return [f"not synced, though it holds code: {rel}/ "
            f"({code}{'+' if code >= CODE_SCAN else ''} code file{'s' if code > 1 else ''}), "
            f"left out by the broad pattern `{pattern}` "
            f"({origin}); if a run needs it, add `!/{rel}/` to .remoteignore" for rel, pattern, origin, code in found]


CODE_SCAN = 200  # code files counted in a folder before notices() stops looking


def _code_files(folder: Path, limit: int = 5000) -> int:
    """How many code files ``folder`` holds (up to CODE_SCAN; at most ``limit`` entries looked at)."""
    code = seen = 0
    for _, dirs, names in os.walk(folder):
        seen += len(dirs) + len(names)
        code += sum(name.endswith(CODE_SUFFIXES) for name in names)
        if code >= CODE_SCAN or seen >= limit:
            break
    return min(code, CODE_SCAN)


@dataclass
class Preview:
    """What a sync would do, as rsync --dry-run itemizes it."""

    uploads: list  # [(rel, size)] files whose contents would be sent
    created: int  # folders and links that would be made
    deletions: list  # paths that would be deleted (folders end in /)
    seconds: float = 0.0


ITEM = re.compile(r"([<>ch.][fdLDS].{9}|\*deleting  ) ([0-9]+) (.*)\Z")


def preview(host: Host, plan: Plan) -> Preview:
    """Ask rsync what a sync of ``plan`` would upload and delete (--dry-run): nothing is written,
    not even on a fresh REMOTE_DIR (the host program's claim only checks it)."""
    s = host.settings
    started = time.perf_counter()
    result = rsync(host, f"{s.workspace}/", host.rsync_path(s.remote_dir + "/"), filters=filters(plan.rules),
                   delete=True,
                   extra=["--dry-run", "--out-format=%i %l %n", *(["--checksum"] if plan.checksum else [])],
                   claim=s.remote_dir, stamp=None, checkout=plan.checkout)
    if result.exited:
        raise rsync_error(host, result, f"dry run of the sync of {s.workspace} to {host.label}:{s.remote_dir}")
    uploads, created, deletions = [], 0, []
    for line in result.stdout.splitlines():
        match = ITEM.match(line)
        if not match:
            continue
        item, size, rel = match.groups()
        if item.startswith("*"):
            deletions.append(rel)
        elif item[0] in "<>" and item[1] == "f":
            uploads.append((rel, int(size)))
        elif item[0] == "c" and item[1] != "f" and rel != "./":
            created += 1
    return Preview(uploads, created, deletions, time.perf_counter() - started)


def preview_text(host: Host, plan: Plan, seen: Preview) -> str:
    """`sync --dry-run`'s report: counts, bytes, the ten largest uploads, the deletions, the guardrails."""
    s = host.settings
    size = sum(size for _, size in seen.uploads)
    scope = f", only {', '.join(plan.only)}" if plan.only else ""
    lines = [f"dry run: {s.workspace} -> {host.label}:{s.remote_dir}{scope}{' (by checksum)' if plan.checksum else ''}",
             (f"would upload {_count(len(seen.uploads))} ({_size(size)}), create {seen.created:,} folders and links, "
              f"delete {len(seen.deletions):,}; the synced tree holds {_count(synced(plan)['files'])} "
              f"({_size(synced(plan)['bytes'])})")]
    if seen.uploads:
        lines.append("largest uploads:")
        lines += [f"  {_size(size):>10}  {rel}"
                  for rel, size in sorted(seen.uploads, key=lambda item: (-item[1], item[0]))[:10]]
    if seen.deletions:
        lines.append("would delete:")
        lines += [f"  {rel}" for rel in seen.deletions[:10]]
        if len(seen.deletions) > 10:
            lines.append(f"  ... and {len(seen.deletions) - 10:,} more")
    over = over_limits(s, len(seen.uploads), size)
    if over:
        folders = heavy_folders(seen.uploads, "SYNC_MAX_MB" in over)
        lines.append(f"over {over}: a sync would stop (--force goes on)"
                     + ("; " + _most_of_it(folders) if folders else ""))
    lines += [line for line in [gitignored_text(plan, s.workspace)] if line]
    lines += notices(plan, s.workspace, once=False)
    lines.append(f"nothing was changed ({seen.seconds:.2f} s)")
    return "\n".join(lines)


def synced(plan) -> dict | None:
    """What a sync made REMOTE_DIR hold, for the run record: the scope, its files and bytes, and how
    (None when ``plan``, a session's done["sync"], is not a Plan: no sync ran)."""
    if not isinstance(plan, Plan):
        return None
    files = [entry[1] for entry in plan.entries.values() if entry[0] == tree.FILE]
    return {"only": list(plan.only), "files": len(files), "bytes": sum(files),
            "how": (plan.how or plan.kind) + (" --checksum" if plan.checksum else "")}


def gitignored_text(plan: Plan, workspace: Path) -> str:
    """What .gitignore left out of ``plan``, in one line ("" for nothing)."""
    files, size, largest = gitignored.left_out(plan, workspace)
    if not files:
        return ""
    named = ", ".join(f"{rel} ({_count(count) + ', ' if rel.endswith('/') else ''}{_size(total)})"
                      for rel, count, total in largest[:3])
    more = f" and {len(largest) - 3:,} more" if len(largest) > 3 else ""
    return (f"left out {_count(files)} ({_size(size)}) that git ignores: {named}{more}; "
            "SYNC_GITIGNORE=0 or a `!path` line in .remoteignore sends them")


def _most_of_it(folders) -> str:
    return "most of it is in " + ", ".join(f"{rel}/ ({_count(files)}, {_size(total)})" for rel, files, total in folders)


def _count(files: int) -> str:
    return f"{files:,} file" + ("" if files == 1 else "s")


def _size(count: int) -> str:
    if count >= 10**9:
        return f"{count / 10**9:.1f} GB"
    if count >= MB:
        return f"{count / MB:.1f} MB"
    return f"{count / 1000:.1f} kB" if count >= 1000 else f"{count} bytes"


def checked(plan: Plan, report: dict) -> bool:
    """Take the host's answer to plan.check(): True when REMOTE_DIR is as sent (the delta applied);
    its refusal (REMOTE_DIR mirrors another checkout) stops here, in its one line."""
    state = (report or {}).get("state")
    if state == "refused":
        raise Failure(report["detail"], kind=Kind.ENVIRONMENT)  # as the claim's refusal (rsync_error)
    if state == "applied":
        save(plan)
    if state in ("ok", "applied"):
        plan.how = "unchanged" if state == "ok" else "delta"
    return state in ("ok", "applied")


def describe(host: Host, plan: Plan, summary: SyncSummary | None = None) -> str:
    where = f"{host.settings.workspace} -> {host.label}:{host.settings.remote_dir}"
    if plan.only:
        where += f", only {', '.join(plan.only)}"
    if summary is not None:
        checksum = ", contents compared by checksum" if plan.checksum else ""
        return f"synced {where} ({summary.files} files, {summary.bytes} bytes sent{checksum}, {summary.seconds:.2f} s)"
    if plan.kind == "delta":
        return f"synced {where} ({plan.delta_files} changed entries, {plan.delta_bytes} bytes sent with the command)"
    return f"synced {where} (no changes; checked on the host)"


def pull_runs(host: Host, run_id: str | None = None) -> SyncSummary:
    """Copy REMOTE_DIR/.remote-run/runs/ (or one run) into RUNS_DIR; an existing local file is never replaced."""
    s = host.settings
    source = f"{s.remote_dir}/{layout.RUNS}/" + (f"{run_id}/" if run_id else "")
    dest = s.runs_dir / run_id if run_id else s.runs_dir
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Not the runs' snapshots (work/): their code was released; what a run wrote there comes back with --pull.
    result = rsync(host, host.rsync_path(source), f"{dest}/",
                   extra=["--ignore-existing", "--exclude=/work/" if run_id else "--exclude=/*/work/"])
    if result.exited:
        if "No such file or directory" in result.stderr or "change_dir" in result.stderr:
            what = f"run {run_id}" if run_id else "runs"
            raise Failure(f"no {what} in {host.label}:{s.remote_dir}/{layout.RUNS}",
                          f"see `inv status` or `ls {s.remote_dir}/{layout.RUNS}` on the host")
        raise rsync_error(host, result, f"pulling logs from {host.label}:{source}")
    return SyncSummary(_stat(result.stdout, "Number of regular files transferred"),
                       _stat(result.stdout, "Total transferred file size"), time.perf_counter() - started)


def rsync_error(host: Host, result, what: str) -> Failure:
    """The Failure of an rsync that ended with an error: the host program's claim refusing
    REMOTE_DIR, no Python or a full disk there, OpenSSH's own failures, else rsync's last line."""
    stderr = result.stderr or ""
    claim = ours(stderr.splitlines())  # the claim around rsync said why (host.owner.claim)
    if claim:
        return Failure(claim[0], kind=Kind.ENVIRONMENT)
    if host.interpreter_missing(stderr):  # the claim around rsync found no Python
        return host.failed(result, what)
    if "No space left on device" in stderr:
        return Failure(f"{what} failed: the disk is full on {host.label} (No space left on device)",
                       "free space there or choose another REMOTE_DIR", Kind.ENVIRONMENT)
    found = failure(host.label, stderr) if not host.is_local else None
    if found and found.problem == dropped(host.label):
        return Failure(found.problem, "run the command again (a sync resumes where it stopped)", found.kind)
    if found:
        return found
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return Failure(f"{what} failed (rsync exit {result.exited}): {last[-1] if last else 'no error text'}",
                   kind=Kind.ENVIRONMENT)


def _stat(text: str, label: str) -> int:
    match = re.search(re.escape(label) + r":\s*([0-9,.]+)", text or "")
    return int(re.sub(r"[^0-9]", "", match.group(1))) if match else 0
