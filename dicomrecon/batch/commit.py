"""The driver's committer: a thread that moves finished series into place and records them.

Results are queued as they arrive; the thread commits all those waiting at once
(:meth:`~.manifest.Manifest.commit_many`: two fsyncs of the manifest for the lot), so the
driver's loop goes straight back to handing series to the workers, and the more results arrive
while the disk syncs, the larger the next batch: a group commit.  Measured on 1,000 tiny series
with 2 workers: 1,928 fsyncs, 7.8 s of the 22 s of conversion, when the loop committed each
result itself.  A series is counted done (row, progress bar) only once its record is durable.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Optional

from .manifest import Manifest
from .summary import CONVERTED, SummaryRow


class Committer:
    """Commits results in a thread; ``rows`` (SeriesInstanceUID -> SummaryRow) fills in as
    series are recorded.  ``record_of(result)`` makes a result's manifest record."""

    def __init__(self, manifest: Manifest, rows: dict, record_of: Callable, done: Callable):
        self.manifest = manifest
        self.rows = rows
        self.record_of = record_of
        self.done = done                  # done(record): the series is recorded (progress)
        self.error: Optional[BaseException] = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="dicomrecon-commit",
                                        daemon=True)
        self._thread.start()

    def put(self, results: list) -> None:
        """Queue results (the engines' callback); raises the committer's error, if any, so
        that the run stops where it would have stopped committing them itself."""
        if self.error is not None:
            raise self.error
        self._queue.put(list(results))

    def close(self) -> None:
        """Commit what is queued, stop the thread; raise its error, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            results = [r for b in batch if b is not None for r in b]
            if results and self.error is None:
                try:
                    self.commit(results)
                except BaseException as exc:  # noqa: B902 -- handed to the driver's thread
                    self.error = exc
            if any(b is None for b in batch):
                return

    def commit(self, results: list) -> None:
        """Record ``results`` now (in the calling thread): durable when this returns."""
        fresh, seen = [], set()
        for res in results:
            if res.uid in self.rows or res.uid in seen:
                self.manifest.drop_staging(res)  # a second copy of a retried task: never twice
            else:
                seen.add(res.uid)
                fresh.append((res, self.record_of(res)))
        for rec in self.manifest.commit_many(fresh):
            self.rows[rec.series_instance_uid] = SummaryRow.from_record(rec, CONVERTED)
            self.done(rec)


def volumes_of(record) -> int:
    return len([o for o in record.outputs if not o["file"].endswith(".json")])
