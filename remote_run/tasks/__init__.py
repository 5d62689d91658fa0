"""The remote-run task collection, shared by `inv` (tasks.py) and the `remote-run` program."""

from invoke import Collection

from .machine import bootstrap, gpu_check
from .runs import kill, logs, status
from .sky import sky_down, sky_exec, sky_status, sky_up
from .train import run_, train_david, train_hlb
from .workspace import clean, pull_logs, sync

ns = Collection(sync, bootstrap, gpu_check, train_hlb, train_david, run_, pull_logs, clean, logs, status, kill,
                sky_up, sky_exec, sky_status, sky_down)
