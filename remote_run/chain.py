"""The chain of the design card in Invoke's own terms: run tasks declare sync, bootstrap and
gpu-check as pre-tasks (``Task.pre``), and this executor runs them.

Invoke's own executor would run each pre-task with its defaults, at once, and only dedupe calls
with equal arguments. A run task needs three more things, so it gets its own executor (chosen by
the ``tasks.executor_class`` setting, which `inv` reads from invoke.yaml and the `remote-run`
program sets itself):

- each step once per invocation, whoever names it (``inv sync bootstrap train-hlb``), with the
  flags of every mention combined (``inv gpu-check train-hlb --allow-busy`` allows a busy GPU);
- the run task's flags reach the steps that take them (``--allow-busy``, ``--cpu-ok``); with
  ``--sky`` the run goes to a cluster and the SSH steps are left out;
- steps followed by a run task only note what is wanted: the run task carries them out after
  checking its own flags, beside or inside its one remote command (remote_run.steps.prepare).
"""

from __future__ import annotations

from invoke import Call, Executor, Task

from .session import session


class RunTask(Task):
    """A task that runs work on the host after the chain's steps (train-hlb, train-david, run)."""


class Chain(Executor):
    def expand_calls(self, calls):
        expanded = []
        for call in calls:
            if isinstance(call, Task):
                call = Call(call)
            if isinstance(call.task, RunTask):
                if not call.kwargs.get("sky"):
                    for pre in call.pre:
                        expanded.extend(self.expand_calls([self._step(pre, call)]))
            else:
                expanded.extend(self.expand_calls(call.pre))
            expanded.append(call)
            expanded.extend(self.expand_calls(call.post))
        return expanded

    @staticmethod
    def _step(pre, run: Call) -> Call:
        """A pre-task call given the run call's flags that the step also takes."""
        step = pre.task if isinstance(pre, Call) else pre
        kwargs = dict(pre.kwargs) if isinstance(pre, Call) else {}
        names = {arg.attr_name for arg in step.get_arguments()}
        kwargs.update({key: value for key, value in run.kwargs.items() if key in names})
        return Call(step, kwargs=kwargs)

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
        calls = self.dedupe(self.expand_calls(self.normalize(tasks)))
        results = {}
        for index, call in enumerate(calls):
            self.config.load_collection(self.collection.configuration(call.called_as))
            self.config.load_shell_env()
            context = call.make_context(self.config)
            sess = session(context)
            sess.run_follows = any(isinstance(later.task, RunTask) for later in calls[index + 1:])
            sess.coming = {later.task.name for later in calls[index + 1:]}
            results[call.task] = call.task(context, *call.args, **call.kwargs)
        return results
