"""A stand-in for the docker CLI on the test host's PATH (not Docker): `docker --version`,
`docker info --format '{{json .Runtimes}}'` and `docker run`, answering as Docker does for the
case the test picks."""

from __future__ import annotations

RUNTIMES = {
    "nvidia": '{"io.containerd.runc.v2":{"path":"runc"},"nvidia":{"path":"nvidia-container-runtime"},'
              '"runc":{"path":"runc"}}',
    "runc-only": '{"runc":{"path":"runc"}}',
}
DAEMON_DOWN = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
               "Is the docker daemon running?")


def script(runtimes: str = "nvidia", daemon: bool = True, run_error: str = "") -> str:
    """``runtimes``: a key of RUNTIMES; not ``daemon``: every command fails as with the daemon
    stopped (`docker run` with 125); ``run_error``: `docker run` prints it and exits 125."""
    down = f'echo "{DAEMON_DOWN}" >&2; ' if not daemon else ""
    run_fails = (f'echo "docker: {DAEMON_DOWN}" >&2; echo >&2; '  # as Docker 28.2's client says it
                 f'echo "Run \'docker run --help\' for more information" >&2; exit 125' if not daemon
                 else f'echo "docker: {run_error}" >&2; exit 125' if run_error else ":")
    return f"""#!/bin/sh
# Test stand-in for the docker CLI; not Docker.
case "$1" in
  --version) echo "Docker version 27.3.1, build ce12230" ;;
  info) {down + "exit 1" if not daemon else f"echo '{RUNTIMES[runtimes]}'"} ;;
  run)
    {run_fails}
    shift
    epochs=""
    for arg; do case "$arg" in EPOCHS=*) epochs=${{arg#EPOCHS=}} ;; esac; done
    echo "container ran: $*"
    echo "RESULT_DOCKER epochs=$epochs"
    ;;
  *) echo "docker: '$1' is not a docker command (stand-in)" >&2; exit 1 ;;
esac
"""


def install(sshd, text: str) -> None:
    fake = sshd.remote_bin / "docker"
    tmp = fake.with_name(".docker.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(fake)


def remove(sshd) -> None:
    (sshd.remote_bin / "docker").unlink(missing_ok=True)
