"""The remote Python environment: one command that builds REMOTE_DIR/.venv or proves it current
(the host side is remote_run/host/installer.py), and the check a run's command carries.

What the workspace asks for decides how it is built (``Project``): a pyproject.toml with uv.lock
is the project's own `uv sync --locked` (or --frozen); a pyproject.toml without a lock is the
project installed editable with its extras; requirements.txt is installed as it is. TORCH_PACKAGES
and PIP_PACKAGES come on top, except what the project names itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Failure
from .project import read_pyproject
from .settings import Settings, project_names

FORMAT = 2  # bump when the bootstrap changes what it builds
# Seconds without a line from the installer before the host sends a progress line: on a terminal
# they redraw one line, elsewhere (CI logs) each is a line of its own.
TICK_TERMINAL = 1
TICK_LOG = 5
INPUTS = ("pyproject.toml", "uv.lock", ".python-version", "requirements.txt")  # the files the stamp covers
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(text: str) -> str:
    """The normalized project name a requirement line names ('' for options and blank lines)."""
    match = _NAME.match(text)
    return normalize(match[1]) if match and not text.lstrip().startswith("-") else ""


def _toml(path: Path) -> dict:
    from .project import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise Failure(f"{path} cannot be read as TOML ({exc})", "fix it (`uv lock` writes it again)") from None


@dataclass(frozen=True)
class Project:
    """What the workspace says about its environment."""

    kind: str = ""  # "lock" (pyproject.toml and uv.lock), "pyproject", "requirements", or "" (nothing)
    extras: tuple = ()  # declared in [project.optional-dependencies]
    groups: tuple = ()  # declared in [dependency-groups]
    indexes: tuple = ()  # the urls of [[tool.uv.index]]
    python: dict = field(default_factory=dict)  # {"wanted": "3.10", "by": ".python-version"}
    # {name: [(requirement, source)]}: what the project itself asks for, and where
    names: dict = field(default_factory=dict)

    def pins(self, name: str) -> list:
        return self.names.get(normalize(name), [])


def read_project(workspace: Path, extras=(), groups=()) -> Project:
    """The workspace's pyproject.toml (a [project] table), uv.lock, .python-version and requirements.txt;
    ``extras`` and ``groups``: the chosen ones, whose requirements count as the project's."""
    lock, requirements = workspace / "uv.lock", workspace / "requirements.txt"
    names: dict = {}
    python = _python_version(workspace)
    data = read_pyproject(workspace)
    if "project" not in data:
        if requirements.is_file():
            _add_lines(names, requirements.read_text(errors="replace").splitlines(), "requirements.txt")
            return Project("requirements", python=python, names=names)
        return Project(python=python)
    meta = data["project"]
    declared = meta.get("optional-dependencies") or {}
    groups_declared = data.get("dependency-groups") or {}
    if not python and meta.get("requires-python"):
        python = {"wanted": str(meta["requires-python"]), "by": "requires-python in pyproject.toml"}
    _add_lines(names, meta.get("dependencies") or [], "pyproject.toml")
    for extra in extras:
        _add_lines(names, declared.get(extra) or [], f"pyproject.toml's {extra} extra")
    for group in groups:
        _add_lines(names, [r for r in groups_declared.get(group) or [] if isinstance(r, str)],
                   f"pyproject.toml's {group} group")
    indexes = tuple(str(index["url"]) for index in (data.get("tool", {}).get("uv", {}).get("index") or [])
                    if isinstance(index, dict) and index.get("url"))
    if lock.is_file():
        default = data.get("tool", {}).get("uv", {}).get("default-groups", ["dev"])
        default = list(groups_declared) if default == "all" else list(default)
        _add_lines(names, _locked(_toml(lock), str(meta.get("name", "")), extras, [*groups, *default]), "uv.lock")
        return Project("lock", tuple(declared), tuple(groups_declared), indexes, python, names)
    if requirements.is_file():
        _add_lines(names, requirements.read_text(errors="replace").splitlines(), "requirements.txt")
    return Project("pyproject", tuple(declared), tuple(groups_declared), indexes, python, names)


def _locked(lock: dict, project: str, extras, groups) -> list:
    """What `uv sync` installs from this lock with these extras and groups: the packages the
    project reaches, as `name==version`."""
    packages: dict = {}
    for package in lock.get("package") or []:
        if isinstance(package, dict) and package.get("name"):
            packages.setdefault(normalize(package["name"]), []).append(package)
    reached, todo = set(), [(normalize(project), None, ())]
    while todo:
        name, version, wanted = todo.pop()
        for package in packages.get(name, []):
            if version is not None and package.get("version") != version:
                continue
            key = (name, package.get("version"), wanted)
            if key in reached:
                continue
            reached.add(key)
            edges = list(package.get("dependencies") or [])
            optional = package.get("optional-dependencies") or {}
            for extra in (*wanted, *(extras if name == normalize(project) else ())):
                edges += optional.get(extra) or []
            if name == normalize(project):
                for group in groups:
                    edges += (package.get("dev-dependencies") or {}).get(group) or []
            todo += [(normalize(edge["name"]), edge.get("version"), tuple(edge.get("extra") or ()))
                     for edge in edges if isinstance(edge, dict) and edge.get("name")]
    return sorted({f"{name}=={version}" if version else name for name, version, _ in reached
                   if name != normalize(project)})


def _add_lines(names: dict, lines, source: str) -> None:
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        name = requirement_name(requirement)
        if name:
            names.setdefault(name, []).append((requirement, source))


def _python_version(workspace: Path) -> dict:
    path = workspace / ".python-version"
    if not path.is_file():
        return {}
    wanted = next((line.strip() for line in path.read_text(errors="replace").splitlines()
                   if line.strip() and not line.startswith("#")), "")
    return {"wanted": wanted, "by": ".python-version"} if wanted else {}


@dataclass(frozen=True)
class Choice:
    """The extras and groups to install, and whether the lock is taken as it is (--frozen)."""

    extras: tuple = ()
    groups: tuple = ()
    frozen: bool = False


NOTHING = Choice()


def choose(settings: Settings, extras=(), groups=(), frozen=False) -> Choice:
    """Flags (--extra, --group) replace BOOTSTRAP_EXTRAS/GROUPS; each name is checked against the
    workspace's pyproject.toml before anything runs."""
    extras = project_names("--extra", extras, "extra") if extras else settings.bootstrap_extras
    groups = project_names("--group", groups, "dependency group") if groups else settings.bootstrap_groups
    frozen = bool(frozen or settings.bootstrap_frozen)
    if not (extras or groups or frozen):
        return Choice()
    project = read_project(settings.workspace)
    where = settings.workspace / "pyproject.toml"
    if project.kind not in ("lock", "pyproject"):
        asked = "--frozen needs" if not (extras or groups) else "extras and groups need"
        raise Failure(f"{asked} a pyproject.toml with a [project] table, and {where} has none",
                      "drop them (BOOTSTRAP_EXTRAS, BOOTSTRAP_GROUPS, BOOTSTRAP_FROZEN, --extra, --group, --frozen)")
    for kind, asked, declared in (("extra", extras, project.extras), ("dependency group", groups, project.groups)):
        unknown = [name for name in asked if normalize(name) not in {normalize(d) for d in declared}]
        if unknown:
            raise Failure(f"{where} has no {kind} {', '.join(unknown)} (it has: {', '.join(declared) or 'none'})",
                          f"name one of its {kind}s, or declare it there")
    if frozen and project.kind != "lock":
        raise Failure(f"--frozen (BOOTSTRAP_FROZEN) installs uv.lock as it is, and {settings.workspace} has no uv.lock",
                      "drop it, or make the lock with `uv lock`")
    return Choice(extras, groups, frozen)


def where_set(settings: Settings, key: str) -> str:
    origin = settings.origins.get(key, "default")
    return {"default": f"{key} (the default)", "flag": f"{key} (a flag)",
            "environment": f"{key} in the environment",
            "file": f"{key} in {settings.env_file.name if settings.env_file else '.env'}"}.get(origin, key)


def packages(settings: Settings, project: Project) -> tuple[list, list, list]:
    """(TORCH_PACKAGES less what the project names itself, PIP_PACKAGES, lines to say about it).
    A project that names torch gets none of TORCH_PACKAGES: torchvision and the like from another
    index would have to match the project's torch, and pull in their own otherwise."""
    torch, notes = [], []
    setting = where_set(settings, "TORCH_PACKAGES")
    own_torch = project.pins("torch")
    for requirement in settings.torch_packages:
        pins = project.pins(requirement_name(requirement))
        if not pins and not own_torch:
            torch.append(requirement)
        elif pins:
            theirs = ", ".join(dict.fromkeys(f"{pin} ({source})" for pin, source in pins))
            notes.append(f"{requirement_name(requirement)}: the project names {theirs}, {setting} {requirement}; "
                         "installing the project's")
    left = [r for r in settings.torch_packages if own_torch and not project.pins(requirement_name(r))]
    if left:
        notes.append(f"{setting} {' '.join(left)} left out too: they must match the project's torch; "
                     "add them to the project if it needs them")
    return torch, list(settings.pip_packages), notes


def origins(settings: Settings, project: Project) -> dict:
    """{name: [requirement, where it comes from]...}: for naming each pin in a resolver conflict."""
    found: dict = {}
    for key, items in (("TORCH_PACKAGES", settings.torch_packages), ("PIP_PACKAGES", settings.pip_packages)):
        for requirement in items:
            found.setdefault(requirement_name(requirement), []).append([requirement, where_set(settings, key)])
    for name in found:  # a pin the settings do not name conflicts inside one file, which the installer says
        found[name].extend([pin, source] for pin, source in project.pins(name))
    return found


def stamp(settings: Settings, choice: Choice = NOTHING) -> str:
    """A hash of everything that determines the environment."""
    files = {name: hashlib.sha256(path.read_bytes()).hexdigest() if (path := settings.workspace / name).is_file()
             else None for name in INPUTS}
    inputs = {
        "format": FORMAT,
        "index": settings.torch_index_url,
        "torch": list(settings.torch_packages),
        "extra": list(settings.pip_packages),
        "files": files,
        "extras": list(choice.extras),
        "groups": list(choice.groups),
        "frozen": choice.frozen,
        "python_downloads": settings.bootstrap_python_downloads,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def check(host, choice: Choice = NOTHING) -> dict | None:
    """The run command's "env" check: the venv's stamp, or (REMOTE_PYTHON, `local`) the interpreter
    itself; None when runs need no environment (RUN_ENVIRONMENT docker or none)."""
    if host.settings.run_environment != "auto":
        return None
    if host.uses_venv:
        return {"kind": "venv", "stamp": stamp(host.settings, choice)}
    return {"kind": "probe"}


@dataclass(frozen=True)
class Planned:
    """The bootstrap step's part of a plan, made on this machine: why nothing is built (skipped()),
    the extras and groups chosen (choose()), and the run command's environment check (check())."""

    skipped: str | None = None
    choice: Choice = NOTHING
    check: dict | None = None


def planned(host, preflight) -> Planned:
    """What Planned says for ``preflight`` (remote_run.preflight.Preflight). It reads the project
    (pyproject.toml, uv.lock) and refuses what does not fit it, before any host command."""
    if not preflight.bootstrap:
        return Planned()
    why = skipped(host)
    choice = NOTHING if why else choose(host.settings, preflight.extras, preflight.groups, preflight.frozen)
    return Planned(why, choice, None if preflight.rebuild else check(host, choice))


def skipped(host) -> str | None:
    """Why bootstrap builds nothing (RUN_ENVIRONMENT docker or none), as one line; None when it builds."""
    if host.settings.run_environment == "docker":
        return ("bootstrap: nothing to build, runs start their own containers "
                "(RUN_ENVIRONMENT=docker; the host's python3 runs only remote-run itself)")
    if host.settings.run_environment == "none":
        return f"bootstrap: nothing to build, runs use {host.python} as it is (RUN_ENVIRONMENT=none)"
    return None


def bootstrap_payload(settings: Settings, force: bool, terminal: bool, choice: Choice = NOTHING) -> dict:
    """What the host program's `bootstrap` takes: it says "up to date" at once when the stamp matches."""
    project = read_project(settings.workspace, choice.extras, choice.groups)
    torch, extra, _ = packages(settings, project)
    return {
        "root": settings.remote_dir,
        "stamp": stamp(settings, choice),
        "force": force,
        "installer": settings.bootstrap_installer,
        "torch_index": settings.torch_index_url,
        "torch": torch,
        "extra": extra,
        "tick": TICK_TERMINAL if terminal else TICK_LOG,
        "project": {"kind": project.kind, "extras": list(choice.extras), "groups": list(choice.groups),
                    "frozen": choice.frozen, "python": project.python,
                    "python_downloads": settings.bootstrap_python_downloads},
        "origins": origins(settings, project),
    }


def notes(settings: Settings, choice: Choice = NOTHING) -> list:
    """What a bootstrap says before it builds: which of TORCH_PACKAGES the project names itself."""
    return packages(settings, read_project(settings.workspace, choice.extras, choice.groups))[2]
