"""The `remote-run` console script: the same task collection, usable from any directory."""

from invoke import Argument, Program

from . import __version__, target


class RemoteRun(Program):
    def core_args(self):
        return super().core_args() + [
            Argument(names=("env-file",), help="read settings from this .env file (default: ./.env; env: REMOTE_RUN_ENV_FILE)"),
            Argument(names=("host", "H"), help="REMOTE_HOST for this invocation: an ssh_config alias, user@host[:port] or local"),
        ]

    def execute(self):
        target.cli_overrides["env_file"] = self.args["env-file"].value or None
        host = self.args.host.value
        target.cli_overrides["settings"] = {"REMOTE_HOST": host} if host else {}
        return super().execute()


def program() -> RemoteRun:
    from .tasks import ns

    return RemoteRun(namespace=ns, version=__version__, name="remote-run", binary="remote-run")


def main() -> None:
    program().run()
