"""The chain of the design card in Invoke's own terms: run tasks declare sync, bootstrap and
gpu-check as pre-tasks (``Task.pre``), and this executor runs them.

Invoke's own executor would run each pre-task with its defaults, at once, and only dedupe calls
with equal arguments. A run task needs more, so it gets its own executor (chosen by the
``tasks.executor_class`` setting, which `inv` reads from invoke.yaml and the `remote-run`
program sets itself):

- each step once per invocation, whoever names it (``inv sync bootstrap train-hlb``), with the
  flags of every mention combined (``inv gpu-check --allow-busy train-hlb``);
- the steps build a plan (remote_run.steps.Preflight) instead of acting: the plan of the steps
  before a run task is handed to it, which carries it out beside or inside its one remote
  command; steps with no run task after them are carried out together, at once;
- with ``--sky`` the run goes to a cluster and the SSH steps are left out.
"""

from __future__ import annotations

import inspect

import invoke
from invoke import Call, Executor, Task

from .options import RunOptions, short_flag
from .session import CONFIG_KEY


class Flags(Task):
    """A task whose short flags follow remote_run.options.SHORT_FLAGS, the same in every task."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if self.auto_shortflags:
            letter = short_flag(name, taken_names)
            opts["names"] = [opts["names"][0], *([letter] if letter else [])]
        return opts


def task(*args, **kwargs):
    """invoke's @task, making a Flags task unless told another class."""
    kwargs.setdefault("klass", Flags)
    return invoke.task(*args, **kwargs)


class Step(Flags):
    """One of the chain's steps (sync, bootstrap, gpu-check): plan() adds it, with its flags, to a
    plan (remote_run.preflight.PLANS, by the task's name); the body carries out that plan alone,
    for a call that does not go through the Chain."""

    def plan(self, preflight, settings, **flags):
        from .preflight import PLANS

        return PLANS[self.name](preflight, settings, **flags)

    def carry_out(self, c, **flags) -> None:
        """The body of a step: its plan, carried out at once on each host."""
        from . import hosts, steps
        from .preflight import Preflight
        from .session import session

        hosts.each_host(session(c), lambda sess: steps.carry_out(sess, self.plan(Preflight(), sess.settings, **flags)))


class RunTask(Flags):
    """A task that runs work on the host after the chain's steps (train-hlb, train-david, run, rerun).

    It declares its own flags; the flags every run task shares are the fields of
    remote_run.options.RunOptions, added to its arguments here with their help, and its body gets
    them as one ``options`` value, and the steps' plan as ``preflight`` (None when no chain
    planned it: then it carries out every step). ``shared``: the names of the fields it takes.
    """

    def __init__(self, body, shared=None, **kwargs):
        fields = RunOptions.flags()
        self.shared = tuple(shared) if shared is not None else tuple(f.name for f in fields if f.name != "sky")
        mine = [f for f in fields if f.name in self.shared]
        kwargs["help"] = {**{f.name: f.metadata["help"] for f in mine}, **(kwargs.get("help") or {})}
        kwargs["iterable"] = [*(kwargs.get("iterable") or []), *(f.name for f in mine if f.metadata["iterable"])]
        super().__init__(body, **kwargs)

    def argspec(self, body):
        """The body's own parameters, then the shared flags in RunOptions' order."""
        own = [p for p in super().argspec(body).parameters.values() if p.name not in ("options", "preflight")]
        shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                    default=None if f.metadata["iterable"] else f.default)
                  for f in RunOptions.flags() if f.name in self.shared]
        return inspect.Signature(own + shared)

    def __call__(self, c, *args, preflight=None, **kwargs):
        given = {name: kwargs.pop(name) for name in self.shared if name in kwargs}
        return super().__call__(c, *args, options=RunOptions.of(given), preflight=preflight, **kwargs)


class Chain(Executor):
    def expand_calls(self, calls):
        expanded = []
        for call in calls:
            if isinstance(call, Task):
                call = Call(call)
            if not (isinstance(call.task, RunTask) and call.kwargs.get("sky")):
                expanded.extend(self.expand_calls(call.pre))
            expanded.append(call)
            expanded.extend(self.expand_calls(call.post))
        return expanded

    def dedupe(self, calls):
        """One call per task, where it first appears; boolean flags of later mentions are or-ed in."""
        kept: dict[Task, Call] = {}
        for call in calls:
            first = kept.get(call.task)
            if first is None:
                kept[call.task] = call
                continue
            for key, value in call.kwargs.items():
                if isinstance(value, bool):
                    first.kwargs[key] = first.kwargs.get(key, False) or value
        return list(kept.values())

    def execute(self, *tasks):
        from .preflight import Preflight
        from .session import session

        calls = self.dedupe(self.expand_calls(self.normalize(tasks)))
        results = {}
        planned = Preflight()
        try:
            for index, call in enumerate(calls):
                self.config.load_collection(self.collection.configuration(call.called_as))
                self.config.load_shell_env()
                context = call.make_context(self.config)
                later = calls[index + 1:]
                if isinstance(call.task, Step):
                    sess = session(context)
                    planned = call.task.plan(planned, sess.settings, **call.kwargs)
                    if any(isinstance(each.task, RunTask) for each in later) or (
                            later and isinstance(later[0].task, Step)):
                        continue  # a run carries the plan out, or the next step adds to it
                    environment = start_early(sess, planned, "check")
                    from .hosts import each_host
                    from .steps import carry_out

                    # each_host calls it at once, but bind this step's plan anyway: the loop rebinds `planned`
                    results[call.task] = each_host(
                        sess, lambda one, plan=planned, made=environment: carry_out(one, plan, made))
                    planned = Preflight()
                elif isinstance(call.task, RunTask):
                    results[call.task] = call.task(context, *call.args, preflight=planned, **call.kwargs)
                    planned = Preflight()
                else:
                    results[call.task] = call.task(context, *call.args, **call.kwargs)
        finally:
            sess = self.config.get(CONFIG_KEY)
            if sess is not None:
                sess.host.close_prestarted()  # a run's command that nothing took over (a failure, Ctrl+C)
        return results


def start_early(sess, plan, mode: str, forwards=()):
    """Start the host program's ``mode`` command (a run's `start`, the steps' `check`) now, its
    payload to follow on stdin (transport.Host.prestart): the SSH channel, the host's Python and the
    program's imports then overlap what is left to do here. Only once this machine has refused all
    it can refuse without the host: the project's extras and groups (environment.planned, made
    first), a busy --port, and an --only the sync's rules leave out (the sync must be early: its plan
    is then made beside the command anyway). Not for several hosts, `local`, --dry-run or a full or
    forced sync. Returns environment.planned() of ``plan`` for the steps to use on this host (None
    with several hosts: each is planned for its own)."""
    from . import sync
    from .environment import planned as environment_of

    made = environment_of(sess.host, plan)
    s = sess.settings
    if len(s.hosts) != 1:
        return None
    if forwards:
        from .ports import check_free

        check_free(forwards)
    if sess.host.is_local or plan.dry_run or (plan.sync and (
            plan.checksum or plan.rebuild or sync.early(s, plan.only or None) is None)):
        return made
    sess.host.prestart(mode, own_session=mode == "start")
    return made
