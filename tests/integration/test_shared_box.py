"""A shared GPU box: REMOTE_DIR belongs to us alone, each run keeps its own code, runs wait for a
free GPU in one queue for every user of the host, and `auto` picks idle GPUs. The real CLI against
the loopback sshd."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from support.cli import (
    Background,
    cli,
    log_has,
    one_line_error,
    remote_exists,
    run_dirs,
    wait_for,
    wait_for_started_run,
)
from support.net import free_port
from support.sshd import ROOT_MODE
from support.workspace import make_workspace, unique_remote_dir

another_user = pytest.mark.skipif(
    not ROOT_MODE, reason="a second user of the box needs root to exist (the suite's sshd user is rrtest)")


@pytest.fixture
def fresh(sshd, tmp_path):
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir("rrt_shared")
    yield ws, remote
    sshd.cleanup_remote(remote)
    subprocess.run(["rm", "-rf", remote, remote + "_theirs"], check=False)


@another_user
@pytest.mark.parametrize("how", ["world-writable", "symlink", "owned-by-them", "inside-their-dir"])
def test_a_remote_dir_another_user_prepared_gets_nothing_of_ours(sshd, fresh, how):
    ws, remote = fresh
    theirs = remote + "_theirs"
    os.mkdir(theirs, 0o755)  # root plays the other user of the box
    target = remote
    if how == "world-writable":
        os.mkdir(remote)
        os.chmod(remote, 0o777)
    elif how == "symlink":
        os.symlink(theirs, remote)
    elif how == "owned-by-them":
        os.mkdir(remote, 0o755)
    else:
        os.chmod(theirs, 0o777)
        target = f"{theirs}/ours"
    line = one_line_error(cli(sshd, ws, "sync", REMOTE_DIR=target))
    expected = {"world-writable": "belongs to root", "symlink": "symbolic link", "owned-by-them": "belongs to root",
                "inside-their-dir": "writable by other users"}[how]
    assert expected in line and "choose a" in line and "REMOTE_DIR" in line, line
    assert os.listdir(theirs) == []
    assert how == "symlink" or os.listdir(target if os.path.isdir(target) else theirs) == []
    line = one_line_error(cli(sshd, ws, "run", "scripts/hello.py", "--cpu-ok", REMOTE_DIR=target, venv=False))
    assert expected in line, line
    assert os.listdir(theirs) == []


def test_remote_run_creates_remote_dir_private_and_refuses_one_made_writable(sshd, fresh):
    ws, remote = fresh
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    mode = sshd.as_user(["stat", "-c", "%a", remote]).stdout.strip()
    assert mode == "700"
    sshd.as_user(["chmod", "777", remote])
    line = one_line_error(cli(sshd, ws, "run", "scripts/hello.py", "--cpu-ok", REMOTE_DIR=remote, venv=False))
    assert "mode 777" in line and "chmod go-w" in line, line
    assert not remote_exists(sshd, f"{remote}/runs")


# Reads its code twice: at the start and after the test has synced a change; writes one output.
SNAP = """import os, time
import snapmod
print("first", snapmod.VERSION, open("scripts/data.txt").read().strip(), flush=True)
deadline = time.time() + 30
while not os.path.exists("go") and time.time() < deadline:
    time.sleep(0.05)
import importlib
importlib.reload(snapmod)
print("again", snapmod.VERSION, open("scripts/data.txt").read().strip(), flush=True)
os.makedirs("outputs", exist_ok=True)
open("outputs/model.pt", "w").write("weights")
print("RESULT_SNAP ok=1")
"""


def test_a_sync_during_a_run_does_not_change_what_it_runs(sshd, fresh):
    ws, remote = fresh
    (ws / "scripts" / "snap.py").write_text(SNAP)
    (ws / "snapmod.py").write_text("VERSION = 'old'\n")
    (ws / "scripts" / "data.txt").write_text("old data\n")
    done = cli(sshd, ws, "run", "scripts/snap.py", "--detach", "--cpu-ok", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    run = wait_for_started_run(remote)
    wait_for(lambda: log_has(run, "first old old data"), 15, "the run's first read")
    (ws / "snapmod.py").write_text("VERSION = 'new'\n")
    (ws / "scripts" / "data.txt").write_text("new data, longer\n")
    assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
    assert Path(f"{remote}/snapmod.py").read_text() == "VERSION = 'new'\n"  # the sync did happen
    sshd.as_user(["touch", f"{run}/work/go"])
    followed = cli(sshd, ws, "logs", "--follow", "--run", run.name, REMOTE_DIR=remote, venv=False)
    assert followed.returncode == 0, followed.stderr
    assert "again old old data" in followed.stdout, followed.stdout
    record = json.loads((ws / "var" / "runs" / run.name / "result.json").read_text())
    assert record["outcome"] == "finished"
    # What the run wrote stays under .remote-run/runs/<id>/; the code it ran from is released.
    work = Path(f"{remote}/.remote-run/runs/{run.name}/work")
    assert (work / "outputs" / "model.pt").read_text() == "weights"
    assert not (work / "snapmod.py").exists() and not (work / "data").exists() and not (run / "work.linked").exists()
    assert Path(f"{remote}/.remote-run/data").is_dir()  # the shared dataset cache


def test_the_record_names_the_snapshot_the_run_used(sshd, fresh):
    ws, remote = fresh
    done = cli(sshd, ws, "run", "scripts/hello.py", "--cpu-ok", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(p.read_text()) for p in (ws / "var" / "runs").glob("*_run/result.json")]
    stamp = Path(f"{remote}/.remote-run/synced").read_text().strip()
    assert record["snapshot"]["tree"] == stamp and record["snapshot"]["files"] >= 3
    assert "snapshot" in (ws / "var" / "runs" / record["run_id"] / "log.md").read_text()


def test_a_warm_run_takes_the_spare_snapshot_only_while_the_tree_is_the_one_it_was_made_of(sshd, fresh):
    """The spare made while a run runs saves the next run its hard links; a changed file (a delta)
    is applied to it too; after a file edited on the host (repaired by a sync) the run gets the tree
    as it is now, not the spare."""
    ws, remote = fresh
    (ws / "scripts" / "ver.py").write_text("import snapver\nprint('RESULT_VER v=%d' % snapver.V)\n")
    (ws / "snapver.py").write_text("V = 1\n")

    def run():
        done = cli(sshd, ws, "run", "scripts/ver.py", "--cpu-ok", REMOTE_DIR=remote, venv=False)
        assert done.returncode == 0, done.stderr
        run_id = done.stderr.split("[run ")[1].split("]")[0]  # two runs in one second: ID and ID-2
        record = json.loads((ws / "var" / "runs" / run_id / "result.json").read_text())
        return record["result"]["metrics"]["v"], record["snapshot"]

    def spare_ready():
        spares = Path(remote) / ".remote-run" / "spares"
        return spares.is_dir() and any(not p.name.startswith(".") for p in spares.iterdir())

    assert run()[0] == 1
    wait_for(spare_ready, 20, "the spare snapshot")
    value, taken = run()
    assert value == 1 and taken["spare"] is True and taken["files"] >= 3
    wait_for(spare_ready, 20, "the next spare")
    (ws / "snapver.py").write_text("V = 2\n")  # a delta, applied by the host's check, and to the spare
    value, taken = run()
    assert value == 2 and taken["spare"] is True
    wait_for(spare_ready, 20, "the next spare")
    with open(Path(remote) / "snapver.py", "w") as handle:  # edited in place on the host: the spare sees it too
        handle.write("V = 99\n")  # another size: rsync's quick check (size, mtime in s) cannot miss it
    value, taken = run()
    assert value == 2 and taken["spare"] is False  # the check saw it, a sync repaired it, the spare went stale


QUEUE = """import os, sys, time
print("started", os.environ.get("CUDA_VISIBLE_DEVICES"), repr(time.time()), flush=True)
deadline = time.time() + float(os.environ.get("HOLD", "0"))
while time.time() < deadline and not os.path.exists("../../release"):
    time.sleep(0.05)
print("RESULT_Q at=%r" % time.time())
"""


def queue_entries(sshd) -> list:
    """The entries in the run user's queue folder; one its owner removes while we look is gone."""
    uid = sshd.as_user(["id", "-u"]).stdout.strip()
    found = []
    for path in Path(f"{sshd.gpu_queue}.{uid}").glob("*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except FileNotFoundError:
            pass
    return found


@pytest.fixture
def queue_box(sshd, fresh, gpu):
    ws, remote = fresh
    (ws / "scripts" / "q.py").write_text(QUEUE)
    yield ws, remote, gpu
    stop = [p.name for p in run_dirs(remote) if (p / "meta.json").exists()]
    for run in stop:
        cli(sshd, ws, "kill", "--run", run, REMOTE_DIR=remote, venv=False)


def detached(sshd, ws, remote, *args, **env):
    done = cli(sshd, ws, "run", "scripts/q.py", "--detach", *args, REMOTE_DIR=remote, venv=False, **env)
    assert done.returncode == 0, done.stderr
    return sorted(p for p in run_dirs(remote) if (p / "meta.json").exists())[-1]


def test_wait_queues_for_a_busy_gpu_and_starts_in_arrival_order(sshd, queue_box):
    ws, remote, gpu = queue_box
    gpu("busy")
    first = detached(sshd, ws, remote, "--wait", HOLD="1", REMOTE_ENV="HOLD")
    second = detached(sshd, ws, remote, "--wait")
    wait_for(lambda: log_has(second, "1 ahead in the queue") and log_has(first, "first in the queue"),
             15, "both runs in the queue")
    assert "busy: GPU 0: pid 4242 python" in (first / "run.log").read_text()
    status = cli(sshd, ws, "status", REMOTE_DIR=remote, venv=False).stdout
    assert "#1 in the GPU queue (GPU 0: pid 4242 python)" in status, status
    assert f"#2 in the GPU queue (after {sshd.user}'s run {first.name}; GPU 0: pid 4242 python)" in status, status
    assert not (first / "pid").exists()  # nothing started while the GPU was busy
    gpu("idle")
    for run in (first, second):
        followed = cli(sshd, ws, "logs", "--follow", "--run", run.name, REMOTE_DIR=remote, venv=False)
        assert followed.returncode == 0 and "RESULT_Q" in followed.stdout, followed.stderr
    ended_first = float((first / "run.log").read_text().split("RESULT_Q at=")[1].split()[0])
    started_second = float((second / "run.log").read_text().split("started 0 ")[1].split()[0])
    assert started_second >= ended_first  # the second waited for the first, which held GPU 0
    assert not [e for e in queue_entries(sshd) if e["run"] in (first.name, second.name)]


def test_a_queued_run_is_live_to_tunnel_and_logs(sshd, queue_box, tmp_path):
    """A run waiting in the GPU queue has not ended: `inv tunnel` forwards for it (it used to call it
    "not running"), and `inv logs` says to add --follow (it used to say nothing)."""
    ws, remote, gpu = queue_box
    gpu("busy")
    waiter = detached(sshd, ws, remote, "--wait")
    wait_for(lambda: log_has(waiter, "first in the queue"), 15, "the run in the queue")
    logs = cli(sshd, ws, "logs", "--run", waiter.name, REMOTE_DIR=remote, venv=False)
    assert logs.returncode == 0, logs.stderr
    assert (f"run {waiter.name} is still waiting, #1 in the GPU queue (GPU 0: pid 4242 python); "
            "add --follow to wait for it" in logs.stderr), logs.stderr
    tunnel = Background(sshd, ws, tmp_path / "bg", "tunnel", "--port", f"{free_port()}:{free_port()}",
                        "--run", waiter.name, REMOTE_DIR=remote, venv=False)
    try:
        wait_for(lambda: "Ctrl+C closes the tunnel" in tunnel.stderr or tunnel.proc.poll() is not None,
                 15, "the tunnel")
        assert f"run {waiter.name} on l1" in tunnel.stderr, tunnel.stderr
        tunnel.ctrl_c()
        assert tunnel.wait(10) == 0 and "tunnel closed" in tunnel.stderr, tunnel.stderr
    finally:
        tunnel.kill()


def test_a_killed_waiter_leaves_the_queue_and_a_wait_timeout_gives_up(sshd, queue_box):
    ws, remote, gpu = queue_box
    gpu("busy")
    waiter = detached(sshd, ws, remote, "--wait")
    wait_for(lambda: [e for e in queue_entries(sshd) if e["run"] == waiter.name], 10, "the queue entry")
    assert cli(sshd, ws, "kill", "--run", waiter.name, REMOTE_DIR=remote, venv=False).returncode == 0
    assert not [e for e in queue_entries(sshd) if e["run"] == waiter.name]
    assert "killed" in cli(sshd, ws, "status", REMOTE_DIR=remote, venv=False).stdout
    done = cli(sshd, ws, "run", "scripts/q.py", "--wait", "--wait-timeout", "1.5", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 75 and "gave up waiting for a GPU after 1.5 s" in done.stdout + done.stderr, done.stderr
    timed_out = [json.loads(p.read_text()) for p in (ws / "var" / "runs").glob("*/result.json")]
    assert [r["outcome"] for r in timed_out if r["run_id"] != waiter.name] == ["timed out"]
    assert not queue_entries(sshd) or all(e["run"] != sorted(run_dirs(remote))[-1].name for e in queue_entries(sshd))


def test_a_gpu_another_remote_run_run_holds_is_busy_without_wait(sshd, queue_box):
    ws, remote, _ = queue_box
    holder = detached(sshd, ws, remote, HOLD="20", REMOTE_ENV="HOLD")
    wait_for(lambda: log_has(holder, "started"), 10, "the first run")
    line = one_line_error(cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False))
    assert "in use by another job" in line and f"run {holder.name}" in line and "--wait" in line, line
    Path(f"{remote}/.remote-run/runs/release").touch()


def test_auto_picks_the_idle_gpu_and_the_record_says_which(sshd, queue_box):
    ws, remote, gpu = queue_box
    gpu("two-first-busy")
    done = cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False, CUDA_VISIBLE_DEVICES="auto")
    assert done.returncode == 0, done.stderr
    assert "started 1 " in done.stdout
    [record] = [json.loads(p.read_text()) for p in (ws / "var" / "runs").glob("*_run/result.json")]
    assert record["devices"] == "1"
    line = one_line_error(cli(sshd, ws, "run", "scripts/q.py", "--gpus", "2", REMOTE_DIR=remote, venv=False))
    assert "fewer than 2 idle GPUs" in line and "--wait" in line, line


def test_a_killed_supervisor_frees_the_gpu_it_held_for_the_next_run(sshd, queue_box):
    """kill -9 of a holding run's supervisor leaves its queue entry behind: nobody counts it, the
    waiting run starts, and the owner's next look removes it. The run's own process lives on; what
    shows its use of the GPU is nvidia-smi (the fake GPU here says idle), not the queue."""
    ws, remote, _ = queue_box
    holder = detached(sshd, ws, remote, HOLD="30", REMOTE_ENV="HOLD")
    wait_for(lambda: log_has(holder, "started"), 10, "the first run")
    [supervisor] = [e["pid"] for e in queue_entries(sshd) if e["run"] == holder.name]
    waiter = detached(sshd, ws, remote, "--wait")
    wait_for(lambda: log_has(waiter, f"busy: GPU 0: {sshd.user}'s run {holder.name}"),
             15, "the run to wait behind the first")
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: log_has(waiter, "started 0 "), 15, "the waiting run to start")
    assert not [e for e in queue_entries(sshd) if e["run"] == holder.name]
    run = int((holder / "pid").read_text())
    os.kill(run, 0)  # the first run's process is still there
    Path(f"{remote}/.remote-run/runs/release").touch()
    wait_for(lambda: not Path(f"/proc/{run}").exists(), 20, "the first run's process to end (and be reaped)")


@pytest.fixture
def second_host(sshd, tmp_path):
    """A second GPU box, `l2`: its own sshd with its own fake GPUs and GPU queue, reachable with
    the same key; both hosts live on this machine, so they share /tmp (and REMOTE_DIR's path)."""
    from support.sshd import SshServer

    other = SshServer(tmp_path / "sshd2").start()
    try:
        other.authorized_keys.write_text(sshd.client_key.with_suffix(".pub").read_text())
        sshd.add_alias("l2", other.port)
        with open(sshd.known_hosts, "a") as handle:
            handle.write(f"[127.0.0.1]:{other.port} {other._host_pubkey()}\n")
        yield other
    finally:
        sshd._aliases.pop("l2", None)
        sshd._write_client_files()
        other.close()


def test_a_host_list_sends_the_run_to_a_free_host_and_finds_it_there(sshd, second_host, fresh, gpu):
    ws, remote = fresh
    (ws / "scripts" / "q.py").write_text(QUEUE)
    gpu("busy")  # l1's GPU is taken; l2's is idle
    done = cli(sshd, ws, "run", "scripts/q.py", "--detach", REMOTE_DIR=remote, venv=False, REMOTE_HOST="l1,l2",
               HOLD="30", REMOTE_ENV="HOLD")
    assert done.returncode == 0, done.stderr
    assert "host l2 chosen (l1: GPU 0 on l1 is in use by another job" in done.stderr, done.stderr
    assert "l2: free" in done.stderr, done.stderr
    [record] = [json.loads(p.read_text()) for p in (ws / "var" / "runs").glob("*_run/result.json")]
    assert record["host"] == "l2"
    status = cli(sshd, ws, "status", REMOTE_DIR=remote, venv=False, REMOTE_HOST="l1,l2")
    assert status.returncode == 0 and f"l2    {record['run_id']}" in status.stdout, status.stdout + status.stderr
    killed = cli(sshd, ws, "kill", "--run", record["run_id"], REMOTE_DIR=remote, venv=False, REMOTE_HOST="l1,l2")
    assert killed.returncode == 0
    assert json.loads((ws / "var" / "runs" / record["run_id"] / "result.json").read_text())["outcome"] == "killed"
    second_host.set_gpu("busy")
    line = one_line_error(cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False, REMOTE_HOST="l1,l2"))
    assert "no host of REMOTE_HOST has its GPUs free" in line and "--wait" in line, line


LOCKER = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


class Hold:
    """A process (as the user ``runuser`` names, else ours) holding the write lock of a queue entry
    ``path`` (NAME.lock), as the entry's supervisor does; end() kills it (with runuser, which
    would leave it behind) and the kernel drops the lock."""

    def __init__(self, path: str, runuser: list[str] = ()):
        python = shutil.which("python3", path="/usr/bin:/bin")  # the host's, which every user may run
        self.proc = subprocess.Popen([*runuser, python, "-c", LOCKER, path], stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        assert self.proc.stdout.readline().strip() == "held"

    def end(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc.stdout.close()


def entry_of(run: str, *, user: str, gpus=(0,), pid: int = 1) -> str:
    ticks = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
    return json.dumps({"run": run, "user": user, "pid": pid, "pid_started": ticks, "arrived": 1.0,
                       "state": "running", "want": {"devices": "0"}, "gpus": list(gpus)})


@another_user
def test_two_users_share_one_queue_and_neither_can_touch_the_others_entries(sshd, queue_box):
    """root plays a second user of the box whose run holds GPU 0: our run waits behind it, `inv
    status` says what it waits for, and our user can neither change nor remove root's entry (nor
    can root's folder be faked by us)."""
    ws, remote, _ = queue_box
    theirs = Path(f"{sshd.gpu_queue}.0")
    theirs.mkdir(mode=0o755, exist_ok=True)
    entry = theirs / "1.000000-1.json"
    entry.write_text(entry_of("their-run", user="someone-else"))
    holding = Hold(str(theirs / "1.000000-1.lock"))
    try:
        line = one_line_error(cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False))
        assert "root's run their-run" in line, line
        waiter = detached(sshd, ws, remote, "--wait")
        wait_for(lambda: log_has(waiter, "busy: GPU 0: root's run their-run"), 15, "the run to wait behind root's")
        status = cli(sshd, ws, "status", REMOTE_DIR=remote, venv=False).stdout
        assert "waiting, #1 in the GPU queue (GPU 0: root's run their-run)" in status, status
        assert sshd.as_user(["rm", "-f", str(entry)]).returncode != 0 and entry.exists()
        assert sshd.as_user(["sh", "-c", f"echo '{{}}' > {entry}"]).returncode != 0
        holding.end()  # their run ends, its entry left behind: nobody holds it
        followed = cli(sshd, ws, "logs", "--follow", "--run", waiter.name, REMOTE_DIR=remote, venv=False)
        assert followed.returncode == 0 and "RESULT_Q" in followed.stdout, followed.stderr
    finally:
        holding.end()
        shutil.rmtree(theirs, ignore_errors=True)


HOSTILE_USER = "rrhostile"


class Hostile:
    """A second, hostile user of the box, with a queue folder of its own."""

    def __init__(self, sshd):
        from support.sshd import RUNUSER, _passwd_change

        if subprocess.run(["id", "-u", HOSTILE_USER], capture_output=True).returncode != 0:
            _passwd_change(["useradd", "-M", "-s", "/bin/sh", HOSTILE_USER], done=(0, 9))
        self.uid = int(subprocess.run(["id", "-u", HOSTILE_USER], capture_output=True, text=True).stdout)
        self.runuser = [RUNUSER, "-u", HOSTILE_USER, "--"]
        self.folder = Path(f"{sshd.gpu_queue}.{self.uid}")
        self.made: list[str] = []
        self.holders: list[Hold] = []

    def do(self, *cmd: str) -> None:
        done = subprocess.run([*self.runuser, *cmd], capture_output=True, text=True, cwd="/")
        assert done.returncode == 0, done.stderr

    def write(self, path: Path, text: str) -> None:
        self.do("sh", "-c", 'printf %s "$1" > "$2"', "-", text, str(path))

    def hold(self, path: Path) -> Hold:
        self.holders.append(Hold(str(path), self.runuser))
        return self.holders[-1]

    def close(self) -> None:
        for held in self.holders:
            held.end()
        for path in [str(self.folder), *self.made]:
            subprocess.run(["rm", "-rf", path], check=False)


@pytest.fixture
def hostile(sshd):
    made = Hostile(sshd)
    yield made
    made.close()


@another_user
def test_malformed_and_fifo_entries_of_another_user_neither_crash_nor_hang_a_run(sshd, queue_box, hostile):
    """They used to: a TypeError on "arrived": "soon" or "gpus": "0" failed every run of every
    user, and a FIFO named zz.json blocked every launcher in open()."""
    ws, remote, _ = queue_box
    hostile.do("mkdir", "-m", "755", str(hostile.folder))
    hostile.write(hostile.folder / "1.json", json.dumps(json.loads(entry_of("x", user="root")) | {"arrived": "soon"}))
    hostile.write(hostile.folder / "2.json", json.dumps(json.loads(entry_of("x", user="root")) | {"gpus": "0"}))
    hostile.do("mkfifo", str(hostile.folder / "zz.json"))
    for name in ("1", "2", "zz"):
        hostile.hold(hostile.folder / f"{name}.lock")
    done = cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False, timeout=60)
    assert done.returncode == 0 and "started 0" in done.stdout and "Traceback" not in done.stderr, done.stderr
    [run] = [p for p in run_dirs(remote) if (p / "meta.json").exists()]
    log = (run / "run.log").read_text()
    for name, why in (("1", "no arrival time"), ("2", "bad GPU list"), ("zz", "not a regular file")):
        assert f"GPU queue entry {hostile.folder}/{name}.json ({HOSTILE_USER}'s) skipped: {why}" in log, log
    waiter = detached(sshd, ws, remote, "--wait")
    followed = cli(sshd, ws, "logs", "--follow", "--run", waiter.name, REMOTE_DIR=remote, venv=False, timeout=60)
    assert followed.returncode == 0 and "RESULT_Q" in followed.stdout, followed.stderr


@another_user
def test_a_fake_hold_lasts_only_while_its_owners_process_holds_it_and_shows_the_owner(sshd, queue_box, hostile):
    """An entry naming pid 1 with its real start time and "user": "root" used to hold GPU 0 for every
    user until reboot, under root's name."""
    ws, remote, _ = queue_box
    hostile.do("mkdir", "-m", "755", str(hostile.folder))
    hostile.write(hostile.folder / "1.json", entry_of("ops-maintenance", user="root", pid=1))
    done = cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0 and "started 0" in done.stdout, done.stderr  # nothing holds it: no hold
    holding = hostile.hold(hostile.folder / "1.lock")  # the hostile user's own process holds it
    line = one_line_error(cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False))
    assert f"GPU 0: {HOSTILE_USER}'s run ops-maintenance" in line and "root" not in line, line
    waiter = detached(sshd, ws, remote, "--wait")
    wait_for(lambda: log_has(waiter, f"busy: GPU 0: {HOSTILE_USER}'s run ops-maintenance"), 15, "the run to wait")
    status = cli(sshd, ws, "status", REMOTE_DIR=remote, venv=False).stdout
    assert f"(GPU 0: {HOSTILE_USER}'s run ops-maintenance)" in status, status
    holding.end()  # the hold ends with its owner's process
    wait_for(lambda: log_has(waiter, "started 0 "), 15, "the waiting run to start")


@another_user
def test_a_squatted_queue_folder_stops_a_wait_run_and_a_run_without_wait_says_so(sshd, queue_box, hostile):
    """Our queue folder, made a link to another user's 0777 folder: runs went ahead unseen, and two
    --wait runs of ours ran on GPU 0 at once."""
    ws, remote, _ = queue_box
    ours = f"{sshd.gpu_queue}.{sshd.as_user(['id', '-u']).stdout.strip()}"
    shutil.rmtree(ours, ignore_errors=True)
    trap = f"{hostile.folder}-trap"
    hostile.made += [trap, ours]
    hostile.do("mkdir", "-m", "777", trap)
    hostile.do("ln", "-s", trap, ours)
    before = run_dirs(remote)
    line = one_line_error(cli(sshd, ws, "run", "scripts/q.py", "--wait", REMOTE_DIR=remote, venv=False))
    assert (f"the GPU queue folder {ours} on l1 is not yours (a symbolic link owned by {HOSTILE_USER}), "
            "so this run cannot wait in the GPU queue" in line and "--wait" in line), line
    assert run_dirs(remote) == before and os.listdir(trap) == []
    done = cli(sshd, ws, "run", "scripts/q.py", REMOTE_DIR=remote, venv=False)
    assert done.returncode == 0 and "started 0" in done.stdout, done.stderr
    assert "this run's GPU hold is not visible to other users" in done.stderr, done.stderr
    assert os.listdir(trap) == []
    doctor = cli(sshd, ws, "doctor", REMOTE_DIR=remote, venv=False).stdout
    [row] = [line.split(None, 3)[3] for line in doctor.splitlines() if line.split()[1:3] == ["GPU", "queue"]]
    assert row.startswith(f"the GPU queue folder {ours} on l1 is not yours (a symbolic link owned by"), row
