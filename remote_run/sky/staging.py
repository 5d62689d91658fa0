"""What a cluster gets of the workspace: the workspace itself (`sky exec --workdir`, after making
sure no secrets file goes with it), or a staged copy with a trainer's runner files written in."""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
from pathlib import Path

from .. import sync as syncing
from ..errors import Failure, Kind


def unignored_env_files(host, workspace: Path) -> list[str]:
    """`.env`/`.env.*` files (not `.env.example`) that `sky exec --workdir` would upload.

    SkyPilot leaves out what `.skyignore` names, or, without one, what git ignores.
    """
    found = []
    for path in workspace.rglob(".env*"):
        relative = path.relative_to(workspace)
        if (not path.is_file() or path.name == ".env.example"
                or not (path.name == ".env" or path.name.startswith(".env."))):
            continue
        if {".git", ".venv"} & set(relative.parts):
            continue
        found.append(relative.as_posix())
    if not found:
        return []
    skyignore = workspace / ".skyignore"
    if skyignore.is_file():
        patterns = [line.strip().lstrip("/") for line in skyignore.read_text(errors="replace").splitlines()
                    if line.strip() and not line.startswith("#")]
        return [f for f in found
                if not any(fnmatch.fnmatch(f, p) or fnmatch.fnmatch(Path(f).name, p) for p in patterns)]
    done = host.local(["git", "-C", str(workspace), "check-ignore", "--stdin"], hide=True,
                      stdin="\n".join(found) + "\n")
    ignored = set(done.stdout.split("\n")) if done.exited in (0, 1) else set()
    return [f for f in found if f not in ignored]


def refuse_env_upload(host, workspace: Path) -> None:
    """SkyPilot uploads the workdir as it is: stop before a secrets file goes with it."""
    leaking = unignored_env_files(host, workspace)
    if leaking:
        raise Failure(f"SkyPilot would upload {', '.join(leaking)} (secrets) from {workspace} to the cluster",
                      "add them to .gitignore (or .skyignore), or use REMOTE_ENV to forward single variables")


def stage(host, settings, files: dict) -> Path:
    """A copy of the workspace (same rules as a sync) with ``files`` written in, outside the checkout."""
    folder = Path(tempfile.mkdtemp(prefix="remote-run-sky-"))
    if not shutil.which("rsync"):
        shutil.rmtree(folder, ignore_errors=True)
        raise Failure("rsync is not installed", "install it (apt-get install rsync, brew install rsync)",
                      Kind.ENVIRONMENT)
    done = syncing.rsync(host, f"{settings.workspace}/", f"{folder}/", filters=syncing.rsync_filters(settings))
    if done.exited:
        shutil.rmtree(folder, ignore_errors=True)
        last = [line for line in done.stderr.splitlines() if line.strip()]
        raise Failure(f"copying {settings.workspace} to {folder} failed (rsync exit {done.exited}): "
                      f"{last[-1] if last else 'no error text'}", kind=Kind.ENVIRONMENT)
    for relative, text in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder
