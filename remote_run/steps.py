"""The chain's steps (sync, bootstrap, gpu-check) as a plan, and what carrying it out found.

Each step named on the command line, or as a run task's pre-task, adds to a Preflight: what the
host must have before a run. remote_run.chain hands the plan of the steps before a run task to
that task, which carries it out beside or inside its one remote command (prepare, then settle
what the host's report says); steps with no run task after them are carried out together, at
once (carry_out), so a warm `inv sync bootstrap gpu-check` is one remote command too. What was
done comes back as a value (Prepared), for the run's record.
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

from . import environment, gpu, transport
from . import sync as syncing
from .errors import Failure, Kind
from .host import exits
from .host.control import FINAL, PROGRESS, ours
from .host.files import Lines
from .output import say, show
from .preflight import Preflight


class Later:
    """fn(*args) in a thread of its own, started by the first to call start() or result(): an
    early sync's plan starts once the command that checks it has started (before, it would share
    the interpreter with the work that starts the command, and the host would start later)."""

    def __init__(self, fn, *args):
        self._fn, self._args = fn, args
        self._lock = threading.Lock()
        self._future: Future | None = None
        self.started = threading.Event()

    def start(self) -> Future:
        with self._lock:
            if self._future is None:
                self._future = in_background(self._fn, *self._args)
                self.started.set()
        return self._future

    def result(self, timeout=None):
        return self.start().result(timeout)


@dataclass(frozen=True)
class Early:
    """A sync whose check starts before this machine has walked the workspace: the host walks
    REMOTE_DIR as the last sync left it (``first``, remote_run.sync.early) while this machine
    plans (``plan``, started with the command), and gets the plan's verdict on a second line of
    stdin (second())."""

    first: dict
    plan: Later
    settings: object

    def second(self) -> str:
        """The verdict, once the plan is made (in invoke's stdin thread): the plan's check and the
        rules of the run's snapshot, or "full": a full rsync is due (or the plan failed: the main
        thread raises that when it takes the plan), so the host checks nothing."""
        try:
            plan = self.plan.result()
            rest = ({"full": True} if plan.kind == "full"
                    else {"sync": plan.check(), "rules": syncing.rules(self.settings)})
        except BaseException:
            rest = {"full": True}
        return json.dumps(rest) + "\n"


@dataclass(frozen=True)
class Pending:
    """The checks still to make: they ride along with the next host command (`check` or `start`)."""

    sync: syncing.Plan | None = None  # a clean or delta sync, confirmed (and its delta applied) on the host
    early: Early | None = None  # a clean or delta sync still being planned: its check starts with the command
    env: dict | None = None  # environment.check()
    choice: environment.Choice = environment.NOTHING  # the extras, groups and --frozen the env check is for
    gpu: dict | None = None  # gpu.spec()
    docker: dict | None = None  # {"require": bool}: can Docker reach the GPUs (--docker, RUN_ENVIRONMENT=docker)

    def payload(self) -> dict:
        found = {"sync": self.sync.check() if self.sync else None, "env": self.env, "gpu": self.gpu,
                 "docker": self.docker, "early": self.early.first if self.early else None}
        return {name: value for name, value in found.items() if value}

    def stdin(self, text: str | None):
        """The command's stdin for a payload sent as ``text`` (None: on its command line): with an
        early sync, the plan's verdict follows it."""
        return transport.Deferred(text or "", self.early.second, self.early.plan.start) if self.early else text

    def planned(self) -> Pending:
        """This, with the early sync's plan in its place (raising what planning raised)."""
        return self if self.early is None else replace(self, early=None, sync=self.early.plan.result())

    @property
    def private(self) -> bool:
        """A delta carries workspace files: on stdin, never on the host's public command line."""
        return bool(self.sync and self.sync.kind == "delta")


@dataclass(frozen=True)
class Prepared:
    """What carrying out a plan did that the run's record keeps: the sync, and the GPUs chosen
    (their rows)."""

    synced: syncing.Plan | None = None
    gpus: tuple = ()

    def plus(self, other: Prepared) -> Prepared:
        return Prepared(other.synced or self.synced, other.gpus or self.gpus)


def sync_plan(preflight: Preflight, settings) -> syncing.Plan:
    """What the planned sync has to do (remote_run.sync.plan), with its flags, from this checkout."""
    from . import checkout

    plan = syncing.plan(settings, only=preflight.only or None, checksum=preflight.checksum, force=preflight.force_sync)
    plan.checkout = checkout.spec(settings, take_over=preflight.take_over)
    return plan


def carry_out(sess, preflight: Preflight, planned: environment.Planned | None = None) -> Prepared:
    """Carry out steps with no run after them: what is due at once, then one `check` for the rest.
    ``planned``: environment.planned() of ``preflight``, when the caller made it already."""
    if preflight.dry_run:
        plan = sync_plan(replace(preflight, force_sync=True), sess.settings)
        show(syncing.preview_text(sess.host, plan, syncing.preview(sess.host, plan)))
        return Prepared()
    prepared, pending = prepare(sess, preflight, planned=planned)
    if not pending.payload():
        return prepared
    return prepared.plus(check_and_settle(sess, pending))


def prepare(sess, preflight: Preflight, *, wait: bool = False, count: int = 0,
            planned: environment.Planned | None = None) -> tuple[Prepared, Pending]:
    """Do what cannot ride along with a host command, and say what can.

    A full rsync runs beside one check command (environment and GPUs), whose report is settled at
    once; a clean or delta sync, and the other checks, stay pending. ``wait``, ``count``: the run's
    --wait and --gpus N, for the GPU check; ``planned``: environment.planned() of ``preflight``,
    when the caller made it already.
    """
    host = sess.host
    planned = planned or environment.planned(host, preflight)
    skipped, choice = planned.skipped, planned.choice
    if skipped:
        say(skipped)
    docker = preflight.docker or (preflight.gpu and sess.settings.run_environment == "docker")
    pending = Pending(
        env=planned.check, choice=choice,
        gpu=gpu.spec(sess.settings, cpu_ok=preflight.cpu_ok, allow_busy=preflight.allow_busy, wait=wait, count=count)
        if preflight.gpu else None,
        docker={"require": not preflight.cpu_ok} if docker else None)
    prepared = Prepared()
    first = (syncing.early(sess.settings, preflight.only or None)
             if preflight.sync and not (preflight.checksum or preflight.rebuild) else None)
    if first is not None:  # the host walks while this machine does
        from . import checkout

        first["checkout"] = checkout.spec(sess.settings, take_over=preflight.take_over)
        pending = replace(pending, early=Early(first, Later(sync_plan, preflight, sess.settings), sess.settings))
    elif preflight.sync:
        plan = sync_plan(preflight, sess.settings)
        if plan.kind != "full":
            pending = replace(pending, sync=plan)
        else:
            prepared = full_sync(sess, plan, pending)
            pending = Pending()
    if preflight.rebuild and not skipped:
        if pending.sync is not None:  # the build reads the synced requirements.txt: confirm the sync first
            prepared = prepared.plus(settle(sess, Pending(sync=pending.sync), checks(sess, Pending(sync=pending.sync))))
            pending = replace(pending, sync=None)
        build_environment(sess, force=True, choice=choice)
    return prepared, pending


def full_sync(sess, plan: syncing.Plan, pending: Pending) -> Prepared:
    """A full rsync of ``plan``, beside one check command for the rest of ``pending``, settled."""
    rsync = in_background(syncing.full, sess.host, plan)
    try:
        report = checks(sess, pending) if pending.payload() else {}
    finally:
        summary = rsync.result()
    say(syncing.describe(sess.host, plan, summary))
    return Prepared(synced=plan).plus(settle(sess, pending, report))


def check_and_settle(sess, pending: Pending) -> Prepared:
    """One `check` command for ``pending`` and what its report says; an early sync whose plan
    turned out to need a full rsync gets it, beside a check of the rest."""
    report = checks(sess, pending)
    if pending.early is not None and report.get("full"):
        return full_sync(sess, pending.early.plan.result(), replace(pending, early=None))
    return settle(sess, pending.planned(), report)


def settle(sess, pending: Pending, report: dict) -> Prepared:
    """Take the host's report on the pending checks: say what passed; sync what it found stale,
    build a stale environment (after the sync: it needs the synced requirements.txt), refuse GPUs
    that say no (after both). Every pending check is settled: nothing is left to ask again."""
    host = sess.host
    prepared = Prepared()
    if pending.sync is not None:
        if "sync" in report and syncing.checked(pending.sync, report["sync"]):
            say(syncing.describe(host, pending.sync))
        else:  # stale, or REMOTE_DIR missing (the run's start said so)
            say(syncing.describe(host, pending.sync, syncing.full(host, pending.sync)))
        prepared = Prepared(synced=pending.sync)
    if pending.env is not None:
        if not environment_ready(host, report.get("env") or {"state": "stale"}):
            build_environment(sess, force=False, choice=pending.choice)
    if pending.docker is not None:
        problem = gpu.docker(report.get("docker") or {}, host.label)
        if problem and pending.docker["require"]:
            if (report.get("gpu") or {}).get("gpus"):
                show(gpu.show_table(report["gpu"]["gpus"]))
            raise Failure(problem.problem, f"{problem.fix} (or pass --cpu-ok to go on without it)", problem.kind)
        say(f"{problem.problem}; going on (--cpu-ok)" if problem else gpu.docker_line(report["docker"], host.label))
    if pending.gpu is not None:
        prepared = prepared.plus(Prepared(gpus=gpus_ready(sess, report["gpu"])))
    return prepared


def environment_ready(host, report: dict) -> bool:
    """Take the host's "env" check: say what is used, if it is current."""
    if report["state"] != "ok":
        return False
    if host.uses_venv:
        say(f"environment is up to date ({host.settings.remote_dir}/.venv)")
    else:
        say(f"using {report['text']} (no venv is created)")
    return True


def build_environment(sess, force: bool, choice: environment.Choice = environment.NOTHING) -> None:
    """Run the installer on the host (remote_run/host/installer.py), its progress shown as it comes."""
    host = sess.host
    if host.uses_venv:
        for line in environment.notes(host.settings, choice):
            say(line)
    progress = Progress(sys.stderr)
    payload = environment.bootstrap_payload(host.settings, force, terminal=progress.terminal, choice=choice)
    argv, stdin = host.program_with("bootstrap", payload)
    result = host.run(argv, err_stream=progress, stdin=stdin)
    progress.close()
    if result.exited == exits.MISSING and "python3" in result.stderr:
        raise host.failed(result, "bootstrapping")
    if result.exited:
        lines = [line.lstrip(FINAL) for line in (result.stderr + result.stdout).splitlines()
                 if line.strip() and not line.startswith(PROGRESS)]
        said = ours(lines)
        detail = said[-1] if said else (lines[-1] if lines else "no output")
        raise Failure(f"bootstrap on {host.label} failed (exit {result.exited}): {detail}",
                      "fix it and run `inv bootstrap` again (--force rebuilds)", Kind.ENVIRONMENT)


class Progress:
    """stderr of the bootstrap command: lines pass through; a progress line (PROGRESS first) is
    redrawn in place on a terminal, and is a line of its own anywhere else (a log, a pipe); the
    host's last word on a failure (FINAL first) is left to the one-line error."""

    def __init__(self, stream):
        self.stream = stream
        self.terminal = stream.isatty()
        self.lines = Lines()
        self.drawn = False  # a progress line is on the terminal, without its newline

    def write(self, text: str) -> int:
        for line in self.lines.feed(text):
            self._line(line)
        self.stream.flush()
        return len(text)

    def _line(self, line: str) -> None:
        if line.startswith(FINAL):
            return
        progress = line.startswith(PROGRESS)
        line = line.lstrip(PROGRESS)
        if not self.terminal:
            self.stream.write(line + "\n")
            return
        if self.drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(line if progress else line + "\n")
        self.drawn = progress

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        rest = self.lines.close()
        if rest is not None:
            self._line(rest)
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.stream.flush()


def gpus_ready(sess, report: dict) -> tuple:
    """Take the host's "gpu" check: show the table and go on, or refuse in one line. The chosen
    GPUs' rows, for the run record."""
    s = sess.settings
    limit = gpu.host_limit(s.check_timeout)
    if report["gpus"]:
        show(gpu.show_table(report["gpus"]))
    if not report["go"]:
        raise gpu.refused(report, sess.host.label, s.cuda_visible_devices, limit)
    if report.get("queue_folder"):
        say(f"{gpu.queue_folder(report, sess.host.label)}: this run's GPU hold is not visible to other users; "
            "ask its owner or the host's admin to remove it")
    if report["state"] == "busy" and report.get("waits"):
        say(f"GPU {', '.join(str(i) for i in report['busy'])} is busy: "
            f"the run waits for its GPUs in {sess.host.label}'s queue (--wait)")
    elif report["state"] == "busy":
        say(f"GPU {', '.join(str(i) for i in report['busy'])} is busy; going on (--allow-busy)")
    elif report["state"] != "ok":
        say(gpu.failure(report, sess.host.label, s.cuda_visible_devices, limit).problem
            + "; going on without a GPU (--cpu-ok)")
    return tuple(g for g in report["gpus"] if g["index"] in report["chosen"])


def checks(sess, pending: Pending) -> dict:
    """One host program `check` command: the report of each pending check."""
    host = sess.host
    argv, stdin = host.program_with("check", {"root": host.settings.remote_dir, **pending.payload()},
                                    private=pending.private)
    result = host.quick(argv, stdin=pending.stdin(stdin))
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise host.failed(result, "checking") from None


def in_background(fn, *args) -> Future:
    """``fn(*args)`` in a thread of its own; the future's result() returns or raises what it did."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args)
    finally:
        pool.shutdown(wait=False)

