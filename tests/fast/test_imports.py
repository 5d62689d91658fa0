"""Listing the tasks loads only what defines them; a task loads what it uses when it runs."""

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


def test_a_task_loads_what_it_uses_when_it_runs_and_nothing_of_other_tasks(tmp_path):
    run_a_task = ("import remote_run.tasks\nfrom remote_run.cli import program\n"
                  "program().run(['remote-run', 'baseline.list'], exit=False)\n")
    loaded = loaded_after(PROBE.replace("import remote_run.tasks\n", run_a_task), tmp_path)
    assert "remote_run.compare" in loaded and "remote_run.settings" in loaded, loaded
    for other in ("doctor", "pipeline", "envfile", "cleanup"):
        assert f"remote_run.{other}" not in loaded, loaded
