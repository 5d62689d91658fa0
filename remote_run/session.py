"""One invocation's shared state: the settings and the host its commands go to."""

from __future__ import annotations

import dataclasses

CONFIG_KEY = "remote_run_session"


class Session:
    """The settings and the host that the tasks of one `inv`/`remote-run` invocation share."""

    def __init__(self, settings, context):
        from .transport import Host

        self.settings = settings
        self.host = Host(settings, context)

    def use_host(self, host) -> None:
        """Work on ``host``, one of REMOTE_HOST's list, from now on."""
        from .transport import Host

        others = tuple(h for h in self.settings.hosts if h != host)
        self.settings = dataclasses.replace(self.settings, hosts=(host, *others))
        self.host = Host(self.settings, self.host.context)

    def __copy__(self):
        # invoke copies config values whenever it merges its layers; an invocation has one session.
        return self


def session(c) -> Session:
    """The session of the invocation ``c`` belongs to, made (settings loaded) on first use."""
    found = c.config.get(CONFIG_KEY)
    if found is None:
        from . import settings as settings_mod

        options = c.config.get("remote_run") or {}
        host = options.get("host")
        loaded = settings_mod.load(env_file=options.get("env_file"), overrides={"REMOTE_HOST": host} if host else None)
        found = Session(loaded, c)
        c.config[CONFIG_KEY] = found
    return found
