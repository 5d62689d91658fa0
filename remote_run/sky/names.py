"""SkyPilot cluster names and the files that hold them (.cluster_name_gpu, .cluster_name_tpu)."""

from __future__ import annotations

import getpass
import hashlib
import re
from pathlib import Path

from ..errors import Failure, Kind

TARGETS = ("gpu", "tpu")
MAX_NAME = 60

# SkyPilot's own rule for cluster names.
CLUSTER_NAME = re.compile(r"[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
EXPERIMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}\Z")
ACCELERATOR = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9-]*)(?::(?P<count>[0-9]+))?\Z")
TPU = re.compile(r"tpu-v[0-9]+[a-z]*-[0-9]+\Z", re.I)
# SkyPilot's --infra: a cloud or kind, then /-separated parts: aws, gcp/us-central1, k8s,
# kubernetes/CONTEXT, slurm/CLUSTER/PARTITION (SkyPilot 0.12+), ssh/NODE_POOL.
INFRA = re.compile(r"[A-Za-z0-9*][A-Za-z0-9._:@*-]*(/[A-Za-z0-9*][A-Za-z0-9._:@*-]*)*\Z")


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise Failure(f"--target {target!r} is not valid", "use gpu or tpu")
    return target


def check_accelerator(accel: str) -> tuple[str, str]:
    """(accelerator, target) for ``NAME[:COUNT]`` (H100:1, A100:8) or a TPU (tpu-v4-8, tpu-v6e-1)."""
    allowed = ("give NAME[:COUNT] with a whole COUNT from 1, e.g. H100:1, A100:8, L4:1, "
               "or a TPU such as tpu-v4-8 or tpu-v6e-1")
    if not accel:
        raise Failure("give --accel, e.g. --accel H100:1 or --accel tpu-v6e-1")
    match = ACCELERATOR.match(accel)
    if not match or (match["count"] is not None and int(match["count"]) < 1):
        raise Failure(f"--accel {accel!r} is not valid", allowed)
    if match["name"].lower().startswith("tpu-"):
        if not TPU.match(match["name"]):
            raise Failure(f"--accel {accel!r} is not valid", allowed)
        return accel, "tpu"
    return accel, "gpu"


def check_experiment(name: str) -> str:
    if not EXPERIMENT.match(name or ""):
        raise Failure(f"--name {name!r} is not valid",
                      "use 1-40 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def check_infra(infra: str | None) -> str | None:
    if infra is not None and not INFRA.match(infra):
        raise Failure(f"--infra {infra!r} is not valid", "give a SkyPilot infra such as aws, gcp/us-central1, k8s, "
                      "slurm/CLUSTER/PARTITION or ssh/NODE_POOL")
    return infra


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def cluster_name(experiment: str, accel: str, user: str | None = None) -> str:
    """``<experiment>-<accelerator>-<user>``, lower-case, at most MAX_NAME characters."""
    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "user"
    suffix = f"{_slug(accel.replace(':', 'x'))}-{_slug(user)[:16].strip('-') or 'user'}"
    head = _slug(experiment) or "run"
    if not head[0].isalpha():
        head = "run-" + head
    budget = MAX_NAME - len(suffix) - 1
    if len(head) > budget:
        digest = hashlib.sha1(experiment.encode()).hexdigest()[:6]
        head = head[: budget - 7].rstrip("-") + "-" + digest
    name = f"{head}-{suffix}"
    if not CLUSTER_NAME.match(name):
        raise Failure(f"cannot make a SkyPilot cluster name from {experiment!r}: got {name!r}",
                      "pass --name with letters and digits")
    return name


def name_file(settings, target: str) -> Path:
    return settings.workspace / f".cluster_name_{target}"


def read_name(settings, target: str) -> str | None:
    """The cluster named in .cluster_name_<target>, or None when the file is missing or empty."""
    path = name_file(settings, target)
    try:
        name = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Failure(f"cannot read {path}: {exc}", "delete it and run `inv sky-up` again", Kind.ENVIRONMENT) from None
    if name and not CLUSTER_NAME.match(name):
        raise Failure(f"{path} holds {name[:80]!r}, which is not a SkyPilot cluster name",
                      "delete it and run `inv sky-up --accel …` again", Kind.ENVIRONMENT)
    return name or None


def require_name(settings, target: str) -> str:
    name = read_name(settings, target)
    if not name:
        example = "tpu-v6e-1" if target == "tpu" else "H100:1"
        raise Failure(f"no {target} cluster: {name_file(settings, target)} is missing or empty",
                      f"run `inv sky-up --accel {example}` first")
    return name
