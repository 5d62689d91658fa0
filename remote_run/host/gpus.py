"""The host's GPUs as nvidia-smi reports them, and whether Docker can reach them."""

import json
import subprocess
import time

GPU_FIELDS = "index,name,uuid,memory.used,memory.total,utilization.gpu"
APP_FIELDS = "gpu_uuid,pid,process_name,used_memory"


def _number(text):
    try:
        return int(float(text.strip()))
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def parse(gpu_text, app_text):
    """GPUs and their processes from nvidia-smi's ``--format=csv,noheader,nounits`` output."""
    gpus = []
    for line in gpu_text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 6 or not cells[0].isdigit():
            continue
        # A GPU name may itself contain commas: the fixed fields are at both ends.
        gpus.append({"index": int(cells[0]), "name": ", ".join(cells[1:-4]), "uuid": cells[-4],
                     "memory_used": _number(cells[-3]), "memory_total": _number(cells[-2]),
                     "utilization": _number(cells[-1]), "processes": []})
    by_uuid = {g["uuid"]: g for g in gpus}
    for line in app_text.strip().splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 4 or not cells[1].isdigit():
            continue
        if cells[0] in by_uuid:
            by_uuid[cells[0]]["processes"].append(
                {"pid": int(cells[1]), "name": ", ".join(cells[2:-1]), "memory": _number(cells[-1])})
    return gpus


def visible(gpus, devices):
    """The GPUs a run may use under CUDA_VISIBLE_DEVICES (indices or UUID prefixes)."""
    if not devices:
        return list(gpus)
    chosen = []
    for item in devices.split(","):
        for gpu in gpus:
            if (item.isdigit() and gpu["index"] == int(item)) or (not item.isdigit() and gpu["uuid"].startswith(item)):
                chosen.append(gpu)
    return chosen


def is_idle(gpu):
    return not gpu["processes"] and not gpu.get("held_by")


def idle(gpus):
    """The idle GPUs, least memory used first."""
    return sorted((g for g in gpus if is_idle(g)), key=lambda g: (g["memory_used"] or 0, g["index"]))


def start_query(preexec_fn=None):
    """Both nvidia-smi queries, started at once: the slowest check runs while the others do.
    ``preexec_fn``: sampler.dies_with_this_process()'s tie, in a single-threaded caller."""
    commands = [["nvidia-smi", "--query-gpu=" + GPU_FIELDS, "--format=csv,noheader,nounits"],
                ["nvidia-smi", "--query-compute-apps=" + APP_FIELDS, "--format=csv,noheader,nounits"]]
    try:
        return [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 preexec_fn=preexec_fn) for argv in commands]
    except OSError:
        return None


def answer(procs, limit):
    """(state, gpus, text) from start_query(); a query still running after ``limit`` seconds is ended."""
    if procs is None:
        return "missing", [], "nvidia-smi is not installed"
    outputs, deadline = [], time.time() + limit
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(0.1, deadline - time.time()))[0].decode("utf-8", "replace"))
        except subprocess.TimeoutExpired:
            for each in procs:
                each.kill()
                each.wait()
            return "hung", [], ""
    if procs[0].returncode:
        text = outputs[0]
        state = "nodriver" if ("NVIDIA driver" in text or "NVIDIA-SMI has failed" in text) else "failed"
        return state, [], "exit %d: %s" % (procs[0].returncode, text.strip()[-300:])
    return "ok", parse(outputs[0], outputs[1] if procs[1].returncode == 0 else ""), ""


def docker(limit):
    """Can Docker start GPU containers: is the NVIDIA runtime among its runtimes?"""
    return docker_answer(docker_start(), limit)


def docker_start():
    """`docker info`, started: it asks the daemon, which can take as long as nvidia-smi, beside which it runs."""
    try:
        return subprocess.Popen(["docker", "info", "--format", "{{json .Runtimes}}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    except OSError:
        return None


def docker_answer(proc, limit):
    """What docker_start() found; ended after ``limit`` seconds."""
    if proc is None:
        return {"state": "missing"}
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"state": "error", "text": "docker info did not answer within %g s" % limit}
    if proc.returncode:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return {"state": "error", "text": lines[-1][:200] if lines else "exit %d" % proc.returncode}
    try:
        runtimes = sorted(json.loads(out.decode("utf-8", "replace") or "{}"))
    except ValueError:
        runtimes = []
    return {"state": "ok" if "nvidia" in runtimes else "noruntime", "text": ", ".join(runtimes)}
