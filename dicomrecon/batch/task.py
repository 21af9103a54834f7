"""One task = one series, converted by ``convert``'s own code path into a private staging folder.

A task never writes where the outputs finally go: it writes into
``OUTDIR/.dicomrecon-staging/<series>.<pid>.<random>/`` and returns the files with their
sha256; the batch driver alone moves them into place (see :mod:`.manifest`).  So a task that
runs twice (a worker lost and its task retried) can never write a series twice, and a task
killed half-way leaves only a staging folder that the next run removes.

One series at a time per worker process: tasks take a process-wide lock, so a Dask worker
started with several threads still holds one series in memory at a time.

Attempts: where the engine cannot count the tries of a task itself (a Dask scheduler runs a
task again when its worker dies), the task counts them: each try appends a byte to
``OUTDIR/.dicomrecon-staging/attempts/<series>``, and a try beyond ``max_attempts`` records the
series as failed instead of converting it.

Test hook: with the environment variable ``DICOMRECON_TEST_SLOW_SERIES`` set to
``DESCRIPTION=SECONDS``, a series whose SeriesDescription is ``DESCRIPTION`` sleeps ``SECONDS``
before it converts (the tests use it to make one series overrun ``--task-timeout`` on a real
Dask cluster).  Nothing else reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from ..copies import sha256_file
from ..discovery import ScanResult, Series
from ..plan import Policy

_ONE_AT_A_TIME = threading.Lock()
WRITTEN, REFUSED, FAILED = "written", "refused", "failed"


@dataclass
class SeriesTask:
    uid: str
    series: Series
    root: str                     # folder the sidecar's source file names are relative to
    staging_root: str             # OUTDIR/.dicomrecon-staging
    folder: str                   # final folder, relative to OUTDIR
    name: str                     # convert --name template for this series
    fmt: str
    policy: Policy
    timeout: Optional[float] = None
    input_bytes: int = 0
    source: Optional[dict] = None  # a PACS input's URL and UIDs, recorded in the sidecars
    max_attempts: Optional[int] = None  # counted by the task itself (see module doc), or not


@dataclass
class StagedFile:
    rel: str                      # final path relative to OUTDIR
    staged: str                   # where the task wrote it
    sha256: str
    bytes: int


@dataclass
class TaskResult:
    uid: str
    status: str                   # written, refused or failed
    files: list = field(default_factory=list)      # StagedFile
    volumes: int = 0
    reasons: list = field(default_factory=list)    # one line each
    findings: list = field(default_factory=list)   # finding codes
    seconds: float = 0.0
    worker: str = ""
    staging: str = ""
    worker_peak_rss: int = 0      # bytes: the worker process's high-water mark so far
    cpu_seconds: float = 0.0      # CPU time of the worker process (all threads) for it


def peak_rss() -> int:
    """This process's peak resident set size in bytes (Linux reports KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def failed(task: SeriesTask, reason: str, **kw) -> TaskResult:
    return TaskResult(task.uid, FAILED, reasons=[reason], worker=kw.pop("worker", ""), **kw)


def run_series(task: SeriesTask) -> TaskResult:
    """Convert one series into a fresh staging folder; never raises (a failure is a result)."""
    from ..conversion import convert
    with _ONE_AT_A_TIME:
        t0, c0 = time.perf_counter(), time.process_time()
        staging = os.path.join(task.staging_root, "{}.{}.{}".format(
            hashlib.sha1(task.uid.encode()).hexdigest()[:12], os.getpid(), secrets.token_hex(3)))
        try:
            tries = count_attempt(task)
            if task.max_attempts is not None and tries > task.max_attempts:
                result = failed(task, f"its worker process died {tries - 1} time(s) while "
                                      "converting it; not retried (--retries)")
                return _finish(result, t0, c0)
            _test_delay(task)
            os.makedirs(staging)
            n_files = len({h.path for g in task.series.groups for h in g.slices})
            res = convert(task.root, staging, fmt=task.fmt, name=task.name, policy=task.policy,
                          scan_result=ScanResult(task.root, [task.series], [], n_files),
                          source=task.source, checksums=True)
            result = _collect(task, res, staging)
        except Exception as exc:  # one bad series never stops the batch: record why
            shutil.rmtree(staging, ignore_errors=True)
            result = failed(task, f"{type(exc).__name__}: {exc}")
        return _finish(result, t0, c0)


def _finish(result: TaskResult, t0: float, c0: float) -> TaskResult:
    result.seconds = time.perf_counter() - t0
    result.cpu_seconds = time.process_time() - c0
    result.worker = worker_name()
    result.worker_peak_rss = peak_rss()
    return result


def attempts_file(task: SeriesTask) -> str:
    return os.path.join(task.staging_root, "attempts",
                        hashlib.sha1(task.uid.encode()).hexdigest()[:16])


def count_attempt(task: SeriesTask) -> int:
    """Count this try of ``task`` (when the task counts its own tries); returns its number."""
    if task.max_attempts is None:
        return 1
    path = attempts_file(task)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as fp:
        fp.write(b".")
        fp.flush()
        os.fsync(fp.fileno())  # a worker killed at once must still have counted its try
        return os.fstat(fp.fileno()).st_size


def attempts(task: SeriesTask) -> int:
    """How many times ``task`` was started so far (its own count; 0 when none)."""
    try:
        return os.path.getsize(attempts_file(task))
    except OSError:
        return 0


def _test_delay(task: SeriesTask) -> None:
    """The ``DICOMRECON_TEST_SLOW_SERIES`` test hook (see module doc)."""
    spec = os.environ.get("DICOMRECON_TEST_SLOW_SERIES", "")
    name, _, seconds = spec.rpartition("=")
    if name and task.series.first.series_description == name:
        time.sleep(float(seconds))


def _collect(task: SeriesTask, res, staging: str) -> TaskResult:
    from ..conversion import REPORT_NAME
    os.unlink(os.path.join(staging, REPORT_NAME))  # the manifest and summary replace it
    files, codes = [], set()
    for o in res.outputs:
        for path, digest in ((o.path, o.sha256), (o.sidecar, o.sidecar_sha256)):
            rel = f"{task.folder}/{os.path.basename(path)}" if task.folder else \
                os.path.basename(path)
            files.append(StagedFile(rel, path, digest or sha256_file(path),
                                    os.path.getsize(path)))
        with open(o.sidecar, encoding="utf-8") as fp:
            codes.update(f["code"] for f in json.load(fp).get("findings", []))
    reasons = []
    for r in res.refused:
        for f in r.reasons:
            codes.add(f["code"])
            reasons.append(f"group {r.group}: {f['message']}")
    return TaskResult(task.uid, REFUSED if res.refused else WRITTEN, files=files,
                      volumes=len(res.outputs), reasons=reasons, findings=sorted(codes),
                      staging=staging)


def run_series_bounded(task: SeriesTask) -> TaskResult:
    """:func:`run_series`, in a child process killed after ``task.timeout`` seconds.

    Used where the engine cannot kill the worker itself (a Dask worker runs tasks in threads):
    the child is the only thing that holds the series, so killing it frees everything.
    """
    if task.timeout is None:
        return run_series(task)
    with _ONE_AT_A_TIME:
        proc = subprocess.Popen([sys.executable, "-c", "from dicomrecon.batch.task import "
                                 "child_main; child_main()"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(pickle.dumps(task), timeout=task.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return failed(task, f"timed out after {task.timeout:g} s (--task-timeout)",
                          worker=worker_name(), seconds=task.timeout)
    if proc.returncode != 0 or not out:
        return failed(task, f"the conversion process died (exit status {proc.returncode})",
                      worker=worker_name())
    return pickle.loads(out)


def child_main() -> None:
    """The child of :func:`run_series_bounded`: a pickled task in, a pickled result out.
    (Not ``python -m`` this module: its classes would then be ``__main__``'s, which the Dask
    worker cannot unpickle.)"""
    sys.stdout.buffer.write(pickle.dumps(run_series(pickle.load(sys.stdin.buffer))))
