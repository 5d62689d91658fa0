"""--pull on the host: the files a run wrote that match the patterns, for rsync to bring back.

Regular files only, modified between the run's start (its pid file) and its end (exit_code); no
symbolic links and nothing that resolves outside the base folder; a matching folder stands for
the files in it. Top-level folders remote-run keeps its own things in (``own``) are searched only
by a pattern that names them.
"""

import glob
import json
import os
import sys

from . import exits
from .runs import written


def _paths(pattern):
    for path in glob.iglob(pattern, recursive=True):
        if os.path.isdir(path) and not os.path.islink(path):  # a folder: everything in it
            for folder, _dirs, files in os.walk(path):
                for name in files:
                    yield os.path.join(folder, name)
        else:
            yield path


def find(bases, run_dir, patterns, own, limit):
    """{"base": the first of ``bases`` that is a real folder, "files": [[path, size, mtime], ...], "cut"}."""
    base = next((b for b in bases if os.path.isdir(b) and not os.path.islink(b)), bases[-1])
    since = written(run_dir, "pid")
    since = since - 0.05 if since is not None else written(run_dir, "meta.json")
    until = written(run_dir, "exit_code")
    real = os.path.realpath(base)
    found, cut = {}, False
    for pattern in patterns:
        top = pattern.split("/", 1)[0]
        for path in _paths(os.path.join(glob.escape(base), pattern)):
            rel = os.path.relpath(path, base)
            if rel in found or (rel.split(os.sep, 1)[0] in own and rel.split(os.sep, 1)[0] != top):
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not os.path.isfile(path) or os.path.islink(path) or os.path.realpath(path) != os.path.join(real, rel):
                continue
            if (since is not None and info.st_mtime < since) or (until is not None and info.st_mtime > until + 0.001):
                continue
            if len(found) >= limit:
                cut = True
                break
            found[rel] = [rel, info.st_size, info.st_mtime]
    return {"base": base, "files": [found[rel] for rel in sorted(found)], "cut": cut}


def main(payload):
    answer = find(payload["bases"], payload["run_dir"], payload["patterns"], payload["own"], payload["limit"])
    sys.stdout.write(json.dumps(answer) + "\n")
    return exits.OK
