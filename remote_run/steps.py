"""The chain's steps (sync, bootstrap, gpu-check): each runs once per invocation, at once when it is
the last word, or folded into the command of the run task that follows it.
"""

from __future__ import annotations

import json
import sys
import threading

from . import environment, gpu, sync as syncing
from .host import exits
from .host.control import FINAL, PROGRESS
from .errors import Failure
from .output import say, show
from .session import Session


def sync(sess: Session, only=(), dry_run: bool = False, force: bool = False, checksum: bool = False) -> None:
    """Make REMOTE_DIR hold the workspace (or the --only paths): nothing, a delta, or a full rsync
    (see remote_run.sync); ``dry_run``: say what a sync would do and change nothing."""
    if dry_run:
        if sess.run_follows:
            raise Failure("`sync --dry-run` only shows what a sync would do; run it on its own, without a run task after it")
        flags = want_sync(sess, only=only, checksum=checksum, note=False)
        plan = syncing.plan(sess.settings, **{**flags, "force": True})
        show(syncing.preview_text(sess.host, plan, syncing.preview(sess.host, plan)))
        return
    if "sync" in sess.done:
        return
    want_sync(sess, only=only, force=force, checksum=checksum)
    if sess.run_follows:
        return
    host = sess.host
    plan = plan_for(sess)
    if plan.kind != "full":
        # `inv bootstrap` after it: its warm case (the venv's stamp matches) is asked in the same command
        env = environment.check(host) if "bootstrap" in sess.coming else None
        report = checks(sess, sync=plan.check(), **({"env": env} if env else {}))
        if syncing.checked(plan, report.get("sync")):
            sess.done["sync"] = plan
            if env:
                sess.done["env"] = report.get("env")
            say(syncing.describe(host, plan))
            return
    summary = syncing.full(host, plan)
    sess.done["sync"] = plan
    say(syncing.describe(host, plan, summary))


def want_sync(sess: Session, *, only=(), force: bool = False, checksum: bool = False, note: bool = True) -> dict:
    """Check the sync flags of a task (sync, or a run task) and note them for the sync step: --only
    paths add up, --force and --checksum hold if any task gave them. Returns the flags given so far
    (only those given: {} for a plain sync), as keyword arguments of remote_run.sync.plan."""
    from .settings import sync_paths

    flags = dict(sess.wanted.get("sync") or {})
    if only:
        flags["only"] = tuple(dict.fromkeys((*flags.get("only", ()), *sync_paths("--only", sess.settings.workspace, only))))
    flags.update({name: True for name, given in (("force", force), ("checksum", checksum)) if given})
    if note:
        sess.wanted["sync"] = flags
    return flags


def plan_for(sess: Session) -> syncing.Plan:
    """The sync plan with the flags noted by want_sync (--only, else SYNC_ONLY)."""
    return syncing.plan(sess.settings, **(sess.wanted.get("sync") or {}))


def bootstrap(sess: Session, force: bool = False) -> None:
    """Build or refresh REMOTE_DIR/.venv, or confirm REMOTE_PYTHON runs; once per invocation."""
    if "bootstrap" in sess.done:
        return
    if sess.run_follows:
        sess.wanted["bootstrap"] = {"force": force or sess.wanted.get("bootstrap", {}).get("force", False)}
        return
    host = sess.host
    known = sess.done.get("env")  # asked beside the sync's check
    if known and not force and environment_ready(sess, known):
        return
    if not host.uses_venv:
        environment_ready(sess, checks(sess, env=environment.check(host))["env"])
        return
    build_environment(sess, force)  # one command: it says "up to date" at once when the stamp matches


def environment_ready(sess: Session, report: dict) -> bool:
    """Take the host's "env" check: say what is used and mark bootstrap done, if it is current."""
    host = sess.host
    if report["state"] != "ok":
        return False
    if host.uses_venv:
        say(f"environment is up to date ({host.settings.remote_dir}/.venv)")
    else:
        say(f"using {report['text']} (no venv is created)")
    sess.done["bootstrap"] = True
    return True


def build_environment(sess: Session, force: bool) -> None:
    """Run the installer on the host (remote_run/installer.py), its progress shown as it comes."""
    host = sess.host
    progress = Progress(sys.stderr)
    argv, stdin = host.program_with("bootstrap", environment.bootstrap_payload(host.settings, force, terminal=progress.terminal))
    result = host.run(argv, err_stream=progress, stdin=stdin)
    progress.close()
    if result.exited == exits.MISSING and "python3" in result.stderr:
        raise Failure(launcher_failure(host, result, "bootstrapping"))
    if result.exited:
        lines = [l.lstrip(FINAL) for l in (result.stderr + result.stdout).splitlines() if l.strip() and not l.startswith(PROGRESS)]
        ours = [l for l in lines if l.startswith("remote-run: ")]
        detail = ours[-1][len("remote-run: "):] if ours else (lines[-1] if lines else "no output")
        raise Failure(f"bootstrap on {host.label} failed (exit {result.exited}): {detail}; fix it and run `inv bootstrap` again (--force rebuilds)")
    sess.done["bootstrap"] = True


class Progress:
    """stderr of the bootstrap command: lines pass through; a progress line (PROGRESS first) is
    redrawn in place on a terminal, and is a line of its own anywhere else (a log, a pipe); the
    host's last word on a failure (FINAL first) is left to the one-line error."""

    def __init__(self, stream):
        self.stream = stream
        self.terminal = stream.isatty()
        self.pending = ""
        self.drawn = False  # a progress line is on the terminal, without its newline

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
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
        if self.pending:
            self._line(self.pending)
            self.pending = ""
        if self.drawn:
            self.stream.write("\n")
            self.drawn = False
        self.stream.flush()


def gpu_check(sess: Session, allow_busy: bool = False, cpu_ok: bool = False, docker: bool = False) -> None:
    """Query the GPUs once per invocation; refuse a missing or busy GPU unless allowed. With
    ``docker``, also whether Docker on the host has the NVIDIA runtime (in the same command)."""
    if "gpu" in sess.done:
        return
    if sess.run_follows and not docker:
        before = sess.wanted.get("gpu", {})
        sess.wanted["gpu"] = {"allow_busy": allow_busy or before.get("allow_busy", False), "cpu_ok": cpu_ok or before.get("cpu_ok", False)}
        return
    report = checks(sess, gpu=gpu.spec(sess.settings, cpu_ok=cpu_ok, allow_busy=allow_busy), **({"docker": True} if docker else {}))
    if docker:
        line = gpu.docker_line(report.get("docker") or {}, sess.host.label)
        if report["docker"].get("state") != "ok":
            if report["gpu"]["gpus"]:
                show(gpu.show_table(report["gpu"]["gpus"]))
            raise Failure(line)
        say(line)
    gpus_ready(sess, report["gpu"])


def gpus_ready(sess: Session, report: dict) -> None:
    """Take the host's "gpu" check: show the table and go on, or refuse in one line."""
    s = sess.settings
    limit = gpu.host_limit(s.check_timeout)
    if report["gpus"]:
        show(gpu.show_table(report["gpus"]))
    if not report["go"]:
        raise Failure(gpu.refusal(report, sess.host.label, s.cuda_visible_devices, limit))
    if report["state"] == "busy" and report.get("waits"):
        say(f"GPU {', '.join(str(i) for i in report['busy'])} is busy: the run waits for its GPUs in {sess.host.label}'s queue (--wait)")
    elif report["state"] == "busy":
        say(f"GPU {', '.join(str(i) for i in report['busy'])} is busy; going on (--allow-busy)")
    elif report["state"] != "ok":
        say(gpu.problem(report, sess.host.label, s.cuda_visible_devices, limit).split(";")[0] + "; going on without a GPU (--cpu-ok)")
    sess.done["gpu"] = [g for g in report["gpus"] if g["index"] in report["chosen"]]


def checks(sess: Session, **wanted) -> dict:
    """One launcher `check` command on the host: the report of each check in ``wanted``."""
    host = sess.host
    payload = {"root": host.settings.remote_dir, **wanted}
    argv, stdin = host.program_with("check", payload, private="delta" in wanted.get("sync", {}))
    result = host.quick(argv, stdin=stdin)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Failure(launcher_failure(host, result, "checking")) from None


def launcher_failure(host, result, doing: str) -> str:
    """One line for a host program command that did not run or did not answer."""
    return host.program_failure(result, doing)


def prepare(sess: Session, *, allow_busy: bool, cpu_ok: bool, wait: bool = False, count: int = 0) -> dict:
    """Carry out the steps a run needs that are not done yet, as far as they cannot ride along
    with the run's own command; returns the checks that will ride along (the launcher's payload).

    A full rsync runs beside one check command (environment and GPUs); a stale environment is
    built after it (it needs the synced requirements.txt).
    """
    host = sess.host
    wanted_gpu = sess.wanted.get("gpu", {})
    allow_busy, cpu_ok = allow_busy or wanted_gpu.get("allow_busy", False), cpu_ok or wanted_gpu.get("cpu_ok", False)
    force = sess.wanted.get("bootstrap", {}).get("force", False)
    folded = {}
    if "bootstrap" not in sess.done and not force:
        folded["env"] = environment.check(host)
    if "gpu" not in sess.done:
        folded["gpu"] = gpu.spec(sess.settings, cpu_ok=cpu_ok, allow_busy=allow_busy, wait=wait, count=count)
    if "sync" not in sess.done:
        plan = plan_for(sess)
        if plan.kind == "full":
            background = Background(syncing.full, host, plan)
            try:
                report = checks(sess, **folded) if folded else {}
            finally:
                summary = background.join()
            sess.done["sync"] = plan
            say(syncing.describe(host, plan, summary))
            settle(sess, report, folded)
        else:
            folded["sync"] = plan
    if force and "bootstrap" not in sess.done:
        build_environment(sess, force=True)
    return folded


def settle(sess: Session, report: dict, folded: dict) -> None:
    """Take a report of folded checks: mark what passed done (drop it from ``folded``), build a stale
    environment, refuse GPUs that say no. A sync that is not confirmed stays in ``folded``."""
    plan = folded.get("sync")
    if plan is not None and "sync" in report:
        if syncing.checked(plan, report["sync"]):
            sess.done["sync"] = plan
            say(syncing.describe(sess.host, plan))
            del folded["sync"]
        else:
            summary = syncing.full(sess.host, plan)
            sess.done["sync"] = plan
            say(syncing.describe(sess.host, plan, summary))
            del folded["sync"]
    if "env" in report and "env" in folded:
        del folded["env"]
        if not environment_ready(sess, report["env"]):
            build_environment(sess, force=False)
    if "gpu" in report and "gpu" in folded:
        del folded["gpu"]
        gpus_ready(sess, report["gpu"])


class Background(threading.Thread):
    """Runs ``fn(*args)`` in a thread; ``join()`` returns what it returned, or raises what it raised."""

    def __init__(self, fn, *args):
        super().__init__(daemon=True)
        self.fn, self.args, self.error, self.value = fn, args, None, None
        self.start()

    def run(self):
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the joining thread
            self.error = exc

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            raise self.error
        return self.value
