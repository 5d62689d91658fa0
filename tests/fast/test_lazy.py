"""Listing the tasks loads only what defines them; the first task to run loads the rest."""

import subprocess
import sys

PROBE = """
import sys, types
import remote_run.tasks
loaded = sorted(name for name, module in sys.modules.items()
                if name.startswith("remote_run") and type(module) is types.ModuleType)
print(" ".join(loaded))
"""


def loaded_after(code: str, cwd) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_listing_the_tasks_loads_none_of_what_they_run(tmp_path):
    loaded = loaded_after(PROBE, tmp_path)
    assert "remote_run.tasks.train" in loaded and "remote_run.tasks.setup" in loaded
    for heavy in ("pipeline", "transport", "ship", "sync", "steps", "doctor", "settings", "records", "compare"):
        assert f"remote_run.{heavy}" not in loaded, loaded


def test_the_first_session_loads_what_runs_use_before_any_thread_starts(tmp_path):
    first_task = "import remote_run.tasks\nfrom invoke import Context\nfrom remote_run.session import session\nsession(Context())\n"
    loaded = loaded_after(PROBE.replace("import remote_run.tasks\n", first_task), tmp_path)
    for module in ("pipeline", "transport", "ship", "sync", "steps", "settings", "records", "aftermath", "ports", "trainers"):
        assert f"remote_run.{module}" in loaded, loaded
    # Only their own task's thread touches these: they wait for it.
    for module in ("doctor", "compare", "cleanup", "envfile"):
        assert f"remote_run.{module}" not in loaded, loaded


def test_a_module_left_for_its_task_loads_when_the_task_uses_it(tmp_path):
    first_use = ("import remote_run.tasks\nfrom invoke import Context\nfrom remote_run.session import session\nsession(Context())\n"
                 "from remote_run.tasks import results\nresults.comparing.BASELINE_NAME\n")
    loaded = loaded_after(PROBE.replace("import remote_run.tasks\n", first_use), tmp_path)
    assert "remote_run.compare" in loaded and "remote_run.doctor" not in loaded, loaded
