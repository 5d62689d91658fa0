"""What the GPU queue's reader costs, now against an earlier commit (before: pid + start time
liveness, trusting the entry's fields; now: entries read as hostile input, each hold vouched for
by a lock its owner's process holds).

Timed, in worker processes that import each version's remote_run/host: a reader's scan of N
entries (queue.entries(), what a check and every waiter do each second) when all are live and
when all are dead, and one run's enqueue (waiting, then holding) and dequeue. The entries are
made by another process (a supervisor of the same user), which lives on (live) or has ended
(dead). Medians of --reps, the versions interleaved rep by rep so load from elsewhere hits both.
Not timed: the nvidia-smi query beside each scan (tens of ms on a real host).

    python3 bench/bench_queue.py [--before a1f4b1d] [--reps 50]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A process importing one version's host package (sys.argv[1]) with its queue in $REMOTE_RUN_GPU_QUEUE.
# "make N live|dead": N entries, then stay (live) or end (dead); "scan", "cycle": one timed step.
WORKER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from remote_run.host import queue
kept = []
for line in sys.stdin:
    words = line.split()
    if words[0] == "make":
        for i in range(int(words[1])):
            entry = queue.Entry("/x/runs/r%d" % i, {"devices": "0"})
            entry.data["arrived"] = 1000.0 + i
            entry.write()
            kept.append(entry)
        if words[2] == "dead":
            print("ok", flush=True)
            os._exit(0)
        print("ok", flush=True)
        continue
    started = time.perf_counter()
    if words[0] == "scan":
        queue.entries(drop_stale=False)
    else:
        entry = queue.Entry("/x/runs/c", {"devices": "0"})
        entry.write()
        entry.write(state=queue.HOLDING, gpus=[0])
        entry.remove()
    print(time.perf_counter() - started, flush=True)
"""


class Worker:
    def __init__(self, package: Path, queue_dir: str):
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(package)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, REMOTE_RUN_GPU_QUEUE=queue_dir))

    def ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self):
        self.proc.kill()
        self.proc.wait()


def package_at(revision: str, into: Path) -> Path:
    """remote_run/ of ``revision``, unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "remote_run"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="a1f4b1d", help="the commit to compare with (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rr-queue-") as tmp:
        os.chmod(tmp, 0o755)  # as /tmp is to the queue's folders: every user may read them
        versions = {"before": package_at(args.before, Path(tmp) / "before"), "now": ROOT}
        scenes = [(1, "live"), (10, "live"), (100, "live"), (100, "dead")]
        steps = [(f"{count} {kind}", "scan") for count, kind in scenes] + [("enqueue+hold+dequeue", "cycle")]
        workers, makers = {}, []
        for name, package in versions.items():
            for index, (label, step) in enumerate(steps):
                queue_dir = os.path.join(tmp, f"q-{name}-{index}")
                if step == "scan":
                    count, kind = scenes[index]
                    maker = Worker(package, queue_dir)  # another process of this user makes the entries
                    assert maker.ask(f"make {count} {kind}") == "ok"
                    makers.append(maker)
                workers[name, label] = Worker(package, queue_dir)
        times = {key: [] for key in workers}
        for _ in range(args.reps):
            for label, step in steps:
                for name in versions:
                    times[name, label].append(float(workers[name, label].ask(step)))
        for worker in [*workers.values(), *makers]:
            worker.close()
    print(f"µs: median (interquartile range) of {args.reps}, interleaved; {os.cpu_count()} cores; "
          f"before = {args.before}. A scan: queue.entries(), reading every entry and deciding which are held")

    def cell(values):
        low, mid, high = statistics.quantiles([v * 1e6 for v in values], n=4)
        return f"{mid:.0f} ({low:.0f}-{high:.0f})"

    rows = [("version", *(label for label, _ in steps))]
    rows += [(name, *(cell(times[name, label]) for label, _ in steps)) for name in versions]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(text.rjust(width) for text, width in zip(row, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
