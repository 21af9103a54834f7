"""``OUTDIR/dicomrecon-batch.jsonl``: what each series was made from, what became of it, and
the sha256 of every file it wrote.  It makes a batch resumable.

One JSON object a line, appended as series finish, rewritten at the end of a run with one line
per series (the latest).  Moving a series' outputs into place is a small journal:

1. a ``{"event": "commit", ...}`` line lists the files about to be moved;
2. each file is renamed from the series' staging folder onto its final path (atomic);
3. the series' record is appended; files of its previous record that it no longer writes
   (renamed outputs) are deleted.

A run killed anywhere leaves at worst a staging folder and a commit line without a record; the
next run deletes both the staging folder and the files of such a commit, then converts the
series again.  So a killed run, started again, ends as an uninterrupted run would.

Durability: the manifest is fsynced after the commit lines (before any file is moved) and
after the records (before the run counts the series as done), once for all the results that
arrive together (:meth:`Manifest.commit_many`), so a machine that loses power never has a
record the disk forgot, and one fsync per line is not what the driver waits on.  The folder
holding the manifest is fsynced once the manifest file exists, and the compacted manifest is
fsynced before it replaces the old one.  Output files are not fsynced (that would make every
worker wait on the disk): after a power loss, the next run finds an output whose sha256 does
not match its record and converts the series again.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

from ..errors import OutputError
from ..writers import atomic_path
from .task import FAILED, REFUSED, WRITTEN, TaskResult, sha256_file

MANIFEST = "dicomrecon-batch.jsonl"
STAGING = ".dicomrecon-staging"
LOCK = ".dicomrecon-batch.lock"


@dataclass
class Record:
    """One series in the manifest."""

    series_instance_uid: str
    status: str                               # written, refused or failed
    input: dict                               # index.fingerprint()
    settings: str                             # sha256 of format, policy, layout, version
    outputs: list = field(default_factory=list)   # [{"file", "sha256", "bytes"}]
    reasons: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    patient_id: str = ""
    study_instance_uid: str = ""
    study: str = ""
    series_number: Optional[int] = None
    series_description: str = ""
    modality: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0                  # the worker's CPU time for it (all its threads)
    worker: str = ""
    worker_peak_rss: int = 0                  # bytes, the worker's high-water mark
    finished: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


class Manifest:
    """The manifest of one OUTDIR, locked against a second batch writing there at once."""

    def __init__(self, outdir: str):
        self.outdir = outdir
        self.path = os.path.join(outdir, MANIFEST)
        self.staging = os.path.join(outdir, STAGING)
        self.records: dict = {}               # SeriesInstanceUID -> Record (latest)
        self.pending: dict = {}               # SeriesInstanceUID -> files of an unfinished commit
        self._owner: Optional[dict] = None    # see owned()
        self._lock = None
        self._fp = None                       # the manifest, open for appending
        self._replaced: list = []             # outputs no record lists any more: to delete
        self.syncs = 0                        # fsyncs of the manifest, and their time
        self.sync_seconds = 0.0

    # ------------------------------------------------------------------ open / close
    def open(self) -> "Manifest":
        self._lock = open(os.path.join(self.outdir, LOCK), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise OutputError(f"{self.outdir}: another dicomrecon batch is writing here "
                              f"(it holds {LOCK}); wait for it to finish")
        self._load()
        self._recover()
        return self

    def close(self) -> None:
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._lock:
            self._lock.close()
            self._lock = None

    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as fp:
            for line in fp:
                try:
                    d = json.loads(line)
                except ValueError:  # the last line of a run killed while appending it
                    continue
                uid = d.get("series_instance_uid")
                if not isinstance(d, dict) or not uid:
                    continue
                if d.get("event") == "commit":
                    self.pending[uid] = d.get("files", [])
                else:
                    self.records[uid] = Record.from_dict(d)
                    self.pending.pop(uid, None)

    def owned(self) -> dict:
        """Output file (relative to OUTDIR) -> the series whose latest record lists it
        (kept up to date as records change: one lookup per file, whatever the archive size)."""
        if self._owner is None:
            self._owner = {o["file"]: uid for uid, r in self.records.items() for o in r.outputs}
        return self._owner

    def _recover(self) -> None:
        """Undo what a killed run left: its staging folder, files of unfinished commits."""
        shutil.rmtree(self.staging, ignore_errors=True)
        unfinished = {uid: set(files) for uid, files in self.pending.items()}
        for uid in unfinished:  # converted again, whatever its last record said
            old = self.records.pop(uid, None)
            unfinished[uid].update(o["file"] for o in (old.outputs if old else []))
        self._owner = None
        owned = self.owned()
        for files in unfinished.values():
            for rel in sorted(files):
                if rel not in owned:
                    self._remove(rel)
        self.pending = {}
        self.compact()

    # ------------------------------------------------------------------ queries
    def up_to_date(self, uid: str, fingerprint: dict, settings: str) -> Optional[Record]:
        """The record of a series that need not be converted again: same inputs, same settings,
        written or refused, and every output present with its recorded sha256."""
        r = self.records.get(uid)
        if r is None or r.status not in (WRITTEN, REFUSED) or r.settings != settings \
                or r.input.get("sha256") != fingerprint["sha256"]:
            return None
        for o in r.outputs:
            p = os.path.join(self.outdir, o["file"])
            if not os.path.isfile(p) or os.path.getsize(p) != o["bytes"] \
                    or sha256_file(p) != o["sha256"]:
                return None
        return r

    # ------------------------------------------------------------------ writing
    def _append(self, obj: dict) -> None:
        """Write a line, flushed to the kernel at once (a killed run loses nothing it wrote);
        :meth:`sync` makes it durable."""
        if self._fp is None:
            created = not os.path.exists(self.path)
            self._fp = open(self.path, "a", encoding="utf-8")
            if created:
                fsync_dir(self.outdir)
        self._fp.write(json.dumps(obj, default=str) + "\n")
        self._fp.flush()

    def sync(self) -> None:
        """fsync the manifest: every line written so far survives a power loss."""
        if self._fp is not None:
            t0 = time.perf_counter()
            os.fsync(self._fp.fileno())
            self.syncs += 1
            self.sync_seconds += time.perf_counter() - t0

    def commit_many(self, results: list) -> list:
        """Commit ``[(TaskResult, Record)]`` that arrived together: their commit lines (one
        fsync), their files moved into place, their records (one fsync).  Returns the records,
        each durable when this returns (see module doc)."""
        moving, claimed = [], {}
        for res, rec in results:
            if res.status == FAILED:
                continue
            clash = self._clash(res, rec, claimed)
            if clash:
                rec.status, rec.outputs, rec.reasons = FAILED, [], [clash]
            else:
                self._append({"event": "commit", "series_instance_uid": rec.series_instance_uid,
                              "files": [f.rel for f in res.files]})
                moving.append((res, rec))
        if moving:
            self.sync()
        for res, rec in moving:
            for f in res.files:
                dest = os.path.join(self.outdir, f.rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.replace(f.staged, dest)
            rec.outputs = [{"file": f.rel, "sha256": f.sha256, "bytes": f.bytes}
                           for f in res.files]
        out = []
        for res, rec in results:
            rec.finished = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            self.drop_staging(res)
            out.append(self.record(rec, sync=False))
        self.sync()
        self._remove_replaced()
        return out

    def _clash(self, result: TaskResult, record: Record, claimed: dict) -> str:
        """Why a series' outputs cannot go where another series' outputs are ('' if none);
        ``claimed``: outputs of the series committed alongside it, updated."""
        uid = record.series_instance_uid
        owned = self.owned()
        clash = [f.rel for f in result.files
                 if claimed.get(f.rel, owned.get(f.rel, uid)) != uid]
        if not clash:
            claimed.update((f.rel, uid) for f in result.files)
            return ""
        other = claimed.get(clash[0], owned.get(clash[0]))
        return (f"output {clash[0]} is already written for series {other}: use a "
                "--layout that tells them apart (e.g. with %u)")

    def commit(self, result: TaskResult, record: Record) -> Record:
        """Move a task's staged files into place, then record the series (see module doc)."""
        return self.commit_many([(result, record)])[0]

    def record(self, record: Record, sync: bool = True) -> Record:
        """Append ``record``; delete outputs of its previous record that it no longer lists
        (once the record is durable: at once with ``sync``, else after :meth:`commit_many`'s
        fsync)."""
        uid = record.series_instance_uid
        old = self.records.get(uid)
        self._append(asdict(record))
        self.records[uid] = record
        owner = self.owned()
        for o in old.outputs if old is not None else []:
            if owner.get(o["file"]) == uid:
                del owner[o["file"]]
        for o in record.outputs:
            owner[o["file"]] = uid
        self._replaced += [o["file"] for o in (old.outputs if old is not None else [])
                           if o["file"] not in owner]
        if sync:
            self.sync()
            self._remove_replaced()
        return record

    def _remove_replaced(self) -> None:
        for rel in self._replaced:
            if rel not in self.owned():
                self._remove(rel)
        self._replaced = []

    def drop_staging(self, result: TaskResult) -> None:
        """Remove a task's staging folder: empty once committed (one rmdir), whole otherwise."""
        if result.staging:
            try:
                os.rmdir(result.staging)
            except OSError:
                shutil.rmtree(result.staging, ignore_errors=True)

    def _remove(self, rel: str) -> None:
        path = os.path.join(self.outdir, rel)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        folder = os.path.dirname(path)  # remove folders the series leaves empty
        while os.path.abspath(folder) != os.path.abspath(self.outdir):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)

    def compact(self) -> None:
        """Rewrite the manifest with one line per series (atomic)."""
        if not self.records and not os.path.exists(self.path):
            return
        if self._fp is not None:
            self._fp.close()
            self._fp = None
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as fp:
                for uid in sorted(self.records):
                    fp.write(json.dumps(asdict(self.records[uid]), default=str) + "\n")
                fp.flush()
                os.fsync(fp.fileno())
        fsync_dir(self.outdir)


def fsync_dir(folder: str) -> None:
    """Make the names in ``folder`` (a file created or renamed there) durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
