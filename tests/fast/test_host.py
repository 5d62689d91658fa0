"""The host program's modules, imported and tested directly on this machine (no sshd, no CLI)."""

import ast
import json
import os
import sys
from pathlib import Path

import pytest

from remote_run.host import exits, layout, owner, snapshot, states, tree
from remote_run.host.exits import REFUSED

HOST = Path(__file__).resolve().parents[2] / "remote_run" / "host"


# --- only the standard library -------------------------------------------------------------------

def test_every_host_module_imports_only_the_standard_library_or_the_host_package():
    bad = []
    for path in sorted(HOST.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # from . import x / from .files import y: the host package itself
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names:
                    bad.append(f"{path.name}:{node.lineno} imports {name}")
    assert bad == []


def test_the_import_check_would_catch_a_third_party_import(tmp_path):
    tree_ = ast.parse("import json\nfrom invoke import task\nfrom . import files\n")
    found = [n.module for n in ast.walk(tree_) if isinstance(n, ast.ImportFrom) and not n.level]
    assert [m for m in found if m.split(".")[0] not in sys.stdlib_module_names] == ["invoke"]


# --- which state wins ----------------------------------------------------------------------------

@pytest.mark.parametrize("facts, state", [
    ({}, states.LOST),  # no exit status, no process: its supervisor was killed
    ({"alive": True}, states.RUNNING),
    ({"exit_code": 0}, states.FINISHED),
    ({"exit_code": 3}, states.FAILED),
    ({"exit_code": 130}, states.KILLED),  # Ctrl+C
    ({"exit_code": 0, "stopped": True}, states.KILLED),  # a stop was asked for: killed, whatever it exited with
    ({"stopped": True, "alive": True}, states.STOPPING),
    ({"stopped": True}, states.KILLED),
    ({"waiting": True}, states.QUEUED),
    ({"waiting": True, "stopped": True}, states.QUEUED),  # still waiting: the stop has not reached it
    ({"timed_out": True, "exit_code": 1}, states.TIMED_OUT),  # gave up waiting: not a failure of its own
    ({"skipped": True, "exit_code": 130}, states.SKIPPED),
    ({"exit_code": 0, "disconnected": True}, states.DISCONNECTED),
    ({"detached": True}, states.DETACHED),
    ({"detached": True, "alive": True}, states.DETACHED),  # let go on purpose: the run goes on
    ({"detached": True, "exit_code": 0}, states.FINISHED),  # it ended before it was let go
    ({"interrupted": True}, states.INTERRUPTED),
])
def test_one_function_decides_which_state_holds(facts, state):
    assert states.decide(**facts) == state


@pytest.mark.parametrize("members, state", [
    ([states.FINISHED, states.RUNNING], states.RUNNING),
    ([states.FINISHED, states.QUEUED], states.RUNNING),
    ([states.FINISHED, states.FAILED], states.FAILED),
    ([states.FINISHED, states.LOST], states.FAILED),
    ([states.FINISHED, states.TIMED_OUT], states.FAILED),
    ([states.FAILED, states.KILLED], states.KILLED),
    ([states.FINISHED, states.SKIPPED], states.KILLED),
    ([states.FINISHED, states.FINISHED], states.FINISHED),
])
def test_a_group_is_running_while_one_run_is_live_and_then_takes_its_worst_end(members, state):
    assert states.group(members) == state


def test_state_of_reads_the_markers_a_run_folder_holds(tmp_path):
    from remote_run.host import runs

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    assert runs.state_of(str(run)) == (states.LOST, None)
    (run / "pid").write_text(str(os.getpid()))
    assert runs.state_of(str(run))[0] == states.RUNNING
    (run / runs.KILLED_MARKER).write_text("")
    assert runs.state_of(str(run))[0] == states.STOPPING
    (run / "exit_code").write_text("143")
    assert runs.state_of(str(run)) == (states.KILLED, 143)
    waiting = tmp_path / "runs" / "r2"
    waiting.mkdir()
    (waiting / runs.WAITING_MARKER).write_text(json.dumps({"pid": os.getpid(), "position": 2}))
    assert runs.state_of(str(waiting))[0] == states.QUEUED
    assert runs.queue_place(str(waiting))["position"] == 2


def run_command(argv, capsys, monkeypatch):
    """A run mode of the host program, as this machine sees it: its exit status and its trailer."""
    from remote_run.host import __main__ as entry
    from remote_run.host import control

    monkeypatch.setattr(control, "refused", None)  # one command per process on the host
    code = entry.main(argv)
    err = capsys.readouterr().err
    return code, json.loads(err.splitlines()[-1].lstrip(control.CONTROL))


def test_a_refused_run_command_says_so_in_its_trailer_and_a_lost_run_does_not(tmp_path, capsys, monkeypatch):
    from remote_run.host import runs

    root = tmp_path / "remote"
    (root / layout.RUNS / "ended").mkdir(parents=True)
    (root / layout.RUNS / "ended" / "meta.json").write_text("{}")
    (root / layout.RUNS / "ended" / "exit_code").write_text("0")
    code, trailer = run_command(["kill", str(root), "ended", "1"], capsys, monkeypatch)
    assert (code, trailer["state"], trailer["refused"]) == (exits.NOT_RUNNING, states.FINISHED,
                                                            "run ended is not running (finished)")
    code, trailer = run_command(["cat", str(root), "nope", "0"], capsys, monkeypatch)
    assert code == exits.USAGE and trailer["refused"].startswith("no run nope")
    (root / layout.RUNS / "gone").mkdir()
    (root / layout.RUNS / "gone" / "meta.json").write_text("{}")
    (root / layout.RUNS / "gone" / "run.log").write_text("")
    monkeypatch.setattr(runs.time, "time", iter(range(0, 10_000, 10)).__next__)  # its supervisor is gone for good
    monkeypatch.setattr(runs.signal, "signal", lambda *args: None)  # following installs a Ctrl+C handler
    code, trailer = run_command(["attach", str(root), "gone", "0"], capsys, monkeypatch)
    assert code == exits.VANISHED and trailer["state"] == states.LOST and "refused" not in trailer


# --- snapshots: taken, safe from a later sync, released ------------------------------------------

@pytest.fixture
def synced(tmp_path):
    root = tmp_path / "remote"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "model.py").write_text("v1\n")
    (root / "train.py").write_text("print(1)\n")
    (root / "data").mkdir()  # the workspace's own data/ and runs/: code like any other folder
    (root / "data" / "fetch.py").write_text("URL = 1\n")
    (root / "runs").mkdir()
    (root / "runs" / "speedrun.sh").write_text("python train.py\n")
    (root / ".remote-run").mkdir()
    (root / tree.STAMP).write_text("stamp-1\n")
    (root / layout.RUNS / "r1").mkdir(parents=True)
    return root


def test_a_snapshot_keeps_the_code_a_run_started_with_when_a_sync_replaces_it(synced):
    run = synced / layout.RUNS / "r1"
    taken = snapshot.take(str(synced), str(run), [])
    assert (taken["tree"], taken["files"]) == ("stamp-1", 4)
    work = run / snapshot.WORK
    new = synced / "pkg" / "model.py.tmp"  # what rsync does: a new file renamed over the old one
    new.write_text("v2\n")
    new.rename(synced / "pkg" / "model.py")
    assert (work / "pkg" / "model.py").read_text() == "v1\n"
    assert (work / "data" / "fetch.py").read_text() == "URL = 1\n" and not (work / "data").is_symlink()
    assert (work / "runs" / "speedrun.sh").is_file() and not (work / ".remote-run").exists()


def test_releasing_a_snapshot_keeps_only_what_the_run_wrote(synced):
    run = synced / layout.RUNS / "r1"
    snapshot.take(str(synced), str(run), [])
    work = run / snapshot.WORK
    (work / "out").mkdir()
    (work / "out" / "model.pt").write_text("weights")
    (work / "train.py").unlink()  # the run rewrote a file of its tree: that one is its output now
    (work / "train.py").write_text("changed by the run\n")
    snapshot.release(str(run))
    left = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    assert left == ["out", "out/model.pt", "train.py"]  # the workspace's data/ and runs/ were code: released
    assert (synced / "pkg" / "model.py").read_text() == "v1\n"  # the synced tree is untouched
    assert not (run / snapshot.LINKED).exists()


def test_a_snapshot_is_refused_when_a_sync_lands_while_it_is_taken(synced, monkeypatch):
    real = tree.walk

    def walk_during_a_sync(*args):
        (synced / tree.STAMP).write_text("stamp-2\n")
        return real(*args)

    monkeypatch.setattr(tree, "walk", walk_during_a_sync)
    with pytest.raises(snapshot.SnapshotError, match="changed while the run's snapshot was taken"):
        snapshot.take(str(synced), str(synced / layout.RUNS / "r1"), [])


def test_snapshots_of_ended_runs_are_released_and_live_ones_kept(synced):
    ended, live = synced / layout.RUNS / "r1", synced / layout.RUNS / "r2"
    live.mkdir()
    for run in (ended, live):
        snapshot.take(str(synced), str(run), [])
    (ended / "exit_code").write_text("0")
    (live / "pid").write_text(str(os.getpid()))
    snapshot.release_ended(str(synced))
    assert not (ended / snapshot.LINKED).exists() and not (ended / "work" / "train.py").exists()
    assert (live / snapshot.LINKED).exists() and (live / "work" / "train.py").exists()


def test_a_release_under_way_in_the_background_is_left_to_it_unless_its_process_died_long_ago(synced):
    run = synced / layout.RUNS / "r1"
    snapshot.take(str(synced), str(run), [])
    (run / "exit_code").write_text("0")
    os.rename(run / snapshot.LINKED, run / snapshot.RELEASING)  # as release_behind() does before it forks
    snapshot.release_ended(str(synced))  # the next run's start: not on its way
    assert (run / "work" / "train.py").exists()
    os.utime(run / snapshot.RELEASING, (0, 0))
    snapshot.release_ended(str(synced))
    assert not (run / "work" / "train.py").exists() and not (run / snapshot.RELEASING).exists()
    assert (synced / "train.py").exists()


def test_the_next_run_leaves_the_release_of_a_long_run_to_its_process(synced, monkeypatch):
    """The list of links is as old as the run (hours): the release's own start is what counts."""
    run = synced / layout.RUNS / "r1"
    snapshot.take(str(synced), str(run), [])
    (run / "exit_code").write_text("0")
    os.utime(run / snapshot.LINKED, (0, 0))  # taken long ago
    monkeypatch.setattr(snapshot, "_behind", lambda fn, *args: None)  # its process has not got to it yet
    snapshot.release_behind(str(run))
    snapshot.release_ended(str(synced))  # the next run's start
    assert (run / "work" / "train.py").exists() and (run / snapshot.RELEASING).exists()


def test_release_behind_releases_in_a_process_of_its_own(synced):
    import time

    run = synced / layout.RUNS / "r1"
    snapshot.take(str(synced), str(run), [])
    snapshot.release_behind(str(run))
    assert not (run / snapshot.LINKED).exists()
    deadline = time.time() + 90  # niced: a loaded machine gives it little time
    while time.time() < deadline and (run / snapshot.RELEASING).exists():
        time.sleep(0.02)
    assert not (run / "work" / "train.py").exists() and (synced / "train.py").exists()


# --- REMOTE_DIR's ownership: one check, and what it refuses --------------------------------------

@pytest.fixture
def place(tmp_path):
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    return base


def state(path):
    return owner.examine(str(path))["state"]


def test_examine_tells_every_kind_of_remote_dir_apart(place, monkeypatch):
    assert state(place / "new") == "absent"
    (place / "empty").mkdir(mode=0o700)
    assert state(place / "empty") == "empty"
    (place / "theirs").mkdir(mode=0o700)
    (place / "theirs" / "precious").write_text("x")
    assert state(place / "theirs") == "unclaimed"
    (place / "open").mkdir()
    os.chmod(place / "open", 0o777)
    assert state(place / "open") == "writable"
    (place / "link").symlink_to(place / "empty")
    assert state(place / "link") == "symlink"
    (place / "file").write_text("")
    assert state(place / "file") == "notdir"
    shared = place / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # writable by all, no sticky bit: anyone could swap what is inside
    assert owner.examine(str(shared / "mine")) | {"above": None} == {
        "state": "ancestor", "above": None, "owner": owner.user_name(os.geteuid()), "mode": "0777",
        "why": f"writable by other users (owner {owner.user_name(os.geteuid())}, mode 777)"}
    os.chmod(shared, 0o1777)  # sticky, as /tmp is: fine
    assert state(shared / "mine") == "absent"
    monkeypatch.setenv("HOME", str(place / "empty" / "home"))
    assert state(place / "empty") == "home"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory another user owns")
def test_examine_refuses_a_directory_another_user_made(place):
    (place / "theirs").mkdir(mode=0o700)
    os.chown(place / "theirs", 65534, 65534)
    assert state(place / "theirs") == "foreign"


def test_a_claim_creates_marks_and_stamps_and_later_claims_find_it_ours(place):
    root = place / "remote"
    assert owner.claim(str(root), "stamp-9", False, None) == 0
    assert oct(root.stat().st_mode & 0o777) == "0o700" and (root / owner.MARKER).is_file()
    assert owner.examine(str(root))["state"] == "ours"
    assert owner.claim(str(root), "stamp-9", False, ["true"]) == 0
    assert (root / tree.STAMP).read_text() == "stamp-9\n"
    assert owner.claim(str(root), "stamp-10", False, ["false"]) == 1
    assert not (root / tree.STAMP).exists()  # a failed sync leaves no stamp to trust


def test_a_dry_run_claim_creates_nothing(place):
    assert owner.claim(str(place / "remote"), "", True, ["true"]) == 0
    assert not (place / "remote").exists()


@pytest.mark.parametrize("make, needle", [
    (lambda p: (p.mkdir(), (p / "precious").write_text("x")), "was not created by remote-run"),
    (lambda p: (p.mkdir(), os.chmod(p, 0o777)), "writable by other users (mode 777)"),
    (lambda p: p.symlink_to("/etc"), "is a symbolic link (to /etc)"),
    (lambda p: p.write_text(""), "exists and is not a directory"),
])
def test_a_claim_refuses_what_is_not_ours_and_changes_nothing(place, capsys, make, needle):
    root = place / "remote"
    make(root)
    before = sorted(os.listdir(root)) if root.is_dir() and not root.is_symlink() else None
    assert owner.claim(str(root), "stamp", False, ["touch", str(place / "ran")]) == REFUSED
    assert needle in capsys.readouterr().err
    assert not (place / "ran").exists()
    if before is not None:
        assert sorted(os.listdir(root)) == before


def test_a_run_id_another_checkout_used_in_the_same_second_is_refused_and_its_run_kept(tmp_path, capsys,
                                                                                       monkeypatch):
    """Run ids come from the second a run starts on the user's machine: a checkout that took over
    REMOTE_DIR can pick one that the checkout before it used."""
    from remote_run.host import supervisor

    root = tmp_path / "remote"
    theirs = root / layout.RUNS / "20261207T180233Z_run"
    theirs.mkdir(parents=True)
    (theirs / "run.log").write_text("their log\n")
    monkeypatch.setattr(supervisor, "not_ours", lambda root: "")
    monkeypatch.setattr(supervisor, "run_checks", lambda root, payload: ({"ok": True}, payload))
    monkeypatch.setattr(supervisor, "control", lambda stream, data: None)
    code = supervisor.start({"root": str(root), "run_dir": f"{layout.RUNS}/20261207T180233Z_run",
                             "argv": ["true"], "meta": {}})
    assert code == exits.ENVIRONMENT
    assert capsys.readouterr().err == (f"remote-run: 20261207T180233Z_run already exists in {root}: a run of another "
                                       "checkout started in the same second; run the command again\n")
    assert [p.name for p in theirs.iterdir()] == ["run.log"] and (theirs / "run.log").read_text() == "their log\n"


def test_a_run_gives_its_gpus_back_before_its_snapshot_is_released(tmp_path, monkeypatch):
    """Releasing a large snapshot takes a while after the exit status: the user's next run must not
    find the GPU held by the run that just ended."""
    from remote_run.host import supervisor

    order = tmp_path / "order"

    class Held:
        data = {"gpus": [0]}

        def remove(self):
            with open(order, "a") as handle:
                handle.write("gpu given back\n")

    def released(run_dir):
        with open(order, "a") as handle:
            handle.write("snapshot released\n")

    monkeypatch.setattr(supervisor, "wait_turn", lambda run_dir, wanted: (Held(), "0"))
    monkeypatch.setattr(supervisor, "run_one", lambda *args, **kwargs: 0)
    monkeypatch.setattr(snapshot, "release_behind", released)
    run_dir = tmp_path / layout.RUNS / "20261207T180233Z_run"
    run_dir.mkdir(parents=True)
    child = os.fork()
    if child == 0:  # supervise() ends the process it runs in
        member = {"run_dir": f"{layout.RUNS}/20261207T180233Z_run", "argv": ["true"]}
        supervisor.supervise(str(tmp_path), None, [member], {}, None, (None, None), wanted={"want": {"count": 1}})
    assert os.waitpid(child, 0)[1] == 0
    assert order.read_text() == "gpu given back\nsnapshot released\n"


def test_what_the_check_found_reaches_the_queue_for_the_first_run_only(tmp_path, monkeypatch):
    """The check's answer (free GPUs chosen, or none at all) spares the first run's queue a second
    nvidia-smi; a group's later runs start later, and ask again."""
    import json as json_mod

    from remote_run.host import supervisor

    asked = tmp_path / "asked"

    def wait_turn(run_dir, wanted):
        with open(asked, "a") as handle:
            handle.write(json_mod.dumps(wanted["want"]) + "\n")
        return None, None

    monkeypatch.setattr(supervisor, "wait_turn", wait_turn)
    monkeypatch.setattr(snapshot, "release_behind", lambda run_dir: None)
    monkeypatch.setattr(supervisor.notify, "run_ended", lambda *args: None)
    for name in ("a", "b"):
        (tmp_path / layout.RUNS / name).mkdir(parents=True)
    members = [{"run_dir": f"{layout.RUNS}/{name}", "argv": ["true"]} for name in ("a", "b")]
    for found in ({"state": "missing", "gpus": []}, {"state": "ok", "gpus": [{"index": 1}], "chosen": [1], "busy": []}):
        wanted = supervisor.queue_wanted({"queue": {"want": {"devices": "auto", "count": 1}}}, {"gpu": found})
        child = os.fork()
        if child == 0:  # supervise() ends the process it runs in
            try:
                supervisor.supervise(str(tmp_path), None, members, {}, None, (None, None), wanted=wanted)
            finally:
                os._exit(1)
        assert os.waitpid(child, 0)[1] == 0
    first_none, later_none, first_free, later_free = [json_mod.loads(line) for line in asked.read_text().splitlines()]
    assert first_none["found_none"] is True and "found_none" not in later_none
    assert first_free["chosen"] == [1] and "chosen" not in later_free


def test_a_run_whose_check_found_no_gpu_is_not_sampled(tmp_path, monkeypatch):
    import json as json_mod

    from remote_run.host import supervisor

    sampled = tmp_path / "sampled"

    def run_one(run_dir, argv, environment, cwd, sample, told, ends=None):
        sampled.write_text(json_mod.dumps(sample))
        return 0

    class Held:
        data = {"gpus": []}

        def remove(self):
            pass

    monkeypatch.setattr(supervisor, "wait_turn", lambda run_dir, wanted: (Held(), None))
    monkeypatch.setattr(supervisor, "run_one", run_one)
    monkeypatch.setattr(snapshot, "release_behind", lambda run_dir: None)
    monkeypatch.setattr(supervisor.notify, "run_ended", lambda *args: None)
    (tmp_path / layout.RUNS / "a").mkdir(parents=True)
    member = {"run_dir": f"{layout.RUNS}/a", "argv": ["true"]}
    for found, expected in (({"state": "missing", "gpus": []}, None),
                            ({"state": "ok", "gpus": [{"index": 0}], "chosen": [0], "busy": []}, {"seconds": 5})):
        wanted = supervisor.queue_wanted({"queue": {"want": {"devices": "0", "count": 1}}}, {"gpu": found})
        child = os.fork()
        if child == 0:  # supervise() ends the process it runs in
            try:
                supervisor.supervise(str(tmp_path), None, [member], {}, {"seconds": 5}, (None, None), wanted=wanted)
            finally:
                os._exit(1)
        assert os.waitpid(child, 0)[1] == 0
        assert json_mod.loads(sampled.read_text()) == expected


def test_room_for_the_runs_pid_and_exit_status_is_taken_before_it_starts(synced, monkeypatch):
    """A run can fill the disk the moment it starts: the files its pid and exit status go into
    already exist then, so both are recorded (the disk-full test over sshd raced this under load)."""
    from remote_run.host import shellenv, supervisor

    run = synced / layout.RUNS / "r1"
    snapshot.take(str(synced), str(run), [])
    (run / "run.log").write_text("")
    there = []
    start = shellenv.start

    def starting(*args, **kwargs):
        there.extend(sorted(p.name for p in run.iterdir()))  # as the run's process starts
        return start(*args, **kwargs)

    monkeypatch.setattr(shellenv, "start", starting)
    assert supervisor.run_one(str(run), ["sh", "-c", "exit 3"], dict(os.environ), "", None, None) == 3
    assert {"exit_code.pending", "pid.pending"} <= set(there)
    assert (run / "exit_code").read_text().strip() == "3" and int((run / "pid").read_text()) > 0
    assert not list(run.glob("*.pending"))


def test_a_stop_that_comes_while_the_run_is_being_started_waits_for_its_pid_and_stops_it(tmp_path):
    """The run's output can flow before its supervisor has written its pid: a Ctrl+C in that
    moment found no pid, took the run for lost, and left it running to its end, unmarked."""
    import subprocess
    import threading

    from remote_run.host import runs

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "meta.json").write_text("{}")
    (run / runs.PID_PENDING).write_text(f"{os.getpid()}\n".ljust(16))  # the supervisor, starting it
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    assert runs.state_of(str(run))[0] == states.RUNNING

    def pid_comes_in():
        (run / runs.PID_PENDING).write_text(f"{proc.pid}\n".ljust(16))
        os.replace(run / runs.PID_PENDING, run / "pid")

    threading.Timer(0.3, pid_comes_in).start()
    try:
        assert runs.terminate(str(run), 1.0) is True
        assert proc.wait(timeout=5) == -2  # SIGINT
    finally:
        proc.kill()
    assert (run / runs.KILLED_MARKER).exists()


def test_a_run_whose_supervisor_died_while_starting_it_is_lost_and_a_stop_does_not_wait(tmp_path):
    import subprocess

    from remote_run.host import runs

    gone = subprocess.Popen(["true"])
    gone.wait()
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "meta.json").write_text("{}")
    (run / runs.PID_PENDING).write_text(f"{gone.pid}\n".ljust(16))
    assert runs.state_of(str(run))[0] == states.LOST
    assert runs.terminate(str(run), 1.0) is False and not (run / runs.KILLED_MARKER).exists()


def test_the_environment_check_of_a_python_names_it_and_its_torch_without_heavy_imports():
    """REMOTE_PYTHON's check runs before every run: it reads the version and looks for torch
    without importing platform (6 ms of each run's start; importlib.util is 4 more on a host where
    site does not import it anyway, as this venv's .pth files do)."""
    import importlib.util
    import subprocess

    code = ("import json, sys; sys.path.insert(0, %r); from remote_run.host.checks import check_env; "
            "print(json.dumps([check_env('/nowhere', {'kind': 'python'}), 'platform' in sys.modules]))"
            % str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    report, platform_imported = json.loads(done.stdout)
    torch = importlib.util.find_spec("torch")
    assert report["state"] == "ok" and report["text"].startswith("python %d.%d.%d %s; " % (*sys.version_info[:3],
                                                                                         sys.executable))
    assert report["text"].endswith("torch is not installed") if torch is None else "; torch " in report["text"]
    assert not platform_imported


def test_the_host_program_ends_without_teardown_but_with_all_its_output_and_its_status(tmp_path):
    """run() ends the process with os._exit (Python's teardown is 5 ms of every command): what
    main() wrote to a pipe (block-buffered) still arrives, and its exit status is the mode's."""
    import subprocess

    code = "import sys; sys.path.insert(0, %r); from remote_run.host.__main__ import run; run(sys.argv[1:])" % str(
        Path(__file__).resolve().parents[2])
    listed = subprocess.run([sys.executable, "-I", "-S", "-c", code, "status", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0 and json.loads(listed.stdout.splitlines()[-1]) == []
    assert '"exit": 0' in listed.stderr  # the trailer, on stderr
    wrong = subprocess.run([sys.executable, "-I", "-S", "-c", code, "no-such-mode"], capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == exits.USAGE and "unknown host program mode 'no-such-mode'" in wrong.stderr


def test_a_payload_that_never_comes_ends_the_program_having_done_nothing(monkeypatch, tmp_path):
    """The client gave up a command it started before its payload was known (transport.Host.prestart)."""
    import io

    from remote_run.host.__main__ import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for mode in ("start", "check"):
        with pytest.raises(SystemExit) as info:
            main([mode])
        assert info.value.code == exits.USAGE
    assert list(here.iterdir()) == []
