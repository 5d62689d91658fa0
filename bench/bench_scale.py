"""What a warm run costs as the workspace grows (issue 22), against a plain rsync of the same tree.

Starts the test suite's loopback sshd the way bench/bench_cli.py does (its helpers are imported,
not copied) and, for each size in ``--sizes`` (default 100, 3,000, 10,000, 30,000 and 50,000),
builds the fixture workspace plus that many small files in folders of 100, syncs it once, and
times, median of ``--reps`` (one session, REMOTE_PYTHON set so no venv is built, --cpu-ok, and, as
the issue measured it, no GPU checked: the host has no ``nvidia-smi``; ``--gpu fake`` puts the
suite's stand-in there, a Python script that costs this machine's cores a process per run):

  warm run             ``inv run scripts/noop.py --cpu-ok``, nothing changed, ControlMaster alive
  one file changed     the same after rewriting one workspace file
  rsync no-change      a plain ``rsync -a --delete`` of the same tree (the sync's default excludes)
                       into a directory of its own on the host, nothing changed, over remote-run's
                       ControlMaster (``-e "ssh -o ControlPath=..."``); and the same over a fresh
                       connection (``ControlPath=none``: a handshake, as rsync by hand pays it)
  ssh l1 true          over that master; and over a fresh connection
  inv sync             nothing changed, beside ``inv --version`` (interpreter and invoke start-up)
  ... host settled     one file changed and inv sync again, each once the host has finished the
                       work a run leaves it in the background (releasing its snapshot, making the
                       next spare: niced processes; waited for over the master, not timed): the
                       rows above come back to back, as a script would run them, and on a
                       loopback host the background work shares this machine's two cores with
                       the next command (on a GPU box it has cores of its own, and this machine
                       is another one); "settle" is how long that work outlasted the command

and checks the issue's targets: warm run <= 1.0x the rsync, one file changed <= 1.1x, no-change
``inv sync`` <= ``inv --version`` + 0.06 s. Ratios are of the medians at each size, to the rsync over
a fresh connection: the plain rsync a user types, which remote-run was built to avoid (the issue's
0.264 s at 100 files is one; ``--baseline master``: to the rsync over the master, a bar no Python
program can meet, as its interpreter alone starts slower than that rsync). Handshakes per command come
from the sshd log: the rsync and ``ssh true`` over the master must make none (the master was up).

``--before PATH`` times another checkout of remote-run (an older commit) in the same session, its
runs and this checkout's taking turns rep by rep (the first one alternating), each with its own
workspace and REMOTE_DIR, and prints both with the paired difference per rep. ``--json`` also
prints the figures as JSON. Each size's trees are removed before the next one is built.

    .venv/bin/python bench/bench_scale.py [--sizes 100,3000,10000,30000,50000] [--reps 5]
                                          [--baseline fresh|master] [--before PATH] [--git] [--gpu absent|fake]
                                          [--json]

bench/profile_warm.py times the pieces of a warm run at one size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
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

from bench_cli import BenchError, compile_in_place, loopback, make_git_checkout, once, summary, timed, version  # noqa: E402
from support.cli import HOST_PYTHON, SETTINGS  # noqa: E402  (bench_cli put tests/ on sys.path)
from support.workspace import make_workspace  # noqa: E402

from remote_run.host.layout import OWN as OWN_DIR  # noqa: E402
from remote_run.host.layout import RUNS  # noqa: E402
from remote_run.host.snapshot import RELEASING, SPARES  # noqa: E402
from remote_run.sync import DEFAULT_EXCLUDES, SECRETS  # noqa: E402

SIZES = (100, 3000, 10000, 30000, 50000)
PER_FOLDER = 100
NOOP = 'print("RESULT_NOOP ok=1")\n'
EDITED = "scripts/edited.py"  # the file "one file changed" rewrites (it exists from the start)
# The targets: ratios to the plain no-change rsync at the same size, and seconds over `inv --version`.
TARGETS = {"run_warm": 1.0, "run_changed": 1.1, "sync_over_version_s": 0.06}
# Measured once per rep (they do not depend on the checkout) and per checkout.
SHARED = ("ssh_true", "ssh_fresh", "rsync", "rsync_fresh", "version")
BASELINES = {"master": "rsync", "fresh": "rsync_fresh"}  # --baseline: the rsync the ratios are to
OWN = ("run_warm", "run_changed", "sync", "run_changed_settled", "sync_settled")
# The host's work left behind by a command: a spare being made, stale spares, a run's snapshot being released.
BUSY = (f"{SPARES}/.making-*", f"{OWN_DIR}/spares-stale-*", f"{RUNS}/*/{RELEASING}")
SETTLE = """import glob, os, sys, time
t = time.time()
while any(glob.glob(os.path.join(sys.argv[1], p)) for p in {busy!r}) and time.time() - t < 60:
    time.sleep(0.02)
print("%.3f" % (time.time() - t))
""".format(busy=BUSY)


def small_file(i: int) -> bytes:
    """About 120 bytes of Python: a repository's small source file."""
    return (f'"""module {i}"""\n\nVALUE = {i}\n\n\ndef f(x):\n    return x + VALUE  # {"-" * 40}\n').encode()


def add_files(ws: Path, count: int) -> None:
    """``count`` small files under ws/tree/, in folders of PER_FOLDER."""
    for i in range(count):
        folder = ws / "tree" / f"d{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"m{i % PER_FOLDER:02d}.py").write_bytes(small_file(i))


def build_workspace(root: Path, files: int, git: bool = False) -> Path:
    """The test fixture workspace, scripts/noop.py, scripts/edited.py and ``files`` small files."""
    ws = make_workspace(root)
    (ws / "scripts" / "noop.py").write_text(NOOP)
    (ws / EDITED).write_text("# edit 0\n")
    add_files(ws, files)
    if git:
        make_git_checkout(ws)
    return ws


def over(server, master: bool) -> list[str]:
    """ssh options: through remote-run's ControlMaster (its ControlPath), or a fresh connection."""
    return ["-o", "ControlMaster=no", "-o", f"ControlPath={server.control_dir}/%C" if master else "ControlPath=none"]


def rsync_argv(server, target: str, master: bool = True) -> list[str]:
    """A plain ``rsync -a --delete`` of the workspace (the sync's default excludes and secrets left
    out, as remote-run leaves them out), over remote-run's ControlMaster or a fresh connection; run
    from the workspace."""
    ssh = " ".join(["ssh", *over(server, master)])
    excludes = [f"--exclude={name}" for name in (*DEFAULT_EXCLUDES, *SECRETS)]
    return ["rsync", "-a", "--delete", "-e", ssh, *excludes, "./", f"l1:{target}/"]


class Checkout:
    """One checkout of remote-run at one size: its workspace, REMOTE_DIR and the commands it times."""

    def __init__(self, server, repo: Path, root: Path, remote_dir: str, files: int, git: bool = False):
        self.server, self.repo, self.remote_dir, self.files = server, repo, remote_dir, files
        self.ws = build_workspace(root, files, git)
        # SYNC_MAX_FILES off: 50,000 files and the fixture's are past its default
        self.env = server.env(**SETTINGS, REMOTE_PYTHON=HOST_PYTHON, REMOTE_DIR=remote_dir, SYNC_MAX_FILES="0")
        inv = [sys.executable, "-m", "invoke", "--search-root", str(repo)]
        self.run_argv, self.sync_argv = [*inv, "run", "scripts/noop.py", "--cpu-ok"], [*inv, "sync"]
        self.samples = {key: [] for key in OWN}
        self.settled: list[float] = []  # how long the host's background work outlasted a run or sync
        self.settle_argv = ["ssh", *over(server, True), "l1", HOST_PYTHON, "-c", shlex.quote(SETTLE), remote_dir]
        self.edits = 0

    def inv_run(self):
        timed(self.run_argv, cwd=self.ws, env=self.env, expect="RESULT_NOOP ok=1")

    def inv_sync(self):
        timed(self.sync_argv, cwd=self.ws, env=self.env, expect="synced")

    def edit(self):
        self.edits += 1
        (self.ws / EDITED).write_text(f"# edit {self.edits} {time.monotonic_ns()}\n")

    def setup(self):
        """Untimed: the first run (the full sync, the host's program), then one warm run."""
        self.inv_run()
        self.inv_run()

    def settle(self):
        """Wait, untimed, until the host has done what the last command left it to do."""
        _, done = timed(self.settle_argv, cwd=self.ws, env=self.server.env())
        self.settled.append(float(done.stdout.split()[-1]))

    def rep(self):
        s = self.server
        self.settle()  # what the other checkout left on the host (they share its cores) is done
        self.samples["run_warm"].append(once(s, self.inv_run))
        self.edit()
        self.samples["run_changed"].append(once(s, self.inv_run))
        self.samples["sync"].append(once(s, self.inv_sync))
        self.settle()
        self.edit()
        self.samples["run_changed_settled"].append(once(s, self.inv_run))
        self.settle()
        self.samples["sync_settled"].append(once(s, self.inv_sync))
        self.settle()


class Size:
    """One size: the checkouts' workspaces, and what does not depend on the checkout (rsync, ssh, start-up)."""

    def __init__(self, server, repos: list[Path], tmp: Path, tag: str, files: int, git: bool):
        self.server, self.files, self.tmp = server, files, tmp / f"n{files}"
        self.prefix = f"{tag}_{files}_"  # every REMOTE_DIR of this size: removed with it
        self.checkouts = [Checkout(server, repo, self.tmp / f"ws{k}", f"{self.prefix}{k}", files, git)
                          for k, repo in enumerate(repos)]
        first = self.checkouts[0]
        self.rsync = rsync_argv(server, f"{self.prefix}rsync")
        self.rsync_fresh = rsync_argv(server, f"{self.prefix}rsync", master=False)
        self.ssh_true = ["ssh", *over(server, True), "l1", "true"]
        self.ssh_fresh = ["ssh", *over(server, False), "l1", "true"]
        self.version = [sys.executable, "-m", "invoke", "--version"]
        self.plain_env, self.ws = server.env(), first.ws
        self.samples = {key: [] for key in SHARED}

    def setup(self):
        for each in self.checkouts:
            each.setup()
        timed(self.rsync, cwd=self.ws, env=self.plain_env)  # the first copy; the timed ones find nothing changed
        timed(self.version, cwd=self.ws, env=self.plain_env)

    def rep(self, i: int):
        s, env = self.server, self.plain_env
        self.checkouts[-1].settle()  # the last rep's work is done on the host before rsync is timed
        for key in ("ssh_true", "ssh_fresh", "rsync", "rsync_fresh"):
            argv = getattr(self, key)
            self.samples[key].append(once(s, lambda argv=argv: timed(argv, cwd=self.ws, env=env)))
        self.samples["version"].append(once(s, lambda: timed(self.version, cwd=self.ws, env=env)))
        # the checkouts take turns, the first one alternating, so that drift hits both alike
        for each in (self.checkouts if i % 2 == 0 else self.checkouts[::-1]):
            each.rep()

    def result(self, baseline: str = "fresh") -> dict:
        shared = {key: summary(samples) for key, samples in self.samples.items()}
        out = {"files": self.files, "shared": shared, "checkouts": []}
        for each in self.checkouts:
            own = {key: summary(samples) for key, samples in each.samples.items()}
            rsync, ver = shared[BASELINES[baseline]]["wall_s"], shared["version"]["wall_s"]
            own["run_warm"]["ratio"] = own["run_warm"]["wall_s"] / rsync
            for key in ("run_changed", "run_changed_settled"):
                own[key]["ratio"] = own[key]["wall_s"] / rsync
            for key in ("sync", "sync_settled"):
                own[key]["over_version_s"] = own[key]["wall_s"] - ver
            own["settle_s"] = {"median_s": statistics.median(each.settled), "max_s": max(each.settled)}
            own["verdicts"] = {
                "run_warm": own["run_warm"]["ratio"] <= TARGETS["run_warm"] + 1e-9,
                **{key: own[key]["ratio"] <= TARGETS["run_changed"] + 1e-9
                   for key in ("run_changed", "run_changed_settled")},
                **{key: own[key]["over_version_s"] <= TARGETS["sync_over_version_s"] + 1e-9
                   for key in ("sync", "sync_settled")}}
            out["checkouts"].append(own)
        if len(self.checkouts) == 2:
            after, before = self.checkouts
            out["paired"] = {}
            for key in OWN:
                deltas = [a[0] - b[0] for a, b in zip(after.samples[key], before.samples[key])]
                out["paired"][key] = {"median_s": statistics.median(deltas), "min_s": min(deltas),
                                      "max_s": max(deltas)}
        return out

    def close(self):
        self.server.cleanup_remote(self.prefix)
        shutil.rmtree(self.tmp, ignore_errors=True)


def bench(sizes: list[int], reps: int, repo: Path, before: Path | None = None, git: bool = False,
          baseline: str = "fresh", gpu: str = "absent", progress=None) -> dict:
    repos = [repo] if before is None else [repo, before]
    report = {"sizes": sizes, "reps": reps, "repo": str(repo), "before": str(before) if before else None, "git": git,
              "targets": TARGETS, "baseline": baseline, "gpu": gpu, "machine": {
                  "cpus": os.cpu_count(), "load": os.getloadavg()[0], "python": platform.python_version(),
                  "host_python": HOST_PYTHON, "openssh": version(["ssh", "-V"], r"OpenSSH_[^\s,]+"),
                  "rsync": version(["rsync", "--version"], r"version\s+\S+")}, "results": []}
    tag = f"/tmp/rrscale_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="rr-scale-") as tmp:
        for each in repos:
            compile_in_place(each)
        with loopback(Path(tmp), 0.025, tag) as server:
            server.set_gpu("idle" if gpu == "fake" else "absent")
            for files in sizes:
                started = time.perf_counter()
                size = Size(server, repos, Path(tmp), tag, files, git)
                try:
                    size.setup()
                    for i in range(reps):
                        size.rep(i)
                    report["results"].append(size.result(baseline))
                finally:
                    size.close()
                if progress:
                    progress(f"{files:,} files: {time.perf_counter() - started:.0f} s")
    return report


def slope_us(results: list[dict], pick) -> float | None:
    """Least-squares growth in µs per file of pick(result) over the sizes."""
    points = [(r["files"], pick(r)) for r in results]
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den * 1e6 if den else None


def mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render(report: dict) -> str:
    m, results = report["machine"], report["results"]
    names = ["after", "before"] if report["before"] else ["this checkout"]
    base = "rsync over the master" if report["baseline"] == "master" else "rsync over a fresh connection"
    lines = [
        "warm run against workspace size (bench/bench_scale.py), checkout " + report["repo"]
        + (f", before = {report['before']}" if report["before"] else ""),
        f"  {m['cpus']} CPUs (load {m['load']:.2f} at start), Python {m['python']}, {m['openssh']},"
        f" rsync {m['rsync'].split()[-1]}; loopback sshd, REMOTE_PYTHON={m['host_python']}, --cpu-ok, "
        + ("the suite's fake nvidia-smi (a Python script) on the host" if report.get("gpu") == "fake"
           else "no nvidia-smi on the host (no GPU checked)"),
        f"  the fixture workspace + N small files in folders of {PER_FOLDER}; median of {report['reps']} reps"
        " of whole processes, one session" + (", the checkouts taking turns" if report["before"] else ""),
        "  master = over remote-run's ControlMaster; fresh = a new connection (a handshake) each time",
        "",
    ]
    header = (f"{'files':>8} {'warm run':>10} {'1 changed':>10} {'rsync':>10} {'rsync':>10} {'ssh true':>10}"
              f" {'ssh true':>10} {'inv sync':>10} {'--version':>10} {'1 changed':>10} {'inv sync':>10}"
              f" {'settle':>10}")
    under = (f"{'':>8} {'':>10} {'':>10} {'master':>10} {'fresh':>10} {'master':>10} {'fresh':>10} {'':>10} {'':>10}"
             f" {'settled':>10} {'settled':>10} {'median':>10}")
    for k, name in enumerate(names):
        if len(names) > 1:
            lines.append(f"[{name}]")
        lines += [header, under]
        for r in results:
            s, c = r["shared"], r["checkouts"][k]
            cells = [c["run_warm"], c["run_changed"], s["rsync"], s["rsync_fresh"], s["ssh_true"], s["ssh_fresh"],
                     c["sync"], s["version"], c["run_changed_settled"], c["sync_settled"]]
            lines.append(f"{r['files']:>8,}" + "".join(f" {cell['wall_s']:>8.3f} s" for cell in cells)
                         + f" {c['settle_s']['median_s']:>8.3f} s")
        growth = []
        for label, pick in (("warm run", lambda r, k=k: r["checkouts"][k]["run_warm"]["wall_s"]),
                            ("one changed", lambda r, k=k: r["checkouts"][k]["run_changed"]["wall_s"]),
                            ("rsync master", lambda r: r["shared"]["rsync"]["wall_s"]),
                            ("rsync fresh", lambda r: r["shared"]["rsync_fresh"]["wall_s"]),
                            ("inv sync", lambda r, k=k: r["checkouts"][k]["sync"]["wall_s"]),
                            ("one changed settled", lambda r, k=k: r["checkouts"][k]["run_changed_settled"]["wall_s"]),
                            ("inv sync settled", lambda r, k=k: r["checkouts"][k]["sync_settled"]["wall_s"])):
            us = slope_us(results, pick)
            if us is not None:
                growth.append(f"{label} {us:+.1f}")
        if growth:
            lines.append("  growth, µs per file (least squares over the sizes): " + ", ".join(growth))
        lines.append("")
    lines += [f"targets (ratios of medians to the {base}; other baseline in brackets; back to back / host settled):",
              f"{'files':>8} {'':>14} {'warm/rsync <= ' + str(TARGETS['run_warm']) + 'x':>24}"
              f" {'changed/rsync <= ' + str(TARGETS['run_changed']) + 'x':>24}"
              f" {'settled':>24}"
              f" {'sync - version <= ' + str(TARGETS['sync_over_version_s']) + ' s':>26} {'settled':>16}"]
    other = "rsync_fresh" if report["baseline"] == "master" else "rsync"
    for r in results:
        for k, name in enumerate(names):
            c, v, aside = r["checkouts"][k], r["checkouts"][k]["verdicts"], r["shared"][other]["wall_s"]
            warm = f"{c['run_warm']['ratio']:.2f}x {mark(v['run_warm'])} [{c['run_warm']['wall_s'] / aside:.2f}x]"
            changed = [f"{c[key]['ratio']:.2f}x {mark(v[key])} [{c[key]['wall_s'] / aside:.2f}x]"
                       for key in ("run_changed", "run_changed_settled")]
            sync = [f"{c[key]['over_version_s']:+.3f} s {mark(v[key])}" for key in ("sync", "sync_settled")]
            lines.append(f"{r['files'] if k == 0 else '':>8,} {name:>14} {warm:>24} {changed[0]:>24} {changed[1]:>24}"
                         f" {sync[0]:>26} {sync[1]:>16}"
                         if k == 0 else f"{'':>8} {name:>14} {warm:>24} {changed[0]:>24} {changed[1]:>24}"
                         f" {sync[0]:>26} {sync[1]:>16}")
    lines.append("  min-max (s):")
    for r in results:
        s = r["shared"]
        cells = [f"rsync {s['rsync']['min_s']:.3f}-{s['rsync']['max_s']:.3f}",
                 f"fresh {s['rsync_fresh']['min_s']:.3f}-{s['rsync_fresh']['max_s']:.3f}"]
        for k, name in enumerate(names):
            c = r["checkouts"][k]
            tag = f"{name} " if len(names) > 1 else ""
            cells.append(f"{tag}warm {c['run_warm']['min_s']:.3f}-{c['run_warm']['max_s']:.3f}"
                         f" changed {c['run_changed']['min_s']:.3f}-{c['run_changed']['max_s']:.3f}"
                         f" sync {c['sync']['min_s']:.3f}-{c['sync']['max_s']:.3f}"
                         f" settled: changed {c['run_changed_settled']['min_s']:.3f}-"
                         f"{c['run_changed_settled']['max_s']:.3f}"
                         f" sync {c['sync_settled']['min_s']:.3f}-{c['sync_settled']['max_s']:.3f}"
                         f" settle max {c['settle_s']['max_s']:.3f}")
        lines.append(f"    {r['files']:>8,}: " + "; ".join(cells))
    handshakes = [f"{r['files']:,} files: {key} {r['shared'][key]['handshakes_max']:g}"
                  for r in results for key in ("ssh_true", "rsync") if r["shared"][key]["handshakes_max"]]
    lines.append("  handshakes of rsync and ssh true over the master: "
                 + ("none (the master was up)" if not handshakes else "MASTER WAS DOWN: " + ", ".join(handshakes)))
    for k, name in enumerate(names):
        warm_hs = max(r["checkouts"][k]["run_warm"]["handshakes_max"] for r in results)
        warm_cmds = max(r["checkouts"][k]["run_warm"]["commands_max"] for r in results)
        lines.append(f"  warm run ({name}), most over reps and sizes: {warm_hs:g} handshakes,"
                     f" {warm_cmds:g} remote commands")
    if report["before"]:
        lines += ["", "paired after - before within each rep, median (min..max), ms"]
        lines.append(f"{'files':>8} {'warm run':>24} {'one changed':>24} {'inv sync':>24}"
                     f" {'one changed, settled':>24} {'inv sync, settled':>24}")
        for r in results:
            p = r["paired"]
            lines.append(f"{r['files']:>8,}" + "".join(
                f" {p[key]['median_s'] * 1000:+.0f} ({p[key]['min_s'] * 1000:+.0f}..{p[key]['max_s'] * 1000:+.0f})"
                .rjust(25) for key in OWN))
    return "\n".join(lines)


def sizes_arg(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"give sizes as numbers separated by commas, not {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("give at least one size, each at least 1")
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes_arg, default=list(SIZES),
                        help="numbers of small files, comma-separated; default " + ",".join(map(str, SIZES)))
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median); default 5")
    parser.add_argument("--baseline", choices=sorted(BASELINES), default="fresh",
                        help="the rsync the ratios are to: over a fresh connection (default) or remote-run's"
                             " ControlMaster")
    parser.add_argument("--before", type=Path, help="another checkout to time beside this one, rep by rep")
    parser.add_argument("--git", action="store_true",
                        help="make each workspace a git checkout (the sync then asks git what it ignores)")
    parser.add_argument("--gpu", choices=("absent", "fake"), default="absent",
                        help="the host's nvidia-smi: none, so no GPU is checked (default, as the issue measured), or"
                             " the suite's fake one (an idle GPU)")
    parser.add_argument("--json", action="store_true", help="also print the full results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    started = time.perf_counter()
    try:
        report = bench(args.sizes, args.reps, REPO, args.before.resolve() if args.before else None, args.git,
                       args.baseline, args.gpu, progress=lambda line: print("  " + line, file=sys.stderr, flush=True))
    except BenchError as exc:
        print(f"bench_scale: {exc}", file=sys.stderr)
        return 1
    print(render(report))
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
