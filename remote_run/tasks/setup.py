"""Tasks that set a workspace up and check a host: init (writes the .env), doctor."""

import os
import sys

from invoke import Collection

from ..chain import task
from ..errors import Failure, Kind
from ..output import say
from ..session import session


@task(name="doctor", help={"json_": "print the checks as JSON, for scripts (same exit status)"})
def doctor(c, json_=False):
    """Check everything a run needs, here and on the host (one remote command); one line each, with the fix."""
    from .. import doctor as doctoring

    doctoring.conclude(doctoring.examine(session(c).host), as_json=json_)


@task(help={
    "host": "REMOTE_HOST: an alias of your ~/.ssh/config (init lists them), user@host[:port], or local",
    "workspace": "WORKSPACE: the checkout to sync and run (default: the current directory)",
    "remote_dir": "REMOTE_DIR on the host (default: /tmp/<workspace name>_remote)",
    "torch_index_url": "TORCH_INDEX_URL "
                       "(default: the CUDA wheel index that fits the host's driver, when doctor sees one)",
    "yes": "ask nothing: the flags, and defaults for the rest (scripts, CI)",
    "force": "update an existing .env: its REMOTE_HOST, WORKSPACE, REMOTE_DIR, TORCH_INDEX_URL lines "
             "(other lines are kept)",
})
def init(c, host="", workspace="", remote_dir="", torch_index_url="", yes=False, force=False):
    """Write a .env for this workspace (asks, or takes flags with --yes), then run doctor."""
    from .. import doctor as doctoring
    from .. import envfile, transport
    from .. import settings as settings_mod

    options = c.config.get("remote_run") or {}
    path = envfile.env_path(options)
    if path.exists() and not force:
        raise Failure(f"{path} exists",
                      f"run again with --force to update its {', '.join(envfile.WRITTEN)} lines (other lines are kept)")
    if not yes and not sys.stdin.isatty():
        raise Failure("init asks its questions on a terminal and stdin is not one",
                      "pass --yes (with --host, --workspace, --remote-dir, --torch-index-url as needed)")
    values = envfile.answers(c, path, envfile.Questions(ask=not yes), host=host or options.get("host") or "",
                             workspace=workspace, remote_dir=remote_dir, torch_index_url=torch_index_url)
    chosen = envfile.check(values, path)
    content = envfile.text(values,
                           path.read_text(encoding="utf-8", errors="surrogateescape") if path.exists() else None)
    back = envfile.read_back(content)
    if any(back.get(key) != value for key, value in values.items()):
        raise Failure(f"the .env init would write does not read back as written ({values}); nothing was written",
                      "write it by hand", Kind.ENVIRONMENT)
    envfile.write(path, content)
    say(f"wrote {path}: " + ", ".join(f"{key}={value}" for key, value in values.items()))
    for line in envfile.ignore(path, chosen.workspace):
        say(line)
    overriding = [key for key in values if os.environ.get(key) not in (None, values[key])]
    if overriding:
        say(f"the environment sets {', '.join(overriding)}, which wins over the .env; unset it to use what was written")
    fresh = settings_mod.load(env_file=str(path),
                              overrides={"REMOTE_HOST": options["host"]} if options.get("host") else None)
    doctoring.conclude(doctoring.examine(transport.Host(fresh, c)))


ns = Collection(doctor, init)
