"""The chain in Invoke's own terms: run tasks declare sync, bootstrap and gpu-check as pre-tasks,
and the Chain executor runs each once, hands them the run task's flags and folds them."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Collection, Config, Program, task

from remote_run import chain
from remote_run.chain import Chain, RunTask
from remote_run.tasks import machine, ns, train, workspace

REPO = Path(__file__).resolve().parents[2]


def test_run_tasks_declare_the_steps_as_invoke_pre_tasks():
    for name in ("train-hlb", "train-david", "run"):
        run_task = ns[name]
        assert isinstance(run_task, RunTask), name
        assert run_task.pre == [workspace.sync, machine.bootstrap, machine.gpu_check], name
    assert machine.bootstrap.pre == [workspace.sync]
    assert not isinstance(ns["gpu-check"], RunTask)


def test_inv_and_the_program_both_choose_the_chain_executor():
    assert "executor_class: remote_run.chain.Chain" in (REPO / "invoke.yaml").read_text()
    from remote_run.cli import program

    assert program().executor_class is Chain


class Recorder:
    """A stand-in collection: steps that record how they were called and what the session said."""

    def __init__(self, monkeypatch):
        self.calls = []
        sessions = {}

        class FakeSession:
            run_follows = None

        monkeypatch.setattr(chain, "session", lambda c: sessions.setdefault(id(c.config), FakeSession()))
        self.session = lambda c: sessions[id(c.config)]
        recorder = self

        @task
        def sync(c):
            recorder.calls.append(("sync", {}, recorder.session(c).run_follows))

        @task(pre=[sync])
        def bootstrap(c, force=False):
            recorder.calls.append(("bootstrap", {"force": force}, recorder.session(c).run_follows))

        @task(name="gpu-check")
        def gpu_check(c, allow_busy=False, cpu_ok=False):
            recorder.calls.append(("gpu-check", {"allow_busy": allow_busy, "cpu_ok": cpu_ok}, recorder.session(c).run_follows))

        @task(klass=RunTask, pre=[sync, bootstrap, gpu_check])
        def train(c, allow_busy=False, cpu_ok=False, detach=False, sky=""):
            recorder.calls.append(("train", {"allow_busy": allow_busy, "sky": sky}, recorder.session(c).run_follows))

        @task
        def status(c):
            recorder.calls.append(("status", {}, recorder.session(c).run_follows))

        self.collection = Collection(sync, bootstrap, gpu_check, train, status)

    def run(self, *tasks):
        Chain(self.collection, Config()).execute(*tasks)
        return self.calls


def test_each_step_runs_once_however_many_tasks_name_it(monkeypatch):
    calls = Recorder(monkeypatch).run("sync", "bootstrap", ("train", {}))
    assert [name for name, _, _ in calls] == ["sync", "bootstrap", "gpu-check", "train"]


def test_steps_before_a_run_task_are_folded_into_it_and_others_run_at_once(monkeypatch):
    calls = Recorder(monkeypatch).run("sync", ("train", {}), "status")
    assert [(name, follows) for name, _, follows in calls] == [
        ("sync", True), ("bootstrap", True), ("gpu-check", True), ("train", False), ("status", False)]
    alone = Recorder(monkeypatch).run("sync", "gpu-check")
    assert [(name, follows) for name, _, follows in alone] == [("sync", False), ("gpu-check", False)]


def test_the_run_tasks_flags_reach_the_steps_that_take_them(monkeypatch):
    calls = Recorder(monkeypatch).run(("train", {"allow_busy": True, "cpu_ok": True, "detach": True}))
    assert ("gpu-check", {"allow_busy": True, "cpu_ok": True}, True) in calls


def test_flags_of_every_mention_of_a_step_are_combined(monkeypatch):
    calls = Recorder(monkeypatch).run(("gpu-check", {}), ("train", {"allow_busy": True}))
    assert [call for call in calls if call[0] == "gpu-check"] == [("gpu-check", {"allow_busy": True, "cpu_ok": False}, True)]
    calls = Recorder(monkeypatch).run(("bootstrap", {"force": True}), ("train", {}))
    assert [call for call in calls if call[0] == "bootstrap"] == [("bootstrap", {"force": True}, True)]


def test_a_run_on_a_cluster_leaves_the_ssh_steps_out(monkeypatch):
    calls = Recorder(monkeypatch).run(("train", {"sky": "gpu"}))
    assert [name for name, _, _ in calls] == ["train"]


def test_invoke_runs_the_chain_from_the_command_line(monkeypatch, capsys):
    recorder = Recorder(monkeypatch)
    program = Program(namespace=recorder.collection, executor_class=Chain)
    program.run(["inv", "gpu-check", "train", "--allow-busy"], exit=False)
    # gpu-check keeps the place it was named at; all three steps wait for train, which got the flag.
    assert [(name, args, follows) for name, args, follows in recorder.calls] == [
        ("gpu-check", {"allow_busy": True, "cpu_ok": False}, True), ("sync", {}, True), ("bootstrap", {"force": False}, True),
        ("train", {"allow_busy": True, "sky": ""}, False)]


@pytest.mark.parametrize("module", [workspace, machine, train])
def test_task_modules_end_in_their_own_collection(module):
    assert isinstance(module.ns, Collection) and module.ns.tasks
    for name in module.ns.tasks:
        assert ns[name] is module.ns[name]
