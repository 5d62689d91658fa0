"""The chain in Invoke's own terms: run tasks declare sync, bootstrap and gpu-check as pre-tasks,
and the Chain executor plans each once, combines the flags of every mention, and hands the plan
to the run task after them (or carries it out at once when none follows)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from invoke import Collection, Config, Program, task

from remote_run import preflight as preflight_mod
from remote_run import steps
from remote_run.chain import Chain, RunTask, Step
from remote_run.options import RunOptions
from remote_run.preflight import Preflight
from remote_run.tasks import machine, ns, train, workspace

REPO = Path(__file__).resolve().parents[2]


def test_run_tasks_declare_the_steps_as_invoke_pre_tasks():
    for name in ("train-hlb", "train-david", "run"):
        run_task = ns[name]
        assert isinstance(run_task, RunTask), name
        assert run_task.pre == [workspace.sync, machine.bootstrap, machine.gpu_check], name
    assert machine.bootstrap.pre == [workspace.sync]
    assert not isinstance(ns["gpu-check"], RunTask) and isinstance(ns["gpu-check"], Step)


def test_inv_and_the_program_both_choose_the_chain_executor():
    assert "executor_class: remote_run.chain.Chain" in (REPO / "invoke.yaml").read_text()
    from remote_run.cli import program

    assert program().executor_class is Chain


class Recorder:
    """A stand-in collection: steps whose plans record the flags they were given, a run task that
    records the plan it got, and what the steps carried out at once."""

    def __init__(self, monkeypatch):
        self.calls = []
        recorder = self

        class FakeSession:
            settings = None

        monkeypatch.setattr("remote_run.session.session", lambda c: FakeSession())
        monkeypatch.setattr("remote_run.chain.start_early", lambda sess, plan, mode, forwards=(): None)
        monkeypatch.setattr(steps, "carry_out",
                            lambda sess, plan, planned=None: recorder.calls.append(("carried out", plan)))
        monkeypatch.setattr("remote_run.hosts.each_host", lambda sess, step: [step(sess)])

        def planned(name, plan):
            def record(preflight, settings, **flags):
                recorder.calls.append((name, flags))
                return plan(preflight, settings, **flags)
            return record

        recording = {name: planned(name, plan) for name, plan in preflight_mod.PLANS.items()}
        monkeypatch.setattr(preflight_mod, "PLANS", recording)

        @task(klass=Step, name="sync")
        def sync(c, only=None, dry_run=False, force=False, checksum=False):
            raise AssertionError("the chain plans a step instead of calling it")

        @task(klass=Step, pre=[sync], name="bootstrap")
        def bootstrap(c, force=False):
            raise AssertionError("the chain plans a step instead of calling it")

        @task(klass=Step, name="gpu-check")
        def gpu_check(c, allow_busy=False, cpu_ok=False, docker=False):
            raise AssertionError("the chain plans a step instead of calling it")

        @task(klass=RunTask, pre=[sync, bootstrap, gpu_check], shared=["allow_busy", "cpu_ok", "detach", "sky"])
        def train(c, epochs="1", *, options, preflight):
            recorder.calls.append(("train", options, preflight))

        @task
        def status(c):
            recorder.calls.append(("status",))

        self.collection = Collection(sync, bootstrap, gpu_check, train, status)

    def run(self, *tasks):
        Chain(self.collection, Config()).execute(*tasks)
        return self.calls


def names(calls):
    return [call[0] for call in calls]


def test_each_step_is_planned_once_however_many_tasks_name_it(monkeypatch):
    calls = Recorder(monkeypatch).run("sync", "bootstrap", ("train", {}))
    assert names(calls) == ["sync", "bootstrap", "gpu-check", "train"]
    assert calls[-1][2] == Preflight(sync=True, bootstrap=True, gpu=True)


def test_steps_before_a_run_task_go_to_it_and_others_are_carried_out_at_once_together(monkeypatch):
    calls = Recorder(monkeypatch).run("sync", ("train", {}), "status")
    assert names(calls) == ["sync", "bootstrap", "gpu-check", "train", "status"]
    alone = Recorder(monkeypatch).run("sync", "gpu-check", "status", "bootstrap")
    assert alone[2] == ("carried out", Preflight(sync=True, gpu=True))  # one plan: a warm one is one command
    assert names(alone) == ["sync", "gpu-check", "carried out", "status", "bootstrap", "carried out"]
    assert alone[-1] == ("carried out", Preflight(bootstrap=True))  # its pre-task, sync, came earlier: once is enough


def test_the_run_task_gets_its_own_flags_as_one_options_value(monkeypatch):
    calls = Recorder(monkeypatch).run(("train", {"allow_busy": True, "cpu_ok": True, "detach": True, "epochs": "3"}))
    [(name, options, preflight)] = [call for call in calls if call[0] == "train"]
    assert options == RunOptions(allow_busy=True, cpu_ok=True, detach=True)
    assert preflight.for_run(options.check(type("S", (), {"workspace": REPO})())).allow_busy is True


def test_flags_of_every_mention_of_a_step_are_combined(monkeypatch):
    calls = Recorder(monkeypatch).run(("gpu-check", {}), ("train", {"allow_busy": True}),
                                      ("gpu-check", {"cpu_ok": True}))
    assert [call for call in calls if call[0] == "gpu-check"] == [("gpu-check", {"cpu_ok": True})]
    assert calls[-1][2] == Preflight(sync=True, bootstrap=True, gpu=True, cpu_ok=True)
    calls = Recorder(monkeypatch).run(("bootstrap", {"force": True}), ("train", {}))
    assert calls[-1][2].rebuild is True


def test_a_run_on_a_cluster_leaves_the_ssh_steps_out(monkeypatch):
    calls = Recorder(monkeypatch).run(("train", {"sky": "gpu"}))
    assert names(calls) == ["train"] and calls[0][2] == Preflight()


def test_invoke_runs_the_chain_from_the_command_line(monkeypatch):
    recorder = Recorder(monkeypatch)
    program = Program(namespace=recorder.collection, executor_class=Chain)
    program.run(["inv", "gpu-check", "--cpu-ok", "train", "--allow-busy"], exit=False)
    # gpu-check keeps the place it was named at; the steps wait for train, which gets the plan.
    assert names(recorder.calls) == ["gpu-check", "sync", "bootstrap", "train"]
    assert recorder.calls[0] == ("gpu-check", {"allow_busy": False, "cpu_ok": True, "docker": False})
    assert recorder.calls[-1][1] == RunOptions(allow_busy=True, cpu_ok=False, detach=False, sky="")
    assert recorder.calls[-1][2] == Preflight(sync=True, bootstrap=True, gpu=True, cpu_ok=True)


def test_run_tasks_take_the_shared_flags_from_one_declaration():
    for name in ("train-hlb", "train-david", "run"):
        arguments = {arg.name for arg in ns[name].get_arguments()}
        only_run = ("torchrun", "nproc") if name != "run" else ()  # the trainers are one process on one GPU
        assert {f.name for f in RunOptions.flags() if f.name != "sky" and f.name not in only_run} <= arguments, name
        assert not arguments & set(only_run), name
        assert "options" not in arguments and "preflight" not in arguments
        shorts = [flag for arg in ns[name].get_arguments() for flag in arg.names if len(flag) == 1]
        assert all(flag.isalnum() for flag in shorts), shorts  # never `-`: `--` would read as a flag
    assert "sky" in {arg.name for arg in ns["train-hlb"].get_arguments()}
    assert "sky" not in {a.name for a in ns["run"].get_arguments()}
    own = inspect.signature(train.train_hlb.body).parameters
    assert "allow_busy" not in own and "only" not in own  # declared once, in RunOptions


@pytest.mark.parametrize("module", [workspace, machine, train])
def test_task_modules_end_in_their_own_collection(module):
    assert isinstance(module.ns, Collection) and module.ns.tasks
    for name in module.ns.tasks:
        assert ns[name] is module.ns[name]
