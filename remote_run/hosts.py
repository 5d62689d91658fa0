"""Several hosts in REMOTE_HOST (`l1,l2,l3`): which one a run goes to, and where a run went.

A run goes to the first host, in the order given, whose GPUs are free; with --wait, to the one
with the shortest GPU queue. The hosts are asked at once, one launcher `check` each. Tasks about
runs already started (status, logs, kill, pull-logs, tunnel) find the run's host from its local
record, or else ask every host.
"""

from __future__ import annotations

import dataclasses
import json

from . import gpu
from .errors import Failure, Kind
from .host import states
from .output import say
from .transport import Host


def _each(sess, ask):
    """``ask(host)`` for every listed host at once: [(settings host, answer or None, error text)]."""
    from concurrent.futures import ThreadPoolExecutor

    def one(spec):
        host = Host(dataclasses.replace(sess.settings, hosts=(spec,)), sess.host.context)
        try:
            return spec, ask(host), ""
        except Failure as exc:
            return spec, None, str(exc)

    with ThreadPoolExecutor(max_workers=len(sess.settings.hosts)) as pool:
        return list(pool.map(one, sess.settings.hosts))


def choose(sess, *, allow_busy: bool, cpu_ok: bool, wait: bool, count: int) -> None:
    """Point the session at the host the run goes to (nothing to do for a single host)."""
    if len(sess.settings.hosts) < 2:
        return
    spec = gpu.spec(sess.settings, cpu_ok=cpu_ok, allow_busy=False, count=count)

    def ask(host):
        argv, stdin = host.program_with("check", {"root": host.settings.remote_dir, "gpu": spec})
        result = host.quick(argv, stdin=stdin)
        try:
            return json.loads(result.stdout.strip().splitlines()[-1])["gpu"]
        except (ValueError, IndexError, KeyError):
            raise Failure(f"checking {host.label} failed (exit {result.exited})", kind=Kind.ENVIRONMENT) from None

    answers = _each(sess, ask)
    notes = []
    for spec_, report, error in answers:
        if report is None:
            notes.append(f"{spec_.spec}: {error}")
        elif report["go"]:
            notes.append(f"{spec_.spec}: free")
        else:
            failure = gpu.failure(report, spec_.spec, sess.settings.cuda_visible_devices, spec["limit"])
            notes.append(f"{spec_.spec}: {failure.problem}")
    free = [spec_ for spec_, report, _ in answers if report is not None and report["go"]]
    waiting = [(report.get("waiting", 0), i, spec_) for i, (spec_, report, _) in enumerate(answers)
               if report is not None and report["state"] in ("ok", "busy")]
    if free:
        chosen = free[0]
    elif (wait or allow_busy) and waiting:
        chosen = min(waiting)[2]  # the shortest queue; the first listed among equals
    else:
        raise Failure(f"no host of REMOTE_HOST has its GPUs free ({'; '.join(notes)})", "pass --wait to queue on the "
                      "least busy one, or --allow-busy", Kind.GPU)
    say(f"host {chosen.spec} chosen ({'; '.join(notes)})")
    sess.use_host(chosen)


def locate(sess, run_id: str, *, running: bool = False) -> None:
    """Point the session at the host that has run ``run_id`` (the latest run when empty)."""
    if len(sess.settings.hosts) < 2:
        return
    from . import records

    if run_id:
        record = (records.RunRecord.load(sess.settings.runs_dir / run_id.split(".")[0])
                  or records.RunRecord.load(sess.settings.runs_dir / run_id))
        for spec in sess.settings.hosts:
            if record is not None and record.host == spec.spec:
                sess.use_host(spec)
                return
    answers = _each(sess, lambda host: _listing(sess, host))
    found = []
    for spec, rows, _error in answers:
        for row in rows or []:
            if row["id"] == run_id if run_id else (not running or row["state"] in states.LIVE):
                found.append((row.get("started") or 0, spec))
    if not found:
        unreachable = [f"{spec.spec} ({error})" for spec, rows, error in answers if rows is None]
        what = f"run {run_id}" if run_id else ("a running run" if running else "a run")
        raise Failure(f"no host of REMOTE_HOST has {what}"
                      + (f"; could not ask {', '.join(unreachable)}" if unreachable else ""),
                      "see `inv status`")
    sess.use_host(max(found, key=lambda item: item[0])[1])


def _listing(sess, host) -> list:
    from .pipeline import HostRuns

    runs = HostRuns(sess)
    runs.host = host
    return runs.listing()


def each_host(sess, step) -> list:
    """``step(sess)`` on every listed host in turn (sync, bootstrap, gpu-check, status); what each returned."""
    hosts = sess.settings.hosts
    if len(hosts) == 1:
        return [step(sess)]
    found = []
    for spec in hosts:
        sess.use_host(spec)
        say(f"on {spec.spec}:")
        found.append(step(sess))
    return found
