"""Benchmark the remote-run CLI end to end, as a user runs it, against the loopback test sshd.

Starts the test-support sshd (tests/support/sshd.py) and a LatencyProxy in front of it (alias
``l1proxy``, ``2 * --delay`` of added round trip), builds a fixture workspace with a trivial
``scripts/noop.py``, and reports medians over ``--reps`` repetitions for the direct alias ``l1``
and for ``l1proxy`` (the two paths interleaved rep by rep, so load from elsewhere hits both):

  ssh HOST true        plain OpenSSH, a fresh connection each time: the floor
  run, warm            ``inv run scripts/noop.py``, nothing changed, ControlMaster alive
  run, 1 file changed  the same after rewriting one workspace file
  run, no master       the same after ending the ControlMaster (what the first command of
                       the day pays: a handshake)
  sync, no change      ``inv sync``
  by hand              the playbook without remote-run: rsync, ssh nvidia-smi, ssh python > log,
                       rsync the log back; one connection each
  inv -l, inv --version, python3 -c pass   local start-up, no host

Handshakes and remote commands per invocation come from the sshd log ("Accepted publickey",
"Starting session:"). Every invocation is a whole process, interpreter start included, with byte
code as an installed tool has it: remote_run is compiled in place first, as pip does on install.

``--repo PATH`` times another checkout of remote-run (an older commit) with the same harness and
workspace; it must take the same settings (REMOTE_HOST, REMOTE_DIR...). ``--before PATH`` times
that checkout and this one (or --repo) together, rep by rep on one host, their order alternating,
and prints both with the paired difference per rep: the noise of the comparison is in its range.

Usage (sshd as the invoking user, or as root with a dedicated user)::

    python3 bench/bench_cli.py [--reps 5] [--delay 0.025] [--repo PATH] [--before PATH] [--git] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from support.cli import OFFLINE_PIP, write_pip_conf  # noqa: E402
from support.latency_proxy import LatencyProxy  # noqa: E402
from support.sshd import SshServer  # noqa: E402
from support.workspace import make_workspace  # noqa: E402

HANDSHAKE = "Accepted publickey"
SESSION = "Starting session:"
TIMEOUT = 120
NOOP = 'print("RESULT_NOOP ok=1")\n'

# The targets of the transport issue, checked against the figures (ratios are to `ssh HOST true`
# on the same path; the sync and list targets are absolute).
TARGETS = {
    "run_warm": ("ratio", 0.6), "run_changed": ("ratio", 1.0), "run_no_master": ("ratio", 1.3),
    "sync_loopback_s": ("seconds", 0.15), "list_s": ("seconds", 0.15),
    "run_warm_handshakes": ("count", 0), "run_warm_commands": ("count", 2),
}


class BenchError(RuntimeError):
    pass


def timed(argv, *, cwd, env, expect: str | None = None):
    """Run argv; (wall seconds, CompletedProcess). A non-zero exit stops the bench, loudly."""
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {TIMEOUT} s: {' '.join(map(str, argv))}") from None
    wall = time.perf_counter() - started
    if done.returncode or (expect and expect not in done.stdout + done.stderr):
        raise BenchError(f"{' '.join(map(str, argv))} (exit {done.returncode}) in {cwd}\n"
                         f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")
    return wall, done


def once(server, fn) -> tuple[float, int, int]:
    """fn()'s wall time and the handshakes and remote commands it caused (from the sshd log)."""
    mark = server.mark()
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    time.sleep(0.05)  # sshd may log a line a moment after the client has gone
    return wall, server.count(HANDSHAKE, mark), server.count(SESSION, mark)


def summary(samples) -> dict:
    walls = [w for w, _, _ in samples]
    return {"wall_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
            "walls_s": [round(w, 4) for w in walls],
            "handshakes": statistics.median(h for _, h, _ in samples), "handshakes_max": max(h for _, h, _ in samples),
            "commands": statistics.median(c for _, _, c in samples), "commands_max": max(c for _, _, c in samples)}


def version(argv, pattern) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    found = re.search(pattern, out.stdout + out.stderr)
    return found.group(0) if found else "?"


class Path_:
    """One way to reach the host (l1 or l1proxy): its workspace, REMOTE_DIR and measurements."""

    def __init__(self, server, alias: str, repo: Path, root: Path, remote_dir: str, git: bool = False):
        self.server, self.alias, self.remote_dir = server, alias, remote_dir
        self.ws = make_workspace(root)
        (self.ws / "scripts" / "noop.py").write_text(NOOP)
        if git:
            make_git_checkout(self.ws)
        self.env = server.env(REMOTE_HOST=alias, REMOTE_DIR=remote_dir, TORCH_PACKAGES="", TRAIN_IMPL="workspace")
        self.hand_env = server.env()
        inv = [sys.executable, "-m", "invoke", "--search-root", str(repo)]
        self.run_argv, self.sync_argv = [*inv, "run", "scripts/noop.py"], [*inv, "sync"]
        self.ssh_true = ["ssh", "-F", str(server.ssh_config), "-o", "ControlMaster=no", "-o", "ControlPath=none",
                         alias, "true"]
        # The by-hand playbook has a REMOTE_DIR of its own: its rsync --delete would remove
        # remote-run's runs/ and ownership marker.
        self.hand_dir = remote_dir + "_byhand"
        self.samples = {key: [] for key in ("ssh_true", "run_warm", "run_changed", "run_no_master", "sync", "by_hand")}

    def inv_run(self):
        timed(self.run_argv, cwd=self.ws, env=self.env, expect="RESULT_NOOP ok=1")

    def setup(self):
        """Untimed: the first ssh, the first run (full sync, venv), the by-hand directory."""
        timed(self.ssh_true, cwd=self.ws, env=self.env)
        self.inv_run()
        self.inv_run()
        timed(["ssh", self.alias, f"mkdir -p {self.hand_dir} && ln -sfn {self.remote_dir}/.venv {self.hand_dir}/.venv"],
              cwd=self.ws, env=self.hand_env)
        (self.ws / "remote_runs").mkdir(exist_ok=True)

    def end_master(self):
        """End this path's ControlMaster only (the other path's stays up)."""
        subprocess.run(["ssh", "-o", f"ControlPath={self.server.control_dir}/%C", "-O", "exit", self.alias],
                       env=self.hand_env, capture_output=True, timeout=30)

    def by_hand(self, i):
        alias, d = self.alias, self.hand_dir
        for argv in (["rsync", "-az", "--delete", "--exclude=.git", "--exclude=var", "--exclude=.venv",
                      "--exclude=__pycache__", "--exclude=remote_runs", "./", f"{alias}:{d}/"],
                     ["ssh", alias, "nvidia-smi"],
                     ["ssh", alias, f"cd {d} && CUDA_VISIBLE_DEVICES=0 .venv/bin/python scripts/noop.py"
                                    " > run.log 2>&1"]):
            timed(argv, cwd=self.ws, env=self.hand_env)
        local = f"./remote_runs/{i}_{time.monotonic_ns()}_noop.log"
        timed(["rsync", "-az", f"{alias}:{d}/run.log", local], cwd=self.ws, env=self.hand_env)
        if "RESULT_NOOP ok=1" not in (self.ws / local).read_text():
            raise BenchError(f"by hand: {local} lacks the RESULT line")

    def rep(self, i):
        s = self.server
        self.samples["ssh_true"].append(once(s, lambda: timed(self.ssh_true, cwd=self.ws, env=self.env)))
        self.samples["run_warm"].append(once(s, self.inv_run))
        (self.ws / "scripts" / "edited.py").write_text(f"# edit {i} {time.monotonic_ns()}\n")
        self.samples["run_changed"].append(once(s, self.inv_run))
        self.end_master()
        self.samples["run_no_master"].append(once(s, self.inv_run))
        self.samples["sync"].append(once(s, lambda: timed(self.sync_argv, cwd=self.ws, env=self.env, expect="synced")))
        self.samples["by_hand"].append(once(s, lambda: self.by_hand(i)))

    def result(self) -> dict:
        out = {key: summary(samples) for key, samples in self.samples.items()}
        for key in ("run_warm", "run_changed", "run_no_master", "sync", "by_hand"):
            out[key]["ratio"] = out[key]["wall_s"] / out["ssh_true"]["wall_s"]
            out[key]["ratio_per_rep"] = statistics.median(
                a[0] / b[0] for a, b in zip(self.samples[key], self.samples["ssh_true"]))
        return out


def startup(server, reps: int, repos: list[Path], env: dict) -> list[dict]:
    """Local start-up of each checkout, the checkouts taking turns rep by rep."""
    def cases(repo):
        return {"python3 -c pass": [sys.executable, "-c", "pass"],
                "inv --version": [sys.executable, "-m", "invoke", "--version"],
                "inv -l": [sys.executable, "-m", "invoke", "--search-root", str(repo), "-l"]}

    samples = [{name: [] for name in cases(repo)} for repo in repos]
    for name in cases(repos[0]):
        for repo in repos:
            timed(cases(repo)[name], cwd=repo, env=env)
        for i in range(reps):
            for k in (range(len(repos)) if i % 2 == 0 else reversed(range(len(repos)))):
                argv = cases(repos[k])[name]
                samples[k][name].append(once(server, lambda a=argv, r=repos[k]: timed(a, cwd=r, env=env)))
    return [{name: summary(found) for name, found in each.items()} for each in samples]


def compile_in_place(repo: Path) -> None:
    """Byte code as an installed tool has it: pip compiles a package on install, and `inv` writes
    none itself (invoke turns byte code writing off before it loads tasks.py). Compiled in place,
    beside the sources: a PYTHONPYCACHEPREFIX would also hide the standard library's own byte
    code, so every module first imported after that switch (tempfile, statistics, ...) was
    compiled from source in every timed run."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(repo / "remote_run"), str(repo / "tasks.py")],
                   check=True, env={key: value for key, value in os.environ.items()
                                    if key not in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")})


def make_git_checkout(ws: Path) -> None:
    """The fixture workspace as a git checkout with everything committed (most users' workspace):
    the sync then asks git what it ignores, as it does for them."""
    import shutil

    shutil.rmtree(ws / ".git")
    (ws / ".gitignore").write_text("var/\n*.ckpt\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fixture"]):
        subprocess.run(["git", *args], cwd=ws, env=env, check=True, capture_output=True)


def bench(reps: int, delay: float, repo: Path, before: Path | None = None, git: bool = False) -> dict:
    report = {"reps": reps, "delay_s": delay, "repo": str(repo), "git": git, "machine": {
        "cpus": os.cpu_count(), "load": os.getloadavg()[0], "python": platform.python_version(),
        "openssh": version(["ssh", "-V"], r"OpenSSH_[^\s,]+"),
        "rsync": version(["rsync", "--version"], r"version\s+\S+")}}
    if before is not None:
        report["before"] = str(before)
    repos = [repo] if before is None else [repo, before]
    tag = f"/tmp/rrbench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        tmp = Path(tmp)
        for each in repos:
            compile_in_place(each)
        with loopback(tmp, delay, tag) as server:
            checkouts = [[Path_(server, alias, each, tmp / f"ws{k}-{alias}", f"{tag}_{k}_{alias}", git)
                          for alias in ("l1", "l1proxy")] for k, each in enumerate(repos)]
            for paths in checkouts:
                for path in paths:
                    path.setup()
            for i in range(reps):
                # the checkouts take turns, the first one alternating, so that drift hits both alike
                for paths in (checkouts if i % 2 == 0 else checkouts[::-1]):
                    for path in paths:
                        path.rep(i)
            report["paths"], *rest = [{path.alias: path.result() for path in paths} for paths in checkouts]
            report["startup"], *rest_startup = startup(server, reps, repos, server.env())
            if before is not None:
                report["before_paths"], report["before_startup"] = rest[0], rest_startup[0]
                report["paired"] = {path.alias: paired(path, old) for path, old in zip(checkouts[0], checkouts[1])}
    return report


def paired(after: Path_, before: Path_) -> dict:
    """Per measurement, after - before within each rep: median and range, in seconds."""
    out = {}
    for key in after.samples:
        deltas = [a[0] - b[0] for a, b in zip(after.samples[key], before.samples[key])]
        out[key] = {"median_s": statistics.median(deltas), "min_s": min(deltas), "max_s": max(deltas)}
    return out


def render_before_after(report: dict) -> str:
    """The table of --before: both checkouts per path and measurement, and the paired difference."""
    m, d = report["machine"], report["delay_s"]
    lines = [
        f"remote-run CLI benchmark, before/after in one session: after = {report['repo']}, before = {report['before']}",
        f"  {m['cpus']} CPUs (load {m['load']:.2f} at start), Python {m['python']}, {m['openssh']}; l1proxy adds"
        f" {2 * d * 1000:.0f} ms of round trip",
        f"  {report['reps']} reps, the checkouts taking turns in each; wall = median (min-max) of whole processes;",
        "  paired = after - before within the same rep, median (min..max): its range is the comparison's noise",
        "",
        f"{'':28}{'path':9}{'before':>24}{'after':>24}{'paired after - before':>30}",
    ]
    rows = [("ssh HOST true", "ssh_true"), ("inv run, nothing changed", "run_warm"),
            ("inv run, one file changed", "run_changed"), ("inv run, no ControlMaster", "run_no_master"),
            ("inv sync, nothing changed", "sync"), ("by hand", "by_hand")]
    for label, key in rows:
        for alias in ("l1", "l1proxy"):
            b, a, p = report["before_paths"][alias][key], report["paths"][alias][key], report["paired"][alias][key]
            lines.append(f"{label if alias == 'l1' else '':28}{alias:9}"
                         f"{b['wall_s']:>9.3f} ({b['min_s']:.3f}-{b['max_s']:.3f})"
                         f"{a['wall_s']:>9.3f} ({a['min_s']:.3f}-{a['max_s']:.3f})"
                         f"{p['median_s'] * 1000:>+14.0f} ms ({p['min_s'] * 1000:+.0f}..{p['max_s'] * 1000:+.0f})")
    lines += ["", "local start-up (no host)"]
    for name, a in report["startup"].items():
        b = report["before_startup"][name]
        lines.append(f"  {name:26}{'':9}{b['wall_s']:>9.3f} ({b['min_s']:.3f}-{b['max_s']:.3f})"
                     f"{a['wall_s']:>9.3f} ({a['min_s']:.3f}-{a['max_s']:.3f})")
    return "\n".join(lines)


@contextlib.contextmanager
def loopback(tmp: Path, delay: float, tag: str):
    """The test sshd (alias l1) and a latency proxy in front of it (alias l1proxy), with pip kept
    off the network; on the way out, everything under ``tag*`` on the host is removed."""
    server = SshServer(tmp / "sshd")
    proxy, remove_pip_conf = None, None
    try:
        server.start()
        proxy = LatencyProxy(target=("127.0.0.1", server.port), delay=delay).start()
        server.add_alias("l1proxy", proxy.port)
        remove_pip_conf = write_pip_conf(server, OFFLINE_PIP)  # bootstrap's pip never goes to the network
        yield server
    finally:
        if proxy is not None:
            proxy.stop()
        try:
            if remove_pip_conf:
                remove_pip_conf()
            server.cleanup_remote(tag)
        finally:
            server.close()


def verdict(kind: str, value: float, limit: float) -> str:
    return "ok" if value <= limit + 1e-9 else "MISS"


def render(report: dict) -> str:
    m, d = report["machine"], report["delay_s"]
    p1, p2 = report["paths"]["l1"], report["paths"]["l1proxy"]
    lines = [
        f"remote-run CLI benchmark (bench/bench_cli.py), checkout {report['repo']}",
        f"  {m['cpus']} CPUs (load {m['load']:.2f} at start), Python {m['python']}, {m['openssh']},"
        f" rsync {m['rsync'].split()[-1]}",
        f"  l1 = loopback sshd; l1proxy = the same through a proxy adding {2 * d * 1000:.0f} ms of round trip",
        f"  {report['reps']} reps, paths interleaved; wall = median (min-max) of whole processes;"
        " hs/cmds = SSH handshakes /",
        "  remote commands per invocation (sshd log, max over reps);"
        " ratio = median wall / median `ssh HOST true` on that path",
        "",
        f"{'':34}{'l1 (loopback)':>30}{'l1proxy':>30}   target",
    ]

    def cell(r, ratio=True):
        text = f"{r['wall_s']:.3f} s ({r['min_s']:.3f}-{r['max_s']:.3f})"
        if ratio and "ratio" in r:
            text += f" {r['ratio']:.2f}x"
        return text

    def counts(r):
        return f"hs {r['handshakes_max']:g}, cmds {r['commands_max']:g}"

    rows = [("ssh HOST true (fresh connection)", "ssh_true", ""),
            ("inv run, nothing changed", "run_warm", "run_warm"),
            ("inv run, one file changed", "run_changed", "run_changed"),
            ("inv run, no ControlMaster", "run_no_master", "run_no_master"),
            ("inv sync, nothing changed", "sync", "sync_loopback_s"),
            ("by hand (rsync, ssh x2, rsync)", "by_hand", "")]
    for label, key, target in rows:
        goal = ""
        if target in ("run_warm", "run_changed", "run_no_master"):
            limit = TARGETS[target][1]
            goal = f"<= {limit}x at +{2 * d * 1000:.0f} ms [{verdict('ratio', p2[key]['ratio'], limit)}]"
        elif target == "sync_loopback_s":
            limit = TARGETS[target][1]
            goal = f"<= {limit} s on loopback [{verdict('seconds', p1[key]['wall_s'], limit)}]"
        lines.append(f"{label:34}{cell(p1[key], key != 'ssh_true'):>30}{cell(p2[key], key != 'ssh_true'):>30}   {goal}")
        lines.append(f"{'':34}{counts(p1[key]):>30}{counts(p2[key]):>30}")
    warm = p2["run_warm"]
    lines.append(f"{'':34}{'':>30}{'':>30}   warm run: 0 handshakes [{verdict('count', warm['handshakes_max'], 0)}], "
                 f"<= 2 commands [{verdict('count', warm['commands_max'], 2)}]")
    lines += ["", "local start-up (no host), median (min-max)"]
    for name, r in report["startup"].items():
        goal = (f"   <= {TARGETS['list_s'][1]} s [{verdict('seconds', r['wall_s'], TARGETS['list_s'][1])}]"
                if name == "inv -l" else "")
        lines.append(f"  {name:32}{r['wall_s']:.3f} s ({r['min_s']:.3f}-{r['max_s']:.3f}){goal}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Time the remote-run CLI against the loopback sshd, directly and through a latency proxy.")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median reported); default 5")
    parser.add_argument("--delay", type=float, default=0.025,
                        help="one-way delay of the proxy path in seconds; default 0.025 (50 ms RTT)")
    parser.add_argument("--repo", type=Path, default=REPO, help="the remote-run checkout to time (default: this one)")
    parser.add_argument("--before", type=Path,
                        help="another checkout to time beside it, rep by rep, for before/after figures")
    parser.add_argument("--git", action="store_true",
                        help="make the fixture workspace a git checkout (the sync then asks git what it ignores)")
    parser.add_argument("--json", action="store_true", help="also print the full results as JSON")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.delay <= 0:
        parser.error("--reps must be >= 1 and --delay > 0")
    started = time.perf_counter()
    try:
        report = bench(args.reps, args.delay, args.repo.resolve(), args.before.resolve() if args.before else None,
                       args.git)
    except BenchError as exc:
        print(f"bench_cli: {exc}", file=sys.stderr)
        return 1
    print(render(report) if args.before is None else render_before_after(report))
    print(f"\n(bench took {time.perf_counter() - started:.0f} s)")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
