"""The GPU sampler dies with its supervisor: the tie is made in the child before nvidia-smi starts,
and a host where it cannot be made samples nothing and says so in the run's log."""

import subprocess
import sys

import pytest

from remote_run.host import sampler

SAMPLE = {"seconds": 0.2, "devices": "0"}
OFF = "remote-run: GPU sampling off: "


def no_popen(*args, **kwargs):
    raise AssertionError("a sampler was started that nothing could stop if its supervisor died")


def without_ctypes(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctypes", None)  # `import ctypes` raises ImportError, as without _ctypes


def on_macos(monkeypatch):
    monkeypatch.setattr(sampler.sys, "platform", "darwin")


def libc_without_prctl(monkeypatch):
    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda name, use_errno=False: object())


@pytest.mark.parametrize("host, why", [
    (without_ctypes, "has no ctypes, which ties the sampler to its supervisor"),
    (on_macos, "only be tied to its supervisor on Linux (this host is darwin)"),
    (libc_without_prctl, "prctl, which ties the sampler to its supervisor, cannot be called here"),
], ids=["python without ctypes", "not Linux", "libc without prctl"])
def test_a_host_that_cannot_tie_the_sampler_samples_nothing_and_says_so_once(tmp_path, monkeypatch, host, why):
    host(monkeypatch)
    monkeypatch.setattr(sampler.subprocess, "Popen", no_popen)
    assert sampler.start(str(tmp_path), SAMPLE) is None
    [line] = (tmp_path / "run.log").read_text().splitlines()
    assert line.startswith(OFF) and why in line and line.endswith("the run goes on without gpu.csv"), line
    assert not (tmp_path / "gpu.csv").exists()


def test_a_refused_prctl_starts_no_sampler_and_says_so(tmp_path, monkeypatch):
    def refused():
        raise OSError(1, "prctl(PR_SET_PDEATHSIG)")

    monkeypatch.setattr(sampler, "dies_with_this_process", lambda: (refused, None))
    assert sampler.start(str(tmp_path), SAMPLE) is None
    [line] = (tmp_path / "run.log").read_text().splitlines()
    assert line.startswith(OFF + "prctl(PR_SET_PDEATHSIG) failed"), line


def test_sampling_off_writes_no_note(tmp_path, monkeypatch):
    monkeypatch.setattr(sampler.subprocess, "Popen", no_popen)
    for sample in (None, {"seconds": 0}, {"seconds": 2, "devices": "-1"}):
        assert sampler.start(str(tmp_path), sample) is None
    assert not (tmp_path / "run.log").exists()


linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

# The child asks the kernel which signal its parent's death sends it (PR_GET_PDEATHSIG = 2); the
# setting survives exec, so this is what nvidia-smi would have.
ASK = ("import ctypes; s = ctypes.c_int(); "
       "ctypes.CDLL(None).prctl(2, ctypes.byref(s), 0, 0, 0); print(s.value)")


@linux
def test_the_child_is_told_sigterm_when_its_parent_dies():
    tie, why = sampler.dies_with_this_process()
    assert why is None
    done = subprocess.run([sys.executable, "-c", ASK], preexec_fn=tie, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "15", done.stdout + done.stderr


@linux
def test_a_child_whose_parent_died_before_the_tie_goes_at_once(monkeypatch):
    """The race: the parent dies between fork and prctl, so no signal will ever come; the child sees
    it has another parent now and leaves before nvidia-smi starts."""
    monkeypatch.setattr(sampler.os, "getpid", lambda: 1)  # "the parent" the child then finds is not this test
    tie, _ = sampler.dies_with_this_process()
    monkeypatch.undo()
    done = subprocess.run([sys.executable, "-c", "print('sampled')"], preexec_fn=tie, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == "", done.stdout
