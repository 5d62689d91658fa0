"""Run work from a local checkout on a remote GPU machine, over SSH or SkyPilot."""

__version__ = "0.1.0"
