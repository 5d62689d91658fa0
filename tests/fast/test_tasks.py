"""Task and pipeline logic in-process: invoke's MockContext for the commands a task sends, and a
fake host for the run pipeline. No network, no root, no processes."""

from __future__ import annotations

import json
import re
import shlex
import tempfile

import pytest
from invoke import Config, MockContext
from invoke.runners import Result
from support.fakehost import FakeHost, launcher_args, mode

from remote_run import pipeline, settings, ship, steps, trainers, transport
from remote_run import session as session_mod
from remote_run.chain import Chain
from remote_run.errors import Failure, Kind
from remote_run.host import exits
from remote_run.host import gpus as gpus_host
from remote_run.host.control import CONTROL
from remote_run.preflight import Preflight
from remote_run.tasks import machine, ns, workspace

H100 = "0, NVIDIA H100 80GB HBM3, GPU-aaa, {used}, 81559, {util}\n"
CHECK = re.compile(r".* check['\s]", re.S)  # the launcher's `check` mode, however ssh quotes it


@pytest.fixture
def env(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    (ws / "scripts").mkdir(parents=True)
    (ws / "scripts" / "hello.py").write_text("print('RESULT_HELLO answer=42')\n")
    monkeypatch.chdir(ws)
    monkeypatch.setenv("REMOTE_HOST", "l1")
    monkeypatch.setenv("REMOTE_DIR", "/tmp/rrt_fast_remote")
    monkeypatch.setenv("REMOTE_RUN_CONTROL_DIR", tempfile.mkdtemp(prefix="rr-cm-", dir="/tmp"))
    # A command started early (Host.prestart) is a process of its own, out of MockContext's reach:
    # these tests answer every command through the mock (tests/integration/test_prestart.py starts them).
    monkeypatch.setattr(transport.Host, "prestart", lambda self, mode, **kwargs: None)
    return ws


def gpu_report(busy: bool, allow_busy=False, require=True) -> dict:
    gpus = gpus_host.parse(H100.format(used=12000 if busy else 1, util=97 if busy else 0),
                               "GPU-aaa, 4242, python train.py, 11990\n" if busy else "")
    report = {"state": "busy" if busy else "ok", "gpus": gpus, "chosen": [0], "busy": [0] if busy else [], "text": ""}
    report["go"] = allow_busy if busy else True
    return report


def mock(run=None) -> MockContext:
    return MockContext(config=Config(), run=run or {})


def payload_of(call) -> dict:
    """The launcher payload a command carried: on its command line (inside ssh's), or on stdin."""
    if call.kwargs.get("in_stream"):
        return json.loads(call.kwargs["in_stream"].read())
    return json.loads(shlex.split(shlex.split(call.args[0])[-1])[-1])


# --------------------------------------------------------------------------- with MockContext

def test_gpu_check_refuses_a_busy_gpu_naming_the_job_and_the_flag(env, capsys):
    c = mock({CHECK: Result(json.dumps({"gpu": gpu_report(busy=True), "ok": False}), exited=exits.PREFLIGHT)})
    with pytest.raises(Failure) as info:
        machine.gpu_check(c)
    assert info.value.kind is Kind.GPU and info.value.code == exits.PREFLIGHT
    assert "in use by another job" in info.value.problem and "pid 4242" in info.value.problem
    assert "--allow-busy" in info.value.message
    assert "4242 python train.py (11990 MiB)" in capsys.readouterr().out  # the table, before the refusal
    [call] = c.run.call_args_list
    command = call.args[0]
    assert command.startswith("ssh -o BatchMode=yes") and " -- l1 " in command and "ControlPath=/tmp/rr-cm-" in command
    assert call.kwargs["timeout"] == 60.0 and call.kwargs["hide"] is True  # bounded by REMOTE_RUN_CHECK_TIMEOUT
    assert payload_of(call)["gpu"] == {"devices": "0", "count": 1, "require": True, "allow_busy": False, "wait": False,
                                       "limit": 45}
    assert call.kwargs["in_stream"] is False  # no secrets: on the command line, which saves ssh a round trip


def test_gpu_check_allows_a_busy_gpu_when_asked(env, capsys):
    c = mock({CHECK: Result(json.dumps({"gpu": gpu_report(busy=True, allow_busy=True), "ok": True}))})
    machine.gpu_check(c, allow_busy=True)
    out, err = capsys.readouterr()
    assert "NVIDIA H100" in out and "GPU 0 is busy; going on (--allow-busy)" in err
    assert payload_of(c.run.call_args)["gpu"]["allow_busy"] is True


def test_each_step_runs_once_per_invocation(env, capsys):
    c = mock({CHECK: Result(json.dumps({"gpu": gpu_report(busy=False), "ok": True}))})
    session_mod.session(c)  # the invocation's session, sending through the mock
    Chain(ns, c.config).execute(("gpu-check", {}), ("gpu-check", {"allow_busy": True}))
    assert c.run.call_count == 1
    assert payload_of(c.run.call_args)["gpu"]["allow_busy"] is True  # the flags of both mentions


WHOSE = re.compile(r".* whose['\s]", re.S)


def test_clean_without_yes_says_what_it_would_delete_and_whose_runs_and_only_asks(env):
    answer = {"exists": True, "runs": 3, "checkout": {"id": "0" * 32, "from": "laptop:/home/ann/proj", "synced": 0}}
    c = mock({WHOSE: Result(stdout=json.dumps(answer) + "\n")})
    with pytest.raises(Failure) as info:
        workspace.clean(c)
    assert info.value.kind is Kind.USAGE and "l1:/tmp/rrt_fast_remote" in info.value.problem
    assert "3 runs of another checkout (laptop:/home/ann/proj, synced 1970-01-01 00:00 UTC)" in info.value.problem
    assert "--yes --take-over" in info.value.fix
    assert c.run.call_count == 1  # the question, read-only: nothing is deleted without --yes


def test_an_unknown_alias_is_one_line_from_ssh_s_own_message(env):
    c = mock({CHECK: Result(stderr="ssh: Could not resolve hostname l1: Name or service not known\n", exited=255)})
    with pytest.raises(Failure) as info:
        machine.gpu_check(c)
    assert "cannot resolve host 'l1'" in info.value.message


def test_a_step_followed_by_a_run_only_adds_to_its_plan(env):
    c = mock()
    s = session_mod.session(c).settings
    plan = workspace.sync.plan(Preflight(), s)
    plan = machine.bootstrap.plan(plan, s, force=True)
    plan = machine.gpu_check.plan(plan, s, cpu_ok=True)
    assert c.run.call_count == 0
    assert plan == Preflight(sync=True, bootstrap=True, rebuild=True, gpu=True, cpu_ok=True)


# ------------------------------------------------------------------------ with a fake host

class Machine:
    """Answers launcher commands like a host whose checks say ``report``; records rsync calls."""

    def __init__(self, report: dict, trailer=True, run_output="hello\nRESULT_HELLO answer=42\n", exit_status=0):
        self.report, self.trailer, self.run_output, self.exit_status = report, trailer, run_output, exit_status
        self.payloads = []

    def __call__(self, argv, stdin):
        which = mode(argv)
        if which == "start":
            args = launcher_args(argv)
            self.payloads.append(json.loads(args[1] if len(args) > 1 else stdin))
            report = self.report if len(self.payloads) == 1 else {"ok": True}
            if not report.get("ok"):
                return (CONTROL + json.dumps(report) + "\n", CONTROL + json.dumps({"exit": exits.PREFLIGHT}) + "\n",
                        exits.PREFLIGHT)
            err = "remote-run: run X started (pid 7)\n" + (
                CONTROL + json.dumps({"exit": self.exit_status, "state": "finished"}) + "\n" if self.trailer else "")
            return CONTROL + json.dumps(report) + "\n" + self.run_output, err, self.exit_status if self.trailer else 255
        if which == "kill":
            return "", "", 0
        if argv[0] == "git":
            return "", "", 128
        raise AssertionError(f"unexpected command {argv}")


def host_session(env, respond):
    sess = session_mod.Session(settings.load(), context=None)
    sess.host = FakeHost(sess.settings, respond)
    return sess


GPU_ONLY = Preflight(gpu=True)  # sync and bootstrap are tested above; here: the run itself


def spec():
    return trainers.RunSpec(task="run", argv=["python3", "scripts/hello.py"], options={"script": "scripts/hello.py"})


def test_a_warm_run_is_one_command_carrying_the_checks(env, capsys):
    machine_ = Machine({"ok": True, "gpu": gpu_report(busy=False)})
    sess = host_session(env, machine_)
    code = pipeline.execute(pipeline.HostRuns(sess, preflight=GPU_ONLY), sess.settings, [spec()]).code
    out, err = capsys.readouterr()
    assert code == 0 and "RESULT_HELLO answer=42" in out and "NVIDIA H100" in out
    assert [mode(a) for a in sess.host.seen if mode(a)] == ["start"]
    payload = machine_.payloads[0]
    assert payload["gpu"]["require"] is True and payload["argv"] == ["python3", "scripts/hello.py"]
    record = json.loads(next((env / "var" / "runs").glob("*_run/result.json")).read_text())
    assert record["outcome"] == "finished" and record["result"]["metrics"] == {"answer": 42}
    assert record["gpu"][0]["index"] == 0
    assert record["argv"] == ["python3", "scripts/hello.py"]
    assert "- **Ran:** `python3 scripts/hello.py`" in next((env / "var" / "runs").glob("*_run/log.md")).read_text()


def test_a_busy_gpu_refuses_before_anything_starts_and_leaves_no_record(env):
    sess = host_session(env, Machine({"ok": False, "gpu": gpu_report(busy=True)}))
    with pytest.raises(Failure) as info:
        pipeline.execute(pipeline.HostRuns(sess, preflight=GPU_ONLY), sess.settings, [spec()])
    assert info.value.kind is Kind.GPU and "in use by another job" in info.value.problem
    assert not any((env / "var" / "runs").iterdir())


def test_a_connection_lost_mid_run_is_recorded_and_says_how_to_reattach(env):
    sess = host_session(env, Machine({"ok": True, "gpu": gpu_report(busy=False)}, trailer=False))
    with pytest.raises(Failure) as info:
        pipeline.execute(pipeline.HostRuns(sess, preflight=GPU_ONLY), sess.settings, [spec()])
    [folder] = (env / "var" / "runs").iterdir()
    assert info.value.kind is Kind.UNREACHABLE and info.value.code == exits.UNREACHABLE
    assert "dropped" in info.value.problem and f"inv logs --follow --run {folder.name}" in info.value.fix
    assert json.loads((folder / "result.json").read_text())["outcome"] == "connection lost"


def test_a_run_that_fails_passes_its_exit_status_on(env):
    sess = host_session(env, Machine({"ok": True, "gpu": gpu_report(busy=False)}, exit_status=3,
                                     run_output="RESULT_EXIT code=3\n"))
    assert pipeline.execute(pipeline.HostRuns(sess, preflight=GPU_ONLY), sess.settings, [spec()]).code == 3
    record = json.loads(next((env / "var" / "runs").glob("*_run/result.json")).read_text())
    assert (record["outcome"], record["exit_status"]) == ("failed", 3)


@pytest.mark.parametrize("ending, stop_requested, expected", [
    (pipeline.Ending(0), False, "finished"),
    (pipeline.Ending(2), False, "failed"),
    (pipeline.Ending(0, detached=True), False, "detached"),
    (pipeline.Ending(None, lost=True), True, "connection lost"),
    (pipeline.Ending(130, interrupted=True), True, "interrupted"),
    (pipeline.Ending(143), True, "killed"),
    (pipeline.Ending(1, state="killed"), False, "killed"),
    (pipeline.Ending(130), False, "killed"),
], ids=["finished", "failed", "detached", "lost", "interrupted", "ctrl-c", "killed-elsewhere", "exit-130"])
def test_the_one_place_that_decides_an_outcome(ending, stop_requested, expected):
    assert pipeline.outcome(ending, stop_requested) == expected


def test_the_header_is_taken_before_any_output_is_shown(capsys):
    seen = []
    output = pipeline.Tee()
    demux = pipeline.Demux(output, lambda header: seen.append((header, output.getvalue())))
    for piece in (CONTROL + '{"ok": tr', 'ue}\nfirst line\n', "second\n"):
        demux.write(piece)
    assert seen == [({"ok": True}, "")] and output.getvalue() == "first line\nsecond\n"
    errors = pipeline.Stderr(show=False)
    errors.write("remote-run: run X started\n" + CONTROL + '{"exit": 3, "sta')
    errors.write('te": "failed"}\n')
    assert errors.trailer == {"exit": 3, "state": "failed"}


def test_steps_prepare_folds_every_check_into_the_run_when_the_tree_is_unchanged(env, monkeypatch):
    sess = session_mod.Session(settings.load(), context=None)
    sess.host = FakeHost(sess.settings, lambda argv, stdin: (_ for _ in ()).throw(AssertionError(argv)))
    monkeypatch.setattr(steps.syncing, "plan", lambda s, **flags: steps.syncing.Plan("clean", [], {}, "f" * 32, {}))
    prepared, pending = steps.prepare(sess, Preflight(sync=True, bootstrap=True, gpu=True, allow_busy=True))
    assert sorted(pending.payload()) == ["env", "gpu", "sync"] and pending.gpu["allow_busy"] is True
    assert prepared == steps.Prepared()  # nothing done yet
    assert sess.host.seen == []  # nothing sent yet: it all rides with the run's command


# ------------------------------------------------------------------ the launcher the host keeps

class Keeping:
    """A host whose loader finds no kept launcher until the keeper has run (or never, when its
    home cannot be written); answers `status` once the launcher runs."""

    def __init__(self, storable=True):
        self.storable, self.kept = storable, False

    def __call__(self, argv, stdin):
        assert mode(argv) == "status", argv
        if argv[4] == ship.LOADER and not self.kept:
            return "", ship.MISSING + ("true" if self.storable else "false") + "}\n", exits.NO_PROGRAM
        if argv[4] == ship.keeper():
            self.kept = self.storable
        return "no runs\n", CONTROL + '{"exit": 0}\n', 0


def test_an_ssh_host_is_sent_the_launcher_once_then_runs_what_it_kept(env):
    machine_ = Keeping()
    host = FakeHost(settings.load(), machine_)
    for _ in range(3):
        assert host.quick(host.program("status", "/tmp/rrt_fast_remote")).stdout == "no runs\n"
    programs = [argv[4] for argv in host.seen]
    assert programs == [ship.LOADER, ship.keeper(), ship.LOADER, ship.LOADER]
    # what a warm command carries (its Python floor's guard included)
    assert len(ship.LOADER) < 1400 < 60000 < len(ship.keeper())
    assert host.seen[0][5] == ship.version() and host.seen[1][6] == "keep"
    assert launcher_args(host.seen[1]) == ["status", "/tmp/rrt_fast_remote"]


def test_the_carried_host_program_fits_in_one_argument_with_room_for_growth():
    """The command that carries the program is one argument of ssh here and of the host's shell
    there: Linux refuses one over 128 KiB (MAX_ARG_STRLEN). Today about 93 KB; this fails while
    there is still room to act (a smaller program, or the program itself on stdin)."""
    carried = shlex.join(ship.carrying(ship.remote_argv("python3", "status", "/tmp/rrt_fast_remote")))
    assert len(carried) < 112 * 1024


def test_a_payload_too_long_to_go_with_the_program_moves_to_stdin_when_the_program_is_carried(env):
    """A command is sized as it is first sent (with the loader); only a host that has not kept the
    program makes it carry the program, and then a payload that no longer fits goes on stdin, ahead
    of what stdin already had (an early check's verdict)."""
    got = []

    def respond(argv, stdin):
        if argv[4] == ship.LOADER:
            return "", ship.MISSING + "true}\n", exits.NO_PROGRAM
        stream = stdin.stream()
        got.append(stream.read() + stream.read())
        return "", CONTROL + '{"exit": 0}\n', 0

    host = FakeHost(settings.load(), respond)
    payload = {"filler": "x" * 20000}
    argv, stdin = host.program_with("check", payload)
    assert stdin is None  # it fits on the command line beside the loader
    host.quick(argv, stdin=transport.Deferred("", lambda: '{"full": true}\n'))
    loader, carried = host.seen
    assert launcher_args(loader) == ["check", json.dumps(payload)]
    assert carried[4] == ship.keeper() and launcher_args(carried) == ["check"]
    assert len(shlex.join(host.full_argv(ship.carrying(argv)))) > transport.ARGUMENT_LIMIT  # why it moved
    first, second = got[0].splitlines()
    assert json.loads(first) == payload and json.loads(second) == {"full": True}


def test_a_host_that_cannot_keep_the_launcher_is_sent_it_every_time_without_asking_again(env):
    host = FakeHost(settings.load(), Keeping(storable=False))
    for _ in range(3):
        assert host.quick(host.program("status", "/tmp/rrt_fast_remote")).stdout == "no runs\n"
    assert [argv[4] for argv in host.seen] == [ship.LOADER, ship.keeper(), ship.keeper(), ship.keeper()]


def test_this_machine_runs_the_launcher_itself(env, monkeypatch):
    monkeypatch.setenv("REMOTE_HOST", "local")
    argv = transport.Host(settings.load(), context=None).program("status", "/tmp/x")
    assert argv[1:3] == ["-I", "-S"] and "from remote_run.host.__main__ import run" in argv[-3]
    assert argv[-2:] == ["status", "/tmp/x"]
