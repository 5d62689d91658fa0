"""Where a warm run's time goes as the workspace grows (issue 22): its pieces, timed one by one.

For ``--size`` small files (default 30,000; folders of 100, the workspace of bench/bench_scale.py)
and, beside it, ``--base`` files (default 100; 0 leaves it out), against the loopback sshd with
REMOTE_PYTHON set and --cpu-ok, once the tree is synced and a warm run has been made, medians of
``--reps``:

  end to end     ``inv run scripts/noop.py --cpu-ok``, nothing changed: whole processes
  manifest walk  this machine's side, in this process: remote_run.sync.plan() on the workspace
                 (must answer "clean"), and of it: tree.walk of the workspace, tree.fingerprint of
                 the entries, reading the last sync's manifest (its head and entries)
  fingerprint    the host's side, in one process as the host's user, with the host's Python:
                 remote_run.host.tree.host_fingerprint on REMOTE_DIR under the plan's rules (must
                 equal the plan's fingerprint), and of it: the walk and the hash
  snapshot       remote_run.host.snapshot.take into a scratch run folder under REMOTE_DIR's runs,
                 then snapshot.release (which the host does after the run's exit status is written:
                 not on the client's path, so not subtracted)
  rest           end to end - manifest walk - fingerprint - snapshot take: interpreter and invoke
                 start-up, the SSH round trip, the run itself, pulling the log back...

The table gives each piece's median, its µs per file (median / files) and, with ``--base``, its
growth per file between the two sizes ((t_size - t_base) / (size - base)): the part that scales.
``--cprofile N`` also runs one warm run's local process under cProfile and prints the N functions
that spend the most time in their own code (tottime): where this machine's per-file time is.
``--json`` prints the figures as JSON.

    .venv/bin/python bench/profile_warm.py [--size 30000] [--base 100] [--reps 5] [--cprofile 0] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench_cli import BenchError, compile_in_place, loopback, timed  # noqa: E402
from bench_scale import Checkout  # noqa: E402
from support.cli import HOST_PYTHON  # noqa: E402  (bench_cli put tests/ on sys.path)

from remote_run import settings as settings_module  # noqa: E402
from remote_run import sync  # noqa: E402
from remote_run.host import tree  # noqa: E402

# The host's pieces, run as the host's user with the host's Python (-I -S, as remote-run runs its
# host program), in one process: a spec on stdin, the timings as JSON on stdout.
HOST_PIECES = r'''
import json, os, shutil, sys, time
spec = json.load(sys.stdin)
sys.path.insert(0, spec["repo"])
from remote_run.host import layout, snapshot, tree
root, raw, protected = spec["root"], spec["rules"], spec["protected"]
out = {key: [] for key in ("fingerprint", "host_walk", "host_hash", "take", "release")}
runs = layout.runs_dir(root)
os.makedirs(runs, mode=0o700, exist_ok=True)
for i in range(spec["reps"] + 1):  # the first is a warm-up, not kept
    keep = i > 0
    started = time.perf_counter()
    rules = tree.compile_rules(raw)  # as check_sync does, per run
    found = tree.host_fingerprint(root, rules, protected)
    took = time.perf_counter() - started
    if found != spec["expect"]:
        sys.exit("the host's fingerprint %s is not the plan's %s" % (found, spec["expect"]))
    skip = set(tree.read_rendered(root)) | set(tree.PROTECTED)
    started = time.perf_counter()
    entries = tree.walk(root, rules, skip)
    walked = time.perf_counter() - started
    started = time.perf_counter()
    tree.fingerprint(entries)
    hashed = time.perf_counter() - started
    run_dir = os.path.join(runs, "profile_%d_%d" % (os.getpid(), i))
    os.mkdir(run_dir)
    try:
        started = time.perf_counter()
        taken = snapshot.take(root, run_dir, raw)
        taking = time.perf_counter() - started
        started = time.perf_counter()
        snapshot.release(run_dir)
        releasing = time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if keep:
        for key, value in (("fingerprint", took), ("host_walk", walked), ("host_hash", hashed), ("take", taking),
                           ("release", releasing)):
            out[key].append(value)
out["files_linked"] = taken["files"]
out["entries"] = len(entries)
print(json.dumps(out))
'''


@contextlib.contextmanager
def as_cli(ws: Path, env: dict):
    """This process as the CLI sees it: in the workspace, with the harness's HOME (the sync's
    manifest is under its ~/.cache)."""
    cwd, home = os.getcwd(), os.environ.get("HOME")
    os.chdir(ws)
    os.environ["HOME"] = env["HOME"]
    try:
        yield
    finally:
        os.chdir(cwd)
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home


def local_pieces(each: Checkout, reps: int) -> tuple[dict, sync.Plan]:
    """sync.plan() on the workspace in this process, and its walk, hash and manifest read alone."""
    out = {key: [] for key in ("plan", "local_walk", "local_hash", "manifest_read")}
    with as_cli(each.ws, each.env):
        settings = settings_module.load(environ=each.env)
        for i in range(reps + 1):  # the first is a warm-up (imports, caches), not kept
            started = time.perf_counter()
            plan = sync.plan(settings)
            planning = time.perf_counter() - started
            if plan.kind != "clean":
                raise BenchError(f"the warm plan is {plan.kind!r}, not 'clean' ({plan.reason})")
            compiled = tree.compile_rules(plan.rules)
            started = time.perf_counter()
            entries = tree.walk(str(settings.workspace), compiled)
            walked = time.perf_counter() - started
            outside, _ = tree.split_protected(entries)
            started = time.perf_counter()
            tree.fingerprint(outside)
            hashed = time.perf_counter() - started
            started = time.perf_counter()
            sync.read_manifest(plan.manifest)
            reading = time.perf_counter() - started
            if i:
                for key, value in (("plan", planning), ("local_walk", walked), ("local_hash", hashed),
                                   ("manifest_read", reading)):
                    out[key].append(value)
    return out, plan


def host_pieces(server, each: Checkout, plan: sync.Plan, reps: int) -> dict:
    spec = {"repo": str(each.repo), "root": each.remote_dir, "rules": [list(rule) for rule in plan.rules],
            "protected": {rel: list(entry) for rel, entry in plan.protected.items()}, "expect": plan.fingerprint,
            "reps": reps}
    done = server.as_user([HOST_PYTHON, "-I", "-S", "-B", "-c", HOST_PIECES], input=json.dumps(spec), cwd="/")
    if done.returncode:
        raise BenchError(f"the host's pieces failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def cprofile(each: Checkout, top: int, tmp: Path) -> str:
    """One warm run's local process under cProfile: its ``top`` functions by their own time (tottime)."""
    out = tmp / f"warm-{each.files}.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "invoke", "--search-root", str(each.repo),
            "run", "scripts/noop.py", "--cpu-ok"]
    wall, _ = timed(argv, cwd=each.ws, env=each.env, expect="RESULT_NOOP ok=1")
    text = io.StringIO()
    pstats.Stats(str(out), stream=text).sort_stats("tottime").print_stats(top)
    body = text.getvalue()
    return f"cProfile of one warm run's local process, {each.files:,} files ({wall:.3f} s under the profiler):\n" + \
        body[body.find("   ncalls"):].rstrip()


def measure(server, tmp: Path, tag: str, files: int, reps: int, top: int) -> dict:
    prefix = f"{tag}_{files}_"  # this size's REMOTE_DIR (and nothing of another size's)
    each = Checkout(server, REPO, tmp / f"n{files}", prefix + "ws", files)
    try:
        each.setup()
        e2e = []
        for _ in range(reps):
            started = time.perf_counter()
            each.inv_run()
            e2e.append(time.perf_counter() - started)
        local, plan = local_pieces(each, reps)
        host = host_pieces(server, each, plan, reps)
        profile = cprofile(each, top, tmp) if top else ""
    finally:
        server.cleanup_remote(prefix)
        shutil.rmtree(tmp / f"n{files}", ignore_errors=True)
    samples = {"end_to_end": e2e, **local, **{k: v for k, v in host.items() if isinstance(v, list)}}
    medians = {key: statistics.median(values) for key, values in samples.items()}
    medians["rest"] = medians["end_to_end"] - medians["plan"] - medians["fingerprint"] - medians["take"]
    return {"files": files, "entries_local": len(plan.entries), "entries_host": host["entries"],
            "files_linked": host["files_linked"], "median_s": medians,
            "samples_s": {key: [round(v, 5) for v in values] for key, values in samples.items()}, "cprofile": profile}


ROWS = [("end to end warm run (whole process)", "end_to_end"),
        ("manifest walk: sync.plan(), this machine", "plan"),
        ("  of which tree.walk", "local_walk"),
        ("  of which tree.fingerprint", "local_hash"),
        ("  of which reading the manifest", "manifest_read"),
        ("host fingerprint: host_fingerprint()", "fingerprint"),
        ("  of which tree.walk", "host_walk"),
        ("  of which tree.fingerprint", "host_hash"),
        ("snapshot take", "take"),
        ("rest (end to end - plan - fingerprint - take)", "rest"),
        ("snapshot release (after the exit status)", "release")]


def render(report: dict) -> str:
    m, main_, base = report["machine"], report["size"], report.get("base")
    n = main_["files"]
    lines = [f"the pieces of a warm run (bench/profile_warm.py), checkout {report['repo']}",
             f"  {m['cpus']} CPUs (load {m['load']:.2f} at start), Python {m['python']} here, host Python"
             f" {HOST_PYTHON}; loopback sshd, REMOTE_PYTHON set, --cpu-ok; median of {report['reps']} reps",
             f"  {n:,} small files in folders of 100 + the fixture workspace: {main_['entries_local']:,} entries"
             f" here, {main_['entries_host']:,} on the host, {main_['files_linked']:,} files linked by a snapshot",
             ""]
    head = f"{'piece':48}{f'{n:,} files':>12}{'µs/file':>10}"
    if base:
        head += f"{format(base['files'], ',') + ' files':>12}{'growth µs/file':>16}"
    lines.append(head)
    for label, key in ROWS:
        t = main_["median_s"][key]
        line = f"{label:48}{t:>10.3f} s{t / n * 1e6:>10.1f}"
        if base:
            b = base["median_s"][key]
            line += f"{b:>10.3f} s{(t - b) / (n - base['files']) * 1e6:>16.1f}"
        lines.append(line)
    for each in (main_, base):
        if each and each["cprofile"]:
            lines += ["", each["cprofile"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=30000, help="small files in the workspace; default 30000")
    parser.add_argument("--base", type=int, default=100,
                        help="a small size timed beside it, for the growth per file; 0 leaves it out; default 100")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each piece (median); default 5")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="also print the N functions of one warm run's local process with most time of their own")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.size < 1 or args.base < 0 or args.base >= args.size:
        parser.error("--reps and --size must be >= 1, --base between 0 and --size")
    started = time.perf_counter()
    report = {"repo": str(REPO), "reps": args.reps, "machine": {
        "cpus": os.cpu_count(), "load": os.getloadavg()[0], "python": platform.python_version()}}
    tag = f"/tmp/rrprof_{uuid.uuid4().hex[:10]}"
    try:
        with tempfile.TemporaryDirectory(prefix="rr-prof-") as tmp:
            compile_in_place(REPO)
            with loopback(Path(tmp), 0.025, tag) as server:
                if args.base:
                    report["base"] = measure(server, Path(tmp), tag, args.base, args.reps, args.cprofile)
                report["size"] = measure(server, Path(tmp), tag, args.size, args.reps, args.cprofile)
    except BenchError as exc:
        print(f"profile_warm: {exc}", file=sys.stderr)
        return 1
    print(render(report))
    print(f"\n(profile took {time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
