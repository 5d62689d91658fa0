"""The chain's steps (sync, bootstrap, gpu-check) as a plan: what the host must have before a run.

Each mention of a step, on the command line or as a run task's pre-task, adds to a Preflight
(plan_sync, plan_bootstrap, plan_gpu_check check their flags first); remote_run.chain hands the
plan to the run task after the steps, or to remote_run.steps.carry_out when none follows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import Failure


@dataclass(frozen=True)
class Preflight:
    """The steps a run needs first, with their flags, as the chain's steps planned them."""

    sync: bool = False
    only: tuple = ()  # --only paths, checked (settings.sync_paths); empty: SYNC_ONLY
    force_sync: bool = False  # past SYNC_MAX_MB / SYNC_MAX_FILES
    checksum: bool = False
    take_over: bool = False  # sync into a REMOTE_DIR that mirrors another checkout, which it then mirrors
    dry_run: bool = False  # `sync --dry-run`: say what a sync would do, change nothing
    bootstrap: bool = False
    rebuild: bool = False  # `bootstrap --force`
    extras: tuple = ()  # --extra NAME: replaces BOOTSTRAP_EXTRAS (remote_run.environment.choose)
    groups: tuple = ()  # --group NAME: replaces BOOTSTRAP_GROUPS
    frozen: bool = False  # --frozen: uv.lock as it is
    gpu: bool = False
    allow_busy: bool = False
    cpu_ok: bool = False
    docker: bool = False  # `gpu-check --docker`

    def plus(self, *, only=(), extras=(), groups=(), **flags) -> Preflight:
        """This plan and one more mention of a step: --only paths, extras and groups add up, the
        other flags hold if any mention gave them."""
        def joined(name, more):
            return tuple(dict.fromkeys((*getattr(self, name), *more)))

        return replace(self, only=joined("only", only), extras=joined("extras", extras),
                       groups=joined("groups", groups),
                       **{name: getattr(self, name) or bool(value) for name, value in flags.items()})

    def for_run(self, options) -> Preflight:
        """The plan with a run task's own flags (remote_run.options.RunOptions, checked)."""
        if self.dry_run:
            raise Failure("`sync --dry-run` only shows what a sync would do",
                          "run it on its own, without a run task after it")
        return self.plus(only=options.only, force_sync=options.force_sync, checksum=options.checksum,
                         take_over=options.take_over, allow_busy=options.allow_busy, cpu_ok=options.cpu_ok,
                         extras=options.extra, groups=options.group, frozen=options.frozen)


CHAIN = Preflight(sync=True, bootstrap=True, gpu=True)  # a run task's steps, when no chain planned them


def plan_sync(preflight: Preflight, settings, only=(), dry_run=False, force=False, checksum=False,
              take_over=False) -> Preflight:
    from .settings import sync_paths

    paths = tuple(sync_paths("--only", settings.workspace, only)) if only else ()
    return preflight.plus(sync=True, only=paths, dry_run=dry_run, force_sync=force, checksum=checksum,
                          take_over=take_over)


def plan_bootstrap(preflight: Preflight, settings, force=False, extra=(), group=(), frozen=False) -> Preflight:
    from .environment import choose

    plan = preflight.plus(bootstrap=True, rebuild=force, extras=tuple(extra or ()), groups=tuple(group or ()),
                          frozen=frozen)
    if extra or group or frozen:  # bad names fail here, before anything runs (the settings' own: in prepare)
        choose(settings, plan.extras, plan.groups, plan.frozen)
    return plan


def plan_gpu_check(preflight: Preflight, settings, allow_busy=False, cpu_ok=False, docker=False) -> Preflight:
    return preflight.plus(gpu=True, allow_busy=allow_busy, cpu_ok=cpu_ok, docker=docker)


PLANS = {"sync": plan_sync, "bootstrap": plan_bootstrap, "gpu-check": plan_gpu_check}  # by task name (chain.Step)
