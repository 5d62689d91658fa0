"""The synced tree, as rsync sees it: filter rules, a walk, a fingerprint, and applying a delta.

Part of the host program (standard library only): this machine and the host judge "is the tree
the same?" with one implementation.

Rules are rsync filter rules, ``("+" | "-", pattern)``, first match wins, and follow rsync's
pattern semantics (man rsync, "INCLUDE/EXCLUDE PATTERN RULES"): a leading ``/`` anchors at the
root of the transfer, a trailing ``/`` matches directories only, ``*`` stops at ``/``, ``**``
does not, ``dir/***`` matches a directory and everything in it, and a pattern without ``/`` or
``**`` is matched against the last path component. An excluded directory is not descended into.
"""

import os
import re
import stat

from .files import read_text, write_atomic

# Top-level names in REMOTE_DIR that a sync never deletes (rsync ``P`` rules): the venv and our
# own state (runs, their outputs, the dataset cache: remote_run.host.layout). On the host they hold
# more than the workspace sent, so the fingerprint leaves them out and checks the workspace's own
# files there one by one. Every other name, runs/ and data/ included, is the workspace's.
PROTECTED = (".venv", ".remote-run")
# Paths an older remote-run wrote into REMOTE_DIR (rendered runners, the folders it made for them): the
# host's walk skips them, so a rendered runner does not make the tree look changed.
RENDERED = ".remote-run/rendered"
STAMP = ".remote-run/synced"
FILE, DIR, LINK, OTHER = "f", "d", "l", "o"


def _pattern_regex(pattern):
    """The regex for an rsync wildcard pattern (without anchoring or a trailing slash)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            first = i + 2 if pattern[i + 1:i + 2] in ("!", "^") else i + 1
            end = pattern.find("]", first + 1)  # a "]" right after "[" or "[!" is a member
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[first:end].replace("\\", "\\\\").replace("[", "\\[")
                out.append(("[^" if first == i + 2 else "[") + body + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


class Rule:
    """One rsync filter rule: ``include`` or not, and whether it matches a path."""

    def __init__(self, kind, pattern):
        if kind not in ("+", "-"):
            raise ValueError("rule kind must be + or -")
        self.kind, self.pattern = kind, pattern
        self.include = kind == "+"
        text = pattern
        everything_below = text.endswith("/***")
        if everything_below:
            text = text[:-4]
        self.everything_below = everything_below
        self.dir_only = text.endswith("/") and not everything_below
        text = text.rstrip("/") if self.dir_only else text
        anchored = text.startswith("/")
        text = text.lstrip("/") if anchored else text
        whole_path = anchored or "/" in text or "**" in text or everything_below
        wild = any(ch in pattern for ch in "*?[")
        if not wild:
            body = re.escape(text)  # rsync: without a wildcard a backslash is an ordinary character
        elif not anchored and text.startswith("**/"):
            body = "(?:.*/)?" + _pattern_regex(text[3:])  # rsync: a leading **/ may match no folder
        else:
            body = _pattern_regex(text)
        if everything_below:
            body += "(?P<below>/.*)?"
        # An anchored name without wildcards matches that one path: looked up, not tried (Rules)
        self.literal = text if anchored and not wild else None
        if not whole_path:
            self._regex = re.compile(body + r"\Z", re.S)
            self._basename = True
        else:
            self._regex = re.compile((r"\A" if anchored else r"(?:\A|.*/)") + body + r"\Z", re.S)
            self._basename = False

    def matches(self, rel, is_dir):
        if self.dir_only and not is_dir:
            return False
        subject = rel.rsplit("/", 1)[-1] if self._basename else rel
        match = self._regex.match(subject)
        if match and self.everything_below and not is_dir and match.group("below") is None:
            return False  # "dir/***" names the directory itself, not a file of that name
        return match is not None


class Rules(list):
    """Compiled rules in order, with each run of anchored names without wildcards kept as one
    {path: [rules]} (what git ignores can be hundreds of them; trying each one per path is slow).

    Most paths match no rule, and a walk asks for every one: ``may_match`` answers "no rule
    matches" with one regex for the names and one for the paths (all the rules' regexes as one
    alternation), so only a path some rule may match is tried rule by rule, in order."""

    def __init__(self, rules):
        list.__init__(self, rules)
        self.segments = []
        self.literals = set()
        for rule in self:
            if rule.literal is None:
                self.segments.append(rule)
                continue
            self.literals.add(rule.literal)
            if not self.segments or not isinstance(self.segments[-1], dict):
                self.segments.append({})
            self.segments[-1].setdefault(rule.literal, []).append(rule)
        wild = [rule for rule in self if rule.literal is None]
        self._any = {}
        for is_dir in (False, True):
            for basename in (False, True):
                found = [rule._regex.pattern.replace("(?P<below>", "(?:") for rule in wild
                         if rule._basename == basename and (is_dir or not rule.dir_only)]
                self._any[is_dir, basename] = re.compile("|".join("(?:%s)" % f for f in found), re.S) if found else None

    def may_match(self, rel, is_dir):
        """False when no rule matches ``rel``; True when one may (then ask them in order)."""
        if rel in self.literals:
            return True
        whole = self._any[is_dir, False]
        if whole is not None and whole.match(rel):
            return True
        name = self._any[is_dir, True]
        return name is not None and name.match(rel.rsplit("/", 1)[-1]) is not None


def compile_rules(rules):
    return Rules(Rule(kind, pattern) for kind, pattern in rules)


def deciding(rules, rel, is_dir):
    """The first rule that matches ``rel`` (rsync's verdict is its kind), or None (sent)."""
    if isinstance(rules, Rules) and not rules.may_match(rel, is_dir):
        return None
    for segment in getattr(rules, "segments", rules):
        if isinstance(segment, dict):
            for rule in segment.get(rel, ()):
                if rule.matches(rel, is_dir):
                    return rule
        elif segment.matches(rel, is_dir):
            return segment
    return None


def included(rules, rel, is_dir):
    """rsync's verdict for ``rel`` (relative, ``/``-separated): the first matching rule decides."""
    rule = deciding(rules, rel, is_dir)
    return rule is None or rule.include


def escape(path, wild=False):
    """``path`` as (part of) an rsync pattern matching exactly that name: wildcards and backslashes
    escaped when the pattern has a wildcard (``wild``: the rest of it does); else rsync compares
    the text as it is."""
    if not wild and not any(ch in path for ch in "*?["):
        return path
    return re.sub(r"([*?\\[])", r"\\\1", path)


def _entry(st, path):
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return (FILE, st.st_size, st.st_mtime_ns, stat.S_IMODE(mode), "")
    if stat.S_ISDIR(mode):
        return (DIR, 0, st.st_mtime_ns, stat.S_IMODE(mode), "")
    if stat.S_ISLNK(mode):
        return (LINK, 0, st.st_mtime_ns, 0, os.readlink(path))
    return (OTHER, 0, st.st_mtime_ns, stat.S_IMODE(mode), "")


def walk(root, rules, skip=(), excluded=None):
    """{relative path: (type, size, mtime_ns, mode, link target)} of what rsync would send from ``root``.

    ``rules`` are compiled Rules; ``skip`` is a set of relative paths left out (and not descended).
    Symlinks are entries of their own, never followed. ``excluded``, a dict, receives each folder
    the rules leave out, with the rule that did.
    """
    # The loop runs once per file of the tree (50,000 in a large workspace), on both machines: the
    # common case (a regular file no rule can match) is written out here rather than called.
    entries = {}
    pending = [""]
    literals = rules.literals if isinstance(rules, Rules) else None
    whole, named = ((rules._any[False, False], rules._any[False, True]) if literals is not None else (None, None))
    whole, named = whole and whole.match, named and named.match
    s_isreg = stat.S_ISREG
    while pending:
        folder = pending.pop()
        try:
            listing = os.scandir(os.path.join(root, folder) if folder else root)
        except OSError:
            continue
        prefix = folder + "/" if folder else ""
        with listing:
            for item in listing:
                rel = prefix + item.name
                if skip and rel in skip:
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                mode = st.st_mode
                if s_isreg(mode):
                    if (literals is None or rel in literals or (whole is not None and whole(rel))
                            or (named is not None and named(item.name))):
                        rule = deciding(rules, rel, False)
                        if rule is not None and not rule.include:
                            continue
                    entries[rel] = (FILE, st.st_size, st.st_mtime_ns, mode & 0o7777, "")
                    continue
                try:
                    entry = _entry(st, item.path)
                except OSError:
                    continue
                is_dir = entry[0] == DIR
                rule = deciding(rules, rel, is_dir)
                if rule is not None and not rule.include:
                    if is_dir and excluded is not None:
                        excluded[rel] = rule
                    continue
                entries[rel] = entry
                if is_dir:
                    pending.append(rel)
    return entries


def split_protected(entries):
    """(entries outside PROTECTED top-level names, entries inside them)."""
    outside, inside = {}, {}
    for rel, entry in entries.items():
        (inside if rel.split("/", 1)[0] in PROTECTED else outside)[rel] = entry
    return outside, inside


def protected_part(entries):
    """split_protected(entries)[1], without building the other part."""
    return {rel: entry for rel, entry in entries.items()
            if rel.startswith(PROTECTED) and rel.split("/", 1)[0] in PROTECTED}


def _line(rel, entry):
    kind, size, mtime_ns, mode, target = entry
    # Seconds, not nanoseconds: an rsync older than protocol 31 keeps whole seconds, and the host
    # side of this comparison must not depend on that. Directories: existence and mode only
    # (their mtime changes whenever a run writes __pycache__ or outputs into them).
    if kind == DIR:
        fields = (kind, rel, "", "", "%o" % mode, "")
    elif kind == LINK:
        fields = (kind, rel, "", "", "", target)
    else:
        fields = (kind, rel, str(size), str(mtime_ns // 1000000000), "%o" % mode, "")
    return "\0".join(fields).encode("utf-8", "surrogateescape") + b"\n"


FINGERPRINT_BITS = 128


def fingerprint(entries):
    """A hash of the tree as rsync's quick check sees it (type, path, size, mtime in s, mode, link):
    the sum of a hash per entry, so that a change of a few entries updates it (fingerprint_update)
    at their cost, not the tree's."""
    return _hex(_hash_sum(entries))


def fingerprint_update(old, gone, new):
    """The fingerprint of a tree that was ``old`` with the entries ``gone`` ({rel: entry}) taken
    out and ``new`` put in."""
    return _hex(int(old, 16) - _hash_sum(gone) + _hash_sum(new))


def _hash_sum(entries):
    """The sum of each entry's hash (the first FINGERPRINT_BITS of the sha256 of its _line)."""
    from hashlib import sha256  # here (once, not per entry): most host commands need no fingerprint

    size, line = FINGERPRINT_BITS // 8, _line
    return sum(int.from_bytes(sha256(line(rel, entry)).digest()[:size], "big") for rel, entry in entries.items())


def _hex(value):
    return "%032x" % (value % (1 << FINGERPRINT_BITS))


def same_entry(a, b):
    """Whether two entries are equal for the fingerprint (see _line)."""
    return _line("", a) == _line("", b)


def host_fingerprint(root, rules, protected):
    """The host's view: the fingerprint of REMOTE_DIR without PROTECTED top-level names and rendered
    paths, or None when one of ``protected`` ({rel: entry} the workspace has there) differs."""
    found = host_entries(root, rules, protected)
    return None if found is None else fingerprint(found)


def host_entries(root, rules, protected):
    """What host_fingerprint() hashes: the walk of REMOTE_DIR (None when ``protected`` differs)."""
    if not _protected_same(root, protected):
        return None
    return walk(root, rules, set(read_rendered(root)) | set(PROTECTED))


def _protected_same(root, protected):
    for rel, entry in protected.items():
        try:
            there = _entry(os.lstat(os.path.join(root, rel)), os.path.join(root, rel))
        except OSError:
            return False
        if not same_entry(there, entry):
            return False
    return True


def after_delta(root, entries, delta):
    """host_entries() after ``delta`` was applied, from the walk made before it (``entries``) and a
    look at each path the delta names, instead of a second walk of the whole tree; None when one of
    the delta's ``protected`` entries differs. Paths inside PROTECTED names are not the tree's.
    Returns (the entries, {rel: entry} of ``entries`` that are gone or changed, {rel: entry} new
    or changed): fingerprint_update() takes the last two."""
    if not _protected_same(root, delta.get("protected", {})):
        return None
    deleted = delta.get("delete", [])
    gone, new = {}, {}
    if deleted:  # one pass over the tree, not one per deleted path
        named, below = set(deleted), tuple(rel + "/" for rel in deleted)
        gone = {rel: entry for rel, entry in entries.items() if rel in named or rel.startswith(below)}
    found = dict(entries)
    for rel in gone:
        del found[rel]
    for rel in [item[0] for kind in ("dirs", "files", "links") for item in delta.get(kind, [])]:
        if rel.split("/", 1)[0] in PROTECTED:
            continue
        if rel in found:
            gone[rel] = found.pop(rel)
        path = os.path.join(root, rel)
        try:
            found[rel] = new[rel] = _entry(os.lstat(path), path)
        except OSError:
            new.pop(rel, None)
    return found, gone, new


def read_rendered(root):
    return [line for line in (read_text(os.path.join(root, RENDERED), strip=False) or "").split("\0") if line]


def apply_delta(root, delta):
    """Apply a delta built by remote_run.sync (deletions, folders, files, links) below ``root``.

    Nothing is deleted inside PROTECTED top-level names, exactly as rsync's ``P`` rules do.
    """
    import base64
    import shutil

    for rel in sorted(delta.get("delete", []), key=lambda r: -r.count("/")):
        if rel.split("/", 1)[0] in PROTECTED:
            continue
        path = os.path.join(root, rel)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    for rel, mode in delta.get("dirs", []):
        path = os.path.join(root, rel)
        if not os.path.isdir(path) or os.path.islink(path):
            if os.path.lexists(path):
                os.unlink(path)
            os.makedirs(path)
        os.chmod(path, mode)
    for rel, data, mode, mtime_ns in delta.get("files", []):
        path = os.path.join(root, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        write_atomic(path, base64.b64decode(data), mode)
        os.utime(path, ns=(mtime_ns, mtime_ns))
    for rel, target in delta.get("links", []):
        path = os.path.join(root, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        temp = os.path.join(os.path.dirname(path), ".%s.rr%d" % (os.path.basename(path), os.getpid()))
        os.symlink(target, temp)
        os.replace(temp, path)
