"""The `remote-run` console script: the same task collection, usable from any directory."""

import os
import sys

from invoke import Argument, Program

from . import __version__


class RemoteRun(Program):
    def core_args(self):
        return super().core_args() + [
            Argument(names=("env-file",),
                     help="read settings from this .env file (default: ./.env; env: REMOTE_RUN_ENV_FILE)"),
            Argument(names=("host", "H"),
                     help="REMOTE_HOST for this invocation: an ssh_config alias, user@host[:port] or local"),
        ]

    def update_config(self, merge=True):
        super().update_config(merge=False)
        # The highest layer, like every other flag: remote_run.session reads these.
        self.config.remote_run = {"env_file": self.args["env-file"].value or None, "host": self.args.host.value or None}
        if merge:
            self.config.merge()


def program() -> RemoteRun:
    from .chain import Chain
    from .tasks import ns

    return RemoteRun(namespace=ns, version=__version__, name="remote-run", binary="remote-run", executor_class=Chain)


def main() -> None:
    try:
        program().run()
    except BrokenPipeError:
        # The reader went away (`remote-run -l | head`): not an error of ours; keep Python from
        # complaining again when it flushes stdout on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
