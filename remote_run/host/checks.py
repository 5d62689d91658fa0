"""The checks a run command makes before it starts anything: is REMOTE_DIR the tree the workspace
last synced (and a small delta applied), is the environment current, what do the GPUs say."""

import os
import sys

from . import exits, layout, owner, queue, snapshot, tree
from . import gpus as gpu_info
from .files import read_text, remove, write_text


def check_sync(root, spec, walked=None):
    """Is REMOTE_DIR the tree the workspace last synced (spec["expect"])? Then apply spec["delta"].
    Another checkout's REMOTE_DIR is "refused" before anything is looked at or written (the same
    check as the sync's claim, owner.other_checkout); a confirmed sync records spec["checkout"].
    ``walked``: walk_first()'s walk, taken when it was made for this spec."""
    if not os.path.isfile(os.path.join(root, owner.MARKER)):
        return {"state": "stale", "detail": "REMOTE_DIR is not set up by remote-run yet"}
    line = owner.other_checkout(root, spec.get("checkout"))
    if line:
        return {"state": "refused", "detail": line}
    if not os.path.exists(os.path.join(root, layout.MOVED)):
        return {"state": "stale", "detail": "REMOTE_DIR has the layout of an earlier remote-run"}  # the sync moves it
    stamp = read_text(os.path.join(root, tree.STAMP))
    rules = tree.compile_rules(spec["rules"])
    if stamp != spec["expect"]:
        entries = found = None
    elif walked is not None and walked[0] == _walk_key(spec):
        entries, found = walked[1:]
    else:
        entries = tree.host_entries(root, rules, spec.get("protected", {}))
        found = None if entries is None else tree.fingerprint(entries)
    if found != spec["expect"]:
        return {"state": "stale", "detail": "REMOTE_DIR differs from the last sync"}
    try:
        owner.mirror(root, spec.get("checkout"))  # adopted, taken over, or where the checkout is now
    except OSError as exc:
        return {"state": "stale", "detail": "cannot record the checkout: %s" % (exc.strerror or exc)}
    delta = spec.get("delta")
    if not delta:
        return {"state": "ok"}
    aside = snapshot.set_aside(root)  # the spares of the tree checked just now, brought up to date below
    try:
        remove(os.path.join(root, tree.STAMP))  # a delta cut short must not look synced
        snapshot.invalidate(root)
        tree.apply_delta(root, delta)
    except OSError as exc:
        snapshot.carry(root, aside, None)
        return {"state": "stale", "detail": "applying the changes failed: %s" % (exc.strerror or exc)}
    after = tree.after_delta(root, entries, delta)  # the walk above, and the paths the delta changed
    if after is None or tree.fingerprint_update(found, *after[1:]) != delta["target"]:
        snapshot.carry(root, aside, None)
        return {"state": "stale", "detail": "the tree differs after applying the changes"}
    write_text(os.path.join(root, tree.STAMP), delta["target"] + "\n")
    _, gone, new = after
    files = sum(e[0] == tree.FILE for e in new.values()) - sum(e[0] == tree.FILE for e in gone.values())
    snapshot.carry(root, aside, delta, files)
    return {"state": "applied"}


def _walk_key(spec):
    return (spec["rules"], spec["expect"], spec.get("protected", {}))


def walk_first(root, first):
    """The walk check_sync() needs, made before this machine's verdict comes (payload "early": the
    rules, fingerprint and protected entries of the last sync): (what it was made for, the
    entries, their fingerprint), or None when the check will not need it. It only reads."""
    if (not os.path.isfile(os.path.join(root, owner.MARKER)) or owner.other_checkout(root, first.get("checkout"))
            or not os.path.exists(os.path.join(root, layout.MOVED))
            or read_text(os.path.join(root, tree.STAMP)) != first["expect"]):
        return None
    entries = tree.host_entries(root, tree.compile_rules(first["rules"]), first.get("protected", {}))
    return _walk_key(first), entries, None if entries is None else tree.fingerprint(entries)


def rest_of_payload():
    """The line after a payload with "early" on stdin: this machine's verdict on its own walk
    ({"sync": spec, "rules": [...]}, or {"full": true}: a full rsync is due, so check nothing).
    The end of stdin (this machine gave up) is "full" too."""
    import json

    try:
        rest = json.loads(sys.stdin.readline() or "null")
    except ValueError:
        rest = None
    return rest if isinstance(rest, dict) else {"full": True}


def check_env(root, spec):
    """REMOTE_DIR/.venv's stamp against spec["stamp"]; or (REMOTE_PYTHON, `local`) the interpreter
    running this program, and whether torch is there (found, not imported: that takes seconds)."""
    if spec["kind"] == "venv":
        current = read_text(os.path.join(root, layout.VENV_STAMP)) == spec["stamp"]
        current = current and os.access(os.path.join(root, ".venv", "bin", "python"), os.X_OK)
        return {"state": "ok" if current else "stale"}
    import site
    from importlib.machinery import PathFinder  # not importlib.util nor platform: 10 ms of every run's start

    site.main()  # -S left site-packages out
    text = "python %s %s; " % (sys.version.split()[0], sys.executable)
    if PathFinder.find_spec("torch") is None:
        text += "torch is not installed"
    else:
        from importlib.metadata import version

        text += "torch " + version("torch")
    return {"state": "ok", "text": text}


def check_gpu(spec, procs, drop_stale=True):
    """What the GPUs say, and whether a run may start under ``spec`` (devices or auto, require,
    allow_busy, wait). A GPU is busy when it has processes or another remote-run run (any user's)
    holds it in the queue. A --wait run is refused (state "queue") when this user's queue folder is
    not theirs: it could not be seen waiting. ``drop_stale``: remove this user's dead queue entries
    as they are read."""
    state, gpus, text = gpu_info.answer(procs, spec["limit"])
    report = {"state": state, "gpus": gpus, "chosen": [], "busy": [], "text": text}
    if state != "ok":
        report["go"] = not spec["require"]
        return report
    if not gpus:
        report.update(state="none", go=not spec["require"])
        return report
    count = spec.get("count") or 1
    if spec["devices"] == "auto" and count > len(gpus):  # no wait or --allow-busy makes them appear
        report.update(state="toofew", auto=count, go=False)
        return report
    problem = queue.own_folder_problem()
    if problem:
        report["queue_folder"] = problem  # what others see of this run's GPU hold: nothing
        if spec.get("wait"):
            report.update(state="queue", go=False)
            return report
    entries = queue.entries(drop_stale)
    queue.mark_held(gpus, entries)
    report["waiting"] = queue.waiting_count(entries)  # for choosing among hosts
    if spec["devices"] == "auto":
        free = gpu_info.idle(gpus)
        report["chosen"] = [g["index"] for g in free[:count]]
        if len(free) < count:
            report.update(state="busy", busy=[g["index"] for g in gpus if not gpu_info.is_idle(g)], auto=count)
            report.update(go=bool(spec["allow_busy"] or spec.get("wait")), waits=bool(spec.get("wait")))
            return report
        report["go"] = True
        return report
    chosen = gpu_info.visible(gpus, spec["devices"])
    report["chosen"] = [g["index"] for g in chosen]
    if spec["devices"] and not chosen:
        report.update(state="nomatch", go=False)
        return report
    report["busy"] = [g["index"] for g in chosen if not gpu_info.is_idle(g)]
    if report["busy"]:
        report.update(state="busy", go=bool(spec["allow_busy"] or spec.get("wait")), waits=bool(spec.get("wait")))
        return report
    report["go"] = True
    return report


def run_checks(root, payload, rest=rest_of_payload):
    """The report of every check the payload asks for; ``ok`` when a run may start. A payload with
    "early" gets the rest of its checks from ``rest()`` once REMOTE_DIR is walked (the report is
    {"ok": false, "full": true} when that says a full rsync is due). Returns (report, payload)."""
    report = {}
    procs = gpu_info.start_query() if payload.get("gpu") else None
    docker = gpu_info.docker_start() if payload.get("docker") else None  # beside nvidia-smi, both slow
    walked = walk_first(root, payload["early"]) if payload.get("early") else None  # beside this machine's walk
    if payload.get("early"):
        more = rest()
        if more.get("full"):
            return {"ok": False, "full": True}, payload
        payload = dict(payload, **more)
    if payload.get("sync"):
        report["sync"] = check_sync(root, payload["sync"], walked)
    if payload.get("env"):
        report["env"] = check_env(root, payload["env"])
    if payload.get("gpu"):
        report["gpu"] = check_gpu(payload["gpu"], procs)
    if payload.get("docker"):
        report["docker"] = gpu_info.docker_answer(docker, payload.get("gpu", {}).get("limit", 20))
    docker_go = report.get("docker", {}).get("state") == "ok" or not payload.get("docker", {}).get("require")
    report["ok"] = (report.get("sync", {}).get("state", "ok") in ("ok", "applied")
                    and report.get("env", {}).get("state", "ok") == "ok"
                    and report.get("gpu", {}).get("go", True) and docker_go)
    return report, payload


def check(payload):
    """The `check` mode: the report as one line of JSON on stdout."""
    import json

    report = run_checks(payload["root"], payload)[0]
    sys.stdout.write(json.dumps(report) + "\n")
    return exits.OK if report["ok"] else exits.PREFLIGHT
