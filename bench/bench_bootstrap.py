"""A cold `inv bootstrap` of torch (CPU wheel) and numpy against the loopback test sshd, against
the installer alone run by hand on the same host, the pip path, and a warm bootstrap.

The host gets its packages from this machine's local sources, through its pip.conf as from a
mirror: ``--find-links`` (torch's CPU wheel; default /opt/wheels), ``--index-url`` (numpy and
torch's dependencies; default file:///opt/pypi/simple) and uv's own wheel (var/wheels, fetched there
on first use). Every cold case starts from a new REMOTE_DIR (synced, untimed) and an empty uv
cache on the host; the cases take turns rep by rep, after one untimed round that warms the page
cache. Cases:

  uv into the tool env   `inv bootstrap`, the host has no uv: remote-run installs it into
                         REMOTE_DIR/.remote-run/uv with pip, then builds .venv with it
  host has uv            the same with uv on the host's PATH
  by hand                the installer alone, as the remote user on the host (no ssh, no
                         remote-run): `uv venv` + `uv pip install` with the same sources
  by hand over ssh       the same as one `ssh l1 '...'` command
  pip                    `BOOTSTRAP_INSTALLER=pip inv bootstrap`: python3 -m venv, pip install
                         --upgrade pip, pip install (the path before uv, now showing its lines)
  before (--before DIR)  `inv bootstrap` of another checkout (an older commit), as "uv into the tool
                         env" and in the same rounds: before/after figures from one session
  uv cache warm          a second, new REMOTE_DIR on the same host (uv's cache filled)
  warm                   `inv bootstrap` when nothing changed

Each timed `inv bootstrap` includes the check of its sync pre-task (one remote command). Reported:
median and min-max wall seconds, the ratio to "by hand", the remote commands (sshd's "Starting
session:" lines) and the longest time stderr said nothing.

    python3 bench/bench_bootstrap.py [--reps 3] [--pip-reps 3] [--before DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_cli import REPO, BenchError, loopback, make_workspace  # noqa: E402
from support.cli import write_pip_conf  # noqa: E402
from support.wheels import ensure_uv_wheel, readable_tree  # noqa: E402

from remote_run.errors import Failure  # noqa: E402

SESSION = "Starting session:"
TIMEOUT = 900
TARGET = 1.2  # cold bootstrap / the installer alone


def watched(argv, *, cwd, env) -> dict:
    """Run argv: wall seconds, the longest time without a line on stderr, the output. Fails loudly."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    stamps, err, out = [started], [], []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    for line in proc.stderr:
        stamps.append(time.perf_counter())
        err.append(line)
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise BenchError(f"timed out after {TIMEOUT} s: {' '.join(map(str, argv))}") from None
    reader.join()
    wall = time.perf_counter() - started
    stamps.append(started + wall)
    stderr = "".join(err)
    if proc.returncode:
        raise BenchError(f"{' '.join(map(str, argv[:6]))}... (exit {proc.returncode})\n"
                         f"--- stderr ---\n{stderr[-3000:]}")
    return {"wall": wall, "silence": max(b - a for a, b in zip(stamps, stamps[1:])), "stderr": stderr}


class Bench:
    def __init__(self, server, tmp: Path, tag: str, args):
        self.server, self.tmp, self.tag, self.args = server, tmp, tag, args
        self.home = server.remote_home
        self.ws = make_workspace(tmp / "ws")
        self.settings = {"TORCH_PACKAGES": args.torch, "TORCH_INDEX_URL": "", "PIP_PACKAGES": args.packages}
        self.samples: dict[str, list[dict]] = {}
        self.n = 0
        try:
            wheel = ensure_uv_wheel()
        except Failure as exc:
            raise BenchError(exc.line) from None
        self.uv_version = wheel.name.split("-")[1]
        # uv's wheel for the host's pip (a find-links folder), and its binary for the cases that have uv.
        shared = Path(tempfile.mkdtemp(prefix="rr-bench-uv-", dir="/tmp"))
        self.shared = shared
        (shared / "wheels").mkdir()
        (shared / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
            (shared / "uv").write_bytes(archive.read(member))
        readable_tree(shared)
        (shared / "uv").chmod(0o755)
        self.uv = str(shared / "uv")
        self.remove_conf = write_pip_conf(server, f"[global]\nindex-url = {args.index_url}\n"
                                                  f"find-links = {args.find_links} {shared / 'wheels'}\n")
        self.flags = self.sources()

    def sources(self) -> list[str]:
        """The uv options remote-run derives from the host's pip configuration: "by hand" uses the same."""
        from remote_run.host.installer import Sources

        saved = os.environ.get("HOME")
        os.environ["HOME"] = str(self.home)
        try:
            return Sources({"HOME": str(self.home), "PATH": "/usr/bin:/bin"}).args()
        finally:
            os.environ["HOME"] = saved or ""

    def remote_dir(self) -> str:
        self.n += 1
        return f"{self.tag}_{self.n}"

    def as_user(self, argv, **kwargs):
        done = self.server.as_user(argv, **kwargs)
        if done.returncode:
            raise BenchError(f"{argv} as the remote user: {done.stderr[-2000:]}")
        return done

    def cold_cache(self):
        self.as_user(["rm", "-rf", str(self.home / ".cache" / "uv")])

    def host_uv(self, present: bool):
        target = self.home / "bin" / "uv"
        self.as_user(["cp", self.uv, str(target)] if present else ["rm", "-f", str(target)])

    def inv(self, repo: Path, remote: str, *args: str, **env) -> tuple[list[str], dict]:
        return [sys.executable, "-m", "invoke", "--search-root", str(repo), *args], self.server.env(
            REMOTE_HOST="l1", REMOTE_DIR=remote, TRAIN_IMPL="workspace", **{**self.settings, **env})

    def bootstrap(self, name: str, *, repo: Path = REPO, uv_on_path=False, cold_cache=True, record=True, **env) -> str:
        remote = self.remote_dir()
        argv, environ = self.inv(repo, remote, "sync", **env)
        watched(argv, cwd=self.ws, env=environ)
        self.host_uv(uv_on_path)
        if cold_cache:
            self.cold_cache()
        argv, environ = self.inv(repo, remote, "bootstrap", **env)
        mark = self.server.mark()
        got = watched(argv, cwd=self.ws, env=environ)
        time.sleep(0.05)
        got["commands"] = self.server.count(SESSION, mark)
        self.host_uv(False)
        if record:
            self.samples.setdefault(name, []).append(got)
        return remote

    def by_hand(self, name: str, over_ssh: bool, record=True):
        remote = self.remote_dir()
        packages = [*self.args.torch.split(), *self.args.packages.split()]
        venv = f"{remote}/.venv"
        script = (f"mkdir -p {remote} && {self.uv} venv --quiet --python /usr/bin/python3 {venv} && "
                  f"{self.uv} pip install --python {venv}/bin/python {' '.join(self.flags)} {' '.join(packages)}")
        self.cold_cache()
        if over_ssh:
            mark = self.server.mark()
            got = watched(["ssh", "l1", script], cwd=self.ws, env=self.server.env())
            time.sleep(0.05)
            got["commands"] = self.server.count(SESSION, mark)
        else:
            started = time.perf_counter()
            done = self.server.as_user(["sh", "-c", script], timeout=TIMEOUT)
            if done.returncode:
                raise BenchError(f"by hand: {done.stderr[-2000:]}")
            got = {"wall": time.perf_counter() - started, "silence": None, "stderr": done.stderr, "commands": 0}
        if record:
            self.samples.setdefault(name, []).append(got)
        self.drop(remote)

    def drop(self, remote: str):
        self.as_user(["rm", "-rf", remote], cwd="/")

    def round(self, uv: bool, pip: bool, record: bool = True):
        if uv:
            self.uv_round(record)
        if pip:
            self.drop(self.bootstrap("pip", BOOTSTRAP_INSTALLER="pip", record=record))

    def uv_round(self, record: bool):
        self.by_hand("by hand", False, record)
        self.drop(self.bootstrap("uv into the tool env", record=record))
        if self.args.before:  # the same case for the other checkout, in the same round
            self.drop(self.bootstrap("before", repo=Path(self.args.before), record=record))
        self.by_hand("by hand over ssh", True, record)
        keep = self.bootstrap("host has uv", uv_on_path=True, record=record)
        self.drop(self.bootstrap("uv cache warm", cold_cache=False, record=record))  # uv into the tool env again
        # warm: the environment `keep` is current
        argv, environ = self.inv(REPO, keep, "bootstrap")
        mark = self.server.mark()
        got = watched(argv, cwd=self.ws, env=environ)
        time.sleep(0.05)
        got["commands"] = self.server.count(SESSION, mark)
        if "environment is up to date" not in got["stderr"]:
            raise BenchError("the warm bootstrap did something:\n" + got["stderr"])
        if record:
            self.samples.setdefault("warm", []).append(got)
        self.drop(keep)

    def close(self):
        self.remove_conf()
        import shutil

        shutil.rmtree(self.shared, ignore_errors=True)


def stats(samples: list[dict], base: float | None) -> dict:
    walls = [s["wall"] for s in samples]
    silences = [s["silence"] for s in samples if s.get("silence") is not None]
    median = statistics.median(walls)
    return {"n": len(walls), "median_s": median, "min_s": min(walls), "max_s": max(walls),
            "walls_s": [round(w, 2) for w in walls],
            "ratio": median / base if base else None, "commands": max(s.get("commands", 0) for s in samples),
            "longest_silence_s": max(silences) if silences else None}


def render(report: dict) -> str:
    m = report["machine"]
    lines = [f"cold `inv bootstrap` of {report['torch']} + {report['packages']} (bench/bench_bootstrap.py);"
             f" uv {report['uv']}; {m['cpus']} CPUs, load {m['load']:.1f} at start, Python {m['python']}",
             f"sources: {' '.join(report['flags'])}", "",
             f"{'case':<22} {'n':>2} {'median s':>9} {'min-max s':>13} {'x by hand':>9} {'remote cmds':>11}"
             f" {'longest silence s':>17}"]
    for name, r in report["cases"].items():
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else ""
        silence = f"{r['longest_silence_s']:.1f}" if r["longest_silence_s"] is not None else "-"
        lines.append(f"{name:<22} {r['n']:>2} {r['median_s']:>9.2f} {r['min_s']:>6.2f}-{r['max_s']:<6.2f} {ratio:>9}"
                     f" {r['commands']:>11} {silence:>17}")
    for name in ("uv into the tool env", "host has uv"):
        r = report["cases"].get(name)
        if r:
            lines.append(f"target: {name} <= {TARGET}x by hand: {r['ratio']:.2f}x"
                         f" {'met' if r['ratio'] <= TARGET else 'MISSED'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed rounds of the uv cases (default 3)")
    parser.add_argument("--pip-reps", type=int, default=3,
                        help="timed rounds of the pip cases, each about a minute (default 3)")
    parser.add_argument("--torch", default="torch==2.13.0", help="TORCH_PACKAGES (default torch==2.13.0)")
    parser.add_argument("--packages", default="numpy", help="PIP_PACKAGES (default numpy)")
    parser.add_argument("--find-links", default="/opt/wheels",
                        help="a folder with torch's CPU wheel (default /opt/wheels)")
    parser.add_argument("--index-url", default="file:///opt/pypi/simple",
                        help="a simple index with the rest (default file:///opt/pypi/simple)")
    parser.add_argument("--before",
                        help="another checkout of remote-run to time as `before` (e.g. the commit before uv)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    tag = f"/tmp/rrbench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        with loopback(Path(tmp), 0.025, tag) as server:
            bench = Bench(server, Path(tmp), tag, args)
            try:
                load = os.getloadavg()[0]
                bench.round(uv=True, pip=False, record=False)  # untimed: the page cache
                for i in range(max(args.reps, args.pip_reps)):
                    bench.round(uv=i < args.reps, pip=i < args.pip_reps)
            finally:
                bench.close()
    base = statistics.median(s["wall"] for s in bench.samples["by hand"])
    report = {"torch": args.torch, "packages": args.packages, "uv": bench.uv_version, "flags": bench.flags,
              "machine": {"cpus": os.cpu_count(), "load": load, "python": platform.python_version()},
              "cases": {name: stats(samples, base) for name, samples in bench.samples.items()}}
    print(render(report))
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
