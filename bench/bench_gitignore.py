"""What leaving out git-ignored files (SYNC_GITIGNORE) costs the sync's plan, which every run makes
on this machine: `git ls-files --others --ignored --exclude-standard --directory` alone, and
remote_run.sync.plan() with SYNC_GITIGNORE=1 and =0 (a warm plan: the manifest of an earlier sync
is read), on committed trees of ``--files`` source files
(folders of 50, as bench_snapshot.py builds them) holding an ignored folder, an ignored checkpoint
and ``--scattered`` ignored files spread over the folders (each one rule). Medians of ``--reps``
with min-max, the two settings alternated.

    python3 bench/bench_gitignore.py [--files 100 30000] [--scattered 0] [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_run import gitignored, sync  # noqa: E402
from remote_run import settings as settings_mod  # noqa: E402


def make_repo(root: Path, files: int, scattered: int) -> None:
    for i in range(files):
        folder = root / f"pkg{i // 500}" / f"mod{(i // 50) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.py").write_bytes(b"x = 1\n" * 340)
    (root / ".gitignore").write_text("*.ckpt\noutputs/\n*.log\n")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "tree"], cwd=root, check=True)
    (root / "outputs").mkdir()
    for i in range(200):
        (root / "outputs" / f"step{i}.log").write_bytes(b"l" * 100)
    (root / "model.ckpt").write_bytes(b"\0" * 1_000_000)
    folders = sorted({p.parent for p in root.glob("pkg*/mod*/*.py")})
    for i in range(scattered):
        (folders[i % len(folders)] / f"run{i}.log").write_bytes(b"l")


def timed(fn, arg, reps: int) -> list[float]:
    found = []
    for _ in range(reps):
        started = time.perf_counter()
        fn(arg)
        found.append(time.perf_counter() - started)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[100, 30000])
    parser.add_argument("--scattered", type=int, default=0)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"medians of {args.reps} (min-max), ms; {os.cpu_count()} cores; {args.scattered} scattered ignored files")
    print(f"{'files':>6} {'rules':>6} {'git ls-files':>20} {'plan, gitignore on':>22} {'plan, off':>20}")
    for files in args.files:
        with tempfile.TemporaryDirectory(prefix="rr-gi-") as tmp:
            root = Path(tmp) / "ws"
            root.mkdir()
            make_repo(root, files, args.scattered)
            os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # the manifests of a sync "sent" from here
            on, off = (settings_mod.load(environ={"WORKSPACE": str(root), "REMOTE_HOST": "local",
                                                  "REMOTE_DIR": f"/tmp/rr-gi-{value}", "SYNC_GITIGNORE": value})
                       for value in "10")
            sync.save(sync.plan(off))
            sync.save(sync.plan(on))
            plan = sync.plan(on)
            assert plan.kind == "clean" and sync.plan(off).kind == "clean"  # the warm path's plan
            rules = sum(origin == gitignored.ORIGIN for origin in plan.origins)
            assert "model.ckpt" not in plan.entries and "outputs" not in plan.entries
            git = timed(gitignored.listed, root, args.reps)
            with_on, with_off = [], []
            for _ in range(args.reps):
                with_on += timed(sync.plan, on, 1)
                with_off += timed(sync.plan, off, 1)
            cells = [f"{statistics.median(v) * 1000:7.1f} ({min(v) * 1000:.0f}-{max(v) * 1000:.0f})"
                     for v in (git, with_on, with_off)]
            print(f"{files:>6} {rules:>6} {cells[0]:>20} {cells[1]:>22} {cells[2]:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
