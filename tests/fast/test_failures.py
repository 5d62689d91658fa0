"""Failures carry structure: the problem, the fix and the kind, which picks the exit status; callers
read the fields, never the prose. And the one writer and line splitter both sides use."""

from __future__ import annotations

import os
import tempfile

import pytest
from invoke.runners import Result
from support.fakehost import FakeHost

from remote_run import doctor, gpu, ports, settings, sync
from remote_run.errors import Failure, Kind
from remote_run.host import exits
from remote_run.host.files import write_atomic
from remote_run.transport import dropped, failure


@pytest.fixture
def host(tmp_path):
    """A FakeHost for l1 whose every command ends as ``answer`` says: (stdout, stderr, status)."""
    s = settings.load(environ={"WORKSPACE": str(tmp_path), "REMOTE_HOST": "l1", "REMOTE_DIR": "/tmp/rrt_failures",
                               "REMOTE_RUN_CONTROL_DIR": tempfile.mkdtemp(prefix="rr-cm-", dir="/tmp")})
    fake = FakeHost(s, lambda argv, stdin: fake.answer)
    fake.answer = ("", "", 0)
    return fake


def test_a_failure_is_one_line_problem_then_fix_and_its_kind_is_the_exit_status():
    found = Failure("REMOTE_DIR='x' is not valid", "use an absolute path", Kind.USAGE)
    assert (found.message, found.line, str(found)) == (
        "remote-run: REMOTE_DIR='x' is not valid; use an absolute path",
        "REMOTE_DIR='x' is not valid; use an absolute path", found.message)
    assert [Failure("p", kind=kind).code for kind in Kind] == [2, 69, 78, 75, 1, 4]
    assert Failure("sky launch failed", kind=Kind.ENVIRONMENT, code=7).code == 7  # a tool's own status, passed on


def test_an_unreachable_host_is_unreachable_with_opensshs_problem_and_the_fix_apart():
    found = failure("l1", "ssh: connect to host 10.0.0.9 port 22: Connection refused\r\n")
    assert found.kind is Kind.UNREACHABLE and found.code == 69
    assert (found.problem, found.fix) == ("cannot reach l1: connection refused",
                                          "check that the machine is up and its SSH port is right (`ssh l1`)")
    assert failure("l1", "some other text") is None


def test_a_refused_connection_ends_the_command_and_doctor_shows_its_fields(host):
    host.answer = ("", "ssh: connect to host l1 port 22: Connection refused\n", exits.SSH)
    with pytest.raises(Failure) as info:
        host.run(["true"])
    assert info.value.kind is Kind.UNREACHABLE
    host.master_running = lambda: False
    [check], data = doctor.host_checks(host)
    assert (check.status, check.text, check.fix, data) == (doctor.FAIL, info.value.problem, info.value.fix, None)


@pytest.mark.parametrize("status,kind", [(exits.REFUSED, Kind.ENVIRONMENT), (exits.USAGE, Kind.USAGE),
                                         (exits.PREFLIGHT, Kind.GPU), (exits.ENVIRONMENT, Kind.ENVIRONMENT),
                                         (exits.FAILED, Kind.ENVIRONMENT)])
def test_the_host_programs_own_line_keeps_its_words_and_its_exit_status_gives_the_kind(host, status, kind):
    said = "REMOTE_DIR=/tmp/x exists and is not a directory; choose another REMOTE_DIR"
    found = host.failed(Result(stderr=f"remote-run: starting\nremote-run: {said}\n", exited=status), "cleaning on")
    assert (found.line, found.kind) == (said, kind)


def test_no_python_on_the_host_is_the_environments_problem(host):
    found = host.failed(Result(stderr="sh: 1: python3: not found\n", exited=exits.MISSING), "checking")
    assert (found.problem, found.fix, found.kind) == ("python3 is not installed on l1",
                                                      "install Python 3 there or set REMOTE_PYTHON", Kind.ENVIRONMENT)
    found = host.failed(Result(stderr="Traceback ...\nKeyError: 'x'\n", exited=1), "checking")
    assert found.kind is Kind.ENVIRONMENT and found.problem == "checking l1 failed (exit 1): KeyError: 'x'"


def test_rsync_errors_are_a_refused_remote_dir_a_dropped_link_or_rsyncs_last_line(host):
    refused = sync.rsync_error(host, Result(stderr="remote-run: REMOTE_DIR=/tmp/x is a symbolic link (to /etc);"
                                                   " choose another REMOTE_DIR\n"
                                                   "rsync: connection unexpectedly closed\n", exited=12), "sync")
    assert refused.kind is Kind.ENVIRONMENT and refused.line.startswith("REMOTE_DIR=/tmp/x is a symbolic link")
    cut = sync.rsync_error(host, Result(stderr="client_loop: send disconnect: Broken pipe\n", exited=255), "sync")
    assert (cut.problem, cut.fix, cut.kind) == (
        dropped("l1"), "run the command again (a sync resumes where it stopped)", Kind.UNREACHABLE)
    other = sync.rsync_error(host, Result(stderr="rsync: [sender] read errors mapping \"x\": Input/output error (5)\n",
                                          exited=23), "sync of ws")
    assert other.kind is Kind.ENVIRONMENT
    assert other.problem.startswith("sync of ws failed (rsync exit 23): rsync: [sender] read errors")


def test_gpu_problems_are_the_gpus_and_a_refusal_names_the_flag_that_passes_it():
    busy = {"state": "busy", "busy": [0],
            "gpus": [{"index": 0, "processes": [{"pid": 42, "name": "python", "memory": 900}]}]}
    found = gpu.refused(busy, "l1", "0", 45)
    assert found.kind is Kind.GPU and found.code == 75
    assert found.problem == "GPU 0 on l1 is in use by another job (GPU 0: pid 42 python (900 MiB))"
    assert found.fix.endswith("or pass --allow-busy")
    missing = gpu.refused({"state": "missing", "gpus": []}, "l1", "", 45)
    assert missing.kind is Kind.GPU and missing.fix.endswith("(or pass --cpu-ok to run on the CPU)")
    failed = gpu.refused({"state": "failed", "gpus": [], "text": "exit 9"}, "l1", "", 45)
    assert failed.fix == "pass --cpu-ok to run on the CPU"
    assert gpu.failure({"state": "ok", "gpus": [{}]}, "l1", "", 45) is None


def test_a_settings_error_is_usage_naming_key_value_and_why_with_the_fix_apart(tmp_path):
    with pytest.raises(Failure) as info:
        settings.load(environ={"WORKSPACE": str(tmp_path / "nope"), "REMOTE_HOST": "local"})
    assert info.value.kind is Kind.USAGE
    assert (info.value.problem, info.value.fix) == (
        f"WORKSPACE={str(tmp_path / 'nope')!r} is not valid: it does not exist", "point it at your checkout")


def test_a_port_in_use_here_asks_for_another_local_port():
    found = ports.busy(ports.Forward(6006, 6006))
    assert found.kind is Kind.USAGE and found.problem.startswith("local port 6006 is already in use")
    assert "--port 6006:LOCAL" in found.fix


def test_the_control_dir_must_be_private_an_environment_problem(tmp_path):
    from remote_run import transport

    folder = tempfile.mkdtemp(prefix="rr-cm-", dir="/tmp")
    try:
        os.chmod(folder, 0o777)
        s = settings.load(environ={"WORKSPACE": str(tmp_path), "REMOTE_HOST": "l1", "REMOTE_RUN_CONTROL_DIR": folder})
        with pytest.raises(Failure) as info:
            transport.control_dir(s)
        assert (info.value.kind, info.value.fix) == (Kind.ENVIRONMENT, f"chmod 700 {folder}")
        assert doctor.check_control_dir(s).status == doctor.FAIL
    finally:
        os.rmdir(folder)


# ------------------------------------------------------------------------ one writer, one splitter

def test_write_atomic_gives_the_mode_from_the_first_byte_and_leaves_nothing_when_it_fails(tmp_path, monkeypatch):
    (tmp_path / "ws").mkdir()
    path = tmp_path / "ws" / ".env"
    write_atomic(str(path), b"TOKEN=1\n", 0o600)
    assert path.read_bytes() == b"TOKEN=1\n" and path.stat().st_mode & 0o777 == 0o600
    seen = []
    real_replace = os.replace

    def look(src, dst):
        seen.append(os.stat(src).st_mode & 0o777)  # the temporary file, full, before it takes the name
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", look)
    with pytest.raises(OSError):
        write_atomic(str(path), b"TOKEN=2\n", 0o600)
    monkeypatch.setattr(os, "replace", real_replace)
    assert seen == [0o600] and path.read_bytes() == b"TOKEN=1\n"
    assert sorted(p.name for p in path.parent.iterdir()) == [".env"]


def test_rsyncs_progress_is_cut_into_lines_at_carriage_returns_across_pieces():
    import io

    out = io.StringIO()
    line = sync.ProgressLine(out)
    for piece in ("     32,768  10%  1.00MB/s    0:00:01\r  65,5", "36  20%  2.00MB/s    0:00:01\rsent 12 bytes\n"):
        line.write(piece)
    assert out.getvalue().count("\rremote-run: sending ") == 2
    assert out.getvalue().endswith("65,536  20%  2.00MB/s    0:00:01\033[K")
