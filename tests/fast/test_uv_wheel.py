"""uv's wheel for the bootstrap tests: fetched with pip into var/wheels when it is not there, once
for workers that start together, and a clear reason (never a half wheel) when it cannot be had.
pip is a fake here: nothing is downloaded."""

import sys
import threading
from pathlib import Path

import pytest
from support.wheels import UV_VERSION, ensure_uv_wheel

from remote_run.errors import Failure, Kind

# Stands for `python -m pip download ... -d DIR uv==VERSION`: logs its argv, then does what MODE says.
FAKE_PIP = """#!{python}
import sys, time
open({log!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
folder = sys.argv[sys.argv.index("-d") + 1]
mode = {mode!r}
if mode == "offline":
    sys.stderr.write("ERROR: Could not find a version that satisfies the requirement uv==X\\n"
                     "ERROR: No matching distribution found for uv==X\\n")
    sys.exit(1)
wheel = folder + "/uv-" + sys.argv[-1].split("==")[1] + "-py3-none-any.whl"
open(wheel, "wb").write(b"half" if mode != "ok" else b"wheel")
if mode != "ok":
    time.sleep(30)  # "hang": cut short by the timeout, after writing part of the wheel
time.sleep(0.3)  # long enough for a second caller to arrive while this one downloads
"""


def fake_pip(tmp_path: Path, mode: str = "ok"):
    log = tmp_path / "pip.log"
    python = tmp_path / "python"
    python.write_text(FAKE_PIP.format(python=sys.executable, log=str(log), mode=mode))
    python.chmod(0o755)
    return str(python), log


def test_a_missing_wheel_is_fetched_with_the_users_pip_into_the_folder(tmp_path):
    python, log = fake_pip(tmp_path)
    folder = tmp_path / "var" / "wheels"
    wheel = ensure_uv_wheel(folder, python)
    assert wheel == folder / f"uv-{UV_VERSION}-py3-none-any.whl" and wheel.read_bytes() == b"wheel"
    argv = log.read_text().split()
    assert argv[:2] == ["-m", "pip"] and "download" in argv and argv[-1] == f"uv=={UV_VERSION}"
    assert {"--no-deps", "--only-binary", ":all:", "--timeout", "--retries"} <= set(argv)
    assert "--isolated" not in argv and "--index-url" not in argv  # the user's pip.conf decides where from
    assert sorted(p.name for p in folder.iterdir()) == [".fetch.lock", wheel.name]  # no download folder left


def test_a_wheel_on_disk_is_used_as_it_is(tmp_path):
    python, log = fake_pip(tmp_path)
    folder = tmp_path / "wheels"
    folder.mkdir()
    (folder / "uv-0.9.0-py3-none-any.whl").write_bytes(b"mine")
    assert ensure_uv_wheel(folder, python).name == "uv-0.9.0-py3-none-any.whl"
    assert not log.exists()


def test_workers_that_start_together_fetch_it_once(tmp_path):
    python, log = fake_pip(tmp_path)
    folder = tmp_path / "wheels"
    found = []
    workers = [threading.Thread(target=lambda: found.append(ensure_uv_wheel(folder, python))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(found) == 3 and len(set(found)) == 1
    assert len(log.read_text().splitlines()) == 1


@pytest.mark.parametrize("mode, why", [
    ("offline", "(ERROR: No matching distribution found for uv==X)"),
    ("hang", "(pip took longer than 1 s)"),
], ids=["offline", "pip hangs"])
def test_when_it_cannot_be_fetched_the_failure_names_pips_reason_and_the_command_and_leaves_no_wheel(
        tmp_path, mode, why):
    python, _ = fake_pip(tmp_path, mode)
    folder = tmp_path / "wheels"
    with pytest.raises(Failure) as failed:
        ensure_uv_wheel(folder, python, timeout=1)
    assert failed.value.kind is Kind.ENVIRONMENT
    assert failed.value.problem == f"no uv wheel in {folder}, and pip could not fetch uv {UV_VERSION} {why}"
    assert failed.value.fix == (f"run `{python} -m pip download --no-deps --only-binary :all: -d {folder}"
                                f" uv=={UV_VERSION}` where the package index can be reached")
    assert [p.name for p in folder.iterdir()] == [".fetch.lock"]
