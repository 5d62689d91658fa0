"""Starting, following, listing and stopping runs on the target, and recording them locally."""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from . import records
from .errors import Failure
from .render import template
from .target import Target

INTERRUPTED = 130


@lru_cache(maxsize=None)
def launcher_source() -> str:
    return Path(__file__).with_name("launcher.py").read_text(encoding="utf-8")


def launcher(t: Target, mode: str, *args: str) -> list[str]:
    """argv running the launcher in ``mode``: stdlib only, so any python3 on the host will do."""
    python = t.settings.remote_python or (t.python if t.is_local else "python3")
    return [python, "-c", launcher_source(), mode, *args]


class StopOnInterrupt:
    """While following a run, the first Ctrl+C stops the run on the host and keeps following
    until it has ended; a second Ctrl+C stops following at once.

    The stop goes over a second channel: invoke only returns from the following command once
    the remote side closes it, so it cannot be interrupted from the inside.
    """

    def __init__(self, t: Target, run_id: str, run_dir: str):
        self.t, self.run_id, self.run_dir = t, run_id, run_dir
        self.requested = False

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nremote-run: Ctrl+C: stopping run {self.run_id} on {self.t.label} (Ctrl+C again to stop waiting)", file=sys.stderr, flush=True)
        threading.Thread(target=self.t.run, args=(launcher(self.t, "kill", self.t.settings.remote_dir, self.run_dir),), kwargs={"hide": True}, daemon=True).start()


@dataclass
class RunSpec:
    """What to run: argv relative to REMOTE_DIR, files to write first, and what to record."""

    task: str
    argv: list
    files: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    runner_path: str | None = None


class Tee(io.StringIO):
    """Shows the run's output live and keeps a copy for the record."""

    def write(self, text):
        written = super().write(text)
        sys.stdout.write(text)
        sys.stdout.flush()
        return written


def execute(t: Target, spec: RunSpec, *, detach: bool = False) -> int:
    """Start ``spec`` detached from the connection, follow it, write the record; returns its exit status."""
    s = t.settings
    env = {"CUDA_VISIBLE_DEVICES": s.cuda_visible_devices, **s.forwarded_env()}
    run_id = records.claim_run_id(spec.task, s.runs_dir)
    run_dir = f"runs/{run_id}"
    files = dict(spec.files)
    files[".remote-run/site/sitecustomize.py"] = template("numpy_aliases.py")
    env["PYTHONPATH"] = f"{s.remote_dir}/.remote-run/site:{s.remote_dir}"
    payload = {
        "root": s.remote_dir,
        "run_dir": run_dir,
        "files": files,
        "argv": spec.argv,
        "env": env,
        "detach": detach,
        "meta": {"task": spec.task, "options": spec.options, "forwarded": list(s.remote_env)},
    }
    record = records.RunRecord(
        run_id=run_id,
        task=spec.task,
        host=t.label,
        gpu=[asdict(g) for g in t.done.get("gpus", [])],
        git=records.git_state(s.workspace),
        options=spec.options,
        settings=s.describe(),
        runner=files.get(spec.runner_path) if spec.runner_path else None,
        runner_path=f"{s.remote_dir}/{spec.runner_path}" if spec.runner_path else None,
        remote_log=f"{t.label}:{s.remote_dir}/{run_dir}/run.log",
        local_log=str(s.runs_dir / run_id / "run.log"),
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    print(f"remote-run: {spec.task} on {t.label}: {' '.join(spec.argv)}  [run {run_id}]", file=sys.stderr, flush=True)
    output = Tee()
    started = time.perf_counter()
    killed = False
    interrupt = StopOnInterrupt(t, run_id, run_dir)
    try:
        with interrupt:
            result = t.run(launcher(t, "start"), stream=output, stdin=json.dumps(payload))
        code = result.exited
        killed = interrupt.requested
    except KeyboardInterrupt:
        code, killed = INTERRUPTED, True
    except Failure as exc:
        # The connection dropped: the run goes on remotely, detached from us.
        record.commands = list(t.commands)
        record.finish(output.getvalue(), None, time.perf_counter() - started)
        record.outcome = "connection lost"
        record.write(s.runs_dir / run_id, output.getvalue())
        raise Failure(f"{exc.message.removeprefix('remote-run: ')}; the run goes on: see it with `inv logs --follow --run {run_id}`") from None
    if detach and code == 0:
        code = None
    record.commands = list(t.commands)
    killed = killed or (code == INTERRUPTED)
    record.finish(output.getvalue(), code, time.perf_counter() - started, killed=killed)
    folder = record.write(s.runs_dir / run_id, None if detach else output.getvalue())
    report(record, folder, run_id)
    return code or 0


def report(record: records.RunRecord, folder: Path, run_id: str) -> None:
    err = sys.stderr
    if record.outcome == "detached":
        print(f"remote-run: run {run_id} goes on detached; follow it with `inv logs --follow --run {run_id}`, stop it with `inv kill --run {run_id}`", file=err)
        return
    if record.result:
        metrics = " ".join(f"{k}={v}" for k, v in record.result["metrics"].items())
        print(f"remote-run: {record.result['name']} {metrics}", file=err)
    for hint in record.hints:
        print(f"remote-run: hint: {hint}", file=err)
    print(f"remote-run: run {run_id} {record.outcome} (exit status {record.exit_status}) in {record.elapsed_seconds:.1f} s; record: {folder}/log.md", file=err, flush=True)
