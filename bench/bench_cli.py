"""Benchmark the remote-run CLI end to end, as a user runs it, against the loopback test sshd.

Starts ``tests/sshd.py``'s ``SshServer`` (needs root) and a ``LatencyProxy``
in front of it (alias ``l1proxy``, ``2 * --delay`` of added round trip), builds
a fixture workspace (``tests/integration.py``'s ``make_workspace``) with a
trivial ``scripts/noop.py``, and reports medians over ``--reps`` repetitions,
for both the direct loopback alias ``l1`` and ``l1proxy`` (the two paths are
interleaved rep by rep, so that load from elsewhere hits both alike):

  ssh HOST true       plain OpenSSH, a fresh connection each time (the floor)
  inv run (warm)      ``inv run scripts/noop.py`` after one warm-up invocation
                      (sync + venv bootstrap); the ControlMaster persists
                      between invocations as in real use.  Wall time, SSH
                      handshakes ("Accepted publickey" in the sshd log),
                      remote commands ("Starting session:") and the ratio to
                      ``ssh HOST true``
  inv sync (no change)
  by hand             the user's playbook without remote-run: rsync, ssh
                      nvidia-smi, ssh ... python scripts/noop.py > run.log,
                      rsync the log back; one connection per step (in a
                      directory of its own, whose .venv links to the one
                      remote-run built)
  inv -l, inv --version   local startup only (no host)

plus a timeline of one warm ``inv run`` and one ``inv sync`` per path (where
the time goes: Python startup, imports, settings, rsync, the paramiko
handshake, each remote command), taken by running the same CLI under a small
wrapper that timestamps remote_run's own functions, with ``-X importtime``.

The CLI runs as a subprocess with cwd = the workspace and
env = ``server.env(REMOTE_HOST=..., REMOTE_DIR=..., TORCH_PACKAGES="",
TRAIN_IMPL="workspace")``; ``inv`` finds the task collection with
``--search-root`` (the workspace has no tasks.py of its own).  Byte code is
left as the environment has it: inv never writes any (invoke sets
``sys.dont_write_bytecode`` unless ``--write-pyc``), so an editable install
of remote_run is compiled on every invocation; the startup rows show what
that costs.

Usage (as root, like the tests)::

    python3 bench/bench_cli.py [--reps 5] [--delay 0.025] [--json]
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))

_BYTECODE_ENV = os.environ.get("PYTHONDONTWRITEBYTECODE")
from latency_proxy import LatencyProxy  # noqa: E402
from sshd import SshServer  # noqa: E402
import integration  # noqa: E402  (sets PYTHONDONTWRITEBYTECODE=1 on import; undone below)

if _BYTECODE_ENV is None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

INV = str(Path(sys.executable).parent / "inv")
HANDSHAKE = "Accepted publickey"
SESSION = "Starting session:"
TIMEOUT = 120

NOOP = 'print("RESULT_NOOP ok=1")\n'

# Targets printed next to the figures.
TARGETS = {
    "run_handshakes": 1,
    "run_commands": 4,
    "run_ratio_50ms": 2.0,
    "run_ratio_stretch": 1.2,
    "sync_wall_loopback": 0.15,
    "list_wall": 0.4,
}

# Runs the CLI exactly as the `inv` entry point does, after wrapping a few of
# remote_run's functions to timestamp them; the timeline goes to $BENCH_TIMELINE.
TIMELINE_WRAPPER = r'''
import atexit, json, os, sys, threading, time
T0 = time.perf_counter()
EVENTS = [("wrapper: first line (interpreter up)", 0.0)]
def ev(name):
    if threading.current_thread() is not threading.main_thread():
        name = "[thread] " + name
    EVENTS.append((name, time.perf_counter() - T0))
from invoke.main import program
ev("imported invoke")
import remote_run.records as records, remote_run.settings as settings_mod, remote_run.target as target
ev("imported remote_run.target/settings/records")
_load = settings_mod.load
def load(*a, **k):
    ev("tasks collection loaded + CLI parsed")
    result = _load(*a, **k)
    ev("settings loaded (.env, environment)")
    return result
settings_mod.load = load
_open = target.open_connection
def open_connection(host):
    ev("connect: start")
    import fabric, paramiko  # noqa: F401
    ev("connect: fabric + paramiko imported")
    result = _open(host)
    ev("connect: paramiko handshake + auth done")
    return result
target.open_connection = open_connection
_git = records.git_state
def git_state(*a, **k):
    ev("git_state start")
    result = _git(*a, **k)
    ev("git_state done")
    return result
records.git_state = git_state
def label(argv):
    argv = [str(a) for a in argv]
    if argv[:2] == ["sh", "-c"]:
        body = argv[2]
        if "nvidia-smi" in body and "stamp" in body:
            return "env check + gpu query (one command)"
        if "nvidia-smi" in body:
            return "gpu query"
        if "venv" in body:
            return "bootstrap"
        return "sh script"
    if len(argv) > 3 and argv[1] == "-c":
        return "launcher " + argv[3] + " (start + follow the run)"
    return os.path.basename(argv[0])
for kind in ("run", "local"):
    original = getattr(target.Target, kind)
    def wrapped(self, argv, *a, _original=original, _kind=kind, **k):
        name = ("remote " if _kind == "run" else "local ") + label(argv)
        ev(name + ": start")
        result = _original(self, argv, *a, **k)
        ev(name + ": done")
        return result
    setattr(target.Target, kind, wrapped)
def dump():
    ev("exit (atexit)")
    with open(os.environ["BENCH_TIMELINE"], "w") as fh:
        json.dump(EVENTS, fh)
atexit.register(dump)
sys.argv[0] = "inv"
sys.exit(program.run())
'''


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------ helpers
def timed(argv, *, cwd, env, expect_stdout: str | None = None):
    """Run argv; return (wall seconds, CompletedProcess). Fails loudly on a non-zero exit."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"command timed out after {TIMEOUT} s: {' '.join(map(str, argv))}\n"
                         f"--- stderr ---\n{(exc.stderr or b'')[-3000:]!r}") from None
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"command failed (exit {done.returncode}): {' '.join(map(str, argv))}\n"
                         f"cwd: {cwd}\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")
    if expect_stdout is not None and expect_stdout not in done.stdout:
        raise BenchError(f"{' '.join(map(str, argv))}: {expect_stdout!r} missing from its output\n"
                         f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")
    return wall, done


def once(server, fn):
    """Call fn(); (wall seconds, handshakes, remote sessions) it caused, from the sshd log."""
    mark = server.mark()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    time.sleep(0.05)  # sshd may log a line a moment after the client has gone
    return wall, server.count(HANDSHAKE, mark), server.count(SESSION, mark)


def summarize(samples) -> dict:
    walls = [w for w, _, _ in samples]
    return {
        "wall_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "handshakes": statistics.median([h for _, h, _ in samples]),
        "commands": statistics.median([c for _, _, c in samples]),
        "handshakes_max": max(h for _, h, _ in samples),
        "commands_max": max(c for _, _, c in samples),
        "walls_s": [round(w, 4) for w in walls],
    }


def measure(server, reps, fn):
    """Call fn(i) reps times; medians of wall time, handshakes and sessions per call."""
    return summarize([once(server, lambda: fn(i)) for i in range(reps)])


def tool_version(argv, pattern):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(0) if m else "?"


def machine_info() -> dict:
    return {
        "nproc": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "openssh": tool_version(["ssh", "-V"], r"OpenSSH_[^\s,]+"),
        "rsync": tool_version(["rsync", "--version"], r"version\s+\S+"),
        "kernel": platform.release(),
    }


def ensure_offline_pip(server) -> bool:
    """Like tests/test_ssh_tasks.py's offline_pip: bootstrap's `pip install --upgrade pip`
    never goes to the network. Returns True if we wrote the file (and must remove it)."""
    conf = server.remote_home / ".config" / "pip" / "pip.conf"
    if conf.exists():
        return False
    server.as_user(["mkdir", "-p", str(conf.parent)])
    done = server.as_user(["sh", "-c", f"printf '[global]\\nno-index = true\\n' > {conf}"])
    if done.returncode != 0:
        raise BenchError(f"cannot write {conf}: {done.stderr}")
    return True


# -------------------------------------------------------------- one path
class Path_:
    """One way to reach the host (alias l1 or l1proxy): its workspace, REMOTE_DIR and commands."""

    def __init__(self, server, alias, ws, remote_dir, base_env):
        self.server, self.alias, self.ws, self.remote_dir = server, alias, ws, remote_dir
        self.env = server.env(REMOTE_HOST=alias, REMOTE_DIR=remote_dir, TORCH_PACKAGES="",
                              TRAIN_IMPL="workspace", **base_env)
        self.hand_env = server.env(**base_env)  # plain ssh/rsync: the -F wrapper is first on PATH
        inv = [INV, "--search-root", str(REPO)]
        self.run_argv = [*inv, "run", "scripts/noop.py"]
        self.sync_argv = [*inv, "sync"]
        self.ssh_true_argv = ["ssh", "-F", str(server.ssh_config), "-o", "ControlMaster=no",
                              "-o", "ControlPath=none", alias, "true"]
        # The by-hand playbook gets a REMOTE_DIR of its own: its rsync --delete would remove
        # remote-run's runs/ and ownership marker, and remote-run would then (rightly) refuse
        # the directory.
        self.hand_dir = remote_dir + "_byhand"
        self.samples = {k: [] for k in ("ssh_true", "inv_run", "inv_sync", "by_hand")}
        self.result: dict = {"remote_dir": remote_dir}

    def setup(self):
        """Untimed: first ssh, and the warm-up `inv run` (sync + venv bootstrap + ControlMaster)."""
        timed(self.ssh_true_argv, cwd=self.ws, env=self.env)
        warm = once(self.server, lambda: timed(self.run_argv, cwd=self.ws, env=self.env,
                                               expect_stdout="RESULT_NOOP ok=1"))
        self.result["warmup_run"] = {"wall_s": warm[0], "handshakes": warm[1], "commands": warm[2]}
        # The user's own one-time setup for the by-hand playbook: a venv in the by-hand dir.
        # A link to the venv remote-run built: the same interpreter, without a second
        # `python3 -m venv` (seconds).
        timed(["ssh", self.alias, f"mkdir -p {self.hand_dir} && ln -sfn {self.remote_dir}/.venv {self.hand_dir}/.venv"],
              cwd=self.ws, env=self.hand_env)
        (self.ws / "remote_runs").mkdir(exist_ok=True)

    def by_hand(self, i):
        alias, d = self.alias, self.hand_dir
        steps = [
            ["rsync", "-az", "--delete", "--exclude=.git", "--exclude=var", "--exclude=.venv",
             "--exclude=__pycache__", "./", f"{alias}:{d}/"],
            ["ssh", alias, "nvidia-smi"],
            ["ssh", alias, f"cd {d} && CUDA_VISIBLE_DEVICES=0 .venv/bin/python scripts/noop.py > run.log 2>&1"],
        ]
        for argv in steps:
            timed(argv, cwd=self.ws, env=self.hand_env)
        local = f"./remote_runs/{time.strftime('%Y%m%dT%H%M%S')}_{i}_noop.log"
        timed(["rsync", "-az", f"{alias}:{d}/run.log", local], cwd=self.ws, env=self.hand_env)
        if "RESULT_NOOP ok=1" not in (self.ws / local).read_text():
            raise BenchError(f"by hand: {local} lacks the RESULT line: {(self.ws / local).read_text()!r}")

    def rep(self, i):
        """One repetition of every measurement on this path."""
        s, ws, env = self.server, self.ws, self.env
        self.samples["ssh_true"].append(once(s, lambda: timed(self.ssh_true_argv, cwd=ws, env=env)))
        self.samples["inv_run"].append(once(s, lambda: timed(
            self.run_argv, cwd=ws, env=env, expect_stdout="RESULT_NOOP ok=1")))
        self.samples["inv_sync"].append(once(s, lambda: timed(
            self.sync_argv, cwd=ws, env=env, expect_stdout="remote-run: synced")))
        self.samples["by_hand"].append(once(s, lambda: self.by_hand(i)))

    def timeline(self, tmp: Path, task: str, *args: str, expect: str):
        """One more warm invocation, timestamped (see TIMELINE_WRAPPER) and with -X importtime."""
        timeline_file = tmp / f"timeline-{self.alias}-{task}.json"
        env = dict(self.env, BENCH_TIMELINE=str(timeline_file))
        wall, done = timed([sys.executable, "-X", "importtime", "-c", TIMELINE_WRAPPER,
                            "--search-root", str(REPO), task, *args],
                           cwd=self.ws, env=env, expect_stdout=expect)
        self.result.setdefault("timelines", {})[" ".join(("inv", task, *args))] = {
            "wall_s": wall, "events": json.loads(timeline_file.read_text()),
            "imports_s": parse_importtime(done.stderr)}

    def finish(self) -> dict:
        for key, samples in self.samples.items():
            self.result[key] = summarize(samples)
        r = self.result
        r["inv_run"]["ratio_to_ssh_true"] = r["inv_run"]["wall_s"] / r["ssh_true"]["wall_s"]
        # the same ratio from the per-rep pairs (ssh true and inv run measured back to back)
        r["inv_run"]["ratio_per_rep_median"] = statistics.median(
            run[0] / ssh[0] for run, ssh in zip(self.samples["inv_run"], self.samples["ssh_true"]))
        return r


IMPORTS = ("invoke", "remote_run.tasks", "fabric", "paramiko", "cryptography.hazmat.bindings._rust")


def parse_importtime(stderr: str) -> dict:
    """Cumulative import time of a few packages, and the total, from -X importtime output.
    Nested imports are part of the enclosing one (paramiko is inside fabric)."""
    found, total = {}, 0
    for line in stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        self_us = parts[0].rsplit(":", 1)[1].strip()
        total += int(self_us) if self_us.isdigit() else 0
        name = parts[2].strip()
        if name in IMPORTS and name not in found:
            found[name] = int(parts[1]) / 1e6
    found["all imports"] = total / 1e6
    return found


# ------------------------------------------------------------ local startup
def bench_startup(server, reps, base_env, tmp: Path) -> dict:
    """Local startup costs, no host contacted.  The import rows split a warm run's local
    Python cost: invoke, remote_run (with and without byte code), fabric + paramiko."""
    env = server.env(**base_env)
    # Everything byte-compiled, remote_run included: a private cache filled by one plain
    # python run (inv itself never writes byte code: invoke sets sys.dont_write_bytecode).
    cached = dict(env, PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    cached.pop("PYTHONDONTWRITEBYTECODE", None)
    imports = "import invoke.main, remote_run.tasks"
    cases = {
        "python_c_pass": ([sys.executable, "-c", "pass"], env),
        "inv_version": ([INV, "--version"], env),
        "inv_list": ([INV, "-l"], env),
        "import_invoke_remote_run": ([sys.executable, "-c", imports], env),
        "import_invoke_remote_run_all_pyc": ([sys.executable, "-c", imports], cached),
        "import_invoke_remote_run_fabric": ([sys.executable, "-c", imports + ", fabric"], env),
    }
    out = {}
    for name, (argv, e) in cases.items():
        timed(argv, cwd=REPO, env=e)  # warm the page cache (and fill the private byte-code cache)
        out[name] = measure(server, reps, lambda i, a=argv, ee=e: timed(a, cwd=REPO, env=ee))
    return out


# ------------------------------------------------------------------ report
def timeline_rows(events):
    rows, prev = [], 0.0
    for name, t in events:
        rows.append((t, t - prev, name))
        prev = t
    return rows


def ok(value, limit):
    return "ok" if value <= limit + 1e-9 else "MISS"


def render(report) -> str:
    info, paths, st = report["machine"], report["paths"], report["startup"]
    d = report["delay_s"]
    L = []
    L.append("remote-run CLI benchmark (bench/bench_cli.py)")
    L.append(f"  machine: {info['nproc']} CPUs (load avg {info['loadavg_at_start']:.2f} at start), "
             f"Python {info['python']}, {info['openssh']}, rsync {info['rsync'].split()[-1]}, kernel {info['kernel']}")
    L.append(f"  sshd: loopback OpenSSH (tests/sshd.py); l1 = direct, l1proxy = through LatencyProxy "
             f"(+{2 * d * 1000:.0f} ms RTT)")
    L.append(f"  {report['reps']} reps each, the two paths interleaved; wall = median (min); handshakes/commands = "
             f"median per invocation from the sshd log; fixture workspace + scripts/noop.py")
    L.append(f"  byte code: {report['bytecode']}")
    L.append("")
    hdr = f"{'measurement':<34}{'l1 (loopback)':>18}{'l1proxy (+' + format(2 * d * 1000, '.0f') + ' ms)':>20}   target"
    L.append(hdr)
    L.append("-" * (len(hdr) + 30))

    def wall(r):
        return f"{r['wall_s']:.3f} s" + (f" ({r['min_s']:.3f})" if "min_s" in r else "")

    def row(label, a, b, target=""):
        L.append(f"{label:<34}{a:>18}{b:>20}   {target}")

    p1, p2 = paths["l1"], paths["l1proxy"]
    row("1 ssh HOST true (fresh conn)", wall(p1["ssh_true"]), wall(p2["ssh_true"]))
    row("  handshakes / commands", f"{p1['ssh_true']['handshakes']:g} / {p1['ssh_true']['commands']:g}",
        f"{p2['ssh_true']['handshakes']:g} / {p2['ssh_true']['commands']:g}")
    row("2 inv run noop (warm)  wall", wall(p1["inv_run"]), wall(p2["inv_run"]))
    def count(r, key):
        med, top = r[key], r[key + "_max"]
        return f"{med:g}" + ("" if top == med else f" (max {top:g})")

    def verdict(key, limit):
        return f"[{ok(p1['inv_run'][key + '_max'], limit)} / {ok(p2['inv_run'][key + '_max'], limit)}]"

    row("  handshakes", count(p1["inv_run"], "handshakes"), count(p2["inv_run"], "handshakes"),
        f"<= {TARGETS['run_handshakes']}  {verdict('handshakes', TARGETS['run_handshakes'])} (every rep)")
    row("  remote commands", count(p1["inv_run"], "commands"), count(p2["inv_run"], "commands"),
        f"<= {TARGETS['run_commands']}  {verdict('commands', TARGETS['run_commands'])} (every rep)")
    r1, r2 = p1["inv_run"]["ratio_to_ssh_true"], p2["inv_run"]["ratio_to_ssh_true"]
    stretch = "ok" if r2 <= TARGETS["run_ratio_stretch"] else "MISS"
    q1, q2 = p1["inv_run"]["ratio_per_rep_median"], p2["inv_run"]["ratio_per_rep_median"]
    row("  ratio wall / ssh true", f"{r1:.2f}x ({q1:.2f}x)", f"{r2:.2f}x ({q2:.2f}x)",
        f"<= {TARGETS['run_ratio_50ms']:.1f}x at 50 ms RTT [{ok(r2, TARGETS['run_ratio_50ms'])}], "
        f"stretch {TARGETS['run_ratio_stretch']}x [{stretch}]")
    row("  (warm-up: sync+bootstrap) wall", wall(p1["warmup_run"]), wall(p2["warmup_run"]),
        f"hs {p1['warmup_run']['handshakes']}/{p2['warmup_run']['handshakes']}, "
        f"cmds {p1['warmup_run']['commands']}/{p2['warmup_run']['commands']}")
    row("3 inv sync (no change)  wall", wall(p1["inv_sync"]), wall(p2["inv_sync"]),
        f"<= {TARGETS['sync_wall_loopback']} s on loopback [{ok(p1['inv_sync']['wall_s'], TARGETS['sync_wall_loopback'])}]")
    row("  handshakes / commands", f"{p1['inv_sync']['handshakes']:g} / {p1['inv_sync']['commands']:g}",
        f"{p2['inv_sync']['handshakes']:g} / {p2['inv_sync']['commands']:g}")
    row("5 by hand (rsync, ssh x2, rsync)", wall(p1["by_hand"]), wall(p2["by_hand"]))
    row("  handshakes / commands", f"{p1['by_hand']['handshakes']:g} / {p1['by_hand']['commands']:g}",
        f"{p2['by_hand']['handshakes']:g} / {p2['by_hand']['commands']:g}")
    row("  inv run (warm) / by hand", f"{p1['inv_run']['wall_s'] / p1['by_hand']['wall_s']:.2f}x",
        f"{p2['inv_run']['wall_s'] / p2['by_hand']['wall_s']:.2f}x")
    L.append("  (ratio: of the medians; in brackets the median of per-rep ratios, ssh true and inv run back to back)")
    L.append("")
    L.append("local startup (no host contacted), run from the repo root; median (min-max)")
    names = {
        "python_c_pass": "python3 -c pass",
        "inv_version": "inv --version",
        "inv_list": "4 inv -l",
        "import_invoke_remote_run": "python3 -c 'import invoke.main, remote_run.tasks'",
        "import_invoke_remote_run_all_pyc": "  the same, remote_run byte code cached",
        "import_invoke_remote_run_fabric": "  the same + fabric (+ paramiko)",
    }
    for key, r in st.items():
        target = ""
        if key == "inv_list":
            target = f"<= {TARGETS['list_wall']} s [{ok(r['wall_s'], TARGETS['list_wall'])}]"
        L.append(f"  {names.get(key, key):<52}{r['wall_s']:.3f} s  ({r['min_s']:.3f}-{r['max_s']:.3f}) {target}")
    for alias in ("l1", "l1proxy"):
        for what, tl in paths[alias]["timelines"].items():
            L.append("")
            L.append(f"where one warm `{what}` goes, {alias} (timestamped run, wall {tl['wall_s']:.3f} s; "
                     f"interpreter start before t=0 ~ python3 -c pass = {st['python_c_pass']['wall_s']:.3f} s)")
            L.append(f"  {'t (s)':>7} {'step (s)':>9}  event (step = time since the previous event)")
            for t, step, name in timeline_rows(tl["events"]):
                L.append(f"  {t:7.3f} {step:9.3f}  {name}")
            L.append("  imports in that process (-X importtime, cumulative; fabric includes paramiko): "
                     + ", ".join(f"{k} {v:.3f} s" for k, v in tl["imports_s"].items()))
    return "\n".join(L)


# -------------------------------------------------------------------- main
def bench(reps: int, delay: float) -> dict:
    if os.geteuid() != 0:
        raise BenchError("run as root (like the tests): the loopback sshd creates a user and starts sshd")
    report: dict = {"reps": reps, "delay_s": delay, "round_trip_added_s": 2 * delay,
                    "machine": machine_info(), "paths": {}}
    tag = f"/tmp/rrbench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="rr-bench-cli-") as tmp:
        tmp = Path(tmp)
        base_env: dict = {}
        pyc = any((REPO / "remote_run").rglob("*.pyc"))
        report["bytecode"] = (f"as this environment has it (PYTHONDONTWRITEBYTECODE={_BYTECODE_ENV!r}); "
                              f"site-packages pre-compiled by pip; remote_run (editable) "
                              f"{'has' if pyc else 'has no'} byte code, and inv never writes any")
        server = SshServer(tmp / "sshd")
        proxy = None
        wrote_pip_conf = False
        try:
            server.start()
            proxy = LatencyProxy(target=("127.0.0.1", server.port), delay=delay).start()
            server.add_alias("l1proxy", proxy.port)
            wrote_pip_conf = ensure_offline_pip(server)
            paths = []
            for alias in ("l1", "l1proxy"):
                root = tmp / f"ws-{alias}"
                root.mkdir()
                ws = integration.make_workspace(root)
                (ws / "scripts" / "noop.py").write_text(NOOP)
                paths.append(Path_(server, alias, ws, f"{tag}_{alias}", base_env))
            for p in paths:
                p.setup()
            # interleaved, so that load from elsewhere on the machine hits both paths alike
            for i in range(reps):
                for p in paths:
                    p.rep(i)
            for p in paths:
                p.timeline(tmp, "run", "scripts/noop.py", expect="RESULT_NOOP ok=1")
                p.timeline(tmp, "sync", expect="remote-run: synced")
                report["paths"][p.alias] = p.finish()
            report["startup"] = bench_startup(server, reps, base_env, tmp)
        finally:
            if proxy is not None:
                proxy.stop()
            try:
                server.cleanup_remote(tag)
                if wrote_pip_conf:
                    server.as_user(["rm", "-f", str(server.remote_home / ".config" / "pip" / "pip.conf")])
            finally:
                server.close()
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time the remote-run CLI (inv run/sync/-l) against the loopback sshd, "
                                             "directly and through a latency proxy, and the same job done by hand.")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per measurement (median reported); default 5")
    ap.add_argument("--delay", type=float, default=0.025,
                    help="one-way delay of the proxy path in seconds (round trip = 2x); default 0.025")
    ap.add_argument("--json", action="store_true", help="also print the full results as JSON")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.delay <= 0:
        ap.error("--reps must be >= 1 and --delay > 0")
    started = time.perf_counter()
    try:
        report = bench(args.reps, args.delay)
    except BenchError as exc:
        print(f"bench_cli: {exc}", file=sys.stderr)
        return 1
    report["bench_wall_s"] = time.perf_counter() - started
    print(render(report))
    print(f"\n(bench took {report['bench_wall_s']:.0f} s)")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
