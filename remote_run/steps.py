"""The chain's steps (sync, bootstrap, gpu-check): each runs once per invocation, at once when it is
the last word, or folded into the command of the run task that follows it.
"""

from __future__ import annotations

import json
import threading

from . import environment, exits, gpu, sync as syncing
from .errors import Failure
from .output import say, show
from .session import Session
from .shell import script


def sync(sess: Session) -> None:
    """Make REMOTE_DIR hold the workspace: nothing, a delta, or a full rsync (see remote_run.sync)."""
    if "sync" in sess.done:
        return
    if sess.run_follows:
        sess.wanted["sync"] = {}
        return
    host = sess.host
    plan = syncing.plan(sess.settings)
    if plan.kind != "full":
        report = checks(sess, sync=plan.check())
        if syncing.checked(plan, report.get("sync")):
            sess.done["sync"] = plan
            say(syncing.describe(host, plan))
            return
    summary = syncing.full(host, plan)
    sess.done["sync"] = plan
    say(syncing.describe(host, plan, summary))


def bootstrap(sess: Session, force: bool = False) -> None:
    """Build or refresh REMOTE_DIR/.venv, or confirm REMOTE_PYTHON runs; once per invocation."""
    if "bootstrap" in sess.done:
        return
    if sess.run_follows:
        sess.wanted["bootstrap"] = {"force": force or sess.wanted.get("bootstrap", {}).get("force", False)}
        return
    host = sess.host
    if not host.uses_venv or not force:
        report = checks(sess, env=environment.check(host))
        if environment_ready(sess, report["env"]) or not host.uses_venv:
            return
    build_environment(sess, force)


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
    host = sess.host
    result = host.run(script(environment.BOOTSTRAP_SCRIPT, *environment.bootstrap_args(host.settings, force)))
    if result.exited:
        lines = [l for l in (result.stderr + result.stdout).splitlines() if l.strip()]
        ours = [l for l in lines if l.startswith("remote-run: ")]
        detail = ours[-1][len("remote-run: "):] if ours else (lines[-1] if lines else "no output")
        raise Failure(f"bootstrap on {host.label} failed (exit {result.exited}): {detail}; fix it and run `inv bootstrap` again (--force rebuilds)")
    sess.done["bootstrap"] = True


def gpu_check(sess: Session, allow_busy: bool = False, cpu_ok: bool = False) -> None:
    """Query the GPUs once per invocation; refuse a missing or busy GPU unless allowed."""
    if "gpu" in sess.done:
        return
    if sess.run_follows:
        before = sess.wanted.get("gpu", {})
        sess.wanted["gpu"] = {"allow_busy": allow_busy or before.get("allow_busy", False), "cpu_ok": cpu_ok or before.get("cpu_ok", False)}
        return
    report = checks(sess, gpu=gpu.spec(sess.settings, cpu_ok=cpu_ok, allow_busy=allow_busy))
    gpus_ready(sess, report["gpu"])


def gpus_ready(sess: Session, report: dict) -> None:
    """Take the host's "gpu" check: show the table and go on, or refuse in one line."""
    s = sess.settings
    limit = gpu.host_limit(s.check_timeout)
    if report["gpus"]:
        show(gpu.show_table(report["gpus"]))
    if not report["go"]:
        raise Failure(gpu.refusal(report, sess.host.label, s.cuda_visible_devices, limit))
    if report["state"] == "busy":
        say(f"GPU {', '.join(str(i) for i in report['busy'])} is busy; going on (--allow-busy)")
    elif report["state"] != "ok":
        say(gpu.problem(report, sess.host.label, s.cuda_visible_devices, limit).split(";")[0] + "; going on without a GPU (--cpu-ok)")
    sess.done["gpu"] = [g for g in report["gpus"] if g["index"] in report["chosen"]]


def checks(sess: Session, **wanted) -> dict:
    """One launcher `check` command on the host: the report of each check in ``wanted``."""
    host = sess.host
    payload = {"root": host.settings.remote_dir, **wanted}
    argv, stdin = host.launcher_with("check", payload, private="delta" in wanted.get("sync", {}))
    result = host.quick(argv, stdin=stdin)
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise Failure(launcher_failure(host, result, "checking")) from None


def launcher_failure(host, result, doing: str) -> str:
    """One line for a launcher command that did not run or did not answer."""
    python = host.settings.remote_python or ("python3" if not host.is_local else "this Python")
    text = (result.stderr or "").strip()
    if result.exited == exits.MISSING or "No such file or directory" in text:
        if host.settings.remote_python:
            return f"REMOTE_PYTHON={host.settings.remote_python} does not run on {host.label} ({text.splitlines()[-1][:160] if text else 'not found'}); fix REMOTE_PYTHON or unset it to create a venv"
        return f"{python} is not installed on {host.label}; install Python 3 there or set REMOTE_PYTHON"
    ours = [l[len("remote-run: "):] for l in text.splitlines() if l.startswith("remote-run: ")]
    if ours:
        return ours[-1]
    last = text.splitlines()[-1][:200] if text else "no output"
    return f"{doing} {host.label} failed (exit {result.exited}): {last}"


def prepare(sess: Session, *, allow_busy: bool, cpu_ok: bool) -> dict:
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
        folded["gpu"] = gpu.spec(sess.settings, cpu_ok=cpu_ok, allow_busy=allow_busy)
    if "sync" not in sess.done:
        plan = syncing.plan(sess.settings)
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
