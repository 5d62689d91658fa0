"""Everything remote-run runs on the GPU host, as one package: standard library only, Python 3.8+.

remote_run.ship packs it and sends it; the host keeps it (see remote_run.ship) and runs one mode
per command through the entry point, ``python3 -m remote_run.host MODE ARGS`` (__main__.py).
Each module is importable here too, and tested directly (tests/fast/test_host_*.py).
"""
