"""`python -m remote_run`: the remote-run program."""

from .cli import main

main()
