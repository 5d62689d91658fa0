"""SkyPilot clusters: names (names.py), the task YAML (taskyaml.py), the `sky` command line and its
output (cli.py), the workspace copy a cluster gets (staging.py), cluster operations (clusters.py)
and runs on a cluster (backend.py)."""
