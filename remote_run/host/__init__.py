"""Everything remote-run runs on the GPU host, as one package: standard library only, Python 3.8+.

Python 3.8 (FLOOR) is Ubuntu 20.04's python3: nothing here may need a newer one (vermin checks it,
in .ci/run and tests/fast/test_host_floor.py), and an older python3 is told so in one line by the
guard that remote_run.ship puts first in every command (exit status exits.ENVIRONMENT).

remote_run.ship packs it and sends it; the host keeps it (see remote_run.ship) and runs one mode
per command through the entry point, ``python3 -m remote_run.host MODE ARGS`` (__main__.py).
Each module is importable here too, and tested directly (tests/fast/test_host.py, test_queue.py,
test_sampler.py, test_host_floor.py).
"""

FLOOR = (3, 8)  # the oldest Python the host program runs on
