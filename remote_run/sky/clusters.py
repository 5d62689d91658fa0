"""Cluster operations: launch or reuse (`sky-up`), tear down (`sky-down`), look (`sky-status`)."""

from __future__ import annotations

from ..errors import Failure, Kind
from ..host import exits
from ..output import say
from ..shell import join
from . import cli, names, staging, taskyaml


def up(host, settings, *, accel: str, experiment: str | None, idle_minutes: int, down: bool, infra: str | None,
       nodes: int, replace: bool) -> str:
    """Launch (or reuse) the cluster for ``accel``; writes .cluster_name_<target> only on success."""
    accel, target = names.check_accelerator(accel)
    experiment = names.check_experiment(experiment) if experiment is not None else settings.workspace.name
    names.check_infra(infra)
    cli.require_sky()
    staging.refuse_env_upload(host, settings.workspace)
    path = names.name_file(settings, target)
    old = names.read_name(settings, target)
    name = names.cluster_name(experiment, accel)
    if old and not replace:
        state = cli.statuses(host, [old]).get(old)
        if state == "UP":
            say(f"reusing cluster {old} (UP) named in {path}; pass --replace for a new one")
            return old
        if state:
            say(f"reusing cluster {old} ({state}) named in {path}: sky launch brings it up; "
                "pass --replace for a new one")
            name = old
        else:
            say(f"{path.name} names {old}, which SkyPilot does not know (torn down?); launching {name}")
    from ..environment import choose

    choice = choose(settings)  # BOOTSTRAP_EXTRAS/GROUPS/FROZEN, as bootstrap takes them; else the playbook's
    if not (choice.extras or choice.groups or choice.frozen):
        taskyaml.check_workspace_extras(settings.workspace, target)
    if old and replace:
        say(f"--replace: tearing down {old} (named in {path.name}): sky down {old} -y")
        _down(host, old)
        path.unlink(missing_ok=True)
    yaml_path = taskyaml.staging_dir(name) / "task.yaml"
    yaml_path.write_text(taskyaml.task_yaml(name=name, workdir=settings.workspace, accel=accel, target=target,
                                            nodes=nodes, infra=infra,
                                            cuda_visible_devices=settings.cuda_visible_devices, choice=choice),
                       encoding="utf-8")
    argv = cli.launch_argv(name, accel, yaml_path, idle_minutes=idle_minutes, down=down, infra=infra, nodes=nodes)
    say(join(argv))
    code, text, interrupted = cli.stream(host, argv)
    if interrupted:
        raise Failure(f"Ctrl+C: sky launch interrupted, {path.name} not written",
                      f"the cluster {name} may still come up: "
                      f"check `sky status {name}`, tear it down with `sky down {name} -y`",
                      Kind.RUN, code=exits.INTERRUPTED)
    if code:
        raise Failure(f"sky launch failed (exit {code}): {cli.last_line(text)}",
                      f"{path.name} not written (check `sky status`)", Kind.ENVIRONMENT, code=code)
    path.write_text(name + "\n", encoding="utf-8")
    say(f"cluster {name} is up; its name is in {path}")
    return name


def _down(host, name: str) -> None:
    code, text, _ = cli.stream(host, ["sky", "down", name, "-y"])
    if code:
        raise Failure(f"sky down {name} failed (exit {code}): {cli.last_line(text)}",
                      f"run `sky down {name} -y` again or check `sky status`", Kind.ENVIRONMENT, code=code)


def down(host, settings, target: str) -> None:
    """`sky down` the cluster named in .cluster_name_<target>, then remove the file."""
    names.check_target(target)
    path = names.name_file(settings, target)
    name = names.read_name(settings, target)
    if not name:
        say(f"nothing to tear down for {target}: {path} is missing or empty")
        return
    cli.require_sky()
    _down(host, name)
    path.unlink(missing_ok=True)
    say(f"tore down {name} and removed {path.name}")


def status_rows(host, settings) -> list[tuple[str, str, str]]:
    """(target, cluster name, SkyPilot status) for each name file."""
    named = [(target, names.read_name(settings, target)) for target in names.TARGETS]
    named = [(target, name) for target, name in named if name]
    if not named:
        return []
    cli.require_sky()
    found = cli.statuses(host, (name for _, name in named))
    return [(target, name, found.get(name, "not found")) for target, name in named]
