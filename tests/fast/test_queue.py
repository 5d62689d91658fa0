"""The host's GPU queue (remote_run/host/queue.py), tested directly: arrival order, holds the kernel
vouches for (a lock a live process of the folder's owner holds), and other users' entries read as
hostile input: wrong types, huge files, FIFOs, links, fake holds. As another user:
tests/integration/test_shared_box.py."""

import json
import os
import signal
import stat
import string
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from remote_run.host import queue


class LockHolder:
    """Another process of this user that holds the locks it is given, as a supervisor does: a
    reader in the test's own process could not tell (a process never conflicts with its own locks)."""

    def __init__(self):
        asked, self.ask = os.pipe()
        self.told, told = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            import fcntl

            os.close(self.ask)
            os.close(self.told)
            try:
                held = []
                with os.fdopen(asked) as lines:
                    for line in lines:
                        fd = os.open(line.rstrip("\n"), os.O_WRONLY | os.O_CREAT, 0o644)
                        fcntl.lockf(fd, fcntl.LOCK_EX)
                        held.append(fd)
                        os.write(told, b"k")
            finally:
                os._exit(0)
        os.close(asked)
        os.close(told)

    def hold(self, lock_path):
        os.write(self.ask, f"{lock_path}\n".encode())
        assert os.read(self.told, 1) == b"k"

    def close(self):
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.ask)
        os.close(self.told)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "QUEUE_DIR", str(tmp_path / "q"))
    made = queue.own_folder()
    assert made == f"{tmp_path}/q.{os.geteuid()}"
    return Path(made)


@pytest.fixture
def holder():
    made = LockHolder()
    yield made
    made.close()


def data(name, arrived, *, state=queue.WAITING, devices="0", gpus=(), **more):
    return {"run": name, "pid": 1, "arrived": arrived, "state": state, "want": {"devices": devices},
            "gpus": list(gpus), **more}


def put(folder, name, arrived, holder=None, **fields):
    """An entry file; held (its lock taken by another process of ours) when ``holder`` is given."""
    (folder / f"{arrived:.6f}-{name}.json").write_text(json.dumps(data(name, arrived, **fields)))
    if holder is not None:
        holder.hold(str(folder / f"{arrived:.6f}-{name}.lock"))


# --- order, and what counts as held ---------------------------------------------------------------

def test_entries_are_served_oldest_first(folder, holder):
    put(folder, "late", 30.0, holder)
    put(folder, "early", 10.0, holder)
    put(folder, "middle", 20.0, holder)
    assert [e["run"] for e in queue.entries()] == ["early", "middle", "late"]


def test_an_entry_nobody_holds_is_ignored_and_only_its_owner_removes_it(folder, holder):
    """A pid-1 entry with pid 1's real start time and "user": "root" used to hold GPU 0 until reboot."""
    put(folder, "live", 1.0, holder)
    put(folder, "pid-1", 2.0, state=queue.HOLDING, gpus=[0], user="root", pid_started=queue.started_at(1))
    put(folder, "unlocked", 3.0)
    (folder / "3.000000-unlocked.lock").write_text("")  # a lock file nobody holds
    assert [e["run"] for e in queue.entries(drop_stale=False)] == ["live"]
    assert len(list(folder.glob("*.json"))) == 3  # doctor's look removes nothing
    assert [e["run"] for e in queue.entries()] == ["live"]
    assert sorted(p.name for p in folder.iterdir()) == ["1.000000-live.json", "1.000000-live.lock"]


def test_a_holder_killed_with_sigkill_is_ignored_at_once_and_dropped_by_its_owner(folder):
    """A supervisor killed with -9 cannot remove its entry; the kernel drops its lock."""
    ready, tell = os.pipe()
    child = os.fork()
    if not child:
        try:
            made = queue.Entry("/x/runs/killed", {"devices": "0"})
            made.write(state=queue.HOLDING, gpus=[0])
            os.write(tell, b"x")
            signal.pause()
        finally:
            os._exit(1)
    try:
        os.read(ready, 1)
        assert [e["run"] for e in queue.entries(drop_stale=False)] == ["killed"]
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    assert queue.entries(drop_stale=False) == [] and len(list(folder.glob("*.json"))) == 1
    assert queue.entries() == [] and list(folder.iterdir()) == []


def test_this_process_counts_its_own_entry_and_reading_it_keeps_the_lock(folder):
    """A POSIX lock is dropped when its process closes any descriptor of the file: the reader in
    the holder's own process must not open it."""
    mine = queue.Entry("/x/runs/mine", {"devices": "0"})
    mine.write(state=queue.HOLDING, gpus=[0])
    assert [e["run"] for e in queue.entries()] == ["mine"]
    child = os.fork()
    if not child:  # another process looks: still held
        os._exit(0 if [e["run"] for e in queue.entries(drop_stale=False)] == ["mine"] else 1)
    assert os.waitpid(child, 0)[1] == 0
    mine.remove()
    assert list(folder.iterdir()) == []


def test_other_users_can_read_an_entry_whatever_the_umask(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "QUEUE_DIR", str(tmp_path / "q"))
    kept = os.umask(0o077)
    try:
        made = queue.Entry("/x/runs/private", {"devices": "0"})
        made.write()
    finally:
        os.umask(kept)
    modes = {p.suffix: stat.S_IMODE(p.stat().st_mode) for p in Path(made.folder).iterdir()}
    assert stat.S_IMODE(os.stat(made.folder).st_mode) == 0o755 and modes == {".json": 0o644, ".lock": 0o644}
    made.remove()


def test_a_folder_others_can_write_or_named_for_another_user_is_not_read(folder, tmp_path, holder):
    put(folder, "mine", 1.0, holder)
    os.chmod(folder, 0o777)
    assert queue.entries() == [] and queue.own_folder() is None
    assert queue.own_folder_problem() == {"folder": str(folder), "why": "writable by other users (mode 777)"}
    os.chmod(folder, 0o755)
    impostor = tmp_path / f"q.{os.geteuid() + 1}"  # a folder whose name says another uid than its owner's
    impostor.mkdir(mode=0o755)
    put(impostor, "forged", 0.5, holder)
    assert [e["run"] for e in queue.entries()] == ["mine"]


@pytest.mark.parametrize("make, why", [
    (lambda f, o: (f.rmdir(), f.symlink_to(o)), "a symbolic link owned by"),
    (lambda f, o: (f.rmdir(), f.write_text("")), "not a directory"),
    (lambda f, o: f.chmod(0o775), "writable by other users (mode 775)"),
])
def test_a_queue_folder_that_is_not_ours_is_named_and_not_used(folder, tmp_path, make, why):
    other = tmp_path / "theirs"
    other.mkdir(mode=0o777)
    make(folder, other)
    problem = queue.own_folder_problem()
    assert problem["folder"] == str(folder) and problem["why"].startswith(why), problem
    entry = queue.Entry("/x/runs/r", {"devices": "0"})
    entry.write()
    assert entry.path is None and list(other.iterdir()) == []


def test_a_held_gpu_names_the_folder_owner_not_the_entry(folder, holder):
    import pwd

    put(folder, "holder", 1.0, holder, state=queue.HOLDING, gpus=[1], user="root")
    gpus = [{"index": 0, "processes": []}, {"index": 1, "processes": []}]
    queue.mark_held(gpus, queue.entries())
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert "held_by" not in gpus[0] and gpus[1]["held_by"] == f"{me}'s run holder"
    assert queue.holders(gpus) == [{"gpu": 1, "user": me, "run": "holder"}]


def entry(name, arrived, devices):
    made = queue.Entry(f"/x/runs/{name}", {"devices": devices})
    made.data["arrived"] = arrived
    made.write()
    return made


def test_a_waiter_waits_only_for_earlier_waiters_that_want_one_of_its_gpus(folder):
    gpu0 = entry("gpu0", 1.0, "0")
    gpu1 = entry("gpu1", 2.0, "1")
    both = entry("both", 3.0, "0,1")
    anyone = entry("auto", 4.0, "auto")
    gpu1_later = entry("gpu1-later", 5.0, "1")
    found = queue.entries()
    ahead = {e.run: [a["run"] for a in e.ahead(found)] for e in (gpu0, gpu1, both, anyone, gpu1_later)}
    assert ahead == {"gpu0": [], "gpu1": [], "both": ["gpu0", "gpu1"], "auto": ["gpu0", "gpu1", "both"],
                     "gpu1-later": ["gpu1", "both", "auto"]}
    gpu0.write(state=queue.HOLDING, gpus=[0])  # a holder is not ahead in the queue: it holds
    assert [a["run"] for a in both.ahead(queue.entries())] == ["gpu1"]
    for made in (gpu0, gpu1, both, anyone, gpu1_later):
        made.remove()


# --- hostile entries ------------------------------------------------------------------------------

def make_fifo(path):
    os.mkfifo(path)


HOSTILE = {
    "arrived is text": (lambda p: p.write_text(json.dumps(data("x", 1.0) | {"arrived": "soon"})), "no arrival time"),
    "gpus is text": (lambda p: p.write_text(json.dumps(data("x", 1.0, state=queue.HOLDING) | {"gpus": "0"})),
                     "bad GPU list"),
    "count is a bool": (lambda p: p.write_text(json.dumps(data("x", 1.0) | {"want": {"devices": "0", "count": True}})),
                        "bad GPU request"),
    "arrival is infinite": (lambda p: p.write_text(json.dumps(data("x", 1.0)).replace("1.0", "-Infinity")),
                            "no arrival time"),
    "a list": (lambda p: p.write_text("[1, 2]"), "not a JSON object"),
    "deeply nested": (lambda p: p.write_text("[" * 2000 + "]" * 2000),
                      "not JSON"),
    "not UTF-8": (lambda p: p.write_bytes(b'{"run": "\xff"}'), "not JSON"),
    "huge": (lambda p: p.write_text(json.dumps(data("x", 1.0)) + " " * 10_000_000), "bytes, more than an entry"),
    "a FIFO": (make_fifo, "not a regular file"),
    "a directory": (lambda p: p.mkdir(), "not a regular file"),
    "a symlink to a file": (lambda p: p.symlink_to("/etc/passwd"), "a symbolic link"),
    "a symlink to a FIFO": (lambda p: (make_fifo(p.with_name("real-fifo")), p.symlink_to(p.with_name("real-fifo"))),
                            "a symbolic link"),
    "a dangling link": (lambda p: p.symlink_to("/nonexistent/entry.json"), "a symbolic link"),
    "a link to /dev/zero": (lambda p: p.symlink_to("/dev/zero"), "a symbolic link"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_entry_is_skipped_with_a_note_and_the_queue_still_works(folder, holder, case):
    make, why = HOSTILE[case]
    put(folder, "good", 5.0, holder, state=queue.HOLDING, gpus=[0])
    bad = folder / "1.000000-bad.json"
    make(bad)
    holder.hold(str(folder / "1.000000-bad.lock"))  # even held, it is not an entry
    notes = []
    started = time.monotonic()
    found = queue.entries(notes=notes)
    assert time.monotonic() - started < 1.0
    assert [e["run"] for e in found] == ["good"]
    assert len(notes) == 1 and notes[0].startswith(f"{bad} (") and why in notes[0], notes


def test_a_folder_with_too_many_files_is_read_only_so_far(folder):
    for number in range(queue.MAX_ENTRIES + 5):
        (folder / f"{number:06d}.json").write_text("{}")
    notes = []
    assert queue.entries(drop_stale=False, notes=notes) == []
    assert notes[0] == f"{folder}: {queue.MAX_ENTRIES + 5} entries, only the first {queue.MAX_ENTRIES} read"
    assert len(notes) == 1 + queue.MAX_ENTRIES  # each of those read was skipped: not an entry


@pytest.fixture
def open_folder(monkeypatch):
    """Our queue folder in a folder every user may enter (tmp_path's parents are private)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        monkeypatch.setattr(queue, "QUEUE_DIR", os.path.join(tmp, "q"))
        yield Path(queue.own_folder())


@pytest.mark.skipif(os.geteuid() != 0, reason="a file of another user in our folder needs root to make")
def test_a_file_of_another_user_or_a_lock_of_another_user_does_not_count(open_folder):
    folder = open_folder
    put(folder, "theirs", 1.0)
    os.chown(folder / "1.000000-theirs.json", 65534, 65534)
    notes = []
    assert queue.entries(notes=notes) == [] and "a file of " in notes[0]
    put(folder, "their-lock", 2.0)
    lock = folder / "2.000000-their-lock.lock"
    lock.write_text("")
    os.chown(lock, 65534, 65534)
    ready, tell = os.pipe()
    child = os.fork()
    if not child:  # "nobody" holds the lock: not the folder owner's, so it vouches for nothing
        try:
            import fcntl

            os.setgid(65534)
            os.setuid(65534)
            fcntl.lockf(os.open(lock, os.O_RDWR), fcntl.LOCK_EX)
            os.write(tell, b"k")
            signal.pause()
        finally:
            os._exit(1)
    try:
        os.close(tell)
        assert os.read(ready, 1) == b"k", "nobody could not take the lock"
        assert queue.entries(drop_stale=False) == []
        os.chown(lock, 0, 0)  # the same held lock as a file of the folder's owner counts: the owner was the test
        assert [e["run"] for e in queue.entries(drop_stale=False)] == ["their-lock"]
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# --- fuzzing the reader ---------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(string.printable, max_size=30)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
VALID = st.fixed_dictionaries({
    "run": st.text(string.ascii_letters + "-_.", min_size=1, max_size=40) | st.text(max_size=300),
    "state": st.sampled_from([queue.WAITING, queue.HOLDING]), "arrived": st.floats(0, 2e9),
    "gpus": st.lists(st.integers(0, 16), max_size=4),
    "want": st.fixed_dictionaries({"devices": st.sampled_from(["0", "1", "0,1", "auto"])},
                                  optional={"count": st.integers(1, 8)}),
    "user": st.sampled_from(["root", "someone"]), "pid": st.integers(1, 2 ** 22)})


@st.composite
def fields(draw):
    """An entry, well-formed or with one field taken away or replaced by anything."""
    found = draw(VALID)
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(found)))
        if draw(st.booleans()):
            del found[key]
        else:
            found[key] = draw(VALUES)
    return found


KINDS = st.just("json") | st.sampled_from(["bytes", "huge", "fifo", "dir", "link", "dangling", "link-fifo"])


def plant(folder: Path, name: str, kind: str, value, raw: bytes):
    path = folder / name
    if kind == "json":
        path.write_text(json.dumps(value, allow_nan=True))
    elif kind == "bytes":
        path.write_bytes(raw)
    elif kind == "huge":
        path.write_bytes(raw * (queue.MAX_BYTES // max(1, len(raw)) + 2) + b" ")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "link":
        path.symlink_to(folder / "target.json")
    elif kind == "dangling":
        path.symlink_to(folder / "no-such-file")
    else:
        os.mkfifo(folder / f"{name}.fifo")
        path.symlink_to(folder / f"{name}.fifo")


def check_shape(entry):
    assert set(entry) == {"run", "state", "arrived", "gpus", "want", "uid", "user", "path"}
    assert isinstance(entry["run"], str) and entry["run"].isprintable() and 0 < len(entry["run"]) <= 200
    assert entry["state"] in (queue.WAITING, queue.HOLDING) and isinstance(entry["arrived"], float)
    assert all(type(i) is int and 0 <= i < queue.MAX_GPUS for i in entry["gpus"])
    assert isinstance(entry["want"]["devices"], str)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KINDS, VALUES | fields(), st.binary(max_size=64), st.booleans()), min_size=1, max_size=6))
def test_no_entry_crashes_hangs_or_slows_the_reader(planted):
    """Random and malicious entries, each maybe with its lock held by a live process of ours: the
    reader returns at once, with only well-formed entries and a note for each one it skipped."""
    holder = LockHolder()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o755)
            kept = queue.QUEUE_DIR
            queue.QUEUE_DIR = os.path.join(tmp, "q")
            try:
                folder = Path(queue.own_folder())
                (folder / "target.json").write_text(json.dumps(data("target", 1.0)))
                for number, (kind, value, raw, held) in enumerate(planted):
                    plant(folder, f"{number}.json", kind, value, raw)
                    if held:
                        holder.hold(str(folder / f"{number}.lock"))
                notes = []
                done = []
                reader = threading.Thread(target=lambda: done.append(queue.entries(notes=notes)), daemon=True)
                started = time.monotonic()
                reader.start()
                reader.join(5)
                assert done, "the reader hung"
                assert time.monotonic() - started < 2.0
                event(f"entries found: {min(len(done[0]), 2)}")
                for found in done[0]:
                    check_shape(found)
                    assert stat.S_ISREG(os.lstat(found["path"]).st_mode)
                assert len(done[0]) + len(notes) <= len(planted) + 1
            finally:
                queue.QUEUE_DIR = kept
    finally:
        holder.close()


# --- what the run's check already found is not asked again ----------------------------------------

@pytest.fixture
def no_query(monkeypatch):
    """nvidia-smi (and the tie a query needs, which imports ctypes) must not be reached."""
    def asked(*args, **kwargs):
        raise AssertionError("nvidia-smi was asked again")

    monkeypatch.setattr(queue.gpu_info, "start_query", asked)
    monkeypatch.setattr(queue, "dies_with_this_process", asked)


def test_a_run_whose_check_found_no_gpu_holds_nothing_without_asking_nvidia_smi_again(folder, no_query):
    made, devices = queue.acquire("/x/runs/cpu", {"devices": "auto", "count": 1, "found_none": True}, False, 0,
                                  os.open(os.devnull, os.O_WRONLY))
    assert devices is None
    assert (made.data["state"], made.data["gpus"]) == (queue.HOLDING, [])
    assert [(e["run"], e["state"], e["gpus"]) for e in queue.entries()] == [("cpu", queue.HOLDING, [])]
    made.remove()


def test_a_run_whose_check_chose_free_gpus_holds_them_without_asking_again(folder, no_query):
    made, devices = queue.acquire("/x/runs/gpu", {"devices": "auto", "count": 1, "chosen": [1]}, False, 0,
                                  os.open(os.devnull, os.O_WRONLY))
    assert devices == "1" and (made.data["state"], made.data["gpus"]) == (queue.HOLDING, [1])
    made.remove()


def test_the_queue_is_told_what_the_check_found(monkeypatch):
    from remote_run.host.supervisor import queue_wanted

    asked = {"want": {"devices": "auto", "count": 1}, "wait": False}
    free = {"state": "ok", "gpus": [{"index": 0}], "chosen": [0], "busy": []}
    busy = {"state": "busy", "gpus": [{"index": 0}], "chosen": [], "busy": [0]}
    assert queue_wanted({"queue": asked}, {"gpu": free}) == dict(asked, chosen=[0])
    assert queue_wanted({"queue": asked, "hold": True}, {"gpu": free}) == dict(asked, chosen=[0], hold=True)
    for none in ({"state": "missing", "gpus": []}, {"state": "nodriver", "gpus": []}, {"state": "none", "gpus": []}):
        assert queue_wanted({"queue": asked}, {"gpu": none}) == dict(asked, found_none=True)
    assert queue_wanted({"queue": asked}, {"gpu": busy}) == asked  # --allow-busy or --wait: the queue asks again
    assert queue_wanted({"queue": asked}, {}) == asked  # nothing checked just now
    assert queue_wanted({}, {"gpu": free}) is None
