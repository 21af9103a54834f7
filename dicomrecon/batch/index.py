"""Discovery over a whole archive: headers read in parallel chunks, grouped all at once.

Each chunk of files is read by :func:`dicomrecon.discovery.read_files` (the reader ``scan``
uses) on a worker; the chunks come back in input order and every header is grouped by
:func:`dicomrecon.discovery.group_headers`, so a series spread over several folders is one
series, files of several studies in one folder are separated, and a folder is grouped and split
exactly as ``convert`` does it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..discovery import Series, group_headers, read_files
from .layout import read_study_ids

#: Files per chunk: big enough that pickling and task overhead stay small next to reading.
CHUNK_FILES = 400


@dataclass
class Chunk:
    """What a worker returns for one chunk of files."""

    headers: list
    skipped: list                 # [(path, reason)]
    stats: dict                   # path -> (size, mtime_ns)
    damaged: list = field(default_factory=list)  # discovery.Damage: images lost to damage
    study_ids: dict = field(default_factory=dict)  # SeriesInstanceUID -> (path, StudyID)
    seconds: float = 0.0          # wall and CPU time the worker took for it
    cpu_seconds: float = 0.0


def read_chunk(paths: list) -> Chunk:
    """Read the headers of ``paths`` (runs on a worker).  A file that makes the reader fail
    unexpectedly is listed as skipped with the error, and the rest of the chunk is still read."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        headers, skipped, damaged = read_files(paths)
    except Exception:  # a reader bug on one odd file: find it, keep the others
        headers, skipped, damaged = [], [], []
        for p in paths:
            try:
                h, sk, dm = read_files([p])
            except Exception as exc:
                h, sk, dm = [], [(p, f"unreadable header (internal error {type(exc).__name__}: "
                                     f"{exc}; please report it)")], []
            headers += h
            skipped += sk
            damaged += dm
    stats = {}
    for p in {h.path for h in headers}:
        try:
            st = os.stat(p)
            stats[p] = (st.st_size, st.st_mtime_ns)
        except OSError:
            stats[p] = (None, None)
    chunk = Chunk(headers, skipped, stats, damaged, _study_ids(headers))
    chunk.seconds, chunk.cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    return chunk


def _study_ids(headers: list) -> dict:
    """SeriesInstanceUID -> (path, StudyID) read from the first file (in path order) of each
    series in this chunk: the layout's ``%s`` token, which the header reader does not keep.
    Read here, on the workers, so that the driver never opens a file."""
    first: dict = {}
    for h in headers:
        if h.series_instance_uid not in first or h.path < first[h.series_instance_uid]:
            first[h.series_instance_uid] = h.path
    ids = read_study_ids(sorted(set(first.values())))
    return {uid: (path, ids[path]) for uid, path in first.items()}


@dataclass
class Index:
    series: list                  # dicomrecon.discovery.Series, in convert's order
    skipped: list                 # [(path, reason)]
    n_files: int
    stats: dict = field(default_factory=dict)
    study_ids: dict = field(default_factory=dict)  # SeriesInstanceUID -> StudyID


def build_index(files: list, map_chunks: Callable, *, chunk_files: int = CHUNK_FILES,
                progress: Optional[Callable[[int, int], None]] = None, phases=None) -> Index:
    """Read and group every file of ``files``; ``map_chunks(fn, chunks, on_done)`` runs ``fn``
    over the chunks on the engine's workers and returns the results in chunk order."""
    chunks = [files[i:i + chunk_files] for i in range(0, len(files), chunk_files)]
    done = [0]

    def on_done(chunk_paths):
        done[0] += len(chunk_paths)
        if progress:
            progress(done[0], len(files))

    headers, skipped, damaged, stats, study = [], [], [], {}, {}
    t0, wall, cpu = time.perf_counter(), 0.0, 0.0
    for res in map_chunks(read_chunk, chunks, on_done):
        wall, cpu = wall + res.seconds, cpu + res.cpu_seconds
        headers += res.headers
        skipped += res.skipped
        damaged += res.damaged
        stats.update(res.stats)
        for uid, (path, sid) in res.study_ids.items():  # the series' first file wins
            if uid not in study or path < study[uid][0]:
                study[uid] = (path, sid)
    if phases is not None:
        phases.add("read headers (workers, summed)", t0, wall, cpu)
    t0, c0 = time.perf_counter(), time.process_time()
    series = group_headers(headers, skipped, damaged=damaged)
    if phases is not None:
        phases.add("group headers", t0, time.perf_counter() - t0, time.process_time() - c0)
    return Index(series, skipped, len(files), stats, {u: v[1] for u, v in study.items()})


def series_files(series: Series) -> list:
    """The files of a series, sorted, each once."""
    return sorted({h.path for g in series.groups for h in g.slices})


def fingerprint(series: Series, stats: dict) -> dict:
    """What the series was made from: a sha256 over its (SOPInstanceUID, frame, file, size,
    mtime) and over its SOPInstanceUIDs, with counts.  Any change to a file, or an image added
    or removed, changes it."""
    images = sorted((h.sop_instance_uid, h.frame, h.path) for g in series.groups
                    for h in g.slices)
    files = series_files(series)
    full = hashlib.sha256()
    for sop, frame, path in images:
        size, mtime = stats.get(path, (None, None))
        full.update(f"{sop}\t{frame}\t{os.path.abspath(path)}\t{size}\t{mtime}\n".encode())
    sops = hashlib.sha256("\n".join(sorted({s for s, _, _ in images})).encode()).hexdigest()
    return {"sha256": full.hexdigest(), "images": len(images), "files": len(files),
            "bytes": sum((stats.get(p, (0, 0))[0] or 0) for p in files),
            "sop_instance_uids_sha256": sops}
