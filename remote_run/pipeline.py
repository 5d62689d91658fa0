"""One run pipeline: start a run, follow it, decide its outcome, write and report its record.

A backend starts, follows and stops runs somewhere: HostRuns on REMOTE_HOST (through the
launcher), remote_run.sky.backend.ClusterRuns on a SkyPilot cluster. `execute` is the lifecycle
of a new run, `complete` that of a run followed again (`logs --follow`) or stopped (`kill`);
`outcome` is the one place a run's outcome is decided.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import aftermath, gpu, notify, records, steps, sync, transport
from .errors import Failure, Kind
from .host import exits, layout, states
from .host.control import CONTROL
from .host.files import Lines
from .host.queue import busy_text
from .options import RunOptions
from .output import say
from .preflight import Preflight
from .runner_files import template
from .session import Session
from .shell import join
from .trainers import RunSpec


@dataclass
class Ending:
    """How following a run ended."""

    exit_status: int | None
    lost: bool = False  # the connection dropped: the run goes on
    detached: bool = False  # we let go on purpose (--detach)
    interrupted: bool = False  # Ctrl+C that stopped nothing (e.g. --detach on a cluster)
    state: str | None = None  # the host's word on the run, when it had one ("killed")
    remote_log: str = ""
    gpu: list = field(default_factory=list)
    log: str | None = None  # the log for the record, when it is not the output as shown
    detached_hint: str = ""  # how to follow and stop a detached run
    gpu_csv: str = ""  # the host's samples of the run's GPUs
    snapshot: dict | None = None  # the code the run used: the sync stamp of its snapshot (SSH hosts)
    devices: str | None = None  # the GPUs `auto` picked for it
    wall_s: float | None = None  # the host's clock from the program's start to its end (SSH hosts)


def outcome(ending: Ending, stop_requested: bool) -> str:
    """The run's state for its record: how following it ended, with the host's word (states.decide)."""
    return states.decide(None if ending.detached or ending.lost else ending.exit_status,
                         stopped=stop_requested or ending.state in states.STOPPED,
                         timed_out=ending.state == states.TIMED_OUT,
                         disconnected=ending.lost, detached=ending.detached, interrupted=ending.interrupted)


class Tee(io.StringIO):
    """Shows the run's output live and keeps a copy for the record, noting when each ``EPOCH``
    line arrived (seconds since ``t0``): the wall-time axis of programs that print no ``wall_s``."""

    def __init__(self, show: bool = True):
        super().__init__()
        self.show = show
        self.t0 = time.perf_counter()
        self.epoch_arrivals: list[float] = []
        self.lines = Lines()

    def write(self, text):
        now = round(time.perf_counter() - self.t0, 3)
        self.epoch_arrivals += [now for line in self.lines.feed(text) if line.startswith("EPOCH ")]
        self.lines.rest = self.lines.rest[:64]  # enough to see "EPOCH " however long the line gets
        written = super().write(text)
        if self.show:
            sys.stdout.write(text)
            sys.stdout.flush()
        return written

    def flush(self):
        if self.show:
            sys.stdout.flush()


class Demux:
    """stdout of a launcher `start`: the first line is the report of its checks (CONTROL), the
    rest the run's output. ``on_header`` sees the report before any output is shown."""

    def __init__(self, output: Tee, on_header):
        self.output, self.on_header = output, on_header
        self.header: dict | None = None
        self._pending: str | None = ""

    def write(self, text):
        if self._pending is None:
            return self.output.write(text)
        self._pending += text
        if "\n" not in self._pending:
            return len(text)
        line, rest = self._pending.split("\n", 1)
        self._pending = None
        if line.startswith(CONTROL):
            self.header = json.loads(line[len(CONTROL):])
            self.on_header(self.header)
        else:
            rest = line + "\n" + rest
        if rest:
            self.output.write(rest)
        return len(text)

    def flush(self):
        self.output.flush()


class Stderr:
    """stderr of a launcher command: its messages pass through, its CONTROL lines are kept."""

    def __init__(self, show: bool = True):
        self.show = show
        self.trailer: dict | None = None
        self.lines = Lines()

    def write(self, text):
        for line in self.lines.feed(text):
            if line.startswith(CONTROL):
                self.trailer = json.loads(line[len(CONTROL):])
            elif self.show:
                sys.stderr.write(line + "\n")
        if self.show:
            sys.stderr.flush()
        return len(text)

    def flush(self):
        sys.stderr.flush()


class CtrlC:
    """While following a run: the first Ctrl+C calls ``first`` (in a thread) and keeps following
    until the run has ended; a second one calls ``second``, which must end the process."""

    def __init__(self, first, second):
        self.first, self.second = first, second
        self.requested = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)

    def handle(self, signum, frame):
        if self.requested:
            self.second()
            return
        self.requested = True
        threading.Thread(target=self.first, daemon=True).start()


@dataclass
class Done:
    """What execute() did: the exit status to pass on, the runs, and their group (--repeat)."""

    code: int
    runs: list
    group: str | None = None
    regressions: list | None = None  # an A/B's (None: no A/B, or none of its pairs compared)


class Recording:
    """One run's local record from start to end: its folder, its live output and how it ended."""

    def __init__(self, backend, settings, spec: RunSpec, run_id: str, code_job, group: str | None = None):
        self.backend, self.code_job, self.run_id = backend, code_job, run_id
        self.folder = settings.runs_dir / run_id
        self.record = records.RunRecord(
            run_id=run_id, task=spec.task, host=backend.label, options=spec.options, settings=settings.describe(),
            runner=spec.files.get(spec.runner_path) if spec.runner_path else None,
            runner_path=backend.runner_path(spec.runner_path, run_id) if spec.runner_path else None,
            argv=list(spec.argv), local_log=str(self.folder / "run.log"),
            started=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            group=group, invocation=spec.invocation, env=dict(spec.env))
        self.output = Tee()
        self.started = time.perf_counter()

    def finish(self, ending: Ending, stop_requested: bool) -> records.RunRecord:
        record = self.record
        code, diff = self.code_job.result()
        record.git = {"commit": code["commit"], "dirty": code["dirty"]}
        record.code = code
        record.gpu = ending.gpu
        record.snapshot = ending.snapshot
        record.devices = ending.devices
        record.remote_log = ending.remote_log
        record.commands = list(self.backend.commands)
        prepared = self.backend.prepared
        record.synced = sync.synced(prepared.synced if prepared else None)
        log = self.output.getvalue() if ending.log is None else ending.log
        wall = time.perf_counter() - self.started if ending.wall_s is None else ending.wall_s
        record.finish(log, None if ending.detached and not ending.lost else ending.exit_status,
                      wall, outcome(ending, stop_requested and not ending.detached),
                      ending.gpu_csv, epoch_arrivals=self.output.epoch_arrivals if ending.log is None else None)
        record.write(self.folder, None if ending.detached and not ending.log else log, diff=diff,
                     gpu_csv=ending.gpu_csv)
        return record


def code_job(backend, settings) -> Future:
    """What ran, taken beside the run: the commit, the diff against it, the untracked files a sync
    sends (those of the sync plan the chain's steps made, when there is one: the workspace is
    walked once per run, not twice)."""
    prepared, pending = getattr(backend, "prepared", None), getattr(backend, "pending", None)
    early = pending.early if pending is not None else None
    plan = (pending.sync if pending is not None and pending.sync is not None
            else prepared.synced if prepared is not None else None)

    def take():
        from . import sync
        from .host import tree

        found = plan
        if early is not None:
            early.plan.started.wait(2)  # the run's command starts it (after 2 s, or if it never started: here)
            try:
                found = early.plan.result()
            except Exception:  # the run stops on it, in the main thread
                return records.code_state(backend.run_local, settings.workspace, set())
        synced = (set(found.entries) if found is not None
                  else set(tree.walk(str(settings.workspace), tree.compile_rules(sync.rules(settings)))))
        return records.code_state(backend.run_local, settings.workspace, synced)

    return steps.in_background(take)


def execute(backend, settings, specs: list[RunSpec], *, detach: bool = False, ab=None) -> Done:
    """Start ``specs`` on ``backend`` (one run, or a --repeat group run one after another), follow
    them, write their records and the group's summary; the exit status is the (last failed) run's.
    ``ab`` (remote_run.against.Plan): each spec runs twice, as A and as B, in its order."""
    if len(specs) > 1 or ab is not None:
        return _execute_group(backend, settings, specs, detach=detach, ab=ab)
    spec = specs[0]
    run_id = records.claim_run_id(spec.task, settings.runs_dir)
    code: Future = Future()  # taken once the sync's plan is made
    run = Recording(backend, settings, spec, run_id, code)

    def give_up():
        # Second Ctrl+C: stop waiting. The stop already asked for goes on on the host.
        say(f"stopped waiting; run {run_id} is being stopped on {backend.label} (see `inv status`)")
        run.finish(Ending(exits.INTERRUPTED, state=states.KILLED), True)
        os._exit(exits.INTERRUPTED)

    ctrl_c = CtrlC(lambda: backend.stop(run_id, first_ctrl_c=True), give_up)
    try:
        backend.prepare(spec)
        code = run.code_job = code_job(backend, settings)
        with ctrl_c:
            ending = backend.launch(run_id, spec, run.output, detach=detach, ctrl_c=ctrl_c)
    except BaseException:
        if code.running() or code.done():
            wait([code])
        _drop_if_empty(run.folder)
        raise
    record = run.finish(ending, ctrl_c.requested)
    aftermath.ended(backend, record, run.folder, spec.pull)  # --pull, NOTIFY_CMD
    if ending.lost:
        raise Failure(backend.dropped(), f"the run goes on: see it with `inv logs --follow --run {run_id}`",
                      Kind.UNREACHABLE)
    if record.outcome == states.DETACHED:
        say(f"run {run_id} goes on detached; {ending.detached_hint}; record: {run.folder}/log.md")
        return Done(exits.OK, [run_id])
    report(record, run.folder)
    return Done(ending.exit_status or 0, [run_id])


def _execute_group(backend, settings, specs: list[RunSpec], *, detach: bool, ab=None) -> Done:
    from . import against, groups  # groups and its statistics: imported where a group is made

    group_id, specs, sides = _group_members(settings, specs, ab)
    member_ids = [f"{group_id}.{i}" for i in range(1, len(specs) + 1)]
    for run_id in member_ids:
        (settings.runs_dir / run_id).mkdir()
    code = None
    runs: list[Recording] = []  # made once the sync's plan is (code_job)
    finished: list[records.RunRecord] = []

    def summarize():
        if ab is None:
            return groups.write(settings.runs_dir / group_id, groups.summarize(group_id, finished))
        against.finish(settings.runs_dir, ab, finished)
        return settings.runs_dir / group_id

    def give_up():
        say(f"stopped waiting; group {group_id} is being stopped on {backend.label} (see `inv status`)")
        for run in runs[len(finished):]:
            finished.append(run.finish(Ending(exits.INTERRUPTED, state=states.KILLED), True))
        summarize()
        os._exit(exits.INTERRUPTED)

    ctrl_c = CtrlC(lambda: backend.stop(group_id, first_ctrl_c=True), give_up)
    try:
        backend.prepare(specs[0])
        code = code_job(backend, settings)
        codes = {None: code, "B": code, "A": code if ab is None else steps.in_background(against.code_of_a, ab, code)}
        runs += [Recording(backend, settings, spec, run_id, codes[side], group=group_id)
                 for run_id, spec, side in zip(member_ids, specs, sides)]
        if ab is not None:
            backend.sync_revision(ab, code)
        with ctrl_c:
            backend.launch_group(group_id, list(zip(member_ids, specs)), detach=detach,
                                 revisions=[ab.commit if side == "A" else None for side in sides] if ab else None,
                                 against=ab.ref if ab else "")
            if detach:
                for run in runs:
                    finished.append(run.finish(Ending(None, detached=True), False))
                    aftermath.ended(backend, finished[-1], run.folder, specs[0].pull)
            else:
                _follow_members(backend, group_id, list(zip(runs, specs)), ctrl_c, finished)
    except BaseException:
        if code is not None:
            wait([code])
        if not finished:
            if ab is not None:
                (settings.runs_dir / group_id / against.PLAN).unlink(missing_ok=True)  # it never started
            for folder in [settings.runs_dir / group_id, *(settings.runs_dir / run_id for run_id in member_ids)]:
                _drop_if_empty(folder)
        raise
    if detach:
        return _went_on(settings, group_id, member_ids, finished, ab)
    folder = summarize()
    failed = [r.exit_status for r in finished if r.exit_status]
    if ab is not None:
        return Done(failed[-1] if failed else 0, member_ids, group_id, report_ab(settings.runs_dir, ab))
    report_group(groups.load(folder), folder)
    return Done(failed[-1] if failed else 0, member_ids, group_id)


def _follow_members(backend, group_id: str, members: list, ctrl_c: CtrlC, finished: list) -> None:
    """Follow a group's runs one after another, recording each as it ends (into ``finished``)."""
    for run, spec in members:
        run.started = run.output.t0 = time.perf_counter()  # it starts when the one before it ends
        ending = Ending(exits.INTERRUPTED, state=states.KILLED) if ctrl_c.requested else \
            backend.follow_member(run.run_id, spec, run.output, ctrl_c=ctrl_c)
        finished.append(run.finish(ending, ctrl_c.requested))
        aftermath.ended(backend, finished[-1], run.folder, spec.pull)  # --pull, NOTIFY_CMD
        if ending.lost:
            raise Failure(backend.dropped(), f"the group goes on: see it with `inv logs --follow --run {group_id}`",
                          Kind.UNREACHABLE)
        if not ctrl_c.requested:
            report(finished[-1], run.folder)


def _went_on(settings, group_id: str, member_ids: list, finished: list, ab) -> Done:
    """A detached group: its summary so far (an A/B's comes when it is followed to its end)."""
    from . import groups

    folder = settings.runs_dir / group_id
    if ab is None:
        groups.write(folder, groups.summarize(group_id, finished))
    say(f"{'A/B' if ab else 'group'} {group_id} goes on detached ({len(member_ids)} runs, one after another); "
        f"follow it with `inv logs --follow --run {group_id}`, stop it with `inv kill --run {group_id}`; "
        f"record: {folder}/{'plan.json' if ab else 'summary.md'}")
    return Done(exits.OK, member_ids, group_id)


def _group_members(settings, specs: list[RunSpec], ab) -> tuple[str, list[RunSpec], list]:
    """(the group's id, the spec of each of its runs, the A/B side of each or None)."""
    if ab is None:
        return records.claim_run_id(f"{specs[0].task}-x{len(specs)}", settings.runs_dir), specs, [None] * len(specs)
    from . import against

    ab.id = records.claim_run_id(f"{ab.task}-ab{ab.pairs}", settings.runs_dir)
    ab.started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    against.save_plan(settings.runs_dir, ab)
    # pair i: the same arguments (its seed) on both sides
    return ab.id, [specs[pair] for _, pair in ab.members], [side for side, _ in ab.members]


def report_ab(runs_dir: Path, ab) -> list[str] | None:
    """Show an A/B's comparison; its regression lines (None: no pair was compared)."""
    from . import against

    result = against.load(runs_dir, ab.id)
    regressions = against.show(result)
    for line in regressions:
        say(line)
    say(f"A/B {ab.id}: record {runs_dir / ab.id}/comparison.md; again: `inv compare {ab.side_id('A')} "
        f"{ab.side_id('B')}`")
    return regressions if result["rows"] else None


def report_group(summary: dict, folder: Path) -> None:
    from . import groups
    from .output import show, table

    show(table(groups.table(summary)))
    outcomes = ", ".join(f"{n} {o}" for o, n in summary["outcomes"].items())
    say(f"group {summary['group']}: {len(summary['runs'])} runs ({outcomes}); summary: {folder}/summary.md")


def _drop_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()  # nothing started: no record


def complete(record: records.RunRecord, folder: Path, ending: Ending, log_text: str, elapsed: float,
             report_it: bool = True) -> int:
    """Finish the record of a run followed to its end again (`logs --follow`) or stopped (`kill`)."""
    record.finish(log_text, ending.exit_status, elapsed, outcome(ending, stop_requested=False), ending.gpu_csv)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.log").write_text(log_text, encoding="utf-8", errors="surrogateescape")
    record.write(folder, gpu_csv=ending.gpu_csv)
    if report_it:
        report(record, folder)
    return ending.exit_status or 0


def report(record: records.RunRecord, folder: Path) -> None:
    if record.result:
        metrics = " ".join(f"{k}={v}" for k, v in record.result["metrics"].items())
        say(f"{record.result['name']} {metrics}")
    for hint in record.hints:
        say(f"hint: {hint}")
    say(f"run {record.run_id} {record.outcome} (exit status {record.exit_status}) in {record.elapsed_seconds:.1f} s; "
        f"record: {folder}/log.md")


# ------------------------------------------------------------------------------ on REMOTE_HOST

class Backend:
    """What execute() needs of a backend besides prepare/launch/stop: the Host its commands run
    through (their record), where it is (``label``) and where the runner lands."""

    host = None  # a transport.Host
    prepared = None  # what the chain's steps did before the run (remote_run.steps.Prepared)

    @property
    def label(self) -> str:
        return self.host.label

    @property
    def commands(self) -> list:
        return self.host.commands

    def run_local(self, argv, **kwargs):
        return self.host.local(argv, **kwargs)

    def dropped(self) -> str:
        return transport.dropped(self.label)


class HostRuns(Backend):
    """The backend for REMOTE_HOST: the launcher starts, follows, lists and stops runs there."""

    def __init__(self, sess: Session, options: RunOptions | None = None, preflight: Preflight | None = None,
                 planned=None):
        self.sess, self.host = sess, sess.host
        self.options = options or RunOptions()  # checked (RunOptions.check): --wait, --gpus, --allow-busy ...
        self.preflight = preflight or Preflight()  # the chain's steps, with the run's own flags (Preflight.for_run)
        self.planned = planned  # environment.planned() of the preflight, made before the run's command started
        self.prepared = steps.Prepared()  # what carrying out the steps did, for the record
        self.pending = steps.Pending()  # the checks that ride along with the run's command
        self.checkout: dict | None = None  # the record of the checkout REMOTE_DIR mirrors, as listing() found it

    def runner_path(self, path: str, run_id: str) -> str:
        return f"{self.host.settings.remote_dir}/{layout.RUNS}/{run_id}/work/{path}"  # the run's snapshot

    def remote_log(self, run_id: str) -> str:
        return f"{self.label}:{self.host.settings.remote_dir}/{layout.RUNS}/{run_id}/run.log"

    def prepare(self, spec: RunSpec) -> None:
        """The steps still due that cannot ride along with the run's command (a full sync, a build)."""
        self.prepared, self.pending = steps.prepare(self.sess, self.preflight, wait=self.options.wait,
                                                    count=self.options.gpu_count, planned=self.planned)

    def launch(self, run_id: str, spec: RunSpec, output: Tee, *, detach: bool, ctrl_c=None) -> Ending:
        """One launcher command: the remaining checks, the start and the following."""
        say(f"{spec.task} on {self.label}: {join(spec.argv)}  [run {run_id}]")
        result, errors = self._start(self._member(run_id, spec, first=True), output, detach=detach)
        return self._ending(run_id, result, errors, detach=detach)

    def launch_group(self, group_id: str, members: list, *, detach: bool, revisions: list | None = None,
                     against: str = "") -> None:
        """One launcher command: the remaining checks and a group of runs, one after another on the
        host (so a detached group needs no laptop); each is then followed by follow_member().
        ``revisions``: an A/B's, the revision each run's snapshot is taken of (None: the workspace's);
        its runs hold their GPUs from the first to the last."""
        spec = members[0][1]
        kind = "A/B" if revisions else "group"
        say(f"{spec.task} on {self.label}: {join(spec.argv)}  x{len(members)}  [{kind} {group_id}]")
        payload = {"group_dir": f"{layout.RUNS}/{group_id}", "hold": bool(revisions),
                   "members": [self._member(run_id, spec, first=i == 0, group=group_id,
                                            revision=revisions[i] if revisions else None)
                               for i, (run_id, spec) in enumerate(members)]}
        meta = {"task": spec.task, "options": spec.options}
        self._start(payload, Tee(show=False), detach=True, meta=dict(meta, against=against) if against else meta)

    def sync_revision(self, ab, code) -> None:
        """An A/B's side A: the sync still pending is confirmed first (REMOTE_DIR is then ours and
        up to date), then REF's tree goes to the host beside it."""
        from . import against

        if self.pending.sync is not None or self.pending.early is not None:
            only = steps.Pending(sync=self.pending.sync, early=self.pending.early)
            self.prepared = self.prepared.plus(steps.check_and_settle(self.sess, only))
            self.pending = replace(self.pending, sync=None, early=None)
        untracked = [item["path"] for item in code.result()[0].get("untracked") or []]
        say(against.sync_revision(self.host, ab, untracked))

    def follow_member(self, run_id: str, spec: RunSpec, output: Tee, *, ctrl_c=None) -> Ending:
        say(f"{spec.task} on {self.label}: {join(spec.argv)}  [run {run_id}]")
        ending = self.follow(run_id, 0, output, mode="attach")
        ending.gpu = list(self.prepared.gpus)
        return ending

    def _member(self, run_id: str, spec: RunSpec, *, first: bool, group: str | None = None,
                revision: str | None = None) -> dict:
        s = self.host.settings
        # into the run's snapshot
        files = {**spec.files, ".remote-run/site/sitecustomize.py": template("numpy_aliases.py")}
        if revision:
            from .against import revision_files

            files = revision_files(s, files, revision)
        return {"run_dir": f"{layout.RUNS}/{run_id}", "files": files, "argv": spec.argv, "cwd": spec.cwd,
                "meta": {"task": spec.task, "options": spec.options, "forwarded": list(s.remote_env), "group": group,
                         **({"revision": revision} if revision else {})},
                "nproc_at": spec.nproc_at, **({"revision": revision} if revision else {})}

    def _start(self, part: dict, output: Tee, *, detach: bool, meta: dict | None = None):
        """The host program's `start` with the pending checks. When the host's report says no, every
        check it made is settled (a stale sync or environment is brought up to date, busy GPUs are
        refused) and the run is started once more with nothing left to check.
        (invoke's Result, the stderr filter with the trailer)"""
        result, errors, report = self._send(part, output, detach=detach, meta=meta)
        if report.get("ok"):
            return result, errors
        pending = self.pending
        if pending.early is not None and report.get("full"):  # the host checked nothing: rsync, beside the rest
            self.prepared = self.prepared.plus(steps.full_sync(self.sess, pending.early.plan.result(),
                                                               replace(pending, early=None)))
        else:
            pending = pending.planned()
            if report.get("missing") and pending.sync is None:  # REMOTE_DIR is gone (`inv clean`): sync it again
                pending = replace(pending, sync=steps.sync_plan(self.preflight, self.host.settings))
            self.prepared = self.prepared.plus(steps.settle(self.sess, pending, report))
        self.pending = steps.Pending()
        result, errors, report = self._send(part, output, detach=detach, meta=meta)
        if not report.get("ok"):
            raise Failure(f"{self.label} refused the run after its sync and environment were brought up to date "
                          f"({', '.join(sorted(k for k in report if k != 'ok')) or 'no report'})",
                          "run `inv sync bootstrap gpu-check` to see which check fails", Kind.ENVIRONMENT)
        return result, errors

    def _send(self, part: dict, output: Tee, *, detach: bool, meta: dict | None):
        """One `start` command; returns its Result, its stderr filter and the host's report."""
        host, s, o, pending = self.host, self.host.settings, self.options, self.pending
        payload = {
            "root": s.remote_dir, "detach": detach, "grace": s.kill_grace, "meta": meta or {},
            # the snapshot's rules (an early sync's come with its verdict: git's part is not known yet)
            **({} if pending.early else {"rules": sync.rules(s)}),
            # PYTHONPATH: the run's snapshot
            "variables": {"CUDA_VISIBLE_DEVICES": s.cuda_visible_devices, **s.forwarded_env(), **dict(o.variables)},
            "python": host.python,  # its bin folder goes first on the run's PATH (host/shellenv.py)
            "queue": gpu.queue(s, wait=o.wait, timeout=o.wait_seconds, count=o.gpu_count),
            "sample": {"seconds": s.gpu_sample_seconds, "devices": s.cuda_visible_devices}, **part, **notify.payload(s),
            **pending.payload(),
        }

        def took(report):  # a start that goes ahead: its checks' messages come before the run's output
            if report.get("ok"):
                self.prepared = self.prepared.plus(steps.settle(self.sess, pending.planned(), report))
                self.pending = steps.Pending()

        demux = Demux(output, took)
        errors = Stderr()
        argv, stdin = host.program_with("start", payload,
                                        private=bool(s.remote_env) or bool(s.notify_url) or pending.private)
        result = host.run(argv, stream=demux, err_stream=errors, stdin=pending.stdin(stdin), own_session=True)
        if demux.header is None:
            if errors.trailer is None and result.exited == exits.SSH:
                raise Failure(self.dropped(), kind=Kind.UNREACHABLE)
            raise host.failed(result, "starting the run on")
        return result, errors, demux.header

    def _ending(self, run_id: str, result, errors, *, detach: bool) -> Ending:
        trailer = errors.trailer or {}
        return Ending(result.exited, lost=errors.trailer is None, detached=detach, state=trailer.get("state"),
                      remote_log=self.remote_log(run_id), gpu=list(self.prepared.gpus),
                      gpu_csv=trailer.get("gpu_csv", ""), snapshot=trailer.get("snapshot"),
                      devices=trailer.get("devices"), wall_s=trailer.get("wall_s"),
                      detached_hint=f"follow it with `inv logs --follow --run {run_id}`, "
                                    f"stop it with `inv kill --run {run_id}`")

    def stop(self, run_id: str, first_ctrl_c: bool = False) -> None:
        """Stop a run over a second command (the first one is busy following it)."""
        if first_ctrl_c:
            say(f"Ctrl+C: stopping run {run_id} on {self.label} (Ctrl+C again to stop waiting)")
        s = self.host.settings
        for _ in range(10):  # a Ctrl+C right after the launch may come before the run exists
            try:
                result = self.host.run(self.host.program("kill", s.remote_dir, run_id, str(s.kill_grace)), hide=True,
                                       record=False)
            except Failure as exc:
                say(exc.line)
                return
            if result.exited != exits.USAGE:
                return
            time.sleep(0.3)

    # -- runs already started

    def listing(self) -> list[dict]:
        """Every run under REMOTE_DIR/runs on the host, oldest first, as the launcher reports them;
        ``self.checkout``: the record of the checkout REMOTE_DIR mirrors (the command's trailer)."""
        host = self.host
        result = host.quick(host.program("status", host.settings.remote_dir), record=False)
        if result.exited:
            raise host.failed(result, "listing runs on")
        rows = json.loads(result.stdout.strip().splitlines()[-1])
        trailers = [line for line in result.stderr.split("\n") if line.startswith(CONTROL)]  # (splitlines() cuts at it)
        self.checkout = json.loads(trailers[-1][len(CONTROL):]).get("checkout") if trailers else None
        return sorted(rows, key=lambda row: (row.get("started") or 0, row["id"]))

    def follow(self, run_id: str, offset: int, output: Tee, *, mode: str = "attach") -> Ending:
        """Show a run's log from ``offset`` (``cat``), or follow it to its end (``attach``)."""
        s = self.host.settings
        args = ([s.remote_dir, run_id, str(s.kill_grace), str(offset)] if mode == "kill"
                else [s.remote_dir, run_id, str(offset)])
        errors = Stderr(show=mode != "kill")
        # its own session: a terminal's Ctrl+C reaches only us, and CtrlC decides what it stops
        result = self.host.run(self.host.program(mode, *args), stream=output, err_stream=errors, record=False,
                               own_session=True)
        if errors.trailer is None and result.exited == exits.SSH:
            return Ending(None, lost=True)
        trailer = errors.trailer or {}
        if trailer.get("refused"):  # no such run, or (kill) it is not running: the host said which
            raise Failure(trailer["refused"], kind=Kind.of(result.exited),
                          code=exits.NOT_RUNNING if result.exited == exits.NOT_RUNNING else None)
        if errors.trailer is None:
            raise self.host.failed(result, f"following run {run_id} on")
        return Ending(result.exited, state=trailer.get("state"), remote_log=self.remote_log(run_id),
                      gpu_csv=trailer.get("gpu_csv", ""), snapshot=trailer.get("snapshot"),
                      devices=trailer.get("devices"), wall_s=trailer.get("wall_s"))

    def record_of(self, row: dict) -> tuple[records.RunRecord, Path]:
        """The local record of a run on the host, or a new one from what the host knows."""
        s = self.host.settings
        folder = s.runs_dir / row["id"]
        record = records.RunRecord.load(folder)
        if record is None:
            started = (datetime.fromtimestamp(row["started"], timezone.utc).isoformat(timespec="milliseconds")
                       if row.get("started") else "")
            record = records.RunRecord(run_id=row["id"], task=row["task"], host=self.label, group=row.get("member_of"),
                                       git=records.git_state(self.run_local, s.workspace), settings=s.describe(),
                                       remote_log=self.remote_log(row["id"]), local_log=str(folder / "run.log"),
                                       started=started)
        return record, folder


def pick(runs: HostRuns, run: str, want_running: bool = False, listing: list | None = None) -> dict:
    """The row of run ``run`` on the host, or the latest (running) one; a group's runs are
    reached through the group, so "the latest" is a group rather than its last run."""
    found = runs.listing() if listing is None else listing
    where = f"{runs.label}:{runs.host.settings.remote_dir}/runs"
    if run:
        for row in found:
            if row["id"] == run:
                return row
        raise Failure(f"no run {run!r} on {where}", "`inv status` lists them")
    found = [row for row in found if not row.get("member_of")]
    if want_running:
        found = [row for row in found if row["state"] in states.LIVE]
    if not found:
        raise Failure(f"no {'running ' if want_running else ''}run on {where}")
    return found[-1]


def logs(sess: Session, run: str, follow: bool) -> int:
    """Show a run's log; with ``follow``, follow it to its end and complete its local record. For
    a group: its runs one after another, then the group's summary."""
    runs = HostRuns(sess)
    listing = runs.listing()
    row = pick(runs, run, listing=listing)

    def stop_following(signum, frame):
        # Ctrl+C here means "stop watching", never "stop the run" (that is `inv kill`).
        say(f"stopped following; run {row['id']} goes on (`inv logs --follow --run {row['id']}`)")
        os._exit(exits.INTERRUPTED)

    if not follow:
        for each in _members(row, listing):
            if each["state"] in states.LIVE:
                say(f"run {each['id']} is still {shown_state(each)}; add --follow to wait for it")
            _follow_recorded(runs, each, "cat", show=True)
        return exits.OK
    previous = signal.signal(signal.SIGINT, stop_following)
    try:
        codes = [_follow_recorded(runs, each, "attach", show=True) for each in _members(row, listing)]
    finally:
        signal.signal(signal.SIGINT, previous)
    if row.get("group"):
        _complete_group(runs, row)
    failed = [code for code in codes if code]
    return failed[-1] if failed else 0


def kill(sess: Session, run: str) -> None:
    """Stop a run (SIGINT, SIGTERM, SIGKILL to its process group) and complete its local record; a
    group: the run going on and the ones waiting their turn."""
    runs = HostRuns(sess)
    listing = runs.listing()
    row = pick(runs, run, want_running=not run, listing=listing)
    if row.get("group"):
        runs.follow(row["id"], 0, Tee(show=False), mode="kill")
        say(f"group {row['id']} stopped")
        for each in _members(row, listing):
            _follow_recorded(runs, each, "attach", show=False)
        _complete_group(runs, row)
        return
    _follow_recorded(runs, row, "kill", show=False)
    say(f"run {row['id']} stopped")


def _members(row: dict, listing: list[dict]) -> list[dict]:
    if not row.get("group"):
        return [row]
    by_id = {r["id"]: r for r in listing}
    return [by_id[m] for m in row["members"] if m in by_id]


def _follow_recorded(runs: "HostRuns", row: dict, mode: str, *, show: bool) -> int:
    """Show (cat), follow (attach) or stop (kill) a run from where its local record ends, and
    complete the record when the run has ended."""
    record, folder = runs.record_of(row)
    log_path = folder / "run.log"
    seen = log_path.read_bytes() if log_path.exists() else b""
    if seen and show:  # from the local record, then the rest from the host
        sys.stdout.write(seen.decode("utf-8", "replace"))
        sys.stdout.flush()
    output = Tee(show=show)
    ending = runs.follow(row["id"], len(seen), output, mode=mode)
    if ending.lost:
        raise Failure(runs.dropped(), f"the run goes on: see it with `inv logs --follow --run {row['id']}`",
                      Kind.UNREACHABLE)
    if mode == "cat":
        return exits.OK
    elapsed = ending.wall_s if ending.wall_s is not None else _since(row)
    code = complete(record, folder, ending, seen.decode("utf-8", "replace") + output.getvalue(), elapsed,
                    report_it=show)
    aftermath.ended(runs, record, folder)  # --pull of a run that ended meanwhile, NOTIFY_CMD
    return code


def _complete_group(runs: "HostRuns", row: dict) -> list:
    """Write the summary of a group followed to its end again, or stopped; an A/B's comparison
    (its regression lines)."""
    from . import against, groups

    runs_dir = runs.host.settings.runs_dir
    found = [records.RunRecord.load(runs_dir / member) for member in row["members"]]
    ab = against.load_plan(runs_dir, row["id"])
    if ab is not None and all(found):
        against.finish(runs_dir, ab, found)
        return report_ab(runs_dir, ab)
    folder = groups.write(runs_dir / row["id"], groups.summarize(row["id"], [r for r in found if r]))
    report_group(groups.load(folder), folder)
    return []


def status(sess: Session) -> tuple[list[tuple], dict | None]:
    """The runs on the host as table rows (id, task, started, state, exit code, RESULT metrics), and
    the record of the checkout REMOTE_DIR mirrors (whose runs they are)."""
    rows = [("run", "task", "started (UTC)", "state", "exit", "result")]
    runs = HostRuns(sess)
    for row in runs.listing():
        when = (datetime.fromtimestamp(row["started"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                if row.get("started") else "?")
        parsed = records.parse_result(row.get("result") or "")
        metrics = " ".join(f"{k}={v}" for k, v in parsed["metrics"].items()) if parsed else ""
        task = " ".join([row["task"], *([row["script"]] if row.get("script") else []),
                         *(["-m", row["module"]] if row.get("module") else [])])
        if row.get("group"):
            task += (f" (A/B against {row['against']}, {len(row['members']) // 2} pairs)" if row.get("against")
                     else f" (group of {len(row['members'])})")
        rows.append((row["id"], task, when, shown_state(row),
                     "" if row["exit_code"] is None else str(row["exit_code"]), metrics))
    return rows, runs.checkout


def shown_state(row: dict) -> str:
    """A run's state as `status` shows it: a run waiting for GPUs says its place in the host's queue,
    the runs before it, and what holds its GPUs (another run, or processes)."""
    place = row.get("queue") or {}
    if row["state"] != states.QUEUED or place.get("for") != "gpu":
        return row["state"]
    ahead = ", ".join(f"{a['user']}'s run {a['run']}" for a in place.get("ahead") or [])
    why = ([f"after {ahead}"] if ahead else []) + [busy_text(b) for b in place.get("busy") or []]
    return f"waiting, #{place.get('position', '?')} in the GPU queue" + (f" ({'; '.join(why)})" if why else "")


def _since(row: dict) -> float:
    return time.time() - row["started"] if row.get("started") else 0.0
