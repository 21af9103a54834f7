"""Which files a batch reads: folders (any nesting, any names), DICOMDIR files, ``--from-list``.

Every input is expanded to regular files in a stable order (each folder walked as
:func:`dicomrecon.discovery.iter_files` walks it, so one folder is read in the same order as
``convert`` reads it); a file reached twice (two inputs, a symbolic or hard link) is read once.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

from ..discovery import iter_files
from ..errors import InputError


def read_list(path: str) -> list:
    """Paths from a ``--from-list`` file: one a line; blank lines and ``#`` comments ignored;
    relative paths are relative to the list file's folder."""
    try:
        with open(path, encoding="utf-8") as fp:
            lines = fp.read().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the --from-list file ({exc.strerror})")
    base = os.path.dirname(os.path.abspath(path))
    return [os.path.join(base, s) for s in (ln.strip() for ln in lines)
            if s and not s.startswith("#")]


def dicomdir_files(path: str) -> list:
    """The image files a DICOMDIR refers to (its ReferencedFileID records), plus the DICOMDIR.

    A DICOMDIR that cannot be parsed is returned as itself: discovery then lists it as skipped
    with its reason.
    """
    import pydicom
    base = os.path.dirname(os.path.abspath(path))
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        records = ds.get("DirectoryRecordSequence") or []
    except Exception:  # pydicom raises many types on damaged files
        return [path]
    out = [path]
    for rec in records:
        ref = rec.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        out.append(os.path.join(base, *parts))
    return out


def collect(inputs: Iterable[str], from_list: Optional[str] = None) -> list:
    """Every file below ``inputs`` (and the paths listed in ``from_list``), each once.

    A missing input path raises :class:`~dicomrecon.errors.InputError` naming it.
    """
    roots = [os.fspath(p) for p in inputs] + (read_list(from_list) if from_list else [])
    if not roots:
        raise InputError("no input: give folders, files or --from-list FILE")
    seen, out = set(), []
    for root in roots:
        if os.path.isfile(root) and os.path.basename(root).upper() == "DICOMDIR":
            files = [p for p in dicomdir_files(root) if os.path.isfile(p)]
        else:
            files = iter_files(root)  # InputError when it does not exist
        for p in files:
            key = _identity(p)
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def _identity(path: str):
    """What makes two paths one file: (device, inode), one stat (os.path.realpath takes one
    lstat per path component: measured as most of the driver's file listing)."""
    try:
        st = os.stat(path)
    except OSError:  # gone since it was listed: discovery says so
        return os.path.abspath(path)
    return st.st_dev, st.st_ino


def input_roots(inputs: Iterable[str], from_list: Optional[str] = None) -> list:
    """The input paths themselves (to check that the output folder is not inside one)."""
    return [os.fspath(p) for p in inputs] + (read_list(from_list) if from_list else [])
