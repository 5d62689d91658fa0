"""The remote-run task collection, shared by `inv` (tasks.py) and the `remote-run` program.

Each module of this package ends in its own Collection; they are composed here with their task
names unchanged (`sync`, `sky-up`, ...), and with the settings invoke needs for them.
"""

import atexit
import gc

from invoke import Collection

from ..runner import QuickLocal
from . import machine, results, runs, setup, sky, train, workspace

# Python's last collection at exit walks every object invoke and remote-run made: 25-30 ms of
# every invocation, `inv -l` included, for memory the process is about to give back. Frozen
# objects are left out of it (atexit runs LIFO, so this comes after every other exit handler).
atexit.register(gc.freeze)

ns = Collection()
for module in (setup, workspace, machine, train, runs, results, sky):
    for name, task in module.ns.tasks.items():
        ns.add_task(task, name)
    for sub in module.ns.collections.values():
        ns.add_collection(sub)  # baseline.save, baseline.list, baseline.rm
ns.configure({
    # Flags of the `remote-run` program (remote_run.cli); `inv` users set REMOTE_RUN_ENV_FILE/REMOTE_HOST.
    "remote_run": {"env_file": None, "host": None},
    "runners": {"local": QuickLocal},
})
