"""Find the DICOM images under a folder and group them into reconstructable volumes.

Files are grouped into series by SeriesInstanceUID (as GDCM's series discovery does), then each
series is split into acquisition groups that can each become one volume: the same orientation,
matrix size, pixel spacing and pixel format.  Every file that is not used is listed with its
reason in :attr:`ScanResult.skipped`.

The split into groups and their checks are in :mod:`dicomrecon.grouping`; copies of one image
and damaged files in :mod:`dicomrecon.copies`; the objects returned in
:mod:`dicomrecon.scan_model` (importable from here).
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

from . import geometry as geo
from .copies import attach_damage, refuse_conflicts, resolve_copies
from .errors import InputError
from .grouping import analyse_group, mark_partial, split_repeats, split_series
from .header_model import SliceHeader, SkipFile
from .headers import read_many
from .scan_model import Damage, Group, ScanResult, Series

__all__ = ["Damage", "Group", "ScanResult", "Series", "group_headers", "iter_files",
           "read_files", "scan", "scan_files"]

ProgressFn = Optional[Callable[[int, int], None]]


# --------------------------------------------------------------------------------------------
def iter_files(root: str) -> list:
    """Every regular file below ``root`` (or ``root`` itself), sorted for a stable order: a
    folder's files by name, then its subfolders by name (as ``os.walk`` top-down visits them;
    symbolic links to folders are not followed, links to files are)."""
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise InputError(f"{root}: no such file or folder")
    out: list = []
    _walk(root, out)
    return out


def _walk(folder: str, out: list) -> None:
    """The files of ``folder`` into ``out``, then those of its subfolders.  The entries' types
    come from the directory listing (no stat per file, unlike ``os.path.isfile``)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:  # unreadable folder: skipped, as os.walk does
        return
    subdirs = []
    for e in entries:
        try:
            if e.is_dir():
                if not e.is_symlink():
                    subdirs.append(e.path)
            elif e.is_file():
                out.append(e.path)
        except OSError:
            continue
    for d in subdirs:
        _walk(d, out)


def scan(root: str, *, series_uid: Optional[str] = None, progress: ProgressFn = None,
         tol: geo.Tolerances = geo.DEFAULT_TOLERANCES, engine: str = "auto") -> ScanResult:
    """Read every header under ``root`` and return its series, groups and skipped files.

    Headers only, except for files that share a SOPInstanceUID and header keys but not their
    bytes: those are decoded (with ``engine``), once, to tell a copy from a conflict; the kept
    copy's pixels stay on the group for decoding."""
    root = os.fspath(root)
    return scan_files(iter_files(root), root=root, series_uid=series_uid, progress=progress,
                      tol=tol, engine=engine)


def scan_files(files: list, *, root: str, series_uid: Optional[str] = None,
               progress: ProgressFn = None,
               tol: geo.Tolerances = geo.DEFAULT_TOLERANCES, engine: str = "auto") -> ScanResult:
    """:func:`scan` of the given files; ``root`` is the folder their names are relative to."""
    headers, skipped, damaged = read_files(files, progress)
    if series_uid is not None:
        headers = [h for h in headers if h.series_instance_uid == series_uid]
        damaged = [d for d in damaged if d.series_uid in (None, series_uid)]
    series = group_headers(headers, skipped, tol, damaged, engine=engine)
    return ScanResult(root, series, skipped, len(files))


def read_files(files: list, progress: ProgressFn = None) -> tuple:
    """``(headers, skipped, damaged)`` of ``files`` (in order): their headers, ``[(path,
    reason)]`` for the files skipped, and a :class:`Damage` for each image lost to damage.

    :func:`scan` reads one folder with it; ``dicomrecon batch`` reads chunks of a whole archive
    with it in parallel, then groups them all with :func:`group_headers`.
    """
    headers, skipped, damaged = [], [], []
    for path, result in read_many(list(files), progress).items():  # GDCM reads them all at once
        if isinstance(result, SkipFile):
            skipped.append((path, str(result).removeprefix(path + ": ")))
            if result.damaged is not None:
                damaged.append(Damage(path, skipped[-1][1], **result.damaged))
        else:
            headers.extend(result)
    return headers, skipped, damaged


def group_headers(headers: Iterable[SliceHeader], skipped: list,
                  tol: geo.Tolerances = geo.DEFAULT_TOLERANCES, damaged: Iterable = (),
                  engine: str = "auto") -> list:
    by_uid: dict = {}
    pixels: dict = {}  # stored frames decoded to judge copies, reused when decoding
    kept, conflicts = resolve_copies(list(headers), skipped, engine, pixels)
    for h in kept:
        by_uid.setdefault(h.series_instance_uid, []).append(h)
    series = []
    for uid, hs in by_uid.items():
        groups = []
        for fam, g in enumerate(split_series(uid, hs, tol)):
            subs = split_repeats(g, skipped, tol)
            for sub in subs:
                sub.family = fam
            if len(subs) > 1:
                mark_partial(subs)
            groups += subs
        counters: dict = {}
        for g in groups:  # numbered within each SeriesNumber, so labels read "7.1", "7.2", "8.1"
            counters[g.first.series_number] = g.index = counters.get(g.first.series_number, 0) + 1
            g.pixels = {h.instance_key: pixels[h.instance_key] for h in g.slices
                        if h.instance_key in pixels}
            g.tolerances = tol
            if not refuse_conflicts(g, conflicts):
                analyse_group(g, tol)
        series.append(Series(uid, groups))
    series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
    for d in damaged:
        attach_damage(d, series, tol)
    return series

