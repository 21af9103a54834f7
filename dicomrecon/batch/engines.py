"""Two places to run the same tasks: a local pool of worker processes, or a Dask cluster.

Both run :func:`.task.run_series` once per series and hand each :class:`.task.TaskResult` to the
driver as it arrives; both read the archive's headers in chunks on their workers.

* :class:`LocalEngine`: ``workers`` processes on this machine, each converting one series at a
  time.  They start (and import the conversion code) as the engine is entered, while the
  driver lists and reads the input.  A worker that dies (killed, out of memory) is replaced and
  its series is tried again, ``retries`` times at most; a series that runs longer than
  ``timeout`` seconds has its worker killed and is recorded as failed.
* :class:`DaskEngine`: a running ``dask scheduler``.  Dask itself runs a task again when its
  worker died; the task counts its tries (:func:`.task.count_attempt`) and gives up after
  ``retries`` of them.  When the scheduler gives up first (``KilledWorker`` after
  ``distributed.scheduler.allowed-failures`` deaths, 3 by default) the task is submitted again
  until ``retries`` is used up.  With a timeout each task converts in a child process that is
  killed when the time is up.

Both hand results to the driver in batches (all those that arrived together), so that the
driver commits them with one fsync of the manifest.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from multiprocessing.connection import wait
from typing import Callable, Iterable, Optional

from ..errors import DicomReconError, ExitCode
from .heap import Heap
from .layout import DEFAULT_RETRIES, fork_server_context
from .task import SeriesTask, TaskResult, attempts, failed, run_series, run_series_bounded


class EngineError(DicomReconError):
    exit_code = ExitCode.USAGE


def _worker_main(conn, imports: tuple = ()) -> None:
    """A local worker: import ``imports``, then run the jobs it is sent (a header chunk, a
    series), one at a time, until told to stop."""
    import importlib
    import warnings
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    heap = Heap()
    for name in imports:
        try:
            importlib.import_module(name)
        except ImportError:  # the job that needs it says why
            pass
    while True:
        try:
            job = conn.recv()
            if job is None:
                return
            fn, arg = job
            res = fn(arg)
            conn.send(res)
            heap.after(res)
            del res, job, arg
        except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the driver is gone
            return


class _Worker:
    def __init__(self, ctx, imports: tuple = ()):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, tuple(imports)), daemon=True)
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


#: What reading header chunks imports (measured: 0.1 s a worker): imported by the workers that
#: read headers as they start, while the driver still lists the files, and not by the fork
#: server, so that the workers that convert (forked after discovery) do not carry it.  pydicom
#: (0.2 s more) is imported only by a reader that meets a file that needs it: enhanced
#: multi-frame, MOSAIC, exact binary floats, a StudyID that is not plain ASCII.
READER_MODULES = ["dicomrecon.batch.index", "gdcm"]


class LocalEngine:
    """``workers`` processes on this machine (default: one per core)."""

    def __init__(self, workers: Optional[int] = None, *, timeout: Optional[float] = None,
                 retries: int = DEFAULT_RETRIES, phases=None):
        self.n = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.max_attempts = retries + 1
        self.phases = phases
        self._warming: Optional[threading.Thread] = None
        # Workers come from a fork server that has imported the conversion code once: fast
        # to start, and never a fork of the driver (which may run threads).
        self.ctx = fork_server_context()
        self.pool: list = []
        self.description = f"local pool of {self.n} worker process(es)"

    def __enter__(self):
        """Start the workers in a thread: the fork server imports the conversion code while
        the driver goes on listing files and reading headers."""
        self._warming = threading.Thread(target=self._warm, name="dicomrecon-pool-start",
                                         daemon=True)
        self._warming.start()
        return self

    def _warm(self) -> None:
        t0 = time.perf_counter()
        # with one worker the driver reads the headers itself: its worker only converts
        self._start(self.n, READER_MODULES if self.n > 1 else ())
        if self.phases is not None:
            self.phases.add("workers start (background)", t0, time.perf_counter() - t0)

    def __exit__(self, *exc):
        self._join_warming()
        for w in self.pool:
            w.stop(kill=exc[0] is not None)
        self.pool = []

    def _join_warming(self) -> None:
        if self._warming is not None:
            self._warming.join()
            self._warming = None

    def _start(self, n: int, imports=()) -> None:
        while len(self.pool) < n:
            self.pool.append(_Worker(self.ctx, imports))

    def _workers(self, n: int) -> list:
        """Idle live workers, started so that at most ``n`` are busy or idle.  A dead worker
        still holding a job stays in the pool until the loop has dealt with its job."""
        self._join_warming()
        self.pool = [w for w in self.pool if w.job is not None or w.proc.is_alive()]
        self._start(n)
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

        def on_ok(done):
            for item, res in done:
                results[item[0]] = res
                on_done(item[1])
        self._supervise(fn, list(enumerate(chunks)), lambda item: item[1], on_ok,
                        self._chunk_lost)
        self._renew()
        return [results[i] for i in range(len(chunks))]

    def _renew(self) -> None:
        """Replace the workers by fresh ones (a fork of the warm fork server: ~10 ms each).
        Workers that read header chunks keep tens of MB that malloc_trim cannot give back
        (measured: 69 MB resident after the chunks against 26 MB fresh: the reader's modules
        and a fragmented heap), which would stay under every series they convert."""
        old, self.pool = self.pool, []
        self._start(self.n)
        for w in old:
            w.stop()

    @staticmethod
    def _chunk_lost(item, why):
        raise DicomReconError(f"reading the headers of {item[1][0]} and {len(item[1]) - 1} "
                              f"other file(s) failed: {why}")

    def run(self, tasks: Iterable[SeriesTask], on_results: Callable[[list], None]) -> None:
        """Run every task; ``on_results`` gets the results (failures included) as they
        arrive, those that arrived together in one list."""
        self._supervise(run_series, list(tasks), lambda t: t,
                        lambda done: on_results([res for _, res in done]),
                        lambda t, why: on_results([failed(t, why)]))

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
            if done:
                on_ok(done)
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
        """How long to wait for a result: until the first busy worker's deadline.  Not rounded
        up to a floor: a task that finishes within a rounded-up wait would be accepted after its
        --task-timeout (seen in CI with a 1 ms limit and 50 ms of rounding); a deadline already
        past is handled by the loop in the same round, so the loop never spins."""
        if not self.timeout:
            return 1.0
        now = time.monotonic()
        return max(0.0, min(self.timeout - (now - w.job[1]) for w in workers))


class DaskEngine:
    """The workers of a running Dask distributed scheduler (``tcp://host:8786``)."""

    def __init__(self, address: str, *, timeout: Optional[float] = None,
                 retries: int = DEFAULT_RETRIES, echo=print):
        try:
            from distributed import Client
        except ImportError:
            raise EngineError("--scheduler needs Dask distributed, which is not installed: "
                              "pip install 'dicomrecon[dask]'") from None
        self.timeout = timeout
        self.max_attempts = retries + 1
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

    def run(self, tasks: Iterable[SeriesTask], on_results: Callable[[list], None]) -> None:
        from distributed import as_completed
        owner: dict = {}
        pending = as_completed([self._submit(t, owner) for t in tasks], with_results=False)
        for batch in pending.batches():
            results = []
            for fut in batch:
                t = owner.pop(fut.key)
                try:
                    results.append(fut.result())
                except Exception as exc:  # KilledWorker after repeated worker deaths, or a bug
                    if _killed(exc) and attempts(t) < self.max_attempts:
                        pending.add(self._submit(t, owner))  # the scheduler gave up first
                        continue
                    results.append(failed(t, f"{type(exc).__name__}: {exc}"))
            if results:
                on_results(results)

    def _submit(self, t: SeriesTask, owner: dict):
        t.timeout = self.timeout
        t.max_attempts = self.max_attempts
        fut = self.client.submit(run_series_bounded, t, pure=False,
                                 key=f"dicomrecon-series-{t.uid}-{time.time_ns()}")
        owner[fut.key] = t
        return fut


def _killed(exc: Exception) -> bool:
    """The scheduler gave a task up after its workers died (distributed.KilledWorker)."""
    return type(exc).__name__ == "KilledWorker"
