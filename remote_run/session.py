"""One invocation's shared state: the settings, the host, and where the chain's steps stand."""

from __future__ import annotations

from . import lazy
from . import settings as settings_mod
from . import transport

CONFIG_KEY = "remote_run_session"


class Session:
    """Everything the tasks of one `inv`/`remote-run` invocation share.

    ``done`` maps a step (sync, bootstrap, gpu) to what it found, so each runs once however many
    tasks ask for it. ``wanted`` holds steps that a later run task will carry out inside its own
    remote command (``run_follows``, set by remote_run.chain.Chain), with the flags they were given.
    """

    def __init__(self, settings: settings_mod.Settings, context):
        self.settings = settings
        self.host = transport.Host(settings, context)
        self.done: dict[str, object] = {}
        self.wanted: dict[str, dict] = {}
        self.run_follows: bool | None = None  # None: no Chain executor, so nobody knows
        self.coming: set[str] = set()  # the names of the tasks after this one (Chain executor only)

    def use_host(self, host) -> None:
        """Work on ``host``, one of REMOTE_HOST's list, from now on (nothing done there yet)."""
        import dataclasses

        others = tuple(h for h in self.settings.hosts if h != host)
        self.settings = dataclasses.replace(self.settings, hosts=(host, *others))
        self.host = transport.Host(self.settings, self.host.context)
        self.done.clear()

    def __copy__(self):
        # invoke copies config values whenever it merges its layers; an invocation has one session.
        return self


def session(c) -> Session:
    """The session of the invocation ``c`` belongs to, made (settings loaded) on first use."""
    found = c.config.get(CONFIG_KEY)
    if found is None:
        lazy.load()
        options = c.config.get("remote_run") or {}
        host = options.get("host")
        loaded = settings_mod.load(env_file=options.get("env_file"), overrides={"REMOTE_HOST": host} if host else None)
        found = Session(loaded, c)
        c.config[CONFIG_KEY] = found
    return found
