"""Bootstrap through the real CLI against the loopback sshd: uv installed once into a tool
environment from the package index the host's pip uses, progress while installing, one line
naming the package that failed and why, pip when uv cannot be had, and one remote command when
nothing changed. Package sources are made here (tiny wheels, a simple index), nothing is downloaded
but uv's own wheel, once per checkout, into var/wheels (support.wheels.ensure_uv_wheel)."""

from __future__ import annotations

import http.server
import re
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from support.cli import (
    Background,
    cli,
    one_line_error,
    remote_exists,
    remote_read,
    remote_run_lines,
    wait_for,
    write_pip_conf,
)
from support.wheels import ensure_uv_wheel, make_wheel, readable_tree, simple_index
from support.workspace import make_workspace, unique_remote_dir

from remote_run.errors import Failure

# No torch: tiny packages from the test's own index.
SETTINGS = {"TORCH_PACKAGES": "", "TORCH_INDEX_URL": ""}
PROGRESS_LINE = re.compile(r"^remote-run: installing rrtiny-slow \(resolving\)… (\d+) s$", re.M)


@pytest.fixture(scope="module")
def sources(sshd):
    """Package sources the remote user can read: ``index`` (a simple index with uv and the tiny
    packages), ``links`` (a find-links folder without uv) and ``uv`` (the uv binary, for a host that
    has uv on its PATH). uv's wheel is fetched into var/wheels on first use; offline, the tests
    that need it are skipped, saying what to run (.ci/run fetches it first, so CI fails instead)."""
    try:
        wheel = ensure_uv_wheel()
    except Failure as exc:
        pytest.skip(exc.line)
    root = Path(tempfile.mkdtemp(prefix="rr-wheels-", dir="/tmp"))
    built = root / "built"
    tiny = [make_wheel(built, "rrtiny-a"), make_wheel(built, "rrtiny-b", requires=["rrtiny-a"]),
            make_wheel(built, "rrtiny-c"), make_wheel(built, "rrtiny-slow"),
            make_wheel(built, "rrtiny-old", tag="cp27-cp27mu-manylinux1_x86_64"),
            make_wheel(built, "rrtiny-big", data_bytes=3 * 1024 * 1024)]
    index = simple_index(root / "index", [*tiny, wheel])
    links = root / "links"
    links.mkdir()
    for path in tiny:
        shutil.copy(path, links)
    uv_dir = root / "uv-bin"
    uv_dir.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
        (uv_dir / "uv").write_bytes(archive.read(member))
    (uv_dir / "uv").chmod(0o755)
    readable_tree(root)
    (uv_dir / "uv").chmod(0o755)
    yield {"index": index, "links": links, "uv": uv_dir / "uv", "version": wheel.name.split("-")[1]}
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def host(sshd, tmp_path):
    """A fresh workspace and REMOTE_DIR; ``conf(text)`` sets the host's pip.conf (removed afterwards)."""
    ws = make_workspace(tmp_path)
    remote = unique_remote_dir("rrt_boot")
    removers = []

    def conf(text: str) -> None:
        removers.append(write_pip_conf(sshd, text))

    yield ws, remote, conf
    for remove in removers:
        remove()
    sshd.cleanup_remote(remote)


@pytest.fixture
def uv_on_path(sshd, sources):
    """The host has uv on its PATH (~/bin, first on the remote PATH)."""
    target = sshd.remote_home / "bin" / "uv"
    done = sshd.as_user(["cp", str(sources["uv"]), str(target)])
    assert done.returncode == 0, done.stderr
    yield str(target)
    sshd.as_user(["rm", "-f", str(target)])


def index_conf(index: Path) -> str:
    return f"[global]\nindex-url = file://{index}\n"


def bootstrap(sshd, ws, remote, **env):
    return cli(sshd, ws, "bootstrap", REMOTE_DIR=remote, **{**SETTINGS, **env})


def test_bootstrap_installs_uv_from_the_local_index_uses_it_and_is_one_command_when_warm(sshd, sources, host):
    ws, remote, conf = host
    conf(index_conf(sources["index"]))
    done = bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-b")
    assert done.returncode == 0, done.stderr
    ours = remote_run_lines(done.stderr)
    assert any(f"installing it into {remote}/.remote-run/uv" in line for line in ours), done.stderr
    assert any(re.search(rf"uv {re.escape(sources['version'])} installed in [0-9.]+ s", line)
               for line in ours), done.stderr
    # uv was told the index pip uses (uv does not read pip.conf) and reports as it goes.
    assert f"installing rrtiny-b with uv {sources['version']} (index file://{sources['index']})" in done.stderr
    assert re.search(r"^  Resolved 2 packages in ", done.stderr, re.M), done.stderr
    assert "  + rrtiny-a==1.0" in done.stderr, done.stderr
    assert f"environment ready ({remote}/.venv, uv {sources['version']}" in done.stderr
    assert remote_exists(sshd, f"{remote}/.remote-run/uv/bin/uv")
    assert f"uv = {sources['version']}" in remote_read(sshd, f"{remote}/.venv/pyvenv.cfg")  # the venv was made by uv
    assert "Resolved 2 packages" in remote_read(sshd, f"{remote}/.remote-run/bootstrap.log")
    imported = sshd.as_user([f"{remote}/.venv/bin/python", "-c", "import rrtiny_b, rrtiny_a; print(rrtiny_b.VERSION)"])
    assert imported.stdout.strip() == "1.0", imported.stderr

    mark = sshd.mark()
    done = bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-b")
    assert done.returncode == 0 and "environment is up to date" in done.stderr, done.stderr
    assert sshd.count("Starting session:", mark) == 1  # the sync's check asks for the venv's stamp too

    done = bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-b rrtiny-c")  # changed: the tool env is reused
    assert done.returncode == 0, done.stderr
    assert f"using uv {sources['version']} ({remote}/.remote-run/uv)" in done.stderr
    assert "installing it into" not in done.stderr and "  + rrtiny-c==1.0" in done.stderr


def test_a_package_that_is_not_there_or_has_no_wheel_for_this_python_is_named_in_one_line(sshd, sources, host):
    ws, remote, conf = host
    conf(index_conf(sources["index"]))
    done = bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-a rr-no-such-package")
    line = one_line_error(done)
    assert "bootstrap on l1 failed" in line and "rr-no-such-package is not in the package sources" in line, line
    assert f"index file://{sources['index']}" in line and f"{remote}/.remote-run/bootstrap.log" in line, line
    assert "rr-no-such-package was not found" in remote_read(sshd, f"{remote}/.remote-run/bootstrap.log")
    assert not remote_exists(sshd, f"{remote}/.remote-run/venv-stamp")

    line = one_line_error(bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-old"))
    assert "rrtiny-old has no wheel for this Python (CPython 3." in line and "cp27" in line, line


def test_pip_is_used_when_uv_cannot_be_installed_with_a_line_saying_why(sshd, sources, host):
    ws, remote, conf = host
    conf(f"[global]\nno-index = true\nfind-links = {sources['links']}\n")  # tiny packages, no uv
    done = bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-b")
    assert done.returncode == 0, done.stderr
    fallback = [line for line in remote_run_lines(done.stderr) if "falling back to pip" in line]
    assert len(fallback) == 1 and "cannot install uv: uv" in fallback[0], done.stderr
    assert "is not in the package sources" in fallback[0], done.stderr
    assert "  Successfully installed rrtiny-a-1.0 rrtiny-b-1.0" in done.stderr
    assert "environment ready" in done.stderr and "uv = " not in remote_read(sshd, f"{remote}/.venv/pyvenv.cfg")
    assert not remote_exists(sshd, f"{remote}/.remote-run/uv")

    # Remembered: the next build does not try again with the same sources (--force does).
    done = bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-b rrtiny-c")
    assert done.returncode == 0, done.stderr
    assert "uv could not be installed from these package sources before" in done.stderr
    assert "installing it into" not in done.stderr

    # A missing package under pip is named in one line too.
    line = one_line_error(bootstrap(sshd, ws, remote, PIP_PACKAGES="rr-no-such-package"))
    assert "rr-no-such-package is not in the package sources" in line, line
    assert "installing rr-no-such-package with pip failed" in line, line

    # BOOTSTRAP_INSTALLER=uv never falls back.
    line = one_line_error(bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-b", BOOTSTRAP_INSTALLER="uv"))
    assert "cannot install uv" in line and "BOOTSTRAP_INSTALLER=auto falls back to pip" in line, line


class SlowIndex(http.server.ThreadingHTTPServer):
    """The test's simple index over HTTP on 127.0.0.1, holding back the first request for one
    wheel for ``delay`` seconds."""

    def __init__(self, root: Path, slow: str, delay: float):
        root_dir, held = str(root), threading.Event()

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=root_dir, **kwargs)

            def do_GET(self):
                if slow in self.path and self.path.endswith(".whl") and not held.is_set():
                    held.set()
                    time.sleep(delay)
                super().do_GET()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/simple"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def test_a_silent_install_shows_progress_every_few_seconds_and_a_second_bootstrap_waits_for_it(
        sshd, sources, host, uv_on_path, tmp_path):
    ws, remote, conf = host
    server = SlowIndex(sources["index"].parent, "rrtiny_slow", delay=7)
    first = None
    try:
        conf(f"[global]\nindex-url = {server.url}\n")
        assert cli(sshd, ws, "sync", REMOTE_DIR=remote).returncode == 0
        started = time.monotonic()
        first = Background(sshd, ws, tmp_path / "bg", "bootstrap", REMOTE_DIR=remote, PIP_PACKAGES="rrtiny-slow",
                           **SETTINGS)
        wait_for(lambda: remote_exists(sshd, f"{remote}/.remote-run/bootstrap.log"),
                 30, "the first bootstrap to hold the lock")
        second = bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-slow")  # a second terminal, meanwhile
        assert first.wait(60) == 0, first.stderr
        took = time.monotonic() - started
    finally:
        server.stop()
        if first is not None:
            first.kill()
    done = first
    assert f"using uv {sources['version']} ({uv_on_path})" in done.stderr and "installing it into" not in done.stderr
    seconds = [int(s) for s in PROGRESS_LINE.findall(done.stderr)]
    assert seconds and min(seconds) >= 5 and took >= 7, done.stderr  # a line after 5 s without one
    assert "\x1d" not in done.stderr and not remote_exists(sshd, f"{remote}/.remote-run/uv")
    assert second.returncode == 0, second.stderr
    assert "another bootstrap is running" in second.stderr, second.stderr
    assert "environment is up to date" in second.stderr, second.stderr
    assert "installing rrtiny-slow" not in second.stderr


def test_a_full_disk_is_named_in_one_line(sshd, sources, host, uv_on_path, small_disk):
    ws, _, conf = host
    conf(index_conf(sources["index"]))
    remote = f"{small_disk}/remote"
    line = one_line_error(bootstrap(sshd, ws, remote, PIP_PACKAGES="rrtiny-big"))
    assert "installing rrtiny-big with uv" in line and "disk is full" in line, line
