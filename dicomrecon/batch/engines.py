"""Two places to run the same tasks: a local pool of worker processes, or a Dask cluster.

Both run :func:`.task.run_series` once per series and hand each :class:`.task.TaskResult` to the
driver as it arrives; both read the archive's headers in chunks on their workers.

* :class:`LocalEngine`: ``workers`` processes on this machine, each converting one series at a
  time.  A worker that dies (killed, out of memory) is replaced and its series is retried, up
  to ``max_attempts`` times in all; a series that runs longer than ``timeout`` seconds has its
  worker killed and is recorded as failed.
* :class:`DaskEngine`: a running ``dask scheduler``.  Dask itself retries a task whose worker
  died (``distributed.scheduler.allowed-failures``, 3 by default) and then reports the series as
  failed (``KilledWorker``); with a timeout each task converts in a child process that is
  killed when the time is up.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import time
from multiprocessing.connection import wait
from typing import Callable, Iterable, Optional

from ..errors import DicomReconError, ExitCode
from .task import SeriesTask, TaskResult, failed, run_series, run_series_bounded

MAX_ATTEMPTS = 3


class EngineError(DicomReconError):
    exit_code = ExitCode.USAGE


def _worker_main(conn) -> None:
    """A local worker: convert the series it is sent, one at a time, until told to stop."""
    import warnings
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    while True:
        try:
            job = conn.recv()
            if job is None:
                return
            fn, arg = job
            conn.send(fn(arg))
        except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the driver is gone
            return


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.job = None           # (item, started)

    def give(self, fn, item) -> None:
        self.job = (item, time.monotonic())
        try:
            self.conn.send((fn, item))
        except OSError:  # it just died: the supervisor sees it and retries the job
            pass

    def stop(self, kill: bool = False) -> None:
        try:
            if kill:
                self.proc.kill()
            else:
                self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class LocalEngine:
    """``workers`` processes on this machine (default: one per core)."""

    def __init__(self, workers: Optional[int] = None, *, timeout: Optional[float] = None,
                 max_attempts: int = MAX_ATTEMPTS):
        self.n = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.max_attempts = max_attempts
        # Workers come from a fork server that has imported the conversion code once: fast
        # to start, and never a fork of the driver (which may run threads).
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["dicomrecon.batch.task", "dicomrecon.conversion"])
        self.pool: list = []
        self.description = f"local pool of {self.n} worker process(es)"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for w in self.pool:
            w.stop(kill=exc[0] is not None)
        self.pool = []

    def _workers(self, n: int) -> list:
        """Idle live workers, started so that at most ``n`` are busy or idle.  A dead worker
        still holding a job stays in the pool until the loop has dealt with its job."""
        self.pool = [w for w in self.pool if w.job is not None or w.proc.is_alive()]
        while len(self.pool) < n:
            self.pool.append(_Worker(self.ctx))
        return [w for w in self.pool if w.job is None and w.proc.is_alive()]

    def map_chunks(self, fn: Callable, chunks: list, on_done: Callable) -> list:
        """``fn`` over ``chunks`` on the workers; results in chunk order."""
        if self.n == 1 or len(chunks) <= 1:
            out = []
            for c in chunks:
                out.append(fn(c))
                on_done(c)
            return out
        results: dict = {}
        self._supervise(fn, list(enumerate(chunks)), lambda item: item[1],
                        lambda item, res: (results.__setitem__(item[0], res), on_done(item[1])),
                        self._chunk_lost)
        return [results[i] for i in range(len(chunks))]

    @staticmethod
    def _chunk_lost(item, why):
        raise DicomReconError(f"reading the headers of {item[1][0]} and {len(item[1]) - 1} "
                              f"other file(s) failed: {why}")

    def run(self, tasks: Iterable[SeriesTask], on_result: Callable[[TaskResult], None]) -> None:
        """Run every task; ``on_result`` gets each result (failures included) as it arrives."""
        self._supervise(run_series, list(tasks), lambda t: t,
                        lambda t, res: on_result(res),
                        lambda t, why: on_result(failed(t, why)))

    def _supervise(self, fn, items, arg, on_ok, on_lost) -> None:
        """Feed ``items`` to the workers; replace dead workers, retry or give up their item."""
        queue = collections.deque(items)
        attempts: collections.Counter = collections.Counter()
        busy = 0
        while queue or busy:
            for w in self._workers(min(self.n, busy + len(queue))):
                if queue:
                    self._give(w, fn, arg, queue, attempts)
            workers = [w for w in self.pool if w.job is not None]
            busy = len(workers)
            if not busy:
                continue
            ready = wait([w.conn for w in workers] + [w.proc.sentinel for w in workers],
                         timeout=self._next_deadline(workers))
            done = []
            for w in workers:
                item = w.job[0]
                if w.conn in ready:
                    res = self._receive(w)
                    if res is not None:
                        done.append((item, res))
                        if queue:  # the next series first, so the worker never waits on us
                            self._give(w, fn, arg, queue, attempts)
                        continue
                if not w.proc.is_alive() or w.conn in ready:
                    why = f"died (exit status {w.proc.exitcode})"
                    self._lost(w, item, attempts, queue, on_lost, why)
                elif self.timeout and time.monotonic() - w.job[1] > self.timeout:
                    w.stop(kill=True)
                    w.job = None
                    attempts[id(item)] = self.max_attempts
                    on_lost(item, f"timed out after {self.timeout:g} s (--task-timeout); "
                                  "its worker process was killed")
            for item, res in done:
                on_ok(item, res)
            busy = sum(1 for w in self.pool if w.job is not None)

    @staticmethod
    def _give(w, fn, arg, queue, attempts) -> None:
        item = queue.popleft()
        attempts[id(item)] += 1
        w.give(fn, arg(item))
        w.job = (item, w.job[1])

    @staticmethod
    def _receive(w):
        """The worker's result, or None when it died instead of answering."""
        try:
            res = w.conn.recv()
        except (EOFError, OSError):
            return None
        w.job = None
        return res

    def _lost(self, w, item, attempts, queue, on_lost, why) -> None:
        w.stop(kill=True)
        w.job = None
        if attempts[id(item)] < self.max_attempts:
            queue.appendleft(item)
        else:
            on_lost(item, f"its worker process {why}, {attempts[id(item)]} time(s); not retried")

    def _next_deadline(self, workers) -> Optional[float]:
        if not self.timeout:
            return 1.0
        now = time.monotonic()
        return max(0.05, min(self.timeout - (now - w.job[1]) for w in workers))


class DaskEngine:
    """The workers of a running Dask distributed scheduler (``tcp://host:8786``)."""

    def __init__(self, address: str, *, timeout: Optional[float] = None, echo=print):
        try:
            from distributed import Client
        except ImportError:
            raise EngineError("--scheduler needs Dask distributed, which is not installed: "
                              "pip install 'dicomrecon[dask]'") from None
        self.timeout = timeout
        try:
            self.client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise EngineError(f"--scheduler {address}: cannot connect to a Dask scheduler "
                              f"({type(exc).__name__}: {exc})") from None
        n = len(self.client.scheduler_info().get("workers", {}))
        self.description = f"Dask scheduler {address} ({n} worker(s))"
        echo(f"Dask dashboard: {self.client.dashboard_link}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.client.close()

    def map_chunks(self, fn: Callable, chunks: list, on_done: Callable) -> list:
        from distributed import as_completed
        futures = self.client.map(fn, chunks, pure=False, key=[
            f"dicomrecon-headers-{os.getpid()}-{i}-{time.time_ns()}" for i in range(len(chunks))])
        index = {f.key: i for i, f in enumerate(futures)}
        results: dict = {}
        for fut in as_completed(futures):
            i = index[fut.key]
            results[i] = fut.result()
            on_done(chunks[i])
        return [results[i] for i in range(len(chunks))]

    def run(self, tasks: Iterable[SeriesTask], on_result: Callable[[TaskResult], None]) -> None:
        from distributed import as_completed
        futures, owner = [], {}
        for t in tasks:
            t.timeout = self.timeout
            fut = self.client.submit(run_series_bounded, t, pure=False,
                                     key=f"dicomrecon-series-{t.uid}-{time.time_ns()}")
            futures.append(fut)
            owner[fut.key] = t
        for fut in as_completed(futures):
            t = owner[fut.key]
            try:
                res = fut.result()
            except Exception as exc:  # KilledWorker after repeated worker deaths, or a bug
                res = failed(t, f"{type(exc).__name__}: {exc}")
            on_result(res)
