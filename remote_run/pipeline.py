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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import exits, records, steps, transport
from .errors import Failure
from .launcher import CONTROL
from .output import say
from .render import template
from .session import Session


@dataclass
class RunSpec:
    """What to run: argv relative to REMOTE_DIR, files to write first, and what to record."""

    task: str
    argv: list
    files: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    runner_path: str | None = None


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


def outcome(ending: Ending, stop_requested: bool) -> str:
    """finished, failed, killed, interrupted, connection lost or detached."""
    if ending.lost:
        return "connection lost"
    if ending.interrupted:
        return "interrupted"
    if stop_requested or ending.state == "killed" or ending.exit_status == exits.INTERRUPTED:
        return "killed"
    if ending.detached:
        return "detached"
    return "finished" if ending.exit_status == 0 else "failed"


class Tee(io.StringIO):
    """Shows the run's output live and keeps a copy for the record."""

    def __init__(self, show: bool = True):
        super().__init__()
        self.show = show

    def write(self, text):
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
        self._partial = ""

    def write(self, text):
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
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


def execute(backend, settings, spec: RunSpec, *, detach: bool = False) -> int:
    """Start ``spec`` on ``backend``, follow it, write its record; returns its exit status."""
    run_id = records.claim_run_id(spec.task, settings.runs_dir)
    folder = settings.runs_dir / run_id
    git = steps.Background(records.git_state, backend.run_local, settings.workspace)
    record = records.RunRecord(
        run_id=run_id, task=spec.task, host=backend.label, options=spec.options, settings=settings.describe(),
        runner=spec.files.get(spec.runner_path) if spec.runner_path else None,
        runner_path=backend.runner_path(spec.runner_path) if spec.runner_path else None,
        local_log=str(folder / "run.log"), started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    output = Tee()
    started = time.perf_counter()

    def give_up():
        # Second Ctrl+C: stop waiting. The stop already asked for goes on on the host.
        say(f"stopped waiting; run {run_id} is being stopped on {backend.label} (see `inv status`)")
        finish(Ending(exits.INTERRUPTED, state="killed"))
        os._exit(exits.INTERRUPTED)

    def finish(ending: Ending) -> str:
        record.git = git.join()
        record.gpu = ending.gpu
        record.remote_log = ending.remote_log
        record.commands = list(backend.commands)
        log = output.getvalue() if ending.log is None else ending.log
        record.finish(log, None if ending.detached and not ending.lost else ending.exit_status,
                      time.perf_counter() - started, outcome(ending, ctrl_c.requested and not ending.detached))
        record.write(folder, None if ending.detached and not ending.log else log)
        return record.outcome

    ctrl_c = CtrlC(lambda: backend.stop(run_id, first_ctrl_c=True), give_up)
    try:
        backend.prepare(spec)
        with ctrl_c:
            ending = backend.launch(run_id, spec, output, detach=detach, ctrl_c=ctrl_c)
    except BaseException:
        git.join()
        if not any(folder.iterdir()):
            folder.rmdir()  # nothing started: no record
        raise
    finish(ending)
    if ending.lost:
        raise Failure(f"{backend.dropped()}; the run goes on: see it with `inv logs --follow --run {run_id}`")
    if record.outcome == "detached":
        say(f"run {run_id} goes on detached; {ending.detached_hint}; record: {folder}/log.md")
        return exits.OK
    report(record, folder)
    return ending.exit_status or 0


def complete(record: records.RunRecord, folder: Path, ending: Ending, log_text: str, elapsed: float) -> int:
    """Finish the record of a run followed to its end again (`logs --follow`) or stopped (`kill`)."""
    record.finish(log_text, ending.exit_status, elapsed, outcome(ending, stop_requested=False))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.log").write_text(log_text, encoding="utf-8", errors="surrogateescape")
    record.write(folder)
    report(record, folder)
    return ending.exit_status or 0


def report(record: records.RunRecord, folder: Path) -> None:
    if record.result:
        metrics = " ".join(f"{k}={v}" for k, v in record.result["metrics"].items())
        say(f"{record.result['name']} {metrics}")
    for hint in record.hints:
        say(f"hint: {hint}")
    say(f"run {record.run_id} {record.outcome} (exit status {record.exit_status}) in {record.elapsed_seconds:.1f} s; record: {folder}/log.md")


# ------------------------------------------------------------------------------ on REMOTE_HOST

class Backend:
    """What execute() needs of a backend besides prepare/launch/stop: the Host its commands run
    through (their record), where it is (``label``) and where the runner lands."""

    host = None  # a transport.Host

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

    def __init__(self, sess: Session, *, allow_busy: bool = False, cpu_ok: bool = False):
        self.sess, self.host = sess, sess.host
        self.allow_busy, self.cpu_ok = allow_busy, cpu_ok

    def runner_path(self, path: str) -> str:
        return f"{self.host.settings.remote_dir}/{path}"

    def remote_log(self, run_id: str) -> str:
        return f"{self.label}:{self.host.settings.remote_dir}/runs/{run_id}/run.log"

    def prepare(self, spec: RunSpec) -> None:
        """The steps still due that cannot ride along with the run's command (a full sync, a build)."""
        self.folded = steps.prepare(self.sess, allow_busy=self.allow_busy, cpu_ok=self.cpu_ok)

    def launch(self, run_id: str, spec: RunSpec, output: Tee, *, detach: bool, ctrl_c=None) -> Ending:
        """One launcher command: the remaining checks, the start and the following. A check that
        says no is settled (sync, bootstrap) and the command sent again."""
        sess, host, s, folded = self.sess, self.host, self.host.settings, self.folded
        files = {**spec.files, ".remote-run/site/sitecustomize.py": template("numpy_aliases.py")}
        variables = {"CUDA_VISIBLE_DEVICES": s.cuda_visible_devices, **s.forwarded_env(),
                     "PYTHONPATH": f"{s.remote_dir}/.remote-run/site:{s.remote_dir}"}
        say(f"{spec.task} on {self.label}: {' '.join(spec.argv)}  [run {run_id}]")
        for attempt in range(3):
            payload = {
                "root": s.remote_dir, "run_dir": f"runs/{run_id}", "files": files, "argv": spec.argv, "variables": variables,
                "detach": detach, "grace": s.kill_grace,
                "meta": {"task": spec.task, "options": spec.options, "forwarded": list(s.remote_env)},
                **{name: (check.check() if name == "sync" else check) for name, check in folded.items()},
            }
            demux = Demux(output, lambda header: header.get("ok") and steps.settle(sess, header, folded))
            errors = Stderr()
            argv, stdin = host.launcher_with("start", payload, private=bool(s.remote_env) or "delta" in payload.get("sync", {}))
            result = host.run(argv, stream=demux, err_stream=errors, stdin=stdin, own_session=True)
            header = demux.header
            if header is None:
                if errors.trailer is None and result.exited == exits.SSH:
                    raise Failure(self.dropped())
                raise Failure(steps.launcher_failure(host, result, "starting the run on"))
            if header.get("ok"):
                return Ending(result.exited, lost=errors.trailer is None, detached=detach,
                              state=(errors.trailer or {}).get("state"), remote_log=self.remote_log(run_id),
                              gpu=sess.done.get("gpu") or [],
                              detached_hint=f"follow it with `inv logs --follow --run {run_id}`, stop it with `inv kill --run {run_id}`")
            if header.get("missing"):
                folded["sync"] = folded.get("sync") or _stale_plan(sess)
                header = {"sync": {"state": "stale"}}
            steps.settle(sess, header, folded)  # syncs, builds the environment, or refuses
        raise Failure(f"the checks on {self.label} kept failing; run `inv sync bootstrap gpu-check` to see which")

    def stop(self, run_id: str, first_ctrl_c: bool = False) -> None:
        """Stop a run over a second command (the first one is busy following it)."""
        if first_ctrl_c:
            say(f"Ctrl+C: stopping run {run_id} on {self.label} (Ctrl+C again to stop waiting)")
        s = self.host.settings
        for _ in range(10):  # a Ctrl+C right after the launch may come before the run exists
            try:
                result = self.host.run(self.host.launcher("kill", s.remote_dir, run_id, str(s.kill_grace)), hide=True, record=False)
            except Failure as exc:
                say(exc.message.removeprefix("remote-run: "))
                return
            if result.exited != exits.USAGE:
                return
            time.sleep(0.3)

    # -- runs already started

    def listing(self) -> list[dict]:
        """Every run under REMOTE_DIR/runs on the host, oldest first, as the launcher reports them."""
        host = self.host
        result = host.quick(host.launcher("status", host.settings.remote_dir), record=False)
        if result.exited:
            raise Failure(steps.launcher_failure(host, result, "listing runs on"))
        rows = json.loads(result.stdout.strip().splitlines()[-1])
        return sorted(rows, key=lambda row: (row.get("started") or 0, row["id"]))

    def follow(self, run_id: str, offset: int, output: Tee, *, mode: str = "attach") -> Ending:
        """Show a run's log from ``offset`` (``cat``), or follow it to its end (``attach``)."""
        s = self.host.settings
        args = [s.remote_dir, run_id, str(s.kill_grace), str(offset)] if mode == "kill" else [s.remote_dir, run_id, str(offset)]
        errors = Stderr(show=mode != "kill")
        result = self.host.run(self.host.launcher(mode, *args), stream=output, err_stream=errors, record=False)
        if errors.trailer is None and result.exited == exits.SSH:
            return Ending(None, lost=True)
        lines = [l[len("remote-run: "):] for l in result.stderr.splitlines() if l.startswith("remote-run: ")]
        refused = result.exited and not (errors.trailer or {}).get("state")  # no such run: the launcher said why
        if refused or (mode == "kill" and result.exited == exits.NOT_RUNNING and any("is not running" in l for l in lines)):
            raise Failure(lines[-1] if lines else f"run {run_id} on {self.label}: exit {result.exited}",
                          code=exits.NOT_RUNNING if mode == "kill" else exits.USAGE)
        return Ending(result.exited, state=(errors.trailer or {}).get("state"), remote_log=self.remote_log(run_id))

    def record_of(self, row: dict) -> tuple[records.RunRecord, Path]:
        """The local record of a run on the host, or a new one from what the host knows."""
        s = self.host.settings
        folder = s.runs_dir / row["id"]
        record = records.RunRecord.load(folder)
        if record is None:
            started = datetime.fromtimestamp(row["started"], timezone.utc).isoformat(timespec="seconds") if row.get("started") else ""
            record = records.RunRecord(run_id=row["id"], task=row["task"], host=self.label,
                                       git=records.git_state(self.run_local, s.workspace), settings=s.describe(),
                                       remote_log=self.remote_log(row["id"]), local_log=str(folder / "run.log"), started=started)
        return record, folder


def pick(runs: HostRuns, run: str, want_running: bool = False) -> dict:
    """The row of run ``run`` on the host, or the latest (running) one."""
    found = runs.listing()
    where = f"{runs.label}:{runs.host.settings.remote_dir}/runs"
    if run:
        for row in found:
            if row["id"] == run:
                return row
        raise Failure(f"no run {run!r} on {where}; `inv status` lists them")
    if want_running:
        found = [row for row in found if row["state"] == "running"]
    if not found:
        raise Failure(f"no {'running ' if want_running else ''}run on {where}")
    return found[-1]


def logs(sess: Session, run: str, follow: bool) -> int:
    """Show a run's log; with ``follow``, follow it to its end and complete its local record."""
    runs = HostRuns(sess)
    row = pick(runs, run)
    record, folder = runs.record_of(row)
    log_path = folder / "run.log"
    seen = log_path.read_bytes() if log_path.exists() else b""
    if seen:
        say(f"{len(seen)} bytes of run {row['id']} were already recorded in {log_path}; showing the rest")
    output = Tee()
    if not follow:
        if row["state"] == "running":
            say(f"run {row['id']} is still running; add --follow to wait for it")
        runs.follow(row["id"], len(seen), output, mode="cat")
        return exits.OK

    def stop_following(signum, frame):
        # Ctrl+C here means "stop watching", never "stop the run" (that is `inv kill`).
        say(f"stopped following; run {row['id']} goes on (`inv logs --follow --run {row['id']}`)")
        os._exit(exits.INTERRUPTED)

    previous = signal.signal(signal.SIGINT, stop_following)
    try:
        ending = runs.follow(row["id"], len(seen), output, mode="attach")
    finally:
        signal.signal(signal.SIGINT, previous)
    if ending.lost:
        raise Failure(f"{runs.dropped()}; the run goes on: see it with `inv logs --follow --run {row['id']}`")
    return complete(record, folder, ending, seen.decode("utf-8", "replace") + output.getvalue(), _since(row))


def kill(sess: Session, run: str) -> None:
    """Stop a run (SIGINT, SIGTERM, SIGKILL to its process group) and complete its local record."""
    runs = HostRuns(sess)
    row = pick(runs, run, want_running=not run)
    record, folder = runs.record_of(row)
    log_path = folder / "run.log"
    seen = log_path.read_bytes() if log_path.exists() else b""
    output = Tee(show=False)
    ending = runs.follow(row["id"], len(seen), output, mode="kill")
    say(f"run {row['id']} stopped")
    if not ending.lost:
        complete(record, folder, ending, seen.decode("utf-8", "replace") + output.getvalue(), _since(row))


def status(sess: Session) -> list[tuple]:
    """The runs on the host as table rows: id, task, started, state, exit code, RESULT metrics."""
    rows = [("run", "task", "started (UTC)", "state", "exit", "result")]
    for row in HostRuns(sess).listing():
        when = datetime.fromtimestamp(row["started"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if row.get("started") else "?"
        parsed = records.parse_result(row.get("result") or "")
        metrics = " ".join(f"{k}={v}" for k, v in parsed["metrics"].items()) if parsed else ""
        rows.append((row["id"], row["task"], when, row["state"], "" if row["exit_code"] is None else str(row["exit_code"]), metrics))
    return rows


def _since(row: dict) -> float:
    return time.time() - row["started"] if row.get("started") else 0.0


def _stale_plan(sess: Session):
    from . import sync as syncing

    return syncing.plan(sess.settings)

