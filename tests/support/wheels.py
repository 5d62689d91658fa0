"""Package sources made on the spot, for bootstrap tests: tiny wheels built with zipfile, a flat
find-links folder and a PEP 503 simple index over them, and uv's own wheel when one is on disk.

Nothing here touches the network. Plain module: no pytest import, so ``bench/`` can use it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Where .ci/run puts uv's wheel (`pip download uv`), and where a developer can put one by hand.
UV_WHEELS = REPO / "var" / "wheels"
UV_WHEEL_HINT = (f"no uv wheel in {UV_WHEELS}: run .ci/run, or "
                 f"`python3 -m pip download --no-deps --only-binary :all: -d {UV_WHEELS} uv`")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def make_wheel(folder: Path, name: str, version: str = "1.0", *, requires=(), tag: str = "py3-none-any",
               data_bytes: int = 0) -> Path:
    """A valid wheel of an importable module ``name`` (with ``-`` as ``_``) that sets VERSION;
    ``data_bytes`` adds a file of random bytes that size (for disk-full tests)."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n".encode()}
    if data_bytes:
        files[f"{module}/blob.bin"] = os.urandom(data_bytes)
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *[f"Requires-Dist: {r}" for r in requires]]
    files[f"{dist}.dist-info/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist}.dist-info/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: remote-run-tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
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
        (simple / project / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    (simple / "index.html").write_text("<!DOCTYPE html><html><body>\n"
                                      + "\n".join(f'<a href="{p}/">{p}</a>' for p in sorted(projects)) + "\n</body></html>\n")
    return simple


def uv_wheel() -> Path | None:
    """uv's wheel for this machine, if one is on disk (UV_WHEELS)."""
    found = sorted(UV_WHEELS.glob("uv-*.whl")) if UV_WHEELS.is_dir() else []
    return found[-1] if found else None


def readable_tree(root: Path) -> None:
    """Let the remote user (another account when the harness runs as root) read ``root``."""
    for folder, dirs, names in os.walk(root):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
