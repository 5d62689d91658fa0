"""What a run's snapshot costs on the host: hard-linking a synced tree of ``--files`` files (in
folders of 50, 2 KB each, as a repository's sources) into runs/<id>/work, and releasing it after
the run. Times the launcher's own functions in this process (what the host-side supervisor does);
the run's start over SSH is not included. Medians of ``--reps`` with min-max.

    python3 bench/bench_snapshot.py [--files 7000] [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remote_run.host import snapshot, tree  # noqa: E402


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"pkg{i // 500}" / f"mod{(i // 50) % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.py").write_bytes(b"x = 1\n" * 340)
    (root / ".remote-run").mkdir()
    (root / ".remote-run" / "owner").write_text("created by remote-run\n")
    (root / tree.STAMP).write_text("stamp\n")
    (root / "runs").mkdir()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=7000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    take, release = [], []
    with tempfile.TemporaryDirectory(prefix="rr-snap-") as tmp:
        root = Path(tmp) / "remote"
        root.mkdir()
        make_tree(root, args.files)
        for i in range(args.reps):
            run_dir = root / "runs" / f"run{i}"
            run_dir.mkdir()
            started = time.perf_counter()
            taken = snapshot.take(str(root), str(run_dir), [])
            take.append(time.perf_counter() - started)
            assert taken["files"] == args.files + 0, taken
            started = time.perf_counter()
            snapshot.release(str(run_dir))
            release.append(time.perf_counter() - started)
            assert not os.listdir(run_dir / "work"), "release left code behind"
    print(f"snapshot of {args.files} files ({args.files // 50} folders), medians of {args.reps};"
          f" {os.cpu_count()} cores")
    print(f"{'step':<10} {'median s':>9} {'min-max s':>14}")
    for name, values in (("snapshot", take), ("release", release)):
        print(f"{name:<10} {statistics.median(values):>9.3f} {min(values):>6.3f}-{max(values):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
