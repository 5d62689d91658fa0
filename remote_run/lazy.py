"""Modules imported when first needed: listing the tasks (`inv -l`, `--help`) then loads only what
defines them, not what they run (remote_run.tasks defers them).

importlib's LazyLoader is not thread-safe before Python 3.12 (a module being loaded by one thread
looks empty to another), and runs use threads, so the first task to run loads them (load())
before any thread starts: all but those deferred ``until_used``, which only one task's own
thread ever touches (`doctor`, `init`, `clean`, `compare`); they load when that task first uses them.
"""

import importlib.util
import sys

_deferred: list[str] = []


def defer(name: str, *, until_used: bool = False) -> None:
    """Put module ``name`` in sys.modules now, to be executed on first use (or by load(), unless
    ``until_used``)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)  # `from .. import steps` then finds it without loading it
    if not until_used:
        _deferred.append(name)


def load() -> None:
    """Execute every deferred module now, in this thread."""
    while _deferred:
        getattr(sys.modules[_deferred.pop(0)], "__name__")
