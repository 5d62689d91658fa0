"""What a run's record says of Docker runs and short runs: the exit-125 hints, and when the
idle-GPU warning is given (records.idle_warning)."""

import pytest

from remote_run import records

DAEMON = ("docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
          "Is the docker daemon running?.\nSee 'docker run --help'.\n")


def test_exit_125_gets_the_docker_hint_and_the_daemon_message_its_own():
    daemon = records.hints(DAEMON, 125)
    assert len(daemon) == 1 and "could not reach its daemon" in daemon[0] and "gpu-check --docker" in daemon[0]
    general = records.hints("some output\n", 125)
    assert general == [records.EXIT_HINTS[125]] and "`docker run`" in general[0]
    assert records.hints("some output\n", 1) == []
    gpu = records.hints('docker: Error response from daemon: could not select device driver "" '
                        "with capabilities: [[gpu]].\n", 125)
    assert len(gpu) == 1 and "NVIDIA Container Toolkit" in gpu[0]
    image = records.hints("Unable to find image 'cvl-x:latest' locally\n", 125)
    assert "cvl-x:latest" in image[0] and "build" in image[0]


def test_a_failed_record_keeps_the_125_hint():
    record = records.RunRecord(run_id="r", task="run", host="l1")
    record.finish(DAEMON, 125, 2.0, "failed")
    assert [h for h in record.hints if "daemon" in h]


def samples(n: int, util: int, gpus: int = 1, step: float = 2.0) -> str:
    return "".join(f"2026/11/24 10:{int(i * step) // 60:02d}:{int(i * step) % 60:02d}.000, {g}, GPU-{g}, {util}, "
                   f"1000, 81559, 70.0\n" for i in range(n) for g in range(gpus))


@pytest.mark.parametrize("times,gpus,elapsed,util,warned", [
    (1, 1, 2.0, 0, False),  # the 2 s run: one sample
    (9, 1, 300.0, 0, False),  # too few samples, however long (a long GPU_SAMPLE_SECONDS)
    (30, 1, 59.0, 0, False),  # too short: start-up alone idles the GPU
    (30, 1, 60.0, 10, True),
    (10, 4, 100.0, 10, True),  # 4 GPUs x 10 times: 10 samples, not 40
    (5, 4, 100.0, 10, False),  # 4 GPUs x 5 times: 20 rows but 5 samples
    (30, 1, 60.0, 50, False),  # busy enough
])
def test_the_idle_gpu_warning_needs_a_long_enough_run_and_enough_samples(times, gpus, elapsed, util, warned):
    record = records.RunRecord(run_id="r", task="run", host="l1", settings={"GPU_SAMPLE_SECONDS": 2})
    record.finish("", 0, elapsed, "finished", samples(times, util, gpus))
    assert record.gpu_usage["sample_times"] == times and record.gpu_usage["samples"] == times * gpus
    idle = [w for w in record.warnings if w.startswith("GPU idle")]
    assert idle == ([f"GPU idle: mean utilisation {util:g} % over {times} samples: input-bound?"] if warned else [])


def test_a_docker_run_idle_warning_names_the_containers_gpus_not_input():
    record = records.RunRecord(run_id="r", task="run", host="l1", settings={"RUN_ENVIRONMENT": "docker"})
    record.finish("", 0, 120.0, "finished", samples(60, 0))
    (idle,) = [w for w in record.warnings if w.startswith("GPU idle")]
    assert "input-bound" not in idle and "CUDA_VISIBLE_DEVICES" in idle and "--gpus" in idle
