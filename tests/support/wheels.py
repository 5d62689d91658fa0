"""Package sources made on the spot, for bootstrap tests: tiny wheels built with zipfile, a flat
find-links folder and a PEP 503 simple index over them, and uv's own wheel (var/wheels).

Only ``ensure_uv_wheel`` touches the network, once per checkout: it fetches uv's wheel with pip when
var/wheels has none. Plain module: no pytest import, so ``bench/`` can use it; run as a script
(.ci/run does), it fetches the wheel or fails saying why.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from remote_run.errors import Failure, Kind

REPO = Path(__file__).resolve().parents[2]
# Where uv's wheel is kept for the bootstrap tests and bench/bench_bootstrap.py (a developer can put
# one there by hand), and the one version they fetch.
UV_WHEELS = REPO / "var" / "wheels"
UV_VERSION = "0.13.8"
# The whole download (17 MB) may take this long; pip's own --timeout/--retries make a dead network
# fail in seconds, not the 180 s x 5 tries of its defaults.
FETCH_TIMEOUT = 120


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def make_wheel(folder: Path, name: str, version: str = "1.0", *, requires=(), tag: str = "py3-none-any",
               data_bytes: int = 0, scripts=None) -> Path:
    """A valid wheel of an importable module ``name`` (with ``-`` as ``_``) that sets VERSION;
    ``data_bytes`` adds a file of random bytes that size (for disk-full tests); ``scripts``
    ({command: text}) adds console scripts, each printing its text and the module's VERSION."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    code = f"VERSION = {version!r}\n"
    entry = ["[console_scripts]"]
    for number, (command, text) in enumerate((scripts or {}).items()):
        code += f"\n\ndef main_{number}():\n    print({text!r}, VERSION)\n"
        entry.append(f"{command} = {module}:main_{number}")
    files = {f"{module}/__init__.py": code.encode()}
    if scripts:
        files[f"{dist}.dist-info/entry_points.txt"] = ("\n".join(entry) + "\n").encode()
    if data_bytes:
        files[f"{module}/blob.bin"] = os.urandom(data_bytes)
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                *[f"Requires-Dist: {r}" for r in requires]]
    files[f"{dist}.dist-info/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist}.dist-info/WHEEL"] = ("Wheel-Version: 1.0\nGenerator: remote-run-tests\nRoot-Is-Purelib: true\n"
                                        f"Tag: {tag}\n").encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name_in_zip, data in files.items():
            wheel.writestr(name_in_zip, data)
    return path


def simple_index(root: Path, wheels) -> Path:
    """A PEP 503 simple index under ``root/simple`` whose links point at ``root/files``; returns
    the ``simple`` folder (give pip and uv ``file://`` + that path)."""
    files, simple = root / "files", root / "simple"
    files.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[str]] = {}
    for wheel in map(Path, wheels):
        target = files / wheel.name
        if not target.exists():
            shutil.copyfile(wheel, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        projects.setdefault(normalize(wheel.name.split("-")[0]), []).append(
            f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>')
    simple.mkdir(parents=True, exist_ok=True)
    for project, links in projects.items():
        (simple / project).mkdir(exist_ok=True)
        (simple / project / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links)
                                                     + "\n</body></html>\n")
    (simple / "index.html").write_text("<!DOCTYPE html><html><body>\n"
                                      + "\n".join(f'<a href="{p}/">{p}</a>' for p in sorted(projects))
                                      + "\n</body></html>\n")
    return simple


def uv_wheel(folder: Path = UV_WHEELS) -> Path | None:
    """uv's wheel for this machine, if one is on disk (in ``folder``)."""
    found = sorted(folder.glob("uv-*.whl")) if folder.is_dir() else []
    return found[-1] if found else None


def fetch_argv(folder: Path, python: str = sys.executable) -> list[str]:
    """pip's command that puts uv's wheel into ``folder``: the user's own pip configuration applies
    (index, mirror, certificates), as for every other package."""
    return [python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--timeout", "10",
            "--retries", "1", "--no-deps", "--only-binary", ":all:", "-d", str(folder), f"uv=={UV_VERSION}"]


def ensure_uv_wheel(folder: Path = UV_WHEELS, python: str = sys.executable, timeout: float = FETCH_TIMEOUT) -> Path:
    """uv's wheel in ``folder``, fetched with pip when none is there. Raises Failure (ENVIRONMENT)
    naming pip's reason and the command to run when it cannot be fetched (offline)."""
    wheel = uv_wheel(folder)
    if wheel:
        return wheel
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Test workers that start at once fetch it once: the others wait here, then find it.
        with open(folder / ".fetch.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            wheel = uv_wheel(folder)
            if wheel:
                return wheel
            # Into a folder of its own first: a download cut short never looks like a wheel here.
            with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder) as part:
                done = subprocess.run(fetch_argv(Path(part), python), capture_output=True, text=True, timeout=timeout,
                                      stdin=subprocess.DEVNULL)
                got = sorted(Path(part).glob("uv-*.whl"))
                if done.returncode == 0 and got:
                    os.replace(got[0], folder / got[0].name)
                    return folder / got[0].name
                said = (done.stderr or done.stdout).strip().splitlines()
                why = said[-1] if said else f"pip exited with status {done.returncode}"
    except subprocess.TimeoutExpired:
        why = f"pip took longer than {timeout:g} s"
    except OSError as exc:
        why = str(exc)
    command = shlex.join([python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(folder),
                          f"uv=={UV_VERSION}"])
    raise Failure(f"no uv wheel in {folder}, and pip could not fetch uv {UV_VERSION} ({why})",
                  f"run `{command}` where the package index can be reached", Kind.ENVIRONMENT)


def readable_tree(root: Path) -> None:
    """Let the remote user (another account when the harness runs as root) read ``root``."""
    for folder, _dirs, names in os.walk(root):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)


if __name__ == "__main__":  # .ci/run: fetch it now, and fail (the tests would skip) when it cannot be had
    try:
        print(ensure_uv_wheel())
    except Failure as exc:
        sys.exit(exc.message)


# A PEP 517/660 build backend small enough to live in a test project (`backend-path`), so that
# installing the project editable needs nothing from an index: its editable wheel is a .pth file
# naming the project's src/ (or its root), with the project's dependencies and extras.
INLINE_BACKEND = '''\
import base64, hashlib, os, tomllib, zipfile


def _meta():
    with open("pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    lines = ["Metadata-Version: 2.1", "Name: " + project["name"], "Version: " + project["version"]]
    lines += ["Requires-Dist: " + r for r in project.get("dependencies", [])]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        lines.append("Provides-Extra: " + extra)
        lines += ["Requires-Dist: %s ; extra == %r" % (r, extra) for r in requirements]
    return project["name"].replace("-", "_"), project["version"], "\\n".join(lines) + "\\n"


def _wheel(directory, files):
    name, version, metadata = _meta()
    dist = "%s-%s" % (name, version)
    files = dict(files)
    files[dist + ".dist-info/METADATA"] = metadata
    files[dist + ".dist-info/WHEEL"] = ("Wheel-Version: 1.0\\nGenerator: rr\\nRoot-Is-Purelib: true\\n"
                                        "Tag: py3-none-any\\n")
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(text.encode())))
    files[dist + ".dist-info/RECORD"] = "\\n".join(record + [dist + ".dist-info/RECORD,,"]) + "\\n"
    filename = dist + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, filename), "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return filename


def get_requires_for_build_wheel(config_settings=None):
    return []


get_requires_for_build_editable = get_requires_for_build_wheel


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    root = os.path.abspath("src" if os.path.isdir("src") else ".")
    return _wheel(wheel_directory, {_meta()[0] + ".pth": root + "\\n"})


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {})
'''
BACKEND_TABLE = '[build-system]\nrequires = []\nbuild-backend = "rrbackend"\nbackend-path = ["_backend"]\n'
