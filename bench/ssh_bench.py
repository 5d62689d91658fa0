"""Benchmark the SSH patterns remote-run can use, against the loopback test sshd.

Starts ``tests/sshd.py``'s ``SshServer`` (needs root) and, unless
``--delay 0``, a ``LatencyProxy`` in front of it, then times each pattern
``--reps`` times and reports the median wall time together with how many SSH
handshakes ("Accepted publickey") and remote sessions ("Starting session:")
the sshd log shows per repetition:

  ssh-true          ``ssh HOST true``: one handshake per command
  cm-first          ``ssh -o ControlMaster=auto -o ControlPersist=...``: first
                    call opens the master
  cm-reuse          the same, master already open: no handshake
  rsync-noop        ``rsync -az`` of a small unchanged tree, new connection
  rsync-noop-cm     the same through the ControlMaster
  paramiko-connect  paramiko connect + auth
  paramiko-exec     one ``exec_command("true")`` on an open paramiko connection

Usage::

    python3 bench/ssh_bench.py [--delay 0.025] [--reps 5] [--json]   (the paramiko rows need paramiko installed)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.latency_proxy import LatencyProxy  # noqa: E402
from support.sshd import SshServer  # noqa: E402

REMOTE_DIR = "/tmp/rrtest_bench"


def _run(argv, env):
    r = subprocess.run(argv, env=env, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")


def _measure(server, reps, fn):
    times, hs, sess = [], 0, 0
    for _ in range(reps):
        mark = server.mark()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        hs += server.count("Accepted publickey", mark)
        sess += server.count("Starting session:", mark)
    return {"median_s": statistics.median(times), "min_s": min(times),
            "handshakes_per_rep": hs / reps, "sessions_per_rep": sess / reps}


def bench(delay: float, reps: int) -> dict:
    import paramiko

    results = {}
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as tmp:
        tmp = Path(tmp)
        server = SshServer(tmp / "sshd")
        proxy = None
        try:
            server.start()
            alias = "l1"
            port = server.port
            if delay > 0:
                proxy = LatencyProxy(target=("127.0.0.1", server.port), delay=delay).start()
                server.add_alias("l1proxy", proxy.port)
                alias, port = "l1proxy", proxy.port
            env = server.env()
            ssh = ["ssh", alias]
            ctl = server.control_dir
            ctl.mkdir()
            cm_opts = ["-o", "ControlMaster=auto", "-o", f"ControlPath={ctl}/%C",
                       "-o", "ControlPersist=60"]
            src = tmp / "src"
            for i in range(50):
                (src / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
                (src / f"d{i % 5}" / f"f{i}.py").write_text(f"x = {i}\n" * 50)
            _run(["rsync", "-az", f"{src}/", f"{alias}:{REMOTE_DIR}/"], env)  # prime

            results["ssh-true"] = _measure(server, reps, lambda: _run([*ssh, "true"], env))

            def cm_first():
                _run(["ssh", *cm_opts, alias, "true"], env)
                _run(["ssh", *cm_opts, "-O", "exit", alias], env)
            results["cm-first"] = _measure(server, reps, cm_first)
            _run(["ssh", *cm_opts, alias, "true"], env)
            results["cm-reuse"] = _measure(
                server, reps, lambda: _run(["ssh", *cm_opts, alias, "true"], env))
            results["rsync-noop"] = _measure(
                server, reps, lambda: _run(["rsync", "-az", f"{src}/", f"{alias}:{REMOTE_DIR}/"], env))
            rsh = "ssh " + " ".join(cm_opts)
            results["rsync-noop-cm"] = _measure(
                server, reps,
                lambda: _run(["rsync", "-az", "-e", rsh, f"{src}/", f"{alias}:{REMOTE_DIR}/"], env))
            _run(["ssh", *cm_opts, "-O", "exit", alias], env)

            def pm_connect():
                client = paramiko.SSHClient()
                client.load_host_keys(str(server.known_hosts))
                client.connect("127.0.0.1", port=port, username=server.user,
                               key_filename=str(server.client_key), allow_agent=False,
                               look_for_keys=False, timeout=10)
                return client
            results["paramiko-connect"] = _measure(server, reps, lambda: pm_connect().close())
            client = pm_connect()
            try:
                def pm_exec():
                    _, out, _ = client.exec_command("true")
                    if out.channel.recv_exit_status() != 0:
                        raise RuntimeError("remote true failed")
                results["paramiko-exec"] = _measure(server, reps, pm_exec)
            finally:
                client.close()
        finally:
            if proxy is not None:
                proxy.stop()
            try:
                server.cleanup_remote(REMOTE_DIR)
            finally:
                server.close()
    return {"delay_s": delay, "round_trip_s": 2 * delay, "reps": reps, "results": results}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time SSH patterns against the loopback test sshd.")
    ap.add_argument("--delay", type=float, default=0.025,
                    help="one-way delay added by the proxy, seconds (0: no proxy); default 0.025")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    report = bench(args.delay, args.reps)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"round trip {report['round_trip_s'] * 1000:.0f} ms added, {args.reps} reps, median")
    print(f"{'pattern':<18} {'median ms':>10} {'min ms':>8} {'handshakes':>11} {'sessions':>9}")
    for name, r in report["results"].items():
        print(f"{name:<18} {r['median_s'] * 1000:>10.0f} {r['min_s'] * 1000:>8.0f} "
              f"{r['handshakes_per_rep']:>11.1f} {r['sessions_per_rep']:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
