"""What `--repeat N` costs beyond N single runs, against the loopback test sshd.

For the direct alias ``l1`` and for ``l1proxy`` (``2 * --delay`` of added round trip), times, as
whole processes, with the ControlMaster alive and nothing changed in the workspace:

  N single runs    ``inv run scripts/noop.py`` N times, one after another
  --repeat N       ``inv run scripts/noop.py --repeat N`` once (one sync check, one start, then
                   one follow per run; the group's summary written at the end)

and reports medians over ``--reps`` (min-max beside them) and the remote commands each needed
(sshd's "Starting session:" lines). The script does nothing, so the figures are remote-run's
own cost per run; a real training run adds its own time to both sides equally.

    python3 bench/bench_repeat.py [--n 5] [--reps 5] [--delay 0.025]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_cli import REPO, loopback, make_workspace, once, timed  # noqa: E402

NOOP = 'print("RESULT_NOOP ok=1")\n'


def measure(server, alias: str, root: Path, remote_dir: str, n: int, reps: int) -> dict:
    ws = make_workspace(root)
    (ws / "scripts" / "noop.py").write_text(NOOP)
    env = server.env(REMOTE_HOST=alias, REMOTE_DIR=remote_dir, TORCH_PACKAGES="", TRAIN_IMPL="workspace")
    inv = [sys.executable, "-m", "invoke", "--search-root", str(REPO), "run", "scripts/noop.py"]
    single = lambda: timed(inv, cwd=ws, env=env, expect="RESULT_NOOP ok=1")  # noqa: E731
    group = lambda: timed([*inv, "--repeat", str(n)], cwd=ws, env=env, expect="summary:")  # noqa: E731
    single()
    single()  # untimed: the first sync and the environment
    singles, groups = [], []
    for _ in range(reps):
        singles.append(once(server, lambda: [single() for _ in range(n)]))
        groups.append(once(server, group))
    return {"singles": singles, "group": groups}


def row(label: str, samples) -> tuple:
    walls = [w for w, _, _ in samples]
    return (label, f"{statistics.median(walls):.3f}", f"{min(walls):.3f}-{max(walls):.3f}",
            f"{statistics.median(c for _, _, c in samples):g}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="runs per group (default 5)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (median reported); default 5")
    parser.add_argument("--delay", type=float, default=0.025,
                        help="one-way delay of the proxy path in seconds; default 0.025")
    args = parser.parse_args(argv)
    tag = f"/tmp/rrbench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        tmp = Path(tmp)
        with loopback(tmp, args.delay, tag) as server:
            results = {alias: measure(server, alias, tmp / f"ws-{alias}", f"{tag}_{alias}", args.n, args.reps)
                       for alias in ("l1", "l1proxy")}
    print(f"--repeat {args.n} against {args.n} single runs of a no-op script; medians of {args.reps},"
          " seconds (remote commands)")
    print(f"{'path':<10} {'what':<16} {'median s':>9} {'min-max s':>13} {'commands':>9}  (group - singles) / N")
    for alias, r in results.items():
        one = statistics.median(w for w, _, _ in r["singles"])
        many = statistics.median(w for w, _, _ in r["group"])
        for label, samples in ((f"{args.n} single runs", r["singles"]), (f"--repeat {args.n}", r["group"])):
            name, med, spread, cmds = row(label, samples)
            extra = f"{(many - one) / args.n:+.3f} s" if label.startswith("--") else ""
            print(f"{alias:<10} {name:<16} {med:>9} {spread:>13} {cmds:>9}  {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
