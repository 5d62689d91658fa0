"""Runs on a SkyPilot cluster, for remote_run.pipeline: `sky exec` starts and streams the job, and
Ctrl+C cancels it (SkyPilot's own Ctrl+C only stops the stream while the job keeps the GPU)."""

from __future__ import annotations

import dataclasses
import shutil

from ..errors import Failure, Kind
from ..host import exits
from ..output import say
from ..pipeline import Backend, Ending, Tee
from ..settings import parse_host
from ..shell import summary
from ..trainers import RunSpec
from ..transport import Host
from . import cli, names, staging


class ClusterRuns(Backend):
    """Runs on the cluster named in .cluster_name_<target>.

    A spec with files (a trainer's runner files) runs from a staged copy of the workspace with the
    files written in; one without (`sky-exec`) runs from the workspace itself, as the playbook does.
    The trainer's options are flags in its argv, quoted into the one command line by
    cli.playbook_command.
    """

    def __init__(self, sess, target: str, choice=None):
        from ..environment import choose

        self.settings = sess.settings
        self.choice = choice if choice is not None else choose(sess.settings)  # the run's --extra/--group/--frozen
        self.target = names.check_target(target)
        self.name = names.require_name(self.settings, self.target)
        cli.require_sky()
        # `sky` and the staging rsync run here, through the one transport and its record of commands.
        self.host = Host(dataclasses.replace(self.settings, hosts=(parse_host("local"),)), sess.host.context)
        self.workdir = None

    @property
    def label(self) -> str:
        return f"sky:{self.name}"

    def runner_path(self, path: str, run_id: str) -> str:
        return f"~/sky_workdir/{path}"

    def prepare(self, spec: RunSpec) -> None:
        if not spec.files:
            staging.refuse_env_upload(self.host, self.settings.workspace)

    def launch_group(self, group_id: str, members: list, *, detach: bool) -> None:
        """A detached group is submitted at once: the cluster's job queue runs the jobs in turn.
        An attached one is launched run by run (follow_member)."""
        if detach:
            for run_id, spec in members:
                self.launch(run_id, spec, Tee(show=False), detach=True)

    def follow_member(self, run_id: str, spec: RunSpec, output: Tee, *, ctrl_c=None) -> Ending:
        return self.launch(run_id, spec, output, detach=False, ctrl_c=ctrl_c)

    def launch(self, run_id: str, spec: RunSpec, output: Tee, *, detach: bool, ctrl_c=None) -> Ending:
        # A run that brings files gets its own staged copy: `sky exec` uploads it, then it is removed.
        self.workdir = staging.stage(self.host, self.settings, spec.files) if spec.files else self.settings.workspace
        command = cli.playbook_command(self.settings, self.target, spec.argv[1:], self.choice)
        argv = cli.exec_argv(self.name, self.workdir, command, detach=detach, forward=self.settings.remote_env,
                             variables=spec.env)
        say(f"{spec.task} on {self.label}: {command}  [run {run_id}]")
        self.commands.append(summary(argv))
        try:
            result = self.host.local(argv, stream=output, err_stream=output, env=self.settings.forwarded_env())
        finally:
            if self.workdir != self.settings.workspace:
                shutil.rmtree(self.workdir, ignore_errors=True)
        text = output.getvalue()
        job = cli.job_id(text)
        interrupted = False
        stop_requested = bool(ctrl_c and ctrl_c.requested)  # set by the signal handler itself, before sky ends
        if stop_requested:
            if detach:
                say(f"Ctrl+C with --detach: nothing cancelled; see `sky queue {self.name}`")
                interrupted = True
            else:
                cli.cancel(self.host, self.name, text, self.commands)
        code = result.exited
        if code and not job and ("ClusterDoesNotExist" in text or "does not exist" in text):
            raise Failure(f"cluster {self.name} (from {names.name_file(self.settings, self.target).name}) "
                          "does not exist any more",
                          "run `inv sky-up --accel …` again", Kind.ENVIRONMENT, code=code)
        if code and not job and "ClusterNotUpError" in text:
            raise Failure(f"cluster {self.name} is not up (stopped?)", "run `inv sky-up --accel …` to bring it back",
                          Kind.ENVIRONMENT, code=code)
        if interrupted:
            code = exits.INTERRUPTED
        elif stop_requested and not code:
            code = exits.INTERRUPTED
        remote_log = f"sky logs {self.name} {job}" if job else f"sky queue {self.name}"
        return Ending(code, detached=detach and not interrupted and code == 0, interrupted=interrupted,
                      remote_log=remote_log, log=cli.plain(text),
                      detached_hint=f"job {job} runs on {self.name}; follow it with `sky logs {self.name} {job}`, "
                                    f"stop it with `sky cancel {self.name} {job} -y`")

    def stop(self, run_id: str, first_ctrl_c: bool = False) -> None:
        """Nothing to do at once: the terminal's Ctrl+C reaches `sky` too and ends its stream, and
        launch() then cancels the job."""
