"""A real Dask cluster for the tests: ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, on free ports, started and stopped by the fixture (no mock of the scheduler)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

#: The series description that the workers' test hook makes slow (dicomrecon.batch.task:
#: DICOMRECON_TEST_SLOW_SERIES): it sleeps 600 s before converting, to overrun --task-timeout.
SLOW_SERIES = "slow series (test hook)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dask_command() -> list:
    exe = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
    if not os.access(exe, os.X_OK):
        pytest.fail("the 'dask' command is missing: pip install 'dicomrecon[dask]' "
                    "(.ci/run installs it)")
    return [exe]


def _wait_for_workers(address: str, n: int, procs: list, timeout: float = 60) -> None:
    from distributed import Client
    t0 = time.monotonic()
    with Client(address, timeout="30s") as client:
        while len(client.scheduler_info()["workers"]) < n:
            dead = [p.args for p in procs if p.poll() is not None]
            assert not dead, f"a Dask process exited: {dead}"
            assert time.monotonic() - t0 < timeout, "Dask workers did not come up"
            time.sleep(0.2)


def _stop(procs: list) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """Address of a running scheduler with two single-threaded workers (one nanny each, which
    restarts its worker if it dies)."""
    import distributed  # noqa: F401  a test requirement (.ci/run installs it): fail if missing
    dask = dask_command()
    port, dash = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask-logs")
    env = dict(os.environ, DICOMRECON_TEST_SLOW_SERIES=f"{SLOW_SERIES}=600")
    procs = []

    def start(name, argv):
        log = open(logs / f"{name}.log", "wb")
        procs.append(subprocess.Popen(dask + argv, stdout=log, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True, cwd=str(logs)))

    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--dashboard-address", f"127.0.0.1:{dash}"])
        for k in range(2):
            start(f"worker{k}", ["worker", address, "--nthreads", "1", "--nworkers", "1",
                                 "--host", "127.0.0.1", "--no-dashboard"])
        _wait_for_workers(address, 2, procs)
        yield address
    finally:
        _stop(procs)
